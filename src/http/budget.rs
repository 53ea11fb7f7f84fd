//! Per-credential rate budgets: calls wait their turn instead of being refused.
//!
//! The APIs count fixed windows per token (Smile: 10 per second, Iterable metrics: 10 per
//! minute), so a budget spaces calls evenly with no burst: at most `n` fall in any window,
//! and a steady extraction runs just under the documented limit. Per-second budgets keep a
//! 2% margin: calls spaced exactly `1/n` apart can still land `n + 1` in one server window
//! when one is delayed on the way and the next is not.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// A rate budget shared by every call made with one credential.
pub struct RateBudget {
    limiter: DefaultDirectRateLimiter,
    /// The limit, for logs: "10 per second".
    pub description: String,
}

impl std::fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateBudget")
            .field("description", &self.description)
            .finish()
    }
}

fn non_zero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl RateBudget {
    /// At most `n` calls per second, evenly spaced with a 2% margin.
    pub fn per_second(n: u32) -> Arc<Self> {
        let spacing = std::time::Duration::from_micros(1_020_000 / u64::from(non_zero(n).get()));
        let quota = Quota::with_period(spacing)
            .unwrap_or_else(|| Quota::per_second(non_zero(n)))
            .allow_burst(NonZeroU32::MIN);
        Arc::new(RateBudget {
            limiter: RateLimiter::direct(quota),
            description: format!("{n} per second"),
        })
    }

    /// At most `n` calls per minute, evenly spaced.
    pub fn per_minute(n: u32) -> Arc<Self> {
        Arc::new(RateBudget {
            limiter: RateLimiter::direct(
                Quota::per_minute(non_zero(n)).allow_burst(NonZeroU32::MIN),
            ),
            description: format!("{n} per minute"),
        })
    }

    /// At most `n` calls per hour, evenly spaced.
    pub fn per_hour(n: u32) -> Arc<Self> {
        Arc::new(RateBudget {
            limiter: RateLimiter::direct(Quota::per_hour(non_zero(n)).allow_burst(NonZeroU32::MIN)),
            description: format!("{n} per hour"),
        })
    }

    /// Waits until the next call may go.
    pub async fn wait(&self) {
        self.limiter.until_ready().await;
    }
}

//! Exponential backoff with jitter between attempts of a failed run.
//!
//! The delay before retry `n` (1-based) is drawn from `[d/2, d]` where
//! `d = min(base · 2^(n-1), cap)` ("equal jitter"): retries of many jobs spread out, and
//! the floor of `d/2` keeps a retry from coming back at once.

use std::time::Duration;

/// Backoff settings for one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The nominal delay before the first retry.
    pub base: Duration,
    /// The largest nominal delay.
    pub cap: Duration,
}

impl Backoff {
    /// Backoff starting at `base`, capped at 32 times `base` or one hour, whichever is less.
    pub fn new(base: Duration) -> Self {
        Backoff {
            base,
            cap: (base * 32).min(Duration::from_secs(3600)).max(base),
        }
    }

    /// The nominal (un-jittered) delay before retry `retry` (1-based).
    pub fn nominal(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The jittered delay before retry `retry`.
    pub fn delay(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        let nominal = self.nominal(retry);
        let half = nominal / 2;
        let spread = (nominal - half).as_millis() as u64;
        half + Duration::from_millis(rng.u64(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_the_jitter_band() {
        let backoff = Backoff::new(Duration::from_secs(30));
        assert_eq!(backoff.nominal(1), Duration::from_secs(30));
        assert_eq!(backoff.nominal(2), Duration::from_secs(60));
        assert_eq!(backoff.nominal(4), Duration::from_secs(240));
        assert_eq!(
            backoff.nominal(30),
            Duration::from_secs(960),
            "capped at 32 x base"
        );
        let mut rng = fastrand::Rng::with_seed(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let d = backoff.delay(2, &mut rng);
            assert!(
                d >= Duration::from_secs(30) && d <= Duration::from_secs(60),
                "{d:?}"
            );
            seen.insert(d);
        }
        assert!(seen.len() > 50, "jitter spreads retries out");
    }
}

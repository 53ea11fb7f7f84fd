//! Fixed windows per token: over the limit, every request is answered 429 until the window
//! (one second for Smile.io, one minute for Iterable's metrics) has passed since it opened.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Request windows per token.
#[derive(Debug, Default)]
pub struct Windows {
    limit: Option<u32>,
    period: Duration,
    windows: HashMap<String, (Instant, u32)>,
}

impl Windows {
    /// Windows allowing `limit` requests per second per token (`None`: unlimited).
    pub fn new(limit: Option<u32>) -> Self {
        Windows::per(limit, Duration::from_secs(1))
    }

    /// Windows allowing `limit` requests per `period` per token.
    pub fn per(limit: Option<u32>, period: Duration) -> Self {
        Windows {
            limit,
            period,
            windows: HashMap::new(),
        }
    }

    /// Counts a request for `token` at `now`; false when it is over the limit.
    pub fn admit(&mut self, token: &str, now: Instant) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        let window = self.windows.entry(token.to_string()).or_insert((now, 0));
        if now.duration_since(window.0) >= self.period {
            *window = (now, 0);
        }
        window.1 += 1;
        window.1 <= limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eleventh_request_in_a_second_is_refused_until_the_window_resets() {
        let mut windows = Windows::new(Some(10));
        let start = Instant::now();
        let admitted = (0..12).filter(|_| windows.admit("t", start)).count();
        assert_eq!(admitted, 10);
        assert!(!windows.admit("t", start + Duration::from_millis(999)));
        assert!(windows.admit("other", start), "limits are per token");
        assert!(windows.admit("t", start + Duration::from_secs(1)));
        assert!(Windows::new(None).admit("t", start));
    }
}

//! When a failed call is tried again, and after how long.
//!
//! 429, 5xx and transport errors are retried, with exponential backoff and equal jitter
//! (a delay drawn from half to all of `base · 2^n`, capped). A server's `Retry-After` wins,
//! but never below [`RetryPolicy::retry_after_floor`], so `Retry-After: 0` cannot burn
//! every retry at once. A call that is not idempotent is retried only when the server
//! surely did not act on it: a 429, or a connection that was never made.

use std::time::Duration;

use reqwest::StatusCode;

/// Retry settings for one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// The first backoff delay.
    pub base: Duration,
    /// The largest backoff delay (and the largest `Retry-After` honoured).
    pub cap: Duration,
    /// The smallest wait, even when the server says `Retry-After: 0`.
    pub retry_after_floor: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            retry_after_floor: Duration::from_millis(500),
        }
    }
}

/// What went wrong with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The server answered with this status.
    Status(StatusCode),
    /// The connection could not be made; the server never saw the request.
    Connect,
    /// The request may have reached the server (timeout, reset mid-answer).
    Transport,
}

impl Failure {
    /// Whether a retry may help.
    pub fn is_transient(self) -> bool {
        match self {
            Failure::Status(s) => s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error(),
            Failure::Connect | Failure::Transport => true,
        }
    }

    /// Whether the server surely did not act on the request.
    fn surely_not_applied(self) -> bool {
        matches!(
            self,
            Failure::Connect | Failure::Status(StatusCode::TOO_MANY_REQUESTS)
        )
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based) of a call that failed this way, or
    /// `None` when it must not be retried.
    pub fn delay(
        &self,
        failure: Failure,
        retry: u32,
        idempotent: bool,
        retry_after: Option<Duration>,
        rng: &mut fastrand::Rng,
    ) -> Option<Duration> {
        if retry > self.max_retries
            || !failure.is_transient()
            || (!idempotent && !failure.surely_not_applied())
        {
            return None;
        }
        if let Some(wait) = retry_after {
            return Some(wait.clamp(self.retry_after_floor, self.cap));
        }
        let nominal = self
            .base
            .saturating_mul(2u32.saturating_pow(retry - 1))
            .min(self.cap);
        let half = nominal / 2;
        Some(half + Duration::from_millis(rng.u64(0..=(nominal - half).as_millis() as u64)))
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value.trim()).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_honoured_with_a_floor_and_a_cap() {
        let policy = RetryPolicy::default();
        let mut rng = fastrand::Rng::with_seed(1);
        let status = Failure::Status(StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            policy.delay(status, 1, true, Some(Duration::ZERO), &mut rng),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            policy.delay(status, 1, true, Some(Duration::from_secs(3)), &mut rng),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            policy.delay(status, 1, true, Some(Duration::from_secs(600)), &mut rng),
            Some(Duration::from_secs(60))
        );
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a past date means now"
        );
    }

    #[test]
    fn only_transient_failures_are_retried_and_writes_only_when_surely_not_applied() {
        let policy = RetryPolicy {
            max_retries: 2,
            ..RetryPolicy::default()
        };
        let mut rng = fastrand::Rng::with_seed(1);
        let unavailable = Failure::Status(StatusCode::SERVICE_UNAVAILABLE);
        let delay = policy
            .delay(unavailable, 2, true, None, &mut rng)
            .expect("retried");
        assert!(
            delay >= Duration::from_millis(500) && delay <= Duration::from_secs(1),
            "{delay:?}"
        );
        assert_eq!(
            policy.delay(unavailable, 3, true, None, &mut rng),
            None,
            "retries used up"
        );
        assert_eq!(
            policy.delay(
                Failure::Status(StatusCode::NOT_FOUND),
                1,
                true,
                None,
                &mut rng
            ),
            None
        );
        assert_eq!(
            policy.delay(unavailable, 1, false, None, &mut rng),
            None,
            "a write may have been applied"
        );
        assert_eq!(
            policy.delay(Failure::Transport, 1, false, None, &mut rng),
            None
        );
        assert!(
            policy
                .delay(Failure::Connect, 1, false, None, &mut rng)
                .is_some()
        );
        assert!(
            policy
                .delay(
                    Failure::Status(StatusCode::TOO_MANY_REQUESTS),
                    1,
                    false,
                    None,
                    &mut rng
                )
                .is_some()
        );
    }
}

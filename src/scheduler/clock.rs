//! Wall-clock time for the scheduler, behind a trait so tests can run days of schedule in
//! milliseconds.
//!
//! Sleeps are taken in naps of at most a minute and the wall clock is read again after
//! each, so a clock that jumps (NTP, a suspended VM) is noticed within a minute instead of
//! after one long, wrong sleep.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest single sleep before the wall clock is read again.
const MAX_NAP: Duration = Duration::from_secs(60);

/// A source of the current wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// Now, in UTC.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A wall clock that starts at a chosen instant and advances with tokio's timer. Under
/// tokio's paused test time it jumps straight to the next timer, which makes it the fake
/// clock of the scheduler tests.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    start_wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock reading `start_wall` now.
    pub fn starting_at(start_wall: DateTime<Utc>) -> Self {
        TokioClock {
            start_wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = self.start.elapsed();
        self.start_wall + chrono::Duration::from_std(elapsed).unwrap_or(chrono::Duration::MAX)
    }
}

/// Sleeps until `clock` reads at least `until`.
pub async fn sleep_until(clock: &dyn Clock, until: DateTime<Utc>) {
    loop {
        let remaining = until - clock.now();
        let Ok(remaining) = remaining.to_std() else {
            return;
        };
        if remaining.is_zero() {
            return;
        }
        tokio::time::sleep(remaining.min(MAX_NAP)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[tokio::test(start_paused = true)]
    async fn sleeping_until_a_distant_instant_wakes_exactly_then() {
        let start = Utc
            .with_ymd_and_hms(2026, 1, 1, 0, 0, 0)
            .single()
            .expect("valid");
        let clock = TokioClock::starting_at(start);
        let target = start + chrono::Duration::hours(5) + chrono::Duration::milliseconds(250);
        sleep_until(&clock, target).await;
        assert_eq!(clock.now(), target);
        sleep_until(&clock, start).await;
        assert_eq!(clock.now(), target, "a past instant returns at once");
    }
}

//! Cron schedules evaluated in a job's IANA time zone, correct across DST changes.
//!
//! Expressions are Unix cron: five fields (`minute hour day-of-month month day-of-week`) or
//! six with seconds first, day-of-week 0–7 with 0 and 7 both Sunday, or `@hourly`, `@daily`,
//! `@weekly`, `@monthly`, `@yearly`. The `cron` crate parses the fields (its own day-of-week
//! numbering starts at 1 for Sunday, so the field is translated), and matching wall-clock
//! times are found in naive local time, then mapped to instants here, because that mapping
//! is where DST bites:
//!
//! - a wall time skipped by a spring-forward change runs once, shifted forward by the length
//!   of the gap (a daily 02:30 job runs at 03:30 that day), unless the hour field is `*`, in
//!   which case the skipped times simply do not exist (the job keeps its interval);
//! - a wall time repeated by a fall-back change runs once, at its first occurrence, unless
//!   the hour field is `*`, in which case it runs at both (an every-15-minutes job keeps
//!   running every 15 minutes through the repeated hour).
//!
//! When day-of-month and day-of-week are both restricted, both must match (Vixie cron runs
//! when either matches); docs/reference.md says so.

use std::str::FromStr;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Utc};
use chrono_tz::Tz;
use cron::TimeUnitSpec;

/// How far around an instant a DST change is looked for; real zones change at most once in
/// this window, by at most two hours.
const DST_WINDOW: Duration = Duration::hours(3);

/// Why a cron expression was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not 5 or 6 fields.
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first, found {0}"
    )]
    FieldCount(usize),
    /// The day-of-week field is malformed.
    #[error("day-of-week field: {0}")]
    DayOfWeek(String),
    /// The `cron` parser rejected a field.
    #[error("{0}")]
    Syntax(String),
    /// The expression can never match (such as February 30th).
    #[error("the schedule never fires")]
    NeverFires,
}

/// A parsed cron expression bound to a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    cron: cron::Schedule,
    tz: Tz,
    hour_is_wildcard: bool,
}

impl CronSchedule {
    /// Parses a Unix cron expression (see the module docs) for the zone `tz`.
    pub fn parse(expression: &str, tz: Tz) -> Result<Self, ScheduleError> {
        let translated = translate(expression.trim())?;
        let cron = cron::Schedule::from_str(&translated)
            .map_err(|e| ScheduleError::Syntax(e.to_string()))?;
        let hour_is_wildcard = cron.hours().is_all();
        let schedule = CronSchedule {
            expression: expression.trim().to_string(),
            cron,
            tz,
            hour_is_wildcard,
        };
        let probe = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        match probe.and_then(|t| schedule.next_after(t)) {
            Some(_) => Ok(schedule),
            None => Err(ScheduleError::NeverFires),
        }
    }

    /// The expression as written in config.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone the expression is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first fire instant strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local_after = after.with_timezone(&self.tz).naive_local();
        // Near a DST change, a wall time before `local_after` may map to an instant after
        // `after`, and a later wall time to an earlier instant: widen the search there.
        let start = if self.near_dst_change(after) {
            local_after - DST_WINDOW
        } else {
            local_after
        };
        let mut best: Option<DateTime<Utc>> = None;
        let mut stop_at: Option<NaiveDateTime> = None;
        for wall in self.cron.after(&Utc.from_utc_datetime(&start)) {
            let wall = wall.naive_utc();
            if stop_at.is_some_and(|stop| wall > stop) {
                break;
            }
            for instant in self.instants_for(wall) {
                if instant > after && best.is_none_or(|b| instant < b) {
                    best = Some(instant);
                }
            }
            if let (Some(found), None) = (best, stop_at) {
                let margin = if self.near_dst_change(found) {
                    DST_WINDOW * 2
                } else {
                    Duration::zero()
                };
                stop_at = Some(wall + margin);
            }
        }
        best
    }

    /// The next `n` fire instants after `after`, in the schedule's zone.
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        std::iter::successors(self.next_after(after), |t| self.next_after(*t))
            .take(n)
            .map(|t| t.with_timezone(&self.tz))
            .collect()
    }

    /// The latest fire instant in `(since, at]`, if any.
    pub fn last_in(&self, since: DateTime<Utc>, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut window = Duration::hours(1);
        loop {
            let from = since.max(at - window);
            let mut last = None;
            let mut cursor = from;
            while let Some(next) = self.next_after(cursor).filter(|n| *n <= at) {
                last = Some(next);
                cursor = next;
            }
            if last.is_some() || from == since {
                return last;
            }
            window = window * 2;
        }
    }

    /// How many fire instants fall in `(since, at]`, counting at most `cap`.
    pub fn count_in(&self, since: DateTime<Utc>, at: DateTime<Utc>, cap: usize) -> usize {
        std::iter::successors(self.next_after(since), |t| self.next_after(*t))
            .take_while(|t| *t <= at)
            .take(cap)
            .count()
    }

    fn near_dst_change(&self, at: DateTime<Utc>) -> bool {
        let offset = |t: DateTime<Utc>| self.tz.offset_from_utc_datetime(&t.naive_utc()).fix();
        offset(at - DST_WINDOW) != offset(at + DST_WINDOW)
    }

    /// The instants a matching wall-clock time stands for (see the module docs).
    fn instants_for(&self, wall: NaiveDateTime) -> Vec<DateTime<Utc>> {
        match self.tz.from_local_datetime(&wall) {
            LocalResult::Single(t) => vec![t.with_timezone(&Utc)],
            LocalResult::Ambiguous(a, b) => {
                let (first, second) = (a.min(b), a.max(b));
                if self.hour_is_wildcard {
                    vec![first.with_timezone(&Utc), second.with_timezone(&Utc)]
                } else {
                    vec![first.with_timezone(&Utc)]
                }
            }
            LocalResult::None if self.hour_is_wildcard => Vec::new(),
            LocalResult::None => self.shift_past_gap(wall).into_iter().collect(),
        }
    }

    /// A wall time inside a spring-forward gap, read with the offset in force before the
    /// gap: 02:30 in a 02:00→03:00 gap becomes 03:30 after it.
    fn shift_past_gap(&self, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
        (1..=48).find_map(|hours| {
            let before = self
                .tz
                .from_local_datetime(&(wall - Duration::hours(hours)))
                .latest()?;
            let offset = before.offset().fix();
            Some(Utc.from_utc_datetime(&(wall - offset)))
        })
    }
}

/// Rewrites a Unix cron expression into the `cron` crate's form: seconds first, and its
/// day-of-week numbering (1 = Sunday).
fn translate(expression: &str) -> Result<String, ScheduleError> {
    if expression.starts_with('@') {
        return Ok(expression.to_string());
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let (seconds, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 => (fields[0], &fields[1..]),
        n => return Err(ScheduleError::FieldCount(n)),
    };
    let day_of_week = translate_day_of_week(rest[4])?;
    Ok(format!(
        "{seconds} {} {} {} {} {day_of_week}",
        rest[0], rest[1], rest[2], rest[3]
    ))
}

const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// Expands a Unix day-of-week field to the `cron` crate's numbering.
fn translate_day_of_week(field: &str) -> Result<String, ScheduleError> {
    let mut days = [false; 7];
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| ScheduleError::DayOfWeek(format!("bad step in `{item}`")))?;
                (base, Some(step))
            }
            None => (item, None),
        };
        let (from, to) = match base {
            "*" | "?" => (0, 6),
            _ => match base.split_once('-') {
                Some((a, b)) => (day_number(a)?, day_number(b)?),
                None if step.is_some() => (day_number(base)?, 6),
                None => (day_number(base)?, day_number(base)?),
            },
        };
        if from > to {
            return Err(ScheduleError::DayOfWeek(format!(
                "range `{base}` runs backwards; write it as two ranges"
            )));
        }
        for day in (from..=to).step_by(step.unwrap_or(1) as usize) {
            days[(day % 7) as usize] = true;
        }
    }
    if days.iter().all(|d| *d) {
        return Ok("*".to_string());
    }
    let list: Vec<String> = (0..7)
        .filter(|d| days[*d])
        .map(|d| (d + 1).to_string())
        .collect();
    Ok(list.join(","))
}

fn day_number(token: &str) -> Result<u32, ScheduleError> {
    if let Ok(n) = token.parse::<u32>() {
        return if n <= 7 {
            Ok(n)
        } else {
            Err(ScheduleError::DayOfWeek(format!(
                "{n} is not a day (use 0-7, 0 and 7 are Sunday)"
            )))
        };
    }
    DAY_NAMES
        .iter()
        .position(|name| name.eq_ignore_ascii_case(token))
        .map(|i| i as u32)
        .ok_or_else(|| {
            ScheduleError::DayOfWeek(format!("`{token}` is not a day (use 0-7 or sun..sat)"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;
    use chrono_tz::Australia::Sydney;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test timestamp")
            .with_timezone(&Utc)
    }

    /// Every fire instant in `[from, to)`, shown in the schedule's zone.
    fn fires(expr: &str, tz: Tz, from: &str, to: &str) -> Vec<String> {
        let schedule = CronSchedule::parse(expr, tz).expect("valid");
        let (from, to) = (utc(from) - Duration::seconds(1), utc(to));
        std::iter::successors(schedule.next_after(from), |t| schedule.next_after(*t))
            .take_while(|t| *t < to)
            .map(|t| t.with_timezone(&tz).to_rfc3339())
            .collect()
    }

    #[test]
    fn new_york_daily_0230_runs_once_on_spring_forward_day() {
        // 2026-03-08 02:00 EST jumps to 03:00 EDT: 02:30 does not exist that day.
        assert_eq!(
            fires(
                "30 2 * * *",
                New_York,
                "2026-03-08T05:00:00Z",
                "2026-03-09T05:00:00Z"
            ),
            ["2026-03-08T03:30:00-04:00"]
        );
    }

    #[test]
    fn new_york_daily_0230_runs_once_on_fall_back_day() {
        // 2026-11-01 02:00 EDT falls back to 01:00 EST; 02:30 happens once, in EST.
        assert_eq!(
            fires(
                "30 2 * * *",
                New_York,
                "2026-11-01T04:00:00Z",
                "2026-11-02T05:00:00Z"
            ),
            ["2026-11-01T02:30:00-05:00"]
        );
        // 01:30 happens twice that day; a fixed-time job runs at the first one only.
        assert_eq!(
            fires(
                "30 1 * * *",
                New_York,
                "2026-11-01T04:00:00Z",
                "2026-11-02T05:00:00Z"
            ),
            ["2026-11-01T01:30:00-04:00"]
        );
    }

    #[test]
    fn sydney_daily_0230_runs_once_on_spring_forward_day() {
        // 2026-10-04 02:00 AEST jumps to 03:00 AEDT.
        assert_eq!(
            fires(
                "30 2 * * *",
                Sydney,
                "2026-10-03T14:00:00Z",
                "2026-10-04T13:00:00Z"
            ),
            ["2026-10-04T03:30:00+11:00"]
        );
    }

    #[test]
    fn sydney_daily_0230_runs_once_on_fall_back_day() {
        // 2026-04-05 03:00 AEDT falls back to 02:00 AEST: 02:30 happens twice.
        assert_eq!(
            fires(
                "30 2 * * *",
                Sydney,
                "2026-04-04T13:00:00Z",
                "2026-04-05T14:00:00Z"
            ),
            ["2026-04-05T02:30:00+11:00"]
        );
    }

    #[test]
    fn interval_jobs_keep_their_interval_through_dst_changes() {
        // Fall back: the repeated hour runs twice, so the interval stays 30 minutes.
        assert_eq!(
            fires(
                "*/30 * * * *",
                New_York,
                "2026-11-01T05:00:00Z",
                "2026-11-01T07:00:00Z"
            ),
            [
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00"
            ]
        );
        // Spring forward: the skipped hour has no runs and nothing is run twice.
        assert_eq!(
            fires(
                "*/30 * * * *",
                New_York,
                "2026-03-08T06:00:00Z",
                "2026-03-08T08:00:00Z"
            ),
            [
                "2026-03-08T01:00:00-05:00",
                "2026-03-08T01:30:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:30:00-04:00"
            ]
        );
    }

    #[test]
    fn day_of_week_uses_unix_numbering() {
        let on = |expr: &str| {
            fires(
                expr,
                chrono_tz::UTC,
                "2026-11-22T00:00:00Z",
                "2026-11-29T00:00:00Z",
            )
        };
        // 2026-11-22 is a Sunday.
        assert_eq!(on("0 9 * * 1"), ["2026-11-23T09:00:00+00:00"]);
        assert_eq!(on("0 9 * * 0"), ["2026-11-22T09:00:00+00:00"]);
        assert_eq!(on("0 9 * * 7"), on("0 9 * * 0"));
        assert_eq!(on("0 9 * * SUN"), on("0 9 * * 0"));
        assert_eq!(on("0 9 * * mon-fri").len(), 5);
        assert_eq!(
            on("0 9 * * 5-7"),
            [
                "2026-11-22T09:00:00+00:00",
                "2026-11-27T09:00:00+00:00",
                "2026-11-28T09:00:00+00:00"
            ]
        );
        assert_eq!(on("0 9 * * */2").len(), 4, "Sun, Tue, Thu, Sat");
    }

    #[test]
    fn seconds_field_is_optional() {
        let every_ten = fires(
            "*/10 * * * * *",
            chrono_tz::UTC,
            "2026-01-01T00:00:00Z",
            "2026-01-01T00:01:00Z",
        );
        assert_eq!(every_ten.len(), 6);
        assert_eq!(every_ten[1], "2026-01-01T00:00:10+00:00");
        assert_eq!(
            fires(
                "@daily",
                chrono_tz::UTC,
                "2026-01-01T00:00:00Z",
                "2026-01-03T00:00:00Z"
            )
            .len(),
            2
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let err = |e: &str| {
            CronSchedule::parse(e, chrono_tz::UTC)
                .expect_err(e)
                .to_string()
        };
        assert!(err("* * *").contains("expected 5 fields"));
        assert!(err("0 9 * * 8").contains("8 is not a day"));
        assert!(err("0 9 * * fri-mon").contains("runs backwards"));
        assert!(err("61 * * * *").len() > 3);
        assert!(err("0 0 30 2 *").contains("never fires"));
    }

    #[test]
    fn last_in_and_count_in_cover_a_gap() {
        let s = CronSchedule::parse("0 * * * *", chrono_tz::UTC).expect("valid");
        let since = utc("2026-01-01T00:00:00Z");
        let at = utc("2026-01-03T12:30:00Z");
        assert_eq!(s.last_in(since, at), Some(utc("2026-01-03T12:00:00Z")));
        assert_eq!(s.count_in(since, at, 1000), 60);
        assert_eq!(s.count_in(since, at, 10), 10);
        assert_eq!(s.last_in(at, at + Duration::minutes(10)), None);
    }
}

//! The run ledger: one row per run of a job, written as the run starts, retries and ends.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{StateError, StateStore, format_ts, parse_ts};
use crate::error::ErrorKind;

/// Named counts a run reports (rows extracted, rows loaded, messages sent, ...).
pub type Counters = BTreeMap<String, u64>;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// In progress (or the process died during it; see [`StateStore::interrupt_abandoned`]).
    Running,
    /// Finished successfully.
    Succeeded,
    /// Finished with an error after any retries.
    Failed,
    /// Not run: the job was still running, or the run was missed under `missed = "skip"`.
    Skipped,
    /// Stopped by shutdown, or the process died while it ran.
    Interrupted,
}

impl RunStatus {
    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Skipped => "skipped",
            RunStatus::Interrupted => "interrupted",
        }
    }

    fn parse(value: String) -> Result<Self, StateError> {
        Ok(match value.as_str() {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "skipped" => RunStatus::Skipped,
            "interrupted" => RunStatus::Interrupted,
            _ => {
                return Err(StateError::Corrupt {
                    what: "run status",
                    value,
                });
            }
        })
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Its scheduled time came.
    Schedule,
    /// One run covering fire times missed while mailroom was down (`missed = "run_once"`).
    CatchUp,
    /// It was due while the previous run was going (`overlap = "queue"`) and ran after it.
    Queued,
    /// `mailroom run-job`.
    Manual,
}

impl Trigger {
    /// The name stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
            Trigger::Queued => "queued",
            Trigger::Manual => "manual",
        }
    }

    fn parse(value: String) -> Result<Self, StateError> {
        Ok(match value.as_str() {
            "schedule" => Trigger::Schedule,
            "catch_up" => Trigger::CatchUp,
            "queued" => Trigger::Queued,
            "manual" => Trigger::Manual,
            _ => {
                return Err(StateError::Corrupt {
                    what: "run trigger",
                    value,
                });
            }
        })
    }
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run about to start or to be recorded as skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Unique id (UUIDv7, so ids sort by creation time).
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// Why it runs.
    pub trigger: Trigger,
    /// The fire time it stands for: the run's `now`.
    pub scheduled_for: DateTime<Utc>,
    /// For catch-up runs, the first missed fire time it covers.
    pub covers_from: Option<DateTime<Utc>>,
}

impl NewRun {
    /// A new run of `job` standing for `scheduled_for`, with a fresh id.
    pub fn new(job: &str, trigger: Trigger, scheduled_for: DateTime<Utc>) -> Self {
        NewRun {
            run_id: uuid::Uuid::now_v7().to_string(),
            job: job.to_string(),
            trigger,
            scheduled_for,
            covers_from: None,
        }
    }
}

/// A row of the run ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Unique id.
    pub run_id: String,
    /// The job's name.
    pub job: String,
    /// Why it ran.
    pub trigger: Trigger,
    /// The fire time it stands for.
    pub scheduled_for: DateTime<Utc>,
    /// For catch-up runs, the first missed fire time covered.
    pub covers_from: Option<DateTime<Utc>>,
    /// When it started (skipped runs: when they were skipped).
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: RunStatus,
    /// Attempts made (1 + retries).
    pub attempts: u32,
    /// The kind of the last error.
    pub error_kind: Option<ErrorKind>,
    /// The last error, or why it was skipped or interrupted.
    pub error: Option<String>,
    /// What it counted.
    pub counters: Counters,
}

/// One job's health, for `mailroom status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSummary {
    /// The job's name.
    pub job: String,
    /// Its newest run, if any.
    pub last_run: Option<RunRecord>,
    /// When it last succeeded.
    pub last_success: Option<DateTime<Utc>>,
    /// Failed runs since the last success.
    pub failures_since_success: u32,
}

const RUN_COLUMNS: &str = "run_id, job, trigger, scheduled_for, covers_from, started_at, \
                           finished_at, status, attempts, error_kind, error, counters";

fn opt_ts(value: Option<DateTime<Utc>>) -> Option<String> {
    value.map(format_ts)
}

fn read_run(row: &Row<'_>) -> rusqlite::Result<Result<RunRecord, StateError>> {
    let raw: (
        String,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = (
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    );
    let status: String = row.get(7)?;
    let attempts: u32 = row.get(8)?;
    let error_kind: Option<String> = row.get(9)?;
    let error: Option<String> = row.get(10)?;
    let counters: String = row.get(11)?;
    Ok((|| {
        let (run_id, job, trigger, scheduled_for, covers_from, started_at, finished_at) = raw;
        Ok(RunRecord {
            run_id,
            job,
            trigger: Trigger::parse(trigger)?,
            scheduled_for: parse_ts("scheduled_for", scheduled_for)?,
            covers_from: covers_from
                .map(|t| parse_ts("covers_from", t))
                .transpose()?,
            started_at: started_at.map(|t| parse_ts("started_at", t)).transpose()?,
            finished_at: finished_at
                .map(|t| parse_ts("finished_at", t))
                .transpose()?,
            status: RunStatus::parse(status)?,
            attempts,
            error_kind: error_kind.as_deref().map(ErrorKind::from_ledger),
            error,
            counters: serde_json::from_str(&counters).map_err(|_| StateError::Corrupt {
                what: "counters",
                value: counters,
            })?,
        })
    })())
}

impl StateStore {
    /// Records a run as started.
    pub fn start_run(&self, run: &NewRun, started_at: DateTime<Utc>) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO runs (run_id, job, trigger, scheduled_for, covers_from, started_at, status, attempts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', 0)",
            params![
                run.run_id,
                run.job,
                run.trigger.as_str(),
                format_ts(run.scheduled_for),
                opt_ts(run.covers_from),
                format_ts(started_at),
            ],
        )?;
        Ok(())
    }

    /// Records that attempt number `attempt` is starting, keeping the previous attempt's
    /// error visible while the run retries.
    pub fn record_attempt(
        &self,
        run_id: &str,
        attempt: u32,
        last_error: Option<(ErrorKind, &str)>,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE runs SET attempts = ?2,
                 error_kind = COALESCE(?3, error_kind), error = COALESCE(?4, error)
             WHERE run_id = ?1",
            params![
                run_id,
                attempt,
                last_error.map(|(kind, _)| kind.as_str()),
                last_error.map(|(_, message)| message),
            ],
        )?;
        Ok(())
    }

    /// Records how a run ended.
    pub fn finish_run(
        &self,
        run_id: &str,
        status: RunStatus,
        finished_at: DateTime<Utc>,
        error: Option<(ErrorKind, &str)>,
        counters: &Counters,
    ) -> Result<(), StateError> {
        let counters = serde_json::to_string(counters).unwrap_or_else(|_| "{}".to_string());
        self.conn().execute(
            "UPDATE runs SET status = ?2, finished_at = ?3, error_kind = ?4, error = ?5, counters = ?6
             WHERE run_id = ?1",
            params![
                run_id,
                status.as_str(),
                format_ts(finished_at),
                error.map(|(kind, _)| kind.as_str()),
                error.map(|(_, message)| message),
                counters,
            ],
        )?;
        Ok(())
    }

    /// Records a run that was due but did not run, and why.
    pub fn record_skipped(
        &self,
        run: &NewRun,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO runs (run_id, job, trigger, scheduled_for, covers_from, started_at, finished_at, status, error)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 'skipped', ?7)",
            params![
                run.run_id,
                run.job,
                run.trigger.as_str(),
                format_ts(run.scheduled_for),
                opt_ts(run.covers_from),
                format_ts(at),
                reason,
            ],
        )?;
        Ok(())
    }

    /// Marks one run that is still `running` as interrupted (a run that already ended is
    /// left as it is).
    pub fn interrupt_run(
        &self,
        run_id: &str,
        at: DateTime<Utc>,
        reason: &str,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?2, error = ?3
             WHERE run_id = ?1 AND status = 'running'",
            params![run_id, format_ts(at), reason],
        )?;
        Ok(())
    }

    /// Marks runs left `running` by a process that died as interrupted; returns how many.
    /// Call only while holding the data directory lock, so no live run is touched.
    pub fn interrupt_abandoned(&self, at: DateTime<Utc>) -> Result<usize, StateError> {
        let n = self.conn().execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?1,
                 error = 'mailroom stopped while this run was in progress'
             WHERE status = 'running'",
            params![format_ts(at)],
        )?;
        Ok(n)
    }

    /// The latest fire time of `job` the scheduler dealt with (ran, failed or skipped).
    /// Manual runs and interrupted runs do not count: an interrupted fire time is still
    /// owed to the schedule.
    pub fn last_handled_fire_time(&self, job: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let value: Option<String> = self
            .conn()
            .query_row(
                "SELECT MAX(scheduled_for) FROM runs
                 WHERE job = ?1 AND trigger != 'manual' AND status != 'interrupted'",
                params![job],
                |row| row.get(0),
            )
            .optional()?
            .flatten();
        value.map(|v| parse_ts("scheduled_for", v)).transpose()
    }

    /// One run by id.
    pub fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StateError> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?1");
        let conn = self.conn();
        let found = conn.query_row(&sql, params![run_id], read_run).optional()?;
        found.transpose()
    }

    /// The newest runs first, of one job or all.
    pub fn recent_runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<RunRecord>, StateError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR job = ?1)
             ORDER BY COALESCE(started_at, scheduled_for) DESC, run_id DESC LIMIT ?2"
        );
        let conn = self.conn();
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(params![job, limit], read_run)?;
        let mut runs = Vec::new();
        for row in rows {
            runs.push(row??);
        }
        Ok(runs)
    }

    /// Health of one job: newest run, last success and failures since.
    pub fn job_summary(&self, job: &str) -> Result<JobSummary, StateError> {
        let last_run = self.recent_runs(Some(job), 1)?.into_iter().next();
        let conn = self.conn();
        let last_success: Option<String> = conn.query_row(
            "SELECT MAX(finished_at) FROM runs WHERE job = ?1 AND status = 'succeeded'",
            params![job],
            |row| row.get(0),
        )?;
        let failures: u32 = conn.query_row(
            "SELECT COUNT(*) FROM runs WHERE job = ?1 AND status = 'failed'
               AND (?2 IS NULL OR finished_at > ?2)",
            params![job, last_success],
            |row| row.get(0),
        )?;
        Ok(JobSummary {
            job: job.to_string(),
            last_run,
            last_success: last_success
                .map(|t| parse_ts("finished_at", t))
                .transpose()?,
            failures_since_success: failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, h, 0, 0)
            .single()
            .expect("valid")
    }

    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = StateStore::open(&dir.path().join("state.db")).expect("open");
        (dir, store)
    }

    #[test]
    fn a_run_is_recorded_from_start_through_retries_to_its_end() {
        let (_dir, store) = store();
        let run = NewRun::new("extract-orders", Trigger::Schedule, t(1));
        store.start_run(&run, t(1)).expect("start");
        store
            .record_attempt(&run.run_id, 1, None)
            .expect("attempt 1");
        store
            .record_attempt(
                &run.run_id,
                2,
                Some((ErrorKind::Transient, "503 from Smile")),
            )
            .expect("attempt 2");
        let counters = Counters::from([("rows".to_string(), 42)]);
        store
            .finish_run(&run.run_id, RunStatus::Succeeded, t(2), None, &counters)
            .expect("finish");

        let record = store.run(&run.run_id).expect("query").expect("row");
        assert_eq!(record.status, RunStatus::Succeeded);
        assert_eq!(record.attempts, 2);
        assert_eq!(record.counters["rows"], 42);
        assert_eq!(record.finished_at, Some(t(2)));
        assert_eq!(record.error, None, "a success clears the retried error");
    }

    #[test]
    fn abandoned_runs_become_interrupted_and_do_not_count_as_handled() {
        let (_dir, store) = store();
        let done = NewRun::new("j", Trigger::Schedule, t(1));
        store.start_run(&done, t(1)).expect("start");
        store
            .finish_run(
                &done.run_id,
                RunStatus::Failed,
                t(1),
                Some((ErrorKind::Terminal, "bad")),
                &Counters::new(),
            )
            .expect("finish");
        let crashed = NewRun::new("j", Trigger::Schedule, t(2));
        store.start_run(&crashed, t(2)).expect("start");
        store
            .start_run(&NewRun::new("j", Trigger::Manual, t(3)), t(3))
            .expect("manual");

        assert_eq!(store.interrupt_abandoned(t(4)).expect("recover"), 2);
        let record = store.run(&crashed.run_id).expect("query").expect("row");
        assert_eq!(record.status, RunStatus::Interrupted);
        assert_eq!(
            store.last_handled_fire_time("j").expect("query"),
            Some(t(1))
        );
        assert_eq!(store.last_handled_fire_time("other").expect("query"), None);
    }

    #[test]
    fn summaries_count_failures_since_the_last_success() {
        let (_dir, store) = store();
        for (hour, status) in [
            (1, RunStatus::Failed),
            (2, RunStatus::Succeeded),
            (3, RunStatus::Failed),
            (4, RunStatus::Failed),
        ] {
            let run = NewRun::new("j", Trigger::Schedule, t(hour));
            store.start_run(&run, t(hour)).expect("start");
            let error = (status == RunStatus::Failed).then_some((ErrorKind::Transient, "timeout"));
            store
                .finish_run(&run.run_id, status, t(hour), error, &Counters::new())
                .expect("finish");
        }
        let summary = store.job_summary("j").expect("summary");
        assert_eq!(summary.last_success, Some(t(2)));
        assert_eq!(summary.failures_since_success, 2);
        assert_eq!(summary.last_run.expect("a run").scheduled_for, t(4));
        let runs = store.recent_runs(None, 10).expect("runs");
        assert_eq!(
            runs.iter().map(|r| r.scheduled_for).collect::<Vec<_>>(),
            [t(4), t(3), t(2), t(1)]
        );
    }
}

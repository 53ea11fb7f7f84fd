//! The enrollment ledger: each person's outcome per platform and sequence, one row per
//! cycle (a person may be enrolled again once the cooldown has passed). A treatment row is
//! written `in_flight` before the platform call that enrolls, so a crash leaves a row that
//! says a call may have happened; it is never blindly re-sent. The arm a person was first
//! assigned stays theirs in later cycles, whatever the holdout fraction becomes.

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{StateError, StateStore, format_ts, parse_ts};

/// Where a person stands in one cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EnrollmentStatus {
    /// Written before the enrolling call; the outcome is not known yet.
    InFlight,
    /// Enrolled on the platform.
    Enrolled,
    /// In the control group: consented and eligible, deliberately not enrolled.
    HeldOut,
    /// Not enrolled for a reason (no consent, unknown on the platform, ...).
    Skipped,
    /// The call failed; eligible again on the next run.
    Failed,
    /// A call may have enrolled them and the platform cannot tell: never re-sent within
    /// the cooldown.
    Unknown,
}

impl EnrollmentStatus {
    /// The ledger's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            EnrollmentStatus::InFlight => "in_flight",
            EnrollmentStatus::Enrolled => "enrolled",
            EnrollmentStatus::HeldOut => "held_out",
            EnrollmentStatus::Skipped => "skipped",
            EnrollmentStatus::Failed => "failed",
            EnrollmentStatus::Unknown => "unknown",
        }
    }

    fn parse(text: String) -> Result<Self, StateError> {
        Ok(match text.as_str() {
            "in_flight" | "pending" => EnrollmentStatus::InFlight,
            "enrolled" => EnrollmentStatus::Enrolled,
            "held_out" => EnrollmentStatus::HeldOut,
            "skipped" | "suppressed" => EnrollmentStatus::Skipped,
            "failed" => EnrollmentStatus::Failed,
            "unknown" => EnrollmentStatus::Unknown,
            _ => {
                return Err(StateError::Corrupt {
                    what: "enrollment status",
                    value: text,
                });
            }
        })
    }

    /// Whether this closes the cycle until the cooldown passes.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            EnrollmentStatus::Enrolled | EnrollmentStatus::HeldOut | EnrollmentStatus::Unknown
        )
    }
}

/// Which group a person was assigned to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arm {
    /// Enrolled.
    Treatment,
    /// The control group.
    Holdout,
}

impl Arm {
    /// The ledger's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Treatment => "treatment",
            Arm::Holdout => "holdout",
        }
    }

    fn parse(text: Option<String>) -> Result<Option<Self>, StateError> {
        match text.as_deref() {
            None => Ok(None),
            Some("treatment") => Ok(Some(Arm::Treatment)),
            Some("holdout") => Ok(Some(Arm::Holdout)),
            Some(other) => Err(StateError::Corrupt {
                what: "enrollment arm",
                value: other.to_string(),
            }),
        }
    }
}

/// One person's row for a platform and sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enrollment {
    /// The job whose step wrote it.
    pub job: String,
    /// The run that wrote it last.
    pub run_id: String,
    /// `smartrmail`, `iterable` or `dotdigital`.
    pub platform: String,
    /// The list, workflow or program.
    pub sequence: String,
    /// The normalized e-mail.
    pub email: String,
    /// 1 for the first cycle, 2 after the first cooldown, ...
    pub cycle: u32,
    /// Where they stand.
    pub status: EnrollmentStatus,
    /// Their arm, once assigned.
    pub arm: Option<Arm>,
    /// Why skipped or failed.
    pub reason: Option<String>,
    /// Calls made for this cycle.
    pub attempts: u32,
    /// When the row was first written.
    pub created_at: DateTime<Utc>,
    /// When they were assigned an arm.
    pub assigned_at: Option<DateTime<Utc>>,
    /// When they were enrolled.
    pub enrolled_at: Option<DateTime<Utc>>,
}

impl Enrollment {
    /// The row's key: platform, sequence, person and cycle.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}#{}",
            self.platform, self.sequence, self.email, self.cycle
        )
    }
}

/// One activate step's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActivationCounts {
    /// People who passed every check this run (before the holdout).
    pub eligible: u64,
    /// Enrolled this run.
    pub enrolled: u64,
    /// Held out this run.
    pub held_out: u64,
    /// Skipped this run.
    pub skipped: u64,
}

const COLUMNS: &str = "job, run_id, platform, sequence, email_normalized, cycle, status, arm, reason, attempts, created_at, assigned_at, enrolled_at";

type StoredRow = (
    String,
    String,
    String,
    String,
    String,
    u32,
    String,
    Option<String>,
    Option<String>,
    u32,
    String,
    Option<String>,
    Option<String>,
);

fn stored(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
        row.get(9)?,
        row.get(10)?,
        row.get(11)?,
        row.get(12)?,
    ))
}

fn read(row: StoredRow) -> Result<Enrollment, StateError> {
    let (
        job,
        run_id,
        platform,
        sequence,
        email,
        cycle,
        status,
        arm,
        reason,
        attempts,
        created,
        assigned,
        enrolled,
    ) = row;
    let at = |what, t: Option<String>| t.map(|t| parse_ts(what, t)).transpose();
    Ok(Enrollment {
        job,
        run_id,
        platform,
        sequence,
        email,
        cycle,
        status: EnrollmentStatus::parse(status)?,
        arm: Arm::parse(arm)?,
        reason,
        attempts,
        created_at: parse_ts("enrollment created_at", created)?,
        assigned_at: at("enrollment assigned_at", assigned)?,
        enrolled_at: at("enrollment enrolled_at", enrolled)?,
    })
}

impl StateStore {
    /// Every person's latest row for `platform` and `sequence`, with the arm of their
    /// earliest assignment carried forward.
    pub fn enrollments(
        &self,
        platform: &str,
        sequence: &str,
    ) -> Result<Vec<Enrollment>, StateError> {
        let conn = self.conn();
        let mut statement = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM enrollments WHERE platform = ?1 AND sequence = ?2
             ORDER BY email_normalized, cycle"
        ))?;
        let rows = statement
            .query_map(params![platform, sequence], stored)?
            .collect::<Result<Vec<_>, _>>()?;
        let mut latest: Vec<Enrollment> = Vec::new();
        for row in rows {
            let mut row = read(row)?;
            if let Some(previous) = latest.last_mut().filter(|p| p.email == row.email) {
                row.arm = previous.arm.or(row.arm);
                *previous = row;
            } else {
                latest.push(row);
            }
        }
        Ok(latest)
    }

    /// Every row of every cycle, for the warehouse's `winback_enrollments`.
    pub fn all_enrollments(&self) -> Result<Vec<Enrollment>, StateError> {
        let conn = self.conn();
        let mut statement = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM enrollments ORDER BY platform, sequence, email_normalized, cycle"
        ))?;
        let rows = statement
            .query_map([], stored)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(read).collect()
    }

    /// Writes `rows` as they now stand (inserted, or replacing the same key), in one
    /// transaction.
    pub fn record_enrollments(&self, rows: &[Enrollment]) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut statement = tx.prepare(
                "INSERT INTO enrollments (idempotency_key, job, run_id, platform, sequence, email_normalized, cycle, status, arm, reason, attempts, created_at, assigned_at, enrolled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (idempotency_key) DO UPDATE SET
                     run_id = excluded.run_id, status = excluded.status, arm = excluded.arm,
                     reason = excluded.reason, attempts = excluded.attempts,
                     assigned_at = excluded.assigned_at, enrolled_at = excluded.enrolled_at",
            )?;
            for row in rows {
                statement.execute(params![
                    row.key(),
                    row.job,
                    row.run_id,
                    row.platform,
                    row.sequence,
                    row.email,
                    row.cycle,
                    row.status.as_str(),
                    row.arm.map(Arm::as_str),
                    row.reason,
                    row.attempts,
                    format_ts(row.created_at),
                    row.assigned_at.map(format_ts),
                    row.enrolled_at.map(format_ts),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records one activate step's counts.
    pub fn record_activation_run(
        &self,
        run_id: &str,
        job: &str,
        platform: &str,
        sequence: &str,
        counts: ActivationCounts,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO activation_runs (run_id, job, platform, sequence, eligible, enrolled, held_out, skipped, at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                run_id,
                job,
                platform,
                sequence,
                counts.eligible as i64,
                counts.enrolled as i64,
                counts.held_out as i64,
                counts.skipped as i64,
                format_ts(at),
            ],
        )?;
        Ok(())
    }

    /// The eligible counts of the last `n` activate steps for `platform` and `sequence`,
    /// newest first.
    pub fn recent_eligible(
        &self,
        platform: &str,
        sequence: &str,
        n: usize,
    ) -> Result<Vec<u64>, StateError> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT eligible FROM activation_runs WHERE platform = ?1 AND sequence = ?2
             ORDER BY at DESC LIMIT ?3",
        )?;
        let counts = statement
            .query_map(params![platform, sequence, n as i64], |row| {
                row.get::<_, i64>(0)
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(counts.into_iter().map(|n| n.max(0) as u64).collect())
    }
}

/// How many people of a job's sequence stand where, for `mailroom status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentTally {
    /// `smartrmail`, `iterable` or `dotdigital`.
    pub platform: String,
    /// The list, workflow or program.
    pub sequence: String,
    /// People per status of their latest cycle.
    pub by_status: Vec<(EnrollmentStatus, u64)>,
    /// When the ledger last changed for it.
    pub last_run: String,
}

impl StateStore {
    /// Each sequence `job` enrolls into, with how many people stand where (latest cycle).
    pub fn enrollment_tallies(&self, job: &str) -> Result<Vec<EnrollmentTally>, StateError> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT platform, sequence, status, COUNT(*), MAX(run_id) FROM enrollments e
             WHERE job = ?1 AND cycle = (SELECT MAX(cycle) FROM enrollments l
                 WHERE l.platform = e.platform AND l.sequence = e.sequence
                 AND l.email_normalized = e.email_normalized)
             GROUP BY platform, sequence, status ORDER BY platform, sequence, status",
        )?;
        let rows = statement
            .query_map(params![job], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut tallies: Vec<EnrollmentTally> = Vec::new();
        for (platform, sequence, status, n, run) in rows {
            let status = EnrollmentStatus::parse(status)?;
            match tallies
                .last_mut()
                .filter(|t| t.platform == platform && t.sequence == sequence)
            {
                Some(tally) => {
                    tally.by_status.push((status, n.max(0) as u64));
                    tally.last_run = tally.last_run.clone().max(run);
                }
                None => tallies.push(EnrollmentTally {
                    platform,
                    sequence,
                    by_status: vec![(status, n.max(0) as u64)],
                    last_run: run,
                }),
            }
        }
        Ok(tallies)
    }

    /// Records one call of `kind` to `platform` that counts against an allowance.
    pub fn record_platform_call(
        &self,
        platform: &str,
        kind: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT INTO platform_calls (platform, kind, at) VALUES (?1, ?2, ?3)",
            params![platform, kind, format_ts(at)],
        )?;
        Ok(())
    }

    /// Calls of `kind` to `platform` made at or after `since`.
    pub fn platform_calls_since(
        &self,
        platform: &str,
        kind: &str,
        since: DateTime<Utc>,
    ) -> Result<u64, StateError> {
        let n: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM platform_calls WHERE platform = ?1 AND kind = ?2 AND at >= ?3",
            params![platform, kind, format_ts(since)],
            |row| row.get(0),
        )?;
        Ok(n.max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(email: &str, cycle: u32, status: EnrollmentStatus, arm: Option<Arm>) -> Enrollment {
        let at: DateTime<Utc> = "2026-11-01T06:00:00Z".parse().expect("time");
        Enrollment {
            job: "daily-winback".into(),
            run_id: "run-1".into(),
            platform: "smartrmail".into(),
            sequence: "l_winback".into(),
            email: email.into(),
            cycle,
            status,
            arm,
            reason: None,
            attempts: 0,
            created_at: at,
            assigned_at: arm.map(|_| at),
            enrolled_at: None,
        }
    }

    #[test]
    fn the_latest_cycle_is_read_with_the_first_arm_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateStore::open(&dir.path().join("state.db")).expect("state");
        state
            .record_enrollments(&[
                row("a@x.com", 1, EnrollmentStatus::HeldOut, Some(Arm::Holdout)),
                row("a@x.com", 2, EnrollmentStatus::Skipped, None),
                row(
                    "b@x.com",
                    1,
                    EnrollmentStatus::InFlight,
                    Some(Arm::Treatment),
                ),
            ])
            .expect("write");
        let mut b = row(
            "b@x.com",
            1,
            EnrollmentStatus::Enrolled,
            Some(Arm::Treatment),
        );
        b.attempts = 1;
        state.record_enrollments(&[b]).expect("update");
        let latest = state.enrollments("smartrmail", "l_winback").expect("read");
        assert_eq!(latest.len(), 2);
        assert_eq!(
            (latest[0].cycle, latest[0].status),
            (2, EnrollmentStatus::Skipped)
        );
        assert_eq!(latest[0].arm, Some(Arm::Holdout), "the first arm stays");
        assert_eq!(latest[1].status, EnrollmentStatus::Enrolled);
        assert_eq!(latest[1].attempts, 1);
        assert_eq!(state.all_enrollments().expect("all").len(), 3);
        assert!(
            state
                .enrollments("iterable", "l_winback")
                .expect("read")
                .is_empty()
        );
    }

    #[test]
    fn activation_runs_give_recent_eligible_counts_newest_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateStore::open(&dir.path().join("state.db")).expect("state");
        for (i, eligible) in [10u64, 12, 11].into_iter().enumerate() {
            let at = DateTime::<Utc>::from_timestamp(1_800_000_000 + i as i64 * 86_400, 0)
                .expect("time");
            let counts = ActivationCounts {
                eligible,
                ..ActivationCounts::default()
            };
            state
                .record_activation_run(&format!("run-{i}"), "j", "smartrmail", "l", counts, at)
                .expect("write");
        }
        assert_eq!(
            state.recent_eligible("smartrmail", "l", 2).expect("read"),
            [11, 12]
        );
    }
}

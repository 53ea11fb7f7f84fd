//! The delivery ledger: one row per (job, report, period, destination, target), written
//! `in_flight` before anything is sent and marked `sent` (with where it went: a sheet range,
//! a message ts) after. A row left `in_flight` by a crash or an unknown outcome tells the
//! next attempt to look in the destination before sending again; a `sent` row is never
//! sent again; a `failed` one is retried by the next attempt or run.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{StateError, StateStore, format_ts, parse_ts};

/// What a delivery is: its identity and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The job.
    pub job: String,
    /// The report (the SQL step's name).
    pub report: String,
    /// The period the answer stands for (the schedule's fire time, RFC 3339).
    pub period: String,
    /// `sheets` or `slack`.
    pub destination: String,
    /// The tab or channel.
    pub target: String,
}

impl Delivery {
    /// The delivery's key, the same for every attempt and run of its period; kept in the
    /// destination too, so it can be found there without the ledger.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.job, self.report, self.period, self.destination, self.target
        )
    }
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Recorded before sending; the outcome is not known yet.
    InFlight,
    /// Sent and confirmed.
    Sent,
    /// Failed; the next attempt or run tries again.
    Failed,
    /// The last attempt ended without an answer and the destination cannot be asked (an
    /// incoming webhook): it may have arrived, so it is never sent again.
    Unknown,
}

impl DeliveryStatus {
    /// The ledger's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::InFlight => "in_flight",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Unknown => "unknown",
        }
    }

    fn parse(text: String) -> Result<Self, StateError> {
        match text.as_str() {
            "in_flight" => Ok(DeliveryStatus::InFlight),
            "sent" => Ok(DeliveryStatus::Sent),
            "failed" => Ok(DeliveryStatus::Failed),
            "unknown" => Ok(DeliveryStatus::Unknown),
            _ => Err(StateError::Corrupt {
                what: "delivery status",
                value: text,
            }),
        }
    }
}

/// A delivery as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    /// What it is.
    pub delivery: Delivery,
    /// The run that last tried it.
    pub run_id: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// How many times it was begun.
    pub attempts: u32,
    /// Rows sent.
    pub rows: Option<u64>,
    /// Where it went: the sheet range, the Slack message ts.
    pub remote_ref: Option<String>,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was first begun.
    pub created_at: DateTime<Utc>,
    /// When it was confirmed.
    pub sent_at: Option<DateTime<Utc>>,
}

/// The schema version whose deliveries have `report` and `period` columns.
const NAMED_DELIVERIES_VERSION: i64 = 3;

const COLUMNS: &str = "job, report, period, destination, target, run_id, status, attempts, rows, remote_ref, last_error, created_at, sent_at";

/// A ledger row as SQLite gives it, before its text fields are read.
struct StoredRow {
    delivery: Delivery,
    run_id: String,
    status: String,
    attempts: u32,
    rows: Option<i64>,
    remote_ref: Option<String>,
    last_error: Option<String>,
    created_at: String,
    sent_at: Option<String>,
}

fn stored(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredRow> {
    Ok(StoredRow {
        delivery: Delivery {
            job: row.get(0)?,
            report: row.get(1)?,
            period: row.get(2)?,
            destination: row.get(3)?,
            target: row.get(4)?,
        },
        run_id: row.get(5)?,
        status: row.get(6)?,
        attempts: row.get(7)?,
        rows: row.get(8)?,
        remote_ref: row.get(9)?,
        last_error: row.get(10)?,
        created_at: row.get(11)?,
        sent_at: row.get(12)?,
    })
}

impl StoredRow {
    fn read(self) -> Result<DeliveryRecord, StateError> {
        Ok(DeliveryRecord {
            delivery: self.delivery,
            run_id: self.run_id,
            status: DeliveryStatus::parse(self.status)?,
            attempts: self.attempts,
            rows: self.rows.and_then(|n| u64::try_from(n).ok()),
            remote_ref: self.remote_ref,
            last_error: self.last_error,
            created_at: parse_ts("delivery created_at", self.created_at)?,
            sent_at: self
                .sent_at
                .map(|t| parse_ts("delivery sent_at", t))
                .transpose()?,
        })
    }
}

impl StateStore {
    /// The ledger's row for `delivery`, if it was ever begun.
    pub fn delivery(&self, delivery: &Delivery) -> Result<Option<DeliveryRecord>, StateError> {
        let found = self
            .conn()
            .query_row(
                &format!("SELECT {COLUMNS} FROM deliveries WHERE idempotency_key = ?1"),
                params![delivery.key()],
                stored,
            )
            .optional()?;
        found.map(StoredRow::read).transpose()
    }

    /// Records `delivery` as in flight for `run_id` before anything is sent: a new row, or
    /// one more attempt of a row that was not sent. Returns the row as it now stands; a
    /// `sent` row is returned unchanged (the caller sends nothing).
    pub fn begin_delivery(
        &self,
        delivery: &Delivery,
        run_id: &str,
        at: DateTime<Utc>,
    ) -> Result<DeliveryRecord, StateError> {
        self.conn().execute(
            "INSERT INTO deliveries (idempotency_key, run_id, job, report, period, destination, target, status, attempts, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'in_flight', 1, ?8)
             ON CONFLICT (idempotency_key) DO UPDATE SET
                 run_id = excluded.run_id, status = 'in_flight', attempts = attempts + 1
             WHERE status != 'sent'",
            params![
                delivery.key(),
                run_id,
                delivery.job,
                delivery.report,
                delivery.period,
                delivery.destination,
                delivery.target,
                format_ts(at)
            ],
        )?;
        self.delivery(delivery)?.ok_or_else(|| StateError::Corrupt {
            what: "delivery row (gone right after it was written)",
            value: delivery.key(),
        })
    }

    /// Marks `delivery` sent: `rows` rows, to `remote_ref`.
    pub fn delivery_sent(
        &self,
        delivery: &Delivery,
        rows: u64,
        remote_ref: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE deliveries SET status = 'sent', rows = ?2, remote_ref = ?3, last_error = NULL, sent_at = ?4
             WHERE idempotency_key = ?1",
            params![delivery.key(), rows as i64, remote_ref, format_ts(at)],
        )?;
        Ok(())
    }

    /// Marks `delivery` as of unknown outcome, with why, unless it was sent meanwhile.
    pub fn delivery_unknown(&self, delivery: &Delivery, error: &str) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE deliveries SET status = 'unknown', last_error = ?2
             WHERE idempotency_key = ?1 AND status != 'sent'",
            params![delivery.key(), error],
        )?;
        Ok(())
    }

    /// Marks `delivery` failed with `error`, unless it was sent meanwhile.
    pub fn delivery_failed(&self, delivery: &Delivery, error: &str) -> Result<(), StateError> {
        self.conn().execute(
            "UPDATE deliveries SET status = 'failed', last_error = ?2
             WHERE idempotency_key = ?1 AND status != 'sent'",
            params![delivery.key(), error],
        )?;
        Ok(())
    }

    /// `job`'s most recent deliveries, newest first.
    pub fn recent_deliveries(
        &self,
        job: &str,
        limit: u32,
    ) -> Result<Vec<DeliveryRecord>, StateError> {
        let conn = self.conn();
        // A database from before the migration that names reports and periods (read-only
        // readers cannot migrate it) holds no deliveries: no build before it wrote any.
        let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version < NAMED_DELIVERIES_VERSION {
            return Ok(Vec::new());
        }
        let mut statement = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM deliveries WHERE job = ?1 ORDER BY created_at DESC, idempotency_key LIMIT ?2"
        ))?;
        let rows = statement.query_map(params![job, limit], stored)?;
        let mut records = Vec::new();
        for row in rows {
            records.push(row?.read()?);
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weekly(period: &str) -> Delivery {
        Delivery {
            job: "weekly-email-report".into(),
            report: "weekly".into(),
            period: period.into(),
            destination: "sheets".into(),
            target: "Weekly email".into(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_delivery_goes_in_flight_then_sent_and_is_never_begun_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateStore::open(&dir.path().join("state.db")).expect("state");
        let delivery = weekly("2026-11-30T08:00:00+11:00");
        assert_eq!(state.delivery(&delivery).expect("read"), None);

        let begun = state
            .begin_delivery(&delivery, "run-1", at("2026-11-29T21:00:00Z"))
            .expect("begin");
        assert_eq!(
            (begun.status, begun.attempts),
            (DeliveryStatus::InFlight, 1)
        );
        state
            .delivery_failed(&delivery, "HTTP 503")
            .expect("failed");
        let again = state
            .begin_delivery(&delivery, "run-2", at("2026-11-29T21:05:00Z"))
            .expect("begin again");
        assert_eq!(
            (again.status, again.attempts),
            (DeliveryStatus::InFlight, 2)
        );
        assert_eq!(again.run_id, "run-2");
        assert_eq!(again.last_error.as_deref(), Some("HTTP 503"));

        state
            .delivery_sent(
                &delivery,
                12,
                "'Weekly email'!A2:H13",
                at("2026-11-29T21:05:02Z"),
            )
            .expect("sent");
        state
            .delivery_failed(&delivery, "late error")
            .expect("ignored");
        let sent = state
            .begin_delivery(&delivery, "run-3", at("2026-11-30T21:00:00Z"))
            .expect("begin after sent");
        assert_eq!(
            sent.status,
            DeliveryStatus::Sent,
            "a sent delivery stays sent"
        );
        assert_eq!(sent.attempts, 2);
        assert_eq!(sent.rows, Some(12));
        assert_eq!(sent.remote_ref.as_deref(), Some("'Weekly email'!A2:H13"));
        assert_eq!(sent.last_error, None);

        let next = weekly("2026-12-07T08:00:00+11:00");
        state
            .begin_delivery(&next, "run-4", at("2026-12-06T21:00:00Z"))
            .expect("next period");
        let recent = state
            .recent_deliveries("weekly-email-report", 10)
            .expect("recent");
        let periods: Vec<&str> = recent.iter().map(|r| r.delivery.period.as_str()).collect();
        assert_eq!(
            periods,
            ["2026-12-07T08:00:00+11:00", "2026-11-30T08:00:00+11:00"]
        );
    }
}

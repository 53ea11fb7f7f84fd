//! Totals over the ledgers, for the status server's `/metrics` and page: runs by job and
//! status, run durations, rows per table, deliveries and enrollments by outcome, rows
//! loaded per day. Each is one query; nothing is kept in memory between scrapes.

use chrono::{DateTime, Duration, Utc};
use rusqlite::params;

use super::{StateError, StateStore, format_ts, parse_ts};

/// Everything `/metrics` reports from the state database.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LedgerTotals {
    /// (job, status, runs).
    pub runs: Vec<(String, String, u64)>,
    /// (job, seconds) of each finished run of the last 30 days.
    pub durations: Vec<(String, f64)>,
    /// (counter, total) of every `rows.*` and `quarantined` counter over all runs.
    pub counters: Vec<(String, u64)>,
    /// (destination, status, deliveries).
    pub deliveries: Vec<(String, String, u64)>,
    /// (platform, sequence, status, people), each person's latest cycle.
    pub enrollments: Vec<(String, String, String, u64)>,
    /// (job, when it last succeeded).
    pub last_success: Vec<(String, DateTime<Utc>)>,
}

impl StateStore {
    /// The ledgers' totals.
    pub fn ledger_totals(&self, now: DateTime<Utc>) -> Result<LedgerTotals, StateError> {
        let conn = self.conn();
        let mut totals = LedgerTotals::default();
        let mut q = conn.prepare("SELECT job, status, COUNT(*) FROM runs GROUP BY job, status")?;
        totals.runs = q
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })?
            .collect::<Result<_, _>>()?;
        let mut q = conn.prepare(
            "SELECT job, started_at, finished_at FROM runs
             WHERE finished_at IS NOT NULL AND started_at IS NOT NULL AND started_at >= ?1",
        )?;
        let rows: Vec<(String, String, String)> = q
            .query_map(params![format_ts(now - Duration::days(30))], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect::<Result<_, _>>()?;
        for (job, started, finished) in rows {
            let (started, finished) = (
                parse_ts("run started_at", started)?,
                parse_ts("run finished_at", finished)?,
            );
            totals
                .durations
                .push((job, (finished - started).num_milliseconds() as f64 / 1000.0));
        }
        let mut q = conn.prepare(
            "SELECT c.key, SUM(c.value) FROM runs, json_each(runs.counters) AS c
             WHERE c.key LIKE 'rows.%' OR c.key = 'quarantined' GROUP BY c.key",
        )?;
        totals.counters = q
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)?.max(0) as u64)))?
            .collect::<Result<_, _>>()?;
        let mut q = conn.prepare(
            "SELECT destination, status, COUNT(*) FROM deliveries GROUP BY destination, status",
        )?;
        totals.deliveries = q
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)?.max(0) as u64))
            })?
            .collect::<Result<_, _>>()?;
        let mut q = conn.prepare(
            "SELECT platform, sequence, status, COUNT(*) FROM enrollments e
             WHERE cycle = (SELECT MAX(cycle) FROM enrollments l WHERE l.platform = e.platform
                 AND l.sequence = e.sequence AND l.email_normalized = e.email_normalized)
             GROUP BY platform, sequence, status",
        )?;
        totals.enrollments = q
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, i64>(3)?.max(0) as u64,
                ))
            })?
            .collect::<Result<_, _>>()?;
        let mut q = conn.prepare(
            "SELECT job, MAX(finished_at) FROM runs WHERE status = 'succeeded' GROUP BY job",
        )?;
        let rows: Vec<(String, String)> = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (job, at) in rows {
            totals
                .last_success
                .push((job, parse_ts("run finished_at", at)?));
        }
        Ok(totals)
    }

    /// Rows loaded per UTC day over the last `days` days, oldest first (days with none
    /// included).
    pub fn rows_per_day(
        &self,
        now: DateTime<Utc>,
        days: i64,
    ) -> Result<Vec<(String, u64)>, StateError> {
        let conn = self.conn();
        let mut q = conn.prepare(
            "SELECT substr(runs.started_at, 1, 10) AS day, SUM(c.value)
             FROM runs, json_each(runs.counters) AS c
             WHERE c.key LIKE 'rows.%' AND runs.started_at >= ?1 GROUP BY day",
        )?;
        let since = now - Duration::days(days - 1);
        let found: std::collections::BTreeMap<String, i64> = q
            .query_map(
                params![format_ts(
                    since
                        .date_naive()
                        .and_hms_opt(0, 0, 0)
                        .map_or(since, |t| t.and_utc())
                )],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .collect::<Result<_, _>>()?;
        Ok((0..days)
            .map(|i| {
                let day = (since + Duration::days(i)).format("%Y-%m-%d").to_string();
                let rows = found.get(&day).copied().unwrap_or(0).max(0) as u64;
                (day, rows)
            })
            .collect())
    }
}

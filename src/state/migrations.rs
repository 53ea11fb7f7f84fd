//! Versioned schema migrations for `state.db`, applied in order inside transactions.
//!
//! The applied version is SQLite's `user_version`. Migrations are append-only: a released
//! migration is never edited, a change is a new one. A database from a newer mailroom is
//! refused rather than guessed at.

use rusqlite::Connection;

use super::StateError;

/// Each migration's name and SQL, in order; its version is its position plus one.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "run ledger, cursors, delivery and enrollment ledgers",
        r#"
    -- One row per run of a job: scheduled, caught up, queued, manual, or skipped.
    CREATE TABLE runs (
        run_id        TEXT PRIMARY KEY,
        job           TEXT NOT NULL,
        trigger       TEXT NOT NULL,     -- schedule | catch_up | queued | manual
        scheduled_for TEXT NOT NULL,     -- the fire time the run stands for: its `now`
        covers_from   TEXT,              -- catch-up runs: the first missed fire time
        started_at    TEXT,
        finished_at   TEXT,
        status        TEXT NOT NULL,     -- running | succeeded | failed | skipped | interrupted
        attempts      INTEGER NOT NULL DEFAULT 0,
        error_kind    TEXT,              -- config | transient | terminal | bug
        error         TEXT,
        counters      TEXT NOT NULL DEFAULT '{}'  -- JSON object of named counts
    );
    CREATE INDEX runs_by_job ON runs (job, scheduled_for);
    CREATE INDEX runs_by_start ON runs (started_at);

    -- Incremental extraction position per stream. Moves only with the data it covers.
    CREATE TABLE cursors (
        source     TEXT NOT NULL,
        stream     TEXT NOT NULL,
        value      TEXT NOT NULL,
        run_id     TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        PRIMARY KEY (source, stream)
    );

    -- Every Sheets append and Slack post, keyed so a retry or restart never sends twice.
    CREATE TABLE deliveries (
        idempotency_key TEXT PRIMARY KEY,
        run_id          TEXT NOT NULL,
        job             TEXT NOT NULL,
        destination     TEXT NOT NULL,   -- sheets | slack
        target          TEXT NOT NULL,   -- sheet tab or channel
        status          TEXT NOT NULL,   -- pending | sent | failed
        attempts        INTEGER NOT NULL DEFAULT 0,
        rows            INTEGER,
        remote_ref      TEXT,            -- updated range, message ts, file id
        last_error      TEXT,
        created_at      TEXT NOT NULL,
        sent_at         TEXT
    );
    CREATE INDEX deliveries_by_run ON deliveries (run_id);

    -- Every win-back enrollment, keyed per customer, platform and sequence.
    CREATE TABLE enrollments (
        idempotency_key  TEXT PRIMARY KEY,
        run_id           TEXT NOT NULL,
        job              TEXT NOT NULL,
        platform         TEXT NOT NULL,  -- smartrmail | iterable | dotdigital
        sequence         TEXT NOT NULL,  -- list, workflow or program id
        email_normalized TEXT NOT NULL,
        status           TEXT NOT NULL,  -- pending | enrolled | suppressed | failed
        reason           TEXT,           -- why suppressed or failed
        attempts         INTEGER NOT NULL DEFAULT 0,
        created_at       TEXT NOT NULL,
        enrolled_at      TEXT
    );
    CREATE INDEX enrollments_by_run ON enrollments (run_id);
    CREATE INDEX enrollments_by_customer ON enrollments (platform, email_normalized);
    "#,
    ),
    (
        "journal of warehouse loads in flight",
        r#"
    -- A BigQuery load of one stream, written before its first job is sent and removed when
    -- its last job is done (the cursor moving in the same transaction). One left behind by a
    -- crash names the jobs to check before anything is sent again.
    CREATE TABLE warehouse_loads (
        load_key   TEXT PRIMARY KEY,     -- run_id/source/stream
        run_id     TEXT NOT NULL,
        source     TEXT NOT NULL,
        stream     TEXT NOT NULL,
        plan       TEXT NOT NULL,        -- JSON: job ids in order, staging tables
        cursor     TEXT,                 -- where the stream's cursor moves when all jobs are done
        created_at TEXT NOT NULL
    );
    "#,
    ),
    (
        "deliveries name their report and period",
        r#"
    -- A delivery is one (job, report, period, destination, target); its key says so. Status
    -- moves in_flight → sent, or in_flight → failed (retried by the next attempt or run).
    ALTER TABLE deliveries ADD COLUMN report TEXT NOT NULL DEFAULT '';
    ALTER TABLE deliveries ADD COLUMN period TEXT NOT NULL DEFAULT '';
    CREATE INDEX deliveries_by_job ON deliveries (job, created_at);
    "#,
    ),
    (
        "enrollments carry their arm, cycle and assignment; activation runs are counted",
        r#"
    -- One row per person, platform, sequence and cycle (a new cycle once the cooldown has
    -- passed). Status: in_flight (written before the platform call) → enrolled | failed |
    -- unknown; held_out and skipped are decided without a call.
    ALTER TABLE enrollments ADD COLUMN cycle INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE enrollments ADD COLUMN arm TEXT;             -- treatment | holdout
    ALTER TABLE enrollments ADD COLUMN assigned_at TEXT;
    CREATE INDEX enrollments_by_sequence ON enrollments (platform, sequence, email_normalized, cycle);
    -- Each activate step's counts, for the anomaly guard's median of recent runs.
    CREATE TABLE activation_runs (
        run_id    TEXT NOT NULL,
        job       TEXT NOT NULL,
        platform  TEXT NOT NULL,
        sequence  TEXT NOT NULL,
        eligible  INTEGER NOT NULL,
        enrolled  INTEGER NOT NULL,
        held_out  INTEGER NOT NULL,
        skipped   INTEGER NOT NULL,
        at        TEXT NOT NULL,
        PRIMARY KEY (run_id, platform, sequence)
    );
    "#,
    ),
    (
        "platform calls with an allowance",
        r#"
    -- Calls a platform allows only so many of (Dotdigital: 20 enrolments an hour), written
    -- before each is sent so the allowance left is known across runs and restarts.
    CREATE TABLE platform_calls (
        platform TEXT NOT NULL,
        kind     TEXT NOT NULL,
        at       TEXT NOT NULL
    );
    CREATE INDEX platform_calls_by_kind ON platform_calls (platform, kind, at);
    "#,
    ),
    (
        "loyalty fields as last written to each platform",
        r#"
    -- The value of each loyalty field last written for a person on a platform (JSON), so a
    -- sync sends only what changed; field '' with value 'absent' marks someone the platform
    -- does not know (looked for again after a week).
    CREATE TABLE loyalty_synced (
        platform         TEXT NOT NULL,
        email_normalized TEXT NOT NULL,
        field            TEXT NOT NULL,
        value            TEXT NOT NULL,
        synced_at        TEXT NOT NULL,
        PRIMARY KEY (platform, email_normalized, field)
    );
    "#,
    ),
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to [`CURRENT_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<(), StateError> {
    let found: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if found > CURRENT_VERSION {
        return Err(StateError::NewerSchema {
            found,
            supported: CURRENT_VERSION,
        });
    }
    for (index, (name, sql)) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let tx = conn.transaction()?;
        tx.execute_batch(sql)
            .map_err(|source| StateError::Migration {
                version,
                name,
                source,
            })?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, name, "applied state migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_apply_once_and_refuse_newer_databases() {
        let mut conn = Connection::open_in_memory().expect("in-memory db");
        migrate(&mut conn).expect("first migration");
        migrate(&mut conn).expect("second call is a no-op");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, CURRENT_VERSION);

        conn.pragma_update(None, "user_version", CURRENT_VERSION + 1)
            .expect("bump");
        let err = migrate(&mut conn).expect_err("newer schema");
        assert!(err.to_string().contains("newer mailroom"), "{err}");
    }
}

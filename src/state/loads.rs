//! Cursors kept in the state database (for warehouses that cannot hold them with the data)
//! and the journal of warehouse loads in flight: a load is written down with its job ids
//! before the first is sent, and its cursor moves in the same transaction that removes it.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{StateError, StateStore, format_ts, parse_ts};

/// A warehouse load written down before its jobs were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLoad {
    /// `run_id/source/stream`.
    pub key: String,
    /// The run.
    pub run_id: String,
    /// The source.
    pub source: String,
    /// The stream.
    pub stream: String,
    /// The warehouse's plan (JSON): which jobs, which staging tables.
    pub plan: String,
    /// The cursor the stream moves to once every job is done.
    pub cursor: Option<DateTime<Utc>>,
}

impl StateStore {
    /// A stream's cursor kept in the state database.
    pub fn cursor(&self, source: &str, stream: &str) -> Result<Option<DateTime<Utc>>, StateError> {
        let value: Option<String> = self
            .conn()
            .query_row(
                "SELECT value FROM cursors WHERE source = ?1 AND stream = ?2",
                params![source, stream],
                |row| row.get(0),
            )
            .optional()?;
        value.map(|v| parse_ts("cursor", v)).transpose()
    }

    /// Writes a load down before anything is sent (replacing an earlier entry of the same
    /// run and stream).
    pub fn begin_load(&self, load: &PendingLoad, at: DateTime<Utc>) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO warehouse_loads (load_key, run_id, source, stream, plan, cursor, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                load.key,
                load.run_id,
                load.source,
                load.stream,
                load.plan,
                load.cursor.map(format_ts),
                format_ts(at)
            ],
        )?;
        Ok(())
    }

    /// Loads written down and not yet finished or abandoned, oldest first.
    pub fn pending_loads(&self) -> Result<Vec<PendingLoad>, StateError> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT load_key, run_id, source, stream, plan, cursor FROM warehouse_loads ORDER BY created_at",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, Option<String>>(5)?,
            ))
        })?;
        let mut loads = Vec::new();
        for row in rows {
            let (key, run_id, source, stream, plan, cursor) = row?;
            loads.push(PendingLoad {
                key,
                run_id,
                source,
                stream,
                plan,
                cursor: cursor.map(|c| parse_ts("load cursor", c)).transpose()?,
            });
        }
        Ok(loads)
    }

    /// Every job of the load is done: its cursor moves (when it has one, and only forward:
    /// a load finished late by recovery never takes a cursor back) and it leaves the
    /// journal, in one transaction.
    pub fn finish_load(&self, load: &PendingLoad, at: DateTime<Utc>) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        if let Some(cursor) = load.cursor {
            tx.execute(
                "INSERT INTO cursors (source, stream, value, run_id, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (source, stream) DO UPDATE SET value = ?3, run_id = ?4, updated_at = ?5
                 WHERE excluded.value > cursors.value",
                params![load.source, load.stream, format_ts(cursor), load.run_id, format_ts(at)],
            )?;
        }
        tx.execute(
            "DELETE FROM warehouse_loads WHERE load_key = ?1",
            params![load.key],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Drops a load from the journal without moving its cursor (it did not finish).
    pub fn abandon_load(&self, key: &str) -> Result<(), StateError> {
        self.conn().execute(
            "DELETE FROM warehouse_loads WHERE load_key = ?1",
            params![key],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_load_moves_its_cursor_and_leaves_the_journal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = StateStore::open(&dir.path().join("state.db")).expect("open");
        let at: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().expect("time");
        let load = PendingLoad {
            key: "r1/smile/customers".into(),
            run_id: "r1".into(),
            source: "smile".into(),
            stream: "customers".into(),
            plan: "{}".into(),
            cursor: Some(at),
        };
        state.begin_load(&load, at).expect("begin");
        assert_eq!(
            state.pending_loads().expect("pending"),
            std::slice::from_ref(&load)
        );
        assert_eq!(state.cursor("smile", "customers").expect("cursor"), None);
        state.finish_load(&load, at).expect("finish");
        assert!(state.pending_loads().expect("pending").is_empty());
        assert_eq!(
            state.cursor("smile", "customers").expect("cursor"),
            Some(at)
        );
        let earlier = PendingLoad {
            cursor: Some("2026-11-01T00:00:00Z".parse().expect("time")),
            ..load.clone()
        };
        state.begin_load(&earlier, at).expect("again");
        state.finish_load(&earlier, at).expect("finish");
        assert_eq!(
            state.cursor("smile", "customers").expect("cursor"),
            Some(at),
            "a cursor never moves back"
        );
        state.begin_load(&load, at).expect("again");
        state.abandon_load(&load.key).expect("abandon");
        assert!(state.pending_loads().expect("pending").is_empty());
    }
}

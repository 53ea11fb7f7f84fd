//! The loyalty fields last written to each platform, per person: what a sync compares
//! Smile's values with, so it sends only what changed (a second run with unchanged data
//! writes nothing), and who the platform did not know.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rusqlite::params;
use serde_json::Value;

use super::{StateError, StateStore, format_ts, parse_ts};

/// The field name that marks a person the platform does not know.
const ABSENT: &str = "";

/// What the ledger holds for one platform.
#[derive(Debug, Default)]
pub struct SyncedFields {
    /// Field values last written, by person.
    pub values: HashMap<String, BTreeMap<String, Value>>,
    /// People the platform did not know, with when that was seen.
    pub absent: HashMap<String, DateTime<Utc>>,
}

impl StateStore {
    /// Every value last written to `platform`, and who it did not know.
    pub fn loyalty_synced(&self, platform: &str) -> Result<SyncedFields, StateError> {
        let conn = self.conn();
        let mut statement = conn.prepare(
            "SELECT email_normalized, field, value, synced_at FROM loyalty_synced WHERE platform = ?1",
        )?;
        let rows = statement
            .query_map(params![platform], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut synced = SyncedFields::default();
        for (email, field, value, at) in rows {
            if field == ABSENT {
                synced
                    .absent
                    .insert(email, parse_ts("loyalty synced_at", at)?);
                continue;
            }
            let value = serde_json::from_str(&value).map_err(|_| StateError::Corrupt {
                what: "loyalty field value",
                value,
            })?;
            synced.values.entry(email).or_default().insert(field, value);
        }
        Ok(synced)
    }

    /// Records `fields` as written for `email` on `platform` (and that it is known there).
    pub fn record_loyalty(
        &self,
        platform: &str,
        email: &str,
        fields: &[(String, Value)],
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "DELETE FROM loyalty_synced WHERE platform = ?1 AND email_normalized = ?2 AND field = ?3",
            params![platform, email, ABSENT],
        )?;
        for (field, value) in fields {
            tx.execute(
                "INSERT OR REPLACE INTO loyalty_synced (platform, email_normalized, field, value, synced_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![platform, email, field, value.to_string(), format_ts(at)],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records that `platform` does not know `email`.
    pub fn record_loyalty_absent(
        &self,
        platform: &str,
        email: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        self.conn().execute(
            "INSERT OR REPLACE INTO loyalty_synced (platform, email_normalized, field, value, synced_at)
             VALUES (?1, ?2, ?3, 'absent', ?4)",
            params![platform, email, ABSENT, format_ts(at)],
        )?;
        Ok(())
    }
}

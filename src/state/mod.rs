//! mailroom's own state in SQLite (`<data_dir>/state.db`): the run ledger, stream cursors,
//! and the delivery and enrollment ledgers.
//!
//! WAL mode lets `mailroom status` read while the scheduler writes; schema changes go
//! through versioned [`migrations`]. Only the holder of the [`DataDirLock`] writes, so two
//! schedulers can never interleave their ledgers. Every write is one short transaction;
//! the connection sits behind a mutex and is never held across an `.await`.

mod deliveries;
mod enrollments;
mod loads;
mod lock;
mod loyalty;
pub mod migrations;
mod runs;
mod totals;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, OpenFlags};

use crate::error::{Classify, ErrorKind};
pub use deliveries::{Delivery, DeliveryRecord, DeliveryStatus};
pub use enrollments::{ActivationCounts, Arm, Enrollment, EnrollmentStatus, EnrollmentTally};
pub use loads::PendingLoad;
pub use lock::DataDirLock;
pub use loyalty::SyncedFields;
pub use runs::{Counters, JobSummary, NewRun, RunRecord, RunStatus, Trigger};
pub use totals::LedgerTotals;

/// A state operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Another process holds the data directory.
    #[error(
        "another mailroom process ({holder}) is using data directory {data_dir}; stop it first, or point this one at another --data-dir",
        holder = if holder.is_empty() { "pid unknown" } else { holder.as_str() }
    )]
    Locked {
        /// The contested directory.
        data_dir: PathBuf,
        /// What the holder wrote in the lock file (its pid).
        holder: String,
    },
    /// A file could not be created or opened.
    #[error("cannot use {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `state.db` was written by a newer mailroom.
    #[error(
        "state.db has schema version {found} but this mailroom supports up to {supported}; it was written by a newer mailroom, upgrade this one"
    )]
    NewerSchema {
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A migration failed; the database is left at the previous version.
    #[error("state migration {version} ({name}) failed: {source}")]
    Migration {
        /// The migration's version.
        version: i64,
        /// Its name.
        name: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
    /// A query failed.
    #[error("state database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file is not a SQLite database, or SQLite found it corrupt.
    #[error(
        "{path} is damaged ({detail}); restore it from a backup (README, \"Backups\"). mailroom will not start a new ledger over it: its delivery and enrollment records are what keep messages from being sent twice"
    )]
    Damaged {
        /// The state database.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// A stored value could not be read back.
    #[error("state database holds an unreadable {what}: {value:?}")]
    Corrupt {
        /// Which field.
        what: &'static str,
        /// The value found.
        value: String,
    },
}

impl Classify for StateError {
    fn kind(&self) -> ErrorKind {
        match self {
            StateError::Locked { .. } => ErrorKind::Transient,
            StateError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                ErrorKind::Transient
            }
            StateError::Corrupt { .. } => ErrorKind::Bug,
            StateError::Damaged { .. } => ErrorKind::Terminal,
            _ => ErrorKind::Terminal,
        }
    }
}

/// `err` as [`StateError::Damaged`] when SQLite says the file is not a database or is
/// corrupt (a migration failing on such a file included).
fn damaged(path: &Path, err: StateError) -> StateError {
    let sqlite = match &err {
        StateError::Sqlite(e) | StateError::Migration { source: e, .. } => e,
        _ => return err,
    };
    match sqlite {
        rusqlite::Error::SqliteFailure(e, message)
            if matches!(
                e.code,
                rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt
            ) =>
        {
            StateError::Damaged {
                path: path.to_path_buf(),
                detail: message.clone().unwrap_or_else(|| e.to_string()),
            }
        }
        _ => err,
    }
}

/// The state database.
#[derive(Debug)]
pub struct StateStore {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl StateStore {
    /// Opens (creating and migrating if needed) the state database for writing. The caller
    /// must hold the data directory's [`DataDirLock`].
    pub fn open(path: &Path) -> Result<Self, StateError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open = || -> Result<Connection, StateError> {
            let mut conn = Connection::open(path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.busy_timeout(Duration::from_secs(5))?;
            migrations::migrate(&mut conn)?;
            Ok(conn)
        };
        let conn = open().map_err(|err| damaged(path, err))?;
        Ok(StateStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing state database read-only (for `status` beside a running
    /// scheduler); `None` if there is none yet.
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, StateError> {
        if !path.exists() {
            return Ok(None);
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|err| damaged(path, err.into()))?;
        if found > migrations::CURRENT_VERSION {
            return Err(StateError::NewerSchema {
                found,
                supported: migrations::CURRENT_VERSION,
            });
        }
        Ok(Some(StateStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
        }))
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite half-written (each write is
        // one transaction), so a poisoned mutex is safe to keep using.
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Formats an instant the way the ledger stores it: RFC 3339 UTC with milliseconds, which
/// sorts lexically in time order.
pub fn format_ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a stored instant.
pub fn parse_ts(what: &'static str, value: String) -> Result<DateTime<Utc>, StateError> {
    DateTime::parse_from_rfc3339(&value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StateError::Corrupt { what, value })
}

//! The ledger's safety when it is opened: a data directory whose tables were loaded beside
//! a `state.db` never silently gets a new, empty one — that would forget every delivery and
//! enrollment and send them again — and `mailroom new-ledger` is how a person starts one
//! knowingly, when the old one is lost and no backup can be restored.

use std::path::Path;
use std::process::ExitCode;

use mailroom::config::Config;
use mailroom::error::ErrorKind;
use mailroom::state::{DataDirLock, StateError, StateStore};
use mailroom::warehouse::local::LocalWarehouse;

use super::Failure;

/// Whether the state database at `path` is missing or holds nothing.
fn is_missing_or_empty(path: &Path) -> bool {
    std::fs::metadata(path).map_or(true, |m| m.len() == 0)
}

/// Refuses to go on when `state.db` is missing or empty although the local warehouse holds
/// tables: they were loaded with a ledger that is gone.
pub(crate) fn refuse_lost_ledger(config: &Config) -> Result<(), Failure> {
    let path = config.state_path();
    if !is_missing_or_empty(&path) {
        return Ok(());
    }
    let Some(dir) = config.local_warehouse_dir() else {
        return Ok(());
    };
    let tables = LocalWarehouse::reader(&dir).tables()?;
    if tables.is_empty() {
        return Ok(());
    }
    let what = if path.exists() {
        "is empty"
    } else {
        "is missing"
    };
    Err(Failure {
        kind: ErrorKind::Terminal,
        message: format!(
            "{} {what}, but {} holds {} tables loaded with one; without it, reports already delivered and people already enrolled would be sent again. Restore state.db from a backup (README, \"Backups\"), or run `mailroom new-ledger` to start an empty one knowingly",
            path.display(),
            dir.display(),
            tables.len()
        ),
    })
}

/// `mailroom new-ledger`: an empty `state.db` in place of a missing, empty or damaged one
/// (a damaged one is moved aside, never deleted); a working ledger is left alone.
pub fn new_ledger(config: &Config) -> Result<ExitCode, Failure> {
    let _lock = DataDirLock::acquire(&config.data_dir)?;
    let path = config.state_path();
    if !is_missing_or_empty(&path) {
        match StateStore::open_read_only(&path) {
            Ok(_) => {
                return Err(Failure {
                    kind: ErrorKind::Config,
                    message: format!(
                        "{} is a working ledger; new-ledger only replaces a missing, empty or damaged one",
                        path.display()
                    ),
                });
            }
            Err(StateError::Damaged { .. }) => {
                let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
                for suffix in ["", "-wal", "-shm"] {
                    let from = path.with_file_name(format!("state.db{suffix}"));
                    let to = path.with_file_name(format!("state.db{suffix}.damaged-{stamp}"));
                    if from.exists() {
                        std::fs::rename(&from, &to).map_err(|e| Failure {
                            kind: ErrorKind::Terminal,
                            message: format!("cannot move {} aside: {e}", from.display()),
                        })?;
                        say!("Moved the damaged {} to {}", from.display(), to.display());
                    }
                }
            }
            Err(other) => return Err(other.into()),
        }
    } else if path.exists() {
        std::fs::remove_file(&path).map_err(|e| Failure {
            kind: ErrorKind::Terminal,
            message: format!("cannot remove the empty {}: {e}", path.display()),
        })?;
    }
    StateStore::open(&path)?;
    say!(
        "Started a new, empty ledger at {}. Runs, deliveries and win-back enrollments recorded before are forgotten: check the Slack channels, sheets and sequences before the next scheduled runs.",
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

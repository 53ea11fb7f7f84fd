//! Damaged local tables: finding which file of a table's Delta log is broken, so an error
//! names it and says what to do, instead of repeating what the log reader said.
//!
//! A Delta log is `_delta_log/<version>.json` files of one JSON action per line, an
//! optional `_last_checkpoint` pointing at a Parquet checkpoint, and no gaps after it. A
//! truncated, emptied or half-written entry, a missing version or an unreadable
//! `_last_checkpoint` is damage: waiting will not fix it, only a restore (or moving the
//! table away, so the next run rebuilds it from the source) will.

use std::path::{Path, PathBuf};

/// What is wrong with a table's log, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged file (or the log folder, when a version is missing).
    pub file: PathBuf,
    /// What is wrong with it.
    pub problem: String,
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.problem)
    }
}

/// What a user can do about a damaged table.
pub const REMEDY: &str = "restore the table's folder from a backup, or move it away so the next run of its extract job loads it again from the source";

/// The first damage in the log of the table at `table_dir`, reading the entries after the
/// last checkpoint; `None` when every one reads.
pub fn inspect(table_dir: &Path) -> Option<Damage> {
    let log = table_dir.join("_delta_log");
    let checkpoint = match last_checkpoint(&log) {
        Ok(version) => version,
        Err(damage) => return Some(damage),
    };
    let mut versions: Vec<(u64, PathBuf)> = std::fs::read_dir(&log)
        .ok()?
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let version = path
                .file_name()?
                .to_str()?
                .strip_suffix(".json")?
                .parse()
                .ok()?;
            Some((version, path))
        })
        .filter(|(version, _)| checkpoint.is_none_or(|c| *version > c))
        .collect();
    versions.sort();
    let mut expected = checkpoint.map_or(versions.first().map_or(0, |(v, _)| *v), |c| c + 1);
    for (version, path) in versions {
        if version != expected {
            return Some(Damage {
                file: log.clone(),
                problem: format!("log entry {expected} is missing (the next one is {version})"),
            });
        }
        if let Some(problem) = entry_problem(&path) {
            return Some(Damage {
                file: path,
                problem,
            });
        }
        expected = version + 1;
    }
    None
}

/// The version `_last_checkpoint` names, `None` without one.
fn last_checkpoint(log: &Path) -> Result<Option<u64>, Damage> {
    let path = log.join("_last_checkpoint");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|value| value.get("version")?.as_u64())
        .map(Some)
        .ok_or(Damage {
            file: path,
            problem: "not a checkpoint pointer (JSON with a version)".into(),
        })
}

/// Why one log entry cannot be read, if it cannot.
fn entry_problem(path: &Path) -> Option<String> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) => return Some(format!("cannot be read: {err}")),
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return Some("empty".into());
    }
    for (number, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(_)) => {}
            Ok(_) => return Some(format!("line {} is not a Delta action", number + 1)),
            Err(err) => return Some(format!("line {} is not valid JSON ({err})", number + 1)),
        }
    }
    None
}

/// The first line of an error's text: Delta's kernel appends a backtrace to its messages
/// when backtraces are enabled, which no user-facing message should carry.
pub fn first_line(message: &str) -> &str {
    message.lines().next().unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("_delta_log")).expect("log");
        for (name, text) in entries {
            std::fs::write(dir.path().join("_delta_log").join(name), text).expect("entry");
        }
        dir
    }

    const ENTRY: &str = "{\"commitInfo\":{}}\n{\"add\":{\"path\":\"a.parquet\"}}\n";

    #[test]
    fn a_whole_log_has_no_damage() {
        let dir = log_with(&[
            ("00000000000000000000.json", ENTRY),
            ("00000000000000000001.json", ENTRY),
        ]);
        assert_eq!(inspect(dir.path()), None);
    }

    #[test]
    fn a_truncated_entry_is_named_with_its_line() {
        let dir = log_with(&[
            ("00000000000000000000.json", ENTRY),
            ("00000000000000000001.json", &ENTRY[..30]),
        ]);
        let damage = inspect(dir.path()).expect("damage");
        assert!(damage.file.ends_with("00000000000000000001.json"));
        assert!(
            damage.problem.starts_with("line 2 is not valid JSON"),
            "{damage}"
        );
    }

    #[test]
    fn an_emptied_entry_and_a_missing_version_are_damage() {
        let dir = log_with(&[("00000000000000000000.json", "")]);
        assert_eq!(inspect(dir.path()).expect("damage").problem, "empty");
        let dir = log_with(&[
            ("00000000000000000000.json", ENTRY),
            ("00000000000000000002.json", ENTRY),
        ]);
        let damage = inspect(dir.path()).expect("damage");
        assert!(damage.problem.contains("entry 1 is missing"), "{damage}");
    }

    #[test]
    fn entries_before_the_last_checkpoint_are_not_read() {
        let dir = log_with(&[
            ("00000000000000000000.json", "cleaned up"),
            ("_last_checkpoint", "{\"version\":0,\"size\":2}"),
            ("00000000000000000001.json", ENTRY),
        ]);
        assert_eq!(inspect(dir.path()), None);
        let dir = log_with(&[("_last_checkpoint", "{\"vers")]);
        let damage = inspect(dir.path()).expect("damage");
        assert!(damage.file.ends_with("_last_checkpoint"));
    }

    #[test]
    fn backtraces_are_cut_from_messages() {
        assert_eq!(
            first_line("Json error: Truncated\n   0: buoyant_kernel::error\n   1: x"),
            "Json error: Truncated"
        );
    }
}

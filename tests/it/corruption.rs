//! Damage on disk — a truncated Delta log entry, a `state.db` that is not a database, an
//! emptied or deleted `state.db` beside loaded tables: each is terminal at once (never
//! retried as if waiting could fix it), named by file with what to do, free of backtraces,
//! and confined (other tables keep working); a lost ledger is never silently replaced.

use std::path::{Path, PathBuf};

use crate::cli::{mailroom, run};

/// The newest entry of a table's Delta log.
fn latest_log_entry(data: &Path, table: &str) -> PathBuf {
    let log = data.join("warehouse").join(table).join("_delta_log");
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&log)
        .expect("log")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    entries.sort();
    entries.pop().expect("a log entry")
}

/// `mailroom` with `RUST_BACKTRACE=1`, as many users run it: messages still carry none.
fn mailroom_with_backtraces(dir: &Path) -> std::process::Command {
    let mut cmd = mailroom(dir);
    cmd.env("RUST_BACKTRACE", "1");
    cmd
}

fn assert_no_backtrace(text: &str) {
    assert!(
        !text.contains("   0: ") && !text.contains("backtrace"),
        "a backtrace reached the user: {text}"
    );
}

#[test]
fn a_truncated_delta_log_is_terminal_named_and_confined_to_its_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-loyalty"]));
        assert_eq!(code, 0, "{stderr}");
    }
    let entry = latest_log_entry(&dir.path().join("data"), "smile_customers");
    let length = std::fs::metadata(&entry).expect("entry").len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&entry)
        .expect("open");
    file.set_len(length / 2).expect("truncate");
    let name = entry
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();

    // The damaged table: exit 1 (not "try again later"), naming the file and the remedy.
    let (code, _, stderr) = run(mailroom_with_backtraces(dir.path())
        .args(["query", "SELECT COUNT(*) AS n FROM smile_customers"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains(&name) && stderr.contains("is damaged") && stderr.contains("backup"),
        "{stderr}"
    );
    assert_no_backtrace(&stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "reported once, no log lines: {stderr}"
    );

    // Other tables, and queries on no table, keep working.
    for sql in [
        "SELECT 1 AS one",
        "SELECT COUNT(*) AS n FROM smile_vip_tiers",
    ] {
        let (code, stdout, stderr) = run(mailroom(dir.path()).args(["query", sql]));
        assert_eq!(code, 0, "{sql}: {stderr}");
        assert!(stdout.contains("(1 row)"), "{stdout}");
    }

    // A run that loads it fails once, without retrying for minutes.
    let (code, _, stderr) = run(mailroom_with_backtraces(dir.path()).args([
        "run-job",
        "extract-loyalty",
        "--log-format",
        "text",
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("after 1 attempt(s)") && stderr.contains(&name),
        "{stderr}"
    );
    assert_no_backtrace(&stderr);

    // `status` shows the table as damaged.
    let (code, stdout, stderr) = run(mailroom(dir.path()).arg("status"));
    assert_eq!(code, 0, "{stderr}");
    let section = stdout
        .split("DAMAGED TABLES")
        .nth(1)
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        section
            .lines()
            .nth(1)
            .is_some_and(|l| l.starts_with("smile_customers") && l.contains(&name)),
        "{stdout}"
    );

    // The remedy works: with the table moved away, the next run loads it again.
    let table = dir.path().join("data/warehouse/smile_customers");
    std::fs::rename(&table, dir.path().join("smile_customers.damaged")).expect("move away");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-loyalty"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, _) = run(mailroom(dir.path()).arg("status"));
    assert_eq!(code, 0);
    assert!(!stdout.contains("DAMAGED"), "{stdout}");
}

#[test]
fn a_state_db_that_is_not_a_database_is_named_and_moved_aside_only_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
    assert_eq!(code, 0, "{stderr}");
    let state = dir.path().join("data/state.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("data/state.db{suffix}")));
    }
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&state, &garbage).expect("garbage");

    for args in [&["run-job", "extract-email"][..], &["status"][..]] {
        let (code, _, stderr) = run(mailroom_with_backtraces(dir.path()).args(args));
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains("state.db is damaged") && stderr.contains("backup"),
            "{args:?}: {stderr}"
        );
        assert_no_backtrace(&stderr);
    }
    assert_eq!(
        std::fs::read(&state).expect("state"),
        garbage,
        "never replaced silently"
    );

    let (code, stdout, stderr) = run(mailroom(dir.path()).arg("new-ledger"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Moved the damaged"), "{stdout}");
    let kept = std::fs::read_dir(dir.path().join("data"))
        .expect("data")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("state.db.damaged-"))
        .expect("the damaged file is kept");
    assert_eq!(
        std::fs::read(dir.path().join("data").join(kept)).expect("kept"),
        garbage
    );
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(mailroom(dir.path()).arg("new-ledger"));
    assert_eq!(code, 78, "a working ledger is left alone: {stderr}");
}

#[test]
fn an_emptied_or_deleted_ledger_beside_loaded_tables_is_never_started_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
    assert_eq!(code, 0, "{stderr}");
    let data = dir.path().join("data");
    for name in ["state.db", "state.db-wal", "state.db-shm"] {
        let _ = std::fs::remove_file(data.join(name));
    }
    std::fs::write(data.join("state.db"), b"").expect("emptied");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("state.db is empty") && stderr.contains("mailroom new-ledger"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::metadata(data.join("state.db"))
            .expect("kept")
            .len(),
        0
    );

    std::fs::remove_file(data.join("state.db")).expect("deleted");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("state.db is missing"), "{stderr}");
    assert!(!data.join("state.db").exists(), "nothing was created");

    let (code, _, stderr) = run(mailroom(dir.path()).arg("new-ledger"));
    assert_eq!(code, 0, "{stderr}");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
    assert_eq!(code, 0, "{stderr}");
}

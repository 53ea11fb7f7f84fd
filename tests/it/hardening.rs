//! Regression tests for what an adversarial run found (bad values a careless user types,
//! secrets in logged URLs): each named after what it proves.

use crate::cli::{mailroom, run, write_config};

/// A nightly `compact` with less than Delta's 7-day minimum retention would fail every
/// night: the config and the command line refuse it up front, saying why and where.
#[test]
fn compact_retention_below_seven_days_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = mailroom::config::DEFAULT_CONFIG.replace(
        "{ type = \"compact\", keep_days = 7 }",
        "{ type = \"compact\", keep_days = 1 }",
    );
    assert_ne!(
        config,
        mailroom::config::DEFAULT_CONFIG,
        "the shipped compact step moved"
    );
    write_config(dir.path(), &config);
    let (code, stdout, stderr) = run(mailroom(dir.path()).arg("check"));
    assert_eq!(code, 78, "{stdout}{stderr}");
    let line = config
        .lines()
        .position(|l| l.contains("keep_days = 1"))
        .expect("the line")
        + 1;
    let text = format!("{stdout}{stderr}");
    assert!(
        text.contains(&format!("config.toml:{line}:"))
            && text.contains("keep_days")
            && text.contains("168 hours"),
        "{text}"
    );
    let (code, _, stderr) = run(mailroom(dir.path()).args(["compact", "--keep-days", "2"]));
    assert_eq!(code, 2, "a usage error: {stderr}");
    assert!(stderr.contains("--keep-days"), "{stderr}");
}

/// `mailroom jobs --next 2000 | head -1`: the reader leaves after one line; mailroom ends
/// quietly with success instead of panicking on the closed pipe.
#[test]
fn a_reader_that_goes_away_ends_output_quietly_instead_of_a_panic() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = mailroom(dir.path())
        .args(["jobs", "--next", "2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("one line");
    // The reading end is closed here, as `head -1` closes it.
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!first.is_empty());
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Exporting to a folder that does not exist cannot pass by waiting: a terminal failure
/// (exit 1) naming the path, not "try again later" (75).
#[test]
fn a_storage_error_waiting_cannot_fix_is_not_called_transient() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-loyalty"]));
    assert_eq!(code, 0, "{stderr}");
    let target = dir.path().join("no-such-folder/customers.parquet");
    let (code, _, stderr) = run(mailroom(dir.path()).args([
        "export",
        "smile_customers",
        "--parquet",
        &target.display().to_string(),
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no-such-folder"), "{stderr}");
}

/// A config with a byte that is not UTF-8 is reported like every other config problem:
/// file, line and column, exit 78.
#[test]
fn a_config_that_is_not_utf8_is_reported_with_its_line_and_column() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut bytes = b"data_dir = \"data\"\n[scheduler]\nshutdown_grace_secs = 3\n# caf".to_vec();
    bytes.push(0xE9);
    bytes.extend_from_slice(b"\n");
    std::fs::write(dir.path().join("config.toml"), bytes).expect("config");
    let (code, stdout, stderr) = run(mailroom(dir.path()).arg("check"));
    let text = format!("{stdout}{stderr}");
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("config.toml:4:6:") && text.contains("not UTF-8"),
        "{text}"
    );
}

/// A statement too long to plan (30,000 chained `+`) is refused with a clear error naming
/// the limit, instead of overflowing the stack and aborting the process.
#[test]
fn a_statement_too_long_to_plan_is_refused_not_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("queries")).expect("queries");
    let terms = vec!["1"; 30_000].join(" + ");
    std::fs::write(
        dir.path().join("queries/huge.sql"),
        format!("-- title = \"Huge\"\nSELECT {terms} AS n\n"),
    )
    .expect("sql");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["query", "queries/huge.sql"]));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("at most 10000 can be planned") && !stderr.contains("overflow"),
        "{stderr}"
    );
}

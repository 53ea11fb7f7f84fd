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

/// A report whose `WHERE` chains 9,998 `OR` terms (the issue saw 2,500 abort the process
/// and 1,700 plan slowly) plans and runs: long chains are rebalanced before planning.
#[test]
fn ten_thousand_or_terms_plan_and_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-loyalty"]));
    assert_eq!(code, 0, "{stderr}");
    let terms: Vec<String> = (0..9_998)
        .map(|i| format!("email = 'nobody{i}@example.com'"))
        .collect();
    std::fs::create_dir_all(dir.path().join("queries")).expect("queries");
    std::fs::write(
        dir.path().join("queries/long.sql"),
        format!(
            "-- title = \"Long\"\nSELECT COUNT(*) AS n FROM smile_customers WHERE {} OR points_balance >= 0\n",
            terms.join(" OR ")
        ),
    )
    .expect("sql");
    let (code, stdout, stderr) =
        run(mailroom(dir.path()).args(["query", "queries/long.sql", "--format", "csv"]));
    assert_eq!(code, 0, "{stderr}");
    let (_, every, _) = run(mailroom(dir.path()).args([
        "query",
        "SELECT COUNT(*) AS n FROM smile_customers WHERE points_balance >= 0",
        "--format",
        "csv",
    ]));
    assert_eq!(stdout, every, "the same rows as the one term that matches");
}

/// `DROP TABLE` (which sqlparser gives no position) is refused at the start of the text,
/// naming the statement, never at "line 0, column 0".
#[test]
fn a_refused_statement_is_placed_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["query", "DROP TABLE smile_customers"]));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("line 1, column 1") && stderr.contains("not DROP TABLE"),
        "{stderr}"
    );
    assert!(!stderr.contains("line 0"), "{stderr}");
}

/// A merge table keeps one row per key: `run-job` says both what it loaded and what the
/// table now holds, the latter agreeing with a count by `query`.
#[test]
fn run_job_summary_says_rows_loaded_and_rows_in_the_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
        assert_eq!(code, 0, "{stderr}");
    }
    let (code, stdout, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
    assert_eq!(code, 0, "{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("smartrmail_subscribers"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let (code, counted, stderr) = run(mailroom(dir.path()).args([
        "query",
        "SELECT COUNT(*) AS n FROM smartrmail_subscribers",
        "--format",
        "csv",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let in_table: u64 = counted
        .lines()
        .nth(1)
        .expect("a row")
        .trim()
        .parse()
        .expect("count");
    assert_eq!(numbers.len(), 2, "{line}");
    assert_eq!(numbers[1], in_table, "{line}");
    assert!(
        numbers[0] > in_table,
        "the subscriber stream repeats people across lists: {line}"
    );
}

/// Starts `run-job extract-loyalty` with Smile's first customers page answering after
/// `slow_secs` and the given grace, sends SIGTERM once the run is inside that page, and
/// returns the exit code, stdout and the ledger's status of the run.
#[cfg(unix)]
fn sigterm_during_a_slow_page(slow_secs: u64, grace_secs: u64) -> (i32, String, String) {
    use std::process::Stdio;
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = serde_json::json!([{
        "method": "GET",
        "path": "/smile/v1/customers",
        "fault": { "kind": "slow", "millis": slow_secs * 1000 }
    }]);
    std::fs::write(dir.path().join("faults.json"), plan.to_string()).expect("plan");
    let config = mailroom::config::DEFAULT_CONFIG
        .replace("# faults = \"faults.json\"", "faults = \"faults.json\"")
        .replace(
            "shutdown_grace_secs = 30",
            &format!("shutdown_grace_secs = {grace_secs}"),
        );
    assert!(
        config.contains("\nfaults = ") && config.contains(&format!("grace_secs = {grace_secs}\n")),
        "the shipped config's [sandbox] and [scheduler] lines moved"
    );
    write_config(dir.path(), &config);
    let mut child = crate::cli::KillOnDrop(
        mailroom(dir.path())
            .args(["run-job", "extract-loyalty", "--log-format", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let mut log = crate::cli::LogLines::of(&mut child.0);
    log.wait_for("step started");
    crate::cli::sigterm(&child.0);
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.0.stdout.take().expect("stdout"), &mut stdout)
        .expect("stdout");
    let status = child.0.wait().expect("wait");
    let state =
        mailroom::state::StateStore::open(&dir.path().join("data/state.db")).expect("the ledger");
    let runs = state.recent_runs(Some("extract-loyalty"), 5).expect("runs");
    assert_eq!(runs.len(), 1, "{runs:?}");
    (
        status.code().unwrap_or(-1),
        stdout,
        runs[0].status.as_str().to_string(),
    )
}

/// SIGTERM while `run-job` waits on a slow page: the run finishes within the grace period,
/// so the exit code and the output say it succeeded, as its ledger row does.
#[cfg(unix)]
#[test]
fn a_run_that_finishes_within_the_grace_period_exits_as_it_ended() {
    let (code, stdout, status) = sigterm_during_a_slow_page(3, 60);
    assert_eq!(status, "succeeded");
    assert_eq!(code, 0, "{stdout}");
    assert!(
        stdout.contains("succeeded") && stdout.contains("smile_customers"),
        "{stdout}"
    );
}

/// SIGTERM with a grace period shorter than the slow page: the run is stopped, recorded as
/// interrupted, and `run-job` exits 130 saying so.
#[cfg(unix)]
#[test]
fn a_run_stopped_at_the_end_of_the_grace_period_exits_interrupted() {
    let (code, stdout, status) = sigterm_during_a_slow_page(30, 1);
    assert_eq!(status, "interrupted");
    assert_eq!(code, 130, "{stdout}");
    assert!(stdout.contains("interrupted by SIGTERM"), "{stdout}");
}

/// A tmpfs mounted for a test (root only), unmounted when dropped.
#[cfg(target_os = "linux")]
struct Tmpfs(std::path::PathBuf);

#[cfg(target_os = "linux")]
impl Tmpfs {
    /// `None` (with the reason) where mounting is not allowed.
    fn mount(at: &std::path::Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(at).map_err(|e| e.to_string())?;
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(Tmpfs(at.to_path_buf()))
        } else {
            Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
        }
    }

    fn resize(&self, size: &str) {
        let status = std::process::Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .expect("mount");
        assert!(status.success(), "remount");
    }
}

#[cfg(target_os = "linux")]
impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A data directory on a disk that fills up during the load, at several sizes so it fills
/// at different points (its state, the new table's staged files, the commit): each run fails as a
/// transient error naming the full disk, with no panic message; once there is room, the
/// next run completes and the table holds every order of the world exactly once.
#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_fails_the_load_cleanly_and_the_next_run_completes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = mailroom::config::DEFAULT_CONFIG.replace(
        "customers = 2000\n",
        "customers = 2000\nanchor = \"2026-11-01\"\n",
    ) + "\n[[jobs]]\nname = \"orders-once\"\nschedule = \"0 5 * * *\"\nretries = 0\nsteps = [{ type = \"extract\", source = \"shopify\", streams = [\"orders\"] }]\n";
    write_config(dir.path(), &config);
    let mount = dir.path().join("disk");
    let data = mount.join("data");
    let mut failures = 0;
    let mut disk = None;
    for size in ["200k", "300k", "400k", "500k", "600k"] {
        drop(disk.take());
        disk = match Tmpfs::mount(&mount, size) {
            Ok(disk) => Some(disk),
            Err(reason) => {
                eprintln!("skipped: a tmpfs cannot be mounted here (needs root): {reason}");
                return;
            }
        };
        let (code, stdout, stderr) = run(mailroom(dir.path())
            .args(["--data-dir", &data.display().to_string()])
            .args(["run-job", "orders-once", "--log-format", "text"]));
        let text = format!("{stdout}{stderr}");
        assert!(!text.contains("panicked"), "{size}: {text}");
        match code {
            0 => {}
            75 => {
                failures += 1;
                assert!(text.contains("No space left on device"), "{size}: {text}");
            }
            other => panic!("{size}: exit {other}: {text}"),
        }
    }
    assert!(failures >= 3, "the disk filled at most sizes");
    let disk = disk.expect("mounted");
    // The last size's failed load stays on disk; with room, the next run completes it.
    disk.resize("256m");
    let (code, _, stderr) = run(mailroom(dir.path())
        .args(["--data-dir", &data.display().to_string()])
        .args(["run-job", "orders-once"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, counted, stderr) = run(mailroom(dir.path())
        .args(["--data-dir", &data.display().to_string()])
        .args([
            "query",
            "SELECT COUNT(*) AS n, COUNT(DISTINCT id) AS ids FROM shopify_orders",
            "--format",
            "csv",
        ]));
    assert_eq!(code, 0, "{stderr}");
    let world = mailroom_sandbox::world::World::new(mailroom_sandbox::world::WorldParams {
        seed: 42,
        customers: 2000,
        anchor: mailroom::config::SandboxAnchor::Date(
            chrono::NaiveDate::from_ymd_opt(2026, 11, 1).expect("date"),
        )
        .at(chrono::Utc::now()),
    });
    let orders = world
        .people()
        .map(|p| world.orders_of(&p).len())
        .sum::<usize>();
    assert_eq!(
        counted.lines().nth(1).expect("a row").trim(),
        format!("{orders},{orders}"),
        "every order once"
    );
}

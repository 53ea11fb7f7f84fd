//! The `mailroom` binary: commands, their output and exit codes.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use mailroom::state::{DataDirLock, RunStatus, StateStore};

/// `mailroom` in `dir`, with no `MAILROOM_*` or secret variables from the test's environment.
pub(crate) fn mailroom(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mailroom"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null());
    cmd
}

/// A child process killed when the test ends, passing or not, so no failure leaves it
/// running or blocks the suite.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines a child writes to stderr, read on a thread as they come.
pub(crate) struct LogLines {
    lines: std::sync::mpsc::Receiver<String>,
    /// Every line read so far.
    pub(crate) seen: Vec<String>,
}

impl LogLines {
    /// Starts reading `child`'s piped stderr.
    pub(crate) fn of(child: &mut std::process::Child) -> Self {
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        LogLines {
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads until a line contains `needle`; panics with what was read after two minutes.
    pub(crate) fn wait_for(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let line = self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("no line with {needle:?} in {:#?}", self.seen));
            self.seen.push(line);
        }
    }

    /// Reads the rest, until the child closes stderr.
    pub(crate) fn finish(&mut self) {
        self.seen.extend(self.lines.iter());
    }
}

/// Sends SIGTERM to `child`, as a supervisor stops it.
#[cfg(unix)]
pub(crate) fn sigterm(child: &std::process::Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
}

/// Writes `text` as `dir`'s config.toml, with the shipped SQL files beside it (a config of
/// one's own reads its SQL files from disk).
pub(crate) fn write_config(dir: &Path, text: &str) {
    std::fs::write(dir.join("config.toml"), text).expect("config");
    for folder in ["reports", "queries"] {
        let from = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
        std::fs::create_dir_all(dir.join(folder)).expect("folder");
        for entry in std::fs::read_dir(&from).expect("shipped folder") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "sql") {
                let name = path.file_name().expect("file name");
                std::fs::copy(&path, dir.join(folder).join(name)).expect("copy");
            }
        }
    }
}

pub(crate) fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("mailroom runs");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn check_passes_on_the_built_in_config_with_no_environment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) = run(mailroom(dir.path()).arg("check"));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.starts_with("config ok"), "{stdout}");
    assert!(
        stdout.contains(
            "jobs:         8 (extract-orders, extract-loyalty, extract-email, compact-warehouse, weekly-email-report, loyalty-report, daily-winback, loyalty-sync)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("SQL files:    3 ok"),
        "the report jobs' SQL files are compiled in beside the built-in config: {stdout}"
    );
    assert!(!dir.path().join("data").exists(), "check writes nothing");
}

#[test]
fn check_reports_every_problem_with_line_and_key_and_exits_78() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("bad.toml"),
        "[sources.smile]\napi_key = \"sk_live_abc\"\n[[jobs]]\nname = \"x\"\nschedule = \"61 * * * *\"\ntimezone = \"Mars/Olympus\"\ncolour = \"red\"\nsteps = [{ type = \"extract\", source = \"smile\" }]\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run(mailroom(dir.path()).args(["--config", "bad.toml", "check"]));
    assert_eq!(code, 78, "{stderr}");
    assert!(stdout.is_empty());
    for want in [
        "bad.toml:2:12: sources.smile.api_key: looks like a literal secret",
        "bad.toml:5:13: jobs[0].schedule: invalid cron expression \"61 * * * *\"",
        "bad.toml:6:13: jobs[0].timezone: unknown time zone \"Mars/Olympus\"",
        "bad.toml:7:1: jobs[0].colour: unknown key `colour`",
        "4 problems found",
    ] {
        assert!(stderr.contains(want), "missing {want:?} in:\n{stderr}");
    }
    assert!(
        !stderr.contains("sk_live_abc"),
        "the secret leaked:\n{stderr}"
    );
}

#[test]
fn check_reports_missing_environment_variables_and_bad_sql_headers() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("reports")).expect("mkdir");
    std::fs::write(
        dir.path().join("reports/weekly.sql"),
        "-- titel = \"Weekly\"\nSELECT 1\n",
    )
    .expect("write");
    std::fs::write(
        dir.path().join("config.toml"),
        "[sources.smile]\napi_key = \"${SMILE_API_KEY}\"\n[[jobs]]\nname = \"x\"\nschedule = \"0 * * * *\"\nsteps = [{ type = \"extract\", source = \"smile\" }]\n",
    )
    .expect("write");
    let (code, _, stderr) = run(mailroom(dir.path()).arg("check"));
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("config.toml:2:12: sources.smile.api_key: environment variable SMILE_API_KEY is not set (needed by sources.smile.api_key)"), "{stderr}");
    assert!(
        stderr.contains("reports/weekly.sql:1:4: titel: unknown key `titel`"),
        "{stderr}"
    );

    let (code, stdout, stderr) = run(mailroom(dir.path()).arg("check").env("SMILE_API_KEY", "k"));
    assert_eq!(code, 78, "the SQL header is still wrong: {stdout}{stderr}");
    // A body the local engine cannot run is reported at its line and column in the file.
    std::fs::write(
        dir.path().join("reports/weekly.sql"),
        "-- title = \"Weekly\"\nSELECT\n  SOUNDEX(name) AS s\nFROM {{ ref('smile_customers') }}\n",
    )
    .expect("write");
    let (code, _, stderr) = run(mailroom(dir.path()).arg("check").env("SMILE_API_KEY", "k"));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(
            "reports/weekly.sql:3:3: not supported by the local engine: function SOUNDEX"
        ),
        "{stderr}"
    );
    std::fs::write(
        dir.path().join("reports/weekly.sql"),
        "-- title = \"Weekly\"\nSELECT {{ params.days }}\n",
    )
    .expect("write");
    let (code, _, stderr) = run(mailroom(dir.path()).arg("check").env("SMILE_API_KEY", "k"));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("reports/weekly.sql:2:1: template:"),
        "{stderr}"
    );
    std::fs::write(
        dir.path().join("reports/weekly.sql"),
        "-- title = \"Weekly\"\nSELECT 1\n",
    )
    .expect("write");
    let (code, stdout, stderr) = run(mailroom(dir.path()).arg("check").env("SMILE_API_KEY", "k"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("SQL files:    1 ok"), "{stdout}");
}

#[test]
fn jobs_shows_next_fire_times_in_each_jobs_zone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stdout, stderr) = run(mailroom(dir.path()).args(["jobs", "--next", "2"]));
    assert_eq!(code, 0, "{stderr}");
    let section = |name: &str| {
        stdout
            .split("\n\n")
            .find(|s| s.starts_with(name))
            .unwrap_or_default()
            .to_string()
    };
    let loyalty = section("extract-loyalty");
    assert!(
        loyalty.contains("schedule: 5 * * * * (Australia/Sydney)"),
        "{stdout}"
    );
    assert!(
        loyalty.contains(":05:00 AEDT (UTC+11:00)") || loyalty.contains(":05:00 AEST (UTC+10:00)"),
        "{loyalty}"
    );
    assert_eq!(
        loyalty.matches("UTC+1").count(),
        2,
        "two fire times: {loyalty}"
    );
    let email = section("extract-email");
    assert!(
        email.contains(":20:00 EST (UTC-05:00)") || email.contains(":20:00 EDT (UTC-04:00)"),
        "{email}"
    );
}

#[test]
fn run_job_is_recorded_in_the_ledger_and_status_shows_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-ordrs"]));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("no job named \"extract-ordrs\"")
            && stderr.contains("did you mean `extract-orders`?"),
        "{stderr}"
    );

    // A run loads into the local warehouse and is recorded.
    let (code, stdout, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("extract-email: run") && stdout.contains("succeeded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Done:") && stdout.contains("smartrmail_subscribers"),
        "{stdout}"
    );
    // The shipped nightly job compacts every table the run created.
    let (code, stdout, stderr) = run(mailroom(dir.path()).args(["run-job", "compact-warehouse"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("tables") && stdout.contains("files rewritten"),
        "{stdout}"
    );
    assert!(
        dir.path()
            .join("data/warehouse/smartrmail_subscribers/_delta_log")
            .is_dir()
    );

    // A table exports as one plain Parquet file.
    let file = dir.path().join("lists.parquet");
    let (code, stdout, stderr) = run(mailroom(dir.path()).args([
        "export",
        "smartrmail_lists",
        "--parquet",
        file.to_str().expect("path"),
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("smartrmail_lists: 3 rows written"),
        "{stdout}"
    );
    let reader = parquet::file::reader::SerializedFileReader::new(
        std::fs::File::open(&file).expect("parquet file"),
    )
    .expect("a Parquet file");
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 3);
    // Queries run on the loaded tables: text or a file with parameters.
    let (code, stdout, stderr) = run(mailroom(dir.path()).args([
        "query",
        "SELECT COUNT(*) AS lists FROM {{ ref('smartrmail_lists') }}",
        "--format",
        "csv",
    ]));
    assert_eq!((code, stdout.as_str()), (0, "lists\n3\n"), "{stderr}");
    std::fs::create_dir(dir.path().join("queries")).expect("mkdir");
    std::fs::write(
        dir.path().join("queries/big_lists.sql"),
        "-- title = \"Big lists\"\n-- [params]\n-- min = 1000000\nSELECT COUNT(*) AS lists FROM `smartrmail_lists`\nWHERE subscribers_count >= {{ params.min }}\n",
    )
    .expect("write");
    let query = |args: &[&str]| run(mailroom(dir.path()).arg("query").args(args));
    let (code, stdout, stderr) = query(&["queries/big_lists.sql", "--format", "json"]);
    assert_eq!(
        (code, stdout.as_str()),
        (0, "[{\"lists\":0}]\n"),
        "{stderr}"
    );
    let (code, stdout, stderr) = query(&["queries/big_lists.sql", "--param", "min=0"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains("| 3 ") && stdout.ends_with("(1 row)\n"),
        "{stdout}"
    );
    let (code, _, stderr) = query(&["queries/big_lists.sql", "--param", "min=many"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("parameter `min`: `many` is not an integer"),
        "{stderr}"
    );
    let (code, _, stderr) = query(&["SELECT * FROM smartrmail_listz"]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("smartrmail_listz"), "{stderr}");

    let (code, stdout, stderr) = run(mailroom(dir.path()).arg("compact"));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("smartrmail_subscribers: "), "{stdout}");
    let (code, _, stderr) =
        run(mailroom(dir.path()).args(["export", "smartrmail_listz", "--parquet", "x.parquet"]));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("no table named \"smartrmail_listz\""),
        "{stderr}"
    );

    // With BigQuery configured, a run loads into the sandbox's BigQuery (its project).
    let bigquery = mailroom::config::DEFAULT_CONFIG.replace(
        "type = \"local\"",
        "type = \"bigquery\"\nproject = \"acme-marketing\"\ndataset = \"mailroom\"",
    );
    write_config(dir.path(), &bigquery);
    let (code, stdout, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-loyalty"]));
    assert_eq!(code, 0, "{stderr}");
    let loaded = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("smile_customers"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok());
    assert!(
        stdout.contains("Done:") && loaded.is_some_and(|rows| rows > 0),
        "rows loaded into BigQuery: {stdout}"
    );
    let (code, _, stderr) = run(mailroom(dir.path()).args(["compact"]));
    assert_eq!(code, 78, "compact is for the local warehouse: {stderr}");
    // A key file that is not there fails the run, naming the file.
    let missing_key = mailroom::config::DEFAULT_CONFIG.replace(
        "type = \"local\"",
        "type = \"bigquery\"\nproject = \"acme-marketing\"\ndataset = \"mailroom\"\ncredentials_file = \"missing-key.json\"",
    );
    write_config(dir.path(), &missing_key);
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-orders"]));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("service-account key file") && stderr.contains("missing-key.json"),
        "{stderr}"
    );
    std::fs::remove_file(dir.path().join("config.toml")).expect("config removed");

    let state = StateStore::open_read_only(&dir.path().join("data/state.db"))
        .expect("open")
        .expect("exists");
    let runs = state.recent_runs(None, 10).expect("runs");
    assert_eq!(runs.len(), 4);
    assert_eq!(runs[0].status, RunStatus::Failed);
    assert!(
        runs[1..].iter().all(|r| r.status == RunStatus::Succeeded),
        "{runs:?}"
    );
    drop(state);

    let (code, stdout, stderr) = run(mailroom(dir.path()).arg("status"));
    assert_eq!(code, 0, "{stderr}");
    let job_line = stdout
        .lines()
        .find(|l| l.starts_with("extract-orders"))
        .expect("summary line");
    assert!(
        job_line.contains("failed") && job_line.trim_end().ends_with('1'),
        "{job_line}"
    );
    assert!(stdout.contains("manual"), "{stdout}");
    assert!(
        stdout.contains("config: step 1, extract shopify"),
        "{stdout}"
    );

    // A dry run extracts, shows what would be loaded and changes nothing in the ledger.
    let (code, stdout, stderr) =
        run(mailroom(dir.path()).args(["run-job", "extract-email", "--dry-run"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("Dry run of extract-email"), "{stdout}");
    let would_load = |table: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(table))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
    };
    assert!(
        would_load("smartrmail_subscribers").is_some_and(|n| n > 0),
        "{stdout}"
    );
    assert!(
        would_load("email_campaign_metrics").is_some_and(|n| n > 0),
        "{stdout}"
    );
    let state = StateStore::open_read_only(&dir.path().join("data/state.db"))
        .expect("open")
        .expect("exists");
    assert_eq!(state.recent_runs(None, 10).expect("runs").len(), 4);
}

#[test]
fn status_before_any_run_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stdout, _) = run(mailroom(dir.path()).arg("status"));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("No runs recorded yet"), "{stdout}");
}

#[test]
fn a_second_process_on_the_same_data_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _held = DataDirLock::acquire(&dir.path().join("data")).expect("lock");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-orders"]));
    assert_eq!(code, 75, "{stderr}");
    assert!(stderr.contains("another mailroom process"), "{stderr}");
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())),
        "{stderr}"
    );
    assert!(
        !dir.path().join("data/state.db").exists(),
        "nothing was written"
    );
}

#[cfg(unix)]
#[test]
fn run_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = KillOnDrop(
        mailroom(dir.path())
            .args(["run", "--log-format", "json"])
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let mut log = LogLines::of(&mut child.0);
    log.wait_for("scheduler started");
    sigterm(&child.0);
    let status = child.0.wait().expect("wait");
    log.finish();
    let log = log.seen;
    assert_eq!(status.code(), Some(0), "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("SIGTERM") && l.contains("shutting down")),
        "{log:#?}"
    );
    assert!(
        log.iter().all(|l| l.starts_with('{')),
        "JSON logs under a supervisor: {log:#?}"
    );
}

#[test]
fn run_job_marks_runs_a_crashed_process_left_running_as_interrupted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let abandoned = mailroom::state::NewRun::new(
        "extract-orders",
        mailroom::state::Trigger::Schedule,
        chrono::Utc::now(),
    );
    {
        let state = StateStore::open(&dir.path().join("data/state.db")).expect("open");
        state
            .start_run(&abandoned, chrono::Utc::now())
            .expect("start");
    }
    let (code, _, stderr) =
        run(mailroom(dir.path()).args(["run-job", "extract-email", "--log-format", "json"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("marked runs left running by a previous mailroom process as interrupted"),
        "{stderr}"
    );
    let state = StateStore::open_read_only(&dir.path().join("data/state.db"))
        .expect("open")
        .expect("exists");
    let record = state.run(&abandoned.run_id).expect("query").expect("row");
    assert_eq!(record.status, RunStatus::Interrupted);
}

#[cfg(unix)]
#[test]
fn sandbox_serves_until_sigterm_and_prints_each_services_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = KillOnDrop(
        mailroom(dir.path())
            .args([
                "sandbox",
                "--listen",
                "127.0.0.1:0",
                "--customers",
                "50",
                "--log-format",
                "json",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn"),
    );
    let mut lines = BufReader::new(child.0.stdout.take().expect("stdout")).lines();
    let banner = lines.next().expect("a banner").expect("utf-8");
    let base = banner
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("the base URL")
        .to_string();
    let services: Vec<String> = lines.by_ref().take(2).map(|l| l.expect("line")).collect();
    assert!(
        services[0].contains(&format!("{base}/smile/v1")) && services[0].contains("Bearer sandbox"),
        "{services:?}"
    );
    assert!(
        services[1].contains(&format!("{base}/smartrmail/api/v1")),
        "{services:?}"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (status, body) = runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("{base}/smile/v1/customers?limit=2"))
            .header("Authorization", "Bearer sandbox")
            .send()
            .await
            .expect("sent");
        (
            response.status(),
            response.json::<serde_json::Value>().await.expect("json"),
        )
    });
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(body["customers"].as_array().map(Vec::len), Some(2));
    assert!(body["metadata"]["next_cursor"].is_string());

    let rest: Vec<String> = lines
        .by_ref()
        .map(|l| l.expect("line"))
        .take_while(|l| !l.contains("key file"))
        .collect();
    assert!(rest.iter().any(|l| l.contains("/oauth2/token")), "{rest:?}");
    let written = std::fs::read_to_string(dir.path().join("data/sandbox-service-account.json"))
        .expect("key file written");
    let key: serde_json::Value = serde_json::from_str(&written).expect("JSON");
    assert_eq!(key["token_uri"], format!("{base}/oauth2/token"));

    let killed = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(child.0.wait().expect("wait").code(), Some(0));
}

#[test]
fn run_job_starts_the_sandbox_in_process_when_the_config_enables_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) =
        run(mailroom(dir.path()).args(["run-job", "extract-email", "--log-format", "json"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("services are simulated by the in-process sandbox at http://127.0.0.1:"),
        "{stderr}"
    );
}

#[test]
fn sandbox_url_uses_a_running_sandbox_and_refuses_one_that_does_not_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let sandbox = runtime.block_on(crate::support::small_sandbox());
    let (code, _, stderr) = run(mailroom(dir.path()).args([
        "run-job",
        "extract-orders",
        "--log-format",
        "json",
        "--sandbox-url",
        &sandbox.base_url,
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "running sandbox at {} (seed 42, 300 customers)",
            sandbox.base_url
        )),
        "{stderr}"
    );

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let (code, _, stderr) = run(mailroom(dir.path()).args([
        "run-job",
        "extract-orders",
        "--sandbox-url",
        &format!("http://{closed}"),
    ]));
    assert_eq!(code, 75, "unreachable is transient: {stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the sandbox at http://{closed}")),
        "{stderr}"
    );
}

#[test]
fn a_missing_fault_plan_in_the_config_is_a_config_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("config.toml"),
        "[sandbox]\nenabled = true\nfaults = \"faults.json\"\n",
    )
    .expect("write");
    let (code, _, stderr) = run(mailroom(dir.path()).arg("check"));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("config.toml:3:11: sandbox.faults: fault plan \"faults.json\" not found"),
        "{stderr}"
    );
}

#[test]
fn backfill_dry_run_extracts_the_window_and_checks_its_bounds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(mailroom(dir.path()).args([
        "backfill",
        "extract-loyalty",
        "--from",
        "2026-11-02",
        "--to",
        "2026-10-01",
    ]));
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("--from (2026-11-02T00:00:00+00:00) must be before --to"),
        "{stderr}"
    );

    let (code, _, stderr) = run(mailroom(dir.path()).args([
        "backfill",
        "extract-loyalty",
        "--from",
        "yesterday",
        "--to",
        "2026-10-01",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("\"yesterday\" is not a date"), "{stderr}");

    let (code, stdout, stderr) = run(mailroom(dir.path()).args([
        "backfill",
        "extract-email",
        "--from",
        "2026-10-01",
        "--to",
        "2026-11-01T12:00:00Z",
        "--dry-run",
    ]));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(
            "backfill of 2026-10-01T00:00:00+00:00 to 2026-11-01T12:00:00+00:00 done (dry run"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("smartrmail_subscribers"), "{stdout}");
}

/// A key file Google would refuse (here: another sandbox world's key, so the signature
/// does not verify) is the user's to fix: exit 78 naming what the token endpoint said, not
/// a terminal failure and not retried.
#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_bigquery_service_account_key_is_a_config_error() {
    let sandbox = crate::support::small_sandbox().await;
    let other = crate::support::sandbox(mailroom_sandbox::SandboxOptions::new(7, 10)).await;
    let mut key = other.service_account_key();
    key["token_uri"] = format!("{}/oauth2/token", sandbox.base_url).into();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("wrong-key.json"), key.to_string()).expect("key");
    let config = mailroom::config::DEFAULT_CONFIG.replace(
        "type = \"local\"",
        "type = \"bigquery\"\nproject = \"sandbox-project\"\ndataset = \"mailroom\"\ncredentials_file = \"wrong-key.json\"",
    );
    write_config(dir.path(), &config);
    let base = sandbox.base_url.clone();
    let path = dir.path().to_path_buf();
    let (code, _, stderr) = tokio::task::spawn_blocking(move || {
        run(mailroom(&path).args(["--sandbox-url", &base, "run-job", "extract-loyalty"]))
    })
    .await
    .expect("joined");
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("Invalid JWT Signature") && stderr.contains("after 1 attempt"),
        "{stderr}"
    );
}

/// `SIGKILL` at several points of a run delivering to Sheets and Slack — before, during and
/// after their writes and ledger records — then a rerun: the tab holds exactly one copy of
/// the block, the channel one message and one CSV.
/// Each round starts from a new data directory (a lost ledger), against one sandbox whose
/// spreadsheet outlives the killed processes.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_delivery_leaves_one_copy_in_sheets_and_slack_after_a_rerun() {
    let sandbox = crate::support::small_sandbox().await;
    let base = sandbox.base_url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("reports")).expect("reports");
    std::fs::write(
        dir.path().join("reports/tiers.sql"),
        "-- title = \"VIP tiers\"\nSELECT name, milestone, CAST(id AS STRING) AS id FROM {{ ref('smile_vip_tiers') }} ORDER BY id\n",
    )
    .expect("sql");
    let config = format!(
        "{}\n[[jobs]]\nname = \"tiers-report\"\nschedule = \"0 8 * * 1\"\ntimezone = \"UTC\"\nretries = 0\nsteps = [\n  {{ type = \"sql\", file = \"reports/tiers.sql\", name = \"tiers\" }},\n  {{ type = \"deliver\", from = \"tiers\", to = \"sheets\", sheet = \"Tiers\", mode = \"append\" }},\n  {{ type = \"deliver\", from = \"tiers\", to = \"slack\", channel = \"#marketing\" }},\n]\n",
        mailroom::config::DEFAULT_CONFIG
    );
    write_config(dir.path(), &config);
    let path = dir.path().to_path_buf();
    let tab = |state: &serde_json::Value| {
        state["sheets"]["tabs"]["Tiers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let rounds = tokio::task::spawn_blocking(move || {
        let mut tiers = None;
        let mut observed = Vec::new();
        for (round, kill_after_ms) in [300_u64, 1_500, 3_000, 4_500, 6_000].iter().enumerate() {
            let data = format!("data-{round}");
            let with_data = |cmd: &mut Command| {
                cmd.args(["--sandbox-url", &base, "--data-dir", &data]);
            };
            let mut load = mailroom(&path);
            with_data(&mut load);
            let (code, _, stderr) = run(load.args(["run-job", "extract-loyalty"]));
            assert_eq!(code, 0, "{stderr}");
            let mut deliver = mailroom(&path);
            with_data(&mut deliver);
            let child = deliver
                .args(["run-job", "tiers-report"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn");
            let mut child = KillOnDrop(child);
            std::thread::sleep(Duration::from_millis(*kill_after_ms));
            let _ = child.0.kill();
            let _ = child.0.wait();
            let mut again = mailroom(&path);
            with_data(&mut again);
            let (code, stdout, stderr) = run(again.args(["run-job", "tiers-report"]));
            assert_eq!(code, 0, "round {round}: {stderr}");
            let rows: u64 = stdout
                .lines()
                .find(|l| l.trim_start().starts_with("tiers (query)"))
                .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
                .expect("the query's row count");
            tiers.get_or_insert(rows);
            observed.push((round, rows));
        }
        (tiers, observed)
    })
    .await
    .expect("rounds");
    let (tiers, observed) = rounds;
    let tiers = tiers.expect("rows") as usize;
    assert!(tiers > 0, "{observed:?}");
    let (_, _, state) =
        crate::support::get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let rows = tab(&state);
    assert_eq!(rows.len(), 1 + tiers, "exactly one block: {rows:?}");
    assert_eq!(rows[0][0], "name");
    let keys: std::collections::BTreeSet<String> = rows[1..]
        .iter()
        .map(|r| r[3].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(keys.len(), 1, "one delivery key: {keys:?}");
    let posted: Vec<&serde_json::Value> = state["slack"]["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["via"] == "chat.postMessage")
        .collect();
    assert_eq!(posted.len(), 1, "one Slack message: {posted:?}");
    assert_eq!(
        posted[0]["metadata"]["event_payload"]["key"]
            .as_str()
            .map(|k| k.ends_with("/slack/#marketing")),
        Some(true)
    );
    let files = state["slack"]["files"].as_array().expect("files");
    assert_eq!(files.len(), 1, "one CSV shared: {files:?}");
}

/// With the sandbox anchored at today (the default), the shipped weekly report finds last
/// week's campaigns whatever the date: extract, then report, as a newcomer would.
#[test]
fn the_shipped_weekly_report_has_rows_on_any_date() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, _, stderr) = run(mailroom(dir.path()).args(["run-job", "extract-email"]));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run(mailroom(dir.path()).args(["run-job", "weekly-email-report"]));
    assert_eq!(code, 0, "{stderr}");
    let rows: u64 = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("weekly_email (query)"))
        .and_then(|l| l.split_whitespace().nth(2)?.parse().ok())
        .expect("the query's row count");
    assert!(rows > 0, "{stdout}");
    assert!(
        stdout.contains("deliveries sent                           2"),
        "{stdout}"
    );
    // `status` lists the job's deliveries from the ledger.
    let (code, status, stderr) =
        run(mailroom(dir.path()).args(["status", "--job", "weekly-email-report"]));
    assert_eq!(code, 0, "{stderr}");
    let delivered: Vec<&str> = status
        .lines()
        .skip_while(|l| !l.starts_with("RECENT DELIVERIES"))
        .filter(|l| l.starts_with("weekly-email-report"))
        .collect();
    assert_eq!(delivered.len(), 2, "{status}");
    assert!(
        delivered
            .iter()
            .any(|l| l.contains("sheets Weekly email") && l.contains(" sent "))
            && delivered
                .iter()
                .any(|l| l.contains("slack #marketing") && l.contains(" sent ")),
        "{status}"
    );
}

/// `mailroom demo` runs every shipped job against the sandbox and prints a summary: the
/// tables, the weekly totals, the Slack messages with their files saved, win-back and
/// loyalty-sync counts, and commands that work as printed.
#[test]
fn demo_runs_every_job_and_prints_a_summary_whose_commands_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = mailroom::config::DEFAULT_CONFIG.replace("customers = 2000", "customers = 400");
    write_config(dir.path(), &config);
    let (code, stdout, stderr) = run(mailroom(dir.path()).args(["--data-dir", "data", "demo"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for heading in [
        "TABLES LOADED",
        "WEEKLY EMAIL PERFORMANCE",
        "SLACK",
        "WIN-BACK (daily-winback)",
        "LOYALTY SYNC (loyalty-sync)",
        "NEXT",
    ] {
        assert!(stdout.contains(heading), "{heading}: {stdout}");
    }
    for job in [
        "extract-orders",
        "weekly-email-report",
        "daily-winback",
        "loyalty-sync",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.trim_start().starts_with("ok") && l.contains(job)),
            "{job}: {stdout}"
        );
    }
    let png = std::fs::read_dir(dir.path().join("data/demo-files"))
        .expect("files saved")
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "png"))
        .expect("the chart");
    let bytes = std::fs::read(png.path()).expect("png");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG");
    // The printed commands work as printed (from the config's folder).
    let query = stdout
        .lines()
        .find(|l| l.contains("FROM winback_enrollments"))
        .expect("a query line");
    let args: Vec<String> = shell_words(query.trim());
    assert_eq!(args[0], "mailroom", "{query}");
    let (code, out, err) = run(mailroom(dir.path()).args(&args[1..]));
    assert_eq!(code, 0, "{query}: {err}");
    assert!(
        out.contains("treatment") && out.contains("enrolled"),
        "{out}"
    );
}

/// Splits a printed command line into words, honouring double quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

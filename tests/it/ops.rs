//! The operations surface of a real `mailroom run`: `/healthz`, `/readyz`, `/metrics`
//! parsed as Prometheus text, and the status page loaded in headless Chromium (Debian's
//! `chromium`, which `.ci/run` installs), showing the jobs and a failed run's error; the
//! page's screenshot is saved under the test's directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::cli::{KillOnDrop, mailroom, run, write_config};

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn chromium() -> PathBuf {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("headless Chromium: install Debian's `chromium` package (.ci/run does)")
}

/// Chromium, headless, with what it needs to run as root in a closed network.
fn headless(profile: &Path) -> Command {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null());
    cmd
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.expect("answered");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Prometheus text: `name{labels}` → value, every sample line checked to parse.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line.starts_with("# UNIT ")
                    || line == "# EOF",
                "a comment Prometheus does not know: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample is `series value`");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
        if let Some((name, labels)) = series.split_once('{') {
            assert!(labels.ends_with('}'), "{line}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "{line}"
            );
        }
        samples.insert(series.to_string(), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn the_status_server_serves_health_metrics_and_a_page_a_browser_shows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("reports")).expect("reports");
    let config = format!(
        "{}\n[[jobs]]\nname = \"broken-report\"\nschedule = \"0 8 * * 1\"\ntimezone = \"UTC\"\nretries = 0\nsteps = [\n  {{ type = \"sql\", file = \"reports/broken.sql\", name = \"broken\" }},\n]\n\n[server]\nlisten = \"127.0.0.1:{port}\"\n",
        mailroom::config::DEFAULT_CONFIG
    );
    write_config(dir.path(), &config);
    std::fs::write(
        dir.path().join("reports/broken.sql"),
        "-- title = \"Broken\"\nSELECT SOUNDEX(email) FROM {{ ref('smile_customers') }}\n",
    )
    .expect("sql");
    let path = dir.path().to_path_buf();
    let (ok, broken) = tokio::task::spawn_blocking(move || {
        (
            run(mailroom(&path).args(["run-job", "extract-loyalty"])),
            run(mailroom(&path).args(["run-job", "broken-report"])),
        )
    })
    .await
    .expect("runs");
    assert_eq!(ok.0, 0, "{}", ok.2);
    assert_ne!(broken.0, 0, "the broken report fails");

    let mut server = KillOnDrop(
        mailroom(dir.path())
            .args(["run", "--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn"),
    );
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(response) = reqwest::get(format!("{base}/healthz")).await
            && response.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "the server never answered");
        assert!(
            server.0.try_wait().expect("child").is_none(),
            "mailroom run exited"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(&format!("{base}/readyz")).await.0, 200);

    let (status, text) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    let samples = parse_metrics(&text);
    assert_eq!(
        samples.get(r#"mailroom_runs_total{job="broken-report",status="failed"}"#),
        Some(&1.0),
        "{text}"
    );
    assert_eq!(
        samples.get(r#"mailroom_runs_total{job="extract-loyalty",status="succeeded"}"#),
        Some(&1.0),
        "{text}"
    );
    assert!(
        samples
            .get(r#"mailroom_rows_loaded_total{table="smile_customers"}"#)
            .is_some_and(|n| *n > 0.0),
        "{text}"
    );
    assert_eq!(samples.get("mailroom_up"), Some(&1.0), "{text}");
    assert!(
        samples
            .get(r#"mailroom_cursor_lag_seconds{source="smile",stream="customers"}"#)
            .is_some_and(|lag| *lag >= 0.0),
        "{text}"
    );
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("mailroom_run_duration_seconds_bucket")),
        "{text}"
    );
    assert!(
        samples
            .keys()
            .any(|k| k
                .starts_with("mailroom_last_success_timestamp_seconds{job=\"extract-loyalty\"")),
        "{text}"
    );

    // The page, in a real browser.
    let profile = dir.path().join("chromium-profile");
    let dom = headless(&profile)
        .arg("--dump-dom")
        .arg(format!("{base}/"))
        .output()
        .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout).into_owned();
    for shown in [
        "extract-loyalty",
        "daily-winback",
        "broken-report",
        "SOUNDEX",
        "Rows loaded per day",
    ] {
        assert!(dom.contains(shown), "{shown} not on the page: {dom}");
    }
    assert!(
        dom.contains("class=\"failed\""),
        "the failed run is marked: {dom}"
    );
    let screenshot = dir.path().join("status.png");
    let shot = headless(&profile)
        .arg(format!("--screenshot={}", screenshot.display()))
        .arg("--window-size=1280,1400")
        .arg(format!("{base}/"))
        .output()
        .expect("chromium runs");
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&screenshot).expect("the screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );

    let stopped = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(stopped.success());
    assert_eq!(server.0.wait().expect("wait").code(), Some(0));
}

//! Slack deliveries against the sandbox: a report posts one message — its title, the
//! period, the top rows as a table block, the delivery key in its metadata — and shares
//! the whole result as a CSV with the report's chart as a PNG; a rerun of the period sends
//! nothing, and with the ledger lost the message and files are found in the channel's
//! history instead of sent twice. Channels
//! are named or given by id; a channel the app is not in is a config error that says to
//! invite it. Without a bot token the incoming webhook posts the message, and a post of
//! unknown outcome is never sent again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailroom::config::{DeliveryMode, DestinationKind, Step};
use mailroom::error::ErrorKind;
use mailroom::pipeline::Pipeline;
use mailroom::scheduler::{Executor, RunContext};
use mailroom::state::{DeliveryStatus, StateStore, Trigger};
use mailroom_sandbox::RunningSandbox;
use serde_json::Value;

use crate::support::{get_json, job, report_pipeline, small_sandbox, utc};

/// The golden fire time: the report gives the golden rows.
const NOW: &str = "2026-11-01T00:00:00Z";

fn project_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn golden_lines(case: &str) -> Vec<String> {
    std::fs::read_to_string(project_file(&format!("tests/golden/expected/{case}.csv")))
        .expect("golden")
        .lines()
        .map(str::to_string)
        .collect()
}

async fn pipeline(sandbox: &RunningSandbox, dir: &Path, ledger: &str) -> Pipeline {
    report_pipeline(sandbox, dir, ledger, false).await
}

fn to_channel(channel: &str) -> mailroom::config::JobConfig {
    let mut job = job(
        "weekly-email-report",
        "0 8 * * 1",
        chrono_tz::Australia::Sydney,
    );
    job.steps = vec![
        Step::Sql {
            name: "weekly_email".into(),
            file: project_file("reports/weekly_email_performance.sql"),
            params: BTreeMap::new(),
            into: None,
            header_deliveries: true,
        },
        Step::Deliver {
            from: "weekly_email".into(),
            to: DestinationKind::Slack,
            target: channel.into(),
            mode: DeliveryMode::Append,
        },
    ];
    job
}

fn run(id: &str) -> RunContext {
    RunContext {
        run_id: id.into(),
        trigger: Trigger::Schedule,
        scheduled_for: utc(NOW),
        covers_from: None,
        attempt: 1,
        dry_run: false,
    }
}

async fn slack_state(sandbox: &RunningSandbox) -> Value {
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    state["slack"].clone()
}

#[tokio::test]
async fn a_report_posts_one_message_and_one_csv_per_period_even_with_the_ledger_lost() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let weekly = to_channel("#marketing");
    let first = pipeline(&sandbox, dir.path(), "state.db").await;
    let counters = first
        .execute(&weekly, &run("run-1"))
        .await
        .expect("delivered");
    assert_eq!(counters.get("deliveries_sent"), Some(&1), "{counters:?}");

    let golden = golden_lines("weekly_email_performance");
    let state = slack_state(&sandbox).await;
    let posted: Vec<&Value> = state["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["via"] == "chat.postMessage")
        .collect();
    assert_eq!(posted.len(), 1, "{state}");
    let message = posted[0];
    assert_eq!(message["channel"], "C0SANDBOX01");
    assert_eq!(
        message["blocks"][0]["text"]["text"],
        "Weekly email performance"
    );
    // The header's key figures, from the all-platforms total row, with their change
    // (tests/golden/expected/weekly_email_performance.csv: sent 1500, +275%; open rate
    // 0.2331, -0.0669).
    let fields = message["blocks"][2]["fields"]
        .as_array()
        .expect("key figures");
    assert_eq!(fields[0]["text"], "*sent*\n1,500  ▲ 275.0%");
    assert_eq!(fields[2]["text"], "*open rate*\n0.2331  ▼ 6.7 pts");
    let table = message["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .find(|b| b["type"] == "table")
        .expect("a table block");
    assert_eq!(
        table["rows"].as_array().map(Vec::len),
        Some(golden.len()),
        "header and every row"
    );
    assert_eq!(table["rows"][0][0]["text"], "platform");
    assert_eq!(message["metadata"]["event_type"], "mailroom_delivery");
    assert_eq!(
        message["metadata"]["event_payload"]["key"],
        "weekly-email-report/weekly_email/2026-10-26T08:00:00+11:00/slack/#marketing"
    );
    let files = state["files"].as_array().expect("files");
    assert_eq!(files.len(), 2, "the CSV and the chart: {state}");
    let csv = files[0]["content"].as_str().expect("csv");
    assert_eq!(csv.lines().count(), golden.len(), "the whole result: {csv}");
    assert_eq!(csv.lines().next(), golden.first().map(String::as_str));
    assert_eq!(files[0]["channel"], "C0SANDBOX01");
    assert!(
        files[1]["filename"]
            .as_str()
            .is_some_and(|n| n.ends_with(".png"))
    );
    assert_chart(files[1]["content_base64"].as_str().expect("a binary file"));
    let shares: Vec<&Value> = state["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["subtype"] == "file_share")
        .collect();
    assert_eq!(shares.len(), 1, "both files in one message");

    // The same period again: the ledger says sent.
    let again = first.execute(&weekly, &run("run-2")).await.expect("rerun");
    assert_eq!(again.get("deliveries_already_made"), Some(&1), "{again:?}");
    // The ledger lost: the message and file are found in the channel, not sent again.
    let lost = pipeline(&sandbox, dir.path(), "lost.db").await;
    lost.execute(&weekly, &run("run-3"))
        .await
        .expect("lost ledger");
    let after = slack_state(&sandbox).await;
    assert_eq!(after["messages"], state["messages"], "nothing posted twice");
    assert_eq!(after["files"], state["files"], "nothing shared twice");
    let ledger = StateStore::open(&dir.path().join("lost.db")).expect("state");
    let record = ledger
        .recent_deliveries("weekly-email-report", 1)
        .expect("read");
    assert_eq!(record[0].status, DeliveryStatus::Sent);
    assert_eq!(
        record[0].remote_ref.as_deref(),
        message["ts"]
            .as_str()
            .map(|ts| format!("ts {ts}"))
            .as_deref()
    );
}

/// The chart decodes as a PNG and is not blank: background, bars in more than one place
/// and text.
fn assert_chart(base64: &str) {
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(base64)
        .expect("base64");
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut pixels).expect("a frame");
    assert!(info.width >= 400 && info.height >= 200, "{info:?}");
    let step = info.color_type.samples();
    let colours: std::collections::BTreeSet<&[u8]> = pixels.chunks(step).collect();
    let white = pixels
        .chunks(step)
        .filter(|p| p.iter().all(|c| *c == 255))
        .count();
    let ink = pixels.len() / step - white;
    assert!(
        colours.len() > 10,
        "more than a flat image: {} colours",
        colours.len()
    );
    assert!(ink > 5_000, "bars, axes and labels drawn: {ink} pixels");
}

#[tokio::test]
async fn a_channel_the_app_is_not_in_is_a_config_error_saying_to_invite_it() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(&sandbox, dir.path(), "state.db").await;
    let err = pipeline
        .execute(&to_channel("#leadership"), &run("run-1"))
        .await
        .expect_err("not in channel");
    assert_eq!(err.kind, ErrorKind::Config, "{err}");
    assert!(
        err.message.contains("not_in_channel") && err.message.contains("/invite"),
        "{err}"
    );
    // A channel no one can find by name (archived, or never made), and one given by id.
    for missing in ["#old-campaigns", "#nowhere"] {
        let err = pipeline
            .execute(&to_channel(missing), &run("run-2"))
            .await
            .expect_err("no such channel");
        assert_eq!(err.kind, ErrorKind::Config, "{err}");
        assert!(err.message.contains("channel_not_found"), "{err}");
    }
    assert_eq!(
        slack_state(&sandbox).await["messages"],
        serde_json::json!([])
    );
    pipeline
        .execute(&to_channel("C0SANDBOX02"), &run("run-3"))
        .await
        .expect("posted by id");
    let state = slack_state(&sandbox).await;
    assert_eq!(state["messages"][0]["channel"], "C0SANDBOX02", "{state}");
}

#[tokio::test]
async fn a_report_without_deliver_steps_goes_where_its_header_says() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(&sandbox, dir.path(), "state.db").await;
    // loyalty_overview.sql's header: deliver = [{ to = "slack", channel = "#loyalty" }].
    let mut loyalty = job("loyalty-report", "30 8 * * 1", chrono_tz::Australia::Sydney);
    loyalty.steps = vec![Step::Sql {
        name: "loyalty".into(),
        file: project_file("reports/loyalty_overview.sql"),
        params: BTreeMap::new(),
        into: None,
        header_deliveries: true,
    }];
    let counters = pipeline
        .execute(&loyalty, &run("run-1"))
        .await
        .expect("delivered");
    assert_eq!(counters.get("deliveries_sent"), Some(&1), "{counters:?}");
    let state = slack_state(&sandbox).await;
    let messages = state["messages"].as_array().expect("messages");
    let posted: Vec<&Value> = messages
        .iter()
        .filter(|m| m["via"] == "chat.postMessage")
        .collect();
    assert_eq!(posted.len(), 1, "{state}");
    assert_eq!(posted[0]["channel"], "C0SANDBOX02", "#loyalty");
    assert_eq!(posted[0]["blocks"][0]["text"]["text"], "Loyalty overview");
}

#[tokio::test]
async fn a_run_that_finally_fails_posts_one_notice_to_its_alert_channel() {
    use mailroom::scheduler::Runtime;
    use mailroom::scheduler::clock::SystemClock;
    use mailroom::state::{NewRun, RunStatus};
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(&sandbox, dir.path(), "state.db").await;
    std::fs::write(
        dir.path().join("broken.sql"),
        "-- title = \"Broken\"\nSELECT SOUNDEX(email) FROM {{ ref('shopify_customers') }}\n",
    )
    .expect("sql");
    let mut broken = job("broken-report", "0 8 * * 1", chrono_tz::UTC);
    broken.alert_channel = Some("#marketing".into());
    broken.steps = vec![Step::Sql {
        name: "broken".into(),
        file: dir.path().join("broken.sql"),
        params: BTreeMap::new(),
        into: None,
        header_deliveries: true,
    }];
    let runtime = Runtime {
        executor: pipeline,
        state: Arc::new(StateStore::open(&dir.path().join("runs.db")).expect("state")),
        clock: Arc::new(SystemClock),
    };
    let shutdown = tokio_util::sync::CancellationToken::new();
    let dry = NewRun::new("broken-report", Trigger::Manual, utc(NOW));
    runtime.run(&broken, dry, true, &shutdown).await;
    assert_eq!(
        slack_state(&sandbox).await["messages"],
        serde_json::json!([]),
        "a dry run tells no one"
    );
    let run = NewRun::new("broken-report", Trigger::Manual, utc(NOW));
    let outcome = runtime.run(&broken, run, false, &shutdown).await;
    assert_eq!(outcome.status, RunStatus::Failed);
    let state = slack_state(&sandbox).await;
    let messages = state["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "{state}");
    let notice = &messages[0];
    assert_eq!(notice["channel"], "C0SANDBOX01");
    assert!(
        notice["text"]
            .as_str()
            .is_some_and(|t| t.contains("broken-report failed after 1 attempt(s) (config error)")),
        "{notice}"
    );
    let detail = notice["blocks"][0]["text"]["text"]
        .as_str()
        .expect("detail");
    assert!(
        detail.contains("SOUNDEX") && detail.contains("mailroom status --job broken-report"),
        "{detail}"
    );
}

/// The secret environment of a team that set only `webhook_url`.
struct WebhookEnv(String);

impl mailroom::secret::Environment for WebhookEnv {
    fn get(&self, var: &str) -> Option<String> {
        (var == "SLACK_WEBHOOK_URL").then(|| self.0.clone())
    }
}

/// A pipeline whose Slack has no bot token, only the sandbox's incoming webhook; calls
/// time out after `timeout`.
async fn webhook_pipeline(
    sandbox: &RunningSandbox,
    dir: &Path,
    timeout: std::time::Duration,
) -> Pipeline {
    use mailroom::services::{Overrides, ServiceKind, Services};
    let mut config = crate::support::shipped_config();
    config.base_dir = project_file("");
    config.data_dir = dir.to_path_buf();
    let warehouse_dir = config.local_warehouse_dir().expect("local");
    let mut warehouse =
        mailroom::warehouse::local::LocalWarehouse::open(&warehouse_dir).expect("open");
    crate::sql_golden::load_fixtures(&mut warehouse).await;
    let endpoints = mailroom_sandbox::services(&sandbox.base_url);
    let hook = endpoints
        .iter()
        .find(|e| e.key == "slack_webhook")
        .expect("the sandbox's webhook")
        .base_url
        .clone();
    let mut overrides = Overrides::from_endpoints(
        endpoints.iter().map(|e| (e.key, e.base_url.as_str())),
        mailroom_sandbox::CREDENTIAL,
    )
    .expect("sandbox URLs");
    overrides.services.remove(&ServiceKind::Slack);
    let mut sections = config.service_sections();
    let slack = sections
        .get_mut(&ServiceKind::Slack)
        .expect("[destinations.slack]");
    slack.secrets.insert(
        "webhook_url",
        mailroom::secret::SecretRef {
            var: "SLACK_WEBHOOK_URL".into(),
            key: "destinations.slack.webhook_url".into(),
            file: "config.toml".into(),
            line: 1,
            column: 1,
        },
    );
    let timeouts = mailroom::http::Timeouts {
        connect: std::time::Duration::from_secs(5),
        request: timeout,
    };
    let retry = mailroom::http::RetryPolicy {
        base: std::time::Duration::from_millis(10),
        ..mailroom::http::RetryPolicy::default()
    };
    let services = Services::new(
        sections,
        overrides,
        Box::new(WebhookEnv(hook)),
        mailroom::http::HttpClient::new(timeouts).expect("client"),
        retry,
    );
    let state = StateStore::open(&dir.join("state.db")).expect("state");
    Pipeline::new(Arc::new(config), Arc::new(services), Arc::new(state))
}

fn webhook_posts(state: &Value) -> usize {
    state["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter(|m| m["via"] == "webhook")
        .count()
}

/// Without a bot token the report goes through the incoming webhook: the message with a
/// note that files need a bot token, once per period by the ledger.
#[tokio::test]
async fn with_only_a_webhook_the_message_is_posted_once_without_files() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = webhook_pipeline(&sandbox, dir.path(), std::time::Duration::from_secs(30)).await;
    let weekly = to_channel("#marketing");
    let counters = pipeline
        .execute(&weekly, &run("run-1"))
        .await
        .expect("posted");
    assert_eq!(counters.get("deliveries_sent"), Some(&1), "{counters:?}");
    let state = slack_state(&sandbox).await;
    assert_eq!(webhook_posts(&state), 1, "{state}");
    assert_eq!(
        state["files"],
        serde_json::json!([]),
        "a webhook shares no files"
    );
    let message = &state["messages"][0];
    assert_eq!(
        message["blocks"][0]["text"]["text"],
        "Weekly email performance"
    );
    let note = message["blocks"]
        .as_array()
        .and_then(|b| b.last())
        .map(|b| b["elements"][0]["text"].to_string())
        .unwrap_or_default();
    assert!(note.contains("set a bot token"), "{note}");
    let again = pipeline
        .execute(&weekly, &run("run-2"))
        .await
        .expect("rerun");
    assert_eq!(again.get("deliveries_already_made"), Some(&1), "{again:?}");
    assert_eq!(webhook_posts(&slack_state(&sandbox).await), 1);
}

/// A webhook post whose answer never came may have arrived, and the channel cannot be
/// asked: it is recorded `unknown`, the run fails once saying so, and it is never posted
/// again — nor is one left in flight by a crash.
#[tokio::test]
async fn a_webhook_post_of_unknown_outcome_is_never_sent_again() {
    use mailroom_sandbox::SandboxOptions;
    use mailroom_sandbox::faults::{Fault, FaultRule};
    let options = SandboxOptions {
        faults: vec![FaultRule {
            method: Some("POST".into()),
            path: "/slack/hooks".into(),
            after: 0,
            times: 1,
            fault: Fault::Slow { millis: 2_000 },
            seen: 0,
        }],
        ..SandboxOptions::new(42, 300)
    };
    let sandbox = crate::support::sandbox(options).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline =
        webhook_pipeline(&sandbox, dir.path(), std::time::Duration::from_millis(500)).await;
    let weekly = to_channel("#marketing");
    let err = pipeline
        .execute(&weekly, &run("run-1"))
        .await
        .expect_err("the outcome is unknown");
    assert_eq!(err.kind, ErrorKind::Terminal, "{err:?}");
    assert!(
        err.message.contains("recorded as unknown"),
        "{}",
        err.message
    );
    // Whether the post arrived is not known to mailroom (the sandbox dropped it with the
    // connection); whatever it was, later runs leave it so.
    let posted = webhook_posts(&slack_state(&sandbox).await);
    let later = pipeline
        .execute(&weekly, &run("run-2"))
        .await
        .expect("a later run skips it");
    assert_eq!(later.get("deliveries_unknown"), Some(&1), "{later:?}");
    assert_eq!(
        webhook_posts(&slack_state(&sandbox).await),
        posted,
        "not sent again"
    );
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    let record = ledger
        .recent_deliveries("weekly-email-report", 1)
        .expect("read");
    assert_eq!(record[0].status, DeliveryStatus::Unknown);

    // A delivery a crash left in flight (recorded, then nothing more) is not posted either.
    let next = Step::Deliver {
        from: "weekly_email".into(),
        to: DestinationKind::Slack,
        target: "#loyalty".into(),
        mode: DeliveryMode::Append,
    };
    let mut other = to_channel("#marketing");
    other.steps[1] = next;
    let in_flight = mailroom::state::Delivery {
        job: other.name.clone(),
        report: "weekly_email".into(),
        period: "2026-10-26T08:00:00+11:00".into(),
        destination: "slack".into(),
        target: "#loyalty".into(),
    };
    ledger
        .begin_delivery(&in_flight, "crashed-run", utc(NOW))
        .expect("in flight");
    let err = pipeline
        .execute(&other, &run("run-3"))
        .await
        .expect_err("the crash's outcome is unknown");
    assert!(
        err.message.contains("interrupted while in flight"),
        "{}",
        err.message
    );
    assert_eq!(
        webhook_posts(&slack_state(&sandbox).await),
        posted,
        "nothing posted"
    );
}

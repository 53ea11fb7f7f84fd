//! Sheets deliveries against the sandbox: a report's rows land under its header in a tab
//! created on first use, typed as the sheet should hold them; each (job, report, period,
//! tab) is delivered once — a rerun, a run with a lost ledger, or a retry finds its block
//! in the sheet — and the next period adds one block; `replace` keeps the header and adds
//! no rows; a tab whose header differs is refused. Expectations come from the golden files
//! and the keys the ledger gives, read back through `/_sandbox/state`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mailroom::config::{DeliveryMode, DestinationKind, Step};
use mailroom::deliver::sheets::KEY_COLUMN;
use mailroom::error::ErrorKind;
use mailroom::pipeline::Pipeline;
use mailroom::scheduler::{Executor, RunContext};
use mailroom::state::{Delivery, DeliveryStatus, StateStore, Trigger};
use mailroom_sandbox::RunningSandbox;
use serde_json::{Value, json};

use crate::support::{get_json, job, report_pipeline, small_sandbox, utc};

const SHEET: &str = "1SandboxSheetMailroom0000000000000000000000";

fn project_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Data rows and header of a golden CSV.
fn golden(case: &str) -> (Vec<String>, usize) {
    let text = std::fs::read_to_string(project_file(&format!("tests/golden/expected/{case}.csv")))
        .expect("golden file");
    let mut lines = text.lines();
    let header = lines
        .next()
        .expect("header")
        .split(',')
        .map(str::to_string)
        .collect();
    (header, lines.count())
}

async fn pipeline(sandbox: &RunningSandbox, dir: &Path, ledger: &str) -> Pipeline {
    report_pipeline(sandbox, dir, ledger, true).await
}

fn report_job(
    name: &str,
    file: &str,
    tab: &str,
    mode: DeliveryMode,
) -> mailroom::config::JobConfig {
    let mut job = job(name, "0 8 * * 1", chrono_tz::Australia::Sydney);
    job.steps = vec![
        Step::Sql {
            name: "report".into(),
            file: project_file(file),
            params: BTreeMap::new(),
            into: None,
            header_deliveries: true,
        },
        Step::Deliver {
            from: "report".into(),
            to: DestinationKind::Sheets,
            target: tab.into(),
            mode,
        },
    ];
    job
}

fn run(id: &str, at: &str) -> RunContext {
    RunContext {
        run_id: id.into(),
        trigger: Trigger::Schedule,
        scheduled_for: utc(at),
        covers_from: None,
        attempt: 1,
        dry_run: false,
    }
}

async fn tab(sandbox: &RunningSandbox, tab: &str) -> Vec<Value> {
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    state["sheets"]["spreadsheets"][SHEET]["tabs"][tab]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Runs at the golden fire time (so the report gives the golden rows), standing for the
/// weekly job's last fire before it, Monday 2026-10-26 08:00 in Sydney; then a week later.
const PERIOD_1: &str = "2026-11-01T00:00:00Z";
const PERIOD_2: &str = "2026-11-08T00:00:00Z";

#[tokio::test]
async fn a_report_lands_once_per_period_under_its_header_and_survives_a_lost_ledger() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let weekly = report_job(
        "weekly-email-report",
        "reports/weekly_email_performance.sql",
        "Weekly email",
        DeliveryMode::Append,
    );
    let pipeline_a = pipeline(&sandbox, dir.path(), "state.db").await;
    let counters = pipeline_a
        .execute(&weekly, &run("run-1", PERIOD_1))
        .await
        .expect("first run");
    assert_eq!(counters.get("deliveries_sent"), Some(&1), "{counters:?}");

    let (mut header, rows) = golden("weekly_email_performance");
    header.push(KEY_COLUMN.to_string());
    let first = tab(&sandbox, "Weekly email").await;
    assert_eq!(
        first[0],
        json!(header),
        "the header is the report's columns and the key"
    );
    let delivery = Delivery {
        job: "weekly-email-report".into(),
        report: "report".into(),
        period: "2026-10-26T08:00:00+11:00".into(),
        destination: "sheets".into(),
        target: "Weekly email".into(),
    };
    assert_eq!(first.len(), 1 + rows);
    let key_column = header.len() - 1;
    assert!(
        first[1..]
            .iter()
            .all(|row| row[key_column] == delivery.key()),
        "every row carries its delivery's key: {first:?}"
    );
    // Typed as the sheet should hold them: numbers as numbers, text as text.
    let total = &first[1];
    assert_eq!(total[0], "all platforms");
    assert_eq!(total[6], 1500, "sent is a number: {total:?}");
    assert!(
        total[12].as_f64().is_some_and(|r| (r - 120.0).abs() < 1e-9),
        "revenue: {total:?}"
    );
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let dates = &state["sheets"]["spreadsheets"][SHEET]["date_cells"]["Weekly email"];
    assert_eq!(
        dates[0], "E3 (date-time)",
        "sent_at is a date-time the sheet can sort: {dates}"
    );
    assert_eq!(
        first[2][4].as_f64().map(f64::floor),
        Some(46325.0),
        "{:?}",
        first[2]
    );
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    let record = ledger.delivery(&delivery).expect("read").expect("recorded");
    assert_eq!(record.status, DeliveryStatus::Sent);
    assert_eq!(record.rows, Some(rows as u64));
    let last_column = char::from(b'A' + key_column as u8);
    assert_eq!(
        record.remote_ref,
        Some(format!("'Weekly email'!A2:{last_column}{}", 1 + rows))
    );

    // The same period again: the ledger says sent, nothing is written.
    let again = pipeline_a
        .execute(&weekly, &run("run-2", PERIOD_1))
        .await
        .expect("rerun");
    assert_eq!(again.get("deliveries_already_made"), Some(&1), "{again:?}");
    assert_eq!(tab(&sandbox, "Weekly email").await, first);

    // With the ledger lost, the block is found in the sheet and rewritten in place.
    let pipeline_b = pipeline(&sandbox, dir.path(), "lost-ledger.db").await;
    let lost = pipeline_b
        .execute(&weekly, &run("run-3", PERIOD_1))
        .await
        .expect("lost ledger");
    assert_eq!(lost.get("deliveries_sent"), Some(&1), "{lost:?}");
    assert_eq!(tab(&sandbox, "Weekly email").await, first, "no second copy");

    // The next period adds one block below.
    let next = pipeline_a
        .execute(&weekly, &run("run-4", PERIOD_2))
        .await
        .expect("next period");
    let added = next
        .get("delivered_rows.sheets Weekly email")
        .copied()
        .unwrap_or(0) as usize;
    assert!(added > 0, "{next:?}");
    let second = tab(&sandbox, "Weekly email").await;
    assert_eq!(second.len(), first.len() + added);
    assert_eq!(&second[..first.len()], &first[..]);
    let next_key = Delivery {
        period: "2026-11-02T08:00:00+11:00".into(),
        ..delivery.clone()
    }
    .key();
    assert!(
        second[first.len()..]
            .iter()
            .all(|row| row[key_column] == next_key)
    );
}

#[tokio::test]
async fn replace_keeps_the_header_and_adds_no_rows_and_a_foreign_header_is_refused() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(&sandbox, dir.path(), "state.db").await;
    let loyalty = report_job(
        "loyalty-report",
        "reports/loyalty_overview.sql",
        "Loyalty",
        DeliveryMode::Replace,
    );
    pipeline
        .execute(&loyalty, &run("run-1", PERIOD_1))
        .await
        .expect("first");
    let first = tab(&sandbox, "Loyalty").await;
    let (_, rows) = golden("loyalty_overview");
    assert_eq!(first.len(), 1 + rows);
    pipeline
        .execute(&loyalty, &run("run-2", PERIOD_2))
        .await
        .expect("next period");
    let second = tab(&sandbox, "Loyalty").await;
    assert_eq!(second.len(), first.len(), "replace adds no rows");
    assert_eq!(second[0], first[0], "the header row stays");

    // A tab someone else wrote a different header into is refused, naming the tab.
    let foreign = report_job(
        "weekly-email-report",
        "reports/weekly_email_performance.sql",
        "Loyalty",
        DeliveryMode::Append,
    );
    let err = pipeline
        .execute(&foreign, &run("run-3", PERIOD_1))
        .await
        .expect_err("header mismatch");
    assert_eq!(err.kind, ErrorKind::Config, "{err}");
    assert!(
        err.message.contains("tab \"Loyalty\" has the header"),
        "{err}"
    );
    assert_eq!(tab(&sandbox, "Loyalty").await, second, "nothing written");
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    let failed = ledger
        .recent_deliveries("weekly-email-report", 1)
        .expect("read");
    assert_eq!(failed[0].status, DeliveryStatus::Failed);
}

#[tokio::test]
async fn a_dry_run_reads_the_ledger_and_writes_nothing() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(&sandbox, dir.path(), "state.db").await;
    let weekly = report_job(
        "weekly-email-report",
        "reports/weekly_email_performance.sql",
        "Weekly email",
        DeliveryMode::Append,
    );
    let dry = RunContext {
        dry_run: true,
        ..run("dry-1", PERIOD_1)
    };
    let (_, _, before) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let planned = pipeline.execute(&weekly, &dry).await.expect("dry run");
    assert_eq!(planned.get("deliveries_planned"), Some(&1), "{planned:?}");
    let (_, _, after) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(before["sheets"], after["sheets"], "no sheet written");
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    assert!(
        ledger
            .recent_deliveries("weekly-email-report", 5)
            .expect("read")
            .is_empty()
    );

    pipeline
        .execute(&weekly, &run("run-1", PERIOD_1))
        .await
        .expect("real run");
    let planned = pipeline
        .execute(&weekly, &dry)
        .await
        .expect("dry run after");
    assert_eq!(
        planned.get("deliveries_already_made"),
        Some(&1),
        "{planned:?}"
    );
}

#[tokio::test]
async fn under_a_429_a_503_and_an_answer_cut_off_after_the_write_the_tab_holds_one_block() {
    use mailroom_sandbox::SandboxOptions;
    use mailroom_sandbox::faults::{Fault, FaultRule};
    let rule = |method: &str, after: u32, fault: Fault| FaultRule {
        method: Some(method.into()),
        path: "/sheets/v4/spreadsheets".into(),
        after,
        times: 1,
        fault,
        seen: 0,
    };
    let options = SandboxOptions {
        faults: vec![
            rule(
                "GET",
                0,
                Fault::RateLimit {
                    retry_after_secs: Some(0),
                },
            ),
            // The first write (header and block) fails with a 503 and is retried; the
            // retry is applied but its answer is cut off: the outcome is unknown to mailroom.
            rule("PUT", 0, Fault::ServerError { status: 503 }),
            rule("PUT", 1, Fault::ConnectionReset),
        ],
        ..SandboxOptions::new(42, 300)
    };
    let sandbox = crate::support::sandbox(options).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(&sandbox, dir.path(), "state.db").await;
    let weekly = report_job(
        "weekly-email-report",
        "reports/weekly_email_performance.sql",
        "Weekly email",
        DeliveryMode::Append,
    );
    // The client retries the idempotent writes: the 503'd one, and the one whose answer
    // was cut off after it was applied; writing the same range again changes nothing.
    let counters = pipeline
        .execute(&weekly, &run("run-1", PERIOD_1))
        .await
        .expect("delivered despite the faults");
    assert_eq!(counters.get("deliveries_sent"), Some(&1), "{counters:?}");
    let (_, rows) = golden("weekly_email_performance");
    assert_eq!(
        tab(&sandbox, "Weekly email").await.len(),
        1 + rows,
        "one block"
    );
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let faulted: u64 = state["requests"]
        .as_object()
        .expect("counts")
        .iter()
        .filter(|(endpoint, _)| endpoint.contains("/sheets/"))
        .map(|(_, c)| c["rate_limited"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(faulted, 1, "the 429 was met and waited out");
    let writes: u64 = state["requests"]
        .as_object()
        .expect("counts")
        .iter()
        .filter(|(endpoint, _)| endpoint.starts_with("PUT /sheets/"))
        .map(|(_, c)| c["requests"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        writes, 3,
        "header and block, three times (503, cut off, done)"
    );
    let ledger = StateStore::open(&dir.path().join("state.db")).expect("state");
    let record = ledger
        .recent_deliveries("weekly-email-report", 1)
        .expect("read");
    assert_eq!(
        (record[0].status, record[0].attempts),
        (DeliveryStatus::Sent, 1)
    );
}

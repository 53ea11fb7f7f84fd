//! `mailroom demo`: every job of the configuration run once against the sandbox, in
//! dependency order (extracts first, compaction last), with a progress line per job, then
//! a summary a person reads at a glance — the tables loaded, the weekly report's totals,
//! the Slack messages as text with their files saved beside the data, what win-back and
//! the loyalty sync did, and `query` lines that work as printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use arrow::array::{AsArray, BooleanArray};
use arrow::record_batch::RecordBatch;
use base64::Engine;
use chrono::{Timelike, Utc};
use mailroom::config::{Config, JobConfig, Step};
use mailroom::error::ErrorKind;
use mailroom::http::{Auth, Call, Service};
use mailroom::pipeline::Pipeline;
use mailroom::scheduler::clock::SystemClock;
use mailroom::scheduler::{RunOutcome, Runtime};
use mailroom::sql::SqlFile;
use mailroom::sql::output::{self, OutputFormat};
use mailroom::state::{Counters, NewRun, RunStatus, Trigger};
use mailroom::warehouse::{self, QueryResult};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{Failure, Wiring, open_state, print};

/// The report whose totals the summary shows.
const WEEKLY_REPORT: &str = "reports/weekly_email_performance.sql";
/// Its columns the summary shows.
const WEEKLY_COLUMNS: [&str; 7] = [
    "platform",
    "campaigns",
    "sent",
    "open_rate",
    "click_through_rate",
    "revenue",
    "sent_change_pct",
];

/// Extracts first (the rest read their tables), compaction last, the others as written.
fn ordered(jobs: &[JobConfig]) -> Vec<JobConfig> {
    let rank = |job: &JobConfig| {
        if job.steps.iter().all(|s| matches!(s, Step::Extract { .. })) {
            0
        } else if job.steps.iter().all(|s| matches!(s, Step::Compact { .. })) {
            2
        } else {
            1
        }
    };
    let mut jobs = jobs.to_vec();
    jobs.sort_by_key(rank);
    jobs
}

/// A fresh directory under the system's temporary one, kept after the demo so the printed
/// commands can read it.
fn fresh_data_dir() -> Result<PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!(
        "mailroom-demo-{}",
        Utc::now().format("%Y%m%d-%H%M%S")
    ));
    std::fs::create_dir_all(&dir).map_err(|e| Failure {
        kind: ErrorKind::Terminal,
        message: format!("cannot create {}: {e}", dir.display()),
    })?;
    Ok(dir)
}

/// `mailroom demo`.
pub async fn demo(
    mut config: Config,
    data_dir_given: bool,
    keep_running: bool,
) -> Result<ExitCode, Failure> {
    if !config.sandbox.enabled {
        return Err(Failure {
            kind: ErrorKind::Config,
            message: "the demo runs against the sandbox: enable [sandbox] (the built-in config does), or run it without --config".into(),
        });
    }
    if !data_dir_given {
        config.data_dir = fresh_data_dir()?;
    }
    let data_dir = config.data_dir.clone();
    say!(
        "mailroom demo: every job of the configuration, once, against the in-process sandbox ({} customers, seed {})",
        config.sandbox.customers,
        config.sandbox.seed
    );
    say!("data directory: {}\n", data_dir.display());
    let (_lock, state) = open_state(&config)?;
    // Bound first, so a busy port is said before anything runs.
    let server = match keep_running {
        true => Some(super::run::server_listener(&config).await?),
        false => None,
    };
    let wiring = Wiring::build(config).await?;
    let runtime = Runtime {
        executor: Pipeline::new(
            wiring.config.clone(),
            wiring.services.clone(),
            state.clone(),
        ),
        state: state.clone(),
        clock: Arc::new(SystemClock),
    };
    let shutdown = CancellationToken::new();
    let started = Utc::now();
    let now = started.with_nanosecond(0).unwrap_or(started);
    let mut outcomes: Vec<(JobConfig, RunOutcome)> = Vec::new();
    for job in ordered(&wiring.config.jobs) {
        let bar = print::JobBar::start(&job);
        let outcome = runtime
            .run(
                &job,
                NewRun::new(&job.name, Trigger::Manual, now),
                false,
                &shutdown,
            )
            .await;
        bar.finish(&job, &outcome);
        outcomes.push((job, outcome));
    }
    let seconds = (Utc::now() - started).num_milliseconds() as f64 / 1000.0;
    say!("\nall {} jobs ran in {seconds:.1} s\n", outcomes.len());

    print_tables(&outcomes);
    print_weekly(&wiring, now).await;
    if let Some(url) = wiring.sandbox_url() {
        print_slack(&wiring, url, &data_dir.join("demo-files")).await;
    }
    print_activation(&outcomes);
    print_next(&data_dir);

    if let Some((listener, token)) = server {
        return super::run::schedule_and_serve(&wiring, state, listener, token, |url| {
            say!("\nthe scheduler keeps running: the status page is at {url} (Ctrl-C stops it)");
        })
        .await;
    }
    let failed: Vec<&(JobConfig, RunOutcome)> = outcomes
        .iter()
        .filter(|(_, o)| o.status != RunStatus::Succeeded)
        .collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let names: Vec<String> = failed
        .iter()
        .map(|(job, o)| {
            format!(
                "{} ({})",
                job.name,
                o.error
                    .as_ref()
                    .map_or("no error recorded", |e| e.message.as_str())
            )
        })
        .collect();
    Err(Failure {
        kind: ErrorKind::Terminal,
        message: format!("{} job(s) failed: {}", failed.len(), names.join("; ")),
    })
}

/// Rows loaded per table over every job.
fn print_tables(outcomes: &[(JobConfig, RunOutcome)]) {
    let mut tables: std::collections::BTreeMap<&str, u64> = Default::default();
    for (_, outcome) in outcomes {
        for (key, n) in &outcome.counters {
            if let Some(table) = key.strip_prefix("rows.") {
                *tables.entry(table).or_default() += n;
            }
        }
    }
    say!("TABLES LOADED");
    for (table, rows) in &tables {
        say!("  {table:<34} {rows:>9} rows");
    }
    say!();
}

/// The weekly report's total rows, as the job's run saw them.
async fn print_weekly(wiring: &Wiring, now: chrono::DateTime<Utc>) {
    let answer = async {
        let engine = warehouse::open_for_queries(&wiring.config, &wiring.services)
            .map_err(|e| e.to_string())?;
        let file = SqlFile::read(&wiring.config.base_dir.join(WEEKLY_REPORT))
            .map_err(|e| e.to_string())?;
        let sql = file
            .render(now, &Default::default(), &engine.table_names())
            .map_err(|e| e.to_string())?;
        let result = engine.run(&sql).await.map_err(|e| e.to_string())?;
        totals(&result).map_err(|e| e.to_string())
    };
    match answer.await {
        Ok(totals) => {
            say!(
                "WEEKLY EMAIL PERFORMANCE (totals of the last 7 days; the report has a row per campaign too)"
            );
            let mut table = Vec::new();
            if output::write(&totals, OutputFormat::Table, &mut table).is_ok() {
                say!("{}", String::from_utf8_lossy(&table));
            }
        }
        Err(err) => say!("WEEKLY EMAIL PERFORMANCE: could not be read back ({err})\n"),
    }
}

/// The total rows of the weekly report, with the columns a glance needs.
fn totals(result: &QueryResult) -> Result<QueryResult, arrow::error::ArrowError> {
    let indices: Vec<usize> = WEEKLY_COLUMNS
        .iter()
        .filter_map(|c| result.schema.index_of(c).ok())
        .collect();
    let schema = Arc::new(result.schema.project(&indices)?);
    let mut batches = Vec::new();
    for batch in &result.batches {
        let Ok(kind) = batch.schema().index_of("row_type") else {
            continue;
        };
        let kinds = arrow::compute::cast(batch.column(kind), &arrow::datatypes::DataType::Utf8)?;
        let keep: BooleanArray = kinds
            .as_string::<i32>()
            .iter()
            .map(|k| Some(k == Some("total")))
            .collect();
        let projected: RecordBatch = batch.project(&indices)?;
        batches.push(arrow::compute::filter_record_batch(&projected, &keep)?);
    }
    Ok(QueryResult { schema, batches })
}

/// Each Slack message as text, and the files shared with them saved under `dir`.
async fn print_slack(wiring: &Wiring, sandbox_url: &str, dir: &Path) {
    let Ok(base_url) = sandbox_url.parse() else {
        return;
    };
    let inspection = Service {
        name: "sandbox inspection",
        base_url,
        auth: Auth::None,
        retry: wiring.services.retry(),
        budget: None,
    };
    let client = wiring.services.client();
    let state: Value = match client
        .send(&inspection, &Call::get("/_sandbox/state"))
        .await
    {
        Ok(response) => response.json().await.unwrap_or(Value::Null),
        Err(err) => {
            say!("SLACK: the sandbox's state could not be read ({err})\n");
            return;
        }
    };
    let slack = &state["slack"];
    say!("SLACK");
    for message in slack["messages"].as_array().into_iter().flatten() {
        if message["via"] != "chat.postMessage" {
            continue;
        }
        say!("  in {}:", message["channel"].as_str().unwrap_or("?"));
        for block in message["blocks"].as_array().into_iter().flatten() {
            let text = block["text"]["text"]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    block["fields"].as_array().map(|fields| {
                        fields
                            .iter()
                            .filter_map(|f| f["text"].as_str())
                            .map(|t| t.replace('\n', " "))
                            .collect::<Vec<_>>()
                            .join("  |  ")
                    })
                });
            match (block["type"].as_str(), text) {
                (Some("table"), _) => {
                    let rows = block["rows"].as_array().map_or(0, Vec::len);
                    say!("    [table: {} rows]", rows.saturating_sub(1));
                }
                (_, Some(text)) => say!("    {}", text.replace('\n', "\n    ")),
                _ => {}
            }
        }
    }
    let files = slack["files"].as_array().cloned().unwrap_or_default();
    if !files.is_empty() && std::fs::create_dir_all(dir).is_ok() {
        say!("  files shared, saved here:");
        for file in files {
            let name = file["filename"].as_str().unwrap_or("file");
            let bytes = match (file["content"].as_str(), file["content_base64"].as_str()) {
                (Some(text), _) => text.as_bytes().to_vec(),
                (None, Some(encoded)) => base64::engine::general_purpose::STANDARD
                    .decode(encoded)
                    .unwrap_or_default(),
                _ => continue,
            };
            let path = dir.join(name);
            if std::fs::write(&path, bytes).is_ok() {
                say!("    {}", path.display());
            }
        }
    }
    let tabs = state["sheets"]["tabs"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if !tabs.is_empty() {
        say!("GOOGLE SHEETS");
        for (tab, rows) in tabs {
            let rows = rows.as_array().map_or(0, Vec::len);
            say!(
                "  tab \"{tab}\": {} data rows under its header",
                rows.saturating_sub(1)
            );
        }
    }
    say!();
}

fn counter(counters: &Counters, key: &str) -> u64 {
    counters.get(key).copied().unwrap_or(0)
}

/// What win-back and the loyalty sync did.
fn print_activation(outcomes: &[(JobConfig, RunOutcome)]) {
    for (job, outcome) in outcomes {
        let c = &outcome.counters;
        if job.steps.iter().any(|s| matches!(s, Step::Activate { .. })) {
            say!("WIN-BACK ({})", job.name);
            say!(
                "  {} enrolled, {} held out as the control group, {} deferred",
                counter(c, "activate.enrolled"),
                counter(c, "activate.held_out"),
                counter(c, "activate.deferred")
            );
            let skipped: Vec<String> = c
                .iter()
                .filter_map(|(k, n)| {
                    k.strip_prefix("activate.skipped.")
                        .map(|why| format!("{n} {}", why.replace('_', " ")))
                })
                .collect();
            if !skipped.is_empty() {
                say!("  skipped: {}", skipped.join(", "));
            }
            say!();
        }
        if job
            .steps
            .iter()
            .any(|s| matches!(s, Step::LoyaltySync { .. }))
        {
            say!("LOYALTY SYNC ({})", job.name);
            say!(
                "  {} people updated ({} fields), {} unchanged, {} not on the platform, {} data fields created",
                counter(c, "loyalty.updated_people"),
                counter(c, "loyalty.written_fields"),
                counter(c, "loyalty.unchanged"),
                counter(c, "loyalty.not_on_platform"),
                counter(c, "loyalty.data_fields_created")
            );
            say!();
        }
    }
}

/// Commands to look further, written as this demo was started.
fn print_next(data_dir: &Path) {
    #[allow(
        clippy::disallowed_methods,
        reason = "how the demo was started decides how its follow-up commands are written"
    )]
    let via_cargo = std::env::var_os("CARGO").is_some();
    let command = if via_cargo {
        "cargo run --".to_string()
    } else {
        "mailroom".to_string()
    };
    let dir = data_dir.display();
    say!("NEXT");
    say!("  {command} --data-dir {dir} status");
    say!("  {command} --data-dir {dir} query {WEEKLY_REPORT}");
    say!(
        "  {command} --data-dir {dir} query \"SELECT arm, outcome, COUNT(*) AS people FROM winback_enrollments GROUP BY arm, outcome ORDER BY arm, outcome\""
    );
    say!("  {command} --data-dir {dir} query reports/winback_results.sql");
}

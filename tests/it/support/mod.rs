//! Helpers shared by the integration tests: a scripted [`Executor`], job builders and a
//! harness that runs the scheduler on tokio's paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use mailroom::config::{JobConfig, MissedPolicy, OverlapPolicy, SourceKind, Step};
use mailroom::error::ErrorKind;
use mailroom::schedule::CronSchedule;
use mailroom::scheduler::clock::{Clock, TokioClock};
use mailroom::scheduler::{Executor, RunContext, RunError, Runtime, Scheduler};
use mailroom::state::{Counters, StateStore, Trigger};
use tokio_util::sync::CancellationToken;

/// Parses an RFC 3339 instant.
pub fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test timestamp")
        .with_timezone(&Utc)
}

/// A job with defaults suitable for tests: one extract step, 3 retries, 10 s backoff.
pub fn job(name: &str, schedule: &str, tz: Tz) -> JobConfig {
    JobConfig {
        name: name.to_string(),
        schedule: CronSchedule::parse(schedule, tz).expect("valid schedule"),
        overlap: OverlapPolicy::Skip,
        missed: MissedPolicy::RunOnce,
        retries: 3,
        retry_backoff: Duration::from_secs(10),
        timeout: Duration::from_secs(3600),
        steps: vec![Step::Extract {
            source: SourceKind::Smile,
            streams: vec!["customers".into()],
        }],
        alert_channel: None,
    }
}

/// What the scripted executor does on one attempt.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// How long the attempt takes.
    pub takes: Duration,
    /// `None` to succeed, else fail with this kind.
    pub fails_with: Option<ErrorKind>,
}

impl Behaviour {
    pub fn succeed_after(takes: Duration) -> Self {
        Behaviour {
            takes,
            fails_with: None,
        }
    }

    pub fn fail(kind: ErrorKind) -> Self {
        Behaviour {
            takes: Duration::ZERO,
            fails_with: Some(kind),
        }
    }
}

/// One call the executor received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub job: String,
    pub scheduled_for: DateTime<Utc>,
    pub covers_from: Option<DateTime<Utc>>,
    pub trigger: Trigger,
    pub attempt: u32,
    pub dry_run: bool,
    pub started: DateTime<Utc>,
}

type Script = dyn Fn(&RunContext, usize) -> Behaviour + Send + Sync;

struct Inner {
    clock: Arc<dyn Clock>,
    script: Box<Script>,
    calls: Mutex<Vec<Call>>,
    active: AtomicUsize,
    max_active: AtomicUsize,
}

/// An executor that follows a script and records every call.
#[derive(Clone)]
pub struct ScriptedExecutor(Arc<Inner>);

impl ScriptedExecutor {
    /// `script` gets the run context and the 0-based index of the call.
    pub fn new(
        clock: Arc<dyn Clock>,
        script: impl Fn(&RunContext, usize) -> Behaviour + Send + Sync + 'static,
    ) -> Self {
        ScriptedExecutor(Arc::new(Inner {
            clock,
            script: Box::new(script),
            calls: Mutex::new(Vec::new()),
            active: AtomicUsize::new(0),
            max_active: AtomicUsize::new(0),
        }))
    }

    pub fn calls(&self) -> Vec<Call> {
        self.0.calls.lock().expect("calls").clone()
    }

    /// The most attempts that were running at the same time.
    pub fn max_concurrent(&self) -> usize {
        self.0.max_active.load(Ordering::SeqCst)
    }
}

impl Executor for ScriptedExecutor {
    async fn execute(&self, job: &JobConfig, run: &RunContext) -> Result<Counters, RunError> {
        let inner = &self.0;
        let index = {
            let mut calls = inner.calls.lock().expect("calls");
            calls.push(Call {
                job: job.name.clone(),
                scheduled_for: run.scheduled_for,
                covers_from: run.covers_from,
                trigger: run.trigger,
                attempt: run.attempt,
                dry_run: run.dry_run,
                started: inner.clock.now(),
            });
            calls.len() - 1
        };
        let behaviour = (inner.script)(run, index);
        let active = inner.active.fetch_add(1, Ordering::SeqCst) + 1;
        inner.max_active.fetch_max(active, Ordering::SeqCst);
        struct Done<'a>(&'a AtomicUsize);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _done = Done(&inner.active);
        tokio::time::sleep(behaviour.takes).await;
        match behaviour.fails_with {
            None => Ok(Counters::from([("rows".to_string(), 10)])),
            Some(kind) => Err(RunError::new(kind, format!("scripted {kind} failure"))),
        }
    }
}

/// A fresh state database in a temporary folder.
pub fn state() -> (tempfile::TempDir, Arc<StateStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = StateStore::open(&dir.path().join("state.db")).expect("open state");
    (dir, Arc::new(store))
}

/// Runs a scheduler over `jobs` on a fake clock starting at `start`, shuts it down after
/// `run_for` of virtual time, and waits for it to wind down. Returns the virtual time the
/// wind-down took. Call from a `#[tokio::test(start_paused = true)]`.
pub async fn run_scheduler(
    jobs: Vec<JobConfig>,
    state: Arc<StateStore>,
    executor: ScriptedExecutor,
    clock: Arc<TokioClock>,
    run_for: Duration,
    grace: Duration,
) -> Duration {
    let runtime = Runtime {
        executor,
        state,
        clock,
    };
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(Scheduler::new(runtime, jobs, grace).run(shutdown.clone()));
    tokio::time::sleep(run_for).await;
    shutdown.cancel();
    let stopping = tokio::time::Instant::now();
    task.await.expect("scheduler task");
    stopping.elapsed()
}

/// A fake clock reading `start` now.
pub fn clock_at(start: &str) -> Arc<TokioClock> {
    Arc::new(TokioClock::starting_at(utc(start)))
}

// Starting sandboxes and talking to them as an independent client: shared with the
// sandbox crate's contract tests.
#[path = "../../../crates/sandbox/tests/contract/support.rs"]
mod client;
pub use client::*;
// The `events` table: shared with the BigQuery load bench.
mod events;
pub use events::*;
use serde_json::Value;

/// The shipped config pointed at a sandbox: every source and destination configured.
pub fn shipped_config() -> mailroom::config::Config {
    mailroom::config::parse(
        mailroom::config::DEFAULT_CONFIG,
        "config.toml",
        std::path::Path::new("."),
    )
    .expect("the shipped config parses")
}

/// Every service of the shipped config pointed at the sandbox at `base`, as the command
/// layer points them, retrying per `retry`; Google services use `google_key` (the
/// sandbox's key file) and its project.
pub fn services_with(
    base: &str,
    google_key: Option<&Value>,
    retry: mailroom::http::RetryPolicy,
) -> mailroom::services::Services {
    let client =
        mailroom::http::HttpClient::new(mailroom::http::Timeouts::default()).expect("HTTP client");
    let endpoints = mailroom_sandbox::services(base);
    let mut overrides = mailroom::services::Overrides::from_endpoints(
        endpoints.iter().map(|e| (e.key, e.base_url.as_str())),
        mailroom_sandbox::CREDENTIAL,
    )
    .expect("sandbox URLs");
    overrides.google = google_key.map(|key| mailroom::services::GoogleOverride {
        key_json: key.to_string(),
        project: key["project_id"].as_str().expect("project").to_string(),
    });
    mailroom::services::Services::new(
        shipped_config().service_sections(),
        overrides,
        Box::new([("UNUSED", "")]),
        client,
        retry,
    )
}

/// [`services_with`] without Google, retrying quickly.
pub fn services(base: &str) -> mailroom::services::Services {
    let retry = mailroom::http::retry::RetryPolicy {
        max_retries: 5,
        base: Duration::from_millis(20),
        cap: Duration::from_secs(2),
        retry_after_floor: Duration::from_millis(20),
    };
    services_with(base, None, retry)
}

/// A source of the shipped config talking to the sandbox at `base`, retrying quickly.
pub fn source(kind: SourceKind, base: &str) -> mailroom::sources::AnySource {
    mailroom::sources::build(kind, &services(base)).expect("source builds")
}

/// A run stamp for run `run_id` scheduled at `at`.
pub fn stamp(run_id: &str, at: &str) -> Arc<mailroom::normalize::RunStamp> {
    Arc::new(mailroom::normalize::RunStamp {
        run_id: run_id.to_string(),
        extracted_at: utc(at),
        scheduled_for: utc(at),
    })
}

/// Extracts one stream incrementally into `warehouse` as run `run_id`.
pub async fn extract(
    source: &mailroom::sources::AnySource,
    stream: &str,
    warehouse: &mut mailroom::warehouse::memory::MemoryWarehouse,
    run_id: &str,
) -> Result<mailroom::extract::StreamReport, mailroom::extract::ExtractError> {
    mailroom::extract::extract_stream(
        source,
        stream,
        warehouse,
        stamp(run_id, "2026-11-22T10:00:00Z"),
        mailroom::extract::Mode::Incremental,
        mailroom::normalize::SchemaPolicy::Fixed,
        &|_| {},
    )
    .await
}

/// Loads every stream of every source from the sandbox at `base` into `warehouse` twice:
/// incrementally as `run-1`, then again as `run-2` (a backfill of all time; of the last
/// month for Shopify orders).
/// Returns the merge tables written, children included.
pub async fn load_world_twice(
    warehouse: &mut impl mailroom::warehouse::Warehouse,
    base: &str,
) -> Vec<mailroom::normalize::TableSchema> {
    use mailroom::extract::{Mode, extract_stream};
    use mailroom::normalize::{SchemaPolicy, WriteDisposition};
    use mailroom::sources::Source;
    let everything = Mode::Backfill {
        from: utc("2000-01-01T00:00:00Z"),
        to: utc("2100-01-01T00:00:00Z"),
    };
    let mut merged = Vec::new();
    for kind in [
        SourceKind::Smile,
        SourceKind::Shopify,
        SourceKind::SmartrMail,
        SourceKind::Iterable,
        SourceKind::Dotdigital,
    ] {
        let source = source(kind, base);
        for stream in source.streams() {
            // Shopify's cost bucket makes paging every order take minutes: its second load
            // re-reads the last month (all its orders merged again), not all time.
            let again = if (kind, stream.name) == (SourceKind::Shopify, "orders") {
                Mode::Backfill {
                    from: utc("2026-10-01T00:00:00Z"),
                    to: utc("2100-01-01T00:00:00Z"),
                }
            } else {
                everything
            };
            for (run, mode) in [("run-1", Mode::Incremental), ("run-2", again)] {
                extract_stream(
                    &source,
                    stream.name,
                    warehouse,
                    stamp(run, "2026-11-22T10:00:00Z"),
                    mode,
                    SchemaPolicy::Fixed,
                    &|_| {},
                )
                .await
                .unwrap_or_else(|e| panic!("{} {} as {run}: {e}", source.name(), stream.name));
            }
            let tables = std::iter::once(stream.table.clone()).chain(
                stream
                    .table
                    .children
                    .iter()
                    .map(|c| c.table.as_ref().clone()),
            );
            for table in tables {
                if table.disposition == WriteDisposition::Merge
                    && !merged
                        .iter()
                        .any(|m: &mailroom::normalize::TableSchema| m.name == table.name)
                {
                    merged.push(table);
                }
            }
        }
    }
    merged
}

/// How many keys of `table` have more than one row, by a query on `engine`.
pub async fn duplicate_keys(
    engine: &mailroom::warehouse::QueryEngine,
    table: &mailroom::normalize::TableSchema,
) -> (i64, i64) {
    use arrow::array::AsArray;
    let key = table.key.join(", ");
    let name = engine.table_names().qualify(table.name);
    let sql = format!(
        "SELECT (SELECT COUNT(*) FROM {name}) AS rows_stored, (SELECT COUNT(*) FROM (SELECT {key} FROM {name} GROUP BY {key} HAVING COUNT(*) > 1) AS d) AS duplicated"
    );
    let result = engine
        .run(&sql)
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", table.name));
    let batch = &result.batches[0];
    let value = |i: usize| {
        batch
            .column(i)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0)
    };
    (value(0), value(1))
}

/// Stages one batch of `table` and commits it as its own load (no cursor).
pub async fn commit_batch(
    warehouse: &mut impl mailroom::warehouse::Warehouse,
    load: mailroom::warehouse::LoadId,
    table: &mailroom::normalize::TableSchema,
    batch: arrow::record_batch::RecordBatch,
) -> Result<mailroom::warehouse::CommitOutcome, mailroom::warehouse::WarehouseError> {
    warehouse.write(&load, table, batch).await?;
    warehouse
        .commit(mailroom::warehouse::Commit {
            load,
            tables: vec![table.clone()],
            cursor: None,
        })
        .await
}

/// A pipeline over the shipped config whose local warehouse (under `dir`) holds the golden
/// fixtures, reaching the sandbox's services (Google with the sandbox's key when `google`);
/// `ledger` names the state database, so a test can lose it.
pub async fn report_pipeline(
    sandbox: &mailroom_sandbox::RunningSandbox,
    dir: &std::path::Path,
    ledger: &str,
    google: bool,
) -> mailroom::pipeline::Pipeline {
    let mut config = shipped_config();
    config.base_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    config.data_dir = dir.to_path_buf();
    let warehouse_dir = config.local_warehouse_dir().expect("local");
    if !warehouse_dir.exists() {
        let mut warehouse =
            mailroom::warehouse::local::LocalWarehouse::open(&warehouse_dir).expect("open");
        crate::sql_golden::load_fixtures(&mut warehouse).await;
    }
    let retry = mailroom::http::RetryPolicy {
        base: Duration::from_millis(10),
        ..mailroom::http::RetryPolicy::default()
    };
    let key = google.then(|| sandbox.service_account_key());
    let services = services_with(&sandbox.base_url, key.as_ref(), retry);
    let state = StateStore::open(&dir.join(ledger)).expect("state");
    mailroom::pipeline::Pipeline::new(Arc::new(config), Arc::new(services), Arc::new(state))
}

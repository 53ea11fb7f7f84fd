//! Helpers shared by the integration tests: a scripted [`Executor`], job builders and a
//! harness that runs the scheduler on tokio's paused clock.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use mailroom::config::{JobConfig, MissedPolicy, OverlapPolicy, SourceKind, Step};
use mailroom::error::ErrorKind;
use mailroom::scheduler::clock::{Clock, TokioClock};
use mailroom::scheduler::schedule::CronSchedule;
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

/// A sandbox on a free local port.
pub async fn sandbox(
    options: mailroom::sandbox::SandboxOptions,
) -> mailroom::sandbox::RunningSandbox {
    let addr = "127.0.0.1:0".parse().expect("address");
    mailroom::sandbox::RunningSandbox::start(addr, options)
        .await
        .expect("sandbox starts")
}

const SMALL_SEED: u64 = 42;
const SMALL_CUSTOMERS: u32 = 300;

/// A small world (seed 42, 300 customers) with the real services' rate limits.
pub async fn small_sandbox() -> mailroom::sandbox::RunningSandbox {
    sandbox(mailroom::sandbox::SandboxOptions::new(
        SMALL_SEED,
        SMALL_CUSTOMERS,
    ))
    .await
}

/// The world [`small_sandbox`] serves, for computing what its answers must contain.
pub fn small_world() -> mailroom::sandbox::world::World {
    use mailroom::sandbox::world::{World, WorldParams};
    World::new(WorldParams {
        seed: SMALL_SEED,
        customers: SMALL_CUSTOMERS,
        anchor: WorldParams::default_anchor(),
    })
}

/// GET `url` with optional extra headers; returns status, headers and parsed JSON (or
/// `Null` when the body is not JSON).
pub async fn get_json(
    url: &str,
    headers: &[(&str, &str)],
) -> (
    reqwest::StatusCode,
    reqwest::header::HeaderMap,
    serde_json::Value,
) {
    let mut request = reqwest::Client::new().get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body");
    let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    (status, headers, json)
}

// Google service-account auth against the sandbox, as Google's client libraries do it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPrivateKey;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::sha2::Sha256;
use rsa::signature::{SignatureEncoding, Signer};
use serde_json::{Value, json};

/// A JWT-bearer assertion signed with the key file's private key, as Google's client
/// libraries build it.
pub fn assertion(key_file: &Value, claims: Value) -> String {
    let key = RsaPrivateKey::from_pkcs8_pem(key_file["private_key"].as_str().expect("pem"))
        .expect("PKCS#8 key");
    let header = URL_SAFE_NO_PAD.encode(
        json!({ "alg": "RS256", "typ": "JWT", "kid": key_file["private_key_id"] }).to_string(),
    );
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signature = SigningKey::<Sha256>::new(key).sign(format!("{header}.{body}").as_bytes());
    format!(
        "{header}.{body}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

pub fn claims(key_file: &Value, scope: &str) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({ "iss": key_file["client_email"], "scope": scope, "aud": key_file["token_uri"], "iat": now, "exp": now + 3600 })
}

pub async fn exchange(key_file: &Value, jwt: &str) -> (reqwest::StatusCode, Value) {
    let token_uri = key_file["token_uri"].as_str().expect("token_uri");
    let form = [
        ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
        ("assertion", jwt),
    ];
    let response = reqwest::Client::new()
        .post(token_uri)
        .form(&form)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.expect("json"))
}

pub async fn key_file(base: &str) -> Value {
    get_json(&format!("{base}/_sandbox/service-account.json"), &[])
        .await
        .2
}

pub async fn token(base: &str, scope: &str) -> String {
    let key = key_file(base).await;
    let (status, body) = exchange(&key, &assertion(&key, claims(&key, scope))).await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    body["access_token"].as_str().expect("token").to_string()
}

/// The shipped config pointed at a sandbox: every source and destination configured.
pub fn shipped_config() -> mailroom::config::Config {
    mailroom::config::parse(
        mailroom::config::DEFAULT_CONFIG,
        "config.toml",
        std::path::Path::new("."),
    )
    .expect("the shipped config parses")
}

/// A source of the shipped config talking to the sandbox at `base`, retrying quickly.
pub fn source(kind: SourceKind, base: &str) -> mailroom::sources::AnySource {
    let client =
        mailroom::http::HttpClient::new(mailroom::http::Timeouts::default()).expect("HTTP client");
    let retry = mailroom::http::retry::RetryPolicy {
        max_retries: 5,
        base: Duration::from_millis(20),
        cap: Duration::from_secs(2),
        retry_after_floor: Duration::from_millis(20),
    };
    mailroom::sources::build(
        kind,
        &shipped_config(),
        Some(base),
        &[("UNUSED", "")],
        &client,
        retry,
    )
    .expect("source builds")
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

/// Requests the sandbox saw for endpoints whose pattern starts with `prefix`: (all, 429s).
pub async fn requests(base: &str, prefix: &str) -> (u64, u64) {
    let (_, _, state) = get_json(&format!("{base}/_sandbox/state"), &[]).await;
    let mut total = (0, 0);
    for (endpoint, count) in state["requests"].as_object().expect("request counts") {
        if endpoint.contains(prefix) {
            total.0 += count["requests"].as_u64().unwrap_or(0);
            total.1 += count["rate_limited"].as_u64().unwrap_or(0);
        }
    }
    total
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
    engine: &mailroom::sql::engine::QueryEngine<'_>,
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

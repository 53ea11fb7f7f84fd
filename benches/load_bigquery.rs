//! Load benchmark: a large merge load into BigQuery, and the loader's peak memory.
//!
//! `cargo bench --bench load_bigquery` runs the sandbox (its BigQuery) in one process and,
//! for each size (1,000,000 and 10,000,000 rows by default; `-- --rows 1000000,5000000`), a
//! fresh loader process that stages the rows in batches of 65,536 (an id, a 16-character
//! name that does not compress, a score), commits them as one merge load (staged Parquet
//! uploaded through resumable sessions in 8 MiB chunks, a load job, a MERGE) and prints the
//! staging and commit times, the staged file's size and its own peak resident memory. Flat
//! memory means the 10,000,000-row peak is close to the 1,000,000-row one.
//!
//! Figures are printed; BENCHMARKS.md records them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use mailroom::http::{HttpClient, Timeouts};
use mailroom::normalize::{Column, ColumnType, TableSchema};
use mailroom::services::{GoogleOverride, Overrides, Services};
use mailroom::state::StateStore;
use mailroom::warehouse::bigquery::{BigQuerySettings, BigQueryWarehouse, connect_client};
use mailroom::warehouse::{Commit, LoadId, Warehouse};
use mailroom_sandbox::{RunningSandbox, SandboxOptions};

mod support;

const BATCH_ROWS: u64 = 65_536;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve") => serve(),
        Some("--load") => load(&args[2], &args[3], args[4].parse().expect("rows")),
        _ => drive(&args),
    }
}

fn drive(args: &[String]) {
    let sizes: Vec<u64> = args
        .iter()
        .position(|a| a == "--rows")
        .and_then(|i| args.get(i + 1))
        .map_or("1000000,10000000", String::as_str)
        .split(',')
        .map(|n| n.parse().expect("a row count"))
        .collect();
    println!("load_bigquery: one merge load into the sandbox's BigQuery, a fresh loader per size");
    let me = std::env::current_exe().expect("the benchmark's own path");
    for rows in sizes {
        let mut server: Child = Command::new(&me)
            .arg("--serve")
            .stdout(Stdio::piped())
            .spawn()
            .expect("sandbox process starts");
        let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
        let mut line = || lines.next().expect("a line").expect("readable");
        let (url, key) = (line(), line());
        let output = Command::new(&me)
            .args(["--load", &url, &key, &rows.to_string()])
            .output()
            .expect("loader runs");
        let _ = server.kill();
        let _ = server.wait();
        let field = |name: &str| support::figure(&output, name);
        println!(
            "  {rows:>9} rows: staged in {:.2} s ({:.1} MB of Parquet), committed in {:.2} s; loader CPU {:.2} s, peak RSS {:.1} MB",
            field("stage"),
            field("staged_bytes") / 1e6,
            field("commit"),
            field("cpu_seconds"),
            field("peak_kb") / 1024.0
        );
    }
}

/// Child: serves the sandbox until killed; prints its URL, then its service-account key.
fn serve() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let options = SandboxOptions::new(7, 100);
        let sandbox = RunningSandbox::start("127.0.0.1:0".parse().expect("address"), options)
            .await
            .expect("sandbox starts");
        println!("{}", sandbox.base_url);
        println!("{}", sandbox.service_account_key());
        std::future::pending::<()>().await;
    });
}

/// Child: stages `rows` rows in batches and commits them as one load; prints its figures.
fn load(url: &str, key: &str, rows: u64) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut warehouse = warehouse(url, key, dir.path());
        let table = TableSchema::new(
            "events",
            vec![
                Column::named("id", ColumnType::Int64).required(),
                Column::named("name", ColumnType::Text),
                Column::named("score", ColumnType::Float64),
            ],
        )
        .merge_on(&["id"]);
        let load = LoadId {
            source: "bench".into(),
            stream: "events".into(),
            run_id: "bench-1".into(),
        };
        let started = Instant::now();
        let mut first = 0;
        while first < rows {
            let n = BATCH_ROWS.min(rows - first);
            let batch = events(&table, first, n);
            warehouse
                .write(&load, &table, batch)
                .await
                .expect("batch staged");
            first += n;
        }
        let staged = started.elapsed().as_secs_f64();
        let staged_bytes = folder_bytes(&dir.path().join("bigquery-staging"));
        let started = Instant::now();
        warehouse
            .commit(Commit {
                load,
                tables: vec![table],
                cursor: None,
            })
            .await
            .expect("load committed");
        println!(
            "stage={staged:.3} staged_bytes={staged_bytes} commit={:.3} cpu_seconds={:.3} peak_kb={}",
            started.elapsed().as_secs_f64(),
            support::cpu_seconds(),
            support::peak_rss_kb()
        );
    });
}

/// A BigQuery warehouse on the sandbox at `url`, signing in with `key`, journaling in `dir`.
fn warehouse(url: &str, key: &str, dir: &std::path::Path) -> BigQueryWarehouse {
    let key_json: serde_json::Value = serde_json::from_str(key).expect("key JSON");
    let project = key_json["project_id"]
        .as_str()
        .expect("project")
        .to_string();
    let endpoints = mailroom_sandbox::services(url);
    let mut overrides = Overrides::from_endpoints(
        endpoints.iter().map(|e| (e.key, e.base_url.as_str())),
        mailroom_sandbox::CREDENTIAL,
    )
    .expect("sandbox URLs");
    overrides.google = Some(GoogleOverride {
        key_json: key.to_string(),
        project: project.clone(),
    });
    let config = mailroom::config::parse(
        mailroom::config::DEFAULT_CONFIG,
        "config.toml",
        std::path::Path::new("."),
    )
    .expect("shipped config");
    let services = Services::new(
        config.service_sections(),
        overrides,
        Box::new([("UNUSED", "")]),
        HttpClient::new(Timeouts::default()).expect("client"),
        mailroom::http::RetryPolicy::default(),
    );
    let settings = BigQuerySettings {
        project,
        dataset: "bench".into(),
        location: "US".into(),
        credentials_file: None,
    };
    let client = connect_client(&settings, &services).expect("connect");
    let state = Arc::new(StateStore::open(&dir.join("state.db")).expect("state"));
    BigQueryWarehouse::new(client, "bench".into(), state, dir.join("bigquery-staging"))
}

/// Rows `first..first + n` of `table`: names are a multiplicative hash of the id in hex.
fn events(table: &TableSchema, first: u64, n: u64) -> RecordBatch {
    let ids = first..first + n;
    let schema = table.arrow_schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "id" => Arc::new(Int64Array::from_iter_values(ids.clone().map(|i| i as i64))),
                "name" => {
                    Arc::new(StringArray::from_iter_values(ids.clone().map(|i| {
                        format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                    })))
                }
                "score" => Arc::new(Float64Array::from_iter_values(
                    ids.clone().map(|i| (i % 1000) as f64 / 10.0),
                )),
                "_mailroom_run_id" => Arc::new(StringArray::from(vec!["bench-1"; n as usize])),
                _ => Arc::new(
                    TimestampMicrosecondArray::from(vec![0; n as usize]).with_timezone("UTC"),
                ),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("batch")
}

/// Bytes of the files under `dir`, before the commit removes them.
fn folder_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => folder_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

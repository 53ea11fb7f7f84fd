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

use arrow::record_batch::RecordBatch;
use mailroom::http::{HttpClient, Timeouts};
use mailroom::normalize::TableSchema;
use mailroom::state::StateStore;
use mailroom::warehouse::bigquery::{BigQuerySettings, BigQueryWarehouse, connect_client};
use mailroom::warehouse::{Commit, LoadId, Warehouse};
use mailroom_sandbox::{RunningSandbox, SandboxOptions};

mod support;

// The `events` table of the warehouse tests.
#[path = "../tests/it/support/events.rs"]
mod events;

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
        // Merged on `id`, with a score.
        let table = events::events_table(true, false);
        let load = LoadId {
            source: "bench".into(),
            stream: "events".into(),
            run_id: "bench-1".into(),
        };
        let started = Instant::now();
        let mut first = 0;
        while first < rows {
            let n = BATCH_ROWS.min(rows - first);
            let batch = batch(&table, first, n);
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
    let client = HttpClient::new(Timeouts::default()).expect("client");
    let services = support::sandbox_services(url, client, |_| {}, Some(key));
    let settings = BigQuerySettings {
        project: mailroom_sandbox::google::PROJECT_ID.into(),
        dataset: "bench".into(),
        location: "US".into(),
        credentials_file: None,
    };
    let client = connect_client(&settings, &services).expect("connect");
    let state = Arc::new(StateStore::open(&dir.join("state.db")).expect("state"));
    BigQueryWarehouse::new(client, "bench".into(), state, dir.join("bigquery-staging"))
}

/// Rows `first..first + n` of `table`, with names that do not compress.
fn batch(table: &TableSchema, first: u64, n: u64) -> RecordBatch {
    let names: Vec<String> = (first..first + n)
        .map(events::incompressible_name)
        .collect();
    let rows: Vec<(i64, &str, Option<f64>)> = (first..first + n)
        .zip(&names)
        .map(|(i, name)| (i as i64, name.as_str(), Some((i % 1000) as f64 / 10.0)))
        .collect();
    events::events_batch(table, &rows)
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

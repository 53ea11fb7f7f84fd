//! Extract benchmark: Shopify orders with their line items by bulk export, and where the
//! time goes.
//!
//! `cargo bench --bench extract_shopify` runs a sandbox server and an extractor in fresh
//! processes (a world of 100,000 customers by default; `-- --customers N`) and prints:
//! - the export's build on the sandbox (the bulk operation's wait, until the first page);
//! - download and decode: from the first page to the last, orders/s and lines/s, and the
//!   extractor's CPU time over the whole run (it idles while it waits) — decoding into a
//!   counting sink, so no warehouse work is in it;
//! - the sandbox alone serving the same result to a client that only counts bytes;
//! - end to end into a fresh local Delta warehouse: the same phases plus the commit, and
//!   the loader's peak memory.
//!
//! Figures are printed; BENCHMARKS.md records them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use mailroom::config::SourceKind;
use mailroom::http::retry::RetryPolicy;
use mailroom::http::{Auth, Body, Call, HttpClient, Service, Timeouts};
use mailroom::secret::Secret;
use mailroom_sandbox::{RunningSandbox, SandboxOptions};

mod support;

const SEED: u64 = 7;
const GRAPHQL: &str = "/shopify/admin/api/2026-10/graphql.json";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve") => serve(&args[2]),
        Some("--extract") => extract(&args[2], &args[3]),
        _ => drive(&args),
    }
}

/// Runs both scenarios in child processes and prints the figures.
fn drive(args: &[String]) {
    let customers: u32 = args
        .iter()
        .position(|a| a == "--customers")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(100_000);
    println!(
        "extract_shopify: Shopify orders and line items by bulk export, {customers} customers"
    );
    let (counted, mut server, url) = scenario(customers, "memory");
    print_phases("into a counting sink", &counted);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (bytes, seconds) = runtime.block_on(download_alone(&url));
    stop(&mut server);
    println!(
        "  the sandbox alone serving the same result: {:.1} MB in {seconds:.2} s = {:.0} orders/s",
        bytes as f64 / 1e6,
        counted.orders as f64 / seconds
    );
    let (local, mut server, _) = scenario(customers, "local");
    stop(&mut server);
    print_phases("into the local Delta warehouse", &local);
    println!(
        "    commit {:.2} s; loader peak RSS {:.1} MB",
        local.commit,
        local.peak_kb as f64 / 1024.0
    );
}

fn print_phases(sink: &str, figures: &Figures) {
    println!(
        "  {sink}: {} orders, {} lines; export built in {:.2} s; download and decode {:.2} s = {:.0} orders/s ({:.0} lines/s); extractor CPU {:.2} s",
        figures.orders,
        figures.lines,
        figures.wait,
        figures.streaming,
        figures.orders as f64 / figures.streaming,
        figures.lines as f64 / figures.streaming,
        figures.cpu_seconds,
    );
}

struct Figures {
    orders: u64,
    lines: u64,
    wait: f64,
    streaming: f64,
    commit: f64,
    cpu_seconds: f64,
    peak_kb: u64,
}

fn stop(server: &mut Child) {
    let _ = server.kill();
    let _ = server.wait();
}

/// One sandbox process and one extractor process: the extractor's figures, and the
/// sandbox, still serving, with its URL.
fn scenario(customers: u32, sink: &str) -> (Figures, Child, String) {
    let me = std::env::current_exe().expect("the benchmark's own path");
    let mut server: Child = Command::new(&me)
        .args(["--serve", &customers.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sandbox process starts");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let url = lines
        .next()
        .expect("sandbox URL")
        .expect("sandbox URL line");
    let output = Command::new(&me)
        .args(["--extract", &url, sink])
        .output()
        .expect("extractor runs");
    let field = |name: &str| support::figure(&output, name);
    let figures = Figures {
        orders: field("orders") as u64,
        lines: field("lines") as u64,
        wait: field("wait"),
        streaming: field("streaming"),
        commit: field("commit"),
        cpu_seconds: field("cpu_seconds"),
        peak_kb: field("peak_kb") as u64,
    };
    (figures, server, url)
}

/// Child: serves the sandbox until killed; prints its URL first. Exports complete as soon
/// as they are built.
fn serve(customers: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let mut options = SandboxOptions::new(SEED, customers.parse().expect("customers"));
        options.shopify_bulk_duration = std::time::Duration::ZERO;
        let sandbox = RunningSandbox::start("127.0.0.1:0".parse().expect("address"), options)
            .await
            .expect("sandbox starts");
        println!("{}", sandbox.base_url);
        std::future::pending::<()>().await;
    });
}

/// Child: extracts Shopify orders into a counting sink (`memory`) or a fresh local Delta
/// warehouse (`local`), and prints its figures.
fn extract(url: &str, sink: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = HttpClient::new(Timeouts::default()).expect("client");
        let shopify = support::sandbox_source(url, SourceKind::Shopify, client, |_| {});
        // The first and the last page decoded.
        let pages: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);
        let progress = |_records: u64| {
            let now = Instant::now();
            let mut pages = pages.lock().expect("page times");
            let first = pages.map_or(now, |(first, _)| first);
            *pages = Some((first, now));
        };
        let started = Instant::now();
        let report = support::extract_into(&shopify, "orders", sink, &progress).await;
        let ended = Instant::now();
        let (first, last) = pages.lock().expect("page times").expect("pages arrived");
        println!(
            "orders={} lines={} wait={:.3} streaming={:.3} commit={:.3} cpu_seconds={:.3} peak_kb={}",
            report.rows_in("shopify_orders"),
            report.rows_in("shopify_order_lines"),
            (first - started).as_secs_f64(),
            (last - first).as_secs_f64(),
            (ended - last).as_secs_f64(),
            support::cpu_seconds(),
            support::peak_rss_kb()
        );
    });
}

/// Downloads the sandbox's latest completed export, counting its bytes only: the
/// sandbox's own serving speed. Bytes and seconds.
async fn download_alone(base: &str) -> (u64, f64) {
    let client = HttpClient::new(Timeouts::default()).expect("client");
    let shop = Service {
        name: "sandbox Shopify",
        base_url: base.parse().expect("url"),
        auth: Auth::Header {
            name: "X-Shopify-Access-Token",
            value: Secret::new(mailroom_sandbox::CREDENTIAL),
        },
        retry: RetryPolicy::default(),
        budget: None,
    };
    let list = serde_json::json!({
        "query": "{ bulkOperations(first: 5, query: \"status:completed\") { nodes { url } } }"
    });
    let answer: serde_json::Value = client
        .send(&shop, &Call::post(GRAPHQL, Body::Json(list)).idempotent())
        .await
        .expect("bulk operations listed")
        .json()
        .await
        .expect("JSON");
    let url = answer["data"]["bulkOperations"]["nodes"][0]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("a completed export: {answer}"));
    let result = Service {
        name: "sandbox bulk result",
        base_url: url.parse().expect("url"),
        auth: Auth::SecretUrl,
        retry: RetryPolicy::default(),
        budget: None,
    };
    let started = Instant::now();
    let mut response = client
        .send(&result, &Call::get(""))
        .await
        .expect("download starts");
    let mut bytes = 0;
    while let Some(chunk) = response.chunk().await.expect("download") {
        bytes += chunk.len() as u64;
    }
    (bytes, started.elapsed().as_secs_f64())
}

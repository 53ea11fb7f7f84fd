//! Extract benchmark: Smile.io customers from the sandbox into Arrow batches.
//!
//! `cargo bench --bench extract_smile` runs, each in fresh processes (a sandbox server and
//! an extractor, so the extractor's peak memory is its own):
//! - about 100,000 and 1,000,000 Smile customers (worlds of 130,700 and 1,306,600 people)
//!   with no rate limit: records/s, the extractor's CPU time and peak resident memory, and
//!   how peak memory grows between the two;
//! - 10,000 people at Smile's 10 requests/s: elapsed time against the minimum the limit
//!   allows, and the share of requests answered 429;
//! - end to end: the same sizes loaded into the local Delta warehouse (staged, merged on the
//!   key, committed): records/s, the loader's peak memory, and how it grows between them.
//!
//! Figures are printed; BENCHMARKS.md records them. Options: `-- --sizes PEOPLE,PEOPLE`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use mailroom::config::SourceKind;
use mailroom::http::retry::RetryPolicy;
use mailroom::http::{HttpClient, Timeouts};
use mailroom_sandbox::{RunningSandbox, SandboxOptions};

mod support;

const SEED: u64 = 7;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--serve") => serve(&args[2], &args[3]),
        Some("--extract") => extract(
            &args[2],
            &args[3],
            args.get(4).map_or("memory", String::as_str),
        ),
        _ => drive(&args),
    }
}

/// Runs every scenario in child processes and prints the figures.
fn drive(args: &[String]) {
    let sizes: Vec<u32> = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|i| args.get(i + 1))
        .map(|list| list.split(',').filter_map(|n| n.parse().ok()).collect())
        // About 76% of the world's people have Smile records: these worlds hold about
        // 100,000 and 1,000,000 Smile customers.
        .unwrap_or_else(|| vec![130_700, 1_306_600]);
    println!("extract_smile: Smile.io customers → Arrow batches (counting sink)");
    let mut peaks = Vec::new();
    for &customers in &sizes {
        let result = scenario(customers, "none", "memory");
        let rate = result.records as f64 / result.seconds;
        println!(
            "  {customers:>9} people: {:>9} Smile customers in {:>6.2} s = {:>9.0} records/s, extractor CPU {:>5.2} s, extractor peak RSS {:>6.1} MB",
            result.records,
            result.seconds,
            rate,
            result.cpu_seconds,
            result.peak_kb as f64 / 1024.0
        );
        peaks.push(result.peak_kb);
    }
    print_growth("peak memory", &sizes, &peaks);
    let mut loader_peaks = Vec::new();
    for &people in &sizes {
        let local = scenario(people, "none", "local");
        println!(
            "  end to end into the local Delta warehouse: {} Smile customers in {:.2} s = {:.0} records/s, loader CPU {:.2} s, loader peak RSS {:.1} MB",
            local.records,
            local.seconds,
            local.records as f64 / local.seconds,
            local.cpu_seconds,
            local.peak_kb as f64 / 1024.0
        );
        loader_peaks.push(local.peak_kb);
    }
    print_growth("loader peak memory", &sizes, &loader_peaks);
    let limited = scenario(10_000, "10", "memory");
    let pages = limited.records.div_ceil(250);
    let minimum = (pages.saturating_sub(1)) as f64 / 10.0;
    println!(
        "  rate limited (10 requests/s): {} records, {} pages in {:.2} s; the limit allows {:.2} s at best ({:+.1}%); {} of {} requests answered 429",
        limited.records,
        pages,
        limited.seconds,
        minimum,
        (limited.seconds / minimum - 1.0) * 100.0,
        limited.rate_limited,
        limited.requests
    );
}

/// Prints how much the peak at the largest size exceeds the peak at the smallest.
fn print_growth(what: &str, sizes: &[u32], peaks: &[u64]) {
    if let ([first, ..], [.., last]) = (peaks, peaks)
        && peaks.len() > 1
    {
        println!(
            "  {what} with {} vs {} people: {:+.1}%",
            sizes[sizes.len() - 1],
            sizes[0],
            (*last as f64 / *first as f64 - 1.0) * 100.0
        );
    }
}

struct Figures {
    records: u64,
    seconds: f64,
    cpu_seconds: f64,
    peak_kb: u64,
    requests: u64,
    rate_limited: u64,
}

/// One sandbox process and one extractor process.
fn scenario(customers: u32, limit: &str, sink: &str) -> Figures {
    let me = std::env::current_exe().expect("the benchmark's own path");
    let mut server: Child = Command::new(&me)
        .args(["--serve", &customers.to_string(), limit])
        .stdout(Stdio::piped())
        .spawn()
        .expect("sandbox process starts");
    let mut lines = BufReader::new(server.stdout.take().expect("stdout")).lines();
    let url = lines
        .next()
        .expect("sandbox URL")
        .expect("sandbox URL line");
    let output = Command::new(&me)
        .args(["--extract", &url, limit, sink])
        .output()
        .expect("extractor runs");
    let _ = server.kill();
    let _ = server.wait();
    let field = |name: &str| support::figure(&output, name);
    Figures {
        records: field("records") as u64,
        seconds: field("seconds"),
        cpu_seconds: field("cpu_seconds"),
        peak_kb: field("peak_kb") as u64,
        requests: field("requests") as u64,
        rate_limited: field("rate_limited") as u64,
    }
}

/// Child: serves the sandbox until killed; prints its URL first. One thread: the other
/// core is the extractor's.
fn serve(customers: &str, limit: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut options = SandboxOptions::new(SEED, customers.parse().expect("customers"));
        options.smile_rate_limit = limit.parse().ok();
        let sandbox = RunningSandbox::start("127.0.0.1:0".parse().expect("address"), options)
            .await
            .expect("sandbox starts");
        println!("{}", sandbox.base_url);
        std::future::pending::<()>().await;
    });
}

/// Child: extracts every Smile customer, allowing itself `limit` requests a second
/// (`none`: no budget), into a counting sink (`memory`) or a fresh local Delta warehouse
/// (`local`), and prints its figures.
fn extract(url: &str, limit: &str, sink: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = HttpClient::new(Timeouts::default()).expect("client");
        let smile = support::sandbox_source(url, SourceKind::Smile, client.clone(), |config| {
            let smile_section = config
                .sources
                .services
                .get_mut(&SourceKind::Smile)
                .expect("the shipped config reads Smile");
            smile_section.options.insert(
                "requests_per_second",
                mailroom::config::OptionValue::Integer(limit.parse().unwrap_or(0)),
            );
        });
        let started = Instant::now();
        let report = support::extract_into(&smile, "customers", sink, &|_| {}).await;
        let records = report.rows_in("smile_customers");
        let seconds = started.elapsed().as_secs_f64();
        let (requests, rate_limited) = sandbox_counts(&client, url).await;
        println!(
            "records={records} seconds={seconds:.3} cpu_seconds={:.3} peak_kb={} requests={requests} rate_limited={rate_limited}",
            support::cpu_seconds(),
            support::peak_rss_kb()
        );
    });
}

/// Requests the sandbox saw for Smile customers, and how many it answered 429.
async fn sandbox_counts(client: &HttpClient, url: &str) -> (u64, u64) {
    use mailroom::http::{Auth, Call, Service};
    let service = Service {
        name: "sandbox",
        base_url: url.parse().expect("url"),
        auth: Auth::None,
        retry: RetryPolicy::default(),
        budget: None,
    };
    let Ok(response) = client.send(&service, &Call::get("/_sandbox/state")).await else {
        return (0, 0);
    };
    let state: serde_json::Value = response.json().await.unwrap_or_default();
    let count = &state["requests"]["GET /smile/v1/customers"];
    (
        count["requests"].as_u64().unwrap_or(0),
        count["rate_limited"].as_u64().unwrap_or(0),
    )
}

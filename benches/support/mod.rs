//! What the benchmarks share: reading the `name=value` figures a child process prints, a
//! process's own CPU time and peak memory, and the shipped config's services and sources
//! aimed at a sandbox, a stream extracted into a counting sink or a fresh local warehouse.

use std::process::Output;
use std::sync::Arc;

use mailroom::config::{Config, SourceKind};
use mailroom::extract::{Mode, Progress, StreamReport, extract_stream};
use mailroom::http::HttpClient;
use mailroom::http::retry::RetryPolicy;
use mailroom::normalize::{RunStamp, SchemaPolicy};
use mailroom::services::{GoogleOverride, Overrides, Services};
use mailroom::sources::AnySource;
use mailroom::warehouse::Warehouse;
use mailroom::warehouse::local::LocalWarehouse;
use mailroom::warehouse::memory::MemoryWarehouse;

/// The figure `name` in a child's `name=value` output; a missing one stops the benchmark
/// with what the child printed.
pub fn figure(output: &Output, name: &str) -> f64 {
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no {name} in the output: {text} {}",
                String::from_utf8_lossy(&output.stderr)
            )
        })
}

/// CPU time this process has used, user and system (Linux `/proc/self/stat`).
#[allow(dead_code, reason = "not every benchmark reports CPU time")]
pub fn cpu_seconds() -> f64 {
    let ticks_per_second = 100.0;
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit(')').next()?.to_string();
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / ticks_per_second)
        })
        .unwrap_or(0.0)
}

/// This process's peak resident memory (Linux `VmHWM`), in KiB.
#[allow(dead_code, reason = "not every benchmark reports memory")]
pub fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The services of the shipped config, after `configure` has changed it, calling the
/// sandbox at `url` through `client`; with `google_key` (the sandbox's service-account key
/// JSON), Google's services too.
#[allow(dead_code, reason = "not every benchmark calls a service")]
pub fn sandbox_services(
    url: &str,
    client: HttpClient,
    configure: impl FnOnce(&mut Config),
    google_key: Option<&str>,
) -> Services {
    let mut config = mailroom::config::parse(
        mailroom::config::DEFAULT_CONFIG,
        "config.toml",
        std::path::Path::new("."),
    )
    .expect("shipped config");
    configure(&mut config);
    let endpoints = mailroom_sandbox::services(url);
    let mut overrides = Overrides::from_endpoints(
        endpoints.iter().map(|e| (e.key, e.base_url.as_str())),
        mailroom_sandbox::CREDENTIAL,
    )
    .expect("sandbox URLs");
    overrides.google = google_key.map(|key| {
        let parsed: serde_json::Value = serde_json::from_str(key).expect("key JSON");
        GoogleOverride {
            key_json: key.to_string(),
            project: parsed["project_id"].as_str().expect("project").to_string(),
        }
    });
    Services::new(
        config.service_sections(),
        overrides,
        Box::new([("UNUSED", "")]),
        client,
        RetryPolicy::default(),
    )
}

/// Source `kind` of the shipped config, calling the sandbox at `url` through `client`, after
/// `configure` has changed the config.
#[allow(dead_code, reason = "only the extraction benchmarks read a source")]
pub fn sandbox_source(
    url: &str,
    kind: SourceKind,
    client: HttpClient,
    configure: impl FnOnce(&mut Config),
) -> AnySource {
    let services = sandbox_services(url, client, configure, None);
    mailroom::sources::build(kind, &services).expect("source")
}

/// Extracts `stream` of `source` into a counting sink (`sink` is `memory`) or a fresh local
/// Delta warehouse in the temp folder (`local`, removed afterwards).
#[allow(dead_code, reason = "only the extraction benchmarks extract")]
pub async fn extract_into(
    source: &AnySource,
    stream: &str,
    sink: &str,
    progress: Progress<'_>,
) -> StreamReport {
    if sink == "local" {
        let dir = std::env::temp_dir().join(format!("mailroom-bench-{}", std::process::id()));
        let mut warehouse = LocalWarehouse::open(&dir).expect("local warehouse");
        let report = extract(source, stream, &mut warehouse, progress).await;
        let _ = std::fs::remove_dir_all(&dir);
        report
    } else {
        extract(source, stream, &mut MemoryWarehouse::counting(), progress).await
    }
}

/// One incremental extraction of `stream` into `warehouse`, stamped now.
#[allow(dead_code, reason = "only the extraction benchmarks extract")]
async fn extract(
    source: &AnySource,
    stream: &str,
    warehouse: &mut impl Warehouse,
    progress: Progress<'_>,
) -> StreamReport {
    let now = chrono::Utc::now();
    let stamp = Arc::new(RunStamp {
        run_id: "bench".into(),
        extracted_at: now,
        scheduled_for: now,
    });
    extract_stream(
        source,
        stream,
        warehouse,
        stamp,
        Mode::Incremental,
        SchemaPolicy::Fixed,
        progress,
    )
    .await
    .expect("extraction")
}

//! `/metrics` in Prometheus's text exposition format. Every metric's name and help are
//! declared here, in [`METRICS`] order; values come from the ledgers (so they survive
//! restarts) and from the HTTP client's per-service counts (since this process started).

use chrono::{DateTime, Utc};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::http::stats;
use crate::state::LedgerTotals;

/// Run duration buckets, in seconds: a second to two hours.
const DURATION_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 1800.0, 7200.0,
];

/// Every metric: name (without the `mailroom_` prefix or `_total` suffix) and help (the
/// encoder ends it with a period).
pub const METRICS: [(&str, &str); 12] = [
    ("runs", "Runs by job and final status"),
    (
        "run_duration_seconds",
        "How long finished runs of the last 30 days took, by job",
    ),
    ("rows_loaded", "Rows written to each warehouse table"),
    (
        "quarantined_records",
        "Records set aside with a reason instead of loaded",
    ),
    (
        "api_requests",
        "HTTP requests sent per service since this process started",
    ),
    (
        "api_throttled",
        "429 answers per service since this process started",
    ),
    (
        "api_retries",
        "Retried calls per service since this process started",
    ),
    ("deliveries", "Deliveries by destination and ledger status"),
    (
        "enrollments",
        "People per win-back sequence by the status of their latest cycle",
    ),
    (
        "last_success_timestamp_seconds",
        "When each job last succeeded (Unix seconds)",
    ),
    (
        "cursor_lag_seconds",
        "How far each stream's cursor is behind now",
    ),
    ("up", "1 while the scheduler loop runs"),
];

fn help(name: &str) -> &'static str {
    METRICS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("", |(_, h)| *h)
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The exposition text for `totals`, the streams' cursors, the client's counts and whether
/// the scheduler is up.
pub fn render(
    totals: &LedgerTotals,
    cursors: &[(String, String, DateTime<Utc>)],
    scheduler_up: bool,
    now: DateTime<Utc>,
) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("mailroom");
    let counter = |registry: &mut Registry, name: &str| {
        let family = Family::<Labels, Counter>::default();
        registry.register(name, help(name), family.clone());
        family
    };
    let gauge = |registry: &mut Registry, name: &str| {
        let family = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(name, help(name), family.clone());
        family
    };
    let runs = counter(&mut registry, "runs");
    for (job, status, n) in &totals.runs {
        runs.get_or_create(&labels(&[("job", job), ("status", status)]))
            .inc_by(*n);
    }
    let durations = Family::<Labels, Histogram>::new_with_constructor(|| {
        Histogram::new(DURATION_BUCKETS.iter().copied())
    });
    registry.register(
        "run_duration_seconds",
        help("run_duration_seconds"),
        durations.clone(),
    );
    for (job, seconds) in &totals.durations {
        durations
            .get_or_create(&labels(&[("job", job)]))
            .observe(*seconds);
    }
    let rows = counter(&mut registry, "rows_loaded");
    let quarantined = Counter::<u64>::default();
    registry.register(
        "quarantined_records",
        help("quarantined_records"),
        quarantined.clone(),
    );
    for (key, n) in &totals.counters {
        match key.strip_prefix("rows.") {
            Some(table) if table != "_quarantine" => {
                rows.get_or_create(&labels(&[("table", table)])).inc_by(*n);
            }
            Some(_) => {}
            None => {
                quarantined.inc_by(*n);
            }
        }
    }
    let requests = counter(&mut registry, "api_requests");
    let throttled = counter(&mut registry, "api_throttled");
    let retries = counter(&mut registry, "api_retries");
    for (service, calls) in stats::snapshot() {
        let service = labels(&[("service", service)]);
        requests.get_or_create(&service).inc_by(calls.requests);
        throttled.get_or_create(&service).inc_by(calls.throttled);
        retries.get_or_create(&service).inc_by(calls.retries);
    }
    let deliveries = counter(&mut registry, "deliveries");
    for (destination, status, n) in &totals.deliveries {
        deliveries
            .get_or_create(&labels(&[("destination", destination), ("status", status)]))
            .inc_by(*n);
    }
    let enrollments = gauge(&mut registry, "enrollments");
    for (platform, sequence, status, n) in &totals.enrollments {
        enrollments
            .get_or_create(&labels(&[
                ("platform", platform),
                ("sequence", sequence),
                ("status", status),
            ]))
            .set(*n as f64);
    }
    let last_success = gauge(&mut registry, "last_success_timestamp_seconds");
    for (job, at) in &totals.last_success {
        last_success
            .get_or_create(&labels(&[("job", job)]))
            .set(at.timestamp() as f64);
    }
    let lag = gauge(&mut registry, "cursor_lag_seconds");
    for (source, stream, at) in cursors {
        lag.get_or_create(&labels(&[("source", source), ("stream", stream)]))
            .set((now - *at).num_milliseconds() as f64 / 1000.0);
    }
    let up = Gauge::<i64>::default();
    registry.register("up", help("up"), up.clone());
    up.set(i64::from(scheduler_up));
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

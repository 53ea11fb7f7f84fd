//! Extraction under the sandbox's fault plan: 429s with `Retry-After: 0` and `1`, a 503
//! burst, a reset connection, a malformed page, a wrong-typed record and an unknown field.
//! The stream still completes with nothing lost and nothing duplicated, the bad record in
//! quarantine with its reason.

use std::collections::HashSet;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use mailroom::config::SourceKind;
use mailroom::warehouse::memory::MemoryWarehouse;
use mailroom_sandbox::SandboxOptions;
use mailroom_sandbox::faults::FaultRule;
use mailroom_sandbox::world::{Platform, World};
use serde_json::json;

use crate::support::{extract, requests, sandbox, source};

/// The whole fault plan, aimed at one endpoint's successive requests.
fn plan(path: &str, wrong_field: &str) -> Vec<FaultRule> {
    let rules = json!([
        {"path": path, "after": 0, "times": 1, "fault": {"kind": "rate_limit", "retry_after_secs": 0}},
        {"path": path, "after": 1, "times": 1, "fault": {"kind": "rate_limit", "retry_after_secs": 1}},
        {"path": path, "after": 2, "times": 2, "fault": {"kind": "server_error", "status": 503}},
        {"path": path, "after": 4, "times": 1, "fault": {"kind": "connection_reset"}},
        {"path": path, "after": 5, "times": 1, "fault": {"kind": "malformed_body"}},
        {"path": path, "after": 6, "times": 1, "fault": {"kind": "wrong_type", "field": wrong_field}},
        {"path": path, "after": 7, "times": 1, "fault": {"kind": "unknown_field", "field": "loyalty_score"}},
    ]);
    serde_json::from_value(rules).expect("fault rules")
}

#[tokio::test]
async fn smile_customers_survive_every_fault_and_quarantine_the_bad_record() {
    let mut options = SandboxOptions::new(42, 700);
    options.faults = plan("/smile/v1/customers", "points_balance");
    let world = World::new(options.world);
    let expected: HashSet<i64> = world
        .people()
        .flat_map(|p| world.smile_customers_of(&p))
        .map(|c| c.id as i64)
        .collect();
    let sandbox = sandbox(options).await;
    let smile = source(SourceKind::Smile, &sandbox.base_url);
    let mut warehouse = MemoryWarehouse::new();

    let report = extract(&smile, "customers", &mut warehouse, "run-1")
        .await
        .unwrap();

    assert_eq!(report.quarantined, 1);
    assert_eq!(
        report.new_fields,
        [("smile_customers".to_string(), "loyalty_score".to_string())]
    );
    let table = warehouse.table("smile_customers").unwrap();
    let ids = table
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let loaded: Vec<i64> = ids.iter().flatten().collect();
    let unique: HashSet<i64> = loaded.iter().copied().collect();
    assert_eq!(unique.len(), loaded.len(), "no duplicates");
    let quarantine = warehouse.table("_quarantine").unwrap();
    let record = quarantine
        .column_by_name("record")
        .unwrap()
        .as_string::<i32>()
        .value(0);
    let reason = quarantine
        .column_by_name("reason")
        .unwrap()
        .as_string::<i32>()
        .value(0);
    assert!(
        reason.starts_with("field `points_balance`: expected an integer"),
        "{reason}"
    );
    let bad: serde_json::Value = serde_json::from_str(record).unwrap();
    let bad_id = bad["id"].as_i64().unwrap();
    let mut all = unique.clone();
    assert!(
        all.insert(bad_id),
        "the quarantined record is not also loaded"
    );
    assert_eq!(all, expected, "every customer is loaded or quarantined");

    let (calls, rate_limited) = requests(&sandbox.base_url, "/smile/v1/customers").await;
    assert_eq!(rate_limited, 2, "only the injected 429s");
    let pages = expected.len().div_ceil(250) as u64;
    assert_eq!(calls, pages + 6, "each fault cost one retry of its page");
}

/// Runs `stream` of `kind` under the fault plan aimed at `path`; returns the report and
/// the warehouse.
async fn under_faults(
    kind: SourceKind,
    stream: &str,
    path: &str,
    wrong_field: &str,
) -> (mailroom::extract::StreamReport, MemoryWarehouse) {
    let mut options = SandboxOptions::new(42, 300);
    options.faults = plan(path, wrong_field);
    let sandbox = sandbox(options).await;
    let source = source(kind, &sandbox.base_url);
    let mut warehouse = MemoryWarehouse::new();
    let report = extract(&source, stream, &mut warehouse, "run-1")
        .await
        .unwrap_or_else(|err| panic!("{stream} under faults: {err}"));
    (report, warehouse)
}

fn reasons(warehouse: &MemoryWarehouse) -> Vec<String> {
    warehouse.table("_quarantine").map_or_else(Vec::new, |q| {
        q.column_by_name("reason")
            .unwrap()
            .as_string::<i32>()
            .iter()
            .flatten()
            .map(str::to_string)
            .collect()
    })
}

#[tokio::test]
async fn smartrmail_subscribers_survive_every_fault() {
    let world = crate::support::small_world();
    let expected: HashSet<String> = world
        .people()
        .filter_map(|p| world.subscriber_of(&p))
        .map(|s| s.id)
        .collect();
    let (report, warehouse) = under_faults(
        SourceKind::SmartrMail,
        "subscribers",
        "/smartrmail/api/v1/lists/",
        "opened_count",
    )
    .await;
    assert_eq!(report.quarantined, 1, "{:?}", reasons(&warehouse));
    assert!(reasons(&warehouse)[0].starts_with("field `opened_count`: expected an integer"));
    // Every subscriber lands once, or (if no other list carries a good copy) is quarantined.
    let table = warehouse.table("smartrmail_subscribers").unwrap();
    let loaded: Vec<String> = table
        .column_by_name("id")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(str::to_string)
        .collect();
    let mut all: HashSet<String> = loaded.iter().cloned().collect();
    assert_eq!(all.len(), loaded.len(), "no duplicates");
    let quarantine = warehouse.table("_quarantine").unwrap();
    let record = quarantine
        .column_by_name("record")
        .unwrap()
        .as_string::<i32>()
        .value(0);
    let spoiled: serde_json::Value = serde_json::from_str(record).unwrap();
    all.insert(spoiled["id"].as_str().unwrap().to_string());
    assert_eq!(all, expected, "every subscriber loaded or quarantined");
}

/// Every campaign of `platform` is loaded or quarantined under the fault plan.
async fn campaigns_survive(kind: SourceKind, platform: Platform, path: &str, wrong_field: &str) {
    let campaigns = crate::support::small_world().campaigns(platform).len() as u64;
    let (report, warehouse) = under_faults(kind, "campaigns", path, wrong_field).await;
    let loaded = warehouse.rows("email_campaign_metrics");
    assert_eq!(
        loaded + report.quarantined,
        campaigns,
        "{:?}",
        reasons(&warehouse)
    );
    assert!(report.quarantined <= 1);
}

#[tokio::test]
async fn dotdigital_campaigns_survive_every_fault() {
    campaigns_survive(
        SourceKind::Dotdigital,
        Platform::Dotdigital,
        "/dotdigital/v2/campaigns",
        "numTotalSent",
    )
    .await;
}

#[tokio::test]
async fn iterable_campaigns_survive_every_fault() {
    campaigns_survive(
        SourceKind::Iterable,
        Platform::Iterable,
        "/iterable/api/campaigns",
        "name",
    )
    .await;
}

/// Shopify's paged query under faults (the bulk export's start is a mutation that a 5xx
/// leaves in doubt, so it is not retried in place; the run is).
#[tokio::test]
async fn shopify_customer_pages_survive_every_fault() {
    let mut options = SandboxOptions::new(42, 300);
    options.faults = plan("/shopify/admin/api/2026-10/graphql.json", "email");
    let sandbox = sandbox(options).await;
    let shopify = source(SourceKind::Shopify, &sandbox.base_url);
    let mut warehouse = MemoryWarehouse::new();
    let report = mailroom::extract::extract_stream(
        &shopify,
        "customers",
        &mut warehouse,
        crate::support::stamp("backfill-1", "2026-11-22T10:00:00Z"),
        mailroom::extract::Mode::Backfill {
            from: crate::support::utc("2000-01-01T00:00:00Z"),
            to: crate::support::utc("2030-01-01T00:00:00Z"),
        },
        mailroom::normalize::SchemaPolicy::Fixed,
        &|_| {},
    )
    .await
    .unwrap();
    let people = crate::support::small_world().people().count() as u64;
    assert_eq!(
        warehouse.rows("shopify_customers") + report.quarantined,
        people,
        "{:?}",
        reasons(&warehouse)
    );
}

/// A campaign whose id cannot be read is quarantined; the others still load.
#[tokio::test]
async fn a_campaign_without_a_usable_id_is_quarantined_not_fatal() {
    for (kind, platform, path) in [
        (
            SourceKind::Iterable,
            Platform::Iterable,
            "/iterable/api/campaigns",
        ),
        (
            SourceKind::Dotdigital,
            Platform::Dotdigital,
            "/dotdigital/v2/campaigns",
        ),
    ] {
        let mut options = SandboxOptions::new(42, 300);
        options.faults = serde_json::from_value(json!([
            {"method": "GET", "path": path, "times": 1, "fault": {"kind": "wrong_type", "field": "id"}}
        ]))
        .unwrap();
        let campaigns = World::new(options.world).campaigns(platform).len() as u64;
        let sandbox = sandbox(options).await;
        let source = source(kind, &sandbox.base_url);
        let mut warehouse = MemoryWarehouse::new();
        let report = extract(&source, "campaigns", &mut warehouse, "run-1")
            .await
            .unwrap();
        assert_eq!(report.quarantined, 1, "{kind:?}: {:?}", reasons(&warehouse));
        assert!(
            reasons(&warehouse)[0].contains("id"),
            "{:?}",
            reasons(&warehouse)
        );
        assert_eq!(
            warehouse.rows("email_campaign_metrics"),
            campaigns - 1,
            "{kind:?}"
        );
    }
}

/// A stream that fails halfway commits nothing and leaves its cursor; the next run loads it all.
#[tokio::test]
async fn a_stream_that_fails_halfway_commits_nothing_and_the_next_run_completes_it() {
    let mut options = SandboxOptions::new(42, 700);
    options.faults = serde_json::from_value(json!([
        {"path": "/smile/v1/customers", "after": 1, "times": 6, "fault": {"kind": "server_error", "status": 500}}
    ]))
    .unwrap();
    let world = World::new(options.world);
    let expected = world
        .people()
        .flat_map(|p| world.smile_customers_of(&p))
        .count() as u64;
    let sandbox = sandbox(options).await;
    let smile = source(SourceKind::Smile, &sandbox.base_url);
    let mut warehouse = MemoryWarehouse::new();

    let failed = extract(&smile, "customers", &mut warehouse, "run-1")
        .await
        .unwrap_err();
    assert_eq!(
        mailroom::error::Classify::kind(&failed),
        mailroom::error::ErrorKind::Transient
    );
    assert!(failed.to_string().contains("answered HTTP 500"), "{failed}");
    assert_eq!(
        warehouse.rows("smile_customers"),
        0,
        "the first page was not committed"
    );
    use mailroom::warehouse::Warehouse;
    assert_eq!(
        warehouse
            .cursor("smile_customers", "smile", "customers")
            .await
            .unwrap(),
        None
    );

    let report = extract(&smile, "customers", &mut warehouse, "run-2")
        .await
        .unwrap();
    assert_eq!(report.rows_in("smile_customers"), expected);
    assert_eq!(warehouse.rows("smile_customers"), expected);
}

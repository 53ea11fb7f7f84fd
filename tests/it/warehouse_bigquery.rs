//! The BigQuery warehouse against the sandbox's BigQuery: tables created from declared
//! schemas, merge loads keeping one row per key over repeated runs, replayed runs and
//! retried jobs finding their job ids (409) instead of loading twice, the journal finishing
//! an interrupted load on restart, and the shipped SQL files giving the golden rows.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use mailroom::config::SourceKind;
use mailroom::extract::{Mode, extract_stream};
use mailroom::http::{HttpClient, RetryPolicy, Timeouts};
use mailroom::normalize::SchemaPolicy;
use mailroom::sandbox::RunningSandbox;
use mailroom::sql::engine::QueryEngine;
use mailroom::state::StateStore;
use mailroom::warehouse::Warehouse;
use mailroom::warehouse::bigquery::{BigQuerySettings, BigQueryWarehouse, connect_client};

use crate::sql_golden::{check_cases, load_fixtures};
use crate::support::{get_json, small_sandbox, small_world, source, stamp, utc};

/// A warehouse in `dataset` of the sandbox's project, journaling in `dir`.
async fn warehouse(
    sandbox: &RunningSandbox,
    dir: &std::path::Path,
    dataset: &str,
) -> BigQueryWarehouse {
    let settings = BigQuerySettings {
        project: mailroom::sandbox::google::PROJECT_ID.into(),
        dataset: dataset.into(),
        location: "US".into(),
        credentials_file: None,
        sandbox: Some(sandbox.base_url.clone()),
    };
    let http = HttpClient::new(Timeouts::default()).expect("client");
    let retry = RetryPolicy {
        base: std::time::Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let client = connect_client(&settings, &http, retry)
        .await
        .expect("connect");
    let state = Arc::new(StateStore::open(&dir.join("state.db")).expect("state"));
    BigQueryWarehouse::new(client, dataset.into(), state, dir.join("bigquery-staging"))
}

async fn query_ids(warehouse: &BigQueryWarehouse, sql: &str) -> Vec<i64> {
    let result = QueryEngine::BigQuery(warehouse)
        .run(sql)
        .await
        .expect("query");
    result
        .batches
        .iter()
        .flat_map(|b| {
            b.column(0)
                .as_primitive::<Int64Type>()
                .iter()
                .flatten()
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn shipped_sql_files_give_the_golden_rows_on_the_sandbox_bigquery() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut warehouse = warehouse(&sandbox, dir.path(), "golden").await;
    load_fixtures(&mut warehouse).await;
    check_cases(&QueryEngine::BigQuery(&warehouse), "the sandbox BigQuery").await;
}

#[tokio::test]
async fn merge_loads_keep_one_row_per_key_and_replays_load_nothing() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut warehouse = warehouse(&sandbox, dir.path(), "mailroom").await;
    let smile = source(SourceKind::Smile, &sandbox.base_url);
    let everything = Mode::Backfill {
        from: utc("2000-01-01T00:00:00Z"),
        to: utc("2100-01-01T00:00:00Z"),
    };
    let world = small_world();
    let expected: BTreeSet<i64> = world
        .people()
        .flat_map(|p| world.smile_customers_of(&p))
        .map(|c| c.id as i64)
        .collect();
    let mut load = async |run: &str, mode: Mode| {
        extract_stream(
            &smile,
            "customers",
            &mut warehouse,
            stamp(run, "2026-11-22T10:00:00Z"),
            mode,
            SchemaPolicy::Fixed,
            &|_| {},
        )
        .await
        .unwrap_or_else(|e| panic!("{run}: {e}"))
    };
    let first = load("run-1", Mode::Incremental).await;
    assert_eq!(
        first.rows_in("smile_customers") as usize,
        expected.len(),
        "{first:?}"
    );
    let cursor = first.cursor.expect("the cursor moves with the load");

    // Everything again, merged: still one row per id, and the cursor stays.
    let again = load("run-2", everything).await;
    assert_eq!(again.rows_in("smile_customers") as usize, expected.len());
    // The same run replayed (a retry after a crash that followed the commit) finds its jobs.
    let jobs_before = sandbox_jobs(&sandbox).await;
    let replay = load("run-2", everything).await;
    assert!(replay.rows.is_empty(), "{replay:?}");
    assert_eq!(
        sandbox_jobs(&sandbox).await,
        jobs_before,
        "no new job for a replay"
    );

    let ids = query_ids(
        &warehouse,
        "SELECT id FROM `sandbox-project.mailroom.smile_customers` ORDER BY id",
    )
    .await;
    assert_eq!(
        ids.len(),
        expected.len(),
        "one row per key after three loads"
    );
    assert_eq!(ids.into_iter().collect::<BTreeSet<_>>(), expected);
    assert_eq!(
        warehouse
            .cursor("smile_customers", "smile", "customers")
            .await
            .expect("cursor"),
        Some(cursor),
        "a backfill leaves the cursor"
    );
}

/// How many jobs the sandbox's BigQuery has.
async fn sandbox_jobs(sandbox: &RunningSandbox) -> u64 {
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    state["bigquery"]["jobs"].as_u64().expect("jobs")
}

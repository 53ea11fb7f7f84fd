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
use mailroom::http::RetryPolicy;
use mailroom::normalize::{SchemaPolicy, TableSchema};
use mailroom::state::{PendingLoad, StateStore};
use mailroom::warehouse::bigquery::client::{JobStart, UPLOAD_CHUNK};
use mailroom::warehouse::bigquery::{BigQuerySettings, BigQueryWarehouse, connect_client};
use mailroom::warehouse::{CommitOutcome, LoadId, Warehouse, WarehouseError};
use mailroom_sandbox::RunningSandbox;

use crate::sql_golden::{check_cases, load_fixtures};
use crate::support::{
    commit_batch, duplicate_keys, events_batch, events_table, get_json, incompressible_name,
    load_world_twice, services_with, small_sandbox, small_world, source, stamp, utc,
};

/// A warehouse in `dataset` of the sandbox's project, journaling in `dir`.
async fn warehouse(
    sandbox: &RunningSandbox,
    dir: &std::path::Path,
    dataset: &str,
) -> BigQueryWarehouse {
    warehouse_uploading_in(sandbox, dir, dataset, UPLOAD_CHUNK).await
}

/// The same, uploading files over `chunk` bytes through resumable sessions in chunks of it.
async fn warehouse_uploading_in(
    sandbox: &RunningSandbox,
    dir: &std::path::Path,
    dataset: &str,
    chunk: u64,
) -> BigQueryWarehouse {
    let settings = BigQuerySettings {
        project: mailroom_sandbox::google::PROJECT_ID.into(),
        dataset: dataset.into(),
        location: "US".into(),
        credentials_file: None,
    };
    let retry = RetryPolicy {
        base: std::time::Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let services = services_with(
        &sandbox.base_url,
        Some(&sandbox.service_account_key()),
        retry,
    );
    let client = connect_client(&settings, &services)
        .expect("connect")
        .with_upload_chunk(chunk);
    let state = Arc::new(StateStore::open(&dir.join("state.db")).expect("state"));
    BigQueryWarehouse::new(client, dataset.into(), state, dir.join("bigquery-staging"))
}

async fn query_ids(warehouse: &BigQueryWarehouse, sql: &str) -> Vec<i64> {
    let result = warehouse.engine().run(sql).await.expect("query");
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
    check_cases(&warehouse.engine(), "the sandbox BigQuery").await;
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

#[tokio::test]
async fn a_load_interrupted_after_its_jobs_moves_its_cursor_on_restart() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let warehouse = warehouse(&sandbox, dir.path(), "mailroom").await;
    // A job that finished, as the last job of a load would have before the process died.
    let finished = "mailroom_probe_finished";
    let started = warehouse
        .client()
        .start_job(
            finished,
            serde_json::json!({ "query": { "query": "SELECT 1 AS one", "useLegacySql": false } }),
        )
        .await
        .expect("job");
    assert_eq!(started, JobStart::New);
    assert_eq!(
        warehouse
            .client()
            .start_job(
                finished,
                serde_json::json!({ "query": { "query": "SELECT 1", "useLegacySql": false } })
            )
            .await
            .expect("again"),
        JobStart::Existing,
        "a job id is used once: the second insert finds the first job (409)"
    );
    // A job that fails says which job, what it did and BigQuery's reason.
    let bad = "mailroom_probe_bad";
    warehouse
        .client()
        .start_job(
            bad,
            serde_json::json!({ "query": { "query": "SELECT * FROM `sandbox-project.mailroom.nowhere`", "useLegacySql": false } }),
        )
        .await
        .expect("job");
    let err = warehouse
        .client()
        .wait(bad, "merging into nowhere")
        .await
        .expect_err("the table does not exist");
    let text = err.to_string();
    assert!(
        text.contains("BigQuery job mailroom_probe_bad (merging into nowhere) failed")
            && text.contains("nowhere"),
        "{text}"
    );
    let state = StateStore::open(&dir.path().join("state.db")).expect("state");
    let journal = |run: &str, stream: &str, job: &str, cursor: &str| PendingLoad {
        key: format!("{run}/smile/{stream}"),
        run_id: run.into(),
        source: "smile".into(),
        stream: stream.into(),
        plan: serde_json::json!({ "jobs": [job], "staging": [] }).to_string(),
        cursor: Some(utc(cursor)),
    };
    state
        .begin_load(
            &journal("run-1", "customers", finished, "2026-11-20T00:00:00Z"),
            utc("2026-11-20T00:00:00Z"),
        )
        .expect("journal");
    // A load whose job was never sent: its cursor must not move.
    state
        .begin_load(
            &journal(
                "run-1",
                "points_transactions",
                "mailroom_probe_never_sent",
                "2026-11-21T00:00:00Z",
            ),
            utc("2026-11-20T00:00:00Z"),
        )
        .expect("journal");
    drop(state);

    warehouse.recover().await.expect("recover");
    assert_eq!(
        warehouse
            .cursor("smile_customers", "smile", "customers")
            .await
            .expect("cursor"),
        Some(utc("2026-11-20T00:00:00Z")),
        "every job finished: the cursor moves"
    );
    assert_eq!(
        warehouse
            .cursor("smile_points_transactions", "smile", "points_transactions")
            .await
            .expect("cursor"),
        None,
        "a job never sent: the stream is read again from where it was"
    );
    let state = StateStore::open(&dir.path().join("state.db")).expect("state");
    assert!(state.pending_loads().expect("journal").is_empty());
}

async fn commit_events(
    warehouse: &mut BigQueryWarehouse,
    run: &str,
    table: &TableSchema,
    rows: &[(i64, &str, Option<f64>)],
) -> Result<CommitOutcome, WarehouseError> {
    let load = LoadId {
        source: "test".into(),
        stream: "events".into(),
        run_id: run.into(),
    };
    commit_batch(warehouse, load, table, events_batch(table, rows)).await
}

#[tokio::test]
async fn new_nullable_columns_are_added_and_a_changed_type_is_refused() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut warehouse = warehouse(&sandbox, dir.path(), "mailroom").await;
    let v1 = events_table(false, false);
    commit_events(
        &mut warehouse,
        "run-1",
        &v1,
        &[(1, "a", None), (2, "b", None)],
    )
    .await
    .expect("first load");
    let v2 = events_table(true, false);
    commit_events(
        &mut warehouse,
        "run-2",
        &v2,
        &[(2, "b2", Some(0.5)), (3, "c", Some(1.5))],
    )
    .await
    .expect("a load with a new column");
    let result = warehouse
        .engine()
        .run("SELECT id, name, score FROM `sandbox-project.mailroom.events` ORDER BY id")
        .await
        .expect("query");
    let text = arrow::util::pretty::pretty_format_batches(&result.batches)
        .expect("format")
        .to_string();
    assert!(
        text.contains("| 1  | a    |       |")
            && text.contains("| 2  | b2   | 0.5   |")
            && text.contains("| 3  | c    | 1.5   |"),
        "{text}"
    );
    let v3 = events_table(true, true);
    let err = commit_events(&mut warehouse, "run-3", &v3, &[(4, "", None)])
        .await
        .expect_err("a changed type");
    assert!(
        err.to_string()
            .contains("table events: column name changed type from Utf8 to Int64"),
        "{err}"
    );
}

#[test]
fn every_declared_table_has_column_names_bigquery_accepts() {
    use mailroom::sources::{dotdigital, iterable, shopify, smartrmail, smile};
    use mailroom::warehouse::bigquery::types::valid_column_name;
    let tables = [
        smile::customers_table(),
        smile::vip_tiers_table(),
        smile::points_transactions_table(),
        shopify::tables::orders_table(),
        shopify::tables::order_lines_table(),
        shopify::tables::customers_table(),
        smartrmail::lists_table(),
        smartrmail::subscribers_table(),
        smartrmail::engagement_daily_table(),
        smartrmail::campaigns_table(),
        iterable::campaigns_table(),
        dotdigital::campaigns_table(),
        mailroom::normalize::quarantine_table(),
    ];
    for table in &tables {
        for name in table.column_names() {
            assert!(valid_column_name(&name), "{}.{name}", table.name);
        }
        assert!(valid_column_name(table.name), "{}", table.name);
    }
}

#[tokio::test]
async fn a_query_answered_before_it_finishes_is_polled_for_its_rows() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut golden = warehouse(&sandbox, dir.path(), "golden").await;
    load_fixtures(&mut golden).await;
    let settings = BigQuerySettings {
        project: "unused".into(),
        dataset: "golden".into(),
        location: "US".into(),
        credentials_file: None,
    };
    let services = services_with(
        &sandbox.base_url,
        Some(&sandbox.service_account_key()),
        RetryPolicy::default(),
    );
    // `timeoutMs: 0`: jobs.query answers `jobComplete: false` and the rows come by polling.
    let client = connect_client(&settings, &services)
        .expect("connect")
        .with_query_wait(std::time::Duration::ZERO);
    let result = client
        .query("SELECT COUNT(*) AS orders FROM `sandbox-project.golden.shopify_orders`")
        .await
        .expect("query");
    let counted = result.batches[0]
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(counted, 12);
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let polls: u64 = state["requests"]
        .as_object()
        .expect("requests")
        .iter()
        .filter(|(endpoint, _)| endpoint.starts_with("GET ") && endpoint.contains("/queries/"))
        .map(|(_, count)| count["requests"].as_u64().unwrap_or(0))
        .sum();
    assert!(polls >= 1, "getQueryResults was polled: {state}");
}

#[tokio::test]
async fn loading_the_whole_world_twice_leaves_one_row_per_key_in_every_merge_table() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut warehouse = warehouse(&sandbox, dir.path(), "mailroom").await;
    let merged = load_world_twice(&mut warehouse, &sandbox.base_url).await;
    let engine = warehouse.engine();
    for table in &merged {
        let (rows, duplicated) = duplicate_keys(&engine, table).await;
        assert!(rows > 0, "{} was loaded", table.name);
        assert_eq!(duplicated, 0, "{}: keys with more than one row", table.name);
    }
}

/// A SQL step's `into` on BigQuery: the answer replaces a table in the dataset, run after
/// run (the same staged load as extracted tables, with WRITE_TRUNCATE).
#[tokio::test]
async fn a_sql_steps_into_table_is_replaced_in_bigquery() {
    use mailroom::config::{Step, WarehouseConfig};
    use mailroom::pipeline::Pipeline;
    use mailroom::scheduler::{Executor, RunContext};
    use mailroom::state::Trigger;
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut fixtures = warehouse(&sandbox, dir.path(), "reports").await;
    load_fixtures(&mut fixtures).await;
    let mut config = crate::support::shipped_config();
    config.base_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    config.data_dir = dir.path().join("pipeline");
    config.warehouse = WarehouseConfig::BigQuery {
        project: mailroom_sandbox::google::PROJECT_ID.into(),
        dataset: "reports".into(),
        location: "US".into(),
        credentials_file: None,
    };
    let retry = RetryPolicy {
        base: std::time::Duration::from_millis(10),
        ..RetryPolicy::default()
    };
    let services = services_with(
        &sandbox.base_url,
        Some(&sandbox.service_account_key()),
        retry,
    );
    let state = StateStore::open(&dir.path().join("pipeline-state.db")).expect("state");
    let pipeline = Pipeline::new(Arc::new(config), Arc::new(services), Arc::new(state));
    let mut report = crate::support::job("loyalty-report", "30 8 * * 1", chrono_tz::UTC);
    report.steps = vec![Step::Sql {
        name: "loyalty".into(),
        file: std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("reports/loyalty_overview.sql"),
        params: Default::default(),
        into: Some("report_loyalty"),
        header_deliveries: false,
    }];
    let expected = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/expected/loyalty_overview.csv"),
    )
    .expect("golden")
    .lines()
    .count() as i64
        - 1;
    for run_id in ["run-1", "run-2"] {
        let run = RunContext {
            run_id: run_id.into(),
            trigger: Trigger::Schedule,
            scheduled_for: utc("2026-11-01T00:00:00Z"),
            covers_from: None,
            attempt: 1,
            dry_run: false,
        };
        let counters = pipeline.execute(&report, &run).await.expect("run");
        assert_eq!(
            counters.get("rows.report_loyalty"),
            Some(&(expected as u64)),
            "{counters:?}"
        );
    }
    let stored = query_ids(
        &fixtures,
        "SELECT COUNT(*) AS n FROM `sandbox-project.reports.report_loyalty`",
    )
    .await;
    assert_eq!(
        stored,
        [expected],
        "replaced by the second run, not appended"
    );
}

/// A staged file larger than one upload chunk goes through a resumable session, 256 KiB at a
/// time: a chunk answered 503 is sent again, one whose answer is cut off is resumed where
/// the session says it stands, and an expired session (410) is replaced by a new one. Every
/// row arrives once.
#[tokio::test]
async fn a_large_load_is_uploaded_in_chunks_through_faults_and_every_row_arrives_once() {
    const ROWS: i64 = 60_000;
    let uploads = "/bigquery/upload/bigquery/v2/projects/sandbox-project/jobs";
    let mut options = mailroom_sandbox::SandboxOptions::new(42, 300);
    options.faults = serde_json::from_value(serde_json::json!([
        {"method": "PUT", "path": uploads, "after": 1, "times": 1, "fault": {"kind": "server_error", "status": 503}},
        {"method": "PUT", "path": uploads, "after": 3, "times": 1, "fault": {"kind": "connection_reset"}},
        {"method": "PUT", "path": uploads, "after": 5, "times": 1, "fault": {"kind": "server_error", "status": 410}},
    ]))
    .expect("fault rules");
    let sandbox = crate::support::sandbox(options).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut warehouse = warehouse_uploading_in(&sandbox, dir.path(), "mailroom", 256 << 10).await;
    let table = events_table(false, false);
    // Names that do not compress: the staged file is several chunks.
    let names: Vec<String> = (0..ROWS).map(|i| incompressible_name(i as u64)).collect();
    let rows: Vec<(i64, &str, Option<f64>)> = (0..ROWS)
        .map(|i| (i, names[i as usize].as_str(), None))
        .collect();
    commit_events(&mut warehouse, "run-1", &table, &rows)
        .await
        .expect("a chunked load through faults");

    let ids = query_ids(
        &warehouse,
        "SELECT id FROM `sandbox-project.mailroom.events` ORDER BY id",
    )
    .await;
    assert_eq!(ids, (0..ROWS).collect::<Vec<_>>());
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let requests = |method: &str| {
        state["requests"][format!("{method} {uploads}")]["requests"]
            .as_u64()
            .expect("upload requests counted")
    };
    assert_eq!(
        requests("POST"),
        2,
        "one session, then a new one after the 410"
    );
    // Three chunk requests failed (503, cut, 410); the second session sent the file anew.
    assert!(
        requests("PUT") >= 8,
        "{} chunk requests: the file went in several chunks",
        requests("PUT")
    );
}

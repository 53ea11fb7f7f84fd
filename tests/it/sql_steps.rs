//! SQL steps in jobs: a report file rendered with the run's fire time as `now`, run on the
//! configured warehouse, its answer counted and kept for the steps after it; dry runs too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mailroom::config::{ParamValue, Step};
use mailroom::error::ErrorKind;
use mailroom::http::{HttpClient, RetryPolicy, Timeouts};
use mailroom::pipeline::Pipeline;
use mailroom::scheduler::{Executor, RunContext};
use mailroom::services::{Overrides, Services};
use mailroom::state::{StateStore, Trigger};
use mailroom::warehouse::local::LocalWarehouse;

use crate::sql_golden::load_fixtures;
use crate::support::{job, utc};

/// The golden tests' fire time, at which the fixtures give `tests/golden/expected/`.
const NOW: &str = "2026-11-01T00:00:00Z";

fn project_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Rows of a golden CSV (its lines less the header).
fn golden_rows(case: &str) -> u64 {
    let text = std::fs::read_to_string(project_file(&format!("tests/golden/expected/{case}.csv")))
        .expect("golden file");
    text.lines().count() as u64 - 1
}

/// A pipeline over the shipped config whose local warehouse holds the golden fixtures.
async fn pipeline(dir: &Path) -> Pipeline {
    let mut config = mailroom::config::parse(
        mailroom::config::DEFAULT_CONFIG,
        "config.toml",
        Path::new(env!("CARGO_MANIFEST_DIR")),
    )
    .expect("shipped config");
    config.data_dir = dir.to_path_buf();
    let warehouse_dir = config.local_warehouse_dir().expect("local warehouse");
    load_fixtures(&mut LocalWarehouse::open(&warehouse_dir).expect("open")).await;
    let services = Services::new(
        config.service_sections(),
        Overrides::default(),
        Box::new([("UNUSED", "")]),
        HttpClient::new(Timeouts::default()).expect("client"),
        RetryPolicy::default(),
    );
    let state = StateStore::open(&dir.join("state.db")).expect("state");
    Pipeline::new(Arc::new(config), Arc::new(services), Arc::new(state))
}

fn sql_step(name: &str, file: &str, params: &[(&str, ParamValue)]) -> Step {
    Step::Sql {
        name: name.into(),
        file: project_file(file),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>(),
        into: None,
        header_deliveries: false,
    }
}

fn run_at(at: &str, dry_run: bool) -> RunContext {
    RunContext {
        run_id: "run-1".into(),
        trigger: Trigger::Manual,
        scheduled_for: utc(at),
        covers_from: None,
        attempt: 1,
        dry_run,
    }
}

#[tokio::test]
async fn sql_steps_answer_from_the_warehouse_as_of_the_runs_fire_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(dir.path()).await;
    let mut report = job("weekly-email-report", "0 8 * * 1", chrono_tz::UTC);
    report.steps = vec![
        sql_step("weekly", "reports/weekly_email_performance.sql", &[]),
        sql_step(
            "lapsed",
            "queries/lapsed_customers.sql",
            &[
                ("lapse_days", ParamValue::Integer(120)),
                ("min_orders", ParamValue::Integer(2)),
            ],
        ),
    ];
    for dry_run in [false, true] {
        let counters = pipeline
            .execute(&report, &run_at(NOW, dry_run))
            .await
            .expect("run");
        assert_eq!(
            counters.get("result.weekly"),
            Some(&golden_rows("weekly_email_performance")),
            "dry run {dry_run}: {counters:?}"
        );
        assert_eq!(
            counters.get("result.lapsed"),
            Some(&golden_rows("lapsed_customers_120_days_2_orders")),
            "parameters reach the file: {counters:?}"
        );
    }
    // `now` is the fire time, not the clock: a run for a later period gives that period's
    // answer (by then every fixture customer has lapsed for 120 days).
    let later = pipeline
        .execute(&report, &run_at("2027-06-01T00:00:00Z", false))
        .await
        .expect("later run");
    assert_ne!(
        later.get("result.lapsed"),
        Some(&golden_rows("lapsed_customers_120_days_2_orders")),
        "{later:?}"
    );
}

#[tokio::test]
async fn a_broken_sql_step_fails_the_run_as_a_config_error_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(dir.path()).await;
    std::fs::write(
        dir.path().join("bad.sql"),
        "-- title = \"Sounds alike\"\nSELECT SOUNDEX(email) FROM {{ ref('shopify_customers') }}\n",
    )
    .expect("file");
    let mut broken = job("broken", "0 8 * * 1", chrono_tz::UTC);
    broken.steps = vec![Step::Sql {
        name: "bad".into(),
        file: dir.path().join("bad.sql"),
        params: BTreeMap::new(),
        into: None,
        header_deliveries: true,
    }];
    let err = pipeline
        .execute(&broken, &run_at(NOW, false))
        .await
        .expect_err("unsupported function");
    assert_eq!(err.kind, ErrorKind::Config, "{err}");
    assert!(
        err.message.contains("bad.sql") && err.message.contains("SOUNDEX"),
        "{err}"
    );
}

#[tokio::test]
async fn into_replaces_a_warehouse_table_with_each_runs_answer_and_a_dry_run_writes_none() {
    use mailroom::warehouse::QueryEngine;
    use mailroom::warehouse::local::LocalWarehouse;
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = pipeline(dir.path()).await;
    let mut report = job("weekly-email-report", "0 8 * * 1", chrono_tz::UTC);
    let mut step = sql_step("weekly", "reports/weekly_email_performance.sql", &[]);
    if let Step::Sql { into, .. } = &mut step {
        *into = Some("report_weekly_email");
    }
    report.steps = vec![step];
    let count = || async {
        let engine = QueryEngine::Local(LocalWarehouse::reader(&dir.path().join("warehouse")));
        let result = engine
            .run("SELECT COUNT(*) AS n, COUNT(DISTINCT _mailroom_run_id) AS runs FROM `report_weekly_email`")
            .await;
        result.ok().map(|r| {
            use arrow::array::AsArray;
            let batch = &r.batches[0];
            (
                batch
                    .column(0)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .value(0),
                batch
                    .column(1)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .value(0),
            )
        })
    };
    let dry = pipeline
        .execute(&report, &run_at(NOW, true))
        .await
        .expect("dry run");
    assert_eq!(
        dry.get("rows.report_weekly_email"),
        Some(&golden_rows("weekly_email_performance"))
    );
    assert_eq!(count().await, None, "a dry run creates no table");

    let counters = pipeline
        .execute(&report, &run_at(NOW, false))
        .await
        .expect("run");
    let rows = golden_rows("weekly_email_performance");
    assert_eq!(
        counters.get("rows.report_weekly_email"),
        Some(&rows),
        "{counters:?}"
    );
    assert_eq!(count().await, Some((rows as i64, 1)));
    // Another run replaces the table with its own answer; nothing accumulates.
    let mut later = run_at(NOW, false);
    later.run_id = "run-2".into();
    pipeline.execute(&report, &later).await.expect("second run");
    assert_eq!(
        count().await,
        Some((rows as i64, 1)),
        "replaced, not appended"
    );
}

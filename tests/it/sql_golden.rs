//! Golden tests of the shipped SQL files: the fixture tables in `tests/golden/fixtures/`
//! are loaded through a warehouse, each file runs with a fixed fire time, and its rows,
//! printed as CSV, must equal `tests/golden/expected/<case>.csv` exactly. Set
//! `MAILROOM_BLESS=1` to write the expected files from the current output (then read them).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use mailroom::config::ParamValue;
use mailroom::normalize::TableSchema;
use mailroom::normalize::schema::{Column, ColumnType, EXTRACTED_AT_COLUMN, RUN_ID_COLUMN};
use mailroom::sources::{shopify, smartrmail, smile};
use mailroom::sql::SqlFile;
use mailroom::sql::output::{self, OutputFormat};
use mailroom::warehouse::QueryEngine;
use mailroom::warehouse::local::LocalWarehouse;
use mailroom::warehouse::{LoadId, Warehouse};

use crate::support::{commit_batch, utc};

/// The fire time every case runs at.
const NOW: &str = "2026-11-01T00:00:00Z";

/// One run of one file: its parameters and the expected file's name.
struct Case {
    file: &'static str,
    params: &'static [(&'static str, ParamValue)],
    expected: &'static str,
}

const CASES: &[Case] = &[
    Case {
        file: "queries/lapsed_customers.sql",
        params: &[],
        expected: "lapsed_customers",
    },
    Case {
        file: "queries/lapsed_customers.sql",
        params: &[
            ("lapse_days", ParamValue::Integer(120)),
            ("min_orders", ParamValue::Integer(2)),
        ],
        expected: "lapsed_customers_120_days_2_orders",
    },
    Case {
        file: "reports/weekly_email_performance.sql",
        params: &[],
        expected: "weekly_email_performance",
    },
    Case {
        file: "reports/loyalty_overview.sql",
        params: &[],
        expected: "loyalty_overview",
    },
    Case {
        file: "reports/winback_results.sql",
        params: &[],
        expected: "winback_results",
    },
];

fn project_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The enrollment ledger's table as the activation step will export it.
pub fn winback_enrollments_table() -> TableSchema {
    TableSchema::new(
        "winback_enrollments",
        vec![
            Column::named("email_normalized", ColumnType::Text).required(),
            Column::named("platform", ColumnType::Text),
            Column::named("sequence", ColumnType::Text),
            Column::named("arm", ColumnType::Text),
            Column::named("outcome", ColumnType::Text),
            Column::named("reason", ColumnType::Text),
            Column::named("assigned_at", ColumnType::Timestamp),
            Column::named("enrolled_at", ColumnType::Timestamp),
            Column::named("run_id", ColumnType::Text),
        ],
    )
}

/// Every fixture table with its declared schema.
pub fn fixture_tables() -> Vec<TableSchema> {
    vec![
        shopify::tables::orders_table(),
        shopify::tables::customers_table(),
        smartrmail::subscribers_table(),
        smile::customers_table(),
        smile::points_transactions_table(),
        smartrmail::campaigns_table(),
        winback_enrollments_table(),
    ]
}

/// A fixture file's rows as one batch of the table's schema, with the run columns filled.
pub fn fixture_batch(table: &TableSchema) -> RecordBatch {
    let path = project_dir()
        .join("tests/golden/fixtures")
        .join(format!("{}.jsonl", table.name));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    jsonl_batch(table, &text)
}

/// JSON lines as one batch of the table's schema, with the run columns filled.
pub fn jsonl_batch(table: &TableSchema, text: &str) -> RecordBatch {
    let path = table.name;
    let schema = table.arrow_schema();
    let data_fields: Vec<_> = schema
        .fields()
        .iter()
        .filter(|f| f.name() != RUN_ID_COLUMN && f.name() != EXTRACTED_AT_COLUMN)
        .cloned()
        .collect();
    let data_schema = Arc::new(arrow::datatypes::Schema::new(data_fields));
    let reader = arrow::json::ReaderBuilder::new(data_schema)
        .build(Cursor::new(text.to_string()))
        .expect("reader");
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    let data = arrow::compute::concat_batches(&batches[0].schema(), &batches).expect("concat");
    let rows = data.num_rows();
    let extracted_at = utc(NOW).timestamp_micros();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| match f.name().as_str() {
            RUN_ID_COLUMN => Arc::new(StringArray::from(vec!["fixture"; rows])) as ArrayRef,
            EXTRACTED_AT_COLUMN => Arc::new(
                TimestampMicrosecondArray::from(vec![extracted_at; rows]).with_timezone("UTC"),
            ),
            name => data.column_by_name(name).expect("column").clone(),
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("fixture batch")
}

/// Loads every fixture table into `warehouse`, one committed load each.
pub async fn load_fixtures(warehouse: &mut impl Warehouse) {
    for table in fixture_tables() {
        let load = LoadId {
            source: "fixture".into(),
            stream: table.name.to_string(),
            run_id: "golden".into(),
        };
        commit_batch(warehouse, load, &table, fixture_batch(&table))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", table.name));
    }
}

/// Runs every case on `engine` and compares (or, blessing, writes) the expected rows.
pub async fn check_cases(engine: &QueryEngine, engine_name: &str) {
    let bless = std::env::var_os("MAILROOM_BLESS").is_some();
    let mut mismatches = Vec::new();
    for case in CASES {
        let file = SqlFile::read(&project_dir().join(case.file)).expect("file");
        let overrides: BTreeMap<String, ParamValue> = case
            .params
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let sql = file
            .render(utc(NOW), &overrides, &engine.table_names())
            .expect("render");
        let result = engine
            .run(&sql)
            .await
            .unwrap_or_else(|e| panic!("{} on {engine_name}: {e}", case.file));
        let mut csv = Vec::new();
        output::write(&result, OutputFormat::Csv, &mut csv).expect("csv");
        let actual = String::from_utf8(csv).expect("utf-8");
        let expected_path = project_dir()
            .join("tests/golden/expected")
            .join(format!("{}.csv", case.expected));
        if bless {
            std::fs::write(&expected_path, &actual).expect("bless");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|e| panic!("{}: {e}", expected_path.display()));
        if actual != expected {
            mismatches.push(format!(
                "{} ({}) on {engine_name}:\n--- expected\n{expected}--- actual\n{actual}",
                case.file, case.expected
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[tokio::test]
async fn shipped_sql_files_give_the_golden_rows_on_the_local_engine() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root: &Path = &dir.path().join("warehouse");
    let mut warehouse = LocalWarehouse::open(root).expect("open");
    load_fixtures(&mut warehouse).await;
    check_cases(
        &QueryEngine::Local(LocalWarehouse::reader(warehouse.root())),
        "the local engine",
    )
    .await;
}

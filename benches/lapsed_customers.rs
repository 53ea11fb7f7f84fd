//! SQL benchmark: `queries/lapsed_customers.sql` on the local engine (the GoogleSQL front
//! end on DataFusion, over Delta tables) beside DuckDB running the same query, written in
//! DuckDB's dialect, on the same Parquet files.
//!
//! `cargo bench --bench lapsed_customers [-- --orders 10000000]` generates (once, kept in
//! the system's temp folder) 10,000,000 orders from 2,000,000 customers with their Shopify
//! consent, SmartrMail status and Smile loyalty rows, loaded through the local warehouse;
//! then runs mailroom and DuckDB alternately for five rounds (so a busy machine favours
//! neither), printing each round's times, rows (they must agree) and ratio, then the median
//! ratio. DuckDB comes from Python's `duckdb` package,
//! installed with pip when missing. BENCHMARKS.md records the figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
    new_null_array,
};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use mailroom::normalize::{TableSchema, WriteDisposition};
use mailroom::sources::{shopify, smartrmail, smile};
use mailroom::sql::SqlFile;
use mailroom::warehouse::QueryEngine;
use mailroom::warehouse::TableNames;
use mailroom::warehouse::local::LocalWarehouse;
use mailroom::warehouse::{Commit, LoadId, Warehouse};

mod support;

const BATCH: usize = 65_536;
/// Rounds of one mailroom run then one DuckDB run, so a busy machine favours neither.
const ROUNDS: usize = 5;
/// The fire time the query runs at.
const NOW: &str = "2026-11-01T00:00:00Z";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let orders: usize = args
        .iter()
        .position(|a| a == "--orders")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(10_000_000);
    let customers = orders / 5;
    let dir = std::env::temp_dir().join(format!("mailroom-lapsed-bench-{orders}"));
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let warehouse_dir = dir.join("warehouse");
        if !warehouse_dir.join("smile_customers/_delta_log").is_dir() {
            let started = Instant::now();
            generate(&warehouse_dir, orders, customers).await;
            println!(
                "generated {orders} orders of {customers} customers in {:.1} s under {}",
                started.elapsed().as_secs_f64(),
                dir.display()
            );
        }
        println!(
            "lapsed_customers.sql over {orders} orders: {ROUNDS} rounds, mailroom then DuckDB in each"
        );
        let engine = Mailroom::new(&warehouse_dir);
        let duckdb = duckdb_script(&dir);
        let mut ratios = Vec::new();
        let mut rows_agree = true;
        for round in 1..=ROUNDS {
            let (mailroom_rows, mailroom_seconds) = engine.time().await;
            let (duckdb_rows, duckdb_seconds) = time_duckdb(&duckdb, &warehouse_dir);
            rows_agree &= mailroom_rows == duckdb_rows;
            let ratio = mailroom_seconds / duckdb_seconds;
            ratios.push(ratio);
            println!(
                "  round {round}: mailroom {mailroom_seconds:>6.3} s ({mailroom_rows} rows), DuckDB {duckdb_seconds:>6.3} s ({duckdb_rows} rows), ratio {ratio:.2}x"
            );
        }
        ratios.sort_by(f64::total_cmp);
        println!(
            "  median mailroom / DuckDB over {ROUNDS} rounds: {:.2}x (target: at most 1.0x){}",
            ratios[ratios.len() / 2],
            if rows_agree {
                ""
            } else {
                "  — ROW COUNTS DIFFER"
            }
        );
    });
}

fn now() -> DateTime<Utc> {
    NOW.parse().expect("time")
}

/// A column of `rows` values for `name`, or nulls when the benchmark does not fill it.
fn column(
    table: &TableSchema,
    field: &arrow::datatypes::Field,
    start: usize,
    rows: usize,
    values: &dyn Fn(&str, usize) -> Option<ArrayRef>,
) -> ArrayRef {
    values(field.name(), start).unwrap_or_else(|| {
        assert!(
            field.is_nullable(),
            "{}.{} is required and not generated",
            table.name,
            field.name()
        );
        new_null_array(field.data_type(), rows)
    })
}

/// Writes `total` generated rows of `table` through the warehouse in one committed load.
async fn load(
    warehouse: &mut LocalWarehouse,
    table: TableSchema,
    total: usize,
    values: impl Fn(&str, usize, usize) -> Option<ArrayRef>,
) {
    // Generated rows have unique keys: appending them is the same as merging, and faster.
    let mut table = table;
    table.disposition = WriteDisposition::Append;
    table.children.clear();
    let schema = table.arrow_schema();
    let load = LoadId {
        source: "bench".into(),
        stream: table.name.into(),
        run_id: "generate".into(),
    };
    for start in (0..total).step_by(BATCH) {
        let rows = BATCH.min(total - start);
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                column(&table, f, start, rows, &|name, start| {
                    values(name, start, rows)
                })
            })
            .collect();
        let batch = RecordBatch::try_new(schema.clone(), columns).expect("batch");
        warehouse.write(&load, &table, batch).await.expect("stage");
    }
    warehouse
        .commit(Commit {
            load,
            tables: vec![table],
            cursor: None,
        })
        .await
        .expect("commit");
}

fn email(customer: usize) -> String {
    format!("customer{customer}@example.com")
}

fn micros(seconds_before_now: i64) -> i64 {
    (now().timestamp() - seconds_before_now) * 1_000_000
}

fn timestamps(values: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

fn strings(values: Vec<String>) -> ArrayRef {
    Arc::new(StringArray::from(values))
}

/// Two years of orders, customers with 1 to 9 orders; consent, status and loyalty vary
/// by customer number so each filter of the query removes some of them.
async fn generate(dir: &Path, orders: usize, customers: usize) {
    let _ = std::fs::remove_dir_all(dir);
    let mut warehouse = LocalWarehouse::open(dir).expect("warehouse");
    let common = |name: &str, rows: usize| -> Option<ArrayRef> {
        match name {
            "_mailroom_run_id" => Some(strings(vec!["generate".into(); rows])),
            "_mailroom_extracted_at" => Some(timestamps(vec![micros(0); rows])),
            _ => None,
        }
    };
    let mut rng = fastrand::Rng::with_seed(7);
    let order_customer: Vec<usize> = (0..orders).map(|_| rng.usize(0..customers)).collect();
    let order_age: Vec<i64> = (0..orders).map(|_| rng.i64(0..730 * 86_400)).collect();
    load(
        &mut warehouse,
        shopify::tables::orders_table(),
        orders,
        |name, start, rows| {
            let range = start..start + rows;
            Some(match name {
                "id" => Arc::new(Int64Array::from_iter_values(range.map(|i| i as i64 + 1))),
                "name" => strings(range.map(|i| format!("#{}", i + 1000)).collect()),
                "email" | "email_normalized" => {
                    strings(range.map(|i| email(order_customer[i])).collect())
                }
                "customer_id" => Arc::new(Int64Array::from_iter_values(
                    range.map(|i| order_customer[i] as i64),
                )),
                "created_at" | "updated_at" | "processed_at" => {
                    timestamps(range.map(|i| micros(order_age[i])).collect())
                }
                "cancelled_at" => timestamps_opt(
                    range
                        .map(|i| (i % 50 == 0).then(|| micros(order_age[i])))
                        .collect(),
                ),
                "test" => Arc::new(BooleanArray::from_iter(range.map(|i| Some(i % 997 == 0)))),
                "currency" => strings(vec!["USD".into(); rows]),
                "total_price" | "subtotal_price" => Arc::new(
                    Decimal128Array::from_iter_values(
                        range.map(|i| ((i % 400) as i128 + 10) * 1_000_000_000 + 500_000_000),
                    )
                    .with_precision_and_scale(38, 9)
                    .expect("decimal"),
                ),
                other => return common(other, rows),
            })
        },
    )
    .await;
    load(
        &mut warehouse,
        shopify::tables::customers_table(),
        customers,
        |name, start, rows| {
            let range = start..start + rows;
            Some(match name {
                "id" => Arc::new(Int64Array::from_iter_values(range.map(|i| i as i64))),
                "email" | "email_normalized" => strings(range.map(email).collect()),
                "marketing_state" => strings(
                    range
                        .map(|i| {
                            match i % 10 {
                                0 => "UNSUBSCRIBED",
                                1 => "NOT_SUBSCRIBED",
                                _ => "SUBSCRIBED",
                            }
                            .to_string()
                        })
                        .collect(),
                ),
                "updated_at" | "created_at" => timestamps(vec![micros(86_400); rows]),
                other => return common(other, rows),
            })
        },
    )
    .await;
    load(
        &mut warehouse,
        smartrmail::subscribers_table(),
        customers,
        |name, start, rows| {
            let range = start..start + rows;
            Some(match name {
                "id" => strings(range.map(|i| format!("sub-{i}")).collect()),
                "email" | "email_normalized" => strings(range.map(email).collect()),
                "subscribed" => Arc::new(BooleanArray::from_iter(range.map(|i| Some(i % 13 != 0)))),
                "complained" => Arc::new(BooleanArray::from_iter(range.map(|i| Some(i % 97 == 0)))),
                "status" => strings(vec!["Subscribed".into(); rows]),
                other => return common(other, rows),
            })
        },
    )
    .await;
    // Most customers are Smile members; some have a second, older account.
    let smile_rows = customers + customers / 20;
    load(
        &mut warehouse,
        smile::customers_table(),
        smile_rows,
        |name, start, rows| {
            let range = start..start + rows;
            let customer = |i: usize| {
                if i < customers {
                    i
                } else {
                    (i - customers) * 20
                }
            };
            Some(match name {
                "id" => Arc::new(Int64Array::from_iter_values(range.map(|i| i as i64 + 1))),
                "email" | "email_normalized" => {
                    strings(range.map(|i| email(customer(i))).collect())
                }
                "state" => strings(vec!["member".into(); rows]),
                "points_balance" => Arc::new(Int64Array::from_iter_values(
                    range.map(|i| (i % 5000) as i64),
                )),
                "vip_tier_name" => strings(
                    range
                        .map(|i| ["Bronze", "Silver", "Gold"][i % 3].to_string())
                        .collect(),
                ),
                "referral_url" => {
                    strings(range.map(|i| format!("http://i.refs.cc/{i:x}")).collect())
                }
                "updated_at" => timestamps(
                    range
                        .map(|i| micros(if i < customers { 3600 } else { 7200 }))
                        .collect(),
                ),
                other => return common(other, rows),
            })
        },
    )
    .await;
}

fn timestamps_opt(values: Vec<Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

/// The shipped file, rendered, on the local engine.
struct Mailroom {
    engine: QueryEngine,
    sql: String,
}

impl Mailroom {
    fn new(dir: &Path) -> Self {
        let file = SqlFile::read(
            &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("queries/lapsed_customers.sql"),
        )
        .expect("the shipped file");
        let sql = file
            .render(now(), &BTreeMap::new(), &TableNames::Local)
            .expect("render");
        Mailroom {
            engine: QueryEngine::Local(LocalWarehouse::reader(dir)),
            sql,
        }
    }

    /// One run: rows and seconds.
    async fn time(&self) -> (usize, f64) {
        let started = Instant::now();
        let result = self.engine.run(&self.sql).await.expect("query");
        (result.num_rows(), started.elapsed().as_secs_f64())
    }
}

/// The DuckDB script, written beside the data (DuckDB installed with pip when missing).
fn duckdb_script(dir: &Path) -> PathBuf {
    let has_duckdb = Command::new("python3")
        .args(["-c", "import duckdb"])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_duckdb {
        let installed = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "duckdb"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(installed, "DuckDB is needed: python3 -m pip install duckdb");
    }
    let script = dir.join("duckdb_lapsed.py");
    std::fs::write(&script, DUCKDB_SCRIPT).expect("script");
    script
}

/// One run of the same query in DuckDB's dialect on the tables' Parquet files (its own
/// process; only the query is timed): rows and seconds.
fn time_duckdb(script: &Path, warehouse: &Path) -> (usize, f64) {
    let output = Command::new("python3")
        .arg(script)
        .arg(warehouse)
        .arg(NOW)
        .output()
        .expect("python3 runs");
    (
        support::figure(&output, "rows") as usize,
        support::figure(&output, "seconds"),
    )
}

const DUCKDB_SCRIPT: &str = r#"
import sys, time, duckdb
warehouse, now = sys.argv[1], sys.argv[2]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
for table in ["shopify_orders", "shopify_customers", "smartrmail_subscribers", "smile_customers"]:
    con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{warehouse}/{table}/*.parquet')")
sql = f"""
WITH customer_orders AS (
  SELECT email_normalized, MAX(created_at) AS last_order_at, COUNT(*) AS order_count,
         SUM(total_price) AS lifetime_value
  FROM shopify_orders
  WHERE email_normalized IS NOT NULL AND cancelled_at IS NULL AND NOT IFNULL(test, FALSE)
  GROUP BY email_normalized
),
suppressed AS (
  SELECT email_normalized FROM smartrmail_subscribers
  WHERE NOT subscribed OR IFNULL(complained, FALSE) OR unsubscribed_at IS NOT NULL
  UNION ALL
  SELECT email_normalized FROM shopify_customers
  WHERE marketing_state IS NULL OR marketing_state != 'SUBSCRIBED'
),
consented AS (
  SELECT email_normalized FROM shopify_customers WHERE marketing_state = 'SUBSCRIBED'
),
lapsed AS (
  SELECT o.* FROM customer_orders AS o
  WHERE o.last_order_at < TIMESTAMPTZ '{now}' - INTERVAL 90 DAY
    AND o.order_count >= 1
    AND EXISTS (SELECT 1 FROM consented AS c WHERE c.email_normalized = o.email_normalized)
    AND NOT EXISTS (SELECT 1 FROM suppressed AS s WHERE s.email_normalized = o.email_normalized)
)
SELECT o.email_normalized AS email, o.last_order_at, o.order_count, o.lifetime_value,
       date_diff('day', CAST(o.last_order_at AS DATE), CAST(TIMESTAMPTZ '{now}' AS DATE)) AS days_since_last_order,
       l.points_balance, l.vip_tier_name, l.referral_url
FROM lapsed AS o
LEFT JOIN smile_customers AS l ON l.email_normalized = o.email_normalized
QUALIFY ROW_NUMBER() OVER (PARTITION BY o.email_normalized ORDER BY l.updated_at DESC NULLS LAST, l.id DESC NULLS LAST) = 1
ORDER BY o.last_order_at, email
"""
started = time.perf_counter()
# Materialized in DuckDB's own format, as mailroom materializes Arrow batches.
con.execute(f"CREATE TEMP TABLE result AS {sql}")
rows = con.execute("SELECT COUNT(*) FROM result").fetchone()[0]
print(f"rows={rows} seconds={time.perf_counter() - started:.3f}")
"#;

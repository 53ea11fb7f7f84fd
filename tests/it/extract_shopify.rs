//! Shopify extracted from the sandbox: the first load by bulk operation, later loads by
//! the paged GraphQL query from the cursor (with its overlap), and a backfill that pages
//! the whole window to its last page — all checked against the world.

use std::collections::HashMap;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Decimal128Type, Int64Type};
use arrow::record_batch::RecordBatch;
use mailroom::config::SourceKind;
use mailroom::extract::{Mode, extract_stream};
use mailroom::normalize::SchemaPolicy;
use mailroom::warehouse::memory::MemoryWarehouse;
use mailroom_sandbox::world::{Consent, Order};

use crate::support::{extract, requests, small_sandbox, small_world, source, stamp};

/// Shopify customer ids are this plus the person's index.
const CUSTOMER_BASE: i64 = mailroom_sandbox::shopify::data::CUSTOMER_BASE as i64;

fn world_orders() -> HashMap<i64, Order> {
    let world = small_world();
    world
        .people()
        .flat_map(|p| world.orders_of(&p))
        .map(|o| (o.id as i64, o))
        .collect()
}

fn column<'a>(batch: &'a RecordBatch, name: &str) -> &'a arrow::array::ArrayRef {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
}

/// Checks that `warehouse` holds exactly the world's orders and lines, with sample values.
fn assert_orders(warehouse: &MemoryWarehouse) {
    let orders = world_orders();
    let lines: usize = orders.values().map(|o| o.lines.len()).sum();
    assert_eq!(warehouse.rows("shopify_orders"), orders.len() as u64);
    assert_eq!(warehouse.rows("shopify_order_lines"), lines as u64);
    let table = warehouse.table("shopify_orders").unwrap();
    let ids = column(table, "id").as_primitive::<Int64Type>();
    let totals = column(table, "total_price").as_primitive::<Decimal128Type>();
    let customers = column(table, "customer_id").as_primitive::<Int64Type>();
    for row in (0..table.num_rows()).step_by(7) {
        let order = &orders[&ids.value(row)];
        assert_eq!(
            totals.value(row),
            i128::from(order.total_cents()) * 10_000_000
        );
        assert_eq!(
            customers.value(row),
            CUSTOMER_BASE + i64::from(order.customer)
        );
    }
    let table = warehouse.table("shopify_order_lines").unwrap();
    let order_ids = column(table, "order_id").as_primitive::<Int64Type>();
    let line_ids = column(table, "line_id").as_primitive::<Int64Type>();
    let products = column(table, "product_id").as_primitive::<Int64Type>();
    for row in (0..table.num_rows()).step_by(11) {
        let order = &orders[&order_ids.value(row)];
        let line = order
            .lines
            .iter()
            .find(|l| l.id as i64 == line_ids.value(row))
            .unwrap();
        assert_eq!(products.value(row), line.product.id as i64);
    }
}

#[tokio::test]
async fn the_first_load_is_a_bulk_export_and_later_loads_page_from_the_cursor() {
    let sandbox = small_sandbox().await;
    let shopify = source(SourceKind::Shopify, &sandbox.base_url);
    let mut warehouse = MemoryWarehouse::new();

    let first = extract(&shopify, "orders", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert_eq!(first.quarantined, 0);
    assert!(first.new_fields.is_empty(), "{:?}", first.new_fields);
    assert_orders(&warehouse);
    let (_, _, state) =
        crate::support::get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["shopify"]["bulk_operations"].as_array().map(Vec::len),
        Some(1)
    );

    let newest = world_orders().values().map(|o| o.updated_at).max().unwrap();
    let recent = world_orders()
        .values()
        .filter(|o| o.updated_at >= newest - chrono::Duration::minutes(10))
        .count() as u64;
    let (graphql_before, _) = requests(&sandbox.base_url, "graphql").await;
    let again = extract(&shopify, "orders", &mut warehouse, "run-2")
        .await
        .unwrap();
    let (graphql_after, _) = requests(&sandbox.base_url, "graphql").await;
    assert_eq!(
        again.rows_in("shopify_orders"),
        recent,
        "only the overlap window again"
    );
    assert_eq!(graphql_after - graphql_before, 1, "one page");
    assert_orders(&warehouse);
}

/// The ten days of order changes up to the newest (a few pages), and the orders in them.
fn recent_window(orders: &HashMap<i64, Order>) -> (Mode, Vec<&Order>) {
    let newest = orders.values().map(|o| o.updated_at).max().unwrap();
    let from = newest - chrono::Duration::days(10);
    let to = newest + chrono::Duration::seconds(1);
    let in_window = orders
        .values()
        .filter(|o| o.updated_at >= from && o.updated_at < to)
        .collect();
    (Mode::Backfill { from, to }, in_window)
}

/// A backfill of `window` into a fresh in-memory warehouse.
async fn backfill(
    shopify: &mailroom::sources::AnySource,
    window: Mode,
) -> (mailroom::extract::StreamReport, MemoryWarehouse) {
    let mut warehouse = MemoryWarehouse::new();
    let report = extract_stream(
        shopify,
        "orders",
        &mut warehouse,
        stamp("backfill-1", "2026-11-22T10:00:00Z"),
        window,
        SchemaPolicy::Fixed,
        &|_| {},
    )
    .await
    .unwrap();
    (report, warehouse)
}

#[tokio::test]
async fn a_backfill_pages_the_whole_window_without_moving_the_cursor() {
    let sandbox = small_sandbox().await;
    let shopify = source(SourceKind::Shopify, &sandbox.base_url);
    let orders = world_orders();
    // Shopify's cost budget allows only a few orders a second: a test pages a window.
    let (window, in_window) = recent_window(&orders);
    assert!(
        in_window.len() > 15,
        "more than one page: {}",
        in_window.len()
    );
    let (report, warehouse) = backfill(&shopify, window).await;
    assert_eq!(report.cursor, None);
    assert_eq!(report.rows_in("shopify_orders"), in_window.len() as u64);
    let lines: usize = in_window.iter().map(|o| o.lines.len()).sum();
    assert_eq!(report.rows_in("shopify_order_lines"), lines as u64);
    let pages = in_window.len().div_ceil(15) as u64;
    let (graphql, _) = requests(&sandbox.base_url, "graphql").await;
    assert_eq!(graphql, pages, "pages of 15 orders to the last one");
    use mailroom::warehouse::Warehouse;
    assert_eq!(
        warehouse
            .cursor("shopify_orders", "shopify", "orders")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn customers_land_with_their_marketing_consent() {
    let sandbox = small_sandbox().await;
    let shopify = source(SourceKind::Shopify, &sandbox.base_url);
    let world = small_world();
    let people: Vec<_> = world.people().collect();
    let mut warehouse = MemoryWarehouse::new();
    let report = extract(&shopify, "customers", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert_eq!(report.rows_in("shopify_customers"), people.len() as u64);
    let table = warehouse.table("shopify_customers").unwrap();
    let ids = column(table, "id").as_primitive::<Int64Type>();
    let states = column(table, "marketing_state").as_string::<i32>();
    let emails = column(table, "email_normalized").as_string::<i32>();
    for row in 0..table.num_rows() {
        let person = &people[(ids.value(row) - CUSTOMER_BASE) as usize - 1];
        let expected = match person.consent {
            Consent::Subscribed => "SUBSCRIBED",
            Consent::NotSubscribed => "NOT_SUBSCRIBED",
            Consent::Unsubscribed => "UNSUBSCRIBED",
        };
        assert_eq!(states.value(row), expected);
        assert!(emails.is_valid(row));
        assert_eq!(emails.value(row), person.email);
    }
    // A later run pages from the cursor.
    let again = extract(&shopify, "customers", &mut warehouse, "run-2")
        .await
        .unwrap();
    assert!(again.rows_in("shopify_customers") < people.len() as u64);
    assert_eq!(warehouse.rows("shopify_customers"), people.len() as u64);
}

/// Orders with more line items than a page holds get the rest by follow-up queries.
#[tokio::test]
async fn orders_with_more_lines_than_a_page_are_completed() {
    let sandbox = small_sandbox().await;
    let mailroom::sources::AnySource::Shopify(shopify) =
        source(SourceKind::Shopify, &sandbox.base_url)
    else {
        panic!("a Shopify source");
    };
    let shopify = mailroom::sources::AnySource::Shopify(shopify.with_lines_per_order(1));
    let orders = world_orders();
    let (window, in_window) = recent_window(&orders);
    assert!(
        in_window.iter().any(|o| o.lines.len() > 1),
        "some orders have several lines"
    );
    let (report, warehouse) = backfill(&shopify, window).await;
    let lines: usize = in_window.iter().map(|o| o.lines.len()).sum();
    assert_eq!(report.rows_in("shopify_order_lines"), lines as u64);
    assert_eq!(warehouse.rows("shopify_order_lines"), lines as u64);
}

/// Four exports a stopped process left running (other queries), then five `run-job
/// extract-orders` processes `SIGKILL`ed right after they start or adopt their export:
/// the first cancels the four, the others adopt its export instead of starting more, and
/// the next run completes, loading every order once, with nothing left running.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn runs_killed_after_starting_a_bulk_export_never_block_the_next_one() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::Duration;

    use crate::cli::{KillOnDrop, mailroom, run as run_cli};
    use crate::support::{SMALL_CUSTOMERS, SMALL_SEED, get_json, sandbox};

    let mut options = mailroom_sandbox::SandboxOptions::new(SMALL_SEED, SMALL_CUSTOMERS);
    // Long enough that the killed runs' export is still running when the next one looks.
    options.shopify_bulk_duration = Duration::from_secs(12);
    let sandbox = sandbox(options).await;
    let graphql = format!(
        "{}/shopify/admin/api/2026-10/graphql.json",
        sandbox.base_url
    );
    let client = reqwest::Client::new();
    for month in 1..=4 {
        let query = format!(
            "{{ orders(query: \"updated_at:>='2026-0{month}-01'\") {{ edges {{ node {{ id }} }} }} }}"
        );
        let body: serde_json::Value = client
            .post(&graphql)
            .header("X-Shopify-Access-Token", mailroom_sandbox::CREDENTIAL)
            .json(&serde_json::json!({
                "query": "mutation($q: String!) { bulkOperationRunQuery(query: $q) { bulkOperation { id } userErrors { message } } }",
                "variables": { "q": query },
            }))
            .send()
            .await
            .expect("sent")
            .json()
            .await
            .expect("json");
        assert_eq!(
            body["data"]["bulkOperationRunQuery"]["userErrors"],
            serde_json::json!([])
        );
    }
    // Created a second or more before any run starts, as a stopped process's would be.
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let base = sandbox.base_url.clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let cli = move |args: &[&str]| {
        let mut cmd = mailroom(&path);
        cmd.args(["--sandbox-url", &base]).args(args);
        cmd
    };
    let kill = cli.clone();
    let seen = tokio::task::spawn_blocking(move || {
        let mut seen = Vec::new();
        for round in 0..5 {
            let mut child = KillOnDrop(
                kill(&["run-job", "extract-orders", "--log-format", "json"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn"),
            );
            let stderr = child.0.stderr.take().expect("stderr");
            let line = BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .find(|line| {
                    line.contains("Shopify bulk export started")
                        || line.contains("adopting the Shopify bulk export")
                })
                .unwrap_or_else(|| panic!("round {round}: no export started or adopted"));
            child.0.kill().expect("SIGKILL");
            let _ = child.0.wait();
            seen.push(if line.contains("adopting") {
                "adopted"
            } else {
                "started"
            });
        }
        seen
    })
    .await
    .expect("killed runs");
    assert_eq!(seen[0], "started", "{seen:?}");
    assert!(seen.contains(&"adopted"), "{seen:?}");

    let finish = cli.clone();
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        run_cli(&mut finish(&[
            "run-job",
            "extract-orders",
            "--log-format",
            "json",
        ]))
    })
    .await
    .expect("rerun");
    assert_eq!(code, 0, "{stdout}\n{stderr}");

    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let operations = state["shopify"]["bulk_operations"]
        .as_array()
        .expect("operations");
    let status = |op: &serde_json::Value| op["status"].as_str().expect("status").to_string();
    let foreign: Vec<String> = operations[..4].iter().map(status).collect();
    assert_eq!(foreign, ["CANCELED"; 4], "{operations:#?}");
    assert!(
        operations
            .iter()
            .all(|op| status(op) == "COMPLETED" || status(op) == "CANCELED"),
        "nothing left running: {operations:#?}"
    );
    let order_exports = operations[4..]
        .iter()
        .filter(|op| op["query"].as_str().is_some_and(|q| q.contains("orders(")))
        .count();
    assert!(
        order_exports <= 2,
        "killed runs adopt the export instead of starting their own: {operations:#?}"
    );
    let table =
        mailroom::warehouse::local::LocalWarehouse::reader(&dir.path().join("data/warehouse"));
    let orders = table
        .read("shopify_orders")
        .await
        .expect("read")
        .expect("the table");
    assert_eq!(orders.num_rows(), world_orders().len());
}

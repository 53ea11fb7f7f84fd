//! The local Delta warehouse behind the extract loop: merge keeps one row per key over any
//! number of runs, replace replaces, the cursor lives in the table's log (it survives a
//! reopen), and a replayed run changes nothing.

use std::collections::HashSet;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use mailroom::config::SourceKind;
use mailroom::extract::{Mode, extract_stream};
use mailroom::normalize::{SchemaPolicy, TableSchema};
use mailroom::warehouse::local::LocalWarehouse;
use mailroom::warehouse::{Commit, LoadId, Warehouse};
use mailroom_sandbox::SandboxOptions;
use mailroom_sandbox::world::World;

use crate::support::{
    duplicate_keys, events_batch, events_table, incompressible_name, load_world_twice, sandbox,
    small_sandbox, small_world, source, stamp,
};

async fn load(
    source: &mailroom::sources::AnySource,
    stream: &str,
    warehouse: &mut LocalWarehouse,
    run_id: &str,
) -> mailroom::extract::StreamReport {
    extract_stream(
        source,
        stream,
        warehouse,
        stamp(run_id, "2026-11-22T10:00:00Z"),
        Mode::Incremental,
        SchemaPolicy::Fixed,
        &|_| {},
    )
    .await
    .unwrap_or_else(|err| panic!("{stream} as {run_id}: {err}"))
}

async fn ids(warehouse: &LocalWarehouse, table: &str) -> Vec<i64> {
    let batch = warehouse.read(table).await.unwrap().expect("table exists");
    let column = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    column.iter().flatten().collect()
}

#[tokio::test]
async fn smile_customers_merge_to_one_row_per_key_and_keep_their_cursor() {
    let options = SandboxOptions::new(42, 700);
    let world = World::new(options.world);
    let expected: HashSet<i64> = world
        .people()
        .flat_map(|p| world.smile_customers_of(&p))
        .map(|c| c.id as i64)
        .collect();
    let newest = world
        .people()
        .flat_map(|p| world.smile_customers_of(&p))
        .map(|c| c.updated_at)
        .max();
    let sandbox = sandbox(options).await;
    let smile = source(SourceKind::Smile, &sandbox.base_url);
    let dir = tempfile::tempdir().unwrap();

    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    let first = load(&smile, "customers", &mut warehouse, "run-1").await;
    assert_eq!(first.rows_in("smile_customers"), expected.len() as u64);
    let loaded = ids(&warehouse, "smile_customers").await;
    assert_eq!(loaded.len(), expected.len());
    assert_eq!(loaded.into_iter().collect::<HashSet<_>>(), expected);

    // The cursor is in the table's log: a new process sees it.
    drop(warehouse);
    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    let cursor = warehouse
        .cursor("smile_customers", "smile", "customers")
        .await
        .unwrap();
    assert_eq!(cursor, newest);

    // Later runs re-read the newest changes; merge keeps one row per id.
    for run in ["run-2", "run-3"] {
        load(&smile, "customers", &mut warehouse, run).await;
        assert_eq!(
            ids(&warehouse, "smile_customers").await.len(),
            expected.len(),
            "{run}"
        );
        // Merged files carry their counts in the log, as first loads' files do.
        assert_eq!(
            warehouse.row_count("smile_customers").await.unwrap(),
            Some(expected.len() as u64),
            "{run}"
        );
    }
}

/// Appends leave a file per load; compaction rewrites them as one and keeps every row.
#[tokio::test]
async fn compaction_rewrites_small_files_and_keeps_every_row() {
    use mailroom::normalize::{Column, ColumnType, Decoder, TableSchema};
    use mailroom::warehouse::Commit;
    let table = TableSchema::new(
        "events",
        vec![Column::named("id", ColumnType::Int64).required()],
    );
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    for run in 0..4 {
        let run_id = format!("run-{run}");
        let mut decoder = Decoder::new(
            &table,
            SchemaPolicy::Fixed,
            stamp(&run_id, "2026-11-22T10:00:00Z"),
        );
        for id in 0..10 {
            decoder.push_json(&format!(r#"{{"id": {}}}"#, run * 10 + id));
        }
        let load = events_load("events", &run_id);
        let batch = decoder.finish_batch().unwrap().unwrap();
        warehouse.write(&load, &table, batch).await.unwrap();
        let commit = Commit {
            load,
            tables: vec![table.clone()],
            cursor: None,
        };
        warehouse.commit(commit).await.unwrap();
    }
    // The log counts the rows of the four files without reading one.
    assert_eq!(warehouse.row_count("events").await.unwrap(), Some(40));
    let done = warehouse
        .compact("events", chrono::Duration::days(7))
        .await
        .unwrap()
        .expect("the table exists");
    assert_eq!((done.files_removed, done.files_added), (4, 1), "{done:?}");
    assert_eq!(ids(&warehouse, "events").await.len(), 40);
    assert_eq!(warehouse.row_count("events").await.unwrap(), Some(40));
    assert_eq!(warehouse.row_count("nothing").await.unwrap(), None);
    assert_eq!(warehouse.tables().unwrap(), ["events"]);
    assert!(
        warehouse
            .compact("nothing", chrono::Duration::days(7))
            .await
            .unwrap()
            .is_none()
    );

    // A load whose declared type of a column differs from the table's is refused, naming both.
    let changed = TableSchema::new(
        "events",
        vec![Column::named("id", ColumnType::Text).required()],
    );
    let mut decoder = Decoder::new(
        &changed,
        SchemaPolicy::Fixed,
        stamp("run-9", "2026-11-22T10:00:00Z"),
    );
    decoder.push_json(r#"{"id": "e-1"}"#);
    let load = events_load("events", "run-9");
    let batch = decoder.finish_batch().unwrap().unwrap();
    warehouse.write(&load, &changed, batch).await.unwrap();
    let commit = Commit {
        load,
        tables: vec![changed],
        cursor: None,
    };
    let err = warehouse.commit(commit).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "table events: column id changed type from long to string; a type is never changed under existing data (load into a new table, or migrate this one)"
    );
    assert_eq!(
        mailroom::error::Classify::kind(&err),
        mailroom::error::ErrorKind::Terminal
    );
    assert_eq!(ids(&warehouse, "events").await.len(), 40);
}

#[tokio::test]
async fn replace_tables_hold_only_the_last_load_and_replays_change_nothing() {
    let sandbox = small_sandbox().await;
    let smile = source(SourceKind::Smile, &sandbox.base_url);
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    for run in ["run-1", "run-2"] {
        let report = load(&smile, "vip_tiers", &mut warehouse, run).await;
        assert_eq!(report.rows_in("smile_vip_tiers"), 3);
    }
    assert_eq!(ids(&warehouse, "smile_vip_tiers").await.len(), 3);

    let shopify = source(SourceKind::Shopify, &sandbox.base_url);
    let world = small_world();
    let orders: usize = world.people().map(|p| world.orders_of(&p).len()).sum();
    load(&shopify, "orders", &mut warehouse, "run-1").await;
    // The same run again (a retry after a crash that happened after the commit).
    let replay = load(&shopify, "orders", &mut warehouse, "run-1").await;
    assert!(replay.rows.is_empty(), "{replay:?}");
    assert_eq!(ids(&warehouse, "shopify_orders").await.len(), orders);
    let lines = warehouse
        .read("shopify_order_lines")
        .await
        .unwrap()
        .unwrap();
    let expected_lines: usize = world
        .people()
        .flat_map(|p| world.orders_of(&p))
        .map(|o| o.lines.len())
        .sum();
    assert_eq!(lines.num_rows(), expected_lines);
}

#[tokio::test]
async fn a_run_with_nothing_new_still_moves_the_cursor() {
    let sandbox = small_sandbox().await;
    let dotdigital = source(SourceKind::Dotdigital, &sandbox.base_url);
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    let first = load(&dotdigital, "campaigns", &mut warehouse, "run-1").await;
    assert!(first.rows_in("email_campaign_metrics") > 0);
    let second = extract_stream(
        &dotdigital,
        "campaigns",
        &mut warehouse,
        stamp("run-2", "2026-11-22T11:00:00Z"),
        Mode::Incremental,
        SchemaPolicy::Fixed,
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(second.rows_in("email_campaign_metrics"), 0);
    let cursor = warehouse
        .cursor("email_campaign_metrics", "dotdigital", "campaigns")
        .await
        .unwrap();
    assert_eq!(cursor, Some(crate::support::utc("2026-11-22T11:00:00Z")));
    let rows = warehouse
        .read("email_campaign_metrics")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows.num_rows() as u64,
        first.rows_in("email_campaign_metrics")
    );
}

/// `mailroom run-job extract-orders` killed with SIGKILL at several points of its load:
/// afterwards each table holds all of a run or none of it, and a run to the end leaves
/// exactly one row per order and per line.
#[cfg(unix)]
#[test]
fn a_load_killed_at_any_point_is_all_or_nothing_and_the_next_run_completes_it() {
    use std::process::{Command, Stdio};
    use std::time::Duration;

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sandbox = runtime.block_on(small_sandbox());
    let world = small_world();
    let orders: HashSet<i64> = world
        .people()
        .flat_map(|p| world.orders_of(&p))
        .map(|o| o.id as i64)
        .collect();
    let lines: usize = world
        .people()
        .flat_map(|p| world.orders_of(&p))
        .map(|o| o.lines.len())
        .sum();
    let dir = tempfile::tempdir().unwrap();
    let run_job = || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
        command
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .args([
                "run-job",
                "extract-orders",
                "--sandbox-url",
                &sandbox.base_url,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    };
    let rows = |table: &str| -> usize {
        runtime.block_on(async {
            let warehouse = LocalWarehouse::open(&dir.path().join("data/warehouse")).unwrap();
            warehouse
                .read(table)
                .await
                .unwrap()
                .map_or(0, |b| b.num_rows())
        })
    };
    for millis in [300, 1_500, 2_500, 3_200, 4_000, 5_000] {
        let mut child = run_job().spawn().unwrap();
        std::thread::sleep(Duration::from_millis(millis));
        let _ = child.kill();
        let _ = child.wait();
        let (orders_now, lines_now) = (rows("shopify_orders"), rows("shopify_order_lines"));
        assert!(
            orders_now == 0 || orders_now == orders.len(),
            "after {millis} ms: {orders_now} orders"
        );
        assert!(
            lines_now == 0 || lines_now == lines,
            "after {millis} ms: {lines_now} lines"
        );
    }
    let status = run_job().status().unwrap();
    assert!(status.success());
    let ids: Vec<i64> = runtime.block_on(async {
        let warehouse = LocalWarehouse::open(&dir.path().join("data/warehouse")).unwrap();
        ids(&warehouse, "shopify_orders").await
    });
    assert_eq!(ids.len(), orders.len(), "one row per order");
    assert_eq!(ids.into_iter().collect::<HashSet<_>>(), orders);
    assert_eq!(rows("shopify_order_lines"), lines, "one row per line");
}

#[tokio::test]
async fn loading_the_whole_world_twice_leaves_one_row_per_key_in_every_merge_table() {
    let sandbox = small_sandbox().await;
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    let merged = load_world_twice(&mut warehouse, &sandbox.base_url).await;
    let names: Vec<&str> = merged.iter().map(|t| t.name).collect();
    assert_eq!(names.len(), 9, "{names:?}");
    let engine = mailroom::warehouse::QueryEngine::Local(LocalWarehouse::reader(warehouse.root()));
    for table in &merged {
        let (rows, duplicated) = duplicate_keys(&engine, table).await;
        assert!(rows > 0, "{} was loaded", table.name);
        assert_eq!(duplicated, 0, "{}: keys with more than one row", table.name);
    }
}

/// Rows of `events`: id, name, score.
type Events<'a> = &'a [(i64, &'a str, Option<f64>)];

/// The load of `stream` by `run` from the test source.
fn events_load(stream: &str, run: &str) -> LoadId {
    LoadId {
        source: "test".into(),
        stream: stream.into(),
        run_id: run.into(),
    }
}

/// Asserts that no staged file is left under the warehouse at `root`.
fn assert_nothing_staged(root: &std::path::Path) {
    let staging = root.join("_staging");
    assert!(
        !staging.exists() || std::fs::read_dir(&staging).unwrap().next().is_none(),
        "nothing is left staged"
    );
}

/// Stages each batch (as the table was declared when it was read) as one load of `run` and
/// commits it with `table`.
async fn load_events(
    warehouse: &mut LocalWarehouse,
    run: &str,
    batches: &[(&TableSchema, Events<'_>)],
    table: &TableSchema,
) {
    let load = events_load("events", run);
    for (staged_as, rows) in batches {
        warehouse
            .write(&load, staged_as, events_batch(staged_as, rows))
            .await
            .unwrap();
    }
    warehouse
        .commit(Commit {
            load,
            tables: vec![table.clone()],
            cursor: None,
        })
        .await
        .unwrap();
}

/// The `events` table's `column` by id, as text (null as `None`), sorted by id.
async fn events_column(warehouse: &LocalWarehouse, column: &str) -> Vec<(i64, Option<String>)> {
    let batch = warehouse
        .read("events")
        .await
        .unwrap()
        .expect("table exists");
    let ids = batch
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let values = arrow::compute::cast(
        batch.column_by_name(column).unwrap(),
        &arrow::datatypes::DataType::Utf8,
    )
    .unwrap();
    let values = values.as_string::<i32>();
    let mut rows: Vec<(i64, Option<String>)> = ids
        .iter()
        .zip(values.iter())
        .map(|(id, value)| (id.unwrap(), value.map(str::to_string)))
        .collect();
    rows.sort();
    rows
}

/// Keys repeated within one load (a page served twice, a record changed mid-extract) keep
/// the row staged last, whether the table is new or merged into; keys seen once are loaded
/// without the sort.
#[tokio::test]
async fn a_key_staged_twice_in_one_load_keeps_the_row_staged_last() {
    let table = events_table(false, false);
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    type Names<'a> = &'a [(i64, &'a str)];
    let loads: [(&str, &[Names], Names); 3] = [
        // A new table: id 2 staged twice, in two batches.
        (
            "run-1",
            &[&[(1, "ann"), (2, "bob")], &[(2, "bobby"), (3, "cy")]],
            &[(1, "ann"), (2, "bobby"), (3, "cy")],
        ),
        // Merged into: id 3 twice in one batch, the later row wins over the table's.
        (
            "run-2",
            &[&[(3, "cyrus"), (4, "di"), (3, "cyril")]],
            &[(1, "ann"), (2, "bobby"), (3, "cyril"), (4, "di")],
        ),
        // Every key once: nothing to sort, the table's rows updated.
        (
            "run-3",
            &[&[(1, "anna")], &[(5, "ed")]],
            &[
                (1, "anna"),
                (2, "bobby"),
                (3, "cyril"),
                (4, "di"),
                (5, "ed"),
            ],
        ),
    ];
    for (run, batches, expected) in loads {
        let rows: Vec<Vec<(i64, &str, Option<f64>)>> = batches
            .iter()
            .map(|batch| batch.iter().map(|(id, name)| (*id, *name, None)).collect())
            .collect();
        let batches: Vec<(&TableSchema, Events)> =
            rows.iter().map(|rows| (&table, rows.as_slice())).collect();
        load_events(&mut warehouse, run, &batches, &table).await;
        let expected: Vec<(i64, Option<String>)> = expected
            .iter()
            .map(|(id, name)| (*id, Some(name.to_string())))
            .collect();
        assert_eq!(events_column(&warehouse, "name").await, expected, "{run}");
    }
}

/// A column a source starts sending mid-load (schema evolution) is in the new table, null
/// in the rows staged before it.
#[tokio::test]
async fn a_column_added_mid_load_is_null_in_the_rows_staged_before_it() {
    let (before, after) = (events_table(false, false), events_table(true, false));
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    load_events(
        &mut warehouse,
        "run-1",
        &[
            (&before, &[(1, "ann", None), (2, "bob", None)]),
            (&after, &[(3, "cy", Some(1.5))]),
        ],
        &after,
    )
    .await;
    assert_eq!(
        events_column(&warehouse, "score").await,
        [(1, None), (2, None), (3, Some("1.5".to_string()))]
    );
    assert_eq!(
        events_column(&warehouse, "name").await,
        [
            (1, Some("ann".to_string())),
            (2, Some("bob".to_string())),
            (3, Some("cy".to_string()))
        ]
    );
}

/// A table's first commit: the operation its commit info names, and each `add` action's
/// file path and statistics.
fn first_commit(table_dir: &std::path::Path) -> (String, Vec<(String, serde_json::Value)>) {
    let log = std::fs::read_to_string(table_dir.join("_delta_log/00000000000000000000.json"))
        .expect("the table's first commit");
    let actions: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let operation = actions
        .iter()
        .find_map(|action| action.get("commitInfo")?.get("operation")?.as_str())
        .expect("the commit names its operation")
        .to_string();
    let files = actions
        .iter()
        .filter_map(|action| {
            let add = action.get("add")?;
            let stats = serde_json::from_str(add["stats"].as_str().expect("statistics")).unwrap();
            Some((add["path"].as_str().unwrap().to_string(), stats))
        })
        .collect();
    (operation, files)
}

/// A new table is created from the files its load staged, encoded once: several files of
/// the table's size, each with its row count and bounds in the log, nothing left staged;
/// and when a key repeats across those files, the row staged last (in the last file) wins.
#[tokio::test]
async fn a_new_table_is_made_of_its_staged_files_and_the_last_row_per_key_wins_across_them() {
    let table = events_table(false, false);
    let rows = 400_000_i64;
    let names: Vec<String> = (0..rows as u64).map(incompressible_name).collect();
    let batch_of = |ids: std::ops::Range<i64>| {
        let rows: Vec<(i64, &str, Option<f64>)> = ids
            .map(|id| (id, names[id as usize].as_str(), None))
            .collect();
        events_batch(&table, &rows)
    };
    for repeated in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
        let load = events_load("events", "run-1");
        for start in (0..rows).step_by(8192) {
            let batch = batch_of(start..(start + 8192).min(rows));
            warehouse.write(&load, &table, batch).await.unwrap();
        }
        if repeated {
            // Row 0 again, renamed, after every other row.
            let again = events_batch(&table, &[(0, "staged last", None)]);
            warehouse.write(&load, &table, again).await.unwrap();
        }
        let commit = Commit {
            load,
            tables: vec![table.clone()],
            cursor: None,
        };
        warehouse.commit(commit).await.unwrap();

        assert_eq!(
            warehouse.row_count("events").await.unwrap(),
            Some(rows as u64),
            "repeated: {repeated}"
        );
        assert_nothing_staged(dir.path());
        let names_loaded = events_column(&warehouse, "name").await;
        let first = if repeated { "staged last" } else { &names[0] };
        assert_eq!(names_loaded[0], (0, Some(first.to_string())));
        assert_eq!(
            names_loaded[rows as usize - 1],
            (rows - 1, Some(names[rows as usize - 1].clone()))
        );
        // Distinct keys: the staged files become the table as they are (its log creates it
        // with them); a repeated key: the rows are written again, the last per key kept.
        let (operation, files) = first_commit(&dir.path().join("events"));
        if repeated {
            assert_eq!(operation, "WRITE");
            continue;
        }
        assert_eq!(operation, "CREATE TABLE");
        // Encoded once, as the table's own files: their counts and bounds in the log.
        assert!(files.len() > 1, "{} files", files.len());
        let mut counted = 0;
        let mut bounds = Vec::new();
        for (path, stats) in &files {
            assert!(path.ends_with(".snappy.parquet"), "{path}");
            assert!(dir.path().join("events").join(path).is_file(), "{path}");
            counted += stats["numRecords"].as_i64().unwrap();
            assert_eq!(stats["nullCount"]["id"], 0, "{path}: {stats}");
            bounds.push((
                stats["minValues"]["id"].as_i64().unwrap(),
                stats["maxValues"]["id"].as_i64().unwrap(),
            ));
        }
        assert_eq!(counted, rows);
        bounds.sort();
        assert_eq!(bounds.first().unwrap().0, 0);
        assert_eq!(bounds.last().unwrap().1, rows - 1);
        assert!(
            bounds.windows(2).all(|pair| pair[0].1 + 1 == pair[1].0),
            "files hold consecutive ids: {bounds:?}"
        );
    }
}

/// Two loads staged into a table that does not exist yet (two streams feeding one table):
/// the first commit creates it from its staged files, the second, finding it there, merges
/// into it instead, and a key both loaded keeps the second load's row.
#[tokio::test]
async fn two_loads_staged_before_a_table_exists_both_land_the_second_merged() {
    let table = events_table(false, false);
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    let load = |stream: &str| events_load(stream, "run-1");
    let first = [(1, "ann", None), (2, "bob", None)];
    let second = [(2, "bobby", None), (3, "cy", None)];
    warehouse
        .write(&load("a"), &table, events_batch(&table, &first))
        .await
        .unwrap();
    warehouse
        .write(&load("b"), &table, events_batch(&table, &second))
        .await
        .unwrap();
    for stream in ["a", "b"] {
        let commit = Commit {
            load: load(stream),
            tables: vec![table.clone()],
            cursor: None,
        };
        warehouse.commit(commit).await.unwrap();
    }
    assert_eq!(
        events_column(&warehouse, "name").await,
        [
            (1, Some("ann".to_string())),
            (2, Some("bobby".to_string())),
            (3, Some("cy".to_string()))
        ]
    );
}

/// A load abandoned before its commit leaves no table and nothing staged, and the next
/// load of the same table starts clean.
#[tokio::test]
async fn an_abandoned_first_load_leaves_no_table_and_nothing_staged() {
    let table = events_table(false, false);
    let dir = tempfile::tempdir().unwrap();
    let mut warehouse = LocalWarehouse::open(dir.path()).unwrap();
    let load = |run: &str| events_load("events", run);
    warehouse
        .write(
            &load("run-1"),
            &table,
            events_batch(&table, &[(1, "ann", None)]),
        )
        .await
        .unwrap();
    warehouse.abort(&load("run-1")).await;
    assert_eq!(warehouse.tables().unwrap(), Vec::<String>::new());
    assert_nothing_staged(dir.path());
    load_events(
        &mut warehouse,
        "run-2",
        &[(&table, &[(2, "bob", None)])],
        &table,
    )
    .await;
    assert_eq!(
        events_column(&warehouse, "name").await,
        [(2, Some("bob".to_string()))]
    );
}

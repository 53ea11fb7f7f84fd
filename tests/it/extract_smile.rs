//! Smile.io streams extracted from the sandbox: counts and values against the world, the
//! cursor's last page, incremental re-runs and VIP tiers replaced.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Int64Type};
use mailroom::config::SourceKind;
use mailroom::warehouse::memory::MemoryWarehouse;

use mailroom_sandbox::SandboxOptions;
use mailroom_sandbox::world::World;

use crate::support::{extract, sandbox, small_sandbox, small_world, source};

#[tokio::test]
async fn customers_land_with_tier_names_birthdays_and_a_cursor() {
    let options = SandboxOptions::new(42, 700);
    let world = World::new(options.world);
    let sandbox = sandbox(options).await;
    let smile = source(SourceKind::Smile, &sandbox.base_url);
    let expected: Vec<_> = world
        .people()
        .flat_map(|p| world.smile_customers_of(&p))
        .collect();
    assert!(expected.len() > 250, "the world spans two pages of 250");

    let mut warehouse = MemoryWarehouse::new();
    let report = extract(&smile, "customers", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert_eq!(report.rows_in("smile_customers"), expected.len() as u64);
    assert_eq!(report.quarantined, 0);
    assert!(report.new_fields.is_empty(), "{:?}", report.new_fields);

    let table = warehouse.table("smile_customers").unwrap();
    assert_eq!(table.num_rows(), expected.len());
    let ids = table
        .column_by_name("id")
        .unwrap()
        .as_primitive::<Int64Type>();
    let row_of = |id: u64| (0..ids.len()).find(|&i| ids.value(i) == id as i64).unwrap();
    let text = |column: &str, row: usize| {
        let array = table.column_by_name(column).unwrap().as_string::<i32>();
        array.is_valid(row).then(|| array.value(row).to_string())
    };
    let int = |column: &str, row: usize| {
        let array = table
            .column_by_name(column)
            .unwrap()
            .as_primitive::<Int64Type>();
        array.is_valid(row).then(|| array.value(row))
    };
    for customer in expected.iter().step_by(37) {
        let row = row_of(customer.id);
        assert_eq!(int("points_balance", row), Some(customer.points_balance));
        assert_eq!(
            text("referral_url", row).as_deref(),
            Some(customer.referral_url.as_str())
        );
        assert_eq!(text("state", row).as_deref(), Some(customer.state));
        assert_eq!(
            text("email_normalized", row),
            Some(customer.email.to_lowercase())
        );
        assert_eq!(
            text("vip_tier_name", row).as_deref(),
            customer.vip_tier.map(|t| t.name)
        );
        assert_eq!(
            int("vip_tier_id", row),
            customer.vip_tier.map(|t| t.id as i64)
        );
    }
    let born = |year_1004: bool| {
        expected.iter().find(|c| {
            c.date_of_birth
                .is_some_and(|d| (chrono::Datelike::year(&d) == 1004) == year_1004)
        })
    };
    let dob = table
        .column_by_name("date_of_birth")
        .unwrap()
        .as_primitive::<Date32Type>();
    if let Some(partial) = born(true) {
        let row = row_of(partial.id);
        assert!(dob.is_null(row), "year 1004 stores no date");
        let date = partial.date_of_birth.unwrap();
        assert_eq!(
            int("birth_month", row),
            Some(chrono::Datelike::month(&date) as i64)
        );
        assert_eq!(
            int("birth_day", row),
            Some(chrono::Datelike::day(&date) as i64)
        );
    }
    if let Some(full) = born(false) {
        assert!(dob.is_valid(row_of(full.id)));
    }
    let newest = expected.iter().map(|c| c.updated_at).max().unwrap();
    assert_eq!(report.cursor, Some(newest), "the newest updated_at");

    // The next run reads only what changed since the cursor: nothing new, no duplicates.
    let again = extract(&smile, "customers", &mut warehouse, "run-2")
        .await
        .unwrap();
    assert!(again.rows_in("smile_customers") < 10, "{again:?}");
    assert_eq!(warehouse.rows("smile_customers"), expected.len() as u64);
    assert_eq!(again.cursor, report.cursor);
    // The client keeps to Smile's 10 requests/s, which the sandbox enforces.
    let (calls, rate_limited) =
        crate::support::requests(&sandbox.base_url, "/smile/v1/customers").await;
    assert_eq!(rate_limited, 0, "{calls} calls");
}

#[tokio::test]
async fn a_burst_of_streams_stays_inside_the_rate_limit() {
    let options = SandboxOptions::new(42, 2000);
    let sandbox = sandbox(options).await;
    let smile = source(SourceKind::Smile, &sandbox.base_url);
    let mut warehouse = MemoryWarehouse::counting();
    for stream in ["customers", "points_transactions", "vip_tiers"] {
        extract(&smile, stream, &mut warehouse, "run-1")
            .await
            .unwrap();
    }
    let (calls, rate_limited) = crate::support::requests(&sandbox.base_url, "/smile/v1/").await;
    assert!(calls > 20, "{calls}");
    assert!(
        rate_limited * 100 <= calls,
        "{rate_limited} of {calls} calls answered 429"
    );
}

#[tokio::test]
async fn points_transactions_and_vip_tiers_land() {
    let sandbox = small_sandbox().await;
    let smile = source(SourceKind::Smile, &sandbox.base_url);
    let world = small_world();
    let transactions: usize = world
        .people()
        .flat_map(|p| world.smile_customers_of(&p))
        .map(|c| world.points_transactions_of(&c).len())
        .sum();
    let mut warehouse = MemoryWarehouse::new();
    let report = extract(&smile, "points_transactions", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert_eq!(
        report.rows_in("smile_points_transactions"),
        transactions as u64
    );

    for run in ["run-1", "run-2"] {
        let tiers = extract(&smile, "vip_tiers", &mut warehouse, run)
            .await
            .unwrap();
        assert_eq!(tiers.rows_in("smile_vip_tiers"), 3);
    }
    assert_eq!(
        warehouse.rows("smile_vip_tiers"),
        3,
        "replaced, not appended"
    );
    let names = warehouse.table("smile_vip_tiers").unwrap();
    let names = names.column_by_name("name").unwrap().as_string::<i32>();
    let names: Vec<&str> = names.iter().flatten().collect();
    assert_eq!(
        names,
        mailroom_sandbox::world::VIP_TIERS.map(|t| t.name).to_vec()
    );
}

//! Email platforms extracted from the sandbox: SmartrMail lists, subscribers and daily
//! engagement snapshots, and every platform's campaigns in one `email_campaign_metrics`
//! schema, checked against the world.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Decimal128Type, Float64Type, Int64Type};
use mailroom::config::SourceKind;
use mailroom::warehouse::memory::MemoryWarehouse;
use mailroom_sandbox::world::{Campaign, Platform};

use crate::support::{extract, small_sandbox, small_world, source};

#[tokio::test]
async fn smartrmail_subscribers_land_once_with_status_and_counters() {
    let sandbox = small_sandbox().await;
    let smartrmail = source(SourceKind::SmartrMail, &sandbox.base_url);
    let world = small_world();
    let subscribers: Vec<_> = world
        .people()
        .filter_map(|p| world.subscriber_of(&p))
        .collect();
    let mut warehouse = MemoryWarehouse::new();

    let lists = extract(&smartrmail, "lists", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert_eq!(lists.rows_in("smartrmail_lists"), 3);

    let report = extract(&smartrmail, "subscribers", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert!(
        report.rows_in("smartrmail_subscribers") > subscribers.len() as u64,
        "VIPs are on two lists"
    );
    assert_eq!(
        warehouse.rows("smartrmail_subscribers"),
        subscribers.len() as u64,
        "one row each"
    );
    let table = warehouse.table("smartrmail_subscribers").unwrap();
    let ids = table.column_by_name("id").unwrap().as_string::<i32>();
    let subscribed = table.column_by_name("subscribed").unwrap().as_boolean();
    let complained = table.column_by_name("complained").unwrap().as_boolean();
    let opened = table
        .column_by_name("opened_count")
        .unwrap()
        .as_primitive::<Int64Type>();
    for subscriber in subscribers.iter().step_by(13) {
        let row = (0..ids.len())
            .find(|&i| ids.value(i) == subscriber.id)
            .unwrap();
        assert_eq!(subscribed.value(row), subscriber.subscribed);
        assert_eq!(complained.value(row), subscriber.complained);
        assert_eq!(opened.value(row), subscriber.opened_count as i64);
    }
    assert!(subscribers.iter().any(|s| !s.subscribed) && subscribers.iter().any(|s| s.complained));
}

#[tokio::test]
async fn smartrmail_engagement_is_snapshotted_once_a_day() {
    let sandbox = small_sandbox().await;
    let smartrmail = source(SourceKind::SmartrMail, &sandbox.base_url);
    let world = small_world();
    let subscribers = world
        .people()
        .filter(|p| world.subscriber_of(p).is_some())
        .count();
    let mut warehouse = MemoryWarehouse::new();
    let first = extract(&smartrmail, "engagement_daily", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert_eq!(
        first.cursor,
        Some(crate::support::utc("2026-11-22T00:00:00Z")),
        "the day's midnight"
    );
    assert_eq!(
        warehouse.rows("smartrmail_engagement_daily"),
        subscribers as u64
    );
    let later = extract(&smartrmail, "engagement_daily", &mut warehouse, "run-2")
        .await
        .unwrap();
    assert!(later.skipped.is_some(), "{later:?}");
    assert_eq!(
        warehouse.rows("smartrmail_engagement_daily"),
        subscribers as u64
    );
}

/// Checks `email_campaign_metrics` rows of `platform` against the world's campaigns.
fn assert_campaigns(
    warehouse: &MemoryWarehouse,
    platform: Platform,
    name: &str,
    id_of: fn(&Campaign) -> String,
) {
    let world = small_world();
    let campaigns = world.campaigns(platform);
    assert!(!campaigns.is_empty());
    let table = warehouse.table("email_campaign_metrics").unwrap();
    let platforms = table.column_by_name("platform").unwrap().as_string::<i32>();
    let ids = table
        .column_by_name("campaign_id")
        .unwrap()
        .as_string::<i32>();
    let rows: Vec<usize> = (0..table.num_rows())
        .filter(|&i| platforms.value(i) == name)
        .collect();
    assert_eq!(rows.len(), campaigns.len(), "{name}");
    let int = |column: &str, row: usize| {
        table
            .column_by_name(column)
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(row)
    };
    let rate = table
        .column_by_name("open_rate")
        .unwrap()
        .as_primitive::<Float64Type>();
    for campaign in &campaigns {
        let row = *rows
            .iter()
            .find(|&&i| ids.value(i) == id_of(campaign))
            .unwrap();
        assert_eq!(int("sent", row), campaign.sent as i64, "{name} sent");
        assert_eq!(
            int("delivered", row),
            campaign.delivered as i64,
            "{name} delivered"
        );
        assert_eq!(
            int("unique_opens", row),
            campaign.unique_opens as i64,
            "{name} unique opens"
        );
        assert_eq!(
            int("unique_clicks", row),
            campaign.unique_clicks as i64,
            "{name} unique clicks"
        );
        assert_eq!(
            int("unsubscribes", row),
            campaign.unsubscribes as i64,
            "{name} unsubscribes"
        );
        if campaign.delivered > 0 {
            let expected = campaign.unique_opens as f64 / campaign.delivered as f64;
            assert!((rate.value(row) - expected).abs() < 1e-12);
        } else {
            assert!(rate.is_null(row), "no division by zero");
        }
        let revenue = table
            .column_by_name("revenue")
            .unwrap()
            .as_primitive::<Decimal128Type>();
        if revenue.is_valid(row) {
            assert_eq!(
                revenue.value(row),
                i128::from(campaign.revenue_cents) * 10_000_000
            );
        }
    }
}

#[tokio::test]
async fn smartrmail_campaigns_follow_the_experimental_contract() {
    let sandbox = small_sandbox().await;
    let smartrmail = source(SourceKind::SmartrMail, &sandbox.base_url);
    let mut warehouse = MemoryWarehouse::new();
    let report = extract(&smartrmail, "campaigns", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert!(report.new_fields.is_empty(), "{:?}", report.new_fields);
    assert_campaigns(&warehouse, Platform::SmartrMail, "smartrmail", |c| {
        format!("c_{}", c.id)
    });
}

#[tokio::test]
async fn iterable_campaigns_join_their_metrics_csv() {
    let sandbox = small_sandbox().await;
    let iterable = source(SourceKind::Iterable, &sandbox.base_url);
    let mut warehouse = MemoryWarehouse::new();
    let report = extract(&iterable, "campaigns", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert!(report.new_fields.is_empty(), "{:?}", report.new_fields);
    assert_eq!(report.quarantined, 0);
    assert_campaigns(&warehouse, Platform::Iterable, "iterable", |c| {
        c.id.to_string()
    });
}

#[tokio::test]
async fn dotdigital_summaries_use_totals_and_later_runs_read_only_active_campaigns() {
    let sandbox = small_sandbox().await;
    let dotdigital = source(SourceKind::Dotdigital, &sandbox.base_url);
    let mut warehouse = MemoryWarehouse::new();
    let report = extract(&dotdigital, "campaigns", &mut warehouse, "run-1")
        .await
        .unwrap();
    assert!(report.new_fields.is_empty(), "{:?}", report.new_fields);
    assert_campaigns(&warehouse, Platform::Dotdigital, "dotdigital", |c| {
        c.id.to_string()
    });
    let campaigns = small_world().campaigns(Platform::Dotdigital).len() as u64;
    assert_eq!(
        report.cursor,
        Some(crate::support::utc("2026-11-22T10:00:00Z")),
        "the run's time"
    );

    let (summaries_before, _) = crate::support::requests(&sandbox.base_url, "summary").await;
    let again = extract(&dotdigital, "campaigns", &mut warehouse, "run-2")
        .await
        .unwrap();
    let (summaries_after, _) = crate::support::requests(&sandbox.base_url, "summary").await;
    assert_eq!(summaries_before, campaigns, "one summary per campaign");
    assert_eq!(
        summaries_after, summaries_before,
        "no activity since the last run, no summaries"
    );
    assert_eq!(again.rows_in("email_campaign_metrics"), 0);
    assert_eq!(warehouse.rows("email_campaign_metrics"), campaigns);
}

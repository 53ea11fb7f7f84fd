//! Decoder tests: nested fields, derivations, quarantine, new fields, child tables.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use chrono::TimeZone;

use super::*;

fn stamp() -> Arc<RunStamp> {
    Arc::new(RunStamp {
        run_id: "run-1".into(),
        extracted_at: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
        scheduled_for: Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap(),
    })
}

fn customers() -> TableSchema {
    TableSchema::new(
        "customers",
        vec![
            Column::named("id", ColumnType::Int64).required(),
            Column::named("email", ColumnType::Text),
            Column::derived(
                "email_normalized",
                ColumnType::Text,
                ValueFrom::Lowercase("email"),
            ),
            Column::named("points_balance", ColumnType::Int64),
            Column::named("date_of_birth", ColumnType::Date).convert(Convert::DateYear1004),
            Column::derived(
                "birth_month",
                ColumnType::Int64,
                ValueFrom::MonthOf("date_of_birth"),
            ),
            Column::field(
                "vip_tier_name",
                ColumnType::Text,
                "vip_status.vip_tier.name",
            ),
            Column::named("updated_at", ColumnType::Timestamp),
        ],
    )
    .merge_on(&["id"])
    .cursor("updated_at")
    .ignoring(&["vip_status.vip_tier.image_url"])
}

fn one_batch(decoder: &mut Decoder) -> RecordBatch {
    decoder.finish_batch().unwrap().expect("a batch")
}

#[test]
fn nested_fields_and_derivations_land_in_their_columns() {
    let mut decoder = Decoder::new(&customers(), SchemaPolicy::Fixed, stamp());
    decoder.push_json(
        r#"{"id": 7, "email": " Ana.Silva@Example.COM", "points_balance": 1250,
            "date_of_birth": "1004-11-02", "updated_at": "2025-02-14T08:31:12.412Z",
            "vip_status": {"vip_tier_id": 3, "vip_tier": {"id": 3, "name": "Gold", "image_url": "x"}}}"#,
    );
    decoder.push_json(
        r#"{"id": 8, "email": null, "date_of_birth": "1990-05-27", "vip_status": null}"#,
    );
    let batch = one_batch(&mut decoder);
    assert_eq!(batch.num_rows(), 2);
    let text = |name: &str, row: usize| {
        let column = batch.column_by_name(name).unwrap().as_string::<i32>();
        column.is_valid(row).then(|| column.value(row).to_string())
    };
    assert_eq!(text("email", 0).as_deref(), Some(" Ana.Silva@Example.COM"));
    assert_eq!(
        text("email_normalized", 0).as_deref(),
        Some("ana.silva@example.com")
    );
    assert_eq!(text("vip_tier_name", 0).as_deref(), Some("Gold"));
    assert_eq!(text("vip_tier_name", 1), None);
    let dob = batch
        .column_by_name("date_of_birth")
        .unwrap()
        .as_primitive::<Date32Type>();
    assert!(dob.is_null(0), "year 1004 means no year");
    assert!(dob.is_valid(1));
    let month = batch
        .column_by_name("birth_month")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!((month.value(0), month.value(1)), (11, 5));
    let updated = batch.column_by_name("updated_at").unwrap();
    assert_eq!(
        updated.as_primitive::<TimestampMicrosecondType>().value(0),
        1_739_521_872_412_000
    );
    assert_eq!(decoder.cursor_max(), Some(1_739_521_872_412_000));
    let run = batch
        .column_by_name("_mailroom_run_id")
        .unwrap()
        .as_string::<i32>();
    assert_eq!(run.value(1), "run-1");
    assert!(
        decoder
            .new_fields()
            .iter()
            .any(|(_, f)| f == "vip_status.vip_tier_id")
    );
}

#[test]
fn a_record_that_does_not_fit_goes_to_quarantine_and_the_rest_load() {
    let mut decoder = Decoder::new(&customers(), SchemaPolicy::Fixed, stamp());
    decoder.push_json(r#"{"id": 1, "points_balance": 10}"#);
    decoder.push_json(r#"{"id": 2, "points_balance": "12x"}"#);
    decoder.push_json(r#"{"points_balance": 3}"#);
    decoder.push_json(r#"{"id": 4, "vip_status": "gold"}"#);
    decoder.push_json(r#"{"id": 5, "points_balance": 10"#);
    decoder.push_json(r#"{"id": 6}"#);
    assert_eq!(one_batch(&mut decoder).num_rows(), 2);
    let quarantined = decoder.take_quarantined();
    let reasons: Vec<&str> = quarantined.iter().map(|q| q.reason.as_str()).collect();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert_eq!(
        reasons[0],
        "field `points_balance`: expected an integer, got the string \"12x\""
    );
    assert_eq!(reasons[1], "field `id`: required, but missing or null");
    assert!(
        reasons[2].starts_with("field `vip_status`: expected an object"),
        "{}",
        reasons[2]
    );
    assert!(reasons[3].starts_with("not valid JSON"), "{}", reasons[3]);
    assert_eq!(
        quarantined[0].record,
        r#"{"id": 2, "points_balance": "12x"}"#
    );
    assert_eq!(quarantined[0].table, "customers");
}

/// Nested fields are named by their whole path however deep they are: a field the table
/// does not know two objects down, and a value that should be an object and is not.
#[test]
fn nested_fields_are_named_by_their_whole_path() {
    let mut decoder = Decoder::new(&customers(), SchemaPolicy::Fixed, stamp());
    decoder.push_json(r#"{"id": 1, "vip_status": {"vip_tier": {"name": "Gold", "rank": 2}}}"#);
    decoder.push_json(r#"{"id": 2, "vip_status": {"vip_tier": 3}}"#);
    assert_eq!(one_batch(&mut decoder).num_rows(), 1);
    assert_eq!(
        decoder.new_fields(),
        [(
            "customers".to_string(),
            "vip_status.vip_tier.rank".to_string()
        )]
    );
    let quarantined = decoder.take_quarantined();
    assert_eq!(quarantined.len(), 1);
    assert!(
        quarantined[0]
            .reason
            .starts_with("field `vip_status.vip_tier`: expected an object"),
        "{}",
        quarantined[0].reason
    );
}

#[test]
fn a_new_field_is_reported_once_and_stored_only_under_evolve() {
    let mut fixed = Decoder::new(&customers(), SchemaPolicy::Fixed, stamp());
    let mut evolve = Decoder::new(&customers(), SchemaPolicy::Evolve, stamp());
    for decoder in [&mut fixed, &mut evolve] {
        decoder.push_json(r#"{"id": 1}"#);
        decoder.push_json(r#"{"id": 2, "loyalty_score": 0.5}"#);
        decoder.push_json(r#"{"id": 3, "loyalty_score": 0.75, "tier-name": "x"}"#);
    }
    assert_eq!(
        fixed.new_fields(),
        [
            ("customers".to_string(), "loyalty_score".to_string()),
            ("customers".to_string(), "tier-name".to_string())
        ]
    );
    assert_eq!(evolve.new_fields(), fixed.new_fields());
    assert!(
        one_batch(&mut fixed)
            .column_by_name("loyalty_score")
            .is_none()
    );
    let batch = one_batch(&mut evolve);
    let score = batch
        .column_by_name("loyalty_score")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert!(score.is_null(0));
    assert_eq!((score.value(1), score.value(2)), (0.5, 0.75));
    assert!(
        batch
            .schema()
            .field_with_name("loyalty_score")
            .unwrap()
            .is_nullable()
    );
    assert!(
        batch.column_by_name("tier-name").is_none(),
        "a name not every warehouse accepts is reported, not stored"
    );
}

#[test]
fn nested_arrays_become_child_rows_keyed_by_their_parent() {
    let lines = TableSchema::new(
        "order_lines",
        vec![
            Column::derived("order_id", ColumnType::Int64, ValueFrom::Parent("id")).required(),
            Column::named("sku", ColumnType::Text),
            Column::named("quantity", ColumnType::Int64).required(),
            Column::field("unit_price", ColumnType::Money, "price.amount"),
        ],
    );
    let orders = TableSchema::new(
        "orders",
        vec![
            Column::named("id", ColumnType::Int64)
                .convert(Convert::GidNumber)
                .required(),
        ],
    )
    .ignoring(&["lineItems.pageInfo"])
    .child("lineItems.nodes", lines);
    let mut decoder = Decoder::new(&orders, SchemaPolicy::Fixed, stamp());
    decoder.push_json(
        r#"{"lineItems": {"pageInfo": {"hasNextPage": false},
            "nodes": [{"sku": "A", "quantity": 2, "price": {"amount": "12.5"}},
                      {"sku": "B", "quantity": "x"}]},
            "id": "gid://shopify/Order/42"}"#,
    );
    assert_eq!(one_batch(&mut decoder).num_rows(), 1);
    let child = decoder.children_mut().next().unwrap();
    let batch = one_batch(child);
    assert_eq!(batch.num_rows(), 1);
    let order_id = batch
        .column_by_name("order_id")
        .unwrap()
        .as_primitive::<Int64Type>();
    assert_eq!(order_id.value(0), 42);
    let quarantined = decoder.take_quarantined();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].table, "order_lines");
}

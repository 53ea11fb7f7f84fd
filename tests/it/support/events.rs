//! The `events` table the warehouse tests and the BigQuery load bench share: its schema
//! (merged on `id`), batches of given rows, and names that do not compress.
//!
//! Included by `benches/load_bigquery.rs` by path, so it names only the mailroom library.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::record_batch::RecordBatch;
use mailroom::normalize::TableSchema;
use mailroom::normalize::schema::{Column, ColumnType};

/// `events` merged on `id`; `evolved` adds a nullable `score`, `retyped` makes `name` an
/// integer.
pub fn events_table(evolved: bool, retyped: bool) -> TableSchema {
    let mut columns = vec![
        Column::named("id", ColumnType::Int64).required(),
        Column::named(
            "name",
            if retyped {
                ColumnType::Int64
            } else {
                ColumnType::Text
            },
        ),
    ];
    if evolved {
        columns.push(Column::named("score", ColumnType::Float64));
    }
    TableSchema::new("events", columns).merge_on(&["id"])
}

/// A batch of `events` (as `table` declares it) holding these rows.
pub fn events_batch(table: &TableSchema, rows: &[(i64, &str, Option<f64>)]) -> RecordBatch {
    let schema = table.arrow_schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|f| -> ArrayRef {
            match f.name().as_str() {
                "id" => Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                "name" if f.data_type() == &arrow::datatypes::DataType::Int64 => {
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0)))
                }
                "name" => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                "score" => Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.2))),
                "_mailroom_run_id" => Arc::new(StringArray::from(vec!["events"; rows.len()])),
                _ => Arc::new(
                    TimestampMicrosecondArray::from(vec![0; rows.len()]).with_timezone("UTC"),
                ),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).expect("batch")
}

/// Row `i`'s name: 16 hex digits of a multiplicative hash, so a file of many does not
/// compress.
pub fn incompressible_name(i: u64) -> String {
    format!("{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

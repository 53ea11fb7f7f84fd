//! The `_quarantine` table: records that did not fit their table, kept whole with the
//! reason, so a bad record never stops a load and is never silently dropped.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringBuilder};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use super::RunStamp;
use super::schema::{Column, ColumnType, TableSchema};

/// The quarantine table's name.
pub const QUARANTINE_TABLE: &str = "_quarantine";

/// One record that did not fit its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// The table it was meant for.
    pub table: &'static str,
    /// The record as the source sent it (JSON, or a CSV line).
    pub record: String,
    /// Why it did not fit, naming the field.
    pub reason: String,
}

/// The quarantine table's declaration (appended to, never merged).
pub fn quarantine_table() -> TableSchema {
    TableSchema::new(
        QUARANTINE_TABLE,
        vec![
            Column::named("source", ColumnType::Text).required(),
            Column::named("stream", ColumnType::Text).required(),
            Column::named("target_table", ColumnType::Text).required(),
            Column::named("record", ColumnType::Text).required(),
            Column::named("reason", ColumnType::Text).required(),
        ],
    )
}

/// The quarantined records of one stream as a batch of the quarantine table.
pub fn quarantine_batch(
    source: &str,
    stream: &str,
    records: &[Quarantined],
    stamp: &RunStamp,
) -> Result<RecordBatch, ArrowError> {
    let constant = |value: &str| {
        let mut builder = StringBuilder::new();
        for _ in records {
            builder.append_value(value);
        }
        Arc::new(builder.finish()) as ArrayRef
    };
    let column = |field: fn(&Quarantined) -> &str| {
        let mut builder = StringBuilder::new();
        for record in records {
            builder.append_value(field(record));
        }
        Arc::new(builder.finish()) as ArrayRef
    };
    let mut arrays = vec![
        constant(source),
        constant(stream),
        column(|r| r.table),
        column(|r| &r.record),
        column(|r| &r.reason),
    ];
    arrays.extend(stamp.columns(records.len()));
    RecordBatch::try_new(quarantine_table().arrow_schema(), arrays)
}

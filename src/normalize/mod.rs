//! Normalize: source records (JSON objects) → Arrow record batches of declared
//! tables, with bad records in quarantine.
//!
//! [`schema`] declares tables, [`value`] types single fields, [`decode`] turns records into
//! batches (reading them with a serde visitor, `visit.rs`, into Arrow builders,
//! `builder.rs`) and [`quarantine`] keeps what did not fit. Every row carries the run's id and
//! extraction time ([`RunStamp`]).

mod builder;
pub mod decode;
pub mod quarantine;
pub mod schema;
pub mod value;
mod visit;

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use chrono::{DateTime, Utc};

pub use decode::{BATCH_ROWS, Decoder};
pub use quarantine::{QUARANTINE_TABLE, Quarantined, quarantine_table};
pub use schema::{
    Column, ColumnType, Convert, SchemaPolicy, TableSchema, ValueFrom, WriteDisposition,
};

/// The run every extracted row belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStamp {
    /// The run's id (from the run ledger).
    pub run_id: String,
    /// When the run extracted the rows.
    pub extracted_at: DateTime<Utc>,
    /// The fire time the run stands for (daily snapshots are dated by it).
    pub scheduled_for: DateTime<Utc>,
}

impl RunStamp {
    /// The two run columns for a batch of `rows` rows.
    pub fn columns(&self, rows: usize) -> [ArrayRef; 2] {
        let run_id = StringArray::from_iter_values(std::iter::repeat_n(self.run_id.as_str(), rows));
        let at = TimestampMicrosecondArray::from_iter_values(std::iter::repeat_n(
            self.extracted_at.timestamp_micros(),
            rows,
        ))
        .with_timezone("UTC");
        [Arc::new(run_id), Arc::new(at)]
    }
}

#[cfg(test)]
mod tests;

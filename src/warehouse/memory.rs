//! A warehouse in memory, with the same load semantics as the real ones: staged writes,
//! atomic commits carrying the cursor, `append` / `replace` / `merge` (one row per key),
//! replayed loads ignored, and new nullable columns added by schema evolution.
//!
//! [`MemoryWarehouse::counting`] keeps only row counts, so dry runs and benchmarks hold no
//! rows however many they extract.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, UInt32Array, new_null_array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::Schema;
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, SortField};
use chrono::{DateTime, Utc};

use super::{Commit, CommitOutcome, LoadId, Warehouse, WarehouseError};
use crate::normalize::{TableSchema, WriteDisposition};

/// One table's part of a load, before commit.
#[derive(Debug, Default)]
struct Staged {
    batches: Vec<RecordBatch>,
    rows: u64,
}

/// Tables, cursors and committed loads, in memory.
#[derive(Debug, Default)]
pub struct MemoryWarehouse {
    keep_rows: bool,
    tables: BTreeMap<String, RecordBatch>,
    counts: BTreeMap<String, u64>,
    staged: HashMap<LoadId, BTreeMap<String, Staged>>,
    cursors: HashMap<(String, String), DateTime<Utc>>,
    committed: HashSet<LoadId>,
}

impl MemoryWarehouse {
    /// A warehouse that keeps every committed row.
    pub fn new() -> Self {
        MemoryWarehouse {
            keep_rows: true,
            ..Default::default()
        }
    }

    /// A warehouse that only counts rows (dry runs, benchmarks).
    pub fn counting() -> Self {
        MemoryWarehouse::default()
    }

    /// A committed table's rows as one batch.
    pub fn table(&self, name: &str) -> Option<&RecordBatch> {
        self.tables.get(name)
    }

    /// Rows committed to a table: its size, or for a counting warehouse all rows ever
    /// committed to it.
    pub fn rows(&self, name: &str) -> u64 {
        match self.tables.get(name) {
            Some(batch) => batch.num_rows() as u64,
            None => self.counts.get(name).copied().unwrap_or(0),
        }
    }

    fn apply(
        &mut self,
        table: &TableSchema,
        staged: Vec<RecordBatch>,
    ) -> Result<(), WarehouseError> {
        let schema = table.arrow_schema();
        let arrow_error = |source| WarehouseError::Arrow {
            table: table.name.to_string(),
            source,
        };
        let mut batches = Vec::new();
        if table.disposition != WriteDisposition::Replace
            && let Some(existing) = self.tables.get(table.name)
        {
            batches.push(align(existing, &schema, table.name)?);
        }
        for batch in &staged {
            batches.push(align(batch, &schema, table.name)?);
        }
        let mut all = concat_batches(&schema, &batches).map_err(arrow_error)?;
        if table.disposition == WriteDisposition::Merge {
            all = keep_last_per_key(&all, &table.key).map_err(arrow_error)?;
        }
        self.tables.insert(table.name.to_string(), all);
        Ok(())
    }
}

/// `batch` with the columns of `schema`: columns it lacks (added later by evolution) are
/// null; a column whose type changed is an error naming both types.
fn align(
    batch: &RecordBatch,
    schema: &Arc<Schema>,
    table: &str,
) -> Result<RecordBatch, WarehouseError> {
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) if column.data_type() == field.data_type() => Ok(column.clone()),
            Some(column) => Err(WarehouseError::Schema {
                table: table.to_string(),
                message: format!(
                    "column {} changed type from {} to {}",
                    field.name(),
                    field.data_type(),
                    column.data_type()
                ),
            }),
            None => Ok(new_null_array(field.data_type(), batch.num_rows())),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|source| WarehouseError::Arrow {
        table: table.to_string(),
        source,
    })
}

/// The rows of `batch` with, for each key, only the last row carrying it.
fn keep_last_per_key(
    batch: &RecordBatch,
    key: &[&str],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let key_columns: Vec<ArrayRef> = key
        .iter()
        .filter_map(|name| batch.column_by_name(name).cloned())
        .collect();
    let converter = RowConverter::new(
        key_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let rows = converter.convert_columns(&key_columns)?;
    let mut seen = HashSet::new();
    let mut keep: Vec<u32> = (0..rows.num_rows())
        .rev()
        .filter(|&i| seen.insert(rows.row(i)))
        .map(|i| i as u32)
        .collect();
    keep.reverse();
    if keep.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    take_record_batch(batch, &UInt32Array::from(keep))
}

impl Warehouse for MemoryWarehouse {
    async fn cursor(
        &self,
        _table: &str,
        source: &str,
        stream: &str,
    ) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        Ok(self
            .cursors
            .get(&(source.to_string(), stream.to_string()))
            .cloned())
    }

    async fn write(
        &mut self,
        load: &LoadId,
        table: &TableSchema,
        batch: RecordBatch,
    ) -> Result<(), WarehouseError> {
        let staged = self
            .staged
            .entry(load.clone())
            .or_default()
            .entry(table.name.to_string())
            .or_default();
        staged.rows += batch.num_rows() as u64;
        if self.keep_rows {
            staged.batches.push(batch);
        }
        Ok(())
    }

    async fn commit(&mut self, commit: Commit) -> Result<CommitOutcome, WarehouseError> {
        let mut staged = self.staged.remove(&commit.load).unwrap_or_default();
        if self.committed.contains(&commit.load) {
            return Ok(CommitOutcome {
                rows: Vec::new(),
                already_committed: true,
            });
        }
        let mut outcome = CommitOutcome::default();
        for table in &commit.tables {
            let staged = staged.remove(table.name).unwrap_or_default();
            *self.counts.entry(table.name.to_string()).or_default() += staged.rows;
            if self.keep_rows {
                self.apply(table, staged.batches)?;
            }
            outcome.rows.push((table.name.to_string(), staged.rows));
        }
        if let Some(cursor) = commit.cursor {
            self.cursors.insert(
                (commit.load.source.clone(), commit.load.stream.clone()),
                cursor,
            );
        }
        self.committed.insert(commit.load);
        Ok(outcome)
    }

    async fn abort(&mut self, load: &LoadId) {
        self.staged.remove(load);
    }
}

//! Where extracted tables live: the [`Warehouse`] trait every store implements.
//!
//! A load of one stream is staged table by table ([`Warehouse::write`]) and becomes visible
//! only at [`Warehouse::commit`], together with the stream's new cursor and the run id, in
//! one step (DESIGN.md, Guarantees 1): a cursor never moves without its data, and replaying
//! a committed run's load changes nothing. [`memory::MemoryWarehouse`] keeps tables in
//! memory with exactly these semantics; it backs tests and dry runs.

pub mod bigquery;
pub mod damage;
pub mod local;
pub mod memory;
pub mod open;
pub mod query;

use std::future::Future;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};

use crate::error::{Classify, ErrorKind};
use crate::normalize::TableSchema;
pub use open::{OpenWarehouse, open, open_for_queries};
pub use query::{QueryEngine, QueryError, QueryResult, TableNames};

/// Identifies one stream's load in one run.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoadId {
    /// The source's config name (`smile`).
    pub source: String,
    /// The stream (`customers`).
    pub stream: String,
    /// The run loading it.
    pub run_id: String,
}

/// What a commit makes visible at once.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The load.
    pub load: LoadId,
    /// The tables written, as declared (with columns added by schema evolution).
    pub tables: Vec<TableSchema>,
    /// The stream's cursor after this load; `None` leaves it as it was. Every cursor is an
    /// instant (a change time, a run time, a snapshot day's midnight), which every store can
    /// keep exactly (Delta's application transactions hold one integer: its microseconds).
    pub cursor: Option<DateTime<Utc>>,
}

impl Commit {
    /// The tables in the order a store applies them: children and quarantine first, the
    /// stream's own table (first in `tables`) last, so the cursor goes with it.
    pub fn apply_order(&self) -> Vec<&TableSchema> {
        let mut order: Vec<&TableSchema> = self.tables.iter().skip(1).collect();
        order.extend(self.tables.first());
        order
    }
}

/// What a committed load changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    /// Rows written per table, in commit order.
    pub rows: Vec<(String, u64)>,
    /// The load had been committed before (a replayed run): nothing changed.
    pub already_committed: bool,
}

/// Why a warehouse operation failed.
#[derive(Debug, thiserror::Error)]
pub enum WarehouseError {
    /// A batch does not match its table (a column's type changed, ...).
    #[error("table {table}: {message}")]
    Schema {
        /// The table.
        table: String,
        /// What does not match.
        message: String,
    },
    /// Files could not be written or read (staging, a table folder).
    #[error("table {table}: {what}: {source}")]
    Storage {
        /// The table (`-` for the warehouse as a whole).
        table: String,
        /// What was being done.
        what: String,
        /// Why it failed.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Delta Lake failed to read or commit a table (its first line: Delta's kernel may
    /// append a backtrace).
    #[error("table {table}: {}", damage::first_line(&source.to_string()))]
    Delta {
        /// The table.
        table: String,
        /// What Delta said.
        source: deltalake::DeltaTableError,
    },
    /// A local table's log is damaged: terminal until it is restored or rebuilt.
    #[error("table {table} is damaged: {damage}; {}", damage::REMEDY)]
    Damaged {
        /// The table.
        table: String,
        /// The broken file and what is wrong with it.
        damage: damage::Damage,
    },
    /// The state database (BigQuery's load journal and cursors) failed.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// Arrow failed while combining batches.
    #[error("table {table}: {source}")]
    Arrow {
        /// The table.
        table: String,
        /// The Arrow error.
        source: arrow::error::ArrowError,
    },
    /// BigQuery refused or failed a call or a job; its kind is the cause's kind (an
    /// expired or wrong key is a config problem, a 5xx passes, a refused load is terminal).
    #[error("table {table}: {source}")]
    BigQuery {
        /// The table.
        table: String,
        /// What BigQuery said.
        source: Box<bigquery::client::BigQueryError>,
    },
    /// The warehouse's services could not be set up (its key file, its address).
    #[error(transparent)]
    Service(#[from] crate::services::ServiceError),
}

impl WarehouseError {
    /// Files of `table` could not be written or read while doing `what`.
    pub(crate) fn storage(
        table: &str,
        what: &str,
        err: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        WarehouseError::Storage {
            table: table.to_string(),
            what: what.to_string(),
            source: err.into(),
        }
    }
}

impl Classify for WarehouseError {
    fn kind(&self) -> ErrorKind {
        match self {
            WarehouseError::Schema { .. } => ErrorKind::Terminal,
            // A path that does not exist or may not be written stays so: only what waiting
            // can fix (a full disk, a commit conflict, a busy file) is transient.
            WarehouseError::Storage { source, .. } => match source
                .downcast_ref::<std::io::Error>()
                .map(std::io::Error::kind)
            {
                Some(
                    std::io::ErrorKind::NotFound
                    | std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::NotADirectory
                    | std::io::ErrorKind::IsADirectory
                    | std::io::ErrorKind::ReadOnlyFilesystem
                    | std::io::ErrorKind::InvalidInput
                    | std::io::ErrorKind::InvalidFilename,
                ) => ErrorKind::Terminal,
                _ => ErrorKind::Transient,
            },
            WarehouseError::Delta { source, .. } => delta_kind(source),
            WarehouseError::Damaged { .. } => ErrorKind::Terminal,
            WarehouseError::Arrow { .. } => ErrorKind::Bug,
            WarehouseError::BigQuery { source, .. } => source.kind(),
            WarehouseError::State(err) => err.kind(),
            WarehouseError::Service(err) => err.kind(),
        }
    }
}

/// Whether a Delta failure may pass: a commit conflict, a busy or full disk, a file store
/// hiccup may; a log or file that cannot be read as Delta will not (the table is damaged
/// or was written by something else).
fn delta_kind(error: &deltalake::DeltaTableError) -> ErrorKind {
    use deltalake::DeltaTableError as E;
    match error {
        E::KernelError(_)
        | E::Kernel { .. }
        | E::InvalidJsonLog { .. }
        | E::InvalidStatsJson { .. }
        | E::InvalidData { .. }
        | E::NotATable(_)
        | E::NoSchema
        | E::SerializeLogJson { .. }
        | E::MetadataError(_)
        | E::InvalidVersion(_)
        | E::MissingFeature { .. }
        | E::InvalidTableLocation(_) => ErrorKind::Terminal,
        _ => ErrorKind::Transient,
    }
}

/// A store of tables with atomic, cursor-carrying loads.
pub trait Warehouse: Send {
    /// The committed cursor of a source's stream, kept with the stream's own `table`.
    fn cursor(
        &self,
        table: &str,
        source: &str,
        stream: &str,
    ) -> impl Future<Output = Result<Option<DateTime<Utc>>, WarehouseError>> + Send;

    /// Stages `batch` for `table` in `load`; nothing is visible until [`Warehouse::commit`].
    fn write(
        &mut self,
        load: &LoadId,
        table: &TableSchema,
        batch: RecordBatch,
    ) -> impl Future<Output = Result<(), WarehouseError>> + Send;

    /// Applies everything staged for the load and moves the cursor, all at once.
    fn commit(
        &mut self,
        commit: Commit,
    ) -> impl Future<Output = Result<CommitOutcome, WarehouseError>> + Send;

    /// Drops what was staged for a load that will not be committed.
    fn abort(&mut self, load: &LoadId) -> impl Future<Output = ()> + Send;
}

/// Rows per Parquet row group a store writes: a writer holds one group's pages in memory,
/// so this bounds a load's memory whatever its rows.
pub(crate) const ROW_GROUP_ROWS: usize = 32_768;

/// The column numbering staged rows, so a merge keeps the last row staged for each key.
pub(crate) const SEQUENCE: &str = "_mailroom_staged_seq";

/// `batch` with the [`SEQUENCE`] column appended, numbered from `first`.
pub(crate) fn with_sequence(
    batch: &RecordBatch,
    first: u64,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new(SEQUENCE, DataType::Int64, false));
    let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
    let first = first as i64;
    columns.push(Arc::new(Int64Array::from_iter_values(
        first..first + batch.num_rows() as i64,
    )));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// `batch` as a batch of `schema`: its columns in `schema`'s order, any it lacks (a column a
/// later batch of the same load added) null, any `schema` does not name dropped.
pub(crate) fn conform(
    batch: &RecordBatch,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| match batch.column_by_name(field.name()) {
            Some(column) => column.clone(),
            None => arrow::array::new_null_array(field.data_type(), batch.num_rows()),
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns)
}

/// Writes `batch` of `table` as one staged Parquet file at `path` (its folder created).
pub(crate) fn stage_file(
    table: &str,
    path: &std::path::Path,
    batch: &RecordBatch,
) -> Result<(), WarehouseError> {
    let failed = |e: std::io::Error| WarehouseError::storage(table, "cannot stage", e);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let file = std::fs::File::create(path).map_err(failed)?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
        .map_err(|e| WarehouseError::storage(table, "cannot stage", e))?;
    writer
        .write(batch)
        .and_then(|()| writer.close().map(|_| ()))
        .map_err(|e| WarehouseError::storage(table, "cannot stage", e))
}

/// The batches of one staged Parquet file of `table`, [`BATCH_ROWS`](crate::normalize::BATCH_ROWS)
/// rows at a time.
pub(crate) fn read_staged(
    table: &str,
    path: &std::path::Path,
) -> Result<impl Iterator<Item = Result<RecordBatch, WarehouseError>> + use<>, WarehouseError> {
    let failed = |e: parquet::errors::ParquetError| {
        WarehouseError::storage(table, "cannot read staged rows", e)
    };
    let file = std::fs::File::open(path)
        .map_err(|e| WarehouseError::storage(table, "cannot read staged rows", e))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map(|builder| builder.with_batch_size(crate::normalize::BATCH_ROWS))
        .and_then(|builder| builder.build())
        .map_err(failed)?;
    let table = table.to_string();
    Ok(reader.map(move |batch| {
        batch.map_err(|e| WarehouseError::storage(&table, "cannot read staged rows", e))
    }))
}

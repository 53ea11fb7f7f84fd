//! The local warehouse: one Delta Lake table of Parquet files per table under
//! `<data dir>/warehouse/<table>`.
//!
//! A load's batches are staged as Parquet files under `_staging/` (never inside a table, so
//! readers and vacuum never see them; see [`staging`]), with a hash of each merge key. At
//! commit each table gets ONE Delta commit — a new table created from its staged data files,
//! moved in, when no key repeats; otherwise `append`, `replace` (overwrite) or `merge` on the
//! key, the staged rows first reduced to the last row per key when a key hash repeats —
//! carrying an application transaction that marks the run, so a replayed commit is skipped.
//! Child and quarantine tables are committed first and the stream's own table last, with a
//! second application transaction holding the cursor (its microseconds): the cursor moves
//! in the same atomic commit as the data it covers, and a crash between tables leaves the
//! cursor behind, so the next run reads those records again and merges them without
//! duplicates.

mod key_hashes;
mod staging;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::compute::concat_batches;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use deltalake::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::kernel::{Action, Add, StructType, Transaction};
use deltalake::operations::create::CreateBuilder;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use url::Url;

use self::staging::{Rows, Staged};
use super::{
    Commit, CommitOutcome, LoadId, ROW_GROUP_ROWS, SEQUENCE, Warehouse, WarehouseError, damage,
};
use crate::normalize::schema::{MONEY_PRECISION, MONEY_SCALE};
use crate::normalize::{ColumnType, QUARANTINE_TABLE, TableSchema, WriteDisposition};

/// How long a table remembers which runs committed to it (replays come within minutes; the
/// markers of months of runs would slow every snapshot).
const RUN_MARKER_RETENTION: &str = "interval 30 days";
/// Memory a load's sort may hold before it spills to disk.
const LOAD_MEMORY: usize = 64 << 20;
/// Bytes per data file written.
const TARGET_FILE_BYTES: u64 = 8 << 20;
/// Bytes of distinct values a column chunk's dictionary may hold; past them the rest of the
/// chunk is written plain. A column of nearly unique values (ids, e-mails, URLs, times) is
/// then not hashed into a dictionary only to be dropped, and each open column holds little.
const DICTIONARY_BYTES: usize = 64 << 10;

/// Delta tables under one folder.
#[derive(Debug)]
pub struct LocalWarehouse {
    root: PathBuf,
    staged: HashMap<LoadId, BTreeMap<String, Staged>>,
}

/// What compacting one table did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// Large files written.
    pub files_added: u64,
    /// Small files replaced by them (still on disk until vacuumed).
    pub files_removed: u64,
    /// Files no longer needed, deleted.
    pub files_deleted: u64,
}

fn delta_error(table: &str, err: deltalake::DeltaTableError) -> WarehouseError {
    WarehouseError::Delta {
        table: table.to_string(),
        source: err,
    }
}

impl LocalWarehouse {
    /// The warehouse at `root`; staging left by a process that died is removed (one
    /// process owns a data directory at a time).
    pub fn open(root: &Path) -> Result<Self, WarehouseError> {
        std::fs::create_dir_all(root).map_err(|e| {
            WarehouseError::storage("-", &format!("cannot create {}", root.display()), e)
        })?;
        let staging = root.join("_staging");
        if staging.exists() {
            std::fs::remove_dir_all(&staging)
                .map_err(|e| WarehouseError::storage("-", "cannot clear old staging", e))?;
        }
        Ok(LocalWarehouse {
            root: root.to_path_buf(),
            staged: HashMap::new(),
        })
    }

    /// The warehouse at `root` for reading only, beside a process that may be loading into
    /// it: staging is left alone, and each table is read at its latest committed version.
    pub fn reader(root: &Path) -> Self {
        LocalWarehouse {
            root: root.to_path_buf(),
            staged: HashMap::new(),
        }
    }

    /// The folder holding the tables.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn table_url(&self, table: &str) -> Result<Url, WarehouseError> {
        let dir = self.root.join(table);
        std::fs::create_dir_all(&dir)
            .map_err(|e| WarehouseError::storage(table, "cannot create the table folder", e))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| WarehouseError::storage(table, "cannot resolve the table folder", e))?;
        Url::from_directory_path(&dir).map_err(|()| {
            WarehouseError::storage(table, "not a folder path", dir.display().to_string())
        })
    }

    /// Whether the table has been created (it has a Delta log).
    fn exists(&self, table: &str) -> bool {
        self.root.join(table).join("_delta_log").is_dir()
    }

    /// The table, loaded when it exists, else ready to be created by its first write.
    async fn table(&self, table: &str) -> Result<DeltaTable, WarehouseError> {
        let url = self.table_url(table)?;
        if !self.exists(table) {
            return DeltaTableBuilder::from_url(url)
                .and_then(|builder| builder.build())
                .map_err(|e| delta_error(table, e));
        }
        deltalake::open_table(url)
            .await
            .map_err(|e| self.open_error(table, e))
    }

    /// Why a table could not be opened: its damaged log file when one is, else Delta's
    /// own error.
    fn open_error(&self, table: &str, err: deltalake::DeltaTableError) -> WarehouseError {
        match damage::inspect(&self.root.join(table)) {
            Some(damage) => WarehouseError::Damaged {
                table: table.to_string(),
                damage,
            },
            None => delta_error(table, err),
        }
    }

    /// The tables whose log is damaged, with what is wrong (for `mailroom status`).
    pub fn damaged_tables(&self) -> Result<Vec<(String, damage::Damage)>, WarehouseError> {
        Ok(self
            .tables()?
            .into_iter()
            .filter_map(|name| Some((name.clone(), damage::inspect(&self.root.join(&name))?)))
            .collect())
    }

    /// Delta's own reader of a table's current version, in `ctx`.
    async fn delta_provider(
        &self,
        delta: &DeltaTable,
        table: &str,
        ctx: &SessionContext,
    ) -> Result<Arc<dyn TableProvider>, WarehouseError> {
        delta
            .update_datafusion_session(&ctx.state())
            .map_err(|e| delta_error(table, e))?;
        delta
            .table_provider()
            .await
            .map_err(|e| WarehouseError::storage(table, "cannot read", e))
    }

    /// A query over every row of a table (not run yet), or `None` when it does not exist.
    /// Reads and exports go through Delta's reader, which keeps the declared column types
    /// (plain strings); queries use [`LocalWarehouse::session`].
    async fn frame(&self, table: &str) -> Result<Option<DataFrame>, WarehouseError> {
        if !self.exists(table) {
            return Ok(None);
        }
        let delta = self.table(table).await?;
        let ctx = SessionContext::new();
        let provider = self.delta_provider(&delta, table, &ctx).await?;
        ctx.read_table(provider)
            .map(Some)
            .map_err(|e| WarehouseError::storage(table, "cannot read", e))
    }

    /// A SQL session in which each existing table among `wanted` (the names a query reads,
    /// any case) is registered under its own name: a query never opens, and a damaged table
    /// never fails, a table it does not read.
    ///
    /// Each table is read as the Parquet files its Delta log lists for the current version
    /// (DataFusion's own Parquet source: parallel, with its string-view types); a table
    /// without files is read through Delta.
    pub async fn session(&self, wanted: &[String]) -> Result<SessionContext, WarehouseError> {
        let ctx = SessionContext::new();
        let tables = self
            .tables()?
            .into_iter()
            .filter(|name| wanted.iter().any(|w| w.eq_ignore_ascii_case(name)));
        for name in tables {
            let delta = self.table(&name).await?;
            let failed = |e: datafusion::error::DataFusionError| {
                WarehouseError::storage(&name, "cannot read", e)
            };
            let files = delta
                .get_file_uris()
                .map_err(|e| delta_error(&name, e))?
                .map(|uri| ListingTableUrl::parse(uri).map_err(failed))
                .collect::<Result<Vec<_>, _>>()?;
            if files.is_empty() {
                let provider = self.delta_provider(&delta, &name, &ctx).await?;
                ctx.register_table(name.as_str(), provider)
                    .map_err(failed)?;
                continue;
            }
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet");
            let config = ListingTableConfig::new_with_multi_paths(files)
                .with_listing_options(options)
                .infer_schema(&ctx.state())
                .await
                .map_err(failed)?;
            let table = ListingTable::try_new(config).map_err(failed)?;
            ctx.register_table(name.as_str(), Arc::new(table))
                .map_err(failed)?;
        }
        Ok(ctx)
    }

    /// The rows of `table` as its Delta log counts them (each file's `numRecords`), without
    /// reading a data file or starting a query engine; `None` when the table does not
    /// exist, or a file has no count or rows deleted by a deletion vector (then only a
    /// query can count them).
    pub async fn row_count(&self, table: &str) -> Result<Option<u64>, WarehouseError> {
        if !self.exists(table) {
            return Ok(None);
        }
        let delta = self.table(table).await?;
        let snapshot = delta.snapshot().map_err(|e| delta_error(table, e))?;
        let mut rows = 0;
        for file in snapshot.log_data().iter() {
            match file.num_records() {
                Some(n) if file.deletion_vector_descriptor().is_none() => rows += n as u64,
                _ => return Ok(None),
            }
        }
        Ok(Some(rows))
    }

    /// Every row of a table as one batch (for tests and small reads).
    pub async fn read(&self, table: &str) -> Result<Option<RecordBatch>, WarehouseError> {
        let Some(frame) = self.frame(table).await? else {
            return Ok(None);
        };
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame
            .collect()
            .await
            .map_err(|e| WarehouseError::storage(table, "cannot read", e))?;
        concat_batches(&schema, &batches)
            .map(Some)
            .map_err(|source| WarehouseError::Arrow {
                table: table.to_string(),
                source,
            })
    }

    /// Writes every row of `table` to one plain Parquet file at `path`, streaming; returns
    /// the rows written, or `None` when the table does not exist.
    pub async fn export(&self, table: &str, path: &Path) -> Result<Option<u64>, WarehouseError> {
        let Some(frame) = self.frame(table).await? else {
            return Ok(None);
        };
        let failed = |e: datafusion::error::DataFusionError| {
            WarehouseError::storage(table, "cannot read", e)
        };
        let schema = Arc::new(frame.schema().as_arrow().clone());
        let mut stream = frame.execute_stream().await.map_err(failed)?;
        let file = File::create(path).map_err(|e| {
            WarehouseError::storage(table, &format!("cannot create {}", path.display()), e)
        })?;
        let written = |e: parquet::errors::ParquetError| {
            WarehouseError::storage(table, &format!("cannot write {}", path.display()), e)
        };
        let mut writer = ArrowWriter::try_new(file, schema, None).map_err(written)?;
        let mut rows = 0;
        while let Some(batch) = next_batch(&mut stream).await {
            let batch = batch.map_err(failed)?;
            rows += batch.num_rows() as u64;
            writer.write(&batch).map_err(written)?;
        }
        writer.close().map_err(written)?;
        Ok(Some(rows))
    }

    /// The tables that exist, by name.
    pub fn tables(&self) -> Result<Vec<String>, WarehouseError> {
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let entries = std::fs::read_dir(&self.root).map_err(|e| {
            WarehouseError::storage("-", &format!("cannot list {}", self.root.display()), e)
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
            .filter(|name| !name.starts_with('_') || name == QUARANTINE_TABLE)
            .filter(|name| self.exists(name))
            .collect();
        names.sort();
        Ok(names)
    }

    /// Rewrites a table's small files into fewer large ones, then deletes files no version
    /// newer than `keep` still needs; `None` when the table does not exist.
    pub async fn compact(
        &self,
        table: &str,
        keep: chrono::Duration,
    ) -> Result<Option<Compaction>, WarehouseError> {
        if !self.exists(table) {
            return Ok(None);
        }
        let delta = self.table(table).await?;
        let (delta, optimized) = delta.optimize().await.map_err(|e| delta_error(table, e))?;
        let (_, vacuumed) = delta
            .vacuum()
            .with_retention_period(keep)
            .await
            .map_err(|e| delta_error(table, e))?;
        Ok(Some(Compaction {
            files_added: optimized.num_files_added,
            files_removed: optimized.num_files_removed,
            files_deleted: vacuumed.files_deleted.len() as u64,
        }))
    }

    fn staging_dir(&self, load: &LoadId, table: &str) -> PathBuf {
        let safe = |s: &str| s.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
        self.root
            .join("_staging")
            .join(format!(
                "{}-{}-{}",
                safe(&load.run_id),
                safe(&load.source),
                safe(&load.stream)
            ))
            .join(table)
    }

    /// Commits one table's staged rows; the rows written, or `None` when this run's commit
    /// of it is already in the table.
    async fn commit_table(
        &self,
        load: &LoadId,
        table: &TableSchema,
        staged: Option<Staged>,
        cursor: Option<(String, i64)>,
    ) -> Result<Option<u64>, WarehouseError> {
        let name = table.name;
        let delta = self.table(name).await?;
        let marker = run_marker(load);
        if delta.version().is_some() {
            let snapshot = delta.snapshot().map_err(|e| delta_error(name, e))?;
            let done = snapshot
                .transaction_version(delta.log_store().as_ref(), &marker)
                .await
                .map_err(|e| delta_error(name, e))?;
            if done.is_some() {
                if let Some(staged) = staged {
                    staged.abandon().await;
                }
                return Ok(None);
            }
        }
        // Run markers carry their time so Delta forgets them after RUN_MARKER_RETENTION;
        // the cursor has none and is kept for good.
        let marked =
            Transaction::new_with_last_update(&marker, 1, Some(Utc::now().timestamp_millis()));
        let mut properties = CommitProperties::default().with_application_transaction(marked);
        if let Some((app_id, version)) = cursor {
            properties = properties.with_application_transaction(Transaction::new(app_id, version));
        }
        let exists = delta.version().is_some();
        if exists {
            check_types(&delta, table)?;
        }
        let staged = match staged {
            Some(stage) if stage.rows() == 0 => {
                stage.abandon().await;
                None
            }
            stage => stage,
        };
        let rows = staged.as_ref().map_or(0, Staged::rows);
        let staged = match staged {
            Some(mut stage) => {
                let repeats = stage.keys_may_repeat().await?;
                Some((stage.into_rows(!exists && !repeats).await?, repeats))
            }
            None => None,
        };
        let (staged_dir, repeats) = match staged {
            // A first load whose keys are all distinct needs neither a sort nor a join (nor
            // a query engine): its staged data files become the table.
            Some((Rows::DataFiles { dir, files }, _)) => {
                self.create_from_files(table, &dir, files, properties)
                    .await?;
                return Ok(Some(rows));
            }
            Some((Rows::Sequenced { dir }, repeats)) => (Some(dir), repeats),
            None => (None, false),
        };
        let merging = exists && table.disposition == WriteDisposition::Merge;
        // Writes sort (merge tables: dedupe by key) and encode in bounded memory, spilling
        // to disk; a merge joins the staged rows with the table in DataFusion's own terms.
        let ctx = if merging {
            SessionContext::new()
        } else {
            bounded_session()
        };
        let source = match staged_dir {
            Some(dir) => Some(self.staged_rows(table, &dir, repeats, &ctx).await?),
            None => None,
        };
        match (source, exists) {
            (None, false) => {
                // Nothing to create the table from; the cursor waits for real rows.
                return Ok(Some(0));
            }
            (Some(source), true) if table.disposition == WriteDisposition::Merge => {
                self.merge(delta, table, source, properties).await?;
            }
            (source, _) => {
                let mode = if table.disposition == WriteDisposition::Replace {
                    SaveMode::Overwrite
                } else {
                    SaveMode::Append
                };
                let write = match source {
                    // The staged rows stream from their Parquet files into the table.
                    Some(source) => delta
                        .write(Vec::new())
                        .with_input_plan(source.into_unoptimized_plan())
                        .with_session_state(Arc::new(ctx.state())),
                    // No rows still makes a commit: it carries the run marker and the
                    // cursor (and, for replace, empties the table).
                    None => delta.write(vec![RecordBatch::new_empty(table.arrow_schema())]),
                };
                let write = if exists {
                    write
                } else {
                    write.with_configuration([(
                        "delta.setTransactionRetentionDuration",
                        Some(RUN_MARKER_RETENTION),
                    )])
                };
                write
                    .with_writer_properties(table_file_properties())
                    .with_target_file_size(NonZeroU64::new(TARGET_FILE_BYTES))
                    .with_save_mode(mode)
                    .with_schema_mode(SchemaMode::Merge)
                    .with_commit_properties(properties)
                    .await
                    .map_err(|e| delta_error(name, e))?;
            }
        }
        Ok(Some(rows))
    }

    /// The staged rows as a query over their Parquet files (not read yet): the last one per
    /// key for merge tables, without the sequence column. Rows go in any order: a table's
    /// rows have none.
    async fn staged_rows(
        &self,
        table: &TableSchema,
        dir: &Path,
        repeats: bool,
        ctx: &SessionContext,
    ) -> Result<DataFrame, WarehouseError> {
        let name = table.name;
        let failed = |e: datafusion::error::DataFusionError| {
            WarehouseError::storage(name, "cannot read staged rows", e)
        };
        let dir = format!("{}/", dir.display());
        ctx.register_parquet("staged", &dir, ParquetReadOptions::default())
            .await
            .map_err(failed)?;
        let columns: Vec<String> = table
            .column_names()
            .iter()
            .map(|name| format!("\"{name}\""))
            .collect();
        let columns = columns.join(", ");
        let sql = if repeats {
            let key: Vec<String> = table.key.iter().map(|k| format!("\"{k}\"")).collect();
            let key = key.join(", ");
            format!(
                "SELECT {columns} FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY {key} ORDER BY \"{SEQUENCE}\" DESC) AS _mailroom_rank FROM staged) WHERE _mailroom_rank = 1"
            )
        } else {
            format!("SELECT {columns} FROM staged")
        };
        ctx.sql(&sql).await.map_err(failed)
    }

    /// Creates the table in one commit from data files staged under `dir` (named relative
    /// to it), moved into the table's folder first: until the commit they are no table's.
    async fn create_from_files(
        &self,
        table: &TableSchema,
        dir: &Path,
        files: Vec<Add>,
        properties: CommitProperties,
    ) -> Result<(), WarehouseError> {
        let name = table.name;
        let url = self.table_url(name)?;
        let table_dir = self.root.join(name);
        for file in &files {
            std::fs::rename(dir.join(&file.path), table_dir.join(&file.path)).map_err(|e| {
                WarehouseError::storage(name, "cannot move staged files into the table", e)
            })?;
        }
        let schema = table.arrow_schema();
        let columns: StructType = schema
            .as_ref()
            .try_into_kernel()
            .map_err(|e| delta_error(name, e.into()))?;
        CreateBuilder::new()
            .with_location(url.as_str())
            .with_columns(columns.fields().cloned())
            .with_configuration([(
                "delta.setTransactionRetentionDuration",
                Some(RUN_MARKER_RETENTION),
            )])
            .with_actions(files.into_iter().map(Action::Add))
            .with_commit_properties(properties)
            .await
            .map_err(|e| delta_error(name, e))?;
        Ok(())
    }

    async fn merge(
        &self,
        delta: DeltaTable,
        table: &TableSchema,
        source: DataFrame,
        properties: CommitProperties,
    ) -> Result<(), WarehouseError> {
        let name = table.name;
        let predicate = table
            .key
            .iter()
            .map(|k| format!("target.\"{k}\" = source.\"{k}\""))
            .collect::<Vec<_>>()
            .join(" AND ");
        let columns = table.column_names();
        let assign = |column: &String| (format!("\"{column}\""), format!("source.\"{column}\""));
        delta
            .merge(source, predicate)
            .with_source_alias("source")
            .with_target_alias("target")
            .with_merge_schema(true)
            .with_writer_properties(table_file_properties())
            .with_commit_properties(properties)
            .when_matched_update(|update| {
                columns
                    .iter()
                    .map(assign)
                    .fold(update, |u, (c, v)| u.update(c, v))
            })
            .and_then(|merge| {
                merge.when_not_matched_insert(|insert| {
                    columns
                        .iter()
                        .map(assign)
                        .fold(insert, |i, (c, v)| i.set(c, v))
                })
            })
            .map_err(|e| delta_error(name, e))?
            .await
            .map_err(|e| delta_error(name, e))?;
        Ok(())
    }
}

/// How every data file of a table is encoded: Snappy, [`ROW_GROUP_ROWS`]-row groups,
/// dictionaries up to [`DICTIONARY_BYTES`].
fn table_file_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(parquet::basic::Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_dictionary_page_size_limit(DICTIONARY_BYTES)
        .build()
}

/// A Delta session whose sorts spill to disk beyond [`LOAD_MEMORY`], so a load's memory
/// does not grow with its rows.
fn bounded_session() -> SessionContext {
    let state = deltalake::delta_datafusion::create_session_state_with_spill_config(
        Some(LOAD_MEMORY),
        None,
    );
    // One stream: one sort and one file writer at a time, each with its own buffers.
    let config = state.config().clone().with_target_partitions(1);
    SessionContext::new_with_state(
        datafusion::execution::SessionStateBuilder::new_from_existing(state)
            .with_config(config)
            .build(),
    )
}

/// Fails when a declared column exists in the table with another type: new nullable
/// columns are added by a load, but a type is never changed under the data.
fn check_types(delta: &DeltaTable, table: &TableSchema) -> Result<(), WarehouseError> {
    let snapshot = delta.snapshot().map_err(|e| delta_error(table.name, e))?;
    let stored = snapshot.schema();
    for column in &table.columns {
        let Some(field) = stored.fields().find(|f| f.name() == column.name.as_ref()) else {
            continue;
        };
        let (old, new) = (field.data_type().to_string(), delta_type(column.kind));
        if old != new {
            return Err(WarehouseError::Schema {
                table: table.name.to_string(),
                message: format!(
                    "column {} changed type from {old} to {new}; a type is never changed under existing data (load into a new table, or migrate this one)",
                    column.name
                ),
            });
        }
    }
    Ok(())
}

/// The Delta type a column of `kind` is stored as.
fn delta_type(kind: ColumnType) -> String {
    match kind {
        ColumnType::Boolean => "boolean".into(),
        ColumnType::Int64 => "long".into(),
        ColumnType::Float64 => "double".into(),
        ColumnType::Text => "string".into(),
        ColumnType::Timestamp => "timestamp".into(),
        ColumnType::Date => "date".into(),
        ColumnType::Money => format!("decimal({MONEY_PRECISION},{MONEY_SCALE})"),
    }
}

/// The next batch of a DataFusion stream.
async fn next_batch(
    stream: &mut datafusion::physical_plan::SendableRecordBatchStream,
) -> Option<datafusion::error::Result<RecordBatch>> {
    std::future::poll_fn(|cx| futures_core::Stream::poll_next(stream.as_mut(), cx)).await
}

/// The application id marking that a run committed a stream's rows to a table.
fn run_marker(load: &LoadId) -> String {
    format!(
        "mailroom.run.{}.{}.{}",
        load.run_id, load.source, load.stream
    )
}

/// The application id holding a stream's cursor in its table.
fn cursor_app_id(source: &str, stream: &str) -> String {
    format!("mailroom.cursor.{source}.{stream}")
}

impl Warehouse for LocalWarehouse {
    async fn cursor(
        &self,
        table: &str,
        source: &str,
        stream: &str,
    ) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        if !self.exists(table) {
            return Ok(None);
        }
        let delta = self.table(table).await?;
        let snapshot = delta.snapshot().map_err(|e| delta_error(table, e))?;
        let micros = snapshot
            .transaction_version(delta.log_store().as_ref(), cursor_app_id(source, stream))
            .await
            .map_err(|e| delta_error(table, e))?;
        Ok(micros.and_then(DateTime::from_timestamp_micros))
    }

    async fn write(
        &mut self,
        load: &LoadId,
        table: &TableSchema,
        batch: RecordBatch,
    ) -> Result<(), WarehouseError> {
        let staged_already = self
            .staged
            .get(load)
            .is_some_and(|tables| tables.contains_key(table.name));
        if !staged_already {
            // The table's first batch of this load: its stage takes the form the table's
            // existence calls for, once.
            let staged = Staged::new(
                table,
                self.staging_dir(load, table.name),
                !self.exists(table.name),
            )?;
            self.staged
                .entry(load.clone())
                .or_default()
                .insert(table.name.to_string(), staged);
        }
        let staged = self
            .staged
            .get_mut(load)
            .and_then(|tables| tables.get_mut(table.name))
            .expect("staged above");
        staged.add(table, batch).await
    }

    async fn commit(&mut self, commit: Commit) -> Result<CommitOutcome, WarehouseError> {
        let mut staged = self.staged.remove(&commit.load).unwrap_or_default();
        let mut outcome = CommitOutcome::default();
        let order = commit.apply_order();
        let last = order.len().saturating_sub(1);
        for (i, table) in order.into_iter().enumerate() {
            let cursor = (i == last).then_some(commit.cursor).flatten().map(|c| {
                (
                    cursor_app_id(&commit.load.source, &commit.load.stream),
                    c.timestamp_micros(),
                )
            });
            match self
                .commit_table(&commit.load, table, staged.remove(table.name), cursor)
                .await?
            {
                Some(rows) => outcome.rows.push((table.name.to_string(), rows)),
                None => outcome.already_committed = true,
            }
        }
        self.remove_staging(&commit.load);
        Ok(outcome)
    }

    async fn abort(&mut self, load: &LoadId) {
        for (_, staged) in self.staged.remove(load).unwrap_or_default() {
            staged.abandon().await;
        }
        self.remove_staging(load);
    }
}

impl LocalWarehouse {
    fn remove_staging(&self, load: &LoadId) {
        if let Some(dir) = self.staging_dir(load, "-").parent()
            && dir.exists()
            && let Err(err) = std::fs::remove_dir_all(dir)
        {
            tracing::warn!(folder = %dir.display(), error = %err, "could not remove staged files");
        }
    }
}

//! A load's rows on disk until its commit, in one of two forms.
//!
//! A table that does not exist yet is staged as its own future data files: each batch goes
//! to a writer task that encodes it once (as every table file, [`table_file_properties`];
//! files rolled at [`TARGET_FILE_BYTES`] and streamed to disk, statistics kept for Delta), so
//! encoding overlaps extraction and a commit that creates the table only moves the files
//! in. A table that exists is staged as one Parquet file per batch with a sequence column
//! ([`SEQUENCE`](crate::warehouse::SEQUENCE)), which a merge orders by to keep the last row
//! per key; new-table files are turned into that form ([`Staged::sequence`]) when the commit
//! cannot use them as they are (a key repeats, the table appeared meanwhile, or a column was
//! added mid-load).
//!
//! Either way a 64-bit hash of each row's merge key is kept ([`KeyHashes`]), to learn at
//! commit whether any key repeats without reading the rows again. A table's stage is one
//! folder: `files/` (new-table data files), `sequenced/` and `keys/`.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use deltalake::datafile::writer::{DeltaWriter, WriterConfig};
use deltalake::kernel::Add;
use deltalake::logstore::object_store::local::LocalFileSystem;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::key_hashes::KeyHashes;
use super::{TARGET_FILE_BYTES, delta_error, table_file_properties};
use crate::normalize::TableSchema;
use crate::warehouse::{WarehouseError, conform, read_staged, stage_file, with_sequence};

/// Batches waiting for the data-file writer: the extraction runs at most this far ahead
/// of the encoding.
const WRITER_QUEUE: usize = 2;

/// One table's part of a load, on disk.
#[derive(Debug)]
pub(super) struct Staged {
    table: &'static str,
    /// The folder of this table's stage.
    dir: PathBuf,
    rows: u64,
    keys: KeyHashes,
    form: Form,
}

#[derive(Debug)]
enum Form {
    /// The table's future data files, still being written.
    DataFiles(DataFileWriter),
    /// `files` Parquet files of one batch each, with the sequence column.
    Sequenced { files: usize },
}

/// What a commit gets from a table's staged rows.
pub(super) enum Rows {
    /// Finished data files of the table's schema, named relative to `dir`, ready to be
    /// moved into the table.
    DataFiles { dir: PathBuf, files: Vec<Add> },
    /// A folder of sequenced Parquet files, for a query to read.
    Sequenced { dir: PathBuf },
}

impl Staged {
    /// An empty stage under `dir` for `table`: data files when the table is `new`.
    pub(super) fn new(
        table: &TableSchema,
        dir: PathBuf,
        new: bool,
    ) -> Result<Self, WarehouseError> {
        let name = table.name;
        let form = if new {
            Form::DataFiles(DataFileWriter::spawn(
                name,
                &data_files_dir(&dir),
                table.arrow_schema(),
            )?)
        } else {
            Form::Sequenced { files: 0 }
        };
        Ok(Staged {
            table: name,
            keys: KeyHashes::for_table(table, dir.join("keys")),
            dir,
            rows: 0,
            form,
        })
    }

    /// The rows staged so far.
    pub(super) fn rows(&self) -> u64 {
        self.rows
    }

    /// Stages `batch` (a batch of `table`'s declared columns or some of them). A table
    /// declared with more columns than its first batch (a column a source started sending
    /// mid-load) is staged as sequenced files from then on, which take any schema.
    pub(super) async fn add(
        &mut self,
        table: &TableSchema,
        batch: RecordBatch,
    ) -> Result<(), WarehouseError> {
        let arrow = |source| WarehouseError::Arrow {
            table: table.name.to_string(),
            source,
        };
        let schema = table.arrow_schema();
        if let Form::DataFiles(writer) = &self.form
            && *writer.schema != *schema
        {
            self.sequence().await?;
        }
        let batch = conform(&batch, &schema).map_err(arrow)?;
        self.keys.add(table, &batch)?;
        let rows = batch.num_rows() as u64;
        let sequenced = self.sequenced_dir();
        match &mut self.form {
            Form::DataFiles(writer) => writer.write(batch).await?,
            Form::Sequenced { files } => {
                let batch = with_sequence(&batch, self.rows).map_err(arrow)?;
                stage_file(
                    self.table,
                    &sequenced.join(sequenced_file_name(*files)),
                    &batch,
                )?;
                *files += 1;
            }
        }
        self.rows += rows;
        Ok(())
    }

    /// Whether some key may appear in more than one staged row (hashes are taken once).
    pub(super) async fn keys_may_repeat(&mut self) -> Result<bool, WarehouseError> {
        let (keys, table) = (std::mem::take(&mut self.keys), self.table);
        tokio::task::spawn_blocking(move || keys.may_repeat(table))
            .await
            .map_err(|e| WarehouseError::storage(table, "cannot read key hashes", e))?
    }

    /// The folder of the sequenced files.
    fn sequenced_dir(&self) -> PathBuf {
        self.dir.join("sequenced")
    }

    /// The staged rows, every file finished: the table's own data files when
    /// `as_table_files` and they were staged so, else sequenced files.
    pub(super) async fn into_rows(mut self, as_table_files: bool) -> Result<Rows, WarehouseError> {
        if !as_table_files {
            self.sequence().await?;
        }
        match self.form {
            Form::DataFiles(writer) => Ok(Rows::DataFiles {
                dir: data_files_dir(&self.dir),
                files: writer.finish().await?,
            }),
            Form::Sequenced { .. } => Ok(Rows::Sequenced {
                dir: self.sequenced_dir(),
            }),
        }
    }

    /// Stages the rows as sequenced files from now on, rewriting any new-table data files
    /// in the order they were written (a merge needs the sequence to keep the last row per
    /// key).
    pub(super) async fn sequence(&mut self) -> Result<(), WarehouseError> {
        let writer = match std::mem::replace(&mut self.form, Form::Sequenced { files: 0 }) {
            Form::DataFiles(writer) => writer,
            sequenced => {
                self.form = sequenced;
                return Ok(());
            }
        };
        let files_dir = data_files_dir(&self.dir);
        let mut files = writer.finish().await?;
        // A writer numbers its files (`part-00001-…`, at least five digits) in the order it
        // rolled them; the shorter name is the smaller number past 99,999.
        files.sort_by(|a, b| (a.path.len(), &a.path).cmp(&(b.path.len(), &b.path)));
        let (table, dir) = (self.table, self.sequenced_dir());
        let written = tokio::task::spawn_blocking(move || {
            let mut part = 0;
            let mut sequence = 0;
            for file in files {
                for batch in read_staged(table, &files_dir.join(&file.path))? {
                    let batch = with_sequence(&batch?, sequence).map_err(|source| {
                        WarehouseError::Arrow {
                            table: table.to_string(),
                            source,
                        }
                    })?;
                    stage_file(table, &dir.join(sequenced_file_name(part)), &batch)?;
                    sequence += batch.num_rows() as u64;
                    part += 1;
                }
            }
            std::fs::remove_dir_all(&files_dir)
                .map_err(|e| WarehouseError::storage(table, "cannot clear staged files", e))?;
            Ok::<_, WarehouseError>(part)
        })
        .await
        .map_err(|e| WarehouseError::storage(table, "cannot restage rows", e))??;
        self.form = Form::Sequenced { files: written };
        Ok(())
    }

    /// Stops writing; what was staged is left for the caller to remove.
    pub(super) async fn abandon(self) {
        if let Form::DataFiles(writer) = self.form {
            writer.abandon().await;
        }
    }
}

/// The task encoding a new table's data files, fed through a short queue.
#[derive(Debug)]
struct DataFileWriter {
    table: &'static str,
    /// The schema of every batch and file.
    schema: SchemaRef,
    batches: Option<mpsc::Sender<RecordBatch>>,
    task: Option<JoinHandle<Result<Vec<Add>, WarehouseError>>>,
}

impl DataFileWriter {
    fn spawn(table: &'static str, dir: &Path, schema: SchemaRef) -> Result<Self, WarehouseError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| WarehouseError::storage(table, "cannot stage", e))?;
        let store = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| WarehouseError::storage(table, "cannot stage", e))?;
        let config = WriterConfig::new(
            schema.clone(),
            Vec::new(),
            Some(table_file_properties()),
            NonZeroU64::new(TARGET_FILE_BYTES),
            None,
            // Delta's default: statistics of the first 32 columns.
            Default::default(),
            None,
        );
        let mut writer = DeltaWriter::new(Arc::new(store), config);
        let (sender, mut batches) = mpsc::channel::<RecordBatch>(WRITER_QUEUE);
        let task = tokio::spawn(async move {
            while let Some(batch) = batches.recv().await {
                if let Err(err) = writer.write(&batch).await {
                    let _ = writer.abort().await;
                    return Err(delta_error(table, err));
                }
            }
            writer.close().await.map_err(|e| delta_error(table, e))
        });
        Ok(DataFileWriter {
            table,
            schema,
            batches: Some(sender),
            task: Some(task),
        })
    }

    async fn write(&mut self, batch: RecordBatch) -> Result<(), WarehouseError> {
        let sent = match &self.batches {
            Some(batches) => batches.send(batch).await.is_ok(),
            None => false,
        };
        if sent {
            return Ok(());
        }
        // The task stopped: it failed, and says why.
        self.batches = None;
        match self.task.take() {
            Some(task) => match task.await {
                Ok(Err(err)) => Err(err),
                Ok(Ok(_)) => Err(WarehouseError::storage(
                    self.table,
                    "cannot stage",
                    "the writer stopped",
                )),
                Err(err) => Err(WarehouseError::storage(self.table, "cannot stage", err)),
            },
            None => Err(WarehouseError::storage(
                self.table,
                "cannot stage",
                "the writer stopped",
            )),
        }
    }

    /// Closes the last file; every file written, named relative to the stage's `files/`.
    async fn finish(mut self) -> Result<Vec<Add>, WarehouseError> {
        self.batches = None;
        match self.task.take() {
            Some(task) => task
                .await
                .map_err(|e| WarehouseError::storage(self.table, "cannot stage", e))?,
            None => Err(WarehouseError::storage(
                self.table,
                "cannot stage",
                "the writer stopped",
            )),
        }
    }

    /// Stops the task and waits for it, so nothing is written after this returns.
    async fn abandon(mut self) {
        self.batches = None;
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for DataFileWriter {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// The name of the `part`th sequenced file.
fn sequenced_file_name(part: usize) -> String {
    format!("part-{part:05}.parquet")
}

/// The folder of a new table's data files within its stage.
fn data_files_dir(stage: &Path) -> PathBuf {
    stage.join("files")
}

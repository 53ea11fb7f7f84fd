//! The BigQuery warehouse: the same [`Warehouse`] as the local one, for teams that outgrow
//! one machine.
//!
//! A load's batches are staged as one Parquet file per table under the data directory. At
//! commit each table gets one job — a Parquet load job (`WRITE_APPEND` for append tables,
//! `WRITE_TRUNCATE` for replace tables), or, for merge tables, a load into a staging table
//! and one `MERGE` on the key keeping the last staged row per key. Job ids are derived from
//! the run, the table and a hash of the staged bytes, so a retried request finds its job
//! (409) instead of loading twice, and a replayed run loads nothing.
//!
//! Every job of a load is written down in the state database's journal before the first is
//! sent; the stream's cursor moves (in the state database) in the same transaction that
//! removes the entry, after the last job succeeded. A process that died mid-load leaves the
//! entry behind: the next process checks those job ids before it sends anything, and moves
//! the cursor if they all finished. Each table changes atomically; the tables of one stream
//! do not change together, so a reader may briefly see new orders before their new lines.

pub mod client;
pub mod types;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow::datatypes::{Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use serde_json::{Value, json};

use self::client::{BigQueryClient, BigQueryError, JobStart};
use super::query::QueryEngine;
use super::{
    Commit, CommitOutcome, LoadId, ROW_GROUP_ROWS, SEQUENCE, Warehouse, WarehouseError, conform,
    read_staged, stage_file, with_sequence,
};
use crate::config::WarehouseConfig;
use crate::http::google_auth::GoogleTokens;
use crate::normalize::{TableSchema, WriteDisposition};
use crate::services::{ServiceError, ServiceKind, Services};
use crate::state::{PendingLoad, StateStore};

/// One table's rows staged for a load: one Parquet file per batch (a held-open writer
/// would keep the warehouse from being shared between tasks).
struct Staged {
    parts: Vec<PathBuf>,
    rows: u64,
}

/// What one table's commit sends.
#[derive(Debug, Clone)]
struct TablePlan {
    table: TableSchema,
    file: Option<PathBuf>,
    rows: u64,
    load_job: String,
    /// Merge tables: the `MERGE` job and the staging table it reads.
    merge: Option<MergeStep>,
}

/// A merge table's second step.
#[derive(Debug, Clone)]
struct MergeStep {
    job: String,
    staging_table: String,
}

/// Tables in a BigQuery dataset.
pub struct BigQueryWarehouse {
    client: Arc<BigQueryClient>,
    dataset: String,
    state: Arc<StateStore>,
    staging_dir: PathBuf,
    staged: HashMap<LoadId, HashMap<String, Staged>>,
    /// The journal has been checked (once per process, before the first cursor is read).
    recovered: AtomicBool,
    /// The dataset is known to exist.
    dataset_ready: AtomicBool,
}

fn bq_error(table: &str, err: BigQueryError) -> WarehouseError {
    WarehouseError::BigQuery {
        table: table.to_string(),
        source: Box::new(err),
    }
}

fn state_error(err: crate::state::StateError) -> WarehouseError {
    WarehouseError::State(err)
}

/// Letters, digits, `_` and `-` only, as job ids allow.
fn job_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// FNV-1a of a file's bytes, read in pieces: staged data identifies its jobs.
fn file_hash(path: &Path) -> std::io::Result<u64> {
    use std::io::Read;
    let mut file = File::open(path)?;
    let mut buffer = vec![0; 1 << 16];
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hash);
        }
        for byte in &buffer[..read] {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Where the warehouse is: a BigQuery `[warehouse]`'s settings.
#[derive(Debug, Clone)]
pub struct BigQuerySettings {
    /// The Google Cloud project.
    pub project: String,
    /// The dataset tables are loaded into.
    pub dataset: String,
    /// The dataset's location.
    pub location: String,
    /// The service-account key file; without one, the services' Google override is used.
    pub credentials_file: Option<PathBuf>,
}

impl BigQuerySettings {
    /// The settings of a BigQuery `[warehouse]`; `None` for a local one.
    pub fn from_config(warehouse: &WarehouseConfig) -> Option<Self> {
        match warehouse {
            WarehouseConfig::BigQuery {
                project,
                dataset,
                location,
                credentials_file,
            } => Some(BigQuerySettings {
                project: project.clone(),
                dataset: dataset.clone(),
                location: location.clone(),
                credentials_file: credentials_file.clone(),
            }),
            WarehouseConfig::Local { .. } => None,
        }
    }
}

/// A client for the configured project at BigQuery's address from `services`, with
/// tokens from the configured key file (or the services' Google override and its project).
pub fn connect_client(
    settings: &BigQuerySettings,
    services: &Services,
) -> Result<BigQueryClient, ServiceError> {
    let (key, project) = services.google_key(
        settings.credentials_file.as_deref(),
        &settings.project,
        "warehouse.credentials_file",
    )?;
    let http = services.client().clone();
    let tokens = GoogleTokens::new(key, &[client::SCOPE], http.clone(), services.retry());
    Ok(BigQueryClient::new(
        http,
        tokens,
        services.base_url(ServiceKind::BigQuery)?,
        services.retry(),
        project,
        settings.location.clone(),
    ))
}

impl BigQueryWarehouse {
    /// The warehouse in `dataset`, staging under `staging_dir`, journaling in `state`.
    /// Staging a dead process left is removed (one process owns a data directory).
    pub fn new(
        client: BigQueryClient,
        dataset: String,
        state: Arc<StateStore>,
        staging_dir: PathBuf,
    ) -> Self {
        let _ = std::fs::remove_dir_all(&staging_dir);
        BigQueryWarehouse {
            client: Arc::new(client),
            dataset,
            state,
            staging_dir,
            staged: HashMap::new(),
            recovered: AtomicBool::new(false),
            dataset_ready: AtomicBool::new(false),
        }
    }

    /// The client, for jobs of its own.
    pub fn client(&self) -> &BigQueryClient {
        &self.client
    }

    /// Where queries on this warehouse's tables run.
    pub fn engine(&self) -> QueryEngine {
        QueryEngine::BigQuery {
            client: self.client.clone(),
            dataset: self.dataset.clone(),
        }
    }

    /// Finishes or abandons loads a dead process left in the journal, before any cursor is
    /// read or anything new is sent: a load whose jobs all succeeded moves its cursor.
    pub async fn recover(&self) -> Result<(), WarehouseError> {
        if self.recovered.load(Ordering::Acquire) {
            return Ok(());
        }
        for load in self.state.pending_loads().map_err(state_error)? {
            let plan: Value = serde_json::from_str(&load.plan).unwrap_or(Value::Null);
            let mut finished = true;
            for job in plan["jobs"].as_array().into_iter().flatten() {
                let Some(job_id) = job.as_str() else { continue };
                match self.client.job(job_id).await {
                    Ok(Some(_)) => {
                        if self.client.wait(job_id, "recovery").await.is_err() {
                            finished = false;
                        }
                    }
                    Ok(None) => finished = false,
                    Err(e) => return Err(bq_error(&load.stream, e)),
                }
            }
            for staging in plan["staging"].as_array().into_iter().flatten() {
                if let Some(name) = staging.as_str() {
                    let _ = self.client.delete_table(&self.dataset, name).await;
                }
            }
            if finished {
                tracing::info!(source = %load.source, stream = %load.stream, run = %load.run_id, "a load interrupted after its last job finished; its cursor moves now");
                self.state
                    .finish_load(&load, Utc::now())
                    .map_err(state_error)?;
            } else {
                tracing::warn!(source = %load.source, stream = %load.stream, run = %load.run_id, "a load was interrupted before all its jobs ran; the stream is read again from its previous cursor");
                self.state.abandon_load(&load.key).map_err(state_error)?;
            }
        }
        self.recovered.store(true, Ordering::Release);
        Ok(())
    }

    /// Creates the table from its declared schema, or checks the existing one: a changed
    /// type is refused; columns the declaration adds are added to the table.
    async fn ensure_table(&self, table: &TableSchema) -> Result<(), WarehouseError> {
        let name = table.name;
        let schema = table.arrow_schema();
        let existing = self
            .client
            .table(&self.dataset, name)
            .await
            .map_err(|e| bq_error(name, e))?;
        let Some(existing) = existing else {
            return self
                .client
                .create_table(&self.dataset, name, types::schema_to_json(&schema))
                .await
                .map_err(|e| bq_error(name, e));
        };
        let stored = types::schema_from_json(&existing["schema"]).map_err(|message| {
            WarehouseError::Schema {
                table: name.to_string(),
                message,
            }
        })?;
        let mut changed = Vec::new();
        for field in schema.fields() {
            if let Ok(old) = stored.field_with_name(field.name())
                && old.data_type() != field.data_type()
            {
                changed.push(format!(
                    "column {} changed type from {} to {}",
                    field.name(),
                    old.data_type(),
                    field.data_type()
                ));
            }
        }
        if !changed.is_empty() {
            return Err(WarehouseError::Schema {
                table: name.to_string(),
                message: format!(
                    "{}; BigQuery cannot change a column's type in place: rename the column or recreate the table",
                    changed.join("; ")
                ),
            });
        }
        // Columns the declaration added (schema evolution) are added to the table first, so
        // loads and MERGEs can write them.
        let added: Vec<_> = schema
            .fields()
            .iter()
            .filter(|f| stored.index_of(f.name()).is_err())
            .cloned()
            .collect();
        if added.is_empty() {
            return Ok(());
        }
        let mut fields: Vec<_> = stored.fields().iter().cloned().collect();
        fields.extend(added);
        self.client
            .patch_schema(
                &self.dataset,
                name,
                types::schema_to_json(&Schema::new(fields)),
            )
            .await
            .map_err(|e| bq_error(name, e))
    }

    fn staging_path(staging_dir: &Path, load: &LoadId, table: &str, part: usize) -> PathBuf {
        staging_dir
            .join(job_safe(&format!(
                "{}-{}-{}",
                load.run_id, load.source, load.stream
            )))
            .join(format!("{table}-{part}.parquet"))
    }

    /// A table's staged files as one, padding earlier batches with the columns later ones
    /// added (schema evolution).
    fn finish_staged(
        table: &TableSchema,
        staged: Staged,
    ) -> Result<(PathBuf, u64), WarehouseError> {
        let name = table.name;
        let [first, ..] = staged.parts.as_slice() else {
            return Err(WarehouseError::storage(
                name,
                "cannot stage",
                "nothing was staged",
            ));
        };
        if staged.parts.len() == 1 {
            return Ok((first.clone(), staged.rows));
        }
        let mut fields: Vec<_> = table.arrow_schema().fields().iter().cloned().collect();
        if table.disposition == WriteDisposition::Merge {
            fields.push(Arc::new(arrow::datatypes::Field::new(
                SEQUENCE,
                arrow::datatypes::DataType::Int64,
                false,
            )));
        }
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let combined = first.with_file_name(format!("{name}.parquet"));
        // The writer holds one row group's pages until it is full: bounded by rows, so a
        // load of millions of rows writes with flat memory.
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let mut writer = ArrowWriter::try_new(
            File::create(&combined)
                .map_err(|e| WarehouseError::storage(name, "cannot stage", e))?,
            schema.clone(),
            Some(properties),
        )
        .map_err(|e| WarehouseError::storage(name, "cannot stage", e))?;
        for part in &staged.parts {
            for batch in read_staged(name, part)? {
                let batch = conform(&batch?, &schema)
                    .map_err(|e| WarehouseError::storage(name, "cannot stage", e))?;
                writer
                    .write(&batch)
                    .map_err(|e| WarehouseError::storage(name, "cannot stage", e))?;
            }
            let _ = std::fs::remove_file(part);
        }
        writer
            .close()
            .map_err(|e| WarehouseError::storage(name, "cannot stage", e))?;
        Ok((combined, staged.rows))
    }

    /// The jobs one table's commit sends, with ids from the run and the staged bytes.
    fn plan_table(
        load: &LoadId,
        table: &TableSchema,
        staged: Option<(PathBuf, u64)>,
    ) -> Result<TablePlan, WarehouseError> {
        let hash = match &staged {
            Some((path, _)) => file_hash(path)
                .map_err(|e| WarehouseError::storage(table.name, "cannot read staging", e))?,
            None => 0,
        };
        let base = job_safe(&format!(
            "mailroom_{}_{}_{}_{}_{hash:016x}",
            load.run_id, load.source, load.stream, table.name
        ));
        let merge = table.disposition == WriteDisposition::Merge;
        let (file, rows) = match staged {
            Some((file, rows)) => (Some(file), rows),
            None => (None, 0),
        };
        Ok(TablePlan {
            table: table.clone(),
            file,
            rows,
            load_job: format!("{base}_load"),
            merge: merge.then(|| MergeStep {
                job: format!("{base}_merge"),
                staging_table: format!("_mailroom_staging_{}_{hash:016x}", table.name),
            }),
        })
    }

    /// Sends one table's jobs and waits for them; whether every job existed already.
    async fn apply(&self, plan: &TablePlan) -> Result<bool, WarehouseError> {
        let name = plan.table.name;
        let fail = |e| bq_error(name, e);
        self.ensure_table(&plan.table).await?;
        let Some(file) = &plan.file else {
            return Ok(false);
        };
        // The table exists with every declared column (`ensure_table`); a staging table is
        // created by its load.
        let (destination, write, create) = match (&plan.merge, &plan.table.disposition) {
            (Some(merge), _) => (
                merge.staging_table.as_str(),
                "WRITE_TRUNCATE",
                "CREATE_IF_NEEDED",
            ),
            (None, WriteDisposition::Replace) => (name, "WRITE_TRUNCATE", "CREATE_NEVER"),
            (None, _) => (name, "WRITE_APPEND", "CREATE_NEVER"),
        };
        let load = json!({
            "destinationTable": { "projectId": self.client.project, "datasetId": self.dataset, "tableId": destination },
            "sourceFormat": "PARQUET",
            "writeDisposition": write,
            "createDisposition": create,
        });
        let loaded = self
            .client
            .start_load(&plan.load_job, load, file)
            .await
            .map_err(fail)?;
        self.client
            .wait(
                &plan.load_job,
                &format!("loading {} rows into {destination}", plan.rows),
            )
            .await
            .map_err(fail)?;
        let Some(MergeStep {
            job: merge_job,
            staging_table: staging,
        }) = &plan.merge
        else {
            return Ok(loaded == JobStart::Existing);
        };
        let sql = self.merge_sql(&plan.table, staging);
        let merged = self
            .client
            .start_job(
                merge_job,
                json!({ "query": { "query": sql, "useLegacySql": false } }),
            )
            .await
            .map_err(fail)?;
        self.client
            .wait(merge_job, &format!("merging {staging} into {name}"))
            .await
            .map_err(fail)?;
        self.client
            .delete_table(&self.dataset, staging)
            .await
            .map_err(fail)?;
        Ok(loaded == JobStart::Existing && merged == JobStart::Existing)
    }

    /// The `MERGE` of a staging table into its table: the last staged row per key updates
    /// the table's row or is inserted.
    fn merge_sql(&self, table: &TableSchema, staging: &str) -> String {
        let columns = table.column_names();
        let key: Vec<&str> = table.key.to_vec();
        let project = &self.client.project;
        let dataset = &self.dataset;
        let on = key
            .iter()
            .map(|k| format!("target.{k} = source.{k}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let set = columns
            .iter()
            .map(|c| format!("{c} = source.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let values = columns
            .iter()
            .map(|c| format!("source.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "MERGE `{project}.{dataset}.{}` AS target\nUSING (\n  SELECT * EXCEPT ({SEQUENCE}) FROM `{project}.{dataset}.{staging}`\n  WHERE TRUE\n  QUALIFY ROW_NUMBER() OVER (PARTITION BY {} ORDER BY {SEQUENCE} DESC) = 1\n) AS source\nON {on}\nWHEN MATCHED THEN UPDATE SET {set}\nWHEN NOT MATCHED THEN INSERT ({}) VALUES ({values})",
            table.name,
            key.join(", "),
            columns.join(", "),
        )
    }
}

impl Warehouse for BigQueryWarehouse {
    async fn cursor(
        &self,
        _table: &str,
        source: &str,
        stream: &str,
    ) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        self.recover().await?;
        self.state.cursor(source, stream).map_err(state_error)
    }

    async fn write(
        &mut self,
        load: &LoadId,
        table: &TableSchema,
        batch: RecordBatch,
    ) -> Result<(), WarehouseError> {
        let name = table.name;
        let staged = self
            .staged
            .entry(load.clone())
            .or_default()
            .entry(name.to_string())
            .or_insert_with(|| Staged {
                parts: Vec::new(),
                rows: 0,
            });
        let batch = if table.disposition == WriteDisposition::Merge {
            with_sequence(&batch, staged.rows)
                .map_err(|e| WarehouseError::storage(name, "cannot stage", e))?
        } else {
            batch
        };
        let path = Self::staging_path(&self.staging_dir, load, name, staged.parts.len());
        stage_file(name, &path, &batch)?;
        staged.parts.push(path);
        staged.rows += batch.num_rows() as u64;
        Ok(())
    }

    async fn commit(&mut self, commit: Commit) -> Result<CommitOutcome, WarehouseError> {
        self.recover().await?;
        if !self.dataset_ready.load(Ordering::Acquire) {
            self.client
                .ensure_dataset(&self.dataset)
                .await
                .map_err(|e| bq_error(&self.dataset, e))?;
            self.dataset_ready.store(true, Ordering::Release);
        }
        let mut staged = self.staged.remove(&commit.load).unwrap_or_default();
        let order = commit.apply_order();
        let mut plans = Vec::new();
        for table in order {
            let files = match staged.remove(table.name) {
                Some(s) => Some(Self::finish_staged(table, s)?),
                // A replace load with no rows still empties the table, as locally.
                None if table.disposition == WriteDisposition::Replace => {
                    let empty = RecordBatch::new_empty(table.arrow_schema());
                    self.write(&commit.load, table, empty).await?;
                    let s = self
                        .staged
                        .remove(&commit.load)
                        .and_then(|mut t| t.remove(table.name));
                    s.map(|s| Self::finish_staged(table, s)).transpose()?
                }
                None => None,
            };
            plans.push(Self::plan_table(&commit.load, table, files)?);
        }
        let jobs: Vec<&String> = plans
            .iter()
            .filter(|p| p.file.is_some())
            .flat_map(|p| std::iter::once(&p.load_job).chain(p.merge.as_ref().map(|m| &m.job)))
            .collect();
        let staging: Vec<&String> = plans
            .iter()
            .filter_map(|p| p.merge.as_ref().map(|m| &m.staging_table))
            .collect();
        let pending = PendingLoad {
            key: format!(
                "{}/{}/{}",
                commit.load.run_id, commit.load.source, commit.load.stream
            ),
            run_id: commit.load.run_id.clone(),
            source: commit.load.source.clone(),
            stream: commit.load.stream.clone(),
            plan: json!({ "jobs": jobs, "staging": staging }).to_string(),
            cursor: commit.cursor,
        };
        self.state
            .begin_load(&pending, Utc::now())
            .map_err(state_error)?;
        let mut outcome = CommitOutcome::default();
        let mut replayed = !jobs.is_empty();
        let mut applied = Ok(());
        for plan in &plans {
            match self.apply(plan).await {
                Ok(existed) if plan.file.is_some() => {
                    replayed &= existed;
                    outcome.rows.push((plan.table.name.to_string(), plan.rows));
                }
                Ok(_) => {}
                Err(e) => {
                    applied = Err(e);
                    break;
                }
            }
        }
        // The staged files go either way: a retry stages its rows again. A failed load
        // stays in the journal until the next start checks its jobs.
        if let Some(dir) = plans
            .iter()
            .find_map(|p| p.file.as_ref())
            .and_then(|f| f.parent())
        {
            let _ = std::fs::remove_dir_all(dir);
        }
        applied?;
        self.state
            .finish_load(&pending, Utc::now())
            .map_err(state_error)?;
        if replayed {
            outcome.rows.clear();
            outcome.already_committed = true;
        }
        Ok(outcome)
    }

    async fn abort(&mut self, load: &LoadId) {
        if let Some(tables) = self.staged.remove(load) {
            for (_, staged) in tables {
                if let Some(dir) = staged.parts.first().and_then(|p| p.parent()) {
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
        }
    }
}

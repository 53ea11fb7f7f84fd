//! BigQuery jobs: registration under client ids (409 when reused), completion (a load
//! applied atomically, a query run through the GoogleSQL front end), `jobs.insert` and
//! `jobs.get`.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde_json::{Value, json};

use super::merge;
use super::*;
use crate::{Shared, json_response};
use mailroom_googlesql::{self as googlesql, FrontEndError};

impl BigQueryState {
    /// Registers a job under its client id (or a new one); 409 when the id is taken.
    pub(super) fn register(
        &mut self,
        mut resource: Value,
        pending: Option<Bytes>,
    ) -> Result<String, Response<Body>> {
        self.sequence += 1;
        let location = resource["jobReference"]["location"]
            .as_str()
            .unwrap_or("US")
            .to_string();
        let id = match resource["jobReference"]["jobId"].as_str() {
            Some(id)
                if !id.is_empty()
                    && id.len() <= 1024
                    && id
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
            {
                id.to_string()
            }
            Some(id) if !id.is_empty() => {
                return Err(bq_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    &format!("Invalid job ID \"{id}\": use letters, numbers, _ and -."),
                ));
            }
            _ => format!("job_sandbox_{:06}", self.sequence),
        };
        if self.jobs.contains_key(&id) {
            return Err(bq_error(
                StatusCode::CONFLICT,
                "duplicate",
                &format!("Already Exists: Job {PROJECT_ID}:{location}.{id}"),
            ));
        }
        let kind = if resource["configuration"].get("load").is_some() {
            "LOAD"
        } else {
            "QUERY"
        };
        resource["kind"] = json!("bigquery#job");
        resource["id"] = json!(format!("{PROJECT_ID}:{location}.{id}"));
        resource["jobReference"] =
            json!({ "projectId": PROJECT_ID, "jobId": id, "location": location });
        resource["configuration"]["jobType"] = json!(kind);
        resource["status"] = json!({ "state": "RUNNING" });
        resource["statistics"] =
            json!({ "creationTime": now_ms().to_string(), "startTime": now_ms().to_string() });
        resource["user_email"] = json!(crate::google::CLIENT_EMAIL);
        self.jobs.insert(
            id.clone(),
            Job {
                resource,
                pending,
                result: None,
            },
        );
        Ok(id)
    }

    pub(super) fn finish(&mut self, id: &str, outcome: Result<Value, (String, String)>) {
        let Some(job) = self.jobs.get_mut(id) else {
            return;
        };
        job.resource["statistics"]["endTime"] = json!(now_ms().to_string());
        match outcome {
            Ok(stats) => {
                job.resource["status"] = json!({ "state": "DONE" });
                if let Some(stats) = stats.as_object() {
                    for (k, v) in stats {
                        job.resource["statistics"][k] = v.clone();
                    }
                }
            }
            Err((reason, message)) => {
                let error = json!({ "reason": reason, "message": message, "location": "" });
                job.resource["status"] =
                    json!({ "state": "DONE", "errorResult": error, "errors": [error] });
            }
        }
    }

    /// Completes a running job: applies its load, or runs its query.
    pub(super) async fn complete(&mut self, id: &str) {
        let Some(job) = self.jobs.get(id).cloned() else {
            return;
        };
        if job.resource["status"]["state"] != "RUNNING" {
            return;
        }
        let config = &job.resource["configuration"];
        let merge = config["query"]["query"]
            .as_str()
            .and_then(merge::parse_merge);
        let outcome = if let Some(load) = config.get("load") {
            self.apply_load(load, job.pending.as_ref())
        } else if let Some(merge) = merge {
            if config["query"]["useLegacySql"].as_bool() != Some(false) {
                Err(("invalidQuery".into(), legacy_message("MERGE")))
            } else {
                let default_dataset = config["query"]["defaultDataset"]["datasetId"].as_str();
                self.apply_merge(&merge, default_dataset).await
            }
        } else {
            match self.run_query_config(&config["query"]).await {
                Ok((schema, batches)) => {
                    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
                    if let Some(stored) = self.jobs.get_mut(id) {
                        stored.result = Some((schema, batches));
                    }
                    Ok(
                        json!({ "query": { "totalBytesProcessed": "0", "statementType": "SELECT" }, "totalRows": rows.to_string() }),
                    )
                }
                Err(e) => Err(e),
            }
        };
        self.finish(id, outcome);
    }

    pub(super) fn apply_load(
        &mut self,
        load: &Value,
        data: Option<&Bytes>,
    ) -> Result<Value, (String, String)> {
        let invalid = |m: String| ("invalid".to_string(), m);
        let format = load["sourceFormat"].as_str().unwrap_or("CSV");
        if format != "PARQUET" {
            return Err(invalid(format!(
                "The sandbox loads PARQUET data only, not {format}."
            )));
        }
        let data = data.ok_or_else(|| {
            invalid("No data was uploaded for this load job; use a media upload.".into())
        })?;
        let destination = &load["destinationTable"];
        let (dataset, table) = (
            destination["datasetId"].as_str().unwrap_or(""),
            destination["tableId"].as_str().unwrap_or(""),
        );
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            data.clone(),
        )
        .and_then(|b| b.build())
        .map_err(|e| {
            invalid(format!(
                "Error while reading data, error message: the Parquet file is not valid: {e}"
            ))
        })?;
        let batches: Vec<RecordBatch> = reader
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(format!("Error while reading data: {e}")))?;
        let Some(ds) = self.datasets.get_mut(dataset) else {
            return Err((
                "notFound".into(),
                format!("Not found: Dataset {PROJECT_ID}:{dataset}"),
            ));
        };
        let write = load["writeDisposition"].as_str().unwrap_or("WRITE_APPEND");
        let create = load["createDisposition"]
            .as_str()
            .unwrap_or("CREATE_IF_NEEDED");
        let incoming: SchemaRef = batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let existing = ds.tables.get(table).cloned();
        let table_entry = match existing {
            None if create == "CREATE_NEVER" => {
                return Err((
                    "notFound".into(),
                    format!("Not found: Table {PROJECT_ID}:{dataset}.{table}"),
                ));
            }
            None => Table {
                schema: incoming.clone(),
                batches: Vec::new(),
                created: now_ms(),
                modified: now_ms(),
            },
            Some(t) if write == "WRITE_EMPTY" && t.rows() > 0 => {
                return Err((
                    "duplicate".into(),
                    format!(
                        "Already Exists: Table {PROJECT_ID}:{dataset}.{table} has data and writeDisposition is WRITE_EMPTY"
                    ),
                ));
            }
            Some(t) => t,
        };
        let allow_addition = load["schemaUpdateOptions"]
            .as_array()
            .is_some_and(|options| options.iter().any(|o| o == "ALLOW_FIELD_ADDITION"));
        let mut table_entry = table_entry;
        if allow_addition {
            widen(&mut table_entry, &incoming).map_err(invalid)?;
        }
        let schema = table_entry.schema.clone();
        let batches = conform(&schema, batches, &format!("{PROJECT_ID}:{dataset}.{table}"))
            .map_err(invalid)?;
        let mut updated = table_entry;
        if write == "WRITE_TRUNCATE" || write == "WRITE_TRUNCATE_DATA" {
            updated.batches = batches;
        } else {
            updated.batches.extend(batches);
        }
        updated.modified = now_ms();
        ds.tables.insert(table.to_string(), updated);
        Ok(
            json!({ "load": { "inputFiles": "1", "inputFileBytes": data.len().to_string(), "outputRows": rows.to_string(), "badRecords": "0" } }),
        )
    }

    /// A DataFusion context holding every table, as `project.dataset.table`.
    pub(super) fn context(
        &self,
        default_dataset: Option<&str>,
    ) -> Result<SessionContext, (String, String)> {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(PROJECT_ID, default_dataset.unwrap_or("_none"));
        let ctx = SessionContext::new_with_config(config);
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let internal = |e: datafusion::error::DataFusionError| {
            ("internalError".to_string(), e.strip_backtrace())
        };
        for (name, ds) in &self.datasets {
            let schema = Arc::new(MemorySchemaProvider::new());
            for (table_name, table) in &ds.tables {
                let mem = MemTable::try_new(table.schema.clone(), vec![table.batches.clone()])
                    .map_err(internal)?;
                datafusion::catalog::SchemaProvider::register_table(
                    schema.as_ref(),
                    table_name.clone(),
                    Arc::new(mem),
                )
                .map_err(internal)?;
            }
            datafusion::catalog::CatalogProvider::register_schema(catalog.as_ref(), name, schema)
                .map_err(internal)?;
        }
        ctx.register_catalog(PROJECT_ID, catalog);
        Ok(ctx)
    }

    pub(super) async fn run_query_config(
        &self,
        config: &Value,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), (String, String)> {
        let sql = config["query"].as_str().unwrap_or("");
        if config["useLegacySql"].as_bool() != Some(false) {
            return Err(("invalidQuery".into(), legacy_message(sql)));
        }
        let default_dataset = config["defaultDataset"]["datasetId"].as_str();
        let ctx = self.context(default_dataset)?;
        googlesql::run(&ctx, sql)
            .await
            .map_err(|e| ("invalidQuery".to_string(), query_message(&e)))
    }
}

/// `schemaUpdateOptions: ALLOW_FIELD_ADDITION`: the incoming fields the table lacks are
/// added to it as NULLABLE columns, NULL in the rows it already holds.
pub(super) fn widen(table: &mut Table, incoming: &SchemaRef) -> Result<(), String> {
    let added: Vec<_> = incoming
        .fields()
        .iter()
        .filter(|f| table.schema.index_of(f.name()).is_err())
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let mut fields: Vec<_> = table
        .schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(added);
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let padded = conform(
        &schema,
        std::mem::take(&mut table.batches),
        "the widened table",
    )?;
    table.schema = schema;
    table.batches = padded;
    Ok(())
}

/// Orders incoming batches' columns as the table's and checks the types agree.
pub(super) fn conform(
    schema: &SchemaRef,
    batches: Vec<RecordBatch>,
    table: &str,
) -> Result<Vec<RecordBatch>, String> {
    batches
        .into_iter()
        .map(|batch| {
            let columns = schema
                .fields()
                .iter()
                .map(|field| {
                    let Ok(index) = batch.schema().index_of(field.name()) else {
                        return Ok(datafusion::arrow::array::new_null_array(field.data_type(), batch.num_rows()));
                    };
                    let column = batch.column(index).clone();
                    if column.data_type() == field.data_type() {
                        return Ok(column);
                    }
                    datafusion::arrow::compute::cast(&column, field.data_type()).map_err(|_| {
                        format!("Provided Schema does not match Table {table}. Field {} has changed type from {} to {}", field.name(), field.data_type(), column.data_type())
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            for extra in batch.schema().fields() {
                if schema.index_of(extra.name()).is_err() {
                    return Err(format!("Provided Schema does not match Table {table}. Cannot add fields (field: {})", extra.name()));
                }
            }
            RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
        })
        .collect()
}

fn legacy_message(sql: &str) -> String {
    let hint = "[Try using standard SQL (https://cloud.google.com/bigquery/docs/reference/standard-sql/enabling-standard-sql)]";
    match sql.find('`') {
        Some(_) => format!(
            "Invalid table name: {} {hint}.",
            sql.split('`')
                .nth(1)
                .map_or(String::new(), |t| format!("`{t}`"))
        ),
        None => format!(
            "Legacy SQL is not available in the sandbox; send useLegacySql: false to run GoogleSQL {hint}."
        ),
    }
}

fn query_message(error: &FrontEndError) -> String {
    match error {
        FrontEndError::Syntax(m) => format!("Syntax error: {m}"),
        other => other.to_string(),
    }
}

pub(super) fn job_response(state: &BigQueryState, id: &str) -> Response<Body> {
    match state.jobs.get(id) {
        Some(job) => json_response(StatusCode::OK, &job.resource),
        None => not_found(&format!("Job {PROJECT_ID}:US.{id}")),
    }
}

pub(super) async fn insert_job(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, project);
    let resource = match json_body(body.as_bytes()) {
        Ok(value) => value,
        Err(response) => return response,
    };
    let mut state = shared.bigquery.lock().await;
    match state.register(resource, None) {
        Ok(id) => job_response(&state, &id),
        Err(response) => response,
    }
}

pub(super) async fn get_job(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, job)): Path<(String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let mut state = shared.bigquery.lock().await;
    state.complete(&job).await;
    job_response(&state, &job)
}

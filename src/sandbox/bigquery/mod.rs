//! BigQuery v2 simulator (`/bigquery`), after `api-reference/bigquery.md`.
//!
//! Bearer tokens from the sandbox's OAuth endpoint; the project [`PROJECT_ID`]; datasets and
//! tables (get, insert with 409 on duplicates, list, delete); load jobs with Parquet data by
//! multipart or resumable (chunked, with `308 Resume Incomplete`) upload, applied atomically
//! when the job completes (on the first `jobs.get`), with write and create dispositions;
//! query jobs; client-chosen job ids (409 `duplicate` when reused); `jobs.query` with
//! `useLegacySql` defaulting to true as the real one does; `getQueryResults` paged by
//! `pageToken`. Queries run on the loaded data through the GoogleSQL front end on DataFusion.

pub mod convert;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{MemoryCatalogProvider, MemorySchemaProvider};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde_json::{Value, json};

use super::google::google_error;
use super::{Shared, json_response};
use crate::sql::googlesql::{self, FrontEndError};

/// The sandbox's project.
pub const PROJECT_ID: &str = super::google::PROJECT_ID;
const SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/bigquery",
    "https://www.googleapis.com/auth/bigquery.insertdata",
];
/// Rows per result page when the client does not say.
const DEFAULT_PAGE: usize = 10_000;
/// Resumable chunks other than the last must be multiples of this.
const CHUNK_GRANULE: usize = 262_144;

/// A stored table.
#[derive(Debug, Clone)]
struct Table {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    created: i64,
    modified: i64,
}

impl Table {
    fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

#[derive(Debug, Clone)]
struct Dataset {
    location: String,
    created: i64,
    tables: BTreeMap<String, Table>,
}

/// A job and, for queries, its result.
#[derive(Debug, Clone)]
struct Job {
    resource: Value,
    /// Load data waiting for the job to complete.
    pending: Option<Bytes>,
    result: Option<(SchemaRef, Vec<RecordBatch>)>,
}

/// Datasets, tables, jobs and upload sessions.
#[derive(Debug, Default)]
pub struct BigQueryState {
    datasets: BTreeMap<String, Dataset>,
    jobs: BTreeMap<String, Job>,
    uploads: BTreeMap<String, (Value, Vec<u8>)>,
    sequence: u64,
}

impl BigQueryState {
    /// Tables and row counts, for inspection.
    pub fn summary(&self) -> Value {
        let tables: BTreeMap<String, usize> = self
            .datasets
            .iter()
            .flat_map(|(d, ds)| {
                ds.tables
                    .iter()
                    .map(move |(t, table)| (format!("{d}.{t}"), table.rows()))
            })
            .collect();
        json!({ "project": PROJECT_ID, "tables": tables, "jobs": self.jobs.len() })
    }
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn bq_error(status: StatusCode, reason: &str, message: &str) -> Response<Body> {
    let name = match status.as_u16() {
        400 => "INVALID_ARGUMENT",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ALREADY_EXISTS",
        _ => "INTERNAL",
    };
    google_error(status, message, name, reason)
}

fn not_found(what: &str) -> Response<Body> {
    bq_error(
        StatusCode::NOT_FOUND,
        "notFound",
        &format!("Not found: {what}"),
    )
}

/// Routes under `/bigquery`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/bigquery/v2/projects/{project}/datasets",
            get(list_datasets).post(insert_dataset),
        )
        .route(
            "/bigquery/v2/projects/{project}/datasets/{dataset}",
            get(get_dataset),
        )
        .route(
            "/bigquery/v2/projects/{project}/datasets/{dataset}/tables",
            get(list_tables).post(insert_table),
        )
        .route(
            "/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}",
            get(get_table).delete(delete_table),
        )
        .route("/bigquery/v2/projects/{project}/jobs", post(insert_job))
        .route("/bigquery/v2/projects/{project}/jobs/{job}", get(get_job))
        .route("/bigquery/v2/projects/{project}/queries", post(query))
        .route(
            "/bigquery/v2/projects/{project}/queries/{job}",
            get(query_results),
        )
        .route(
            "/upload/bigquery/v2/projects/{project}/jobs",
            post(upload_job).put(upload_bytes),
        )
        .route(
            "/resumable/upload/bigquery/v2/projects/{project}/jobs",
            post(upload_job).put(upload_bytes),
        )
}

/// Checks the token and the project.
fn admit(shared: &Shared, headers: &HeaderMap, project: &str) -> Result<(), Response<Body>> {
    shared.google.check(headers, &SCOPES)?;
    if project != PROJECT_ID {
        return Err(not_found(&format!("Project {project}")));
    }
    Ok(())
}

macro_rules! admit {
    ($shared:expr, $headers:expr, $project:expr) => {
        if let Err(response) = admit(&$shared, &$headers, &$project) {
            return response;
        }
    };
}

fn dataset_json(id: &str, ds: &Dataset) -> Value {
    json!({
        "kind": "bigquery#dataset",
        "id": format!("{PROJECT_ID}:{id}"),
        "datasetReference": { "projectId": PROJECT_ID, "datasetId": id },
        "location": ds.location,
        "creationTime": ds.created.to_string(),
        "lastModifiedTime": ds.created.to_string(),
    })
}

async fn insert_dataset(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, project);
    let input: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(id) = input["datasetReference"]["datasetId"]
        .as_str()
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    else {
        return bq_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid dataset ID: use letters, numbers and underscores.",
        );
    };
    let mut state = shared.bigquery.lock().await;
    if state.datasets.contains_key(id) {
        return bq_error(
            StatusCode::CONFLICT,
            "duplicate",
            &format!("Already Exists: Dataset {PROJECT_ID}:{id}"),
        );
    }
    let ds = Dataset {
        location: input["location"].as_str().unwrap_or("US").to_string(),
        created: now_ms(),
        tables: BTreeMap::new(),
    };
    let json = dataset_json(id, &ds);
    state.datasets.insert(id.to_string(), ds);
    json_response(StatusCode::OK, &json)
}

async fn get_dataset(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset)): Path<(String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    match shared.bigquery.lock().await.datasets.get(&dataset) {
        Some(ds) => json_response(StatusCode::OK, &dataset_json(&dataset, ds)),
        None => not_found(&format!("Dataset {PROJECT_ID}:{dataset}")),
    }
}

async fn list_datasets(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let state = shared.bigquery.lock().await;
    let list: Vec<Value> = state
        .datasets
        .iter()
        .map(|(id, ds)| dataset_json(id, ds))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "kind": "bigquery#datasetList", "datasets": list }),
    )
}

fn table_json(dataset: &str, id: &str, table: &Table, location: &str) -> Value {
    let bytes: usize = table
        .batches
        .iter()
        .map(RecordBatch::get_array_memory_size)
        .sum();
    json!({
        "kind": "bigquery#table",
        "id": format!("{PROJECT_ID}:{dataset}.{id}"),
        "tableReference": { "projectId": PROJECT_ID, "datasetId": dataset, "tableId": id },
        "schema": convert::schema_to_json(&table.schema),
        "type": "TABLE",
        "numRows": table.rows().to_string(),
        "numBytes": bytes.to_string(),
        "creationTime": table.created.to_string(),
        "lastModifiedTime": table.modified.to_string(),
        "location": location,
    })
}

async fn insert_table(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset)): Path<(String, String)>,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, project);
    let input: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(id) = input["tableReference"]["tableId"]
        .as_str()
        .map(str::to_string)
    else {
        return bq_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "tableReference.tableId is required.",
        );
    };
    let schema = match convert::schema_from_json(&input["schema"]) {
        Ok(schema) => schema,
        Err(message) => return bq_error(StatusCode::BAD_REQUEST, "invalid", &message),
    };
    let mut state = shared.bigquery.lock().await;
    let Some(ds) = state.datasets.get_mut(&dataset) else {
        return not_found(&format!("Dataset {PROJECT_ID}:{dataset}"));
    };
    if ds.tables.contains_key(&id) {
        return bq_error(
            StatusCode::CONFLICT,
            "duplicate",
            &format!("Already Exists: Table {PROJECT_ID}:{dataset}.{id}"),
        );
    }
    let table = Table {
        schema: Arc::new(schema),
        batches: Vec::new(),
        created: now_ms(),
        modified: now_ms(),
    };
    let json = table_json(&dataset, &id, &table, &ds.location);
    ds.tables.insert(id, table);
    json_response(StatusCode::OK, &json)
}

async fn get_table(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset, table)): Path<(String, String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let state = shared.bigquery.lock().await;
    match state
        .datasets
        .get(&dataset)
        .and_then(|ds| ds.tables.get(&table).map(|t| (ds, t)))
    {
        Some((ds, t)) => json_response(
            StatusCode::OK,
            &table_json(&dataset, &table, t, &ds.location),
        ),
        None => not_found(&format!("Table {PROJECT_ID}:{dataset}.{table}")),
    }
}

async fn list_tables(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset)): Path<(String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let state = shared.bigquery.lock().await;
    let Some(ds) = state.datasets.get(&dataset) else {
        return not_found(&format!("Dataset {PROJECT_ID}:{dataset}"));
    };
    let tables: Vec<Value> = ds
        .tables
        .iter()
        .map(|(id, t)| table_json(&dataset, id, t, &ds.location))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "kind": "bigquery#tableList", "tables": tables, "totalItems": tables.len() }),
    )
}

async fn delete_table(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset, table)): Path<(String, String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let mut state = shared.bigquery.lock().await;
    match state
        .datasets
        .get_mut(&dataset)
        .and_then(|ds| ds.tables.remove(&table))
    {
        Some(_) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        None => not_found(&format!("Table {PROJECT_ID}:{dataset}.{table}")),
    }
}

impl BigQueryState {
    /// Registers a job under its client id (or a new one); 409 when the id is taken.
    fn register(
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
        resource["user_email"] = json!(super::google::CLIENT_EMAIL);
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

    fn finish(&mut self, id: &str, outcome: Result<Value, (String, String)>) {
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
    async fn complete(&mut self, id: &str) {
        let Some(job) = self.jobs.get(id).cloned() else {
            return;
        };
        if job.resource["status"]["state"] != "RUNNING" {
            return;
        }
        let config = &job.resource["configuration"];
        let outcome = if let Some(load) = config.get("load") {
            self.apply_load(load, job.pending.as_ref())
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

    fn apply_load(
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
    fn context(&self, default_dataset: Option<&str>) -> Result<SessionContext, (String, String)> {
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

    async fn run_query_config(
        &self,
        config: &Value,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), (String, String)> {
        let sql = config["query"].as_str().unwrap_or("");
        if config["useLegacySql"].as_bool() != Some(false) {
            return Err(("invalidQuery".into(), legacy_message(sql)));
        }
        let default_dataset = config["defaultDataset"]["datasetId"].as_str();
        let ctx = self.context(default_dataset)?;
        let batches = googlesql::run(&ctx, sql)
            .await
            .map_err(|e| ("invalidQuery".to_string(), query_message(&e)))?;
        let schema = batches
            .first()
            .map(|b| b.schema())
            .unwrap_or_else(|| Arc::new(Schema::empty()));
        Ok((schema, batches))
    }
}

/// Orders incoming batches' columns as the table's and checks the types agree.
fn conform(
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

/// Splits a `multipart/related` body into its parts' bodies.
fn multipart_parts(headers: &HeaderMap, body: &Bytes) -> Option<Vec<Bytes>> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let boundary = content_type
        .split("boundary=")
        .nth(1)?
        .trim_matches('"')
        .split(';')
        .next()?
        .to_string();
    let delimiter = format!("--{boundary}");
    let find = |from: usize, needle: &[u8]| {
        body.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at = find(0, delimiter.as_bytes())? + delimiter.len();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            break;
        }
        let headers_end = find(at, b"\r\n\r\n")
            .map(|p| (p, 4))
            .or_else(|| find(at, b"\n\n").map(|p| (p, 2)))?;
        let start = headers_end.0 + headers_end.1;
        let next = find(start, delimiter.as_bytes())?;
        let mut end = next;
        while end > start && matches!(body[end - 1], b'\n' | b'\r') {
            end -= 1;
        }
        parts.push(body.slice(start..end));
        at = next + delimiter.len();
    }
    Some(parts)
}

fn job_response(state: &BigQueryState, id: &str) -> Response<Body> {
    match state.jobs.get(id) {
        Some(job) => json_response(StatusCode::OK, &job.resource),
        None => not_found(&format!("Job {PROJECT_ID}:US.{id}")),
    }
}

async fn insert_job(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, project);
    let Ok(resource) = serde_json::from_str::<Value>(&body) else {
        return bq_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid JSON payload received.",
        );
    };
    let mut state = shared.bigquery.lock().await;
    match state.register(resource, None) {
        Ok(id) => job_response(&state, &id),
        Err(response) => response,
    }
}

async fn upload_job(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response<Body> {
    admit!(shared, headers, project);
    match query.get("uploadType").map(String::as_str) {
        Some("multipart") => {
            let Some(parts) = multipart_parts(&headers, &body).filter(|p| p.len() == 2) else {
                return bq_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "A multipart upload needs two parts: the job as JSON, then the data.",
                );
            };
            let Ok(resource) = serde_json::from_slice::<Value>(&parts[0]) else {
                return bq_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "The first part must be the job as JSON.",
                );
            };
            let mut state = shared.bigquery.lock().await;
            match state.register(resource, Some(parts[1].clone())) {
                Ok(id) => job_response(&state, &id),
                Err(response) => response,
            }
        }
        Some("resumable") => {
            let Ok(resource) = serde_json::from_slice::<Value>(&body) else {
                return bq_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    "The session request body must be the job as JSON.",
                );
            };
            let mut state = shared.bigquery.lock().await;
            state.sequence += 1;
            let upload_id = URL_SAFE_NO_PAD.encode(format!(
                "upload-{}-{}",
                shared.options.world.seed, state.sequence
            ));
            state
                .uploads
                .insert(upload_id.clone(), (resource, Vec::new()));
            let base = crate::sandbox::public_base(&headers);
            let location = format!(
                "{base}/bigquery/upload/bigquery/v2/projects/{PROJECT_ID}/jobs?uploadType=resumable&upload_id={upload_id}"
            );
            let mut response = Response::new(Body::empty());
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        _ => bq_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "uploadType must be multipart or resumable.",
        ),
    }
}

/// A `Content-Range` header: the byte range sent (absent for `*`) and the total size.
struct ContentRange {
    range: Option<(usize, usize)>,
    total: Option<usize>,
}

/// `Content-Range: bytes first-last/total` or `bytes */total`.
fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let text = headers
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?
        .strip_prefix("bytes ")?;
    let (range, total) = text.split_once('/')?;
    let total = total.parse().ok();
    let range = match range.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => None,
    };
    Some(ContentRange { range, total })
}

fn resume_incomplete(received: usize) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if received > 0
        && let Ok(value) = HeaderValue::from_str(&format!("bytes=0-{}", received - 1))
    {
        response.headers_mut().insert(header::RANGE, value);
    }
    response
}

async fn upload_bytes(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response<Body> {
    admit!(shared, headers, project);
    let Some(upload_id) = query.get("upload_id") else {
        return bq_error(StatusCode::BAD_REQUEST, "invalid", "upload_id is required.");
    };
    let mut state = shared.bigquery.lock().await;
    let Some((_, received)) = state.uploads.get_mut(upload_id) else {
        return bq_error(
            StatusCode::NOT_FOUND,
            "notFound",
            "The upload session does not exist or has expired; start a new one.",
        );
    };
    let ContentRange { range, total } = content_range(&headers).unwrap_or(ContentRange {
        range: None,
        total: Some(received.len() + body.len()),
    });
    if let Some((first, last)) = range {
        if first != received.len() || last + 1 != first + body.len() {
            return resume_incomplete(received.len());
        }
        let is_last = total == Some(last + 1);
        if !is_last && !body.len().is_multiple_of(CHUNK_GRANULE) {
            return bq_error(
                StatusCode::BAD_REQUEST,
                "invalid",
                "Every chunk but the last must be a multiple of 256 KiB.",
            );
        }
        received.extend_from_slice(&body);
    } else if !body.is_empty() {
        received.extend_from_slice(&body);
    }
    if total.is_none_or(|t| received.len() < t) {
        return resume_incomplete(received.len());
    }
    let Some((resource, data)) = state.uploads.remove(upload_id) else {
        return resume_incomplete(0);
    };
    match state.register(resource, Some(Bytes::from(data))) {
        Ok(id) => job_response(&state, &id),
        Err(response) => response,
    }
}

async fn get_job(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, job)): Path<(String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let mut state = shared.bigquery.lock().await;
    state.complete(&job).await;
    job_response(&state, &job)
}

/// A page token: the offset of the next row.
fn page_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn parse_page_token(token: &str) -> Option<usize> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    text.strip_prefix("offset:")?.parse().ok()
}

fn results_json(kind: &str, job: &Job, offset: usize, max: usize, int64_timestamps: bool) -> Value {
    let mut answer = json!({
        "kind": kind,
        "jobReference": job.resource["jobReference"],
        "jobComplete": job.resource["status"]["state"] == "DONE",
    });
    if let Some((schema, batches)) = &job.result {
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let merged = if batches.len() > 1 {
            concat_batches(schema, batches)
                .map(|b| vec![b])
                .unwrap_or_else(|_| batches.clone())
        } else {
            batches.clone()
        };
        answer["schema"] = convert::result_schema_json(schema);
        answer["totalRows"] = json!(total.to_string());
        answer["rows"] = Value::Array(convert::rows(&merged, offset, max, int64_timestamps));
        answer["totalBytesProcessed"] = json!("0");
        answer["cacheHit"] = json!(false);
        if offset + max < total {
            answer["pageToken"] = json!(page_token(offset + max));
        }
    }
    answer
}

async fn query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, project);
    let Ok(request) = serde_json::from_str::<Value>(&body) else {
        return bq_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid JSON payload received.",
        );
    };
    let mut state = shared.bigquery.lock().await;
    let mut config =
        json!({ "query": request["query"], "defaultDataset": request["defaultDataset"] });
    if let Some(legacy) = request.get("useLegacySql") {
        config["useLegacySql"] = legacy.clone();
    }
    // Errors in the statement come back as HTTP 400, before any job exists.
    if let Err((reason, message)) = state.run_query_config(&config).await {
        return bq_error(StatusCode::BAD_REQUEST, &reason, &message);
    }
    let resource = json!({ "jobReference": { "location": request["location"].as_str().unwrap_or("US") }, "configuration": { "query": config } });
    let id = match state.register(resource, None) {
        Ok(id) => id,
        Err(response) => return response,
    };
    state.complete(&id).await;
    let Some(job) = state.jobs.get(&id) else {
        return not_found(&format!("Job {PROJECT_ID}:US.{id}"));
    };
    let max = request["maxResults"]
        .as_u64()
        .map_or(DEFAULT_PAGE, |m| m as usize);
    let int64 = request["formatOptions"]["useInt64Timestamp"]
        .as_bool()
        .unwrap_or(false);
    json_response(
        StatusCode::OK,
        &results_json("bigquery#queryResponse", job, 0, max, int64),
    )
}

async fn query_results(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, job)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let mut state = shared.bigquery.lock().await;
    state.complete(&job).await;
    let Some(found) = state.jobs.get(&job) else {
        return not_found(&format!("Job {PROJECT_ID}:US.{job}"));
    };
    if let Some(error) = found.resource["status"].get("errorResult") {
        let message = error["message"].as_str().unwrap_or("the job failed");
        return bq_error(
            StatusCode::BAD_REQUEST,
            error["reason"].as_str().unwrap_or("invalid"),
            message,
        );
    }
    let offset = match (query.get("pageToken"), query.get("startIndex")) {
        (Some(token), _) => match parse_page_token(token) {
            Some(offset) => offset,
            None => return bq_error(StatusCode::BAD_REQUEST, "invalid", "Invalid page token."),
        },
        (None, Some(index)) => index.parse().unwrap_or(0),
        (None, None) => 0,
    };
    let max = query
        .get("maxResults")
        .and_then(|m| m.parse().ok())
        .unwrap_or(DEFAULT_PAGE);
    let int64 = query
        .get("formatOptions.useInt64Timestamp")
        .is_some_and(|v| v == "true");
    json_response(
        StatusCode::OK,
        &results_json(
            "bigquery#getQueryResultsResponse",
            found,
            offset,
            max,
            int64,
        ),
    )
}

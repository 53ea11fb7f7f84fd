//! BigQuery v2 simulator (`/bigquery`), after `api-reference/bigquery.md`.
//!
//! Bearer tokens from the sandbox's OAuth endpoint; the project [`PROJECT_ID`]; datasets and
//! tables (get, insert with 409 on duplicates, list, delete, additive schema patches); load jobs with Parquet data by
//! multipart or resumable (chunked, with `308 Resume Incomplete`) upload, applied atomically
//! when the job completes (on the first `jobs.get`), with write and create dispositions;
//! query jobs, `MERGE` included ([`merge`]); client-chosen job ids (409 `duplicate` when reused); `jobs.query` with
//! `useLegacySql` defaulting to true as the real one does; `getQueryResults` paged by
//! `pageToken`. Queries run on the loaded data through the GoogleSQL front end on DataFusion.
//!
//! This module holds the state, routes and checks; [`resources`] datasets and tables, [`jobs`]
//! job registration and completion, [`upload`] media uploads, [`queries`] query results, and
//! [`convert`] the schema and row encodings.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::{get, post};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::Shared;
use super::google::google_error;

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
/// The largest upload request taken: a multipart file or one resumable chunk. Google takes
/// far more; this is room for the 8 MiB chunks its guide recommends, and then some.
const UPLOAD_BODY_LIMIT: usize = 64 << 20;

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

/// A JSON request body, or Google's answer to one that is not JSON.
fn json_body(body: &[u8]) -> Result<Value, Response<Body>> {
    serde_json::from_slice(body).map_err(|_| {
        bq_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid JSON payload received.",
        )
    })
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
            get(resources::list_datasets).post(resources::insert_dataset),
        )
        .route(
            "/bigquery/v2/projects/{project}/datasets/{dataset}",
            get(resources::get_dataset),
        )
        .route(
            "/bigquery/v2/projects/{project}/datasets/{dataset}/tables",
            get(resources::list_tables).post(resources::insert_table),
        )
        .route(
            "/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}",
            get(resources::get_table)
                .patch(resources::patch_table)
                .delete(resources::delete_table),
        )
        .route(
            "/bigquery/v2/projects/{project}/jobs",
            post(jobs::insert_job),
        )
        .route(
            "/bigquery/v2/projects/{project}/jobs/{job}",
            get(jobs::get_job),
        )
        .route(
            "/bigquery/v2/projects/{project}/queries",
            post(queries::query),
        )
        .route(
            "/bigquery/v2/projects/{project}/queries/{job}",
            get(queries::query_results),
        )
        .route(
            "/upload/bigquery/v2/projects/{project}/jobs",
            post(upload::upload_job)
                .put(upload::upload_bytes)
                .layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
        )
        .route(
            "/resumable/upload/bigquery/v2/projects/{project}/jobs",
            post(upload::upload_job)
                .put(upload::upload_bytes)
                .layer(DefaultBodyLimit::max(UPLOAD_BODY_LIMIT)),
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

pub mod convert;
mod jobs;
mod merge;
mod queries;
mod resources;
mod schema;
mod upload;

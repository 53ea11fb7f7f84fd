//! The BigQuery REST calls the warehouse makes: datasets and tables, load jobs with Parquet
//! data (a small file in one multipart request, a larger one through a resumable session in
//! chunks, so memory holds one chunk whatever the file's size), query jobs, job polling, and
//! `jobs.query` with paged `getQueryResults` decoded into Arrow. Every job has a
//! client-chosen id: inserting one that exists answers 409, and the existing job is used
//! instead, so a retried request never loads twice.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use serde_json::{Value, json};
use url::Url;

use super::types::{self, DecodeError};
use crate::error::{Classify, ErrorKind};
use crate::http::google_auth::{GoogleAuthError, GoogleTokens};
use crate::http::{Auth, Body, Call, HttpClient, HttpError, RetryPolicy, Service};
use crate::warehouse::query::QueryResult;

/// The OAuth scope BigQuery needs.
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
/// Rows per result page asked for.
const PAGE_ROWS: u32 = 10_000;
/// Longest wait between two polls of a running job.
const MAX_POLL: Duration = Duration::from_secs(5);
/// Every chunk of a resumable upload but the last is a multiple of this (256 KiB).
const UPLOAD_GRANULE: u64 = 256 << 10;
/// Files larger than this are uploaded through a resumable session one chunk of this size
/// at a time; smaller ones in one multipart request.
pub const UPLOAD_CHUNK: u64 = 32 * UPLOAD_GRANULE;
/// New sessions a resumable upload may open after its session expired (404 or 410).
const UPLOAD_SESSIONS: u32 = 3;
/// Answers in a row that move a resumable upload no further before it gives up.
const UPLOAD_STALLS: u32 = 5;

/// Why a BigQuery call failed.
#[derive(Debug, thiserror::Error)]
pub enum BigQueryError {
    /// The request failed (after the client's retries).
    #[error("{0}")]
    Http(#[from] HttpError),
    /// No access token could be had.
    #[error("{0}")]
    Auth(#[from] GoogleAuthError),
    /// A job finished with `status.errorResult`.
    #[error("BigQuery job {job} ({what}) failed: {reason}: {message}")]
    Job {
        /// The job id.
        job: String,
        /// What the job did, naming its table.
        what: String,
        /// BigQuery's reason (`invalid`, `backendError`, ...).
        reason: String,
        /// BigQuery's message.
        message: String,
    },
    /// An answer did not have the documented shape.
    #[error("BigQuery {what}: {message}")]
    Protocol {
        /// What was being read.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// Result rows did not fit their schema.
    #[error("BigQuery query result: {0}")]
    Decode(#[from] DecodeError),
    /// The staged file to upload could not be read.
    #[error("cannot read the staged file {}: {source}", file.display())]
    Staging {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl Classify for BigQueryError {
    fn kind(&self) -> ErrorKind {
        match self {
            BigQueryError::Http(e) => e.kind(),
            BigQueryError::Auth(e) => e.kind(),
            BigQueryError::Job { reason, .. } => match reason.as_str() {
                "backendError" | "internalError" | "rateLimitExceeded" | "quotaExceeded"
                | "jobBackendError" | "jobInternalError" => ErrorKind::Transient,
                "invalidQuery" => ErrorKind::Config,
                _ => ErrorKind::Terminal,
            },
            BigQueryError::Protocol { .. } | BigQueryError::Decode(_) => ErrorKind::Bug,
            // The next run stages its rows again.
            BigQueryError::Staging { .. } => ErrorKind::Transient,
        }
    }
}

/// Whether a job was started now or had been started before under the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStart {
    /// Inserted by this call.
    New,
    /// The id existed (409): the earlier job stands.
    Existing,
}

/// A client for one project and location.
#[derive(Debug)]
pub struct BigQueryClient {
    http: HttpClient,
    tokens: GoogleTokens,
    root: Url,
    retry: RetryPolicy,
    /// How long `jobs.query` may wait for a result before answering "not complete yet".
    query_wait: Duration,
    /// Bytes per resumable upload chunk, and the largest file sent in one request.
    upload_chunk: u64,
    /// The project jobs run in and tables live in.
    pub project: String,
    /// Where datasets and jobs are (`US`, `EU`, a region).
    pub location: String,
}

/// The error for a staged `file` that could not be read.
fn unreadable(file: &Path) -> impl FnOnce(std::io::Error) -> BigQueryError + '_ {
    move |source| BigQueryError::Staging {
        file: file.to_path_buf(),
        source,
    }
}

/// A resumable upload's answer that does not follow the protocol.
fn upload_protocol(message: String) -> BigQueryError {
    BigQueryError::Protocol {
        what: "resumable upload".into(),
        message,
    }
}

fn is_status(err: &BigQueryError, status: u16) -> bool {
    matches!(err, BigQueryError::Http(e) if e.status == Some(status))
}

/// The bytes a resumable session holds, from a `308`'s `Range: bytes=0-N` (none when the
/// header is absent); `None` when the header says something else.
fn held_bytes(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    let Some(range) = headers.get(reqwest::header::RANGE) else {
        return Some(0);
    };
    let last: u64 = range
        .to_str()
        .ok()?
        .strip_prefix("bytes=0-")?
        .parse()
        .ok()?;
    Some(last + 1)
}

impl BigQueryClient {
    /// A client calling `root` (`https://bigquery.googleapis.com`, or the sandbox's
    /// `…/bigquery`) with tokens from `tokens`.
    pub fn new(
        http: HttpClient,
        tokens: GoogleTokens,
        root: Url,
        retry: RetryPolicy,
        project: String,
        location: String,
    ) -> Self {
        BigQueryClient {
            http,
            tokens,
            root,
            retry,
            query_wait: Duration::from_secs(10),
            upload_chunk: UPLOAD_CHUNK,
            project,
            location,
        }
    }

    /// Sets how long `jobs.query` may wait before answering that the job is still running
    /// (then its results are polled).
    pub fn with_query_wait(mut self, wait: Duration) -> Self {
        self.query_wait = wait;
        self
    }

    /// Sets the resumable upload's chunk size (rounded down to a multiple of 256 KiB, at
    /// least 256 KiB); files up to it go in one request.
    pub fn with_upload_chunk(mut self, bytes: u64) -> Self {
        self.upload_chunk = (bytes / UPLOAD_GRANULE).max(1) * UPLOAD_GRANULE;
        self
    }

    async fn service(&self, prefix: &str) -> Result<Service, BigQueryError> {
        let mut base_url = self.root.clone();
        let path = format!(
            "{}/{prefix}/projects/{}",
            base_url.path().trim_end_matches('/'),
            self.project
        );
        base_url.set_path(&path);
        Ok(Service {
            name: "BigQuery",
            base_url,
            auth: Auth::Bearer(self.tokens.token().await?),
            retry: self.retry,
            budget: None,
        })
    }

    async fn send(&self, prefix: &str, call: &Call) -> Result<Value, BigQueryError> {
        let service = self.service(prefix).await?;
        let response = self.http.send(&service, call).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        let text = response.text().await.map_err(|e| BigQueryError::Protocol {
            what: call.path.clone(),
            message: format!("reading the answer: {e}"),
        })?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| BigQueryError::Protocol {
            what: call.path.clone(),
            message: format!("the answer is not JSON: {e}"),
        })
    }

    async fn rest(&self, call: &Call) -> Result<Value, BigQueryError> {
        self.send("bigquery/v2", call).await
    }

    /// Creates the dataset unless it exists.
    pub async fn ensure_dataset(&self, dataset: &str) -> Result<(), BigQueryError> {
        let path = format!("/datasets/{dataset}");
        match self.rest(&Call::get(&path)).await {
            Ok(_) => return Ok(()),
            Err(e) if is_status(&e, 404) => {}
            Err(e) => return Err(e),
        }
        let body = json!({
            "datasetReference": { "projectId": self.project, "datasetId": dataset },
            "location": self.location,
        });
        match self
            .rest(&Call::post("/datasets", Body::Json(body)).idempotent())
            .await
        {
            Err(e) if is_status(&e, 409) => Ok(()),
            other => other.map(drop),
        }
    }

    /// A table's resource, or `None` when it does not exist.
    pub async fn table(&self, dataset: &str, table: &str) -> Result<Option<Value>, BigQueryError> {
        match self
            .rest(&Call::get(format!("/datasets/{dataset}/tables/{table}")))
            .await
        {
            Ok(resource) => Ok(Some(resource)),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a table with `schema` (a BigQuery `schema` object) unless it exists.
    pub async fn create_table(
        &self,
        dataset: &str,
        table: &str,
        schema: Value,
    ) -> Result<(), BigQueryError> {
        let body = json!({
            "tableReference": { "projectId": self.project, "datasetId": dataset, "tableId": table },
            "schema": schema,
        });
        let call = Call::post(format!("/datasets/{dataset}/tables"), Body::Json(body)).idempotent();
        match self.rest(&call).await {
            Err(e) if is_status(&e, 409) => Ok(()),
            other => other.map(drop),
        }
    }

    /// Replaces a table's schema (`tables.patch`); BigQuery accepts only additions.
    pub async fn patch_schema(
        &self,
        dataset: &str,
        table: &str,
        schema: Value,
    ) -> Result<(), BigQueryError> {
        let mut call = Call::post(
            format!("/datasets/{dataset}/tables/{table}"),
            Body::Json(json!({ "schema": schema })),
        )
        .idempotent();
        call.method = reqwest::Method::PATCH;
        self.rest(&call).await.map(drop)
    }

    /// Deletes a table; one already gone is fine.
    pub async fn delete_table(&self, dataset: &str, table: &str) -> Result<(), BigQueryError> {
        let mut call = Call::get(format!("/datasets/{dataset}/tables/{table}"));
        call.method = reqwest::Method::DELETE;
        match self.rest(&call).await {
            Err(e) if is_status(&e, 404) => Ok(()),
            other => other.map(drop),
        }
    }

    fn job_resource(&self, job_id: &str, configuration: Value) -> Value {
        json!({
            "jobReference": { "projectId": self.project, "jobId": job_id, "location": self.location },
            "configuration": configuration,
        })
    }

    /// Starts a load job of the Parquet file `file`: in one multipart request when it is
    /// at most one upload chunk, else through a resumable session, chunk by chunk.
    pub async fn start_load(
        &self,
        job_id: &str,
        load: Value,
        file: &Path,
    ) -> Result<JobStart, BigQueryError> {
        let size = std::fs::metadata(file).map_err(unreadable(file))?.len();
        let metadata = self.job_resource(job_id, json!({ "load": load }));
        let started = if size > self.upload_chunk {
            self.upload_resumable(&metadata, file, size).await
        } else {
            let data = std::fs::read(file).map_err(unreadable(file))?;
            self.upload_multipart(job_id, &metadata, data).await
        };
        match started {
            Ok(()) => Ok(JobStart::New),
            // The job id makes a repeated upload harmless: a second insert answers 409.
            Err(e) if is_status(&e, 409) => Ok(JobStart::Existing),
            Err(e) => Err(e),
        }
    }

    /// The job and its data in one `multipart/related` request.
    async fn upload_multipart(
        &self,
        job_id: &str,
        metadata: &Value,
        data: Vec<u8>,
    ) -> Result<(), BigQueryError> {
        let boundary = format!("mailroom_{job_id}");
        let mut body = Vec::with_capacity(data.len() + 1024);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{metadata}\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let call = Call::post(
            "/jobs",
            Body::Bytes {
                content_type: format!("multipart/related; boundary={boundary}"),
                bytes: body.into(),
            },
        )
        .query("uploadType", "multipart")
        .idempotent();
        // The job is polled by its id next: the answer's body is not needed.
        let service = self.service("upload/bigquery/v2").await?;
        self.http.send(&service, &call).await?;
        Ok(())
    }

    /// The job through a resumable session: the session is opened with the job, then the
    /// file goes in chunks, each `PUT` saying its byte range; the server's `308` says how
    /// much it holds, and the next chunk starts there. An expired session (404, 410) is
    /// replaced by a new one, from the first byte.
    async fn upload_resumable(
        &self,
        metadata: &Value,
        file: &Path,
        size: u64,
    ) -> Result<(), BigQueryError> {
        let handle = std::fs::File::open(file).map_err(unreadable(file))?;
        for _ in 0..UPLOAD_SESSIONS {
            let session = self.open_upload_session(metadata, size).await?;
            match self.upload_chunks(&session, &handle, file, size).await {
                Err(e) if is_status(&e, 404) || is_status(&e, 410) => {
                    tracing::warn!("BigQuery upload session expired; starting a new one");
                }
                other => return other,
            }
        }
        Err(upload_protocol(format!(
            "the upload session expired {UPLOAD_SESSIONS} times in a row"
        )))
    }

    /// Opens a resumable session for the job: the service to send the data to (the
    /// session's URL, on BigQuery's own host).
    async fn open_upload_session(
        &self,
        metadata: &Value,
        size: u64,
    ) -> Result<Service, BigQueryError> {
        let call = Call::post("/jobs", Body::Json(metadata.clone()))
            .query("uploadType", "resumable")
            .header("X-Upload-Content-Type", "application/octet-stream")
            .header("X-Upload-Content-Length", size)
            .idempotent();
        let mut service = self.service("upload/bigquery/v2").await?;
        let response = self.http.send(&service, &call).await?;
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| upload_protocol("the session answer has no Location".into()))?;
        let location = self
            .root
            .join(location)
            .map_err(|e| upload_protocol(format!("the session's Location is not a URL: {e}")))?;
        // The bearer token goes with the data: only to BigQuery's own host.
        if location.origin() != self.root.origin() {
            return Err(upload_protocol(format!(
                "the session's Location is on another host ({})",
                location.host_str().unwrap_or("none")
            )));
        }
        service.base_url = location;
        Ok(service)
    }

    /// Sends the file's bytes to an open session from wherever the session stands.
    async fn upload_chunks(
        &self,
        session: &Service,
        handle: &std::fs::File,
        file: &Path,
        size: u64,
    ) -> Result<(), BigQueryError> {
        let mut offset = 0;
        let mut stalls = 0;
        loop {
            let end = (offset + self.upload_chunk).min(size);
            let mut chunk = vec![0; (end - offset) as usize];
            handle
                .read_exact_at(&mut chunk, offset)
                .map_err(unreadable(file))?;
            // Sending a range again is harmless: the session answers with what it holds.
            let call = Call::put(
                "",
                Body::Bytes {
                    content_type: "application/octet-stream".into(),
                    bytes: chunk.into(),
                },
            )
            .header(
                "Content-Range",
                format!("bytes {offset}-{}/{size}", end - 1),
            )
            .answered_by(308);
            let response = self.http.send(session, &call).await?;
            if response.status().as_u16() != 308 {
                // The whole file is in: the job exists and is polled by its id next.
                return Ok(());
            }
            let held = held_bytes(response.headers())
                .ok_or_else(|| upload_protocol("a 308 answer's Range is not bytes=0-N".into()))?;
            if held > offset {
                stalls = 0;
            } else {
                stalls += 1;
                if stalls >= UPLOAD_STALLS {
                    return Err(upload_protocol(format!(
                        "the session stayed at {held} of {size} bytes for {UPLOAD_STALLS} chunks in a row"
                    )));
                }
            }
            offset = held.min(size);
        }
    }

    /// Starts a job without data (a query, a `MERGE`).
    pub async fn start_job(
        &self,
        job_id: &str,
        configuration: Value,
    ) -> Result<JobStart, BigQueryError> {
        let call = Call::post(
            "/jobs",
            Body::Json(self.job_resource(job_id, configuration)),
        )
        .idempotent();
        match self.rest(&call).await {
            Ok(_) => Ok(JobStart::New),
            Err(e) if is_status(&e, 409) => Ok(JobStart::Existing),
            Err(e) => Err(e),
        }
    }

    /// A job's resource, or `None` when no job has that id.
    pub async fn job(&self, job_id: &str) -> Result<Option<Value>, BigQueryError> {
        let call = Call::get(format!("/jobs/{job_id}")).query("location", &self.location);
        match self.rest(&call).await {
            Ok(job) => Ok(Some(job)),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Waits until the job is done; its resource, or its `errorResult` as an error naming
    /// `what` it did.
    pub async fn wait(&self, job_id: &str, what: &str) -> Result<Value, BigQueryError> {
        let mut pause = Duration::from_millis(100);
        loop {
            let job = self
                .job(job_id)
                .await?
                .ok_or_else(|| BigQueryError::Protocol {
                    what: format!("job {job_id} ({what})"),
                    message: "the job was started but BigQuery does not know it".into(),
                })?;
            if job["status"]["state"] == "DONE" {
                return match job["status"].get("errorResult") {
                    Some(error) => Err(job_error(job_id, what, error)),
                    None => Ok(job),
                };
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    /// Runs a read-only GoogleSQL query and collects every page of its result.
    pub async fn query(&self, sql: &str) -> Result<QueryResult, BigQueryError> {
        let body = json!({
            "query": sql,
            "useLegacySql": false,
            "location": self.location,
            "maxResults": PAGE_ROWS,
            "timeoutMs": self.query_wait.as_millis() as u64,
            "formatOptions": { "useInt64Timestamp": true },
        });
        // A read-only query may be asked again.
        let mut page = self
            .rest(&Call::post("/queries", Body::Json(body)).idempotent())
            .await?;
        let job_id = page["jobReference"]["jobId"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| BigQueryError::Protocol {
                what: "jobs.query".into(),
                message: "the answer has no jobReference.jobId".into(),
            })?;
        let mut pause = Duration::from_millis(100);
        while page["jobComplete"] != true {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL);
            page = self.results_page(&job_id, None).await?;
        }
        let schema: SchemaRef =
            std::sync::Arc::new(types::schema_from_json(&page["schema"]).map_err(|message| {
                BigQueryError::Protocol {
                    what: format!("job {job_id} result schema"),
                    message,
                }
            })?);
        let mut batches = Vec::new();
        // A failed query answers with an HTTP error; `errors` in a page are warnings.
        loop {
            let rows = page["rows"].as_array().map_or(&[][..], Vec::as_slice);
            if !rows.is_empty() {
                batches.push(types::rows_to_batch(&schema, rows)?);
            }
            let Some(token) = page["pageToken"].as_str().map(str::to_string) else {
                break;
            };
            page = self.results_page(&job_id, Some(&token)).await?;
        }
        Ok(QueryResult { schema, batches })
    }

    async fn results_page(
        &self,
        job_id: &str,
        token: Option<&str>,
    ) -> Result<Value, BigQueryError> {
        let mut call = Call::get(format!("/queries/{job_id}"))
            .query("location", &self.location)
            .query("maxResults", PAGE_ROWS)
            .query("timeoutMs", self.query_wait.as_millis())
            .query("formatOptions.useInt64Timestamp", "true");
        if let Some(token) = token {
            call = call.query("pageToken", token);
        }
        self.rest(&call).await
    }
}

fn job_error(job_id: &str, what: &str, error: &Value) -> BigQueryError {
    BigQueryError::Job {
        job: job_id.to_string(),
        what: what.to_string(),
        reason: error["reason"].as_str().unwrap_or("unknown").to_string(),
        message: error["message"]
            .as_str()
            .unwrap_or("no message")
            .to_string(),
    }
}

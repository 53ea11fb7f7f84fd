//! `jobs.query` and `getQueryResults`: results paged by `pageToken`, rows encoded as the
//! REST API does.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::*;
use crate::{Shared, json_response};

/// A page token: the offset of the next row.
fn page_token(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

fn parse_page_token(token: &str) -> Option<usize> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    text.strip_prefix("offset:")?.parse().ok()
}

/// A boolean request field as Google's JSON mapping reads it: `true`, or the strings
/// `"true"`/`"True"` some clients send for it.
fn is_true(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
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

pub(super) async fn query(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, project);
    let request = match json_body(body.as_bytes()) {
        Ok(value) => value,
        Err(response) => return response,
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
    // `timeoutMs: 0` asks not to wait: the answer says the job is still running, and the
    // client polls `getQueryResults` (which completes it), as with a slow query.
    if request["timeoutMs"].as_u64() != Some(0) {
        state.complete(&id).await;
    }
    let Some(job) = state.jobs.get(&id) else {
        return not_found(&format!("Job {PROJECT_ID}:US.{id}"));
    };
    let max = request["maxResults"]
        .as_u64()
        .map_or(DEFAULT_PAGE, |m| m as usize);
    let int64 = is_true(&request["formatOptions"]["useInt64Timestamp"]);
    json_response(
        StatusCode::OK,
        &results_json("bigquery#queryResponse", job, 0, max, int64),
    )
}

pub(super) async fn query_results(
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
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
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

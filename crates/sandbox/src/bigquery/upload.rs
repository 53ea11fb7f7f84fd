//! Load jobs with data: multipart uploads, and resumable sessions taking 256 KiB chunks
//! with `308 Resume Incomplete` progress.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::jobs::job_response;
use super::*;
use crate::Shared;

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

pub(super) async fn upload_job(
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
            let base = crate::public_base(&headers);
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

pub(super) async fn upload_bytes(
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

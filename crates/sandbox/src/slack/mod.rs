//! Slack simulator (`/slack/api` and `/slack/hooks`), after `api-reference/slack.md`.
//!
//! Web API methods take form-encoded or JSON bodies (JSON needs the `Authorization` header;
//! forms may carry `token`), always answer JSON with `ok`, and report application errors
//! as HTTP 200 with `ok: false` (`channel_not_found`, `not_in_channel`, `is_archived`,
//! `no_text`, `invalid_blocks`, `invalid_auth`, `not_authed`, ...). `chat.postMessage`
//! allows about one message per second per channel (short bursts), then 429 with
//! `Retry-After`. Files go through `files.getUploadURLExternal`, a POST of the bytes to the
//! returned URL, and `files.completeUploadExternal`. `conversations.list` and
//! `conversations.history` read the channels and their messages back. Incoming webhooks
//! answer `text/plain` `ok` or an error word.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value, json};

mod blocks;
mod channels;
mod history;

use super::{CREDENTIAL, Shared, json_response, lock};
use blocks::valid_blocks;
use channels::{channel, channel_by_id};

/// The incoming webhook's path under `/slack/hooks`, and the channel it posts to.
pub const WEBHOOK_PATH: &str = "/services/T0SANDBOX/B0SANDBOX/sandbox";
const WEBHOOK_CHANNEL: &str = "C0SANDBOX01";
/// Messages a channel may take in a burst; one more is restored each second.
const BURST: f64 = 3.0;

#[derive(Debug, Clone)]
struct Upload {
    id: String,
    filename: String,
    length: u64,
    bytes: Option<Bytes>,
    shared: bool,
}

/// What Slack requests changed.
#[derive(Debug, Default)]
pub struct SlackState {
    messages: Vec<Value>,
    files: Vec<Value>,
    uploads: Vec<Upload>,
    buckets: BTreeMap<String, (f64, Instant)>,
}

impl SlackState {
    fn next_ts(&self) -> String {
        let n = self.messages.len() as i64 + 1;
        // As Slack's: the posting time in seconds, then a part that orders messages posted
        // in the same second (here the message's number), so `oldest`/`latest` work as
        // they do against Slack.
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        format!("{seconds}.{:06}", n)
    }

    /// Takes one message from a channel's bucket; false when it is empty.
    fn admit(&mut self, key: &str) -> bool {
        let now = Instant::now();
        let (tokens, at) = self.buckets.entry(key.to_string()).or_insert((BURST, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64()).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Messages and files, for inspection.
    pub fn summary(&self) -> Value {
        json!({ "messages": self.messages, "files": self.files })
    }
}

/// Routes under `/slack`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/chat.postMessage", post(post_message))
        .route(
            "/api/conversations.list",
            post(channels::list).get(channels::list),
        )
        .route(
            "/api/conversations.history",
            post(history::history).get(history::history),
        )
        .route(
            "/api/files.getUploadURLExternal",
            post(get_upload_url).get(get_upload_url),
        )
        .route("/api/files.completeUploadExternal", post(complete_upload))
        .route("/upload/v1/{id}", post(upload_bytes))
        .route("/hooks/{*path}", post(webhook))
}

/// Slack's error shape for the fault plan: JSON for the Web API.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let code = if status == StatusCode::TOO_MANY_REQUESTS {
        "ratelimited"
    } else {
        "fatal_error"
    };
    json_response(
        status,
        &json!({ "ok": false, "error": code, "detail": message }),
    )
}

fn fail(code: &str) -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "ok": false, "error": code }))
}

fn rate_limited() -> Response<Body> {
    let mut response = json_response(
        StatusCode::TOO_MANY_REQUESTS,
        &json!({ "ok": false, "error": "ratelimited" }),
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1));
    response
}

/// A Web API request's arguments, from a form or a JSON body.
struct Call {
    args: Map<String, Value>,
    json: bool,
    charset: bool,
}

fn parse_call(
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Result<Call, Response<Body>> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut args: Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.clone())))
        .collect();
    let json = content_type.starts_with("application/json");
    if json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(map)) => args.extend(map),
            _ => return Err(fail("invalid_json")),
        }
    } else if !body.is_empty() {
        for (key, value) in url::form_urlencoded::parse(body) {
            // Structured arguments arrive as JSON strings in forms.
            let value = match key.as_ref() {
                "blocks" | "attachments" | "files" | "metadata" => {
                    serde_json::from_str(&value).unwrap_or_else(|_| Value::from(value.into_owned()))
                }
                _ => Value::from(value.into_owned()),
            };
            args.insert(key.into_owned(), value);
        }
    }
    let charset = content_type.to_lowercase().contains("charset=utf-8");
    Ok(Call {
        args,
        json,
        charset,
    })
}

/// Checks the bot token: the header always; the `token` argument for forms only.
fn authorize(headers: &HeaderMap, call: &Call) -> Result<(), Response<Body>> {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let form_token = if call.json {
        None
    } else {
        call.args.get("token").and_then(Value::as_str)
    };
    match header_token.or(form_token) {
        None => Err(fail("not_authed")),
        Some(CREDENTIAL) => Ok(()),
        Some(_) => Err(fail("invalid_auth")),
    }
}

/// A Web API call's arguments, once its token is accepted.
fn accept(
    headers: &HeaderMap,
    query: &BTreeMap<String, String>,
    body: &Bytes,
) -> Result<Call, Response<Body>> {
    let call = parse_call(headers, query, body)?;
    authorize(headers, &call)?;
    Ok(call)
}

async fn post_message(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response<Body> {
    let call = match accept(&headers, &query, &body) {
        Ok(call) => call,
        Err(response) => return response,
    };
    let args = &call.args;
    let channel_id = match channel(args.get("channel")) {
        Ok(id) => id,
        Err(code) => return fail(code),
    };
    let text = args.get("text").and_then(Value::as_str).unwrap_or("");
    let blocks = args.get("blocks").cloned();
    let markdown = args.get("markdown_text").and_then(Value::as_str);
    if markdown.is_some() && (!text.is_empty() || blocks.is_some()) {
        return fail("markdown_text_conflict");
    }
    if text.is_empty()
        && blocks.is_none()
        && markdown.is_none()
        && args.get("attachments").is_none()
    {
        return fail("no_text");
    }
    if blocks.as_ref().is_some_and(|b| !valid_blocks(b)) {
        return fail("invalid_blocks");
    }
    let metadata = args.get("metadata").cloned();
    let metadata_ok = metadata.as_ref().is_none_or(|m| {
        m["event_type"].as_str().is_some_and(|t| !t.is_empty())
            && m.get("event_payload").is_none_or(Value::is_object)
    });
    if !metadata_ok {
        return fail("invalid_metadata_format");
    }
    if text.chars().count() > 40_000 {
        return fail("msg_too_long");
    }
    let mut state = lock(&shared.slack);
    if !state.admit(channel_id) {
        return rate_limited();
    }
    let ts = state.next_ts();
    let message = json!({
        "type": "message",
        "subtype": "bot_message",
        "text": markdown.unwrap_or(text),
        "bot_id": "B0SANDBOX",
        "ts": ts,
        "blocks": blocks.clone().unwrap_or(json!([])),
    });
    let mut record = message.clone();
    record["channel"] = Value::from(channel_id);
    record["via"] = Value::from("chat.postMessage");
    if let Some(metadata) = metadata {
        record["metadata"] = metadata;
    }
    if let Some(thread) = args.get("thread_ts") {
        record["thread_ts"] = thread.clone();
    }
    state.messages.push(record);
    let mut answer = json!({ "ok": true, "channel": channel_id, "ts": ts, "message": message });
    if call.json && !call.charset {
        answer["response_metadata"] = json!({ "warnings": ["missing_charset"] });
        answer["warning"] = Value::from("missing_charset");
    }
    json_response(StatusCode::OK, &answer)
}

async fn get_upload_url(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response<Body> {
    let call = match accept(&headers, &query, &body) {
        Ok(call) => call,
        Err(response) => return response,
    };
    let Some(filename) = call
        .args
        .get("filename")
        .and_then(Value::as_str)
        .filter(|f| !f.is_empty())
    else {
        return fail("missing_argument");
    };
    let length = match call.args.get("length") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse::<u64>().ok(),
        _ => None,
    };
    let Some(length) = length.filter(|l| *l > 0) else {
        return fail("missing_argument");
    };
    if call
        .args
        .get("alt_txt")
        .and_then(Value::as_str)
        .is_some_and(|a| a.chars().count() > 1000)
    {
        return fail("alt_txt_too_large");
    }
    let mut state = lock(&shared.slack);
    let id = format!("F0SANDBOX{:03}", state.uploads.len() + 1);
    state.uploads.push(Upload {
        id: id.clone(),
        filename: filename.to_string(),
        length,
        bytes: None,
        shared: false,
    });
    let base = super::public_base(&headers);
    json_response(
        StatusCode::OK,
        &json!({ "ok": true, "upload_url": format!("{base}/slack/upload/v1/{id}"), "file_id": id }),
    )
}

/// The file part of a multipart body, or the raw body.
fn file_bytes(headers: &HeaderMap, body: Bytes) -> Bytes {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = content_type
        .split("boundary=")
        .nth(1)
        .map(|b| b.trim_matches('"').to_string())
    else {
        return body;
    };
    let delimiter = format!("--{boundary}");
    let text = body.as_ref();
    let find = |haystack: &[u8], needle: &[u8], from: usize| {
        haystack
            .get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    let Some(start) = find(text, delimiter.as_bytes(), 0) else {
        return body;
    };
    let Some(headers_end) = find(text, b"\r\n\r\n", start) else {
        return body;
    };
    let content_start = headers_end + 4;
    let end =
        find(text, format!("\r\n{delimiter}").as_bytes(), content_start).unwrap_or(text.len());
    body.slice(content_start..end)
}

async fn upload_bytes(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let bytes = file_bytes(&headers, body);
    let mut state = lock(&shared.slack);
    let Some(upload) = state.uploads.iter_mut().find(|u| u.id == id) else {
        let mut response = Response::new(Body::from("invalid upload url"));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return response;
    };
    let length = bytes.len();
    upload.bytes = Some(bytes);
    let mut response = Response::new(Body::from(format!("OK - {length}")));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

async fn complete_upload(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response<Body> {
    let call = match accept(&headers, &query, &body) {
        Ok(call) => call,
        Err(response) => return response,
    };
    let Some(files) = call
        .args
        .get("files")
        .and_then(Value::as_array)
        .filter(|f| !f.is_empty())
    else {
        return fail("invalid_arguments");
    };
    let target = call
        .args
        .get("channel_id")
        .or_else(|| call.args.get("channels"));
    let channel_id = match target {
        Some(value) => match channel_by_id(Some(value)) {
            Ok(id) => Some(id),
            Err(code) => return fail(code),
        },
        None => None,
    };
    let mut state = lock(&shared.slack);
    let ids: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            let id = f
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let title = f
                .get("title")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            (id, title)
        })
        .collect();
    if ids.iter().any(|(id, _)| {
        !state
            .uploads
            .iter()
            .any(|u| u.id == *id && u.bytes.is_some() && !u.shared)
    }) {
        return fail("file_not_found");
    }
    let comment = call
        .args
        .get("initial_comment")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut answered = Vec::new();
    let mut shared_files = Vec::new();
    for (id, title) in ids {
        let Some(upload) = state.uploads.iter_mut().find(|u| u.id == id) else {
            continue;
        };
        upload.shared = true;
        let bytes = upload.bytes.clone().unwrap_or_default();
        let title = if title.is_empty() {
            upload.filename.clone()
        } else {
            title
        };
        let mut record = json!({
            "id": id,
            "title": title,
            "filename": upload.filename,
            "declared_length": upload.length,
            "length": bytes.len(),
            "channel": channel_id,
            "initial_comment": comment,
            "blocks": call.args.get("blocks").cloned().unwrap_or(Value::Null),
        });
        // Text files are shown as text; anything else (a PNG) as base64.
        match std::str::from_utf8(&bytes) {
            Ok(text) => record["content"] = Value::from(text),
            Err(_) => record["content_base64"] = Value::from(BASE64.encode(&bytes)),
        }
        shared_files.push(json!({ "id": id, "title": title, "name": upload.filename }));
        state.files.push(record);
        answered.push(json!({ "id": id, "title": title }));
    }
    // Sharing into a channel posts a message there carrying the files, as Slack does.
    if let Some(channel_id) = channel_id {
        let ts = state.next_ts();
        state.messages.push(json!({
            "type": "message",
            "subtype": "file_share",
            "text": comment.clone().unwrap_or_default(),
            "bot_id": "B0SANDBOX",
            "ts": ts,
            "files": shared_files,
            "channel": channel_id,
            "via": "files.completeUploadExternal",
        }));
    }
    json_response(StatusCode::OK, &json!({ "ok": true, "files": answered }))
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(text.to_string()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

async fn webhook(
    State(shared): State<Arc<Shared>>,
    Path(path): Path<String>,
    body: Bytes,
) -> Response<Body> {
    if format!("/{path}") != WEBHOOK_PATH {
        return plain(StatusCode::NOT_FOUND, "no_service");
    }
    let Ok(Value::Object(payload)) = serde_json::from_slice::<Value>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "invalid_payload");
    };
    let text = payload.get("text").and_then(Value::as_str).unwrap_or("");
    let blocks = payload.get("blocks").cloned();
    if text.is_empty() && blocks.is_none() && payload.get("attachments").is_none() {
        return plain(StatusCode::BAD_REQUEST, "no_text");
    }
    if blocks.as_ref().is_some_and(|b| !valid_blocks(b)) {
        return plain(StatusCode::BAD_REQUEST, "invalid_blocks");
    }
    let mut state = lock(&shared.slack);
    if !state.admit(WEBHOOK_PATH) {
        let mut response = plain(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(1));
        return response;
    }
    let ts = state.next_ts();
    state.messages.push(json!({
        "type": "message",
        "text": text,
        "ts": ts,
        "blocks": blocks.unwrap_or(json!([])),
        "channel": WEBHOOK_CHANNEL,
        "via": "webhook",
    }));
    plain(StatusCode::OK, "ok")
}

//! `conversations.history`: a channel's messages newest first, between `oldest` and
//! `latest` (exclusive unless `inclusive`), `limit` at a time (default 100, at most 999)
//! with a `cursor` for the next page; message `metadata` only with `include_all_metadata`.
//! Messages posted by `chat.postMessage`, the webhook and file shares are all there.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::channels::channel_for_reading;
use super::{accept, fail};
use crate::{Shared, json_response, lock};

fn ts_value(message: &Value) -> f64 {
    message["ts"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0.0)
}

pub(super) fn flag(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

pub(super) fn number(value: Option<&Value>) -> Option<f64> {
    match value? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// The offset a `cursor` argument stands for (0 without one), or `invalid_cursor`.
pub(super) fn decode_cursor(arg: Option<&Value>) -> Result<usize, &'static str> {
    match arg.and_then(Value::as_str).filter(|c| !c.is_empty()) {
        None => Ok(0),
        Some(cursor) => STANDARD
            .decode(cursor)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|t| t.strip_prefix("offset:")?.parse::<usize>().ok())
            .ok_or("invalid_cursor"),
    }
}

/// The cursor of the page starting at `offset`.
pub(super) fn encode_cursor(offset: usize) -> String {
    STANDARD.encode(format!("offset:{offset}"))
}

pub(super) async fn history(
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
    let channel_id = match channel_for_reading(args.get("channel")) {
        Ok(id) => id,
        Err(code) => return fail(code),
    };
    let oldest = number(args.get("oldest")).unwrap_or(0.0);
    let latest = number(args.get("latest")).unwrap_or(f64::MAX);
    let inclusive = flag(args.get("inclusive"));
    let limit = number(args.get("limit")).map_or(100, |n| (n as usize).clamp(1, 999));
    let with_metadata = flag(args.get("include_all_metadata"));
    let offset = match decode_cursor(args.get("cursor")) {
        Ok(offset) => offset,
        Err(code) => return fail(code),
    };
    let state = lock(&shared.slack);
    let mut found: Vec<&Value> = state
        .messages
        .iter()
        .filter(|m| m["channel"] == channel_id && m.get("thread_ts").is_none())
        .filter(|m| {
            let ts = ts_value(m);
            let after = if inclusive { ts >= oldest } else { ts > oldest };
            let before = if inclusive { ts <= latest } else { ts < latest };
            after && before
        })
        .collect();
    found.sort_by(|a, b| ts_value(b).total_cmp(&ts_value(a)));
    let page: Vec<Value> = found
        .iter()
        .skip(offset)
        .take(limit)
        .map(|m| {
            let mut message = (*m).clone();
            if let Some(map) = message.as_object_mut() {
                map.remove("channel");
                map.remove("via");
                if !with_metadata {
                    map.remove("metadata");
                }
            }
            message
        })
        .collect();
    let has_more = offset + page.len() < found.len();
    let next = if has_more {
        encode_cursor(offset + page.len())
    } else {
        String::new()
    };
    json_response(
        StatusCode::OK,
        &json!({
            "ok": true,
            "messages": page,
            "has_more": has_more,
            "pin_count": 0,
            "response_metadata": { "next_cursor": next },
        }),
    )
}

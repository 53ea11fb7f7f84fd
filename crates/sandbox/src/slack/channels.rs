//! The workspace's channels, and `conversations.list`: the channels the app can see
//! (`types` of `public_channel` and `private_channel`; archived ones unless
//! `exclude_archived`), `limit` at a time (default 100, at most 1000) with a `cursor` for
//! the next page.
//!
//! As in Slack, `chat.postMessage` takes a channel by id or by name, while
//! `conversations.history` and `files.completeUploadExternal` (`channel_id`) take ids
//! only: a name there is `channel_not_found`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::history::{decode_cursor, encode_cursor, flag, number};
use super::{accept, fail};
use crate::{Shared, json_response};

/// The workspace's channels: id, name, archived, the app is a member, private.
const CHANNELS: [(&str, &str, bool, bool, bool); 5] = [
    ("C0SANDBOX01", "marketing", false, true, false),
    ("C0SANDBOX02", "loyalty", false, true, false),
    ("C0SANDBOX03", "old-campaigns", true, true, false),
    ("C0SANDBOX04", "leadership", false, false, false),
    ("G0SANDBOX05", "retention-team", false, true, true),
];

/// A channel by id or, when `by_name`, by name (with or without `#`): its id, whether it
/// is archived and whether the app is in it.
fn find(arg: Option<&Value>, by_name: bool) -> Result<(&'static str, bool, bool), &'static str> {
    let wanted = arg.and_then(Value::as_str).ok_or("channel_not_found")?;
    let name = wanted.trim_start_matches('#');
    CHANNELS
        .iter()
        .find(|(id, n, ..)| *id == wanted || (by_name && *n == name))
        .map(|(id, _, archived, member, _)| (*id, *archived, *member))
        .ok_or("channel_not_found")
}

fn writable(found: (&'static str, bool, bool)) -> Result<&'static str, &'static str> {
    let (id, archived, member) = found;
    if archived {
        return Err("is_archived");
    }
    if !member {
        return Err("not_in_channel");
    }
    Ok(id)
}

/// A channel to post a message to, by id or name, or the error code for it.
pub(super) fn channel(arg: Option<&Value>) -> Result<&'static str, &'static str> {
    writable(find(arg, true)?)
}

/// A channel to share files into, by id only, or the error code for it.
pub(super) fn channel_by_id(arg: Option<&Value>) -> Result<&'static str, &'static str> {
    writable(find(arg, false)?)
}

/// A channel to read the history of (archived ones too), by id only, or the error code.
pub(super) fn channel_for_reading(arg: Option<&Value>) -> Result<&'static str, &'static str> {
    let (id, _, member) = find(arg, false)?;
    if !member {
        return Err("not_in_channel");
    }
    Ok(id)
}

pub(super) async fn list(
    State(_shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<BTreeMap<String, String>>,
    body: Bytes,
) -> Response<Body> {
    let call = match accept(&headers, &query, &body) {
        Ok(call) => call,
        Err(response) => return response,
    };
    let args = &call.args;
    let types = args
        .get("types")
        .and_then(Value::as_str)
        .unwrap_or("public_channel");
    let (public, private) = (
        types.split(',').any(|t| t.trim() == "public_channel"),
        types.split(',').any(|t| t.trim() == "private_channel"),
    );
    let exclude_archived = flag(args.get("exclude_archived"));
    let limit = number(args.get("limit")).map_or(100, |n| (n as usize).clamp(1, 1000));
    let offset = match decode_cursor(args.get("cursor")) {
        Ok(offset) => offset,
        Err(code) => return fail(code),
    };
    let seen: Vec<Value> = CHANNELS
        .iter()
        .filter(|(.., archived, _, private_channel)| {
            (if *private_channel { private } else { public }) && !(exclude_archived && *archived)
        })
        .map(|(id, name, archived, member, private_channel)| {
            json!({
                "id": id,
                "name": name,
                "is_channel": !private_channel,
                "is_group": private_channel,
                "is_private": private_channel,
                "is_archived": archived,
                "is_member": member,
            })
        })
        .collect();
    let page: Vec<Value> = seen.iter().skip(offset).take(limit).cloned().collect();
    let next = if offset + page.len() < seen.len() {
        encode_cursor(offset + page.len())
    } else {
        String::new()
    };
    json_response(
        StatusCode::OK,
        &json!({ "ok": true, "channels": page, "response_metadata": { "next_cursor": next } }),
    )
}

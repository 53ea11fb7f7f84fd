//! Dotdigital's suppression list (`api-reference/dotdigital.md` §14): the seeded world's
//! unsubscribed people (reason `Unsubscribed`, on the day they left) and its complainers —
//! including those whose contact still says `Subscribed`, so a client that trusts the
//! status alone is caught — read incrementally by `suppressed-since/{date}` and
//! `unsubscribed-since/{date}`, oldest first, in `select`/`skip` pages. And
//! `resubscribe-with-no-challenge`, implemented and recorded so a test can assert it was
//! never called.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::{Shared, json_response, lock};

/// One seeded suppression: the contact, when and why.
struct Suppression {
    contact: Contact,
    date: DateTime<Utc>,
    reason: &'static str,
}

fn seeded(shared: &Shared) -> Vec<Suppression> {
    let world = &shared.world;
    let state = lock(&shared.dotdigital);
    let mut found: Vec<Suppression> = world
        .people()
        .filter_map(|person| {
            let subscriber = world.subscriber_of(&person)?;
            let contact = DotdigitalState::seeded(world, person.index)?;
            if state.resubscribed.contains(&contact.id) {
                return None;
            }
            if let Some(left) = subscriber.unsubscribed_at {
                let reason = if subscriber.complained {
                    "IspComplained"
                } else {
                    "Unsubscribed"
                };
                return Some(Suppression {
                    contact,
                    date: left,
                    reason,
                });
            }
            // Complained, yet still subscribed on the contact.
            subscriber.complained.then(|| Suppression {
                contact,
                date: subscriber.joined_at + chrono::Duration::days(30),
                reason: "IspComplained",
            })
        })
        .collect();
    found.sort_by_key(|s| (s.date, s.contact.id));
    found
}

/// `{date}` as Dotdigital takes it: a day, or a time with or without a zone (UTC).
fn since(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn listed(
    shared: &Shared,
    date: &str,
    only: Option<&str>,
    query: &BTreeMap<String, String>,
) -> Response<Body> {
    let Some(from) = since(date) else {
        return fail(
            StatusCode::BAD_REQUEST,
            &format!("{date} is not a date."),
            "ERROR_PARAMETER_INVALID",
        );
    };
    let items: Vec<Value> = seeded(shared)
        .into_iter()
        .filter(|s| s.date >= from && only.is_none_or(|r| r == s.reason))
        .map(|s| {
            json!({
                "suppressedContact": contacts::contact_json(&s.contact),
                "dateRemoved": dd_time(s.date),
                "reason": s.reason,
            })
        })
        .collect();
    page(items, query)
}

pub(super) async fn suppressed_since(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(date): Path<String>,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    listed(&shared, &date, None, &query)
}

pub(super) async fn unsubscribed_since(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(date): Path<String>,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    listed(&shared, &date, Some("Unsubscribed"), &query)
}

pub(super) async fn resubscribe(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let body = try_response!(parse_body(&body));
    let email = body
        .get("unsubscribedContact")
        .and_then(|c| c.get("email"))
        .or_else(|| body.get("email"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let mut state = lock(&shared.dotdigital);
    let Some(mut contact) = state.find(&shared.world, &email) else {
        return fail(StatusCode::NOT_FOUND, "Error:", "ERROR_CONTACT_NOT_FOUND");
    };
    contact.status = "Subscribed";
    state.resubscribed.insert(contact.id);
    state
        .resubscribes
        .push(json!({ "email": email, "request": body }));
    state.contacts.insert(contact.id, contact.clone());
    json_response(
        StatusCode::OK,
        &json!({ "contact": contacts::contact_json(&contact), "status": "ContactAdded" }),
    )
}

//! Dotdigital v2 programs and enrolments: `Processing` until polled, a fault report of
//! contacts not enrolled, and 20 enrolment calls per rolling hour.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use chrono::Utc;
use serde_json::{Value, json};

use super::*;
use crate::{Shared, json_response, lock};

pub(super) async fn list_programs(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let created = dd_time(shared.world.params.anchor - chrono::Duration::days(300));
    let programs: Vec<Value> = PROGRAMS
        .iter()
        .map(|(id, name, status)| json!({ "id": id, "name": name, "status": status, "dateCreated": created }))
        .collect();
    page(programs, &query)
}

pub(super) fn enrolment_json(e: &Enrolment) -> Value {
    json!({
        "id": e.id,
        "programId": e.program_id,
        "status": if e.polls == 0 { "Processing" } else { "Finished" },
        "dateCreated": e.created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "contacts": e.contacts,
        "addressBooks": e.address_books,
    })
}

fn ids(value: Option<&Value>) -> Option<Vec<u64>> {
    value?
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_u64).collect())
}

pub(super) async fn enrol(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let mut state = lock(&shared.dotdigital);
    let now = Instant::now();
    while state
        .enrolment_calls
        .front()
        .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(3600))
    {
        state.enrolment_calls.pop_front();
    }
    if state.enrolment_calls.len() >= ENROLMENT_ALLOWANCE {
        return fail(
            StatusCode::BAD_REQUEST,
            "You have exceeded the enrolment allowance of 20 per hour.",
            "ERROR_ENROLMENT_ALLOWANCE_EXCEEDED",
        );
    }
    state.enrolment_calls.push_back(now);
    let body = try_response!(parse_body(&body));
    let Some(program_id) = body.get("programId").and_then(Value::as_u64) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "programId is required.",
            "ERROR_ENROLMENT_INVALID",
        );
    };
    let Some((_, _, status)) = PROGRAMS.iter().find(|(id, _, _)| *id == program_id) else {
        return fail(StatusCode::NOT_FOUND, "Error:", "ERROR_PROGRAM_NOT_FOUND");
    };
    if *status != "Active" {
        return fail(
            StatusCode::BAD_REQUEST,
            "The program is not active.",
            "ERROR_PROGRAM_NOT_ACTIVE",
        );
    }
    let (contacts, books) = (ids(body.get("contacts")), ids(body.get("addressBooks")));
    let faults = match (&contacts, &books) {
        (Some(_), Some(_)) | (None, None) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "Send contacts or addressBooks, not both.",
                "ERROR_ENROLMENT_INVALID",
            );
        }
        (Some(list), None) if list.is_empty() => {
            return fail(
                StatusCode::BAD_REQUEST,
                "No contacts were specified.",
                "ERROR_CONTACTS_ARE_NOT_SPECIFIED",
            );
        }
        (Some(list), None) => list
            .iter()
            .copied()
            .filter(|id| state.find(&shared.world, &id.to_string()).is_none())
            .collect(),
        (None, Some(books)) => {
            if let Some(missing) = books.iter().find(|b| !state.books.contains_key(b)) {
                return fail(
                    StatusCode::NOT_FOUND,
                    &format!("Address book {missing}:"),
                    "ERROR_ADDRESSBOOK_NOT_FOUND",
                );
            }
            Vec::new()
        }
    };
    let sequence = state.enrolments.len() as u64 + 1;
    let enrolment = Enrolment {
        id: crate::guid(shared.options.world.seed, 29, sequence),
        program_id,
        contacts,
        address_books: books,
        created: Utc::now(),
        polls: 0,
        faults,
    };
    let json = enrolment_json(&enrolment);
    state.enrolments.push(enrolment);
    json_response(StatusCode::CREATED, &json)
}

pub(super) async fn get_enrolment(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let mut state = lock(&shared.dotdigital);
    // `GET /v2/programs/enrolments/{status}` lists the enrolments in that status.
    if id == "Processing" || id == "Finished" {
        let listed: Vec<Value> = state
            .enrolments
            .iter()
            .map(enrolment_json)
            .filter(|e| e["status"] == id.as_str())
            .collect();
        return page(listed, &query);
    }
    let Some(enrolment) = state.enrolments.iter_mut().find(|e| e.id == id) else {
        return fail(StatusCode::NOT_FOUND, "Error:", "ERROR_ENROLMENT_NOT_FOUND");
    };
    let json = enrolment_json(enrolment);
    enrolment.polls += 1;
    json_response(StatusCode::OK, &json)
}

pub(super) async fn enrolment_faults(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers);
    let state = lock(&shared.dotdigital);
    let Some(enrolment) = state.enrolments.iter().find(|e| e.id == id) else {
        return fail(StatusCode::NOT_FOUND, "Error:", "ERROR_ENROLMENT_NOT_FOUND");
    };
    if enrolment.polls == 0 {
        return fail(
            StatusCode::BAD_REQUEST,
            "The enrolment is still processing.",
            "ERROR_ENROLMENT_IS_PROCESSING",
        );
    }
    let mut csv = String::from("ContactId,Reason\n");
    for contact in &enrolment.faults {
        csv.push_str(&format!("{contact},ContactNotFound\n"));
    }
    let mut response = Response::new(Body::from(csv));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

//! Dotdigital v2 API simulator (`/dotdigital`), after `api-reference/dotdigital.md`.
//!
//! HTTP Basic auth with an API user; errors as `{"message": "... ERROR_TOKEN"}`; `select`
//! (at most 1000) and `skip` paging; campaigns, `with-activity-since` and per-campaign
//! summaries whose counters come in HTML/text/total triples with rates as fractions;
//! contacts upserted by e-mail with key/value data fields that must exist and match their
//! type (a write never changes a contact's subscription status); data fields; address
//! books; program enrolments that start `Processing`, finish after a poll, report contacts
//! they could not enrol, are listed by status, and are limited to 20 per rolling hour; the
//! suppression list read incrementally, and `resubscribe-with-no-challenge` (recorded).
//!
//! This module holds the state, routes, auth and paging; [`campaigns`], [`contacts`] (with
//! data fields and address books), [`programs`] and [`suppressions`] hold the handlers.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::Query;
use axum::http::{HeaderMap, Response, StatusCode, header};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{CREDENTIAL, Shared, json_response, lock};

/// Enrolment calls allowed per rolling hour.
const ENROLMENT_ALLOWANCE: usize = 20;
/// Seeded address books: every contact, and an empty one for win-back.
const NEWSLETTER_BOOK: u64 = 1001;
const WINBACK_BOOK: u64 = 1002;
/// Programs: one active, one not.
const PROGRAMS: [(u64, &str, &str); 2] = [
    (77012, "Win-back program", "Active"),
    (77013, "Old welcome", "Deactivated"),
];

/// A contact as it stands after API writes.
#[derive(Debug, Clone, PartialEq)]
struct Contact {
    id: u64,
    email: String,
    status: &'static str,
    fields: BTreeMap<String, Value>,
}

#[derive(Debug, Clone)]
struct Book {
    name: String,
    seeded: bool,
    added: BTreeSet<u64>,
    removed: BTreeSet<u64>,
}

#[derive(Debug, Clone)]
struct Enrolment {
    id: String,
    program_id: u64,
    contacts: Option<Vec<u64>>,
    address_books: Option<Vec<u64>>,
    created: DateTime<Utc>,
    polls: u32,
    faults: Vec<u64>,
}

/// What Dotdigital requests changed.
#[derive(Debug)]
pub struct DotdigitalState {
    contacts: BTreeMap<u64, Contact>,
    fields: BTreeMap<String, (&'static str, Value)>,
    books: BTreeMap<u64, Book>,
    enrolments: Vec<Enrolment>,
    enrolment_calls: VecDeque<Instant>,
    next_contact: u64,
    next_book: u64,
    /// Contacts resubscribed without their confirmation (never by a well-behaved client).
    resubscribed: BTreeSet<u64>,
    resubscribes: Vec<Value>,
}

impl Default for DotdigitalState {
    fn default() -> Self {
        let book = |name: &str, seeded| Book {
            name: name.to_string(),
            seeded,
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
        };
        let fields = ["FIRSTNAME", "LASTNAME", "FULLNAME", "GENDER", "POSTCODE"]
            .into_iter()
            .map(|name| (name.to_string(), ("String", Value::Null)))
            .collect();
        DotdigitalState {
            contacts: BTreeMap::new(),
            fields,
            books: BTreeMap::from([
                (NEWSLETTER_BOOK, book("Newsletter", true)),
                (WINBACK_BOOK, book("Win-back", false)),
            ]),
            enrolments: Vec::new(),
            enrolment_calls: VecDeque::new(),
            next_contact: 9_000_001,
            next_book: 2001,
            resubscribed: BTreeSet::new(),
            resubscribes: Vec::new(),
        }
    }
}

/// Routes under `/dotdigital`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/account-info", get(account_info))
        .route("/v2/campaigns", get(campaigns::list_campaigns))
        .route(
            "/v2/campaigns/with-activity-since/{date}",
            get(campaigns::campaigns_since),
        )
        .route("/v2/campaigns/{id}", get(campaigns::get_campaign))
        .route("/v2/campaigns/{id}/summary", get(campaigns::summary))
        .route(
            "/v2/contacts",
            axum::routing::post(contacts::upsert_contact),
        )
        .route(
            "/v2/contacts/suppressed-since/{date}",
            get(suppressions::suppressed_since),
        )
        .route(
            "/v2/contacts/unsubscribed-since/{date}",
            get(suppressions::unsubscribed_since),
        )
        .route(
            "/v2/contacts/resubscribe-with-no-challenge",
            axum::routing::post(suppressions::resubscribe),
        )
        .route(
            "/v2/contacts/{ident}",
            get(contacts::get_contact).put(contacts::update_contact),
        )
        .route(
            "/v2/data-fields",
            get(contacts::list_fields).post(contacts::create_field),
        )
        .route(
            "/v2/address-books",
            get(contacts::list_books).post(contacts::create_book),
        )
        .route("/v2/address-books/{id}", get(contacts::get_book))
        .route(
            "/v2/address-books/{id}/contacts",
            get(contacts::book_contacts).post(contacts::add_to_book),
        )
        .route("/v2/programs", get(programs::list_programs))
        .route(
            "/v2/programs/enrolments",
            axum::routing::post(programs::enrol),
        )
        .route("/v2/programs/enrolments/{id}", get(programs::get_enrolment))
        .route(
            "/v2/programs/enrolments/{id}/report-faults",
            get(programs::enrolment_faults),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "Error: ERROR_RESOURCE_NOT_FOUND") })
}

/// Dotdigital's v2 error body.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "message": message }))
}

fn fail(status: StatusCode, text: &str, token: &str) -> Response<Body> {
    error(status, &format!("{text} {token}"))
}

fn authorized(headers: &HeaderMap) -> Result<(), Response<Body>> {
    let expected = format!(
        "Basic {}",
        STANDARD.encode(format!("{CREDENTIAL}:{CREDENTIAL}"))
    );
    match headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        Some(given) if given == expected => Ok(()),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "Authorization has been denied for this request.",
        )),
    }
}

macro_rules! authorize {
    ($headers:expr) => {
        if let Err(response) = authorized(&$headers) {
            return response;
        }
    };
}

type Q = Query<BTreeMap<String, String>>;

/// `select` (1–1000, default 1000) and `skip` (default 0).
fn paging(query: &BTreeMap<String, String>) -> Result<(usize, usize), Response<Body>> {
    let number =
        |key: &str, default: usize| query.get(key).map_or(Ok(default), |v| v.parse::<usize>());
    match (number("select", 1000), number("skip", 0)) {
        (Ok(select), Ok(skip)) if (1..=1000).contains(&select) => Ok((select, skip)),
        _ => Err(fail(
            StatusCode::BAD_REQUEST,
            "select must be 1 to 1000 and skip a whole number.",
            "ERROR_PARAMETER_INVALID",
        )),
    }
}

fn page(items: Vec<Value>, query: &BTreeMap<String, String>) -> Response<Body> {
    match paging(query) {
        Ok((select, skip)) => json_response(
            StatusCode::OK,
            &items
                .into_iter()
                .skip(skip)
                .take(select)
                .collect::<Vec<_>>(),
        ),
        Err(response) => response,
    }
}

/// Dotdigital writes dates without a zone; they are UTC.
fn dd_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

async fn account_info(headers: HeaderMap) -> Response<Body> {
    authorize!(headers);
    let base = crate::public_base(&headers);
    json_response(
        StatusCode::OK,
        &json!({ "id": 500123, "properties": [
            { "name": "ApiEndpoint", "type": "String", "value": format!("{base}/dotdigital") },
            { "name": "Name", "type": "String", "value": "Trailhead Outfitters (sandbox)" },
        ]}),
    )
}

fn parse_body(body: &str) -> Result<Value, Response<Body>> {
    serde_json::from_str(body).map_err(|_| {
        fail(
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON.",
            "ERROR_BODY_DOES_NOT_MATCH_CONTENT_TYPE",
        )
    })
}

macro_rules! try_response {
    ($result:expr) => {
        match $result {
            Ok(value) => value,
            Err(response) => return response,
        }
    };
}

mod campaigns;
mod contacts;
mod programs;
mod suppressions;

/// Enrolments, address-book changes and changed contacts, for inspection.
pub fn summary_state(shared: &Shared) -> Value {
    let state = lock(&shared.dotdigital);
    let enrolments: Vec<Value> = state
        .enrolments
        .iter()
        .map(programs::enrolment_json)
        .collect();
    let books: BTreeMap<String, Value> = state
        .books
        .iter()
        .map(|(id, b)| {
            (
                id.to_string(),
                json!({ "name": b.name, "added": b.added, "removed": b.removed }),
            )
        })
        .collect();
    let contacts: Vec<Value> = state
        .contacts
        .values()
        .map(contacts::contact_json)
        .collect();
    json!({
        "enrolments": enrolments,
        "address_books": books,
        "changed_contacts": contacts,
        "resubscribes": state.resubscribes,
    })
}

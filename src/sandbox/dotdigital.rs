//! Dotdigital v2 API simulator (`/dotdigital`), after `api-reference/dotdigital.md`.
//!
//! HTTP Basic auth with an API user; errors as `{"message": "... ERROR_TOKEN"}`; `select`
//! (at most 1000) and `skip` paging; campaigns, `with-activity-since` and per-campaign
//! summaries whose counters come in HTML/text/total triples with rates as fractions;
//! contacts upserted by e-mail with key/value data fields that must exist and match their
//! type (a write never changes a contact's subscription status); data fields; address
//! books; program enrolments that start `Processing`, finish after a poll, report contacts
//! they could not enrol, and are limited to 20 per rolling hour.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::world::{Campaign, Platform, World};
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
        }
    }
}

/// Routes under `/dotdigital`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v2/account-info", get(account_info))
        .route("/v2/campaigns", get(list_campaigns))
        .route(
            "/v2/campaigns/with-activity-since/{date}",
            get(campaigns_since),
        )
        .route("/v2/campaigns/{id}", get(get_campaign))
        .route("/v2/campaigns/{id}/summary", get(summary))
        .route("/v2/contacts", axum::routing::post(upsert_contact))
        .route("/v2/contacts/{ident}", get(get_contact).put(update_contact))
        .route("/v2/data-fields", get(list_fields).post(create_field))
        .route("/v2/address-books", get(list_books).post(create_book))
        .route("/v2/address-books/{id}", get(get_book))
        .route(
            "/v2/address-books/{id}/contacts",
            get(book_contacts).post(add_to_book),
        )
        .route("/v2/programs", get(list_programs))
        .route("/v2/programs/enrolments", axum::routing::post(enrol))
        .route("/v2/programs/enrolments/{id}", get(get_enrolment))
        .route(
            "/v2/programs/enrolments/{id}/report-faults",
            get(enrolment_faults),
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
    let base = super::public_base(&headers);
    json_response(
        StatusCode::OK,
        &json!({ "id": 500123, "properties": [
            { "name": "ApiEndpoint", "type": "String", "value": format!("{base}/dotdigital") },
            { "name": "Name", "type": "String", "value": "Trailhead Outfitters (sandbox)" },
        ]}),
    )
}

fn campaign_json(c: &Campaign) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "subject": c.subject,
        "fromName": "Trailhead Outfitters",
        "fromAddress": { "id": 301, "email": "news@trailhead.example.com" },
        "htmlContent": format!("<html><body><h1>{}</h1></body></html>", c.subject),
        "plainTextContent": c.subject,
        "replyAction": "Unset",
        "replyToAddress": "",
        "customReplyToAddress": null,
        "isSplitTest": false,
        "status": "Sent",
    })
}

async fn list_campaigns(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let campaigns = shared.world.campaigns(Platform::Dotdigital);
    page(campaigns.iter().map(campaign_json).collect(), &query)
}

async fn campaigns_since(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(date): Path<String>,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let Some(since) = super::parse_time(&date) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "The date is not valid.",
            "ERROR_PARAMETER_INVALID",
        );
    };
    // Activity (opens, clicks) goes on for seven days after a send.
    let campaigns = shared.world.campaigns(Platform::Dotdigital);
    let active = campaigns
        .iter()
        .filter(|c| c.sent_at + chrono::Duration::days(7) > since);
    page(active.map(campaign_json).collect(), &query)
}

fn find_campaign(world: &World, id: &str) -> Option<Campaign> {
    world
        .campaigns(Platform::Dotdigital)
        .into_iter()
        .find(|c| c.id.to_string() == id)
}

async fn get_campaign(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers);
    match find_campaign(&shared.world, &id) {
        Some(c) => json_response(StatusCode::OK, &campaign_json(&c)),
        None => fail(StatusCode::NOT_FOUND, "Error:", "ERROR_CAMPAIGN_NOT_FOUND"),
    }
}

/// Splits a total into its HTML and plain-text parts (about 4% read the text version).
fn triple(total: u64) -> (u64, u64, u64) {
    let text = total / 25;
    (total - text, text, total)
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn summary_json(c: &Campaign) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("dateSent".into(), Value::from(dd_time(c.sent_at)));
    let hard = c.bounces * 6 / 10;
    let soft = c.bounces - hard;
    let replies = c.delivered / 2000;
    let counters: [(&str, &str, u64); 11] = [
        ("numSent", "numTextSent", c.sent),
        ("numDelivered", "numTextDelivered", c.delivered),
        ("numOpens", "numTextOpens", c.opens),
        ("numUniqueOpens", "numUniqueTextOpens", c.unique_opens),
        ("numClicks", "numTextClicks", c.clicks),
        ("numPageViews", "numTextPageViews", 0),
        ("numReplies", "numTextReplies", replies),
        ("numHardBounces", "numTextHardBounces", hard),
        ("numSoftBounces", "numTextSoftBounces", soft),
        ("numUnsubscribes", "numTextUnsubscribes", c.unsubscribes),
        ("numIspComplaints", "numTextIspComplaints", c.complaints),
    ];
    for (html_key, text_key, total) in counters {
        let (html, text, total) = triple(total);
        let total_key = html_key.replacen("num", "numTotal", 1);
        body.insert(html_key.into(), Value::from(html));
        body.insert(text_key.into(), Value::from(text));
        body.insert(total_key, Value::from(total));
    }
    body.insert("numRecipientsClicked".into(), Value::from(c.unique_clicks));
    for key in [
        "numForwards",
        "numTextForwards",
        "numEstimatedForwards",
        "numTextEstimatedForwards",
        "numTotalEstimatedForwards",
        "numMailBlocks",
        "numTextMailBlocks",
        "numTotalMailBlocks",
    ] {
        body.insert(key.into(), Value::from(0));
    }
    let rates = [
        ("percentageDelivered", ratio(c.delivered, c.sent)),
        ("percentageUniqueOpens", ratio(c.unique_opens, c.delivered)),
        ("percentageOpens", ratio(c.opens, c.delivered)),
        ("percentageUnsubscribes", ratio(c.unsubscribes, c.delivered)),
        ("percentageReplies", ratio(replies, c.delivered)),
        ("percentageHardBounces", ratio(hard, c.sent)),
        ("percentageSoftBounces", ratio(soft, c.delivered)),
        (
            "percentageUsersClicked",
            ratio(c.unique_clicks, c.delivered),
        ),
        ("percentageClicksToOpens", ratio(c.unique_clicks, c.opens)),
    ];
    for (key, value) in rates {
        body.insert(key.into(), Value::from(value));
    }
    body.insert(
        "revenue".into(),
        Value::from(format!(
            "{}.{:02}",
            c.revenue_cents / 100,
            c.revenue_cents % 100
        )),
    );
    body.insert("assistedRevenue".into(), Value::from("0.00"));
    body.insert(
        "conversionRate".into(),
        Value::from(ratio(c.orders, c.delivered)),
    );
    body.insert("numOrders".into(), Value::from(c.orders));
    body.insert("numAssistedOrders".into(), Value::from(0));
    Value::Object(body)
}

async fn summary(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers);
    match find_campaign(&shared.world, &id) {
        Some(c) => json_response(StatusCode::OK, &summary_json(&c)),
        None => fail(StatusCode::NOT_FOUND, "Error:", "ERROR_CAMPAIGN_NOT_FOUND"),
    }
}

impl DotdigitalState {
    /// The seeded contact of a person, if they are on the newsletter.
    fn seeded(world: &World, index: u32) -> Option<Contact> {
        let person = world.person(index);
        let subscriber = world.subscriber_of(&person)?;
        let status = match (subscriber.subscribed, subscriber.complained) {
            (true, _) => "Subscribed",
            (false, true) => "IspComplained",
            (false, false) => "Unsubscribed",
        };
        let fields = BTreeMap::from([
            ("FIRSTNAME".to_string(), Value::from(person.first_name)),
            ("LASTNAME".to_string(), Value::from(person.last_name)),
            (
                "FULLNAME".to_string(),
                Value::from(format!("{} {}", person.first_name, person.last_name)),
            ),
        ]);
        Some(Contact {
            id: 4_400_000 + u64::from(index),
            email: subscriber.email,
            status,
            fields,
        })
    }

    /// A contact by id or e-mail, as it stands now.
    fn find(&self, world: &World, ident: &str) -> Option<Contact> {
        let by_changes = self
            .contacts
            .values()
            .find(|c| c.id.to_string() == ident || c.email.eq_ignore_ascii_case(ident));
        if let Some(contact) = by_changes {
            return Some(contact.clone());
        }
        let index = match ident.parse::<u64>() {
            Ok(id) if id > 4_400_000 => u32::try_from(id - 4_400_000).ok()?,
            Ok(_) => return None,
            Err(_) => world.subscriber_person(ident)?,
        };
        if index == 0 || index > world.params.customers {
            return None;
        }
        Self::seeded(world, index)
    }

    fn book_members(&self, world: &World, book: &Book) -> Vec<Contact> {
        let seeded = book
            .seeded
            .then(|| {
                (1..=world.params.customers).filter_map(|i| Self::seeded(world, i).map(|c| c.id))
            })
            .into_iter()
            .flatten();
        let ids: BTreeSet<u64> = seeded
            .chain(book.added.iter().copied())
            .filter(|id| !book.removed.contains(id))
            .collect();
        ids.iter()
            .filter_map(|id| self.find(world, &id.to_string()))
            .collect()
    }

    /// Checks data fields exist and values fit their types.
    fn check_fields(&self, fields: &[Value]) -> Result<Vec<(String, Value)>, Response<Body>> {
        let mut checked = Vec::new();
        for field in fields {
            let key = field
                .get("key")
                .or_else(|| field.get("Key"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_uppercase();
            let value = field
                .get("value")
                .or_else(|| field.get("Value"))
                .cloned()
                .unwrap_or(Value::Null);
            let Some((kind, _)) = self.fields.get(&key) else {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    &format!("Data field {key} does not exist."),
                    "ERROR_DATAFIELD_NOTFOUND",
                ));
            };
            let fits = match (*kind, &value) {
                (_, Value::Null) => true,
                ("Numeric", v) => v.is_number(),
                ("Boolean", v) => v.is_boolean(),
                ("Date", Value::String(s)) => super::parse_time(s).is_some(),
                ("String", Value::String(s)) => s.chars().count() <= 255,
                _ => false,
            };
            if !fits {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    &format!("Value for {key} does not fit its type {kind}."),
                    "ERROR_PARAMETER_INVALID",
                ));
            }
            checked.push((key, value));
        }
        Ok(checked)
    }

    /// Creates or updates a contact by e-mail; never changes its status. Returns the
    /// contact and whether it was created.
    fn upsert(&mut self, world: &World, body: &Value) -> Result<(Contact, bool), Response<Body>> {
        let email = body
            .get("email")
            .or_else(|| body.get("Email"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        let valid = email.split('@').count() == 2
            && email.split('@').nth(1).is_some_and(|d| d.contains('.'));
        if !valid {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "Email is not a valid email address.",
                "ERROR_PARAMETER_INVALID",
            ));
        }
        let fields = body
            .get("dataFields")
            .or_else(|| body.get("DataFields"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let fields = self.check_fields(&fields)?;
        let (mut contact, created) = match self.find(world, &email) {
            Some(contact) => (contact, false),
            None => {
                let id = self.next_contact;
                self.next_contact += 1;
                (
                    Contact {
                        id,
                        email: email.to_lowercase(),
                        status: "Subscribed",
                        fields: BTreeMap::new(),
                    },
                    true,
                )
            }
        };
        contact.fields.extend(fields);
        self.contacts.insert(contact.id, contact.clone());
        Ok((contact, created))
    }
}

fn contact_json(c: &Contact) -> Value {
    let fields: Vec<Value> = c
        .fields
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    json!({ "id": c.id, "email": c.email, "optInType": "Single", "emailType": "Html", "dataFields": fields, "status": c.status })
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

async fn get_contact(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(ident): Path<String>,
) -> Response<Body> {
    authorize!(headers);
    match lock(&shared.dotdigital).find(&shared.world, &ident) {
        Some(c) => json_response(StatusCode::OK, &contact_json(&c)),
        None => fail(StatusCode::NOT_FOUND, "Error:", "ERROR_CONTACT_NOT_FOUND"),
    }
}

async fn upsert_contact(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let body = try_response!(parse_body(&body));
    let (contact, _) = try_response!(lock(&shared.dotdigital).upsert(&shared.world, &body));
    json_response(StatusCode::CREATED, &contact_json(&contact))
}

async fn update_contact(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let mut body = try_response!(parse_body(&body));
    let mut state = lock(&shared.dotdigital);
    let Some(existing) = state.find(&shared.world, &ident) else {
        return fail(StatusCode::NOT_FOUND, "Error:", "ERROR_CONTACT_NOT_FOUND");
    };
    if body.get("email").is_none() {
        body["email"] = Value::from(existing.email);
    }
    let (contact, _) = try_response!(state.upsert(&shared.world, &body));
    json_response(StatusCode::OK, &contact_json(&contact))
}

async fn list_fields(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response<Body> {
    authorize!(headers);
    let state = lock(&shared.dotdigital);
    let fields: Vec<Value> = state
        .fields
        .iter()
        .map(|(name, (kind, default))| json!({ "name": name, "type": kind, "visibility": "Private", "defaultValue": default }))
        .collect();
    json_response(StatusCode::OK, &fields)
}

async fn create_field(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let body = try_response!(parse_body(&body));
    let name = body
        .get("name")
        .or_else(|| body.get("Name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_uppercase();
    let kind = match body
        .get("type")
        .or_else(|| body.get("Type"))
        .and_then(Value::as_str)
    {
        Some("String") => "String",
        Some("Numeric") => "Numeric",
        Some("Date") => "Date",
        Some("Boolean") => "Boolean",
        _ => {
            return fail(
                StatusCode::BAD_REQUEST,
                "Type must be String, Numeric, Date or Boolean.",
                "ERROR_DATAFIELD_INVALID",
            );
        }
    };
    let valid_name = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return fail(
            StatusCode::BAD_REQUEST,
            "Name must be 1-20 letters, digits, - or _.",
            "ERROR_DATAFIELD_INVALID",
        );
    }
    let mut state = lock(&shared.dotdigital);
    if state.fields.contains_key(&name) {
        return fail(
            StatusCode::BAD_REQUEST,
            "Field already exists.",
            "ERROR_NON_UNIQUE_DATAFIELD",
        );
    }
    let default = body.get("defaultValue").cloned().unwrap_or(Value::Null);
    state.fields.insert(name.clone(), (kind, default.clone()));
    json_response(
        StatusCode::CREATED,
        &json!({ "name": name, "type": kind, "visibility": "Private", "defaultValue": default }),
    )
}

fn book_json(id: u64, book: &Book, contacts: usize) -> Value {
    json!({ "id": id, "name": book.name, "visibility": "Private", "contacts": contacts })
}

async fn list_books(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let state = lock(&shared.dotdigital);
    let books: Vec<Value> = state
        .books
        .iter()
        .map(|(id, book)| book_json(*id, book, state.book_members(&shared.world, book).len()))
        .collect();
    page(books, &query)
}

async fn create_book(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let body = try_response!(parse_body(&body));
    let name = body
        .get("name")
        .or_else(|| body.get("Name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if name.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "Name is required.",
            "ERROR_PARAMETER_INVALID",
        );
    }
    let mut state = lock(&shared.dotdigital);
    let reserved = ["test", "all contacts"].contains(&name.to_lowercase().as_str());
    if reserved
        || state
            .books
            .values()
            .any(|b| b.name.eq_ignore_ascii_case(&name))
    {
        return fail(
            StatusCode::BAD_REQUEST,
            "An address book with this name already exists.",
            "ERROR_ADDRESSBOOK_DUPLICATE",
        );
    }
    let id = state.next_book;
    state.next_book += 1;
    let book = Book {
        name,
        seeded: false,
        added: BTreeSet::new(),
        removed: BTreeSet::new(),
    };
    let json = book_json(id, &book, 0);
    state.books.insert(id, book);
    json_response(StatusCode::CREATED, &json)
}

async fn get_book(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response<Body> {
    authorize!(headers);
    let state = lock(&shared.dotdigital);
    match state.books.get(&id) {
        Some(book) => json_response(
            StatusCode::OK,
            &book_json(id, book, state.book_members(&shared.world, book).len()),
        ),
        None => fail(
            StatusCode::NOT_FOUND,
            "Error:",
            "ERROR_ADDRESSBOOK_NOT_FOUND",
        ),
    }
}

async fn book_contacts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let state = lock(&shared.dotdigital);
    let Some(book) = state.books.get(&id) else {
        return fail(
            StatusCode::NOT_FOUND,
            "Error:",
            "ERROR_ADDRESSBOOK_NOT_FOUND",
        );
    };
    let full = query
        .get("withFullData")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let contacts: Vec<Value> = state
        .book_members(&shared.world, book)
        .iter()
        .map(|c| {
            let mut json = contact_json(c);
            if !full {
                json["dataFields"] = Value::Null;
            }
            json
        })
        .collect();
    page(contacts, &query)
}

async fn add_to_book(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let body = try_response!(parse_body(&body));
    let mut state = lock(&shared.dotdigital);
    if !state.books.contains_key(&id) {
        return fail(
            StatusCode::NOT_FOUND,
            "Error:",
            "ERROR_ADDRESSBOOK_NOT_FOUND",
        );
    }
    let (contact, _) = try_response!(state.upsert(&shared.world, &body));
    if let Some(book) = state.books.get_mut(&id) {
        book.removed.remove(&contact.id);
        book.added.insert(contact.id);
    }
    json_response(StatusCode::OK, &contact_json(&contact))
}

async fn list_programs(
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

fn enrolment_json(e: &Enrolment) -> Value {
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

async fn enrol(
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
        id: super::guid(shared.options.world.seed, 29, sequence),
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

async fn get_enrolment(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers);
    let mut state = lock(&shared.dotdigital);
    let Some(enrolment) = state.enrolments.iter_mut().find(|e| e.id == id) else {
        return fail(StatusCode::NOT_FOUND, "Error:", "ERROR_ENROLMENT_NOT_FOUND");
    };
    let json = enrolment_json(enrolment);
    enrolment.polls += 1;
    json_response(StatusCode::OK, &json)
}

async fn enrolment_faults(
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

/// Enrolments, address-book changes and changed contacts, for inspection.
pub fn summary_state(shared: &Shared) -> Value {
    let state = lock(&shared.dotdigital);
    let enrolments: Vec<Value> = state.enrolments.iter().map(enrolment_json).collect();
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
    let contacts: Vec<Value> = state.contacts.values().map(contact_json).collect();
    json!({ "enrolments": enrolments, "address_books": books, "changed_contacts": contacts })
}

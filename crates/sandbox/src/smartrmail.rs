//! SmartrMail API v1 simulator (`/smartrmail/api/v1`), after `api-reference/smartrmail.md`.
//!
//! Auth by `Authorization: token …` (a `Bearer` scheme is tolerated) or `?token=`; lists
//! and list subscribers as bare JSON arrays with no pagination; subscribers addressed by
//! percent-encoded e-mail, phone or uid; bulk add that never updates an existing subscriber
//! (it only adds them to the list); `PUT` partial updates; unsubscribe and resubscribe;
//! `joined_at` as `YYYY-MM-DD HH:MM:SS UTC`; Rails-style 422 bodies. Campaigns follow the
//! project-defined contract of §7 (SmartrMail publishes no campaigns API).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Response, StatusCode, header};
use axum::routing::{delete, get, post};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::world::{Platform, Subscriber, World};
use super::{CREDENTIAL, Shared, json_response, lock};

/// A subscriber as it stands after API changes.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    id: String,
    email: String,
    phone: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    subscribed: bool,
    unsubscribed_at: Option<DateTime<Utc>>,
    complained: bool,
    delivered_count: u64,
    opened_count: u64,
    clicked_count: u64,
    joined_at: DateTime<Utc>,
    custom_fields: BTreeMap<String, (String, String)>,
}

/// Which seeded members a list starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seeded {
    /// Every seeded subscriber.
    Everyone,
    /// Seeded subscribers who are Silver or Gold in Smile.
    Vip,
    /// Nobody.
    Nobody,
}

#[derive(Debug, Clone)]
struct List {
    name: String,
    seeded: Seeded,
    added: BTreeSet<String>,
    removed: BTreeSet<String>,
}

/// What SmartrMail requests changed.
#[derive(Debug)]
pub struct SmartrMailState {
    /// Custom events received by the webhook.
    events: Vec<Value>,
    changed: BTreeMap<String, Record>,
    lists: BTreeMap<String, List>,
    field_ids: BTreeMap<String, u64>,
    next_subscriber: u64,
    next_list: u64,
}

impl Default for SmartrMailState {
    fn default() -> Self {
        let list = |name: &str, seeded| List {
            name: name.to_string(),
            seeded,
            added: BTreeSet::new(),
            removed: BTreeSet::new(),
        };
        SmartrMailState {
            events: Vec::new(),
            changed: BTreeMap::new(),
            lists: BTreeMap::from([
                (
                    "l_newsletter".to_string(),
                    list("Newsletter", Seeded::Everyone),
                ),
                ("l_vip".to_string(), list("VIP", Seeded::Vip)),
                ("l_winback".to_string(), list("Win-back", Seeded::Nobody)),
            ]),
            field_ids: BTreeMap::new(),
            next_subscriber: 1,
            next_list: 1,
        }
    }
}

/// Routes under `/smartrmail/api/v1`.
pub fn routes() -> Router<Arc<Shared>> {
    let api = Router::new()
        .route("/lists", get(list_lists).post(create_list))
        .route(
            "/lists/{list}",
            get(get_list).put(rename_list).delete(delete_list),
        )
        .route(
            "/lists/{list}/list_subscribers",
            get(list_members).post(add_members),
        )
        .route(
            "/lists/{list}/list_subscribers/{ident}",
            delete(remove_member),
        )
        .route(
            "/subscribers/{ident}",
            get(get_subscriber).put(update_subscriber),
        )
        .route("/subscribers/{ident}/unsubscribe", post(unsubscribe))
        .route("/subscribers/{ident}/resubscribe", post(resubscribe))
        .route("/campaigns", get(list_campaigns))
        .route("/campaigns/{id}", get(get_campaign))
        .fallback(fallback);
    Router::new()
        .nest("/api/v1", api)
        .route("/hooks/custom-events/{token}", post(custom_event))
}

/// The custom-event webhook (smartrmail.md §9): a JSON object with `email`, recorded; the
/// token in the URL is the credential.
async fn custom_event(
    State(shared): State<Arc<Shared>>,
    Path(token): Path<String>,
    body: String,
) -> Response<Body> {
    if token != CREDENTIAL {
        return not_found();
    }
    let Ok(Value::Object(event)) = serde_json::from_str::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "The request body is not a JSON object",
        );
    };
    if event.get("email").and_then(Value::as_str).is_none() {
        return invalid("email", "can't be blank");
    }
    let mut state = lock(&shared.smartrmail);
    state.events.push(Value::Object(event));
    json_response(StatusCode::OK, &json!({ "status": "accepted" }))
}

/// SmartrMail's error body (undocumented for 401/404/5xx; this shape is the sandbox's).
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "error": message }))
}

fn invalid(field: &str, message: &str) -> Response<Body> {
    json_response(
        StatusCode::UNPROCESSABLE_ENTITY,
        &json!({ field: [message] }),
    )
}

fn not_found() -> Response<Body> {
    error(StatusCode::NOT_FOUND, "Not found")
}

/// Checks the token in the header or the query string.
fn authorized(headers: &HeaderMap, query: &HashMap<String, String>) -> Result<(), Response<Body>> {
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("token ")
                .or_else(|| v.strip_prefix("Bearer "))
        });
    let token = header_token.or(query.get("token").map(String::as_str));
    if token == Some(CREDENTIAL) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "Invalid or missing API token",
        ))
    }
}

type Q = Query<HashMap<String, String>>;

macro_rules! authorize {
    ($headers:expr, $query:expr) => {
        if let Err(response) = authorized(&$headers, &$query) {
            return response;
        }
    };
}

fn smartrmail_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn seeded_record(world: &World, s: Subscriber) -> Record {
    let person = world.person(s.person);
    Record {
        id: s.id,
        email: s.email,
        phone: s.phone,
        first_name: Some(person.first_name.to_string()),
        last_name: Some(person.last_name.to_string()),
        subscribed: s.subscribed,
        unsubscribed_at: s.unsubscribed_at,
        complained: s.complained,
        delivered_count: s.delivered_count,
        opened_count: s.opened_count,
        clicked_count: s.clicked_count,
        joined_at: s.joined_at,
        custom_fields: BTreeMap::new(),
    }
}

impl SmartrMailState {
    /// The current record named by an id, e-mail or phone.
    fn find(&self, world: &World, ident: &str) -> Option<Record> {
        let changed = self.changed.values().find(|r| {
            r.id == ident
                || r.email.eq_ignore_ascii_case(ident)
                || r.phone.as_deref() == Some(ident)
        });
        if let Some(record) = changed {
            return Some(record.clone());
        }
        let index = world.subscriber_person(ident)?;
        let subscriber = world.subscriber_of(&world.person(index))?;
        Some(seeded_record(world, subscriber))
    }

    fn save(&mut self, record: Record) {
        self.changed.insert(record.id.clone(), record);
    }

    fn field_id(&mut self, name: &str) -> u64 {
        let next = self.field_ids.len() as u64 + 1;
        *self.field_ids.entry(name.to_string()).or_insert(next)
    }

    /// The current members of a list, in id order.
    fn members(&self, world: &World, list: &List) -> Vec<Record> {
        let seeded = world.people().filter_map(|p| {
            let subscriber = world.subscriber_of(&p)?;
            let included = match list.seeded {
                Seeded::Everyone => true,
                Seeded::Nobody => false,
                Seeded::Vip => world
                    .smile_customers_of(&p)
                    .first()
                    .and_then(|c| c.vip_tier)
                    .is_some_and(|t| t.milestone >= 1000),
            };
            included.then_some(subscriber.id)
        });
        let ids: BTreeSet<String> = seeded
            .chain(list.added.iter().cloned())
            .filter(|id| !list.removed.contains(id))
            .collect();
        ids.iter().filter_map(|id| self.find(world, id)).collect()
    }
}

fn subscriber_json(r: &Record) -> Value {
    let fields: Vec<Value> = r
        .custom_fields
        .iter()
        .map(|(name, (value, value_type))| json!({ "id": field_number(name), "field_name": name, "value": value, "value_type": value_type }))
        .collect();
    json!({
        "id": r.id,
        "email": r.email,
        "phone": r.phone,
        "first_name": r.first_name,
        "last_name": r.last_name,
        "status": if r.subscribed { "Subscribed" } else { "Unsubscribed" },
        "subscribed": r.subscribed,
        "unsubscribed_at": r.unsubscribed_at.map(smartrmail_time),
        "complained": r.complained,
        "delivered_count": r.delivered_count,
        "opened_count": r.opened_count,
        "clicked_count": r.clicked_count,
        "joined_at": smartrmail_time(r.joined_at),
        "custom_fields": fields,
    })
}

/// A stable number for a custom field name (its id on the wire).
fn field_number(name: &str) -> u64 {
    name.bytes()
        .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 100_000
}

fn list_json(id: &str, list: &List, members: usize) -> Value {
    json!({ "id": id, "name": list.name, "subscribers_count": members })
}

async fn fallback(headers: HeaderMap, Query(query): Q) -> Response<Body> {
    authorize!(headers, query);
    not_found()
}

async fn list_lists(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers, query);
    let state = lock(&shared.smartrmail);
    let lists: Vec<Value> = state
        .lists
        .iter()
        .map(|(id, list)| list_json(id, list, state.members(&shared.world, list).len()))
        .collect();
    json_response(StatusCode::OK, &lists)
}

/// The list name from a body, accepting the older `title` key too.
fn list_name(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let name = value
        .get("name")
        .or_else(|| value.get("title"))?
        .as_str()?
        .trim();
    (!name.is_empty()).then(|| name.to_string())
}

async fn create_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    body: String,
) -> Response<Body> {
    authorize!(headers, query);
    let Some(name) = list_name(&body) else {
        return invalid("name", "can't be blank");
    };
    let mut state = lock(&shared.smartrmail);
    let id = format!("l_new{}", state.next_list);
    state.next_list += 1;
    let list = List {
        name,
        seeded: Seeded::Nobody,
        added: BTreeSet::new(),
        removed: BTreeSet::new(),
    };
    let json = list_json(&id, &list, 0);
    state.lists.insert(id, list);
    json_response(StatusCode::CREATED, &json)
}

async fn get_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers, query);
    let state = lock(&shared.smartrmail);
    match state.lists.get(&id) {
        Some(list) => json_response(
            StatusCode::OK,
            &list_json(&id, list, state.members(&shared.world, list).len()),
        ),
        None => not_found(),
    }
}

async fn rename_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(id): Path<String>,
    body: String,
) -> Response<Body> {
    authorize!(headers, query);
    let Some(name) = list_name(&body) else {
        return invalid("name", "can't be blank");
    };
    let mut state = lock(&shared.smartrmail);
    let Some(list) = state.lists.get_mut(&id) else {
        return not_found();
    };
    list.name = name;
    let list = list.clone();
    json_response(
        StatusCode::OK,
        &list_json(&id, &list, state.members(&shared.world, &list).len()),
    )
}

async fn delete_list(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers, query);
    match lock(&shared.smartrmail).lists.remove(&id) {
        Some(_) => json_response(StatusCode::OK, &json!({})),
        None => not_found(),
    }
}

async fn list_members(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers, query);
    let state = lock(&shared.smartrmail);
    let Some(list) = state.lists.get(&id) else {
        return not_found();
    };
    let members: Vec<Value> = state
        .members(&shared.world, list)
        .iter()
        .map(subscriber_json)
        .collect();
    json_response(StatusCode::OK, &members)
}

/// Applies the writable fields of `input` to `record`.
fn apply_fields(
    state: &mut SmartrMailState,
    record: &mut Record,
    input: &Value,
    now: DateTime<Utc>,
) {
    let text = |key: &str| input.get(key).and_then(Value::as_str).map(str::to_string);
    if let Some(email) = text("email") {
        record.email = email;
    }
    for (key, slot) in [
        ("first_name", &mut record.first_name),
        ("last_name", &mut record.last_name),
        ("phone", &mut record.phone),
    ] {
        if let Some(value) = text(key) {
            *slot = Some(value);
        }
    }
    if let Some(subscribed) = input.get("subscribed").and_then(Value::as_bool) {
        if subscribed != record.subscribed {
            record.unsubscribed_at = (!subscribed).then_some(now);
        }
        record.subscribed = subscribed;
    }
    for field in input
        .get("custom_fields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(name) = field.get("field_name").and_then(Value::as_str) else {
            continue;
        };
        let value = match field.get("value") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        let value_type = field
            .get("value_type")
            .and_then(Value::as_str)
            .unwrap_or("text")
            .to_string();
        state.field_id(name);
        record
            .custom_fields
            .insert(name.to_string(), (value, value_type));
    }
}

async fn add_members(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(id): Path<String>,
    body: String,
) -> Response<Body> {
    authorize!(headers, query);
    let Ok(value) = serde_json::from_str::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON",
        );
    };
    let Some(inputs) = value.get("subscribers").and_then(Value::as_array) else {
        return invalid("subscribers", "can't be blank");
    };
    if inputs.iter().any(|s| {
        s.get("email").and_then(Value::as_str).is_none()
            && s.get("phone").and_then(Value::as_str).is_none()
    }) {
        return invalid("email", "can't be blank");
    }
    let mut state = lock(&shared.smartrmail);
    if !state.lists.contains_key(&id) {
        return not_found();
    }
    let now = Utc::now();
    let mut result = Vec::new();
    for input in inputs {
        let ident = input
            .get("email")
            .or_else(|| input.get("phone"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        // Existing subscribers are added to the list but never updated.
        let record = match state.find(&shared.world, ident) {
            Some(existing) => existing,
            None => {
                let mut record = Record {
                    id: format!("s_new{:06}", state.next_subscriber),
                    email: String::new(),
                    phone: None,
                    first_name: None,
                    last_name: None,
                    subscribed: true,
                    unsubscribed_at: None,
                    complained: false,
                    delivered_count: 0,
                    opened_count: 0,
                    clicked_count: 0,
                    joined_at: now,
                    custom_fields: BTreeMap::new(),
                };
                state.next_subscriber += 1;
                apply_fields(&mut state, &mut record, input, now);
                state.save(record.clone());
                record
            }
        };
        if let Some(list) = state.lists.get_mut(&id) {
            list.removed.remove(&record.id);
            list.added.insert(record.id.clone());
        }
        result.push(subscriber_json(&record));
    }
    json_response(StatusCode::CREATED, &result)
}

async fn remove_member(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path((id, ident)): Path<(String, String)>,
) -> Response<Body> {
    authorize!(headers, query);
    let mut state = lock(&shared.smartrmail);
    let Some(record) = state.find(&shared.world, &ident) else {
        return not_found();
    };
    let Some(list) = state.lists.get_mut(&id) else {
        return not_found();
    };
    list.added.remove(&record.id);
    list.removed.insert(record.id);
    json_response(StatusCode::OK, &json!({}))
}

async fn get_subscriber(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(ident): Path<String>,
) -> Response<Body> {
    authorize!(headers, query);
    match lock(&shared.smartrmail).find(&shared.world, &ident) {
        Some(record) => json_response(StatusCode::OK, &subscriber_json(&record)),
        None => not_found(),
    }
}

async fn update_subscriber(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(ident): Path<String>,
    body: String,
) -> Response<Body> {
    authorize!(headers, query);
    let Ok(input) = serde_json::from_str::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON",
        );
    };
    let mut state = lock(&shared.smartrmail);
    let Some(mut record) = state.find(&shared.world, &ident) else {
        return not_found();
    };
    apply_fields(&mut state, &mut record, &input, Utc::now());
    state.save(record.clone());
    json_response(StatusCode::OK, &subscriber_json(&record))
}

async fn set_subscribed(shared: &Shared, ident: &str, subscribed: bool) -> Response<Body> {
    let mut state = lock(&shared.smartrmail);
    let Some(mut record) = state.find(&shared.world, ident) else {
        return not_found();
    };
    apply_fields(
        &mut state,
        &mut record,
        &json!({ "subscribed": subscribed }),
        Utc::now(),
    );
    state.save(record.clone());
    json_response(StatusCode::OK, &subscriber_json(&record))
}

async fn unsubscribe(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(ident): Path<String>,
) -> Response<Body> {
    authorize!(headers, query);
    set_subscribed(&shared, &ident, false).await
}

async fn resubscribe(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(ident): Path<String>,
) -> Response<Body> {
    authorize!(headers, query);
    set_subscribed(&shared, &ident, true).await
}

fn campaign_json(c: &super::world::Campaign) -> Value {
    json!({
        "id": format!("c_{}", c.id),
        "name": c.name,
        "subject": c.subject,
        "status": "sent",
        "list_ids": ["l_newsletter"],
        "sent_at": smartrmail_time(c.sent_at),
        "stats": {
            "sent_count": c.sent,
            "delivered_count": c.delivered,
            "bounced_count": c.bounces,
            "opened_count": c.opens,
            "unique_opened_count": c.unique_opens,
            "clicked_count": c.clicks,
            "unique_clicked_count": c.unique_clicks,
            "unsubscribed_count": c.unsubscribes,
            "complained_count": c.complaints,
            "orders_count": c.orders,
            "revenue": format!("{}.{:02}", c.revenue_cents / 100, c.revenue_cents % 100),
            "currency": super::world::CURRENCY,
            "attribution_model": "last_open_5_days",
        }
    })
}

async fn list_campaigns(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers, query);
    let wanted = query.get("status").map(String::as_str).unwrap_or("sent");
    let campaigns: Vec<Value> = if wanted == "sent" {
        shared
            .world
            .campaigns(Platform::SmartrMail)
            .iter()
            .map(campaign_json)
            .collect()
    } else {
        Vec::new()
    };
    json_response(StatusCode::OK, &campaigns)
}

async fn get_campaign(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers, query);
    let campaigns = shared.world.campaigns(Platform::SmartrMail);
    match campaigns.iter().find(|c| format!("c_{}", c.id) == id) {
        Some(c) => json_response(StatusCode::OK, &campaign_json(c)),
        None => not_found(),
    }
}

/// List memberships and changed subscribers, for inspection.
pub fn summary(shared: &Shared) -> Value {
    let state = lock(&shared.smartrmail);
    let lists: BTreeMap<&String, Value> = state
        .lists
        .iter()
        .map(|(id, list)| {
            let added: Vec<&String> = list.added.iter().collect();
            let removed: Vec<&String> = list.removed.iter().collect();
            (
                id,
                json!({ "name": list.name, "added": added, "removed": removed }),
            )
        })
        .collect();
    let changed: Vec<Value> = state.changed.values().map(subscriber_json).collect();
    json!({
        "lists": lists,
        "changed_subscribers": changed,
        "custom_events": state.events,
    })
}

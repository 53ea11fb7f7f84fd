//! Iterable API simulator (`/iterable`), after `api-reference/iterable.md`.
//!
//! `Api-Key` (or `Api_Key`) auth; the `{msg, code, params}` envelope; campaigns paged by
//! `page`/`pageSize` with `sort`, `campaignState` filters, epoch-millisecond timestamps,
//! `nextPageUrl`/`previousPageUrl` built from the request and `totalCampaignsCount` only when
//! paginating; campaign metrics as CSV with the observed email headers (id first, then
//! alphabetical), counted over the `startDateTime`/`endDateTime` window, 10 requests per
//! minute; `users/update` that merges data fields and keeps each field's type project-wide;
//! `lists/subscribe` answering 200 with per-item failures; `workflows/triggerWorkflow`.
//! Per-endpoint limits answer 429 with `RateLimitExceeded`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::ratelimit::Windows;
use crate::world::{Campaign, Platform};
use crate::{CREDENTIAL, Shared, json_response, lock};

mod users;

/// Iterable's static lists in the sandbox project.
const LISTS: [(u64, &str); 2] = [(104233, "Newsletter"), (104234, "Win-back")];
/// Iterable's journeys that accept API entry.
const JOURNEYS: [(u64, &str); 2] = [(330012, "Win-back journey"), (330013, "VIP welcome")];

/// Per-endpoint windows.
#[derive(Debug)]
struct Limits {
    metrics: Windows,
    campaigns: Windows,
    users: Windows,
    profiles: Windows,
    lists: Windows,
}

/// What Iterable requests changed.
#[derive(Debug)]
pub struct IterableState {
    limits: Limits,
    users: BTreeMap<String, Map<String, Value>>,
    field_types: BTreeMap<String, &'static str>,
    subscriptions: Vec<Value>,
    triggers: Vec<Value>,
    subscription_updates: Vec<Value>,
}

impl Default for IterableState {
    fn default() -> Self {
        IterableState {
            limits: Limits {
                metrics: Windows::per(Some(10), Duration::from_secs(60)),
                campaigns: Windows::new(Some(100)),
                users: Windows::new(Some(500)),
                profiles: Windows::new(Some(100)),
                lists: Windows::new(Some(10)),
            },
            users: BTreeMap::new(),
            field_types: BTreeMap::new(),
            subscriptions: Vec::new(),
            triggers: Vec::new(),
            subscription_updates: Vec::new(),
        }
    }
}

/// Routes under `/iterable`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/campaigns", get(list_campaigns))
        .route("/api/campaigns/metrics", get(metrics))
        .route("/api/campaigns/{id}", get(get_campaign))
        .route("/api/lists", get(lists))
        .route("/api/lists/subscribe", post(subscribe))
        .route("/api/users/update", post(update_user))
        .route("/api/users/getByEmail", get(users::get_by_email))
        .route(
            "/api/users/updateSubscriptions",
            post(users::update_subscriptions),
        )
        .route("/api/users/{email}", get(users::get_user))
        .route("/api/workflows/triggerWorkflow", post(trigger_workflow))
        .fallback(|| async { envelope(StatusCode::NOT_FOUND, "NotFound", "Not found") })
}

/// Iterable's response envelope.
fn envelope(status: StatusCode, code: &str, msg: &str) -> Response<Body> {
    json_response(status, &json!({ "msg": msg, "code": code, "params": null }))
}

/// The error shape the fault plan uses for Iterable.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let code = match status {
        StatusCode::TOO_MANY_REQUESTS => "RateLimitExceeded",
        StatusCode::UNAUTHORIZED => "BadApiKey",
        _ => "GenericError",
    };
    envelope(status, code, message)
}

fn bad_params(msg: &str) -> Response<Body> {
    envelope(StatusCode::BAD_REQUEST, "BadParams", msg)
}

/// Checks the key and the endpoint's window.
fn admit(
    shared: &Shared,
    headers: &HeaderMap,
    window: fn(&mut Limits) -> &mut Windows,
) -> Result<(), Response<Body>> {
    let key = headers
        .get("Api-Key")
        .or_else(|| headers.get("Api_Key"))
        .and_then(|v| v.to_str().ok());
    if key != Some(CREDENTIAL) {
        return Err(envelope(
            StatusCode::UNAUTHORIZED,
            "BadApiKey",
            "Invalid API key",
        ));
    }
    let mut state = lock(&shared.iterable);
    if !window(&mut state.limits).admit(CREDENTIAL, Instant::now()) {
        return Err(envelope(
            StatusCode::TOO_MANY_REQUESTS,
            "RateLimitExceeded",
            "Rate limit exceeded for this endpoint",
        ));
    }
    Ok(())
}

macro_rules! admit {
    ($shared:expr, $headers:expr, $window:ident) => {
        if let Err(response) = admit(&$shared, &$headers, |l| &mut l.$window) {
            return response;
        }
    };
}

/// Query pairs in order, keeping repeated keys.
fn pairs(query: &Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn epoch_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// The project's campaigns: blasts that finished, and the newest two as running triggered
/// campaigns inside the win-back journey.
fn campaigns(shared: &Shared) -> Vec<(Campaign, &'static str)> {
    let all = shared.world.campaigns(Platform::Iterable);
    let n = all.len();
    all.into_iter()
        .enumerate()
        .map(|(i, c)| (c, if i + 2 >= n { "Running" } else { "Finished" }))
        .collect()
}

fn campaign_json(c: &Campaign, state: &str) -> Value {
    let created = c.sent_at - chrono::Duration::days(2);
    let mut value = json!({
        "id": c.id,
        "name": c.name,
        "type": if state == "Running" { "Triggered" } else { "Blast" },
        "campaignState": state,
        "messageMedium": "Email",
        "createdAt": epoch_ms(created),
        "updatedAt": epoch_ms(c.sent_at),
        "startAt": epoch_ms(c.sent_at),
        "createdByUserId": "crm@example.com",
        "updatedByUserId": "crm@example.com",
        "templateId": 9_000_000 + c.id % 100_000,
        "listIds": [LISTS[0].0],
        "suppressionListIds": [],
        "sendSize": c.sent,
        "labels": ["sandbox"],
    });
    if state == "Running" {
        value["workflowId"] = Value::from(JOURNEYS[0].0);
    } else {
        value["endedAt"] = Value::from(epoch_ms(c.sent_at + chrono::Duration::minutes(20)));
    }
    value
}

async fn list_campaigns(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response<Body> {
    admit!(shared, headers, campaigns);
    let params = pairs(&query);
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let states: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "campaignState")
        .map(|(_, v)| v.as_str())
        .collect();
    let mut list: Vec<Value> = campaigns(&shared)
        .iter()
        .filter(|(_, state)| states.is_empty() || states.contains(state))
        .map(|(c, state)| campaign_json(c, state))
        .collect();
    let sort = get("sort").unwrap_or("id");
    let (descending, field) = match sort.strip_prefix('-') {
        Some(field) => (true, field),
        None => (false, sort.trim_start_matches('+')),
    };
    if !["id", "name", "createdAt", "updatedAt", "startAt"].contains(&field) {
        return bad_params(&format!("Invalid sort field: {field}"));
    }
    list.sort_by(|a, b| {
        let (x, y) = (&a[field], &b[field]);
        let order = match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => x.as_str().unwrap_or("").cmp(y.as_str().unwrap_or("")),
        };
        if descending { order.reverse() } else { order }
    });
    if get("page").is_none() && get("pageSize").is_none() {
        return json_response(StatusCode::OK, &json!({ "campaigns": list }));
    }
    let page: usize = match get("page").unwrap_or("1").parse() {
        Ok(p) if p >= 1 => p,
        _ => return bad_params("page must be a positive integer"),
    };
    let page_size: usize = match get("pageSize").unwrap_or("20").parse() {
        Ok(s) if (1..=1000).contains(&s) => s,
        _ => return bad_params("pageSize must be between 1 and 1000"),
    };
    let total = list.len();
    let items: Vec<Value> = list
        .into_iter()
        .skip((page - 1) * page_size)
        .take(page_size)
        .collect();
    let base = super::public_base(&headers);
    let page_url = |p: usize| {
        let rest: String = params
            .iter()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| {
                format!(
                    "&{}={}",
                    k,
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .collect();
        format!("{base}/iterable/api/campaigns?page={p}{rest}")
    };
    let mut body = json!({ "campaigns": items, "totalCampaignsCount": total });
    if page * page_size < total {
        body["nextPageUrl"] = Value::from(page_url(page + 1));
    }
    if page > 1 {
        body["previousPageUrl"] = Value::from(page_url(page - 1));
    }
    json_response(StatusCode::OK, &body)
}

async fn get_campaign(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response<Body> {
    admit!(shared, headers, campaigns);
    let found = campaigns(&shared)
        .into_iter()
        .find(|(c, _)| c.id.to_string() == id);
    match found {
        Some((c, state)) => json_response(StatusCode::OK, &campaign_json(&c, state)),
        None => envelope(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("Campaign {id} not found"),
        ),
    }
}

/// The metric columns of an e-mail campaign, as Iterable writes them.
pub const METRIC_COLUMNS: [&str; 29] = [
    "id",
    "Average Custom Conversion Value",
    "Average Order Value",
    "Purchases / M (Email)",
    "Revenue",
    "Revenue / M (Email)",
    "Sum of Custom Conversions",
    "Total Complaints",
    "Total Custom Conversions",
    "Total Email Holdout",
    "Total Email Opens",
    "Total Email Opens (filtered)",
    "Total Email Send Skips",
    "Total Email Sends",
    "Total Emails Bounced",
    "Total Emails Clicked",
    "Total Emails Delivered",
    "Total Purchases",
    "Total Unsubscribes",
    "Unique Custom Conversions",
    "Unique Email Clicks",
    "Unique Email Opens",
    "Unique Email Opens (filtered)",
    "Unique Email Opens Or Clicks",
    "Unique Email Sends",
    "Unique Emails Bounced",
    "Unique Emails Delivered",
    "Unique Purchases",
    "Unique Unsubscribes",
];

/// The share of a campaign's events inside `[start, end)`: events fall evenly over the
/// seven days after the send.
fn share_in_window(
    sent_at: DateTime<Utc>,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
) -> f64 {
    let span = chrono::Duration::days(7);
    let from = start.map_or(sent_at, |s| s.max(sent_at));
    let to = end.map_or(sent_at + span, |e| e.min(sent_at + span));
    if to <= from {
        return 0.0;
    }
    (to - from).num_seconds() as f64 / span.num_seconds() as f64
}

fn metric_row(id: &str, c: Option<&Campaign>, share: f64) -> String {
    let Some(c) = c else {
        let zeros = vec!["0"; METRIC_COLUMNS.len() - 1].join(",");
        return format!("{id},{zeros}");
    };
    let n = |x: u64| ((x as f64) * share).round() as u64;
    let sends = n(c.sent);
    let purchases = n(c.orders);
    let revenue = (c.revenue_cents as f64 / 100.0) * share;
    let per_mille = |x: f64| {
        if sends == 0 {
            0.0
        } else {
            x / sends as f64 * 1000.0
        }
    };
    let money = |x: f64| format!("{}", (x * 100.0).round() / 100.0);
    let values: Vec<String> = vec![
        id.to_string(),
        "0".into(),
        money(if purchases == 0 {
            0.0
        } else {
            revenue / purchases as f64
        }),
        money(per_mille(purchases as f64)),
        money(revenue),
        money(per_mille(revenue)),
        "0".into(),
        n(c.complaints).to_string(),
        "0".into(),
        "0".into(),
        n(c.opens).to_string(),
        n(c.opens * 95 / 100).to_string(),
        n(c.sent / 100).to_string(),
        sends.to_string(),
        n(c.bounces).to_string(),
        n(c.clicks).to_string(),
        n(c.delivered).to_string(),
        purchases.to_string(),
        n(c.unsubscribes).to_string(),
        "0".into(),
        n(c.unique_clicks).to_string(),
        n(c.unique_opens).to_string(),
        n(c.unique_opens * 95 / 100).to_string(),
        n(c.unique_opens + c.unique_clicks / 10).to_string(),
        sends.to_string(),
        n(c.bounces).to_string(),
        n(c.delivered).to_string(),
        n(c.orders * 95 / 100).to_string(),
        n(c.unsubscribes).to_string(),
    ];
    values.join(",")
}

async fn metrics(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response<Body> {
    admit!(shared, headers, metrics);
    let params = pairs(&query);
    let ids: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "campaignId")
        .map(|(_, v)| v.as_str())
        .collect();
    if ids.is_empty() {
        return bad_params("campaignId is required");
    }
    if let Some(bad) = ids.iter().find(|id| id.parse::<u64>().is_err()) {
        return bad_params(&format!("campaignId must be an integer, got {bad}"));
    }
    let bound = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let mut window = [None, None];
    for (slot, key) in window.iter_mut().zip(["startDateTime", "endDateTime"]) {
        if let Some(text) = bound(key) {
            match super::parse_time(text) {
                Some(t) => *slot = Some(t),
                None => return bad_params(&format!("{key} is not a date: {text}")),
            }
        }
    }
    let all = shared.world.campaigns(Platform::Iterable);
    let mut csv = METRIC_COLUMNS.join(",");
    for id in ids {
        let campaign = all.iter().find(|c| c.id.to_string() == id);
        let share = campaign.map_or(0.0, |c| share_in_window(c.sent_at, window[0], window[1]));
        csv.push('\n');
        csv.push_str(&metric_row(id, campaign, share));
    }
    csv.push('\n');
    let mut response = Response::new(Body::from(csv));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn lists(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response<Body> {
    admit!(shared, headers, campaigns);
    let created = epoch_ms(shared.world.params.anchor - chrono::Duration::days(400));
    let lists: Vec<Value> = LISTS
        .iter()
        .map(|(id, name)| json!({ "id": id, "name": name, "listType": "Standard", "createdAt": created }))
        .collect();
    json_response(StatusCode::OK, &json!({ "lists": lists }))
}

fn parse_body(body: &str) -> Result<Value, Response<Body>> {
    serde_json::from_str(body).map_err(|err| {
        envelope(
            StatusCode::BAD_REQUEST,
            "BadJsonBody",
            &format!("Invalid JSON body: {err}"),
        )
    })
}

fn is_email(s: &str) -> bool {
    let mut parts = s.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(local), Some(domain), None) if !local.is_empty() && domain.contains('.'))
}

/// The project-wide type of a data field value.
fn field_type(value: &Value) -> &'static str {
    match value {
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "long",
        Value::Number(_) => "double",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::Null => "null",
    }
}

impl IterableState {
    /// Merges `fields` into a user's profile, refusing a field whose type differs from the
    /// type the project first saw for it.
    fn merge(&mut self, user: &str, fields: &Map<String, Value>) -> Result<(), String> {
        for (name, value) in fields {
            let kind = field_type(value);
            match self.field_types.get(name) {
                Some(known) if *known != kind && kind != "null" => {
                    return Err(format!(
                        "Field {name} has type {known} in this project, got {kind}"
                    ));
                }
                Some(_) => {}
                None if kind != "null" => {
                    self.field_types.insert(name.clone(), kind);
                }
                None => {}
            }
        }
        let profile = self.users.entry(user.to_string()).or_default();
        for (name, value) in fields {
            profile.insert(name.clone(), value.clone());
        }
        Ok(())
    }
}

/// The user a body names by `email` or `userId` (exactly one).
fn identifier(body: &Value) -> Result<String, Response<Body>> {
    match (
        body.get("email").and_then(Value::as_str),
        body.get("userId").and_then(Value::as_str),
    ) {
        (Some(_), Some(_)) => Err(bad_params("Send email or userId, not both")),
        (Some(email), None) if is_email(email) => Ok(email.to_lowercase()),
        (Some(email), None) => Err(envelope(
            StatusCode::BAD_REQUEST,
            "InvalidEmailAddressError",
            &format!("Invalid email: {email}"),
        )),
        (None, Some(user_id)) if !user_id.is_empty() => Ok(format!("userId:{user_id}")),
        _ => Err(bad_params("email or userId is required")),
    }
}

async fn update_user(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, users);
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let user = match identifier(&body) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let fields = body
        .get("dataFields")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    match lock(&shared.iterable).merge(&user, &fields) {
        Ok(()) => envelope(StatusCode::OK, "Success", ""),
        Err(msg) => envelope(
            StatusCode::BAD_REQUEST,
            "RequestFieldsTypesMismatched",
            &msg,
        ),
    }
}

async fn subscribe(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, lists);
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(list_id) = body.get("listId").and_then(Value::as_u64) else {
        return bad_params("listId is required");
    };
    if !LISTS.iter().any(|(id, _)| *id == list_id) {
        return bad_params(&format!(
            "List {list_id} does not exist or is not a static list"
        ));
    }
    let Some(subscribers) = body.get("subscribers").and_then(Value::as_array) else {
        return bad_params("subscribers is required");
    };
    let existing_only = body
        .get("updateExistingUsersOnly")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut state = lock(&shared.iterable);
    let (mut success, mut invalid, mut not_found, mut invalid_data) =
        (0, Vec::new(), Vec::new(), Vec::new());
    for subscriber in subscribers {
        let email = subscriber
            .get("email")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !is_email(email) {
            invalid.push(email.to_string());
            continue;
        }
        let user = email.to_lowercase();
        let known = users::exists(&shared.world, &state, &user);
        if existing_only && !known {
            not_found.push(email.to_string());
            continue;
        }
        let fields = subscriber
            .get("dataFields")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if state.merge(&user, &fields).is_err() {
            invalid_data.push(email.to_string());
            continue;
        }
        // An unknown e-mail becomes a profile in this e-mail-based project (§14).
        let lists = users::profile(&shared.world, &state, &user)
            .and_then(|p| p["dataFields"]["emailListIds"].as_array().cloned())
            .unwrap_or_default();
        let mut lists: Vec<Value> = lists;
        if !lists.contains(&Value::from(list_id)) {
            lists.push(Value::from(list_id));
        }
        state
            .users
            .entry(user.clone())
            .or_default()
            .insert("emailListIds".into(), Value::Array(lists));
        state
            .subscriptions
            .push(json!({ "listId": list_id, "email": user, "created": !known }));
        success += 1;
    }
    let fail = invalid.len() + not_found.len() + invalid_data.len();
    json_response(
        StatusCode::OK,
        &json!({
            "successCount": success,
            "failCount": fail,
            "invalidEmails": invalid,
            "invalidUserIds": [],
            "failedUpdates": {
                "invalidEmails": invalid, "invalidUserIds": [], "notFoundEmails": not_found, "notFoundUserIds": [],
                "forgottenEmails": [], "forgottenUserIds": [], "conflictEmails": [], "conflictUserIds": [],
                "invalidDataEmails": invalid_data, "invalidDataUserIds": []
            },
            "filteredOutFields": [],
            "createdFields": []
        }),
    )
}

async fn trigger_workflow(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, |l| &mut l.users) {
        return response;
    }
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(workflow_id) = body.get("workflowId").and_then(Value::as_u64) else {
        return bad_params("workflowId is required");
    };
    if !JOURNEYS.iter().any(|(id, _)| *id == workflow_id) {
        return bad_params(&format!(
            "Workflow {workflow_id} does not exist or does not accept API entry"
        ));
    }
    let target = match body.get("listId").and_then(Value::as_u64) {
        Some(list_id) => json!({ "listId": list_id }),
        None => match identifier(&body) {
            Ok(user) => json!({ "email": user }),
            Err(response) => return response,
        },
    };
    let mut trigger = json!({ "workflowId": workflow_id, "dataFields": body.get("dataFields").cloned().unwrap_or(json!({})) });
    if let (Some(t), Some(target)) = (trigger.as_object_mut(), target.as_object()) {
        t.extend(target.clone());
    }
    lock(&shared.iterable).triggers.push(trigger);
    envelope(StatusCode::OK, "Success", "")
}

/// Workflow triggers, list subscriptions and user profiles, for inspection.
pub fn summary(shared: &Shared) -> Value {
    let state = lock(&shared.iterable);
    json!({
        "workflow_triggers": state.triggers,
        "list_subscriptions": state.subscriptions,
        "subscription_updates": state.subscription_updates,
        "users": state.users,
    })
}

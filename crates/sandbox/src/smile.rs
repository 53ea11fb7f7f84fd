//! Smile.io REST v1 simulator (`/smile/v1`), after `api-reference/smile.md`.
//!
//! Bearer auth; 10 requests per second per token, then 429 until the window resets;
//! customers newest first (id descending) with opaque cursors, `limit` 1–250 (default 50),
//! filters `email` (may match several records), `state` and `updated_at_min`, and
//! `include=vip_status,vip_status.vip_tier,vip_status.next_vip_tier`; VIP tiers by milestone
//! without pagination; points transactions (list, get, create — which moves the balance and
//! refuses to go negative with 422). Errors are `{"error": {"message", "request_id"}}`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Response, StatusCode, header};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Datelike, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use super::ratelimit::Windows;
use super::world::{PointsTransaction, SmileCustomer, VIP_TIERS, VipTier, World};
use super::{CREDENTIAL, Shared, json_response, lock};

/// What Smile requests changed.
#[derive(Debug)]
pub struct SmileState {
    windows: Windows,
    /// Points transactions created through the API, oldest first.
    created: Vec<PointsTransaction>,
    /// Balance changes and last-changed times per customer.
    balance_changes: HashMap<u64, (i64, DateTime<Utc>)>,
    next_id: u64,
    requests: u64,
}

impl SmileState {
    /// Fresh state with the given per-token limit.
    pub fn new(limit: Option<u32>) -> Self {
        SmileState {
            windows: Windows::new(limit),
            created: Vec::new(),
            balance_changes: HashMap::new(),
            next_id: 1_000_000_000_000,
            requests: 0,
        }
    }

    /// Created points transactions, for inspection.
    pub fn created_transactions(&self) -> Value {
        Value::Array(self.created.iter().map(transaction_json).collect())
    }
}

/// Routes under `/smile/v1`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/customers", get(list_customers))
        .route("/customers/{id}", get(get_customer))
        .route("/vip_tiers", get(list_vip_tiers))
        .route(
            "/points_transactions",
            get(list_transactions).post(create_transaction),
        )
        .route("/points_transactions/{id}", get(get_transaction))
        .fallback(not_found)
}

/// Smile's error envelope.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    error_with_id(status, message, "00000000-0000-4000-8000-000000000000")
}

fn error_with_id(status: StatusCode, message: &str, request_id: &str) -> Response<Body> {
    json_response(
        status,
        &json!({ "error": { "message": message, "request_id": request_id } }),
    )
}

/// A request id: deterministic for a given seed and request sequence.
fn request_id(shared: &Shared, sequence: u64) -> String {
    super::guid(shared.options.world.seed, 17, sequence)
}

/// Checks the bearer token and the rate limit; on failure, the response to send.
fn admit(shared: &Shared, headers: &HeaderMap) -> Result<String, Response<Body>> {
    let mut state = lock(&shared.smile);
    state.requests += 1;
    let id = request_id(shared, state.requests);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if token != Some(CREDENTIAL) {
        return Err(error_with_id(
            StatusCode::UNAUTHORIZED,
            "Unauthorized. Please check your API key.",
            &id,
        ));
    }
    if !state.windows.admit(CREDENTIAL, Instant::now()) {
        return Err(error_with_id(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many requests. Please slow down.",
            &id,
        ));
    }
    Ok(id)
}

async fn not_found(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response<Body> {
    match admit(&shared, &headers) {
        Err(response) => response,
        Ok(id) => error_with_id(
            StatusCode::NOT_FOUND,
            "The requested resource could not be found.",
            &id,
        ),
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn tier_json(tier: &VipTier) -> Value {
    json!({
        "id": tier.id,
        "name": tier.name,
        "image_url": format!("https://cdn.sweettooth.io/vip/{}.png", tier.name.to_lowercase()),
        "milestone": tier.milestone,
    })
}

/// Which nested objects a request asked for with `include`.
#[derive(Debug, Default, Clone, Copy)]
struct Includes {
    vip_status: bool,
    vip_tier: bool,
    next_vip_tier: bool,
}

fn parse_includes(value: Option<&String>) -> Includes {
    let mut includes = Includes::default();
    for part in value
        .map(String::as_str)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
    {
        match part {
            "vip_status" => includes.vip_status = true,
            "vip_status.vip_tier" => (includes.vip_status, includes.vip_tier) = (true, true),
            "vip_status.next_vip_tier" => {
                (includes.vip_status, includes.next_vip_tier) = (true, true)
            }
            _ => {}
        }
    }
    includes
}

/// A customer as the API shows it now: seeded record plus balance changes.
fn current(state: &SmileState, mut customer: SmileCustomer) -> SmileCustomer {
    if let Some((delta, at)) = state.balance_changes.get(&customer.id) {
        customer.points_balance += delta;
        customer.updated_at = customer.updated_at.max(*at);
    }
    customer
}

/// A customer as the API writes it (serialized straight from this struct: a page of 250 is
/// built without a map per record).
#[derive(Serialize)]
struct CustomerOut<'a> {
    id: u64,
    first_name: Option<String>,
    last_name: Option<String>,
    email: &'a str,
    state: &'a str,
    date_of_birth: Option<String>,
    points_balance: i64,
    referral_url: &'a str,
    vip_tier_id: Option<u64>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    vip_status: Option<VipStatusOut>,
}

#[derive(Serialize)]
struct VipStatusOut {
    vip_tier_id: Option<u64>,
    vip_tier_expires_at: Option<String>,
    progress_value: Option<f64>,
    current_vip_period_end: Option<String>,
    delta_to_retain_vip_tier: Option<f64>,
    next_vip_tier_id: Option<u64>,
    delta_to_next_vip_tier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vip_tier: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_vip_tier: Option<Value>,
}

fn customer_json(c: &SmileCustomer, includes: Includes) -> CustomerOut<'_> {
    let person_names = c.email.split('@').next().unwrap_or("");
    let mut names = person_names.split('.');
    let first = names.next().map(capitalize);
    let last = names
        .next()
        .map(|l| capitalize(l.trim_end_matches(|ch: char| ch.is_ascii_digit())));
    let vip_status = includes.vip_status.then(|| {
        let next = c
            .vip_tier
            .and_then(|tier| VIP_TIERS.iter().find(|t| t.milestone > tier.milestone));
        VipStatusOut {
            vip_tier_id: c.vip_tier.map(|t| t.id),
            vip_tier_expires_at: None,
            progress_value: c.vip_tier.map(|_| c.points_balance as f64),
            current_vip_period_end: None,
            delta_to_retain_vip_tier: None,
            next_vip_tier_id: next.map(|t| t.id),
            delta_to_next_vip_tier: next.map(|t| (t.milestone - c.points_balance) as f64),
            vip_tier: includes
                .vip_tier
                .then(|| c.vip_tier.as_ref().map_or(Value::Null, tier_json)),
            next_vip_tier: includes
                .next_vip_tier
                .then(|| next.map_or(Value::Null, tier_json)),
        }
    });
    CustomerOut {
        id: c.id,
        first_name: first,
        last_name: last,
        email: &c.email,
        state: c.state,
        date_of_birth: c
            .date_of_birth
            .map(|d| format!("{:04}-{:02}-{:02}", d.year(), d.month(), d.day())),
        points_balance: c.points_balance,
        referral_url: &c.referral_url,
        vip_tier_id: c.vip_tier.map(|t| t.id),
        created_at: ts(c.created_at),
        updated_at: ts(c.updated_at),
        vip_status,
    }
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|f| f.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Query parameters, validated.
struct ListQuery {
    limit: usize,
    cursor: Option<Cursor>,
    updated_at_min: Option<DateTime<Utc>>,
}

/// Where a page starts: below an id (next pages) or above one (previous pages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    Before(u64),
    After(u64),
}

fn encode_cursor(cursor: Cursor) -> String {
    let json = match cursor {
        Cursor::Before(id) => format!("{{\"before_id\":{id}}}"),
        Cursor::After(id) => format!("{{\"after_id\":{id}}}"),
    };
    URL_SAFE_NO_PAD.encode(json)
}

fn decode_cursor(text: &str) -> Option<Cursor> {
    let bytes = URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    if let Some(id) = value.get("before_id").and_then(Value::as_u64) {
        return Some(Cursor::Before(id));
    }
    value
        .get("after_id")
        .and_then(Value::as_u64)
        .map(Cursor::After)
}

fn parse_list_query(
    query: &HashMap<String, String>,
    id: &str,
) -> Result<ListQuery, Response<Body>> {
    let bad = |message: String| error_with_id(StatusCode::BAD_REQUEST, &message, id);
    let limit = match query.get("limit") {
        None => 50,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=250).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "limit must be an integer between 1 and 250, got {text:?}"
                )));
            }
        },
    };
    let cursor = match query.get("cursor").filter(|c| !c.is_empty()) {
        None => None,
        Some(text) => {
            Some(decode_cursor(text).ok_or_else(|| bad("cursor is invalid".to_string()))?)
        }
    };
    let updated_at_min = match query.get("updated_at_min") {
        None => None,
        Some(text) => Some(
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| {
                    bad(format!(
                        "updated_at_min must be an ISO 8601 date-time, got {text:?}"
                    ))
                })?,
        ),
    };
    Ok(ListQuery {
        limit,
        cursor,
        updated_at_min,
    })
}

/// Smile ids in descending order strictly below `before`: the second records that share an
/// e-mail (5,000,000 + n), then the main records (100,000 + n).
fn customers_below(world: &World, before: u64) -> impl Iterator<Item = SmileCustomer> + '_ {
    let n = u64::from(world.params.customers);
    let top_shared = before.saturating_sub(5_000_001).min(n);
    let shared_ids = (1..=top_shared / 50).rev().map(|k| 5_000_000 + k * 50);
    let top_main = before.saturating_sub(100_001).min(n);
    let main_ids = (1..=top_main).rev().map(|i| 100_000 + i);
    shared_ids
        .chain(main_ids)
        .filter_map(|id| world.smile_customer(id))
}

/// Smile ids in ascending order strictly above `after`.
fn customers_above(world: &World, after: u64) -> impl Iterator<Item = SmileCustomer> + '_ {
    let n = u64::from(world.params.customers);
    let first_main = if after >= 100_000 {
        after - 100_000 + 1
    } else {
        1
    };
    let main_ids = (first_main..=n).map(|i| 100_000 + i);
    let first_shared = if after >= 5_000_000 {
        (after - 5_000_000) / 50 + 1
    } else {
        1
    };
    let shared_ids = (first_shared..=n / 50).map(|k| 5_000_000 + k * 50);
    main_ids
        .chain(shared_ids)
        .filter_map(|id| world.smile_customer(id))
}

/// One page in newest-first order, with Smile's metadata cursors. `below(id, n)` gives at
/// most `n` items with smaller ids, newest first; `above(id, n)` at most `n` with larger
/// ids, oldest first.
fn page<T>(
    below: impl Fn(u64, usize) -> Vec<T>,
    above: impl Fn(u64, usize) -> Vec<T>,
    id_of: impl Fn(&T) -> u64,
    cursor: Option<Cursor>,
    limit: usize,
) -> (Vec<T>, Value) {
    let (items, more_below) = match cursor {
        None | Some(Cursor::Before(_)) => {
            let start = match cursor {
                Some(Cursor::Before(id)) => id,
                _ => u64::MAX,
            };
            let mut items = below(start, limit + 1);
            let more = items.len() > limit;
            items.truncate(limit);
            (items, Some(more))
        }
        Some(Cursor::After(id)) => {
            let mut items = above(id, limit);
            items.reverse();
            (items, None)
        }
    };
    let last = items.last().map(&id_of);
    let first = items.first().map(&id_of);
    let has_next = match more_below {
        Some(more) => more,
        None => last.is_some_and(|id| !below(id, 1).is_empty()),
    };
    let next = last
        .filter(|_| has_next)
        .map(|id| encode_cursor(Cursor::Before(id)));
    let previous = first
        .filter(|id| !above(*id, 1).is_empty())
        .map(|id| encode_cursor(Cursor::After(id)));
    (
        items,
        json!({ "next_cursor": next, "previous_cursor": previous }),
    )
}

/// Admits a list request (token, rate limit) and validates its paging query.
fn admit_list(
    shared: &Shared,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<(String, ListQuery), Response<Body>> {
    let id = admit(shared, headers)?;
    let list = parse_list_query(query, &id)?;
    Ok((id, list))
}

async fn list_customers(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response<Body> {
    let (id, list) = match admit_list(&shared, &headers, &query) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let state_filter = query.get("state").map(String::as_str);
    if let Some(s) = state_filter.filter(|s| !["candidate", "member", "disabled"].contains(s)) {
        let message = format!("state must be one of candidate, member, disabled, got {s:?}");
        return error_with_id(StatusCode::BAD_REQUEST, &message, &id);
    }
    let email = query.get("email").map(|e| e.to_lowercase());
    let includes = parse_includes(query.get("include"));
    let state = lock(&shared.smile);
    let world = &shared.world;
    let keep = |c: &SmileCustomer| {
        email.as_deref().is_none_or(|e| c.email.to_lowercase() == e)
            && state_filter.is_none_or(|s| c.state == s)
            && list.updated_at_min.is_none_or(|min| c.updated_at >= min)
    };
    let take = |it: &mut dyn Iterator<Item = SmileCustomer>, n: usize| -> Vec<SmileCustomer> {
        it.map(|c| current(&state, c))
            .filter(|c| keep(c))
            .take(n)
            .collect()
    };
    let (customers, metadata) = page(
        |before, n| take(&mut customers_below(world, before), n),
        |after, n| take(&mut customers_above(world, after), n),
        |c| c.id,
        list.cursor,
        list.limit,
    );
    #[derive(Serialize)]
    struct PageOut<'a> {
        customers: Vec<CustomerOut<'a>>,
        metadata: Value,
    }
    let page = PageOut {
        customers: customers
            .iter()
            .map(|c| customer_json(c, includes))
            .collect(),
        metadata,
    };
    json_response(StatusCode::OK, &page)
}

async fn get_customer(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(customer_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response<Body> {
    let id = match admit(&shared, &headers) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let found = customer_id
        .parse::<u64>()
        .ok()
        .and_then(|cid| shared.world.smile_customer(cid));
    match found {
        Some(customer) => {
            let customer = current(&lock(&shared.smile), customer);
            let includes = parse_includes(query.get("include"));
            json_response(
                StatusCode::OK,
                &json!({ "customer": customer_json(&customer, includes) }),
            )
        }
        None => error_with_id(StatusCode::NOT_FOUND, "Customer not found.", &id),
    }
}

async fn list_vip_tiers(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers) {
        return response;
    }
    let tiers: Vec<Value> = VIP_TIERS.iter().map(tier_json).collect();
    json_response(StatusCode::OK, &json!({ "vip_tiers": tiers }))
}

fn transaction_json(t: &PointsTransaction) -> Value {
    json!({
        "id": t.id,
        "customer_id": t.customer_id,
        "points_change": t.points_change,
        "description": t.description,
        "internal_note": t.internal_note,
        "created_at": ts(t.created_at),
        "updated_at": ts(t.created_at),
    })
}

/// Every points transaction newest first, optionally for one customer.
fn all_transactions(
    shared: &Shared,
    state: &SmileState,
    customer: Option<u64>,
) -> Vec<PointsTransaction> {
    let world = &shared.world;
    let mut all: Vec<PointsTransaction> = state
        .created
        .iter()
        .filter(|t| customer.is_none_or(|c| t.customer_id == c))
        .cloned()
        .collect();
    let seeded: Vec<SmileCustomer> = match customer {
        Some(cid) => world.smile_customer(cid).into_iter().collect(),
        None => customers_below(world, u64::MAX).collect(),
    };
    all.extend(seeded.iter().flat_map(|c| world.points_transactions_of(c)));
    all.sort_by_key(|t| std::cmp::Reverse(t.id));
    all
}

async fn list_transactions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response<Body> {
    let (id, list) = match admit_list(&shared, &headers, &query) {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let customer = match query.get("customer_id").map(|c| c.parse::<u64>()) {
        None => None,
        Some(Ok(c)) => Some(c),
        Some(Err(_)) => {
            return error_with_id(
                StatusCode::BAD_REQUEST,
                "customer_id must be an integer",
                &id,
            );
        }
    };
    let all = {
        let state = lock(&shared.smile);
        all_transactions(&shared, &state, customer)
    };
    let all: Vec<&PointsTransaction> = all
        .iter()
        .filter(|t| list.updated_at_min.is_none_or(|min| t.created_at >= min))
        .collect();
    let (items, metadata) = page(
        |before, n| {
            all.iter()
                .filter(|t| t.id < before)
                .take(n)
                .copied()
                .collect()
        },
        |after, n| {
            all.iter()
                .rev()
                .filter(|t| t.id > after)
                .take(n)
                .copied()
                .collect()
        },
        |t| t.id,
        list.cursor,
        list.limit,
    );
    let items: Vec<Value> = items.iter().map(|t| transaction_json(t)).collect();
    json_response(
        StatusCode::OK,
        &json!({ "points_transactions": items, "metadata": metadata }),
    )
}

async fn get_transaction(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(transaction_id): Path<String>,
) -> Response<Body> {
    let id = match admit(&shared, &headers) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let wanted = transaction_id.parse::<u64>().ok();
    let found = wanted.and_then(|tid| {
        let state = lock(&shared.smile);
        if let Some(t) = state.created.iter().find(|t| t.id == tid) {
            return Some(t.clone());
        }
        let customer = shared.world.smile_customer(tid / 8)?;
        shared
            .world
            .points_transactions_of(&customer)
            .into_iter()
            .find(|t| t.id == tid)
    });
    match found {
        Some(t) => json_response(
            StatusCode::OK,
            &json!({ "points_transaction": transaction_json(&t) }),
        ),
        None => error_with_id(StatusCode::NOT_FOUND, "Points transaction not found.", &id),
    }
}

async fn create_transaction(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    let id = match admit(&shared, &headers) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return error_with_id(
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/json.",
            &id,
        );
    }
    let Ok(value) = serde_json::from_str::<Value>(&body) else {
        return error_with_id(
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON.",
            &id,
        );
    };
    let input = &value["points_transaction"];
    let (Some(customer_id), Some(points_change)) = (
        input["customer_id"].as_u64(),
        input["points_change"].as_i64(),
    ) else {
        return error_with_id(
            StatusCode::BAD_REQUEST,
            "points_transaction.customer_id and points_change are required integers.",
            &id,
        );
    };
    let Some(customer) = shared.world.smile_customer(customer_id) else {
        return error_with_id(StatusCode::NOT_FOUND, "Customer not found.", &id);
    };
    let mut state = lock(&shared.smile);
    let balance = current(&state, customer).points_balance;
    if balance + points_change < 0 {
        return error_with_id(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Customer does not have enough points.",
            &id,
        );
    }
    let now = Utc::now();
    let transaction = PointsTransaction {
        id: state.next_id,
        customer_id,
        points_change,
        description: input["description"]
            .as_str()
            .unwrap_or("Adjusted by the merchant")
            .to_string(),
        internal_note: input["internal_note"].as_str().map(str::to_string),
        created_at: now,
    };
    state.next_id += 1;
    let change = state.balance_changes.entry(customer_id).or_insert((0, now));
    *change = (change.0 + points_change, now);
    state.created.push(transaction.clone());
    let json = transaction_json(&transaction);
    json_response(StatusCode::CREATED, &json!({ "points_transaction": json }))
}

/// Per-customer counts for inspection.
pub fn summary(shared: &Shared) -> BTreeMap<&'static str, Value> {
    let state = lock(&shared.smile);
    BTreeMap::from([
        ("points_transactions_created", state.created_transactions()),
        ("requests", Value::from(state.requests)),
    ])
}

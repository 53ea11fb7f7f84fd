//! Shopify Admin GraphQL simulator (`/shopify/admin/api/{version}/graphql.json`), after
//! `api-reference/shopify-graphql.md`.
//!
//! `X-Shopify-Access-Token` auth; `orders` and `customers` connections with `first`/`after`
//! (at most 250), `last`/`before`, the `query` search syntax, `sortKey` and `reverse`;
//! `order`, `customer`, `node`, `shop`; the documented cost formula with a leaky bucket per
//! token (2000 points, 100 restored per second), `extensions.cost` on every answer,
//! `THROTTLED` in an HTTP 200, `MAX_COST_EXCEEDED` over 1000 points; bulk operations that
//! run in the background on their own clock, found by `bulkOperation(id:)`, `node(id:)`,
//! `bulkOperations(...)` or `currentBulkOperation`, with a JSONL result written once to a
//! file and served at a signed URL (`/shopify/bulk/{id}.jsonl`) until it expires.

pub mod bulk;
pub mod data;
pub mod exec;
pub mod schema;
pub mod search;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Map, Value, json};

use super::world::{Order, World};
use super::{CREDENTIAL, Shared, json_response, lock};
use bulk::BulkOperation;
use data::{
    CustomerRow, Key, PageArgs, Pager, SortValue, customer_json, customer_updated_at, gid,
    order_json, paginate, parse_gid,
};
use exec::{Analysis, Doc, Exec, Resolved, Root, Ty};

/// Bucket size (observed: 20 × the restore rate).
pub const MAXIMUM_AVAILABLE: f64 = 2000.0;
/// Points restored per second (Standard plan).
pub const RESTORE_RATE: f64 = 100.0;
/// The most one query may request.
pub const MAX_QUERY_COST: u64 = 1000;
/// What a mutation costs.
const MUTATION_COST: u64 = 10;
/// Top-level nodes derived, and held, at a time while a bulk result is written.
const EXPORT_CHUNK: usize = 512;
/// Bytes read from a result file per chunk of a download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

/// What Shopify requests changed: the cost bucket and bulk operations.
pub struct ShopifyState {
    available: f64,
    updated: Instant,
    operations: Vec<BulkOperation>,
}

impl Default for ShopifyState {
    fn default() -> Self {
        ShopifyState {
            available: MAXIMUM_AVAILABLE,
            updated: Instant::now(),
            operations: Vec::new(),
        }
    }
}

impl ShopifyState {
    fn refill(&mut self) {
        let now = Instant::now();
        let restored = now.duration_since(self.updated).as_secs_f64() * RESTORE_RATE;
        self.available = (self.available + restored).min(MAXIMUM_AVAILABLE);
        self.updated = now;
    }

    /// Deletes the result files of operations whose results expired by `now` (a cancel
    /// deletes its operation's file at once).
    fn drop_expired_results(&mut self, now: Instant) {
        for op in &mut self.operations {
            if op.file.is_some() && op.status(now) == "EXPIRED" {
                op.file = None;
            }
        }
    }

    fn throttle_status(&self) -> Value {
        json!({ "maximumAvailable": MAXIMUM_AVAILABLE, "currentlyAvailable": self.available.floor() as i64, "restoreRate": RESTORE_RATE })
    }

    /// Bulk operations, for inspection.
    pub fn summary(&self, base: &str) -> Value {
        let now = Instant::now();
        Value::Array(
            self.operations
                .iter()
                .map(|op| op.json(base, now))
                .collect(),
        )
    }
}

/// Routes under `/shopify`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql))
        .route("/bulk/{file}", get(bulk_result))
}

/// Shopify's error body for HTTP-level failures.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({ "errors": message }))
}

fn graphql_errors(errors: Vec<Value>) -> Response<Body> {
    json_response(StatusCode::OK, &json!({ "errors": errors }))
}

async fn graphql(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    let token = headers
        .get("X-Shopify-Access-Token")
        .and_then(|v| v.to_str().ok());
    if token != Some(CREDENTIAL) {
        return error(
            StatusCode::UNAUTHORIZED,
            "[API] Invalid API key or access token (unrecognized login or wrong password)",
        );
    }
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(query) = request.get("query").and_then(Value::as_str) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "errors": { "query": "Required parameter missing or invalid" } }),
        );
    };
    let vars = request
        .get("variables")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let operation_name = request.get("operationName").and_then(Value::as_str);
    let doc: Doc = match graphql_parser::parse_query::<String>(query) {
        Ok(doc) => doc.into_static(),
        Err(err) => {
            return graphql_errors(vec![
                json!({ "message": format!("Parse error: {err}").trim_end().to_string() }),
            ]);
        }
    };
    let mut response = answer(
        &shared,
        &doc,
        operation_name,
        &vars,
        &super::public_base(&headers),
    );
    if let Ok(value) = HeaderValue::from_str(&version) {
        response
            .headers_mut()
            .insert("X-Shopify-API-Version", value);
    }
    response
}

fn answer(
    shared: &Arc<Shared>,
    doc: &Doc,
    operation_name: Option<&str>,
    vars: &Map<String, Value>,
    base: &str,
) -> Response<Body> {
    let (set, is_mutation) = match exec::operation(doc, operation_name) {
        Ok(op) => op,
        Err(message) => return graphql_errors(vec![json!({ "message": message })]),
    };
    let root_type = if is_mutation { "Mutation" } else { "QueryRoot" };
    let mut analysis = Analysis::new(doc, vars);
    let label = match operation_name {
        Some(name) => format!("{} {name}", if is_mutation { "mutation" } else { "query" }),
        None => (if is_mutation { "mutation" } else { "query" }).to_string(),
    };
    let cost = analysis.cost(Ty::Named(root_type), set, &mut vec![label]);
    if !analysis.errors.is_empty() {
        return graphql_errors(analysis.errors);
    }
    let requested = if is_mutation { MUTATION_COST } else { cost };
    if requested > MAX_QUERY_COST {
        return graphql_errors(vec![json!({
            "message": format!("Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).\n\nSee https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\ncost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk operations should be used instead.\nSee https://shopify.dev/tutorials/perform-bulk-operations-with-admin-api for usage details.\n"),
            "extensions": { "code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST, "documentation": "https://shopify.dev/api/usage/limits#rate-limits" },
        })]);
    }
    let mut state = lock(&shared.shopify);
    state.refill();
    state.drop_expired_results(Instant::now());
    if state.available < requested as f64 {
        return json_response(
            StatusCode::OK,
            &json!({
                "errors": [{ "message": "Throttled", "extensions": { "code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits" } }],
                "extensions": { "cost": { "requestedQueryCost": requested, "actualQueryCost": null, "throttleStatus": state.throttle_status() } },
            }),
        );
    }
    let mut exec = Exec::new(doc, vars);
    let mut root = ShopifyRoot {
        world: shared.world,
        state: &mut state,
        base,
        seed: shared.options.world.seed,
        bulk_duration: shared.options.shopify_bulk_duration,
        result_ttl: shared.options.shopify_result_ttl,
        started: Vec::new(),
    };
    let data = exec.run(root_type, set, &mut root);
    // Spawned only: the background export takes the lock once this request lets go.
    for started in std::mem::take(&mut root.started) {
        run_in_background(shared.clone(), started);
    }
    let actual = if is_mutation {
        MUTATION_COST
    } else {
        exec.actual_cost.min(requested)
    };
    state.available -= actual as f64;
    let mut body = json!({ "data": data });
    if !exec.errors.is_empty() {
        body["errors"] = Value::Array(exec.errors);
    }
    body["extensions"] = json!({ "cost": { "requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": state.throttle_status() } });
    json_response(StatusCode::OK, &body)
}

/// A matching order (its buyer's index and its place among their orders) or customer (their
/// index): nothing of the world is held between requests, so a hit is derived from the
/// world again, and rendered to JSON, only once it is on the page or in the export.
#[derive(Clone, Copy)]
enum Hit {
    Order { buyer: u32, place: usize },
    Customer(u32),
}

/// A hit with the key connections sort it by.
type Keyed = (Hit, Key);

/// Resolves root fields for one request.
struct ShopifyRoot<'a> {
    world: World,
    state: &'a mut ShopifyState,
    base: &'a str,
    seed: u64,
    /// The shortest time a bulk operation takes.
    bulk_duration: std::time::Duration,
    /// How long a bulk result stays downloadable.
    result_ttl: std::time::Duration,
    /// Bulk operations this request created, to start in the background.
    started: Vec<Started>,
}

/// A bulk operation to run once the request's lock is released.
struct Started {
    id: u64,
    query: String,
    group_objects: bool,
}

const ORDER_SORT_KEYS: [&str; 11] = [
    "PROCESSED_AT",
    "CREATED_AT",
    "UPDATED_AT",
    "ID",
    "ORDER_NUMBER",
    "TOTAL_PRICE",
    "CUSTOMER_NAME",
    "FINANCIAL_STATUS",
    "FULFILLMENT_STATUS",
    "RELEVANCE",
    "CURRENT_TOTAL_PRICE",
];
const CUSTOMER_SORT_KEYS: [&str; 6] = [
    "ID",
    "CREATED_AT",
    "UPDATED_AT",
    "NAME",
    "RELEVANCE",
    "LOCATION",
];

fn sort_key<'k>(
    args: &'k Map<String, Value>,
    allowed: &[&str],
    default: &'k str,
    type_name: &str,
) -> Result<&'k str, String> {
    let key = args
        .get("sortKey")
        .and_then(Value::as_str)
        .unwrap_or(default);
    if allowed.contains(&key) {
        Ok(key)
    } else {
        Err(format!(
            "Argument 'sortKey' has an invalid value ({key}). Expected type '{type_name}'."
        ))
    }
}

impl ShopifyRoot<'_> {
    /// Hands every node of connection `name` (`orders` or `customers`) matching the
    /// arguments to `visit`, keyed for sorting.
    fn hits(
        &self,
        name: &str,
        args: &Map<String, Value>,
        visit: &mut dyn FnMut(Keyed) -> Result<(), String>,
    ) -> Result<(), String> {
        match name {
            "orders" => self.orders(args, visit),
            _ => self.customers(args, visit),
        }
    }

    /// Every order matching the arguments, keyed for sorting.
    fn orders(
        &self,
        args: &Map<String, Value>,
        visit: &mut dyn FnMut(Keyed) -> Result<(), String>,
    ) -> Result<(), String> {
        let filter = search::parse(args.get("query").and_then(Value::as_str).unwrap_or(""));
        let key = sort_key(args, &ORDER_SORT_KEYS, "PROCESSED_AT", "OrderSortKeys")?;
        for person in self.world.people() {
            for (place, o) in self.world.orders_of(&person).iter().enumerate() {
                if !filter.matches(o) {
                    continue;
                }
                let sort = match key {
                    "CREATED_AT" => SortValue::Time(o.created_at),
                    "UPDATED_AT" => SortValue::Time(o.updated_at),
                    "PROCESSED_AT" => SortValue::Time(o.processed_at),
                    "TOTAL_PRICE" | "CURRENT_TOTAL_PRICE" => SortValue::Number(o.total_cents()),
                    "FINANCIAL_STATUS" => SortValue::Text(o.financial_status.to_string()),
                    "FULFILLMENT_STATUS" => SortValue::Text(o.fulfillment_status.to_string()),
                    "CUSTOMER_NAME" => SortValue::Text(o.email.to_lowercase()),
                    _ => SortValue::Number(o.id as i64),
                };
                let hit = Hit::Order {
                    buyer: person.index,
                    place,
                };
                visit((hit, (sort, o.id)))?;
            }
        }
        Ok(())
    }

    /// Every customer matching the arguments, keyed for sorting.
    fn customers(
        &self,
        args: &Map<String, Value>,
        visit: &mut dyn FnMut(Keyed) -> Result<(), String>,
    ) -> Result<(), String> {
        let filter = search::parse(args.get("query").and_then(Value::as_str).unwrap_or(""));
        let key = sort_key(args, &CUSTOMER_SORT_KEYS, "ID", "CustomerSortKeys")?;
        for person in self.world.people() {
            let orders = self.world.orders_of(&person);
            let row = CustomerRow {
                person: &person,
                orders: &orders,
            };
            if !filter.matches(&row) {
                continue;
            }
            let id = data::CUSTOMER_BASE + u64::from(person.index);
            let sort = match key {
                "CREATED_AT" => SortValue::Time(person.created_at),
                "UPDATED_AT" => SortValue::Time(customer_updated_at(&person, &orders)),
                "NAME" => SortValue::Text(format!("{} {}", person.first_name, person.last_name)),
                _ => SortValue::Number(id as i64),
            };
            visit((Hit::Customer(person.index), (sort, id)))?;
        }
        Ok(())
    }

    /// The JSON of one hit, derived from the world again.
    fn render(&self, hit: Hit) -> Value {
        match hit {
            Hit::Order { buyer, place } => self.customer_json(buyer, |customer, orders| {
                orders
                    .get(place)
                    .map_or(Value::Null, |order| order_json(order, &customer))
            }),
            Hit::Customer(index) => self.customer_json(index, |customer, _| customer),
        }
    }

    /// Customer `index` as JSON (null if the world has no such person), handed to `then`
    /// with their orders.
    fn customer_json(&self, index: u32, then: impl FnOnce(Value, &[Order]) -> Value) -> Value {
        if index == 0 || index > self.world.params.customers {
            return then(Value::Null, &[]);
        }
        let person = self.world.person(index);
        let orders = self.world.orders_of(&person);
        then(customer_json(&person, &orders), &orders)
    }

    fn by_gid(&mut self, id: &str) -> Value {
        let Some((kind, n)) = parse_gid(id) else {
            return Value::Null;
        };
        match kind {
            "Order" => self.world.order(n).map_or(Value::Null, |order| {
                self.customer_json(order.customer, |customer, _| order_json(&order, &customer))
            }),
            "Customer" => u32::try_from(n.saturating_sub(data::CUSTOMER_BASE))
                .map_or(Value::Null, |i| {
                    self.customer_json(i, |customer, _| customer)
                }),
            "BulkOperation" => self.poll(n),
            _ => Value::Null,
        }
    }

    /// A bulk operation as it stands now (it runs on its own clock, not on polls).
    fn poll(&self, id: u64) -> Value {
        self.state
            .operations
            .iter()
            .find(|op| op.id == id)
            .map_or(Value::Null, |op| op.json(self.base, Instant::now()))
    }

    /// `bulkOperations(first:, after:, query:, sortKey:, reverse:)`: the shop's operations,
    /// oldest first unless reversed, filtered by `status:` and `type:` terms.
    fn list_operations(&self, args: &Map<String, Value>) -> Result<data::Page<Value>, String> {
        let now = Instant::now();
        let filter = args.get("query").and_then(Value::as_str).unwrap_or("");
        let mut statuses = Vec::new();
        for term in filter.split_whitespace() {
            match term.split_once(':') {
                Some(("status", value)) => statuses.push(value.to_ascii_uppercase()),
                Some(("operation_type" | "type", value)) if value.eq_ignore_ascii_case("query") => {
                }
                Some(("operation_type" | "type", _)) => return Ok(empty_page()),
                _ if term.eq_ignore_ascii_case("OR") => {}
                _ => return Err(format!("Invalid search field for bulk operations: {term}")),
            }
        }
        let items: Vec<(u64, Value)> = self
            .state
            .operations
            .iter()
            .filter(|op| statuses.is_empty() || statuses.iter().any(|s| s == op.status(now)))
            .map(|op| (op.id, op.json(self.base, now)))
            .collect();
        let page = paginate(
            items,
            |(id, _)| (SortValue::Number(*id as i64), *id),
            &exec::page_args(args),
        )?;
        Ok(data::Page {
            items: page
                .items
                .into_iter()
                .map(|((_, json), cursor)| (json, cursor))
                .collect(),
            has_next: page.has_next,
            has_previous: page.has_previous,
        })
    }

    /// Writes an operation's JSONL result to a temporary file, deriving it from the world
    /// in chunks of [`EXPORT_CHUNK`] top-level nodes (only one chunk is ever held); the lines
    /// of a chunk are shuffled by the operation's seed unless objects are grouped. Returns
    /// what the file holds (lines, top-level lines, bytes) and the file.
    fn write_export(
        &self,
        doc: &Doc,
        group_objects: bool,
        id: u64,
    ) -> Result<(bulk::BulkResult, tempfile::TempPath), String> {
        let field = bulk::root_field(doc)?;
        let args = bulk::root_arguments(field);
        let node = match field.name.as_str() {
            "orders" => "Order",
            _ => "Customer",
        };
        let mut items = Vec::new();
        self.hits(&field.name, &args, &mut |hit| {
            items.push(hit);
            Ok(())
        })?;
        items.sort_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Equal));
        let unwritable = |err: std::io::Error| format!("cannot write the bulk result: {err}");
        let file = tempfile::Builder::new()
            .prefix(&format!("sandbox-shopify-bulk-{id}-"))
            .suffix(".jsonl")
            .tempfile()
            .map_err(unwritable)?;
        let mut out = std::io::BufWriter::new(file);
        let vars = Map::new();
        let mut exec = Exec::new(doc, &vars);
        let mut rng = fastrand::Rng::with_seed(self.seed ^ id);
        let plan = bulk::LinePlan::new(node, field);
        let mut total = bulk::BulkResult::default();
        let mut text = String::new();
        for chunk in items.chunks(EXPORT_CHUNK) {
            let rendered: Vec<Value> = chunk.iter().map(|(hit, _)| self.render(*hit)).collect();
            let mut lines = Vec::new();
            bulk::flatten(&mut exec, &plan, &rendered, None, &mut lines);
            total.objects += lines.len() as u64;
            total.roots += chunk.len() as u64;
            text.clear();
            bulk::write_jsonl(lines, group_objects, &mut rng, &mut text);
            total.bytes += text.len() as u64;
            std::io::Write::write_all(&mut out, text.as_bytes()).map_err(unwritable)?;
        }
        let file = out
            .into_inner()
            .map_err(|err| unwritable(err.into_error()))?;
        Ok((total, file.into_temp_path()))
    }

    fn run_query(&mut self, args: &Map<String, Value>) -> Value {
        let query = args
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let user_error = |message: String, code: &str| json!({ "bulkOperation": null, "userErrors": [{ "field": ["query"], "message": message, "code": code }] });
        let parsed = graphql_parser::parse_query::<String>(&query)
            .map_err(|e| e.to_string())
            .map(|d| d.into_static());
        let doc = match parsed {
            Ok(doc) => doc,
            Err(message) => return user_error(format!("Invalid bulk query: {message}"), "INVALID"),
        };
        if let Err(message) = bulk::root_field(&doc) {
            return user_error(message, "INVALID");
        }
        let vars = Map::new();
        let mut analysis = Analysis::new(&doc, &vars);
        analysis.require_page_size = false;
        if let Ok((set, _)) = exec::operation(&doc, None) {
            analysis.cost(Ty::Named("QueryRoot"), set, &mut Vec::new());
        }
        if let Some(first) = analysis.errors.first() {
            let message = first["message"]
                .as_str()
                .unwrap_or("Invalid bulk query")
                .to_string();
            return user_error(message, "INVALID");
        }
        let now = Instant::now();
        if self
            .state
            .operations
            .iter()
            .filter(|op| op.is_running(now))
            .count()
            >= bulk::MAX_RUNNING
        {
            return user_error(
                format!(
                    "A maximum of {} bulk operations can run at the same time",
                    bulk::MAX_RUNNING
                ),
                "LIMIT_REACHED",
            );
        }
        let id = 720_900 + self.state.operations.len() as u64 + 1;
        let signature = format!(
            "{:016x}",
            (self.seed ^ id).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        );
        let op = BulkOperation {
            id,
            query,
            group_objects: args
                .get("groupObjects")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            created_at: Utc::now(),
            created: now,
            ready_at: now + self.bulk_duration,
            outcome: None,
            file: None,
            expires_after: self.result_ttl,
            finished: None,
            canceled: None,
            signature,
        };
        let json = op.json(self.base, now);
        self.started.push(Started {
            id,
            query: op.query.clone(),
            group_objects: op.group_objects,
        });
        self.state.operations.push(op);
        json!({ "bulkOperation": json, "userErrors": [] })
    }

    fn cancel(&mut self, args: &Map<String, Value>) -> Value {
        let id = args
            .get("id")
            .and_then(Value::as_str)
            .and_then(parse_gid)
            .map(|(_, n)| n);
        let Some(op) = self
            .state
            .operations
            .iter_mut()
            .find(|op| Some(op.id) == id)
        else {
            return json!({ "bulkOperation": null, "userErrors": [{ "field": ["id"], "message": "Bulk operation does not exist" }] });
        };
        let now = Instant::now();
        if !matches!(op.status(now), "CREATED" | "RUNNING") {
            let message = format!(
                "A bulk operation cannot be canceled when it is {}",
                op.status(now).to_lowercase()
            );
            return json!({ "bulkOperation": op.json(self.base, now), "userErrors": [{ "field": ["id"], "message": message }] });
        }
        op.canceled = Some(now);
        // What it had written is deleted with it.
        op.outcome = None;
        op.file = None;
        json!({ "bulkOperation": op.json(self.base, now), "userErrors": [] })
    }
}

impl Root for ShopifyRoot<'_> {
    fn resolve(&mut self, name: &str, args: &Map<String, Value>) -> Result<Resolved, String> {
        let page_args: PageArgs = exec::page_args(args);
        // Only a page of hits is held, whatever the connection's size; only they are rendered.
        let page = |root: &Self| {
            let mut pager = Pager::new(&page_args);
            root.hits(name, args, &mut |(hit, key)| pager.push(key, hit))?;
            let page = pager.finish()?;
            Ok::<_, String>(data::Page {
                items: page
                    .items
                    .into_iter()
                    .map(|(hit, cursor)| (root.render(hit), cursor))
                    .collect(),
                has_next: page.has_next,
                has_previous: page.has_previous,
            })
        };
        let id = args
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        Ok(match name {
            "orders" | "customers" => Resolved::Page(page(self)?),
            "order" | "customer" | "node" => Resolved::Value(self.by_gid(&id)),
            "bulkOperation" => {
                Resolved::Value(parse_gid(&id).map_or(Value::Null, |(_, n)| self.poll(n)))
            }
            "currentBulkOperation" => {
                let latest = self.state.operations.last().map(|op| op.id);
                Resolved::Value(latest.map_or(Value::Null, |n| self.poll(n)))
            }
            "bulkOperations" => Resolved::Page(self.list_operations(args)?),
            "shop" => Resolved::Value(json!({
                "id": gid("Shop", 1),
                "name": "Trailhead Outfitters (sandbox)",
                "currencyCode": super::world::CURRENCY,
                "ianaTimezone": "Australia/Sydney",
                "myshopifyDomain": "trailhead-sandbox.myshopify.com",
            })),
            "bulkOperationRunQuery" => Resolved::Value(self.run_query(args)),
            "bulkOperationCancel" => Resolved::Value(self.cancel(args)),
            other => return Err(format!("Field '{other}' cannot be resolved")),
        })
    }
}

fn empty_page() -> data::Page<Value> {
    data::Page {
        items: Vec::new(),
        has_next: false,
        has_previous: false,
    }
}

/// Calls `work` with a resolver over the world (read only: the shop's live state is not
/// touched) and an operation's parsed `query`.
fn with_export<T>(
    shared: &Shared,
    query: &str,
    work: impl FnOnce(&ShopifyRoot<'_>, &Doc) -> Result<T, String>,
) -> Result<T, String> {
    let doc = graphql_parser::parse_query::<String>(query)
        .map_err(|e| e.to_string())?
        .into_static();
    let mut scratch = ShopifyState::default();
    let root = ShopifyRoot {
        world: shared.world,
        state: &mut scratch,
        base: "",
        seed: shared.options.world.seed,
        bulk_duration: shared.options.shopify_bulk_duration,
        result_ttl: shared.options.shopify_result_ttl,
        started: Vec::new(),
    };
    work(&root, &doc)
}

/// Runs bulk operation `id` off the request path, as Shopify does: the export is written on
/// a blocking thread, one export at a time, while every other request is answered, and its
/// outcome recorded.
fn run_in_background(shared: Arc<Shared>, started: Started) {
    let Started {
        id,
        query,
        group_objects,
    } = started;
    tokio::spawn(async move {
        let worker = shared.clone();
        let written = tokio::task::spawn_blocking(move || {
            let _one_at_a_time = lock(&worker.shopify_export);
            let canceled = lock(&worker.shopify)
                .operations
                .iter()
                .any(|op| op.id == id && op.canceled.is_some());
            if canceled {
                return Err("canceled while waiting its turn".to_string());
            }
            with_export(&worker, &query, |root, doc| {
                root.write_export(doc, group_objects, id)
            })
        })
        .await;
        let (outcome, file) = match written {
            Ok(Ok((result, file))) => (Some(result), Some(Arc::new(file))),
            _ => (None, None),
        };
        let mut state = lock(&shared.shopify);
        // A canceled operation's file is deleted here, as `file` is dropped.
        if let Some(op) = state.operations.iter_mut().find(|op| op.id == id)
            && op.canceled.is_none()
        {
            op.outcome = Some(outcome);
            op.file = file;
            op.finished = Some((Instant::now(), Utc::now()));
        }
    });
}

async fn bulk_result(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
) -> Response<Body> {
    let id = file
        .strip_suffix(".jsonl")
        .and_then(|n| n.parse::<u64>().ok());
    let found = {
        let mut state = lock(&shared.shopify);
        let now = Instant::now();
        state.drop_expired_results(now);
        state
            .operations
            .iter()
            .find(|op| Some(op.id) == id)
            .and_then(|op| {
                let result = op.result(now)?;
                Some((op.signature.clone(), *result, op.file.clone()?))
            })
    };
    let (result, file) = match found {
        Some((signature, result, file)) if query.get("signature") == Some(&signature) => {
            (result, file)
        }
        Some(_) => {
            return error(
                StatusCode::FORBIDDEN,
                "AccessDenied: the signature does not match",
            );
        }
        None => {
            return error(
                StatusCode::NOT_FOUND,
                "NoSuchKey: the result does not exist",
            );
        }
    };
    // The file is read on a blocking thread and streamed, a few chunks in flight at most;
    // the download holds the file, so an expiry or cancel meanwhile does not cut it short.
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut reader = match std::fs::File::open(&**file) {
            Ok(reader) => reader,
            Err(err) => return drop(sender.blocking_send(Err(err))),
        };
        loop {
            let mut chunk = vec![0; DOWNLOAD_CHUNK];
            let read = match std::io::Read::read(&mut reader, &mut chunk) {
                Ok(0) => return,
                Ok(read) => read,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return drop(sender.blocking_send(Err(err))),
            };
            chunk.truncate(read);
            if sender.blocking_send(Ok(Bytes::from(chunk))).is_err() {
                return;
            }
        }
    });
    let mut response = Response::new(Body::from_stream(Chunks(receiver)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jsonl"),
    );
    if let Ok(length) = HeaderValue::from_str(&result.bytes.to_string()) {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, length);
    }
    response
}

/// The chunks of a streamed bulk result, as a response body.
struct Chunks(tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>);

impl futures_core::Stream for Chunks {
    type Item = std::io::Result<Bytes>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

//! Google Sheets v4 simulator (`/sheets/v4`), after `api-reference/sheets.md`.
//!
//! Bearer tokens from the sandbox's OAuth endpoint; one seeded spreadsheet
//! ([`SPREADSHEET_ID`]) with a `Sheet1` tab, and `spreadsheets.create` for more; A1 ranges in the path (quoted sheet names, bare sheet names, open
//! ranges); `values.append` that finds the table in the range and writes after it, with
//! `valueInputOption` required, `RAW` or `USER_ENTERED`, `insertDataOption`, and the
//! `updates` reply; `values.get` that drops trailing empty rows and cells and omits
//! `values` when empty; atomic `batchUpdate` with `addSheet`; spreadsheet metadata; 60 reads
//! and 60 writes per minute per token, then 429 `RESOURCE_EXHAUSTED`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode, header};
use axum::routing::{get, post};
use serde_json::{Value, json};

mod a1;
mod values;

use super::google::google_error;
use super::ratelimit::Windows;
use super::{Shared, json_response, lock};

/// The sandbox's spreadsheet.
pub const SPREADSHEET_ID: &str = "1SandboxSheetMailroom0000000000000000000000";
const SCOPES: [&str; 3] = [
    "https://www.googleapis.com/auth/spreadsheets",
    "https://www.googleapis.com/auth/drive.file",
    "https://www.googleapis.com/auth/drive",
];

/// How a number is shown: the formats `USER_ENTERED` gives dates and date-times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// A date (`yyyy-mm-dd`).
    Date,
    /// A date and time (`yyyy-mm-dd hh:mm:ss`).
    DateTime,
}

#[derive(Debug, Clone)]
struct Tab {
    id: i64,
    title: String,
    index: usize,
    rows: usize,
    columns: usize,
    frozen_rows: i64,
    cells: Vec<Vec<Value>>,
    /// Cells holding dates: serial numbers shown as dates.
    formats: BTreeMap<(usize, usize), Format>,
}

impl Tab {
    /// An empty grid tab of Google's default size.
    fn new(id: i64, title: String, index: usize, grid: &Value) -> Self {
        Tab {
            id,
            title,
            index,
            rows: grid["rowCount"].as_u64().map_or(1000, |n| n as usize),
            columns: grid["columnCount"].as_u64().map_or(26, |n| n as usize),
            frozen_rows: grid["frozenRowCount"].as_i64().unwrap_or(0),
            cells: Vec::new(),
            formats: BTreeMap::new(),
        }
    }
}

/// One spreadsheet.
#[derive(Debug, Clone)]
struct Book {
    title: String,
    locale: String,
    time_zone: String,
    tabs: Vec<Tab>,
}

impl Book {
    /// Each tab's cells that hold dates, in A1 (`B2`), date-times marked.
    fn date_cells(&self) -> BTreeMap<&str, Vec<String>> {
        let cells = |tab: &Tab| {
            tab.formats
                .iter()
                .map(|((r, c), format)| {
                    let name = format!("{}{}", a1::column_letters(*c), r + 1);
                    match format {
                        Format::Date => name,
                        Format::DateTime => format!("{name} (date-time)"),
                    }
                })
                .collect()
        };
        self.tabs
            .iter()
            .map(|t| (t.title.as_str(), cells(t)))
            .collect()
    }

    /// Each tab's rows by title.
    fn summary(&self) -> BTreeMap<&str, &Vec<Vec<Value>>> {
        self.tabs
            .iter()
            .map(|t| (t.title.as_str(), &t.cells))
            .collect()
    }
}

/// The spreadsheets and the request quotas.
#[derive(Debug)]
pub struct SheetsState {
    books: BTreeMap<String, Book>,
    created: u64,
    reads: Windows,
    writes: Windows,
}

impl Default for SheetsState {
    fn default() -> Self {
        let seeded = Book {
            title: "mailroom reports (sandbox)".into(),
            locale: "en_AU".into(),
            time_zone: "Australia/Sydney".into(),
            tabs: vec![Tab::new(0, "Sheet1".into(), 0, &Value::Null)],
        };
        SheetsState {
            books: BTreeMap::from([(SPREADSHEET_ID.to_string(), seeded)]),
            created: 0,
            reads: Windows::per(Some(60), Duration::from_secs(60)),
            writes: Windows::per(Some(60), Duration::from_secs(60)),
        }
    }
}

impl SheetsState {
    /// Every tab's rows, for inspection: the seeded spreadsheet's at the top level, every
    /// spreadsheet's (created ones too) under `spreadsheets`, with the cells that hold
    /// dates (serial numbers shown as dates) under `date_cells`.
    pub fn summary(&self) -> Value {
        let seeded = self.books.get(SPREADSHEET_ID).map(Book::summary);
        let all: BTreeMap<&str, Value> = self
            .books
            .iter()
            .map(|(id, book)| {
                let summary = json!({
                    "title": book.title,
                    "tabs": book.summary(),
                    "date_cells": book.date_cells(),
                });
                (id.as_str(), summary)
            })
            .collect();
        json!({ "spreadsheet_id": SPREADSHEET_ID, "tabs": seeded, "spreadsheets": all })
    }
}

/// Routes under `/sheets`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v4/spreadsheets", post(create))
        .route(
            "/v4/spreadsheets/{target}",
            get(get_spreadsheet).post(batch_update),
        )
        .route(
            "/v4/spreadsheets/{id}/values/{target}",
            get(values::get_values)
                .post(values::append_or_clear)
                .put(values::update),
        )
}

fn invalid(message: &str) -> Response<Body> {
    google_error(
        StatusCode::BAD_REQUEST,
        message,
        "INVALID_ARGUMENT",
        "badRequest",
    )
}

fn not_found() -> Response<Body> {
    google_error(
        StatusCode::NOT_FOUND,
        "Requested entity was not found.",
        "NOT_FOUND",
        "notFound",
    )
}

/// A path whose `:method` suffix is not one the resource has.
fn method_not_found() -> Response<Body> {
    google_error(
        StatusCode::NOT_FOUND,
        "Method not found.",
        "NOT_FOUND",
        "notFound",
    )
}

fn quota_exceeded(kind: &str) -> Response<Body> {
    let message = format!(
        "Quota exceeded for quota metric '{kind} requests' and limit '{kind} requests per minute per user' of service 'sheets.googleapis.com'."
    );
    let mut response = google_error(
        StatusCode::TOO_MANY_REQUESTS,
        &message,
        "RESOURCE_EXHAUSTED",
        "rateLimitExceeded",
    );
    let body = json!({ "error": { "code": 429, "message": message, "status": "RESOURCE_EXHAUSTED", "details": [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com",
        "metadata": { "service": "sheets.googleapis.com", "quota_metric": format!("sheets.googleapis.com/{}_requests", kind.to_lowercase()) }
    }] } });
    *response.body_mut() = Body::from(body.to_string());
    response
}

/// Checks the token and counts the request against the read or write quota.
fn admit(shared: &Shared, headers: &HeaderMap, write: bool) -> Result<(), Response<Body>> {
    shared.google.check(headers, &SCOPES)?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mut state = lock(&shared.sheets);
    let windows = if write {
        &mut state.writes
    } else {
        &mut state.reads
    };
    if windows.admit(token, Instant::now()) {
        Ok(())
    } else {
        Err(quota_exceeded(if write { "Write" } else { "Read" }))
    }
}

/// Splits `SPREADSHEET:op` path segments.
fn target_and_op(target: &str) -> (&str, Option<&str>) {
    match target.rsplit_once(':') {
        Some((t, op))
            if op.chars().all(|c| c.is_ascii_alphabetic())
                && !op.is_empty()
                && op.chars().next().is_some_and(|c| c.is_ascii_lowercase()) =>
        {
            (t, Some(op))
        }
        _ => (target, None),
    }
}

fn sheet_properties(tab: &Tab) -> Value {
    json!({
        "sheetId": tab.id,
        "title": tab.title,
        "index": tab.index,
        "sheetType": "GRID",
        "gridProperties": { "rowCount": tab.rows, "columnCount": tab.columns, "frozenRowCount": tab.frozen_rows },
    })
}

async fn get_spreadsheet(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(target): Path<String>,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, false) {
        return response;
    }
    let state = lock(&shared.sheets);
    match state.books.get(&target) {
        Some(book) => json_response(StatusCode::OK, &spreadsheet_json(&target, book)),
        None => not_found(),
    }
}

/// A spreadsheet resource as `spreadsheets.get` and `spreadsheets.create` answer it.
fn spreadsheet_json(id: &str, book: &Book) -> Value {
    let mut tabs: Vec<&Tab> = book.tabs.iter().collect();
    tabs.sort_by_key(|t| t.index);
    let sheets: Vec<Value> = tabs
        .iter()
        .map(|t| json!({ "properties": sheet_properties(t) }))
        .collect();
    json!({
        "spreadsheetId": id,
        "properties": { "title": book.title, "locale": book.locale, "timeZone": book.time_zone },
        "sheets": sheets,
        "spreadsheetUrl": format!("https://docs.google.com/spreadsheets/d/{id}/edit"),
    })
}

/// The titles of a spreadsheet's tabs; `None` when there is no such spreadsheet.
fn tab_titles(shared: &Shared, id: &str) -> Option<Vec<String>> {
    let state = lock(&shared.sheets);
    let book = state.books.get(id)?;
    Some(book.tabs.iter().map(|t| t.title.clone()).collect())
}

/// `POST /v4/spreadsheets` (spreadsheets.create): a new spreadsheet with the requested
/// title and tabs (one `Sheet1` when none are given), answered as the full resource.
async fn create(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, true) {
        return response;
    }
    let input = if body.trim().is_empty() {
        json!({})
    } else {
        match serde_json::from_str::<Value>(&body) {
            Ok(input) => input,
            Err(_) => return invalid("Invalid JSON payload received."),
        }
    };
    let props = &input["properties"];
    let mut tabs: Vec<Tab> = Vec::new();
    for (i, sheet) in input["sheets"].as_array().into_iter().flatten().enumerate() {
        let p = &sheet["properties"];
        let title = p["title"]
            .as_str()
            .map_or_else(|| format!("Sheet{}", i + 1), str::to_string);
        if tabs.iter().any(|t| t.title.eq_ignore_ascii_case(&title)) {
            return invalid(&format!(
                "Invalid sheets[{i}]: A sheet with the name \"{title}\" already exists. Please enter another name."
            ));
        }
        let id = p["sheetId"].as_i64().unwrap_or(i as i64);
        tabs.push(Tab::new(id, title, i, &p["gridProperties"]));
    }
    if tabs.is_empty() {
        tabs.push(Tab::new(0, "Sheet1".into(), 0, &Value::Null));
    }
    let book = Book {
        title: props["title"]
            .as_str()
            .unwrap_or("Untitled spreadsheet")
            .to_string(),
        locale: props["locale"].as_str().unwrap_or("en_US").to_string(),
        time_zone: props["timeZone"].as_str().unwrap_or("Etc/GMT").to_string(),
        tabs,
    };
    let mut state = lock(&shared.sheets);
    state.created += 1;
    let id = format!("1SandboxCreated{:029}", state.created);
    let answer = spreadsheet_json(&id, &book);
    state.books.insert(id, book);
    json_response(StatusCode::OK, &answer)
}

async fn batch_update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(target): Path<String>,
    body: String,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, true) {
        return response;
    }
    let (id, op) = target_and_op(&target);
    if op != Some("batchUpdate") {
        return method_not_found();
    }
    let Ok(input) = serde_json::from_str::<Value>(&body) else {
        return invalid("Invalid JSON payload received.");
    };
    let requests = input
        .get("requests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut state = lock(&shared.sheets);
    let Some(book) = state.books.get_mut(id) else {
        return not_found();
    };
    // Atomic: work on a copy, keep it only if every request applies.
    let mut tabs = book.tabs.clone();
    let mut replies = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let Some(add) = request.get("addSheet") else {
            let kind = request
                .as_object()
                .and_then(|o| o.keys().next().cloned())
                .unwrap_or_default();
            return invalid(&format!(
                "Invalid requests[{i}]: the sandbox supports addSheet, not {kind}"
            ));
        };
        let props = &add["properties"];
        let title = props["title"]
            .as_str()
            .map_or_else(|| format!("Sheet{}", tabs.len() + 1), str::to_string);
        if tabs.iter().any(|t| t.title.eq_ignore_ascii_case(&title)) {
            return invalid(&format!(
                "Invalid requests[{i}].addSheet: A sheet with the name \"{title}\" already exists. Please enter another name."
            ));
        }
        let id = props["sheetId"].as_i64().unwrap_or_else(|| {
            let seed = shared.options.world.seed
                ^ (tabs.len() as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            (seed % 2_000_000_000) as i64
        });
        if tabs.iter().any(|t| t.id == id) {
            return invalid(&format!(
                "Invalid requests[{i}].addSheet: A sheet with id {id} already exists."
            ));
        }
        let index = props["index"]
            .as_u64()
            .map_or(tabs.len(), |x| (x as usize).min(tabs.len()));
        for tab in tabs.iter_mut().filter(|t| t.index >= index) {
            tab.index += 1;
        }
        let tab = Tab::new(id, title, index, &props["gridProperties"]);
        replies.push(json!({ "addSheet": { "properties": sheet_properties(&tab) } }));
        tabs.push(tab);
    }
    book.tabs = tabs;
    json_response(
        StatusCode::OK,
        &json!({ "spreadsheetId": id, "replies": replies }),
    )
}

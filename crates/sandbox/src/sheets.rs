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
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Response, StatusCode, header};
use axum::routing::{get, post};
use serde_json::{Value, json};

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

#[derive(Debug, Clone)]
struct Tab {
    id: i64,
    title: String,
    index: usize,
    rows: usize,
    columns: usize,
    frozen_rows: i64,
    cells: Vec<Vec<Value>>,
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
    /// spreadsheet's (created ones too) under `spreadsheets`.
    pub fn summary(&self) -> Value {
        let seeded = self.books.get(SPREADSHEET_ID).map(Book::summary);
        let all: BTreeMap<&str, Value> = self
            .books
            .iter()
            .map(|(id, book)| {
                (
                    id.as_str(),
                    json!({ "title": book.title, "tabs": book.summary() }),
                )
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
            get(get_values).post(append),
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

/// A parsed A1 range: 0-based columns and rows, ends inclusive and open when absent.
#[derive(Debug, Clone, PartialEq, Eq)]
struct A1 {
    sheet: Option<String>,
    start_col: usize,
    start_row: usize,
    end_col: Option<usize>,
    end_row: Option<usize>,
}

fn column_index(letters: &str) -> Option<usize> {
    if letters.is_empty() || letters.len() > 3 || !letters.chars().all(|c| c.is_ascii_alphabetic())
    {
        return None;
    }
    Some(
        letters
            .to_ascii_uppercase()
            .bytes()
            .fold(0usize, |n, b| n * 26 + usize::from(b - b'A' + 1))
            - 1,
    )
}

fn column_letters(mut index: usize) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(char::from(b'A' + (index % 26) as u8));
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    letters.iter().rev().collect()
}

/// One cell reference (`B3`, `B`, `3`): its column and row, where given.
fn cell(reference: &str) -> Option<(Option<usize>, Option<usize>)> {
    let split = reference
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(reference.len());
    let (letters, digits) = reference.split_at(split);
    let col = if letters.is_empty() {
        None
    } else {
        Some(column_index(letters)?)
    };
    let row = if digits.is_empty() {
        None
    } else {
        Some(digits.parse::<usize>().ok().filter(|r| *r >= 1)? - 1)
    };
    (col.is_some() || row.is_some()).then_some((col, row))
}

/// Parses an A1 range; a bare name is a whole sheet when `is_sheet` knows it (as Google
/// resolves `Sheet1` to the tab, not to column SHEET, row 1).
fn parse_a1(range: &str, is_sheet: impl Fn(&str) -> bool) -> Option<A1> {
    let bare = range.trim_matches('\'').replace("''", "'");
    let (sheet, cells) = match range.rsplit_once('!') {
        Some((sheet, cells)) => (
            Some(sheet.trim_matches('\'').replace("''", "'")),
            Some(cells),
        ),
        None if is_sheet(&bare) => (Some(bare), None),
        None if cell(range.split(':').next().unwrap_or("")).is_some() => (None, Some(range)),
        None => (Some(bare), None),
    };
    let Some(cells) = cells else {
        return Some(A1 {
            sheet,
            start_col: 0,
            start_row: 0,
            end_col: None,
            end_row: None,
        });
    };
    let (from, to) = match cells.split_once(':') {
        Some((from, to)) => (cell(from)?, Some(cell(to)?)),
        None => (cell(cells)?, None),
    };
    Some(A1 {
        sheet,
        start_col: from.0.unwrap_or(0),
        start_row: from.1.unwrap_or(0),
        end_col: to.and_then(|t| t.0),
        end_row: to.and_then(|t| t.1),
    })
}

fn a1_text(title: &str, from_col: usize, from_row: usize, to_col: usize, to_row: usize) -> String {
    let quoted = if title.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        title.to_string()
    } else {
        format!("'{}'", title.replace('\'', "''"))
    };
    format!(
        "{quoted}!{}{}:{}{}",
        column_letters(from_col),
        from_row + 1,
        column_letters(to_col),
        to_row + 1
    )
}

fn find_tab<'t>(tabs: &'t mut [Tab], a1: &A1) -> Option<&'t mut Tab> {
    match &a1.sheet {
        Some(name) => tabs.iter_mut().find(|t| t.title == *name),
        None => tabs.iter_mut().min_by_key(|t| t.index),
    }
}

/// A cell as `USER_ENTERED` would store it: numbers and booleans parsed from strings.
fn user_entered(value: &Value) -> Value {
    let Some(text) = value.as_str() else {
        return value.clone();
    };
    if let Ok(n) = text.trim().parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(x) = text.trim().parse::<f64>().map(serde_json::Number::from_f64) {
        return x.map_or(value.clone(), Value::Number);
    }
    match text.to_ascii_uppercase().as_str() {
        "TRUE" => Value::from(true),
        "FALSE" => Value::from(false),
        _ => value.clone(),
    }
}

/// A cell as `FORMATTED_VALUE` shows it.
fn formatted(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::from(s.clone()),
        Value::Bool(b) => Value::from(if *b { "TRUE" } else { "FALSE" }),
        Value::Number(n) => Value::from(n.to_string()),
        _ => Value::from(""),
    }
}

fn is_blank(value: &Value) -> bool {
    value.is_null() || value.as_str() == Some("")
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

async fn append(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, target)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    body: String,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, true) {
        return response;
    }
    let (range, op) = target_and_op(&target);
    if op != Some("append") {
        return method_not_found();
    }
    let user = match query.get("valueInputOption").map(String::as_str) {
        Some("RAW") => false,
        Some("USER_ENTERED") => true,
        Some(other) => return invalid(&format!("Invalid value at 'value_input_option' ({other})")),
        None => return invalid("'valueInputOption' is required but not specified"),
    };
    let insert_rows = match query.get("insertDataOption").map(String::as_str) {
        None | Some("OVERWRITE") => false,
        Some("INSERT_ROWS") => true,
        Some(other) => return invalid(&format!("Invalid value at 'insert_data_option' ({other})")),
    };
    let Some(titles) = tab_titles(&shared, &id) else {
        return not_found();
    };
    let Some(a1) = parse_a1(range, |name| titles.iter().any(|t| t == name)) else {
        return invalid(&format!("Unable to parse range: {range}"));
    };
    let Ok(input) = serde_json::from_str::<Value>(&body) else {
        return invalid("Invalid JSON payload received.");
    };
    let rows = input
        .get("values")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (r, row) in rows.iter().enumerate() {
        let Some(cells) = row.as_array() else {
            return invalid(&format!("Invalid values[{r}]: must be a list of cells"));
        };
        if let Some(c) = cells.iter().position(|v| v.is_object() || v.is_array()) {
            return invalid(&format!(
                "Invalid values[{r}][{c}]: struct_value {}",
                cells[c]
            ));
        }
    }
    let mut state = lock(&shared.sheets);
    let Some(book) = state.books.get_mut(&id) else {
        return not_found();
    };
    let Some(tab) = find_tab(&mut book.tabs, &a1) else {
        return invalid(&format!("Unable to parse range: {range}"));
    };
    // The table is the block of rows with data in the range's columns, from its first row.
    let in_range = |row: &Vec<Value>| {
        row.iter()
            .enumerate()
            .any(|(c, v)| c >= a1.start_col && a1.end_col.is_none_or(|e| c <= e) && !is_blank(v))
    };
    let first_data = tab
        .cells
        .iter()
        .enumerate()
        .skip(a1.start_row)
        .find(|(_, row)| in_range(row))
        .map(|(i, _)| i);
    let last_data = (a1.start_row..tab.cells.len())
        .rev()
        .find(|i| in_range(&tab.cells[*i]));
    let width = rows
        .iter()
        .filter_map(Value::as_array)
        .map(Vec::len)
        .max()
        .unwrap_or(0);
    let table_width = tab
        .cells
        .iter()
        .map(Vec::len)
        .max()
        .unwrap_or(0)
        .max(a1.start_col + 1);
    let table_range = first_data.zip(last_data).map(|(f, l)| {
        a1_text(
            &tab.title,
            a1.start_col,
            f,
            table_width.saturating_sub(1),
            l,
        )
    });
    let start_row = last_data.map_or(a1.start_row, |l| l + 1);
    if insert_rows && start_row < tab.cells.len() {
        for _ in 0..rows.len() {
            tab.cells.insert(start_row, Vec::new());
        }
    }
    for (offset, row) in rows.iter().filter_map(Value::as_array).enumerate() {
        let r = start_row + offset;
        if tab.cells.len() <= r {
            tab.cells.resize(r + 1, Vec::new());
        }
        let target_row = &mut tab.cells[r];
        if target_row.len() < a1.start_col + row.len() {
            target_row.resize(a1.start_col + row.len(), Value::Null);
        }
        for (c, value) in row.iter().enumerate() {
            target_row[a1.start_col + c] = if user {
                user_entered(value)
            } else {
                value.clone()
            };
        }
    }
    tab.rows = tab.rows.max(tab.cells.len());
    let cells: usize = rows.iter().filter_map(Value::as_array).map(Vec::len).sum();
    let updated_range = a1_text(
        &tab.title,
        a1.start_col,
        start_row,
        a1.start_col + width.saturating_sub(1),
        start_row + rows.len().saturating_sub(1),
    );
    let mut updates = json!({
        "spreadsheetId": id,
        "updatedRange": updated_range,
        "updatedRows": rows.len(),
        "updatedColumns": width,
        "updatedCells": cells,
    });
    if query
        .get("includeValuesInResponse")
        .is_some_and(|v| v == "true")
    {
        updates["updatedData"] =
            json!({ "range": updates["updatedRange"], "majorDimension": "ROWS", "values": rows });
    }
    let mut answer = json!({ "spreadsheetId": id, "updates": updates });
    if let Some(table) = table_range {
        answer["tableRange"] = Value::from(table);
    }
    json_response(StatusCode::OK, &answer)
}

async fn get_values(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, range)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, false) {
        return response;
    }
    let mut state = lock(&shared.sheets);
    let Some(book) = state.books.get_mut(&id) else {
        return not_found();
    };
    let titles: Vec<String> = book.tabs.iter().map(|t| t.title.clone()).collect();
    let Some(a1) = parse_a1(&range, |name| titles.iter().any(|t| t == name)) else {
        return invalid(&format!("Unable to parse range: {range}"));
    };
    let Some(tab) = find_tab(&mut book.tabs, &a1) else {
        return invalid(&format!("Unable to parse range: {range}"));
    };
    let unformatted = query
        .get("valueRenderOption")
        .is_some_and(|v| v == "UNFORMATTED_VALUE" || v == "FORMULA");
    let end_row = a1.end_row.unwrap_or(tab.rows.max(1) - 1);
    let end_col = a1.end_col.unwrap_or(tab.columns.max(1) - 1);
    let mut values: Vec<Vec<Value>> = (a1.start_row..=end_row)
        .map(|r| {
            let row = tab.cells.get(r).cloned().unwrap_or_default();
            let mut cells: Vec<Value> = (a1.start_col..=end_col)
                .map(|c| row.get(c).cloned().unwrap_or(Value::Null))
                .map(|v| {
                    if unformatted {
                        if v.is_null() { Value::from("") } else { v }
                    } else {
                        formatted(&v)
                    }
                })
                .collect();
            while cells.last().is_some_and(is_blank) {
                cells.pop();
            }
            cells
        })
        .collect();
    while values.last().is_some_and(Vec::is_empty) {
        values.pop();
    }
    let echoed = a1_text(&tab.title, a1.start_col, a1.start_row, end_col, end_row);
    let mut answer = json!({ "range": echoed, "majorDimension": "ROWS" });
    if !values.is_empty() {
        answer["values"] = json!(values);
    }
    json_response(StatusCode::OK, &answer)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1_ranges_parse_with_quotes_open_ends_and_bare_sheet_names() {
        let tabs = |name: &str| ["Sheet1", "Weekly"].contains(&name);
        let parse = |r: &str| parse_a1(r, tabs);
        assert_eq!(
            parse("Sheet1!A1:D").map(|a| (a.start_col, a.start_row, a.end_col, a.end_row)),
            Some((0, 0, Some(3), None))
        );
        assert_eq!(
            parse("'Loyalty Export'!A:F").map(|a| a.sheet),
            Some(Some("Loyalty Export".into()))
        );
        assert_eq!(
            parse("Weekly").map(|a| (a.sheet, a.end_col)),
            Some((Some("Weekly".into()), None))
        );
        assert_eq!(
            parse("Sheet1").map(|a| (a.sheet, a.start_row)),
            Some((Some("Sheet1".into()), 0))
        );
        assert_eq!(
            parse("B2:C3").map(|a| (a.sheet, a.start_col, a.start_row)),
            Some((None, 1, 1))
        );
        assert_eq!(parse("Sheet1!A0"), None);
        assert_eq!(
            (
                column_letters(0),
                column_letters(25),
                column_letters(26),
                column_letters(701)
            ),
            ("A".into(), "Z".into(), "AA".into(), "ZZ".into())
        );
        assert_eq!(column_index("AA"), Some(26));
    }
}

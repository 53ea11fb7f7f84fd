//! The `spreadsheets.values` methods (`api-reference/sheets.md` §2–4): `append` after the
//! table found in a range, `get` with its render options, `update` of exactly the given
//! cells, and `:clear`. Cells are stored as Sheets stores them: `RAW` keeps every value as
//! sent; `USER_ENTERED` parses strings as if typed — numbers, `TRUE`/`FALSE`, dates and
//! date-times (kept as serial numbers with a date format), a leading apostrophe forcing
//! text (and not shown).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use chrono::{NaiveDate, NaiveDateTime};
use serde_json::{Value, json};

use super::a1::{A1, a1_text, parse_a1};
use super::{
    Format, Shared, Tab, admit, invalid, method_not_found, not_found, tab_titles, target_and_op,
};
use crate::{json_response, lock};

/// Day 0 of Sheets' serial dates.
fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(1899, 12, 30)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

pub(super) fn find_tab<'t>(tabs: &'t mut [Tab], a1: &A1) -> Option<&'t mut Tab> {
    match &a1.sheet {
        Some(name) => tabs.iter_mut().find(|t| t.title == *name),
        None => tabs.iter_mut().min_by_key(|t| t.index),
    }
}

/// A cell as it is stored: as sent (`RAW`), or parsed as if typed (`USER_ENTERED`).
fn entered(value: &Value, user: bool) -> (Value, Option<Format>) {
    let Some(text) = value.as_str().filter(|_| user) else {
        return (value.clone(), None);
    };
    if let Some(literal) = text.strip_prefix('\'') {
        return (Value::from(literal), None);
    }
    let trimmed = text.trim();
    if let Ok(n) = trimmed.parse::<i64>() {
        return (Value::from(n), None);
    }
    if let Some(x) = trimmed
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
    {
        return (Value::Number(x), None);
    }
    match trimmed.to_ascii_uppercase().as_str() {
        "TRUE" => return (Value::from(true), None),
        "FALSE" => return (Value::from(false), None),
        _ => {}
    }
    // Whole days are integers, as Sheets answers them; times are fractions of a day.
    let serial = |at: NaiveDateTime| {
        let seconds = (at - epoch()).num_seconds();
        match seconds % 86_400 {
            0 => Some(Value::from(seconds / 86_400)),
            _ => serde_json::Number::from_f64(seconds as f64 / 86_400.0).map(Value::Number),
        }
    };
    if let Ok(date) = NaiveDate::parse_from_str(trimmed, "%Y-%m-%d")
        && let Some(days) = date.and_hms_opt(0, 0, 0).and_then(serial)
    {
        return (days, Some(Format::Date));
    }
    for pattern in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M"] {
        if let Some(days) = NaiveDateTime::parse_from_str(trimmed, pattern)
            .ok()
            .and_then(serial)
        {
            return (days, Some(Format::DateTime));
        }
    }
    (value.clone(), None)
}

/// A cell as `FORMATTED_VALUE` shows it.
fn formatted(value: &Value, format: Option<Format>) -> Value {
    match (value, format) {
        (Value::Number(n), Some(format)) => {
            let seconds = (n.as_f64().unwrap_or(0.0) * 86_400.0).round() as i64;
            let at = epoch() + chrono::Duration::seconds(seconds);
            let pattern = match format {
                Format::Date => "%Y-%m-%d",
                Format::DateTime => "%Y-%m-%d %H:%M:%S",
            };
            Value::from(at.format(pattern).to_string())
        }
        (Value::String(s), _) => Value::from(s.clone()),
        (Value::Bool(b), _) => Value::from(if *b { "TRUE" } else { "FALSE" }),
        (Value::Number(n), None) => Value::from(n.to_string()),
        _ => Value::from(""),
    }
}

/// `valueInputOption`, required: whether values are parsed as if typed.
fn input_option(query: &BTreeMap<String, String>) -> Result<bool, Response<Body>> {
    match query.get("valueInputOption").map(String::as_str) {
        Some("RAW") => Ok(false),
        Some("USER_ENTERED") => Ok(true),
        Some(other) => Err(invalid(&format!(
            "Invalid value at 'value_input_option' ({other})"
        ))),
        None => Err(invalid("'valueInputOption' is required but not specified")),
    }
}

/// The `values` of a `ValueRange` body: rows of scalar cells.
fn value_rows(body: &str) -> Result<Vec<Vec<Value>>, Response<Body>> {
    let Ok(input) = serde_json::from_str::<Value>(body) else {
        return Err(invalid("Invalid JSON payload received."));
    };
    let rows = input
        .get("values")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = Vec::with_capacity(rows.len());
    for (r, row) in rows.into_iter().enumerate() {
        let Value::Array(cells) = row else {
            return Err(invalid(&format!(
                "Invalid values[{r}]: must be a list of cells"
            )));
        };
        if let Some(c) = cells.iter().position(|v| v.is_object() || v.is_array()) {
            return Err(invalid(&format!(
                "Invalid values[{r}][{c}]: struct_value {}",
                cells[c]
            )));
        }
        out.push(cells);
    }
    Ok(out)
}

/// Writes `rows` with their top-left cell at (`row`, `col`), exactly those cells.
fn write_rows(tab: &mut Tab, row: usize, col: usize, rows: &[Vec<Value>], user: bool) {
    for (offset, values) in rows.iter().enumerate() {
        let r = row + offset;
        if tab.cells.len() <= r {
            tab.cells.resize(r + 1, Vec::new());
        }
        let target = &mut tab.cells[r];
        if target.len() < col + values.len() {
            target.resize(col + values.len(), Value::Null);
        }
        for (c, value) in values.iter().enumerate() {
            let (stored, format) = entered(value, user);
            target[col + c] = stored;
            match format {
                Some(format) => tab.formats.insert((r, col + c), format),
                None => tab.formats.remove(&(r, col + c)),
            };
        }
    }
    tab.rows = tab.rows.max(tab.cells.len());
}

/// How wide a block of rows is.
fn width(rows: &[Vec<Value>]) -> usize {
    rows.iter().map(Vec::len).max().unwrap_or(0)
}

fn is_blank(value: &Value) -> bool {
    value.is_null() || value.as_str() == Some("")
}

pub(super) async fn append(
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
    let user = match input_option(&query) {
        Ok(user) => user,
        Err(response) => return response,
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
    let rows = match value_rows(&body) {
        Ok(rows) => rows,
        Err(response) => return response,
    };
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
    let width = width(&rows);
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
        tab.formats = std::mem::take(&mut tab.formats)
            .into_iter()
            .map(|((r, c), f)| match r >= start_row {
                true => ((r + rows.len(), c), f),
                false => ((r, c), f),
            })
            .collect();
    }
    write_rows(tab, start_row, a1.start_col, &rows, user);
    let cells: usize = rows.iter().map(Vec::len).sum();
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

pub(super) async fn get_values(
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
                .map(|c| {
                    let v = row.get(c).cloned().unwrap_or(Value::Null);
                    if unformatted {
                        if v.is_null() { Value::from("") } else { v }
                    } else {
                        formatted(&v, tab.formats.get(&(r, c)).copied())
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

/// The tab and parsed range a request names; `Err` is the answer for a spreadsheet or range
/// that is not there.
fn locate<'b>(book: &'b mut super::Book, range: &str) -> Result<(&'b mut Tab, A1), Response<Body>> {
    let titles: Vec<String> = book.tabs.iter().map(|t| t.title.clone()).collect();
    let a1 = parse_a1(range, |name| titles.iter().any(|t| t == name))
        .ok_or_else(|| invalid(&format!("Unable to parse range: {range}")))?;
    let tab = find_tab(&mut book.tabs, &a1)
        .ok_or_else(|| invalid(&format!("Unable to parse range: {range}")))?;
    Ok((tab, a1))
}

/// `PUT .../values/{range}` (values.update): writes exactly the given cells from the
/// range's top-left cell; idempotent.
pub(super) async fn update(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, range)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    body: String,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, true) {
        return response;
    }
    let user = match input_option(&query) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let rows = match value_rows(&body) {
        Ok(rows) => rows,
        Err(response) => return response,
    };
    let mut state = lock(&shared.sheets);
    let Some(book) = state.books.get_mut(&id) else {
        return not_found();
    };
    let (tab, a1) = match locate(book, &range) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let fits = a1
        .end_row
        .is_none_or(|end| a1.start_row + rows.len() <= end + 1)
        && a1
            .end_col
            .is_none_or(|end| a1.start_col + width(&rows) <= end + 1);
    if !fits {
        return invalid(&format!(
            "Requested writing within range [{range}], but tried writing to a row or column outside it."
        ));
    }
    write_rows(tab, a1.start_row, a1.start_col, &rows, user);
    let updated = a1_text(
        &tab.title,
        a1.start_col,
        a1.start_row,
        a1.start_col + width(&rows).saturating_sub(1),
        a1.start_row + rows.len().saturating_sub(1),
    );
    json_response(
        StatusCode::OK,
        &json!({
            "spreadsheetId": id,
            "updatedRange": updated,
            "updatedRows": rows.len(),
            "updatedColumns": width(&rows),
            "updatedCells": rows.iter().map(Vec::len).sum::<usize>(),
        }),
    )
}

/// `POST .../values/{range}:append` or `:clear`.
pub(super) async fn append_or_clear(
    state: State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, target)): Path<(String, String)>,
    query: Query<BTreeMap<String, String>>,
    body: String,
) -> Response<Body> {
    match target_and_op(&target).1 {
        Some("append") => append(state, headers, Path((id, target)), query, body).await,
        Some("clear") => clear(state, headers, id, &target).await,
        _ => method_not_found(),
    }
}

/// `POST .../values/{range}:clear`: values (and their formats) in the range are removed;
/// nothing else about the tab changes.
async fn clear(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    id: String,
    target: &str,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, true) {
        return response;
    }
    let (range, _) = target_and_op(target);
    let mut state = lock(&shared.sheets);
    let Some(book) = state.books.get_mut(&id) else {
        return not_found();
    };
    let (tab, a1) = match locate(book, range) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let end_row = a1.end_row.unwrap_or(usize::MAX);
    let end_col = a1.end_col.unwrap_or(usize::MAX);
    for (r, row) in tab.cells.iter_mut().enumerate() {
        if r < a1.start_row || r > end_row {
            continue;
        }
        for (c, cell) in row.iter_mut().enumerate() {
            if c >= a1.start_col && c <= end_col {
                *cell = Value::Null;
            }
        }
    }
    tab.formats.retain(|(r, c), _| {
        !(a1.start_row..=end_row).contains(r) || !(a1.start_col..=end_col).contains(c)
    });
    // Rows left empty at the end are no data.
    while tab
        .cells
        .last()
        .is_some_and(|row| row.iter().all(|v| v.is_null()))
    {
        tab.cells.pop();
    }
    let cleared = a1_text(
        &tab.title,
        a1.start_col,
        a1.start_row,
        a1.end_col.unwrap_or(tab.columns.max(1) - 1),
        a1.end_row.unwrap_or(tab.rows.max(1) - 1),
    );
    json_response(
        StatusCode::OK,
        &json!({ "spreadsheetId": id, "clearedRange": cleared }),
    )
}

//! Google Sheets: a report's rows written to a tab, exactly once per delivery key.
//!
//! Every write is a `values.update` of a range the delivery computes from what the tab
//! holds, so repeating one is harmless (`api-reference/sheets.md` §9). Each data row
//! carries its delivery's key in a last column, [`KEY_COLUMN`]: the block of a period can
//! be found in the sheet itself, so a rerun, a retry after an unknown outcome or a run
//! after a crash between the write and its ledger record reads the tab and replaces that
//! block in place instead of adding a second copy. The tab is read before every delivery.
//!
//! - `append`: each period's rows are one block below the last; the period's block, if
//!   there, is rewritten where it stands (rows it no longer needs are cleared).
//! - `replace`: the data rows are rewritten from row 2 and any rows below them cleared; the
//!   header row and the tab's formatting stay. No whole tab is ever cleared.
//!
//! The first delivery to a tab creates it (header row frozen) and writes the header: the
//! report's columns and [`KEY_COLUMN`]. A tab whose header differs is refused, naming both.

use serde_json::{Value, json};

use super::DeliverError;
use super::cells;
use crate::config::DeliveryMode;
use crate::http::google_auth::GoogleTokens;
use crate::http::{Auth, Body, Call, HttpClient, Service};
use crate::services::{ServiceKind, Services};
use crate::warehouse::QueryResult;

/// The last column of every delivered tab: the delivery each row belongs to.
pub const KEY_COLUMN: &str = "mailroom_delivery";

/// The OAuth scope for reading and writing spreadsheets.
const SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets";

/// Rows per `values.update` request at most.
const ROWS_PER_REQUEST: usize = 2_000;
/// Bytes of cells per request at most: under the 2 MB Sheets advises (sheets.md §7).
const BYTES_PER_REQUEST: usize = 1_500_000;

/// The configured spreadsheet, reached with the service account's tokens.
pub struct Sheets {
    http: HttpClient,
    reads: Service,
    writes: Service,
    tokens: GoogleTokens,
    spreadsheet: String,
}

/// What one delivery wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The range the rows went to, such as `'Weekly email'!A2:H13`.
    pub range: String,
    /// Data rows written.
    pub rows: u64,
}

/// A1 text for a tab name (quoted) and a cell range.
fn a1(tab: &str, range: &str) -> String {
    format!("'{}'!{range}", tab.replace('\'', "''"))
}

/// Column letters of a 0-based index.
fn column(mut index: usize) -> String {
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

/// A range for a URL path: everything but unreserved characters percent-encoded.
fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

impl Sheets {
    /// The spreadsheet `[destinations.sheets]` names, with tokens from its key file
    /// (relative to `base_dir`, the config's folder) or the services' Google override.
    pub fn new(services: &Services, base_dir: &std::path::Path) -> Result<Self, DeliverError> {
        let connection = services.connection(ServiceKind::Sheets)?;
        let spreadsheet = connection
            .setting("spreadsheet_id")
            .ok_or(DeliverError::Setting {
                key: "destinations.sheets.spreadsheet_id",
            })?
            .to_string();
        let key_file = connection
            .setting("credentials_file")
            .map(|file| base_dir.join(file));
        let (key, _) = services.google_key(
            key_file.as_deref(),
            "",
            "destinations.sheets.credentials_file",
        )?;
        let tokens = GoogleTokens::new(key, &[SCOPE], services.client().clone(), services.retry());
        Ok(Sheets {
            http: connection.client.clone(),
            reads: connection.with_budget("reads"),
            writes: connection.with_budget("writes"),
            tokens,
            spreadsheet,
        })
    }

    async fn send(&self, write: bool, call: Call) -> Result<Value, DeliverError> {
        let mut service = if write { &self.writes } else { &self.reads }.clone();
        service.auth = Auth::Bearer(self.tokens.token().await?);
        let response = self.http.send(&service, &call).await?;
        let text = response.text().await.map_err(|e| DeliverError::Answer {
            what: call.path.clone(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| DeliverError::Answer {
            what: call.path.clone(),
            message: e.to_string(),
        })
    }

    fn values_path(&self, range: &str) -> String {
        format!(
            "/v4/spreadsheets/{}/values/{}",
            self.spreadsheet,
            path_segment(range)
        )
    }

    /// The titles of the spreadsheet's tabs.
    async fn tabs(&self) -> Result<Vec<String>, DeliverError> {
        let path = format!("/v4/spreadsheets/{}", self.spreadsheet);
        let answer = self
            .send(false, Call::get(path).query("fields", "sheets.properties"))
            .await?;
        Ok(answer["sheets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["properties"]["title"].as_str().map(str::to_string))
            .collect())
    }

    /// Creates `tab` with its header row frozen.
    async fn add_tab(&self, tab: &str) -> Result<(), DeliverError> {
        let path = format!("/v4/spreadsheets/{}:batchUpdate", self.spreadsheet);
        let body = json!({ "requests": [{ "addSheet": { "properties": {
            "title": tab, "gridProperties": { "frozenRowCount": 1 } } } }] });
        // Adding a tab that exists is refused, so asking again is harmless; a refusal
        // after a retry means the first request was applied.
        let call = Call::post(path, Body::Json(body)).idempotent();
        match self.send(true, call).await {
            Err(DeliverError::Http(err))
                if err.status == Some(400) && err.message.contains("already exists") =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// Every row of `tab` as stored (unformatted), trailing empty rows dropped.
    async fn rows(&self, tab: &str) -> Result<Vec<Vec<Value>>, DeliverError> {
        let call = Call::get(self.values_path(&a1(tab, "A1:ZZZ")))
            .query("valueRenderOption", "UNFORMATTED_VALUE");
        let answer = self.send(false, call).await?;
        Ok(answer["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| row.as_array().cloned().unwrap_or_default())
            .collect())
    }

    /// Writes `rows` from row `first` (0-based) down, in requests of at most
    /// [`ROWS_PER_REQUEST`] rows and [`BYTES_PER_REQUEST`] bytes.
    async fn write(
        &self,
        tab: &str,
        first: usize,
        rows: &[Vec<Value>],
    ) -> Result<(), DeliverError> {
        // 1-based: the sheet row the next chunk starts at.
        let mut next_row = first + 1;
        for chunk in requests(rows, ROWS_PER_REQUEST, BYTES_PER_REQUEST) {
            let row = next_row;
            next_row += chunk.len();
            let call = Call::put(
                self.values_path(&a1(tab, &format!("A{row}"))),
                Body::Json(json!({ "majorDimension": "ROWS", "values": chunk })),
            )
            .query("valueInputOption", "USER_ENTERED");
            self.send(true, call).await?;
        }
        Ok(())
    }

    /// Clears rows `from..=to` (0-based), every column the tab uses.
    async fn clear(
        &self,
        tab: &str,
        from: usize,
        to: usize,
        width: usize,
    ) -> Result<(), DeliverError> {
        let range = a1(
            tab,
            &format!("A{}:{}{}", from + 1, column(width.max(1) - 1), to + 1),
        );
        let path = format!("{}:clear", self.values_path(&range));
        let call = Call::post(path, Body::Json(json!({}))).idempotent();
        self.send(true, call).await.map(drop)
    }

    /// Delivers `result` to `tab` as the block of delivery `key`.
    pub async fn deliver(
        &self,
        tab: &str,
        mode: DeliveryMode,
        key: &str,
        result: &QueryResult,
    ) -> Result<Written, DeliverError> {
        let header: Vec<String> = result
            .schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .chain(std::iter::once(KEY_COLUMN.to_string()))
            .collect();
        if !self.tabs().await?.iter().any(|t| t == tab) {
            self.add_tab(tab).await?;
        }
        let existing = self.rows(tab).await?;
        let mut block = block_rows(result, key);
        match existing.first() {
            // A tab without rows gets its header with the first block, in one request.
            None => block.insert(0, header.iter().map(|h| cells::text(h)).collect()),
            Some(found) => {
                let found: Vec<String> = found
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                    .collect();
                if found != header {
                    return Err(DeliverError::Header {
                        tab: tab.to_string(),
                        found,
                        expected: header,
                    });
                }
            }
        }
        let header_rows = usize::from(existing.is_empty());
        let key_index = header.len() - 1;
        let is_key = |row: &Vec<Value>| row.get(key_index).and_then(Value::as_str) == Some(key);
        // Rows are 0-based; `old_end` is where the rows this write replaces end.
        let (start, old_end) = match mode {
            // A new tab: the header and the block from the top.
            _ if existing.is_empty() => (0, 0),
            DeliveryMode::Replace => (1, existing.len()),
            DeliveryMode::Append => match existing.iter().position(is_key) {
                Some(first) => {
                    let end = existing[first..]
                        .iter()
                        .position(|row| !is_key(row))
                        .map_or(existing.len(), |n| first + n);
                    if end < existing.len() && block.len() > end - first {
                        return Err(DeliverError::BlockGrew {
                            tab: tab.to_string(),
                            key: key.to_string(),
                            before: end - first,
                            now: block.len(),
                        });
                    }
                    (first, end)
                }
                None => (existing.len(), existing.len()),
            },
        };
        self.write(tab, start, &block).await?;
        let new_end = start + block.len();
        if new_end < old_end {
            self.clear(tab, new_end, old_end - 1, header.len()).await?;
        }
        let rows = block.len() - header_rows;
        // An empty answer still stands for its period: it is the header alone.
        let (from, to) = match rows {
            0 => (1, 1),
            _ => (start + header_rows + 1, new_end),
        };
        Ok(Written {
            range: a1(tab, &format!("A{from}:{}{to}", column(header.len() - 1))),
            rows: rows as u64,
        })
    }
}

/// `rows` cut into consecutive requests of at most `max_rows` rows and about `max_bytes`
/// bytes of JSON (a single larger row still goes, alone).
fn requests(rows: &[Vec<Value>], max_rows: usize, max_bytes: usize) -> Vec<&[Vec<Value>]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, row) in rows.iter().enumerate() {
        let size = serde_json::to_string(row).map_or(0, |text| text.len() + 1);
        let full = i - start >= max_rows || (bytes + size > max_bytes && i > start);
        if full {
            chunks.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

/// The rows of `result` as cells, each ending with the delivery's key.
fn block_rows(result: &QueryResult, key: &str) -> Vec<Vec<Value>> {
    let mut rows = Vec::with_capacity(result.num_rows());
    for batch in &result.batches {
        for row in 0..batch.num_rows() {
            let mut cells: Vec<Value> = batch
                .columns()
                .iter()
                .map(|column| cells::cell(column, row))
                .collect();
            cells.push(cells::text(key));
            rows.push(cells);
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_stay_within_rows_and_bytes() {
        let rows: Vec<Vec<Value>> = (0..10).map(|i| vec![json!(format!("{i:0>8}"))]).collect();
        let sizes = |max_rows, max_bytes| -> Vec<usize> {
            requests(&rows, max_rows, max_bytes)
                .iter()
                .map(|c| c.len())
                .collect()
        };
        assert_eq!(sizes(4, usize::MAX), [4, 4, 2]);
        // Each row is `["00000000"]` plus a separator: 13 bytes.
        assert_eq!(sizes(100, 30), [2, 2, 2, 2, 2]);
        assert_eq!(
            sizes(100, 5),
            [1; 10],
            "a row larger than the limit goes alone"
        );
        assert!(requests(&[], 4, 10).is_empty());
    }

    #[test]
    fn ranges_are_quoted_and_encoded_for_the_path() {
        assert_eq!(a1("Weekly email", "A2"), "'Weekly email'!A2");
        assert_eq!(a1("Bob's", "A1"), "'Bob''s'!A1");
        assert_eq!(
            path_segment("'Weekly email'!A2:H13"),
            "%27Weekly%20email%27%21A2%3AH13"
        );
        assert_eq!(
            (column(0), column(7), column(26)),
            ("A".into(), "H".into(), "AA".into())
        );
    }
}

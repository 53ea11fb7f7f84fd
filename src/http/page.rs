//! One answer of a collection endpoint: its text and where its records are, found without
//! parsing the records themselves; and CSV answers (Iterable's campaign metrics).

use std::ops::Range;

use serde_json::Value;
use serde_json::value::RawValue;

/// Where an answer keeps its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordsAt {
    /// The answer is the array of records (SmartrMail, Dotdigital).
    Root,
    /// The array at this JSON pointer (`/customers`, `/data/orders/nodes`).
    Pointer(&'static str),
    /// The answer has no records (a status query).
    None,
}

/// One answer: its text and the byte ranges of its records; plus, for pages a source
/// composed, records it could not use, each with the reason (they go to quarantine).
#[derive(Debug)]
pub struct Page {
    text: String,
    records: Vec<Range<usize>>,
    rejected: Vec<(String, String)>,
}

impl Page {
    /// Reads the records of `text` at `at`; the error says why the text is not a page.
    pub fn parse(text: String, at: RecordsAt) -> Result<Page, String> {
        let records = {
            let root: &RawValue =
                serde_json::from_str(&text).map_err(|e| format!("not valid JSON: {e}"))?;
            let array = match at {
                RecordsAt::Root => Some(root),
                RecordsAt::Pointer(pointer) => raw_at(root, pointer)?,
                RecordsAt::None => None,
            };
            match array {
                None => Vec::new(),
                Some(array) if array.get() == "null" => Vec::new(),
                Some(array) => {
                    let items: Vec<&RawValue> = serde_json::from_str(array.get()).map_err(|e| {
                        format!("expected an array of records at {}: {e}", describe(at))
                    })?;
                    let base = text.as_ptr() as usize;
                    items
                        .iter()
                        .map(|item| {
                            let start = item.get().as_ptr() as usize - base;
                            start..start + item.get().len()
                        })
                        .collect()
                }
            }
        };
        Ok(Page {
            text,
            records,
            rejected: Vec::new(),
        })
    }

    /// The same page carrying `rejected` records (record, reason) for quarantine.
    pub fn with_rejected(mut self, rejected: Vec<(String, String)>) -> Self {
        self.rejected = rejected;
        self
    }

    /// Records the source could not use, with the reason.
    pub fn rejected(&self) -> &[(String, String)] {
        &self.rejected
    }

    /// The records' JSON texts, in order.
    pub fn records(&self) -> impl Iterator<Item = &str> {
        self.records.iter().map(|range| &self.text[range.clone()])
    }

    /// How many records the page has.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the page has no records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// A page of records built by a source (records composed from several answers).
    pub fn from_records(records: &[String]) -> Result<Page, String> {
        Page::parse(format!("[{}]", records.join(",")), RecordsAt::Root)
    }

    /// The (small) value at a JSON pointer, such as `/metadata/next_cursor`.
    pub fn value(&self, pointer: &str) -> Option<Value> {
        let root: &RawValue = serde_json::from_str(&self.text).ok()?;
        let raw = raw_at(root, pointer).ok()??;
        serde_json::from_str(raw.get()).ok()
    }
}

fn describe(at: RecordsAt) -> String {
    match at {
        RecordsAt::Root => "the top level".into(),
        RecordsAt::Pointer(p) => p.to_string(),
        RecordsAt::None => "nowhere".into(),
    }
}

/// The raw value at `pointer` below `root`, walking objects level by level without parsing
/// the values beside the path; `None` when a level lacks the key or is null.
fn raw_at<'a>(root: &'a RawValue, pointer: &str) -> Result<Option<&'a RawValue>, String> {
    let mut current = root;
    for segment in pointer.split('/').skip(1) {
        if current.get() == "null" {
            return Ok(None);
        }
        let object: std::collections::HashMap<std::borrow::Cow<'a, str>, &'a RawValue> =
            serde_json::from_str(current.get())
                .map_err(|e| format!("expected an object on the way to {pointer}: {e}"))?;
        match object.get(segment) {
            Some(next) => current = next,
            None => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// A CSV answer: its header row and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvTable {
    /// Column names, in order.
    pub headers: Vec<String>,
    /// Rows, each as long as the headers.
    pub rows: Vec<Vec<String>>,
}

impl CsvTable {
    /// Parses CSV text whose first row names the columns; the error says what is wrong.
    pub fn parse(text: &str, required_header: &str) -> Result<CsvTable, String> {
        let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| format!("not CSV: {e}"))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        if !headers.iter().any(|h| h == required_header) {
            return Err(format!("no `{required_header}` column in the CSV header"));
        }
        let rows = reader
            .records()
            .map(|row| {
                row.map(|r| r.iter().map(str::to_string).collect())
                    .map_err(|e| format!("not CSV: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(CsvTable { headers, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_without_parsing_them() {
        let page = Page::parse(
            r#"{"customers": [{"id": 1}, {"id": 2, "x": [1]}], "metadata": {"next_cursor": "abc"}}"#.into(),
            RecordsAt::Pointer("/customers"),
        )
        .unwrap();
        assert_eq!(
            page.records().collect::<Vec<_>>(),
            [r#"{"id": 1}"#, r#"{"id": 2, "x": [1]}"#]
        );
        assert_eq!(
            page.value("/metadata/next_cursor"),
            Some(Value::from("abc"))
        );
        let bare = Page::parse(r#"[{"id": "s_1"}]"#.into(), RecordsAt::Root).unwrap();
        assert_eq!(bare.len(), 1);
        let nested = Page::parse(
            r#"{"data": {"orders": {"nodes": [], "pageInfo": {"hasNextPage": false}}}}"#.into(),
            RecordsAt::Pointer("/data/orders/nodes"),
        )
        .unwrap();
        assert!(nested.is_empty());
        assert!(Page::parse(r#"{"customers": [{"id": 1}, {"#.into(), RecordsAt::Root).is_err());
    }

    #[test]
    fn csv_answers_need_their_key_column() {
        let table = CsvTable::parse("id,Revenue\n1,2.5\n2,\n", "id").unwrap();
        assert_eq!(table.headers, ["id", "Revenue"]);
        assert_eq!(table.rows, [vec!["1", "2.5"], vec!["2", ""]]);
        assert!(CsvTable::parse("id,Revenue\n1,2.5\n2,", "campaign").is_err());
        assert!(
            CsvTable::parse("id,Revenue\n1,2.5,9\n", "id").is_err(),
            "a ragged row"
        );
    }
}

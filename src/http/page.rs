//! One answer of a collection endpoint: its text and where its records are, found without
//! parsing the records themselves; and CSV answers (Iterable's campaign metrics).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};
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

/// One answer: its text and the byte ranges of its records and of the values beside them
/// (metadata such as `next_cursor`, `pageInfo`, `extensions.cost`), all found in one pass;
/// plus, for pages a source composed, records it could not use, each with the reason
/// (they go to quarantine).
#[derive(Debug)]
pub struct Page {
    text: String,
    records: Vec<Range<usize>>,
    /// JSON pointer → byte range of every value beside the path to the records.
    beside: Vec<(String, Range<usize>)>,
    rejected: Vec<(String, String)>,
}

impl Page {
    /// Reads the records of `text` at `at` in one pass over the text: record values are
    /// located, not built, and the values beside them kept by range for [`Page::value`];
    /// the error says why the text is not a page.
    pub fn parse(text: String, at: RecordsAt) -> Result<Page, String> {
        let base = text.as_ptr() as usize;
        let range = |raw: &RawValue| {
            let start = raw.get().as_ptr() as usize - base;
            start..start + raw.get().len()
        };
        let (records, beside) = {
            let mut deserializer = serde_json::Deserializer::from_str(&text);
            let mut beside = Vec::new();
            let found = match at {
                RecordsAt::None => <&RawValue>::deserialize(&mut deserializer).map(|root| {
                    beside.push((String::new(), root));
                    None
                }),
                RecordsAt::Root => Option::<Vec<&RawValue>>::deserialize(&mut deserializer),
                RecordsAt::Pointer(pointer) => {
                    let path: Vec<&str> = pointer.split('/').skip(1).collect();
                    let find = Find {
                        path: &path,
                        prefix: String::new(),
                        beside: &mut beside,
                    };
                    find.deserialize(&mut deserializer)
                }
            }
            .and_then(|found| deserializer.end().map(|()| found))
            .map_err(|e| format!("not a page with records at {}: {e}", describe(at)))?;
            let records = found.unwrap_or_default().into_iter().map(range).collect();
            let beside = beside
                .into_iter()
                .map(|(pointer, raw)| (pointer, range(raw)))
                .collect();
            (records, beside)
        };
        Ok(Page {
            text,
            records,
            beside,
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

    /// A page of records a source composed (from several answers, or lines of a bulk
    /// result), each the JSON text of one record: laid end to end and located by position,
    /// not read again. A text that is not valid JSON is the decoder's to find; it goes to
    /// quarantine with the reason.
    pub fn from_records(records: &[String]) -> Page {
        let mut text =
            String::with_capacity(records.iter().map(|r| r.len() + 1).sum::<usize>() + 2);
        let mut ranges = Vec::with_capacity(records.len());
        text.push('[');
        for (i, record) in records.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            ranges.push(text.len()..text.len() + record.len());
            text.push_str(record);
        }
        text.push(']');
        Page {
            text,
            records: ranges,
            beside: Vec::new(),
            rejected: Vec::new(),
        }
    }

    /// The value at a JSON pointer beside the records, such as `/metadata/next_cursor`;
    /// only the small value kept at parse time is read, never the whole page again.
    pub fn value(&self, pointer: &str) -> Option<Value> {
        let (at, range) = self.beside.iter().find(|(at, _)| {
            pointer == at
                || pointer
                    .strip_prefix(at.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
        })?;
        let value: Value = serde_json::from_str(&self.text[range.clone()]).ok()?;
        value.pointer(&pointer[at.len()..]).cloned()
    }
}

fn describe(at: RecordsAt) -> String {
    match at {
        RecordsAt::Root => "the top level".into(),
        RecordsAt::Pointer(p) => p.to_string(),
        RecordsAt::None => "nowhere".into(),
    }
}

/// Finds the array at `path` below the current value, keeping the raw values beside the
/// path under their pointers; `None` when a level lacks the key or is null.
struct Find<'p, 'b, 'de> {
    path: &'p [&'p str],
    prefix: String,
    beside: &'b mut Vec<(String, &'de RawValue)>,
}

impl<'de> DeserializeSeed<'de> for Find<'_, '_, 'de> {
    type Value = Option<Vec<&'de RawValue>>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        if self.path.is_empty() {
            return Option::<Vec<&'de RawValue>>::deserialize(deserializer);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Find<'_, '_, 'de> {
    type Value = Option<Vec<&'de RawValue>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an object with `{}`", self.path[0])
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let pointer = format!("{}/{key}", self.prefix);
            if key == self.path[0] {
                found = map.next_value_seed(Find {
                    path: &self.path[1..],
                    prefix: pointer,
                    beside: &mut *self.beside,
                })?;
            } else {
                let raw: &'de RawValue = map.next_value()?;
                self.beside.push((pointer, raw));
            }
        }
        Ok(found)
    }
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
        assert_eq!(page.value("/metadata/previous"), None);
        assert_eq!(
            page.value("/customers/0/id"),
            None,
            "records are not metadata"
        );
        let status = Page::parse(
            r#"{"data": {"bulkOperation": {"status": "RUNNING"}}}"#.into(),
            RecordsAt::None,
        )
        .unwrap();
        assert!(status.is_empty());
        assert_eq!(
            status.value("/data/bulkOperation/status"),
            Some(Value::from("RUNNING"))
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
    fn composed_records_are_kept_as_given_even_when_one_is_not_json() {
        let records = [
            r#"{"id": 1}"#.to_string(),
            r#"{"id": 2, "x": "},{"}"#.to_string(),
            r#"{"id": 3,"#.to_string(),
        ];
        let page = Page::from_records(&records);
        assert_eq!(page.records().collect::<Vec<_>>(), records);
        assert!(Page::from_records(&[]).is_empty());
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

//! Reading collections page by page: a [`Page`] holds one answer's text and where its
//! records are, and a [`Paginator`] is the small strategy that turns one page into the call
//! for the next — cursor (Smile), skip/select (Dotdigital), page number (Iterable),
//! GraphQL connection (Shopify), or a single answer (SmartrMail arrays).
//!
//! [`fetch_pages`] drives one: it reads each answer whole, retrying a body that breaks off
//! or does not parse (the page is asked for again; its records are never skipped), and
//! hands pages to a bounded channel, so fetching waits while decoding catches up.

use std::ops::Range;
use std::time::Duration;

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::{Body, Call, HttpClient, HttpError, Service, redact};

/// Times a page whose body breaks off or does not parse is asked for again.
const BAD_PAGE_RETRIES: u32 = 3;

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

/// One answer: its text and the byte ranges of its records.
#[derive(Debug)]
pub struct Page {
    text: String,
    records: Vec<Range<usize>>,
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
        Ok(Page { text, records })
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

/// What a paginator makes of a page before its records are used.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The page is good.
    Accept,
    /// Ask for the same page again after this wait (Shopify's THROTTLED).
    RetryAfter(Duration),
    /// The answer is an error the service sent with a success status.
    Fail(String),
}

/// A pagination scheme.
pub trait Paginator: Send {
    /// The call for the first page.
    fn first(&mut self, call: Call) -> Call;

    /// Checks an answer before its records are used (for errors sent with HTTP 200).
    fn check(&mut self, _page: &Page) -> Verdict {
        Verdict::Accept
    }

    /// The call for the page after `page`, or `None` at the end.
    fn next(&mut self, call: Call, page: &Page) -> Option<Call>;

    /// How long to wait before asking for the next page (a cost budget running low).
    fn pause(&self) -> Option<Duration> {
        None
    }
}

/// Smile's cursor pages: `limit` and `cursor` parameters, `metadata.next_cursor` until null.
#[derive(Debug, Clone)]
pub struct CursorPages {
    /// Records per page.
    pub limit: u32,
    /// Where the answer keeps the next cursor.
    pub next_cursor: &'static str,
}

impl Paginator for CursorPages {
    fn first(&mut self, call: Call) -> Call {
        call.set_query("limit", self.limit)
    }

    fn next(&mut self, call: Call, page: &Page) -> Option<Call> {
        match page.value(self.next_cursor) {
            Some(Value::String(cursor)) if !cursor.is_empty() => {
                Some(call.set_query("cursor", cursor))
            }
            _ => None,
        }
    }
}

/// Dotdigital's offset pages: `select` records after `skip`, until a short page.
#[derive(Debug, Clone)]
pub struct SkipSelect {
    /// Records per page (at most 1000).
    pub select: u32,
    skip: u64,
}

impl SkipSelect {
    /// Pages of `select` records.
    pub fn new(select: u32) -> Self {
        SkipSelect { select, skip: 0 }
    }
}

impl Paginator for SkipSelect {
    fn first(&mut self, call: Call) -> Call {
        self.skip = 0;
        call.set_query("select", self.select).set_query("skip", 0)
    }

    fn next(&mut self, call: Call, page: &Page) -> Option<Call> {
        if page.len() < self.select as usize {
            return None;
        }
        self.skip += u64::from(self.select);
        Some(call.set_query("skip", self.skip))
    }
}

/// Iterable's numbered pages: `page` and `pageSize`, while the answer has a next page URL.
#[derive(Debug, Clone)]
pub struct NumberedPages {
    /// Records per page.
    pub size: u32,
    /// Where the answer says there is a next page.
    pub next_url: &'static str,
    page: u32,
}

impl NumberedPages {
    /// Pages of `size` records.
    pub fn new(size: u32, next_url: &'static str) -> Self {
        NumberedPages {
            size,
            next_url,
            page: 1,
        }
    }
}

impl Paginator for NumberedPages {
    fn first(&mut self, call: Call) -> Call {
        self.page = 1;
        call.set_query("page", 1).set_query("pageSize", self.size)
    }

    fn next(&mut self, call: Call, page: &Page) -> Option<Call> {
        match page.value(self.next_url) {
            Some(Value::String(url)) if !url.is_empty() && !page.is_empty() => {
                self.page += 1;
                Some(call.set_query("page", self.page))
            }
            _ => None,
        }
    }
}

/// One answer holds everything (SmartrMail's arrays, a CSV).
#[derive(Debug, Clone, Copy, Default)]
pub struct SinglePage;

impl Paginator for SinglePage {
    fn first(&mut self, call: Call) -> Call {
        call
    }

    fn next(&mut self, _call: Call, _page: &Page) -> Option<Call> {
        None
    }
}

/// A GraphQL connection (Shopify): the query takes an `$after` variable, the answer has
/// `pageInfo { hasNextPage endCursor }` at `connection`. Errors sent with HTTP 200 fail the
/// page, except THROTTLED, which waits until the cost bucket holds the query's cost; a
/// bucket running low pauses before the next page.
#[derive(Debug, Clone)]
pub struct GraphQlConnection {
    /// JSON pointer of the connection object (`/data/orders`).
    pub connection: &'static str,
    pause: Option<Duration>,
}

impl GraphQlConnection {
    /// Pages of the connection at `connection`.
    pub fn new(connection: &'static str) -> Self {
        GraphQlConnection {
            connection,
            pause: None,
        }
    }
}

/// Shopify's cost report: how long until the bucket holds `requested` points.
fn cost_wait(page: &Page) -> Option<Duration> {
    let cost = page.value("/extensions/cost")?;
    let requested = cost["requestedQueryCost"].as_f64()?;
    let status = &cost["throttleStatus"];
    let available = status["currentlyAvailable"].as_f64()?;
    let restore = status["restoreRate"].as_f64().filter(|r| *r > 0.0)?;
    (available < requested).then(|| Duration::from_secs_f64((requested - available) / restore))
}

impl Paginator for GraphQlConnection {
    fn first(&mut self, call: Call) -> Call {
        call.set_variable("after", Value::Null)
    }

    fn check(&mut self, page: &Page) -> Verdict {
        self.pause = None;
        let Some(Value::Array(errors)) = page.value("/errors") else {
            self.pause = cost_wait(page);
            return Verdict::Accept;
        };
        let codes: Vec<&str> = errors
            .iter()
            .filter_map(|e| e["extensions"]["code"].as_str())
            .collect();
        if codes.contains(&"THROTTLED") {
            // Wait for the deficit, at least a little: the bucket refills continuously.
            let wait = cost_wait(page).unwrap_or(Duration::from_secs(1));
            return Verdict::RetryAfter(wait.max(Duration::from_millis(100)));
        }
        let messages: Vec<String> = errors
            .iter()
            .map(|e| {
                let code = e["extensions"]["code"].as_str().unwrap_or("ERROR");
                let message = e["message"].as_str().unwrap_or("no message");
                format!("{code}: {message}")
            })
            .collect();
        Verdict::Fail(messages.join("; "))
    }

    fn next(&mut self, call: Call, page: &Page) -> Option<Call> {
        let info = page.value(&format!("{}/pageInfo", self.connection))?;
        match (&info["hasNextPage"], &info["endCursor"]) {
            (Value::Bool(true), Value::String(cursor)) => {
                Some(call.set_variable("after", Value::String(cursor.clone())))
            }
            _ => None,
        }
    }

    fn pause(&self) -> Option<Duration> {
        self.pause
    }
}

/// Why paging stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// The call failed (after the client's retries).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The answers kept breaking off or not parsing.
    #[error("{service} {endpoint}: the answer was not a readable page {attempts} times: {reason}")]
    Unreadable {
        /// The service.
        service: &'static str,
        /// The endpoint, credentials redacted.
        endpoint: String,
        /// Why.
        reason: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The service answered with an error inside a success (GraphQL `errors`).
    #[error("{service} {endpoint}: {message}")]
    Rejected {
        /// The service.
        service: &'static str,
        /// The endpoint.
        endpoint: String,
        /// The service's errors.
        message: String,
    },
    /// Whoever took the pages stopped taking them.
    #[error("the page consumer stopped")]
    Closed,
}

impl crate::error::Classify for PageError {
    fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            PageError::Http(err) => err.kind(),
            PageError::Unreadable { .. } => ErrorKind::Transient,
            PageError::Rejected { .. } => ErrorKind::Terminal,
            PageError::Closed => ErrorKind::Bug,
        }
    }
}

/// What a parser made of one answer's text.
#[derive(Debug)]
pub enum Parsed<T> {
    /// A good answer.
    Ok(T),
    /// Not a readable answer (cut off, malformed): ask again.
    Bad(String),
    /// Ask again after this wait (a cost budget).
    Wait(Duration),
    /// An error the service sent with a success status.
    Fail(String),
}

/// Asks for one answer until its body arrives whole and `parse` accepts it; answers that
/// break off or do not parse are asked for again a few times, then fail as transient.
pub async fn fetch_parsed<T>(
    client: &HttpClient,
    service: &Service,
    call: &Call,
    mut parse: impl FnMut(String) -> Parsed<T>,
) -> Result<T, PageError> {
    let mut bad_pages = 0;
    loop {
        let response = client.send(service, call).await?;
        let problem = match response.text().await {
            Err(err) => format!("the answer broke off: {err}"),
            Ok(text) => match parse(text) {
                Parsed::Ok(value) => return Ok(value),
                Parsed::Bad(reason) => reason,
                Parsed::Wait(wait) => {
                    tracing::info!(
                        service = service.name,
                        wait_ms = wait.as_millis() as u64,
                        "throttled by the service's cost budget; waiting"
                    );
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Parsed::Fail(message) => {
                    return Err(PageError::Rejected {
                        service: service.name,
                        endpoint: redacted_endpoint(service, call),
                        message,
                    });
                }
            },
        };
        bad_pages += 1;
        if bad_pages > BAD_PAGE_RETRIES {
            return Err(PageError::Unreadable {
                service: service.name,
                endpoint: redacted_endpoint(service, call),
                reason: problem,
                attempts: bad_pages,
            });
        }
        tracing::warn!(service = service.name, endpoint = %redacted_endpoint(service, call), reason = %problem, "unreadable answer; asking for it again");
        let wait = service
            .retry
            .base
            .saturating_mul(1 << bad_pages)
            .min(service.retry.cap);
        tokio::time::sleep(wait).await;
    }
}

/// Asks for one page until it arrives whole, parses, and the paginator accepts it.
pub async fn fetch_page(
    client: &HttpClient,
    service: &Service,
    call: &Call,
    at: RecordsAt,
    paginator: &mut dyn Paginator,
) -> Result<Page, PageError> {
    fetch_parsed(client, service, call, |text| match Page::parse(text, at) {
        Err(reason) => Parsed::Bad(reason),
        Ok(page) => match paginator.check(&page) {
            Verdict::Accept => Parsed::Ok(page),
            Verdict::RetryAfter(wait) => Parsed::Wait(wait),
            Verdict::Fail(message) => Parsed::Fail(message),
        },
    })
    .await
}

/// One JSON object (a Dotdigital campaign summary), as text; an answer that breaks off or
/// is not an object is asked for again.
pub async fn fetch_object(
    client: &HttpClient,
    service: &Service,
    call: &Call,
) -> Result<String, PageError> {
    fetch_parsed(client, service, call, |text| {
        match serde_json::from_str::<&RawValue>(&text) {
            Ok(raw) if raw.get().starts_with('{') => Parsed::Ok(text),
            Ok(_) => Parsed::Bad("expected a JSON object".into()),
            Err(e) => Parsed::Bad(format!("not valid JSON: {e}")),
        }
    })
    .await
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

fn redacted_endpoint(service: &Service, call: &Call) -> String {
    redact::path_and_query(&HttpClient::url(service, call))
}

/// Fetches every page from `call` on and sends each into `pages`; returns the page count.
pub async fn fetch_pages(
    client: &HttpClient,
    service: &Service,
    call: Call,
    at: RecordsAt,
    paginator: &mut dyn Paginator,
    pages: &mpsc::Sender<Page>,
) -> Result<u64, PageError> {
    let mut call = paginator.first(call);
    let mut count = 0;
    loop {
        let page = fetch_page(client, service, &call, at, paginator).await?;
        count += 1;
        let next = paginator.next(call, &page);
        pages.send(page).await.map_err(|_| PageError::Closed)?;
        match next {
            Some(next) => call = next,
            None => return Ok(count),
        }
        if let Some(wait) = paginator.pause() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Call {
    /// Sets a query parameter, replacing any earlier value.
    pub fn set_query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.retain(|(k, _)| k != key);
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets a GraphQL variable in a JSON body `{"query": …, "variables": {…}}`.
    pub fn set_variable(mut self, name: &str, value: Value) -> Self {
        if let Body::Json(body) = &mut self.body {
            if !body["variables"].is_object() {
                body["variables"] = Value::Object(Default::default());
            }
            body["variables"][name] = value;
        }
        self
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

    #[test]
    fn cursor_pages_follow_next_cursor_until_null() {
        let mut pages = CursorPages {
            limit: 250,
            next_cursor: "/metadata/next_cursor",
        };
        let call = pages.first(Call::get("/customers"));
        assert_eq!(call.query, [("limit".to_string(), "250".to_string())]);
        let page = Page::parse(
            r#"{"customers": [], "metadata": {"next_cursor": "c2"}}"#.into(),
            RecordsAt::Pointer("/customers"),
        )
        .unwrap();
        let call = pages.next(call, &page).unwrap();
        assert!(
            call.query
                .contains(&("cursor".to_string(), "c2".to_string()))
        );
        let last = Page::parse(
            r#"{"customers": [], "metadata": {"next_cursor": null}}"#.into(),
            RecordsAt::Pointer("/customers"),
        )
        .unwrap();
        assert!(pages.next(call, &last).is_none());
    }

    #[test]
    fn skip_select_stops_at_a_short_page() {
        let mut pages = SkipSelect::new(2);
        let call = pages.first(Call::get("/v2/campaigns"));
        let full = Page::parse("[{}, {}]".into(), RecordsAt::Root).unwrap();
        let call = pages.next(call, &full).unwrap();
        assert!(call.query.contains(&("skip".to_string(), "2".to_string())));
        let short = Page::parse("[{}]".into(), RecordsAt::Root).unwrap();
        assert!(pages.next(call, &short).is_none());
    }

    #[test]
    fn graphql_throttling_waits_for_the_deficit() {
        let mut pages = GraphQlConnection::new("/data/orders");
        let throttled = Page::parse(
            r#"{"errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
                "extensions": {"cost": {"requestedQueryCost": 862, "actualQueryCost": null,
                "throttleStatus": {"maximumAvailable": 4000.0, "currentlyAvailable": 572, "restoreRate": 200.0}}}}"#
                .into(),
            RecordsAt::Pointer("/data/orders/nodes"),
        )
        .unwrap();
        assert_eq!(
            pages.check(&throttled),
            Verdict::RetryAfter(Duration::from_millis(1450))
        );
        let denied = Page::parse(
            r#"{"errors": [{"message": "Query cost is 2003", "extensions": {"code": "MAX_COST_EXCEEDED"}}]}"#.into(),
            RecordsAt::Pointer("/data/orders/nodes"),
        )
        .unwrap();
        assert_eq!(
            pages.check(&denied),
            Verdict::Fail("MAX_COST_EXCEEDED: Query cost is 2003".into())
        );
        let call = pages.first(Call::post(
            "/graphql.json",
            Body::Json(serde_json::json!({"query": "q"})),
        ));
        let page = Page::parse(
            r#"{"data": {"orders": {"nodes": [], "pageInfo": {"hasNextPage": true, "endCursor": "e1"}}}}"#.into(),
            RecordsAt::Pointer("/data/orders/nodes"),
        )
        .unwrap();
        assert_eq!(pages.check(&page), Verdict::Accept);
        let next = pages.next(call, &page).unwrap();
        let Body::Json(body) = &next.body else {
            panic!("json body")
        };
        assert_eq!(body["variables"]["after"], "e1");
    }
}

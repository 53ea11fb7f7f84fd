//! Pagination strategies: a [`Paginator`] turns one page into the call for the next —
//! cursor (Smile), skip/select (Dotdigital), page number (Iterable), GraphQL connection
//! (Shopify, with its cost budget), or a single answer (SmartrMail arrays).

use std::time::Duration;

use serde_json::Value;

use super::page::Page;
use super::{Body, Call};

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
        // A call may start after a cursor it already holds (the rest of a nested list).
        let has_after =
            matches!(&call.body, Body::Json(body) if !body["variables"]["after"].is_null());
        if has_after {
            call
        } else {
            call.set_variable("after", Value::Null)
        }
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
    use crate::http::page::RecordsAt;

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

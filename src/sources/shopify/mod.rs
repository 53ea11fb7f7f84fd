//! Shopify Admin GraphQL: orders with their line items, and customers with e-mail
//! marketing consent.
//!
//! A first load (no cursor, no window) runs a bulk operation: Shopify exports the whole
//! connection server-side and mailroom streams the JSONL result ([`bulk`]). Later loads page
//! the connection with `query: "updated_at:>='…'"` sorted by `UPDATED_AT`, starting
//! [`tables::OVERLAP`] before the cursor. Pages are sized to stay under the 1000-point
//! single-query ceiling of the documented cost model, and the cost bucket reported in
//! `extensions.cost` paces them (see [`GraphQlConnection`]). An order with more line items
//! than one page holds gets the rest with follow-up `order(id:)` queries before its record
//! is decoded.

mod bulk;
pub mod tables;

use std::time::Duration;

use chrono::SecondsFormat;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Connection, Incremental, PageSender, Source, SourceError, Stream, Window};
use crate::http::fetch::Pages;
use crate::http::page::{Page, RecordsAt};
use crate::http::paginate::GraphQlConnection;
use crate::http::{Body, Call};
use tables::{CUSTOMER_FIELDS, LINE_FIELDS, ORDER_FIELDS, OVERLAP};

/// Orders per page: an order with 10 line items costs about 64 points, so 15 stay under
/// the 1000-point ceiling (2 + 15 × 64 = 962).
const ORDERS_PER_PAGE: u32 = 15;
/// Line items asked for with each order, unless set otherwise.
const LINES_PER_ORDER: u32 = 10;
/// Line items per follow-up page: 2 + 100 × 5 points.
const LINES_PER_FOLLOW_UP: u32 = 100;
/// Customers per page: 3 points each.
const CUSTOMERS_PER_PAGE: u32 = 250;

/// The Shopify source.
#[derive(Debug, Clone)]
pub struct Shopify {
    api: Connection,
    lines_per_order: u32,
}

impl Shopify {
    /// The source over `api` (base URL `…/admin/api/{version}`).
    pub fn new(api: Connection) -> Self {
        Shopify {
            api,
            lines_per_order: LINES_PER_ORDER,
        }
    }

    /// The same source asking for `lines` line items with each order (at most 10 keeps a
    /// page under the cost ceiling); orders with more get the rest by follow-up queries.
    pub fn with_lines_per_order(mut self, lines: u32) -> Self {
        self.lines_per_order = lines.clamp(1, LINES_PER_ORDER);
        self
    }

    fn graphql(query: String, variables: Value) -> Call {
        Call::post(
            "/graphql.json",
            Body::Json(json!({ "query": query, "variables": variables })),
        )
        .idempotent()
    }

    /// Pages a connection query, completing orders' line items, into `pages`.
    async fn fetch_connection(
        &self,
        connection: &'static str,
        query: String,
        search: Option<String>,
        pages: &PageSender,
    ) -> Result<(), SourceError> {
        let mut paginator = GraphQlConnection::new(connection);
        let call = Self::graphql(query, json!({ "q": search }));
        let at = RecordsAt::Pointer(if connection == "/data/orders" {
            "/data/orders/nodes"
        } else {
            "/data/customers/nodes"
        });
        let (client, service) = (&self.api.client, &self.api.service);
        let mut connection_pages = Pages::new(client, service, call, at, &mut paginator);
        while let Some(page) = connection_pages.next().await? {
            let page = if connection == "/data/orders" {
                self.complete_line_items(page).await?
            } else {
                page
            };
            if pages.send(page).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// The page with every order's line items complete.
    async fn complete_line_items(&self, page: Page) -> Result<Page, SourceError> {
        let heads: Vec<OrderHead> = page
            .records()
            .map(|r| serde_json::from_str(r).unwrap_or_default())
            .collect();
        if !heads.iter().any(OrderHead::has_more_lines) {
            return Ok(page);
        }
        let mut records = Vec::with_capacity(heads.len());
        for (record, head) in page.records().zip(&heads) {
            if !head.has_more_lines() {
                records.push(record.to_string());
                continue;
            }
            let mut order: Value = serde_json::from_str(record).unwrap_or(Value::Null);
            let more = self.remaining_lines(&head.id, head.end_cursor()).await?;
            if let Some(nodes) = order["lineItems"]["nodes"].as_array_mut() {
                nodes.extend(more);
            }
            order["lineItems"]["pageInfo"] = json!({ "hasNextPage": false });
            records.push(order.to_string());
        }
        Ok(Page::from_records(&records))
    }

    /// An order's line items after `after`.
    async fn remaining_lines(
        &self,
        order: &str,
        after: Option<String>,
    ) -> Result<Vec<Value>, SourceError> {
        let query = format!(
            "query Lines($id: ID!, $after: String) {{ order(id: $id) {{ lineItems(first: {LINES_PER_FOLLOW_UP}, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE_FIELDS} }} }} }} }}"
        );
        let mut paginator = GraphQlConnection::new("/data/order/lineItems");
        let call = Self::graphql(query, json!({ "id": order, "after": after }));
        let at = RecordsAt::Pointer("/data/order/lineItems/nodes");
        let (client, service) = (&self.api.client, &self.api.service);
        let mut line_pages = Pages::new(client, service, call, at, &mut paginator);
        let mut lines = Vec::new();
        while let Some(page) = line_pages.next().await? {
            lines.extend(page.records().filter_map(|r| serde_json::from_str(r).ok()));
        }
        Ok(lines)
    }
}

/// What is read of an order before decoding: whether its line items continue.
#[derive(Debug, Default, Deserialize)]
struct OrderHead {
    #[serde(default)]
    id: String,
    #[serde(rename = "lineItems", default)]
    line_items: Option<LinesHead>,
}

#[derive(Debug, Default, Deserialize)]
struct LinesHead {
    #[serde(rename = "pageInfo", default)]
    page_info: Option<PageInfo>,
}

#[derive(Debug, Default, Deserialize)]
struct PageInfo {
    #[serde(rename = "hasNextPage", default)]
    has_next_page: bool,
    #[serde(rename = "endCursor", default)]
    end_cursor: Option<String>,
}

impl OrderHead {
    fn page_info(&self) -> Option<&PageInfo> {
        self.line_items.as_ref()?.page_info.as_ref()
    }

    fn has_more_lines(&self) -> bool {
        self.page_info().is_some_and(|p| p.has_next_page)
    }

    fn end_cursor(&self) -> Option<String> {
        self.page_info().and_then(|p| p.end_cursor.clone())
    }
}

/// The search string for a window: `updated_at:>='…' updated_at:<'…'`.
fn search(window: &Window) -> Option<String> {
    let bound = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
    let terms: Vec<String> = [
        window.since.map(|t| format!("updated_at:>='{}'", bound(t))),
        window.until.map(|t| format!("updated_at:<'{}'", bound(t))),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!terms.is_empty()).then(|| terms.join(" "))
}

impl Source for Shopify {
    fn name(&self) -> &'static str {
        "shopify"
    }

    fn streams(&self) -> Vec<Stream> {
        let changed = Incremental::Since { overlap: OVERLAP };
        vec![
            Stream {
                name: "orders",
                table: tables::orders_table(),
                incremental: changed,
            },
            Stream {
                name: "customers",
                table: tables::customers_table(),
                incremental: changed,
            },
        ]
    }

    async fn fetch(
        &self,
        stream: &str,
        window: Window,
        pages: PageSender,
    ) -> Result<(), SourceError> {
        let first_load = window.since.is_none() && window.until.is_none();
        match stream {
            "orders" if first_load => {
                let query = format!(
                    "{{ orders(sortKey: UPDATED_AT) {{ edges {{ node {{ {ORDER_FIELDS} lineItems {{ edges {{ node {{ {LINE_FIELDS} }} }} }} }} }} }} }}"
                );
                bulk::export(&self.api, &query, Some("lineItems"), &pages).await
            }
            "customers" if first_load => {
                let query = format!(
                    "{{ customers(sortKey: UPDATED_AT) {{ edges {{ node {{ {CUSTOMER_FIELDS} }} }} }} }}"
                );
                bulk::export(&self.api, &query, None, &pages).await
            }
            "orders" => {
                let query = format!(
                    "query Orders($after: String, $q: String) {{ orders(first: {ORDERS_PER_PAGE}, after: $after, query: $q, sortKey: UPDATED_AT) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {ORDER_FIELDS} lineItems(first: {}) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {LINE_FIELDS} }} }} }} }} }}",
                    self.lines_per_order
                );
                self.fetch_connection("/data/orders", query, search(&window), &pages)
                    .await
            }
            "customers" => {
                let query = format!(
                    "query Customers($after: String, $q: String) {{ customers(first: {CUSTOMERS_PER_PAGE}, after: $after, query: $q, sortKey: UPDATED_AT) {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {CUSTOMER_FIELDS} }} }} }}"
                );
                self.fetch_connection("/data/customers", query, search(&window), &pages)
                    .await
            }
            other => Err(SourceError::Config(format!(
                "shopify has no stream {other}"
            ))),
        }
    }
}

/// How long to wait between polls of a running bulk operation.
const BULK_POLL: Duration = Duration::from_secs(1);

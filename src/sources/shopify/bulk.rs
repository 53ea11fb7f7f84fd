//! Shopify bulk operations: start an export of a whole connection, poll it until it is
//! done, then stream its JSONL result into pages. Operations a stopped run left behind are
//! adopted (the same query) or canceled first, so killed runs never use up the shop's five
//! slots.
//!
//! The export asks for `groupObjects: true`, so each nested connection's lines (line items,
//! marked `__parentId`) come right below their parent; they are folded back into the
//! parent's record as `{"lineItems": {"nodes": [...]}}`, the shape the paged query gives,
//! so one table declaration serves both. The result is read chunk by chunk and sent in
//! pages of [`RECORDS_PER_PAGE`], never held whole.

use std::borrow::Cow;
use std::sync::OnceLock;

use chrono::{DateTime, Timelike, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{BULK_POLL, Shopify};
use crate::http::fetch::fetch_page;
use crate::http::page::{Page, RecordsAt};
use crate::http::paginate::GraphQlConnection;
use crate::http::{Auth, Body, Call, Service};
use crate::sources::{Connection, PageSender, SourceError};

/// Records per page sent on from the result.
const RECORDS_PER_PAGE: usize = 250;
/// Polls of a canceled operation before giving up on its slot.
const CANCEL_POLLS: u32 = 60;

/// Runs `query` as a bulk operation and sends its records; `children` names the nested
/// connection whose lines are folded into their parents.
pub(super) async fn export(
    api: &Connection,
    query: &str,
    children: Option<&'static str>,
    pages: &PageSender,
) -> Result<(), SourceError> {
    let id = match settle_abandoned(api, query).await? {
        Some(id) => {
            tracing::info!(operation = %id, "adopting the Shopify bulk export an earlier run started with the same query");
            id
        }
        None => {
            let id = start(api, query).await?;
            tracing::info!(operation = %id, "Shopify bulk export started");
            id
        }
    };
    match wait(api, &id).await? {
        Some(url) => download(api, &url, children, pages).await,
        None => Ok(()),
    }
}

fn contract(message: String) -> SourceError {
    SourceError::Contract {
        service: "Shopify",
        message,
    }
}

/// When this process first looked for abandoned bulk operations (before it started any):
/// operations created earlier were left by a stopped process; later ones may belong to a
/// run of this one.
fn process_start() -> DateTime<Utc> {
    static START: OnceLock<DateTime<Utc>> = OnceLock::new();
    *START.get_or_init(Utc::now)
}

/// One of the shop's bulk operations, as `bulkOperations` lists it.
#[derive(Debug, Deserialize)]
struct Listed {
    id: String,
    status: String,
    #[serde(rename = "createdAt")]
    created_at: DateTime<Utc>,
    #[serde(default)]
    query: String,
}

/// Bulk operations a stopped run left running hold some of the shop's five slots, and a
/// run killed after starting its export leaves one each time: before starting, an
/// operation running this very query is adopted (its result is what a new one would
/// give), and every other one a stopped process left is canceled, its cancel awaited.
/// Operations this process started are never canceled (another job may be reading one).
async fn settle_abandoned(api: &Connection, query: &str) -> Result<Option<String>, SourceError> {
    let started = process_start();
    let started = started.with_nanosecond(0).unwrap_or(started);
    let list = "query Running { bulkOperations(first: 50, query: \"status:created OR status:running OR status:canceling\") { nodes { id status createdAt query } } }";
    let call = Shopify::graphql(list.to_string(), json!({}));
    let mut check = GraphQlConnection::new("/data/bulkOperations");
    let page = fetch_page(
        &api.client,
        &api.service,
        &call,
        RecordsAt::Pointer("/data/bulkOperations/nodes"),
        &mut check,
    )
    .await?;
    let mut listed = Vec::new();
    for record in page.records() {
        let operation: Listed = serde_json::from_str(record)
            .map_err(|e| contract(format!("a listed bulk operation is unreadable: {e}")))?;
        listed.push(operation);
    }
    let same = |op: &Listed| op.query.split_whitespace().eq(query.split_whitespace());
    let adopted = listed
        .iter()
        .filter(|op| matches!(op.status.as_str(), "CREATED" | "RUNNING") && same(op))
        .min_by_key(|op| op.created_at)
        .map(|op| op.id.clone());
    let mut canceled = Vec::new();
    for op in &listed {
        // Shopify's times have whole seconds.
        if Some(&op.id) == adopted.as_ref() || op.created_at >= started {
            continue;
        }
        if matches!(op.status.as_str(), "CREATED" | "RUNNING") {
            cancel(api, &op.id).await?;
        }
        canceled.push(op.id.clone());
    }
    for id in &canceled {
        settled(api, id, Some(CANCEL_POLLS)).await?;
    }
    Ok(adopted)
}

/// Asks Shopify to cancel operation `id`; one that ended meanwhile needs nothing.
async fn cancel(api: &Connection, id: &str) -> Result<(), SourceError> {
    let mutation = "mutation Cancel($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { id status } userErrors { field message } } }";
    let call = Shopify::graphql(mutation.to_string(), json!({ "id": id }));
    let mut check = GraphQlConnection::new("/data/bulkOperationCancel");
    let page = fetch_page(
        &api.client,
        &api.service,
        &call,
        RecordsAt::Pointer("/data/bulkOperationCancel/userErrors"),
        &mut check,
    )
    .await?;
    let refused: Vec<&str> = page.records().collect();
    if refused.is_empty() {
        tracing::info!(operation = %id, "canceled a Shopify bulk export a stopped run left running");
    } else {
        tracing::info!(operation = %id, answer = %refused.join("; "), "a bulk export left by a stopped run could not be canceled; it has ended");
    }
    Ok(())
}

/// Starts the operation; returns its id.
async fn start(api: &Connection, query: &str) -> Result<String, SourceError> {
    let mutation = "mutation Run($query: String!) { bulkOperationRunQuery(query: $query, groupObjects: true) { bulkOperation { id status } userErrors { field message code } } }";
    let call = Call::post(
        "/graphql.json",
        Body::Json(json!({ "query": mutation, "variables": { "query": query } })),
    );
    // The records of this answer are its user errors.
    let at = RecordsAt::Pointer("/data/bulkOperationRunQuery/userErrors");
    let mut check = GraphQlConnection::new("/data/bulkOperationRunQuery");
    let page = fetch_page(&api.client, &api.service, &call, at, &mut check).await?;
    if !page.is_empty() {
        let errors: Vec<&str> = page.records().collect();
        let message = format!("the bulk export was refused: {}", errors.join("; "));
        return Err(
            if errors
                .iter()
                .any(|e| e.contains("OPERATION_IN_PROGRESS") || e.contains("LIMIT_REACHED"))
            {
                contract(message)
            } else {
                SourceError::Config(message)
            },
        );
    }
    match page.value("/data/bulkOperationRunQuery/bulkOperation/id") {
        Some(Value::String(id)) => Ok(id),
        _ => Err(contract(
            "bulkOperationRunQuery answered without an operation id".into(),
        )),
    }
}

/// Polls until the operation ends; its result URL, or `None` when nothing matched.
async fn wait(api: &Connection, id: &str) -> Result<Option<String>, SourceError> {
    let operation = settled(api, id, None).await?;
    match operation["status"].as_str() {
        Some("COMPLETED") => Ok(operation["url"].as_str().map(str::to_string)),
        Some(status) => {
            let code = operation["errorCode"].as_str().unwrap_or("no error code");
            let message = format!("bulk export {id} ended {status} ({code})");
            Err(if code == "ACCESS_DENIED" {
                SourceError::Config(message)
            } else {
                contract(message)
            })
        }
        None => Err(contract(format!("bulk export {id} has no status"))),
    }
}

/// Polls operation `id` until it no longer holds one of the shop's slots (`CREATED`,
/// `RUNNING` and `CANCELING` do); its last answer. `polls` bounds the wait when given
/// (a cancel lands soon; an export may run for hours).
async fn settled(api: &Connection, id: &str, polls: Option<u32>) -> Result<Value, SourceError> {
    let poll =
        "query Poll($id: ID!) { bulkOperation(id: $id) { id status errorCode objectCount url } }";
    let call = Shopify::graphql(poll.to_string(), json!({ "id": id }));
    let mut check = GraphQlConnection::new("/data/bulkOperation");
    let mut left = polls;
    loop {
        let page = fetch_page(
            &api.client,
            &api.service,
            &call,
            RecordsAt::None,
            &mut check,
        )
        .await?;
        let operation = page.value("/data/bulkOperation").unwrap_or(Value::Null);
        if !matches!(
            operation["status"].as_str(),
            Some("CREATED" | "RUNNING" | "CANCELING")
        ) {
            return Ok(operation);
        }
        if let Some(left) = left.as_mut() {
            if *left == 0 {
                return Err(contract(format!(
                    "bulk export {id} was canceled but still holds a slot after {} polls",
                    polls.unwrap_or_default()
                )));
            }
            *left -= 1;
        }
        tokio::time::sleep(BULK_POLL).await;
    }
}

/// Streams the JSONL result at `url` into pages.
async fn download(
    api: &Connection,
    url: &str,
    children: Option<&'static str>,
    pages: &PageSender,
) -> Result<(), SourceError> {
    let service = Service {
        name: "Shopify bulk result",
        base_url: url
            .parse()
            .map_err(|e| contract(format!("the bulk result URL is not a URL: {e}")))?,
        // The signature in the URL is the credential.
        auth: Auth::SecretUrl,
        retry: api.service.retry,
        budget: None,
    };
    let mut response = api.client.send(&service, &Call::get("")).await?;
    let mut grouper = Grouper::new(children);
    let mut pending = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| contract(format!("the bulk result download broke off: {e}")))?;
        let Some(chunk) = chunk else { break };
        pending.extend_from_slice(&chunk);
        // The chunk's whole lines, then what is left of the last one is kept for the next.
        let mut start = 0;
        while let Some(length) = pending[start..].iter().position(|b| *b == b'\n') {
            let line = std::str::from_utf8(&pending[start..start + length])
                .map_err(|_| contract("the bulk result is not UTF-8".into()))?;
            grouper.line(line.trim()).map_err(contract)?;
            start += length + 1;
            if grouper.ready.len() >= RECORDS_PER_PAGE && !send(&mut grouper, pages).await? {
                return Ok(());
            }
        }
        pending.drain(..start);
    }
    let rest = std::str::from_utf8(&pending)
        .map_err(|_| contract("the bulk result is not UTF-8".into()))?;
    grouper.line(rest.trim()).map_err(contract)?;
    grouper.finish();
    send(&mut grouper, pages).await?;
    Ok(())
}

/// Sends the records that are ready; false when the consumer has stopped.
async fn send(grouper: &mut Grouper, pages: &PageSender) -> Result<bool, SourceError> {
    if grouper.ready.is_empty() {
        return Ok(true);
    }
    let page = Page::from_records(&std::mem::take(&mut grouper.ready));
    Ok(pages.send(page).await.is_ok())
}

/// Folds child lines into their parent's record.
struct Grouper {
    children: Option<&'static str>,
    parent: Option<(String, String)>,
    kids: Vec<String>,
    ready: Vec<String>,
}

#[derive(Deserialize)]
struct Ids<'a> {
    #[serde(default, borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(rename = "__parentId", default, borrow)]
    parent: Option<Cow<'a, str>>,
}

impl Grouper {
    fn new(children: Option<&'static str>) -> Self {
        Grouper {
            children,
            parent: None,
            kids: Vec::new(),
            ready: Vec::new(),
        }
    }

    fn line(&mut self, line: &str) -> Result<(), String> {
        if line.is_empty() {
            return Ok(());
        }
        let Some(_) = self.children else {
            self.ready.push(line.to_string());
            return Ok(());
        };
        let ids: Ids = serde_json::from_str(line)
            .map_err(|e| format!("a bulk result line is not a JSON object: {e}"))?;
        match (ids.parent, &self.parent) {
            (Some(parent), Some((current, _))) if *parent == **current => {
                self.kids.push(line.to_string());
                Ok(())
            }
            (Some(parent), _) => Err(format!(
                "a nested line of {parent} is not right below its parent (groupObjects was asked for)"
            )),
            (None, _) => {
                self.finish();
                self.parent = Some((ids.id.unwrap_or_default().into_owned(), line.to_string()));
                Ok(())
            }
        }
    }

    /// Completes the current parent's record.
    fn finish(&mut self) {
        let (Some((_, text)), Some(children)) = (self.parent.take(), self.children) else {
            return;
        };
        let body = text.trim_end().strip_suffix('}').unwrap_or(&text);
        let kids = std::mem::take(&mut self.kids).join(",");
        self.ready
            .push(format!(r#"{body},"{children}":{{"nodes":[{kids}]}}}}"#));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_lines_fold_into_their_parent() {
        let mut grouper = Grouper::new(Some("lineItems"));
        for line in [
            r##"{"id":"gid://shopify/Order/1","name":"#1"}"##,
            r#"{"id":"gid://shopify/LineItem/10","quantity":2,"__parentId":"gid://shopify/Order/1"}"#,
            r##"{"id":"gid://shopify/Order/2","name":"#2"}"##,
        ] {
            grouper.line(line).unwrap();
        }
        grouper.finish();
        assert_eq!(
            grouper.ready,
            [
                r##"{"id":"gid://shopify/Order/1","name":"#1","lineItems":{"nodes":[{"id":"gid://shopify/LineItem/10","quantity":2,"__parentId":"gid://shopify/Order/1"}]}}"##,
                r##"{"id":"gid://shopify/Order/2","name":"#2","lineItems":{"nodes":[]}}"##,
            ]
        );
        let stray = grouper
            .line(r#"{"id":"gid://shopify/LineItem/11","__parentId":"gid://shopify/Order/9"}"#);
        assert!(stray.unwrap_err().contains("Order/9"));
    }
}

//! Bulk operations: a query run server-side over a whole connection, with its result as a
//! JSONL file at a signed URL.
//!
//! `bulkOperationRunQuery` validates the query (one top-level connection, at most five
//! connections, nested at most two deep) and creates the operation, which then runs on the
//! sandbox's own clock, as Shopify's do in the background: `CREATED`, `RUNNING` once it has
//! started, `COMPLETED` when its result is built and its minimum duration has passed —
//! whether or not anyone polls. `bulkOperationCancel` makes a running one `CANCELING`, then
//! `CANCELED` shortly after. The result has one line per node: nested connection nodes get
//! their own line with `__parentId`, `edges`/`node` wrappers never appear, and with
//! `groupObjects: false` the lines come in a shuffled order. As at Shopify, the result is
//! written once, to a file (a temporary file here) that every download is served from,
//! and is gone once the operation is canceled or its result has expired (`EXPIRED`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use graphql_parser::query::{Field, Selection, SelectionSet};
use serde_json::{Map, Value, json};

use super::data::gid;
use super::exec::{Doc, Exec, Ty, arguments};
use super::schema::{self, Kind};

/// Most bulk operations running at once per shop (API 2026-01 and later).
pub const MAX_RUNNING: usize = 5;
/// How long after its creation an operation shows `RUNNING`.
const STARTS_AFTER: Duration = Duration::from_millis(50);
/// How long a cancel takes to land.
const CANCELS_AFTER: Duration = Duration::from_millis(200);

/// One bulk operation.
#[derive(Debug, Clone)]
pub struct BulkOperation {
    /// Numeric id.
    pub id: u64,
    /// The query as given.
    pub query: String,
    /// Keep children right below their parent.
    pub group_objects: bool,
    /// Created (wall clock, for `createdAt`).
    pub created_at: DateTime<Utc>,
    /// Created (for the operation's own clock).
    pub created: Instant,
    /// The earliest it may complete: real exports take a while even for a small shop.
    pub ready_at: Instant,
    /// What the background export wrote, once it has (`None` inside: it failed).
    pub outcome: Option<Option<BulkResult>>,
    /// The result file, until the operation is canceled or its result expires.
    pub file: Option<Arc<tempfile::TempPath>>,
    /// How long a completed result stays downloadable (Shopify: 7 days).
    pub expires_after: Duration,
    /// When the outcome was in.
    pub finished: Option<(Instant, DateTime<Utc>)>,
    /// When a cancel was asked for.
    pub canceled: Option<Instant>,
    /// The signature the result URL carries.
    pub signature: String,
}

/// A completed operation's output, as counted when its file was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkResult {
    /// All lines.
    pub objects: u64,
    /// Lines of the top-level connection.
    pub roots: u64,
    /// The file's size in bytes.
    pub bytes: u64,
}

impl BulkOperation {
    /// Shopify's status of the operation at `now`, on its own clock.
    pub fn status(&self, now: Instant) -> &'static str {
        if let Some(at) = self.canceled {
            return if now >= at + CANCELS_AFTER {
                "CANCELED"
            } else {
                "CANCELING"
            };
        }
        match &self.outcome {
            Some(Some(_))
                if self
                    .completed()
                    .is_some_and(|at| now >= at + self.expires_after) =>
            {
                "EXPIRED"
            }
            Some(Some(_)) if now >= self.ready_at => "COMPLETED",
            Some(None) if now >= self.ready_at => "FAILED",
            _ if now >= self.created + STARTS_AFTER => "RUNNING",
            _ => "CREATED",
        }
    }

    /// When it completed or failed: once both its export and its minimum duration were done.
    fn completed(&self) -> Option<Instant> {
        self.finished.map(|(at, _)| at.max(self.ready_at))
    }

    /// Whether it still counts against the concurrency limit.
    pub fn is_running(&self, now: Instant) -> bool {
        matches!(self.status(now), "CREATED" | "RUNNING" | "CANCELING")
    }

    /// The result, once the operation has completed and until it expires.
    pub fn result(&self, now: Instant) -> Option<&BulkResult> {
        match (&self.outcome, self.status(now)) {
            (Some(Some(result)), "COMPLETED") => Some(result),
            _ => None,
        }
    }

    /// The operation as `BulkOperation` JSON at `now`; `base` is the sandbox's address.
    pub fn json(&self, base: &str, now: Instant) -> Value {
        let status = self.status(now);
        // An expired result keeps its counts; only its URL is gone.
        let result = match (&self.outcome, status) {
            (Some(Some(result)), "COMPLETED" | "EXPIRED") => Some(result),
            _ => None,
        };
        let url = result
            .filter(|r| status == "COMPLETED" && r.objects > 0)
            .map(|_| {
                format!(
                    "{base}/shopify/bulk/{}.jsonl?signature={}",
                    self.id, self.signature
                )
            });
        let completed_at = match status {
            "COMPLETED" | "FAILED" | "EXPIRED" => self.finished.map(|(at, wall)| {
                // Completed when both the export and the minimum duration were done.
                wall + chrono::Duration::from_std(self.ready_at.saturating_duration_since(at))
                    .unwrap_or_default()
            }),
            _ => None,
        };
        json!({
            "id": gid("BulkOperation", self.id),
            "status": status,
            "type": "QUERY",
            "errorCode": if status == "FAILED" { json!("INTERNAL_SERVER_ERROR") } else { Value::Null },
            "createdAt": self.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "completedAt": completed_at.map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            "objectCount": result.map_or("0".to_string(), |r| r.objects.to_string()),
            "rootObjectCount": result.map_or("0".to_string(), |r| r.roots.to_string()),
            "fileSize": result.map_or("0".to_string(), |r| r.bytes.to_string()),
            "url": url,
            "partialDataUrl": null,
            "query": self.query,
        })
    }
}

/// The single top-level field of a bulk query, after checking the bulk rules.
pub fn root_field(doc: &Doc) -> Result<&Field<'static, String>, String> {
    let (set, is_mutation) = super::exec::operation(doc, None)?;
    if is_mutation {
        return Err("Bulk queries cannot be mutations".to_string());
    }
    let fields: Vec<&Field<'static, String>> = set
        .items
        .iter()
        .filter_map(|s| match s {
            Selection::Field(f) => Some(f),
            _ => None,
        })
        .collect();
    let [field] = fields.as_slice() else {
        return Err("Bulk queries must contain exactly one top-level field".to_string());
    };
    if !matches!(
        schema::field("QueryRoot", &field.name),
        Some(Kind::Connection(_))
    ) {
        return Err(format!(
            "The top-level field must be a connection, not '{}'",
            field.name
        ));
    }
    let mut connections = 0;
    check_nesting(&field.selection_set, 1, &mut connections)?;
    if connections + 1 > 5 {
        return Err("Bulk queries cannot contain more than 5 connections".to_string());
    }
    Ok(field)
}

fn check_nesting(
    set: &SelectionSet<'static, String>,
    depth: usize,
    connections: &mut usize,
) -> Result<(), String> {
    for item in &set.items {
        let Selection::Field(f) = item else { continue };
        let is_connection = f.selection_set.items.iter().any(|s| {
            matches!(s, Selection::Field(inner) if inner.name == "edges" || inner.name == "nodes")
        });
        let next_depth = if is_connection {
            *connections += 1;
            if depth + 1 > 2 {
                return Err(
                    "Bulk queries cannot contain connections with a nesting depth greater than 2"
                        .to_string(),
                );
            }
            depth + 1
        } else {
            depth
        };
        check_nesting(&f.selection_set, next_depth, connections)?;
    }
    Ok(())
}

/// The node selection of a connection field: `nodes { … }` or `edges { node { … } }`.
fn node_selection<'a>(connection: &'a Field<'static, String>) -> Vec<&'a Field<'static, String>> {
    let mut fields = Vec::new();
    for item in &connection.selection_set.items {
        let Selection::Field(f) = item else { continue };
        match f.name.as_str() {
            "nodes" => fields.extend(direct_fields(&f.selection_set)),
            "edges" => {
                for edge_item in &f.selection_set.items {
                    if let Selection::Field(node) = edge_item
                        && node.name == "node"
                    {
                        fields.extend(direct_fields(&node.selection_set));
                    }
                }
            }
            _ => {}
        }
    }
    fields
}

fn direct_fields<'a>(set: &'a SelectionSet<'static, String>) -> Vec<&'a Field<'static, String>> {
    set.items
        .iter()
        .filter_map(|s| match s {
            Selection::Field(f) => Some(f),
            _ => None,
        })
        .collect()
}

/// How one connection's nodes become lines, worked out once per query: the node type, the
/// fields each line holds (by their output key), and the nested connections whose nodes
/// get lines of their own.
pub struct LinePlan<'q> {
    node_type: &'static str,
    fields: Vec<(String, &'q Field<'static, String>)>,
    nested: Vec<(&'q str, LinePlan<'q>)>,
}

impl<'q> LinePlan<'q> {
    /// The plan for nodes of `node_type` selected by `connection`.
    pub fn new(node_type: &'static str, connection: &'q Field<'static, String>) -> Self {
        let mut plan = LinePlan {
            node_type,
            fields: Vec::new(),
            nested: Vec::new(),
        };
        for field in node_selection(connection) {
            match schema::field(node_type, &field.name) {
                Some(Kind::Connection(child)) => plan
                    .nested
                    .push((field.name.as_str(), LinePlan::new(child, field))),
                _ => {
                    let key = field.alias.clone().unwrap_or_else(|| field.name.clone());
                    plan.fields.push((key, field));
                }
            }
        }
        plan
    }
}

/// Writes the JSONL lines for `items`, each followed by the lines of its nested nodes
/// (with `__parentId`).
pub fn flatten(
    exec: &mut Exec<'_>,
    plan: &LinePlan<'_>,
    items: &[Value],
    parent: Option<&str>,
    lines: &mut Vec<Value>,
) {
    for item in items {
        let mut line = Map::new();
        for (key, field) in &plan.fields {
            let value = exec.field(Ty::Named(plan.node_type), item, field);
            line.insert(key.clone(), value);
        }
        if let Some(parent) = parent {
            line.insert("__parentId".into(), Value::from(parent));
        }
        lines.push(Value::Object(line));
        let id = item.get("id").and_then(Value::as_str).unwrap_or_default();
        for (name, nested) in &plan.nested {
            let children = item.get(*name).and_then(Value::as_array);
            flatten(
                exec,
                nested,
                children.map_or(&[], Vec::as_slice),
                Some(id),
                lines,
            );
        }
    }
}

/// Appends the JSONL text for `lines` to `text`, shuffled by `rng` unless objects are
/// grouped.
pub fn write_jsonl(
    mut lines: Vec<Value>,
    group_objects: bool,
    rng: &mut fastrand::Rng,
    text: &mut String,
) {
    if !group_objects {
        rng.shuffle(&mut lines);
    }
    for line in lines {
        text.push_str(&line.to_string());
        text.push('\n');
    }
}

/// The arguments of the root field, as JSON.
pub fn root_arguments(field: &Field<'static, String>) -> Map<String, Value> {
    arguments(field, &Map::new())
}

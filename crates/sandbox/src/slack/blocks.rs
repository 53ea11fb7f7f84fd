//! Block Kit as Slack checks it (`api-reference/slack.md` §2): at most 50 blocks, each of
//! a known type within its limits; at most one `table` block, of at most 100 rows and 20
//! columns of `raw_text` or `rich_text` cells.

use serde_json::Value;

/// Rows a table block may hold.
const TABLE_ROWS: usize = 100;
/// Columns a table block may hold.
const TABLE_COLUMNS: usize = 20;

fn text_len(value: &Value) -> usize {
    value
        .get("text")
        .and_then(Value::as_str)
        .map_or(0, |t| t.chars().count())
}

/// Block Kit limits: at most 50 blocks, each with a type; header ≤ 150, section text ≤ 3000,
/// ≤ 10 fields of ≤ 2000, context ≤ 10 elements, unique block ids ≤ 255.
pub(super) fn valid_blocks(blocks: &Value) -> bool {
    let Some(blocks) = blocks.as_array() else {
        return false;
    };
    let mut ids = std::collections::HashSet::new();
    let tables = blocks.iter().filter(|b| b["type"] == "table").count();
    blocks.len() <= 50
        && tables <= 1
        && blocks.iter().all(|block| {
            let id_ok = match block.get("block_id").and_then(Value::as_str) {
                Some(id) => id.len() <= 255 && ids.insert(id.to_string()),
                None => true,
            };
            let kind_ok = match block.get("type").and_then(Value::as_str) {
                Some("header") => block
                    .get("text")
                    .is_some_and(|t| t["type"] == "plain_text" && text_len(t) <= 150),
                Some("section") => {
                    let text_ok = block.get("text").is_none_or(|t| text_len(t) <= 3000);
                    let fields = block.get("fields").and_then(Value::as_array);
                    let fields_ok = fields
                        .is_none_or(|f| f.len() <= 10 && f.iter().all(|x| text_len(x) <= 2000));
                    text_ok && fields_ok && (block.get("text").is_some() || fields.is_some())
                }
                Some("context") => block
                    .get("elements")
                    .and_then(Value::as_array)
                    .is_some_and(|e| !e.is_empty() && e.len() <= 10),
                Some("table") => valid_table(block),
                Some(
                    "divider" | "image" | "actions" | "rich_text" | "input" | "file" | "video"
                    | "markdown",
                ) => true,
                _ => false,
            };
            id_ok && kind_ok
        })
}

/// A table block: 1 to 100 rows of 1 to 20 cells, each `raw_text` or `rich_text`.
fn valid_table(block: &Value) -> bool {
    let Some(rows) = block.get("rows").and_then(Value::as_array) else {
        return false;
    };
    !rows.is_empty()
        && rows.len() <= TABLE_ROWS
        && rows.iter().all(|row| {
            row.as_array().is_some_and(|cells| {
                !cells.is_empty()
                    && cells.len() <= TABLE_COLUMNS
                    && cells
                        .iter()
                        .all(|c| matches!(c["type"].as_str(), Some("raw_text" | "rich_text")))
            })
        })
}

//! Slack: a report posted to a channel as one Block Kit message — its title, the period,
//! its key figures with their change, the top rows as a native `table` block — with the
//! full result as a CSV file and the report's chart as a PNG ([`crate::chart`]) shared into
//! the channel in one file message, exactly once per delivery key.
//!
//! Slack has no idempotency key, so the message carries the delivery in its `metadata`
//! (`event_type` [`EVENT_TYPE`], the key in the payload) and the CSV has a name derived from
//! the key. Before posting, and before uploading, the channel's recent history is read
//! (`conversations.history` with `include_all_metadata`): a message or file of this
//! delivery already there is not sent again — after a crash, an unknown outcome or a lost
//! ledger alike. `ok: false` answers are errors naming Slack's code; `not_in_channel` says
//! to invite the app. `chat.postMessage` is never retried blindly (the client retries only
//! 429s and failures before the request was sent).

use chrono::{DateTime, Duration};
use serde_json::{Value, json};

use super::{DeliverError, text_rows};
use crate::http::{Auth, Body, Call, Service};
use crate::scheduler::{RunContext, RunError};
use crate::services::{Connection, ServiceKind, Services};
use crate::sql::output::{self, OutputFormat};
use crate::sql::{ChangeUnit, SqlHeader};
use crate::warehouse::QueryResult;

/// The message metadata's event type for mailroom's deliveries.
pub const EVENT_TYPE: &str = "mailroom_delivery";

/// Rows a table block may hold, its header row included (`api-reference/slack.md` §2).
const TABLE_ROWS: usize = 100;
/// Columns a table block may hold.
const TABLE_COLUMNS: usize = 20;
/// Characters kept of one table cell.
const CELL_CHARS: usize = 200;
/// History pages read when looking for a delivery.
const HISTORY_PAGES: usize = 10;

/// The configured Slack workspace, reached with the bot token.
pub struct Slack {
    connection: Connection,
}

/// What one report delivery says.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// The report's title (its SQL file's header).
    pub title: &'a str,
    /// The period, as the ledger names it (RFC 3339 with the job's offset).
    pub period: &'a str,
    /// The delivery's key.
    pub key: &'a str,
    /// A file name for the CSV, unique to the delivery.
    pub file_name: String,
    /// The chart as a PNG, when the report declares one; shared with the CSV.
    pub chart: Option<Vec<u8>>,
    /// The key figures, each as `*label*\nvalue ▲ change` ([`key_figures`]).
    pub key_figures: Vec<String>,
    /// The answer.
    pub result: &'a QueryResult,
}

/// Text cut to `max` characters, with an ellipsis when cut.
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((at, _)) if text.chars().count() > max => format!("{}…", &text[..at]),
        _ => text.to_string(),
    }
}

/// A number as a person reads it: whole numbers with thousands separators, small
/// fractions (rates) with four decimals, the rest with two.
fn readable(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        let digits = format!("{}", x.abs() as i64);
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        return if x < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        };
    }
    if x.abs() < 1.0 {
        format!("{x:.4}")
    } else {
        format!("{x:.2}")
    }
}

/// A change with its arrow: `▲ 12.5%`, `▼ 6.7 pts`, `= 0.0%`.
fn change(x: f64, unit: ChangeUnit) -> String {
    let (size, suffix) = match unit {
        ChangeUnit::Percent => (x, "%"),
        ChangeUnit::Points => (x * 100.0, " pts"),
    };
    let arrow = if size > 0.0 {
        "▲"
    } else if size < 0.0 {
        "▼"
    } else {
        "="
    };
    format!("{arrow} {:.1}{suffix}", size.abs())
}

/// The header's key figures read from the summary row (the first row whose columns have
/// the header's `summary_row` values; the first row when it names none), each as
/// `*label*\nvalue ▲ change`. Columns the answer lacks are left out.
pub fn key_figures(header: &SqlHeader, result: &QueryResult) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    if header.key_figures.is_empty() {
        return Vec::new();
    }
    let options = FormatOptions::default().with_null("");
    let cell = |batch: &arrow::record_batch::RecordBatch, column: &str, row: usize| {
        let index = batch.schema().index_of(column).ok()?;
        let formatter = ArrayFormatter::try_new(batch.column(index).as_ref(), &options).ok()?;
        Some(formatter.value(row).to_string())
    };
    let matches = |batch: &arrow::record_batch::RecordBatch, row: usize| {
        header
            .summary_row
            .iter()
            .all(|(column, value)| cell(batch, column, row).as_deref() == Some(value.as_str()))
    };
    let found = result.batches.iter().find_map(|batch| {
        (0..batch.num_rows())
            .find(|row| matches(batch, *row))
            .map(|row| (batch, row))
    });
    let Some((batch, row)) = found else {
        return Vec::new();
    };
    header
        .key_figures
        .iter()
        .filter_map(|figure| {
            let value = cell(batch, &figure.column, row)?;
            let shown = value.parse::<f64>().map_or(value.clone(), readable);
            let label = figure.column.replace('_', " ");
            let moved = figure
                .change
                .as_deref()
                .and_then(|c| cell(batch, c, row))
                .and_then(|c| c.parse::<f64>().ok())
                .map_or_else(
                    || "no earlier period".to_string(),
                    |x| change(x, figure.unit),
                );
            Some(format!("*{label}*\n{shown}  {moved}"))
        })
        .collect()
}

/// The Block Kit message of a report: title, period and size, the top rows as a table,
/// and a note when rows or columns were left out (they are in the CSV).
pub fn message(report: &Report<'_>) -> (String, Value) {
    let total = report.result.num_rows();
    let columns = report.result.schema.fields().len();
    let period = report.period.get(..10).unwrap_or(report.period);
    let text = format!("{}: {total} rows for the period of {period}", report.title);
    let mut blocks = vec![
        json!({ "type": "header", "text": { "type": "plain_text", "text": cut(report.title, 150) } }),
        json!({ "type": "section", "text": { "type": "mrkdwn", "text": format!("*{total}* rows · period of *{period}*") } }),
    ];
    if !report.key_figures.is_empty() {
        let fields: Vec<Value> = report
            .key_figures
            .iter()
            .take(10)
            .map(|f| json!({ "type": "mrkdwn", "text": cut(f, 2_000) }))
            .collect();
        blocks.push(json!({ "type": "section", "fields": fields }));
    }
    let rows = text_rows(report.result, TABLE_ROWS - 1, TABLE_COLUMNS);
    if rows.len() > 1 {
        let cells: Vec<Value> = rows
            .iter()
            .map(|row| {
                row.iter()
                    .map(|c| json!({ "type": "raw_text", "text": cut(c, CELL_CHARS) }))
                    .collect()
            })
            .collect();
        blocks.push(json!({ "type": "table", "rows": cells }));
    }
    let shown = rows.len() - 1;
    if shown < total || columns > TABLE_COLUMNS {
        let note = format!(
            "Showing {shown} of {total} rows and {} of {columns} columns; the whole result is in {}.",
            columns.min(TABLE_COLUMNS),
            report.file_name
        );
        blocks.push(json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": note }] }));
    }
    (text, Value::Array(blocks))
}

impl Slack {
    /// The workspace `[destinations.slack]` configures.
    pub fn new(services: &Services) -> Result<Self, DeliverError> {
        let connection = services.connection(ServiceKind::Slack)?;
        if matches!(connection.service.auth, Auth::None) {
            return Err(DeliverError::Setting {
                key: "destinations.slack.bot_token (reports with tables and files need a bot token)",
            });
        }
        Ok(Slack { connection })
    }

    /// Calls a Web API method with a JSON body; `ok: false` is an error naming the code.
    async fn call(
        &self,
        method: &str,
        budget: &str,
        body: Value,
        retry_safe: bool,
    ) -> Result<Value, DeliverError> {
        let service = self.connection.with_budget(budget);
        let mut call = Call::post(format!("/{method}"), Body::Json(body));
        call.idempotent = retry_safe;
        let response = self.connection.client.send(&service, &call).await?;
        let answer: Value = response.json().await.map_err(|e| DeliverError::Answer {
            what: method.to_string(),
            message: e.to_string(),
        })?;
        if answer["ok"] == true {
            return Ok(answer);
        }
        Err(DeliverError::Slack {
            method: method.to_string(),
            code: answer["error"]
                .as_str()
                .unwrap_or("unknown_error")
                .to_string(),
        })
    }

    /// The channel's messages since `oldest` (unix seconds), newest first, metadata
    /// included; at most [`HISTORY_PAGES`] pages.
    async fn history(&self, channel: &str, oldest: i64) -> Result<Vec<Value>, DeliverError> {
        let mut messages = Vec::new();
        let mut cursor = String::new();
        for _ in 0..HISTORY_PAGES {
            let mut body = json!({ "channel": channel, "oldest": oldest.to_string(), "limit": 200, "include_all_metadata": true });
            if !cursor.is_empty() {
                body["cursor"] = Value::from(cursor.clone());
            }
            let page = self
                .call("conversations.history", "history", body, true)
                .await?;
            messages.extend(page["messages"].as_array().cloned().unwrap_or_default());
            cursor = page["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap_or("")
                .to_string();
            if cursor.is_empty() {
                break;
            }
        }
        Ok(messages)
    }

    /// Posts `report` to `channel` unless the channel holds it already, then shares its CSV
    /// unless that is there too.
    pub async fn deliver(
        &self,
        channel: &str,
        report: &Report<'_>,
    ) -> Result<String, DeliverError> {
        // Deliveries are posted at or after their period's fire time: look a day before it.
        let oldest = DateTime::parse_from_rfc3339(report.period)
            .map(|t| (t - Duration::days(1)).timestamp())
            .unwrap_or(0);
        let recent = self.history(channel, oldest).await?;
        let found_message = recent.iter().find(|m| {
            m["metadata"]["event_type"] == EVENT_TYPE
                && m["metadata"]["event_payload"]["key"] == report.key
        });
        let ts = match found_message {
            Some(message) => {
                tracing::info!(
                    key = report.key,
                    "the message is in the channel already; not posted again"
                );
                message["ts"].as_str().unwrap_or_default().to_string()
            }
            None => {
                let (text, blocks) = message(report);
                let body = json!({
                    "channel": channel,
                    "text": text,
                    "blocks": blocks,
                    "metadata": { "event_type": EVENT_TYPE, "event_payload": { "key": report.key } },
                    "unfurl_links": false,
                });
                let posted = self
                    .call("chat.postMessage", "post_message", body, false)
                    .await?;
                posted["ts"].as_str().unwrap_or_default().to_string()
            }
        };
        let file_found = recent.iter().any(|m| {
            m["files"]
                .as_array()
                .is_some_and(|files| files.iter().any(|f| f["name"] == report.file_name.as_str()))
        });
        if file_found {
            tracing::info!(key = report.key, file = %report.file_name, "the files are in the channel already; not shared again");
        } else {
            self.share_files(channel, report).await?;
        }
        Ok(ts)
    }

    /// A short notice that `job`'s run finally failed: the error, its kind, the attempts and
    /// where to look further.
    pub async fn failure_notice(
        &self,
        channel: &str,
        job: &str,
        run: &RunContext,
        error: &RunError,
    ) -> Result<(), DeliverError> {
        let text = format!(
            "mailroom: {job} failed after {} attempt(s) ({} error)",
            run.attempt, error.kind
        );
        let detail = format!(
            "*{job}* failed after {} attempt(s): {} error\n```{}```\nLook further with `mailroom status --job {job}` (run `{}`).",
            run.attempt,
            error.kind,
            cut(&error.message, 2_500),
            run.run_id
        );
        let body = json!({
            "channel": channel,
            "text": text,
            "blocks": [{ "type": "section", "text": { "type": "mrkdwn", "text": detail } }],
            "metadata": { "event_type": "mailroom_failure", "event_payload": { "job": job, "run_id": run.run_id } },
        });
        self.call("chat.postMessage", "post_message", body, false)
            .await
            .map(drop)
    }

    /// One file's first two upload steps: an upload URL, then the bytes; its file id.
    async fn upload(
        &self,
        name: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<String, DeliverError> {
        let step1 = self
            .call(
                "files.getUploadURLExternal",
                "files",
                json!({ "filename": name, "length": bytes.len() }),
                true,
            )
            .await?;
        let (Some(url), Some(file_id)) = (step1["upload_url"].as_str(), step1["file_id"].as_str())
        else {
            return Err(DeliverError::Answer {
                what: "files.getUploadURLExternal".into(),
                message: "no upload_url or file_id".into(),
            });
        };
        let upload = Service {
            name: "Slack file upload",
            base_url: url
                .parse()
                .map_err(|e: url::ParseError| DeliverError::Answer {
                    what: "files.getUploadURLExternal".into(),
                    message: format!("upload_url: {e}"),
                })?,
            auth: Auth::None,
            retry: self.connection.service.retry,
            budget: None,
        };
        // The URL is pre-signed and names one file: sending the bytes again is harmless.
        let call = Call::post(
            "",
            Body::Bytes {
                content_type: content_type.into(),
                bytes: bytes.into(),
            },
        )
        .idempotent();
        self.connection.client.send(&upload, &call).await?;
        Ok(file_id.to_string())
    }

    /// The CSV and the chart uploaded, then shared into the channel in one message.
    async fn share_files(&self, channel: &str, report: &Report<'_>) -> Result<(), DeliverError> {
        let mut csv = Vec::new();
        output::write(report.result, OutputFormat::Csv, &mut csv).map_err(|e| {
            DeliverError::Answer {
                what: "the CSV file".into(),
                message: e.to_string(),
            }
        })?;
        let csv_id = self.upload(&report.file_name, "text/csv", csv).await?;
        let mut files = vec![json!({ "id": csv_id, "title": format!("{} (CSV)", report.title) })];
        if let Some(png) = &report.chart {
            let png_id = self
                .upload(&chart_name(&report.file_name), "image/png", png.clone())
                .await?;
            files.push(json!({ "id": png_id, "title": format!("{} (chart)", report.title) }));
        }
        let body = json!({
            "files": files,
            "channel_id": channel,
            "initial_comment": format!("{}: the whole result", report.title),
        });
        self.call("files.completeUploadExternal", "files", body, false)
            .await?;
        Ok(())
    }
}

/// The chart's file name beside the CSV's.
pub fn chart_name(csv_name: &str) -> String {
    format!("{}.png", csv_name.strip_suffix(".csv").unwrap_or(csv_name))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    fn result(rows: usize) -> QueryResult {
        let schema = Arc::new(Schema::new(vec![
            Field::new("platform", DataType::Utf8, true),
            Field::new("sent", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(
                    (0..rows).map(|i| format!("p{i}")).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from((0..rows as i64).collect::<Vec<_>>())),
            ],
        )
        .expect("batch");
        QueryResult {
            schema,
            batches: vec![batch],
        }
    }

    #[test]
    fn a_report_is_a_header_a_summary_and_a_table_of_at_most_100_rows() {
        let big = result(250);
        let report = Report {
            title: "Weekly email performance",
            period: "2026-11-30T08:00:00+11:00",
            key: "k",
            file_name: "weekly.csv".into(),
            chart: None,
            key_figures: Vec::new(),
            result: &big,
        };
        let (text, blocks) = message(&report);
        assert_eq!(
            text,
            "Weekly email performance: 250 rows for the period of 2026-11-30"
        );
        assert_eq!(blocks[0]["text"]["text"], "Weekly email performance");
        let table = &blocks[2]["rows"];
        assert_eq!(
            table.as_array().map(Vec::len),
            Some(100),
            "header and 99 rows"
        );
        assert_eq!(table[0][0]["text"], "platform");
        assert_eq!(
            table[1],
            json!([{ "type": "raw_text", "text": "p0" }, { "type": "raw_text", "text": "0" }])
        );
        assert!(
            blocks[3]["elements"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("99 of 250 rows") && t.contains("weekly.csv")),
            "{blocks}"
        );

        let small = result(3);
        let (_, blocks) = message(&Report {
            result: &small,
            ..report
        });
        assert_eq!(
            blocks.as_array().map(Vec::len),
            Some(3),
            "no note when all rows show"
        );
        assert_eq!(cut("abcdef", 4), "abc…");
        assert_eq!(cut("abc", 4), "abc");
    }

    #[test]
    fn key_figures_come_from_the_summary_row_with_their_change() {
        use arrow::array::Float64Array;
        let schema = Arc::new(Schema::new(vec![
            Field::new("platform", DataType::Utf8, true),
            Field::new("sent", DataType::Int64, true),
            Field::new("sent_change_pct", DataType::Float64, true),
            Field::new("open_rate", DataType::Float64, true),
            Field::new("open_rate_change", DataType::Float64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["iterable", "all platforms"])),
                Arc::new(Int64Array::from(vec![500, 1500])),
                Arc::new(Float64Array::from(vec![Some(1.0), Some(275.0)])),
                Arc::new(Float64Array::from(vec![0.2, 0.2331])),
                Arc::new(Float64Array::from(vec![None, Some(-0.0669)])),
            ],
        )
        .expect("batch");
        let result = QueryResult {
            schema,
            batches: vec![batch],
        };
        let header = SqlHeader {
            title: "Weekly".into(),
            description: None,
            params: Default::default(),
            deliveries: Vec::new(),
            key_figures: vec![
                crate::sql::KeyFigure {
                    column: "sent".into(),
                    change: Some("sent_change_pct".into()),
                    unit: ChangeUnit::Percent,
                },
                crate::sql::KeyFigure {
                    column: "open_rate".into(),
                    change: Some("open_rate_change".into()),
                    unit: ChangeUnit::Points,
                },
                crate::sql::KeyFigure {
                    column: "missing".into(),
                    change: None,
                    unit: ChangeUnit::Percent,
                },
            ],
            summary_row: [("platform".to_string(), "all platforms".to_string())].into(),
            chart: None,
        };
        assert_eq!(
            key_figures(&header, &result),
            ["*sent*\n1,500  ▲ 275.0%", "*open rate*\n0.2331  ▼ 6.7 pts"]
        );
        let first_row = SqlHeader {
            summary_row: Default::default(),
            chart: None,
            ..header
        };
        assert_eq!(
            key_figures(&first_row, &result)[1],
            "*open rate*\n0.2000  no earlier period"
        );
    }
}

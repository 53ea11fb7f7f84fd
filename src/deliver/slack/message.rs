//! The words and blocks of a report's Slack message: the title, the period, the key
//! figures with their change (▲/▼, in percent or points), and the top rows as a native
//! `table` block within Block Kit's limits, with a note when rows or columns were left
//! out. Shared by the Web API and the incoming webhook.

use serde_json::{Value, json};

use crate::deliver::text_rows;
use crate::scheduler::{RunContext, RunError};
use crate::sql::{ChangeUnit, SqlHeader};
use crate::warehouse::QueryResult;

/// Rows a table block may hold, its header row included (`api-reference/slack.md` §2).
const TABLE_ROWS: usize = 100;
/// Columns a table block may hold.
const TABLE_COLUMNS: usize = 20;
/// Characters kept of one table cell.
const CELL_CHARS: usize = 200;

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

/// The notice that `job`'s run finally failed: the error, its kind, the attempts and where
/// to look further.
pub fn failure_message(job: &str, run: &RunContext, error: &RunError) -> (String, Value) {
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
    let blocks = json!([{ "type": "section", "text": { "type": "mrkdwn", "text": detail } }]);
    (text, blocks)
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

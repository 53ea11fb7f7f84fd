//! One SQL file: a TOML header in its leading `--` comments, then the GoogleSQL body.
//!
//! ```sql
//! -- title = "Lapsed customers"
//! -- [params]
//! -- lapse_days = 90
//! SELECT ...
//! ```
//!
//! The header is read with the same collecting reader as `config.toml`, so every problem
//! is reported at once with the SQL file's own line and column. Reports may name default
//! deliveries (`[[deliver]] to = "slack"`, `channel = "#marketing"`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use toml_span::value::ValueInner;

use crate::config::diagnostic::{ConfigErrors, Diagnostic, Diagnostics, SourceText};
use crate::config::reader::{TableReader, element_string, type_name};
use crate::config::{DestinationKind, ParamValue};
use crate::sql::template::{self, RenderContext, TemplateError};
use crate::warehouse::TableNames;
use mailroom_googlesql::{self as googlesql, FrontEndError};

/// Whether a file is a query (feeds activation) or a report (feeds deliveries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlFileKind {
    /// In `queries/`.
    Query,
    /// In `reports/`.
    Report,
}

/// A default delivery named in a report's header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultDelivery {
    /// Where it goes.
    pub to: DestinationKind,
    /// The sheet tab or channel.
    pub target: String,
}

/// A figure a report's Slack message leads with: a column of its summary row, and the
/// column holding its change against the previous period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFigure {
    /// The column with the figure.
    pub column: String,
    /// The column with its change, if the report computes one.
    pub change: Option<String>,
    /// How the change reads: `"%"` (a percentage) or `"pts"` (a difference of rates,
    /// shown in percentage points).
    pub unit: ChangeUnit,
}

/// How a key figure's change is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeUnit {
    /// A percentage change (`12.5` is shown as `▲ 12.5%`).
    Percent,
    /// A difference of two rates (`-0.067` is shown as `▼ 6.7 pts`).
    Points,
}

/// A chart a report's Slack message carries (`chart = { x = "...", y = [...] }`): one
/// bar per row of the chosen rows, grouped by category, one series per `y` column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartSpec {
    /// The chart's title (the report's title when not set).
    pub title: Option<String>,
    /// The column whose values name the categories (text, dates or numbers).
    pub x: String,
    /// The numeric columns drawn, one series each.
    pub y: Vec<String>,
    /// Which rows are drawn (`rows = { column = "value" }`; every row when empty).
    pub rows: BTreeMap<String, String>,
}

/// The header of a SQL file.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlHeader {
    /// A human title, used in Slack posts and sheet names.
    pub title: String,
    /// What the file answers.
    pub description: Option<String>,
    /// Parameters with their default values.
    pub params: BTreeMap<String, ParamValue>,
    /// Reports only: where results go when a job does not say.
    pub deliveries: Vec<DefaultDelivery>,
    /// Reports only: the figures a Slack message leads with (`key_figures`).
    pub key_figures: Vec<KeyFigure>,
    /// Reports only: which row holds the key figures (`summary_row`: column = value; the
    /// first row when empty).
    pub summary_row: BTreeMap<String, String>,
    /// Reports only: the chart posted with the Slack message.
    pub chart: Option<ChartSpec>,
}

/// A parsed SQL file.
#[derive(Debug, Clone, PartialEq)]
pub struct SqlFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Query or report.
    pub kind: SqlFileKind,
    /// Its header.
    pub header: SqlHeader,
    /// The SQL after the header.
    pub body: String,
    /// The 1-based line the body starts on.
    pub body_line: usize,
}

/// Why a SQL file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SqlFileError {
    /// The file could not be read.
    #[error("cannot read SQL file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The header or body has problems.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl SqlFile {
    /// Reads and parses a file; its kind follows from the folder it is in.
    pub fn read(path: &Path) -> Result<Self, SqlFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            // Only the built-in config names a shipped file that is not on disk (a user's
            // config must name files that exist): read the copy compiled in beside it.
            Err(source) => match crate::config::shipped_sql(path) {
                Some(text) if source.kind() == std::io::ErrorKind::NotFound => text.to_string(),
                _ => {
                    return Err(SqlFileError::Read {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            },
        };
        let in_reports = path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|dir| dir == "reports");
        let kind = if in_reports {
            SqlFileKind::Report
        } else {
            SqlFileKind::Query
        };
        Self::parse(path, &text, kind).map_err(SqlFileError::Invalid)
    }

    /// Parses a file's text.
    pub fn parse(path: &Path, text: &str, kind: SqlFileKind) -> Result<Self, ConfigErrors> {
        let name = path.display().to_string();
        let lines: Vec<&str> = text.lines().collect();
        let header_len = lines
            .iter()
            .take_while(|l| l.trim_start().starts_with("--"))
            .count();
        let mut prefix_widths = Vec::with_capacity(header_len);
        let mut header_text = String::new();
        for line in &lines[..header_len] {
            let indent = line.len() - line.trim_start().len();
            let after = &line[indent + 2..];
            let width = indent + 2 + usize::from(after.starts_with(' '));
            prefix_widths.push(line[..width].chars().count());
            header_text.push_str(&line[width..]);
            header_text.push('\n');
        }
        let source = SourceText::new(name.clone(), header_text);
        let mut d = Diagnostics::new(&source);
        let header = read_header(&source, kind, &mut d);
        let body = lines[header_len..].join("\n");
        if body.trim().is_empty() {
            d.report(
                source.text.len(),
                "",
                "the file has no SQL after its header",
                None,
            );
        }
        let mut problems = d.into_vec();
        for p in &mut problems {
            p.column += prefix_widths.get(p.line - 1).copied().unwrap_or(0);
        }
        if header_len == 0 {
            problems.insert(0, Diagnostic {
                file: name,
                line: 1,
                column: 1,
                key: String::new(),
                message: "missing header: a SQL file starts with `--` comment lines holding TOML, at least `title = \"...\"`".into(),
                help: Some("-- title = \"Weekly email performance\"".into()),
            });
        }
        match header {
            Some(header) if problems.is_empty() => Ok(SqlFile {
                path: path.to_path_buf(),
                kind,
                header,
                body,
                body_line: header_len + 1,
            }),
            _ => Err(ConfigErrors(problems)),
        }
    }
}

impl SqlFile {
    /// The body rendered for one run: `now` is the run's fire time, `overrides` the job's or
    /// command line's parameters over the header's defaults.
    pub fn render(
        &self,
        now: DateTime<Utc>,
        overrides: &BTreeMap<String, ParamValue>,
        tables: &TableNames,
    ) -> Result<String, TemplateError> {
        let params = template::resolve_params(&self.header.params, overrides)?;
        template::render(
            &self.body,
            &RenderContext {
                now,
                params: &params,
                tables,
            },
        )
    }

    /// What `mailroom check` finds in the body: template errors, GoogleSQL syntax errors,
    /// and constructs the local engine cannot run, each at its line and column in the file.
    pub fn check_body(&self) -> Vec<Diagnostic> {
        let file = self.path.display().to_string();
        let at = |line: usize, column: usize, message: String| Diagnostic {
            file: file.clone(),
            line: self.body_line + line.max(1) - 1,
            column: column.max(1),
            key: String::new(),
            message,
            help: None,
        };
        // Any fire time will do: `now` only ever becomes a literal.
        let now = DateTime::<Utc>::UNIX_EPOCH;
        let sql = match self.render(now, &BTreeMap::new(), &TableNames::Local) {
            Ok(sql) => sql,
            Err(TemplateError::Render { line, message }) => {
                return vec![at(line, 1, format!("template: {message}"))];
            }
            Err(err @ TemplateError::Param(_)) => return vec![at(1, 1, err.to_string())],
        };
        match googlesql::check(&sql) {
            Ok(()) => Vec::new(),
            Err(FrontEndError::Unsupported(problems)) => problems
                .into_iter()
                .map(|p| {
                    at(
                        p.line as usize,
                        p.column as usize,
                        format!("not supported by the local engine: {}", p.message),
                    )
                })
                .collect(),
            Err(FrontEndError::Syntax(message)) => {
                let (line, column) = googlesql::error_position(&message);
                vec![at(
                    line,
                    column,
                    format!("GoogleSQL syntax error: {message}"),
                )]
            }
            Err(other) => vec![at(1, 1, other.to_string())],
        }
    }
}

fn read_header(
    source: &SourceText,
    kind: SqlFileKind,
    d: &mut Diagnostics<'_>,
) -> Option<SqlHeader> {
    let root = match toml_span::parse(&source.text) {
        Ok(root) => root,
        Err(err) => {
            d.report(
                err.span.start,
                "",
                format!("invalid TOML in the header: {err}"),
                None,
            );
            return None;
        }
    };
    let mut t = TableReader::new(root, String::new(), d)?;
    let title = t.required_string(d, "title");
    let description = t.string(d, "description").map(|s| s.value);
    let params = read_params(&mut t, d);
    let (deliveries, key_figures, summary_row, chart) = match kind {
        SqlFileKind::Report => (
            read_deliveries(&mut t, d),
            read_key_figures(&mut t, d),
            t.table(d, "summary_row")
                .map(|table| read_row_filter(table, d))
                .unwrap_or_default(),
            read_chart(&mut t, d),
        ),
        SqlFileKind::Query => (Vec::new(), Vec::new(), BTreeMap::new(), None),
    };
    t.finish(d);
    Some(SqlHeader {
        title: title?.value,
        description,
        params,
        deliveries,
        key_figures,
        summary_row,
        chart,
    })
}

fn read_params(t: &mut TableReader<'_>, d: &mut Diagnostics<'_>) -> BTreeMap<String, ParamValue> {
    let mut params = BTreeMap::new();
    let Some(mut table) = t.table(d, "params") else {
        return params;
    };
    for (key, mut value) in table.drain() {
        let span = value.span;
        let param = match value.take() {
            ValueInner::String(s) => ParamValue::String(s.into_owned()),
            ValueInner::Integer(n) => ParamValue::Integer(n),
            ValueInner::Float(x) => ParamValue::Float(x),
            ValueInner::Boolean(b) => ParamValue::Bool(b),
            other => {
                let found = type_name(&toml_span::Value::with_span(other, span));
                d.report(
                    span.start,
                    table.key_path(&key.name),
                    format!(
                        "a parameter default must be a string, number or boolean, found {found}"
                    ),
                    None,
                );
                continue;
            }
        };
        params.insert(key.name.into_owned(), param);
    }
    table.finish(d);
    params
}

fn read_key_figures(t: &mut TableReader<'_>, d: &mut Diagnostics<'_>) -> Vec<KeyFigure> {
    let mut figures = Vec::new();
    let items = t.array(d, "key_figures").unwrap_or_default();
    for (i, item) in items.into_iter().enumerate() {
        let Some(mut entry) = TableReader::new(item, format!("key_figures[{i}]"), d) else {
            continue;
        };
        let column = entry.required_string(d, "column");
        let change = entry.string(d, "change").map(|c| c.value);
        let unit = entry
            .choice(
                d,
                "unit",
                &[("%", ChangeUnit::Percent), ("pts", ChangeUnit::Points)],
            )
            .map_or(ChangeUnit::Percent, |u| u.value);
        entry.finish(d);
        if let Some(column) = column {
            figures.push(KeyFigure {
                column: column.value,
                change,
                unit,
            });
        }
    }
    figures
}

/// A table of `column = "value"` naming rows (a summary row, a chart's rows).
fn read_row_filter(
    mut table: TableReader<'_>,
    d: &mut Diagnostics<'_>,
) -> BTreeMap<String, String> {
    let mut row = BTreeMap::new();
    for (key, mut value) in table.drain() {
        match value.take() {
            ValueInner::String(s) => {
                row.insert(key.name.into_owned(), s.into_owned());
            }
            _ => d.report(
                value.span.start,
                table.key_path(&key.name),
                "a row filter's value must be a string (the column's value as text)".to_string(),
                None,
            ),
        }
    }
    table.finish(d);
    row
}

fn read_chart(t: &mut TableReader<'_>, d: &mut Diagnostics<'_>) -> Option<ChartSpec> {
    let mut chart = t.table(d, "chart")?;
    let title = chart.string(d, "title").map(|s| s.value);
    let x = chart.required_string(d, "x");
    let path = chart.key_path("y");
    let y: Vec<String> = chart
        .array(d, "y")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|item| element_string(item, &path, d).map(|s| s.value))
        .collect();
    if y.is_empty() {
        chart.missing(
            d,
            "y",
            Some("a chart draws at least one numeric column: y = [\"revenue\"]".into()),
        );
    }
    let rows = chart
        .table(d, "rows")
        .map(|table| read_row_filter(table, d))
        .unwrap_or_default();
    chart.finish(d);
    Some(ChartSpec {
        title,
        x: x?.value,
        y,
        rows,
    })
}

fn read_deliveries(t: &mut TableReader<'_>, d: &mut Diagnostics<'_>) -> Vec<DefaultDelivery> {
    let mut deliveries = Vec::new();
    for (i, item) in t
        .array(d, "deliver")
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let Some(mut entry) = TableReader::new(item, format!("deliver[{i}]"), d) else {
            continue;
        };
        let to = entry.choice(
            d,
            "to",
            &[
                ("sheets", DestinationKind::Sheets),
                ("slack", DestinationKind::Slack),
            ],
        );
        if let Some(to) = to {
            if let Some(target) = entry.required_string(d, to.value.target_key()) {
                deliveries.push(DefaultDelivery {
                    to: to.value,
                    target: target.value,
                });
            }
        } else if !entry.contains("to") {
            entry.missing(d, "to", Some("valid choices: `sheets`, `slack`".into()));
        }
        entry.finish(d);
    }
    deliveries
}

/// The SQL files under `queries/` and `reports/` of `base_dir`, sorted.
pub fn discover(base_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for folder in ["queries", "reports"] {
        let dir = base_dir.join(folder);
        if !dir.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "sql") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, kind: SqlFileKind) -> Result<SqlFile, Vec<String>> {
        SqlFile::parse(Path::new("reports/r.sql"), text, kind)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn header_params_and_deliveries_are_read() {
        let file = parse(
            "-- title = \"Weekly\"\n-- deliver = [{ to = \"slack\", channel = \"#mkt\" }]\n-- [params]\n-- days = 7\nSELECT 1\n",
            SqlFileKind::Report,
        )
        .expect("valid");
        assert_eq!(file.header.title, "Weekly");
        assert_eq!(file.header.params["days"], ParamValue::Integer(7));
        assert_eq!(
            file.header.deliveries,
            [DefaultDelivery {
                to: DestinationKind::Slack,
                target: "#mkt".into()
            }]
        );
        assert_eq!(file.body.trim(), "SELECT 1");
        assert_eq!(file.body_line, 5);
    }

    #[test]
    fn problems_are_located_in_the_sql_file() {
        let errors = parse(
            "-- titel = \"x\"\n--   [params]\n-- days = [1]\nSELECT 1\n",
            SqlFileKind::Query,
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors[0].starts_with("reports/r.sql:1:4: title: missing required key"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("reports/r.sql:1:4: titel: unknown key"),
            "{errors:#?}"
        );
        assert!(errors[1].contains("did you mean `title`"), "{errors:#?}");
        assert!(
            errors[2].starts_with("reports/r.sql:3:11: params.days:"),
            "{errors:#?}"
        );
    }

    #[test]
    fn a_file_without_header_or_body_is_rejected() {
        let errors = parse("SELECT 1\n", SqlFileKind::Query).expect_err("no header");
        assert!(errors[0].contains("missing header"), "{errors:#?}");
        let errors = parse("-- title = \"x\"\n", SqlFileKind::Query).expect_err("no body");
        assert!(
            errors.iter().any(|e| e.contains("no SQL after its header")),
            "{errors:#?}"
        );
    }
}

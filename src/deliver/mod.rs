//! Deliver: a SQL step's answer sent to a destination, exactly once per (job, report,
//! period, destination, target). The pipeline records each delivery in the state
//! database's ledger before sending and marks it sent after; the destination keeps the
//! delivery's key too ([`sheets::KEY_COLUMN`]), so a crash between the two, a retry after
//! an unknown outcome or a lost ledger never sends twice (DESIGN.md, Guarantee 2).

pub mod cells;
pub mod sheets;
pub mod slack;

use crate::chart::ChartError;
use crate::error::{Classify, ErrorKind};
use crate::http::HttpError;
use crate::http::google_auth::GoogleAuthError;
use crate::services::ServiceError;
use crate::sql::output::{self, OutputFormat};
use crate::state::StateError;
use crate::warehouse::QueryResult;

/// Why a delivery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The destination is not configured, or a credential is missing.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// No access token could be had.
    #[error(transparent)]
    Google(#[from] GoogleAuthError),
    /// A call failed (after the client's retries).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// An answer could not be read.
    #[error("{what}: the answer could not be read: {message}")]
    Answer {
        /// The call.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// A setting the destination needs is not set.
    #[error("{key} is not set")]
    Setting {
        /// The key.
        key: &'static str,
    },
    /// The tab's header is not the report's columns.
    #[error(
        "tab \"{tab}\" has the header {found:?}, but the report's columns are {expected:?}; rename the tab or deliver to a new one (mailroom never writes under a header that does not match)"
    )]
    Header {
        /// The tab.
        tab: String,
        /// Its header row.
        found: Vec<String>,
        /// What mailroom would write.
        expected: Vec<String>,
    },
    /// A period's block, with later periods below it, would need more rows than it has.
    #[error(
        "tab \"{tab}\": the block of {key} has {before} rows and later periods below it; its new answer has {now} rows and would overwrite them (deliver it with mode = \"replace\", or move the later rows)"
    )]
    BlockGrew {
        /// The tab.
        tab: String,
        /// The delivery.
        key: String,
        /// Rows in the sheet.
        before: usize,
        /// Rows now.
        now: usize,
    },
    /// Slack answered `ok: false`.
    #[error("Slack {method} answered {code}{}", slack_hint(code))]
    Slack {
        /// The Web API method.
        method: String,
        /// Slack's error code.
        code: String,
    },
    /// Slack's incoming webhook refused the message.
    #[error("Slack's incoming webhook answered HTTP {status} {code}{}", webhook_hint(*status))]
    Webhook {
        /// The HTTP status.
        status: u16,
        /// Slack's plain-text code (`invalid_payload`, `no_service`, ...).
        code: String,
    },
    /// The report's chart could not be made (a column its header names, say).
    #[error("{title}: {source}")]
    Chart {
        /// The report.
        title: String,
        /// Why.
        #[source]
        source: ChartError,
    },
    /// The ledger could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

impl Classify for DeliverError {
    fn kind(&self) -> ErrorKind {
        match self {
            DeliverError::Service(err) => err.kind(),
            DeliverError::Google(err) => err.kind(),
            DeliverError::Http(err) => err.kind(),
            DeliverError::State(err) => err.kind(),
            // A body cut off or garbled on the way; the next attempt reads the tab again.
            DeliverError::Answer { .. } => ErrorKind::Transient,
            DeliverError::Setting { .. } | DeliverError::Header { .. } => ErrorKind::Config,
            DeliverError::BlockGrew { .. } => ErrorKind::Terminal,
            // The header names columns the answer lacks: the report file needs fixing.
            DeliverError::Chart { .. } => ErrorKind::Config,
            DeliverError::Webhook { status, .. } => match status {
                403 | 404 | 410 => ErrorKind::Config,
                _ => ErrorKind::Terminal,
            },
            DeliverError::Slack { code, .. } => match code.as_str() {
                "ratelimited"
                | "rate_limited"
                | "service_unavailable"
                | "fatal_error"
                | "request_timeout"
                | "internal_error" => ErrorKind::Transient,
                "not_in_channel"
                | "channel_not_found"
                | "is_archived"
                | "invalid_auth"
                | "not_authed"
                | "token_revoked"
                | "token_expired"
                | "missing_scope"
                | "account_inactive"
                | "posting_to_channel_denied"
                | "restricted_action" => ErrorKind::Config,
                _ => ErrorKind::Terminal,
            },
        }
    }
}

impl DeliverError {
    /// Whether the destination may have acted on the request: it went out but no whole
    /// answer came back.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, DeliverError::Http(err) if err.unanswered)
    }
}

/// What a user can do about an incoming webhook's refusal.
fn webhook_hint(status: u16) -> &'static str {
    match status {
        403 | 404 => {
            " — the webhook was removed or revoked: create a new one and set [destinations.slack] webhook_url"
        }
        410 => " — the webhook's channel is archived: create a webhook for another channel",
        _ => "",
    }
}

/// What a user can do about a Slack error code.
fn slack_hint(code: &str) -> &'static str {
    match code {
        "not_in_channel" => {
            " — the app is not in the channel: invite it (`/invite @your-app` in the channel)"
        }
        "channel_not_found" => {
            " — check the channel's name or id in the deliver step (a private channel is seen only once the app is invited)"
        }
        "is_archived" => " — the channel is archived; deliver to another",
        "invalid_auth" | "not_authed" | "token_revoked" | "token_expired" => {
            " — check [destinations.slack] bot_token"
        }
        "missing_scope" => {
            " — the app needs the chat:write, files:write, channels:read, groups:read and channels:history scopes"
        }
        _ => "",
    }
}

/// A result as text, header first: at most `max_rows` rows of at most `max_columns`
/// columns, NULL as empty.
pub fn text_rows(result: &QueryResult, max_rows: usize, max_columns: usize) -> Vec<Vec<String>> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let options = FormatOptions::default().with_null("");
    let header = result.schema.fields().iter().take(max_columns);
    let mut rows = vec![header.map(|f| f.name().clone()).collect::<Vec<_>>()];
    for batch in &result.batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .take(max_columns)
            .filter_map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        for row in 0..batch.num_rows() {
            if rows.len() > max_rows {
                return rows;
            }
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    rows
}

/// The first rows of a result, for a dry run's plan: `; first rows: a | b; c | d`.
pub fn preview(result: &QueryResult) -> String {
    let rows: Vec<String> = text_rows(result, 2, usize::MAX)
        .iter()
        .skip(1)
        .map(|row| row.join(" | "))
        .collect();
    match rows.is_empty() {
        true => String::new(),
        false => format!("; first rows: {}", rows.join("; ")),
    }
}

/// How many bytes a result's CSV has.
pub fn csv_size(result: &QueryResult) -> usize {
    let mut csv = Vec::new();
    output::write(result, OutputFormat::Csv, &mut csv).map_or(0, |()| csv.len())
}

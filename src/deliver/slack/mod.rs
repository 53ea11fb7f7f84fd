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

mod message;
mod webhook;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::DeliverError;
use crate::http::{Auth, Body, Call, Service};
use crate::scheduler::{RunContext, RunError};
use crate::services::{Connection, ServiceKind, Services};
use crate::sql::output::{self, OutputFormat};

pub use message::{Report, failure_message, key_figures, message};
pub use webhook::Webhook;

/// The message metadata's event type for mailroom's deliveries.
pub const EVENT_TYPE: &str = "mailroom_delivery";

/// History pages read when looking for a delivery.
const HISTORY_PAGES: usize = 10;

/// The configured Slack workspace: the Web API with a bot token, or else an incoming
/// webhook.
pub enum Slack {
    /// With a bot token: messages with metadata, files, and the channel read back.
    WebApi(Box<WebApi>),
    /// With only a webhook: messages, nothing read back.
    Webhook(Box<Webhook>),
}

impl Slack {
    /// The workspace `[destinations.slack]` configures: its bot token when set, else its
    /// `webhook_url`.
    pub fn new(services: &Services) -> Result<Self, DeliverError> {
        let connection = services.connection(ServiceKind::Slack)?;
        if !matches!(connection.service.auth, Auth::None) {
            return Ok(Slack::WebApi(Box::new(WebApi {
                connection,
                channels: OnceCell::new(),
            })));
        }
        match services.optional_secret(ServiceKind::Slack, "webhook_url")? {
            Some(url) => Ok(Slack::Webhook(Box::new(Webhook::new(
                services.client().clone(),
                &url,
                services.retry(),
            )?))),
            None => Err(DeliverError::Setting {
                key: "destinations.slack.bot_token (or webhook_url, for messages without files)",
            }),
        }
    }

    /// Whether a delivery can be looked for in the channel after an unknown outcome (not
    /// through a webhook).
    pub fn can_read_back(&self) -> bool {
        matches!(self, Slack::WebApi(_))
    }

    /// Posts `report` to `channel` exactly once (the Web API: see the module docs), or
    /// through the webhook to its own channel with a note that the files need a bot token.
    /// Returns what identifies the post for the ledger: `ts <message ts>`, or `webhook`.
    pub async fn deliver(
        &self,
        channel: &str,
        report: &Report<'_>,
    ) -> Result<String, DeliverError> {
        match self {
            Slack::WebApi(api) => Ok(format!("ts {}", api.deliver(channel, report).await?)),
            Slack::Webhook(hook) => {
                let (text, blocks) = message(report);
                let mut blocks = blocks.as_array().cloned().unwrap_or_default();
                let note = format!(
                    "{} and the chart are not attached: an incoming webhook cannot share files (set a bot token to get them).",
                    report.file_name
                );
                blocks.push(
                    json!({ "type": "context", "elements": [{ "type": "mrkdwn", "text": note }] }),
                );
                hook.post(&text, Value::Array(blocks)).await?;
                Ok("webhook".into())
            }
        }
    }

    /// A short notice that `job`'s run finally failed ([`failure_message`]).
    pub async fn failure_notice(
        &self,
        channel: &str,
        job: &str,
        run: &RunContext,
        error: &RunError,
    ) -> Result<(), DeliverError> {
        match self {
            Slack::WebApi(api) => api.failure_notice(channel, job, run, error).await,
            Slack::Webhook(hook) => {
                let (text, blocks) = failure_message(job, run, error);
                hook.post(&text, blocks).await
            }
        }
    }
}

/// Slack's Web API, reached with the bot token.
pub struct WebApi {
    connection: Connection,
    /// Channel ids by name, read once (`conversations.list`).
    channels: OnceCell<BTreeMap<String, String>>,
}

/// Whether `channel` is written as a channel id (`C…`, `G…` or `D…` and capitals or digits).
fn is_channel_id(channel: &str) -> bool {
    let mut chars = channel.chars();
    matches!(chars.next(), Some('C' | 'G' | 'D'))
        && channel.len() >= 9
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

impl WebApi {
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

    /// The id of `channel`, written as an id or as a name (`#marketing`): the Web API reads
    /// history and shares files by id only. Names are looked up once in the channels the
    /// app can see (`conversations.list`, public and private, archived left out).
    async fn channel_id(&self, channel: &str) -> Result<String, DeliverError> {
        if is_channel_id(channel) {
            return Ok(channel.to_string());
        }
        let channels = self
            .channels
            .get_or_try_init(|| async {
                let mut by_name = BTreeMap::new();
                let mut cursor = String::new();
                loop {
                    let mut body = json!({ "types": "public_channel,private_channel", "exclude_archived": true, "limit": 1000 });
                    if !cursor.is_empty() {
                        body["cursor"] = Value::from(cursor.clone());
                    }
                    let page = self
                        .call("conversations.list", "channels", body, true)
                        .await?;
                    for found in page["channels"].as_array().into_iter().flatten() {
                        if let (Some(name), Some(id)) = (found["name"].as_str(), found["id"].as_str()) {
                            by_name.insert(name.to_string(), id.to_string());
                        }
                    }
                    cursor = page["response_metadata"]["next_cursor"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    if cursor.is_empty() {
                        return Ok::<_, DeliverError>(by_name);
                    }
                }
            })
            .await?;
        channels
            .get(&channel.trim_start_matches('#').to_lowercase())
            .cloned()
            .ok_or_else(|| DeliverError::Slack {
                method: "conversations.list".into(),
                code: "channel_not_found".into(),
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
    async fn deliver(&self, channel: &str, report: &Report<'_>) -> Result<String, DeliverError> {
        let channel = self.channel_id(channel).await?;
        let channel = channel.as_str();
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

    /// Posts `job`'s failure notice ([`failure_message`]) to `channel`.
    async fn failure_notice(
        &self,
        channel: &str,
        job: &str,
        run: &RunContext,
        error: &RunError,
    ) -> Result<(), DeliverError> {
        let (text, blocks) = failure_message(job, run, error);
        let body = json!({
            "channel": channel,
            "text": text,
            "blocks": blocks,
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

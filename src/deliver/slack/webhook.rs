//! Slack's incoming webhook (`api-reference/slack.md` §4), for teams without a bot token:
//! a POST of the message's JSON to the webhook's URL, which is the credential and names
//! its channel. It answers `ok` as plain text, or an HTTP status with a plain-text code.
//!
//! A webhook cannot read its channel back and takes no metadata, so nothing it posted can
//! be found again: its deliveries are exactly-once only as far as the ledger knows. The
//! pipeline therefore never re-sends one whose last attempt ended without an answer (see
//! `pipeline::deliver`); the files a report shares through the Web API are named in a note
//! instead.

use serde_json::{Value, json};

use crate::deliver::DeliverError;
use crate::http::{Auth, Body, Call, HttpClient, RateBudget, RetryPolicy, Service};
use crate::secret::Secret;

/// An incoming webhook.
pub struct Webhook {
    client: HttpClient,
    service: Service,
}

impl Webhook {
    /// The webhook at `url`, posted to through `client`.
    pub fn new(client: HttpClient, url: &Secret, retry: RetryPolicy) -> Result<Self, DeliverError> {
        let base_url = url
            .expose()
            .parse()
            .map_err(|e: url::ParseError| DeliverError::Answer {
                what: "destinations.slack.webhook_url".into(),
                message: format!("not a URL: {e}"),
            })?;
        Ok(Webhook {
            client,
            service: Service {
                name: "Slack incoming webhook",
                base_url,
                auth: Auth::SecretUrl,
                retry,
                // slack.md §4: about one message per second per webhook.
                budget: Some(RateBudget::per_second(1)),
            },
        })
    }

    /// Posts `text` with `blocks`. A 4xx answer is an error naming Slack's code; the client
    /// retries 429s and failures before the request was sent, never a post that may have
    /// arrived.
    pub async fn post(&self, text: &str, blocks: Value) -> Result<(), DeliverError> {
        let body = json!({ "text": text, "blocks": blocks, "unfurl_links": false });
        match self
            .client
            .send(&self.service, &Call::post("", Body::Json(body)))
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match err.status {
                Some(status @ 400..=499) if status != 429 => Err(DeliverError::Webhook {
                    status,
                    code: err.message,
                }),
                _ => Err(err.into()),
            },
        }
    }
}

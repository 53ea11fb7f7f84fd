//! A failed call, named well enough to act on: service, method, endpoint (credentials
//! redacted), status, the service's request id and its own message.

use std::fmt;

use serde_json::Value;

use crate::error::{Classify, ErrorKind};

/// A call that did not succeed, after any retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The service, such as `Smile.io`.
    pub service: &'static str,
    /// The HTTP method.
    pub method: &'static str,
    /// Path and query, credentials redacted.
    pub endpoint: String,
    /// The last status, or none for a transport failure.
    pub status: Option<u16>,
    /// The service's request id, when it sent one.
    pub request_id: Option<String>,
    /// The service's message, or what went wrong on the wire.
    pub message: String,
    /// Attempts made.
    pub attempts: u32,
    /// The request may have reached the server but no whole answer came back (a timeout
    /// or a reset): whether it was acted on is unknown.
    pub unanswered: bool,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.service, self.method, self.endpoint)?;
        match self.status {
            Some(status) => write!(f, " answered HTTP {status}")?,
            None => f.write_str(" failed")?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " (request id {id})")?;
        }
        write!(f, ": {}", self.message)?;
        if self.attempts > 1 {
            write!(f, " (after {} attempts)", self.attempts)?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpError {}

impl Classify for HttpError {
    fn kind(&self) -> ErrorKind {
        match self.status {
            None | Some(429) | Some(500..=599) => ErrorKind::Transient,
            // Rejected credentials are fixed in the config and its environment.
            Some(401) | Some(403) => ErrorKind::Config,
            Some(_) => ErrorKind::Terminal,
        }
    }
}

/// The request id a service put in its error body, in any of the shapes the APIs use.
pub fn request_id_in(body: &Value) -> Option<String> {
    [
        &body["error"]["request_id"],
        &body["request_id"],
        &body["requestId"],
        &body["errors"][0]["extensions"]["requestId"],
    ]
    .into_iter()
    .find_map(|v| v.as_str().map(str::to_string))
}

/// The human message in an error body, in any of the shapes the APIs use. OAuth's
/// `{"error": code, "error_description": text}` gives both.
pub fn message_in(body: &Value, raw: &str) -> String {
    if let (Some(code), Some(description)) =
        (body["error"].as_str(), body["error_description"].as_str())
    {
        return format!("{code}: {description}");
    }
    let candidates = [
        &body["error"]["message"],
        &body["error"],
        &body["message"],
        &body["msg"],
        &body["errors"],
        &body["error_description"],
    ];
    candidates
        .into_iter()
        .find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_string))
        .unwrap_or_else(|| {
            let text: String = raw.chars().take(300).collect();
            if text.trim().is_empty() {
                "no message in the answer".to_string()
            } else {
                text.trim().to_string()
            }
        })
}

//! The fault plan: failures injected into matching requests so tests can prove the clients
//! cope — 429s with `Retry-After` (including `0`), 5xx bursts, slow answers, dropped
//! connections, a malformed page, a record with a wrong-typed field, a new unknown field.
//!
//! A rule matches a method and path prefix, lets `after` matching requests through, then
//! applies its fault to the next `times` of them. Rules are set at start (`--faults FILE`)
//! or at run time with `POST /_sandbox/faults`, and listed in `GET /_sandbox/state`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Response, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One injected failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// 429 with `Retry-After: <retry_after_secs>` (omitted when null).
    RateLimit {
        /// Seconds to send in `Retry-After`.
        retry_after_secs: Option<u64>,
    },
    /// A server error (500, 502, 503, ...).
    ServerError {
        /// The status to send.
        status: u16,
    },
    /// The normal answer, after a delay.
    Slow {
        /// The delay in milliseconds.
        millis: u64,
    },
    /// Headers, then half the body, then the connection is dropped.
    ConnectionReset,
    /// The body cut in half: not valid JSON.
    MalformedBody,
    /// The first record of the page gets `field` with a value of the wrong type.
    WrongType {
        /// The field to spoil.
        field: String,
    },
    /// The first record of the page gets a field no schema knows.
    UnknownField {
        /// The new field's name.
        field: String,
    },
}

/// A fault and which requests it hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    /// `GET`, `POST`, ...; any method when absent.
    #[serde(default)]
    pub method: Option<String>,
    /// Path prefix, such as `/smile/v1/customers`.
    pub path: String,
    /// Matching requests let through before the fault starts.
    #[serde(default)]
    pub after: u32,
    /// How many matching requests get the fault.
    #[serde(default = "one")]
    pub times: u32,
    /// The fault.
    pub fault: Fault,
    /// Matching requests seen so far (state, not config).
    #[serde(default, skip_deserializing)]
    pub seen: u32,
}

fn one() -> u32 {
    1
}

impl FaultRule {
    /// Counts a request against this rule; true when the fault applies to it.
    pub fn take(&mut self, method: &str, path: &str) -> bool {
        let method_matches = self
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        if !method_matches || !path.starts_with(&self.path) {
            return false;
        }
        self.seen += 1;
        self.seen > self.after && self.seen <= self.after + self.times
    }
}

/// Reads a fault plan file (a JSON array of rules); errors name the file, line and column.
pub fn read_plan(path: &std::path::Path) -> Result<Vec<FaultRule>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read fault plan {}: {err}", path.display()))?;
    serde_json::from_str(&text).map_err(|err| {
        format!(
            "{}:{}:{}: the fault plan must be a JSON array of rules: {err}",
            path.display(),
            err.line(),
            err.column()
        )
    })
}

/// How a fault changes the normal answer.
pub enum Applied {
    /// Answer with this instead of calling the service.
    Replace(Response<Body>),
    /// Wait, then answer normally.
    Delay(Duration),
    /// Call the service, then rewrite its body.
    Rewrite(Fault),
}

impl Fault {
    /// What this fault does to a request; `error_body` renders the service's error shape.
    pub fn apply(&self, error_body: impl Fn(StatusCode, &str) -> Response<Body>) -> Applied {
        match self {
            Fault::RateLimit { retry_after_secs } => {
                let mut response = error_body(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Rate limit exceeded (sandbox fault)",
                );
                if let Some(secs) = retry_after_secs {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(*secs));
                }
                Applied::Replace(response)
            }
            Fault::ServerError { status } => {
                let status =
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Applied::Replace(error_body(status, "Internal error (sandbox fault)"))
            }
            Fault::Slow { millis } => Applied::Delay(Duration::from_millis(*millis)),
            other => Applied::Rewrite(other.clone()),
        }
    }
}

/// Rewrites a normal answer's body according to a body fault.
pub fn rewrite(
    fault: &Fault,
    status: StatusCode,
    headers: header::HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let body = match fault {
        Fault::ConnectionReset => {
            let half = body.slice(..body.len() / 2);
            let stream = futures_stream(half);
            let mut response = Response::new(Body::from_stream(stream));
            *response.status_mut() = status;
            let mut headers = headers;
            headers.remove(header::CONTENT_LENGTH);
            *response.headers_mut() = headers;
            return response;
        }
        Fault::MalformedBody => body.slice(..body.len() / 2),
        Fault::WrongType { field } => mutate_first_record(&body, |record| {
            let wrong = match record.get(field) {
                Some(Value::String(_)) => Value::from(12345),
                Some(Value::Number(_)) | Some(Value::Bool(_)) => Value::from("not-a-number"),
                _ => Value::from(vec![1, 2, 3]),
            };
            record.insert(field.clone(), wrong);
        }),
        Fault::UnknownField { field } => mutate_first_record(&body, |record| {
            record.insert(field.clone(), Value::from("introduced by the sandbox"));
        }),
        _ => body,
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let mut headers = headers;
    headers.remove(header::CONTENT_LENGTH);
    *response.headers_mut() = headers;
    response
}

/// A body stream that yields `bytes` and then fails, so the server drops the connection
/// mid-body.
fn futures_stream(
    bytes: Bytes,
) -> impl futures_core::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let items: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(bytes),
        Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "sandbox fault: connection reset",
        )),
    ];
    IterStream(items.into_iter())
}

struct IterStream<I>(I);

impl<I: Iterator + Unpin> futures_core::Stream for IterStream<I> {
    type Item = I::Item;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        std::task::Poll::Ready(self.0.next())
    }
}

/// Applies `change` to the first object inside the first array of objects in a JSON body
/// (the first record of a page), whatever the envelope.
fn mutate_first_record(
    body: &Bytes,
    change: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> Bytes {
    let Ok(mut value) = serde_json::from_slice::<Value>(body) else {
        return body.clone();
    };
    if let Some(record) = first_record(&mut value) {
        change(record);
    }
    Bytes::from(serde_json::to_vec(&value).unwrap_or_else(|_| body.to_vec()))
}

fn first_record(value: &mut Value) -> Option<&mut serde_json::Map<String, Value>> {
    match value {
        Value::Array(items) => {
            if items.first().is_some_and(Value::is_object) {
                return items.first_mut().and_then(Value::as_object_mut);
            }
            items.iter_mut().find_map(first_record)
        }
        Value::Object(map) => map.values_mut().find_map(first_record),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_lets_after_requests_through_then_hits_times_of_them() {
        let mut rule = FaultRule {
            method: Some("GET".into()),
            path: "/smile/v1/customers".into(),
            after: 1,
            times: 2,
            fault: Fault::ServerError { status: 503 },
            seen: 0,
        };
        let hits: Vec<bool> = (0..5)
            .map(|_| rule.take("GET", "/smile/v1/customers"))
            .collect();
        assert_eq!(hits, [false, true, true, false, false]);
        assert!(!rule.take("POST", "/smile/v1/customers"));
        assert!(!rule.take("GET", "/smile/v1/vip_tiers"));
    }

    #[test]
    fn body_faults_spoil_the_first_record_of_any_envelope() {
        let body = Bytes::from(
            r#"{"customers":[{"id":1,"email":"a@x"},{"id":2,"email":"b@x"}],"metadata":{}}"#,
        );
        let wrong = rewrite(
            &Fault::WrongType { field: "id".into() },
            StatusCode::OK,
            header::HeaderMap::new(),
            body.clone(),
        );
        assert_eq!(wrong.status(), StatusCode::OK);
        let mut bare = Bytes::from(r#"[{"id":"s_1"}]"#);
        bare = mutate_first_record(&bare, |r| {
            r.insert("extra".into(), Value::from(1));
        });
        assert_eq!(&bare[..], br#"[{"id":"s_1","extra":1}]"#);
        let spoiled = mutate_first_record(&body, |r| {
            r.insert("id".into(), Value::from("not-a-number"));
        });
        let parsed: Value = serde_json::from_slice(&spoiled).expect("still JSON");
        assert_eq!(parsed["customers"][0]["id"], "not-a-number");
        assert_eq!(parsed["customers"][1]["id"], 2);
    }
}

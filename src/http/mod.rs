//! The one HTTP client every source and destination uses.
//!
//! Services are described as data ([`Service`]: name, base URL, auth, retry policy, rate
//! budget); a [`Call`] names the method, path, query and body. [`HttpClient::send`] waits
//! for the budget, sends with connect and request timeouts (rustls), retries 429, 5xx and
//! transport failures per the [`retry`] policy honouring `Retry-After`, and turns what is
//! left into an [`HttpError`] naming service, endpoint, status and request id. Secrets go
//! only on the wire: URLs are shown redacted ([`redact`]) and headers are never logged.
//! Source and destination modules hold endpoints and field mapping, nothing else.

pub mod budget;
pub mod error;
pub mod fetch;
pub mod google_auth;
pub mod page;
pub mod paginate;
pub mod redact;
pub mod retry;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use url::Url;

use crate::secret::Secret;
pub use budget::RateBudget;
pub use error::HttpError;
pub use retry::RetryPolicy;
use retry::{Failure, parse_retry_after};

/// How a service authenticates.
#[derive(Debug, Clone)]
pub enum Auth {
    /// No credentials.
    None,
    /// The URL itself is the credential (an incoming webhook, a pre-signed upload or
    /// download URL): nothing is added, and errors and logs show no part of its path or
    /// query.
    SecretUrl,
    /// `Authorization: Bearer …`.
    Bearer(Secret),
    /// `Authorization: token …` (SmartrMail).
    TokenScheme(Secret),
    /// A named header (`Api-Key`, `X-Shopify-Access-Token`).
    Header {
        /// The header name.
        name: &'static str,
        /// Its value.
        value: Secret,
    },
    /// HTTP Basic.
    Basic {
        /// The user.
        user: String,
        /// The password.
        password: Secret,
    },
}

/// A method's name for messages (mailroom sends only these).
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "another method",
    }
}

/// One credentialed API.
#[derive(Debug, Clone)]
pub struct Service {
    /// Name for messages and logs, such as `Smile.io`.
    pub name: &'static str,
    /// Base URL; call paths are appended to it.
    pub base_url: Url,
    /// Credentials.
    pub auth: Auth,
    /// Retry settings.
    pub retry: RetryPolicy,
    /// The credential's rate budget, if the API documents one.
    pub budget: Option<Arc<RateBudget>>,
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// No body.
    None,
    /// JSON.
    Json(Value),
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, String)>),
    /// Bytes of a given content type (a multipart upload); cheap to clone for retries.
    Bytes {
        /// The `Content-Type` header.
        content_type: String,
        /// The body.
        bytes: bytes::Bytes,
    },
}

/// One call to a service.
#[derive(Debug, Clone)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// Path after the base URL, such as `/customers`.
    pub path: String,
    /// Query parameters.
    pub query: Vec<(String, String)>,
    /// The body.
    pub body: Body,
    /// Whether repeating it is harmless; writes that are not are retried only when the
    /// server surely did not act.
    pub idempotent: bool,
    /// Headers beyond authorization and the body's type (`Content-Range` of an upload chunk).
    pub headers: Vec<(&'static str, String)>,
    /// Statuses outside 2xx that are answers, not failures (a resumable upload's `308`).
    pub answers: Vec<u16>,
}

impl Call {
    /// A GET of `path`.
    pub fn get(path: impl Into<String>) -> Self {
        Call {
            method: Method::GET,
            path: path.into(),
            query: Vec::new(),
            body: Body::None,
            idempotent: true,
            headers: Vec::new(),
            answers: Vec::new(),
        }
    }

    /// A POST of `body` to `path`; not idempotent unless said so.
    pub fn post(path: impl Into<String>, body: Body) -> Self {
        Call {
            method: Method::POST,
            path: path.into(),
            query: Vec::new(),
            body,
            idempotent: false,
            headers: Vec::new(),
            answers: Vec::new(),
        }
    }

    /// A PUT of `body` to `path`: a write of a whole resource, so repeating it is harmless.
    pub fn put(path: impl Into<String>, body: Body) -> Self {
        Call {
            method: Method::PUT,
            path: path.into(),
            query: Vec::new(),
            body,
            idempotent: true,
            headers: Vec::new(),
            answers: Vec::new(),
        }
    }

    /// Adds a query parameter.
    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    /// Marks the call as safe to repeat.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl ToString) -> Self {
        self.headers.push((name, value.to_string()));
        self
    }

    /// Takes `status` as an answer to hand back, not a failure to retry or report.
    pub fn answered_by(mut self, status: u16) -> Self {
        self.answers.push(status);
        self
    }
}

/// Connection and whole-request time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the connection.
    pub connect: Duration,
    /// The whole request, answer included.
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            request: Duration::from_secs(120),
        }
    }
}

/// The shared client (cheap to clone: one connection pool).
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
}

impl HttpClient {
    /// A client with these time limits.
    #[allow(
        clippy::disallowed_methods,
        reason = "the one place a reqwest client is built"
    )]
    pub fn new(timeouts: Timeouts) -> Result<Self, HttpError> {
        let inner = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .timeout(timeouts.request)
            .user_agent(concat!("mailroom/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError {
                service: "mailroom",
                method: "",
                endpoint: String::new(),
                status: None,
                request_id: None,
                message: format!("cannot build the HTTP client: {e}"),
                attempts: 0,
                unanswered: false,
            })?;
        Ok(HttpClient { inner })
    }

    /// The URL `call` goes to.
    pub fn url(service: &Service, call: &Call) -> Url {
        let mut url = service.base_url.clone();
        // An empty path calls the base URL itself (a signed download link).
        if !call.path.is_empty() {
            let base_path = url.path().trim_end_matches('/').to_string();
            url.set_path(&format!(
                "{base_path}/{}",
                call.path.trim_start_matches('/')
            ));
        }
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        url
    }

    fn request(&self, service: &Service, call: &Call, url: &Url) -> reqwest::RequestBuilder {
        let mut request = self.inner.request(call.method.clone(), url.clone());
        request = match &service.auth {
            Auth::None | Auth::SecretUrl => request,
            Auth::Bearer(secret) => request.bearer_auth(secret.expose()),
            Auth::TokenScheme(secret) => request.header(
                reqwest::header::AUTHORIZATION,
                format!("token {}", secret.expose()),
            ),
            Auth::Header { name, value } => request.header(*name, value.expose()),
            Auth::Basic { user, password } => request.basic_auth(user, Some(password.expose())),
        };
        for (name, value) in &call.headers {
            request = request.header(*name, value);
        }
        match &call.body {
            Body::None => request,
            Body::Json(value) => request.json(value),
            Body::Form(pairs) => request.form(pairs),
            Body::Bytes {
                content_type,
                bytes,
            } => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes.clone()),
        }
    }

    /// Sends `call` to `service`: budget, retries, classification (see the module docs).
    pub async fn send(
        &self,
        service: &Service,
        call: &Call,
    ) -> Result<reqwest::Response, HttpError> {
        let url = Self::url(service, call);
        let endpoint = redact::endpoint(service, &url);
        let mut rng = fastrand::Rng::new();
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(budget) = &service.budget {
                budget.wait().await;
            }
            stats::request(service.name);
            let (failure, retry_after, response) =
                match self.request(service, call, &url).send().await {
                    Ok(response)
                        if response.status().is_success()
                            || call.answers.contains(&response.status().as_u16()) =>
                    {
                        return Ok(response);
                    }
                    Ok(response) => {
                        if response.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                            stats::throttled(service.name);
                        }
                        let retry_after = response
                            .headers()
                            .get(reqwest::header::RETRY_AFTER)
                            .and_then(|v| v.to_str().ok())
                            .and_then(parse_retry_after);
                        (
                            Failure::Status(response.status()),
                            retry_after,
                            Some(response),
                        )
                    }
                    Err(err) if err.is_connect() => (Failure::Connect, None, None),
                    Err(_) => (Failure::Transport, None, None),
                };
            if let Some(wait) =
                service
                    .retry
                    .delay(failure, attempts, call.idempotent, retry_after, &mut rng)
            {
                let status = response.as_ref().map(|r| r.status().as_u16());
                stats::retry(service.name);
                tracing::warn!(service = service.name, endpoint = %endpoint, status, attempt = attempts, wait_ms = wait.as_millis() as u64, "call failed; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
            return Err(Self::error(service, call, endpoint, failure, response, attempts).await);
        }
    }

    async fn error(
        service: &Service,
        call: &Call,
        endpoint: String,
        failure: Failure,
        response: Option<reqwest::Response>,
        attempts: u32,
    ) -> HttpError {
        let mut error = HttpError {
            service: service.name,
            method: method_name(&call.method),
            endpoint,
            status: None,
            request_id: None,
            message: match failure {
                Failure::Connect => "could not connect".to_string(),
                Failure::Transport => {
                    "the connection failed or timed out before a whole answer arrived".to_string()
                }
                Failure::Status(_) => String::new(),
            },
            attempts,
            unanswered: failure == Failure::Transport,
        };
        if let Some(response) = response {
            error.status = Some(response.status().as_u16());
            let header_id = ["x-request-id", "request-id", "x-goog-request-id"]
                .iter()
                .find_map(|h| {
                    response
                        .headers()
                        .get(*h)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                });
            let text = response.text().await.unwrap_or_default();
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            error.request_id = header_id.or_else(|| error::request_id_in(&body));
            error.message = error::message_in(&body, &text);
        }
        error
    }
}

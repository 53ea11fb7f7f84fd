//! The sandbox: faithful simulators of every external service mailroom talks to, on one
//! local listener, over one seeded [`world`].
//!
//! Each service lives under its own path prefix and the real path follows it unchanged
//! (`https://api.smile.io/v1/customers` is served at `/smile/v1/customers`), so a client —
//! mailroom's own or a service's official library — works when given the prefix as its
//! base URL. Every simulator follows `api-reference/` on the wire: auth schemes, envelopes,
//! field names and types, pagination, rate limits, error shapes and quirks.
//!
//! Around the services: a [`faults`] plan injects failures into matching requests; every
//! request is counted per endpoint (with how many were answered 429); `GET /_sandbox/state`
//! shows what the services received and `POST /_sandbox/reset` restores the seeded world.
//! Every credential is the string [`CREDENTIAL`].

#![allow(
    clippy::result_large_err,
    reason = "simulator handlers return early with the whole HTTP error response"
)]

pub mod bigquery;
pub mod dotdigital;
pub mod faults;
pub mod google;
mod inspect;
pub mod iterable;
mod ratelimit;
pub mod sheets;
pub mod shopify;
pub mod slack;
pub mod smartrmail;
pub mod smile;
pub mod world;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Response, StatusCode};
use axum::middleware::{self, Next};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use faults::{Applied, FaultRule};
use world::{World, WorldParams};

/// The token, key, password and secret every simulated service accepts.
pub const CREDENTIAL: &str = "sandbox";

/// How a sandbox is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxOptions {
    /// The world to serve.
    pub world: WorldParams,
    /// Smile's per-token limit in requests per second (`None`: unlimited, for benchmarks).
    pub smile_rate_limit: Option<u32>,
    /// Faults to inject from the start.
    pub faults: Vec<FaultRule>,
}

impl SandboxOptions {
    /// A sandbox of `customers` people from `seed`, with the real services' rate limits.
    pub fn new(seed: u64, customers: u32) -> Self {
        SandboxOptions {
            world: WorldParams {
                seed,
                customers,
                anchor: WorldParams::default_anchor(),
            },
            smile_rate_limit: Some(10),
            faults: Vec::new(),
        }
    }
}

/// Requests seen for one endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EndpointCount {
    /// All requests.
    pub requests: u64,
    /// Requests answered 429.
    pub rate_limited: u64,
}

/// Everything the running sandbox knows: the world and what services did to it.
pub struct Shared {
    options: SandboxOptions,
    world: World,
    smile: Mutex<smile::SmileState>,
    smartrmail: Mutex<smartrmail::SmartrMailState>,
    iterable: Mutex<iterable::IterableState>,
    dotdigital: Mutex<dotdigital::DotdigitalState>,
    shopify: Mutex<shopify::ShopifyState>,
    slack: Mutex<slack::SlackState>,
    sheets: Mutex<sheets::SheetsState>,
    bigquery: tokio::sync::Mutex<bigquery::BigQueryState>,
    google: google::GoogleAuth,
    shopify_catalog: std::sync::OnceLock<shopify::Catalog>,
    faults: Mutex<Vec<FaultRule>>,
    requests: Mutex<BTreeMap<String, EndpointCount>>,
}

/// Locks a mutex; the sandbox's state stays usable after a panicked request.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn new(options: SandboxOptions) -> Self {
        let world = World::new(options.world);
        Shared {
            smile: Mutex::new(smile::SmileState::new(options.smile_rate_limit)),
            smartrmail: Mutex::new(smartrmail::SmartrMailState::default()),
            iterable: Mutex::new(iterable::IterableState::default()),
            dotdigital: Mutex::new(dotdigital::DotdigitalState::default()),
            shopify: Mutex::new(shopify::ShopifyState::default()),
            slack: Mutex::new(slack::SlackState::new(options.world.anchor.timestamp())),
            sheets: Mutex::new(sheets::SheetsState::default()),
            bigquery: tokio::sync::Mutex::new(bigquery::BigQueryState::default()),
            google: google::GoogleAuth::new(options.world.seed),
            shopify_catalog: std::sync::OnceLock::new(),
            faults: Mutex::new(options.faults.clone()),
            requests: Mutex::new(BTreeMap::new()),
            options,
            world,
        }
    }

    /// Restores the seeded world and the start-up fault plan; clears the counters.
    async fn reset(&self) {
        *lock(&self.smile) = smile::SmileState::new(self.options.smile_rate_limit);
        *lock(&self.smartrmail) = smartrmail::SmartrMailState::default();
        *lock(&self.iterable) = iterable::IterableState::default();
        *lock(&self.dotdigital) = dotdigital::DotdigitalState::default();
        *lock(&self.shopify) = shopify::ShopifyState::default();
        *lock(&self.slack) = slack::SlackState::new(self.options.world.anchor.timestamp());
        *lock(&self.sheets) = sheets::SheetsState::default();
        *self.bigquery.lock().await = bigquery::BigQueryState::default();
        self.google.reset();
        *lock(&self.faults) = self.options.faults.clone();
        lock(&self.requests).clear();
    }
}

/// The service a path belongs to, and how it shapes error bodies.
fn error_response_for(path: &str, status: StatusCode, message: &str) -> Response<Body> {
    type ErrorBody = fn(StatusCode, &str) -> Response<Body>;
    const SERVICES: [(&str, ErrorBody); 9] = [
        ("/smile/", smile::error),
        ("/smartrmail/", smartrmail::error),
        ("/iterable/", iterable::error),
        ("/dotdigital/", dotdigital::error),
        ("/shopify/", shopify::error),
        ("/slack/", slack::error),
        ("/sheets/", google::error),
        ("/bigquery/", google::error),
        ("/oauth2/", google::error),
    ];
    match SERVICES.iter().find(|(prefix, _)| path.starts_with(prefix)) {
        Some((_, error)) => error(status, message),
        None => json_response(status, &serde_json::json!({ "error": message })),
    }
}

/// The sandbox's address as the client reached it (its `Host`), for URLs handed back in
/// answers (next pages, upload sessions, result files).
pub fn public_base(headers: &axum::http::HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// A GUID-shaped id, the same for the same seed, stream and sequence number.
pub fn guid(seed: u64, stream: u32, sequence: u64) -> String {
    let x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ sequence;
    let hex = format!(
        "{:016x}{:016x}",
        x.rotate_left(stream),
        x.wrapping_mul(0xD6E8_FEB8_6659_FD93)
    );
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A timestamp as the simulated APIs accept one: RFC 3339, `YYYY-MM-DDTHH:MM:SS`,
/// `YYYY-MM-DD HH:MM:SS` or a bare date (midnight), all UTC.
pub fn parse_time(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|t| t.and_utc())
        })
        .or_else(|| {
            NaiveDate::parse_from_str(text, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|t| t.and_utc())
        })
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    // Pages of a few hundred records run to a few hundred kilobytes: start big enough that
    // writing one does not keep reallocating.
    let mut bytes = Vec::with_capacity(64 * 1024);
    if serde_json::to_writer(&mut bytes, body).is_err() {
        bytes.clear();
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

/// Counts every request per endpoint and applies the fault plan.
async fn count_and_inject(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    let endpoint = format!("{method} {}", endpoint_pattern(&path));
    let fault = if path.starts_with("/_sandbox") {
        None
    } else {
        // Every rule counts every request it matches, so each rule's `after` is exact.
        let mut hit = None;
        for rule in lock(&shared.faults).iter_mut() {
            if rule.take(&method, &path) && hit.is_none() {
                hit = Some(rule.fault.clone());
            }
        }
        hit
    };
    let response = match fault
        .map(|f| f.apply(|status, message| error_response_for(&path, status, message)))
    {
        None => next.run(request).await,
        Some(Applied::Replace(response)) => response,
        Some(Applied::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Applied::Rewrite(fault)) => {
            let response = next.run(request).await;
            let (parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            faults::rewrite(&fault, parts.status, parts.headers, bytes)
        }
    };
    if !path.starts_with("/_sandbox") {
        let mut requests = lock(&shared.requests);
        let count = requests.entry(endpoint).or_default();
        count.requests += 1;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            count.rate_limited += 1;
        }
    }
    response
}

/// A path with ids replaced by `{id}`, so counts group by endpoint.
fn endpoint_pattern(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let is_id = segment.chars().any(|c| c.is_ascii_digit()) && segment.len() > 2
                || segment.contains('@')
                || segment.contains("%40");
            if is_id { "{id}" } else { segment }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The sandbox's router: every service under its prefix, plus inspection.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .nest("/smile/v1", smile::routes())
        .nest("/smartrmail/api/v1", smartrmail::routes())
        .nest("/iterable", iterable::routes())
        .nest("/dotdigital", dotdigital::routes())
        .nest("/shopify", shopify::routes())
        .nest("/slack", slack::routes())
        .nest("/sheets", sheets::routes())
        .nest("/bigquery", bigquery::routes())
        .merge(google::routes())
        .merge(inspect::routes())
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            count_and_inject,
        ))
        .with_state(shared)
}

/// A sandbox serving on a local port.
pub struct RunningSandbox {
    /// Where it listens, e.g. `http://127.0.0.1:41234`.
    pub base_url: String,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl RunningSandbox {
    /// Starts a sandbox on `addr` (port 0 picks a free port).
    pub async fn start(addr: SocketAddr, options: SandboxOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let shared = Arc::new(Shared::new(options));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let app = router(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        Ok(RunningSandbox {
            base_url: format!("http://{local}"),
            shared,
            shutdown,
            task,
        })
    }

    /// The Google service-account key file for this sandbox (`token_uri` pointing here).
    pub fn service_account_key(&self) -> serde_json::Value {
        self.shared.google.key_file(&self.base_url)
    }

    /// Each service's name, base URL and the credentials it accepts.
    pub fn services(&self) -> Vec<ServiceEndpoint> {
        services(&self.base_url)
    }

    /// Stops serving and waits for the listener to close.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// One simulated service as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEndpoint {
    /// The service's name.
    pub name: &'static str,
    /// Its base URL under the sandbox.
    pub base_url: String,
    /// How to authenticate.
    pub credentials: &'static str,
}

/// How a command reaches the sandbox.
pub enum Connection {
    /// Started in this process for the command's lifetime.
    InProcess(RunningSandbox),
    /// A `mailroom sandbox` running elsewhere.
    Running {
        /// Its address.
        base_url: String,
        /// Its world's seed.
        seed: u64,
        /// Its world's size.
        customers: u64,
    },
}

impl Connection {
    /// The sandbox's address; each service is under its prefix.
    pub fn base_url(&self) -> &str {
        match self {
            Connection::InProcess(sandbox) => &sandbox.base_url,
            Connection::Running { base_url, .. } => base_url,
        }
    }

    /// A sentence for the logs.
    pub fn describe(&self) -> String {
        match self {
            Connection::InProcess(sandbox) => format!("in-process sandbox at {}", sandbox.base_url),
            Connection::Running {
                base_url,
                seed,
                customers,
            } => {
                format!("running sandbox at {base_url} (seed {seed}, {customers} customers)")
            }
        }
    }
}

/// Why the sandbox could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The in-process sandbox could not listen.
    #[error("cannot start the in-process sandbox: {0}")]
    Start(std::io::Error),
    /// Nothing answered as a sandbox at the configured address.
    #[error(
        "cannot reach the sandbox at {url}: {reason}; start one with `mailroom sandbox --listen ADDR`, or fix [sandbox] url / --sandbox-url"
    )]
    Unreachable {
        /// The address tried.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The configured fault plan is unreadable.
    #[error("{0}")]
    Faults(String),
}

impl crate::error::Classify for ConnectError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            ConnectError::Faults(_) => crate::error::ErrorKind::Config,
            _ => crate::error::ErrorKind::Transient,
        }
    }
}

/// Reaches the sandbox a config asks for: none when it is disabled, the running one at
/// `[sandbox] url` (checked to answer), else one started in this process on a free port.
pub async fn connect(
    config: &crate::config::SandboxConfig,
) -> Result<Option<Connection>, ConnectError> {
    if !config.enabled {
        return Ok(None);
    }
    if let Some(url) = &config.url {
        return probe(url.as_str().trim_end_matches('/')).await.map(Some);
    }
    let mut options = SandboxOptions::new(config.seed, config.customers);
    if let Some(path) = &config.faults {
        options.faults = faults::read_plan(path).map_err(ConnectError::Faults)?;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let sandbox = RunningSandbox::start(addr, options)
        .await
        .map_err(ConnectError::Start)?;
    Ok(Some(Connection::InProcess(sandbox)))
}

async fn probe(base_url: &str) -> Result<Connection, ConnectError> {
    use crate::http::{Auth, Call, HttpClient, Service, Timeouts, retry::RetryPolicy};
    let unreachable = |reason: String| ConnectError::Unreachable {
        url: base_url.to_string(),
        reason,
    };
    let parsed = base_url
        .parse()
        .map_err(|e: url::ParseError| unreachable(e.to_string()))?;
    let service = Service {
        name: "sandbox",
        base_url: parsed,
        auth: Auth::None,
        retry: RetryPolicy {
            max_retries: 1,
            ..RetryPolicy::default()
        },
        budget: None,
    };
    let timeouts = Timeouts {
        connect: std::time::Duration::from_secs(3),
        request: std::time::Duration::from_secs(10),
    };
    let client = HttpClient::new(timeouts).map_err(|e| unreachable(e.message))?;
    let response = client
        .send(&service, &Call::get("/_sandbox/state"))
        .await
        .map_err(|e| unreachable(e.message))?;
    let state: serde_json::Value = response
        .json()
        .await
        .map_err(|_| unreachable("it did not answer as a mailroom sandbox".into()))?;
    let world = &state["world"];
    match (world["seed"].as_u64(), world["customers"].as_u64()) {
        (Some(seed), Some(customers)) => Ok(Connection::Running {
            base_url: base_url.to_string(),
            seed,
            customers,
        }),
        _ => Err(unreachable(
            "it did not answer as a mailroom sandbox".into(),
        )),
    }
}

/// Each simulated service under a sandbox at `base`.
pub fn services(base: &str) -> Vec<ServiceEndpoint> {
    let endpoint = |name, path: &str, credentials| ServiceEndpoint {
        name,
        base_url: format!("{base}{path}"),
        credentials,
    };
    vec![
        endpoint("Smile.io", "/smile/v1", "Authorization: Bearer sandbox"),
        endpoint(
            "SmartrMail",
            "/smartrmail/api/v1",
            "Authorization: token sandbox (or ?token=sandbox)",
        ),
        endpoint(
            "Shopify",
            "/shopify/admin/api/2026-10/graphql.json",
            "X-Shopify-Access-Token: sandbox",
        ),
        endpoint("Iterable", "/iterable", "Api-Key: sandbox"),
        endpoint("Dotdigital", "/dotdigital", "HTTP Basic sandbox:sandbox"),
        endpoint("Slack", "/slack/api", "Authorization: Bearer sandbox"),
        endpoint(
            "Slack webhook",
            &format!("/slack/hooks{}", slack::WEBHOOK_PATH),
            "the URL is the secret",
        ),
        endpoint(
            "Google Sheets",
            "/sheets/v4",
            "Bearer token from /oauth2/token",
        ),
        endpoint(
            "BigQuery",
            "/bigquery/bigquery/v2",
            "Bearer token from /oauth2/token; uploads at /bigquery/upload/bigquery/v2",
        ),
        endpoint(
            "Google OAuth",
            "/oauth2/token",
            "JWT-bearer grant signed with the service-account key",
        ),
        endpoint(
            "inspection",
            "/_sandbox/state",
            "none; POST /_sandbox/reset restores the world",
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_group_ids_together() {
        assert_eq!(
            endpoint_pattern("/smile/v1/customers/100042"),
            "/smile/v1/customers/{id}"
        );
        assert_eq!(
            endpoint_pattern("/smartrmail/api/v1/subscribers/ana%40example.com"),
            "/smartrmail/api/v1/subscribers/{id}"
        );
        assert_eq!(
            endpoint_pattern("/smile/v1/vip_tiers"),
            "/smile/v1/vip_tiers"
        );
    }
}

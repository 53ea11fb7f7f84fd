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
//!
//! [`SERVICES`] is the one list of simulated services: each entry carries its mount point,
//! its routes, its error shape and how a client addresses it, so a new service is one
//! module here plus one entry there. This crate knows nothing of mailroom's library: a
//! client learns where each service is from [`RunningSandbox::services`] (or
//! [`services`] for a sandbox running elsewhere) and the key file from
//! [`RunningSandbox::service_account_key`] (or `GET /_sandbox/service-account.json`).

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
    /// The shortest time a Shopify bulk operation takes (real ones take seconds to hours).
    pub shopify_bulk_duration: std::time::Duration,
    /// How long a Shopify bulk result stays downloadable after it completed (7 days).
    pub shopify_result_ttl: std::time::Duration,
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
            shopify_bulk_duration: std::time::Duration::from_millis(500),
            shopify_result_ttl: std::time::Duration::from_secs(7 * 24 * 3600),
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
    /// Held while a Shopify bulk result is written: one at a time, as each holds the sorted
    /// keys of every node it exports.
    shopify_export: Mutex<()>,
    slack: Mutex<slack::SlackState>,
    sheets: Mutex<sheets::SheetsState>,
    bigquery: tokio::sync::Mutex<bigquery::BigQueryState>,
    google: google::GoogleAuth,
    faults: Mutex<Vec<FaultRule>>,
    requests: Mutex<BTreeMap<String, EndpointCount>>,
    /// Every write request to an e-mail platform, in order: method, path and body.
    platform_writes: Mutex<Vec<serde_json::Value>>,
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
            shopify_export: Mutex::new(()),
            slack: Mutex::new(slack::SlackState::default()),
            sheets: Mutex::new(sheets::SheetsState::default()),
            bigquery: tokio::sync::Mutex::new(bigquery::BigQueryState::default()),
            google: google::GoogleAuth::new(options.world.seed),
            faults: Mutex::new(options.faults.clone()),
            requests: Mutex::new(BTreeMap::new()),
            platform_writes: Mutex::new(Vec::new()),
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
        *lock(&self.slack) = slack::SlackState::default();
        *lock(&self.sheets) = sheets::SheetsState::default();
        *self.bigquery.lock().await = bigquery::BigQueryState::default();
        self.google.reset();
        *lock(&self.faults) = self.options.faults.clone();
        lock(&self.requests).clear();
        lock(&self.platform_writes).clear();
    }
}

/// How a service shapes an error body.
type ErrorBody = fn(StatusCode, &str) -> Response<Body>;

/// One simulated service: where it is mounted, its routes and error shape, and how a
/// client addresses it.
pub struct SimulatedService {
    /// The name clients' configs use for the service (`smile`, `sheets`, ...).
    pub key: &'static str,
    /// The service's name for people.
    pub name: &'static str,
    /// Where its routes are mounted on the listener.
    mount: &'static str,
    /// The path after the sandbox's address that a client uses as the API's base URL.
    base_path: &'static str,
    /// How a client authenticates.
    pub credentials: &'static str,
    routes: fn() -> Router<Arc<Shared>>,
    error: ErrorBody,
}

/// Every simulated service.
pub const SERVICES: &[SimulatedService] = &[
    SimulatedService {
        key: "smile",
        name: "Smile.io",
        mount: "/smile/v1",
        base_path: "/smile/v1",
        credentials: "Authorization: Bearer sandbox",
        routes: smile::routes,
        error: smile::error,
    },
    SimulatedService {
        key: "smartrmail",
        name: "SmartrMail",
        mount: "/smartrmail",
        base_path: "/smartrmail/api/v1",
        credentials: "Authorization: token sandbox (or ?token=sandbox)",
        routes: smartrmail::routes,
        error: smartrmail::error,
    },
    SimulatedService {
        key: "shopify",
        name: "Shopify",
        mount: "/shopify",
        base_path: "/shopify/admin/api/2026-10",
        credentials: "X-Shopify-Access-Token: sandbox",
        routes: shopify::routes,
        error: shopify::error,
    },
    SimulatedService {
        key: "iterable",
        name: "Iterable",
        mount: "/iterable",
        base_path: "/iterable",
        credentials: "Api-Key: sandbox",
        routes: iterable::routes,
        error: iterable::error,
    },
    SimulatedService {
        key: "dotdigital",
        name: "Dotdigital",
        mount: "/dotdigital",
        base_path: "/dotdigital",
        credentials: "HTTP Basic sandbox:sandbox",
        routes: dotdigital::routes,
        error: dotdigital::error,
    },
    SimulatedService {
        key: "slack",
        name: "Slack",
        mount: "/slack",
        base_path: "/slack/api",
        credentials: "Authorization: Bearer sandbox",
        routes: slack::routes,
        error: slack::error,
    },
    SimulatedService {
        key: "sheets",
        name: "Google Sheets",
        mount: "/sheets",
        base_path: "/sheets",
        credentials: "Bearer token from /oauth2/token",
        routes: sheets::routes,
        error: google::error,
    },
    SimulatedService {
        key: "bigquery",
        name: "BigQuery",
        mount: "/bigquery",
        base_path: "/bigquery",
        credentials: "Bearer token from /oauth2/token; API at /bigquery/bigquery/v2, uploads at /bigquery/upload/bigquery/v2",
        routes: bigquery::routes,
        error: google::error,
    },
    SimulatedService {
        key: "google_oauth",
        name: "Google OAuth",
        mount: "/oauth2",
        base_path: "/oauth2/token",
        credentials: "JWT-bearer grant signed with the service-account key",
        routes: google::routes,
        error: google::error,
    },
];

/// The error answer for a request to `path`, in the shape of the service it belongs to.
fn error_response_for(path: &str, status: StatusCode, message: &str) -> Response<Body> {
    let service = SERVICES.iter().find(|s| {
        path.strip_prefix(s.mount)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    match service {
        Some(service) => (service.error)(status, message),
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

/// The largest request body the sandbox reads (BigQuery uploads are the large ones).
const MAX_REQUEST_BODY: usize = 1 << 30;

/// Counts every request per endpoint and applies the fault plan.
async fn count_and_inject(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response<Body> {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    // Read the whole body before anything answers. A handler that answers without reading
    // it (an unknown route's 404, a fault, a refused request) would otherwise make the
    // server close the keep-alive connection, and the client's next request on it would
    // fail with a broken pipe — which no real Google or Slack endpoint does.
    let (parts, body) = request.into_parts();
    let request = match axum::body::to_bytes(body, MAX_REQUEST_BODY).await {
        Ok(bytes) => {
            record_platform_write(&shared, &method, &path, &bytes);
            Request::from_parts(parts, Body::from(bytes))
        }
        Err(_) => {
            return error_response_for(
                &path,
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than the sandbox accepts",
            );
        }
    };
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

/// The e-mail platforms, whose writes target people.
const EMAIL_PLATFORMS: [&str; 3] = ["/smartrmail/", "/iterable/", "/dotdigital/"];

/// Logs a write to an e-mail platform (anything but GET), with its body as JSON when it
/// is JSON, so `/_sandbox/state` shows every write per platform and person.
fn record_platform_write(shared: &Shared, method: &str, path: &str, body: &[u8]) {
    if method == "GET" || !EMAIL_PLATFORMS.iter().any(|p| path.starts_with(p)) {
        return;
    }
    let body = serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::from(String::from_utf8_lossy(body).into_owned()));
    lock(&shared.platform_writes)
        .push(serde_json::json!({ "method": method, "path": path, "body": body }));
}

/// The sandbox's router: every service under its mount point, plus inspection.
pub fn router(shared: Arc<Shared>) -> Router {
    let mut router = Router::new();
    for service in SERVICES {
        router = match service.mount {
            // Google's token endpoint keeps its full path in its routes.
            "/oauth2" => router.merge((service.routes)()),
            mount => router.nest(mount, (service.routes)()),
        };
    }
    router
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
    /// The name clients' configs use for the service (`smile`, ...).
    pub key: &'static str,
    /// The service's name for people.
    pub name: &'static str,
    /// Its base URL under the sandbox.
    pub base_url: String,
    /// How to authenticate.
    pub credentials: &'static str,
}

/// Each simulated service under a sandbox at `base`, then the inspection endpoints.
pub fn services(base: &str) -> Vec<ServiceEndpoint> {
    let base = base.trim_end_matches('/');
    let mut endpoints: Vec<ServiceEndpoint> = SERVICES
        .iter()
        .map(|service| ServiceEndpoint {
            key: service.key,
            name: service.name,
            base_url: format!("{base}{}", service.base_path),
            credentials: service.credentials,
        })
        .collect();
    endpoints.push(ServiceEndpoint {
        key: "slack_webhook",
        name: "Slack webhook",
        base_url: format!("{base}/slack/hooks{}", slack::WEBHOOK_PATH),
        credentials: "the URL is the secret",
    });
    endpoints.push(ServiceEndpoint {
        key: "inspection",
        name: "inspection",
        base_url: format!("{base}/_sandbox/state"),
        credentials: "none; POST /_sandbox/reset restores the world; GET /_sandbox/service-account.json gives the Google key",
    });
    endpoints
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

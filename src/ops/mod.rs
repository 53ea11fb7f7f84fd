//! The operations surface `mailroom run` serves on `[server] listen` (loopback by default;
//! elsewhere every request but the health checks needs `Authorization: Bearer <token>`):
//! `/healthz` (200 while the scheduler loop runs, 503 with the reason after), `/readyz`
//! (200 once the state database answers), `/metrics` ([`metrics`]) and the status page at
//! `/` ([`page`]). Everything is read from the ledgers on each request.

pub mod metrics;
pub mod page;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Response, StatusCode, header};
use axum::middleware::{self, Next};
use axum::routing::get;
use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, SourceKind, Step};
use crate::secret::Secret;
use crate::services::Services;
use crate::state::StateStore;

/// Whether the scheduler loop is alive, and why not when it is not.
#[derive(Debug, Default)]
pub struct Health {
    alive: AtomicBool,
    reason: Mutex<String>,
}

impl Health {
    /// The loop is running.
    pub fn up(&self) {
        self.alive.store(true, Ordering::SeqCst);
    }

    /// The loop stopped, for `reason`.
    pub fn down(&self, reason: &str) {
        self.alive.store(false, Ordering::SeqCst);
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason.to_string();
    }

    fn state(&self) -> Result<(), String> {
        if self.alive.load(Ordering::SeqCst) {
            return Ok(());
        }
        let reason = self
            .reason
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Err(match reason.is_empty() {
            true => "it has not started yet".into(),
            false => reason,
        })
    }
}

/// What the server reads.
pub struct Ops {
    /// The running configuration.
    pub config: Arc<Config>,
    /// The ledgers.
    pub state: Arc<StateStore>,
    /// The scheduler loop's health.
    pub health: Arc<Health>,
    /// The bearer token requests must carry, if any.
    pub token: Option<Secret>,
    /// The services, to name each stream's table (for cursor lag).
    pub services: Arc<Services>,
}

impl Ops {
    /// Each extracted stream's cursor, where it has one: in the local warehouse's tables,
    /// or in the state database for BigQuery.
    async fn cursors(&self) -> Vec<(String, String, DateTime<Utc>)> {
        use crate::sources::Source;
        use crate::warehouse::Warehouse;
        let mut wanted: BTreeSet<(SourceKind, String)> = BTreeSet::new();
        for step in self.config.jobs.iter().flat_map(|j| &j.steps) {
            if let Step::Extract { source, streams } = step {
                let names: Vec<String> = match streams.is_empty() {
                    true => source.streams().iter().map(|s| (*s).to_string()).collect(),
                    false => streams.clone(),
                };
                wanted.extend(names.into_iter().map(|n| (*source, n)));
            }
        }
        let local = self
            .config
            .local_warehouse_dir()
            .map(|dir| crate::warehouse::local::LocalWarehouse::reader(&dir));
        let mut found = Vec::new();
        for (kind, stream) in wanted {
            let Ok(source) = crate::sources::build(kind, &self.services) else {
                continue;
            };
            let Some(table) = source
                .streams()
                .into_iter()
                .find(|s| s.name == stream)
                .map(|s| s.table.name)
            else {
                continue;
            };
            let cursor = match &local {
                Some(warehouse) => warehouse
                    .cursor(table, kind.name(), &stream)
                    .await
                    .ok()
                    .flatten(),
                None => self.state.cursor(kind.name(), &stream).ok().flatten(),
            };
            if let Some(at) = cursor {
                found.push((kind.name().to_string(), stream, at));
            }
        }
        found
    }
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

async fn healthz(State(ops): State<Arc<Ops>>) -> Response<Body> {
    match ops.health.state() {
        Ok(()) => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("the scheduler loop is not running: {why}\n"),
        ),
    }
}

async fn readyz(State(ops): State<Arc<Ops>>) -> Response<Body> {
    match ops.state.recent_runs(None, 1) {
        Ok(_) => text(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            "ready\n".into(),
        ),
        Err(err) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain; charset=utf-8",
            format!("the state database does not answer: {err}\n"),
        ),
    }
}

async fn metrics_text(State(ops): State<Arc<Ops>>) -> Response<Body> {
    let now = Utc::now();
    let cursors = ops.cursors().await;
    let rendered = ops
        .state
        .ledger_totals(now)
        .map_err(|e| e.to_string())
        .and_then(|totals| {
            metrics::render(&totals, &cursors, ops.health.state().is_ok(), now)
                .map_err(|e| e.to_string())
        });
    match rendered {
        Ok(body) => text(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        ),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("metrics could not be read: {err}\n"),
        ),
    }
}

async fn status_page(State(ops): State<Arc<Ops>>) -> Response<Body> {
    match page::render(&ops.config, &ops.state, Utc::now()) {
        Ok(html) => text(StatusCode::OK, "text/html; charset=utf-8", html),
        Err(err) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("the status could not be read: {err}\n"),
        ),
    }
}

/// Refuses requests without the configured bearer token (health checks excepted).
async fn authorize(State(ops): State<Arc<Ops>>, request: Request, next: Next) -> Response<Body> {
    let open = matches!(request.uri().path(), "/healthz" | "/readyz");
    if let Some(token) = &ops.token
        && !open
    {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.expose()) {
            let mut response = text(
                StatusCode::UNAUTHORIZED,
                "text/plain; charset=utf-8",
                "a bearer token is required ([server] token)\n".into(),
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
    }
    next.run(request).await
}

/// The server's routes.
pub fn router(ops: Arc<Ops>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/", get(status_page))
        .layer(middleware::from_fn_with_state(ops.clone(), authorize))
        .with_state(ops)
}

/// Serves on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ops: Arc<Ops>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(ops))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

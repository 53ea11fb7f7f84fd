//! Inspection of a running sandbox: `GET /_sandbox/state` shows what the services received
//! and how often each endpoint was called (and answered 429); `POST /_sandbox/reset`
//! restores the seeded world; `GET`/`POST /_sandbox/faults` read and replace the fault plan.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use axum::routing::{get, post};
use serde_json::json;

use super::faults::FaultRule;
use super::{Shared, dotdigital, iterable, json_response, lock, smartrmail, smile};

/// Routes under `/_sandbox`.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sandbox/state", get(state))
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/faults", get(faults).post(set_faults))
        .route("/_sandbox/service-account.json", get(service_account))
}

async fn state(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> Response<Body> {
    let base = super::public_base(&headers);
    let world = shared.options.world;
    let requests = lock(&shared.requests).clone();
    let body = json!({
        "world": {
            "seed": world.seed,
            "customers": world.customers,
            "anchor": world.anchor.to_rfc3339(),
        },
        "smile": smile::summary(&shared),
        "smartrmail": smartrmail::summary(&shared),
        "iterable": iterable::summary(&shared),
        "dotdigital": dotdigital::summary_state(&shared),
        "shopify": { "bulk_operations": lock(&shared.shopify).summary(&base) },
        "slack": lock(&shared.slack).summary(),
        "sheets": lock(&shared.sheets).summary(),
        "bigquery": shared.bigquery.lock().await.summary(),
        "faults": *lock(&shared.faults),
        "requests": requests,
        "platform_writes": *lock(&shared.platform_writes),
    });
    json_response(StatusCode::OK, &body)
}

/// The service-account key file for the Google APIs, `token_uri` pointing here.
async fn service_account(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> Response<Body> {
    let base = super::public_base(&headers);
    json_response(StatusCode::OK, &shared.google.key_file(&base))
}

async fn reset(State(shared): State<Arc<Shared>>) -> Response<Body> {
    shared.reset().await;
    json_response(StatusCode::OK, &json!({ "reset": true }))
}

async fn faults(State(shared): State<Arc<Shared>>) -> Response<Body> {
    json_response(StatusCode::OK, &*lock(&shared.faults))
}

async fn set_faults(State(shared): State<Arc<Shared>>, body: String) -> Response<Body> {
    match serde_json::from_str::<Vec<FaultRule>>(&body) {
        Ok(rules) => {
            *lock(&shared.faults) = rules.clone();
            json_response(StatusCode::OK, &rules)
        }
        Err(err) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "error": format!("the fault plan must be a JSON array of rules: {err}") }),
        ),
    }
}

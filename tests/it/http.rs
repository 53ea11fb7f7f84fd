//! The shared HTTP client against the sandbox: retries and their limits, `Retry-After`
//! floors, errors that name what failed, redaction, and rate budgets.

use std::time::{Duration, Instant};

use mailroom::config::Secret;
use mailroom::error::{Classify, ErrorKind};
use mailroom::http::retry::RetryPolicy;
use mailroom::http::{Auth, Body, Call, HttpClient, RateBudget, Service, Timeouts};
use mailroom_sandbox::SandboxOptions;
use mailroom_sandbox::faults::{Fault, FaultRule};
use serde_json::{Value, json};

use crate::support::{get_json, sandbox};

fn smile(base: &str, budget: Option<std::sync::Arc<RateBudget>>) -> Service {
    Service {
        name: "Smile.io",
        base_url: format!("{base}/smile/v1").parse().expect("url"),
        auth: Auth::Bearer(Secret::new("sandbox")),
        retry: RetryPolicy {
            max_retries: 3,
            base: Duration::from_millis(10),
            cap: Duration::from_secs(2),
            retry_after_floor: Duration::from_millis(150),
        },
        budget,
    }
}

fn client() -> HttpClient {
    HttpClient::new(Timeouts::default()).expect("client")
}

async fn with_faults(rules: Vec<FaultRule>) -> mailroom_sandbox::RunningSandbox {
    let mut options = SandboxOptions::new(42, 200);
    options.faults = rules;
    sandbox(options).await
}

fn rule(path: &str, times: u32, fault: Fault) -> FaultRule {
    FaultRule {
        method: None,
        path: path.into(),
        after: 0,
        times,
        fault,
        seen: 0,
    }
}

async fn counts(base: &str, endpoint: &str) -> Value {
    get_json(&format!("{base}/_sandbox/state"), &[]).await.2["requests"][endpoint].clone()
}

#[tokio::test]
async fn retry_after_zero_is_floored_and_the_call_retried() {
    let sandbox = with_faults(vec![rule(
        "/smile/v1/vip_tiers",
        1,
        Fault::RateLimit {
            retry_after_secs: Some(0),
        },
    )])
    .await;
    let started = Instant::now();
    let response = client()
        .send(&smile(&sandbox.base_url, None), &Call::get("/vip_tiers"))
        .await
        .expect("retried to success");
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "Retry-After: 0 waited the floor"
    );
    assert_eq!(
        counts(&sandbox.base_url, "GET /smile/v1/vip_tiers").await,
        json!({ "requests": 2, "rate_limited": 1 })
    );
}

#[tokio::test]
async fn server_error_bursts_and_dropped_connections_are_retried_for_reads() {
    let sandbox = with_faults(vec![
        rule("/smile/v1/vip_tiers", 2, Fault::ServerError { status: 503 }),
        FaultRule {
            after: 2,
            ..rule("/smile/v1/vip_tiers", 1, Fault::ConnectionReset)
        },
    ])
    .await;
    let response = client()
        .send(&smile(&sandbox.base_url, None), &Call::get("/vip_tiers"))
        .await
        .expect("fourth attempt succeeds");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["vip_tiers"].as_array().map(Vec::len), Some(3));
    assert_eq!(
        counts(&sandbox.base_url, "GET /smile/v1/vip_tiers").await["requests"],
        4
    );
}

#[tokio::test]
async fn a_write_that_may_have_been_applied_is_not_retried() {
    let sandbox = with_faults(vec![rule(
        "/smile/v1/points_transactions",
        1,
        Fault::ServerError { status: 503 },
    )])
    .await;
    let call = Call::post(
        "/points_transactions",
        Body::Json(json!({ "points_transaction": { "customer_id": 100001, "points_change": 10 } })),
    );
    let err = client()
        .send(&smile(&sandbox.base_url, None), &call)
        .await
        .expect_err("not retried");
    assert_eq!(
        (err.status, err.attempts, err.kind()),
        (Some(503), 1, ErrorKind::Transient)
    );
    assert_eq!(
        counts(&sandbox.base_url, "POST /smile/v1/points_transactions").await["requests"],
        1
    );
}

#[tokio::test]
async fn errors_name_service_endpoint_status_and_request_id() {
    let sandbox = with_faults(vec![]).await;
    let err = client()
        .send(&smile(&sandbox.base_url, None), &Call::get("/customers/99"))
        .await
        .expect_err("404");
    assert_eq!(err.kind(), ErrorKind::Terminal);
    assert_eq!(err.attempts, 1, "a 404 is not retried");
    let text = err.to_string();
    assert!(
        text.starts_with("Smile.io GET /smile/v1/customers/99 answered HTTP 404 (request id "),
        "{text}"
    );
    assert!(text.ends_with("): Customer not found."), "{text}");

    let mut wrong = smile(&sandbox.base_url, None);
    wrong.auth = Auth::Bearer(Secret::new("expired-token-123"));
    let err = client()
        .send(
            &wrong,
            &Call::get("/customers").query("token", "leaky-secret-456"),
        )
        .await
        .expect_err("401");
    assert_eq!(
        err.kind(),
        ErrorKind::Config,
        "rejected credentials are fixed in the config"
    );
    let text = err.to_string();
    assert!(text.contains("/smile/v1/customers?token=***"), "{text}");
    assert!(
        !text.contains("leaky-secret-456") && !text.contains("expired-token-123"),
        "a secret leaked: {text}"
    );
}

#[tokio::test]
async fn unreachable_services_are_transient_after_the_retries() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    let err = client()
        .send(
            &smile(&format!("http://{closed}"), None),
            &Call::get("/customers"),
        )
        .await
        .expect_err("nothing listens");
    assert_eq!(
        (err.status, err.attempts, err.kind()),
        (None, 4, ErrorKind::Transient)
    );
    assert_eq!(err.message, "could not connect");
}

#[tokio::test]
async fn a_rate_budget_keeps_calls_inside_smiles_limit() {
    let sandbox = with_faults(vec![]).await;
    let service = smile(&sandbox.base_url, Some(RateBudget::per_second(10)));
    let http = client();
    let started = Instant::now();
    for _ in 0..25 {
        http.send(&service, &Call::get("/vip_tiers"))
            .await
            .expect("within budget");
    }
    let elapsed = started.elapsed();
    assert_eq!(
        counts(&sandbox.base_url, "GET /smile/v1/vip_tiers").await,
        json!({ "requests": 25, "rate_limited": 0 })
    );
    assert!(
        elapsed >= Duration::from_millis(2300),
        "25 calls at 10/s take at least 2.4 s, took {elapsed:?}"
    );
}

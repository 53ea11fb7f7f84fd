//! The sandbox around the services: the fault plan, inspection, reset and determinism.

use mailroom_sandbox::SandboxOptions;
use mailroom_sandbox::faults::{Fault, FaultRule};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{get_json, sandbox, small_sandbox};

const SMILE: (&str, &str) = ("Authorization", "Bearer sandbox");

fn rule(path: &str, after: u32, times: u32, fault: Fault) -> FaultRule {
    FaultRule {
        method: Some("GET".into()),
        path: path.into(),
        after,
        times,
        fault,
        seen: 0,
    }
}

async fn with_faults(rules: Vec<FaultRule>) -> mailroom_sandbox::RunningSandbox {
    let mut options = SandboxOptions::new(42, 300);
    options.faults = rules;
    sandbox(options).await
}

#[tokio::test]
async fn rate_limit_faults_send_retry_after_including_zero() {
    let sandbox = with_faults(vec![
        rule(
            "/smile/v1/customers",
            0,
            1,
            Fault::RateLimit {
                retry_after_secs: Some(0),
            },
        ),
        rule(
            "/smile/v1/customers",
            1,
            1,
            Fault::RateLimit {
                retry_after_secs: Some(1),
            },
        ),
    ])
    .await;
    let url = format!("{}/smile/v1/customers?limit=1", sandbox.base_url);
    let (status, headers, body) = get_json(&url, &[SMILE]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "0");
    assert!(
        body["error"]["message"].is_string(),
        "the service's own error shape: {body}"
    );
    let (status, headers, _) = get_json(&url, &[SMILE]).await;
    assert_eq!(
        (status, headers["retry-after"].to_str().ok()),
        (StatusCode::TOO_MANY_REQUESTS, Some("1"))
    );
    assert_eq!(get_json(&url, &[SMILE]).await.0, StatusCode::OK);
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["requests"]["GET /smile/v1/customers"],
        json!({ "requests": 3, "rate_limited": 2 })
    );
}

#[tokio::test]
async fn server_error_bursts_end_after_their_count() {
    let sandbox = with_faults(vec![rule(
        "/smartrmail/api/v1/lists",
        1,
        2,
        Fault::ServerError { status: 503 },
    )])
    .await;
    let url = format!("{}/smartrmail/api/v1/lists?token=sandbox", sandbox.base_url);
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get_json(&url, &[]).await.0.as_u16());
    }
    assert_eq!(statuses, [200, 503, 503, 200]);
}

#[tokio::test]
async fn body_faults_spoil_one_page_in_the_ways_clients_must_survive() {
    let sandbox = with_faults(vec![
        rule("/smile/v1/customers", 0, 1, Fault::MalformedBody),
        rule(
            "/smile/v1/customers",
            1,
            1,
            Fault::WrongType {
                field: "points_balance".into(),
            },
        ),
        rule(
            "/smile/v1/customers",
            2,
            1,
            Fault::UnknownField {
                field: "loyalty_score".into(),
            },
        ),
        rule("/smile/v1/customers", 3, 1, Fault::ConnectionReset),
    ])
    .await;
    let url = format!("{}/smile/v1/customers?limit=3", sandbox.base_url);
    let (status, _, malformed) = get_json(&url, &[SMILE]).await;
    assert_eq!(
        (status, malformed),
        (StatusCode::OK, Value::Null),
        "not JSON"
    );
    let (_, _, wrong) = get_json(&url, &[SMILE]).await;
    assert_eq!(wrong["customers"][0]["points_balance"], "not-a-number");
    assert!(
        wrong["customers"][1]["points_balance"].is_i64(),
        "only the first record is spoiled"
    );
    let (_, _, extra) = get_json(&url, &[SMILE]).await;
    assert!(extra["customers"][0]["loyalty_score"].is_string());
    // A dropped connection shows up while sending or while reading the body.
    let reset = match reqwest::Client::new()
        .get(&url)
        .header(SMILE.0, SMILE.1)
        .send()
        .await
    {
        Ok(response) => response.bytes().await.map(|_| ()),
        Err(err) => Err(err),
    };
    assert!(
        reset.is_err(),
        "the connection drops before a whole answer arrives"
    );
    assert_eq!(get_json(&url, &[SMILE]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn slow_faults_delay_the_answer() {
    let sandbox = with_faults(vec![rule(
        "/smile/v1/vip_tiers",
        0,
        1,
        Fault::Slow { millis: 300 },
    )])
    .await;
    let started = std::time::Instant::now();
    let (status, _, _) = get_json(
        &format!("{}/smile/v1/vip_tiers", sandbox.base_url),
        &[SMILE],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[tokio::test]
async fn the_fault_plan_can_be_replaced_at_run_time_and_reset_restores_the_world() {
    let sandbox = small_sandbox().await;
    let client = reqwest::Client::new();
    let plan = json!([{ "path": "/smartrmail/api/v1/lists", "fault": { "kind": "server_error", "status": 500 } }]);
    let set = client
        .post(format!("{}/_sandbox/faults", sandbox.base_url))
        .json(&plan)
        .send()
        .await
        .expect("sent");
    assert_eq!(set.status(), StatusCode::OK);
    let bad = client
        .post(format!("{}/_sandbox/faults", sandbox.base_url))
        .body("{")
        .send()
        .await
        .expect("sent");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let lists = format!("{}/smartrmail/api/v1/lists?token=sandbox", sandbox.base_url);
    assert_eq!(
        get_json(&lists, &[]).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );

    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(state["faults"][0]["fault"]["kind"], "server_error");
    assert_eq!(state["faults"][0]["seen"], 1);

    let w = crate::support::small_world();
    let email = w
        .people()
        .filter_map(|p| w.subscriber_of(&p))
        .find(|s| s.subscribed)
        .expect("subscriber")
        .email;
    let url = format!(
        "{}/smartrmail/api/v1/subscribers/{}/unsubscribe?token=sandbox",
        sandbox.base_url,
        email.replace('@', "%40")
    );
    client.post(&url).send().await.expect("unsubscribed");
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["smartrmail"]["changed_subscribers"][0]["email"],
        email.as_str()
    );

    let reset = client
        .post(format!("{}/_sandbox/reset", sandbox.base_url))
        .send()
        .await
        .expect("sent");
    assert_eq!(reset.status(), StatusCode::OK);
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(state["faults"], json!([]));
    assert_eq!(state["smartrmail"]["changed_subscribers"], json!([]));
    assert_eq!(state["requests"], json!({}));
    assert_eq!(get_json(&lists, &[]).await.0, StatusCode::OK);
}

#[tokio::test]
async fn two_sandboxes_with_the_same_seed_answer_with_identical_bytes() {
    let (a, b) = (small_sandbox().await, small_sandbox().await);
    let client = reqwest::Client::new();
    let paths = [
        (
            "/smile/v1/customers?limit=100&include=vip_status,vip_status.vip_tier",
            Some(SMILE),
        ),
        ("/smile/v1/customers", None),
        ("/smile/v1/points_transactions?limit=100", Some(SMILE)),
        (
            "/smartrmail/api/v1/lists/l_newsletter/list_subscribers?token=sandbox",
            None,
        ),
        ("/smartrmail/api/v1/campaigns?token=sandbox", None),
    ];
    for (path, auth) in paths {
        let mut bodies = Vec::new();
        for base in [&a.base_url, &b.base_url] {
            let mut request = client.get(format!("{base}{path}"));
            if let Some((name, value)) = auth {
                request = request.header(name, value);
            }
            bodies.push(
                request
                    .send()
                    .await
                    .expect("sent")
                    .bytes()
                    .await
                    .expect("body"),
            );
        }
        assert!(bodies[0].len() > 20, "{path}");
        assert_eq!(bodies[0], bodies[1], "{path}");
    }
}

/// Sends one HTTP/1.1 request on `stream` and reads its whole answer: status code and
/// headers (lowercased names).
async fn round_trip(
    stream: &mut tokio::net::TcpStream,
    request: &str,
) -> Option<(u16, Vec<(String, String)>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let read = stream.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        received.extend_from_slice(&buffer[..read]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).to_string();
    let mut lines = head.lines();
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while received.len() < head_end + length {
        let read = stream.read(&mut buffer).await.ok()?;
        if read == 0 {
            return None;
        }
        received.extend_from_slice(&buffer[..read]);
    }
    Some((status, headers))
}

#[tokio::test]
async fn error_answers_keep_the_connection_open_for_the_next_request() {
    let sandbox = sandbox(SandboxOptions {
        faults: vec![FaultRule {
            method: Some("POST".into()),
            path: "/iterable/api/users/update".into(),
            after: 0,
            times: 1,
            fault: Fault::ServerError { status: 503 },
            seen: 0,
        }],
        ..SandboxOptions::new(42, 300)
    })
    .await;
    let addr = sandbox.base_url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    // About 1 MB: more than the server buffers, so a body left unread would have to be
    // drained or the connection closed.
    let body = "{\"properties\":{\"title\":\"x\"}}".repeat(40_000);
    let post = |path: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let get = format!("GET /_sandbox/state HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    // An unknown route, a request refused before its body is looked at, and a fault.
    for (path, expected) in [
        ("/sheets/v4/nothing/here", 404),
        ("/sheets/v4/spreadsheets", 401),
        ("/iterable/api/users/update", 503),
    ] {
        let (status, headers) = round_trip(&mut stream, &post(path))
            .await
            .unwrap_or_else(|| panic!("{path}: no answer"));
        assert_eq!(status, expected, "{path}");
        assert!(
            !headers
                .iter()
                .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close")),
            "{path}: {headers:?}"
        );
        let next = round_trip(&mut stream, &get).await;
        assert_eq!(
            next.map(|(status, _)| status),
            Some(200),
            "the connection was dropped after {path}"
        );
    }
}

//! Contract tests for the Smile.io simulator against `api-reference/smile.md`.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{get_json, small_sandbox, small_world};

const AUTH: (&str, &str) = ("Authorization", "Bearer sandbox");

fn assert_error_envelope(body: &Value) {
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(
        body["error"]["request_id"]
            .as_str()
            .is_some_and(|id| id.len() == 36),
        "{body}"
    );
}

#[tokio::test]
async fn requests_without_a_valid_bearer_token_get_401_with_the_error_envelope() {
    let sandbox = small_sandbox().await;
    let url = format!("{}/smile/v1/customers?limit=2", sandbox.base_url);
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong")],
        vec![("Authorization", "token sandbox")],
    ] {
        let (status, _, body) = get_json(&url, &headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_error_envelope(&body);
    }
    let (status, _, body) = get_json(&url, &[AUTH]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["customers"].as_array().map(Vec::len), Some(2));
    assert!(body["metadata"]["next_cursor"].is_string());
    assert!(body["metadata"]["previous_cursor"].is_null());
}

#[tokio::test]
async fn cursor_pagination_walks_every_customer_newest_first_to_a_null_next_cursor() {
    let sandbox = small_sandbox().await;
    let w = small_world();
    let expected: BTreeSet<u64> = w
        .people()
        .flat_map(|p| w.smile_customers_of(&p))
        .map(|c| c.id)
        .collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let mut url = format!("{}/smile/v1/customers?limit=40", sandbox.base_url);
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let (status, _, body) = get_json(&url, &[AUTH]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let ids: Vec<u64> = body["customers"]
            .as_array()
            .expect("array")
            .iter()
            .map(|c| c["id"].as_u64().expect("id"))
            .collect();
        assert!(ids.len() <= 40);
        seen.extend(&ids);
        pages.push(body.clone());
        match body["metadata"]["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert!(pages.len() > 2);
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest (highest id) first"
    );
    assert_eq!(
        seen.iter().copied().collect::<BTreeSet<_>>(),
        expected,
        "every record once"
    );
    assert!(
        pages.last().expect("a page")["customers"]
            .as_array()
            .expect("array")
            .len()
            <= 40
    );

    // previous_cursor on page 2 leads back to exactly page 1.
    let previous = pages[1]["metadata"]["previous_cursor"]
        .as_str()
        .expect("previous cursor");
    let url = format!(
        "{}/smile/v1/customers?limit=40&cursor={previous}",
        sandbox.base_url
    );
    let (_, _, back) = get_json(&url, &[AUTH]).await;
    assert_eq!(back["customers"], pages[0]["customers"]);
}

#[tokio::test]
async fn limit_defaults_to_50_and_must_be_between_1_and_250() {
    let sandbox = small_sandbox().await;
    let base = format!("{}/smile/v1/customers", sandbox.base_url);
    let (_, _, body) = get_json(&base, &[AUTH]).await;
    assert_eq!(body["customers"].as_array().map(Vec::len), Some(50));
    for bad in ["0", "251", "ten"] {
        let (status, _, body) = get_json(&format!("{base}?limit={bad}"), &[AUTH]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "limit={bad}");
        assert_error_envelope(&body);
    }
    let big = crate::support::sandbox(mailroom_sandbox::SandboxOptions::new(42, 1000)).await;
    let (status, _, body) = get_json(
        &format!("{}/smile/v1/customers?limit=250", big.base_url),
        &[AUTH],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["customers"].as_array().map(Vec::len), Some(250));
    assert!(body["metadata"]["next_cursor"].is_string());
}

#[tokio::test]
async fn email_filter_may_match_several_records_or_none() {
    let sandbox = small_sandbox().await;
    let w = small_world();
    let shared = w
        .people()
        .find(|p| w.smile_customers_of(p).len() == 2)
        .expect("a shared e-mail");
    let url = format!(
        "{}/smile/v1/customers?email={}",
        sandbox.base_url,
        shared.email.to_uppercase().replace('@', "%40")
    );
    let (_, _, body) = get_json(&url, &[AUTH]).await;
    let emails: Vec<&str> = body["customers"]
        .as_array()
        .expect("array")
        .iter()
        .map(|c| c["email"].as_str().expect("email"))
        .collect();
    assert_eq!(emails, [shared.email.as_str(), shared.email.as_str()]);

    let url = format!(
        "{}/smile/v1/customers?email=nobody%40example.com",
        sandbox.base_url
    );
    let (status, _, body) = get_json(&url, &[AUTH]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "customers": [], "metadata": { "next_cursor": null, "previous_cursor": null } })
    );
}

#[tokio::test]
async fn include_embeds_vip_status_and_its_tier_and_fields_follow_the_reference() {
    let sandbox = small_sandbox().await;
    let w = small_world();
    let gold = w
        .people()
        .flat_map(|p| w.smile_customers_of(&p))
        .find(|c| c.vip_tier.is_some_and(|t| t.name == "Silver"))
        .expect("a silver member");
    let url = format!(
        "{}/smile/v1/customers/{}?include=vip_status,vip_status.vip_tier",
        sandbox.base_url, gold.id
    );
    let (status, _, body) = get_json(&url, &[AUTH]).await;
    assert_eq!(status, StatusCode::OK);
    let c = &body["customer"];
    assert_eq!(c["id"], gold.id);
    assert_eq!(c["points_balance"], gold.points_balance);
    assert_eq!(c["vip_tier_id"], 7002);
    assert_eq!(c["vip_status"]["vip_tier"]["name"], "Silver");
    assert_eq!(c["vip_status"]["next_vip_tier_id"], 7003);
    assert_eq!(
        c["vip_status"]["delta_to_next_vip_tier"],
        (3000 - gold.points_balance) as f64
    );
    let updated = c["updated_at"].as_str().expect("timestamp");
    assert!(
        updated.ends_with('Z') && updated.len() == 24,
        "ISO 8601 with milliseconds: {updated}"
    );

    let url = format!("{}/smile/v1/customers/{}", sandbox.base_url, gold.id);
    let (_, _, plain) = get_json(&url, &[AUTH]).await;
    assert!(
        plain["customer"].get("vip_status").is_none(),
        "vip_status only when included"
    );

    let url = format!("{}/smile/v1/customers/99", sandbox.base_url);
    let (status, _, body) = get_json(&url, &[AUTH]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_error_envelope(&body);
}

#[tokio::test]
async fn updated_at_min_returns_only_records_changed_since() {
    let sandbox = small_sandbox().await;
    let url = format!(
        "{}/smile/v1/customers?limit=250&updated_at_min=2026-09-01T00:00:00Z",
        sandbox.base_url
    );
    let (_, _, body) = get_json(&url, &[AUTH]).await;
    let customers = body["customers"].as_array().expect("array");
    assert!(!customers.is_empty());
    assert!(
        customers
            .iter()
            .all(|c| c["updated_at"].as_str().expect("ts") >= "2026-09-01T00:00:00.000Z")
    );
    let w = small_world();
    let expected = w
        .people()
        .flat_map(|p| w.smile_customers_of(&p))
        .filter(|c| c.updated_at.to_rfc3339().as_str() >= "2026-09-01")
        .count();
    assert_eq!(customers.len(), expected);
}

#[tokio::test]
async fn vip_tiers_come_by_milestone_without_pagination() {
    let sandbox = small_sandbox().await;
    let (_, _, body) = get_json(
        &format!("{}/smile/v1/vip_tiers?limit=1", sandbox.base_url),
        &[AUTH],
    )
    .await;
    let milestones: Vec<i64> = body["vip_tiers"]
        .as_array()
        .expect("array")
        .iter()
        .map(|t| t["milestone"].as_i64().expect("n"))
        .collect();
    assert_eq!(milestones, [0, 1000, 3000]);
    assert!(body.get("metadata").is_none());
}

#[tokio::test]
async fn points_transactions_move_the_balance_and_never_below_zero() {
    let sandbox = small_sandbox().await;
    let w = small_world();
    let member = w
        .people()
        .flat_map(|p| w.smile_customers_of(&p))
        .find(|c| c.state == "member" && c.points_balance > 100)
        .expect("member");
    let client = reqwest::Client::new();
    let url = format!("{}/smile/v1/points_transactions", sandbox.base_url);
    let post = |body: Value| client.post(&url).header(AUTH.0, AUTH.1).json(&body).send();

    let created = post(json!({ "points_transaction": { "customer_id": member.id, "points_change": -100, "description": "Win-back gift", "internal_note": "mailroom" } }))
        .await
        .expect("sent");
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.expect("json");
    assert_eq!(created["points_transaction"]["points_change"], -100);
    assert_eq!(created["points_transaction"]["internal_note"], "mailroom");

    let (_, _, customer) = get_json(
        &format!("{}/smile/v1/customers/{}", sandbox.base_url, member.id),
        &[AUTH],
    )
    .await;
    assert_eq!(
        customer["customer"]["points_balance"],
        member.points_balance - 100
    );

    let (_, _, list) = get_json(&format!("{url}?customer_id={}", member.id), &[AUTH]).await;
    let first = &list["points_transactions"][0];
    assert_eq!(
        first["id"], created["points_transaction"]["id"],
        "newest first"
    );
    assert_eq!(first["description"], "Win-back gift");

    let overdraw = post(
        json!({ "points_transaction": { "customer_id": member.id, "points_change": -1_000_000 } }),
    )
    .await
    .expect("sent");
    assert_eq!(overdraw.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let missing = post(json!({ "points_transaction": { "points_change": 5 } }))
        .await
        .expect("sent");
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    let no_content_type = client
        .post(&url)
        .header(AUTH.0, AUTH.1)
        .body("{}")
        .send()
        .await
        .expect("sent");
    assert_eq!(
        no_content_type.status(),
        StatusCode::BAD_REQUEST,
        "a missing Content-Type is a 400"
    );
}

#[tokio::test]
async fn more_than_ten_requests_a_second_per_token_are_answered_429() {
    let sandbox = small_sandbox().await;
    let url = format!("{}/smile/v1/vip_tiers", sandbox.base_url);
    let started = std::time::Instant::now();
    let responses = futures_join_all((0..14).map(|_| {
        let url = url.clone();
        async move { get_json(&url, &[AUTH]).await }
    }))
    .await;
    let elapsed = started.elapsed();
    let limited: Vec<&Value> = responses
        .iter()
        .filter(|(s, _, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .map(|(_, _, b)| b)
        .collect();
    for body in &limited {
        assert_error_envelope(body);
    }
    if elapsed < std::time::Duration::from_millis(900) {
        assert_eq!(limited.len(), 4, "10 of 14 requests within one second pass");
    }
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(state["requests"]["GET /smile/v1/vip_tiers"]["requests"], 14);
    assert_eq!(
        state["requests"]["GET /smile/v1/vip_tiers"]["rate_limited"],
        limited.len()
    );
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut outputs = Vec::new();
    for handle in handles {
        outputs.push(handle.await.expect("task"));
    }
    outputs
}

//! Contract tests for the SmartrMail simulator against `api-reference/smartrmail.md`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{get_json, small_sandbox, small_world};

const AUTH: (&str, &str) = ("Authorization", "token sandbox");

fn encode(ident: &str) -> String {
    ident.replace('@', "%40").replace('+', "%2B")
}

async fn send(method: reqwest::Method, url: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .request(method, url)
        .header(AUTH.0, AUTH.1)
        .header("Accept", "application/json")
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_token_is_accepted_in_the_header_or_the_query_only() {
    let sandbox = small_sandbox().await;
    let base = format!("{}/smartrmail/api/v1/lists", sandbox.base_url);
    assert_eq!(get_json(&base, &[]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_json(&base, &[("Authorization", "token nope")]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(get_json(&base, &[AUTH]).await.0, StatusCode::OK);
    assert_eq!(
        get_json(&format!("{base}?token=sandbox"), &[]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn lists_and_their_subscribers_are_bare_arrays_with_everything_in_one_response() {
    let sandbox = small_sandbox().await;
    let base = format!("{}/smartrmail/api/v1", sandbox.base_url);
    let (_, _, lists) = get_json(&format!("{base}/lists"), &[AUTH]).await;
    let lists = lists.as_array().expect("a bare array").clone();
    let newsletter = lists
        .iter()
        .find(|l| l["name"] == "Newsletter")
        .expect("newsletter");
    let w = small_world();
    let seeded = w.people().filter(|p| w.subscriber_of(p).is_some()).count();
    assert_eq!(newsletter["subscribers_count"], seeded);

    let (_, _, members) = get_json(
        &format!(
            "{base}/lists/{}/list_subscribers",
            newsletter["id"].as_str().expect("id")
        ),
        &[AUTH],
    )
    .await;
    let members = members.as_array().expect("a bare array");
    assert_eq!(members.len(), seeded);
    assert!(
        members.iter().any(|m| m["subscribed"] == false),
        "unsubscribed people stay listed"
    );
    assert!(members.iter().any(|m| m["complained"] == true));
    let joined = members[0]["joined_at"].as_str().expect("joined_at");
    assert!(
        joined.ends_with(" UTC") && joined.len() == 23 && joined.as_bytes()[10] == b' ',
        "{joined}"
    );
    assert!(members[0]["id"].is_string(), "ids are opaque strings");
}

#[tokio::test]
async fn subscribers_are_found_by_encoded_email_any_case_phone_or_uid() {
    let sandbox = small_sandbox().await;
    let w = small_world();
    let subscriber = w
        .people()
        .filter_map(|p| w.subscriber_of(&p))
        .find(|s| s.phone.is_some())
        .expect("a subscriber with a phone");
    let base = format!("{}/smartrmail/api/v1/subscribers", sandbox.base_url);
    for ident in [
        subscriber.email.to_uppercase(),
        subscriber.phone.clone().expect("phone"),
        subscriber.id.clone(),
    ] {
        let (status, _, body) = get_json(&format!("{base}/{}", encode(&ident)), &[AUTH]).await;
        assert_eq!(status, StatusCode::OK, "{ident}");
        assert_eq!(body["id"], subscriber.id.as_str());
        assert_eq!(body["email"], subscriber.email.as_str());
        assert_eq!(body["delivered_count"], subscriber.delivered_count);
    }
    let (status, _, _) = get_json(&format!("{base}/nobody%40example.com"), &[AUTH]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bulk_add_creates_new_subscribers_but_never_updates_existing_ones() {
    let sandbox = small_sandbox().await;
    let w = small_world();
    let unsubscribed = w
        .people()
        .filter_map(|p| w.subscriber_of(&p))
        .find(|s| !s.subscribed)
        .expect("an unsubscribed subscriber");
    let base = format!("{}/smartrmail/api/v1", sandbox.base_url);
    let body = json!({ "subscribers": [
        { "email": unsubscribed.email, "first_name": "Changed", "subscribed": true },
        { "email": "new.person@example.com", "first_name": "New", "custom_fields": [{ "field_name": "Points", "value_type": "number", "value": 1250 }] },
    ]});
    let (status, created) = send(
        reqwest::Method::POST,
        &format!("{base}/lists/l_winback/list_subscribers"),
        body,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created.as_array().map(Vec::len), Some(2));

    let (_, _, existing) = get_json(
        &format!("{base}/subscribers/{}", encode(&unsubscribed.email)),
        &[AUTH],
    )
    .await;
    assert_eq!(
        existing["subscribed"], false,
        "an existing subscription status is never overwritten"
    );
    assert_ne!(existing["first_name"], "Changed");

    let (_, _, new) = get_json(
        &format!("{base}/subscribers/new.person%40example.com"),
        &[AUTH],
    )
    .await;
    assert_eq!(new["subscribed"], true);
    assert_eq!(new["custom_fields"][0]["field_name"], "Points");
    assert_eq!(
        new["custom_fields"][0]["value"], "1250",
        "custom field values read back as strings"
    );

    let (_, _, members) =
        get_json(&format!("{base}/lists/l_winback/list_subscribers"), &[AUTH]).await;
    assert_eq!(
        members.as_array().map(Vec::len),
        Some(2),
        "both are on the list now"
    );

    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{base}/lists/l_winback/list_subscribers"),
        json!({ "subscribers": [{ "first_name": "No e-mail" }] }),
    )
    .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "email": ["can't be blank"] })
        )
    );
}

#[tokio::test]
async fn put_updates_only_the_given_fields_and_unsubscribe_resubscribe_toggle_status() {
    let sandbox = small_sandbox().await;
    let w = small_world();
    let subscriber = w
        .people()
        .filter_map(|p| w.subscriber_of(&p))
        .find(|s| s.subscribed)
        .expect("a subscriber");
    let url = format!(
        "{}/smartrmail/api/v1/subscribers/{}",
        sandbox.base_url,
        encode(&subscriber.email)
    );
    let (status, updated) = send(
        reqwest::Method::PUT,
        &url,
        json!({ "last_name": "Updated" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["last_name"], "Updated");
    assert_eq!(updated["subscribed"], true);
    assert_eq!(updated["opened_count"], subscriber.opened_count);

    let (_, off) = send(
        reqwest::Method::POST,
        &format!("{url}/unsubscribe"),
        json!({}),
    )
    .await;
    assert_eq!(off["subscribed"], false);
    assert!(
        off["unsubscribed_at"]
            .as_str()
            .is_some_and(|t| t.ends_with(" UTC"))
    );
    let (_, on) = send(
        reqwest::Method::POST,
        &format!("{url}/resubscribe"),
        json!({}),
    )
    .await;
    assert_eq!(on["subscribed"], true);
    assert!(on["unsubscribed_at"].is_null());
}

#[tokio::test]
async fn lists_accept_name_or_title_and_validate_like_rails() {
    let sandbox = small_sandbox().await;
    let url = format!("{}/smartrmail/api/v1/lists", sandbox.base_url);
    let (status, list) = send(reqwest::Method::POST, &url, json!({ "title": "Spring" })).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(list["name"], "Spring");
    assert_eq!(list["subscribers_count"], 0);
    let (status, body) = send(reqwest::Method::POST, &url, json!({})).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({ "name": ["can't be blank"] })
        )
    );
}

#[tokio::test]
async fn campaigns_follow_the_project_defined_contract() {
    let sandbox = small_sandbox().await;
    let base = format!("{}/smartrmail/api/v1/campaigns", sandbox.base_url);
    let (_, _, campaigns) = get_json(&format!("{base}?status=sent"), &[AUTH]).await;
    let campaigns = campaigns.as_array().expect("a bare array");
    assert!(!campaigns.is_empty());
    let first = &campaigns[0];
    let stats = &first["stats"];
    assert!(stats["sent_count"].as_u64() >= stats["delivered_count"].as_u64());
    assert!(stats["unique_opened_count"].as_u64() <= stats["opened_count"].as_u64());
    assert!(
        stats["revenue"].as_str().is_some_and(|r| r.contains('.')),
        "revenue is a decimal string"
    );
    assert_eq!(stats["currency"], "AUD");
    let (_, _, one) = get_json(
        &format!("{base}/{}", first["id"].as_str().expect("id")),
        &[AUTH],
    )
    .await;
    assert_eq!(&one, first);
}

#[tokio::test]
async fn custom_events_are_taken_by_their_webhook_and_recorded() {
    let sandbox = small_sandbox().await;
    let hook = format!(
        "{}/smartrmail/hooks/custom-events/sandbox",
        sandbox.base_url
    );
    let client = reqwest::Client::new();
    let event = json!({ "email": "ana@example.com", "event": "l_winback", "points_balance": 120 });
    let response = client.post(&hook).json(&event).send().await.expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    // The URL's token is the credential; an event needs an e-mail.
    let wrong = client
        .post(format!(
            "{}/smartrmail/hooks/custom-events/guess",
            sandbox.base_url
        ))
        .json(&event)
        .send()
        .await
        .expect("sent");
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
    let blank = client
        .post(&hook)
        .json(&json!({ "event": "x" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(blank.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(state["smartrmail"]["custom_events"], json!([event]));
    assert_eq!(
        state["platform_writes"][0]["path"],
        "/smartrmail/hooks/custom-events/sandbox"
    );
}

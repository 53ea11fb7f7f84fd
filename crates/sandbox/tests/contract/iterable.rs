//! Contract tests for the Iterable simulator against `api-reference/iterable.md`.

use mailroom_sandbox::iterable::METRIC_COLUMNS;
use mailroom_sandbox::world::Platform;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{get_json, small_sandbox, small_world};

const KEY: (&str, &str) = ("Api-Key", "sandbox");

fn campaigns() -> Vec<mailroom_sandbox::world::Campaign> {
    small_world().campaigns(Platform::Iterable)
}

async fn post(url: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .header(KEY.0, KEY.1)
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn get_text(url: &str) -> (StatusCode, String, String) {
    let response = reqwest::Client::new()
        .get(url)
        .header(KEY.0, KEY.1)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, content_type, response.text().await.expect("text"))
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_401_bad_api_key_and_the_underscore_alias_works() {
    let sandbox = small_sandbox().await;
    let url = format!("{}/iterable/api/campaigns", sandbox.base_url);
    let (status, _, body) = get_json(&url, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "BadApiKey");
    assert!(body.get("msg").is_some() && body.get("params").is_some());
    assert_eq!(
        get_json(&url, &[("Api-Key", "wrong")]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get_json(&url, &[("Api_Key", "sandbox")]).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn campaign_pages_link_by_next_page_url_to_the_last_page() {
    let sandbox = small_sandbox().await;
    let world = campaigns();
    let mut url = format!(
        "{}/iterable/api/campaigns?page=1&pageSize=5&sort=-updatedAt",
        sandbox.base_url
    );
    let mut ids = Vec::new();
    let mut pages = 0;
    loop {
        let (status, _, body) = get_json(&url, &[KEY]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["totalCampaignsCount"], world.len());
        if pages == 0 {
            assert!(body.get("previousPageUrl").is_none());
        }
        let page = body["campaigns"].as_array().expect("array");
        assert!(page.len() <= 5);
        ids.extend(page.iter().map(|c| c["id"].as_u64().expect("id")));
        pages += 1;
        match body.get("nextPageUrl").and_then(Value::as_str) {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(pages, world.len().div_ceil(5));
    let mut expected: Vec<u64> = world.iter().map(|c| c.id).collect();
    expected
        .sort_by_key(|id| std::cmp::Reverse(world.iter().find(|c| c.id == *id).map(|c| c.sent_at)));
    assert_eq!(ids, expected, "every campaign once, newest update first");

    let (_, _, all) = get_json(
        &format!("{}/iterable/api/campaigns", sandbox.base_url),
        &[KEY],
    )
    .await;
    assert_eq!(all["campaigns"].as_array().map(Vec::len), Some(world.len()));
    assert!(
        all.get("totalCampaignsCount").is_none(),
        "only when paginating"
    );
    let first = &all["campaigns"][0];
    assert!(
        first["createdAt"]
            .as_i64()
            .is_some_and(|ms| ms > 1_000_000_000_000),
        "epoch milliseconds"
    );
    assert_eq!(first["messageMedium"], "Email");

    let url = format!(
        "{}/iterable/api/campaigns?page=1&pageSize=50&campaignState=Running",
        sandbox.base_url
    );
    let (_, _, running) = get_json(&url, &[KEY]).await;
    let running = running["campaigns"].as_array().expect("array");
    assert_eq!(running.len(), 2);
    assert!(
        running
            .iter()
            .all(|c| c["type"] == "Triggered" && c["workflowId"] == 330012)
    );
}

#[tokio::test]
async fn metrics_come_as_csv_with_the_documented_headers_one_row_per_id() {
    let sandbox = small_sandbox().await;
    let world = campaigns();
    let (a, b) = (&world[0], &world[1]);
    let url = format!(
        "{}/iterable/api/campaigns/metrics?campaignId={}&campaignId={}&campaignId=1&useNewFormat=true",
        sandbox.base_url, b.id, a.id
    );
    let (status, content_type, csv) = get_text(&url).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], METRIC_COLUMNS.join(","));
    assert!(lines[0].starts_with(
        "id,Average Custom Conversion Value,Average Order Value,Purchases / M (Email),Revenue,"
    ));
    assert!(
        lines[0].contains(",Total Email Sends,")
            && lines[0].contains(",Unique Email Opens Or Clicks,")
    );
    assert_eq!(
        lines.len(),
        4,
        "a header and one row per id, in request order"
    );
    let column = |row: &str, name: &str| -> String {
        let at = METRIC_COLUMNS
            .iter()
            .position(|c| *c == name)
            .expect("column");
        row.split(',').nth(at).expect("cell").to_string()
    };
    assert_eq!(column(lines[1], "id"), b.id.to_string());
    assert_eq!(column(lines[1], "Total Email Sends"), b.sent.to_string());
    assert_eq!(
        column(lines[2], "Total Emails Delivered"),
        a.delivered.to_string()
    );
    assert_eq!(
        column(lines[2], "Unique Email Opens"),
        a.unique_opens.to_string()
    );
    assert_eq!(
        column(lines[3], "Total Email Sends"),
        "0",
        "an unknown id gets zeros"
    );

    let after = (a.sent_at + chrono::Duration::days(8)).format("%Y-%m-%d");
    let url = format!(
        "{}/iterable/api/campaigns/metrics?campaignId={}&startDateTime={after}",
        sandbox.base_url, a.id
    );
    let (_, _, csv) = get_text(&url).await;
    assert_eq!(
        column(csv.lines().nth(1).expect("row"), "Total Email Sends"),
        "0",
        "no events in a window after the campaign"
    );

    let (status, _, body) = get_json(
        &format!("{}/iterable/api/campaigns/metrics", sandbox.base_url),
        &[KEY],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "BadParams", "errors are JSON, not CSV");
}

#[tokio::test]
async fn metrics_allow_ten_requests_a_minute() {
    let sandbox = small_sandbox().await;
    let url = format!(
        "{}/iterable/api/campaigns/metrics?campaignId={}",
        sandbox.base_url,
        campaigns()[0].id
    );
    for i in 0..10 {
        assert_eq!(get_text(&url).await.0, StatusCode::OK, "request {i}");
    }
    let (status, _, body) = get_json(&url, &[KEY]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["code"], "RateLimitExceeded");
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["requests"]["GET /iterable/api/campaigns/metrics"],
        json!({ "requests": 11, "rate_limited": 1 })
    );
}

#[tokio::test]
async fn users_update_merges_fields_and_keeps_each_fields_type() {
    let sandbox = small_sandbox().await;
    let url = format!("{}/iterable/api/users/update", sandbox.base_url);
    let (status, body) = post(&url, json!({ "email": "Ana@Example.com", "dataFields": { "loyaltyPoints": 1250, "vipTier": "Gold" } })).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({ "msg": "", "code": "Success", "params": null })
        )
    );
    let (status, _) = post(&url, json!({ "email": "ana@example.com", "dataFields": { "referralUrl": "http://i.refs.cc/x" } })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = post(
        &url,
        json!({ "email": "ben@example.com", "dataFields": { "loyaltyPoints": "many" } }),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("RequestFieldsTypesMismatched")
        )
    );
    let (status, body) = post(&url, json!({ "email": "not-an-email" })).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidEmailAddressError"))
    );
    let (status, _) = post(&url, json!({ "email": "a@b.co", "userId": "u1" })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["iterable"]["users"]["ana@example.com"],
        json!({ "loyaltyPoints": 1250, "vipTier": "Gold", "referralUrl": "http://i.refs.cc/x" }),
        "fields merge; omitted fields stay"
    );
}

#[tokio::test]
async fn list_subscribe_answers_200_with_per_item_failures() {
    let sandbox = small_sandbox().await;
    let url = format!("{}/iterable/api/lists/subscribe", sandbox.base_url);
    let body = json!({ "listId": 104234, "subscribers": [
        { "email": "new.person@example.com", "dataFields": { "vipTier": "Gold" } },
        { "email": "not-an-email", "dataFields": {} },
    ]});
    let (status, body) = post(&url, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["successCount"], 1);
    assert_eq!(body["failCount"], 1);
    assert_eq!(
        body["failedUpdates"]["invalidEmails"],
        json!(["not-an-email"])
    );

    let body = json!({ "listId": 104234, "updateExistingUsersOnly": true, "subscribers": [{ "email": "stranger@example.org" }] });
    let (_, body) = post(&url, body).await;
    assert_eq!(
        body["failedUpdates"]["notFoundEmails"],
        json!(["stranger@example.org"])
    );
    let (status, _) = post(&url, json!({ "listId": 1, "subscribers": [] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["iterable"]["list_subscriptions"],
        json!([{ "listId": 104234, "email": "new.person@example.com", "created": true }])
    );
    // In this e-mail-based project the unknown e-mail is now a profile (iterable.md §14).
    let (_, _, made) = get_json(
        &format!(
            "{}/iterable/api/users/getByEmail?email=new.person%40example.com",
            sandbox.base_url
        ),
        &[KEY],
    )
    .await;
    assert_eq!(made["user"]["dataFields"]["emailListIds"], json!([104234]));
}

/// The world's people with and without an Iterable profile, and one who left the
/// marketing channel.
fn iterable_people() -> (String, String, String) {
    use mailroom_sandbox::world::ITERABLE_MARKETING_CHANNEL;
    let world = small_world();
    let mut known = None;
    let mut unknown = None;
    let mut left = None;
    for person in world.people() {
        match world.iterable_user_of(&person) {
            None => {
                unknown.get_or_insert(person.email.clone());
            }
            Some(user)
                if user
                    .unsubscribed_channel_ids
                    .contains(&ITERABLE_MARKETING_CHANNEL) =>
            {
                left.get_or_insert(person.email.clone());
            }
            Some(user) if user.unsubscribed_message_type_ids.is_empty() => {
                known.get_or_insert(person.email.clone());
            }
            Some(_) => {}
        }
    }
    (
        known.expect("a subscribed profile"),
        unknown.expect("someone without a profile"),
        left.expect("someone who left the channel"),
    )
}

#[tokio::test]
async fn get_by_email_answers_the_profile_with_its_subscription_arrays_or_an_empty_object() {
    let sandbox = small_sandbox().await;
    let (known, unknown, left) = iterable_people();
    let get = |email: String| {
        let url = format!(
            "{}/iterable/api/users/getByEmail?email={}",
            sandbox.base_url,
            email.replace('@', "%40")
        );
        async move { get_json(&url, &[KEY]).await }
    };
    let (status, _, body) = get(known.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["user"]["email"], known.as_str());
    assert_eq!(
        body["user"]["dataFields"]["unsubscribedChannelIds"],
        json!([])
    );
    assert!(body["user"]["signupDate"].as_i64().is_some_and(|t| t > 0));
    let (status, _, body) = get(unknown).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({})),
        "unknown is {{}}, not a 404"
    );
    let (_, _, body) = get(left.clone()).await;
    assert_eq!(
        body["user"]["dataFields"]["unsubscribedChannelIds"],
        json!([31])
    );
    // The same profile by path.
    let (_, _, by_path) = get_json(
        &format!(
            "{}/iterable/api/users/{}",
            sandbox.base_url,
            left.replace('@', "%40")
        ),
        &[KEY],
    )
    .await;
    assert_eq!(by_path["user"]["email"], left.as_str());
    let (status, _, body) = get_json(
        &format!(
            "{}/iterable/api/users/getByEmail?email=nope",
            sandbox.base_url
        ),
        &[KEY],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("InvalidEmailAddressError"))
    );
}

#[tokio::test]
async fn update_subscriptions_overwrites_the_arrays_it_is_sent() {
    let sandbox = small_sandbox().await;
    let (_, _, left) = iterable_people();
    let url = format!(
        "{}/iterable/api/users/updateSubscriptions",
        sandbox.base_url
    );
    // A "partial" request that means to add a list: it resubscribes the person to the
    // channel (the empty array overwrites theirs) — the hazard of §14.
    let (status, _) = post(
        &url,
        json!({ "email": left, "emailListIds": [104234], "unsubscribedChannelIds": [] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (_, _, body) = get_json(
        &format!(
            "{}/iterable/api/users/getByEmail?email={}",
            sandbox.base_url,
            left.replace('@', "%40")
        ),
        &[KEY],
    )
    .await;
    assert_eq!(
        body["user"]["dataFields"]["unsubscribedChannelIds"],
        json!([])
    );
    assert_eq!(body["user"]["dataFields"]["emailListIds"], json!([104234]));
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["iterable"]["subscription_updates"][0]["email"],
        left.as_str()
    );
}

#[tokio::test]
async fn trigger_workflow_enrolls_a_user_and_is_recorded() {
    let sandbox = small_sandbox().await;
    let url = format!(
        "{}/iterable/api/workflows/triggerWorkflow",
        sandbox.base_url
    );
    let (status, body) = post(&url, json!({ "workflowId": 330012, "email": "ana@example.com", "dataFields": { "pointsBalance": 1250 } })).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::OK, Some("Success"))
    );
    for bad in [
        json!({ "email": "ana@example.com" }),
        json!({ "workflowId": 9, "email": "ana@example.com" }),
        json!({ "workflowId": 330012 }),
    ] {
        let (status, body) = post(&url, bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(body["code"], "BadParams");
    }
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["iterable"]["workflow_triggers"],
        json!([{ "workflowId": 330012, "dataFields": { "pointsBalance": 1250 }, "email": "ana@example.com" }])
    );
}

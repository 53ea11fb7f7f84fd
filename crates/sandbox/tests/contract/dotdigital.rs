//! Contract tests for the Dotdigital simulator against `api-reference/dotdigital.md`.

use mailroom_sandbox::world::Platform;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{get_json, small_sandbox, small_world};

/// `Authorization: Basic base64("sandbox:sandbox")`.
const AUTH: (&str, &str) = ("Authorization", "Basic c2FuZGJveDpzYW5kYm94");

/// The trailing `ERROR_*` token of a v2 error message.
fn token(body: &Value) -> String {
    let message = body["message"].as_str().unwrap_or_default();
    message
        .rsplit(' ')
        .next()
        .filter(|t| t.starts_with("ERROR_"))
        .unwrap_or(message)
        .to_string()
}

async fn send(method: reqwest::Method, url: &str, body: Value) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .request(method, url)
        .header(AUTH.0, AUTH.1)
        .json(&body)
        .send()
        .await
        .expect("sent");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn basic_auth_is_required_and_account_info_names_the_endpoint() {
    let sandbox = small_sandbox().await;
    let url = format!("{}/dotdigital/v2/account-info", sandbox.base_url);
    let (status, _, body) = get_json(&url, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body["message"],
        "Authorization has been denied for this request."
    );
    assert_eq!(
        get_json(&url, &[("Authorization", "Basic c2FuZGJveDp3cm9uZw==")])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (status, _, body) = get_json(&url, &[AUTH]).await;
    assert_eq!(status, StatusCode::OK);
    let endpoint = body["properties"]
        .as_array()
        .expect("properties")
        .iter()
        .find(|p| p["name"] == "ApiEndpoint")
        .expect("ApiEndpoint");
    assert_eq!(
        endpoint["value"],
        format!("{}/dotdigital", sandbox.base_url)
    );
}

#[tokio::test]
async fn campaigns_page_with_select_and_skip_until_a_short_page() {
    let sandbox = small_sandbox().await;
    let expected: Vec<u64> = small_world()
        .campaigns(Platform::Dotdigital)
        .iter()
        .map(|c| c.id)
        .collect();
    let mut ids = Vec::new();
    let mut skip = 0;
    loop {
        let url = format!(
            "{}/dotdigital/v2/campaigns?select=5&skip={skip}",
            sandbox.base_url
        );
        let (_, _, page) = get_json(&url, &[AUTH]).await;
        let page = page.as_array().expect("a bare array").clone();
        ids.extend(page.iter().map(|c| c["id"].as_u64().expect("id")));
        assert!(page.iter().all(|c| c["status"] == "Sent"));
        if page.len() < 5 {
            break;
        }
        skip += 5;
    }
    assert_eq!(ids, expected);
    let (status, _, body) = get_json(
        &format!("{}/dotdigital/v2/campaigns?select=1001", sandbox.base_url),
        &[AUTH],
    )
    .await;
    assert_eq!(
        (status, token(&body)),
        (
            StatusCode::BAD_REQUEST,
            "ERROR_PARAMETER_INVALID".to_string()
        )
    );

    let campaigns = small_world().campaigns(Platform::Dotdigital);
    let since = campaigns[campaigns.len() / 2].sent_at;
    let url = format!(
        "{}/dotdigital/v2/campaigns/with-activity-since/{}",
        sandbox.base_url,
        since.format("%Y-%m-%dT%H:%M:%SZ")
    );
    let (_, _, active) = get_json(&url, &[AUTH]).await;
    let active = active.as_array().expect("array").len();
    let expected = campaigns
        .iter()
        .filter(|c| c.sent_at + chrono::Duration::days(7) > since)
        .count();
    assert_eq!(active, expected);
    assert!(active < campaigns.len());
}

#[tokio::test]
async fn summaries_keep_html_text_and_total_triples_and_rates_as_fractions() {
    let sandbox = small_sandbox().await;
    let campaign = small_world().campaigns(Platform::Dotdigital)[3].clone();
    let url = format!(
        "{}/dotdigital/v2/campaigns/{}/summary",
        sandbox.base_url, campaign.id
    );
    let (status, _, s) = get_json(&url, &[AUTH]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(s["numTotalSent"], campaign.sent);
    assert_eq!(s["numTotalDelivered"], campaign.delivered);
    assert_eq!(s["numTotalUniqueOpens"], campaign.unique_opens);
    assert_eq!(s["numRecipientsClicked"], campaign.unique_clicks);
    assert!(s.get("numUniqueClicks").is_none());
    for (html, text, total) in [
        ("numSent", "numTextSent", "numTotalSent"),
        ("numOpens", "numTextOpens", "numTotalOpens"),
        (
            "numUniqueOpens",
            "numUniqueTextOpens",
            "numTotalUniqueOpens",
        ),
        (
            "numUnsubscribes",
            "numTextUnsubscribes",
            "numTotalUnsubscribes",
        ),
    ] {
        assert_eq!(
            s[html].as_u64().expect(html) + s[text].as_u64().expect(text),
            s[total].as_u64().expect(total),
            "{total}"
        );
    }
    let delivered = s["percentageDelivered"].as_f64().expect("rate");
    assert!((delivered - campaign.delivered as f64 / campaign.sent as f64).abs() < 1e-9);
    for key in [
        "percentageUniqueOpens",
        "percentageOpens",
        "percentageUsersClicked",
        "percentageClicksToOpens",
    ] {
        assert!(
            s[key]
                .as_f64()
                .is_some_and(|r| (0.0..=1.0).contains(&r) || key == "percentageOpens"),
            "{key} is a fraction"
        );
    }
    assert_eq!(
        s["revenue"],
        format!(
            "{}.{:02}",
            campaign.revenue_cents / 100,
            campaign.revenue_cents % 100
        )
    );
    assert!(
        !s["dateSent"].as_str().expect("date").ends_with('Z'),
        "dates carry no zone"
    );

    let (status, _, body) = get_json(
        &format!("{}/dotdigital/v2/campaigns/7/summary", sandbox.base_url),
        &[AUTH],
    )
    .await;
    assert_eq!(
        (status, token(&body)),
        (
            StatusCode::NOT_FOUND,
            "ERROR_CAMPAIGN_NOT_FOUND".to_string()
        )
    );
}

#[tokio::test]
async fn contact_writes_need_existing_typed_data_fields_and_never_change_status() {
    let sandbox = small_sandbox().await;
    let w = small_world();
    let unsubscribed = w
        .people()
        .filter_map(|p| w.subscriber_of(&p))
        .find(|s| !s.subscribed && !s.complained)
        .expect("unsubscribed");
    let base = format!("{}/dotdigital/v2", sandbox.base_url);

    let (status, _, contact) = get_json(
        &format!("{base}/contacts/{}", unsubscribed.email.replace('@', "%40")),
        &[AUTH],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(contact["status"], "Unsubscribed");
    let (_, _, by_id) = get_json(&format!("{base}/contacts/{}", contact["id"]), &[AUTH]).await;
    assert_eq!(by_id, contact);

    let points =
        json!({ "email": unsubscribed.email, "dataFields": [{ "key": "POINTS", "value": 1250 }] });
    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{base}/contacts"),
        points.clone(),
    )
    .await;
    assert_eq!(
        (status, token(&body)),
        (
            StatusCode::BAD_REQUEST,
            "ERROR_DATAFIELD_NOTFOUND".to_string()
        )
    );

    let field =
        json!({ "name": "POINTS", "type": "Numeric", "visibility": "Private", "defaultValue": 0 });
    assert_eq!(
        send(
            reqwest::Method::POST,
            &format!("{base}/data-fields"),
            field.clone()
        )
        .await
        .0,
        StatusCode::CREATED
    );
    let (status, body) = send(reqwest::Method::POST, &format!("{base}/data-fields"), field).await;
    assert_eq!(
        (status, token(&body)),
        (
            StatusCode::BAD_REQUEST,
            "ERROR_NON_UNIQUE_DATAFIELD".to_string()
        )
    );
    let (_, body) = send(
        reqwest::Method::POST,
        &format!("{base}/data-fields"),
        json!({ "name": "A_NAME_LONGER_THAN_TWENTY", "type": "String" }),
    )
    .await;
    assert_eq!(token(&body), "ERROR_DATAFIELD_INVALID");

    let (status, updated) = send(reqwest::Method::POST, &format!("{base}/contacts"), points).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        updated["status"], "Unsubscribed",
        "a write never resubscribes anyone"
    );
    let values: Vec<&Value> = updated["dataFields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter(|f| f["key"] == "POINTS")
        .map(|f| &f["value"])
        .collect();
    assert_eq!(values, [&json!(1250)]);
    assert!(
        updated["dataFields"]
            .as_array()
            .expect("fields")
            .iter()
            .any(|f| f["key"] == "FIRSTNAME"),
        "omitted fields keep their values"
    );

    let wrong = json!({ "email": unsubscribed.email, "dataFields": [{ "key": "POINTS", "value": "lots" }] });
    let (status, body) = send(reqwest::Method::POST, &format!("{base}/contacts"), wrong).await;
    assert_eq!(
        (status, token(&body)),
        (
            StatusCode::BAD_REQUEST,
            "ERROR_PARAMETER_INVALID".to_string()
        )
    );
}

#[tokio::test]
async fn address_books_hold_contacts_and_refuse_duplicate_names() {
    let sandbox = small_sandbox().await;
    let base = format!("{}/dotdigital/v2/address-books", sandbox.base_url);
    let (status, book) = send(
        reqwest::Method::POST,
        &base,
        json!({ "name": "Loyalty VIP", "visibility": "Private" }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, body) = send(
        reqwest::Method::POST,
        &base,
        json!({ "name": "loyalty vip" }),
    )
    .await;
    assert_eq!(token(&body), "ERROR_ADDRESSBOOK_DUPLICATE");
    let (_, body) = send(reqwest::Method::POST, &base, json!({ "name": "Test" })).await;
    assert_eq!(
        token(&body),
        "ERROR_ADDRESSBOOK_DUPLICATE",
        "reserved names"
    );

    let id = book["id"].as_u64().expect("id");
    let (status, contact) = send(
        reqwest::Method::POST,
        &format!("{base}/{id}/contacts"),
        json!({ "email": "New.Person@example.com" }),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(contact["status"], "Subscribed");
    let (_, _, members) =
        get_json(&format!("{base}/{id}/contacts?withFullData=true"), &[AUTH]).await;
    assert_eq!(members.as_array().map(Vec::len), Some(1));
    assert_eq!(members[0]["email"], "new.person@example.com");
    let (_, _, book) = get_json(&format!("{base}/{id}"), &[AUTH]).await;
    assert_eq!(book["contacts"], 1);
}

#[tokio::test]
async fn enrolments_process_then_finish_report_faults_and_stop_at_20_an_hour() {
    let sandbox = small_sandbox().await;
    let w = small_world();
    let contact_id = 4_400_000
        + w.people()
            .find(|p| w.subscriber_of(p).is_some())
            .expect("contact")
            .index as u64;
    let url = format!("{}/dotdigital/v2/programs/enrolments", sandbox.base_url);
    let (status, enrolment) = send(
        reqwest::Method::POST,
        &url,
        json!({ "programId": 77012, "contacts": [contact_id, 1] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(enrolment["status"], "Processing");
    assert_eq!(enrolment["addressBooks"], Value::Null);
    let id = enrolment["id"].as_str().expect("GUID");
    assert_eq!(id.len(), 36);

    let (_, _, body) = get_json(&format!("{url}/{id}/report-faults"), &[AUTH]).await;
    assert_eq!(token(&body), "ERROR_ENROLMENT_IS_PROCESSING");
    let (_, _, first) = get_json(&format!("{url}/{id}"), &[AUTH]).await;
    let (_, _, second) = get_json(&format!("{url}/{id}"), &[AUTH]).await;
    assert_eq!(
        (first["status"].as_str(), second["status"].as_str()),
        (Some("Processing"), Some("Finished"))
    );
    let faults = reqwest::Client::new()
        .get(format!("{url}/{id}/report-faults"))
        .header(AUTH.0, AUTH.1)
        .send()
        .await
        .expect("sent");
    assert_eq!(
        faults.text().await.expect("csv"),
        "ContactId,Reason\n1,ContactNotFound\n"
    );

    let bad = [
        (
            json!({ "programId": 77012, "contacts": [contact_id], "addressBooks": [1001] }),
            "ERROR_ENROLMENT_INVALID",
        ),
        (json!({ "programId": 77012 }), "ERROR_ENROLMENT_INVALID"),
        (
            json!({ "programId": 77012, "contacts": [] }),
            "ERROR_CONTACTS_ARE_NOT_SPECIFIED",
        ),
        (
            json!({ "programId": 77013, "addressBooks": [1002] }),
            "ERROR_PROGRAM_NOT_ACTIVE",
        ),
        (
            json!({ "programId": 1, "addressBooks": [1002] }),
            "ERROR_PROGRAM_NOT_FOUND",
        ),
    ];
    for (body, expected) in bad {
        let (_, answer) = send(reqwest::Method::POST, &url, body).await;
        assert_eq!(token(&answer), expected);
    }
    // Six calls so far count toward the allowance, valid or not.
    for _ in 0..14 {
        assert_eq!(
            send(
                reqwest::Method::POST,
                &url,
                json!({ "programId": 77012, "addressBooks": [1002] })
            )
            .await
            .0,
            StatusCode::CREATED
        );
    }
    let (status, body) = send(
        reqwest::Method::POST,
        &url,
        json!({ "programId": 77012, "addressBooks": [1002] }),
    )
    .await;
    assert_eq!(
        (status, token(&body)),
        (
            StatusCode::BAD_REQUEST,
            "ERROR_ENROLMENT_ALLOWANCE_EXCEEDED".to_string()
        )
    );
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["dotdigital"]["enrolments"].as_array().map(Vec::len),
        Some(15)
    );
}

#[tokio::test]
async fn the_suppression_list_reads_incrementally_and_catches_complainers_still_subscribed() {
    let sandbox = small_sandbox().await;
    let base = format!("{}/dotdigital/v2/contacts", sandbox.base_url);
    let (status, _, all) = get_json(&format!("{base}/suppressed-since/2000-01-01"), &[AUTH]).await;
    assert_eq!(status, StatusCode::OK);
    let all = all.as_array().expect("entries").clone();
    let world = small_world();
    let expected = world
        .people()
        .filter_map(|p| world.subscriber_of(&p))
        .filter(|s| !s.subscribed || s.complained)
        .count();
    assert_eq!(all.len(), expected);
    let dates: Vec<&str> = all
        .iter()
        .filter_map(|e| e["dateRemoved"].as_str())
        .collect();
    assert!(dates.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    // A complainer whose contact still says Subscribed is on the list all the same.
    let still = all
        .iter()
        .find(|e| {
            e["reason"] == "IspComplained" && e["suppressedContact"]["status"] == "Subscribed"
        })
        .expect("a complainer still subscribed");
    let email = still["suppressedContact"]["email"].as_str().expect("email");
    let (_, _, contact) = get_json(&format!("{base}/{email}"), &[AUTH]).await;
    assert_eq!(contact["status"], "Subscribed");
    // Since a date: only what was removed from then on; unsubscribes alone by their own call.
    let middle = dates[dates.len() / 2];
    let (_, _, later) = get_json(&format!("{base}/suppressed-since/{middle}"), &[AUTH]).await;
    let later = later.as_array().expect("entries");
    assert!(
        later.len() < all.len()
            && later
                .iter()
                .all(|e| e["dateRemoved"].as_str() >= Some(middle))
    );
    let (_, _, unsubscribed) =
        get_json(&format!("{base}/unsubscribed-since/2000-01-01"), &[AUTH]).await;
    assert!(
        unsubscribed
            .as_array()
            .expect("entries")
            .iter()
            .all(|e| e["reason"] == "Unsubscribed")
    );
    let (_, _, page) = get_json(
        &format!("{base}/suppressed-since/2000-01-01?select=2&skip=1"),
        &[AUTH],
    )
    .await;
    assert_eq!(page.as_array().map(Vec::len), Some(2));
    assert_eq!(page[0], all[1]);
    let (status, _, _) = get_json(&format!("{base}/suppressed-since/yesterday"), &[AUTH]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn resubscribe_with_no_challenge_is_recorded_and_lifts_the_suppression() {
    let sandbox = small_sandbox().await;
    let base = format!("{}/dotdigital/v2/contacts", sandbox.base_url);
    let (_, _, all) = get_json(&format!("{base}/unsubscribed-since/2000-01-01"), &[AUTH]).await;
    let email = all[0]["suppressedContact"]["email"]
        .as_str()
        .expect("email")
        .to_string();
    let (status, body) = send(
        reqwest::Method::POST,
        &format!("{base}/resubscribe-with-no-challenge"),
        json!({ "unsubscribedContact": { "email": email } }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, contact) = get_json(&format!("{base}/{email}"), &[AUTH]).await;
    assert_eq!(contact["status"], "Subscribed");
    let (_, _, after) = get_json(&format!("{base}/unsubscribed-since/2000-01-01"), &[AUTH]).await;
    assert_eq!(
        after.as_array().map(Vec::len),
        all.as_array().map(|a| a.len() - 1)
    );
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["dotdigital"]["resubscribes"][0]["email"],
        email.as_str()
    );
}

#[tokio::test]
async fn enrolments_are_listed_by_status() {
    let sandbox = small_sandbox().await;
    let url = format!("{}/dotdigital/v2/programs/enrolments", sandbox.base_url);
    let (status, created) = send(
        reqwest::Method::POST,
        &url,
        json!({ "programId": 77012, "contacts": [4400001] }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (_, _, processing) = get_json(&format!("{url}/Processing"), &[AUTH]).await;
    assert_eq!(processing[0]["id"], created["id"]);
    assert_eq!(processing[0]["contacts"], json!([4400001]));
    let (_, _, finished) = get_json(&format!("{url}/Finished"), &[AUTH]).await;
    assert_eq!(finished, json!([]));
}

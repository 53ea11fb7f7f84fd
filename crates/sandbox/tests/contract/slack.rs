//! Contract tests for the Slack simulator against `api-reference/slack.md`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{get_json, small_sandbox};

async fn call_json(
    base: &str,
    method: &str,
    body: Value,
    token: Option<&str>,
) -> (StatusCode, Option<String>, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{base}/slack/api/{method}"))
        .json(&body);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let response = request.send().await.expect("sent");
    let status = response.status();
    let retry = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, response.json().await.unwrap_or(Value::Null))
}

async fn call_form(base: &str, method: &str, form: &[(&str, &str)]) -> Value {
    let response = reqwest::Client::new()
        .post(format!("{base}/slack/api/{method}"))
        .form(form)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.expect("json")
}

#[tokio::test]
async fn auth_errors_come_back_as_200_with_ok_false() {
    let sandbox = small_sandbox().await;
    let base = &sandbox.base_url;
    let message = json!({ "channel": "#marketing", "text": "hi" });
    let (status, _, body) = call_json(base, "chat.postMessage", message.clone(), None).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({ "ok": false, "error": "not_authed" })
        )
    );
    let (_, _, body) = call_json(
        base,
        "chat.postMessage",
        message.clone(),
        Some("xoxb-wrong"),
    )
    .await;
    assert_eq!(body["error"], "invalid_auth");
    let form = call_form(
        base,
        "chat.postMessage",
        &[
            ("token", "sandbox"),
            ("channel", "C0SANDBOX01"),
            ("text", "from a form"),
        ],
    )
    .await;
    assert_eq!(form["ok"], true, "{form}");
}

#[tokio::test]
async fn post_message_answers_with_the_channel_ts_and_message() {
    let sandbox = small_sandbox().await;
    let blocks = json!([
        { "type": "header", "text": { "type": "plain_text", "text": "Weekly email performance" } },
        { "type": "section", "text": { "type": "mrkdwn", "text": "*12* campaigns" }, "fields": [{ "type": "mrkdwn", "text": "*Opens*\n41%" }] },
        { "type": "divider" },
        { "type": "context", "elements": [{ "type": "mrkdwn", "text": "run `r-1`" }] },
    ]);
    let (status, _, body) = call_json(
        &sandbox.base_url,
        "chat.postMessage",
        json!({ "channel": "#marketing", "text": "Weekly report", "blocks": blocks }),
        Some("sandbox"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["ok"], true, "{body}");
    assert_eq!(body["channel"], "C0SANDBOX01");
    let ts = body["ts"].as_str().expect("ts is a string");
    let (seconds, fraction) = ts.split_once('.').expect("seconds.micro");
    assert!(
        seconds.parse::<u64>().is_ok() && fraction.len() == 6,
        "{ts}"
    );
    assert_eq!(body["message"]["blocks"], blocks);
    assert_eq!(
        body["response_metadata"]["warnings"],
        json!(["missing_charset"]),
        "JSON without a charset is warned about"
    );

    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let messages = state["slack"]["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["blocks"], blocks);
    assert_eq!(messages[0]["channel"], "C0SANDBOX01");
}

#[tokio::test]
async fn application_errors_name_what_is_wrong() {
    let sandbox = small_sandbox().await;
    let too_many: Vec<Value> = (0..51).map(|_| json!({ "type": "divider" })).collect();
    let long_header =
        json!([{ "type": "header", "text": { "type": "plain_text", "text": "x".repeat(151) } }]);
    let cases = [
        (
            json!({ "channel": "#nowhere", "text": "x" }),
            "channel_not_found",
        ),
        (
            json!({ "channel": "#old-campaigns", "text": "x" }),
            "is_archived",
        ),
        (
            json!({ "channel": "#leadership", "text": "x" }),
            "not_in_channel",
        ),
        (json!({ "channel": "#marketing" }), "no_text"),
        (
            json!({ "channel": "#marketing", "text": "x", "blocks": too_many }),
            "invalid_blocks",
        ),
        (
            json!({ "channel": "#marketing", "text": "x", "blocks": long_header }),
            "invalid_blocks",
        ),
        (
            json!({ "channel": "#marketing", "text": "x", "markdown_text": "*y*" }),
            "markdown_text_conflict",
        ),
    ];
    for (body, code) in cases {
        let (status, _, answer) = call_json(
            &sandbox.base_url,
            "chat.postMessage",
            body.clone(),
            Some("sandbox"),
        )
        .await;
        assert_eq!(
            (status, answer["ok"].as_bool(), answer["error"].as_str()),
            (StatusCode::OK, Some(false), Some(code)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_burst_of_messages_to_one_channel_is_answered_429_with_retry_after() {
    let sandbox = small_sandbox().await;
    let started = std::time::Instant::now();
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..5 {
        let (status, retry, body) = call_json(
            &sandbox.base_url,
            "chat.postMessage",
            json!({ "channel": "#loyalty", "text": format!("m{i}") }),
            Some("sandbox"),
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(body["error"], "ratelimited");
            retry_after = retry;
        }
        statuses.push(status.as_u16());
    }
    if started.elapsed() < std::time::Duration::from_millis(900) {
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
        assert_eq!(retry_after.as_deref(), Some("1"));
    }
    let (status, _, _) = call_json(
        &sandbox.base_url,
        "chat.postMessage",
        json!({ "channel": "#marketing", "text": "other channel" }),
        Some("sandbox"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "limits are per channel");
}

#[tokio::test]
async fn files_upload_in_three_steps_and_are_shared_into_the_channel() {
    let sandbox = small_sandbox().await;
    let base = &sandbox.base_url;
    let csv = "platform,campaign,opens\niterable,Spring sale,410\n";
    let step1 = call_form(
        base,
        "files.getUploadURLExternal",
        &[
            ("token", "sandbox"),
            ("filename", "weekly.csv"),
            ("length", &csv.len().to_string()),
        ],
    )
    .await;
    assert_eq!(step1["ok"], true, "{step1}");
    let file_id = step1["file_id"].as_str().expect("file id").to_string();
    let upload_url = step1["upload_url"].as_str().expect("upload url");
    let uploaded = reqwest::Client::new()
        .post(upload_url)
        .body(csv)
        .send()
        .await
        .expect("sent");
    assert_eq!(uploaded.status(), StatusCode::OK);
    assert!(uploaded.text().await.expect("text").starts_with("OK"));

    let complete = json!({ "files": [{ "id": file_id, "title": "Weekly email performance" }], "channel_id": "C0SANDBOX01", "initial_comment": "This week's numbers" });
    let (_, _, body) = call_json(
        base,
        "files.completeUploadExternal",
        complete.clone(),
        Some("sandbox"),
    )
    .await;
    assert_eq!(
        body,
        json!({ "ok": true, "files": [{ "id": file_id, "title": "Weekly email performance" }] })
    );
    let (_, _, again) = call_json(
        base,
        "files.completeUploadExternal",
        complete,
        Some("sandbox"),
    )
    .await;
    assert_eq!(again["error"], "file_not_found", "a file is shared once");

    let (_, _, state) = get_json(&format!("{base}/_sandbox/state"), &[]).await;
    let file = &state["slack"]["files"][0];
    assert_eq!(file["content"], csv);
    assert_eq!(file["channel"], "C0SANDBOX01");
    assert_eq!(file["initial_comment"], "This week's numbers");

    let missing = call_form(
        base,
        "files.getUploadURLExternal",
        &[("token", "sandbox"), ("filename", "x.csv")],
    )
    .await;
    assert_eq!(missing["error"], "missing_argument");
}

#[tokio::test]
async fn incoming_webhooks_answer_plain_text() {
    let sandbox = small_sandbox().await;
    let client = reqwest::Client::new();
    let hook = format!(
        "{}/slack/hooks/services/T0SANDBOX/B0SANDBOX/sandbox",
        sandbox.base_url
    );
    let ok = client
        .post(&hook)
        .json(&json!({ "text": "Nightly export done" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/plain")
    );
    assert_eq!(ok.text().await.expect("text"), "ok");
    let cases = [
        (
            hook.clone(),
            "{not json".to_string(),
            StatusCode::BAD_REQUEST,
            "invalid_payload",
        ),
        (
            hook.clone(),
            "{}".to_string(),
            StatusCode::BAD_REQUEST,
            "no_text",
        ),
        (
            format!(
                "{}/slack/hooks/services/T0SANDBOX/B0SANDBOX/revoked",
                sandbox.base_url
            ),
            "{\"text\":\"x\"}".to_string(),
            StatusCode::NOT_FOUND,
            "no_service",
        ),
    ];
    for (url, body, status, word) in cases {
        let response = client
            .post(&url)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), status);
        assert_eq!(response.text().await.expect("text"), word);
    }
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(state["slack"]["messages"][0]["via"], "webhook");
    assert_eq!(state["slack"]["messages"][0]["text"], "Nightly export done");
}

#[tokio::test]
async fn history_returns_messages_newest_first_with_metadata_and_file_shares() {
    let sandbox = small_sandbox().await;
    let base = &sandbox.base_url;
    let post = |text: &str, metadata: Value| {
        let mut body = json!({ "channel": "#marketing", "text": text });
        if !metadata.is_null() {
            body["metadata"] = metadata;
        }
        call_json(base, "chat.postMessage", body, Some("sandbox"))
    };
    let delivery = json!({ "event_type": "mailroom_delivery", "event_payload": { "key": "weekly/2026-11-30" } });
    let (_, _, first) = post("first", Value::Null).await;
    let (_, _, second) = post("second", delivery.clone()).await;
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(second["ok"], true, "{second}");
    let (_, _, bad) = post("bad", json!({ "event_payload": {} })).await;
    assert_eq!(bad["error"], "invalid_metadata_format");

    // A file shared into the channel is a message there too.
    let csv = "week,orders\n2026-W48,12\n";
    let step1 = call_form(
        base,
        "files.getUploadURLExternal",
        &[
            ("token", "sandbox"),
            ("filename", "weekly.csv"),
            ("length", &csv.len().to_string()),
        ],
    )
    .await;
    let file_id = step1["file_id"].as_str().expect("file id").to_string();
    reqwest::Client::new()
        .post(step1["upload_url"].as_str().expect("url"))
        .body(csv)
        .send()
        .await
        .expect("uploaded");
    let complete = json!({ "files": [{ "id": file_id, "title": "Weekly" }], "channel_id": "C0SANDBOX01", "initial_comment": "the rows" });
    let (_, _, done) = call_json(
        base,
        "files.completeUploadExternal",
        complete,
        Some("sandbox"),
    )
    .await;
    assert_eq!(done["ok"], true, "{done}");

    let (_, _, page) = call_json(
        base,
        "conversations.history",
        json!({ "channel": "C0SANDBOX01", "limit": 2, "include_all_metadata": true }),
        Some("sandbox"),
    )
    .await;
    assert_eq!(page["ok"], true, "{page}");
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["subtype"], "file_share", "newest first: {page}");
    assert_eq!(messages[0]["files"][0]["id"], file_id.as_str());
    assert_eq!(messages[0]["files"][0]["name"], "weekly.csv");
    assert_eq!(messages[1]["text"], "second");
    assert_eq!(messages[1]["metadata"], delivery);
    assert_eq!(page["has_more"], true);
    let cursor = page["response_metadata"]["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_string();

    // The next page, by form as SDKs send it; metadata only when asked for.
    let rest = call_form(
        base,
        "conversations.history",
        &[
            ("token", "sandbox"),
            ("channel", "C0SANDBOX01"),
            ("cursor", &cursor),
        ],
    )
    .await;
    assert_eq!(rest["messages"].as_array().map(Vec::len), Some(1), "{rest}");
    assert_eq!(rest["messages"][0]["text"], "first");
    assert_eq!(rest["has_more"], false);
    let plain = call_form(
        base,
        "conversations.history",
        &[
            ("token", "sandbox"),
            ("channel", "C0SANDBOX01"),
            ("limit", "5"),
        ],
    )
    .await;
    assert!(plain["messages"][1].get("metadata").is_none(), "{plain}");

    // `oldest` is exclusive: nothing after the newest ts.
    let newest = messages[0]["ts"].as_str().expect("ts");
    let none = call_form(
        base,
        "conversations.history",
        &[
            ("token", "sandbox"),
            ("channel", "C0SANDBOX01"),
            ("oldest", newest),
        ],
    )
    .await;
    assert_eq!(none["messages"], json!([]));
    // History is read by channel id; a name is not found, as in Slack.
    for name in ["#marketing", "marketing", "#nowhere"] {
        let unknown = call_form(
            base,
            "conversations.history",
            &[("token", "sandbox"), ("channel", name)],
        )
        .await;
        assert_eq!(unknown["error"], "channel_not_found", "{name}");
    }
}

#[tokio::test]
async fn conversations_list_pages_the_channels_by_type_and_leaves_out_archived_ones() {
    let sandbox = small_sandbox().await;
    let base = &sandbox.base_url;
    let (_, _, public) = call_json(base, "conversations.list", json!({}), Some("sandbox")).await;
    assert_eq!(public["ok"], true, "{public}");
    let names = |page: &Value| -> Vec<String> {
        page["channels"]
            .as_array()
            .expect("channels")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    // Public channels by default, archived ones included.
    assert_eq!(
        names(&public),
        ["marketing", "loyalty", "old-campaigns", "leadership"]
    );
    assert_eq!(public["channels"][0]["id"], "C0SANDBOX01");
    assert_eq!(public["channels"][3]["is_member"], false);
    let first = call_form(
        base,
        "conversations.list",
        &[
            ("token", "sandbox"),
            ("types", "public_channel,private_channel"),
            ("exclude_archived", "true"),
            ("limit", "2"),
        ],
    )
    .await;
    assert_eq!(names(&first), ["marketing", "loyalty"]);
    let cursor = first["response_metadata"]["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_string();
    assert!(!cursor.is_empty());
    let rest = call_form(
        base,
        "conversations.list",
        &[
            ("token", "sandbox"),
            ("types", "public_channel,private_channel"),
            ("exclude_archived", "true"),
            ("limit", "2"),
            ("cursor", &cursor),
        ],
    )
    .await;
    assert_eq!(names(&rest), ["leadership", "retention-team"]);
    assert_eq!(rest["channels"][1]["is_private"], true);
    assert_eq!(rest["response_metadata"]["next_cursor"], "");
    let bad = call_form(
        base,
        "conversations.list",
        &[("token", "sandbox"), ("cursor", "not-a-cursor")],
    )
    .await;
    assert_eq!(bad["error"], "invalid_cursor");
}

#[tokio::test]
async fn table_blocks_are_checked_one_per_message_within_100_rows_and_20_columns() {
    let sandbox = small_sandbox().await;
    let cell = |t: &str| json!({ "type": "raw_text", "text": t });
    let table = |rows: usize, columns: usize| {
        let rows: Vec<Value> = (0..rows)
            .map(|r| Value::Array((0..columns).map(|c| cell(&format!("{r},{c}"))).collect()))
            .collect();
        json!({ "type": "table", "rows": rows })
    };
    let post = |blocks: Value| {
        call_json(
            &sandbox.base_url,
            "chat.postMessage",
            json!({ "channel": "#marketing", "text": "table", "blocks": blocks }),
            Some("sandbox"),
        )
    };
    let (_, _, fits) = post(json!([table(100, 20)])).await;
    assert_eq!(fits["ok"], true, "{fits}");
    for blocks in [
        json!([table(101, 2)]),
        json!([table(2, 21)]),
        json!([table(2, 2), table(2, 2)]),
        json!([{ "type": "table", "rows": [[{ "type": "image" }]] }]),
    ] {
        let (_, _, refused) = post(blocks).await;
        assert_eq!(refused["error"], "invalid_blocks", "{refused}");
    }
}

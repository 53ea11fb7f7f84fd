//! Contract tests for the Google OAuth token endpoint and the Sheets simulator against
//! `api-reference/sheets.md` and `api-reference/bigquery.md` §1.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{assertion, claims, exchange, get_json, key_file, small_sandbox, token};

const SHEETS_SCOPE: &str = "https://www.googleapis.com/auth/spreadsheets";
const SHEET: &str = "1SandboxSheetMailroom0000000000000000000000";

#[tokio::test]
async fn the_key_file_is_a_service_account_key_whose_token_uri_points_at_the_sandbox() {
    let (a, b) = (small_sandbox().await, small_sandbox().await);
    let key = key_file(&a.base_url).await;
    assert_eq!(key["type"], "service_account");
    assert_eq!(key["token_uri"], format!("{}/oauth2/token", a.base_url));
    assert!(
        key["private_key"]
            .as_str()
            .is_some_and(|k| k.starts_with("-----BEGIN PRIVATE KEY-----"))
    );
    let other = key_file(&b.base_url).await;
    assert_eq!(
        key["private_key"], other["private_key"],
        "the same seed gives the same key"
    );
}

#[tokio::test]
async fn the_jwt_bearer_grant_is_checked_like_google_checks_it() {
    let sandbox = small_sandbox().await;
    let key = key_file(&sandbox.base_url).await;
    let (status, body) = exchange(&key, &assertion(&key, claims(&key, SHEETS_SCOPE))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (body["expires_in"].as_u64(), body["token_type"].as_str()),
        (Some(3599), Some("Bearer"))
    );

    let mut tampered = assertion(&key, claims(&key, SHEETS_SCOPE));
    tampered.replace_range(tampered.len() - 6.., "AAAAAA");
    let mut wrong_issuer = claims(&key, SHEETS_SCOPE);
    wrong_issuer["iss"] = json!("someone@else.iam.gserviceaccount.com");
    let mut too_long = claims(&key, SHEETS_SCOPE);
    too_long["exp"] = json!(too_long["iat"].as_i64().expect("iat") + 7200);
    let cases = [
        (tampered, "invalid_grant", "Invalid JWT Signature."),
        (
            assertion(&key, wrong_issuer),
            "invalid_grant",
            "Invalid grant: account not found",
        ),
        (assertion(&key, too_long), "invalid_grant", "short-lived"),
        (
            assertion(&key, claims(&key, "")),
            "invalid_scope",
            "Empty or missing scope",
        ),
    ];
    for (jwt, error, description) in cases {
        let (status, body) = exchange(&key, &jwt).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], error);
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(description)),
            "{body}"
        );
    }
    let response = reqwest::Client::new()
        .post(format!("{}/oauth2/token", sandbox.base_url))
        .form(&[("grant_type", "password")])
        .send()
        .await
        .expect("sent");
    assert_eq!(
        response.json::<Value>().await.expect("json")["error"],
        "unsupported_grant_type"
    );
}

struct Sheets {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Sheets {
    async fn new(base: &str) -> Self {
        Sheets {
            base: base.to_string(),
            token: token(base, SHEETS_SCOPE).await,
            client: reqwest::Client::new(),
        }
    }

    async fn append(&self, range: &str, query: &str, values: Value) -> (StatusCode, Value) {
        let range = range
            .replace('!', "%21")
            .replace(':', "%3A")
            .replace('\'', "%27")
            .replace(' ', "%20");
        let url = format!(
            "{}/sheets/v4/spreadsheets/{SHEET}/values/{range}:append?{query}",
            self.base
        );
        let response = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .json(&json!({ "values": values }))
            .send()
            .await
            .expect("sent");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }

    async fn get(&self, range: &str, query: &str) -> (StatusCode, Value) {
        let range = range.replace('!', "%21").replace(':', "%3A");
        let url = format!(
            "{}/sheets/v4/spreadsheets/{SHEET}/values/{range}?{query}",
            self.base
        );
        let response = self
            .client
            .get(url)
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("sent");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }

    async fn batch(&self, requests: Value) -> (StatusCode, Value) {
        let url = format!("{}/sheets/v4/spreadsheets/{SHEET}:batchUpdate", self.base);
        let response = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .json(&json!({ "requests": requests }))
            .send()
            .await
            .expect("sent");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }
}

#[tokio::test]
async fn sheets_requires_an_issued_token_with_a_sheets_scope() {
    let sandbox = small_sandbox().await;
    let url = format!("{}/sheets/v4/spreadsheets/{SHEET}", sandbox.base_url);
    let (status, _, body) = get_json(&url, &[]).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("UNAUTHENTICATED"))
    );
    let (status, _, _) = get_json(&url, &[("Authorization", "Bearer sandbox")]).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "only tokens from the OAuth endpoint"
    );
    let bigquery_only = token(
        &sandbox.base_url,
        "https://www.googleapis.com/auth/bigquery",
    )
    .await;
    let (status, _, body) = get_json(
        &url,
        &[("Authorization", &format!("Bearer {bigquery_only}"))],
    )
    .await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (StatusCode::FORBIDDEN, Some("PERMISSION_DENIED"))
    );
    let good = token(&sandbox.base_url, SHEETS_SCOPE).await;
    let (status, _, body) = get_json(&url, &[("Authorization", &format!("Bearer {good}"))]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sheets"][0]["properties"]["title"], "Sheet1");
    let (status, _, _) = get_json(
        &format!("{}/sheets/v4/spreadsheets/nope", sandbox.base_url),
        &[("Authorization", &format!("Bearer {good}"))],
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn append_writes_after_the_table_and_reports_the_updated_range() {
    let sandbox = small_sandbox().await;
    let sheets = Sheets::new(&sandbox.base_url).await;
    let (status, first) = sheets
        .append(
            "Sheet1!A1",
            "valueInputOption=RAW",
            json!([
                ["platform", "campaign", "opens"],
                ["iterable", "Spring sale", 410]
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["updates"]["updatedRange"], "Sheet1!A1:C2");
    assert_eq!(
        (
            first["updates"]["updatedRows"].as_u64(),
            first["updates"]["updatedCells"].as_u64()
        ),
        (Some(2), Some(6))
    );
    assert!(
        first.get("tableRange").is_none(),
        "no table in an empty sheet"
    );

    let (_, second) = sheets
        .append(
            "Sheet1!A1",
            "valueInputOption=USER_ENTERED&insertDataOption=INSERT_ROWS",
            json!([["dotdigital", "00123", "TRUE"]]),
        )
        .await;
    assert_eq!(second["tableRange"], "Sheet1!A1:C2");
    assert_eq!(second["updates"]["updatedRange"], "Sheet1!A3:C3");

    let (_, values) = sheets.get("Sheet1!A1:Z", "").await;
    assert_eq!(
        values["values"],
        json!([
            ["platform", "campaign", "opens"],
            ["iterable", "Spring sale", "410"],
            ["dotdigital", "123", "TRUE"]
        ]),
        "formatted values are strings; USER_ENTERED parsed 00123"
    );
    let (_, raw) = sheets
        .get("Sheet1!A1:C3", "valueRenderOption=UNFORMATTED_VALUE")
        .await;
    assert_eq!(raw["values"][2], json!(["dotdigital", 123, true]));
    let (_, empty) = sheets.get("Sheet1!F10:G12", "").await;
    assert!(
        empty.get("values").is_none(),
        "no data, no values key: {empty}"
    );

    let (status, body) = sheets.append("Sheet1!A1", "", json!([["x"]])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        "'valueInputOption' is required but not specified"
    );
    let (status, body) = sheets
        .append(
            "Sheet1!A1",
            "valueInputOption=RAW",
            json!([[{ "nested": true }]]),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("Invalid values[0][0]"))
    );
    let (status, body) = sheets
        .append("Nowhere!A1", "valueInputOption=RAW", json!([["x"]]))
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (
            StatusCode::BAD_REQUEST,
            Some("Unable to parse range: Nowhere!A1")
        )
    );

    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert_eq!(
        state["sheets"]["tabs"]["Sheet1"].as_array().map(Vec::len),
        Some(3)
    );
}

#[tokio::test]
async fn add_sheet_batches_are_atomic_and_titles_unique() {
    let sandbox = small_sandbox().await;
    let sheets = Sheets::new(&sandbox.base_url).await;
    let (status, body) = sheets.batch(json!([{ "addSheet": { "properties": { "title": "Weekly email", "gridProperties": { "rowCount": 2000, "columnCount": 12, "frozenRowCount": 1 } } } }])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let props = &body["replies"][0]["addSheet"]["properties"];
    assert_eq!(
        (
            props["title"].as_str(),
            props["index"].as_u64(),
            props["sheetType"].as_str()
        ),
        (Some("Weekly email"), Some(1), Some("GRID"))
    );
    assert_eq!(props["gridProperties"]["frozenRowCount"], 1);
    assert!(props["sheetId"].as_i64().is_some_and(|id| id >= 0));

    let (status, body) = sheets.batch(json!([{ "addSheet": { "properties": { "title": "Loyalty" } } }, { "addSheet": { "properties": { "title": "Weekly email" } } }])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["status"], "INVALID_ARGUMENT");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("A sheet with the name \"Weekly email\" already exists"))
    );
    let (_, values) = sheets
        .append("'Weekly email'!A1", "valueInputOption=RAW", json!([["ok"]]))
        .await;
    assert_eq!(values["updates"]["updatedRange"], "'Weekly email'!A1:A1");
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    assert!(
        state["sheets"]["tabs"].get("Loyalty").is_none(),
        "the failed batch added nothing"
    );
}

#[tokio::test]
async fn reads_over_the_per_minute_quota_get_429_resource_exhausted() {
    let sandbox = small_sandbox().await;
    let sheets = Sheets::new(&sandbox.base_url).await;
    for i in 0..60 {
        assert_eq!(
            sheets.get("Sheet1!A1:B2", "").await.0,
            StatusCode::OK,
            "read {i}"
        );
    }
    let (status, body) = sheets.get("Sheet1!A1:B2", "").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(body["error"]["details"][0]["reason"], "RATE_LIMIT_EXCEEDED");
    let (status, _) = sheets
        .append(
            "Sheet1!A1",
            "valueInputOption=RAW",
            json!([["writes have their own quota"]]),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn spreadsheets_create_makes_a_second_spreadsheet_that_reads_and_writes_like_the_first() {
    let sandbox = small_sandbox().await;
    let sheets = Sheets::new(&sandbox.base_url).await;
    let url = format!("{}/sheets/v4/spreadsheets", sandbox.base_url);
    let response = sheets
        .client
        .post(&url)
        .bearer_auth(&sheets.token)
        .json(&json!({
            "properties": { "title": "Weekly numbers", "timeZone": "Australia/Sydney" },
            "sheets": [{ "properties": { "title": "Summary" } }, { "properties": { "title": "Rows" } }]
        }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let created: Value = response.json().await.expect("json");
    let id = created["spreadsheetId"].as_str().expect("id").to_string();
    assert_ne!(id, SHEET);
    assert_eq!(created["properties"]["title"], "Weekly numbers");
    assert_eq!(created["sheets"][1]["properties"]["title"], "Rows");
    assert_eq!(
        created["spreadsheetUrl"],
        format!("https://docs.google.com/spreadsheets/d/{id}/edit")
    );

    // The new spreadsheet answers get and append; the seeded one is untouched.
    let (status, _, got) = get_json(
        &format!("{url}/{id}"),
        &[("Authorization", &format!("Bearer {}", sheets.token))],
    )
    .await;
    assert_eq!(
        (status, &got["properties"]["title"]),
        (StatusCode::OK, &json!("Weekly numbers"))
    );
    let append = format!("{url}/{id}/values/Rows%21A1:append?valueInputOption=RAW");
    let response = sheets
        .client
        .post(append)
        .bearer_auth(&sheets.token)
        .json(&json!({ "values": [["week", "orders"], ["2026-W48", 12]] }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let books = &state["sheets"]["spreadsheets"];
    assert_eq!(books[&id]["tabs"]["Rows"][1], json!(["2026-W48", 12]));
    assert_eq!(books[SHEET]["tabs"]["Sheet1"], json!([]));

    // Untitled with no sheets: one Sheet1, as Google does.
    let response = sheets
        .client
        .post(&url)
        .bearer_auth(&sheets.token)
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    let untitled: Value = response.json().await.expect("json");
    assert_eq!(untitled["sheets"][0]["properties"]["title"], "Sheet1");
    assert_ne!(untitled["spreadsheetId"], created["spreadsheetId"]);
}

impl Sheets {
    async fn update(&self, range: &str, input: &str, values: Value) -> (StatusCode, Value) {
        let range = range.replace('!', "%21").replace(':', "%3A");
        let url = format!(
            "{}/sheets/v4/spreadsheets/{SHEET}/values/{range}?valueInputOption={input}",
            self.base
        );
        let response = self
            .client
            .put(url)
            .bearer_auth(&self.token)
            .json(&json!({ "values": values }))
            .send()
            .await
            .expect("sent");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }

    async fn clear(&self, range: &str) -> (StatusCode, Value) {
        let range = range.replace('!', "%21").replace(':', "%3A");
        let url = format!(
            "{}/sheets/v4/spreadsheets/{SHEET}/values/{range}:clear",
            self.base
        );
        let response = self
            .client
            .post(url)
            .bearer_auth(&self.token)
            .json(&json!({}))
            .send()
            .await
            .expect("sent");
        let status = response.status();
        (status, response.json().await.expect("json"))
    }
}

#[tokio::test]
async fn update_writes_exactly_its_cells_and_clear_empties_a_range_and_nothing_else() {
    let sandbox = small_sandbox().await;
    let sheets = Sheets::new(&sandbox.base_url).await;
    let (status, body) = sheets
        .update(
            "Sheet1!A1",
            "RAW",
            json!([
                ["week", "orders", "note"],
                ["2026-W47", 10, "a"],
                ["2026-W48", 12, "b"]
            ]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["updatedRange"], "Sheet1!A1:C3");
    assert_eq!(body["updatedCells"], 9);

    // Idempotent: the same update again changes nothing; a smaller one leaves the rest.
    sheets
        .update("Sheet1!A2", "RAW", json!([["2026-W47", 10, "a"]]))
        .await;
    let (_, got) = sheets.get("Sheet1", "").await;
    assert_eq!(got["values"][2], json!(["2026-W48", "12", "b"]));

    // Writing past a bounded range is refused.
    let (status, _) = sheets
        .update("Sheet1!A2:B2", "RAW", json!([["x", 1, "too wide"]]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, cleared) = sheets.clear("Sheet1!A3:C3").await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["clearedRange"], "Sheet1!A3:C3");
    let (_, got) = sheets.get("Sheet1", "").await;
    assert_eq!(
        got["values"],
        json!([["week", "orders", "note"], ["2026-W47", "10", "a"]])
    );

    let (status, _) = sheets.update("Sheet1!A1", "", json!([["no option"]])).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "valueInputOption is required"
    );
}

#[tokio::test]
async fn user_entered_values_parse_as_typed_and_an_apostrophe_keeps_text() {
    let sandbox = small_sandbox().await;
    let sheets = Sheets::new(&sandbox.base_url).await;
    let (status, body) = sheets
        .update(
            "Sheet1!A1",
            "USER_ENTERED",
            json!([[
                "00123",
                "'00123",
                "'+61400111222",
                "2026-11-30",
                "2026-11-30 08:15:00",
                "TRUE",
                4.5
            ]]),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, _, state) = get_json(&format!("{}/_sandbox/state", sandbox.base_url), &[]).await;
    let row = &state["sheets"]["tabs"]["Sheet1"][0];
    assert_eq!(row[0], 123, "unquoted digits become a number");
    assert_eq!(
        row[1], "00123",
        "the apostrophe keeps text and is not stored"
    );
    assert_eq!(row[2], "+61400111222");
    assert_eq!(row[3], 46356, "a date is a serial number");
    assert!(
        row[4]
            .as_f64()
            .is_some_and(|d| (d - 46356.34375).abs() < 1e-9),
        "{row}"
    );
    assert_eq!(row[5], true);
    let dates = &state["sheets"]["spreadsheets"][SHEET]["date_cells"]["Sheet1"];
    assert_eq!(dates, &json!(["D1", "E1 (date-time)"]));
    // Shown as dates, kept as numbers.
    let (_, shown) = sheets.get("Sheet1!A1:G1", "").await;
    assert_eq!(
        shown["values"][0],
        json!([
            "123",
            "00123",
            "+61400111222",
            "2026-11-30",
            "2026-11-30 08:15:00",
            "TRUE",
            "4.5"
        ])
    );
    let (_, raw) = sheets
        .get("Sheet1!D1:D1", "valueRenderOption=UNFORMATTED_VALUE")
        .await;
    assert_eq!(raw["values"][0][0], 46356);
}

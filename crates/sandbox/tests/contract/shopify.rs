//! Contract tests for the Shopify Admin GraphQL simulator against
//! `api-reference/shopify-graphql.md`.

use std::collections::{BTreeSet, HashMap};

use reqwest::StatusCode;
use serde_json::{Value, json};

use mailroom_sandbox::SandboxOptions;
use mailroom_sandbox::shopify::bulk;

use crate::support::{SMALL_CUSTOMERS, SMALL_SEED, sandbox, small_sandbox, small_world};

struct Shop {
    url: String,
    client: reqwest::Client,
}

impl Shop {
    fn new(base: &str) -> Self {
        Shop {
            url: format!("{base}/shopify/admin/api/2026-10/graphql.json"),
            client: reqwest::Client::new(),
        }
    }

    async fn raw(&self, query: &str, variables: Value) -> (StatusCode, String) {
        let response = self
            .client
            .post(&self.url)
            .header("X-Shopify-Access-Token", "sandbox")
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("sent");
        (response.status(), response.text().await.expect("body"))
    }

    async fn query(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.raw(query, variables).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_str(&body).expect("JSON")
    }

    /// Like a real client: on THROTTLED, waits (requested − available) / restoreRate and retries.
    async fn query_patiently(&self, query: &str, variables: Value) -> Value {
        loop {
            let body = self.query(query, variables.clone()).await;
            if body["errors"][0]["extensions"]["code"] != "THROTTLED" {
                return body;
            }
            let cost = &body["extensions"]["cost"];
            let missing = cost["requestedQueryCost"].as_f64().unwrap_or(0.0)
                - cost["throttleStatus"]["currentlyAvailable"]
                    .as_f64()
                    .unwrap_or(0.0);
            let rate = cost["throttleStatus"]["restoreRate"]
                .as_f64()
                .unwrap_or(100.0);
            tokio::time::sleep(std::time::Duration::from_secs_f64(
                missing.max(0.0) / rate + 0.05,
            ))
            .await;
        }
    }
}

#[tokio::test]
async fn the_access_token_is_required_and_a_missing_query_is_a_400() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    let response = shop
        .client
        .post(&shop.url)
        .json(&json!({ "query": "{ shop { name } }" }))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["errors"]
            .as_str()
            .is_some_and(|e| e.starts_with("[API] Invalid API key")),
        "{body}"
    );

    let response = shop
        .client
        .post(&shop.url)
        .header("X-Shopify-Access-Token", "sandbox")
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        response.json::<Value>().await.expect("json"),
        json!({ "errors": { "query": "Required parameter missing or invalid" } })
    );
}

const ORDERS_PAGE: &str = "query Page($after: String, $q: String) { orders(first: 100, after: $after, query: $q, sortKey: UPDATED_AT) { pageInfo { hasNextPage endCursor } nodes { id legacyResourceId updatedAt cancelledAt totalPriceSet { shopMoney { amount currencyCode } } } } }";

async fn all_orders(shop: &Shop, filter: &str) -> Vec<Value> {
    let mut after = Value::Null;
    let mut orders = Vec::new();
    loop {
        let body = shop
            .query_patiently(ORDERS_PAGE, json!({ "after": after, "q": filter }))
            .await;
        assert!(body.get("errors").is_none(), "{body}");
        let connection = &body["data"]["orders"];
        orders.extend(
            connection["nodes"]
                .as_array()
                .expect("nodes")
                .iter()
                .cloned(),
        );
        if connection["pageInfo"]["hasNextPage"] == false {
            return orders;
        }
        after = connection["pageInfo"]["endCursor"].clone();
    }
}

#[tokio::test]
async fn orders_page_to_the_end_sorted_by_updated_at_with_every_order_once() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    let orders = all_orders(&shop, "").await;
    let w = small_world();
    let expected: Vec<_> = w.people().flat_map(|p| w.orders_of(&p)).collect();
    let ids: BTreeSet<&str> = orders
        .iter()
        .map(|o| o["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), orders.len(), "no duplicates");
    assert_eq!(orders.len(), expected.len());
    let updated: Vec<&str> = orders
        .iter()
        .map(|o| o["updatedAt"].as_str().expect("ts"))
        .collect();
    assert!(
        updated.windows(2).all(|w| w[0] <= w[1]),
        "ascending updatedAt"
    );
    let first = &orders[0];
    assert!(
        first["id"]
            .as_str()
            .expect("gid")
            .starts_with("gid://shopify/Order/")
    );
    assert!(
        first["legacyResourceId"].is_string(),
        "UnsignedInt64 as a string"
    );
    assert!(
        first["totalPriceSet"]["shopMoney"]["amount"].is_string(),
        "money as a string"
    );
    assert_eq!(first["totalPriceSet"]["shopMoney"]["currencyCode"], "AUD");
}

#[tokio::test]
async fn the_query_argument_filters_with_shopify_search_syntax() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    let since = "2026-09-01T00:00:00Z";
    let recent = all_orders(&shop, &format!("updated_at:>'{since}'")).await;
    let w = small_world();
    let expected = w
        .people()
        .flat_map(|p| w.orders_of(&p))
        .filter(|o| o.updated_at.to_rfc3339() > since.replace('Z', "+00:00"))
        .count();
    assert_eq!(recent.len(), expected);
    assert!(
        recent
            .iter()
            .all(|o| o["updatedAt"].as_str().expect("ts") > since)
    );
    let cancelled = all_orders(&shop, "status:cancelled").await;
    assert!(!cancelled.is_empty());
    assert!(cancelled.iter().all(|o| !o["cancelledAt"].is_null()));
    let none = all_orders(&shop, "status:cancelled AND NOT status:cancelled").await;
    assert!(none.is_empty());
}

#[tokio::test]
async fn customers_carry_consent_counts_and_emails_as_shopify_has_them() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    let body = shop
        .query(
            "{ customers(first: 200) { nodes { id email numberOfOrders amountSpent { amount currencyCode } emailMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt } defaultEmailAddress { emailAddress marketingState } } } }",
            json!({}),
        )
        .await;
    let customers = body["data"]["customers"]["nodes"]
        .as_array()
        .expect("nodes");
    assert_eq!(customers.len(), 200);
    let w = small_world();
    let person = w.person(29);
    let c = customers
        .iter()
        .find(|c| c["id"] == "gid://shopify/Customer/7000029")
        .expect("customer 29");
    assert_eq!(c["email"], person.shopify_email.as_str());
    assert_ne!(
        person.shopify_email, person.email,
        "this e-mail differs from the others only in case"
    );
    assert_eq!(c["numberOfOrders"], person.order_count.to_string());
    let states: BTreeSet<&str> = customers
        .iter()
        .map(|c| {
            c["emailMarketingConsent"]["marketingState"]
                .as_str()
                .expect("state")
        })
        .collect();
    assert_eq!(
        states,
        BTreeSet::from(["NOT_SUBSCRIBED", "SUBSCRIBED", "UNSUBSCRIBED"])
    );
    assert!(
        customers
            .iter()
            .all(|c| c["emailMarketingConsent"]["marketingState"]
                == c["defaultEmailAddress"]["marketingState"])
    );
}

#[tokio::test]
async fn every_answer_carries_its_cost_and_the_bucket() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    let (_, raw) = shop
        .raw(
            "{ orders(first: 10) { nodes { id totalPriceSet { shopMoney { amount } } } } }",
            json!({}),
        )
        .await;
    assert!(
        raw.contains("\"maximumAvailable\":2000.0") && raw.contains("\"restoreRate\":100.0"),
        "floats: {raw}"
    );
    let body: Value = serde_json::from_str(&raw).expect("json");
    let cost = &body["extensions"]["cost"];
    assert_eq!(
        cost["requestedQueryCost"],
        2 + 10 * 3,
        "2 + nodes × (node 1 + MoneyBag 1 + MoneyV2 1)"
    );
    assert!(cost["actualQueryCost"].as_u64() <= cost["requestedQueryCost"].as_u64());
    assert!(cost["throttleStatus"]["currentlyAvailable"].is_i64());
}

#[tokio::test]
async fn an_empty_bucket_answers_throttled_in_a_200_and_big_queries_exceed_the_max_cost() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    let heavy = "{ orders(first: 249) { nodes { id customer { id } totalPriceSet { shopMoney { amount } } } } }";
    let started = std::time::Instant::now();
    let mut throttled = None;
    for _ in 0..4 {
        let body = shop.query(heavy, json!({})).await;
        assert_eq!(body["extensions"]["cost"]["requestedQueryCost"], 998);
        if body["errors"][0]["extensions"]["code"] == "THROTTLED" {
            throttled = Some(body);
            break;
        }
    }
    if started.elapsed() < std::time::Duration::from_secs(8) {
        let body = throttled.expect("the bucket of 2000 empties after two 998-point queries");
        assert!(body.get("data").is_none());
        assert!(body["extensions"]["cost"]["actualQueryCost"].is_null());
        assert!(
            body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"].as_i64() < Some(998)
        );
    }

    let body = shop
        .query(
            "{ orders(first: 250) { nodes { id lineItems(first: 50) { nodes { id } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED");
    assert_eq!(body["errors"][0]["extensions"]["maxCost"], 1000);
    assert!(body.get("extensions").is_none(), "no top-level cost block");
}

#[tokio::test]
async fn invalid_queries_get_errors_without_data() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    let cases = [
        (
            "{ orders(first: 2) { nodes { id bogus } } }",
            "undefinedField",
        ),
        (
            "{ orders { nodes { id } } }",
            "argumentLiteralsIncompatible",
        ),
        (
            "{ orders(first: 251) { nodes { id } } }",
            "argumentLiteralsIncompatible",
        ),
        (
            "{ orders(first: 1) { nodes { id { x } } } }",
            "selectionMismatch",
        ),
    ];
    for (query, code) in cases {
        let body = shop.query(query, json!({})).await;
        assert!(body.get("data").is_none(), "{query}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], code,
            "{query}: {body}"
        );
        assert!(body["errors"][0]["locations"][0]["line"].is_u64());
    }
    let body = shop
        .query("{ orders(first: 2) { nodes { bogus } } }", json!({}))
        .await;
    assert_eq!(
        body["errors"][0]["path"],
        json!(["query", "orders", "nodes", "bogus"])
    );
    let body = shop
        .query("{ orders(first: 2 { nodes { id } } }", json!({}))
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Parse error")),
        "{body}"
    );
}

#[tokio::test]
async fn nodes_edges_fragments_and_node_lookup_work_together() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    let body = shop
        .query(
            "query { orders(first: 3, reverse: true, sortKey: ID) { edges { cursor node { ...O } } } } fragment O on Order { id name lineItems(first: 2) { nodes { sku } } }",
            json!({}),
        )
        .await;
    let edges = body["data"]["orders"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 3);
    let id = edges[0]["node"]["id"].as_str().expect("id").to_string();
    let body = shop
        .query(
            "query($id: ID!) { node(id: $id) { id ... on Order { name } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(body["data"]["node"]["id"], id.as_str());
    assert_eq!(body["data"]["node"]["name"], edges[0]["node"]["name"]);
}

async fn run_bulk(shop: &Shop, query: &str) -> Value {
    let mutation = "mutation($q: String!) { bulkOperationRunQuery(query: $q, groupObjects: false) { bulkOperation { id status } userErrors { field message code } } }";
    let body = shop.query(mutation, json!({ "q": query })).await;
    body["data"]["bulkOperationRunQuery"].clone()
}

/// The id of the operation `bulkOperationRunQuery` answered with, once it raised no error.
fn operation_id(started: &Value) -> String {
    assert_eq!(started["userErrors"], json!([]), "{started}");
    started["bulkOperation"]["id"]
        .as_str()
        .expect("id")
        .to_string()
}

/// A sandbox started with `options`, a client of its shop, and the id of the orders export
/// just started there.
async fn sandbox_with_an_export(
    options: SandboxOptions,
) -> (mailroom_sandbox::RunningSandbox, Shop, String) {
    let sandbox = sandbox(options).await;
    let shop = Shop::new(&sandbox.base_url);
    let id = operation_id(&run_bulk(&shop, ORDERS_EXPORT).await);
    (sandbox, shop, id)
}

const POLL: &str = "query($id: ID!) { bulkOperation(id: $id) { id status objectCount rootObjectCount fileSize url partialDataUrl completedAt } }";

/// Polls every 100 ms until the operation leaves `CREATED`/`RUNNING`/`CANCELING`; the
/// statuses seen, in order without repeats, and the last answer.
async fn poll_until_settled(shop: &Shop, id: &str) -> (Vec<String>, Value) {
    let mut statuses: Vec<String> = Vec::new();
    for _ in 0..300 {
        let operation =
            shop.query(POLL, json!({ "id": id })).await["data"]["bulkOperation"].clone();
        let status = operation["status"].as_str().expect("status").to_string();
        if statuses.last() != Some(&status) {
            statuses.push(status.clone());
        }
        if !matches!(status.as_str(), "CREATED" | "RUNNING" | "CANCELING") {
            return (statuses, operation);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("operation {id} never settled: {statuses:?}");
}

const ORDERS_EXPORT: &str = "{ orders(query: \"updated_at:>='2026-06-01T00:00:00Z'\", sortKey: UPDATED_AT) { edges { node { id name totalPriceSet { shopMoney { amount } } customer { id } lineItems { edges { node { id sku quantity } } } } } } }";

#[tokio::test]
async fn bulk_operations_run_on_their_own_clock_to_a_jsonl_file_with_parent_ids() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    let started = run_bulk(&shop, ORDERS_EXPORT).await;
    assert_eq!(started["bulkOperation"]["status"], "CREATED");
    let id = operation_id(&started);

    // Nobody polls: the operation still finishes in the background, as Shopify's do.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (statuses, operation) = poll_until_settled(&shop, &id).await;
    assert_eq!(statuses, ["COMPLETED"], "finished without being polled");
    assert!(operation["completedAt"].is_string(), "{operation}");
    let url = operation["url"].as_str().expect("a result URL");
    let jsonl = reqwest::get(url)
        .await
        .expect("download without a token")
        .text()
        .await
        .expect("text");
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(operation["objectCount"], lines.len().to_string());
    assert_eq!(operation["fileSize"], jsonl.len().to_string());
    // The result is a file written once: the same bytes on every download.
    let again = reqwest::get(url)
        .await
        .expect("downloaded again")
        .text()
        .await
        .expect("text");
    assert_eq!(again, jsonl);

    let w = small_world();
    let since = chrono::DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z").expect("ts");
    let orders: Vec<_> = w
        .people()
        .flat_map(|p| w.orders_of(&p))
        .filter(|o| o.updated_at >= since)
        .collect();
    let roots: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("__parentId").is_none())
        .collect();
    assert_eq!(roots.len(), orders.len());
    assert_eq!(operation["rootObjectCount"], orders.len().to_string());
    let children: Vec<&Value> = lines
        .iter()
        .filter(|l| l.get("__parentId").is_some())
        .collect();
    assert_eq!(
        children.len(),
        orders.iter().map(|o| o.lines.len()).sum::<usize>()
    );
    let root_ids: BTreeSet<&str> = roots
        .iter()
        .map(|r| r["id"].as_str().expect("id"))
        .collect();
    assert!(
        children
            .iter()
            .all(|c| root_ids.contains(c["__parentId"].as_str().expect("parent")))
    );
    assert!(lines.iter().all(|l| l.get("edges").is_none()
        && l.get("node").is_none()
        && l.get("lineItems").is_none()));
    assert!(
        roots[0]["customer"]["id"].is_string(),
        "nested objects stay inline"
    );

    let mut position: HashMap<&str, usize> = HashMap::new();
    for (i, line) in lines.iter().enumerate() {
        if let Some(id) = line["id"].as_str() {
            position.insert(id, i);
        }
    }
    assert!(
        children
            .iter()
            .any(|c| position[c["__parentId"].as_str().expect("parent")]
                > position[c["id"].as_str().expect("id")]),
        "groupObjects: false gives no ordering guarantee"
    );

    let tampered = url.replace("signature=", "signature=0");
    assert_eq!(
        reqwest::get(&tampered).await.expect("sent").status(),
        StatusCode::FORBIDDEN
    );
    let current = shop
        .query("{ currentBulkOperation { id status } }", json!({}))
        .await;
    assert_eq!(current["data"]["currentBulkOperation"]["id"], id.as_str());
    let node = shop
        .query(
            "query($id: ID!) { node(id: $id) { ... on BulkOperation { status } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(node["data"]["node"]["status"], "COMPLETED");
}

#[tokio::test]
async fn invalid_bulk_queries_come_back_as_user_errors() {
    let sandbox = small_sandbox().await;
    let shop = Shop::new(&sandbox.base_url);
    for query in [
        "{ orders { edges { node { id } } } customers { edges { node { id } } } }",
        "{ shop { name } }",
        "{ orders { edges { node { nope } } } }",
    ] {
        let payload = run_bulk(&shop, query).await;
        assert!(payload["bulkOperation"].is_null(), "{query}");
        assert_eq!(
            payload["userErrors"][0]["code"], "INVALID",
            "{query}: {payload}"
        );
        assert_eq!(payload["userErrors"][0]["field"], json!(["query"]));
    }
}

#[tokio::test]
async fn a_bulk_operation_shows_running_until_its_minimum_duration_has_passed() {
    let mut options = SandboxOptions::new(SMALL_SEED, SMALL_CUSTOMERS);
    options.shopify_bulk_duration = std::time::Duration::from_secs(2);
    let (_sandbox, shop, id) = sandbox_with_an_export(options).await;
    let (statuses, operation) = poll_until_settled(&shop, &id).await;
    assert_eq!(statuses.last().map(String::as_str), Some("COMPLETED"));
    assert!(statuses.contains(&"RUNNING".to_string()), "{statuses:?}");
    assert!(operation["url"].is_string());
}

#[tokio::test]
async fn a_completed_result_expires_keeping_its_counts_but_not_its_url() {
    let mut options = SandboxOptions::new(SMALL_SEED, SMALL_CUSTOMERS);
    options.shopify_bulk_duration = std::time::Duration::ZERO;
    options.shopify_result_ttl = std::time::Duration::from_secs(2);
    let (_sandbox, shop, id) = sandbox_with_an_export(options).await;
    let (_, completed) = poll_until_settled(&shop, &id).await;
    assert_eq!(completed["status"], "COMPLETED");
    let url = completed["url"].as_str().expect("a result URL").to_string();
    let download = reqwest::get(&url).await.expect("download");
    assert_eq!(download.status(), 200);

    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    let expired = shop.query(POLL, json!({ "id": id })).await["data"]["bulkOperation"].clone();
    assert_eq!(expired["status"], "EXPIRED", "{expired}");
    assert!(expired["url"].is_null(), "{expired}");
    assert_eq!(expired["objectCount"], completed["objectCount"]);
    assert_eq!(expired["completedAt"], completed["completedAt"]);
    let gone = reqwest::get(&url).await.expect("download after expiry");
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn five_running_operations_fill_the_shop_and_a_cancel_frees_a_slot() {
    let mut options = SandboxOptions::new(SMALL_SEED, SMALL_CUSTOMERS);
    options.shopify_bulk_duration = std::time::Duration::from_secs(600);
    let sandbox = sandbox(options).await;
    let shop = Shop::new(&sandbox.base_url);
    let mut ids = Vec::new();
    for _ in 0..bulk::MAX_RUNNING {
        ids.push(operation_id(&run_bulk(&shop, ORDERS_EXPORT).await));
    }
    let refused = run_bulk(&shop, ORDERS_EXPORT).await;
    assert!(refused["bulkOperation"].is_null());
    assert_eq!(
        refused["userErrors"][0]["code"], "LIMIT_REACHED",
        "{refused}"
    );

    // The shop's operations, filtered by status, oldest first, with their queries.
    let list = "query($q: String) { bulkOperations(first: 10, query: $q) { nodes { id status query createdAt } pageInfo { hasNextPage } } }";
    let running = shop
        .query(list, json!({ "q": "status:created OR status:running" }))
        .await;
    let nodes = running["data"]["bulkOperations"]["nodes"]
        .as_array()
        .unwrap_or_else(|| panic!("{running}"));
    let listed: Vec<&str> = nodes
        .iter()
        .map(|n| n["id"].as_str().expect("id"))
        .collect();
    assert_eq!(listed, ids.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(nodes.iter().all(|n| n["query"] == ORDERS_EXPORT));

    let cancel = "mutation($id: ID!) { bulkOperationCancel(id: $id) { bulkOperation { id status } userErrors { field message } } }";
    let canceled = shop.query(cancel, json!({ "id": ids[0] })).await;
    let payload = &canceled["data"]["bulkOperationCancel"];
    assert_eq!(payload["userErrors"], json!([]), "{canceled}");
    assert_eq!(payload["bulkOperation"]["status"], "CANCELING");
    let (statuses, _) = poll_until_settled(&shop, &ids[0]).await;
    assert_eq!(statuses.last().map(String::as_str), Some("CANCELED"));
    let again = shop.query(cancel, json!({ "id": ids[0] })).await;
    assert!(
        again["data"]["bulkOperationCancel"]["userErrors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("canceled")),
        "{again}"
    );
    let none = shop.query(list, json!({ "q": "status:canceling" })).await;
    assert_eq!(none["data"]["bulkOperations"]["nodes"], json!([]));

    let started = run_bulk(&shop, ORDERS_EXPORT).await;
    assert_eq!(
        started["userErrors"],
        json!([]),
        "the canceled one's slot is free: {started}"
    );
}

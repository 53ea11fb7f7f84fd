//! Contract tests for the BigQuery simulator against `api-reference/bigquery.md`: datasets
//! and tables, Parquet loads by multipart and resumable upload, client job ids, dispositions,
//! `useLegacySql` defaulting to true, and paged query results run by DataFusion.

use std::sync::Arc;

use datafusion::arrow::array::{Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{small_sandbox, token};

const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";
const PROJECT: &str = "sandbox-project";

/// Orders as Parquet: ids from `first`, `n` of them, with a padding column of `pad` bytes.
fn parquet(first: i64, n: usize, pad: usize) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("email", DataType::Utf8, true),
        Field::new("total", DataType::Float64, true),
        Field::new(
            "ordered_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("note", DataType::Utf8, true),
    ]));
    let ids: Vec<i64> = (first..first + n as i64).collect();
    let emails: Vec<String> = ids
        .iter()
        .map(|i| format!("customer{}@example.com", i % 3))
        .collect();
    let notes: Vec<String> = ids
        .iter()
        .map(|i| format!("{i:0>width$}", width = pad))
        .collect();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(ids.clone())),
            Arc::new(StringArray::from(emails)),
            Arc::new(Float64Array::from(
                ids.iter().map(|i| *i as f64 * 10.5).collect::<Vec<_>>(),
            )),
            Arc::new(
                TimestampMicrosecondArray::from(
                    ids.iter()
                        .map(|i| 1_726_294_800_000_000 + i * 1_000_000)
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(notes)),
        ],
    )
    .expect("batch");
    let mut bytes = Vec::new();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_compression(parquet::basic::Compression::UNCOMPRESSED)
        .build();
    let mut writer =
        parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, Some(props)).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    bytes
}

struct Bq {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Bq {
    async fn new(base: &str) -> Self {
        Bq {
            base: base.to_string(),
            token: token(base, SCOPE).await,
            client: reqwest::Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/bigquery/bigquery/v2/projects/{PROJECT}{path}",
            self.base
        )
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.bearer_auth(&self.token).send().await.expect("sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(self.client.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    async fn dataset(&self, id: &str) {
        let (status, body) = self.post("/datasets", json!({ "datasetReference": { "projectId": PROJECT, "datasetId": id }, "location": "US" })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    async fn load_multipart(
        &self,
        job_id: &str,
        table: &str,
        data: Vec<u8>,
        write: &str,
        create: &str,
    ) -> (StatusCode, Value) {
        let metadata = json!({
            "jobReference": { "projectId": PROJECT, "jobId": job_id, "location": "US" },
            "configuration": { "load": { "destinationTable": { "projectId": PROJECT, "datasetId": "crm", "tableId": table }, "sourceFormat": "PARQUET", "writeDisposition": write, "createDisposition": create } }
        });
        let mut body = Vec::new();
        body.extend_from_slice(
            b"--bq_boundary_7f3a\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n",
        );
        body.extend_from_slice(metadata.to_string().as_bytes());
        body.extend_from_slice(
            b"\r\n--bq_boundary_7f3a\r\nContent-Type: application/octet-stream\r\n\r\n",
        );
        body.extend_from_slice(&data);
        body.extend_from_slice(b"\r\n--bq_boundary_7f3a--\r\n");
        let url = format!(
            "{}/bigquery/upload/bigquery/v2/projects/{PROJECT}/jobs?uploadType=multipart",
            self.base
        );
        self.send(
            self.client
                .post(url)
                .header(
                    "Content-Type",
                    "multipart/related; boundary=bq_boundary_7f3a",
                )
                .body(body),
        )
        .await
    }

    async fn query(&self, sql: &str, extra: Value) -> (StatusCode, Value) {
        let mut body = json!({ "query": sql, "useLegacySql": false });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        self.post("/queries", body).await
    }
}

#[tokio::test]
async fn tokens_and_projects_are_checked_and_datasets_and_tables_behave() {
    let sandbox = small_sandbox().await;
    let bq = Bq::new(&sandbox.base_url).await;
    let (status, _) = (
        bq.client
            .get(bq.url("/datasets"))
            .send()
            .await
            .expect("sent")
            .status(),
        (),
    );
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = bq
        .send(bq.client.get(format!(
            "{}/bigquery/bigquery/v2/projects/other/datasets",
            sandbox.base_url
        )))
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (StatusCode::NOT_FOUND, Some("Not found: Project other"))
    );

    bq.dataset("crm").await;
    let (status, body) = bq
        .post(
            "/datasets",
            json!({ "datasetReference": { "projectId": PROJECT, "datasetId": "crm" } }),
        )
        .await;
    assert_eq!(
        (status, body["error"]["errors"][0]["reason"].as_str()),
        (StatusCode::CONFLICT, Some("duplicate"))
    );
    let table = json!({ "tableReference": { "projectId": PROJECT, "datasetId": "crm", "tableId": "customers" }, "schema": { "fields": [{ "name": "id", "type": "INTEGER", "mode": "REQUIRED" }, { "name": "email", "type": "STRING" }] } });
    let (status, created) = bq.post("/datasets/crm/tables", table.clone()).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert_eq!(created["numRows"], "0", "int64 counts are strings");
    let (status, body) = bq.post("/datasets/crm/tables", table).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("Already Exists: Table sandbox-project:crm.customers")
        )
    );
    let (status, body) = bq.get("/datasets/crm/tables/nope").await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (
            StatusCode::NOT_FOUND,
            Some("Not found: Table sandbox-project:crm.nope")
        )
    );
}

#[tokio::test]
async fn multipart_loads_complete_on_poll_and_a_reused_job_id_never_loads_twice() {
    let sandbox = small_sandbox().await;
    let bq = Bq::new(&sandbox.base_url).await;
    bq.dataset("crm").await;
    let (status, job) = bq
        .load_multipart(
            "load_orders_1",
            "orders",
            parquet(1, 3, 4),
            "WRITE_APPEND",
            "CREATE_IF_NEEDED",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["status"]["state"], "RUNNING");
    assert_eq!(job["id"], "sandbox-project:US.load_orders_1");
    let (_, table) = bq.get("/datasets/crm/tables/orders").await;
    assert_eq!(
        table["error"]["code"], 404,
        "nothing is visible before the job completes"
    );

    let (_, done) = bq.get("/jobs/load_orders_1").await;
    assert_eq!(done["status"], json!({ "state": "DONE" }));
    assert_eq!(done["statistics"]["load"]["outputRows"], "3");
    let (_, table) = bq.get("/datasets/crm/tables/orders").await;
    assert_eq!(table["numRows"], "3");
    assert_eq!(
        table["schema"]["fields"][3],
        json!({ "name": "ordered_at", "type": "TIMESTAMP", "mode": "NULLABLE" })
    );

    let (status, body) = bq
        .load_multipart(
            "load_orders_1",
            "orders",
            parquet(1, 3, 4),
            "WRITE_APPEND",
            "CREATE_IF_NEEDED",
        )
        .await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("Already Exists: Job sandbox-project:US.load_orders_1")
        )
    );
    let (_, table) = bq.get("/datasets/crm/tables/orders").await;
    assert_eq!(
        table["numRows"], "3",
        "the retry found the job instead of loading twice"
    );
}

#[tokio::test]
async fn write_and_create_dispositions_are_applied_at_completion() {
    let sandbox = small_sandbox().await;
    let bq = Bq::new(&sandbox.base_url).await;
    bq.dataset("crm").await;
    bq.load_multipart(
        "a",
        "orders",
        parquet(1, 5, 4),
        "WRITE_APPEND",
        "CREATE_IF_NEEDED",
    )
    .await;
    bq.get("/jobs/a").await;
    bq.load_multipart(
        "b",
        "orders",
        parquet(100, 2, 4),
        "WRITE_TRUNCATE",
        "CREATE_IF_NEEDED",
    )
    .await;
    bq.get("/jobs/b").await;
    assert_eq!(
        bq.get("/datasets/crm/tables/orders").await.1["numRows"],
        "2"
    );
    bq.load_multipart(
        "c",
        "orders",
        parquet(200, 2, 4),
        "WRITE_EMPTY",
        "CREATE_IF_NEEDED",
    )
    .await;
    let (status, job) = bq.get("/jobs/c").await;
    assert_eq!(status, StatusCode::OK, "job failures are not HTTP errors");
    assert_eq!(job["status"]["errorResult"]["reason"], "duplicate");
    bq.load_multipart(
        "d",
        "missing",
        parquet(1, 1, 4),
        "WRITE_APPEND",
        "CREATE_NEVER",
    )
    .await;
    assert_eq!(
        bq.get("/jobs/d").await.1["status"]["errorResult"]["reason"],
        "notFound"
    );
}

#[tokio::test]
async fn resumable_uploads_take_256_kib_chunks_and_report_progress_with_308() {
    let sandbox = small_sandbox().await;
    let bq = Bq::new(&sandbox.base_url).await;
    bq.dataset("crm").await;
    let data = parquet(1, 3000, 120);
    assert!(data.len() > 262_144, "{} bytes", data.len());
    let job = json!({ "jobReference": { "projectId": PROJECT, "jobId": "load_big", "location": "US" }, "configuration": { "load": { "destinationTable": { "projectId": PROJECT, "datasetId": "crm", "tableId": "big" }, "sourceFormat": "PARQUET" } } });
    let start = bq
        .client
        .post(format!(
            "{}/bigquery/upload/bigquery/v2/projects/{PROJECT}/jobs?uploadType=resumable",
            sandbox.base_url
        ))
        .bearer_auth(&bq.token)
        .json(&job)
        .send()
        .await
        .expect("sent");
    assert_eq!(start.status(), StatusCode::OK);
    let location = start.headers()["location"]
        .to_str()
        .expect("Location")
        .to_string();
    let total = data.len();
    let first = bq
        .client
        .put(&location)
        .bearer_auth(&bq.token)
        .header("Content-Range", format!("bytes 0-262143/{total}"))
        .body(data[..262_144].to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(first.status().as_u16(), 308);
    assert_eq!(first.headers()["range"], "bytes=0-262143");
    let status = bq
        .client
        .put(&location)
        .bearer_auth(&bq.token)
        .header("Content-Range", format!("bytes */{total}"))
        .body(Vec::new())
        .send()
        .await
        .expect("sent");
    assert_eq!(
        (
            status.status().as_u16(),
            status.headers()["range"].to_str().ok()
        ),
        (308, Some("bytes=0-262143")),
        "a status query reports what was received"
    );
    let last = bq
        .client
        .put(&location)
        .bearer_auth(&bq.token)
        .header(
            "Content-Range",
            format!("bytes 262144-{}/{total}", total - 1),
        )
        .body(data[262_144..].to_vec())
        .send()
        .await
        .expect("sent");
    assert_eq!(last.status(), StatusCode::OK);
    let job: Value = last.json().await.expect("job");
    assert_eq!(job["jobReference"]["jobId"], "load_big");
    assert_eq!(
        bq.get("/jobs/load_big").await.1["statistics"]["load"]["outputRows"],
        "3000"
    );
}

#[tokio::test]
async fn uploads_of_several_megabytes_are_taken_whole() {
    let sandbox = small_sandbox().await;
    let bq = Bq::new(&sandbox.base_url).await;
    bq.dataset("crm").await;
    // More than a web framework's usual 2 MB body limit, as an 8 MiB chunk or a multipart
    // file of a few megabytes is.
    let data = parquet(1, 20_000, 200);
    assert!(data.len() > 3_000_000, "{} bytes", data.len());
    let (status, _) = bq
        .load_multipart(
            "several_mb",
            "wide",
            data,
            "WRITE_APPEND",
            "CREATE_IF_NEEDED",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        bq.get("/jobs/several_mb").await.1["statistics"]["load"]["outputRows"],
        "20000"
    );
}

#[tokio::test]
async fn queries_need_use_legacy_sql_false_and_page_through_results() {
    let sandbox = small_sandbox().await;
    let bq = Bq::new(&sandbox.base_url).await;
    bq.dataset("crm").await;
    bq.load_multipart(
        "seed",
        "orders",
        parquet(1, 7, 4),
        "WRITE_APPEND",
        "CREATE_IF_NEEDED",
    )
    .await;
    bq.get("/jobs/seed").await;

    let sql = "SELECT email, COUNT(*) AS orders, SUM(total) AS spent, MAX(ordered_at) AS last_order_at FROM `sandbox-project.crm.orders` GROUP BY email ORDER BY email";
    let (status, body) = bq.post("/queries", json!({ "query": sql })).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "useLegacySql defaults to true"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Try using standard SQL")),
        "{body}"
    );

    let (status, first) = bq.query(sql, json!({ "maxResults": 2 })).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["kind"], "bigquery#queryResponse");
    assert_eq!(first["jobComplete"], true);
    assert_eq!(first["totalRows"], "3");
    assert_eq!(
        first["schema"]["fields"][1],
        json!({ "name": "orders", "type": "INTEGER", "mode": "NULLABLE" })
    );
    assert_eq!(first["schema"]["fields"][3]["type"], "TIMESTAMP");
    assert_eq!(first["rows"][0]["f"][0]["v"], "customer0@example.com");
    assert_eq!(first["rows"][0]["f"][1]["v"], "2", "INTEGER as a string");
    assert!(
        first["rows"][0]["f"][3]["v"]
            .as_str()
            .is_some_and(|t| t.contains('E')),
        "TIMESTAMP as float seconds"
    );
    let mut rows = first["rows"].as_array().expect("rows").clone();
    let job = first["jobReference"]["jobId"]
        .as_str()
        .expect("job id")
        .to_string();
    let mut token = first["pageToken"].as_str().map(str::to_string);
    while let Some(t) = token {
        let (_, page) = bq
            .get(&format!("/queries/{job}?maxResults=2&pageToken={t}"))
            .await;
        assert_eq!(page["kind"], "bigquery#getQueryResultsResponse");
        rows.extend(page["rows"].as_array().expect("rows").iter().cloned());
        token = page["pageToken"].as_str().map(str::to_string);
    }
    let emails: Vec<&str> = rows
        .iter()
        .map(|r| r["f"][0]["v"].as_str().expect("email"))
        .collect();
    assert_eq!(
        emails,
        [
            "customer0@example.com",
            "customer1@example.com",
            "customer2@example.com"
        ]
    );

    let (status, body) = bq
        .query("SELECT * FROM `sandbox-project.crm.nope`", json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["errors"][0]["reason"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalidQuery"))
    );
    let (status, body) = bq
        .query(
            "SELECT SOUNDEX(email) FROM `sandbox-project.crm.orders`",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("SOUNDEX")),
        "{body}"
    );
}

#[tokio::test]
async fn query_jobs_run_through_jobs_insert_and_default_datasets_resolve_short_names() {
    let sandbox = small_sandbox().await;
    let bq = Bq::new(&sandbox.base_url).await;
    bq.dataset("crm").await;
    bq.load_multipart(
        "seed",
        "orders",
        parquet(1, 4, 4),
        "WRITE_APPEND",
        "CREATE_IF_NEEDED",
    )
    .await;
    bq.get("/jobs/seed").await;
    let job = json!({ "jobReference": { "jobId": "q1" }, "configuration": { "query": { "query": "SELECT SAFE_DIVIDE(SUM(total), COUNT(*)) AS avg_total FROM orders", "useLegacySql": false, "defaultDataset": { "projectId": PROJECT, "datasetId": "crm" } } } });
    let (status, inserted) = bq.post("/jobs", job).await;
    assert_eq!(status, StatusCode::OK, "{inserted}");
    assert_eq!(bq.get("/jobs/q1").await.1["status"]["state"], "DONE");
    let (_, results) = bq.get("/queries/q1").await;
    assert_eq!(results["rows"][0]["f"][0]["v"], "26.25");
}

#[tokio::test]
async fn int64_timestamps_are_given_when_jobs_query_or_get_query_results_ask_for_them() {
    let sandbox = small_sandbox().await;
    let bq = Bq::new(&sandbox.base_url).await;
    bq.dataset("crm").await;
    bq.load_multipart(
        "seed",
        "orders",
        parquet(1, 3, 4),
        "WRITE_APPEND",
        "CREATE_IF_NEEDED",
    )
    .await;
    bq.get("/jobs/seed").await;
    let sql = "SELECT ordered_at FROM `sandbox-project.crm.orders` ORDER BY id LIMIT 1";
    // Row 1 was stamped 1_726_294_800 s + 1 s, in microseconds.
    let micros = "1726294801000000";

    // In the request body, as Google's client libraries send it (a JSON boolean; some
    // send the string).
    for flag in [json!(true), json!("true")] {
        let (status, body) = bq
            .query(
                sql,
                json!({ "formatOptions": { "useInt64Timestamp": flag } }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["rows"][0]["f"][0]["v"], micros, "{flag}: {body}");
    }
    let (_, plain) = bq.query(sql, json!({})).await;
    assert_eq!(plain["rows"][0]["f"][0]["v"], "1.726294801E9");

    // A query that is not done at once is read by polling getQueryResults, where the
    // option is a query parameter (Python's client writes the boolean as `True`).
    let (_, pending) = bq.query(sql, json!({ "timeoutMs": 0 })).await;
    assert_eq!(pending["jobComplete"], false, "{pending}");
    let job = pending["jobReference"]["jobId"].as_str().expect("job id");
    for flag in ["true", "True"] {
        let (status, page) = bq
            .get(&format!(
                "/queries/{job}?formatOptions.useInt64Timestamp={flag}"
            ))
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["rows"][0]["f"][0]["v"], micros, "{flag}: {page}");
    }
}

//! BigQuery datasets and tables: get, insert (409 on duplicates), list, delete.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Response, StatusCode};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

use super::*;
use crate::{Shared, json_response};

fn dataset_json(id: &str, ds: &Dataset) -> Value {
    json!({
        "kind": "bigquery#dataset",
        "id": format!("{PROJECT_ID}:{id}"),
        "datasetReference": { "projectId": PROJECT_ID, "datasetId": id },
        "location": ds.location,
        "creationTime": ds.created.to_string(),
        "lastModifiedTime": ds.created.to_string(),
    })
}

pub(super) async fn insert_dataset(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, project);
    let input: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(id) = input["datasetReference"]["datasetId"]
        .as_str()
        .filter(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    else {
        return bq_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "Invalid dataset ID: use letters, numbers and underscores.",
        );
    };
    let mut state = shared.bigquery.lock().await;
    if state.datasets.contains_key(id) {
        return bq_error(
            StatusCode::CONFLICT,
            "duplicate",
            &format!("Already Exists: Dataset {PROJECT_ID}:{id}"),
        );
    }
    let ds = Dataset {
        location: input["location"].as_str().unwrap_or("US").to_string(),
        created: now_ms(),
        tables: BTreeMap::new(),
    };
    let json = dataset_json(id, &ds);
    state.datasets.insert(id.to_string(), ds);
    json_response(StatusCode::OK, &json)
}

pub(super) async fn get_dataset(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset)): Path<(String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    match shared.bigquery.lock().await.datasets.get(&dataset) {
        Some(ds) => json_response(StatusCode::OK, &dataset_json(&dataset, ds)),
        None => not_found(&format!("Dataset {PROJECT_ID}:{dataset}")),
    }
}

pub(super) async fn list_datasets(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(project): Path<String>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let state = shared.bigquery.lock().await;
    let list: Vec<Value> = state
        .datasets
        .iter()
        .map(|(id, ds)| dataset_json(id, ds))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "kind": "bigquery#datasetList", "datasets": list }),
    )
}

fn table_json(dataset: &str, id: &str, table: &Table, location: &str) -> Value {
    let bytes: usize = table
        .batches
        .iter()
        .map(RecordBatch::get_array_memory_size)
        .sum();
    json!({
        "kind": "bigquery#table",
        "id": format!("{PROJECT_ID}:{dataset}.{id}"),
        "tableReference": { "projectId": PROJECT_ID, "datasetId": dataset, "tableId": id },
        "schema": convert::schema_to_json(&table.schema),
        "type": "TABLE",
        "numRows": table.rows().to_string(),
        "numBytes": bytes.to_string(),
        "creationTime": table.created.to_string(),
        "lastModifiedTime": table.modified.to_string(),
        "location": location,
    })
}

pub(super) async fn insert_table(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset)): Path<(String, String)>,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, project);
    let input: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let Some(id) = input["tableReference"]["tableId"]
        .as_str()
        .map(str::to_string)
    else {
        return bq_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            "tableReference.tableId is required.",
        );
    };
    let schema = match convert::schema_from_json(&input["schema"]) {
        Ok(schema) => schema,
        Err(message) => return bq_error(StatusCode::BAD_REQUEST, "invalid", &message),
    };
    let mut state = shared.bigquery.lock().await;
    let Some(ds) = state.datasets.get_mut(&dataset) else {
        return not_found(&format!("Dataset {PROJECT_ID}:{dataset}"));
    };
    if ds.tables.contains_key(&id) {
        return bq_error(
            StatusCode::CONFLICT,
            "duplicate",
            &format!("Already Exists: Table {PROJECT_ID}:{dataset}.{id}"),
        );
    }
    let table = Table {
        schema: Arc::new(schema),
        batches: Vec::new(),
        created: now_ms(),
        modified: now_ms(),
    };
    let json = table_json(&dataset, &id, &table, &ds.location);
    ds.tables.insert(id, table);
    json_response(StatusCode::OK, &json)
}

/// `tables.patch` of the schema: additive changes only, as BigQuery allows — every column
/// kept with its type and mode, new columns NULLABLE (or REPEATED).
pub(super) async fn patch_table(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset, table)): Path<(String, String, String)>,
    body: String,
) -> Response<Body> {
    admit!(shared, headers, project);
    let input: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let schema = match convert::schema_from_json(&input["schema"]) {
        Ok(schema) => Arc::new(schema),
        Err(message) => return bq_error(StatusCode::BAD_REQUEST, "invalid", &message),
    };
    let mut state = shared.bigquery.lock().await;
    let Some(ds) = state.datasets.get_mut(&dataset) else {
        return not_found(&format!("Dataset {PROJECT_ID}:{dataset}"));
    };
    let location = ds.location.clone();
    let Some(stored) = ds.tables.get_mut(&table) else {
        return not_found(&format!("Table {PROJECT_ID}:{dataset}.{table}"));
    };
    let name = format!("{PROJECT_ID}:{dataset}.{table}");
    for old in stored.schema.fields() {
        let problem = match schema.field_with_name(old.name()) {
            Err(_) => format!(
                "Provided Schema does not match Table {name}. Field {} is missing in new schema",
                old.name()
            ),
            Ok(new) if new.data_type() != old.data_type() => format!(
                "Provided Schema does not match Table {name}. Field {} has changed type from {} to {}",
                old.name(),
                old.data_type(),
                new.data_type()
            ),
            Ok(new) if new.is_nullable() && !old.is_nullable() => continue,
            Ok(new) if !new.is_nullable() && old.is_nullable() => format!(
                "Provided Schema does not match Table {name}. Field {} has changed mode from NULLABLE to REQUIRED",
                old.name()
            ),
            Ok(_) => continue,
        };
        return bq_error(StatusCode::BAD_REQUEST, "invalid", &problem);
    }
    if let Some(required) = schema
        .fields()
        .iter()
        .find(|f| !f.is_nullable() && stored.schema.index_of(f.name()).is_err())
    {
        return bq_error(
            StatusCode::BAD_REQUEST,
            "invalid",
            &format!(
                "Provided Schema does not match Table {name}. Cannot add required fields (field: {})",
                required.name()
            ),
        );
    }
    if let Err(message) = super::jobs::widen(stored, &schema) {
        return bq_error(StatusCode::BAD_REQUEST, "invalid", &message);
    }
    stored.modified = now_ms();
    json_response(
        StatusCode::OK,
        &table_json(&dataset, &table, stored, &location),
    )
}

pub(super) async fn get_table(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset, table)): Path<(String, String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let state = shared.bigquery.lock().await;
    match state
        .datasets
        .get(&dataset)
        .and_then(|ds| ds.tables.get(&table).map(|t| (ds, t)))
    {
        Some((ds, t)) => json_response(
            StatusCode::OK,
            &table_json(&dataset, &table, t, &ds.location),
        ),
        None => not_found(&format!("Table {PROJECT_ID}:{dataset}.{table}")),
    }
}

pub(super) async fn list_tables(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset)): Path<(String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let state = shared.bigquery.lock().await;
    let Some(ds) = state.datasets.get(&dataset) else {
        return not_found(&format!("Dataset {PROJECT_ID}:{dataset}"));
    };
    let tables: Vec<Value> = ds
        .tables
        .iter()
        .map(|(id, t)| table_json(&dataset, id, t, &ds.location))
        .collect();
    json_response(
        StatusCode::OK,
        &json!({ "kind": "bigquery#tableList", "tables": tables, "totalItems": tables.len() }),
    )
}

pub(super) async fn delete_table(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((project, dataset, table)): Path<(String, String, String)>,
) -> Response<Body> {
    admit!(shared, headers, project);
    let mut state = shared.bigquery.lock().await;
    match state
        .datasets
        .get_mut(&dataset)
        .and_then(|ds| ds.tables.remove(&table))
    {
        Some(_) => {
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        None => not_found(&format!("Table {PROJECT_ID}:{dataset}.{table}")),
    }
}

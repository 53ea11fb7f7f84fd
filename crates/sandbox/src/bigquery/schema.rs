//! Table schemas as the simulated BigQuery stores them: the REST `schema` object of
//! `tables.insert` / `tables.patch` / load jobs read into Arrow, and Arrow written back as
//! the `schema` object `tables.get` and query results report.
//!
//! This is the server's side of the mapping, written from `api-reference/bigquery.md` and
//! kept apart from mailroom's client on purpose: were both sides to share one mapping, a
//! mistake in it would pass on both. BigQuery accepts standard SQL type names and their
//! legacy aliases on input (`INT64`/`INTEGER`, `FLOAT64`/`FLOAT`, `BOOL`/`BOOLEAN`,
//! `STRUCT`/`RECORD`) and answers with the legacy names, as the real API does.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use serde_json::{Value, json};

/// The Arrow type stored for a column type.
type Stored = fn() -> DataType;

/// Type names accepted on input, with the Arrow type stored for each (RECORD aside).
const SCALARS: &[(&[&str], Stored)] = &[
    (&["STRING"], || DataType::Utf8),
    (&["BYTES"], || DataType::Binary),
    (&["INTEGER", "INT64"], || DataType::Int64),
    (&["FLOAT", "FLOAT64"], || DataType::Float64),
    (&["BOOLEAN", "BOOL"], || DataType::Boolean),
    (&["NUMERIC", "DECIMAL"], || DataType::Decimal128(38, 9)),
    (&["TIMESTAMP"], || {
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
    }),
    (&["DATETIME"], || {
        DataType::Timestamp(TimeUnit::Microsecond, None)
    }),
    (&["DATE"], || DataType::Date32),
    (&["TIME"], || DataType::Time64(TimeUnit::Microsecond)),
];

/// Column names BigQuery reserves (case-insensitive prefixes).
const RESERVED_PREFIXES: &[&str] = &[
    "_table_",
    "_file_",
    "_partition",
    "_row_timestamp",
    "__root__",
    "_colon_",
];

/// BigQuery's column-name rule: letters, digits and underscores, starting with a letter or
/// underscore, at most 300 characters, and no reserved prefix.
fn check_name(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    let shaped = !name.is_empty()
        && name.len() <= 300
        && name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !shaped {
        return Err(format!(
            "Invalid field name \"{name}\". Fields must contain only letters, numbers, and underscores, start with a letter or underscore, and be at most 300 characters long."
        ));
    }
    match RESERVED_PREFIXES.iter().find(|p| lower.starts_with(*p)) {
        Some(prefix) => Err(format!(
            "Invalid field name \"{name}\". Field names cannot start with the reserved prefix {prefix}."
        )),
        None => Ok(()),
    }
}

fn stored_type(field: &Value) -> Result<DataType, String> {
    let name = field["type"]
        .as_str()
        .unwrap_or("STRING")
        .to_ascii_uppercase();
    if name == "RECORD" || name == "STRUCT" {
        let nested = field["fields"].as_array().map_or(&[][..], Vec::as_slice);
        return Ok(DataType::Struct(read_fields(nested)?));
    }
    SCALARS
        .iter()
        .find(|(names, _)| names.contains(&name.as_str()))
        .map(|(_, arrow)| arrow())
        .ok_or_else(|| {
            format!(
                "field {} has type {name}, which the sandbox does not store",
                field["name"]
            )
        })
}

fn read_fields(fields: &[Value]) -> Result<Fields, String> {
    let mut out = Vec::with_capacity(fields.len());
    for field in fields {
        let name = field["name"].as_str().ok_or("every field needs a name")?;
        check_name(name)?;
        let base = stored_type(field)?;
        let mode = field["mode"]
            .as_str()
            .unwrap_or("NULLABLE")
            .to_ascii_uppercase();
        out.push(match mode.as_str() {
            "REPEATED" => Field::new(
                name,
                DataType::List(Arc::new(Field::new("item", base, true))),
                true,
            ),
            "REQUIRED" => Field::new(name, base, false),
            "NULLABLE" => Field::new(name, base, true),
            other => return Err(format!("field {name} has unknown mode {other}")),
        });
    }
    Ok(out.into())
}

/// The Arrow schema stored for a REST `schema` object.
pub fn schema_from_json(schema: &Value) -> Result<Schema, String> {
    let fields = schema["fields"].as_array().map_or(&[][..], Vec::as_slice);
    Ok(Schema::new(read_fields(fields)?))
}

/// The legacy type name BigQuery reports for a stored Arrow type.
fn reported_type(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => "INTEGER",
        DataType::Float16 | DataType::Float32 | DataType::Float64 => "FLOAT",
        DataType::Decimal128(..) | DataType::Decimal256(..) => "NUMERIC",
        DataType::Boolean => "BOOLEAN",
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTES",
        DataType::Date32 | DataType::Date64 => "DATE",
        DataType::Timestamp(_, Some(_)) => "TIMESTAMP",
        DataType::Timestamp(_, None) => "DATETIME",
        DataType::Time32(_) | DataType::Time64(_) => "TIME",
        DataType::Struct(_) => "RECORD",
        _ => "STRING",
    }
}

fn field_to_json(field: &Field) -> Value {
    let (data_type, mode) = match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) => (item.data_type(), "REPEATED"),
        other if field.is_nullable() => (other, "NULLABLE"),
        other => (other, "REQUIRED"),
    };
    let mut json = json!({ "name": field.name(), "type": reported_type(data_type), "mode": mode });
    if let DataType::Struct(nested) = data_type {
        json["fields"] = nested.iter().map(|f| field_to_json(f)).collect();
    }
    json
}

/// The REST `schema` object reported for a stored table.
pub fn schema_to_json(schema: &Schema) -> Value {
    json!({ "fields": schema.fields().iter().map(|f| field_to_json(f)).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_names_are_stored_and_reported_as_legacy_names() {
        let input = json!({ "fields": [
            { "name": "id", "type": "INT64", "mode": "REQUIRED" },
            { "name": "ok", "type": "BOOL" },
            { "name": "tags", "type": "STRING", "mode": "REPEATED" },
            { "name": "address", "type": "STRUCT", "fields": [{ "name": "city", "type": "STRING" }] },
        ]});
        let schema = schema_from_json(&input).expect("valid schema");
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        assert!(!schema.field(0).is_nullable());
        let back = schema_to_json(&schema);
        let types: Vec<&str> = back["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| f["type"].as_str().expect("type"))
            .collect();
        assert_eq!(types, ["INTEGER", "BOOLEAN", "STRING", "RECORD"]);
        assert_eq!(back["fields"][2]["mode"], "REPEATED");
        assert_eq!(back["fields"][3]["fields"][0]["name"], "city");
    }

    #[test]
    fn invalid_and_reserved_names_are_refused() {
        for name in ["1bad", "has-dash", "_PARTITIONTIME", "_table_suffix"] {
            let input = json!({ "fields": [{ "name": name, "type": "STRING" }] });
            assert!(schema_from_json(&input).is_err(), "{name} accepted");
        }
        let fine = json!({ "fields": [{ "name": "_mailroom_run_id", "type": "STRING" }] });
        assert!(schema_from_json(&fine).is_ok());
    }
}

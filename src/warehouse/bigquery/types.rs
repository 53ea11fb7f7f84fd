//! BigQuery's types and Arrow's, both ways: table schemas for `tables.insert` from the Arrow
//! schemas of declared tables, and query result rows (`{"f": [{"v": …}]}`, every scalar a
//! string) decoded into Arrow arrays of the matching type.
//!
//! | Arrow | BigQuery |
//! |---|---|
//! | Int8–Int64, UInt8–UInt64 | INTEGER (INT64) |
//! | Float16–Float64 | FLOAT (FLOAT64) |
//! | Decimal128(38, 9) | NUMERIC |
//! | Boolean | BOOLEAN |
//! | Utf8 | STRING |
//! | Binary | BYTES |
//! | Date32 | DATE |
//! | Timestamp(µs, UTC) | TIMESTAMP |
//! | Timestamp(µs, none) | DATETIME |
//! | List(item) | REPEATED item |
//! | Struct | RECORD |
//!
//! A non-nullable Arrow field is a REQUIRED column. Column names follow BigQuery's rule:
//! letters, digits and underscores, starting with a letter or underscore, at most 300
//! characters ([`valid_column_name`]).

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    ListArray, StringArray, StructArray, TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use base64::Engine;
use serde_json::{Value, json};

/// Whether BigQuery accepts `name` as a column name.
pub fn valid_column_name(name: &str) -> bool {
    crate::normalize::schema::portable_column_name(name) || name.starts_with("_mailroom_")
}

/// The Arrow type of a BigQuery field type (mode aside).
fn arrow_type(field: &Value) -> Result<DataType, String> {
    let kind = field["type"].as_str().unwrap_or("STRING").to_uppercase();
    Ok(match kind.as_str() {
        "STRING" => DataType::Utf8,
        "BYTES" => DataType::Binary,
        "INTEGER" | "INT64" => DataType::Int64,
        "FLOAT" | "FLOAT64" => DataType::Float64,
        "BOOLEAN" | "BOOL" => DataType::Boolean,
        "NUMERIC" => DataType::Decimal128(38, 9),
        "TIMESTAMP" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "DATETIME" => DataType::Timestamp(TimeUnit::Microsecond, None),
        "DATE" => DataType::Date32,
        "RECORD" | "STRUCT" => DataType::Struct(arrow_fields(
            field["fields"].as_array().map_or(&[][..], Vec::as_slice),
        )?),
        other => {
            return Err(format!(
                "field {} has type {other}, which mailroom does not read",
                field["name"]
            ));
        }
    })
}

fn arrow_fields(fields: &[Value]) -> Result<Fields, String> {
    fields
        .iter()
        .map(|f| {
            let name = f["name"].as_str().ok_or("every field needs a name")?;
            if !valid_column_name(name) {
                return Err(format!("Invalid field name \"{name}\". Fields must contain only letters, numbers, and underscores, start with a letter or underscore, and be at most 300 characters long."));
            }
            let base = arrow_type(f)?;
            let mode = f["mode"].as_str().unwrap_or("NULLABLE").to_uppercase();
            Ok(match mode.as_str() {
                "REPEATED" => Field::new(name, DataType::List(Arc::new(Field::new("item", base, true))), true),
                "REQUIRED" => Field::new(name, base, false),
                _ => Field::new(name, base, true),
            })
        })
        .collect()
}

/// An Arrow schema from a BigQuery `schema` object.
pub fn schema_from_json(schema: &Value) -> Result<Schema, String> {
    Ok(Schema::new(arrow_fields(
        schema["fields"].as_array().map_or(&[][..], Vec::as_slice),
    )?))
}

fn bigquery_type(data_type: &DataType) -> (String, Option<Vec<Value>>) {
    let name = match data_type {
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
        DataType::Struct(fields) => {
            return (
                "RECORD".into(),
                Some(fields.iter().map(|f| field_json(f)).collect()),
            );
        }
        _ => "STRING",
    };
    (name.into(), None)
}

fn field_json(field: &Field) -> Value {
    let (inner, mode) = match field.data_type() {
        DataType::List(item) | DataType::LargeList(item) => (item.data_type().clone(), "REPEATED"),
        other => (
            other.clone(),
            if field.is_nullable() {
                "NULLABLE"
            } else {
                "REQUIRED"
            },
        ),
    };
    let (kind, nested) = bigquery_type(&inner);
    let mut json = json!({ "name": field.name(), "type": kind, "mode": mode });
    if let Some(fields) = nested {
        json["fields"] = Value::Array(fields);
    }
    json
}

/// A BigQuery `schema` object for an Arrow schema.
pub fn schema_to_json(schema: &Schema) -> Value {
    json!({ "fields": schema.fields().iter().map(|f| field_json(f)).collect::<Vec<_>>() })
}

/// Why result rows could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct DecodeError {
    /// The result column.
    pub column: String,
    /// What was wrong with a value.
    pub message: String,
}

/// Result rows (`{"f": [{"v": …}]}`) as one batch of `schema`.
pub fn rows_to_batch(schema: &SchemaRef, rows: &[Value]) -> Result<RecordBatch, DecodeError> {
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let cells: Vec<&Value> = rows.iter().map(|row| &row["f"][i]["v"]).collect();
            decode_array(field, &cells)
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )
    .map_err(|e| DecodeError {
        column: "-".into(),
        message: e.to_string(),
    })
}

/// NUMERIC text (`"-12.3"`) as an integer at `scale` decimals; more decimals are refused.
fn parse_decimal(text: &str, scale: u32) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if fraction.len() > scale as usize
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
        || (whole.is_empty() && fraction.is_empty())
    {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let padded = format!("{fraction:0<width$}", width = scale as usize);
    let fraction: i128 = if padded.is_empty() {
        0
    } else {
        padded.parse().ok()?
    };
    let value = whole
        .checked_mul(10i128.pow(scale))?
        .checked_add(fraction)?;
    Some(if negative { -value } else { value })
}

/// TIMESTAMP as integer microseconds (`useInt64Timestamp`) or floating-point seconds.
fn parse_timestamp(text: &str) -> Option<i64> {
    if let Ok(micros) = text.parse::<i64>() {
        return Some(micros);
    }
    let seconds: f64 = text.parse().ok()?;
    Some((seconds * 1e6).round() as i64)
}

fn decode_array(field: &Field, cells: &[&Value]) -> Result<ArrayRef, DecodeError> {
    let fail = |message: String| DecodeError {
        column: field.name().clone(),
        message,
    };
    // Every scalar cell is a string or null.
    let scalars = |parse: &dyn Fn(&str) -> Option<()>| -> Result<(), DecodeError> {
        for cell in cells {
            match cell {
                Value::Null => {}
                Value::String(text) if parse(text).is_some() => {}
                other => return Err(fail(format!("unexpected value {other}"))),
            }
        }
        Ok(())
    };
    let texts = || cells.iter().map(|c| c.as_str());
    let array: ArrayRef = match field.data_type() {
        DataType::Int64 => {
            scalars(&|t| t.parse::<i64>().ok().map(drop))?;
            Arc::new(Int64Array::from_iter(
                texts().map(|t| t.and_then(|t| t.parse().ok())),
            ))
        }
        DataType::Float64 => {
            scalars(&|t| t.parse::<f64>().ok().map(drop))?;
            Arc::new(Float64Array::from_iter(
                texts().map(|t| t.and_then(|t| t.parse().ok())),
            ))
        }
        DataType::Boolean => {
            scalars(&|t| matches!(t, "true" | "false").then_some(()))?;
            Arc::new(BooleanArray::from_iter(
                texts().map(|t| t.map(|t| t == "true")),
            ))
        }
        DataType::Utf8 => {
            scalars(&|_| Some(()))?;
            Arc::new(StringArray::from_iter(texts()))
        }
        DataType::Decimal128(precision, scale) => {
            let scale_u = (*scale).max(0) as u32;
            scalars(&|t| parse_decimal(t, scale_u).map(drop))?;
            let values = Decimal128Array::from_iter(
                texts().map(|t| t.and_then(|t| parse_decimal(t, scale_u))),
            );
            Arc::new(
                values
                    .with_precision_and_scale(*precision, *scale)
                    .map_err(|e| fail(e.to_string()))?,
            )
        }
        DataType::Timestamp(TimeUnit::Microsecond, tz) => {
            let parse = |t: &str| -> Option<i64> {
                if tz.is_some() {
                    parse_timestamp(t)
                } else {
                    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
                        .ok()
                        .map(|d| d.and_utc().timestamp_micros())
                }
            };
            scalars(&|t| parse(t).map(drop))?;
            let values = TimestampMicrosecondArray::from_iter(texts().map(|t| t.and_then(parse)));
            Arc::new(match tz {
                Some(tz) => values.with_timezone(tz.clone()),
                None => values,
            })
        }
        DataType::Date32 => {
            let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
            let parse = |t: &str| -> Option<i32> {
                let date = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d").ok()?;
                i32::try_from((date - epoch).num_days()).ok()
            };
            scalars(&|t| parse(t).map(drop))?;
            Arc::new(Date32Array::from_iter(texts().map(|t| t.and_then(parse))))
        }
        DataType::Binary => {
            let decode = |t: &str| base64::engine::general_purpose::STANDARD.decode(t).ok();
            scalars(&|t| decode(t).map(drop))?;
            let values: Vec<Option<Vec<u8>>> = texts().map(|t| t.and_then(decode)).collect();
            Arc::new(BinaryArray::from_iter(values))
        }
        DataType::List(item) => {
            let mut offsets = vec![0i32];
            let mut children: Vec<&Value> = Vec::new();
            for cell in cells {
                let list = match cell {
                    Value::Array(list) => list.as_slice(),
                    Value::Null => &[],
                    other => return Err(fail(format!("expected a list, got {other}"))),
                };
                children.extend(list.iter().map(|c| &c["v"]));
                offsets.push(i32::try_from(children.len()).map_err(|e| fail(e.to_string()))?);
            }
            let values = decode_array(item, &children)?;
            // BigQuery never returns a NULL array: an empty one stands for it.
            Arc::new(
                ListArray::try_new(
                    item.clone(),
                    OffsetBuffer::new(offsets.into()),
                    values,
                    None,
                )
                .map_err(|e| fail(e.to_string()))?,
            )
        }
        DataType::Struct(fields) => {
            let nulls: Vec<bool> = cells.iter().map(|c| !c.is_null()).collect();
            let columns = fields
                .iter()
                .enumerate()
                .map(|(i, child)| {
                    let child_cells: Vec<&Value> = cells.iter().map(|c| &c["f"][i]["v"]).collect();
                    decode_array(child, &child_cells)
                })
                .collect::<Result<Vec<_>, _>>()?;
            Arc::new(
                StructArray::try_new(fields.clone(), columns, Some(NullBuffer::from(nulls)))
                    .map_err(|e| fail(e.to_string()))?,
            )
        }
        other => return Err(fail(format!("type {other} is not read from BigQuery"))),
    };
    Ok(array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_decode_into_the_arrow_types_of_their_schema() {
        let schema = Arc::new(
            schema_from_json(&json!({ "fields": [
                { "name": "email", "type": "STRING" },
                { "name": "orders", "type": "INTEGER" },
                { "name": "value", "type": "NUMERIC" },
                { "name": "rate", "type": "FLOAT" },
                { "name": "at", "type": "TIMESTAMP" },
                { "name": "day", "type": "DATE" },
                { "name": "vip", "type": "BOOLEAN" },
                { "name": "tags", "type": "STRING", "mode": "REPEATED" },
            ]}))
            .expect("schema"),
        );
        let rows = vec![
            json!({ "f": [{"v": "ana@example.com"}, {"v": "3"}, {"v": "-12.3"}, {"v": "0.25"}, {"v": "1.7262948E9"}, {"v": "2026-11-01"}, {"v": "true"}, {"v": [{"v": "vip"}, {"v": "eu"}]}] }),
            json!({ "f": [{"v": null}, {"v": null}, {"v": null}, {"v": "NaN"}, {"v": "1726294800000001"}, {"v": null}, {"v": null}, {"v": []}] }),
        ];
        let batch = rows_to_batch(&schema, &rows).expect("decode");
        let text = arrow::util::pretty::pretty_format_batches(&[batch])
            .expect("format")
            .to_string();
        assert!(text.contains("| ana@example.com | 3      | -12.300000000 | 0.25 | 2024-09-14T06:20:00Z        | 2026-11-01 | true | [vip, eu] |"), "{text}");
        assert!(
            text.contains("| NaN  | 2024-09-14T06:20:00.000001Z |"),
            "{text}"
        );
        let bad = vec![
            json!({ "f": [{"v": "x"}, {"v": "three"}, {"v": null}, {"v": null}, {"v": null}, {"v": null}, {"v": null}, {"v": []}] }),
        ];
        let err = rows_to_batch(&schema, &bad).expect_err("not an integer");
        assert_eq!(err.column, "orders");
        assert_eq!(
            parse_decimal("1.0000000001", 9),
            None,
            "more decimals than NUMERIC holds"
        );
    }

    #[test]
    fn schemas_map_both_ways_and_bad_names_are_refused() {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("total", DataType::Decimal128(38, 9), true),
            Field::new(
                "at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]);
        let json = schema_to_json(&schema);
        assert_eq!(
            json["fields"][0],
            json!({ "name": "id", "type": "INTEGER", "mode": "REQUIRED" })
        );
        assert_eq!(json["fields"][1]["type"], "NUMERIC");
        assert_eq!(json["fields"][2]["type"], "TIMESTAMP");
        assert_eq!(schema_from_json(&json).expect("back"), schema);
        let repeated =
            json!({ "fields": [{ "name": "tags", "type": "STRING", "mode": "REPEATED" }] });
        assert_eq!(
            schema_to_json(&schema_from_json(&repeated).expect("list")),
            repeated
        );
        assert!(
            schema_from_json(&json!({ "fields": [{ "name": "1bad", "type": "STRING" }] })).is_err()
        );
        assert!(
            !valid_column_name("order-id") && !valid_column_name("1st") && valid_column_name("_x1")
        );
    }
}

//! BigQuery schemas and rows to and from Arrow.
//!
//! Types map one to one where BigQuery has them (INTEGER ↔ Int64, FLOAT ↔ Float64, NUMERIC
//! ↔ Decimal128(38, 9), TIMESTAMP ↔ Timestamp(µs, UTC), DATE ↔ Date32, REPEATED ↔ List,
//! RECORD ↔ Struct). Rows are encoded as the REST API does: `{"f": [{"v": …}]}` with every
//! scalar a string, TIMESTAMP as floating-point seconds (`"1.7262948E9"`) unless integer
//! microseconds were asked for, NULL as `null`, REPEATED as a list of cells.

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, Schema, TimeUnit, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Value, json};

pub use super::schema::{schema_from_json, schema_to_json};

/// A query result's schema: BigQuery reports every non-repeated result column as NULLABLE.
pub fn result_schema_json(schema: &Schema) -> Value {
    let mut json = schema_to_json(schema);
    for field in json["fields"].as_array_mut().into_iter().flatten() {
        if field["mode"] == "REQUIRED" {
            field["mode"] = Value::from("NULLABLE");
        }
    }
    json
}

/// Seconds as Java's `Double.toString` writes them, which is what BigQuery sends.
fn java_double(x: f64) -> String {
    let text = format!("{x:E}");
    match text.split_once('E') {
        Some((mantissa, exponent)) if !mantissa.contains('.') => format!("{mantissa}.0E{exponent}"),
        _ => text,
    }
}

fn decimal_text(value: i128, scale: i8) -> String {
    let scale = scale.max(0) as u32;
    let divisor = 10i128.pow(scale);
    let (whole, fraction) = (value / divisor, (value % divisor).abs());
    let sign = if value < 0 && whole == 0 { "-" } else { "" };
    let fraction = format!("{fraction:0width$}", width = scale as usize);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{fraction}")
    }
}

/// One cell's `v`.
fn cell(array: &ArrayRef, row: usize, int64_timestamps: bool) -> Value {
    if array.is_null(row) {
        return Value::Null;
    }
    let text = match array.data_type() {
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt8 => array.as_primitive::<UInt8Type>().value(row).to_string(),
        DataType::UInt16 => array.as_primitive::<UInt16Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float32 => array.as_primitive::<Float32Type>().value(row).to_string(),
        DataType::Float64 => array.as_primitive::<Float64Type>().value(row).to_string(),
        DataType::Boolean => array.as_boolean().value(row).to_string(),
        DataType::Decimal128(_, scale) => {
            decimal_text(array.as_primitive::<Decimal128Type>().value(row), *scale)
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            chrono::DateTime::from_timestamp(i64::from(days) * 86_400, 0)
                .map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string())
        }
        DataType::Timestamp(unit, tz) => {
            let micros = timestamp_micros(array, row, unit);
            if tz.is_none() {
                chrono::DateTime::from_timestamp_micros(micros).map_or_else(String::new, |t| {
                    t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
                })
            } else if int64_timestamps {
                micros.to_string()
            } else {
                java_double(micros as f64 / 1e6)
            }
        }
        DataType::List(_) => {
            let list = array.as_list::<i32>().value(row);
            let cells: Vec<Value> = (0..list.len())
                .map(|i| json!({ "v": cell(&list, i, int64_timestamps) }))
                .collect();
            return Value::Array(cells);
        }
        DataType::Struct(_) => {
            let fields = array.as_struct();
            let cells: Vec<Value> = fields
                .columns()
                .iter()
                .map(|c| json!({ "v": cell(c, row, int64_timestamps) }))
                .collect();
            return json!({ "f": cells });
        }
        _ => {
            datafusion::arrow::util::display::array_value_to_string(array, row).unwrap_or_default()
        }
    };
    Value::from(text)
}

fn timestamp_micros(array: &ArrayRef, row: usize, unit: &TimeUnit) -> i64 {
    use datafusion::arrow::datatypes::{
        TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
        TimestampSecondType,
    };
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000,
        TimeUnit::Millisecond => {
            array.as_primitive::<TimestampMillisecondType>().value(row) * 1_000
        }
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000,
    }
}

/// The rows of `batches` from `offset`, at most `limit`, as `TableRow`s.
pub fn rows(
    batches: &[RecordBatch],
    offset: usize,
    limit: usize,
    int64_timestamps: bool,
) -> Vec<Value> {
    let mut out = Vec::new();
    let mut skipped = 0;
    for batch in batches {
        if out.len() >= limit {
            break;
        }
        let n = batch.num_rows();
        if skipped + n <= offset {
            skipped += n;
            continue;
        }
        let start = offset.saturating_sub(skipped);
        skipped += n;
        for row in start..n {
            if out.len() >= limit {
                break;
            }
            let cells: Vec<Value> = batch
                .columns()
                .iter()
                .map(|c| json!({ "v": cell(c, row, int64_timestamps) }))
                .collect();
            out.push(json!({ "f": cells }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampMicrosecondArray};
    use datafusion::arrow::datatypes::Field;

    #[test]
    fn timestamps_are_java_style_seconds_and_decimals_drop_trailing_zeros() {
        assert_eq!(java_double(1_726_294_800.0), "1.7262948E9");
        assert_eq!(java_double(2_000_000_000.0), "2.0E9");
        assert_eq!(decimal_text(12_300_000_000, 9), "12.3");
        assert_eq!(decimal_text(-500_000_000, 9), "-0.5");
        assert_eq!(decimal_text(42_000_000_000, 9), "42");
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new(
                "t",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(42), None])),
                Arc::new(
                    TimestampMicrosecondArray::from(vec![Some(1_726_294_800_000_000), None])
                        .with_timezone("UTC"),
                ),
            ],
        )
        .expect("batch");
        assert_eq!(
            rows(std::slice::from_ref(&batch), 0, 10, false),
            [
                json!({ "f": [{ "v": "42" }, { "v": "1.7262948E9" }] }),
                json!({ "f": [{ "v": null }, { "v": null }] })
            ]
        );
        assert_eq!(
            rows(&[batch], 0, 1, true)[0]["f"][1]["v"],
            "1726294800000000"
        );
    }
}

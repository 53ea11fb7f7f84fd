//! A query result's values as Sheets cells written with `USER_ENTERED`: numbers and
//! booleans as JSON numbers and booleans, dates and timestamps as text Sheets reads as
//! dates (so the sheet can sort and chart them), and every other text behind an apostrophe,
//! which keeps it text — `"00123"`, `"+61…"` or `"=1+1"` are never turned into numbers or
//! formulas — and is not shown.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type,
    Int64Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{DateTime, NaiveDate};
use serde_json::Value;

/// Text as a cell: kept as text whatever it looks like.
pub fn text(value: &str) -> Value {
    Value::from(format!("'{value}"))
}

fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or_else(|| text(&x.to_string()), Value::Number)
}

fn timestamp_micros(array: &ArrayRef, row: usize, unit: &TimeUnit) -> i64 {
    match unit {
        TimeUnit::Second => array.as_primitive::<TimestampSecondType>().value(row) * 1_000_000,
        TimeUnit::Millisecond => {
            array.as_primitive::<TimestampMillisecondType>().value(row) * 1_000
        }
        TimeUnit::Microsecond => array.as_primitive::<TimestampMicrosecondType>().value(row),
        TimeUnit::Nanosecond => array.as_primitive::<TimestampNanosecondType>().value(row) / 1_000,
    }
}

/// Row `row` of `array` as a cell.
pub fn cell(array: &ArrayRef, row: usize) -> Value {
    if array.is_null(row) {
        return Value::from("");
    }
    match array.data_type() {
        DataType::Boolean => Value::from(array.as_boolean().value(row)),
        DataType::Int8 => Value::from(array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => Value::from(array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => Value::from(array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => Value::from(array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::from(array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => Value::from(array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => Value::from(array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => Value::from(array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => number(f64::from(array.as_primitive::<Float32Type>().value(row))),
        DataType::Float64 => number(array.as_primitive::<Float64Type>().value(row)),
        DataType::Decimal128(_, scale) => {
            let raw = array.as_primitive::<Decimal128Type>().value(row);
            number(raw as f64 / 10f64.powi(i32::from(*scale)))
        }
        DataType::Date32 => {
            let days = array.as_primitive::<Date32Type>().value(row);
            NaiveDate::from_num_days_from_ce_opt(days + 719_163).map_or_else(
                || Value::from(""),
                |d| Value::from(d.format("%Y-%m-%d").to_string()),
            )
        }
        DataType::Timestamp(unit, _) => {
            let micros = timestamp_micros(array, row, unit);
            DateTime::from_timestamp_micros(micros).map_or_else(
                || Value::from(""),
                |t| Value::from(t.format("%Y-%m-%d %H:%M:%S").to_string()),
            )
        }
        DataType::Utf8 => text(array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => text(array.as_string::<i64>().value(row)),
        DataType::Utf8View => text(array.as_string_view().value(row)),
        _ => {
            let shown = ArrayFormatter::try_new(array.as_ref(), &FormatOptions::default())
                .map(|f| f.value(row).to_string())
                .unwrap_or_default();
            text(&shown)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array, StringArray,
        TimestampMicrosecondArray,
    };

    use super::*;

    #[test]
    fn cells_keep_their_types_and_text_stays_text() {
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![Some(42), None])),
            Arc::new(Float64Array::from(vec![0.25, f64::NAN])),
            Arc::new(
                Decimal128Array::from(vec![12_345_000_000_i128, 0])
                    .with_precision_and_scale(38, 9)
                    .expect("decimal"),
            ),
            Arc::new(BooleanArray::from(vec![true, false])),
            Arc::new(Date32Array::from(vec![20_787, 0])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![1_796_026_500_000_000, 0])
                    .with_timezone("UTC"),
            ),
            Arc::new(StringArray::from(vec!["00123", "=1+1"])),
        ];
        let first: Vec<Value> = arrays.iter().map(|a| cell(a, 0)).collect();
        assert_eq!(
            first,
            [
                Value::from(42),
                Value::from(0.25),
                Value::from(12.345),
                Value::from(true),
                Value::from("2026-11-30"),
                Value::from("2026-11-30 08:15:00"),
                Value::from("'00123"),
            ]
        );
        assert_eq!(
            cell(&arrays[0], 1),
            Value::from(""),
            "NULL is an empty cell"
        );
        assert_eq!(cell(&arrays[1], 1), Value::from("'NaN"));
        assert_eq!(cell(&arrays[6], 1), Value::from("'=1+1"), "never a formula");
    }
}

//! Compatibility functions the GoogleSQL front end rewrites to where DataFusion has no
//! function with BigQuery's meaning: division, whose result type follows BigQuery's rules
//! (INT64 / INT64 is FLOAT64, NUMERIC stays NUMERIC rounded half away from zero at 9
//! decimals, FLOAT64 wins over both), and errors on a zero divisor unless it is
//! `SAFE_DIVIDE`, which gives NULL instead.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Decimal128Array, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, Result, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// NUMERIC as the local engine stores it.
const NUMERIC: DataType = DataType::Decimal128(38, 9);
const NUMERIC_ONE: i128 = 1_000_000_000;

/// BigQuery's `/` (`safe: false`) or `SAFE_DIVIDE` (`safe: true`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Divide {
    safe: bool,
    signature: Signature,
}

impl Divide {
    fn new(safe: bool) -> Self {
        Divide {
            safe,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }

    /// The name the front end rewrites to.
    pub fn name_for(safe: bool) -> &'static str {
        if safe { "bq_safe_divide" } else { "bq_divide" }
    }
}

fn is_float(t: &DataType) -> bool {
    matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64)
}

fn is_decimal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Decimal32(..)
            | DataType::Decimal64(..)
            | DataType::Decimal128(..)
            | DataType::Decimal256(..)
    )
}

fn is_numeric_or_null(t: &DataType) -> bool {
    t.is_integer() || is_float(t) || is_decimal(t) || *t == DataType::Null
}

/// BigQuery's result type for dividing `a` by `b`.
fn result_type(a: &DataType, b: &DataType) -> DataType {
    if is_float(a) || is_float(b) {
        DataType::Float64
    } else if is_decimal(a) || is_decimal(b) {
        NUMERIC
    } else {
        DataType::Float64
    }
}

/// `a / b` for NUMERIC values at scale 9, rounded half away from zero.
fn divide_numeric(a: i128, b: i128) -> Option<i128> {
    let numerator = a.checked_mul(NUMERIC_ONE)?;
    let quotient = numerator / b;
    let remainder = numerator % b;
    if remainder.checked_abs()?.checked_mul(2)? >= b.checked_abs()? {
        let away = if (numerator < 0) == (b < 0) { 1 } else { -1 };
        Some(quotient + away)
    } else {
        Some(quotient)
    }
}

impl ScalarUDFImpl for Divide {
    fn name(&self) -> &str {
        Self::name_for(self.safe)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        match args {
            [a, b] if is_numeric_or_null(a) && is_numeric_or_null(b) => Ok(result_type(a, b)),
            _ => plan_err!(
                "{} needs two numbers, got {args:?}",
                if self.safe { "SAFE_DIVIDE" } else { "/" }
            ),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let output = args.return_field.data_type().clone();
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [a, b] = arrays.as_slice() else {
            return exec_err!("division takes two arguments");
        };
        let (a, b) = (cast(a, &output)?, cast(b, &output)?);
        let zero = || -> Result<ColumnarValue> {
            exec_err!("division by zero (use SAFE_DIVIDE to get NULL instead)")
        };
        let result: ArrayRef = if output == DataType::Float64 {
            let (a, b) = (as_f64(&a)?, as_f64(&b)?);
            let mut out = Vec::with_capacity(rows);
            for i in 0..rows {
                if a.is_null(i) || b.is_null(i) || (self.safe && b.value(i) == 0.0) {
                    out.push(None);
                } else if b.value(i) == 0.0 {
                    return zero();
                } else {
                    out.push(Some(a.value(i) / b.value(i)));
                }
            }
            Arc::new(Float64Array::from(out))
        } else {
            let (a, b) = (as_decimal(&a)?, as_decimal(&b)?);
            let mut out = Vec::with_capacity(rows);
            for i in 0..rows {
                if a.is_null(i) || b.is_null(i) || (self.safe && b.value(i) == 0) {
                    out.push(None);
                } else if b.value(i) == 0 {
                    return zero();
                } else {
                    let (x, y) = (a.value(i), b.value(i));
                    match divide_numeric(x, y) {
                        Some(q) => out.push(Some(q)),
                        None if self.safe => out.push(None),
                        None => return exec_err!("numeric overflow dividing {x} by {y} (scale 9)"),
                    }
                }
            }
            Arc::new(Decimal128Array::from(out).with_precision_and_scale(38, 9)?)
        };
        Ok(ColumnarValue::Array(result))
    }
}

fn as_f64(array: &ArrayRef) -> Result<&Float64Array> {
    array
        .as_any()
        .downcast_ref()
        .ok_or_else(|| DataFusionError::Internal("expected FLOAT64".into()))
}

fn as_decimal(array: &ArrayRef) -> Result<&Decimal128Array> {
    array
        .as_any()
        .downcast_ref()
        .ok_or_else(|| DataFusionError::Internal("expected NUMERIC".into()))
}

/// Makes the compatibility functions callable in `ctx`.
pub fn register(ctx: &SessionContext) {
    for safe in [false, true] {
        ctx.register_udf(ScalarUDF::from(Divide::new(safe)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_division_rounds_half_away_from_zero_at_nine_decimals() {
        let n = |x: f64| (x * NUMERIC_ONE as f64).round() as i128;
        assert_eq!(divide_numeric(n(1.0), n(3.0)), Some(333_333_333));
        assert_eq!(divide_numeric(n(2.0), n(3.0)), Some(666_666_667));
        assert_eq!(divide_numeric(n(-2.0), n(3.0)), Some(-666_666_667));
        assert_eq!(divide_numeric(n(10.0), n(4.0)), Some(n(2.5)));
        assert_eq!(
            divide_numeric(i128::MAX / 2, 1),
            None,
            "overflow is reported"
        );
        assert_eq!(
            result_type(&DataType::Int64, &DataType::Int64),
            DataType::Float64
        );
        assert_eq!(result_type(&NUMERIC, &DataType::Int64), NUMERIC);
        assert_eq!(result_type(&NUMERIC, &DataType::Float64), DataType::Float64);
    }
}

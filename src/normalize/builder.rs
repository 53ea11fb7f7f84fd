//! One Arrow builder per column type; typed values append, anything else appends null.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder,
};

use super::schema::{ColumnType, MONEY_PRECISION, MONEY_SCALE};
use super::value::Typed;

/// One column's Arrow builder.
pub(super) enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Text(StringBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Date(Date32Builder),
    Money(Decimal128Builder),
}

impl ColumnBuilder {
    pub(super) fn new(kind: ColumnType) -> Self {
        match kind {
            ColumnType::Boolean => ColumnBuilder::Boolean(BooleanBuilder::new()),
            ColumnType::Int64 => ColumnBuilder::Int64(Int64Builder::new()),
            ColumnType::Float64 => ColumnBuilder::Float64(Float64Builder::new()),
            ColumnType::Text => ColumnBuilder::Text(StringBuilder::new()),
            ColumnType::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            ColumnType::Date => ColumnBuilder::Date(Date32Builder::new()),
            ColumnType::Money => ColumnBuilder::Money(
                Decimal128Builder::new()
                    .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                    .unwrap_or_default(),
            ),
        }
    }

    /// Appends a value `type_row` produced for this column's type.
    pub(super) fn append(&mut self, value: &Typed<'_>) {
        match (self, value) {
            (ColumnBuilder::Boolean(b), Typed::Bool(v)) => b.append_value(*v),
            (ColumnBuilder::Int64(b), Typed::Int(v)) => b.append_value(*v),
            (ColumnBuilder::Float64(b), Typed::Float(v)) => b.append_value(*v),
            (ColumnBuilder::Text(b), Typed::Text(v)) => b.append_value(v),
            (ColumnBuilder::Timestamp(b), Typed::Micros(v)) => b.append_value(*v),
            (ColumnBuilder::Date(b), Typed::Days(v)) => b.append_value(*v),
            (ColumnBuilder::Money(b), Typed::Money(v)) => b.append_value(*v),
            (ColumnBuilder::Boolean(b), _) => b.append_null(),
            (ColumnBuilder::Int64(b), _) => b.append_null(),
            (ColumnBuilder::Float64(b), _) => b.append_null(),
            (ColumnBuilder::Text(b), _) => b.append_null(),
            (ColumnBuilder::Timestamp(b), _) => b.append_null(),
            (ColumnBuilder::Date(b), _) => b.append_null(),
            (ColumnBuilder::Money(b), _) => b.append_null(),
        }
    }

    pub(super) fn finish(&mut self) -> ArrayRef {
        match self {
            ColumnBuilder::Boolean(b) => Arc::new(b.finish()),
            ColumnBuilder::Int64(b) => Arc::new(b.finish()),
            ColumnBuilder::Float64(b) => Arc::new(b.finish()),
            ColumnBuilder::Text(b) => Arc::new(b.finish()),
            ColumnBuilder::Timestamp(b) => Arc::new(b.finish()),
            ColumnBuilder::Date(b) => Arc::new(b.finish()),
            ColumnBuilder::Money(b) => Arc::new(b.finish()),
        }
    }
}

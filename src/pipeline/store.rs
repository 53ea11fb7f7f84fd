//! A SQL step's `into`: its answer written to a warehouse table, replaced each run, through
//! the same staged, atomic commit as extracted tables (so a crash leaves the old answer or
//! the new one, and a retried run commits once). The table's columns follow the answer's,
//! typed as mailroom stores them; the run columns are added.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::Utc;

use super::Pipeline;
use crate::error::{Classify, ErrorKind};
use crate::normalize::schema::{Column, ColumnType, Convert, ValueFrom};
use crate::normalize::{TableSchema, WriteDisposition};
use crate::scheduler::{RunContext, RunError};
use crate::warehouse::{Commit, LoadId, QueryResult, Warehouse};

/// How a column of this Arrow type is stored, or why it cannot be.
fn column_type(name: &str, data_type: &DataType) -> Result<ColumnType, String> {
    Ok(match data_type {
        DataType::Boolean => ColumnType::Boolean,
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32 => ColumnType::Int64,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => ColumnType::Float64,
        DataType::Decimal128(..) | DataType::Decimal256(..) => ColumnType::Money,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
            ColumnType::Text
        }
        DataType::Date32 | DataType::Date64 => ColumnType::Date,
        DataType::Timestamp(..) => ColumnType::Timestamp,
        other => {
            return Err(format!(
                "column {name} is {other}, which a report table cannot store; cast it in the SQL"
            ));
        }
    })
}

/// The table an answer is stored as: its columns, replaced each run.
fn table_for(name: &'static str, result: &QueryResult) -> Result<TableSchema, String> {
    let columns = result
        .schema
        .fields()
        .iter()
        .map(|field| {
            Ok(Column {
                name: Cow::Owned(field.name().clone()),
                kind: column_type(field.name(), field.data_type())?,
                nullable: true,
                from: ValueFrom::Field(Cow::Owned(field.name().clone()), Convert::Plain),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let mut table = TableSchema::new(name, columns);
    table.disposition = WriteDisposition::Replace;
    Ok(table)
}

/// `batch` in the table's types, with the run columns.
fn conform(batch: &RecordBatch, schema: &SchemaRef, run_id: &str) -> Result<RecordBatch, String> {
    let rows = batch.num_rows();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (column, field) in batch.columns().iter().zip(schema.fields()) {
        let converted =
            cast(column, field.data_type()).map_err(|e| format!("column {}: {e}", field.name()))?;
        columns.push(converted);
    }
    let now = Utc::now().timestamp_micros();
    columns.push(Arc::new(StringArray::from(vec![run_id; rows])));
    columns.push(Arc::new(
        TimestampMicrosecondArray::from(vec![now; rows]).with_timezone("UTC"),
    ));
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

impl Pipeline {
    /// Replaces `table` with `result`; the rows written.
    pub(super) async fn store(
        &self,
        table: &'static str,
        result: &QueryResult,
        run: &RunContext,
    ) -> Result<u64, RunError> {
        let refused =
            |message: String| RunError::new(ErrorKind::Config, format!("into {table}: {message}"));
        let declared = table_for(table, result).map_err(refused)?;
        let schema = declared.arrow_schema();
        let load = LoadId {
            source: "sql".into(),
            stream: table.to_string(),
            run_id: run.run_id.clone(),
        };
        let failed = |err: crate::warehouse::WarehouseError| {
            RunError::new(err.kind(), format!("into {table}: {err}"))
        };
        let mut warehouse = self.warehouse().await?;
        let mut batches: Vec<RecordBatch> = result.batches.clone();
        if batches.iter().all(|b| b.num_rows() == 0) {
            // An empty answer still replaces the table: with no rows.
            batches = vec![RecordBatch::new_empty(result.schema.clone())];
        }
        for batch in &batches {
            let conformed = conform(batch, &schema, &run.run_id).map_err(refused)?;
            if let Err(err) = warehouse.write(&load, &declared, conformed).await {
                warehouse.abort(&load).await;
                return Err(failed(err));
            }
        }
        let outcome = warehouse
            .commit(Commit {
                load,
                tables: vec![declared],
                cursor: None,
            })
            .await
            .map_err(failed)?;
        Ok(outcome.rows.iter().map(|(_, rows)| rows).sum())
    }
}

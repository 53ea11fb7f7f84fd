//! Queries on the configured warehouse: [`QueryEngine`] runs rendered GoogleSQL on the
//! local Delta tables (through the GoogleSQL front end on DataFusion) or on BigQuery itself
//! and hands back a [`QueryResult`] of Arrow batches; [`TableNames`] says how `ref()` names
//! a table for each.

use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::{Int64Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use mailroom_googlesql::{self as googlesql, FrontEndError};

use super::WarehouseError;
use super::bigquery::client::{BigQueryClient, BigQueryError};
use super::local::LocalWarehouse;
use crate::error::{Classify, ErrorKind};

/// How `ref('name')` names a table on the engine that will run the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableNames {
    /// The local warehouse: tables by their own name.
    Local,
    /// BigQuery: `project.dataset.table`, backtick-quoted.
    BigQuery {
        /// The project.
        project: String,
        /// The dataset the tables are loaded into.
        dataset: String,
    },
}

impl TableNames {
    /// The quoted name of `table`.
    pub fn qualify(&self, table: &str) -> String {
        match self {
            TableNames::Local => format!("`{table}`"),
            TableNames::BigQuery { project, dataset } => format!("`{project}.{dataset}.{table}`"),
        }
    }
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct QueryResult {
    /// Column names and types.
    pub schema: SchemaRef,
    /// The rows.
    pub batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// How many rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// Why a query did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is wrong or cannot run with its meaning.
    #[error(transparent)]
    FrontEnd(#[from] FrontEndError),
    /// The tables could not be opened.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// BigQuery refused or failed the query.
    #[error(transparent)]
    BigQuery(#[from] BigQueryError),
}

impl Classify for QueryError {
    fn kind(&self) -> ErrorKind {
        match self {
            QueryError::FrontEnd(FrontEndError::Execution(_)) => ErrorKind::Terminal,
            QueryError::FrontEnd(_) => ErrorKind::Config,
            QueryError::Warehouse(e) => e.kind(),
            QueryError::BigQuery(e) => e.kind(),
        }
    }
}

/// DataFusion's "table 'datafusion.public.x' not found" said in the warehouse's terms.
fn explain_missing_table(message: &str, tables: &[String]) -> String {
    let Some(name) = message
        .split("table '")
        .nth(1)
        .and_then(|rest| rest.split('\'').next())
        .filter(|_| message.contains("not found"))
    else {
        return message.to_string();
    };
    let table = name.rsplit('.').next().unwrap_or(name);
    let known = if tables.is_empty() {
        "it has no tables yet: run the extract jobs first (`mailroom run-job NAME`)".to_string()
    } else {
        format!("it has {}", tables.join(", "))
    };
    format!("no table `{table}` in the local warehouse; {known}")
}

/// Where queries run: the configured warehouse's tables. Cheap to make; reading needs no
/// lock, so queries run beside a scheduler that is loading.
pub enum QueryEngine {
    /// The local warehouse's tables.
    Local(LocalWarehouse),
    /// A BigQuery dataset's tables; the SQL runs there as written.
    BigQuery {
        /// The client.
        client: Arc<BigQueryClient>,
        /// The dataset `ref()` names tables in.
        dataset: String,
    },
}

impl QueryEngine {
    /// How `ref('table')` names a table for this engine.
    pub fn table_names(&self) -> TableNames {
        match self {
            QueryEngine::Local(_) => TableNames::Local,
            QueryEngine::BigQuery { client, dataset } => TableNames::BigQuery {
                project: client.project.clone(),
                dataset: dataset.clone(),
            },
        }
    }

    /// How many rows `table` holds: a local table's log counts them, else `COUNT(*)`.
    pub async fn row_count(&self, table: &str) -> Result<Option<u64>, QueryError> {
        if let QueryEngine::Local(warehouse) = self
            && let Some(rows) = warehouse.row_count(table).await?
        {
            return Ok(Some(rows));
        }
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {}",
            self.table_names().qualify(table)
        );
        let result = self.run(&sql).await?;
        Ok(result.batches.first().and_then(|batch| {
            let counts = batch.column(0).as_primitive_opt::<Int64Type>()?;
            u64::try_from(counts.value(0)).ok()
        }))
    }

    /// Runs one rendered statement.
    pub async fn run(&self, sql: &str) -> Result<QueryResult, QueryError> {
        match self {
            QueryEngine::Local(warehouse) => {
                let ctx = warehouse
                    .session(&googlesql::referenced_tables(sql))
                    .await?;
                match googlesql::run(&ctx, sql).await {
                    Ok((schema, batches)) => Ok(QueryResult { schema, batches }),
                    Err(FrontEndError::Plan(message)) => Err(FrontEndError::Plan(
                        explain_missing_table(&message, &warehouse.tables()?),
                    )
                    .into()),
                    Err(other) => Err(other.into()),
                }
            }
            QueryEngine::BigQuery { client, .. } => Ok(client.query(sql).await?),
        }
    }
}

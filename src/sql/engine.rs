//! Runs rendered GoogleSQL on the configured warehouse and hands back Arrow batches: the
//! local Delta tables through the GoogleSQL front end on DataFusion, or BigQuery itself.

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

use crate::error::{Classify, ErrorKind};
use crate::sql::googlesql::{self, FrontEndError};
use crate::sql::template::TableNames;
use crate::warehouse::WarehouseError;
use crate::warehouse::bigquery::client::{BigQueryClient, BigQueryError};
use crate::warehouse::local::LocalWarehouse;

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
    #[error("{0}")]
    FrontEnd(#[from] FrontEndError),
    /// The tables could not be opened.
    #[error("{0}")]
    Warehouse(#[from] WarehouseError),
    /// BigQuery refused or failed the query.
    #[error("{0}")]
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

/// Where queries run.
pub enum QueryEngine<'w> {
    /// The local warehouse's tables.
    Local(&'w LocalWarehouse),
    /// A BigQuery dataset's tables; the SQL runs there as written.
    BigQuery {
        /// The client.
        client: &'w BigQueryClient,
        /// The dataset `ref()` names tables in.
        dataset: &'w str,
    },
}

impl QueryEngine<'_> {
    /// How `ref('table')` names a table for this engine.
    pub fn table_names(&self) -> TableNames {
        match self {
            QueryEngine::Local(_) => TableNames::Local,
            QueryEngine::BigQuery { client, dataset } => TableNames::BigQuery {
                project: client.project.clone(),
                dataset: dataset.to_string(),
            },
        }
    }

    /// Runs one rendered statement.
    pub async fn run(&self, sql: &str) -> Result<QueryResult, QueryError> {
        match self {
            QueryEngine::Local(warehouse) => {
                let ctx = warehouse.session().await?;
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

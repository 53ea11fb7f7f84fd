//! Opening the configured warehouse: the one way the pipeline, `mailroom query` and a
//! job's `sql` step reach it. [`open`] gives an [`OpenWarehouse`] for loading (one
//! process per data directory; BigQuery journals its loads in the state database);
//! [`open_for_queries`] gives a [`QueryEngine`] that only reads, beside a running
//! scheduler, without the lock.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};

use super::bigquery::{BigQuerySettings, BigQueryWarehouse, connect_client};
use super::local::LocalWarehouse;
use super::query::QueryEngine;
use super::{Commit, CommitOutcome, LoadId, Warehouse, WarehouseError};
use crate::config::Config;
use crate::normalize::TableSchema;
use crate::services::Services;
use crate::state::StateStore;

/// The configured warehouse, opened.
pub enum OpenWarehouse {
    /// Delta tables on this machine.
    Local(LocalWarehouse),
    /// A BigQuery dataset.
    BigQuery(Box<BigQueryWarehouse>),
}

impl OpenWarehouse {
    /// Where queries on its tables run.
    pub fn queries(&self) -> QueryEngine {
        match self {
            OpenWarehouse::Local(local) => QueryEngine::Local(LocalWarehouse::reader(local.root())),
            OpenWarehouse::BigQuery(bigquery) => bigquery.engine(),
        }
    }
}

/// Opens the configured warehouse for loading: local Delta tables under the data
/// directory, or the BigQuery dataset reached through `services`, journaling in `state`.
pub fn open(
    config: &Config,
    services: &Services,
    state: Arc<StateStore>,
) -> Result<OpenWarehouse, WarehouseError> {
    match BigQuerySettings::from_config(&config.warehouse) {
        Some(settings) => {
            let client = connect_client(&settings, services)?;
            Ok(OpenWarehouse::BigQuery(Box::new(BigQueryWarehouse::new(
                client,
                settings.dataset,
                state,
                config.data_dir.join("bigquery-staging"),
            ))))
        }
        None => {
            let dir = config.local_warehouse_dir().unwrap_or_default();
            Ok(OpenWarehouse::Local(LocalWarehouse::open(&dir)?))
        }
    }
}

/// Opens the configured warehouse for queries only: nothing is created, cleared or locked.
pub fn open_for_queries(
    config: &Config,
    services: &Services,
) -> Result<QueryEngine, WarehouseError> {
    match BigQuerySettings::from_config(&config.warehouse) {
        Some(settings) => Ok(QueryEngine::BigQuery {
            client: Arc::new(connect_client(&settings, services)?),
            dataset: settings.dataset,
        }),
        None => {
            let dir = config.local_warehouse_dir().unwrap_or_default();
            Ok(QueryEngine::Local(LocalWarehouse::reader(&dir)))
        }
    }
}

impl Warehouse for OpenWarehouse {
    async fn cursor(
        &self,
        table: &str,
        source: &str,
        stream: &str,
    ) -> Result<Option<DateTime<Utc>>, WarehouseError> {
        match self {
            OpenWarehouse::Local(w) => w.cursor(table, source, stream).await,
            OpenWarehouse::BigQuery(w) => w.cursor(table, source, stream).await,
        }
    }

    async fn write(
        &mut self,
        load: &LoadId,
        table: &TableSchema,
        batch: RecordBatch,
    ) -> Result<(), WarehouseError> {
        match self {
            OpenWarehouse::Local(w) => w.write(load, table, batch).await,
            OpenWarehouse::BigQuery(w) => w.write(load, table, batch).await,
        }
    }

    async fn commit(&mut self, commit: Commit) -> Result<CommitOutcome, WarehouseError> {
        match self {
            OpenWarehouse::Local(w) => w.commit(commit).await,
            OpenWarehouse::BigQuery(w) => w.commit(commit).await,
        }
    }

    async fn abort(&mut self, load: &LoadId) {
        match self {
            OpenWarehouse::Local(w) => w.abort(load).await,
            OpenWarehouse::BigQuery(w) => w.abort(load).await,
        }
    }
}

//! `mailroom query` (any warehouse), and `export` and `compact` (the local one).

use std::io::Write as _;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use mailroom::config::{Config, ParamValue};
use mailroom::error::ErrorKind;
use mailroom::scheduler::clock::{Clock, SystemClock};
use mailroom::sql::output::{self, OutputFormat};
use mailroom::sql::render_query;
use mailroom::warehouse::{self, local::LocalWarehouse};

use super::{Failure, Wiring, open_state};

/// The local warehouse of `config`, or a config error naming what it is instead.
fn local_warehouse(config: &Config, command: &str) -> Result<LocalWarehouse, Failure> {
    let Some(dir) = config.local_warehouse_dir() else {
        return Err(Failure {
            kind: ErrorKind::Config,
            message: format!(
                "{command} works on the local warehouse; this config's warehouse is BigQuery"
            ),
        });
    };
    Ok(LocalWarehouse::open(&dir)?)
}

/// `mailroom query FILE_OR_SQL`: renders and runs one query on the configured warehouse
/// and prints its rows.
pub async fn query(
    config: Config,
    file_or_sql: &str,
    params: &[(String, String)],
    format: OutputFormat,
    now: Option<DateTime<Utc>>,
) -> Result<ExitCode, Failure> {
    // The local warehouse is files on this machine: no service is reached.
    let wiring = match config.local_warehouse_dir() {
        Some(_) => Wiring::offline(config)?,
        None => Wiring::build(config).await?,
    };
    let engine = warehouse::open_for_queries(&wiring.config, &wiring.services)?;
    let overrides = params
        .iter()
        .map(|(name, value)| (name.clone(), ParamValue::String(value.clone())))
        .collect();
    let now = now.unwrap_or_else(|| SystemClock.now());
    let sql = render_query(
        &wiring.config.base_dir,
        file_or_sql,
        &overrides,
        now,
        &engine.table_names(),
    )?;
    let result = engine.run(&sql).await?;
    let mut printed = Vec::new();
    output::write(&result, format, &mut printed).map_err(|e| Failure {
        kind: ErrorKind::Bug,
        message: format!("cannot format the result: {e}"),
    })?;
    match std::io::stdout().lock().write_all(&printed) {
        // A reader that stops early (`| head`) is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure {
            kind: ErrorKind::Terminal,
            message: format!("cannot print the result: {e}"),
        }),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// `mailroom compact [TABLE]`: fewer, larger files, and old ones deleted.
pub async fn compact(
    config: &Config,
    table: Option<&str>,
    keep_days: u32,
) -> Result<ExitCode, Failure> {
    let (_lock, _state) = open_state(config)?;
    let warehouse = local_warehouse(config, "compact")?;
    let tables = match table {
        Some(name) => vec![name.to_string()],
        None => warehouse.tables()?,
    };
    let keep = chrono::Duration::days(i64::from(keep_days));
    for name in &tables {
        match warehouse.compact(name, keep).await? {
            Some(done) => say!(
                "{name}: {} small files rewritten as {}; {} old files deleted",
                done.files_removed,
                done.files_added,
                done.files_deleted
            ),
            None => {
                return Err(Failure {
                    kind: ErrorKind::Config,
                    message: format!("no table named \"{name}\" in the local warehouse"),
                });
            }
        }
    }
    if tables.is_empty() {
        say!("No tables yet.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `mailroom export TABLE --parquet FILE`: one plain Parquet file of a local table.
pub async fn export(
    config: &Config,
    table: &str,
    parquet: &std::path::Path,
) -> Result<ExitCode, Failure> {
    let (_lock, _state) = open_state(config)?;
    let warehouse = local_warehouse(config, "export")?;
    match warehouse.export(table, parquet).await? {
        Some(rows) => {
            say!("{table}: {rows} rows written to {}", parquet.display());
            Ok(ExitCode::SUCCESS)
        }
        None => Err(Failure {
            kind: ErrorKind::Config,
            message: format!(
                "no table named \"{table}\" in the local warehouse (tables appear after their first load)"
            ),
        }),
    }
}

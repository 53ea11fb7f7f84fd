//! The extract loop for one stream: source pages → decoder → warehouse, then one commit.
//!
//! The source fetches in its own task and hands pages through a bounded channel, so
//! fetching runs ahead of decoding by at most [`PAGE_QUEUE`] pages and memory stays flat
//! however many records there are. Batches are staged in the warehouse as they fill; the
//! commit at the end makes the stream's tables, its quarantined records and its new cursor
//! visible together. A failure anywhere drops what was staged and leaves the cursor where
//! it was, so the next run reads the same records again.

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use tokio::sync::mpsc;

use crate::error::{Classify, ErrorKind};
use crate::normalize::quarantine::quarantine_batch;
use crate::normalize::{
    BATCH_ROWS, Decoder, Quarantined, RunStamp, SchemaPolicy, quarantine_table,
};
use crate::sources::{Incremental, Source, SourceError, Window};
use crate::warehouse::{Commit, LoadId, Warehouse, WarehouseError};

/// Pages fetched ahead of decoding.
pub const PAGE_QUEUE: usize = 4;

/// Whether the run follows the stream's cursor or re-reads a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read what changed since the committed cursor, and move it.
    Incremental,
    /// Re-read `[from, to)` without touching the cursor.
    Backfill {
        /// Start of the window.
        from: DateTime<Utc>,
        /// End of the window.
        to: DateTime<Utc>,
    },
}

/// What one stream's extraction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamReport {
    /// The source.
    pub source: String,
    /// The stream.
    pub stream: String,
    /// Rows committed per table (children and quarantine included).
    pub rows: Vec<(String, u64)>,
    /// Records sent to quarantine.
    pub quarantined: u64,
    /// Fields the source sent that the tables do not declare: (table, field).
    pub new_fields: Vec<(String, String)>,
    /// The cursor now committed, if it moved.
    pub cursor: Option<DateTime<Utc>>,
    /// Why nothing was read, when nothing was (a daily snapshot already taken).
    pub skipped: Option<String>,
}

impl StreamReport {
    /// Rows committed to the stream's own table.
    pub fn rows_in(&self, table: &str) -> u64 {
        self.rows
            .iter()
            .find(|(name, _)| name == table)
            .map_or(0, |(_, rows)| *rows)
    }
}

/// Why a stream's extraction failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The warehouse failed.
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    /// The stream is not one the source offers.
    #[error("{source_name} has no stream {stream}")]
    UnknownStream {
        /// The source.
        source_name: String,
        /// The stream asked for.
        stream: String,
    },
    /// A batch could not be built (a mailroom bug).
    #[error("building a batch of {table}: {message}")]
    Batch {
        /// The table.
        table: String,
        /// Arrow's message.
        message: String,
    },
    /// The fetch task died.
    #[error("the fetch task of {0} failed: {1}")]
    Task(String, String),
}

impl Classify for ExtractError {
    fn kind(&self) -> ErrorKind {
        match self {
            ExtractError::Source(err) => err.kind(),
            ExtractError::Warehouse(err) => err.kind(),
            ExtractError::UnknownStream { .. } => ErrorKind::Config,
            ExtractError::Batch { .. } | ExtractError::Task(..) => ErrorKind::Bug,
        }
    }
}

/// Called with the records decoded so far, for progress bars.
pub type Progress<'a> = &'a (dyn Fn(u64) + Send + Sync);

/// Extracts one stream of `source` into `warehouse` (see the module docs).
pub async fn extract_stream<S: Source, W: Warehouse>(
    source: &S,
    stream: &str,
    warehouse: &mut W,
    stamp: Arc<RunStamp>,
    mode: Mode,
    policy: SchemaPolicy,
    progress: Progress<'_>,
) -> Result<StreamReport, ExtractError> {
    let definition = source
        .stream(stream)
        .ok_or_else(|| ExtractError::UnknownStream {
            source_name: source.name().into(),
            stream: stream.into(),
        })?;
    let mut report = StreamReport {
        source: source.name().into(),
        stream: stream.into(),
        ..StreamReport::default()
    };
    let committed = warehouse
        .cursor(definition.table.name, source.name(), stream)
        .await?;
    let window = match plan(mode, definition.incremental, committed, stamp.scheduled_for) {
        Ok(window) => window,
        Err(skipped) => {
            report.skipped = Some(skipped);
            return Ok(report);
        }
    };
    let load = LoadId {
        source: source.name().into(),
        stream: stream.into(),
        run_id: stamp.run_id.clone(),
    };
    let mut decoder = Decoder::new(&definition.table, policy, stamp.clone());
    let loaded = async {
        let quarantined = fetch_and_stage(
            source,
            stream,
            window,
            &mut decoder,
            warehouse,
            &load,
            progress,
        )
        .await?;
        let cursor = match (mode, definition.incremental) {
            (Mode::Backfill { .. }, _) | (_, Incremental::Full) => None,
            (Mode::Incremental, Incremental::Daily) => Some(midnight_of(window.run_at)),
            (Mode::Incremental, Incremental::SinceLastRun) => Some(window.run_at),
            (Mode::Incremental, Incremental::Since { .. }) => {
                let seen = decoder
                    .cursor_max()
                    .and_then(DateTime::<Utc>::from_timestamp_micros);
                committed.into_iter().chain(seen).max()
            }
        };
        let mut tables = vec![decoder.table().clone()];
        tables.extend(decoder.children_mut().map(|c| c.table().clone()));
        if !quarantined.is_empty() {
            let table = quarantine_table();
            let batch =
                quarantine_batch(source.name(), stream, &quarantined, &stamp).map_err(|e| {
                    ExtractError::Batch {
                        table: table.name.into(),
                        message: e.to_string(),
                    }
                })?;
            warehouse.write(&load, &table, batch).await?;
            tables.push(table);
        }
        let commit = Commit {
            load: load.clone(),
            tables,
            cursor,
        };
        let outcome = warehouse.commit(commit).await?;
        Ok::<_, ExtractError>((outcome, quarantined.len() as u64, cursor))
    }
    .await;
    let (outcome, quarantined, cursor) = match loaded {
        Ok(loaded) => loaded,
        Err(err) => {
            warehouse.abort(&load).await;
            return Err(err);
        }
    };
    report.rows = outcome.rows;
    report.quarantined = quarantined;
    report.new_fields = decoder.new_fields();
    report.cursor = cursor;
    tracing::info!(
        source = source.name(),
        stream,
        rows = report.rows_in(definition.table.name),
        quarantined = report.quarantined,
        new_fields = report.new_fields.len(),
        cursor = report.cursor.map_or("-".to_string(), |c| c
            .to_rfc3339_opts(SecondsFormat::Micros, true)),
        "stream extracted"
    );
    Ok(report)
}

/// The window a run reads, or why it reads nothing.
fn plan(
    mode: Mode,
    incremental: Incremental,
    committed: Option<DateTime<Utc>>,
    run_at: DateTime<Utc>,
) -> Result<Window, String> {
    let since = match (mode, incremental) {
        (Mode::Backfill { from, to }, _) => {
            return Ok(Window {
                since: Some(from),
                until: Some(to),
                run_at,
            });
        }
        (Mode::Incremental, Incremental::Since { overlap }) => committed.map(|c| c - overlap),
        (Mode::Incremental, Incremental::SinceLastRun) => committed,
        (Mode::Incremental, Incremental::Daily) if committed == Some(midnight_of(run_at)) => {
            return Err(format!(
                "the snapshot for {} was already taken",
                run_at.format("%Y-%m-%d")
            ));
        }
        (Mode::Incremental, Incremental::Daily | Incremental::Full) => None,
    };
    Ok(Window {
        since,
        until: None,
        run_at,
    })
}

/// The UTC midnight starting `t`'s day: a daily stream's cursor.
fn midnight_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Runs the source's fetch on its own task and decodes its pages as they come, staging full
/// batches; returns the quarantined records. A failure on either side stops both.
async fn fetch_and_stage<S: Source, W: Warehouse>(
    source: &S,
    stream: &str,
    window: Window,
    decoder: &mut Decoder,
    warehouse: &mut W,
    load: &LoadId,
    progress: Progress<'_>,
) -> Result<Vec<Quarantined>, ExtractError> {
    let (pages_in, mut pages) = mpsc::channel(PAGE_QUEUE);
    let fetcher = {
        let source = source.clone();
        let stream = stream.to_string();
        tokio::spawn(async move { source.fetch(&stream, window, pages_in).await })
    };
    let table = decoder.table().name;
    let mut quarantined: Vec<Quarantined> = Vec::new();
    let consumed: Result<(), ExtractError> = async {
        while let Some(page) = pages.recv().await {
            for record in page.records() {
                decoder.push_json(record);
            }
            quarantined.extend(page.rejected().iter().map(|(record, reason)| Quarantined {
                table,
                record: record.clone(),
                reason: reason.clone(),
            }));
            quarantined.extend(decoder.take_quarantined());
            write_full_batches(decoder, warehouse, load, false).await?;
            progress(decoder.records());
        }
        Ok(())
    }
    .await;
    // Dropping the receiver stops a fetcher still sending.
    drop(pages);
    match (consumed, fetcher.await) {
        (Err(err), _) => Err(err),
        (Ok(()), Ok(Err(err))) => Err(err.into()),
        (Ok(()), Err(err)) => Err(ExtractError::Task(stream.into(), err.to_string())),
        (Ok(()), Ok(Ok(()))) => {
            write_full_batches(decoder, warehouse, load, true).await?;
            Ok(quarantined)
        }
    }
}

/// Stages the decoder's batch and its children's when full, or at the end when not empty.
async fn write_full_batches<W: Warehouse>(
    decoder: &mut Decoder,
    warehouse: &mut W,
    load: &LoadId,
    at_end: bool,
) -> Result<(), ExtractError> {
    write_batch(decoder, warehouse, load, at_end).await?;
    for child in decoder.children_mut() {
        write_batch(child, warehouse, load, at_end).await?;
    }
    Ok(())
}

async fn write_batch<W: Warehouse>(
    decoder: &mut Decoder,
    warehouse: &mut W,
    load: &LoadId,
    at_end: bool,
) -> Result<(), ExtractError> {
    if !at_end && decoder.pending_rows() < BATCH_ROWS {
        return Ok(());
    }
    let batch = decoder.finish_batch().map_err(|e| ExtractError::Batch {
        table: decoder.table().name.into(),
        message: e.to_string(),
    })?;
    if let Some(batch) = batch {
        warehouse.write(load, decoder.table(), batch).await?;
    }
    Ok(())
}

//! Runs a job's steps in order: the [`Executor`] the scheduler and `run-job` drive.
//!
//! Each step kind belongs to a stage of the data flow (extract → normalize → load, sql,
//! deliver, activate). Extract steps read their streams through [`crate::extract`]; a dry
//! run extracts into a counting warehouse and reports what would be loaded, changing
//! nothing. A step whose stage this build does not have yet — loading into a warehouse,
//! SQL, delivery, activation — fails the run with a terminal error that says so before
//! anything is written or sent: it is never skipped silently or counted as a success.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::Utc;

use crate::config::{Config, JobConfig, ProcessEnvironment, SourceKind, Step};
use crate::error::{Classify, ErrorKind};
use crate::extract::{Mode, StreamReport, extract_stream};
use crate::http::retry::RetryPolicy;
use crate::http::{HttpClient, Timeouts};
use crate::normalize::RunStamp;
use crate::scheduler::{Executor, RunContext, RunError};
use crate::sources::{self, AnySource, Source};
use crate::state::Counters;
use crate::warehouse::memory::MemoryWarehouse;

/// Runs steps against the configured sources, warehouse and destinations.
pub struct Pipeline {
    config: Arc<Config>,
    sandbox: Option<String>,
    client: HttpClient,
    /// Sources built so far: one per kind for the process's life, so every run shares
    /// each credential's rate budget.
    sources: Mutex<HashMap<SourceKind, AnySource>>,
}

impl Pipeline {
    /// A pipeline over `config`; `sandbox` is the sandbox's base URL when services are
    /// simulated.
    pub fn new(config: Arc<Config>, sandbox: Option<String>) -> Result<Self, RunError> {
        let client = HttpClient::new(Timeouts::default())
            .map_err(|e| RunError::new(ErrorKind::Bug, e.to_string()))?;
        Ok(Pipeline {
            config,
            sandbox,
            client,
            sources: Mutex::new(HashMap::new()),
        })
    }

    /// The configured source `kind`, built on first use.
    pub fn source(&self, kind: SourceKind) -> Result<AnySource, RunError> {
        let mut built = self
            .sources
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(source) = built.get(&kind) {
            return Ok(source.clone());
        }
        let source = sources::build(
            kind,
            &self.config,
            self.sandbox.as_deref(),
            &ProcessEnvironment,
            &self.client,
            RetryPolicy::default(),
        )
        .map_err(|err| RunError::new(err.kind(), err.to_string()))?;
        built.insert(kind, source.clone());
        Ok(source)
    }

    async fn run_step(
        &self,
        step: &Step,
        run: &RunContext,
        counters: &mut Counters,
    ) -> Result<(), RunError> {
        match step {
            Step::Extract { source, streams } if run.dry_run => {
                let kind = *source;
                let source = self.source(kind)?;
                let stamp = stamp(run.run_id.clone(), run.scheduled_for);
                for stream in streams {
                    let mut counting = MemoryWarehouse::counting();
                    let report = extract_stream(
                        &source,
                        stream,
                        &mut counting,
                        stamp.clone(),
                        Mode::Incremental,
                        self.config.schema_policy(kind),
                        &|_| {},
                    )
                    .await
                    .map_err(|err| RunError::new(err.kind(), err.to_string()))?;
                    count(counters, &report);
                }
                Ok(())
            }
            Step::Extract { .. } => Err(RunError::new(
                ErrorKind::Terminal,
                "loading into the warehouse is not part of this build of mailroom yet; nothing was extracted or loaded (`run-job --dry-run` extracts and shows what would be loaded)",
            )),
            Step::Sql { .. } | Step::Deliver { .. } | Step::Activate { .. } => Err(RunError::new(
                ErrorKind::Terminal,
                format!(
                    "the {} stage is not part of this build of mailroom yet; nothing was extracted, loaded or sent",
                    step.kind()
                ),
            )),
        }
    }
}

/// The window of a backfill: re-read `[from, to)` without moving any cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backfill {
    /// Start of the window.
    pub from: chrono::DateTime<Utc>,
    /// End of the window (exclusive).
    pub to: chrono::DateTime<Utc>,
}

/// Told how far a backfill has come: the stream, and records decoded in it so far.
pub trait BackfillProgress: Send + Sync {
    /// A stream starts.
    fn stream(&self, source: &str, stream: &str);
    /// Records decoded so far in the current stream.
    fn records(&self, records: u64);
}

impl Pipeline {
    /// Re-extracts the window of every extract step of `job`. Loading needs a warehouse,
    /// which this build does not have, so only a dry run (`dry_run`) gets past the first
    /// stream: it extracts everything and counts what would be loaded.
    pub async fn backfill(
        &self,
        job: &JobConfig,
        window: Backfill,
        dry_run: bool,
        progress: &dyn BackfillProgress,
    ) -> Result<Counters, RunError> {
        if !dry_run {
            return Err(RunError::new(
                ErrorKind::Terminal,
                "loading into the warehouse is not part of this build of mailroom yet; nothing was extracted or loaded (`backfill --dry-run` extracts the window and shows what would be loaded)",
            ));
        }
        let stamp = stamp(format!("backfill-{}", uuid::Uuid::now_v7()), Utc::now());
        let mode = Mode::Backfill {
            from: window.from,
            to: window.to,
        };
        let mut counters = Counters::new();
        for step in &job.steps {
            let Step::Extract { source, streams } = step else {
                continue;
            };
            let kind = *source;
            let source = self.source(kind)?;
            for stream in streams {
                progress.stream(source.name(), stream);
                let mut counting = MemoryWarehouse::counting();
                let report = extract_stream(
                    &source,
                    stream,
                    &mut counting,
                    stamp.clone(),
                    mode,
                    self.config.schema_policy(kind),
                    &|records| progress.records(records),
                )
                .await
                .map_err(|err| {
                    RunError::new(err.kind(), format!("{} {stream}: {err}", source.name()))
                })?;
                count(&mut counters, &report);
            }
        }
        Ok(counters)
    }
}

/// Rows extracted now for the run `run_id` standing for `scheduled_for`.
fn stamp(run_id: String, scheduled_for: chrono::DateTime<Utc>) -> Arc<RunStamp> {
    Arc::new(RunStamp {
        run_id,
        extracted_at: Utc::now(),
        scheduled_for,
    })
}

/// Adds a stream's rows, quarantined records and new fields to the run's counters.
fn count(counters: &mut Counters, report: &StreamReport) {
    for (table, rows) in &report.rows {
        *counters.entry(format!("rows.{table}")).or_default() += rows;
    }
    *counters.entry("quarantined".into()).or_default() += report.quarantined;
    *counters.entry("new_fields".into()).or_default() += report.new_fields.len() as u64;
}

impl Executor for Pipeline {
    async fn execute(&self, job: &JobConfig, run: &RunContext) -> Result<Counters, RunError> {
        let mut counters = Counters::new();
        for (index, step) in job.steps.iter().enumerate() {
            tracing::info!(job = %job.name, run_id = %run.run_id, step = index + 1, what = %step.describe(), "step started");
            self.run_step(step, run, &mut counters)
                .await
                .map_err(|err| {
                    RunError::new(
                        err.kind,
                        format!("step {}, {}: {}", index + 1, step.describe(), err.message),
                    )
                })?;
        }
        tracing::debug!(job = %job.name, data_dir = %self.config.data_dir.display(), "all steps done");
        Ok(counters)
    }
}

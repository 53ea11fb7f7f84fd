//! Runs a job's steps in order: the [`Executor`] the scheduler and `run-job` drive.
//!
//! Each step kind belongs to a stage of the data flow (extract → normalize → load, sql,
//! deliver, activate). Extract steps read their streams through [`crate::extract`] into
//! the configured warehouse (local Delta tables or BigQuery); a dry run extracts into a
//! counting warehouse and reports what would be loaded, changing nothing. SQL steps render
//! their file with the run's fire time as `now` (a rerun or catch-up run gives the same
//! answer) and run it on the warehouse through its read-only query engine, in dry runs
//! too; each result is kept, by step name, for the steps after it in the same run. Deliver
//! steps send a result to Google Sheets or Slack exactly once per period ([`deliver`]);
//! activate steps enroll a result's people into a win-back sequence, each at most once per
//! cooldown and only if the platform says they may be mailed ([`activate`]).

mod activate;
mod deliver;
mod loyalty;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::config::{
    Config, DeliveryMode, DestinationKind, JobConfig, ParamValue, SourceKind, Step,
};
use crate::deliver::sheets::Sheets;
use crate::deliver::slack::Slack;
use crate::error::{Classify, ErrorKind};
use crate::extract::{Mode, StreamReport, extract_stream};
use crate::normalize::RunStamp;
use crate::scheduler::{Executor, RunContext, RunError};
use crate::services::Services;
use crate::sources::{self, AnySource, Source};
use crate::sql::{SqlFile, SqlHeader};
use crate::state::{Counters, StateStore};
use crate::warehouse::memory::MemoryWarehouse;
use crate::warehouse::{self, OpenWarehouse, QueryEngine, QueryResult};

/// A SQL step's answer, with its file's header (title, key figures, default deliveries).
#[derive(Debug, Clone)]
pub struct StepAnswer {
    /// The file's header.
    pub header: SqlHeader,
    /// The rows.
    pub result: QueryResult,
}

/// The answers of a run's SQL steps, by step name, for the steps after them.
pub type StepResults = HashMap<String, StepAnswer>;

/// Runs steps against the configured sources, warehouse and destinations.
pub struct Pipeline {
    config: Arc<Config>,
    /// Every service's connection, one per credential, shared by all runs.
    services: Arc<Services>,
    /// Sources built so far: one per kind for the process's life.
    sources: Mutex<HashMap<SourceKind, AnySource>>,
    /// The state database (BigQuery keeps its cursors and load journal there).
    state: Arc<StateStore>,
    /// The configured warehouse, once opened.
    warehouse: tokio::sync::OnceCell<tokio::sync::Mutex<OpenWarehouse>>,
    /// Where SQL steps run: the warehouse's tables, read-only (also in dry runs).
    queries: tokio::sync::OnceCell<QueryEngine>,
    /// The configured spreadsheet, reached on the first Sheets delivery.
    sheets: tokio::sync::OnceCell<Sheets>,
    /// The configured Slack workspace, reached on the first Slack delivery.
    slack: tokio::sync::OnceCell<Slack>,
    /// Enroll past the anomaly guard (`run-job --force`).
    force_activation: bool,
}

impl Pipeline {
    /// A pipeline over `config`, reaching every service through `services`.
    pub fn new(config: Arc<Config>, services: Arc<Services>, state: Arc<StateStore>) -> Self {
        Pipeline {
            config,
            services,
            sources: Mutex::new(HashMap::new()),
            state,
            warehouse: tokio::sync::OnceCell::new(),
            queries: tokio::sync::OnceCell::new(),
            sheets: tokio::sync::OnceCell::new(),
            slack: tokio::sync::OnceCell::new(),
            force_activation: false,
        }
    }

    /// Lets activate steps enroll even when far more people are eligible than in recent
    /// runs (`run-job --force`, after a person has checked the numbers).
    pub fn force_activation(&mut self, force: bool) {
        self.force_activation = force;
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
        let source = sources::build(kind, &self.services)
            .map_err(|err| RunError::new(err.kind(), err.to_string()))?;
        built.insert(kind, source.clone());
        Ok(source)
    }

    async fn run_step(
        &self,
        job: &JobConfig,
        step: &Step,
        run: &RunContext,
        counters: &mut Counters,
        results: &mut StepResults,
    ) -> Result<(), RunError> {
        match step {
            Step::Extract { source, streams } => {
                let stamp = stamp(run.run_id.clone(), run.scheduled_for);
                let plan = ExtractPlan {
                    kind: *source,
                    streams,
                    stamp,
                    mode: Mode::Incremental,
                    dry_run: run.dry_run,
                };
                self.extract(plan, counters, &|_, _| {}, &|_| {}).await
            }
            Step::Compact { keep_days } => self.compact(*keep_days, run.dry_run, counters).await,
            Step::Sql {
                name,
                file,
                params,
                into,
                header_deliveries,
            } => {
                let (header, result) = self.query(file, params, run.scheduled_for).await?;
                if let Some(table) = into {
                    let rows = match run.dry_run {
                        true => result.num_rows() as u64,
                        false => self.store(table, &result, run).await?,
                    };
                    counters.insert(format!("rows.{table}"), rows);
                }
                tracing::info!(run_id = %run.run_id, step = %name, rows = result.num_rows(), "query answered");
                counters.insert(format!("result.{name}"), result.num_rows() as u64);
                // The header names the answer and, for a report, where it goes when the
                // job's steps do not say.
                let deliveries = header.deliveries.clone();
                results.insert(name.clone(), StepAnswer { header, result });
                let has_own = job
                    .steps
                    .iter()
                    .any(|s| matches!(s, Step::Deliver { from, .. } if from == name));
                if !has_own && *header_deliveries {
                    for default in deliveries {
                        let step = deliver::DeliverStep {
                            job,
                            run,
                            report: name,
                            target: &default.target,
                        };
                        let answer = answer(results, name)?;
                        self.deliver(step, default.to, DeliveryMode::Append, answer, counters)
                            .await?;
                    }
                }
                Ok(())
            }
            Step::Deliver {
                from,
                to,
                target,
                mode,
            } => {
                let step = deliver::DeliverStep {
                    job,
                    run,
                    report: from,
                    target,
                };
                self.deliver(step, *to, *mode, answer(results, from)?, counters)
                    .await
            }
            Step::LoyaltySync {
                platform,
                clear_nulls,
            } => {
                self.loyalty_sync(*platform, *clear_nulls, run, counters)
                    .await
            }
            Step::Activate {
                from,
                platform,
                sequence,
                policy,
            } => {
                let step = activate::ActivateStep {
                    job,
                    run,
                    platform: *platform,
                    sequence,
                    policy,
                };
                self.activate(step, answer(results, from)?, counters).await
            }
        }
    }

    /// Sends `answer` as `step` says, to Sheets or Slack.
    async fn deliver(
        &self,
        step: deliver::DeliverStep<'_>,
        to: DestinationKind,
        mode: DeliveryMode,
        answer: &StepAnswer,
        counters: &mut Counters,
    ) -> Result<(), RunError> {
        match to {
            DestinationKind::Sheets => {
                self.deliver_to_sheets(step, mode, &answer.result, counters)
                    .await
            }
            DestinationKind::Slack => self.deliver_to_slack(step, answer, counters).await,
        }
    }

    /// Renders the SQL file with `now` and `params` and runs it on the warehouse's tables;
    /// the file's header and the answer.
    async fn query(
        &self,
        file: &std::path::Path,
        params: &BTreeMap<String, ParamValue>,
        now: DateTime<Utc>,
    ) -> Result<(SqlHeader, QueryResult), RunError> {
        let engine = self.query_engine().await?;
        // The step's file was checked when the config was read (the built-in config's may
        // be compiled in: `SqlFile::read` finds those).
        let config_error = |message: String| RunError::new(ErrorKind::Config, message);
        let sql_file = SqlFile::read(file).map_err(|err| config_error(err.to_string()))?;
        let sql = sql_file
            .render(now, params, &engine.table_names())
            .map_err(|err| config_error(format!("{}: {err}", file.display())))?;
        let result = engine
            .run(&sql)
            .await
            .map_err(|err| RunError::new(err.kind(), format!("{}: {err}", file.display())))?;
        Ok((sql_file.header, result))
    }

    /// The warehouse's tables, read-only, opened on first use.
    async fn query_engine(&self) -> Result<&QueryEngine, RunError> {
        self.queries
            .get_or_try_init(|| async {
                warehouse::open_for_queries(&self.config, &self.services)
                    .map_err(|err| RunError::new(err.kind(), err.to_string()))
            })
            .await
    }

    /// Extracts each stream of a step into the configured warehouse (or, for a dry run, a
    /// counting one), adding what was loaded to `counters`.
    async fn extract(
        &self,
        plan: ExtractPlan<'_>,
        counters: &mut Counters,
        on_stream: &(dyn Fn(&str, &str) + Send + Sync),
        progress: &(dyn Fn(u64) + Send + Sync),
    ) -> Result<(), RunError> {
        let source = self.source(plan.kind)?;
        let policy = self.config.schema_policy(plan.kind);
        for stream in plan.streams {
            on_stream(source.name(), stream);
            let report = if plan.dry_run {
                let mut counting = MemoryWarehouse::counting();
                extract_stream(
                    &source,
                    stream,
                    &mut counting,
                    plan.stamp.clone(),
                    plan.mode,
                    policy,
                    progress,
                )
                .await
            } else {
                let mut warehouse = self.warehouse().await?;
                extract_stream(
                    &source,
                    stream,
                    &mut *warehouse,
                    plan.stamp.clone(),
                    plan.mode,
                    policy,
                    progress,
                )
                .await
            }
            .map_err(|err| {
                RunError::new(err.kind(), format!("{} {stream}: {err}", source.name()))
            })?;
            count(counters, &report);
        }
        Ok(())
    }

    /// Compacts every local table (a dry run only lists them); counts files rewritten.
    async fn compact(
        &self,
        keep_days: u32,
        dry_run: bool,
        counters: &mut Counters,
    ) -> Result<(), RunError> {
        let mut warehouse = self.warehouse().await?;
        let OpenWarehouse::Local(warehouse) = &mut *warehouse else {
            return Err(RunError::new(
                ErrorKind::Config,
                "the compact step works on the local warehouse; BigQuery manages its own storage",
            ));
        };
        let failed =
            |err: crate::warehouse::WarehouseError| RunError::new(err.kind(), err.to_string());
        let keep = chrono::Duration::days(i64::from(keep_days));
        for table in warehouse.tables().map_err(failed)? {
            *counters.entry("tables".into()).or_default() += 1;
            if dry_run {
                continue;
            }
            if let Some(done) = warehouse.compact(&table, keep).await.map_err(failed)? {
                *counters.entry("files_rewritten".into()).or_default() += done.files_removed;
                *counters.entry("files_deleted".into()).or_default() += done.files_deleted;
            }
        }
        Ok(())
    }

    /// The configured warehouse, opened on first use and shared by every run (one load at a
    /// time).
    async fn warehouse(&self) -> Result<tokio::sync::MutexGuard<'_, OpenWarehouse>, RunError> {
        let opened = self
            .warehouse
            .get_or_try_init(|| async {
                warehouse::open(&self.config, &self.services, self.state.clone())
                    .map(tokio::sync::Mutex::new)
                    .map_err(|err| RunError::new(err.kind(), err.to_string()))
            })
            .await?;
        Ok(opened.lock().await)
    }
}

/// One extract step's streams and how to run them.
struct ExtractPlan<'a> {
    kind: SourceKind,
    streams: &'a [String],
    stamp: Arc<RunStamp>,
    mode: Mode,
    dry_run: bool,
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
    /// Re-extracts the window of every extract step of `job` into the warehouse (a dry run:
    /// into a counting one) without moving any cursor.
    pub async fn backfill(
        &self,
        job: &JobConfig,
        window: Backfill,
        dry_run: bool,
        progress: &dyn BackfillProgress,
    ) -> Result<Counters, RunError> {
        let stamp = stamp(format!("backfill-{}", uuid::Uuid::now_v7()), Utc::now());
        let mut counters = Counters::new();
        for step in &job.steps {
            let Step::Extract { source, streams } = step else {
                continue;
            };
            let plan = ExtractPlan {
                kind: *source,
                streams,
                stamp: stamp.clone(),
                mode: Mode::Backfill {
                    from: window.from,
                    to: window.to,
                },
                dry_run,
            };
            self.extract(
                plan,
                &mut counters,
                &|source, stream| progress.stream(source, stream),
                &|records| progress.records(records),
            )
            .await?;
        }
        Ok(counters)
    }
}

/// The answer of the SQL step named `name` (config validation makes sure it ran before).
fn answer<'r>(results: &'r StepResults, name: &str) -> Result<&'r StepAnswer, RunError> {
    results
        .get(name)
        .ok_or_else(|| RunError::new(ErrorKind::Bug, format!("no answer of a step named {name}")))
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
        let mut results = StepResults::new();
        for (index, step) in job.steps.iter().enumerate() {
            // Every line a step logs carries its number and kind (inside the run's span,
            // which carries the job and run id).
            let span = tracing::info_span!("step", step = index + 1, kind = step.kind());
            tracing::info!(parent: &span, what = %step.describe(), "step started");
            self.run_step(job, step, run, &mut counters, &mut results)
                .instrument(span)
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

    async fn run_failed(&self, job: &JobConfig, run: &RunContext, error: &RunError) {
        let Some(channel) = &job.alert_channel else {
            return;
        };
        let notice = async {
            self.slack()
                .await?
                .failure_notice(channel, &job.name, run, error)
                .await
        };
        if let Err(err) = notice.await {
            tracing::warn!(job = %job.name, channel = %channel, error = %err, "could not post the failure notice");
        }
    }
}

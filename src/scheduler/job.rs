//! One run of a job: the ledger row, the attempts with timeout and retry, and how it ends.
//!
//! Transient failures (and attempts that exceed `timeout_secs`) are retried with
//! [`Backoff`] up to the job's `retries`; config, terminal and bug failures never are.
//! A shutdown during a backoff wait ends the run as interrupted instead of retrying.
//! A dry run calls the executor with `dry_run` set and writes nothing to the ledger.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::clock::Clock;
use super::retry::Backoff;
use crate::config::JobConfig;
use crate::error::{Classify, ErrorKind};
use crate::state::{Counters, NewRun, RunStatus, StateStore, Trigger};

/// What a job's steps are run by. The scheduler only decides when; this decides what.
pub trait Executor: Send + Sync + 'static {
    /// Runs every step of `job` once. Called again for each retry.
    fn execute(
        &self,
        job: &JobConfig,
        run: &RunContext,
    ) -> impl Future<Output = Result<Counters, RunError>> + Send;

    /// Told once when a run has finally failed (its last attempt failed, or its error is not
    /// retried); never for dry runs. Tells whoever should know; its own trouble is logged.
    fn run_failed(
        &self,
        job: &JobConfig,
        run: &RunContext,
        error: &RunError,
    ) -> impl Future<Output = ()> + Send {
        let _ = (job, run, error);
        async {}
    }
}

/// What the executor knows about the run it is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunContext {
    /// The run's id in the ledger.
    pub run_id: String,
    /// Why it runs.
    pub trigger: Trigger,
    /// The fire time it stands for: the `now` that SQL templates see.
    pub scheduled_for: DateTime<Utc>,
    /// For catch-up runs, the first missed fire time it covers.
    pub covers_from: Option<DateTime<Utc>>,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    /// Show what would happen; change nothing.
    pub dry_run: bool,
}

/// Why an attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RunError {
    /// Decides whether it is retried.
    pub kind: ErrorKind,
    /// What happened, naming the step and endpoint; never a secret.
    pub message: String,
}

impl RunError {
    /// A failure of the given kind.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        RunError {
            kind,
            message: message.into(),
        }
    }

    /// Wraps any classified error.
    pub fn from_error<E: Classify + std::fmt::Display>(err: &E) -> Self {
        RunError::new(err.kind(), err.to_string())
    }
}

impl Classify for RunError {
    fn kind(&self) -> ErrorKind {
        self.kind
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcome {
    /// The run's id.
    pub run_id: String,
    /// Succeeded, failed or interrupted.
    pub status: RunStatus,
    /// Attempts made.
    pub attempts: u32,
    /// The final error, if it did not succeed.
    pub error: Option<RunError>,
    /// What the last attempt counted.
    pub counters: Counters,
}

/// Everything a run needs, shared by all of a scheduler's runs.
pub struct Runtime<E: Executor> {
    /// Runs the steps.
    pub executor: E,
    /// The ledger.
    pub state: Arc<StateStore>,
    /// Wall-clock time.
    pub clock: Arc<dyn Clock>,
}

impl<E: Executor> Runtime<E> {
    /// Runs `run` of `job` to its end: attempts, retries, ledger. Stops retrying when
    /// `shutdown` is cancelled.
    pub async fn run(
        &self,
        job: &JobConfig,
        run: NewRun,
        dry_run: bool,
        shutdown: &CancellationToken,
    ) -> RunOutcome {
        let span = tracing::info_span!("run", job = %job.name, run_id = %run.run_id, trigger = %run.trigger);
        self.attempts(job, run, dry_run, shutdown)
            .instrument(span)
            .await
    }

    async fn attempts(
        &self,
        job: &JobConfig,
        run: NewRun,
        dry_run: bool,
        shutdown: &CancellationToken,
    ) -> RunOutcome {
        let ledger = !dry_run;
        if ledger && let Err(err) = self.state.start_run(&run, self.clock.now()) {
            tracing::error!(error = %err, "could not record the run's start; not running it");
            return outcome(&run, RunStatus::Failed, 0, Some(RunError::from_error(&err)));
        }
        tracing::info!(scheduled_for = %run.scheduled_for, dry_run, "run started");
        let backoff = Backoff::new(job.retry_backoff);
        let mut rng = fastrand::Rng::new();
        let mut last_error: Option<RunError> = None;
        let mut attempt = 0;
        loop {
            attempt += 1;
            if ledger {
                let previous = last_error.as_ref().map(|e| (e.kind, e.message.as_str()));
                if let Err(err) = self.state.record_attempt(&run.run_id, attempt, previous) {
                    tracing::warn!(error = %err, attempt, "could not record the attempt in the ledger");
                }
            }
            let context = RunContext {
                run_id: run.run_id.clone(),
                trigger: run.trigger,
                scheduled_for: run.scheduled_for,
                covers_from: run.covers_from,
                attempt,
                dry_run,
            };
            let result =
                match tokio::time::timeout(job.timeout, self.executor.execute(job, &context)).await
                {
                    Ok(result) => result,
                    Err(_) => Err(RunError::new(
                        ErrorKind::Transient,
                        format!(
                            "attempt {attempt} timed out after {}s (timeout_secs)",
                            job.timeout.as_secs()
                        ),
                    )),
                };
            let error = match result {
                Ok(counters) => {
                    tracing::info!(attempt, ?counters, "run succeeded");
                    return self.finish(run, RunStatus::Succeeded, attempt, None, counters, ledger);
                }
                Err(error) => error,
            };
            if !error.kind.is_retryable() || attempt > job.retries {
                let why = if error.kind.is_retryable() {
                    "retries used up"
                } else {
                    "not retryable"
                };
                tracing::error!(attempt, kind = %error.kind, error = %error.message, "run failed ({why})");
                if !dry_run {
                    self.executor.run_failed(job, &context, &error).await;
                }
                return self.finish(
                    run,
                    RunStatus::Failed,
                    attempt,
                    Some(error),
                    Counters::new(),
                    ledger,
                );
            }
            let delay = backoff.delay(attempt, &mut rng);
            tracing::warn!(attempt, kind = %error.kind, error = %error.message, retry_in_ms = delay.as_millis() as u64, "attempt failed; will retry");
            last_error = Some(error);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => {
                    let error = RunError::new(ErrorKind::Transient, format!(
                        "mailroom shut down while waiting to retry; last error: {}",
                        last_error.as_ref().map_or("", |e| e.message.as_str())
                    ));
                    tracing::warn!("shutdown during retry backoff; run interrupted");
                    return self.finish(run, RunStatus::Interrupted, attempt, Some(error), Counters::new(), ledger);
                }
            }
        }
    }

    fn finish(
        &self,
        run: NewRun,
        status: RunStatus,
        attempts: u32,
        error: Option<RunError>,
        counters: Counters,
        ledger: bool,
    ) -> RunOutcome {
        if ledger {
            let stored_error = error.as_ref().map(|e| (e.kind, e.message.as_str()));
            if let Err(err) = self.state.finish_run(
                &run.run_id,
                status,
                self.clock.now(),
                stored_error,
                &counters,
            ) {
                tracing::error!(error = %err, %status, "could not record how the run ended");
            }
        }
        RunOutcome {
            counters,
            ..outcome(&run, status, attempts, error)
        }
    }

    /// Records a run that was stopped before it could finish.
    pub fn interrupt(&self, run_id: &str, reason: &str) {
        if let Err(err) = self.state.interrupt_run(run_id, self.clock.now(), reason) {
            tracing::error!(run_id, error = %err, "could not record the run as interrupted");
        }
    }
}

fn outcome(run: &NewRun, status: RunStatus, attempts: u32, error: Option<RunError>) -> RunOutcome {
    RunOutcome {
        run_id: run.run_id.clone(),
        status,
        attempts,
        error,
        counters: Counters::new(),
    }
}

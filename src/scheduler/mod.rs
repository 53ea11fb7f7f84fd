//! The scheduler: fires each job at its cron times in its own time zone, and owns the
//! policies around that — overlap, missed runs after a restart, shutdown.
//!
//! Each job has one task running [`job_loop`]. It sleeps until the next fire time
//! ([`crate::schedule`], DST-correct), then starts a run unless one is still going, in which case
//! `overlap = "skip"` records a skipped run and `"queue"` runs it right after (several due
//! fire times coalesce into one queued run). A wake-up more than [`LATE_TOLERANCE`] after
//! its fire time means mailroom was not running (or the machine slept): the fire times
//! missed since the ledger's last handled one are dealt with once, by the job's `missed`
//! policy — one catch-up run covering the whole gap, or one skipped record — never one run
//! per missed tick. On shutdown no new run starts; in-flight runs get the grace period and
//! are then stopped and recorded as interrupted. A job whose runs keep failing stays
//! scheduled: every failure is in the ledger and the logs, and the next fire time comes.
//!
//! Why not tokio-cron-scheduler: it evaluates schedules in one zone with no DST handling
//! (its issues #105, #107), can stop a job for good after it falls behind (#113), has no
//! overlap guard (#83) and recovers nothing after a restart (#84). Each of those is a
//! policy this loop owns, over the `cron` crate's parser; ARCHITECTURE.md has the details.

pub mod clock;
pub mod job;
pub mod retry;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{JobConfig, MissedPolicy, OverlapPolicy};
use crate::error::ErrorKind;
use crate::state::{NewRun, Trigger};
use clock::sleep_until;
pub use job::{Executor, RunContext, RunError, RunOutcome, Runtime};

/// A wake-up this long after its fire time counts as missed, not merely late.
pub const LATE_TOLERANCE: chrono::Duration = chrono::Duration::seconds(60);

/// The most missed fire times counted for the log and ledger message.
const MISSED_COUNT_CAP: usize = 10_000;

/// Runs jobs on their schedules until shut down.
pub struct Scheduler<E: Executor> {
    runtime: Arc<Runtime<E>>,
    jobs: Vec<Arc<JobConfig>>,
    grace: Duration,
}

impl<E: Executor> Scheduler<E> {
    /// A scheduler for `jobs`; in-flight runs get `grace` to finish on shutdown.
    pub fn new(runtime: Runtime<E>, jobs: Vec<JobConfig>, grace: Duration) -> Self {
        Scheduler {
            runtime: Arc::new(runtime),
            jobs: jobs.into_iter().map(Arc::new).collect(),
            grace,
        }
    }

    /// Runs until `shutdown` is cancelled and every job has wound down.
    pub async fn run(self, shutdown: CancellationToken) {
        recover_abandoned(&self.runtime);
        let tasks: Vec<JoinHandle<()>> = self
            .jobs
            .iter()
            .map(|job| {
                tokio::spawn(job_loop(
                    self.runtime.clone(),
                    job.clone(),
                    shutdown.clone(),
                    self.grace,
                ))
            })
            .collect();
        tracing::info!(jobs = tasks.len(), "scheduler started");
        for task in tasks {
            if let Err(err) = task.await {
                tracing::error!(error = %err, "a job loop ended abnormally");
            }
        }
        tracing::info!("scheduler stopped");
    }
}

/// Marks runs that a dead mailroom process left `running` as interrupted. Call only while
/// holding the data directory lock, so no live run is touched.
pub fn recover_abandoned<E: Executor>(runtime: &Runtime<E>) {
    match runtime.state.interrupt_abandoned(runtime.clock.now()) {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            runs = n,
            "marked runs left running by a previous mailroom process as interrupted"
        ),
        Err(err) => tracing::error!(error = %err, "could not check the ledger for abandoned runs"),
    }
}

/// A run in progress on its own task.
pub struct InFlight {
    run_id: String,
    handle: JoinHandle<RunOutcome>,
}

/// Waits for the in-flight run, or forever if there is none.
async fn join_in_flight(in_flight: &mut Option<InFlight>) -> Result<RunOutcome, RunError> {
    match in_flight {
        Some(run) => run.wait().await,
        None => std::future::pending().await,
    }
}

/// Where the job's schedule resumes after a (re)start: just after the last fire time the
/// ledger shows was handled, or now for a job that never ran.
fn resume_point<E: Executor>(runtime: &Runtime<E>, job: &JobConfig) -> DateTime<Utc> {
    let now = runtime.clock.now();
    match runtime.state.last_handled_fire_time(&job.name) {
        Ok(Some(last)) if last <= now => last,
        Ok(_) => now,
        Err(err) => {
            tracing::error!(job = %job.name, error = %err, "could not read the ledger; missed runs since the last one will not be caught up");
            now
        }
    }
}

/// The loop of one job; see the module docs.
async fn job_loop<E: Executor>(
    runtime: Arc<Runtime<E>>,
    job: Arc<JobConfig>,
    shutdown: CancellationToken,
    grace: Duration,
) {
    let mut in_flight: Option<InFlight> = None;
    let mut queued: Option<NewRun> = None;
    let mut next = job.schedule.next_after(resume_point(&runtime, &job));
    loop {
        let Some(fire_time) = next else {
            tracing::warn!(job = %job.name, "the schedule has no more fire times");
            shutdown.cancelled().await;
            break;
        };
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            joined = join_in_flight(&mut in_flight) => {
                if let (Err(err), Some(run)) = (joined, in_flight.as_ref()) {
                    tracing::error!(job = %job.name, run_id = %run.run_id, error = %err, "the run ended abnormally");
                    runtime.interrupt(&run.run_id, &err.message);
                }
                in_flight = None;
                if let Some(run) = queued.take() {
                    in_flight = Some(start(&runtime, &job, run, &shutdown));
                }
            }
            _ = sleep_until(runtime.clock.as_ref(), fire_time) => {
                let now = runtime.clock.now();
                let (run, last_due) = due_run(&job, fire_time, now);
                next = job.schedule.next_after(last_due.max(fire_time));
                match run {
                    Due::Run(run) => fire(&runtime, &job, run, &mut in_flight, &mut queued, &shutdown),
                    Due::Skip(run, reason) => record_skip(&runtime, &run, &reason),
                }
            }
        }
    }
    if let Some(run) = queued {
        tracing::info!(job = %job.name, scheduled_for = %run.scheduled_for, "shutting down; the queued run will not start");
    }
    if let Some(run) = in_flight {
        let _ = wind_down(&runtime, &job.name, run, grace).await;
    }
}

/// What a wake-up at `fire_time` calls for.
enum Due {
    /// Start (or queue) this run.
    Run(NewRun),
    /// Record this run as skipped, for this reason.
    Skip(NewRun, String),
}

/// Decides what a wake-up at `now` for `fire_time` calls for, and the last fire time it
/// accounts for.
fn due_run(job: &JobConfig, fire_time: DateTime<Utc>, now: DateTime<Utc>) -> (Due, DateTime<Utc>) {
    if now - fire_time <= LATE_TOLERANCE {
        return (
            Due::Run(NewRun::new(&job.name, Trigger::Schedule, fire_time)),
            fire_time,
        );
    }
    let just_before = fire_time - chrono::Duration::nanoseconds(1);
    let last_due = job.schedule.last_in(just_before, now).unwrap_or(fire_time);
    let missed = job.schedule.count_in(just_before, now, MISSED_COUNT_CAP);
    let missed_text = if missed >= MISSED_COUNT_CAP {
        format!("{MISSED_COUNT_CAP} or more")
    } else {
        missed.to_string()
    };
    let mut run = NewRun::new(&job.name, Trigger::CatchUp, last_due);
    run.covers_from = Some(fire_time);
    match job.missed {
        MissedPolicy::RunOnce => {
            tracing::info!(job = %job.name, missed = %missed_text, from = %fire_time, to = %last_due, "fire times were missed; one catch-up run covers them");
            (Due::Run(run), last_due)
        }
        MissedPolicy::Skip => {
            let reason = format!(
                "{missed_text} fire time(s) from {fire_time} to {last_due} were missed while mailroom was not running; missed = \"skip\""
            );
            tracing::warn!(job = %job.name, missed = %missed_text, "fire times were missed and are skipped by policy");
            (Due::Skip(run, reason), last_due)
        }
    }
}

/// Starts `run`, or applies the overlap policy if the job is still running.
fn fire<E: Executor>(
    runtime: &Arc<Runtime<E>>,
    job: &Arc<JobConfig>,
    run: NewRun,
    in_flight: &mut Option<InFlight>,
    queued: &mut Option<NewRun>,
    shutdown: &CancellationToken,
) {
    let Some(current) = in_flight.as_ref() else {
        *in_flight = Some(start(runtime, job, run, shutdown));
        return;
    };
    match job.overlap {
        OverlapPolicy::Skip => {
            let reason = format!(
                "the previous run ({}) was still in progress; overlap = \"skip\"",
                current.run_id
            );
            tracing::warn!(job = %job.name, scheduled_for = %run.scheduled_for, running = %current.run_id, "job still running; this fire time is skipped");
            record_skip(runtime, &run, &reason);
        }
        OverlapPolicy::Queue => {
            let mut run = run;
            if let Some(older) = queued.take() {
                run.covers_from = older.covers_from.or(Some(older.scheduled_for));
                let reason = format!("coalesced into the queued run for {}", run.scheduled_for);
                record_skip(runtime, &older, &reason);
            }
            tracing::info!(job = %job.name, scheduled_for = %run.scheduled_for, running = %current.run_id, "job still running; this run is queued behind it");
            run.trigger = Trigger::Queued;
            *queued = Some(run);
        }
    }
}

fn start<E: Executor>(
    runtime: &Arc<Runtime<E>>,
    job: &Arc<JobConfig>,
    run: NewRun,
    shutdown: &CancellationToken,
) -> InFlight {
    InFlight::spawn(runtime.clone(), job.clone(), run, false, shutdown.clone())
}

fn record_skip<E: Executor>(runtime: &Runtime<E>, run: &NewRun, reason: &str) {
    if let Err(err) = runtime
        .state
        .record_skipped(run, runtime.clock.now(), reason)
    {
        tracing::error!(job = %run.job, error = %err, "could not record a skipped run");
    }
}

/// Gives an in-flight run `grace` to finish, then stops it and records it as interrupted.
/// The run's outcome when it finished within the grace period (its ledger row says the
/// same), `None` when it was stopped.
pub async fn wind_down<E: Executor>(
    runtime: &Runtime<E>,
    job: &str,
    mut run: InFlight,
    grace: Duration,
) -> Option<RunOutcome> {
    tracing::info!(job, run_id = %run.run_id, grace_secs = grace.as_secs(), "waiting for the in-flight run to finish");
    match tokio::time::timeout(grace, &mut run.handle).await {
        Ok(Ok(outcome)) => {
            tracing::info!(job, run_id = %outcome.run_id, status = %outcome.status, "in-flight run finished during the grace period");
            Some(outcome)
        }
        Ok(Err(err)) => {
            runtime.interrupt(
                &run.run_id,
                &format!("internal error, please report it: the run panicked: {err}"),
            );
            None
        }
        Err(_) => {
            run.handle.abort();
            let reason = format!(
                "stopped by shutdown after the {}s grace period",
                grace.as_secs()
            );
            tracing::warn!(job, run_id = %run.run_id, "{reason}");
            runtime.interrupt(&run.run_id, &reason);
            None
        }
    }
}

impl InFlight {
    /// Starts a run on its own task.
    pub fn spawn<E: Executor>(
        runtime: Arc<Runtime<E>>,
        job: Arc<JobConfig>,
        run: NewRun,
        dry_run: bool,
        shutdown: CancellationToken,
    ) -> Self {
        let run_id = run.run_id.clone();
        let handle = tokio::spawn(async move { runtime.run(&job, run, dry_run, &shutdown).await });
        InFlight { run_id, handle }
    }

    /// The run's id.
    pub fn run_id(&self) -> &str {
        &self.run_id
    }

    /// Waits for the run to end. Cancel-safe: the run goes on if the wait is dropped.
    pub async fn wait(&mut self) -> Result<RunOutcome, RunError> {
        (&mut self.handle).await.map_err(|err| {
            RunError::new(
                ErrorKind::Bug,
                format!("internal error, please report it: the run panicked: {err}"),
            )
        })
    }
}

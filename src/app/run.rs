//! `mailroom run` (the scheduler), `run-job` (one run now) and `backfill` (a window
//! re-extracted, cursors untouched).

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::Timelike;
use mailroom::config::{self, Config};
use mailroom::error::{EXIT_INTERRUPTED, ErrorKind};
use mailroom::ops::{Health, Ops};
use mailroom::pipeline::{Backfill, Pipeline};
use mailroom::scheduler::clock::SystemClock;
use mailroom::scheduler::{self, InFlight, Runtime, Scheduler};
use mailroom::state::{Counters, NewRun, RunStatus, StateStore, Trigger};
use mailroom::warehouse;
use tokio_util::sync::CancellationToken;

use super::signals::ShutdownSignals;
use super::{Failure, Wiring, find_job, open_state, print};

/// The runtime runs go through: the pipeline over the wired services, the ledger, the clock.
fn runtime(wiring: &Wiring, state: Arc<StateStore>) -> Runtime<Pipeline> {
    Runtime {
        executor: Pipeline::new(
            wiring.config.clone(),
            wiring.services.clone(),
            state.clone(),
        ),
        state,
        clock: Arc::new(SystemClock),
    }
}

/// The status server's listener and token, as `[server]` says.
pub(super) async fn server_listener(
    config: &Config,
) -> Result<(tokio::net::TcpListener, Option<mailroom::secret::Secret>), Failure> {
    let token = config
        .server
        .token
        .as_ref()
        .map(|t| t.resolve(&mailroom::config::ProcessEnvironment))
        .transpose()
        .map_err(|e| Failure {
            kind: ErrorKind::Config,
            message: e.to_string(),
        })?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| Failure {
            kind: ErrorKind::Config,
            message: format!(
                "[server] listen {}: cannot listen there: {e}",
                config.server.listen
            ),
        })?;
    Ok((listener, token))
}

/// `mailroom run`: the scheduler, until SIGINT or SIGTERM.
pub async fn run(config: Config) -> Result<ExitCode, Failure> {
    let (_lock, state) = open_state(&config)?;
    let (listener, token) = server_listener(&config).await?;
    let wiring = Wiring::build(config).await?;
    tracing::info!(config_dir = %wiring.config.base_dir.display(), data_dir = %wiring.config.data_dir.display(), jobs = wiring.config.jobs.len(), "mailroom starting");
    schedule_and_serve(&wiring, state, listener, token, |url| {
        tracing::info!(url = %url, "status page, /metrics, /healthz and /readyz");
    })
    .await
}

/// The scheduler over `wiring`'s jobs with the status server on `listener`, until SIGINT
/// or SIGTERM; `announce` is told the status page's address.
pub(super) async fn schedule_and_serve(
    wiring: &Wiring,
    state: Arc<StateStore>,
    listener: tokio::net::TcpListener,
    token: Option<mailroom::secret::Secret>,
    announce: impl FnOnce(&str),
) -> Result<ExitCode, Failure> {
    let config = wiring.config.clone();
    let health = Arc::new(Health::default());
    let ops = Arc::new(Ops {
        config: config.clone(),
        state: state.clone(),
        health: health.clone(),
        token,
        services: wiring.services.clone(),
    });
    let server_stop = CancellationToken::new();
    let address = listener
        .local_addr()
        .map_or_else(|_| config.server.listen.to_string(), |a| a.to_string());
    announce(&format!("http://{address}/"));
    let server = tokio::spawn(mailroom::ops::serve(listener, ops, server_stop.clone()));
    let scheduler = Scheduler::new(
        runtime(wiring, state),
        config.jobs.clone(),
        config.scheduler.shutdown_grace,
    );
    let mut signals = ShutdownSignals::install()?;
    let shutdown = CancellationToken::new();
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        let signal = signals.recv().await;
        tracing::info!(signal, "shutting down: no new runs will start");
        signal_token.cancel();
    });
    health.up();
    scheduler.run(shutdown).await;
    health.down("mailroom is shutting down");
    server_stop.cancel();
    if let Ok(Err(err)) = server.await {
        tracing::warn!(error = %err, "the status server stopped with an error");
    }
    Ok(ExitCode::SUCCESS)
}

/// `mailroom run-job NAME`: one run now, recorded like a scheduled one (unless dry).
pub async fn run_job(
    config: Config,
    name: &str,
    dry_run: bool,
    force: bool,
) -> Result<ExitCode, Failure> {
    let job = Arc::new(find_job(&config, name)?.clone());
    let (_lock, state) = open_state(&config)?;
    let wiring = Wiring::build(config).await?;
    let config = wiring.config.clone();
    let mut runtime = runtime(&wiring, state);
    runtime.executor.force_activation(force);
    let runtime = Arc::new(runtime);
    scheduler::recover_abandoned(&runtime);
    let now = runtime.clock.now();
    let run = NewRun::new(name, Trigger::Manual, now.with_nanosecond(0).unwrap_or(now));
    if dry_run {
        show!("{}", print::dry_run_plan(&job));
    }
    let mut signals = ShutdownSignals::install()?;
    let shutdown = CancellationToken::new();
    let mut in_flight =
        InFlight::spawn(runtime.clone(), job.clone(), run, dry_run, shutdown.clone());
    let run_id = in_flight.run_id().to_string();
    let outcome = tokio::select! {
        outcome = in_flight.wait() => outcome?,
        signal = signals.recv() => {
            tracing::info!(signal, "stopping the run");
            shutdown.cancel();
            // A run that ends within the grace period is reported as it ended (its
            // ledger row says so too); one stopped at the deadline is interrupted.
            match scheduler::wind_down(&runtime, name, in_flight, config.scheduler.shutdown_grace).await {
                Some(outcome) => outcome,
                None => {
                    say!("{name}: run {run_id} interrupted by {signal} before it finished");
                    return Ok(ExitCode::from(EXIT_INTERRUPTED));
                }
            }
        }
    };
    let verb = if dry_run { "dry run" } else { "run" };
    match outcome.status {
        RunStatus::Succeeded => {
            say!(
                "{name}: {verb} {} succeeded after {} attempt(s)",
                outcome.run_id,
                outcome.attempts
            );
            let (heading, in_tables) = if dry_run {
                ("Would do", BTreeMap::new())
            } else {
                ("Done", rows_in_tables(&wiring, &outcome.counters).await)
            };
            show!(
                "{}",
                print::load_summary(heading, &outcome.counters, &in_tables)
            );
            Ok(ExitCode::SUCCESS)
        }
        RunStatus::Interrupted => {
            say!(
                "{name}: {verb} {} interrupted before it finished",
                outcome.run_id
            );
            Ok(ExitCode::from(EXIT_INTERRUPTED))
        }
        status => {
            let error = outcome
                .error
                .unwrap_or_else(|| scheduler::RunError::new(ErrorKind::Bug, "no error recorded"));
            Err(Failure {
                kind: error.kind,
                message: format!(
                    "{name}: {verb} {} {status} after {} attempt(s): {}",
                    outcome.run_id, outcome.attempts, error.message
                ),
            })
        }
    }
}

/// How many rows each table a run loaded holds now; a table that cannot be counted is left
/// out (the summary then gives only what the run loaded).
async fn rows_in_tables(wiring: &Wiring, counters: &Counters) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    let Ok(engine) = warehouse::open_for_queries(&wiring.config, &wiring.services) else {
        return totals;
    };
    for table in counters.keys().filter_map(|k| k.strip_prefix("rows.")) {
        match engine.row_count(table).await.ok().flatten() {
            Some(n) => {
                totals.insert(table.to_string(), n);
            }
            None => tracing::debug!(table, "could not count the table's rows"),
        }
    }
    totals
}

/// `mailroom backfill JOB --from --to`: re-extract a window, cursors untouched, with a
/// progress bar on a terminal.
pub async fn backfill(
    config: Config,
    name: &str,
    window: Backfill,
    dry_run: bool,
) -> Result<ExitCode, Failure> {
    if window.from >= window.to {
        return Err(Failure {
            kind: ErrorKind::Config,
            message: format!(
                "--from ({}) must be before --to ({})",
                window.from.to_rfc3339(),
                window.to.to_rfc3339()
            ),
        });
    }
    let job = find_job(&config, name)?.clone();
    if !job
        .steps
        .iter()
        .any(|s| matches!(s, config::Step::Extract { .. }))
    {
        return Err(Failure {
            kind: ErrorKind::Config,
            message: format!("job {name} has no extract steps to backfill"),
        });
    }
    let (_lock, state) = open_state(&config)?;
    let wiring = Wiring::build(config).await?;
    let pipeline = Pipeline::new(wiring.config.clone(), wiring.services.clone(), state);
    let bar = print::BackfillBar::new();
    let result = pipeline.backfill(&job, window, dry_run, &bar).await;
    bar.finish();
    let counters = result.map_err(|err| Failure {
        kind: err.kind,
        message: format!("{name}: backfill failed: {}", err.message),
    })?;
    say!(
        "{name}: backfill of {} to {} done{}",
        window.from.to_rfc3339(),
        window.to.to_rfc3339(),
        if dry_run {
            " (dry run: nothing loaded)"
        } else {
            ""
        }
    );
    let heading = if dry_run { "Would load" } else { "Loaded" };
    show!(
        "{}",
        print::load_summary(heading, &counters, &BTreeMap::new())
    );
    Ok(ExitCode::SUCCESS)
}

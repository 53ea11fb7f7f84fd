//! One run's attempts: retry classification, backoff, timeouts, shutdown and dry runs.

use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use mailroom::error::ErrorKind;
use mailroom::scheduler::{RunOutcome, Runtime};
use mailroom::state::{NewRun, RunStatus, StateStore, Trigger};
use tokio_util::sync::CancellationToken;

use crate::support::{Behaviour, ScriptedExecutor, clock_at, job, state, utc};

async fn run_once(
    script: impl Fn(usize) -> Behaviour + Send + Sync + 'static,
    retries: u32,
    dry_run: bool,
    shutdown: CancellationToken,
) -> (
    ScriptedExecutor,
    Arc<StateStore>,
    RunOutcome,
    tempfile::TempDir,
) {
    let (dir, state) = state();
    let clock = clock_at("2026-11-22T00:00:00Z");
    let executor = ScriptedExecutor::new(clock.clone(), move |_, i| script(i));
    let mut retrying = job("retrying", "0 * * * *", Tz::UTC);
    retrying.retries = retries;
    retrying.timeout = Duration::from_secs(60);
    let runtime = Runtime {
        executor: executor.clone(),
        state: state.clone(),
        clock,
    };
    let run = NewRun::new("retrying", Trigger::Manual, utc("2026-11-22T00:00:00Z"));
    let outcome = runtime.run(&retrying, run, dry_run, &shutdown).await;
    (executor, state, outcome, dir)
}

#[tokio::test(start_paused = true)]
async fn transient_failures_are_retried_with_growing_jittered_delays() {
    let (executor, state, outcome, _dir) = run_once(
        |i| {
            if i < 2 {
                Behaviour::fail(ErrorKind::Transient)
            } else {
                Behaviour::succeed_after(Duration::ZERO)
            }
        },
        3,
        false,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.attempts, 3);
    let starts: Vec<_> = executor.calls().iter().map(|c| c.started).collect();
    let first_wait = (starts[1] - starts[0]).num_milliseconds();
    let second_wait = (starts[2] - starts[1]).num_milliseconds();
    assert!(
        (5_000..=10_000).contains(&first_wait),
        "first retry after {first_wait} ms"
    );
    assert!(
        (10_000..=20_000).contains(&second_wait),
        "second retry after {second_wait} ms"
    );
    let record = state.run(&outcome.run_id).expect("query").expect("row");
    assert_eq!((record.status, record.attempts), (RunStatus::Succeeded, 3));
}

#[tokio::test(start_paused = true)]
async fn config_terminal_and_bug_failures_are_never_retried() {
    for kind in [ErrorKind::Config, ErrorKind::Terminal, ErrorKind::Bug] {
        let (executor, state, outcome, _dir) = run_once(
            move |_| Behaviour::fail(kind),
            5,
            false,
            CancellationToken::new(),
        )
        .await;
        assert_eq!(executor.calls().len(), 1, "{kind} was retried");
        assert_eq!(outcome.status, RunStatus::Failed);
        let record = state.run(&outcome.run_id).expect("query").expect("row");
        assert_eq!(record.error_kind, Some(kind));
        assert!(
            record
                .error
                .expect("error")
                .contains(&format!("scripted {kind} failure"))
        );
    }
}

#[tokio::test(start_paused = true)]
async fn retries_stop_at_the_jobs_limit() {
    let (executor, _state, outcome, _dir) = run_once(
        |_| Behaviour::fail(ErrorKind::Transient),
        2,
        false,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(executor.calls().len(), 3, "one attempt and two retries");
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.error.expect("error").kind, ErrorKind::Transient);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_exceeds_its_timeout_is_a_transient_failure() {
    let (executor, _state, outcome, _dir) = run_once(
        |i| {
            if i == 0 {
                Behaviour::succeed_after(Duration::from_secs(7200))
            } else {
                Behaviour::succeed_after(Duration::ZERO)
            }
        },
        1,
        false,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(executor.calls().len(), 2);
    assert_eq!(outcome.status, RunStatus::Succeeded);
    let started = executor.calls()[1].started;
    assert!(
        started >= utc("2026-11-22T00:01:05Z"),
        "retried after the 60 s timeout and a backoff: {started}"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_during_backoff_interrupts_instead_of_retrying() {
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        trigger.cancel();
    });
    let (executor, state, outcome, _dir) = run_once(
        |_| Behaviour::fail(ErrorKind::Transient),
        5,
        false,
        shutdown,
    )
    .await;
    assert_eq!(executor.calls().len(), 1);
    assert_eq!(outcome.status, RunStatus::Interrupted);
    let record = state.run(&outcome.run_id).expect("query").expect("row");
    assert_eq!(record.status, RunStatus::Interrupted);
}

#[tokio::test(start_paused = true)]
async fn a_dry_run_tells_the_executor_and_writes_nothing_to_the_ledger() {
    let (executor, state, outcome, _dir) = run_once(
        |_| Behaviour::succeed_after(Duration::ZERO),
        0,
        true,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert!(executor.calls()[0].dry_run);
    assert!(state.recent_runs(None, 10).expect("ledger").is_empty());
}

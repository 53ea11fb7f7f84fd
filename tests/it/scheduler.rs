//! The scheduler loop on a fake clock: DST, overlap, restart catch-up, shutdown, and jobs
//! that keep failing.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use mailroom::config::{MissedPolicy, OverlapPolicy};
use mailroom::error::ErrorKind;
use mailroom::state::{Counters, NewRun, RunStatus, Trigger};

use crate::support::{Behaviour, ScriptedExecutor, clock_at, job, run_scheduler, state, utc};

const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// Runs per local calendar date for a daily 02:30 job in `tz` over three days from `start`.
async fn daily_0230_runs_per_local_day(tz: Tz, start: &str) -> BTreeMap<NaiveDate, Vec<String>> {
    let (_dir, state) = state();
    let clock = clock_at(start);
    let executor = ScriptedExecutor::new(clock.clone(), |_, _| Behaviour::succeed_after(MINUTE));
    let daily = job("daily-report", "30 2 * * *", tz);
    run_scheduler(
        vec![daily],
        state,
        executor.clone(),
        clock,
        72 * HOUR,
        10 * MINUTE,
    )
    .await;
    let mut per_day: BTreeMap<NaiveDate, Vec<String>> = BTreeMap::new();
    for call in executor.calls() {
        let local = call.started.with_timezone(&tz);
        per_day
            .entry(local.date_naive())
            .or_default()
            .push(local.to_rfc3339());
    }
    per_day
}

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

#[tokio::test(start_paused = true)]
async fn new_york_daily_job_runs_once_on_spring_forward_day() {
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    let runs =
        daily_0230_runs_per_local_day(chrono_tz::America::New_York, "2026-03-07T00:00:00Z").await;
    assert_eq!(runs[&day("2026-03-07")], ["2026-03-07T02:30:00-05:00"]);
    assert_eq!(runs[&day("2026-03-08")], ["2026-03-08T03:30:00-04:00"]);
    assert_eq!(runs[&day("2026-03-09")], ["2026-03-09T02:30:00-04:00"]);
    assert_eq!(runs.values().map(Vec::len).sum::<usize>(), 3);
}

#[tokio::test(start_paused = true)]
async fn new_york_daily_job_runs_once_on_fall_back_day() {
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST.
    let runs =
        daily_0230_runs_per_local_day(chrono_tz::America::New_York, "2026-10-31T00:00:00Z").await;
    assert_eq!(runs[&day("2026-10-31")], ["2026-10-31T02:30:00-04:00"]);
    assert_eq!(runs[&day("2026-11-01")], ["2026-11-01T02:30:00-05:00"]);
    assert_eq!(runs[&day("2026-11-02")], ["2026-11-02T02:30:00-05:00"]);
}

#[tokio::test(start_paused = true)]
async fn sydney_daily_job_runs_once_on_spring_forward_day() {
    // 2026-10-04: 02:00 AEST jumps to 03:00 AEDT.
    let runs =
        daily_0230_runs_per_local_day(chrono_tz::Australia::Sydney, "2026-10-02T14:00:00Z").await;
    assert_eq!(runs[&day("2026-10-03")], ["2026-10-03T02:30:00+10:00"]);
    assert_eq!(runs[&day("2026-10-04")], ["2026-10-04T03:30:00+11:00"]);
    assert_eq!(runs[&day("2026-10-05")], ["2026-10-05T02:30:00+11:00"]);
}

#[tokio::test(start_paused = true)]
async fn sydney_daily_job_runs_once_on_fall_back_day() {
    // 2026-04-05: 03:00 AEDT falls back to 02:00 AEST, so 02:30 happens twice.
    let runs =
        daily_0230_runs_per_local_day(chrono_tz::Australia::Sydney, "2026-04-03T14:00:00Z").await;
    assert_eq!(runs[&day("2026-04-04")], ["2026-04-04T02:30:00+11:00"]);
    assert_eq!(runs[&day("2026-04-05")], ["2026-04-05T02:30:00+11:00"]);
    assert_eq!(runs[&day("2026-04-06")], ["2026-04-06T02:30:00+10:00"]);
}

fn minutes(calls: &[DateTime<chrono::Utc>]) -> Vec<String> {
    calls
        .iter()
        .map(|t| t.format("%H:%M:%S").to_string())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn overlap_skip_records_skipped_runs_and_never_runs_twice_at_once() {
    let (_dir, state) = state();
    let clock = clock_at("2026-11-22T00:00:30Z");
    // Each run takes 2.5 minutes; the job is due every minute.
    let executor = ScriptedExecutor::new(clock.clone(), |_, _| {
        Behaviour::succeed_after(150 * Duration::from_secs(1))
    });
    let every_minute = job("every-minute", "* * * * *", Tz::UTC);
    run_scheduler(
        vec![every_minute],
        state.clone(),
        executor.clone(),
        clock,
        6 * MINUTE + Duration::from_secs(15),
        MINUTE,
    )
    .await;

    let started: Vec<_> = executor.calls().iter().map(|c| c.started).collect();
    assert_eq!(minutes(&started), ["00:01:00", "00:04:00"]);
    assert_eq!(executor.max_concurrent(), 1);

    let runs = state.recent_runs(Some("every-minute"), 50).expect("ledger");
    let mut skipped: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .collect();
    skipped.reverse();
    assert_eq!(
        minutes(&skipped.iter().map(|r| r.scheduled_for).collect::<Vec<_>>()),
        ["00:02:00", "00:03:00", "00:05:00", "00:06:00"]
    );
    for run in &skipped {
        let reason = run.error.as_deref().unwrap_or_default();
        assert!(reason.contains("still in progress"), "{reason}");
    }
    assert_eq!(
        runs.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count(),
        2
    );
}

#[tokio::test(start_paused = true)]
async fn overlap_queue_runs_right_after_and_coalesces_due_runs() {
    let (_dir, state) = state();
    let clock = clock_at("2026-11-22T00:00:30Z");
    let executor = ScriptedExecutor::new(clock.clone(), |_, _| {
        Behaviour::succeed_after(150 * Duration::from_secs(1))
    });
    let mut queued_job = job("queued", "* * * * *", Tz::UTC);
    queued_job.overlap = OverlapPolicy::Queue;
    run_scheduler(
        vec![queued_job],
        state.clone(),
        executor.clone(),
        clock,
        5 * MINUTE + Duration::from_secs(15),
        MINUTE,
    )
    .await;

    let calls = executor.calls();
    assert_eq!(executor.max_concurrent(), 1);
    assert_eq!(
        minutes(&calls.iter().map(|c| c.started).collect::<Vec<_>>()),
        ["00:01:00", "00:03:30"]
    );
    assert_eq!(
        minutes(&calls.iter().map(|c| c.scheduled_for).collect::<Vec<_>>()),
        ["00:01:00", "00:03:00"]
    );
    assert_eq!(calls[1].trigger, Trigger::Queued);
    assert_eq!(
        calls[1].covers_from,
        Some(utc("2026-11-22T00:02:00Z")),
        "the queued run covers the coalesced one"
    );

    let runs = state.recent_runs(Some("queued"), 50).expect("ledger");
    let skipped: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .collect();
    assert_eq!(
        skipped.len(),
        2,
        "00:02 and 00:04 were coalesced into later queued runs"
    );
    assert!(
        skipped
            .iter()
            .all(|r| r.error.as_deref().unwrap_or_default().contains("coalesced"))
    );
    // The run that started at 03:30 finished within the shutdown grace period.
    assert_eq!(
        runs.iter()
            .filter(|r| r.status == RunStatus::Succeeded)
            .count(),
        2
    );
}

fn record_success(state: &mailroom::state::StateStore, job: &str, at: &str) {
    let run = NewRun::new(job, Trigger::Schedule, utc(at));
    state.start_run(&run, utc(at)).expect("start");
    state
        .finish_run(
            &run.run_id,
            RunStatus::Succeeded,
            utc(at),
            None,
            &Counters::new(),
        )
        .expect("finish");
}

#[tokio::test(start_paused = true)]
async fn restart_with_run_once_makes_one_catch_up_run_for_the_whole_gap() {
    let (_dir, state) = state();
    record_success(&state, "hourly", "2026-11-20T10:00:00Z");
    // A run the previous process never finished: it died mid-run.
    let abandoned = NewRun::new("hourly", Trigger::Schedule, utc("2026-11-20T11:00:00Z"));
    state
        .start_run(&abandoned, utc("2026-11-20T11:00:00Z"))
        .expect("start");

    let clock = clock_at("2026-11-20T15:30:00Z");
    let executor = ScriptedExecutor::new(clock.clone(), |_, _| Behaviour::succeed_after(MINUTE));
    let hourly = job("hourly", "0 * * * *", Tz::UTC);
    run_scheduler(
        vec![hourly],
        state.clone(),
        executor.clone(),
        clock,
        40 * MINUTE,
        MINUTE,
    )
    .await;

    let calls = executor.calls();
    assert_eq!(calls.len(), 2, "{calls:#?}");
    assert_eq!(calls[0].trigger, Trigger::CatchUp);
    assert_eq!(calls[0].scheduled_for, utc("2026-11-20T15:00:00Z"));
    assert_eq!(
        calls[0].covers_from,
        Some(utc("2026-11-20T11:00:00Z")),
        "covers the interrupted fire time too"
    );
    assert_eq!(calls[0].started, utc("2026-11-20T15:30:00Z"));
    assert_eq!(calls[1].trigger, Trigger::Schedule);
    assert_eq!(calls[1].scheduled_for, utc("2026-11-20T16:00:00Z"));

    let abandoned = state.run(&abandoned.run_id).expect("query").expect("row");
    assert_eq!(abandoned.status, RunStatus::Interrupted);
}

#[tokio::test(start_paused = true)]
async fn restart_with_missed_skip_records_the_gap_and_waits_for_the_next_time() {
    let (_dir, state) = state();
    record_success(&state, "hourly", "2026-11-20T10:00:00Z");
    let clock = clock_at("2026-11-20T15:30:00Z");
    let executor = ScriptedExecutor::new(clock.clone(), |_, _| Behaviour::succeed_after(MINUTE));
    let mut hourly = job("hourly", "0 * * * *", Tz::UTC);
    hourly.missed = MissedPolicy::Skip;
    run_scheduler(
        vec![hourly],
        state.clone(),
        executor.clone(),
        clock,
        40 * MINUTE,
        MINUTE,
    )
    .await;

    let calls = executor.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].scheduled_for, utc("2026-11-20T16:00:00Z"));
    let runs = state.recent_runs(Some("hourly"), 10).expect("ledger");
    let skipped: Vec<_> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Skipped)
        .collect();
    assert_eq!(
        skipped.len(),
        1,
        "one record for the whole gap, not one per missed hour"
    );
    assert!(
        skipped[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("5 fire time(s)"),
        "{:?}",
        skipped[0].error
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_runs_that_outlast_the_grace_period() {
    let (_dir, state) = state();
    let clock = clock_at("2026-11-22T00:00:30Z");
    let executor =
        ScriptedExecutor::new(clock.clone(), |_, _| Behaviour::succeed_after(10 * MINUTE));
    let grace = Duration::from_secs(30);
    let took = run_scheduler(
        vec![job("slow", "* * * * *", Tz::UTC)],
        state.clone(),
        executor.clone(),
        clock,
        90 * Duration::from_secs(1),
        grace,
    )
    .await;

    assert_eq!(took, grace, "the scheduler waited exactly the grace period");
    assert_eq!(
        executor.calls().len(),
        1,
        "no run starts after the shutdown signal"
    );
    let runs = state.recent_runs(Some("slow"), 10).expect("ledger");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Interrupted);
    assert!(
        runs[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("30s grace period")
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_lets_runs_finish_within_the_grace_period() {
    let (_dir, state) = state();
    let clock = clock_at("2026-11-22T00:00:30Z");
    let executor = ScriptedExecutor::new(clock.clone(), |_, _| {
        Behaviour::succeed_after(Duration::from_secs(45))
    });
    let took = run_scheduler(
        vec![job("quick", "* * * * *", Tz::UTC)],
        state.clone(),
        executor.clone(),
        clock,
        Duration::from_secs(50),
        MINUTE,
    )
    .await;

    // Shutdown at 00:01:20; the run started at 00:01:00 and takes 45 s.
    assert_eq!(
        took,
        Duration::from_secs(25),
        "waited only for the run to finish"
    );
    let runs = state.recent_runs(Some("quick"), 10).expect("ledger");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::Succeeded);
}

#[tokio::test(start_paused = true)]
async fn a_job_that_keeps_failing_stays_scheduled_and_every_failure_is_recorded() {
    let (_dir, state) = state();
    let clock = clock_at("2026-11-22T00:00:30Z");
    let executor =
        ScriptedExecutor::new(clock.clone(), |_, _| Behaviour::fail(ErrorKind::Terminal));
    run_scheduler(
        vec![job("broken", "* * * * *", Tz::UTC)],
        state.clone(),
        executor.clone(),
        clock,
        5 * MINUTE,
        MINUTE,
    )
    .await;

    assert_eq!(executor.calls().len(), 5);
    let summary = state.job_summary("broken").expect("summary");
    assert_eq!(summary.failures_since_success, 5);
    assert_eq!(summary.last_success, None);
    let runs = state.recent_runs(Some("broken"), 10).expect("ledger");
    assert!(
        runs.iter()
            .all(|r| r.status == RunStatus::Failed && r.error_kind == Some(ErrorKind::Terminal))
    );
}

//! What commands print for people: the config summary, the jobs table, run status, dry-run
//! plans, load summaries, the backfill progress bar and the sandbox's services. Kept in one
//! place so every command (and, next, the demo) shows things alike.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use mailroom::config::{self, Config, JobConfig, WarehouseConfig};
use mailroom::pipeline::BackfillProgress;
use mailroom::scheduler::RunOutcome;
use mailroom::state::{Counters, RunRecord, RunStatus, StateStore};
use mailroom::warehouse::local::LocalWarehouse;

use super::{Failure, find_job};

/// `mailroom jobs`: each job's schedule and its next fire times in its own zone.
pub fn jobs_table(config: &Config, now: DateTime<Utc>, next: usize) -> String {
    let mut out = String::new();
    for job in &config.jobs {
        let schedule = &job.schedule;
        out.push_str(&format!(
            "{}\n  schedule: {} ({})   overlap: {}   missed: {}   retries: {}   timeout: {}s\n",
            job.name,
            schedule.expression(),
            schedule.timezone(),
            match job.overlap {
                config::OverlapPolicy::Skip => "skip",
                config::OverlapPolicy::Queue => "queue",
            },
            match job.missed {
                config::MissedPolicy::Skip => "skip",
                config::MissedPolicy::RunOnce => "run_once",
            },
            job.retries,
            job.timeout.as_secs(),
        ));
        for (i, step) in job.steps.iter().enumerate() {
            out.push_str(&format!("  step {}: {}\n", i + 1, step.describe()));
        }
        for (i, at) in schedule.upcoming(now, next).iter().enumerate() {
            let label = if i == 0 { "next:" } else { "     " };
            out.push_str(&format!(
                "  {label} {}\n",
                at.format("%a %Y-%m-%d %H:%M:%S %Z (UTC%:z)")
            ));
        }
        out.push('\n');
    }
    out
}

/// `mailroom status`: job health, recent runs newest first, then recent deliveries.
pub fn status(config: &Config, job: Option<&str>, limit: u32) -> Result<ExitCode, Failure> {
    if let Some(name) = job {
        find_job(config, name)?;
    }
    damaged_tables(config)?;
    let Some(state) = StateStore::open_read_only(&config.state_path())? else {
        say!("No runs recorded yet in {}.", config.data_dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    say!(
        "{:<24} {:<12} {:<22} {:<22} FAILURES SINCE",
        "JOB",
        "LAST STATUS",
        "LAST RUN (UTC)",
        "LAST SUCCESS (UTC)"
    );
    for job_config in config
        .jobs
        .iter()
        .filter(|j| job.is_none_or(|name| j.name == name))
    {
        let summary = state.job_summary(&job_config.name)?;
        let (last_status, last_at) = match &summary.last_run {
            Some(run) => (
                run.status.as_str(),
                short_time(run.started_at.unwrap_or(run.scheduled_for)),
            ),
            None => ("never run", "-".to_string()),
        };
        say!(
            "{:<24} {:<12} {:<22} {:<22} {}",
            summary.job,
            last_status,
            last_at,
            summary.last_success.map_or("-".to_string(), short_time),
            summary.failures_since_success
        );
    }
    let runs = state.recent_runs(job, limit)?;
    say!("\nRECENT RUNS (newest first)");
    say!(
        "{:<22} {:<24} {:<9} {:<22} {:<12} {:>8} {:>9}",
        "STARTED (UTC)",
        "JOB",
        "TRIGGER",
        "SCHEDULED FOR (UTC)",
        "STATUS",
        "ATTEMPTS",
        "DURATION"
    );
    for run in &runs {
        say!("{}", run_line(run));
        if let Some(error) = &run.error {
            let kind = run.error_kind.map_or(String::new(), |k| format!("{k}: "));
            say!("    {kind}{error}");
        }
    }
    if runs.is_empty() {
        say!("(none)");
    }
    let mut deliveries = Vec::new();
    for job_config in config
        .jobs
        .iter()
        .filter(|j| job.is_none_or(|name| j.name == name))
    {
        deliveries.extend(state.recent_deliveries(&job_config.name, 5)?);
    }
    if !deliveries.is_empty() {
        say!("\nRECENT DELIVERIES (newest first per job)");
        say!(
            "{:<24} {:<20} {:<26} {:<28} {:<10} {:>6}  WHERE",
            "JOB",
            "REPORT",
            "PERIOD",
            "TO",
            "STATUS",
            "ROWS"
        );
        for record in &deliveries {
            let d = &record.delivery;
            say!(
                "{:<24} {:<20} {:<26} {:<28} {:<10} {:>6}  {}",
                d.job,
                d.report,
                d.period,
                format!("{} {}", d.destination, d.target),
                record.status.as_str(),
                record.rows.map_or("-".to_string(), |n| n.to_string()),
                record.remote_ref.as_deref().unwrap_or("-")
            );
            if let Some(error) = &record.last_error {
                say!("    {error}");
            }
        }
    }
    let mut tallies = Vec::new();
    for job_config in config
        .jobs
        .iter()
        .filter(|j| job.is_none_or(|name| j.name == name))
    {
        for tally in state.enrollment_tallies(&job_config.name)? {
            tallies.push((job_config.name.clone(), tally));
        }
    }
    if !tallies.is_empty() {
        say!("\nENROLLMENTS (each person's latest cycle)");
        say!("{:<24} {:<28} {:<54} LAST RUN", "JOB", "SEQUENCE", "PEOPLE");
        for (job, tally) in &tallies {
            let people: Vec<String> = tally
                .by_status
                .iter()
                .map(|(status, n)| format!("{n} {}", status.as_str()))
                .collect();
            say!(
                "{:<24} {:<28} {:<54} {}",
                job,
                format!("{} {}", tally.platform, tally.sequence),
                people.join(", "),
                tally.last_run
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The local warehouse's damaged tables, first and loud: every job and query reading one
/// fails until it is restored.
fn damaged_tables(config: &Config) -> Result<(), Failure> {
    let Some(dir) = config.local_warehouse_dir() else {
        return Ok(());
    };
    let damaged = LocalWarehouse::reader(&dir).damaged_tables()?;
    if damaged.is_empty() {
        return Ok(());
    }
    say!("DAMAGED TABLES (jobs and queries that read them fail until they are repaired)");
    for (table, damage) in &damaged {
        say!("{table:<32} {damage}");
    }
    say!("    {}\n", mailroom::warehouse::damage::REMEDY);
    Ok(())
}

fn short_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn run_line(run: &RunRecord) -> String {
    let duration = match (run.started_at, run.finished_at) {
        (Some(start), Some(end)) => {
            format!("{:.1}s", (end - start).num_milliseconds() as f64 / 1000.0)
        }
        (Some(_), None) => "running".to_string(),
        _ => "-".to_string(),
    };
    format!(
        "{:<22} {:<24} {:<9} {:<22} {:<12} {:>8} {:>9}",
        run.started_at.map_or("-".to_string(), short_time),
        run.job,
        run.trigger.as_str(),
        short_time(run.scheduled_for),
        run.status.as_str(),
        run.attempts,
        duration
    )
}

/// What a run loaded (or a dry run would have), from its counters; `in_tables` adds how
/// many rows each loaded table holds afterwards (a merge table keeps one row per key, so
/// 25,607 subscriber records can be 17,016 subscribers).
pub fn load_summary(
    heading: &str,
    counters: &Counters,
    in_tables: &BTreeMap<String, u64>,
) -> String {
    if counters.is_empty() {
        return String::new();
    }
    let mut out = format!("{heading}:\n");
    for (key, value) in counters {
        if let Some(table) = key.strip_prefix("rows.") {
            match in_tables.get(table) {
                Some(total) => out.push_str(&format!(
                    "  {table:<32} {value:>10} rows loaded, {total:>10} in the table\n"
                )),
                None => out.push_str(&format!("  {table:<32} {value:>10} rows\n")),
            }
        } else if let Some(step) = key.strip_prefix("result.") {
            let label = format!("{step} (query)");
            out.push_str(&format!("  {label:<32} {value:>10} rows\n"));
        } else {
            out.push_str(&format!("  {:<32} {value:>10}\n", key.replace('_', " ")));
        }
    }
    out
}

/// `mailroom check`'s summary of what the config sets up.
pub fn config_summary(config: &Config, sql_files: usize) -> String {
    let names = |list: Vec<&str>| {
        if list.is_empty() {
            "none".to_string()
        } else {
            list.join(", ")
        }
    };
    let warehouse = match &config.warehouse {
        WarehouseConfig::Local { .. } => {
            let dir = config.local_warehouse_dir().unwrap_or_default();
            format!("local Delta tables in {}", dir.display())
        }
        WarehouseConfig::BigQuery {
            project,
            dataset,
            location,
            ..
        } => {
            format!("BigQuery {project}.{dataset} ({location})")
        }
    };
    let sandbox = match (&config.sandbox.enabled, &config.sandbox.url) {
        (false, _) => "off: real services".to_string(),
        (true, Some(url)) => format!("on, using the sandbox at {url}"),
        (true, None) => format!(
            "on, in-process (seed {}, {} customers)",
            config.sandbox.seed, config.sandbox.customers
        ),
    };
    let jobs: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
    format!(
        "config ok\n  data dir:     {}\n  warehouse:    {warehouse}\n  sandbox:      {sandbox}\n  sources:      {}\n  destinations: {}\n  jobs:         {} ({})\n  SQL files:    {sql_files} ok\n",
        config.data_dir.display(),
        names(config.sources.services.keys().map(|k| k.name()).collect()),
        names(
            config
                .destinations
                .services
                .keys()
                .map(|k| k.name())
                .collect()
        ),
        jobs.len(),
        names(jobs.clone()),
    )
}

/// What a dry run of `job` will go through.
pub fn dry_run_plan(job: &JobConfig) -> String {
    let mut out = format!(
        "Dry run of {} (nothing is written, sent or recorded):\n",
        job.name
    );
    for (i, step) in job.steps.iter().enumerate() {
        out.push_str(&format!("  step {}: {}\n", i + 1, step.describe()));
    }
    out
}

/// `mailroom sandbox`'s banner: where it listens and each service's address and credentials.
pub fn sandbox_listing(
    base_url: &str,
    seed: u64,
    customers: u32,
    services: &[(&str, String, &str)],
) -> String {
    let mut out = format!(
        "mailroom sandbox listening on {base_url} (seed {seed}, {customers} customers); every credential is \"sandbox\"\n"
    );
    for (name, url, credentials) in services {
        out.push_str(&format!("  {name:<14} {url:<64} {credentials}\n"));
    }
    out
}

/// A spinner with the stream and its record count; drawn only on a terminal.
pub struct BackfillBar {
    bar: indicatif::ProgressBar,
}

impl BackfillBar {
    pub fn new() -> Self {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} {msg}: {pos} records ({per_sec}) {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        BackfillBar { bar }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl BackfillProgress for BackfillBar {
    fn stream(&self, source: &str, stream: &str) {
        self.bar.reset();
        self.bar.set_message(format!("{source} {stream}"));
    }

    fn records(&self, records: u64) {
        self.bar.set_position(records);
    }
}

/// One job's line in the demo: a spinner while it runs (on a terminal), then what it did.
pub struct JobBar {
    bar: Option<indicatif::ProgressBar>,
    started: std::time::Instant,
}

impl JobBar {
    pub fn start(job: &JobConfig) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            let steps: Vec<String> = job.steps.iter().map(|s| s.describe()).collect();
            bar.set_message(format!("{}: {}", job.name, steps.join("; ")));
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        JobBar {
            bar,
            started: std::time::Instant::now(),
        }
    }

    pub fn finish(&self, job: &JobConfig, outcome: &RunOutcome) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let seconds = self.started.elapsed().as_secs_f64();
        let c = &outcome.counters;
        let sum = |prefix: &str| -> u64 {
            c.iter()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(_, n)| *n)
                .sum()
        };
        let mut did = Vec::new();
        let rows = c
            .iter()
            .filter(|(k, _)| k.starts_with("rows."))
            .map(|(_, n)| *n)
            .sum::<u64>();
        if rows > 0 {
            did.push(format!("{rows} rows loaded"));
        }
        for (key, label) in [
            ("deliveries_sent", "deliveries sent"),
            ("activate.enrolled", "enrolled"),
            ("activate.held_out", "held out"),
            ("loyalty.written_fields", "loyalty fields written"),
            ("files_rewritten", "files compacted"),
        ] {
            let n = sum(key);
            if n > 0 {
                did.push(format!("{n} {label}"));
            }
        }
        match outcome.status {
            RunStatus::Succeeded => say!(
                "  ok    {:<22} {seconds:>6.1} s  {}",
                job.name,
                did.join(", ")
            ),
            status => say!(
                "  {status:<5} {:<22} {seconds:>6.1} s  {}",
                job.name,
                outcome
                    .error
                    .as_ref()
                    .map_or("no error recorded", |e| e.message.as_str())
            ),
        }
    }
}

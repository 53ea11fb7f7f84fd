//! What each command does, wiring config, state, scheduler and pipeline together. Errors
//! here carry the [`ErrorKind`] that decides the exit code.

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Timelike, Utc};
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::config::diagnostic::choices_help;
use crate::config::{self, Config, ConfigErrors, LoadError, ProcessEnvironment, WarehouseConfig};
use crate::error::{Classify, EXIT_INTERRUPTED, ErrorKind};
use crate::http::{HttpClient, RetryPolicy, Timeouts};
use crate::pipeline::{Backfill, BackfillProgress, Pipeline};
use crate::sandbox::{RunningSandbox, SandboxOptions};
use crate::scheduler::clock::{Clock, SystemClock};
use crate::scheduler::{self, InFlight, Runtime, Scheduler};
use crate::sql::engine::QueryEngine;
use crate::sql::file::{SqlFile, SqlFileError, discover};
use crate::sql::output::{self, OutputFormat};
use crate::sql::template::{self, TableNames};
use crate::state::{DataDirLock, NewRun, RunRecord, RunStatus, StateStore, Trigger};
use crate::warehouse::bigquery::{BigQuerySettings, connect_client};

/// A command failed; `kind` decides the exit code.
#[derive(Debug)]
pub struct Failure {
    /// The kind of failure.
    pub kind: ErrorKind,
    /// What to tell the user.
    pub message: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: Classify + fmt::Display> From<E> for Failure {
    fn from(err: E) -> Self {
        Failure {
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}

/// Runs the command line's command.
pub async fn execute(cli: Cli) -> Result<ExitCode, Failure> {
    if let Command::Check = cli.command {
        return Ok(check(&cli));
    }
    let config = load_config(&cli)?;
    match cli.command {
        Command::Run => run(config).await,
        Command::RunJob { name, dry_run } => run_job(config, &name, dry_run).await,
        Command::Backfill {
            name,
            from,
            to,
            dry_run,
        } => backfill(config, &name, Backfill { from, to }, dry_run).await,
        Command::Jobs { next } => {
            print!("{}", jobs_table(&config, SystemClock.now(), next));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { job, limit } => status(&config, job.as_deref(), limit),
        Command::Export { table, parquet } => export(&config, &table, &parquet).await,
        Command::Query {
            file_or_sql,
            params,
            format,
            now,
        } => query(&config, &file_or_sql, &params, format, now).await,
        Command::Compact { table, keep_days } => {
            compact(&config, table.as_deref(), keep_days).await
        }
        Command::Sandbox {
            listen,
            seed,
            customers,
            smile_rate_limit,
            faults,
            key_file,
        } => {
            let mut options = SandboxOptions::new(
                seed.unwrap_or(config.sandbox.seed),
                customers.unwrap_or(config.sandbox.customers),
            );
            options.smile_rate_limit = (smile_rate_limit > 0).then_some(smile_rate_limit);
            if let Some(path) = faults.as_ref().or(config.sandbox.faults.as_ref()) {
                options.faults =
                    crate::sandbox::faults::read_plan(path).map_err(|message| Failure {
                        kind: ErrorKind::Config,
                        message,
                    })?;
            }
            let key_file =
                key_file.unwrap_or_else(|| config.data_dir.join("sandbox-service-account.json"));
            serve_sandbox(listen, options, &key_file).await
        }
        Command::Check => unreachable!("handled above"),
    }
}

fn load_config(cli: &Cli) -> Result<Config, LoadError> {
    let mut config = config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &cli.sandbox_url {
        config.sandbox.enabled = true;
        config.sandbox.url = Some(url.clone());
    }
    Ok(config)
}

/// `mailroom check`: every problem in the config, its environment and its SQL files.
fn check(cli: &Cli) -> ExitCode {
    let config = match load_config(cli) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ErrorKind::Config.exit_code();
        }
    };
    let mut problems = config.environment_problems(&ProcessEnvironment);
    let mut sql_files = match discover(&config.base_dir) {
        Ok(files) => files,
        Err(err) => {
            eprintln!(
                "cannot list the SQL folders under {}: {err}",
                config.base_dir.display()
            );
            return ErrorKind::Config.exit_code();
        }
    };
    for job in &config.jobs {
        for step in &job.steps {
            if let config::Step::Sql { file, .. } = step
                && !sql_files.contains(file)
            {
                sql_files.push(file.clone());
            }
        }
    }
    for path in &sql_files {
        match SqlFile::read(path) {
            Ok(file) => problems.extend(file.check_body()),
            Err(SqlFileError::Invalid(errors)) => problems.extend(errors.0),
            Err(err @ SqlFileError::Read { .. }) => {
                eprintln!("{err}");
                return ErrorKind::Config.exit_code();
            }
        }
    }
    if !problems.is_empty() {
        eprintln!("{}", ConfigErrors(problems));
        return ErrorKind::Config.exit_code();
    }
    print!("{}", check_summary(&config, sql_files.len()));
    ExitCode::SUCCESS
}

fn check_summary(config: &Config, sql_files: usize) -> String {
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

/// `mailroom status`: job health, then recent runs newest first.
fn status(config: &Config, job: Option<&str>, limit: u32) -> Result<ExitCode, Failure> {
    if let Some(name) = job {
        find_job(config, name)?;
    }
    let Some(state) = StateStore::open_read_only(&config.state_path())? else {
        println!("No runs recorded yet in {}.", config.data_dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    println!(
        "{:<24} {:<12} {:<22} {:<22} FAILURES SINCE",
        "JOB", "LAST STATUS", "LAST RUN (UTC)", "LAST SUCCESS (UTC)"
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
        println!(
            "{:<24} {:<12} {:<22} {:<22} {}",
            summary.job,
            last_status,
            last_at,
            summary.last_success.map_or("-".to_string(), short_time),
            summary.failures_since_success
        );
    }
    let runs = state.recent_runs(job, limit)?;
    println!("\nRECENT RUNS (newest first)");
    println!(
        "{:<22} {:<24} {:<9} {:<22} {:<12} {:>8} {:>9}",
        "STARTED (UTC)", "JOB", "TRIGGER", "SCHEDULED FOR (UTC)", "STATUS", "ATTEMPTS", "DURATION"
    );
    for run in &runs {
        println!("{}", run_line(run));
        if let Some(error) = &run.error {
            let kind = run.error_kind.map_or(String::new(), |k| format!("{k}: "));
            println!("    {kind}{error}");
        }
    }
    if runs.is_empty() {
        println!("(none)");
    }
    Ok(ExitCode::SUCCESS)
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

fn find_job<'c>(config: &'c Config, name: &str) -> Result<&'c config::JobConfig, Failure> {
    config.job(name).ok_or_else(|| {
        let names: Vec<&str> = config.jobs.iter().map(|j| j.name.as_str()).collect();
        Failure {
            kind: ErrorKind::Config,
            message: format!(
                "no job named \"{name}\" in the config; {}",
                choices_help(name, &names)
            ),
        }
    })
}

/// Opens state for writing, holding the data directory's lock.
fn open_state(config: &Config) -> Result<(DataDirLock, Arc<StateStore>), Failure> {
    let lock = DataDirLock::acquire(&config.data_dir)?;
    let state = StateStore::open(&config.state_path())?;
    Ok((lock, Arc::new(state)))
}

/// Starts or reaches the sandbox the config asks for; it lives as long as the returned value.
async fn connect_sandbox(config: &Config) -> Result<Option<crate::sandbox::Connection>, Failure> {
    let connection = crate::sandbox::connect(&config.sandbox).await?;
    if let Some(connection) = &connection {
        tracing::info!(sandbox = %connection.base_url(), "services are simulated by the {}", connection.describe());
    }
    Ok(connection)
}

fn runtime(
    config: &Arc<Config>,
    state: Arc<StateStore>,
    sandbox: Option<&crate::sandbox::Connection>,
) -> Result<Runtime<Pipeline>, Failure> {
    let sandbox_url = sandbox.map(|s| s.base_url().to_string());
    let executor =
        Pipeline::new(config.clone(), sandbox_url, state.clone()).map_err(|err| Failure {
            kind: err.kind,
            message: err.message,
        })?;
    Ok(Runtime {
        executor,
        state,
        clock: Arc::new(SystemClock),
    })
}

/// `mailroom run`: the scheduler, until SIGINT or SIGTERM.
async fn run(config: Config) -> Result<ExitCode, Failure> {
    let config = Arc::new(config);
    let (_lock, state) = open_state(&config)?;
    let sandbox = connect_sandbox(&config).await?;
    tracing::info!(config_dir = %config.base_dir.display(), data_dir = %config.data_dir.display(), jobs = config.jobs.len(), "mailroom starting");
    let scheduler = Scheduler::new(
        runtime(&config, state, sandbox.as_ref())?,
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
    scheduler.run(shutdown).await;
    Ok(ExitCode::SUCCESS)
}

/// `mailroom run-job NAME`: one run now, recorded like a scheduled one (unless dry).
async fn run_job(config: Config, name: &str, dry_run: bool) -> Result<ExitCode, Failure> {
    let config = Arc::new(config);
    let job = Arc::new(find_job(&config, name)?.clone());
    let (_lock, state) = open_state(&config)?;
    let sandbox = connect_sandbox(&config).await?;
    let runtime = Arc::new(runtime(&config, state, sandbox.as_ref())?);
    scheduler::recover_abandoned(&runtime);
    let now = runtime.clock.now();
    let run = NewRun::new(name, Trigger::Manual, now.with_nanosecond(0).unwrap_or(now));
    if dry_run {
        println!("Dry run of {name} (nothing is written, sent or recorded):");
        for (i, step) in job.steps.iter().enumerate() {
            println!("  step {}: {}", i + 1, step.describe());
        }
    }
    let mut signals = ShutdownSignals::install()?;
    let shutdown = CancellationToken::new();
    let mut in_flight =
        InFlight::spawn(runtime.clone(), job.clone(), run, dry_run, shutdown.clone());
    let outcome = tokio::select! {
        outcome = in_flight.wait() => outcome?,
        signal = signals.recv() => {
            tracing::info!(signal, "stopping the run");
            shutdown.cancel();
            scheduler::wind_down(&runtime, name, in_flight, config.scheduler.shutdown_grace).await;
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
    };
    let verb = if dry_run { "dry run" } else { "run" };
    match outcome.status {
        RunStatus::Succeeded => {
            println!(
                "{name}: {verb} {} succeeded after {} attempt(s)",
                outcome.run_id, outcome.attempts
            );
            let heading = if dry_run { "Would load" } else { "Done" };
            print!("{}", load_summary(heading, &outcome.counters));
            Ok(ExitCode::SUCCESS)
        }
        RunStatus::Interrupted => Ok(ExitCode::from(EXIT_INTERRUPTED)),
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

/// `mailroom backfill JOB --from --to`: re-extract a window, cursors untouched, with a
/// progress bar on a terminal.
async fn backfill(
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
    let config = Arc::new(config);
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
    let sandbox = connect_sandbox(&config).await?;
    let pipeline = Pipeline::new(
        config.clone(),
        sandbox.as_ref().map(|s| s.base_url().to_string()),
        state,
    )
    .map_err(|err| Failure {
        kind: err.kind,
        message: err.message,
    })?;
    let bar = BackfillBar::new();
    let result = pipeline.backfill(&job, window, dry_run, &bar).await;
    bar.finish();
    let counters = result.map_err(|err| Failure {
        kind: err.kind,
        message: format!("{name}: backfill failed: {}", err.message),
    })?;
    println!(
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
    print!("{}", load_summary(heading, &counters));
    Ok(ExitCode::SUCCESS)
}

/// A spinner with the stream and its record count; drawn only on a terminal.
struct BackfillBar {
    bar: indicatif::ProgressBar,
}

impl BackfillBar {
    fn new() -> Self {
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

    fn finish(&self) {
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

/// The local warehouse of `config`, or a config error naming what it is instead.
fn local_warehouse(
    config: &Config,
    command: &str,
) -> Result<crate::warehouse::local::LocalWarehouse, Failure> {
    let Some(dir) = config.local_warehouse_dir() else {
        return Err(Failure {
            kind: ErrorKind::Config,
            message: format!(
                "{command} works on the local warehouse; this config's warehouse is BigQuery"
            ),
        });
    };
    Ok(crate::warehouse::local::LocalWarehouse::open(&dir)?)
}

/// `mailroom query FILE_OR_SQL`: renders and runs one query and prints its rows.
async fn query(
    config: &Config,
    file_or_sql: &str,
    params: &[(String, String)],
    format: OutputFormat,
    now: Option<DateTime<Utc>>,
) -> Result<ExitCode, Failure> {
    let (local, bigquery, sandbox, settings);
    let engine = match config.local_warehouse_dir() {
        Some(dir) => {
            local = crate::warehouse::local::LocalWarehouse::reader(&dir);
            QueryEngine::Local(&local)
        }
        None => {
            sandbox = connect_sandbox(config).await?;
            let sandbox_url = sandbox.as_ref().map(|s| s.base_url().to_string());
            settings =
                BigQuerySettings::from_config(&config.warehouse, sandbox_url).ok_or(Failure {
                    kind: ErrorKind::Bug,
                    message: "the warehouse is neither local nor BigQuery".into(),
                })?;
            let http = HttpClient::new(Timeouts::default())?;
            bigquery = connect_client(&settings, &http, RetryPolicy::default()).await?;
            QueryEngine::BigQuery {
                client: &bigquery,
                dataset: &settings.dataset,
            }
        }
    };
    let overrides = params
        .iter()
        .map(|(name, value)| (name.clone(), config::ParamValue::String(value.clone())))
        .collect();
    let now = now.unwrap_or_else(|| SystemClock.now());
    let sql = render_query(config, file_or_sql, &overrides, now, &engine.table_names())?;
    let result = engine.run(&sql).await?;
    let mut printed = Vec::new();
    output::write(&result, format, &mut printed).map_err(|e| Failure {
        kind: ErrorKind::Bug,
        message: format!("cannot format the result: {e}"),
    })?;
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(&printed) {
        // A reader that stops early (`| head`) is not a failure.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure {
            kind: ErrorKind::Terminal,
            message: format!("cannot print the result: {e}"),
        }),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// The SQL to run for `file_or_sql`: a SQL file (by path, or relative to the config's
/// folder) rendered with its header's parameters, or query text rendered as it is.
fn render_query(
    config: &Config,
    file_or_sql: &str,
    overrides: &std::collections::BTreeMap<String, config::ParamValue>,
    now: DateTime<Utc>,
    tables: &TableNames,
) -> Result<String, Failure> {
    let config_error = |message: String| Failure {
        kind: ErrorKind::Config,
        message,
    };
    let as_path = std::path::Path::new(file_or_sql);
    let path = [as_path.to_path_buf(), config.base_dir.join(as_path)]
        .into_iter()
        .find(|p| p.is_file());
    match path {
        Some(path) => {
            let file = SqlFile::read(&path).map_err(|e| config_error(e.to_string()))?;
            file.render(now, overrides, tables)
                .map_err(|e| config_error(format!("{}: {e}", path.display())))
        }
        None if file_or_sql.trim_end().ends_with(".sql") => Err(config_error(format!(
            "no SQL file at {file_or_sql} (nor under {})",
            config.base_dir.display()
        ))),
        None => {
            let no_params = std::collections::BTreeMap::new();
            let params = template::resolve_params(&no_params, overrides)
                .map_err(|e| config_error(format!("{e}; --param is for SQL files")))?;
            template::render(
                file_or_sql,
                &template::RenderContext {
                    now,
                    params: &params,
                    tables,
                },
            )
            .map_err(|e| config_error(format!("the query text: {e}")))
        }
    }
}

/// `mailroom compact [TABLE]`: fewer, larger files, and old ones deleted.
async fn compact(
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
            Some(done) => println!(
                "{name}: {} small files rewritten as {}; {} old files deleted",
                done.files_removed, done.files_added, done.files_deleted
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
        println!("No tables yet.");
    }
    Ok(ExitCode::SUCCESS)
}

/// `mailroom export TABLE --parquet FILE`: one plain Parquet file of a local table.
async fn export(
    config: &Config,
    table: &str,
    parquet: &std::path::Path,
) -> Result<ExitCode, Failure> {
    let (_lock, _state) = open_state(config)?;
    let warehouse = local_warehouse(config, "export")?;
    match warehouse.export(table, parquet).await? {
        Some(rows) => {
            println!("{table}: {rows} rows written to {}", parquet.display());
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

/// What a run loaded (or a dry run would have), from its counters.
fn load_summary(heading: &str, counters: &crate::state::Counters) -> String {
    if counters.is_empty() {
        return String::new();
    }
    let mut out = format!("{heading}:\n");
    for (key, value) in counters {
        match key.strip_prefix("rows.") {
            Some(table) => out.push_str(&format!("  {table:<32} {value:>10} rows\n")),
            None => out.push_str(&format!("  {:<32} {value:>10}\n", key.replace('_', " "))),
        }
    }
    out
}

/// `mailroom sandbox`: serve the simulators until SIGINT or SIGTERM.
async fn serve_sandbox(
    listen: std::net::SocketAddr,
    options: SandboxOptions,
    key_file: &std::path::Path,
) -> Result<ExitCode, Failure> {
    let mut signals = ShutdownSignals::install()?;
    let world = options.world;
    let sandbox = RunningSandbox::start(listen, options)
        .await
        .map_err(|err| Failure {
            kind: ErrorKind::Transient,
            message: format!("cannot listen on {listen}: {err}"),
        })?;
    println!(
        "mailroom sandbox listening on {} (seed {}, {} customers); every credential is \"sandbox\"",
        sandbox.base_url, world.seed, world.customers
    );
    for service in sandbox.services() {
        println!(
            "  {:<14} {:<64} {}",
            service.name, service.base_url, service.credentials
        );
    }
    let key = serde_json::to_string_pretty(&sandbox.service_account_key()).unwrap_or_default();
    let written = key_file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(key_file, key));
    match written {
        Ok(()) => println!("  Google service-account key file: {}", key_file.display()),
        Err(err) => {
            tracing::warn!(path = %key_file.display(), error = %err, "could not write the service-account key file; it is also served at /_sandbox/service-account.json")
        }
    }
    let signal = signals.recv().await;
    tracing::info!(signal, "stopping the sandbox");
    sandbox.stop().await.map_err(|err| Failure {
        kind: ErrorKind::Bug,
        message: format!("the sandbox server failed: {err}"),
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT and SIGTERM listeners, registered when created so that a signal arriving at any
/// later moment is seen (never the default action of killing the process mid-write).
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn install() -> Result<Self, Failure> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let listen = |kind: SignalKind| {
                signal(kind).map_err(|err| Failure {
                    kind: ErrorKind::Bug,
                    message: format!("cannot listen for shutdown signals: {err}"),
                })
            };
            Ok(ShutdownSignals {
                interrupt: listen(SignalKind::interrupt())?,
                terminate: listen(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// Resolves at the next SIGINT or SIGTERM, naming which.
    async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => "SIGINT",
                _ = self.terminate.recv() => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

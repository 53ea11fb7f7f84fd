//! The command layer: what each command does, wiring config, state, scheduler, pipeline
//! and warehouse together. One module per command family — [`check`], [`demo`], [`run`]
//! (`run` with the status server, `run-job`, `backfill`), [`warehouse`] (`query`,
//! `export`, `compact`), [`ledger`] (never a silently new `state.db`; `new-ledger`),
//! [`sandbox`] (`mailroom sandbox`, and turning a sandbox into plain service overrides, the
//! only place that does) — with everything printed for people in [`print`]. Errors here
//! carry the [`ErrorKind`] that decides the exit code.

/// `println!` for the command layer: a reader that went away (`mailroom status | head -1`)
/// ends the command quietly instead of a panic.
macro_rules! say {
    () => {
        $crate::app::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::app::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` for the command layer, with the same care as [`say!`].
macro_rules! show {
    ($($arg:tt)*) => {
        $crate::app::write_out(format_args!($($arg)*))
    };
}

mod check;
mod demo;
mod ledger;
mod print;
mod run;
mod sandbox;
mod signals;
mod warehouse;

use std::fmt;
use std::process::ExitCode;
use std::sync::Arc;

use mailroom::config::diagnostic::choices_help;
use mailroom::config::{self, Config, LoadError, ProcessEnvironment};
use mailroom::error::{Classify, ErrorKind};
use mailroom::http::{HttpClient, RetryPolicy, Timeouts};
use mailroom::pipeline::Backfill;
use mailroom::scheduler::clock::{Clock, SystemClock};
use mailroom::services::Services;
use mailroom::state::{DataDirLock, StateStore};

use crate::cli::{Cli, Command};

/// Writes command output to stdout; when the reader has gone (a closed pipe) there is no one
/// left to tell, so the process ends quietly with success, as `head`'s writers do.
pub(crate) fn write_out(args: fmt::Arguments<'_>) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(err) = out.write_fmt(args).and_then(|()| out.flush())
        && err.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

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
        return Ok(check::check(&cli));
    }
    let config = load_config(&cli)?;
    match cli.command {
        Command::Run => run::run(config).await,
        Command::Demo { keep_running } => {
            demo::demo(config, cli.data_dir.is_some(), keep_running).await
        }
        Command::RunJob {
            name,
            dry_run,
            force,
        } => run::run_job(config, &name, dry_run, force).await,
        Command::Backfill {
            name,
            from,
            to,
            dry_run,
        } => run::backfill(config, &name, Backfill { from, to }, dry_run).await,
        Command::Jobs { next } => {
            show!("{}", print::jobs_table(&config, SystemClock.now(), next));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { job, limit } => print::status(&config, job.as_deref(), limit),
        Command::Export { table, parquet } => warehouse::export(&config, &table, &parquet).await,
        Command::Query {
            file_or_sql,
            params,
            format,
            now,
        } => warehouse::query(config, &file_or_sql, &params, format, now).await,
        Command::Compact { table, keep_days } => {
            warehouse::compact(&config, table.as_deref(), keep_days).await
        }
        Command::Sandbox {
            listen,
            seed,
            customers,
            smile_rate_limit,
            faults,
            bulk_export_secs,
            key_file,
        } => {
            let options = sandbox::options(
                &config,
                seed,
                customers,
                smile_rate_limit,
                faults,
                bulk_export_secs,
            )?;
            let key_file =
                key_file.unwrap_or_else(|| config.data_dir.join("sandbox-service-account.json"));
            sandbox::serve(listen, options, &key_file).await
        }
        Command::NewLedger => ledger::new_ledger(&config),
        Command::Check => unreachable!("handled above"),
    }
}

pub(crate) fn load_config(cli: &Cli) -> Result<Config, LoadError> {
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

pub(crate) fn find_job<'c>(
    config: &'c Config,
    name: &str,
) -> Result<&'c config::JobConfig, Failure> {
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
pub(crate) fn open_state(config: &Config) -> Result<(DataDirLock, Arc<StateStore>), Failure> {
    let lock = DataDirLock::acquire(&config.data_dir)?;
    ledger::refuse_lost_ledger(config)?;
    let state = StateStore::open(&config.state_path())?;
    Ok((lock, Arc::new(state)))
}

/// What a command that talks to services needs, built once from the config: the
/// services registry (with a sandbox's overrides when `[sandbox]` is enabled) and the
/// sandbox itself, kept alive as long as this is.
pub(crate) struct Wiring {
    /// The validated config.
    pub config: Arc<Config>,
    /// Every service, one connection per credential.
    pub services: Arc<Services>,
    sandbox: Option<sandbox::Simulated>,
}

impl Wiring {
    /// Starts or reaches the sandbox the config asks for and builds the services.
    pub async fn build(config: Config) -> Result<Self, Failure> {
        let client = HttpClient::new(Timeouts::default())?;
        let simulated = sandbox::connect(&config, &client).await?;
        Ok(Self::with(config, client, simulated))
    }

    /// The services as the config alone says, for commands that reach none of them (a
    /// query on the local warehouse): no sandbox is started.
    pub fn offline(config: Config) -> Result<Self, Failure> {
        let client = HttpClient::new(Timeouts::default())?;
        Ok(Self::with(config, client, None))
    }

    fn with(config: Config, client: HttpClient, simulated: Option<sandbox::Simulated>) -> Self {
        let overrides = simulated
            .as_ref()
            .map(|s| s.overrides.clone())
            .unwrap_or_default();
        let services = Services::new(
            config.service_sections(),
            overrides,
            Box::new(ProcessEnvironment),
            client,
            RetryPolicy::default(),
        );
        Wiring {
            config: Arc::new(config),
            services: Arc::new(services),
            sandbox: simulated,
        }
    }

    /// The sandbox's address, when the services are simulated.
    pub fn sandbox_url(&self) -> Option<&str> {
        self.sandbox.as_ref().map(|s| s.base_url.as_str())
    }
}

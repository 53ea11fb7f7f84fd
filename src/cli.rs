//! The command line (clap derive): global options and one subcommand per task.

use std::net::SocketAddr;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use mailroom::sql::output::OutputFormat;
use mailroom::telemetry::LogFormat;

/// Moves e-commerce email, loyalty and order data into a warehouse on a schedule, runs
/// your SQL reports, and sends the answers to Sheets, Slack and win-back sequences.
#[derive(Debug, Parser)]
#[command(name = "mailroom", version, about, long_about = None)]
pub struct Cli {
    /// Config file [default: ./config.toml, or the built-in default when there is none]
    #[arg(long, global = true, value_name = "FILE", env = "MAILROOM_CONFIG")]
    pub config: Option<PathBuf>,

    /// Data directory for state.db and local tables [default: `data_dir` from the config]
    #[arg(long, global = true, value_name = "DIR", env = "MAILROOM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Use the running `mailroom sandbox` at this URL for every service [overrides `[sandbox] url`]
    #[arg(long, global = true, value_name = "URL", env = "MAILROOM_SANDBOX_URL")]
    pub sandbox_url: Option<url::Url>,

    /// Log format on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,

    /// What to do
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler until SIGINT or SIGTERM
    Run,
    /// Run one job now, recorded in the ledger like a scheduled run
    RunJob {
        /// The job's name
        name: String,
        /// Show what would be loaded, sent and enrolled; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Enroll even when far more people are eligible than in recent runs (the anomaly
        /// guard of activate steps)
        #[arg(long)]
        force: bool,
    },
    /// Run every job of the configuration once against the sandbox and show what happened
    Demo {
        /// Then keep the scheduler and its status page running until Ctrl-C
        #[arg(long)]
        keep_running: bool,
    },
    /// Re-extract a job's streams for a time window without moving their cursors
    Backfill {
        /// The job's name
        name: String,
        /// Start of the window: a date (UTC midnight) or an RFC 3339 time
        #[arg(long, value_parser = parse_instant)]
        from: DateTime<Utc>,
        /// End of the window, exclusive: a date (UTC midnight) or an RFC 3339 time
        #[arg(long, value_parser = parse_instant)]
        to: DateTime<Utc>,
        /// Extract the window and show what would be loaded; change nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// List jobs with their schedules and next fire times, in each job's time zone
    Jobs {
        /// How many upcoming fire times to show
        #[arg(long, default_value_t = 3)]
        next: usize,
    },
    /// Show job health and recent runs from the ledger, newest first
    Status {
        /// Only this job
        #[arg(long)]
        job: Option<String>,
        /// How many runs to show
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Compact the local warehouse's small files and delete files older versions no longer need
    Compact {
        /// Only this table (every table when left out)
        table: Option<String>,
        /// Keep files older versions need for this many days (time travel; at least 7:
        /// Delta Lake refuses to delete files a version of the last 168 hours may need)
        #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(7..=3650))]
        keep_days: u32,
    },
    /// Write a local warehouse table as one plain Parquet file, for tools that do not read Delta
    Export {
        /// The table's name, such as smile_customers
        table: String,
        /// The Parquet file to write
        #[arg(long)]
        parquet: PathBuf,
    },
    /// Run a SQL file or a GoogleSQL statement on the configured warehouse and print the rows
    Query {
        /// A SQL file (such as queries/lapsed_customers.sql) or the text of one query
        file_or_sql: String,
        /// A parameter for the file, overriding its header's default (repeatable)
        #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
        params: Vec<(String, String)>,
        /// How to print the rows
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// The time `{{ now }}` stands for: a date (UTC midnight) or an RFC 3339 time
        /// [default: the current time]
        #[arg(long, value_parser = parse_instant)]
        now: Option<DateTime<Utc>>,
    },
    /// Validate the config and SQL files, without network access
    Check,
    /// Start a new, empty state.db when the old one is lost or damaged and no backup can be
    /// restored (a damaged one is moved aside); runs, deliveries and enrollments recorded in
    /// it are forgotten
    NewLedger,
    /// Serve the simulated services in the foreground until SIGINT or SIGTERM
    Sandbox {
        /// Address to listen on (port 0 picks a free port)
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// World seed [default: `[sandbox] seed` from the config]
        #[arg(long)]
        seed: Option<u64>,
        /// Number of simulated customers [default: `[sandbox] customers` from the config]
        #[arg(long)]
        customers: Option<u32>,
        /// Smile.io requests per second per token; 0 for no limit
        #[arg(long, default_value_t = 10)]
        smile_rate_limit: u32,
        /// A fault plan: JSON file holding an array of rules
        #[arg(long, value_name = "FILE")]
        faults: Option<PathBuf>,
        /// The shortest time a Shopify bulk export takes, in seconds [default: 0.5]
        #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
        bulk_export_secs: Option<f64>,
        /// Where to write the Google service-account key file for configs to use
        /// [default: <data dir>/sandbox-service-account.json]
        #[arg(long, value_name = "FILE")]
        key_file: Option<PathBuf>,
    },
}

/// Parses a number of seconds, 0 to a day.
fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if (0.0..=86_400.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "\"{text}\" is not a number of seconds from 0 to 86400"
        )),
    }
}

/// Parses `name=value`.
fn parse_param(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("\"{text}\" is not NAME=VALUE")),
    }
}

/// Parses `2026-10-01` (UTC midnight) or an RFC 3339 time.
fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| format!("\"{text}\" is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "mailroom",
            "run-job",
            "extract-orders",
            "--dry-run",
            "--data-dir",
            "/tmp/x",
        ])
        .expect("parses");
        assert!(matches!(cli.command, Command::RunJob { dry_run: true, .. }));
        assert_eq!(cli.data_dir, Some(PathBuf::from("/tmp/x")));
    }
}

//! Configuration: `config.toml` parsed, validated and typed, in two phases.
//!
//! [`parse`] reads the TOML with spans and validates every section in one pass, collecting
//! every problem as a [`Diagnostic`] with `file:line:column`, key path, bad value and valid
//! choices ([`ConfigErrors`]); the result is typed ([`CronSchedule`], `Duration`, `Url`,
//! resolved paths, checked cross-references between steps, sources and destinations).
//! Nothing here touches the network. Secrets stay `${VAR}` references ([`SecretRef`]) until
//! a command resolves them against the environment ([`Config::environment_problems`]).
//!
//! The shipped `config.toml` is compiled in as [`DEFAULT_CONFIG`] and used when no config
//! file is given and `./config.toml` does not exist.

pub mod diagnostic;
mod jobs;
pub mod reader;
pub mod secret;
mod sections;
mod shipped;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::error::{Classify, ErrorKind};
use crate::schedule::CronSchedule;
pub use crate::services::{OptionValue, ServiceConfig};
pub use diagnostic::{ConfigErrors, Diagnostic, Diagnostics, SourceText};
pub use secret::{Environment, ProcessEnvironment, Secret, SecretRef};
pub use shipped::shipped_sql;

/// The shipped `config.toml`: every job against the built-in sandbox.
pub const DEFAULT_CONFIG: &str = include_str!("../../config.toml");

/// The name diagnostics use for the compiled-in default config.
pub const DEFAULT_CONFIG_NAME: &str = "<built-in config.toml>";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where relative paths in the config are resolved from: the config file's folder.
    pub base_dir: PathBuf,
    /// Where mailroom keeps `state.db` and, for the local warehouse, its tables.
    pub data_dir: PathBuf,
    /// Where loaded tables live.
    pub warehouse: WarehouseConfig,
    /// The built-in simulators of every external service.
    pub sandbox: SandboxConfig,
    /// Scheduler-wide settings.
    pub scheduler: SchedulerConfig,
    /// `[server]`: the status server `mailroom run` starts.
    pub server: ServerConfig,
    /// The services data is extracted from.
    pub sources: SourcesConfig,
    /// Where report results are sent.
    pub destinations: DestinationsConfig,
    /// The scheduled jobs, in config order.
    pub jobs: Vec<JobConfig>,
}

/// The warehouse tables are loaded into and SQL files run on.
#[derive(Debug, Clone, PartialEq)]
pub enum WarehouseConfig {
    /// Delta Lake tables of Parquet files on this machine (`type = "local"`).
    Local {
        /// Folder holding one sub-folder per table, relative to the data directory;
        /// default `warehouse`. See [`Config::local_warehouse_dir`].
        path: PathBuf,
    },
    /// Google BigQuery (`type = "bigquery"`).
    BigQuery {
        /// The Google Cloud project id.
        project: String,
        /// The dataset tables are created in.
        dataset: String,
        /// The dataset's location, such as `US` or `australia-southeast1`.
        location: String,
        /// Service-account key file; optional only when the sandbox is enabled.
        credentials_file: Option<PathBuf>,
    },
}

/// `[sandbox]`: the simulated services used by the demo, the tests and new installs.
#[derive(Debug, Clone, PartialEq)]
pub struct SandboxConfig {
    /// When true, every source and destination talks to the sandbox with its credentials.
    pub enabled: bool,
    /// A running `mailroom sandbox` to use instead of starting one in-process.
    pub url: Option<Url>,
    /// Seed of the simulated world; the same seed gives the same world.
    pub seed: u64,
    /// Number of simulated customers.
    pub customers: u32,
    /// A fault plan (JSON array of rules) for an in-process sandbox to start with.
    pub faults: Option<PathBuf>,
    /// The moment the simulated world is "now" (`anchor`).
    pub anchor: SandboxAnchor,
}

/// The moment a simulated world is built around: its people's last orders, campaigns and
/// changes lie before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SandboxAnchor {
    /// The start of the current UTC day when the sandbox starts (`"today"`), so reports on
    /// "the last week" find data on any date.
    #[default]
    Today,
    /// A fixed day (`"2026-11-01"`), for the same world on every date.
    Date(chrono::NaiveDate),
}

impl SandboxAnchor {
    /// The anchor as an instant: midnight UTC of its day, `today` being `now`'s.
    pub fn at(self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        let day = match self {
            SandboxAnchor::Today => now.date_naive(),
            SandboxAnchor::Date(day) => day,
        };
        day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
    }
}

/// `[scheduler]`: settings for `mailroom run`.
#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// How long in-flight runs may finish after SIGINT or SIGTERM before they are stopped
    /// and recorded as interrupted.
    pub shutdown_grace: Duration,
}

/// `[server]`: where the status server listens, and the token it asks for when it is
/// reachable from other machines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The address; loopback by default.
    pub listen: std::net::SocketAddr,
    /// A bearer token every request must carry; required unless `listen` is loopback.
    pub token: Option<SecretRef>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8710)),
            token: None,
        }
    }
}

/// The sources mailroom knows how to extract, and the streams each offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    /// Smile.io loyalty.
    Smile,
    /// Shopify Admin GraphQL.
    Shopify,
    /// SmartrMail email.
    SmartrMail,
    /// Iterable email.
    Iterable,
    /// Dotdigital email.
    Dotdigital,
}

impl SourceKind {
    /// Every source, in config order.
    pub const ALL: [SourceKind; 5] = [
        SourceKind::Smile,
        SourceKind::Shopify,
        SourceKind::SmartrMail,
        SourceKind::Iterable,
        SourceKind::Dotdigital,
    ];

    /// The name used in config (`[sources.NAME]`, `source = "NAME"`).
    pub fn name(self) -> &'static str {
        self.service().key()
    }

    /// The streams this source can extract.
    pub fn streams(self) -> &'static [&'static str] {
        match self {
            SourceKind::Smile => &["customers", "vip_tiers", "points_transactions"],
            SourceKind::Shopify => &["orders", "customers"],
            SourceKind::SmartrMail => &["lists", "subscribers", "engagement_daily", "campaigns"],
            SourceKind::Iterable => &["campaigns"],
            SourceKind::Dotdigital => &["campaigns", "suppressions"],
        }
    }

    /// The external service this source reads.
    pub fn service(self) -> crate::services::ServiceKind {
        use crate::services::ServiceKind;
        match self {
            SourceKind::Smile => ServiceKind::Smile,
            SourceKind::Shopify => ServiceKind::Shopify,
            SourceKind::SmartrMail => ServiceKind::SmartrMail,
            SourceKind::Iterable => ServiceKind::Iterable,
            SourceKind::Dotdigital => ServiceKind::Dotdigital,
        }
    }

    /// Whether win-back enrollment can send customers to this source's platform.
    pub fn is_email_platform(self) -> bool {
        matches!(
            self,
            SourceKind::SmartrMail | SourceKind::Iterable | SourceKind::Dotdigital
        )
    }
}

/// `[sources.*]`: the configured sources.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourcesConfig {
    /// Configured sources by kind. Per-service keys (SmartrMail's
    /// `experimental_campaigns`, Smile's `requests_per_second`) are in each section's
    /// `options`, as the service's spec declares them.
    pub services: BTreeMap<SourceKind, ServiceConfig>,
    /// What happens to fields a source sends that its tables do not declare
    /// (`[sources.NAME] schema = "fixed" | "evolve"`; `fixed` when not set).
    pub schema_policies: BTreeMap<SourceKind, crate::normalize::SchemaPolicy>,
}

/// Where report results can be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DestinationKind {
    /// Google Sheets: rows appended to a tab.
    Sheets,
    /// Slack: a summary message and a CSV file.
    Slack,
}

impl DestinationKind {
    /// Every destination, in config order.
    pub const ALL: [DestinationKind; 2] = [DestinationKind::Sheets, DestinationKind::Slack];

    /// The name used in config.
    pub fn name(self) -> &'static str {
        self.service().key()
    }

    /// The external service this destination writes to.
    pub fn service(self) -> crate::services::ServiceKind {
        match self {
            DestinationKind::Sheets => crate::services::ServiceKind::Sheets,
            DestinationKind::Slack => crate::services::ServiceKind::Slack,
        }
    }

    /// The step key naming where in the destination results go.
    pub fn target_key(self) -> &'static str {
        match self {
            DestinationKind::Sheets => "sheet",
            DestinationKind::Slack => "channel",
        }
    }
}

/// `[destinations.*]`: the configured destinations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DestinationsConfig {
    /// Configured destinations by kind.
    pub services: BTreeMap<DestinationKind, ServiceConfig>,
}

/// What to do when a job is due while its previous run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlapPolicy {
    /// Record the due run as skipped.
    Skip,
    /// Run it right after the current run ends (several due runs coalesce into one).
    Queue,
}

/// What to do about runs that were due while mailroom was not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissedPolicy {
    /// Record that they were missed and wait for the next scheduled time.
    Skip,
    /// Make one catch-up run covering the whole gap.
    RunOnce,
}

/// A value for a SQL file parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// A string.
    String(String),
    /// A whole number.
    Integer(i64),
    /// A decimal number.
    Float(f64),
    /// True or false.
    Bool(bool),
}

/// How a report's rows land in a Sheets tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeliveryMode {
    /// Each period's rows are one block below the last; a rerun of a period replaces its
    /// block.
    #[default]
    Append,
    /// The tab's data rows are rewritten; the header row and the tab's formatting stay.
    Replace,
}

impl DeliveryMode {
    /// The word in config.
    pub fn name(self) -> &'static str {
        match self {
            DeliveryMode::Append => "append",
            DeliveryMode::Replace => "replace",
        }
    }
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Extract streams from a source into their tables.
    Extract {
        /// The source.
        source: SourceKind,
        /// The streams to extract, in order.
        streams: Vec<String>,
    },
    /// Run a SQL file from `queries/` or `reports/` on the warehouse.
    Sql {
        /// The name later steps use in `from`; the file's stem unless `name` is set.
        name: String,
        /// The SQL file, resolved against the config's folder.
        file: PathBuf,
        /// Parameter values overriding the file's defaults.
        params: BTreeMap<String, ParamValue>,
        /// A warehouse table the answer is also written to, replaced each run, so BI tools
        /// can read every report's latest answer (`into`).
        into: Option<&'static str>,
        /// Whether a report's header `deliver` list applies when the job has no deliver
        /// steps for it (`deliver = false` turns it off).
        header_deliveries: bool,
    },
    /// Send an earlier SQL step's result to a destination.
    Deliver {
        /// The SQL step whose result is sent.
        from: String,
        /// The destination.
        to: DestinationKind,
        /// The sheet tab (Sheets) or channel (Slack).
        target: String,
        /// How rows land in a Sheets tab (`mode`; Slack posts a message either way).
        mode: DeliveryMode,
    },
    /// Compact the local warehouse's tables and delete files older versions no longer need.
    Compact {
        /// Days of older versions whose files are kept (time travel).
        keep_days: u32,
    },
    /// Keep Smile's loyalty fields current on an e-mail platform's existing people.
    LoyaltySync {
        /// The e-mail platform.
        platform: SourceKind,
        /// Whether a value Smile no longer has clears the platform's (otherwise it stays).
        clear_nulls: bool,
    },
    /// Enroll an earlier SQL step's customers into an email platform's win-back sequence.
    Activate {
        /// The SQL step whose rows are enrolled.
        from: String,
        /// The email platform.
        platform: SourceKind,
        /// The list, workflow or program id on that platform.
        sequence: String,
        /// How enrollment is held back and guarded.
        policy: ActivatePolicy,
    },
}

impl Step {
    /// The step's `type` in config.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Extract { .. } => "extract",
            Step::Sql { .. } => "sql",
            Step::Deliver { .. } => "deliver",
            Step::Activate { .. } => "activate",
            Step::LoyaltySync { .. } => "loyalty_sync",
            Step::Compact { .. } => "compact",
        }
    }

    /// A short description for logs and `mailroom jobs`.
    pub fn describe(&self) -> String {
        match self {
            Step::Extract { source, streams } => {
                format!("extract {} ({})", source.name(), streams.join(", "))
            }
            Step::Sql {
                file,
                into: Some(table),
                ..
            } => format!("sql {} into {table}", file.display()),
            Step::Sql { file, .. } => format!("sql {}", file.display()),
            Step::Deliver {
                from,
                to: DestinationKind::Sheets,
                target,
                mode,
            } => format!("deliver {from} to sheets {target} ({})", mode.name()),
            Step::Deliver {
                from, to, target, ..
            } => {
                format!("deliver {from} to {} {target}", to.name())
            }
            Step::Activate {
                from,
                platform,
                sequence,
                policy,
            } => format!(
                "activate {from} into {} {sequence} ({}% held out)",
                platform.name(),
                policy.holdout * 100.0
            ),
            Step::LoyaltySync { platform, .. } => {
                format!("sync Smile loyalty fields to {}", platform.name())
            }
            Step::Compact { keep_days } => {
                format!("compact the warehouse (keep {keep_days} days of versions)")
            }
        }
    }
}

/// An activate step's control group, cooldown, guardrails and extra suppression.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivatePolicy {
    /// The share of consented, eligible people held out as the control group (0 to 0.5).
    pub holdout: f64,
    /// Days before someone enrolled (or held out) may be enrolled again.
    pub cooldown_days: u32,
    /// At most this many enrollments per run; the rest wait for the next.
    pub max_per_run: Option<u64>,
    /// Stop before enrolling when the eligible count exceeds this many times the median
    /// of recent runs.
    pub anomaly_factor: f64,
    /// A warehouse table whose `email_normalized` column lists people never to enroll.
    pub suppress_from: Option<String>,
    /// Iterable: the marketing e-mail channel whose unsubscribes mean no (required there).
    pub channel_id: Option<u64>,
    /// Iterable: the journey's message type, whose unsubscribes also mean no.
    pub message_type_id: Option<u64>,
    /// A Slack channel told each run's outcome counts (once per period).
    pub summary_channel: Option<String>,
}

impl Default for ActivatePolicy {
    fn default() -> Self {
        ActivatePolicy {
            holdout: 0.0,
            cooldown_days: 90,
            max_per_run: None,
            anomaly_factor: 5.0,
            suppress_from: None,
            channel_id: None,
            message_type_id: None,
            summary_channel: None,
        }
    }
}

/// One `[[jobs]]` entry.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// Unique name, used by `run-job`, the ledger and logs.
    pub name: String,
    /// When it runs, in its time zone.
    pub schedule: CronSchedule,
    /// What to do when it is due while still running.
    pub overlap: OverlapPolicy,
    /// What to do about runs missed while mailroom was down.
    pub missed: MissedPolicy,
    /// How many times a transient failure is retried.
    pub retries: u32,
    /// The first retry's delay; each later one doubles, with jitter.
    pub retry_backoff: Duration,
    /// The longest one attempt may take before it is stopped as a transient failure.
    pub timeout: Duration,
    /// The steps, run in order.
    pub steps: Vec<Step>,
    /// A Slack channel told, once per run, when a run finally fails (after its retries).
    pub alert_channel: Option<String>,
}

/// A config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file has problems.
    #[error("{0}")]
    Invalid(ConfigErrors),
}

impl Classify for LoadError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// Loads a config: the given file, else `./config.toml`, else the shipped default.
pub fn load(path: Option<&Path>) -> Result<Config, LoadError> {
    let default_path = Path::new("config.toml");
    let path = match path {
        Some(path) => path,
        None if default_path.exists() => default_path,
        None => return parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME, Path::new(".")),
    };
    let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|err| {
        // Where the first byte that is not UTF-8 sits, like every other config problem.
        let valid = err.utf8_error().valid_up_to();
        let bytes = err.as_bytes();
        let before = String::from_utf8_lossy(&bytes[..valid]);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        LoadError::Invalid(ConfigErrors(vec![Diagnostic {
            file: path.display().to_string(),
            line,
            column,
            key: String::new(),
            message: format!(
                "the file is not UTF-8 text (byte 0x{:02x})",
                bytes.get(valid).copied().unwrap_or(0)
            ),
            help: Some("save it as UTF-8".into()),
        }]))
    })?;
    let base_dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    parse(&text, &path.display().to_string(), base_dir)
}

/// Parses and validates a config text. `name` is shown in diagnostics; relative paths are
/// resolved against `base_dir`.
pub fn parse(text: &str, name: &str, base_dir: &Path) -> Result<Config, LoadError> {
    let source = SourceText::new(name, text);
    let mut d = Diagnostics::new(&source);
    let root = match toml_span::parse(&source.text) {
        Ok(root) => root,
        Err(err) => {
            let at = err.span.start;
            d.report(at, "", format!("invalid TOML: {err}"), None);
            return Err(LoadError::Invalid(ConfigErrors(d.into_vec())));
        }
    };
    let builtin = name == DEFAULT_CONFIG_NAME;
    let config = sections::validate(root, base_dir, builtin, &mut d);
    match config {
        Some(config) if d.is_empty() => Ok(config),
        _ => Err(LoadError::Invalid(ConfigErrors(d.into_vec()))),
    }
}

impl Config {
    /// Every secret reference the config needs resolved: none when the sandbox supplies
    /// the credentials.
    pub fn secret_refs(&self) -> Vec<&SecretRef> {
        // The status server's token is needed whatever the services are.
        let server = self.server.token.iter();
        if self.sandbox.enabled {
            return server.collect();
        }
        let sources = self.sources.services.values();
        let destinations = self.destinations.services.values();
        sources
            .chain(destinations)
            .flat_map(|service| service.secrets.values())
            .chain(server)
            .collect()
    }

    /// Secrets whose environment variables are not set, as diagnostics.
    pub fn environment_problems(&self, env: &dyn Environment) -> Vec<Diagnostic> {
        self.secret_refs()
            .into_iter()
            .filter_map(|secret| secret.resolve(env).err().map(|e| (secret, e)))
            .map(|(secret, err)| Diagnostic {
                file: secret.file.clone(),
                line: secret.line,
                column: secret.column,
                key: secret.key.clone(),
                message: err.to_string(),
                help: Some(format!(
                    "export {}=... before starting mailroom",
                    secret.var
                )),
            })
            .collect()
    }

    /// What happens to new fields from `source` (its `schema` setting).
    pub fn schema_policy(&self, source: SourceKind) -> crate::normalize::SchemaPolicy {
        self.sources
            .schema_policies
            .get(&source)
            .copied()
            .unwrap_or_default()
    }

    /// Every configured service's section, sources and destinations alike.
    pub fn service_sections(&self) -> BTreeMap<crate::services::ServiceKind, ServiceConfig> {
        let sources = self.sources.services.iter().map(|(k, s)| (k.service(), s));
        let destinations = self
            .destinations
            .services
            .iter()
            .map(|(k, s)| (k.service(), s));
        sources
            .chain(destinations)
            .map(|(kind, section)| (kind, section.clone()))
            .collect()
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.iter().find(|job| job.name == name)
    }

    /// The local warehouse's folder, if the warehouse is local.
    pub fn local_warehouse_dir(&self) -> Option<PathBuf> {
        match &self.warehouse {
            WarehouseConfig::Local { path } => Some(self.data_dir.join(path)),
            WarehouseConfig::BigQuery { .. } => None,
        }
    }

    /// Where `state.db` lives.
    pub fn state_path(&self) -> PathBuf {
        self.data_dir.join("state.db")
    }
}

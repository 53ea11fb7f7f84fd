//! Sources: the APIs mailroom extracts from, each a module holding its endpoints, its
//! streams' table declarations and its field mapping — nothing else. Timeouts, retries,
//! rate budgets, auth and pagination live in [`crate::http`]; decoding in
//! [`crate::normalize`]; the extract loop in [`crate::extract`].
//!
//! A [`Source`] names its streams ([`Stream`]: the table, how it is incremental) and
//! fetches a stream's pages for a [`Window`] into a bounded channel.

pub mod campaign_metrics;
pub mod dotdigital;
pub mod iterable;
pub mod shopify;
pub mod smartrmail;
pub mod smile;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use url::Url;

use crate::config::secret::MissingSecret;
use crate::config::{Config, Environment, Secret, SourceKind};
use crate::error::{Classify, ErrorKind};
use crate::http::fetch::PageError;
use crate::http::page::Page;
use crate::http::retry::RetryPolicy;
use crate::http::{Auth, HttpClient, HttpError, Service};
use crate::normalize::TableSchema;
use crate::sandbox::CREDENTIAL;

/// How a stream picks up where it left off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incremental {
    /// Every run reads everything (small lists; replaced or merged).
    Full,
    /// Runs read what changed since the greatest value of the table's cursor column,
    /// minus `overlap` (for sources whose change times move without visible edits).
    Since {
        /// How far before the cursor each run starts again.
        overlap: Duration,
    },
    /// One snapshot per UTC day of the run's scheduled time; later runs that day do nothing.
    Daily,
    /// Runs read what changed since the previous run's scheduled time (sources that can
    /// list "changed since" but whose records carry no change time, like Dotdigital's
    /// campaigns with activity).
    SinceLastRun,
}

/// One extractable stream.
#[derive(Debug, Clone)]
pub struct Stream {
    /// The stream's name in config (`customers`).
    pub name: &'static str,
    /// Where it lands.
    pub table: TableSchema,
    /// How it is incremental.
    pub incremental: Incremental,
}

/// The time range a fetch covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Records changed at or after this time; everything when `None`.
    pub since: Option<DateTime<Utc>>,
    /// Records changed before this time, for sources that can filter so (backfills).
    pub until: Option<DateTime<Utc>>,
    /// The run's scheduled time.
    pub run_at: DateTime<Utc>,
}

/// Why a source could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Paging failed.
    #[error(transparent)]
    Page(#[from] PageError),
    /// A single call failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// A credential's environment variable is not set.
    #[error("{0}")]
    Secret(#[from] MissingSecret),
    /// The source is not configured, or a setting is missing.
    #[error("{0}")]
    Config(String),
    /// The service answered something the contract does not allow.
    #[error("{service}: {message}")]
    Contract {
        /// The service.
        service: &'static str,
        /// What was wrong.
        message: String,
    },
}

impl Classify for SourceError {
    fn kind(&self) -> ErrorKind {
        match self {
            SourceError::Page(err) => err.kind(),
            SourceError::Http(err) => err.kind(),
            SourceError::Secret(_) | SourceError::Config(_) => ErrorKind::Config,
            SourceError::Contract { .. } => ErrorKind::Transient,
        }
    }
}

/// Where fetched pages go.
pub type PageSender = mpsc::Sender<Page>;

/// An API mailroom extracts from.
pub trait Source: Clone + Send + Sync + 'static {
    /// The source's name in config.
    fn name(&self) -> &'static str;

    /// Every stream it offers.
    fn streams(&self) -> Vec<Stream>;

    /// Fetches `stream`'s records in `window` into `pages`.
    fn fetch(
        &self,
        stream: &str,
        window: Window,
        pages: PageSender,
    ) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// The stream named `name`.
    fn stream(&self, name: &str) -> Option<Stream> {
        self.streams().into_iter().find(|s| s.name == name)
    }
}

/// Any configured source.
#[derive(Debug, Clone)]
pub enum AnySource {
    /// Smile.io.
    Smile(smile::Smile),
    /// Shopify.
    Shopify(shopify::Shopify),
    /// SmartrMail.
    SmartrMail(smartrmail::SmartrMail),
    /// Iterable.
    Iterable(iterable::Iterable),
    /// Dotdigital.
    Dotdigital(dotdigital::Dotdigital),
}

impl Source for AnySource {
    fn name(&self) -> &'static str {
        match self {
            AnySource::Smile(s) => s.name(),
            AnySource::Shopify(s) => s.name(),
            AnySource::SmartrMail(s) => s.name(),
            AnySource::Iterable(s) => s.name(),
            AnySource::Dotdigital(s) => s.name(),
        }
    }

    fn streams(&self) -> Vec<Stream> {
        match self {
            AnySource::Smile(s) => s.streams(),
            AnySource::Shopify(s) => s.streams(),
            AnySource::SmartrMail(s) => s.streams(),
            AnySource::Iterable(s) => s.streams(),
            AnySource::Dotdigital(s) => s.streams(),
        }
    }

    async fn fetch(
        &self,
        stream: &str,
        window: Window,
        pages: PageSender,
    ) -> Result<(), SourceError> {
        match self {
            AnySource::Smile(s) => s.fetch(stream, window, pages).await,
            AnySource::Shopify(s) => s.fetch(stream, window, pages).await,
            AnySource::SmartrMail(s) => s.fetch(stream, window, pages).await,
            AnySource::Iterable(s) => s.fetch(stream, window, pages).await,
            AnySource::Dotdigital(s) => s.fetch(stream, window, pages).await,
        }
    }
}

/// What a source needs to reach its API.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The shared HTTP client.
    pub client: HttpClient,
    /// The service: base URL, auth, retries, budget.
    pub service: Service,
}

/// Builds the source `kind` from the config: its real API, or the sandbox's copy of it when
/// `sandbox` (the sandbox's base URL) is given. Calls are retried per `retry`.
pub fn build(
    kind: SourceKind,
    config: &Config,
    sandbox: Option<&str>,
    env: &dyn Environment,
    client: &HttpClient,
    retry: RetryPolicy,
) -> Result<AnySource, SourceError> {
    let section = config.sources.services.get(&kind).ok_or_else(|| {
        SourceError::Config(format!(
            "source {} is not configured; add a [sources.{}] section",
            kind.name(),
            kind.name()
        ))
    })?;
    let secret = |key: &str| -> Result<Secret, SourceError> {
        if sandbox.is_some() {
            return Ok(Secret::new(CREDENTIAL));
        }
        match section.secrets.get(key) {
            Some(reference) => Ok(reference.resolve(env)?),
            None => Err(SourceError::Config(format!(
                "sources.{}.{key} is not set",
                kind.name()
            ))),
        }
    };
    let base_url = match sandbox {
        Some(base) => sandbox_url(kind, base)?,
        None => section.base_url.clone().ok_or_else(|| {
            SourceError::Config(format!(
                "sources.{}: set base_url or the settings its URL is built from",
                kind.name()
            ))
        })?,
    };
    // Each source sets the rate budgets its API documents.
    let service = |name: &'static str, auth: Auth| Service {
        name,
        base_url: base_url.clone(),
        auth,
        retry,
        budget: None,
    };
    let connection = |service: Service| Connection {
        client: client.clone(),
        service,
    };
    Ok(match kind {
        SourceKind::Smile => AnySource::Smile(smile::Smile::new(
            connection(service("Smile.io", Auth::Bearer(secret("api_key")?))),
            config.sources.smile_requests_per_second,
        )),
        SourceKind::SmartrMail => AnySource::SmartrMail(smartrmail::SmartrMail::new(
            connection(service(
                "SmartrMail",
                Auth::TokenScheme(secret("api_token")?),
            )),
            config.sources.smartrmail_experimental_campaigns,
        )),
        SourceKind::Iterable => AnySource::Iterable(iterable::Iterable::new(connection(service(
            "Iterable",
            Auth::Header {
                name: "Api-Key",
                value: secret("api_key")?,
            },
        )))),
        SourceKind::Dotdigital => {
            let user = match sandbox {
                Some(_) => CREDENTIAL.to_string(),
                None => section
                    .settings
                    .get("username")
                    .cloned()
                    .unwrap_or_default(),
            };
            AnySource::Dotdigital(dotdigital::Dotdigital::new(connection(service(
                "Dotdigital",
                Auth::Basic {
                    user,
                    password: secret("password")?,
                },
            ))))
        }
        SourceKind::Shopify => AnySource::Shopify(shopify::Shopify::new(connection(service(
            "Shopify",
            Auth::Header {
                name: "X-Shopify-Access-Token",
                value: secret("access_token")?,
            },
        )))),
    })
}

/// The sandbox's URL for a source's API.
fn sandbox_url(kind: SourceKind, base: &str) -> Result<Url, SourceError> {
    let path = match kind {
        SourceKind::Smile => "/smile/v1",
        SourceKind::Shopify => "/shopify/admin/api/2026-10",
        SourceKind::SmartrMail => "/smartrmail/api/v1",
        SourceKind::Iterable => "/iterable",
        SourceKind::Dotdigital => "/dotdigital",
    };
    Url::parse(&format!("{}{path}", base.trim_end_matches('/')))
        .map_err(|e| SourceError::Config(format!("sandbox URL {base}: {e}")))
}

//! Sources: the APIs mailroom extracts from, each a module holding its endpoints, its
//! streams' table declarations and its field mapping — nothing else. Timeouts, retries,
//! auth and pagination live in [`crate::http`]; where each API is and its rate budgets in
//! [`crate::services`]; decoding in
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

use crate::config::SourceKind;
use crate::error::{Classify, ErrorKind};
use crate::http::HttpError;
use crate::http::fetch::PageError;
use crate::http::page::Page;
use crate::normalize::TableSchema;
pub use crate::services::Connection;
use crate::services::{ServiceError, Services};

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
    /// The source's service is not configured, or a credential or setting is missing.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A stream or setting the source cannot serve.
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
            SourceError::Service(err) => err.kind(),
            SourceError::Config(_) => ErrorKind::Config,
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

/// Builds the source `kind` over its connection from `services` (the real API, or what the
/// overrides put in its place).
pub fn build(kind: SourceKind, services: &Services) -> Result<AnySource, SourceError> {
    let connection = services.connection(kind.service())?;
    Ok(match kind {
        SourceKind::Smile => AnySource::Smile(smile::Smile::new(connection)),
        SourceKind::SmartrMail => AnySource::SmartrMail(smartrmail::SmartrMail::new(connection)),
        SourceKind::Iterable => AnySource::Iterable(iterable::Iterable::new(connection)),
        SourceKind::Dotdigital => AnySource::Dotdigital(dotdigital::Dotdigital::new(connection)),
        SourceKind::Shopify => AnySource::Shopify(shopify::Shopify::new(connection)),
    })
}

//! One home per external service. [`specs`] describes each one as data (config section,
//! real base URL, auth scheme, secrets and settings, documented rate budgets);
//! [`Services`] turns a config plus [`Overrides`] into one [`Connection`] per credential,
//! built once and shared, so the source that reads an account and the step that writes to
//! it wait on the same budget.
//!
//! [`Overrides`] are plain values — a base URL and a credential per service, a Google key
//! and project — that replace what the config says. The command layer fills them from a
//! sandbox; nothing here knows where they came from.

pub mod specs;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use url::Url;

use crate::error::{Classify, ErrorKind};
use crate::http::google_auth::{GoogleAuthError, ServiceAccountKey};
use crate::http::{Auth, HttpClient, RateBudget, RetryPolicy, Service};
use crate::secret::{Environment, MissingSecret, Secret, SecretRef};
pub use specs::{AuthScheme, BudgetSpec, OptionSpec, Per, REQUESTS, Section, ServiceSpec};

/// Every external service mailroom talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceKind {
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
    /// Google Sheets.
    Sheets,
    /// Slack.
    Slack,
    /// Google BigQuery.
    BigQuery,
}

impl ServiceKind {
    /// What mailroom knows about the service.
    pub fn spec(self) -> &'static ServiceSpec {
        // Every kind has exactly one spec (a unit test checks it); the fallback is never
        // taken.
        specs::SPECS
            .iter()
            .find(|spec| spec.kind == self)
            .unwrap_or(&specs::SPECS[0])
    }

    /// Its name in config and in a simulator's list of services.
    pub fn key(self) -> &'static str {
        self.spec().key
    }

    /// The service whose config name is `key`.
    pub fn from_key(key: &str) -> Option<Self> {
        specs::SPECS
            .iter()
            .find(|spec| spec.key == key)
            .map(|spec| spec.kind)
    }
}

/// One external service's section: endpoint, credentials and settings, as its
/// [`ServiceSpec`] declares them; `config` reads it from `[sources.KEY]` or
/// `[destinations.KEY]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServiceConfig {
    /// Base URL of the real API: `base_url` if set, else the service's own. `None` only when
    /// the sandbox is enabled and the real URL cannot be derived (Shopify without `shop`).
    pub base_url: Option<Url>,
    /// Credentials by role (`api_key`, `password`, ...), as environment references.
    pub secrets: BTreeMap<&'static str, SecretRef>,
    /// Non-secret settings by name (`shop`, `username`, `spreadsheet_id`, ...).
    pub settings: BTreeMap<&'static str, String>,
    /// Typed settings by name (`requests_per_second`, `experimental_campaigns`), defaults
    /// filled in.
    pub options: BTreeMap<&'static str, OptionValue>,
}

/// The value of a typed section key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionValue {
    /// A whole number.
    Integer(i64),
    /// true or false.
    Flag(bool),
}

impl ServiceConfig {
    /// A whole-number option, if the service has it.
    pub fn integer(&self, key: &str) -> Option<i64> {
        match self.options.get(key) {
            Some(OptionValue::Integer(n)) => Some(*n),
            _ => None,
        }
    }

    /// A flag option; false when the service has no such option.
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.options.get(key), Some(OptionValue::Flag(true)))
    }
}

/// Where one service is reached instead of what the config says.
#[derive(Debug, Clone)]
pub struct ServiceOverride {
    /// The API's base URL.
    pub base_url: Url,
    /// Used for every secret the service's section would hold, and as Basic auth's user.
    pub credential: Secret,
}

/// A Google service-account key used when the config names no key file.
#[derive(Debug, Clone)]
pub struct GoogleOverride {
    /// The key file's JSON.
    pub key_json: String,
    /// The project BigQuery runs in (the key's own).
    pub project: String,
}

/// Settings that replace the config's, per service.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Base URL and credential per service.
    pub services: BTreeMap<ServiceKind, ServiceOverride>,
    /// The Google key and project.
    pub google: Option<GoogleOverride>,
}

impl Overrides {
    /// Every service named in `endpoints` (config key, base URL; unknown keys are
    /// skipped) reached at that URL with `credential`.
    pub fn from_endpoints<'a>(
        endpoints: impl IntoIterator<Item = (&'a str, &'a str)>,
        credential: &str,
    ) -> Result<Self, url::ParseError> {
        let mut overrides = Overrides::default();
        for (key, base_url) in endpoints {
            if let Some(kind) = ServiceKind::from_key(key) {
                let over = ServiceOverride {
                    base_url: Url::parse(base_url)?,
                    credential: Secret::new(credential),
                };
                overrides.services.insert(kind, over);
            }
        }
        Ok(overrides)
    }
}

/// Why a service could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The config has no section for it.
    #[error("{name} is not configured; add a [{section}] section")]
    NotConfigured {
        /// The service.
        name: &'static str,
        /// The section to add.
        section: String,
    },
    /// A credential's environment variable is not set.
    #[error(transparent)]
    Secret(#[from] MissingSecret),
    /// A key the service needs is not set.
    #[error("{section}.{key} is not set")]
    MissingKey {
        /// The section.
        section: String,
        /// The key.
        key: &'static str,
    },
    /// The Google key could not be read.
    #[error(transparent)]
    Google(#[from] GoogleAuthError),
    /// The base URL cannot be used.
    #[error("{name} base URL {url}: {message}")]
    BaseUrl {
        /// The service.
        name: &'static str,
        /// The URL.
        url: String,
        /// What is wrong.
        message: String,
    },
}

impl Classify for ServiceError {
    fn kind(&self) -> ErrorKind {
        match self {
            ServiceError::Google(err) => err.kind(),
            _ => ErrorKind::Config,
        }
    }
}

/// One credential's way to a service: the shared client, the service (base URL, auth,
/// retries, the budget every call waits on) and the credential's other named budgets.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The shared HTTP client.
    pub client: HttpClient,
    /// The service, with its `requests` budget if it has one.
    pub service: Service,
    budgets: Arc<BTreeMap<&'static str, Arc<RateBudget>>>,
    section: ServiceConfig,
}

impl Connection {
    /// The service with the named budget instead of the `requests` one, for calls with a
    /// limit of their own (Iterable's metrics, Dotdigital's enrolments). Every connection
    /// to the same credential shares the same budget objects.
    pub fn with_budget(&self, name: &str) -> Service {
        let mut service = self.service.clone();
        service.budget = self.budgets.get(name).cloned();
        service
    }

    /// A flag option of the service's section (its default when not set).
    pub fn flag(&self, key: &str) -> bool {
        self.section.flag(key)
    }

    /// A plain setting of the service's section.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.section.settings.get(key).map(String::as_str)
    }
}

/// Every configured service, each built once per process from the config and the
/// overrides.
pub struct Services {
    client: HttpClient,
    retry: RetryPolicy,
    sections: BTreeMap<ServiceKind, ServiceConfig>,
    overrides: Overrides,
    env: Box<dyn Environment + Send + Sync>,
    built: Mutex<HashMap<ServiceKind, Connection>>,
}

impl Services {
    /// The services configured by `sections` (`Config::service_sections`), reached
    /// through `client` with calls retried per `retry`; `overrides` replace base URLs,
    /// credentials and the Google key; secrets are read from `env` when a service is first
    /// used.
    pub fn new(
        sections: BTreeMap<ServiceKind, ServiceConfig>,
        overrides: Overrides,
        env: Box<dyn Environment + Send + Sync>,
        client: HttpClient,
        retry: RetryPolicy,
    ) -> Self {
        Services {
            client,
            retry,
            sections,
            overrides,
            env,
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The shared HTTP client.
    pub fn client(&self) -> &HttpClient {
        &self.client
    }

    /// The retry policy calls use.
    pub fn retry(&self) -> RetryPolicy {
        self.retry
    }

    /// The connection to `kind`, built on first use and shared afterwards.
    pub fn connection(&self, kind: ServiceKind) -> Result<Connection, ServiceError> {
        let mut built = self
            .built
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(connection) = built.get(&kind) {
            return Ok(connection.clone());
        }
        let connection = self.build(kind)?;
        built.insert(kind, connection.clone());
        Ok(connection)
    }

    /// The API root of `kind`: the override's, else its section's `base_url` (which config
    /// fills from the service's own when not set), else the service's own.
    pub fn base_url(&self, kind: ServiceKind) -> Result<Url, ServiceError> {
        if let Some(over) = self.overrides.services.get(&kind) {
            return Ok(over.base_url.clone());
        }
        let spec = kind.spec();
        if let Some(url) = self.sections.get(&kind).and_then(|s| s.base_url.clone()) {
            return Ok(url);
        }
        if spec.default_base_url.contains('{') {
            // Built from settings the section does not have (Shopify's `shop`).
            return Err(ServiceError::MissingKey {
                section: section_name(spec),
                key: "base_url",
            });
        }
        Url::parse(spec.default_base_url).map_err(|e| ServiceError::BaseUrl {
            name: spec.name,
            url: spec.default_base_url.to_string(),
            message: e.to_string(),
        })
    }

    /// The Google service-account key and the project to use: the configured key file
    /// (the section key `setting` names it) with the configured project, else the
    /// override's key and project.
    pub fn google_key(
        &self,
        key_file: Option<&Path>,
        project: &str,
        setting: &str,
    ) -> Result<(ServiceAccountKey, String), ServiceError> {
        match (key_file, &self.overrides.google) {
            (Some(path), _) => Ok((ServiceAccountKey::read(path)?, project.to_string())),
            (None, Some(google)) => Ok((
                ServiceAccountKey::parse("the overriding service-account key", &google.key_json)?,
                google.project.clone(),
            )),
            (None, None) => Err(GoogleAuthError::KeyFile {
                file: setting.to_string(),
                message: "not set; Google needs a service-account key file".into(),
            }
            .into()),
        }
    }

    /// A secret of `kind`'s section other than its auth credential (Slack's
    /// `webhook_url`), read from the environment now; `None` when the section does not
    /// set it.
    pub fn optional_secret(
        &self,
        kind: ServiceKind,
        key: &str,
    ) -> Result<Option<Secret>, ServiceError> {
        match self.sections.get(&kind).and_then(|s| s.secrets.get(key)) {
            Some(reference) => Ok(Some(reference.resolve(self.env.as_ref())?)),
            None => Ok(None),
        }
    }

    fn build(&self, kind: ServiceKind) -> Result<Connection, ServiceError> {
        let spec = kind.spec();
        let section_name = section_name(spec);
        let section = match (self.sections.get(&kind), spec.section) {
            (Some(section), _) => section.clone(),
            (None, Section::Warehouse) => ServiceConfig::default(),
            (None, _) => {
                return Err(ServiceError::NotConfigured {
                    name: spec.name,
                    section: section_name,
                });
            }
        };
        let over = self.overrides.services.get(&kind);
        let secret = |key: &'static str| -> Result<Secret, ServiceError> {
            if let Some(over) = over {
                return Ok(over.credential.clone());
            }
            match section.secrets.get(key) {
                Some(reference) => Ok(reference.resolve(self.env.as_ref())?),
                None => Err(ServiceError::MissingKey {
                    section: section_name.clone(),
                    key,
                }),
            }
        };
        let auth = match spec.auth {
            AuthScheme::Bearer { secret: key } if spec.optional_secrets.contains(&key) => {
                // An optional token (Slack's bot token, beside its webhook) may be absent.
                match secret(key) {
                    Ok(token) => Auth::Bearer(token),
                    Err(ServiceError::MissingKey { .. }) => Auth::None,
                    Err(err) => return Err(err),
                }
            }
            AuthScheme::Bearer { secret: key } => Auth::Bearer(secret(key)?),
            AuthScheme::TokenScheme { secret: key } => Auth::TokenScheme(secret(key)?),
            AuthScheme::Header { name, secret: key } => Auth::Header {
                name,
                value: secret(key)?,
            },
            AuthScheme::Basic { user, password } => Auth::Basic {
                user: match over {
                    Some(over) => over.credential.expose().to_string(),
                    None => section.settings.get(user).cloned().ok_or_else(|| {
                        ServiceError::MissingKey {
                            section: section_name.clone(),
                            key: user,
                        }
                    })?,
                },
                password: secret(password)?,
            },
            // Tokens come from the key file, per request (`http::google_auth`).
            AuthScheme::GoogleServiceAccount => Auth::None,
        };
        let base_url = self.base_url(kind)?;
        let budgets: BTreeMap<&'static str, Arc<RateBudget>> = spec
            .budgets
            .iter()
            .filter_map(|budget| {
                let limit = match budget.setting {
                    Some(key) => section
                        .integer(key)
                        .map_or(budget.limit, |n| u32::try_from(n).unwrap_or(0)),
                    None => budget.limit,
                };
                (limit > 0).then(|| {
                    let rate = match budget.per {
                        Per::Second => RateBudget::per_second(limit),
                        Per::Minute => RateBudget::per_minute(limit),
                        Per::Hour => RateBudget::per_hour(limit),
                    };
                    (budget.name, rate)
                })
            })
            .collect();
        let service = Service {
            name: spec.name,
            base_url,
            auth,
            retry: self.retry,
            budget: budgets.get(REQUESTS).cloned(),
        };
        Ok(Connection {
            client: self.client.clone(),
            service,
            budgets: Arc::new(budgets),
            section,
        })
    }
}

/// Where a service's settings are written in `config.toml`.
fn section_name(spec: &ServiceSpec) -> String {
    match spec.section {
        Section::Source => format!("sources.{}", spec.key),
        Section::Destination => format!("destinations.{}", spec.key),
        Section::Warehouse => "warehouse".to_string(),
    }
}

#[cfg(test)]
mod tests;

//! What each external service is, as data: its config section, the real API's base URL,
//! how it authenticates, the secrets and settings its section takes, and the rate budgets
//! its documentation sets for one credential (`api-reference/`). Config validation reads
//! these to check a section; [`super::Services`] reads them to build the one HTTP service
//! per credential that reads and writes share.

use super::ServiceKind;

/// Which part of `config.toml` configures a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// `[sources.KEY]`.
    Source,
    /// `[destinations.KEY]`.
    Destination,
    /// `[warehouse]` (BigQuery).
    Warehouse,
}

/// How a service authenticates, naming the section keys that hold the credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer <secret>`.
    Bearer {
        /// The secret key.
        secret: &'static str,
    },
    /// `Authorization: token <secret>` (SmartrMail).
    TokenScheme {
        /// The secret key.
        secret: &'static str,
    },
    /// A named header carrying the secret.
    Header {
        /// The header.
        name: &'static str,
        /// The secret key.
        secret: &'static str,
    },
    /// HTTP Basic with a user from a setting and a password from a secret.
    Basic {
        /// The setting holding the user name.
        user: &'static str,
        /// The secret key holding the password.
        password: &'static str,
    },
    /// OAuth tokens from a Google service-account key file (JWT bearer grant).
    GoogleServiceAccount,
}

/// How often a budget refills.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// Calls per second.
    Second,
    /// Calls per minute.
    Minute,
    /// Calls per hour.
    Hour,
}

/// A documented rate limit for one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSpec {
    /// The budget's name: `requests` applies to every call; others to the calls that ask
    /// for them by name (Iterable's `metrics`).
    pub name: &'static str,
    /// Calls allowed per period.
    pub limit: u32,
    /// The period.
    pub per: Per,
    /// A section key that may change the limit (`0` turns the budget off).
    pub setting: Option<&'static str>,
}

/// The budget every call of a service waits on.
pub const REQUESTS: &str = "requests";

/// A typed, optional section key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionSpec {
    /// A whole number in a range, with its default.
    Integer {
        /// The key.
        key: &'static str,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
        /// Value when not set.
        default: i64,
    },
    /// true or false, with its default.
    Flag {
        /// The key.
        key: &'static str,
        /// Value when not set.
        default: bool,
    },
}

impl OptionSpec {
    /// The option's key.
    pub fn key(&self) -> &'static str {
        match self {
            OptionSpec::Integer { key, .. } | OptionSpec::Flag { key, .. } => key,
        }
    }
}

/// Everything mailroom knows about one external service.
#[derive(Debug, Clone, Copy)]
pub struct ServiceSpec {
    /// The service.
    pub kind: ServiceKind,
    /// Its name in config (`[sources.smile]`) and in a simulator's list of services.
    pub key: &'static str,
    /// Its name in messages and logs.
    pub name: &'static str,
    /// Where its section is.
    pub section: Section,
    /// The real API's base URL; `{setting}` placeholders are filled from the section.
    pub default_base_url: &'static str,
    /// How it authenticates.
    pub auth: AuthScheme,
    /// Secret keys that must be set (unless credentials are overridden).
    pub required_secrets: &'static [&'static str],
    /// Secret keys that may be set.
    pub optional_secrets: &'static [&'static str],
    /// Plain keys that must be set (unless credentials are overridden).
    pub required_settings: &'static [&'static str],
    /// Plain keys that may be set, with their defaults.
    pub optional_settings: &'static [(&'static str, &'static str)],
    /// Typed keys.
    pub options: &'static [OptionSpec],
    /// The documented rate budgets of one credential.
    pub budgets: &'static [BudgetSpec],
}

/// Every external service.
pub const SPECS: [ServiceSpec; 8] = [
    ServiceSpec {
        kind: ServiceKind::Smile,
        key: "smile",
        name: "Smile.io",
        section: Section::Source,
        default_base_url: "https://api.smile.io/v1",
        auth: AuthScheme::Bearer { secret: "api_key" },
        required_secrets: &["api_key"],
        optional_secrets: &[],
        required_settings: &[],
        optional_settings: &[],
        options: &[OptionSpec::Integer {
            key: "requests_per_second",
            min: 0,
            max: 10_000,
            default: 10,
        }],
        // smile.md: 10 requests per second per API key.
        budgets: &[BudgetSpec {
            name: REQUESTS,
            limit: 10,
            per: Per::Second,
            setting: Some("requests_per_second"),
        }],
    },
    ServiceSpec {
        kind: ServiceKind::Shopify,
        key: "shopify",
        name: "Shopify",
        section: Section::Source,
        default_base_url: "https://{shop}/admin/api/{api_version}",
        auth: AuthScheme::Header {
            name: "X-Shopify-Access-Token",
            secret: "access_token",
        },
        required_secrets: &["access_token"],
        optional_secrets: &[],
        required_settings: &["shop"],
        optional_settings: &[("api_version", "2026-10")],
        options: &[],
        // Shopify limits by query cost, not calls: the GraphQL paginator paces on the
        // cost bucket each answer reports (shopify-graphql.md).
        budgets: &[],
    },
    ServiceSpec {
        kind: ServiceKind::SmartrMail,
        key: "smartrmail",
        name: "SmartrMail",
        section: Section::Source,
        default_base_url: "https://go.smartrmail.com/api/v1",
        auth: AuthScheme::TokenScheme {
            secret: "api_token",
        },
        required_secrets: &["api_token"],
        // smartrmail.md §9: a custom-event webhook's URL authorises by itself.
        optional_secrets: &["custom_event_webhook"],
        required_settings: &[],
        optional_settings: &[],
        options: &[OptionSpec::Flag {
            key: "experimental_campaigns",
            default: false,
        }],
        budgets: &[],
    },
    ServiceSpec {
        kind: ServiceKind::Iterable,
        key: "iterable",
        name: "Iterable",
        section: Section::Source,
        default_base_url: "https://api.iterable.com",
        auth: AuthScheme::Header {
            name: "Api-Key",
            secret: "api_key",
        },
        required_secrets: &["api_key"],
        optional_secrets: &[],
        required_settings: &[],
        optional_settings: &[],
        options: &[],
        // iterable.md: campaign reads 100 per second, campaign metrics 10 per minute.
        budgets: &[
            BudgetSpec {
                name: REQUESTS,
                limit: 100,
                per: Per::Second,
                setting: None,
            },
            BudgetSpec {
                name: "metrics",
                limit: 10,
                per: Per::Minute,
                setting: None,
            },
        ],
    },
    ServiceSpec {
        kind: ServiceKind::Dotdigital,
        key: "dotdigital",
        name: "Dotdigital",
        section: Section::Source,
        default_base_url: "https://r1-api.dotdigital.com",
        auth: AuthScheme::Basic {
            user: "username",
            password: "password",
        },
        required_secrets: &["password"],
        optional_secrets: &[],
        required_settings: &["username"],
        optional_settings: &[],
        options: &[],
        // dotdigital.md §10: call-rate tiers are per account package (429 when exceeded);
        // program enrolments have their own allowance of 20 per hour.
        budgets: &[BudgetSpec {
            name: "enrolments",
            limit: 20,
            per: Per::Hour,
            setting: None,
        }],
    },
    ServiceSpec {
        kind: ServiceKind::Sheets,
        key: "sheets",
        name: "Google Sheets",
        section: Section::Destination,
        default_base_url: "https://sheets.googleapis.com",
        auth: AuthScheme::GoogleServiceAccount,
        required_secrets: &[],
        optional_secrets: &[],
        required_settings: &["spreadsheet_id", "credentials_file"],
        optional_settings: &[],
        options: &[],
        // sheets.md §7: 60 reads and 60 writes per minute per user (the service account).
        budgets: &[
            BudgetSpec {
                name: "reads",
                limit: 60,
                per: Per::Minute,
                setting: None,
            },
            BudgetSpec {
                name: "writes",
                limit: 60,
                per: Per::Minute,
                setting: None,
            },
        ],
    },
    ServiceSpec {
        kind: ServiceKind::Slack,
        key: "slack",
        name: "Slack",
        section: Section::Destination,
        default_base_url: "https://slack.com/api",
        auth: AuthScheme::Bearer {
            secret: "bot_token",
        },
        required_secrets: &[],
        optional_secrets: &["bot_token", "webhook_url"],
        required_settings: &[],
        optional_settings: &[],
        options: &[],
        // slack.md §5: chat.postMessage about 1 per second per channel; the file upload
        // methods are Tier 4 (100+ per minute); conversations.history Tier 3 (50+);
        // conversations.list Tier 2 (20+).
        budgets: &[
            BudgetSpec {
                name: "channels",
                limit: 20,
                per: Per::Minute,
                setting: None,
            },
            BudgetSpec {
                name: "history",
                limit: 50,
                per: Per::Minute,
                setting: None,
            },
            BudgetSpec {
                name: "post_message",
                limit: 1,
                per: Per::Second,
                setting: None,
            },
            BudgetSpec {
                name: "files",
                limit: 100,
                per: Per::Minute,
                setting: None,
            },
        ],
    },
    ServiceSpec {
        kind: ServiceKind::BigQuery,
        key: "bigquery",
        name: "BigQuery",
        section: Section::Warehouse,
        default_base_url: "https://bigquery.googleapis.com",
        auth: AuthScheme::GoogleServiceAccount,
        required_secrets: &[],
        optional_secrets: &[],
        required_settings: &[],
        optional_settings: &[],
        options: &[],
        budgets: &[],
    },
];

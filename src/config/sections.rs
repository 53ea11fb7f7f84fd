//! Validation of the top-level sections: data directory, warehouse, sandbox, scheduler,
//! sources and destinations. Jobs are in `jobs.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_span::Value;
use url::Url;

use super::diagnostic::Diagnostics;
use super::jobs::{self, JobContext};
use super::reader::TableReader;
use super::secret::SecretRef;
use super::{
    Config, DestinationKind, DestinationsConfig, OptionValue, SandboxAnchor, SandboxConfig,
    SchedulerConfig, ServerConfig, ServiceConfig, SourceKind, SourcesConfig, WarehouseConfig,
};
use crate::normalize::SchemaPolicy;
use crate::services::{OptionSpec, ServiceSpec};

/// Validates a parsed config document, reporting every problem into `d`.
pub(super) fn validate(
    root: Value<'_>,
    base_dir: &Path,
    builtin: bool,
    d: &mut Diagnostics<'_>,
) -> Option<Config> {
    let mut top = TableReader::new(root, String::new(), d)?;
    let data_dir = top
        .string(d, "data_dir")
        .map(|dir| base_dir.join(dir.value))
        .unwrap_or_else(|| base_dir.join("data"));
    let sandbox = read_sandbox(top.table(d, "sandbox"), base_dir, d);
    let warehouse = read_warehouse(top.table(d, "warehouse"), base_dir, &sandbox, d);
    let scheduler = read_scheduler(top.table(d, "scheduler"), d);
    let server = read_server(top.table(d, "server"), d);
    let sources = read_sources(top.table(d, "sources"), &sandbox, d);
    let destinations = read_destinations(top.table(d, "destinations"), &sandbox, d);
    let context = JobContext {
        sources: &sources,
        destinations: &destinations,
        base_dir,
        builtin,
    };
    let jobs = jobs::read_jobs(top.array(d, "jobs"), &context, d);
    top.finish(d);
    Some(Config {
        base_dir: base_dir.to_path_buf(),
        data_dir,
        warehouse,
        sandbox,
        scheduler,
        server,
        sources,
        destinations,
        jobs,
    })
}

fn read_sandbox(
    table: Option<TableReader<'_>>,
    base_dir: &Path,
    d: &mut Diagnostics<'_>,
) -> SandboxConfig {
    let mut sandbox = SandboxConfig {
        enabled: false,
        url: None,
        seed: 42,
        customers: 2_000,
        faults: None,
        anchor: SandboxAnchor::Today,
    };
    let Some(mut t) = table else {
        return sandbox;
    };
    sandbox.enabled = t.boolean(d, "enabled").unwrap_or(false);
    sandbox.url = read_url(&mut t, d, "url");
    if let Some(seed) = t.integer(d, "seed", 0..=i64::MAX) {
        sandbox.seed = seed.value as u64;
    }
    if let Some(customers) = t.integer(d, "customers", 1..=10_000_000) {
        sandbox.customers = customers.value as u32;
    }
    if let Some(anchor) = t.string(d, "anchor") {
        match anchor.value.as_str() {
            "today" => sandbox.anchor = SandboxAnchor::Today,
            text => match chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                Ok(day) => sandbox.anchor = SandboxAnchor::Date(day),
                Err(_) => d.report(
                    anchor.span.start,
                    t.key_path("anchor"),
                    format!("\"{text}\" is neither \"today\" nor a date"),
                    Some("write \"today\" or a date such as \"2026-11-01\"".into()),
                ),
            },
        }
    }
    if let Some(faults) = t.string(d, "faults") {
        let path = base_dir.join(&faults.value);
        if path.is_file() {
            sandbox.faults = Some(path);
        } else {
            d.report(
                faults.span.start,
                t.key_path("faults"),
                format!(
                    "fault plan \"{}\" not found (looked for {})",
                    faults.value,
                    path.display()
                ),
                Some("a JSON array of fault rules; see README, \"The sandbox\"".into()),
            );
        }
    }
    t.finish(d);
    sandbox
}

fn read_warehouse(
    table: Option<TableReader<'_>>,
    base_dir: &Path,
    sandbox: &SandboxConfig,
    d: &mut Diagnostics<'_>,
) -> WarehouseConfig {
    let local_default = WarehouseConfig::Local {
        path: PathBuf::from("warehouse"),
    };
    let Some(mut t) = table else {
        return local_default;
    };
    #[derive(Clone, Copy)]
    enum Kind {
        Local,
        BigQuery,
    }
    if !t.contains("type") {
        t.missing(d, "type", Some("valid choices: `local`, `bigquery`".into()));
    }
    let kind = t.choice(
        d,
        "type",
        &[("local", Kind::Local), ("bigquery", Kind::BigQuery)],
    );
    let warehouse = match kind.map(|k| k.value) {
        Some(Kind::BigQuery) => {
            let project = t.required_string(d, "project");
            if let Some(p) = &project {
                check_name(
                    d,
                    &t.key_path("project"),
                    p,
                    is_gcp_project_id,
                    "6-30 lowercase letters, digits and hyphens, starting with a letter",
                );
            }
            let dataset = t.required_string(d, "dataset");
            if let Some(ds) = &dataset {
                check_name(
                    d,
                    &t.key_path("dataset"),
                    ds,
                    is_bigquery_dataset,
                    "letters, digits and underscores, at most 1024",
                );
            }
            let location = t
                .string(d, "location")
                .map_or_else(|| "US".to_string(), |l| l.value);
            let credentials_file = t
                .string(d, "credentials_file")
                .map(|f| base_dir.join(f.value));
            if credentials_file.is_none() && !sandbox.enabled {
                t.missing(
                    d,
                    "credentials_file",
                    Some("the path of a service-account key file (JSON)".into()),
                );
            }
            WarehouseConfig::BigQuery {
                project: project.map(|p| p.value).unwrap_or_default(),
                dataset: dataset.map(|p| p.value).unwrap_or_default(),
                location,
                credentials_file,
            }
        }
        Some(Kind::Local) => {
            let path = t.string(d, "path").map(|p| PathBuf::from(p.value));
            WarehouseConfig::Local {
                path: path.unwrap_or_else(|| PathBuf::from("warehouse")),
            }
        }
        None => local_default,
    };
    t.finish(d);
    warehouse
}

fn check_name(
    d: &mut Diagnostics<'_>,
    key: &str,
    value: &toml_span::Spanned<String>,
    valid: fn(&str) -> bool,
    rule: &str,
) {
    if !valid(&value.value) {
        d.report(
            value.span.start,
            key,
            format!("\"{}\" is not a valid name", value.value),
            Some(format!("use {rule}")),
        );
    }
}

fn is_gcp_project_id(id: &str) -> bool {
    // Domain-scoped ids ("example.com:project") are legacy but still valid.
    let id = id.rsplit(':').next().unwrap_or(id);
    (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.ends_with('-')
}

fn is_bigquery_dataset(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 1024
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn read_scheduler(table: Option<TableReader<'_>>, d: &mut Diagnostics<'_>) -> SchedulerConfig {
    let mut scheduler = SchedulerConfig {
        shutdown_grace: Duration::from_secs(30),
    };
    if let Some(mut t) = table {
        if let Some(grace) = t.integer(d, "shutdown_grace_secs", 0..=3600) {
            scheduler.shutdown_grace = Duration::from_secs(grace.value as u64);
        }
        t.finish(d);
    }
    scheduler
}

fn read_server(table: Option<TableReader<'_>>, d: &mut Diagnostics<'_>) -> ServerConfig {
    let mut server = ServerConfig::default();
    let Some(mut t) = table else {
        return server;
    };
    if let Some(listen) = t.string(d, "listen") {
        match listen.value.parse::<std::net::SocketAddr>() {
            Ok(addr) => server.listen = addr,
            Err(_) => d.report(
                listen.span.start,
                t.key_path("listen"),
                format!("{:?} is not an address and port", listen.value),
                Some("e.g. \"127.0.0.1:8710\", or \"0.0.0.0:8710\" with a token".into()),
            ),
        }
    }
    if let Some(token) = t.string(d, "token") {
        server.token = SecretRef::parse(&token, t.key_path("token"), d);
    }
    if !server.listen.ip().is_loopback() && server.token.is_none() && !t.contains("token") {
        t.missing(
            d,
            "token",
            Some(format!(
                "the status server listens on {}, beyond this machine: set token = \"${{MAILROOM_SERVER_TOKEN}}\"",
                server.listen
            )),
        );
    }
    t.finish(d);
    server
}

fn read_sources(
    table: Option<TableReader<'_>>,
    sandbox: &SandboxConfig,
    d: &mut Diagnostics<'_>,
) -> SourcesConfig {
    let mut sources = SourcesConfig::default();
    let Some(mut t) = table else {
        return sources;
    };
    for kind in SourceKind::ALL {
        let Some(mut section) = t.table(d, kind.name()) else {
            continue;
        };
        if let Some(policy) = section.choice(
            d,
            "schema",
            &[
                ("fixed", SchemaPolicy::Fixed),
                ("evolve", SchemaPolicy::Evolve),
            ],
        ) {
            sources.schema_policies.insert(kind, policy.value);
        }
        let service = read_service(&mut section, kind.service().spec(), sandbox, d);
        section.finish(d);
        sources.services.insert(kind, service);
    }
    t.finish(d);
    sources
}

fn read_destinations(
    table: Option<TableReader<'_>>,
    sandbox: &SandboxConfig,
    d: &mut Diagnostics<'_>,
) -> DestinationsConfig {
    let mut destinations = DestinationsConfig::default();
    let Some(mut t) = table else {
        return destinations;
    };
    for kind in DestinationKind::ALL {
        let Some(mut section) = t.table(d, kind.name()) else {
            continue;
        };
        let service = read_service(&mut section, kind.service().spec(), sandbox, d);
        if kind == DestinationKind::Slack && service.secrets.is_empty() && !sandbox.enabled {
            section.missing(
                d,
                "bot_token",
                Some("set `bot_token` (a bot token, for messages and files) or `webhook_url` (an incoming webhook)".into()),
            );
        }
        section.finish(d);
        destinations.services.insert(kind, service);
    }
    t.finish(d);
    destinations
}

fn read_service(
    t: &mut TableReader<'_>,
    spec: &ServiceSpec,
    sandbox: &SandboxConfig,
    d: &mut Diagnostics<'_>,
) -> ServiceConfig {
    let mut secrets = BTreeMap::new();
    for (key, required) in spec
        .required_secrets
        .iter()
        .map(|k| (*k, true))
        .chain(spec.optional_secrets.iter().map(|k| (*k, false)))
    {
        match t.string(d, key) {
            Some(value) => {
                if let Some(secret) = SecretRef::parse(&value, t.key_path(key), d) {
                    secrets.insert(key, secret);
                }
            }
            None if required && !sandbox.enabled => t.missing(
                d,
                key,
                Some(format!(
                    "write `{key} = \"${{VAR}}\"` naming an environment variable, or enable [sandbox]"
                )),
            ),
            None => {}
        }
    }
    let mut settings = BTreeMap::new();
    for key in spec.required_settings {
        match t.string(d, key) {
            Some(value) => {
                settings.insert(*key, value.value);
            }
            None if !sandbox.enabled => t.missing(d, key, None),
            None => {}
        }
    }
    for (key, default) in spec.optional_settings {
        let value = t
            .string(d, key)
            .map_or_else(|| default.to_string(), |v| v.value);
        settings.insert(*key, value);
    }
    let mut options = BTreeMap::new();
    for option in spec.options {
        let value = match *option {
            OptionSpec::Integer {
                key,
                min,
                max,
                default,
            } => OptionValue::Integer(t.integer(d, key, min..=max).map_or(default, |v| v.value)),
            OptionSpec::Flag { key, default } => {
                OptionValue::Flag(t.boolean(d, key).unwrap_or(default))
            }
        };
        options.insert(option.key(), value);
    }
    let base_url = read_url(t, d, "base_url").or_else(|| default_url(spec, &settings));
    ServiceConfig {
        base_url,
        secrets,
        settings,
        options,
    }
}

/// The real service's URL, with `{setting}` placeholders filled in; `None` when a
/// placeholder's setting is absent (allowed only under the sandbox).
fn default_url(spec: &ServiceSpec, settings: &BTreeMap<&'static str, String>) -> Option<Url> {
    let mut url = spec.default_base_url.to_string();
    for (key, value) in settings {
        url = url.replace(&format!("{{{key}}}"), value);
    }
    if url.contains('{') {
        return None;
    }
    Url::parse(&url).ok()
}

fn read_url(t: &mut TableReader<'_>, d: &mut Diagnostics<'_>, key: &'static str) -> Option<Url> {
    let value = t.string(d, key)?;
    match Url::parse(&value.value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
        Ok(url) => {
            d.report(
                value.span.start,
                t.key_path(key),
                format!("unsupported URL scheme \"{}\"", url.scheme()),
                Some("use an http:// or https:// URL".into()),
            );
            None
        }
        Err(err) => {
            d.report(
                value.span.start,
                t.key_path(key),
                format!("\"{}\" is not a URL: {err}", value.value),
                Some("for example \"http://127.0.0.1:8080\"".into()),
            );
            None
        }
    }
}

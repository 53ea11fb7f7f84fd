//! The one place mailroom meets its sandbox: `mailroom sandbox` serves it, and commands
//! whose config enables `[sandbox]` start one in-process (or check that the one at
//! `[sandbox] url` answers) and turn it into plain [`Overrides`] — each service's base
//! URL and credential, the Google key and project — for the library, which never learns
//! where they came from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mailroom::config::{Config, DestinationKind, SandboxConfig, Step};
use mailroom::error::ErrorKind;
use mailroom::http::{Auth, Call, HttpClient, RetryPolicy, Service, Timeouts};
use mailroom::services::{GoogleOverride, Overrides};
use mailroom_sandbox::{CREDENTIAL, RunningSandbox, SandboxOptions, faults};

use super::signals::ShutdownSignals;
use super::{Failure, print};

/// A sandbox the command's services are pointed at; it lives as long as this value.
pub struct Simulated {
    /// What replaces the config's services.
    pub overrides: Overrides,
    /// Where it answers, `/_sandbox/state` included.
    pub base_url: String,
    _running: Option<RunningSandbox>,
}

/// Reaches the sandbox `config` asks for: none when `[sandbox]` is disabled, the running
/// one at `[sandbox] url` (checked to answer), else one started in this process on a
/// free port.
pub async fn connect(config: &Config, client: &HttpClient) -> Result<Option<Simulated>, Failure> {
    let sandbox = &config.sandbox;
    if !sandbox.enabled {
        return Ok(None);
    }
    // The sandbox's Google key is generated on first use (an RSA key): only when BigQuery
    // or a Sheets delivery will need it.
    let needs_google = config.local_warehouse_dir().is_none()
        || config.jobs.iter().flat_map(|job| &job.steps).any(|step| {
            matches!(
                step,
                Step::Deliver {
                    to: DestinationKind::Sheets,
                    ..
                }
            )
        });
    let simulated = match &sandbox.url {
        Some(url) => {
            let base_url = url.as_str().trim_end_matches('/').to_string();
            let described = probe(client, &base_url).await?;
            tracing::info!(sandbox = %base_url, "services are simulated by the {described}");
            let key = match needs_google {
                true => Some(fetch_key(client, &base_url).await?),
                false => None,
            };
            Simulated {
                overrides: overrides(&base_url, key)?,
                base_url,
                _running: None,
            }
        }
        None => {
            let running = start(sandbox).await?;
            tracing::info!(sandbox = %running.base_url, "services are simulated by the in-process sandbox at {}", running.base_url);
            let key = needs_google.then(|| running.service_account_key().to_string());
            Simulated {
                overrides: overrides(&running.base_url, key)?,
                base_url: running.base_url.clone(),
                _running: Some(running),
            }
        }
    };
    Ok(Some(simulated))
}

/// Starts an in-process sandbox for `[sandbox]`, with its fault plan.
async fn start(config: &SandboxConfig) -> Result<RunningSandbox, Failure> {
    let mut options = SandboxOptions::new(config.seed, config.customers);
    options.world.anchor = config.anchor.at(chrono::Utc::now());
    if let Some(path) = &config.faults {
        options.faults = read_faults(path)?;
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], 0));
    RunningSandbox::start(addr, options)
        .await
        .map_err(|err| Failure {
            kind: ErrorKind::Transient,
            message: format!("cannot start the in-process sandbox: {err}"),
        })
}

/// Each simulated service's address and the sandbox's credential, as overrides; the
/// Google key (when a service needs one) with its own project.
fn overrides(base_url: &str, google_key: Option<String>) -> Result<Overrides, Failure> {
    let endpoints = mailroom_sandbox::services(base_url);
    let mut overrides = Overrides::from_endpoints(
        endpoints.iter().map(|e| (e.key, e.base_url.as_str())),
        CREDENTIAL,
    )
    .map_err(|e| Failure {
        kind: ErrorKind::Config,
        message: format!("sandbox address {base_url}: {e}"),
    })?;
    if let Some(key_json) = google_key {
        let key: serde_json::Value = serde_json::from_str(&key_json).unwrap_or_default();
        let project = key["project_id"].as_str().unwrap_or_default().to_string();
        overrides.google = Some(GoogleOverride { key_json, project });
    }
    Ok(overrides)
}

/// Why the sandbox at `url` cannot be used.
fn unreachable(url: &str, reason: impl std::fmt::Display) -> Failure {
    Failure {
        kind: ErrorKind::Transient,
        message: format!(
            "cannot reach the sandbox at {url}: {reason}; start one with `mailroom sandbox --listen ADDR`, or fix [sandbox] url / --sandbox-url"
        ),
    }
}

/// A call to the sandbox's own endpoints, retried once.
async fn get(client: &HttpClient, base_url: &str, path: &str) -> Result<String, Failure> {
    let service = Service {
        name: "sandbox",
        base_url: base_url.parse().map_err(|e| unreachable(base_url, e))?,
        auth: Auth::None,
        retry: RetryPolicy {
            max_retries: 1,
            ..RetryPolicy::default()
        },
        budget: None,
    };
    let response = client
        .send(&service, &Call::get(path))
        .await
        .map_err(|e| unreachable(base_url, e.message))?;
    response.text().await.map_err(|e| unreachable(base_url, e))
}

/// Checks that a sandbox answers at `base_url`; describes it.
async fn probe(client: &HttpClient, base_url: &str) -> Result<String, Failure> {
    let quick = HttpClient::new(Timeouts {
        connect: std::time::Duration::from_secs(3),
        request: std::time::Duration::from_secs(10),
    })
    .unwrap_or_else(|_| client.clone());
    let text = get(&quick, base_url, "/_sandbox/state").await?;
    let state: serde_json::Value = serde_json::from_str(&text)
        .map_err(|_| unreachable(base_url, "it did not answer as a mailroom sandbox"))?;
    let world = &state["world"];
    match (world["seed"].as_u64(), world["customers"].as_u64()) {
        (Some(seed), Some(customers)) => Ok(format!(
            "running sandbox at {base_url} (seed {seed}, {customers} customers)"
        )),
        _ => Err(unreachable(
            base_url,
            "it did not answer as a mailroom sandbox",
        )),
    }
}

/// The running sandbox's service-account key file.
async fn fetch_key(client: &HttpClient, base_url: &str) -> Result<String, Failure> {
    get(client, base_url, "/_sandbox/service-account.json").await
}

fn read_faults(path: &Path) -> Result<Vec<faults::FaultRule>, Failure> {
    faults::read_plan(path).map_err(|message| Failure {
        kind: ErrorKind::Config,
        message,
    })
}

/// `mailroom sandbox`'s options: the command line's, else `[sandbox]`'s.
pub fn options(
    config: &Config,
    seed: Option<u64>,
    customers: Option<u32>,
    smile_rate_limit: u32,
    faults: Option<PathBuf>,
    bulk_export_secs: Option<f64>,
) -> Result<SandboxOptions, Failure> {
    let mut options = SandboxOptions::new(
        seed.unwrap_or(config.sandbox.seed),
        customers.unwrap_or(config.sandbox.customers),
    );
    options.smile_rate_limit = (smile_rate_limit > 0).then_some(smile_rate_limit);
    options.world.anchor = config.sandbox.anchor.at(chrono::Utc::now());
    if let Some(path) = faults.as_ref().or(config.sandbox.faults.as_ref()) {
        options.faults = read_faults(path)?;
    }
    if let Some(secs) = bulk_export_secs {
        options.shopify_bulk_duration = std::time::Duration::from_secs_f64(secs);
    }
    Ok(options)
}

/// `mailroom sandbox`: serve the simulators until SIGINT or SIGTERM.
pub async fn serve(
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
    let services: Vec<(&str, String, &str)> = sandbox
        .services()
        .into_iter()
        .map(|s| (s.name, s.base_url, s.credentials))
        .collect();
    show!(
        "{}",
        print::sandbox_listing(&sandbox.base_url, world.seed, world.customers, &services)
    );
    let key = serde_json::to_string_pretty(&sandbox.service_account_key()).unwrap_or_default();
    let written = key_file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(key_file, key));
    match written {
        Ok(()) => say!("  Google service-account key file: {}", key_file.display()),
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

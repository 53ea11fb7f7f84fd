//! Logging: plain text on a terminal, JSON lines otherwise (under systemd or a container),
//! filtered by `MAILROOM_LOG` (then `RUST_LOG`), `info` by default (Delta's internals at
//! `warn`). Logs go to stderr so
//! command output on stdout stays clean for pipes.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line, with structured fields.
    Json,
}

/// Installs the global subscriber. Call once, first thing.
#[allow(
    clippy::disallowed_methods,
    reason = "the log filter is read from the environment"
)]
pub fn init(format: LogFormat) {
    let filter = std::env::var("MAILROOM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        // Delta's kernel narrates every snapshot at info; its failures reach us as errors.
        .unwrap_or_else(|| EnvFilter::new("info,buoyant_kernel=warn,deltalake_core=warn"));
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let result = if json {
        builder.json().with_current_span(true).try_init()
    } else {
        builder.compact().with_target(false).try_init()
    };
    // Already installed (tests call `init` more than once): keep the first.
    drop(result);
}

//! Logging: plain text on a terminal, JSON lines otherwise (under systemd or a container),
//! filtered by `MAILROOM_LOG` (then `RUST_LOG`), `info` by default (`warn` for the demo,
//! whose progress lines and summary are the output), Delta's kernel at `warn` and
//! deltalake at `error` (its merge-metric warnings say nothing a user can act on). Logs go
//! to stderr so command output on stdout stays clean for pipes.

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

/// Installs the global subscriber at `level` (unless `MAILROOM_LOG` or `RUST_LOG` say
/// otherwise). Call once, first thing.
#[allow(
    clippy::disallowed_methods,
    reason = "the log filter is read from the environment"
)]
pub fn init(format: LogFormat, level: &str) {
    let filter = std::env::var("MAILROOM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        // Delta's kernel narrates every snapshot at info, deltalake warns of merge metrics it
        // derives; their failures reach us as errors.
        .unwrap_or_else(|| {
            EnvFilter::new(format!("{level},buoyant_kernel=warn,deltalake_core=error"))
        });
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

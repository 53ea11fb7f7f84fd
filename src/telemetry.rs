//! Logging: plain text on a terminal, JSON lines otherwise (under systemd or a container),
//! filtered by `MAILROOM_LOG` (then `RUST_LOG`), `info` by default (`warn` for the demo,
//! whose progress lines and summary are the output), Delta's kernel silent (mailroom
//! reports the failures it returns) and deltalake at `error` (its merge-metric warnings say
//! nothing a user can act on). Logs go to stderr so command output on stdout stays clean
//! for pipes.

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
/// otherwise), and keeps library errors free of captured backtraces. Call once, first
/// thing, before any other thread starts.
#[allow(
    clippy::disallowed_methods,
    reason = "the log filter and the backtrace policy are read from the environment"
)]
pub fn init(format: LogFormat, level: &str) {
    // `RUST_BACKTRACE=1` is for panics; without this, Delta's kernel also captures a
    // backtrace into every error it returns, and those would reach user-facing messages.
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: called first thing in `main`, before any other thread exists, so nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
    let filter = std::env::var("MAILROOM_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|spec| EnvFilter::try_new(spec).ok())
        // Delta's kernel narrates every snapshot at info and logs each failure it returns
        // (several lines for one damaged log); deltalake warns of merge metrics it derives.
        // Their failures reach us as errors, which mailroom reports once.
        .unwrap_or_else(|| {
            EnvFilter::new(format!("{level},buoyant_kernel=off,deltalake_core=error"))
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

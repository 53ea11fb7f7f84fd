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
    quiet_library_panics();
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

/// A panic inside a dependency's worker task (object_store's writer after a failed write on
/// a full disk, say) is caught by its runtime and surfaces as that operation's error, which
/// mailroom reports; its raw message is only logged at debug. A panic in mailroom's own code
/// is a bug and still reported by the default hook, loudly.
fn quiet_library_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Dependencies are compiled from absolute paths (the registry, the standard
        // library); mailroom's crates from paths relative to the workspace.
        let in_library = info
            .location()
            .is_some_and(|l| std::path::Path::new(l.file()).is_absolute());
        if !in_library {
            default(info);
            return;
        }
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info.location().map(ToString::to_string).unwrap_or_default();
        tracing::debug!(%location, %message, "a library task panicked; the operation it served reports the failure");
    }));
}

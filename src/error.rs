//! Error kinds shared by every stage, and how each maps to a process exit code.
//!
//! Every module has its own error enum named for its failures; each of those can say which
//! [`ErrorKind`] it is. Retries act on the kind, never on message text: only
//! [`ErrorKind::Transient`] is ever retried.

use std::fmt;
use std::process::ExitCode;

/// What kind of failure an error is, which decides whether it is retried and how the
/// process exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The configuration (or a SQL file) is wrong; a person must edit it. Never retried.
    Config,
    /// Worth trying again later: a timeout, a 429 or 5xx, a dropped connection, a busy lock.
    Transient,
    /// Trying again will fail the same way: a rejected request, bad credentials, bad data.
    Terminal,
    /// An invariant of mailroom itself broke. Never retried; please report it.
    Bug,
}

impl ErrorKind {
    /// The name stored in the run ledger and printed by `mailroom status`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Transient => "transient",
            ErrorKind::Terminal => "terminal",
            ErrorKind::Bug => "bug",
        }
    }

    /// Parses the ledger name back; unknown names (from a newer version) read as terminal.
    pub fn from_ledger(name: &str) -> ErrorKind {
        match name {
            "config" => ErrorKind::Config,
            "transient" => ErrorKind::Transient,
            "bug" => ErrorKind::Bug,
            _ => ErrorKind::Terminal,
        }
    }

    /// Whether a failure of this kind may succeed if tried again.
    pub fn is_retryable(self) -> bool {
        self == ErrorKind::Transient
    }

    /// The process exit code for a command that failed this way (see docs/reference.md, "Exit codes").
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }

    /// The numeric exit status, after the BSD `sysexits.h` conventions.
    pub fn exit_status(self) -> u8 {
        match self {
            ErrorKind::Config => EXIT_CONFIG,
            ErrorKind::Transient => EXIT_TRANSIENT,
            ErrorKind::Terminal => EXIT_TERMINAL,
            ErrorKind::Bug => EXIT_BUG,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A run or command failed in a way that trying again will not fix.
pub const EXIT_TERMINAL: u8 = 1;
/// Command-line usage error (clap's own code).
pub const EXIT_USAGE: u8 = 2;
/// Internal error: a bug in mailroom (`EX_SOFTWARE`).
pub const EXIT_BUG: u8 = 70;
/// Temporary failure, try again later (`EX_TEMPFAIL`): also a data directory held by
/// another mailroom process.
pub const EXIT_TRANSIENT: u8 = 75;
/// Configuration error (`EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;
/// The command was interrupted by SIGINT or SIGTERM (128 + SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Implemented by every module's error enum so callers can act on the kind.
pub trait Classify {
    /// The kind of this failure.
    fn kind(&self) -> ErrorKind;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(ErrorKind::Transient.is_retryable());
        for kind in [ErrorKind::Config, ErrorKind::Terminal, ErrorKind::Bug] {
            assert!(!kind.is_retryable(), "{kind} must not be retried");
        }
    }

    #[test]
    fn kinds_round_trip_through_the_ledger_and_have_distinct_exit_codes() {
        let kinds = [
            ErrorKind::Config,
            ErrorKind::Transient,
            ErrorKind::Terminal,
            ErrorKind::Bug,
        ];
        for kind in kinds {
            assert_eq!(ErrorKind::from_ledger(kind.as_str()), kind);
        }
        let mut codes: Vec<u8> = kinds.iter().map(|k| k.exit_status()).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), kinds.len());
    }
}

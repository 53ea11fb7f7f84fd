//! Secrets: written in config only as `${ENV_VAR}` references ([`SecretRef`]), resolved
//! from an [`Environment`] when a service is first used, and never printed.
//!
//! [`Secret`] prints as `***` in `Debug` and `Display` and has no `Serialize`, so it
//! cannot leak through logs or state; only the HTTP client reads it, where it goes on the
//! wire. A reference to a variable that is not set is an error naming both the variable
//! and the key that needs it ([`MissingSecret`]).

use std::fmt;

/// A secret value. Read it with [`Secret::expose`] only where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value (from the environment, or an override's credential).
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for an `Authorization` header or the like.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A `${VAR}` reference from a secret field, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The environment variable's name.
    pub var: String,
    /// The key path that holds the reference, such as `sources.smile.api_key`.
    pub key: String,
    /// The config file that holds it.
    pub file: String,
    /// 1-based line of the value.
    pub line: usize,
    /// 1-based column of the value.
    pub column: usize,
}

impl SecretRef {
    /// Looks the variable up.
    pub fn resolve(&self, env: &dyn Environment) -> Result<Secret, MissingSecret> {
        env.get(&self.var)
            .map(Secret::new)
            .ok_or_else(|| MissingSecret {
                var: self.var.clone(),
                key: self.key.clone(),
            })
    }
}

/// Where secrets are looked up; the process environment in production, a map in tests.
pub trait Environment {
    /// The value of a variable, if set and not empty.
    fn get(&self, var: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    #[allow(clippy::disallowed_methods, reason = "the one place secrets are read")]
    fn get(&self, var: &str) -> Option<String> {
        std::env::var(var).ok().filter(|v| !v.is_empty())
    }
}

impl<const N: usize> Environment for [(&str, &str); N] {
    fn get(&self, var: &str) -> Option<String> {
        self.iter()
            .find(|(name, _)| *name == var)
            .map(|(_, value)| value.to_string())
    }
}

/// Why a secret reference could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("environment variable {var} is not set (needed by {key})")]
pub struct MissingSecret {
    /// The variable that is not set.
    pub var: String,
    /// The key that needs it.
    pub key: String,
}

//! Secrets: written in config only as `${ENV_VAR}` references, resolved from the environment
//! when a command needs them, and never printed.
//!
//! A literal token in a secret field is a config error (it would end up in version control);
//! a reference to a variable that is not set is an error naming both the variable and the
//! key that needs it. [`Secret`] prints as `***` in `Debug` and `Display` and has no
//! `Serialize`, so it cannot leak through logs or state.

use std::fmt;

use toml_span::Spanned;

use super::diagnostic::Diagnostics;

/// A secret value. Read it with [`Secret::expose`] only where it goes on the wire.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value (from the environment, or the sandbox's fixed credentials).
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

impl SecretRef {
    /// Parses a secret field's value, which must be exactly `${NAME}`. A literal is reported
    /// without echoing it.
    pub fn parse(value: &Spanned<String>, key: String, d: &mut Diagnostics<'_>) -> Option<Self> {
        match reference_name(&value.value) {
            Some(var) => {
                let (file, line, column) = d.locate(value.span.start);
                Some(SecretRef {
                    var: var.to_string(),
                    key,
                    file,
                    line,
                    column,
                })
            }
            None => {
                d.report(
                    value.span.start,
                    key.clone(),
                    "looks like a literal secret (value hidden); secrets must be environment \
                     variable references",
                    Some(format!(
                        "write `{} = \"${{{}}}\"` and set that variable in mailroom's environment",
                        key.rsplit('.').next().unwrap_or(&key),
                        suggested_var(&key)
                    )),
                );
                None
            }
        }
    }

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

/// The variable name inside `${NAME}`, if the whole value is such a reference.
fn reference_name(value: &str) -> Option<&str> {
    let name = value.strip_prefix("${")?.strip_suffix('}')?;
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')).then_some(name)
}

/// A variable name to suggest for a key: `sources.smile.api_key` → `SMILE_API_KEY`.
fn suggested_var(key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    let tail = if parts.len() >= 2 {
        &parts[parts.len() - 2..]
    } else {
        &parts[..]
    };
    tail.join("_").to_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::SourceText;
    use toml_span::Span;

    fn parse(value: &str) -> (Option<SecretRef>, Vec<String>) {
        let src = SourceText::new("c.toml", format!("api_key = \"{value}\""));
        let mut d = Diagnostics::new(&src);
        let spanned = Spanned::with_span(value.to_string(), Span::new(10, 11));
        let parsed = SecretRef::parse(&spanned, "sources.smile.api_key".into(), &mut d);
        (parsed, d.into_vec().iter().map(|x| x.to_string()).collect())
    }

    #[test]
    fn references_parse_and_literals_are_rejected_without_echoing_them() {
        let (parsed, errors) = parse("${SMILE_API_KEY}");
        assert_eq!(parsed.expect("a reference").var, "SMILE_API_KEY");
        assert!(errors.is_empty());

        let (parsed, errors) = parse("sk_live_abc123");
        assert!(parsed.is_none());
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("literal secret"), "{errors:?}");
        assert!(errors[0].contains("${SMILE_API_KEY}"), "{errors:?}");
        assert!(
            !errors[0].contains("sk_live_abc123"),
            "the secret leaked: {errors:?}"
        );

        for bad in ["${}", "${1X}", "$SMILE", "prefix-${X}"] {
            assert!(parse(bad).0.is_none(), "{bad} should be rejected");
        }
    }

    #[test]
    fn resolving_names_the_missing_variable_and_key() {
        let r = SecretRef {
            var: "SMILE_API_KEY".into(),
            key: "sources.smile.api_key".into(),
            file: "config.toml".into(),
            line: 1,
            column: 1,
        };
        let err = r.resolve(&[("OTHER", "x")]).expect_err("not set");
        assert_eq!(
            err.to_string(),
            "environment variable SMILE_API_KEY is not set (needed by sources.smile.api_key)"
        );
        let secret = r.resolve(&[("SMILE_API_KEY", "k")]).expect("set");
        assert_eq!(secret.expose(), "k");
        assert_eq!(format!("{secret} {secret:?}"), "*** ***");
    }
}

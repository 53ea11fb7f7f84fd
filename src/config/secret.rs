//! Reading secret fields: a value must be a `${ENV_VAR}` reference ([`SecretRef`], kept with
//! where it was written); a literal token is a config error (it would end up in version
//! control) reported without echoing it. Resolving references against the environment is
//! in [`crate::secret`].

use toml_span::Spanned;

use super::diagnostic::Diagnostics;
pub use crate::secret::{Environment, MissingSecret, ProcessEnvironment, Secret, SecretRef};

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

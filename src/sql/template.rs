//! Renders a SQL file's body with minijinja before it is parsed: `{{ ref('table') }}` becomes
//! the engine's name for a table, `{{ params.x }}` a SQL literal, and `{{ now }}` the run's
//! scheduled fire time as a `TIMESTAMP` literal (never the wall clock, so reruns and
//! backfills give the same answer). Only parameters and the fire time are templated, never
//! values from data.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use minijinja::{Environment, UndefinedBehavior, Value};

use crate::config::ParamValue;
use crate::warehouse::TableNames;

/// Why a body could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template is invalid or used something undefined (`params.typo`).
    #[error("line {line}: {message}")]
    Render {
        /// 1-based line in the body (0 when unknown).
        line: usize,
        /// What minijinja said.
        message: String,
    },
    /// A parameter given for the run does not fit the file.
    #[error("{0}")]
    Param(String),
}

/// The run's values a body is rendered with.
#[derive(Debug, Clone)]
pub struct RenderContext<'a> {
    /// The scheduled fire time of the run.
    pub now: DateTime<Utc>,
    /// Every parameter, defaults already overridden (see [`resolve_params`]).
    pub params: &'a BTreeMap<String, ParamValue>,
    /// How tables are named.
    pub tables: &'a TableNames,
}

/// A GoogleSQL string literal holding `text`.
pub fn string_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The SQL literal for a parameter value.
pub fn param_literal(value: &ParamValue) -> String {
    match value {
        ParamValue::String(s) => string_literal(s),
        ParamValue::Integer(n) => n.to_string(),
        // `{:?}` always writes a decimal point or exponent, so the literal stays FLOAT64.
        ParamValue::Float(x) => format!("{x:?}"),
        ParamValue::Bool(true) => "TRUE".into(),
        ParamValue::Bool(false) => "FALSE".into(),
    }
}

/// The `TIMESTAMP` literal for an instant, in UTC with microseconds.
pub fn timestamp_literal(at: DateTime<Utc>) -> String {
    format!(
        "TIMESTAMP '{}'",
        at.to_rfc3339_opts(SecondsFormat::Micros, true)
            .replace('T', " ")
            .replace('Z', "+00:00")
    )
}

fn kind_name(value: &ParamValue) -> &'static str {
    match value {
        ParamValue::String(_) => "a string",
        ParamValue::Integer(_) => "an integer",
        ParamValue::Float(_) => "a number",
        ParamValue::Bool(_) => "true or false",
    }
}

/// A value given as text (`--param lapse_days=30`) read as the type of its default.
pub fn parse_like(default: &ParamValue, name: &str, text: &str) -> Result<ParamValue, String> {
    let wrong = || {
        format!(
            "parameter `{name}`: `{text}` is not {}, as its default is",
            kind_name(default)
        )
    };
    Ok(match default {
        ParamValue::String(_) => ParamValue::String(text.to_string()),
        ParamValue::Integer(_) => ParamValue::Integer(text.trim().parse().map_err(|_| wrong())?),
        ParamValue::Float(_) => ParamValue::Float(text.trim().parse().map_err(|_| wrong())?),
        ParamValue::Bool(_) => match text.trim() {
            "true" | "TRUE" => ParamValue::Bool(true),
            "false" | "FALSE" => ParamValue::Bool(false),
            _ => return Err(wrong()),
        },
    })
}

/// The file's defaults overridden by the run's values; a name the file does not declare,
/// or a value of another type than the default, is an error.
pub fn resolve_params(
    defaults: &BTreeMap<String, ParamValue>,
    overrides: &BTreeMap<String, ParamValue>,
) -> Result<BTreeMap<String, ParamValue>, TemplateError> {
    let mut params = defaults.clone();
    for (name, value) in overrides {
        let Some(default) = defaults.get(name) else {
            let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
            return Err(TemplateError::Param(format!(
                "unknown parameter `{name}`; the file declares {}",
                if known.is_empty() {
                    "none (add them under `[params]` in its header)".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        let value = match (default, value) {
            (ParamValue::Float(_), ParamValue::Integer(n)) => ParamValue::Float(*n as f64),
            (_, ParamValue::String(text)) if !matches!(default, ParamValue::String(_)) => {
                parse_like(default, name, text).map_err(TemplateError::Param)?
            }
            (d, v) if std::mem::discriminant(d) == std::mem::discriminant(v) => v.clone(),
            (d, v) => {
                return Err(TemplateError::Param(format!(
                    "parameter `{name}` must be {}, as its default is; got {}",
                    kind_name(d),
                    kind_name(v)
                )));
            }
        };
        params.insert(name.clone(), value);
    }
    Ok(params)
}

/// Renders `body` for one run.
pub fn render(body: &str, context: &RenderContext<'_>) -> Result<String, TemplateError> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // SQL is not HTML: nothing is escaped, and `{{ }}` only ever yields literals and names.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.set_keep_trailing_newline(true);
    let tables = context.tables.clone();
    env.add_function(
        "ref",
        move |name: &str| -> Result<Value, minijinja::Error> {
            let valid = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("ref('{name}'): a table name has only letters, digits and underscores"),
                ));
            }
            Ok(Value::from_safe_string(tables.qualify(name)))
        },
    );
    let params: BTreeMap<&str, Value> = context
        .params
        .iter()
        .map(|(k, v)| (k.as_str(), Value::from_safe_string(param_literal(v))))
        .collect();
    let failed = |e: minijinja::Error| TemplateError::Render {
        line: e.line().unwrap_or(0),
        message: match e.detail() {
            Some(detail) => format!("{}: {detail}", e.kind()),
            None => e.kind().to_string(),
        },
    };
    let template = env.template_from_str(body).map_err(failed)?;
    template
        .render(minijinja::context! {
            params => params,
            now => Value::from_safe_string(timestamp_literal(context.now)),
        })
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_with(body: &str, overrides: &[(&str, ParamValue)]) -> Result<String, TemplateError> {
        let defaults = BTreeMap::from([
            ("lapse_days".to_string(), ParamValue::Integer(90)),
            ("tier".to_string(), ParamValue::String("Gold".into())),
        ]);
        let overrides = overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let params = resolve_params(&defaults, &overrides)?;
        let now = "2026-11-22T09:00:00Z".parse().expect("time");
        render(
            body,
            &RenderContext {
                now,
                params: &params,
                tables: &TableNames::BigQuery {
                    project: "p".into(),
                    dataset: "d".into(),
                },
            },
        )
    }

    #[test]
    fn refs_params_and_now_become_names_and_literals() {
        let sql = render_with(
            "SELECT * FROM {{ ref('shopify_orders') }}\nWHERE d > {{ params.lapse_days }} AND t = {{ params.tier }} AND at < {{ now }}\n",
            &[("tier", ParamValue::String("O'Brien \\ VIP".into()))],
        )
        .expect("render");
        assert_eq!(
            sql,
            "SELECT * FROM `p.d.shopify_orders`\nWHERE d > 90 AND t = 'O\\'Brien \\\\ VIP' AND at < TIMESTAMP '2026-11-22 09:00:00.000000+00:00'\n"
        );
        // The quoted string reads back as the value in GoogleSQL (sqlparser prints it back
        // with a doubled quote).
        let literal = string_literal("O'Brien \\ VIP");
        let parsed = mailroom_googlesql::parse(&format!("SELECT {literal}")).expect("parse");
        assert_eq!(parsed[0].to_string(), "SELECT 'O''Brien \\ VIP'");
    }

    #[test]
    fn overrides_are_typed_like_their_defaults() {
        let sql = render_with(
            "{{ params.lapse_days }}",
            &[("lapse_days", ParamValue::String("30".into()))],
        );
        assert_eq!(sql.as_deref(), Ok("30"));
        let err = render_with("x", &[("lapse_days", ParamValue::String("soon".into()))])
            .expect_err("not a number");
        assert!(
            err.to_string().contains("`soon` is not an integer"),
            "{err}"
        );
        let err = render_with("x", &[("lapse_dayz", ParamValue::Integer(3))]).expect_err("unknown");
        assert!(
            err.to_string()
                .contains("unknown parameter `lapse_dayz`; the file declares lapse_days, tier"),
            "{err}"
        );
    }

    #[test]
    fn undefined_names_and_bad_refs_are_errors_with_a_line() {
        let err = render_with("SELECT 1\nFROM t WHERE x = {{ params.typo }}", &[])
            .expect_err("undefined");
        assert!(
            matches!(err, TemplateError::Render { line: 2, .. }),
            "{err:?}"
        );
        let err = render_with("SELECT * FROM {{ ref('a; DROP') }}", &[]).expect_err("bad ref");
        assert!(
            err.to_string().contains("letters, digits and underscores"),
            "{err}"
        );
    }
}

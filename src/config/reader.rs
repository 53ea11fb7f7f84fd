//! Reads TOML tables key by key, recording every problem instead of stopping at the first.
//!
//! Serde's derive stops at the first unknown key or wrong type, which would hide the other
//! mistakes in a config. [`TableReader`] takes keys one at a time from a span-preserving
//! parse (`toml-span`), reports wrong types, out-of-range numbers and bad choices with their
//! location, and on [`TableReader::finish`] reports every key nobody asked for, with a
//! "did you mean" among the keys that table accepts.

use std::ops::RangeInclusive;

use toml_span::value::{Key, Table, Value, ValueInner};
use toml_span::{Span, Spanned};

use super::diagnostic::{Diagnostics, choices_help, closest};

/// A table being read; keys are taken out as they are read.
pub struct TableReader<'de> {
    path: String,
    span: Span,
    entries: Table<'de>,
    known: Vec<&'static str>,
}

/// The TOML type name of a value, for "expected X, found Y" messages.
pub fn type_name(value: &Value<'_>) -> &'static str {
    match value.as_ref() {
        ValueInner::String(_) => "a string",
        ValueInner::Integer(_) => "an integer",
        ValueInner::Float(_) => "a float",
        ValueInner::Boolean(_) => "a boolean",
        ValueInner::Array(_) => "an array",
        ValueInner::Table(_) => "a table",
    }
}

/// Joins a table path and a key into a dotted key path.
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl<'de> TableReader<'de> {
    /// Reads `value` as a table at `path`, reporting it if it is not one.
    pub fn new(mut value: Value<'de>, path: String, d: &mut Diagnostics<'_>) -> Option<Self> {
        let span = value.span;
        match value.take() {
            ValueInner::Table(entries) => Some(TableReader {
                path,
                span,
                entries,
                known: Vec::new(),
            }),
            other => {
                let found = type_name(&Value::with_span(other, span));
                d.report(
                    span.start,
                    path,
                    format!("expected a table, found {found}"),
                    None,
                );
                None
            }
        }
    }

    /// The dotted path of this table.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The dotted path of one of this table's keys.
    pub fn key_path(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// Whether the table has a key (without taking it).
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Takes a key's value, whatever its type.
    pub fn value(&mut self, key: &'static str) -> Option<Value<'de>> {
        self.known.push(key);
        self.entries.remove(key)
    }

    /// Reports a required key that is missing.
    pub fn missing(&self, d: &mut Diagnostics<'_>, key: &str, help: Option<String>) {
        d.report(
            self.span.start,
            self.key_path(key),
            format!("missing required key `{key}`"),
            help,
        );
    }

    fn wrong_type(&self, d: &mut Diagnostics<'_>, key: &str, expected: &str, value: &Value<'_>) {
        d.report(
            value.span.start,
            self.key_path(key),
            format!("expected {expected}, found {}", type_name(value)),
            None,
        );
    }

    /// An optional string.
    pub fn string(
        &mut self,
        d: &mut Diagnostics<'_>,
        key: &'static str,
    ) -> Option<Spanned<String>> {
        let mut value = self.value(key)?;
        let span = value.span;
        match value.take() {
            ValueInner::String(s) => Some(Spanned::with_span(s.into_owned(), span)),
            other => {
                self.wrong_type(d, key, "a string", &Value::with_span(other, span));
                None
            }
        }
    }

    /// A string that must be present.
    pub fn required_string(
        &mut self,
        d: &mut Diagnostics<'_>,
        key: &'static str,
    ) -> Option<Spanned<String>> {
        if !self.contains(key) {
            self.missing(d, key, None);
        }
        self.string(d, key)
    }

    /// An optional number within `range` (an integer is taken as one).
    pub fn number(
        &mut self,
        d: &mut Diagnostics<'_>,
        key: &'static str,
        range: RangeInclusive<f64>,
    ) -> Option<Spanned<f64>> {
        let mut value = self.value(key)?;
        let span = value.span;
        let x = match value.take() {
            ValueInner::Float(x) => x,
            ValueInner::Integer(n) => n as f64,
            other => {
                self.wrong_type(d, key, "a number", &Value::with_span(other, span));
                return None;
            }
        };
        if !range.contains(&x) {
            d.report(
                span.start,
                self.key_path(key),
                format!("{x} is out of range"),
                Some(format!(
                    "use a number from {} to {}",
                    range.start(),
                    range.end()
                )),
            );
            return None;
        }
        Some(Spanned::with_span(x, span))
    }

    /// An optional integer within `range`.
    pub fn integer(
        &mut self,
        d: &mut Diagnostics<'_>,
        key: &'static str,
        range: RangeInclusive<i64>,
    ) -> Option<Spanned<i64>> {
        let mut value = self.value(key)?;
        let span = value.span;
        match value.take() {
            ValueInner::Integer(n) if range.contains(&n) => Some(Spanned::with_span(n, span)),
            ValueInner::Integer(n) => {
                d.report(
                    span.start,
                    self.key_path(key),
                    format!("{n} is out of range"),
                    Some(format!(
                        "use a whole number from {} to {}",
                        range.start(),
                        range.end()
                    )),
                );
                None
            }
            other => {
                self.wrong_type(d, key, "an integer", &Value::with_span(other, span));
                None
            }
        }
    }

    /// An optional boolean.
    pub fn boolean(&mut self, d: &mut Diagnostics<'_>, key: &'static str) -> Option<bool> {
        let mut value = self.value(key)?;
        let span = value.span;
        match value.take() {
            ValueInner::Boolean(b) => Some(b),
            other => {
                self.wrong_type(d, key, "true or false", &Value::with_span(other, span));
                None
            }
        }
    }

    /// An optional string that must be one of `choices`, mapped to its value.
    pub fn choice<T: Copy>(
        &mut self,
        d: &mut Diagnostics<'_>,
        key: &'static str,
        choices: &[(&'static str, T)],
    ) -> Option<Spanned<T>> {
        let given = self.string(d, key)?;
        if let Some((_, value)) = choices.iter().find(|(name, _)| *name == given.value) {
            return Some(Spanned::with_span(*value, given.span));
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        d.report(
            given.span.start,
            self.key_path(key),
            format!("unknown value \"{}\"", given.value),
            Some(choices_help(&given.value, &names)),
        );
        None
    }

    /// An optional sub-table.
    pub fn table(
        &mut self,
        d: &mut Diagnostics<'_>,
        key: &'static str,
    ) -> Option<TableReader<'de>> {
        let value = self.value(key)?;
        TableReader::new(value, self.key_path(key), d)
    }

    /// An optional array, as its elements.
    pub fn array(&mut self, d: &mut Diagnostics<'_>, key: &'static str) -> Option<Vec<Value<'de>>> {
        let mut value = self.value(key)?;
        let span = value.span;
        match value.take() {
            ValueInner::Array(items) => Some(items),
            other => {
                self.wrong_type(d, key, "an array", &Value::with_span(other, span));
                None
            }
        }
    }

    /// Takes every remaining entry: for tables whose keys are names chosen by the user.
    pub fn drain(&mut self) -> Vec<(Key<'de>, Value<'de>)> {
        std::mem::take(&mut self.entries).into_iter().collect()
    }

    /// Reports every key that was not read as unknown, naming the keys this table accepts.
    pub fn finish(self, d: &mut Diagnostics<'_>) {
        let mut known = self.known;
        known.sort_unstable();
        known.dedup();
        for (key, _) in self.entries {
            let help = match closest(&key.name, known.iter().copied()) {
                Some(near) => format!(
                    "did you mean `{near}`? valid keys here: {}",
                    known.join(", ")
                ),
                None => format!("valid keys here: {}", known.join(", ")),
            };
            d.report(
                key.span.start,
                join(&self.path, &key.name),
                format!("unknown key `{}`", key.name),
                Some(help),
            );
        }
    }
}

/// Reads an array element as a string, reporting anything else.
pub fn element_string(
    mut value: Value<'_>,
    path: &str,
    d: &mut Diagnostics<'_>,
) -> Option<Spanned<String>> {
    let span = value.span;
    match value.take() {
        ValueInner::String(s) => Some(Spanned::with_span(s.into_owned(), span)),
        other => {
            let found = type_name(&Value::with_span(other, span));
            d.report(
                span.start,
                path,
                format!("expected a string, found {found}"),
                None,
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::diagnostic::SourceText;

    fn read(text: &str, f: impl FnOnce(&mut TableReader<'_>, &mut Diagnostics<'_>)) -> Vec<String> {
        let src = SourceText::new("t.toml", text);
        let mut d = Diagnostics::new(&src);
        let root = toml_span::parse(&src.text).expect("test TOML parses");
        let mut table = TableReader::new(root, String::new(), &mut d).expect("a table");
        f(&mut table, &mut d);
        table.finish(&mut d);
        d.into_vec().iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn reports_every_problem_in_one_pass() {
        let errors = read(
            "name = 5\nretries = 99\nmode = \"skp\"\nshedule = \"x\"\n",
            |t, d| {
                assert!(t.string(d, "name").is_none());
                assert!(t.integer(d, "retries", 0..=10).is_none());
                assert!(t.choice(d, "mode", &[("skip", 0), ("queue", 1)]).is_none());
                assert!(t.string(d, "schedule").is_none());
            },
        );
        assert_eq!(errors.len(), 4, "{errors:#?}");
        assert!(errors[0].starts_with("t.toml:1:8: name: expected a string, found an integer"));
        assert!(errors[1].contains("t.toml:2:11: retries: 99 is out of range"));
        assert!(errors[2].contains("mode: unknown value \"skp\""));
        assert!(errors[2].contains("did you mean `skip`?"));
        assert!(errors[3].starts_with("t.toml:4:1: shedule: unknown key `shedule`"));
        assert!(errors[3].contains("did you mean `schedule`?"));
    }

    #[test]
    fn missing_required_keys_are_reported_with_their_path() {
        let errors = read("[job]\nx = 1\n", |t, d| {
            let mut job = t.table(d, "job").expect("job table");
            assert!(job.required_string(d, "name").is_none());
            job.value("x");
            job.finish(d);
        });
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].contains("job.name: missing required key `name`"),
            "{errors:?}"
        );
    }
}

//! Config diagnostics: one problem each, located at `file:line:column` with its key path.
//!
//! Validation never stops at the first problem; it collects [`Diagnostic`]s and reports them
//! together as [`ConfigErrors`], so a user fixes a config in one pass.

use std::fmt;

use crate::error::{Classify, ErrorKind};

/// A text that was parsed (a config file or a SQL header), kept to turn byte offsets into
/// line and column numbers.
#[derive(Debug, Clone)]
pub struct SourceText {
    /// The name shown in diagnostics: the path as the user gave it.
    pub name: String,
    /// The whole text.
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceText {
    /// Wraps a text with the name diagnostics will show for it.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        let text = text.into();
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        SourceText {
            name: name.into(),
            text,
            line_starts,
        }
    }

    /// The 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let line_text = &self.text[self.line_starts[line]..];
        let column = line_text
            .char_indices()
            .take_while(|(i, _)| *i < offset - self.line_starts[line])
            .count();
        (line + 1, column + 1)
    }
}

/// One problem found in a config or SQL file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as the user named it.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key path, such as `jobs[1].schedule`.
    pub key: String,
    /// What is wrong, quoting the bad value where it is not a secret.
    pub message: String,
    /// What to do instead: the valid choices, a "did you mean", an example.
    pub help: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n    help: {help}")?;
        }
        Ok(())
    }
}

/// Collects diagnostics against one [`SourceText`].
#[derive(Debug)]
pub struct Diagnostics<'s> {
    source: &'s SourceText,
    found: Vec<Diagnostic>,
}

impl<'s> Diagnostics<'s> {
    /// Starts an empty collection for `source`.
    pub fn new(source: &'s SourceText) -> Self {
        Diagnostics {
            source,
            found: Vec::new(),
        }
    }

    /// Records a problem at the byte offset `at`.
    pub fn report(
        &mut self,
        at: usize,
        key: impl Into<String>,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let (line, column) = self.source.line_col(at);
        self.found.push(Diagnostic {
            file: self.source.name.clone(),
            line,
            column,
            key: key.into(),
            message: message.into(),
            help,
        });
    }

    /// The file name, line and column of a byte offset.
    pub fn locate(&self, at: usize) -> (String, usize, usize) {
        let (line, column) = self.source.line_col(at);
        (self.source.name.clone(), line, column)
    }

    /// Whether nothing has been reported.
    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// The diagnostics found, in file order.
    pub fn into_vec(mut self) -> Vec<Diagnostic> {
        self.found.sort_by_key(|d| (d.line, d.column));
        self.found
    }
}

/// Every problem found in a config, reported together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.0 {
            writeln!(f, "{diagnostic}")?;
        }
        let n = self.0.len();
        write!(f, "{n} problem{} found", if n == 1 { "" } else { "s" })
    }
}

impl std::error::Error for ConfigErrors {}

impl Classify for ConfigErrors {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Config
    }
}

/// The candidates closest to `given`, best first, for a "did you mean" hint.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let score = strsim::jaro_winkler(&given_lower, &candidate.to_lowercase());
            (score, candidate)
        })
        .filter(|(score, _)| *score >= 0.82)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

/// A help line listing the valid choices, with a "did you mean" when one is close.
pub fn choices_help(given: &str, choices: &[&str]) -> String {
    let list = choices
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match closest(given, choices.iter().copied()) {
        Some(near) => format!("did you mean `{near}`? valid choices: {list}"),
        None => format!("valid choices: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based_and_count_characters() {
        let src = SourceText::new("c.toml", "a = 1\nbé = \"x\"\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(6), (2, 1));
        // "bé = " is 6 bytes but 5 characters; the quote is the 6th character.
        assert_eq!(src.line_col(12), (2, 6));
    }

    #[test]
    fn did_you_mean_finds_near_misses_only() {
        assert_eq!(closest("shedule", ["name", "schedule"]), Some("schedule"));
        assert_eq!(closest("Skp", ["skip", "queue"]), Some("skip"));
        assert_eq!(closest("banana", ["skip", "queue"]), None);
    }

    #[test]
    fn diagnostics_print_as_file_line_column_key_message() {
        let src = SourceText::new("config.toml", "x = 1\n");
        let mut d = Diagnostics::new(&src);
        d.report(0, "x", "unknown key", Some("valid keys: `y`".into()));
        let text = ConfigErrors(d.into_vec()).to_string();
        assert_eq!(
            text,
            "config.toml:1:1: x: unknown key\n    help: valid keys: `y`\n1 problem found"
        );
    }
}

//! Shopify's search syntax for the `query` argument: `field:value` terms with optional
//! comparators (`:<`, `:<=`, `:>`, `:>=`), implicit AND, explicit `AND`/`OR`/`NOT`, a `-`
//! prefix for negation, parentheses, and quoted values (dates must be quoted). Terms on
//! fields an object does not have match everything, as Shopify ignores unknown filters.

use chrono::{DateTime, Utc};

/// A value an object offers to a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    /// A timestamp.
    Time(DateTime<Utc>),
    /// A number.
    Number(i64),
    /// Text, compared without case.
    Text(String),
}

/// Something a filter can be evaluated against.
pub trait Searchable {
    /// The value of a filter field, if the object has that field.
    fn attr(&self, field: &str) -> Option<Attr>;
}

/// A term's comparator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `field:value`
    Eq,
    /// `field:<value`
    Lt,
    /// `field:<=value`
    Le,
    /// `field:>value`
    Gt,
    /// `field:>=value`
    Ge,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Matches everything (an empty query).
    All,
    /// One `field:value` term.
    Term {
        /// The field, lower-cased.
        field: String,
        /// The comparator.
        op: Op,
        /// The value, unquoted.
        value: String,
    },
    /// All of these.
    And(Vec<Filter>),
    /// Any of these.
    Or(Vec<Filter>),
    /// Not this.
    Not(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Open,
    Close,
    Word(String),
}

fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                chars.next();
                tokens.push(Token::Open);
            }
            ')' => {
                chars.next();
                tokens.push(Token::Close);
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == '(' || c == ')' {
                        break;
                    }
                    chars.next();
                    if c == '\'' || c == '"' {
                        for quoted in chars.by_ref() {
                            if quoted == c {
                                break;
                            }
                            word.push(quoted);
                        }
                    } else {
                        word.push(c);
                    }
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    tokens
}

/// Parses a search string. Malformed input degrades to the terms that could be read.
pub fn parse(text: &str) -> Filter {
    let tokens = tokenize(text);
    let mut position = 0;
    let filter = parse_or(&tokens, &mut position);
    match filter {
        Filter::And(items) if items.is_empty() => Filter::All,
        other => other,
    }
}

fn parse_or(tokens: &[Token], at: &mut usize) -> Filter {
    let mut alternatives = vec![parse_and(tokens, at)];
    while matches!(tokens.get(*at), Some(Token::Word(w)) if w == "OR") {
        *at += 1;
        alternatives.push(parse_and(tokens, at));
    }
    if alternatives.len() == 1 {
        alternatives.remove(0)
    } else {
        Filter::Or(alternatives)
    }
}

fn parse_and(tokens: &[Token], at: &mut usize) -> Filter {
    let mut all = Vec::new();
    loop {
        match tokens.get(*at) {
            None | Some(Token::Close) => break,
            Some(Token::Word(w)) if w == "OR" => break,
            Some(Token::Word(w)) if w == "AND" => *at += 1,
            Some(_) => all.push(parse_unary(tokens, at)),
        }
    }
    if all.len() == 1 {
        all.remove(0)
    } else {
        Filter::And(all)
    }
}

fn parse_unary(tokens: &[Token], at: &mut usize) -> Filter {
    match tokens.get(*at) {
        Some(Token::Word(w)) if w == "NOT" => {
            *at += 1;
            Filter::Not(Box::new(parse_unary(tokens, at)))
        }
        Some(Token::Open) => {
            *at += 1;
            let inner = parse_or(tokens, at);
            if matches!(tokens.get(*at), Some(Token::Close)) {
                *at += 1;
            }
            inner
        }
        Some(Token::Word(w)) => {
            *at += 1;
            match w.strip_prefix('-') {
                Some(rest) if !rest.is_empty() => Filter::Not(Box::new(term(rest))),
                _ => term(w),
            }
        }
        Some(Token::Close) | None => Filter::All,
    }
}

fn term(word: &str) -> Filter {
    let Some((field, rest)) = word.split_once(':') else {
        return Filter::All;
    };
    let (op, value) = if let Some(v) = rest.strip_prefix(">=") {
        (Op::Ge, v)
    } else if let Some(v) = rest.strip_prefix("<=") {
        (Op::Le, v)
    } else if let Some(v) = rest.strip_prefix('>') {
        (Op::Gt, v)
    } else if let Some(v) = rest.strip_prefix('<') {
        (Op::Lt, v)
    } else {
        (Op::Eq, rest)
    };
    Filter::Term {
        field: field.to_lowercase(),
        op,
        value: value.to_string(),
    }
}

fn compare<T: PartialOrd>(left: T, op: Op, right: T) -> bool {
    match op {
        Op::Eq => left == right,
        Op::Lt => left < right,
        Op::Le => left <= right,
        Op::Gt => left > right,
        Op::Ge => left >= right,
    }
}

impl Filter {
    /// Whether `item` matches.
    pub fn matches(&self, item: &dyn Searchable) -> bool {
        match self {
            Filter::All => true,
            Filter::And(all) => all.iter().all(|f| f.matches(item)),
            Filter::Or(any) => any.iter().any(|f| f.matches(item)),
            Filter::Not(inner) => !inner.matches(item),
            Filter::Term { field, op, value } => match item.attr(field) {
                None => true,
                Some(Attr::Time(t)) => match crate::parse_time(value) {
                    // `created_at:2024-01-01` means that day.
                    Some(v) if *op == Op::Eq && value.len() == 10 => {
                        t.date_naive() == v.date_naive()
                    }
                    Some(v) => compare(t, *op, v),
                    None => false,
                },
                Some(Attr::Number(n)) => value.parse::<i64>().is_ok_and(|v| compare(n, *op, v)),
                Some(Attr::Text(s)) => compare(s.to_lowercase(), *op, value.to_lowercase()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Item {
        updated: DateTime<Utc>,
        status: &'static str,
        email: &'static str,
    }

    impl Searchable for Item {
        fn attr(&self, field: &str) -> Option<Attr> {
            match field {
                "updated_at" => Some(Attr::Time(self.updated)),
                "financial_status" => Some(Attr::Text(self.status.into())),
                "email" => Some(Attr::Text(self.email.into())),
                _ => None,
            }
        }
    }

    fn item(updated: &str, status: &'static str) -> Item {
        Item {
            updated: crate::parse_time(updated).expect("time"),
            status,
            email: "Ana@Example.com",
        }
    }

    #[test]
    fn terms_comparators_boolean_operators_and_quotes() {
        let new_paid = item("2024-09-15T08:00:12Z", "paid");
        let old_refunded = item("2023-01-01T00:00:00Z", "refunded");
        let cases = [
            ("updated_at:>'2024-01-01T00:00:00Z'", true, false),
            ("updated_at:>=\"2024-09-15T08:00:12Z\"", true, false),
            ("updated_at:<2024-01-01", false, true),
            ("updated_at:2024-09-15", true, false),
            (
                "financial_status:paid OR financial_status:refunded",
                true,
                true,
            ),
            (
                "financial_status:paid updated_at:<'2024-01-01'",
                false,
                false,
            ),
            ("-financial_status:paid", false, true),
            (
                "NOT (financial_status:paid AND updated_at:>'2024-01-01')",
                false,
                true,
            ),
            ("email:ana@example.com", true, true),
            ("unknown_field:whatever", true, true),
            ("", true, true),
        ];
        for (query, a, b) in cases {
            let filter = parse(query);
            assert_eq!(
                (filter.matches(&new_paid), filter.matches(&old_refunded)),
                (a, b),
                "{query}: {filter:?}"
            );
        }
    }
}

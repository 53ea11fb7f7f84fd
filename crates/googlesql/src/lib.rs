//! The GoogleSQL front end for DataFusion: users write BigQuery's dialect once, and it runs
//! locally with the same meaning, or is refused with the place and a reason.
//!
//! A statement is parsed with sqlparser's BigQuery dialect, its AST is rewritten where the
//! two engines differ — in syntax (`DATE_TRUNC(d, MONTH)`, `INTERVAL 90 DAY`, backtick
//! `project.dataset.table` names, `INT64`/`STRING` types) and in meaning (`/` divides
//! integers as FLOAT64 and NUMERIC as NUMERIC ([`functions`]), `CONCAT` is NULL when any
//! argument is, `DATE_TRUNC` of a DATE is a DATE, `EXTRACT(DAYOFWEEK ...)` counts from 1) — and the rewritten AST goes straight to
//! DataFusion's planner. Functions are allowed only from a list whose meaning is known to
//! match or is rewritten; anything else is [`Unsupported`] with its line and column, never
//! run with a different meaning.

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use sqlparser::ast::{
    BinaryOperator, CastKind, DataType, DateTimeField, ExactNumberInfo, Expr, Function,
    FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart, OrderBy,
    OrderByExpr, OrderByKind, Query, Spanned, Statement, Value, ValueWithSpan, VisitMut,
    VisitorMut, WindowType, visit_expressions_mut, visit_relations_mut,
};
use sqlparser::dialect::{BigQueryDialect, GenericDialect};
use sqlparser::parser::Parser;

pub mod functions;

use crate::functions::Divide;

/// Something the local engine cannot run with BigQuery's meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// 1-based line in the SQL text (0 when unknown).
    pub line: u64,
    /// 1-based column.
    pub column: u64,
    /// What, and what to use instead.
    pub message: String,
}

/// Why a statement could not be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrontEndError {
    /// The text is not valid GoogleSQL.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// Constructs the local engine cannot run.
    #[error("not supported by the local engine: {}", .0.iter().map(|u| format!("line {}, column {}: {}", u.line, u.column, u.message)).collect::<Vec<_>>().join("; "))]
    Unsupported(Vec<Unsupported>),
    /// DataFusion rejected the rewritten plan (unknown table or column, type error).
    #[error("{0}")]
    Plan(String),
    /// The query failed while running.
    #[error("{0}")]
    Execution(String),
}

/// Functions whose BigQuery meaning DataFusion shares, argument for argument.
const SAME_MEANING: &[&str] = &[
    "COUNT",
    "SUM",
    "AVG",
    "MIN",
    "MAX",
    "ROUND",
    "ABS",
    "FLOOR",
    "CEIL",
    "CEILING",
    "SQRT",
    "POW",
    "POWER",
    "LN",
    "EXP",
    "MOD",
    "SIGN",
    "COALESCE",
    "NULLIF",
    "LOWER",
    "UPPER",
    "TRIM",
    "LTRIM",
    "RTRIM",
    "LENGTH",
    "CHAR_LENGTH",
    "REPLACE",
    "STARTS_WITH",
    "ENDS_WITH",
    "STRPOS",
    "LPAD",
    "RPAD",
    "REVERSE",
    "ROW_NUMBER",
    "RANK",
    "DENSE_RANK",
    "PERCENT_RANK",
    "CUME_DIST",
    "NTILE",
    "LAG",
    "LEAD",
    "FIRST_VALUE",
    "LAST_VALUE",
    "STRING_AGG",
    "STDDEV",
    "STDDEV_SAMP",
    "STDDEV_POP",
    "VARIANCE",
    "VAR_SAMP",
    "VAR_POP",
    "CURRENT_DATE",
    "NOW",
];

fn function_name(name: &ObjectName) -> String {
    match name.0.last() {
        Some(ObjectNamePart::Identifier(ident)) => ident.value.to_uppercase(),
        _ => String::new(),
    }
}

fn arguments(function: &Function) -> Vec<Expr> {
    match &function.args {
        FunctionArguments::List(list) => list
            .args
            .iter()
            .filter_map(|arg| match arg {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Parses an expression written in DataFusion's (generic) SQL.
fn expr(text: &str) -> Result<Expr, String> {
    Parser::new(&GenericDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| format!("internal rewrite produced invalid SQL ({text}): {e}"))
}

/// A date part named by a bare identifier argument (`MONTH` in `DATE_TRUNC(d, MONTH)`).
fn part_name(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(ident) => Some(ident.value.to_uppercase()),
        Expr::Function(f) => Some(function_name(&f.name)),
        _ => None,
    }
}

/// DataFusion's `date_trunc` unit for a BigQuery date part.
fn trunc_unit(part: &str) -> Result<&'static str, String> {
    Ok(match part {
        "MICROSECOND" => "microsecond",
        "MILLISECOND" => "millisecond",
        "SECOND" => "second",
        "MINUTE" => "minute",
        "HOUR" => "hour",
        "DAY" => "day",
        "ISOWEEK" => "week",
        "MONTH" => "month",
        "QUARTER" => "quarter",
        "YEAR" => "year",
        "WEEK" => return Err(
            "WEEK starts on Sunday in BigQuery but on Monday locally; use ISOWEEK (Monday weeks)"
                .into(),
        ),
        other => return Err(format!("date part {other} is not supported locally")),
    })
}

/// Seconds in one unit of a BigQuery part, for differences of instants.
fn part_seconds(part: &str) -> Option<f64> {
    Some(match part {
        "MICROSECOND" => 1e-6,
        "MILLISECOND" => 1e-3,
        "SECOND" => 1.0,
        "MINUTE" => 60.0,
        "HOUR" => 3600.0,
        "DAY" => 86_400.0,
        _ => return None,
    })
}

/// The rewrite of one BigQuery function call, or why it cannot run locally.
fn rewrite_function(f: &Function) -> Result<Option<Expr>, String> {
    let name = function_name(&f.name);
    let args = arguments(f);
    let a: Vec<String> = args.iter().map(|e| format!("({e})")).collect();
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("{name} takes {n} argument(s), got {}", args.len()))
        }
    };
    let text = match name.as_str() {
        n if SAME_MEANING.contains(&n) => return Ok(None),
        "SAFE_DIVIDE" => {
            arity(2)?;
            format!("{}({}, {})", Divide::name_for(true), a[0], a[1])
        }
        "IFNULL" => {
            arity(2)?;
            format!("coalesce({}, {})", a[0], a[1])
        }
        "IF" => {
            arity(3)?;
            format!("CASE WHEN {} THEN {} ELSE {} END", a[0], a[1], a[2])
        }
        "COUNTIF" => {
            arity(1)?;
            format!("count(CASE WHEN {} THEN 1 END)", a[0])
        }
        // BigQuery's ANY_VALUE skips NULLs (NULL only when every value is); DataFusion's
        // first_value does not. MAX is one such value, and the same on every run.
        "ANY_VALUE" => {
            arity(1)?;
            format!("max({})", a[0])
        }
        // NULL when any argument is, as in BigQuery; DataFusion's skip NULLs.
        "GREATEST" | "LEAST" => {
            if args.is_empty() {
                return Err(format!("{name} needs at least one argument"));
            }
            let any_null = a
                .iter()
                .map(|x| format!("{x} IS NULL"))
                .collect::<Vec<_>>()
                .join(" OR ");
            format!(
                "CASE WHEN {any_null} THEN NULL ELSE {}({}) END",
                name.to_lowercase(),
                a.join(", ")
            )
        }
        "CONCAT" => {
            if args.is_empty() {
                return Err("CONCAT needs at least one argument".into());
            }
            a.join(" || ")
        }
        "CURRENT_TIMESTAMP" => "now()".to_string(),
        "DATE" => {
            arity(1)?;
            format!("CAST({} AS DATE)", a[0])
        }
        "TIMESTAMP" => {
            arity(1)?;
            format!("CAST({} AS TIMESTAMP)", a[0])
        }
        "REGEXP_CONTAINS" => {
            arity(2)?;
            format!("regexp_like({}, {})", a[0], a[1])
        }
        "DATE_TRUNC" | "TIMESTAMP_TRUNC" => {
            arity(2)?;
            let part = part_name(&args[1]).ok_or_else(|| {
                format!("{name} needs a date part such as MONTH as its second argument")
            })?;
            let unit = trunc_unit(&part)?;
            if name == "DATE_TRUNC" {
                format!("CAST(date_trunc('{unit}', {}) AS DATE)", a[0])
            } else {
                format!("date_trunc('{unit}', {})", a[0])
            }
        }
        "DATE_ADD" | "DATE_SUB" | "TIMESTAMP_ADD" | "TIMESTAMP_SUB" => {
            arity(2)?;
            if !matches!(args[1], Expr::Interval(_)) {
                return Err(format!(
                    "{name} needs an INTERVAL as its second argument, such as INTERVAL 7 DAY"
                ));
            }
            let op = if name.ends_with("_ADD") { "+" } else { "-" };
            format!("{} {op} {}", a[0], a[1])
        }
        "DATE_DIFF" => {
            arity(3)?;
            let part = part_name(&args[2])
                .ok_or("DATE_DIFF needs a date part such as DAY as its third argument")?;
            let (x, y) = (
                format!("CAST({} AS DATE)", a[0]),
                format!("CAST({} AS DATE)", a[1]),
            );
            match part.as_str() {
                "DAY" => format!("CAST(CAST({x} AS INT) - CAST({y} AS INT) AS BIGINT)"),
                "MONTH" => format!(
                    "CAST((date_part('year', {x}) * 12 + date_part('month', {x})) - (date_part('year', {y}) * 12 + date_part('month', {y})) AS BIGINT)"
                ),
                "YEAR" => {
                    format!("CAST(date_part('year', {x}) - date_part('year', {y}) AS BIGINT)")
                }
                other => {
                    return Err(format!(
                        "DATE_DIFF by {other} is not supported locally; use DAY, MONTH or YEAR"
                    ));
                }
            }
        }
        "TIMESTAMP_DIFF" => {
            arity(3)?;
            let part = part_name(&args[2])
                .ok_or("TIMESTAMP_DIFF needs a date part such as HOUR as its third argument")?;
            let unit = part_seconds(&part).ok_or_else(|| format!("TIMESTAMP_DIFF by {part} is not supported locally; use DAY, HOUR, MINUTE, SECOND or smaller"))?;
            format!(
                "CAST((date_part('epoch', {}) - date_part('epoch', {})) / {unit:?} AS BIGINT)",
                a[0], a[1]
            )
        }
        "FORMAT_TIMESTAMP" | "FORMAT_DATE" => {
            if args.len() == 3 {
                return Err(format!(
                    "{name} with a time zone argument is not supported locally; timestamps are UTC"
                ));
            }
            arity(2)?;
            format!("to_char({}, {})", a[1], a[0])
        }
        other => {
            return Err(format!(
                "function {other} is not supported by the local engine"
            ));
        }
    };
    let mut rewritten = expr(&text)?;
    // A window (`OVER`) or `FILTER` on the original call belongs to the rewritten one.
    match &mut rewritten {
        Expr::Function(new) => {
            new.over = f.over.clone();
            new.filter = f.filter.clone();
        }
        _ if f.over.is_some() || f.filter.is_some() => {
            return Err(format!(
                "{name} cannot be used with OVER or FILTER on the local engine"
            ));
        }
        _ => {}
    }
    Ok(Some(rewritten))
}

/// DataFusion's `date_part` name for a BigQuery `EXTRACT` part, and an offset to add.
fn extract_part(field: &DateTimeField) -> Result<(&'static str, i64), String> {
    Ok(match field {
        DateTimeField::Year => ("year", 0),
        DateTimeField::Month => ("month", 0),
        DateTimeField::Day => ("day", 0),
        DateTimeField::Hour => ("hour", 0),
        DateTimeField::Minute => ("minute", 0),
        DateTimeField::Second => ("second", 0),
        DateTimeField::Quarter => ("quarter", 0),
        DateTimeField::DayOfYear => ("doy", 0),
        // BigQuery counts Sunday as 1; DataFusion as 0.
        DateTimeField::DayOfWeek => ("dow", 1),
        DateTimeField::IsoWeek => ("week", 0),
        other => return Err(format!("EXTRACT({other}) is not supported locally")),
    })
}

/// BigQuery type names as DataFusion knows them.
fn map_type(data_type: &DataType) -> Result<DataType, String> {
    Ok(match data_type {
        DataType::Int64 | DataType::Int(_) | DataType::Integer(_) | DataType::BigInt(_) => {
            DataType::BigInt(None)
        }
        DataType::Float64 | DataType::Float(_) | DataType::Double(_) => {
            DataType::Double(ExactNumberInfo::None)
        }
        DataType::String(_) => DataType::Varchar(None),
        DataType::Bool | DataType::Boolean => DataType::Boolean,
        DataType::Numeric(_) | DataType::Decimal(_) => {
            DataType::Decimal(ExactNumberInfo::PrecisionAndScale(38, 9))
        }
        DataType::Date => DataType::Date,
        DataType::Timestamp(..) => data_type.clone(),
        other => return Err(format!("type {other} is not supported locally")),
    })
}

fn unsupported_at(e: &Expr, message: String) -> Unsupported {
    let span = e.span();
    Unsupported {
        line: span.start.line,
        column: span.start.column,
        message,
    }
}

/// BigQuery sorts NULLs first ascending and last descending; DataFusion the other way
/// round. Every ordering that does not say gets BigQuery's.
fn bigquery_null_order(order: &mut [OrderByExpr]) {
    for item in order {
        if item.options.nulls_first.is_none() {
            item.options.nulls_first = Some(item.options.asc != Some(false));
        }
    }
}

/// Applies [`bigquery_null_order`] to every query's `ORDER BY`.
struct NullOrder;

impl VisitorMut for NullOrder {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let Some(OrderBy {
            kind: OrderByKind::Expressions(order),
            ..
        }) = &mut query.order_by
        {
            bigquery_null_order(order);
        }
        ControlFlow::Continue(())
    }
}

/// Chains of one operator longer than this are rebalanced.
const LONGEST_CHAIN: usize = 32;

/// Rebuilds long `AND` / `OR` chains (`a OR b OR c ...`, parsed left-deep: as deep as they
/// are long) as balanced trees of the same operator, as deep as the logarithm of their
/// length. Both are associative in SQL's three-valued logic, so the meaning is kept; the
/// planner, which walks and re-types expression trees level by level, then plans 10,000
/// `OR` terms in time near-linear instead of quadratic. Visiting top-down, each chain is
/// taken whole at its head.
struct BalanceChains;

impl VisitorMut for BalanceChains {
    type Break = ();

    fn pre_visit_expr(&mut self, e: &mut Expr) -> ControlFlow<()> {
        let op = match e {
            Expr::BinaryOp {
                op: op @ (BinaryOperator::And | BinaryOperator::Or),
                ..
            } => op.clone(),
            _ => return ControlFlow::Continue(()),
        };
        // The chain's length and operands are walked iteratively: a chain may be far
        // deeper than a recursive walk should go.
        let mut length = 0;
        let mut walk = vec![&*e];
        while let Some(next) = walk.pop() {
            match next {
                Expr::BinaryOp {
                    left,
                    op: inner,
                    right,
                } if *inner == op => {
                    walk.push(right);
                    walk.push(left);
                }
                _ => length += 1,
            }
        }
        if length <= LONGEST_CHAIN {
            return ControlFlow::Continue(());
        }
        let mut operands = Vec::with_capacity(length);
        let mut pending = vec![std::mem::replace(e, Expr::value(Value::Null))];
        while let Some(next) = pending.pop() {
            match next {
                Expr::BinaryOp {
                    left,
                    op: inner,
                    right,
                } if inner == op => {
                    pending.push(*right);
                    pending.push(*left);
                }
                operand => operands.push(operand),
            }
        }
        *e = balanced(operands, &op);
        ControlFlow::Continue(())
    }
}

/// `operands` joined by `op` as a balanced tree.
fn balanced(mut operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if operands.len() == 1 {
        return operands.remove(0);
    }
    let right = operands.split_off(operands.len() / 2);
    Expr::BinaryOp {
        left: Box::new(balanced(operands, op)),
        op: op.clone(),
        right: Box::new(balanced(right, op)),
    }
}

/// Rewrites one expression in place (children were rewritten already).
fn rewrite_expr(e: &mut Expr) -> Result<(), String> {
    let replacement = match e {
        Expr::Function(f) => {
            if let Some(WindowType::WindowSpec(spec)) = &mut f.over {
                bigquery_null_order(&mut spec.order_by);
            }
            rewrite_function(f)?
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Divide,
            right,
        } => {
            // BigQuery's `/` gives FLOAT64 for integers, NUMERIC for NUMERIC; DataFusion
            // divides integers as integers.
            Some(expr(&format!(
                "{}({left}, {right})",
                Divide::name_for(false)
            ))?)
        }
        // BigQuery counts a negative position from the end and reads 0 as 1; DataFusion
        // (like PostgreSQL) starts before the string instead.
        Expr::Substring {
            expr: text,
            substring_from: Some(from),
            substring_for,
            ..
        } => {
            let start = format!(
                "CASE WHEN ({p}) < 0 THEN CASE WHEN character_length({t}) + ({p}) + 1 < 1 THEN 1 ELSE character_length({t}) + ({p}) + 1 END WHEN ({p}) = 0 THEN 1 ELSE ({p}) END",
                t = text,
                p = from
            );
            Some(expr(&match substring_for {
                Some(length) => format!("substr({text}, {start}, {length})"),
                None => format!("substr({text}, {start})"),
            })?)
        }
        Expr::Extract {
            field, expr: inner, ..
        } => {
            let (part, offset) = extract_part(field)?;
            Some(expr(&format!(
                "CAST(date_part('{part}', {inner}) AS BIGINT) + {offset}"
            ))?)
        }
        Expr::Interval(interval) => {
            if let Expr::Value(ValueWithSpan {
                value: Value::Number(n, _),
                ..
            }) = interval.value.as_ref()
            {
                let unit = interval
                    .leading_field
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                Some(expr(&format!("INTERVAL '{n} {unit}'"))?)
            } else {
                None
            }
        }
        Expr::Cast {
            kind, data_type, ..
        } => {
            *data_type = map_type(data_type)?;
            if *kind == CastKind::SafeCast {
                *kind = CastKind::TryCast;
            }
            None
        }
        _ => None,
    };
    if let Some(new) = replacement {
        *e = new;
    }
    Ok(())
}

/// `project.dataset.table` in one backtick-quoted identifier becomes three parts; every
/// part is quoted so BigQuery's case-sensitive table names keep their case.
fn split_table_name(name: &mut ObjectName) {
    let parts: Vec<Ident> = name
        .0
        .iter()
        .flat_map(|part| match part {
            ObjectNamePart::Identifier(ident) if ident.quote_style == Some('`') => ident
                .value
                .split('.')
                .map(|p| Ident::with_quote('"', p))
                .collect(),
            ObjectNamePart::Identifier(ident) => vec![ident.clone()],
            ObjectNamePart::Function(_) => Vec::new(),
        })
        .collect();
    *name = ObjectName::from(parts);
}

/// The line and column a sqlparser error message names (`... at Line: 3, Column: 7`), or
/// the start of the text.
pub fn error_position(message: &str) -> (usize, usize) {
    let number_after = |label: &str| -> Option<usize> {
        let rest = &message[message.rfind(label)? + label.len()..];
        rest.trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    match (number_after("Line:"), number_after("Column:")) {
        (Some(line), Some(column)) => (line, column),
        _ => (1, 1),
    }
}

/// The most binary operators a statement may chain (`AND` and `OR` count once, arithmetic
/// and `||` twice): parsing, rewriting and planning recurse once per operator, and 10,000
/// `OR` terms run within the stack mailroom gives its threads.
pub const MAX_OPERATORS: usize = 10_000;

/// Binary operators in `sql`, counted on its words and symbols (outside quotes, roughly):
/// enough to refuse a statement too long to plan before it is parsed.
fn operator_count(sql: &str) -> usize {
    let mut count = 0;
    let mut word = String::new();
    let mut previous_word = String::new();
    let mut previous = ' ';
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' | '`' => quote = Some(c),
            // `*` alone (`SELECT *`, `COUNT(*)`, `t.*`) selects; it is no operator.
            '*' if matches!(previous, '(' | ',' | '.')
                || (previous.is_ascii_alphabetic()
                    && word.is_empty()
                    && previous_word == "SELECT") => {}
            // Arithmetic nests deeper than a boolean chain: it counts twice.
            '+' | '-' | '*' | '/' | '|' => count += 2,
            _ => {}
        }
        if c.is_ascii_alphabetic() {
            word.push(c.to_ascii_uppercase());
        } else {
            if word == "AND" || word == "OR" {
                count += 1;
            }
            if !word.is_empty() {
                previous_word = std::mem::take(&mut word);
            }
        }
        if !c.is_whitespace() {
            previous = c;
        }
    }
    if word == "AND" || word == "OR" {
        count += 1;
    }
    count
}

/// Parses GoogleSQL text into statements.
pub fn parse(sql: &str) -> Result<Vec<Statement>, FrontEndError> {
    let operators = operator_count(sql);
    if operators > MAX_OPERATORS {
        return Err(FrontEndError::Unsupported(vec![Unsupported {
            line: 1,
            column: 1,
            message: format!(
                "the statement chains {operators} operators; at most {MAX_OPERATORS} can be planned (put long lists of values in a table or an IN (...) list)"
            ),
        }]));
    }
    Parser::parse_sql(&BigQueryDialect {}, sql).map_err(|e| FrontEndError::Syntax(e.to_string()))
}

/// The tables a statement names (the last part of each name, as written; CTE names too):
/// a caller registers only those, so a query never opens tables it does not read. Empty
/// when the text does not parse (running it then reports why).
pub fn referenced_tables(sql: &str) -> Vec<String> {
    let Ok(mut statements) = parse(sql) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    for statement in &mut statements {
        let _ = visit_relations_mut(statement, |name| {
            split_table_name(name);
            if let Some(ObjectNamePart::Identifier(ident)) = name.0.last() {
                names.push(ident.value.clone());
            }
            ControlFlow::<()>::Continue(())
        });
    }
    names.sort();
    names.dedup();
    names
}

/// Rewrites a statement for DataFusion; every construct that cannot keep its meaning is
/// reported.
pub fn rewrite(statement: &mut Statement) -> Result<(), Vec<Unsupported>> {
    if !matches!(statement, Statement::Query(_)) {
        // sqlparser leaves most non-query statements without a span: the start of the
        // text then, and the statement's first words say which one it was.
        let span = statement.span();
        let (line, column) = if span.start.line == 0 {
            (1, 1)
        } else {
            (span.start.line, span.start.column)
        };
        let text = statement.to_string();
        let kind: Vec<&str> = text.split_whitespace().take(2).collect();
        return Err(vec![Unsupported {
            line,
            column,
            message: format!(
                "only queries (SELECT ... / WITH ...) run on the local engine, not {}",
                kind.join(" ")
            ),
        }]);
    }
    let mut problems = Vec::new();
    // First, so every later walk goes down balanced trees.
    let _ = statement.visit(&mut BalanceChains);
    let _ = statement.visit(&mut NullOrder);
    let _ = visit_relations_mut(statement, |name| {
        split_table_name(name);
        ControlFlow::<()>::Continue(())
    });
    // A refused expression is left as it was, so its place is read after the refusal:
    // cloning every expression first would copy each long chain's tail once per operator.
    let _ = visit_expressions_mut(statement, |e| {
        if let Err(message) = rewrite_expr(e) {
            problems.push(unsupported_at(e, message));
        }
        ControlFlow::<()>::Continue(())
    });
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Problems `mailroom check` reports for a SQL text: syntax errors and unsupported constructs.
pub fn check(sql: &str) -> Result<(), FrontEndError> {
    for mut statement in parse(sql)? {
        rewrite(&mut statement).map_err(FrontEndError::Unsupported)?;
    }
    Ok(())
}

/// Runs one GoogleSQL query on `ctx` and collects its schema and batches (the schema is
/// known even when no row comes back).
pub async fn run(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), FrontEndError> {
    let mut statements = parse(sql)?;
    if statements.len() != 1 {
        return Err(FrontEndError::Syntax(format!(
            "expected one statement, found {}",
            statements.len()
        )));
    }
    let mut statement = statements.remove(0);
    rewrite(&mut statement).map_err(FrontEndError::Unsupported)?;
    functions::register(ctx);
    let state = ctx.state();
    let plan = state
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            statement,
        )))
        .await
        .map_err(|e| FrontEndError::Plan(e.strip_backtrace()))?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| FrontEndError::Plan(e.strip_backtrace()))?;
    let planned: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame
        .collect()
        .await
        .map_err(|e| FrontEndError::Execution(e.strip_backtrace()))?;
    // The rows' own schema is the truth: a plan can still call a column NULL-typed (a
    // `NULL AS x` first branch of a UNION) whose rows are FLOAT64.
    let schema = batches.first().map_or(planned, RecordBatch::schema);
    Ok((schema, batches))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::util::pretty::pretty_format_batches;

    async fn ctx() -> SessionContext {
        let ctx = SessionContext::new();
        ctx.sql(
            "CREATE TABLE orders AS VALUES
               (1, 'ana@example.com', CAST('2026-10-20T10:00:00' AS TIMESTAMP), 84.9, 3),
               (2, 'ana@example.com', CAST('2026-05-02T08:30:00' AS TIMESTAMP), 12.5, 1),
               (3, 'ben@example.com', CAST('2025-12-31T23:00:00' AS TIMESTAMP), 200.0, 0)",
        )
        .await
        .expect("create")
        .collect()
        .await
        .expect("created");
        ctx
    }

    #[test]
    fn long_or_chains_are_balanced_and_keep_their_rows() {
        let expected: Vec<String> = (0..100).map(|i| format!("x = {i}")).collect();
        let mut statements =
            parse(&format!("SELECT 1 FROM t WHERE {}", expected.join(" OR "))).expect("parses");
        rewrite(&mut statements[0]).expect("rewrites");
        let Statement::Query(query) = &statements[0] else {
            panic!("a query")
        };
        let sqlparser::ast::SetExpr::Select(select) = query.body.as_ref() else {
            panic!("a select")
        };
        fn depth(e: &Expr) -> usize {
            match e {
                Expr::BinaryOp { left, right, .. } => 1 + depth(left).max(depth(right)),
                _ => 0,
            }
        }
        let condition = select.selection.as_ref().expect("a WHERE");
        assert_eq!(
            depth(condition),
            8,
            "100 operands in a tree 7 levels deep (plus the =)"
        );
        // The same 100 terms, in the same order.
        fn terms(e: &Expr, out: &mut Vec<String>) {
            match e {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Or,
                    right,
                } => {
                    terms(left, out);
                    terms(right, out);
                }
                other => out.push(other.to_string()),
            }
        }
        let mut found = Vec::new();
        terms(condition, &mut found);
        assert_eq!(found, expected);
    }

    #[tokio::test]
    async fn a_balanced_chain_finds_the_same_rows() {
        let ors: Vec<String> = (0..200).map(|i| format!("column1 = {i}")).collect();
        let sql = format!(
            "SELECT column1 FROM orders WHERE ({}) AND NOT (column1 = 2 AND {}) ORDER BY column1",
            ors.join(" OR "),
            vec!["column1 > 0"; 40].join(" AND ")
        );
        assert_eq!(
            rows(&sql).await,
            rows("SELECT column1 FROM orders WHERE column1 IN (1, 3) ORDER BY column1").await
        );
    }

    #[test]
    fn a_star_that_selects_is_not_counted_as_an_operator() {
        assert_eq!(operator_count("SELECT *, COUNT(*), t.* FROM t"), 0);
        assert_eq!(operator_count("SELECT a * b FROM t WHERE x OR y"), 3);
        assert_eq!(operator_count("SELECT 'a OR b' AS x"), 0);
    }

    #[test]
    fn referenced_tables_names_every_relation_once_and_nothing_for_select_1() {
        let sql = "WITH recent AS (SELECT * FROM `proj.ds.orders`) \
                   SELECT * FROM recent JOIN customers USING (id) \
                   WHERE id IN (SELECT id FROM orders)";
        assert_eq!(
            referenced_tables(sql),
            vec!["customers", "orders", "recent"]
        );
        assert!(referenced_tables("SELECT 1").is_empty());
        assert!(referenced_tables("SELEC nonsense FROM").is_empty());
    }

    async fn rows(sql: &str) -> String {
        let (_, batches) = run(&ctx().await, sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        pretty_format_batches(&batches).expect("format").to_string()
    }

    fn only_line(table: &str, row: usize) -> Vec<String> {
        let line = table
            .lines()
            .filter(|l| l.starts_with("| "))
            .nth(row + 1)
            .unwrap_or_default()
            .to_string();
        line.split('|')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[tokio::test]
    async fn division_is_always_float_and_safe_divide_gives_null_on_zero() {
        let t = rows(
            "SELECT 7 / 2 AS half, SAFE_DIVIDE(1, 0) IS NULL AS safe, SAFE_DIVIDE(3, 2) AS ratio",
        )
        .await;
        assert_eq!(only_line(&t, 0), ["3.5", "true", "1.5"], "{t}");
    }

    #[tokio::test]
    async fn numeric_division_stays_numeric_and_zero_divisors_fail() {
        let t = rows("SELECT CAST('10' AS NUMERIC) / 4 AS n, SAFE_DIVIDE(CAST('1' AS NUMERIC), 0) IS NULL AS s").await;
        assert_eq!(only_line(&t, 0), ["2.500000000", "true"], "{t}");
        let err = run(&ctx().await, "SELECT column5 / 0 FROM orders")
            .await
            .expect_err("division by zero");
        assert!(err.to_string().contains("division by zero"), "{err}");
    }

    #[tokio::test]
    async fn nulls_sort_first_ascending_and_last_descending_as_in_bigquery() {
        let t = rows("SELECT column5 AS x FROM (SELECT column5 FROM orders UNION ALL SELECT CAST(NULL AS BIGINT)) ORDER BY x").await;
        assert_eq!(only_line(&t, 0), Vec::<String>::new(), "NULL first: {t}");
        let t = rows("SELECT column5 AS x FROM (SELECT column5 FROM orders UNION ALL SELECT CAST(NULL AS BIGINT)) ORDER BY x DESC").await;
        assert_eq!(only_line(&t, 0), ["3"], "{t}");
        let t = rows("SELECT ROW_NUMBER() OVER (ORDER BY x) AS n, x FROM (SELECT column5 AS x FROM orders UNION ALL SELECT CAST(NULL AS BIGINT)) ORDER BY n").await;
        assert_eq!(
            only_line(&t, 0),
            ["1"],
            "the window numbers NULL first: {t}"
        );
    }

    #[tokio::test]
    async fn conditional_and_null_functions_keep_bigquery_meaning() {
        let t = rows("SELECT SUBSTR('mailroom', -4) AS a, SUBSTR('mailroom', 0, 4) AS b, SUBSTR('mailroom', -20, 2) AS c, SUBSTR('mailroom', 5) AS d").await;
        assert_eq!(
            only_line(&t, 0),
            ["room", "mail", "ma", "room"],
            "SUBSTR positions as BigQuery reads them: {t}"
        );
        let t = rows("SELECT GREATEST(1, NULL) IS NULL AS g, LEAST(3, 2) AS l, ANY_VALUE(x) AS a FROM (SELECT CAST(NULL AS BIGINT) AS x UNION ALL SELECT 5)").await;
        assert_eq!(
            only_line(&t, 0),
            ["true", "2", "5"],
            "GREATEST is NULL with a NULL argument; ANY_VALUE skips NULLs: {t}"
        );
        let t = rows("SELECT IF(column5 > 0, 'yes', 'no') AS i, IFNULL(NULL, 'x') AS n, CONCAT('a', NULL) IS NULL AS c, COUNTIF(column5 > 0) OVER () AS k FROM orders WHERE column1 = 1").await;
        assert_eq!(
            only_line(&t, 0),
            ["yes", "x", "true", "1"],
            "the window counts the rows WHERE kept: {t}"
        );
    }

    #[tokio::test]
    async fn dates_truncate_shift_and_differ_like_bigquery() {
        let sql = "SELECT DATE_TRUNC(DATE '2026-10-20', MONTH) AS m,
                          TIMESTAMP_SUB(TIMESTAMP '2026-10-20 10:00:00', INTERVAL 90 DAY) AS s,
                          DATE_DIFF(DATE '2026-10-20', DATE '2026-05-02', DAY) AS d,
                          DATE_DIFF(DATE '2026-10-20', DATE '2025-12-31', MONTH) AS mo,
                          TIMESTAMP_DIFF(TIMESTAMP '2026-10-20 10:00:00', TIMESTAMP '2026-10-19 09:30:00', HOUR) AS h,
                          EXTRACT(DAYOFWEEK FROM DATE '2026-11-22') AS dow,
                          FORMAT_DATE('%Y-%m', DATE '2026-10-20') AS f";
        let t = rows(sql).await;
        assert_eq!(
            only_line(&t, 0),
            [
                "2026-10-01",
                "2026-07-22T10:00:00",
                "171",
                "10",
                "24",
                "1",
                "2026-10"
            ],
            "{t}"
        );
    }

    #[test]
    fn unsupported_constructs_are_reported_with_their_place() {
        let err = check("SELECT\n  SOUNDEX(name),\n  DATE_TRUNC(d, WEEK)\nFROM t")
            .expect_err("unsupported");
        let FrontEndError::Unsupported(problems) = err else {
            panic!("{err}")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert_eq!((problems[0].line, problems[0].column), (2, 3));
        assert!(problems[0].message.contains("SOUNDEX"));
        assert_eq!(problems[1].line, 3);
        assert!(problems[1].message.contains("ISOWEEK"));
        assert!(matches!(
            check("DELETE FROM t WHERE x = 1"),
            Err(FrontEndError::Unsupported(_))
        ));
        assert!(matches!(check("SELEC 1"), Err(FrontEndError::Syntax(_))));
    }

    #[test]
    fn backtick_table_paths_split_into_catalog_schema_and_table() {
        let mut statements =
            parse("SELECT * FROM `sandbox-project.mailroom.orders` o").expect("parse");
        rewrite(&mut statements[0]).expect("rewrite");
        let text = statements[0].to_string();
        assert!(
            text.contains("sandbox-project")
                && text.contains("mailroom")
                && text.contains("orders"),
            "{text}"
        );
        assert!(!text.contains('`'), "{text}");
    }
}

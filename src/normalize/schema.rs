//! Declared tables: each column's name, Arrow type, nullability and where its value comes
//! from in a source record; the table's key, write disposition and cursor.
//!
//! Source modules declare their tables with these types; the decoder follows the
//! declaration and never guesses. Every table also gets the two run columns
//! (`_mailroom_run_id`, `_mailroom_extracted_at`), added here so no source can forget them.

use std::borrow::Cow;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Name of the column holding the id of the run that loaded a row.
pub const RUN_ID_COLUMN: &str = "_mailroom_run_id";
/// Name of the column holding when the row was extracted (UTC).
pub const EXTRACTED_AT_COLUMN: &str = "_mailroom_extracted_at";
/// Decimal precision of money columns; the same as BigQuery's `NUMERIC`.
pub const MONEY_PRECISION: u8 = 38;
/// Decimal scale of money columns; the same as BigQuery's `NUMERIC`.
pub const MONEY_SCALE: i8 = 9;

/// A column's type in the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// True or false.
    Boolean,
    /// A 64-bit integer.
    Int64,
    /// A 64-bit float (rates, scores).
    Float64,
    /// UTF-8 text.
    Text,
    /// An instant, stored as microseconds since the epoch in UTC.
    Timestamp,
    /// A calendar date.
    Date,
    /// Money: a decimal with [`MONEY_PRECISION`] digits, [`MONEY_SCALE`] after the point.
    Money,
}

impl ColumnType {
    /// The Arrow type columns of this type have.
    pub fn arrow(self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Text => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Date => DataType::Date32,
            ColumnType::Money => DataType::Decimal128(MONEY_PRECISION, MONEY_SCALE),
        }
    }

    /// The name used in messages.
    pub fn describe(self) -> &'static str {
        match self {
            ColumnType::Boolean => "a boolean",
            ColumnType::Int64 => "an integer",
            ColumnType::Float64 => "a number",
            ColumnType::Text => "a string",
            ColumnType::Timestamp => "a date-time",
            ColumnType::Date => "a date (YYYY-MM-DD)",
            ColumnType::Money => "a decimal amount",
        }
    }
}

/// How a field's raw value is read before it is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convert {
    /// As the column's type says; a string for a number column is an error.
    Plain,
    /// A number or a string of digits (Shopify's `UnsignedInt64`, CSV cells).
    NumberOrText,
    /// Epoch milliseconds (Iterable).
    EpochMillis,
    /// The number at the end of a Shopify global id (`gid://shopify/Order/5512340011`).
    GidNumber,
    /// A date whose year 1004 means "day and month only" (Smile): such dates are null.
    DateYear1004,
    /// A money string that may carry a currency symbol and thousands separators.
    LenientMoney,
    /// A string where the literal text `"null"` means null (SmartrMail's `phone`).
    NullText,
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ValueFrom {
    /// A field of the record: a dotted path into nested objects (JSON) or a header (CSV).
    Field(Cow<'static, str>, Convert),
    /// The lower-cased, trimmed text of another column's field (`email_normalized`).
    Lowercase(&'static str),
    /// The month (1–12) of another column's `YYYY-MM-DD` field, whatever its year.
    MonthOf(&'static str),
    /// The day of the month of another column's `YYYY-MM-DD` field, whatever its year.
    DayOf(&'static str),
    /// One column divided by another; null when the divisor is zero or null.
    Ratio(&'static str, &'static str),
    /// The same text on every row (the platform of a campaign).
    Constant(&'static str),
    /// Always null: the source does not report it (Iterable has no campaign subject).
    Absent,
    /// A column of the parent record (child tables).
    Parent(&'static str),
    /// The UTC date of the run's scheduled time (daily snapshots).
    RunDate,
}

/// One column of a table.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column's name.
    pub name: Cow<'static, str>,
    /// Its type.
    pub kind: ColumnType,
    /// Whether it may be null; a record without a value for a non-null column is quarantined.
    pub nullable: bool,
    /// Where its value comes from.
    pub from: ValueFrom,
}

impl Column {
    /// A nullable column read from the field `path` as its type says.
    pub fn field(name: &'static str, kind: ColumnType, path: &'static str) -> Self {
        Column {
            name: Cow::Borrowed(name),
            kind,
            nullable: true,
            from: ValueFrom::Field(Cow::Borrowed(path), Convert::Plain),
        }
    }

    /// A nullable column read from the field of the same name.
    pub fn named(name: &'static str, kind: ColumnType) -> Self {
        Column::field(name, kind, name)
    }

    /// A nullable column computed from `from`.
    pub fn derived(name: &'static str, kind: ColumnType, from: ValueFrom) -> Self {
        Column {
            name: Cow::Borrowed(name),
            kind,
            nullable: true,
            from,
        }
    }

    /// The same column, required.
    pub fn required(mut self) -> Self {
        self.nullable = false;
        self
    }

    /// The same column, read with `convert`.
    pub fn convert(mut self, convert: Convert) -> Self {
        if let ValueFrom::Field(_, c) = &mut self.from {
            *c = convert;
        }
        self
    }

    /// The field path it is read from, if it is read from one.
    pub fn path(&self) -> Option<&str> {
        match &self.from {
            ValueFrom::Field(path, _) => Some(path),
            _ => None,
        }
    }
}

/// How a load changes its table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteDisposition {
    /// Rows are added.
    Append,
    /// The table becomes exactly the loaded rows.
    Replace,
    /// Rows replace those with the same key; others are added. One row per key, always.
    Merge,
}

impl WriteDisposition {
    /// The name used in config, logs and docs.
    pub fn as_str(&self) -> &'static str {
        match self {
            WriteDisposition::Append => "append",
            WriteDisposition::Replace => "replace",
            WriteDisposition::Merge => "merge",
        }
    }
}

/// What happens to a field a table's declaration does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SchemaPolicy {
    /// Reported once per run and not stored.
    #[default]
    Fixed,
    /// Reported once per run and added as a nullable column (top-level scalars only).
    Evolve,
}

/// Nested records stored in a table of their own, keyed by their parent.
#[derive(Debug, Clone, PartialEq)]
pub struct ChildTable {
    /// The dotted path of the array in the parent record.
    pub path: &'static str,
    /// The child table; its `Parent` columns name parent columns.
    pub table: Arc<TableSchema>,
}

/// Whether `name` works as a column name in every warehouse: letters, digits and
/// underscores, starting with a letter or underscore, at most 300 characters (BigQuery's
/// rule, the strictest), and not one of mailroom's own `_mailroom_` columns.
pub fn portable_column_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 300
        && !name.starts_with("_mailroom_")
}

/// A declared table.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSchema {
    /// The table's name in the warehouse.
    pub name: &'static str,
    /// Its columns, without the run columns.
    pub columns: Vec<Column>,
    /// The primary key's columns (empty for append-only tables).
    pub key: Vec<&'static str>,
    /// How loads change it.
    pub disposition: WriteDisposition,
    /// The column whose greatest value is the stream's cursor, if it is incremental.
    pub cursor: Option<&'static str>,
    /// Dotted paths of fields the source sends that are deliberately not stored; they are
    /// not reported as new. `path.*` skips every field of that object not declared.
    pub ignored: Vec<&'static str>,
    /// Nested arrays stored as child tables.
    pub children: Vec<ChildTable>,
}

impl TableSchema {
    /// Every column's name as stored, run columns included, in order.
    pub fn column_names(&self) -> Vec<String> {
        self.arrow_schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    }

    /// A table with these columns, appended to, with no key, cursor or children.
    pub fn new(name: &'static str, columns: Vec<Column>) -> Self {
        TableSchema {
            name,
            columns,
            key: Vec::new(),
            disposition: WriteDisposition::Append,
            cursor: None,
            ignored: Vec::new(),
            children: Vec::new(),
        }
    }

    /// The same table, merged on `key`.
    pub fn merge_on(mut self, key: &[&'static str]) -> Self {
        self.key = key.to_vec();
        self.disposition = WriteDisposition::Merge;
        self
    }

    /// The same table, replaced by every load.
    pub fn replaced(mut self) -> Self {
        self.disposition = WriteDisposition::Replace;
        self
    }

    /// The same table, incremental on `column`.
    pub fn cursor(mut self, column: &'static str) -> Self {
        self.cursor = Some(column);
        self
    }

    /// The same table, with fields the source sends that are not stored.
    pub fn ignoring(mut self, paths: &[&'static str]) -> Self {
        self.ignored.extend_from_slice(paths);
        self
    }

    /// The same table, with the array at `path` stored in `child`.
    pub fn child(mut self, path: &'static str, child: TableSchema) -> Self {
        self.children.push(ChildTable {
            path,
            table: Arc::new(child),
        });
        self
    }

    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The Arrow schema of the table's batches: its columns, then the run columns.
    pub fn arrow_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c.name.as_ref(), c.kind.arrow(), c.nullable))
            .collect();
        fields.push(Field::new(RUN_ID_COLUMN, DataType::Utf8, false));
        fields.push(Field::new(
            EXTRACTED_AT_COLUMN,
            ColumnType::Timestamp.arrow(),
            false,
        ));
        Arc::new(Schema::new(fields))
    }

    /// Checks the declaration itself: keys, cursor and derivations name real columns, and
    /// names are unique. A failure is a bug in mailroom, reported at start-up by tests.
    pub fn validate(&self) -> Result<(), String> {
        let mut seen = std::collections::HashSet::new();
        for column in &self.columns {
            if !seen.insert(column.name.as_ref()) {
                return Err(format!("{}: column {} twice", self.name, column.name));
            }
        }
        let known = |name: &str| self.column(name).is_some();
        for name in self.key.iter().chain(self.cursor.iter()) {
            if !known(name) {
                return Err(format!(
                    "{}: key or cursor column {name} is not declared",
                    self.name
                ));
            }
        }
        for column in &self.columns {
            let refers = match &column.from {
                ValueFrom::Lowercase(c) | ValueFrom::MonthOf(c) | ValueFrom::DayOf(c) => vec![*c],
                ValueFrom::Ratio(a, b) => vec![*a, *b],
                _ => vec![],
            };
            if let Some(missing) = refers.iter().find(|c| !known(c)) {
                return Err(format!(
                    "{}: column {} derives from undeclared column {missing}",
                    self.name, column.name
                ));
            }
        }
        for child in &self.children {
            for column in &child.table.columns {
                if let ValueFrom::Parent(parent) = &column.from
                    && !known(parent)
                {
                    return Err(format!(
                        "{}: child column {} names undeclared parent column {parent}",
                        child.table.name, column.name
                    ));
                }
            }
            child.table.validate()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_gets_the_run_columns() {
        let table = TableSchema::new("t", vec![Column::named("id", ColumnType::Int64).required()]);
        let schema = table.arrow_schema();
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["id", RUN_ID_COLUMN, EXTRACTED_AT_COLUMN]);
        assert!(!schema.field(0).is_nullable());
    }

    #[test]
    fn validation_names_undeclared_columns() {
        let table =
            TableSchema::new("t", vec![Column::named("id", ColumnType::Int64)]).merge_on(&["uid"]);
        assert_eq!(
            table.validate().unwrap_err(),
            "t: key or cursor column uid is not declared"
        );
        let ratio = TableSchema::new(
            "t",
            vec![Column::derived(
                "rate",
                ColumnType::Float64,
                ValueFrom::Ratio("opens", "sent"),
            )],
        );
        assert!(
            ratio
                .validate()
                .unwrap_err()
                .contains("undeclared column opens")
        );
    }
}

//! Source records → Arrow record batches, following a [`TableSchema`].
//!
//! JSON records are read in one pass by a serde visitor that walks the declared field tree
//! and writes each value into its column's slot: no per-record map is built, strings are
//! borrowed from the page when they have no escapes, and nested arrays (Shopify line items)
//! are kept as raw JSON and decoded into their child table. A record that does not fit is
//! quarantined with the reason and the decoder goes on; a field the declaration does not know
//! is reported once per run and, under [`SchemaPolicy::Evolve`], added as a nullable column.
//! The visitor is in [`super::visit`], the column builders in [`super::builder`].

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::BuildHasherDefault;
use std::sync::Arc;

use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use serde::de::DeserializeSeed;
use serde_json::value::RawValue;

use super::RunStamp;
use super::builder::ColumnBuilder;
use super::quarantine::Quarantined;
use super::schema::{
    Column, ColumnType, Convert, SchemaPolicy, TableSchema, ValueFrom, portable_column_name,
};
use super::value::{Cell, Typed, convert, days_since_epoch, parse_date};
use super::visit::{FieldPath, RecordState, Walk};

/// Rows per batch handed to the sink.
pub const BATCH_ROWS: usize = 8192;

/// Decodes one table's records (and its child tables') into batches.
pub struct Decoder {
    table: TableSchema,
    schema: SchemaRef,
    policy: SchemaPolicy,
    stamp: Arc<RunStamp>,
    tree: Node,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    children: Vec<ChildDecoder>,
    quarantined: Vec<Quarantined>,
    reported: HashSet<String>,
    new_fields: Vec<String>,
    cursor_column: Option<usize>,
    cursor_max: Option<i64>,
    records: u64,
    /// For each column, the columns it derives from (`usize::MAX`: none).
    refs: Vec<[usize; 2]>,
}

struct ChildDecoder {
    /// For each child column, the parent column it copies (if it is a `Parent` column).
    parent_columns: Vec<Option<usize>>,
    decoder: Decoder,
}

/// Where a field path leads.
#[derive(Debug)]
pub(super) enum Slot {
    Column(usize),
    Object(Node),
    Child(usize),
    Ignored,
}

/// FNV-1a for the field tree: it holds only our declared names and lookups never insert, so
/// keys a source sends cannot crowd it, and a simple hash beats SipHash on the hot path of
/// every key of every record.
#[derive(Default)]
pub(super) struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for byte in bytes {
            hash = (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = hash;
    }
}

/// One object level of a table's field tree.
#[derive(Debug, Default)]
pub(super) struct Node {
    pub(super) fields: HashMap<String, Slot, BuildHasherDefault<Fnv>>,
    /// Keys not in `fields` are skipped without being reported (an ignored `path.*`).
    pub(super) open: bool,
}

impl Node {
    fn insert(&mut self, path: &str, slot: Slot) {
        match path.split_once('.') {
            None if path == "*" => self.open = true,
            None => {
                self.fields.insert(path.to_string(), slot);
            }
            Some((head, rest)) => {
                let entry = self
                    .fields
                    .entry(head.to_string())
                    .or_insert_with(|| Slot::Object(Node::default()));
                if let Slot::Object(node) = entry {
                    node.insert(rest, slot);
                }
            }
        }
    }
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("table", &self.table.name)
            .field("rows", &self.rows)
            .finish()
    }
}

impl Decoder {
    /// A decoder for `table`'s records, stamping rows with `stamp`.
    pub fn new(table: &TableSchema, policy: SchemaPolicy, stamp: Arc<RunStamp>) -> Self {
        let mut tree = Node::default();
        for (i, column) in table.columns.iter().enumerate() {
            if let Some(path) = column.path() {
                tree.insert(path, Slot::Column(i));
            }
        }
        for path in &table.ignored {
            tree.insert(path, Slot::Ignored);
        }
        let children = table
            .children
            .iter()
            .enumerate()
            .map(|(i, child)| {
                tree.insert(child.path, Slot::Child(table.columns.len() + i));
                let parent_columns = child
                    .table
                    .columns
                    .iter()
                    .map(|c| match &c.from {
                        ValueFrom::Parent(name) => {
                            table.columns.iter().position(|p| p.name == *name)
                        }
                        _ => None,
                    })
                    .collect();
                ChildDecoder {
                    parent_columns,
                    decoder: Decoder::new(&child.table, policy, stamp.clone()),
                }
            })
            .collect();
        Decoder {
            schema: table.arrow_schema(),
            builders: table
                .columns
                .iter()
                .map(|c| ColumnBuilder::new(c.kind))
                .collect(),
            cursor_column: table
                .cursor
                .and_then(|name| table.columns.iter().position(|c| c.name == name))
                .filter(|&i| table.columns[i].kind == ColumnType::Timestamp),
            table: table.clone(),
            policy,
            stamp,
            tree,
            rows: 0,
            children,
            quarantined: Vec::new(),
            reported: HashSet::new(),
            new_fields: Vec::new(),
            cursor_max: None,
            records: 0,
            refs: derivation_refs(&table.columns),
        }
    }

    /// The table as declared, plus any columns added under [`SchemaPolicy::Evolve`].
    pub fn table(&self) -> &TableSchema {
        &self.table
    }

    /// Rows waiting in the current batch.
    pub fn pending_rows(&self) -> usize {
        self.rows
    }

    /// Records accepted so far (this table only).
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The greatest value of the table's timestamp cursor column seen so far (UTC micros).
    pub fn cursor_max(&self) -> Option<i64> {
        self.cursor_max
    }

    /// Decodes one JSON record; a record that does not fit is quarantined.
    pub fn push_json(&mut self, raw: &str) {
        self.push_json_with_parent(raw, &[]);
    }

    fn push_json_with_parent(&mut self, raw: &str, parent: &[Typed<'_>]) {
        let mut record = RecordState {
            cells: vec![Cell::Missing; self.table.columns.len() + self.children.len()],
            unknown: Vec::new(),
            problem: None,
        };
        let walk = Walk {
            node: &self.tree,
            prefix: &FieldPath::Top,
            state: &mut record,
        };
        let mut deserializer = serde_json::Deserializer::from_str(raw);
        let read = walk
            .deserialize(&mut deserializer)
            .and_then(|()| deserializer.end());
        if let Err(err) = read {
            let reason = record
                .problem
                .take()
                .unwrap_or_else(|| format!("not valid JSON: {err}"));
            self.reject(raw, reason);
            return;
        }
        let RecordState { cells, unknown, .. } = record;
        let unknown = self.note_unknown(unknown);
        self.accept(cells, unknown, parent, || raw.to_string());
    }

    /// Types a record's cells, checks them and appends the row; else quarantines it.
    fn accept<'a>(
        &mut self,
        mut cells: Vec<Cell<'a>>,
        extra: Vec<(usize, Cell<'a>)>,
        parent: &[Typed<'_>],
        raw: impl FnOnce() -> String,
    ) {
        // New columns sit after the declared ones, before the children's raw arrays.
        for (i, cell) in extra {
            cells.insert(i.min(cells.len()), cell);
        }
        let typed = match self.type_row(&mut cells, parent) {
            Ok(typed) => typed,
            Err(reason) => {
                self.reject_with(raw(), reason);
                return;
            }
        };
        for (builder, value) in self.builders.iter_mut().zip(&typed) {
            builder.append(value);
        }
        if let Some(Typed::Micros(t)) = self.cursor_column.map(|i| &typed[i]) {
            self.cursor_max = Some(self.cursor_max.map_or(*t, |m| m.max(*t)));
        }
        self.rows += 1;
        self.records += 1;
        let columns = self.table.columns.len();
        for (i, child) in self.children.iter_mut().enumerate() {
            let Some(Cell::Raw(array)) = cells.get(columns + i) else {
                continue;
            };
            let parent_values: Vec<Typed<'_>> = child
                .parent_columns
                .iter()
                .map(|p| p.map_or(Typed::Null, |p| typed[p].clone()))
                .collect();
            match serde_json::from_str::<Vec<&RawValue>>(array.get()) {
                Ok(items) => {
                    for item in items {
                        child
                            .decoder
                            .push_json_with_parent(item.get(), &parent_values);
                    }
                }
                Err(err) => child.decoder.reject(
                    array.get(),
                    format!(
                        "field `{}`: expected an array: {err}",
                        self.table.children[i].path
                    ),
                ),
            }
        }
    }

    /// The row's typed values in column order, or why it does not fit.
    fn type_row<'a>(
        &self,
        cells: &mut [Cell<'a>],
        parent: &[Typed<'_>],
    ) -> Result<Vec<Typed<'a>>, String> {
        let columns = &self.table.columns;
        let mut typed = vec![Typed::Null; columns.len()];
        // Values derived from other fields' text come first, before those cells are typed.
        for (i, column) in columns.iter().enumerate() {
            let source_text = || cells.get(self.refs[i][0]).and_then(Cell::text);
            typed[i] = match &column.from {
                ValueFrom::Lowercase(_) => source_text().map_or(Typed::Null, |t| {
                    Typed::Text(Cow::Owned(t.trim().to_lowercase()))
                }),
                ValueFrom::MonthOf(_) => {
                    source_text().and_then(parse_date).map_or(Typed::Null, |d| {
                        Typed::Int(chrono::Datelike::month(&d).into())
                    })
                }
                ValueFrom::DayOf(_) => {
                    source_text().and_then(parse_date).map_or(Typed::Null, |d| {
                        Typed::Int(chrono::Datelike::day(&d).into())
                    })
                }
                ValueFrom::Constant(text) => Typed::Text(Cow::Borrowed(text)),
                ValueFrom::RunDate => {
                    Typed::Days(days_since_epoch(self.stamp.scheduled_for.date_naive()))
                }
                _ => continue,
            };
        }
        for (i, column) in columns.iter().enumerate() {
            if let ValueFrom::Field(path, conversion) = &column.from {
                let cell = std::mem::replace(&mut cells[i], Cell::Missing);
                typed[i] = convert(cell, column.kind, *conversion)
                    .map_err(|reason| format!("field `{path}`: {reason}"))?;
            }
        }
        for (i, column) in columns.iter().enumerate() {
            typed[i] = match &column.from {
                ValueFrom::Ratio(..) => {
                    let value = |j: usize| typed.get(j).and_then(Typed::as_f64);
                    match (value(self.refs[i][0]), value(self.refs[i][1])) {
                        (Some(n), Some(d)) if d != 0.0 => Typed::Float(n / d),
                        _ => Typed::Null,
                    }
                }
                ValueFrom::Parent(_) => parent.get(i).map_or(Typed::Null, Typed::to_owned_value),
                _ => continue,
            };
        }
        if let Some(column) = columns
            .iter()
            .zip(&typed)
            .find_map(|(c, v)| (!c.nullable && *v == Typed::Null).then_some(c))
        {
            let what = column.path().unwrap_or(column.name.as_ref());
            return Err(format!("field `{what}`: required, but missing or null"));
        }
        Ok(typed)
    }

    /// Reports unknown fields once per run; under `Evolve`, turns top-level scalars into
    /// new columns. Returns the cells of new columns for this record.
    fn note_unknown<'a>(&mut self, unknown: Vec<(String, Cell<'a>)>) -> Vec<(usize, Cell<'a>)> {
        let mut extra = Vec::new();
        for (path, cell) in unknown {
            self.report_new_field(&path);
            if !self.stores_new_field(&path) {
                continue;
            }
            let kind = match cell {
                Cell::Bool(_) => ColumnType::Boolean,
                Cell::Int(_) => ColumnType::Int64,
                Cell::Float(_) => ColumnType::Float64,
                Cell::Text(_) => ColumnType::Text,
                _ => continue,
            };
            let index = self.add_column(path, kind);
            extra.push((index, cell));
        }
        extra
    }

    /// Under `Evolve`, a new top-level field whose name every warehouse accepts becomes a
    /// column; others are only reported.
    fn stores_new_field(&self, path: &str) -> bool {
        self.policy == SchemaPolicy::Evolve && !path.contains('.') && portable_column_name(path)
    }

    fn report_new_field(&mut self, path: &str) {
        if self.reported.insert(path.to_string()) {
            let stored = self.stores_new_field(path);
            tracing::warn!(
                table = self.table.name,
                field = path,
                stored,
                "the source sent a field the table does not declare"
            );
            self.new_fields.push(path.to_string());
        }
    }

    fn add_column(&mut self, name: String, kind: ColumnType) -> usize {
        let index = self.table.columns.len();
        let mut builder = ColumnBuilder::new(kind);
        for _ in 0..self.rows {
            builder.append(&Typed::Null);
        }
        self.builders.push(builder);
        self.tree.insert(&name, Slot::Column(index));
        // Children's raw cells sit after the columns: move their slots one along.
        for slot in self.tree.fields.values_mut() {
            shift_child_slots(slot, index);
        }
        self.table.columns.push(Column {
            name: Cow::Owned(name.clone()),
            kind,
            nullable: true,
            from: ValueFrom::Field(Cow::Owned(name), Convert::Plain),
        });
        self.schema = self.table.arrow_schema();
        self.refs.push([usize::MAX; 2]);
        index
    }

    fn reject(&mut self, raw: &str, reason: String) {
        self.reject_with(raw.to_string(), reason);
    }

    fn reject_with(&mut self, record: String, reason: String) {
        tracing::warn!(table = self.table.name, reason = %reason, "record quarantined");
        self.quarantined.push(Quarantined {
            table: self.table.name,
            record,
            reason,
        });
    }

    /// Takes the records quarantined so far, this table's and its children's.
    pub fn take_quarantined(&mut self) -> Vec<Quarantined> {
        let mut all = std::mem::take(&mut self.quarantined);
        for child in &mut self.children {
            all.extend(child.decoder.take_quarantined());
        }
        all
    }

    /// Fields first seen in this run (this table and its children), in order.
    pub fn new_fields(&self) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = self
            .new_fields
            .iter()
            .map(|f| (self.table.name.to_string(), f.clone()))
            .collect();
        for child in &self.children {
            all.extend(child.decoder.new_fields());
        }
        all
    }

    /// The rows so far as one batch (none if there are none); the decoder starts afresh.
    pub fn finish_batch(&mut self) -> Result<Option<RecordBatch>, ArrowError> {
        if self.rows == 0 {
            return Ok(None);
        }
        let mut arrays: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect();
        arrays.extend(self.stamp.columns(self.rows));
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map(Some)
    }

    /// The child tables' decoders, for their batches.
    pub fn children_mut(&mut self) -> impl Iterator<Item = &mut Decoder> {
        self.children.iter_mut().map(|c| &mut c.decoder)
    }
}

/// For each column, the indices of the columns its value derives from.
fn derivation_refs(columns: &[Column]) -> Vec<[usize; 2]> {
    let index = |name: &str| {
        columns
            .iter()
            .position(|c| c.name == name)
            .unwrap_or(usize::MAX)
    };
    columns
        .iter()
        .map(|column| match &column.from {
            ValueFrom::Lowercase(c) | ValueFrom::MonthOf(c) | ValueFrom::DayOf(c) => {
                [index(c), usize::MAX]
            }
            ValueFrom::Ratio(a, b) => [index(a), index(b)],
            _ => [usize::MAX; 2],
        })
        .collect()
}

fn shift_child_slots(slot: &mut Slot, from: usize) {
    match slot {
        Slot::Child(i) if *i >= from => *i += 1,
        Slot::Object(node) => {
            for inner in node.fields.values_mut() {
                shift_child_slots(inner, from);
            }
        }
        _ => {}
    }
}

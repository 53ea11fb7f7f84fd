//! Validation, cost and execution of GraphQL operations over the schema subset.
//!
//! Validation runs first over the whole operation and reports Shopify's error shapes
//! (`undefinedField`, selections on scalars, missing or oversized `first`/`last`); only a
//! valid operation is costed and run. The cost is Shopify's documented formula: scalars 0,
//! objects 1, connections 2 plus requested nodes × the cost of one node, mutations 10. The
//! actual cost counts what was really returned.

use std::collections::HashMap;

use graphql_parser::query::{
    Definition, Document, Field, FragmentDefinition, OperationDefinition, Selection, SelectionSet,
    TypeCondition, Value as GqlValue,
};
use serde_json::{Map, Value, json};

use super::data::{Page, PageArgs, SortValue, paginate, parse_gid};
use super::schema::{self, Kind};

/// A parsed request document.
pub type Doc = Document<'static, String>;

/// The largest page a connection may ask for.
pub const MAX_PAGE: usize = 250;

/// The type of a value being selected from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ty {
    /// A schema type.
    Named(&'static str),
    /// A connection of nodes of a type.
    Connection(&'static str),
    /// An edge of such a connection.
    Edge(&'static str),
}

impl Ty {
    fn name(self) -> String {
        match self {
            Ty::Named(t) => t.to_string(),
            Ty::Connection(n) => format!("{n}Connection"),
            Ty::Edge(n) => format!("{n}Edge"),
        }
    }
}

/// What selecting a field of a type gives.
#[derive(Debug, Clone, Copy)]
enum Child {
    Scalar,
    Object(Ty),
    List(Ty),
    Connection(&'static str),
}

fn child(ty: Ty, name: &str) -> Option<Child> {
    Some(match ty {
        Ty::Named(t) => match schema::field(t, name)? {
            Kind::Scalar => Child::Scalar,
            Kind::Object(o) => Child::Object(Ty::Named(o)),
            Kind::List(o) => Child::List(Ty::Named(o)),
            Kind::Connection(n) => Child::Connection(n),
        },
        Ty::Connection(n) => match name {
            "nodes" => Child::List(Ty::Named(n)),
            "edges" => Child::List(Ty::Edge(n)),
            "pageInfo" => Child::Object(Ty::Named("PageInfo")),
            _ => return None,
        },
        Ty::Edge(n) => match name {
            "cursor" => Child::Scalar,
            "node" => Child::Object(Ty::Named(n)),
            _ => return None,
        },
    })
}

/// The operation to run: its selection and whether it is a mutation.
pub fn operation<'d>(
    doc: &'d Doc,
    name: Option<&str>,
) -> Result<(&'d SelectionSet<'static, String>, bool), String> {
    let operations: Vec<&OperationDefinition<'static, String>> = doc
        .definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Operation(op) => Some(op),
            Definition::Fragment(_) => None,
        })
        .collect();
    let named = |op: &&&OperationDefinition<'static, String>| match **op {
        OperationDefinition::Query(q) => q.name.as_deref() == name,
        OperationDefinition::Mutation(m) => m.name.as_deref() == name,
        _ => false,
    };
    let op = match (name, operations.len()) {
        (_, 0) => return Err("No operations in the document".to_string()),
        (None, 1) => operations[0],
        (None, _) => {
            return Err(
                "An operation name is required when the document has several operations"
                    .to_string(),
            );
        }
        (Some(n), _) => *operations
            .iter()
            .find(named)
            .ok_or_else(|| format!("No operation named \"{n}\""))?,
    };
    Ok(match op {
        OperationDefinition::SelectionSet(set) => (set, false),
        OperationDefinition::Query(q) => (&q.selection_set, false),
        OperationDefinition::Mutation(m) => (&m.selection_set, true),
        OperationDefinition::Subscription(_) => {
            return Err("Subscriptions are not supported".to_string());
        }
    })
}

fn fragments(doc: &Doc) -> HashMap<&str, &FragmentDefinition<'static, String>> {
    doc.definitions
        .iter()
        .filter_map(|d| match d {
            Definition::Fragment(f) => Some((f.name.as_str(), f)),
            Definition::Operation(_) => None,
        })
        .collect()
}

/// An argument's value as JSON, with variables substituted.
pub fn to_json(value: &GqlValue<'static, String>, vars: &Map<String, Value>) -> Value {
    match value {
        GqlValue::Variable(name) => vars.get(name).cloned().unwrap_or(Value::Null),
        GqlValue::Int(n) => n.as_i64().map_or(Value::Null, Value::from),
        GqlValue::Float(x) => Value::from(*x),
        GqlValue::String(s) => Value::from(s.clone()),
        GqlValue::Boolean(b) => Value::from(*b),
        GqlValue::Null => Value::Null,
        GqlValue::Enum(e) => Value::from(e.clone()),
        GqlValue::List(items) => Value::Array(items.iter().map(|v| to_json(v, vars)).collect()),
        GqlValue::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), to_json(v, vars)))
                .collect(),
        ),
    }
}

/// A field's arguments as JSON.
pub fn arguments(field: &Field<'static, String>, vars: &Map<String, Value>) -> Map<String, Value> {
    field
        .arguments
        .iter()
        .map(|(k, v)| (k.clone(), to_json(v, vars)))
        .collect()
}

/// Paging arguments read from a field's arguments.
pub fn page_args(args: &Map<String, Value>) -> PageArgs {
    let size = |k: &str| args.get(k).and_then(Value::as_u64).map(|n| n as usize);
    let text = |k: &str| args.get(k).and_then(Value::as_str).map(str::to_string);
    PageArgs {
        first: size("first"),
        after: text("after"),
        last: size("last"),
        before: text("before"),
        reverse: args
            .get("reverse")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    }
}

fn error(message: String, field: &Field<'static, String>, path: &[String], code: &str) -> Value {
    let mut full_path = path.to_vec();
    full_path.push(field.alias.clone().unwrap_or_else(|| field.name.clone()));
    json!({
        "message": message,
        "locations": [{ "line": field.position.line, "column": field.position.column }],
        "path": full_path,
        "extensions": { "code": code },
    })
}

/// Validates an operation and computes its requested cost.
pub struct Analysis<'d> {
    doc: &'d Doc,
    vars: &'d Map<String, Value>,
    /// Whether connections must say `first` or `last` (not in bulk queries).
    pub require_page_size: bool,
    /// Validation errors, in Shopify's shape.
    pub errors: Vec<Value>,
}

impl<'d> Analysis<'d> {
    /// An analysis of operations in `doc` with `vars`.
    pub fn new(doc: &'d Doc, vars: &'d Map<String, Value>) -> Self {
        Analysis {
            doc,
            vars,
            require_page_size: true,
            errors: Vec::new(),
        }
    }

    /// Validates `set` selected from `ty`; returns its cost.
    pub fn cost(
        &mut self,
        ty: Ty,
        set: &SelectionSet<'static, String>,
        path: &mut Vec<String>,
    ) -> u64 {
        let mut total = 0;
        for item in &set.items {
            match item {
                Selection::Field(f) => total += self.field_cost(ty, f, path),
                Selection::InlineFragment(frag) => {
                    let target = match &frag.type_condition {
                        Some(TypeCondition::On(t)) => match schema::fields(t) {
                            Some(_) => Ty::Named(static_name(t)),
                            None => continue,
                        },
                        None => ty,
                    };
                    total += self.cost(target, &frag.selection_set, path);
                }
                Selection::FragmentSpread(spread) => {
                    let fragments = fragments(self.doc);
                    match fragments.get(spread.fragment_name.as_str()) {
                        Some(def) => {
                            let TypeCondition::On(t) = &def.type_condition;
                            let target = if schema::fields(t).is_some() { Ty::Named(static_name(t)) } else { ty };
                            total += self.cost(target, &def.selection_set, path);
                        }
                        None => self.errors.push(json!({
                            "message": format!("Fragment {} was used, but not defined", spread.fragment_name),
                            "locations": [{ "line": spread.position.line, "column": spread.position.column }],
                            "extensions": { "code": "useAndDefineFragment" },
                        })),
                    }
                }
            }
        }
        total
    }

    fn field_cost(&mut self, ty: Ty, f: &Field<'static, String>, path: &mut Vec<String>) -> u64 {
        if f.name == "__typename" {
            return 0;
        }
        let Some(kind) = child(ty, &f.name) else {
            let message = format!("Field '{}' doesn't exist on type '{}'", f.name, ty.name());
            let mut e = error(message, f, path, "undefinedField");
            e["extensions"]["typeName"] = Value::from(ty.name());
            e["extensions"]["fieldName"] = Value::from(f.name.clone());
            self.errors.push(e);
            return 0;
        };
        let has_selection = !f.selection_set.items.is_empty();
        match (kind, has_selection) {
            (Child::Scalar, true) => {
                let message = format!(
                    "Selections can't be made on scalars (field '{}' returns a scalar but has selections)",
                    f.name
                );
                self.errors
                    .push(error(message, f, path, "selectionMismatch"));
                return 0;
            }
            (Child::Object(_) | Child::List(_) | Child::Connection(_), false) => {
                let message = format!(
                    "Field must have selections (field '{}' returns an object but has no selections. Did you mean '{} {{ ... }}'?)",
                    f.name, f.name
                );
                self.errors
                    .push(error(message, f, path, "selectionMismatch"));
                return 0;
            }
            _ => {}
        }
        path.push(f.alias.clone().unwrap_or_else(|| f.name.clone()));
        let cost = match kind {
            Child::Scalar => 0,
            Child::Object(t) | Child::List(t) => 1 + self.cost(t, &f.selection_set, path),
            Child::Connection(node) => {
                let args = page_args(&arguments(f, self.vars));
                path.pop();
                let n = match (args.first, args.last) {
                    (None, None) if !self.require_page_size => 1,
                    (None, None) => {
                        self.errors.push(error(
                            "you must provide one of first or last".into(),
                            f,
                            path,
                            "argumentLiteralsIncompatible",
                        ));
                        0
                    }
                    (Some(n), _) | (None, Some(n)) if n > MAX_PAGE => {
                        let message = format!(
                            "The page size ({n}) is over the maximum of {MAX_PAGE}: ask for first or last up to {MAX_PAGE}"
                        );
                        self.errors
                            .push(error(message, f, path, "argumentLiteralsIncompatible"));
                        0
                    }
                    (Some(n), _) | (None, Some(n)) => n as u64,
                };
                path.push(f.alias.clone().unwrap_or_else(|| f.name.clone()));
                let per_node = self.connection_node_cost(node, &f.selection_set, path);
                2 + n * per_node
            }
        };
        path.pop();
        cost
    }

    /// The cost of one node of a connection (its `nodes` or `edges { node }` selection).
    fn connection_node_cost(
        &mut self,
        node: &'static str,
        set: &SelectionSet<'static, String>,
        path: &mut Vec<String>,
    ) -> u64 {
        let mut per_node = 0;
        for item in &set.items {
            let Selection::Field(f) = item else { continue };
            match f.name.as_str() {
                "nodes" => {
                    path.push("nodes".into());
                    per_node += 1 + self.cost(Ty::Named(node), &f.selection_set, path);
                    path.pop();
                }
                "edges" => {
                    path.push("edges".into());
                    per_node += self.cost(Ty::Edge(node), &f.selection_set, path);
                    path.pop();
                }
                _ => {
                    self.field_cost(Ty::Connection(node), f, path);
                }
            }
        }
        per_node
    }
}

/// The `'static` schema name equal to `t`.
fn static_name(t: &str) -> &'static str {
    for name in [
        "Order",
        "Customer",
        "LineItem",
        "BulkOperation",
        "Node",
        "Shop",
    ] {
        if name == t {
            return name;
        }
    }
    "Node"
}

/// How the root of an operation is resolved.
pub enum Resolved {
    /// An object (or null).
    Value(Value),
    /// A page of a root connection, already filtered, sorted and cut.
    Page(Page<Value>),
}

/// Resolves root fields against the world.
pub trait Root {
    /// The value of root field `name` with these arguments.
    fn resolve(&mut self, name: &str, args: &Map<String, Value>) -> Result<Resolved, String>;
}

/// Runs a validated operation.
pub struct Exec<'d> {
    doc: &'d Doc,
    vars: &'d Map<String, Value>,
    /// The cost of what was returned.
    pub actual_cost: u64,
    /// Errors met while resolving.
    pub errors: Vec<Value>,
}

impl<'d> Exec<'d> {
    /// An execution of operations in `doc` with `vars`.
    pub fn new(doc: &'d Doc, vars: &'d Map<String, Value>) -> Self {
        Exec {
            doc,
            vars,
            actual_cost: 0,
            errors: Vec::new(),
        }
    }

    /// Runs the root selection; returns `data`.
    pub fn run(
        &mut self,
        root_ty: &'static str,
        set: &SelectionSet<'static, String>,
        root: &mut dyn Root,
    ) -> Value {
        let mut data = Map::new();
        for item in &set.items {
            let Selection::Field(f) = item else { continue };
            let key = f.alias.clone().unwrap_or_else(|| f.name.clone());
            if f.name == "__typename" {
                data.insert(key, Value::from(root_ty));
                continue;
            }
            let args = arguments(f, self.vars);
            let value = match (
                root.resolve(&f.name, &args),
                child(Ty::Named(root_ty), &f.name),
            ) {
                (Ok(Resolved::Page(page)), Some(Child::Connection(node))) => {
                    self.actual_cost += 2;
                    self.connection(node, page, &f.selection_set)
                }
                (Ok(Resolved::Value(v)), Some(Child::Object(t))) if !v.is_null() => {
                    self.actual_cost += 1;
                    self.object(t, &v, &f.selection_set)
                }
                (Ok(_), _) => Value::Null,
                (Err(message), _) => {
                    self.errors.push(error(message, f, &[], "BAD_REQUEST"));
                    Value::Null
                }
            };
            data.insert(key, value);
        }
        Value::Object(data)
    }

    /// Selects from an object; a `Node` takes the concrete type its GID names.
    pub fn object(&mut self, ty: Ty, obj: &Value, set: &SelectionSet<'static, String>) -> Value {
        let ty = match ty {
            Ty::Named("Node") => obj
                .get("id")
                .and_then(Value::as_str)
                .and_then(parse_gid)
                .map_or(ty, |(kind, _)| Ty::Named(static_name(kind))),
            other => other,
        };
        let mut out = Map::new();
        self.select_into(ty, obj, set, &mut out);
        Value::Object(out)
    }

    fn select_into(
        &mut self,
        ty: Ty,
        obj: &Value,
        set: &SelectionSet<'static, String>,
        out: &mut Map<String, Value>,
    ) {
        for item in &set.items {
            match item {
                Selection::Field(f) => {
                    let key = f.alias.clone().unwrap_or_else(|| f.name.clone());
                    let value = self.field(ty, obj, f);
                    out.insert(key, value);
                }
                Selection::InlineFragment(frag) => {
                    let applies = match &frag.type_condition {
                        Some(TypeCondition::On(t)) => *t == ty.name() || t == "Node",
                        None => true,
                    };
                    if applies {
                        self.select_into(ty, obj, &frag.selection_set, out);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let fragments = fragments(self.doc);
                    if let Some(def) = fragments.get(spread.fragment_name.as_str()) {
                        let TypeCondition::On(t) = &def.type_condition;
                        if *t == ty.name() || t == "Node" {
                            self.select_into(ty, obj, &def.selection_set, out);
                        }
                    }
                }
            }
        }
    }

    /// The value of one selected field of `obj`, of type `ty`.
    pub(super) fn field(&mut self, ty: Ty, obj: &Value, f: &Field<'static, String>) -> Value {
        if f.name == "__typename" {
            return Value::from(ty.name());
        }
        let raw = obj.get(&f.name).cloned().unwrap_or(Value::Null);
        match child(ty, &f.name) {
            Some(Child::Scalar) | None => raw,
            Some(Child::Object(t)) if !raw.is_null() => {
                if t != Ty::Named("PageInfo") {
                    self.actual_cost += 1;
                }
                self.object(t, &raw, &f.selection_set)
            }
            Some(Child::Object(_)) => Value::Null,
            Some(Child::List(t)) => {
                let items = raw.as_array().cloned().unwrap_or_default();
                Value::Array(
                    items
                        .iter()
                        .map(|item| {
                            if !matches!(t, Ty::Edge(_)) {
                                self.actual_cost += 1;
                            }
                            self.object(t, item, &f.selection_set)
                        })
                        .collect(),
                )
            }
            Some(Child::Connection(node)) => {
                self.actual_cost += 2;
                let items = raw.as_array().cloned().unwrap_or_default();
                let key = |item: &Value| {
                    let id = item
                        .get("id")
                        .and_then(Value::as_str)
                        .and_then(parse_gid)
                        .map_or(0, |(_, n)| n);
                    (SortValue::Number(id as i64), id)
                };
                match paginate(items, key, &page_args(&arguments(f, self.vars))) {
                    Ok(page) => self.connection(node, page, &f.selection_set),
                    Err(message) => {
                        self.errors.push(error(message, f, &[], "BAD_REQUEST"));
                        Value::Null
                    }
                }
            }
        }
    }

    /// Renders a page as a connection: `nodes`, `edges { cursor node }`, `pageInfo`.
    pub fn connection(
        &mut self,
        node: &'static str,
        page: Page<Value>,
        set: &SelectionSet<'static, String>,
    ) -> Value {
        let page_info = json!({
            "hasNextPage": page.has_next,
            "hasPreviousPage": page.has_previous,
            "startCursor": page.items.first().map(|(_, c)| c.clone()),
            "endCursor": page.items.last().map(|(_, c)| c.clone()),
        });
        let edges: Value = Value::Array(
            page.items
                .iter()
                .map(|(item, cursor)| json!({ "cursor": cursor, "node": item }))
                .collect(),
        );
        let nodes = Value::Array(page.items.into_iter().map(|(item, _)| item).collect());
        let conn = json!({ "nodes": nodes, "edges": edges, "pageInfo": page_info });
        let mut out = Map::new();
        self.select_into(Ty::Connection(node), &conn, set, &mut out);
        Value::Object(out)
    }
}

//! The serde visitor that reads one JSON record against a table's field tree: each value
//! lands in its column's cell (strings borrowed from the page when they have no escapes),
//! nested arrays for child tables are kept raw, ignored fields are skipped, and fields the
//! tree does not know are collected with their path for the decoder to report.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::decode::{Node, Slot};
use super::value::Cell;

/// What the visitor collected from one record.
pub(super) struct RecordState<'de> {
    /// One cell per column, then one per child table.
    pub(super) cells: Vec<Cell<'de>>,
    /// Fields the tree does not know, with their dotted paths.
    pub(super) unknown: Vec<(String, Cell<'de>)>,
    /// Why the record could not be read, when the visitor can say better than serde.
    pub(super) problem: Option<String>,
}

/// The path of an object level of a record, written out (dotted) only when a message or an
/// unknown field needs it: most records need it never.
#[derive(Clone, Copy)]
pub(super) enum FieldPath<'p> {
    /// The record itself.
    Top,
    /// A field of an object.
    Field(&'p FieldPath<'p>, &'p str),
}

impl FieldPath<'_> {
    /// The dotted path of `key` within this object.
    fn join(&self, key: &str) -> String {
        match self {
            FieldPath::Top => key.to_string(),
            path => format!("{path}.{key}"),
        }
    }
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldPath::Top => Ok(()),
            FieldPath::Field(FieldPath::Top, key) => f.write_str(key),
            FieldPath::Field(parent, key) => write!(f, "{parent}.{key}"),
        }
    }
}

/// Walks one object level of a record against its part of the field tree.
pub(super) struct Walk<'t, 'p, 's, 'de> {
    /// The tree level this object is read against.
    pub(super) node: &'t Node,
    /// The path of this object.
    pub(super) prefix: &'p FieldPath<'p>,
    /// Where values go.
    pub(super) state: &'s mut RecordState<'de>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_, '_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_, '_, '_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match self.node.fields.get(key.as_ref()) {
                Some(Slot::Column(i)) => {
                    let cell = map.next_value_seed(CellSeed)?;
                    self.state.cells[*i] = cell;
                }
                Some(Slot::Object(node)) => {
                    let prefix = FieldPath::Field(self.prefix, &key);
                    let nested = map.next_value_seed(Walk {
                        node,
                        prefix: &prefix,
                        state: &mut *self.state,
                    });
                    if let Err(err) = nested {
                        if self.state.problem.is_none() {
                            self.state.problem =
                                Some(format!("field `{prefix}`: expected an object ({err})"));
                        }
                        return Err(err);
                    }
                }
                Some(Slot::Child(i)) => {
                    let raw: &'de RawValue = map.next_value()?;
                    self.state.cells[*i] = Cell::Raw(raw);
                }
                Some(Slot::Ignored) => {
                    map.next_value::<IgnoredAny>()?;
                }
                None if self.node.open => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => {
                    let cell = map.next_value_seed(CellSeed)?;
                    self.state.unknown.push((self.prefix.join(&key), cell));
                }
            }
        }
        Ok(())
    }
}

/// A key, borrowed from the page when it has no escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer
            .deserialize_str(CellVisitor)
            .and_then(|cell| match cell {
                Cell::Text(text) => Ok(text),
                _ => Err(de::Error::custom("expected a string key")),
            })
    }
}

/// A scalar value; objects and arrays are skipped and described.
struct CellSeed;

impl<'de> DeserializeSeed<'de> for CellSeed {
    type Value = Cell<'de>;

    fn deserialize<D: de::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(CellVisitor)
    }
}

struct CellVisitor;

impl<'de> Visitor<'de> for CellVisitor {
    type Value = Cell<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Cell::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Cell::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Cell::Float(v as f64), Cell::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Cell::Float(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cell::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cell::Text(Cow::Owned(v.to_string())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Cell::Text(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Cell::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Cell::Shape("an object"))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Cell::Shape("an array"))
    }
}

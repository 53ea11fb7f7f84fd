//! Activate: a query's people enrolled into a win-back sequence on an e-mail platform —
//! never anyone who may not be mailed, never twice, with a control group (DESIGN.md,
//! Guarantees 3 and 6).
//!
//! A query result becomes [`Candidate`]s (one per normalized e-mail, the other columns as
//! personalization [`Field`]s). The pipeline (`pipeline::activate`) checks each one's
//! consent where it is decided — Shopify's marketing consent and an optional suppression
//! table in the warehouse, then the platform itself just before enrolling — assigns the
//! [`holdout`], records each outcome in the enrollment ledger before any call, and enrolls
//! through the platform's module ([`smartrmail`]). Nothing here creates a contact,
//! resubscribes anyone or writes a subscription flag.

pub mod dotdigital;
pub mod holdout;
pub mod iterable;
pub mod loyalty;
pub mod smartrmail;

use std::collections::{BTreeMap, HashSet};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use serde_json::Value;

use crate::error::{Classify, ErrorKind};
use crate::http::HttpError;
use crate::services::ServiceError;
use crate::warehouse::QueryResult;

/// Why an activation could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    /// The platform is not configured, or a credential is missing.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// A call failed (after the client's retries).
    #[error(transparent)]
    Http(#[from] HttpError),
    /// An answer could not be read.
    #[error("{what}: the answer could not be read: {message}")]
    Answer {
        /// The call.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// A setting cannot be used.
    #[error("{key}: {message}")]
    Setting {
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The query's answer has no e-mail column.
    #[error(
        "the activate step's query has no `email` or `email_normalized` column (its columns: {columns})"
    )]
    NoEmail {
        /// The answer's columns.
        columns: String,
    },
}

impl Classify for ActivateError {
    fn kind(&self) -> ErrorKind {
        match self {
            ActivateError::Service(err) => err.kind(),
            ActivateError::Http(err) => err.kind(),
            ActivateError::Answer { .. } => ErrorKind::Transient,
            ActivateError::Setting { .. } | ActivateError::NoEmail { .. } => ErrorKind::Config,
        }
    }
}

impl ActivateError {
    /// Whether the platform may have acted on the request: it went out and no whole
    /// answer came back, or the platform failed while handling it (a 5xx says nothing of
    /// what was done before the failure).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ActivateError::Http(err) if err.unanswered || err.status.is_some_and(|s| s >= 500))
    }
}

/// What a platform says of a person just before enrolling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Known and may be sent marketing e-mail.
    Subscribed,
    /// The platform does not know them (never created by mailroom).
    Unknown,
    /// Unsubscribed (SmartrMail's flag or date; Iterable's marketing channel).
    Unsubscribed,
    /// Unsubscribed from the sequence's message type only (Iterable).
    UnsubscribedMessageType,
    /// A spam complaint is recorded.
    Complained,
}

/// How one person's enrolling call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The platform accepted it.
    Done,
    /// It surely did not happen; eligible again on the next run.
    Failed(String),
    /// It went out and no answer came: it may have happened.
    Unknown(String),
}

impl Sent {
    fn from_error(err: &ActivateError) -> Sent {
        match err.outcome_unknown() {
            true => Sent::Unknown(err.to_string()),
            false => Sent::Failed(err.to_string()),
        }
    }
}

/// The platform an activate step enrolls on.
pub enum Platform {
    /// Lists and custom fields (or custom events).
    SmartrMail(smartrmail::SmartrMail),
    /// Journeys triggered by API, with the unsubscribes that mean no.
    Iterable(iterable::Iterable, iterable::Consent),
    /// Programs enrolled by contact id.
    Dotdigital(dotdigital::Dotdigital),
}

/// People per enrolling batch (SmartrMail's bulk add), and how often the ledger is written.
pub const BATCH: usize = 100;

impl Platform {
    /// Whether an enrollment can be looked for afterwards (SmartrMail list membership).
    pub fn can_read_back(&self) -> bool {
        match self {
            Platform::SmartrMail(p) => p.can_read_back(),
            Platform::Iterable(..) => false,
            Platform::Dotdigital(_) => true,
        }
    }

    /// The calls enrolling `people` takes: SmartrMail a field update each and a bulk add
    /// per hundred (or an event each); Iterable a trigger each; Dotdigital an enrolment per
    /// thousand.
    pub fn calls_for(&self, people: u64) -> u64 {
        match self {
            Platform::SmartrMail(p) if p.can_read_back() => people + people.div_ceil(BATCH as u64),
            Platform::SmartrMail(_) => 2 * people,
            Platform::Iterable(..) => people,
            Platform::Dotdigital(_) => people.div_ceil(dotdigital::CONTACTS_PER_ENROLMENT as u64),
        }
    }

    /// People enrolled per batch: one Dotdigital enrolment call takes many contacts.
    pub fn batch_size(&self) -> usize {
        match self {
            Platform::Dotdigital(_) => dotdigital::CONTACTS_PER_ENROLMENT,
            _ => BATCH,
        }
    }

    /// The person's standing now.
    pub async fn standing(&self, email: &str) -> Result<Standing, ActivateError> {
        match self {
            Platform::SmartrMail(p) => p.standing(email).await,
            Platform::Iterable(p, consent) => p.standing(email, *consent).await,
            Platform::Dotdigital(p) => p.standing(email).await,
        }
    }

    /// Which of `emails` are enrolled in `sequence`, where the platform can tell.
    pub async fn members(
        &self,
        sequence: &str,
        emails: &[&str],
    ) -> Result<Option<HashSet<String>>, ActivateError> {
        match self {
            Platform::SmartrMail(p) if p.can_read_back() => p.members(sequence).await.map(Some),
            Platform::Dotdigital(p) => match sequence.parse::<u64>() {
                Ok(program) => p.enrolled(program, emails).await.map(Some),
                Err(_) => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Enrolls `people` (at most [`Platform::batch_size`]), all just read as known and
    /// consenting, into `sequence`; how each call ended, in order.
    pub async fn enroll(&self, sequence: &str, people: &[&Candidate]) -> Vec<Sent> {
        match self {
            Platform::SmartrMail(p) => {
                let mut outcomes = Vec::with_capacity(people.len());
                let mut ready = Vec::new();
                for person in people {
                    match p.set_fields(&person.email, &person.fields).await {
                        Ok(()) => {
                            outcomes.push(Sent::Done);
                            ready.push((person.email.as_str(), person.fields.as_slice()));
                        }
                        Err(err) => outcomes.push(Sent::Failed(err.to_string())),
                    }
                }
                if !ready.is_empty()
                    && let Err(err) = p.enroll(sequence, &ready).await
                {
                    let outcome = Sent::from_error(&err);
                    for slot in outcomes.iter_mut().filter(|o| **o == Sent::Done) {
                        *slot = outcome.clone();
                    }
                }
                outcomes
            }
            Platform::Iterable(p, _) => {
                let Ok(workflow) = sequence.parse::<u64>() else {
                    let why = format!("Iterable journey id {sequence:?} is not a number");
                    return people.iter().map(|_| Sent::Failed(why.clone())).collect();
                };
                let mut outcomes = Vec::with_capacity(people.len());
                for person in people {
                    outcomes.push(
                        match p.enroll(workflow, &person.email, &person.fields).await {
                            Ok(()) => Sent::Done,
                            Err(err) => Sent::from_error(&err),
                        },
                    );
                }
                outcomes
            }
            Platform::Dotdigital(p) => {
                let Ok(program) = sequence.parse::<u64>() else {
                    let why = format!("Dotdigital program id {sequence:?} is not a number");
                    return people.iter().map(|_| Sent::Failed(why.clone())).collect();
                };
                let emails: Vec<&str> = people.iter().map(|p| p.email.as_str()).collect();
                let outcome = match p.enroll(program, &emails).await {
                    Ok(()) => Sent::Done,
                    Err(err) => Sent::from_error(&err),
                };
                people.iter().map(|_| outcome.clone()).collect()
            }
        }
    }
}

/// How a field's value is typed on the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// A number.
    Number,
    /// A calendar date (`YYYY-MM-DD`).
    Date,
    /// Anything else, as text.
    Text,
}

impl FieldKind {
    /// SmartrMail's `value_type`.
    pub fn smartrmail(self) -> &'static str {
        match self {
            FieldKind::Number => "number",
            FieldKind::Date => "date",
            FieldKind::Text => "text",
        }
    }
}

/// One personalization field: a column of the query, for one person.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    /// The column's name.
    pub name: String,
    /// Its value (never null: a null sets nothing).
    pub value: Value,
    /// Its type.
    pub kind: FieldKind,
}

/// One person the query names.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The normalized e-mail.
    pub email: String,
    /// The other columns' values.
    pub fields: Vec<Field>,
}

/// An e-mail as the warehouse keys people: trimmed and lower-cased; `None` when it is not
/// an address.
pub fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    (email.contains('@') && !email.starts_with('@') && !email.ends_with('@')).then_some(email)
}

/// An e-mail for logs and plans: the first letter of the local part and the domain.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".to_string(),
    }
}

fn field_kind(data_type: &DataType) -> FieldKind {
    if data_type.is_numeric() {
        FieldKind::Number
    } else if matches!(data_type, DataType::Date32 | DataType::Date64) {
        FieldKind::Date
    } else {
        FieldKind::Text
    }
}

/// The people of a query result, first row first, each e-mail once (later rows of the
/// same person are ignored); rows without an address are left out and counted.
pub fn candidates(result: &QueryResult) -> Result<(Vec<Candidate>, usize), ActivateError> {
    let schema = &result.schema;
    let email_column = ["email", "email_normalized"]
        .iter()
        .find_map(|name| schema.index_of(name).ok())
        .ok_or_else(|| ActivateError::NoEmail {
            columns: schema
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let options = FormatOptions::default().with_null("");
    let mut seen = BTreeMap::new();
    let mut people = Vec::new();
    let mut unaddressed = 0;
    for batch in &result.batches {
        let text = |index: usize| {
            ArrayFormatter::try_new(batch.column(index).as_ref(), &options).map_err(|e| {
                ActivateError::Answer {
                    what: "the activate step's query".into(),
                    message: e.to_string(),
                }
            })
        };
        let emails = text(email_column)?;
        let columns: Vec<(usize, FieldKind)> = (0..batch.num_columns())
            .filter(|i| *i != email_column)
            .map(|i| (i, field_kind(schema.field(i).data_type())))
            .collect();
        let formatters = columns
            .iter()
            .map(|(i, _)| text(*i))
            .collect::<Result<Vec<_>, _>>()?;
        let numbers = columns
            .iter()
            .map(|(i, kind)| match kind {
                FieldKind::Number => {
                    arrow::compute::cast(batch.column(*i), &DataType::Float64).ok()
                }
                _ => None,
            })
            .collect::<Vec<_>>();
        for row in 0..batch.num_rows() {
            let Some(email) = normalize_email(&emails.value(row).to_string()) else {
                unaddressed += 1;
                continue;
            };
            if seen.insert(email.clone(), ()).is_some() {
                continue;
            }
            let mut fields = Vec::new();
            for (k, (i, kind)) in columns.iter().enumerate() {
                if batch.column(*i).is_null(row) {
                    continue;
                }
                let value = match (kind, &numbers[k]) {
                    (FieldKind::Number, Some(array)) => {
                        let x = array.as_primitive::<Float64Type>().value(row);
                        if x.fract() == 0.0 && x.abs() < 9e15 {
                            Value::from(x as i64)
                        } else {
                            serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
                        }
                    }
                    _ => Value::from(formatters[k].value(row).to_string()),
                };
                if value.is_null() {
                    continue;
                }
                fields.push(Field {
                    name: schema.field(*i).name().clone(),
                    value,
                    kind: *kind,
                });
            }
            people.push(Candidate { email, fields });
        }
    }
    Ok((people, unaddressed))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Int64Array, StringArray};
    use arrow::datatypes::{Field as ArrowField, Schema};
    use arrow::record_batch::RecordBatch;

    use super::*;

    #[test]
    fn rows_become_people_once_each_with_typed_fields_and_nulls_left_out() {
        let schema = Arc::new(Schema::new(vec![
            ArrowField::new("email", DataType::Utf8, true),
            ArrowField::new("points_balance", DataType::Int64, true),
            ArrowField::new("last_order_on", DataType::Date32, true),
            ArrowField::new("vip_tier_name", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some(" Kim@Example.com "),
                    Some("kim@example.com"),
                    None,
                    Some("lee@example.com"),
                ])),
                Arc::new(Int64Array::from(vec![Some(120), Some(5), Some(1), None])),
                Arc::new(Date32Array::from(vec![
                    Some(20_000),
                    None,
                    None,
                    Some(20_001),
                ])),
                Arc::new(StringArray::from(vec![Some("Gold"), None, None, None])),
            ],
        )
        .expect("batch");
        let (people, unaddressed) = candidates(&QueryResult {
            schema,
            batches: vec![batch],
        })
        .expect("people");
        assert_eq!(unaddressed, 1);
        assert_eq!(people.len(), 2);
        assert_eq!(people[0].email, "kim@example.com");
        assert_eq!(people[0].fields.len(), 3);
        assert_eq!(people[0].fields[0].value, Value::from(120));
        assert_eq!(people[0].fields[1].value, Value::from("2024-10-04"));
        assert_eq!(people[0].fields[1].kind, FieldKind::Date);
        assert_eq!(people[1].fields.len(), 1, "nulls set nothing");
        assert_eq!(mask_email("kim@example.com"), "k***@example.com");
    }
}

//! Dotdigital v2 contacts (upserted by e-mail; a write never changes subscription status),
//! data fields (existing and typed) and address books.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::world::World;
use crate::{Shared, json_response, lock};

impl DotdigitalState {
    /// The seeded contact of a person, if they are on the newsletter.
    pub(super) fn seeded(world: &World, index: u32) -> Option<Contact> {
        let person = world.person(index);
        let subscriber = world.subscriber_of(&person)?;
        let status = match (subscriber.subscribed, subscriber.complained) {
            (true, _) => "Subscribed",
            (false, true) => "IspComplained",
            (false, false) => "Unsubscribed",
        };
        let fields = BTreeMap::from([
            ("FIRSTNAME".to_string(), Value::from(person.first_name)),
            ("LASTNAME".to_string(), Value::from(person.last_name)),
            (
                "FULLNAME".to_string(),
                Value::from(format!("{} {}", person.first_name, person.last_name)),
            ),
        ]);
        Some(Contact {
            id: 4_400_000 + u64::from(index),
            email: subscriber.email,
            status,
            fields,
        })
    }

    /// A contact by id or e-mail, as it stands now.
    pub(super) fn find(&self, world: &World, ident: &str) -> Option<Contact> {
        let by_changes = self
            .contacts
            .values()
            .find(|c| c.id.to_string() == ident || c.email.eq_ignore_ascii_case(ident));
        if let Some(contact) = by_changes {
            return Some(contact.clone());
        }
        let index = match ident.parse::<u64>() {
            Ok(id) if id > 4_400_000 => u32::try_from(id - 4_400_000).ok()?,
            Ok(_) => return None,
            Err(_) => world.subscriber_person(ident)?,
        };
        if index == 0 || index > world.params.customers {
            return None;
        }
        Self::seeded(world, index)
    }

    pub(super) fn book_members(&self, world: &World, book: &Book) -> Vec<Contact> {
        let seeded = book
            .seeded
            .then(|| {
                (1..=world.params.customers).filter_map(|i| Self::seeded(world, i).map(|c| c.id))
            })
            .into_iter()
            .flatten();
        let ids: BTreeSet<u64> = seeded
            .chain(book.added.iter().copied())
            .filter(|id| !book.removed.contains(id))
            .collect();
        ids.iter()
            .filter_map(|id| self.find(world, &id.to_string()))
            .collect()
    }

    /// Checks data fields exist and values fit their types.
    pub(super) fn check_fields(
        &self,
        fields: &[Value],
    ) -> Result<Vec<(String, Value)>, Response<Body>> {
        let mut checked = Vec::new();
        for field in fields {
            let key = field
                .get("key")
                .or_else(|| field.get("Key"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_uppercase();
            let value = field
                .get("value")
                .or_else(|| field.get("Value"))
                .cloned()
                .unwrap_or(Value::Null);
            let Some((kind, _)) = self.fields.get(&key) else {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    &format!("Data field {key} does not exist."),
                    "ERROR_DATAFIELD_NOTFOUND",
                ));
            };
            let fits = match (*kind, &value) {
                (_, Value::Null) => true,
                ("Numeric", v) => v.is_number(),
                ("Boolean", v) => v.is_boolean(),
                ("Date", Value::String(s)) => crate::parse_time(s).is_some(),
                ("String", Value::String(s)) => s.chars().count() <= 255,
                _ => false,
            };
            if !fits {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    &format!("Value for {key} does not fit its type {kind}."),
                    "ERROR_PARAMETER_INVALID",
                ));
            }
            checked.push((key, value));
        }
        Ok(checked)
    }

    /// Creates or updates a contact by e-mail; never changes its status. Returns the
    /// contact and whether it was created.
    pub(super) fn upsert(
        &mut self,
        world: &World,
        body: &Value,
    ) -> Result<(Contact, bool), Response<Body>> {
        let email = body
            .get("email")
            .or_else(|| body.get("Email"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
            .to_string();
        let valid = email.split('@').count() == 2
            && email.split('@').nth(1).is_some_and(|d| d.contains('.'));
        if !valid {
            return Err(fail(
                StatusCode::BAD_REQUEST,
                "Email is not a valid email address.",
                "ERROR_PARAMETER_INVALID",
            ));
        }
        let fields = body
            .get("dataFields")
            .or_else(|| body.get("DataFields"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let fields = self.check_fields(&fields)?;
        let (mut contact, created) = match self.find(world, &email) {
            Some(contact) => (contact, false),
            None => {
                let id = self.next_contact;
                self.next_contact += 1;
                (
                    Contact {
                        id,
                        email: email.to_lowercase(),
                        status: "Subscribed",
                        fields: BTreeMap::new(),
                    },
                    true,
                )
            }
        };
        contact.fields.extend(fields);
        self.contacts.insert(contact.id, contact.clone());
        Ok((contact, created))
    }
}

pub(super) fn contact_json(c: &Contact) -> Value {
    let fields: Vec<Value> = c
        .fields
        .iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect();
    json!({ "id": c.id, "email": c.email, "optInType": "Single", "emailType": "Html", "dataFields": fields, "status": c.status })
}

pub(super) async fn get_contact(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(ident): Path<String>,
) -> Response<Body> {
    authorize!(headers);
    match lock(&shared.dotdigital).find(&shared.world, &ident) {
        Some(c) => json_response(StatusCode::OK, &contact_json(&c)),
        None => fail(StatusCode::NOT_FOUND, "Error:", "ERROR_CONTACT_NOT_FOUND"),
    }
}

pub(super) async fn upsert_contact(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let body = try_response!(parse_body(&body));
    let (contact, _) = try_response!(lock(&shared.dotdigital).upsert(&shared.world, &body));
    json_response(StatusCode::CREATED, &contact_json(&contact))
}

pub(super) async fn update_contact(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(ident): Path<String>,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let mut body = try_response!(parse_body(&body));
    let mut state = lock(&shared.dotdigital);
    let Some(existing) = state.find(&shared.world, &ident) else {
        return fail(StatusCode::NOT_FOUND, "Error:", "ERROR_CONTACT_NOT_FOUND");
    };
    if body.get("email").is_none() {
        body["email"] = Value::from(existing.email);
    }
    let (contact, _) = try_response!(state.upsert(&shared.world, &body));
    json_response(StatusCode::OK, &contact_json(&contact))
}

pub(super) async fn list_fields(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response<Body> {
    authorize!(headers);
    let state = lock(&shared.dotdigital);
    let fields: Vec<Value> = state
        .fields
        .iter()
        .map(|(name, (kind, default))| json!({ "name": name, "type": kind, "visibility": "Private", "defaultValue": default }))
        .collect();
    json_response(StatusCode::OK, &fields)
}

pub(super) async fn create_field(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let body = try_response!(parse_body(&body));
    let name = body
        .get("name")
        .or_else(|| body.get("Name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_uppercase();
    let kind = match body
        .get("type")
        .or_else(|| body.get("Type"))
        .and_then(Value::as_str)
    {
        Some("String") => "String",
        Some("Numeric") => "Numeric",
        Some("Date") => "Date",
        Some("Boolean") => "Boolean",
        _ => {
            return fail(
                StatusCode::BAD_REQUEST,
                "Type must be String, Numeric, Date or Boolean.",
                "ERROR_DATAFIELD_INVALID",
            );
        }
    };
    let valid_name = !name.is_empty()
        && name.len() <= 20
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return fail(
            StatusCode::BAD_REQUEST,
            "Name must be 1-20 letters, digits, - or _.",
            "ERROR_DATAFIELD_INVALID",
        );
    }
    let mut state = lock(&shared.dotdigital);
    if state.fields.contains_key(&name) {
        return fail(
            StatusCode::BAD_REQUEST,
            "Field already exists.",
            "ERROR_NON_UNIQUE_DATAFIELD",
        );
    }
    let default = body.get("defaultValue").cloned().unwrap_or(Value::Null);
    state.fields.insert(name.clone(), (kind, default.clone()));
    json_response(
        StatusCode::CREATED,
        &json!({ "name": name, "type": kind, "visibility": "Private", "defaultValue": default }),
    )
}

fn book_json(id: u64, book: &Book, contacts: usize) -> Value {
    json!({ "id": id, "name": book.name, "visibility": "Private", "contacts": contacts })
}

pub(super) async fn list_books(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let state = lock(&shared.dotdigital);
    let books: Vec<Value> = state
        .books
        .iter()
        .map(|(id, book)| book_json(*id, book, state.book_members(&shared.world, book).len()))
        .collect();
    page(books, &query)
}

pub(super) async fn create_book(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let body = try_response!(parse_body(&body));
    let name = body
        .get("name")
        .or_else(|| body.get("Name"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_string();
    if name.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "Name is required.",
            "ERROR_PARAMETER_INVALID",
        );
    }
    let mut state = lock(&shared.dotdigital);
    let reserved = ["test", "all contacts"].contains(&name.to_lowercase().as_str());
    if reserved
        || state
            .books
            .values()
            .any(|b| b.name.eq_ignore_ascii_case(&name))
    {
        return fail(
            StatusCode::BAD_REQUEST,
            "An address book with this name already exists.",
            "ERROR_ADDRESSBOOK_DUPLICATE",
        );
    }
    let id = state.next_book;
    state.next_book += 1;
    let book = Book {
        name,
        seeded: false,
        added: BTreeSet::new(),
        removed: BTreeSet::new(),
    };
    let json = book_json(id, &book, 0);
    state.books.insert(id, book);
    json_response(StatusCode::CREATED, &json)
}

pub(super) async fn get_book(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response<Body> {
    authorize!(headers);
    let state = lock(&shared.dotdigital);
    match state.books.get(&id) {
        Some(book) => json_response(
            StatusCode::OK,
            &book_json(id, book, state.book_members(&shared.world, book).len()),
        ),
        None => fail(
            StatusCode::NOT_FOUND,
            "Error:",
            "ERROR_ADDRESSBOOK_NOT_FOUND",
        ),
    }
}

pub(super) async fn book_contacts(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let state = lock(&shared.dotdigital);
    let Some(book) = state.books.get(&id) else {
        return fail(
            StatusCode::NOT_FOUND,
            "Error:",
            "ERROR_ADDRESSBOOK_NOT_FOUND",
        );
    };
    let full = query
        .get("withFullData")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let contacts: Vec<Value> = state
        .book_members(&shared.world, book)
        .iter()
        .map(|c| {
            let mut json = contact_json(c);
            if !full {
                json["dataFields"] = Value::Null;
            }
            json
        })
        .collect();
    page(contacts, &query)
}

pub(super) async fn add_to_book(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: String,
) -> Response<Body> {
    authorize!(headers);
    let body = try_response!(parse_body(&body));
    let mut state = lock(&shared.dotdigital);
    if !state.books.contains_key(&id) {
        return fail(
            StatusCode::NOT_FOUND,
            "Error:",
            "ERROR_ADDRESSBOOK_NOT_FOUND",
        );
    }
    let (contact, _) = try_response!(state.upsert(&shared.world, &body));
    if let Some(book) = state.books.get_mut(&id) {
        book.removed.remove(&contact.id);
        book.added.insert(contact.id);
    }
    json_response(StatusCode::OK, &contact_json(&contact))
}

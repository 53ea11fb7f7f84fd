//! Iterable profiles and their subscription state (`api-reference/iterable.md` §14): the
//! seeded world's users (`World::iterable_user_of`) under what requests changed.
//! `GET /api/users/getByEmail` (and `GET /api/users/{email}`) answers `{"user": …}` with the
//! subscription arrays in `dataFields`, or `{}` for an unknown e-mail — never a 404.
//! `POST /api/users/updateSubscriptions` *overwrites* every array it is given, as the real
//! one does (a partial request can resubscribe someone or wipe their lists).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::{
    IterableState, admit, bad_params, envelope, epoch_ms, identifier, is_email, pairs, parse_body,
};
use crate::world::{IterableUser, World};
use crate::{Shared, json_response, lock};

/// The subscription arrays of a profile, in the order Iterable lists them.
pub(super) const SUBSCRIPTION_FIELDS: [&str; 4] = [
    "emailListIds",
    "unsubscribedChannelIds",
    "unsubscribedMessageTypeIds",
    "subscribedMessageTypeIds",
];

fn seeded(world: &World, email: &str) -> Option<IterableUser> {
    world
        .person_by_email(email)
        .and_then(|person| world.iterable_user_of(&person))
}

/// Whether the project has a profile for `email` (seeded, or made by a request).
pub(super) fn exists(world: &World, state: &IterableState, email: &str) -> bool {
    state.users.contains_key(email) || seeded(world, email).is_some()
}

/// The profile of `email` as it now stands, if there is one.
pub(super) fn profile(world: &World, state: &IterableState, email: &str) -> Option<Value> {
    let seeded = seeded(world, email);
    let changed = state.users.get(email);
    if seeded.is_none() && changed.is_none() {
        return None;
    }
    let mut fields = Map::new();
    if let Some(user) = &seeded {
        fields.insert("emailListIds".into(), json!(user.email_list_ids));
        fields.insert(
            "unsubscribedChannelIds".into(),
            json!(user.unsubscribed_channel_ids),
        );
        fields.insert(
            "unsubscribedMessageTypeIds".into(),
            json!(user.unsubscribed_message_type_ids),
        );
        fields.insert("subscribedMessageTypeIds".into(), json!([]));
    } else {
        for name in SUBSCRIPTION_FIELDS {
            fields.insert(name.into(), json!([]));
        }
    }
    for (name, value) in changed.into_iter().flatten() {
        fields.insert(name.clone(), value.clone());
    }
    let signup = seeded.as_ref().map_or(0, |u| epoch_ms(u.signup_date));
    Some(json!({
        "email": email,
        "signupDate": signup,
        "profileUpdatedAt": signup,
        "dataFields": fields,
    }))
}

fn answer(shared: &Shared, email: &str) -> Response<Body> {
    let state = lock(&shared.iterable);
    match profile(&shared.world, &state, &email.to_lowercase()) {
        Some(user) => json_response(StatusCode::OK, &json!({ "user": user })),
        None => json_response(StatusCode::OK, &json!({})),
    }
}

pub(super) async fn get_by_email(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, |l| &mut l.profiles) {
        return response;
    }
    let email = pairs(&query)
        .into_iter()
        .find(|(k, _)| k == "email")
        .map(|(_, v)| v);
    match email {
        Some(email) if is_email(&email) => answer(&shared, &email),
        Some(email) => envelope(
            StatusCode::BAD_REQUEST,
            "InvalidEmailAddressError",
            &format!("Invalid email: {email}"),
        ),
        None => bad_params("email is required"),
    }
}

pub(super) async fn get_user(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(email): Path<String>,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, |l| &mut l.profiles) {
        return response;
    }
    answer(&shared, &email)
}

pub(super) async fn update_subscriptions(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> Response<Body> {
    if let Err(response) = admit(&shared, &headers, |l| &mut l.users) {
        return response;
    }
    let body = match parse_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let user = match identifier(&body) {
        Ok(user) => user,
        Err(response) => return response,
    };
    let mut state = lock(&shared.iterable);
    let profile = state.users.entry(user.clone()).or_default();
    // Overwrite, not merge: every array sent replaces the profile's.
    for name in SUBSCRIPTION_FIELDS {
        if let Some(value) = body.get(name).filter(|v| !v.is_null()) {
            profile.insert(name.to_string(), value.clone());
        }
    }
    state
        .subscription_updates
        .push(json!({ "email": user, "request": body }));
    envelope(StatusCode::OK, "Success", "")
}

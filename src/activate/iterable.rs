//! Iterable's side of win-back (`api-reference/iterable.md` §9 and §14): the person's
//! profile read at send time (`GET /api/users/getByEmail`: an unknown e-mail answers `{}`),
//! consent judged from its subscription arrays — the configured marketing channel in
//! `unsubscribedChannelIds`, or the journey's message type in `unsubscribedMessageTypeIds`,
//! means no — and the enrollment, `POST /api/workflows/triggerWorkflow` with the person's
//! fields as `dataFields`, only for someone just read as existing.
//!
//! A trigger is not idempotent and cannot be read back, so one whose answer never came is
//! never sent again within the cooldown. mailroom never calls `users/updateSubscriptions`
//! (it overwrites) nor `lists/subscribe` (it creates profiles).

use serde_json::{Map, Value, json};

use super::{ActivateError, Field, Standing};
use crate::http::{Body, Call};
use crate::services::{Connection, ServiceKind, Services};

/// The configured Iterable project.
pub struct Iterable {
    connection: Connection,
}

/// Which unsubscribes mean a person may not be sent a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consent {
    /// The marketing e-mail channel.
    pub channel_id: u64,
    /// The journey's message type, if it has its own.
    pub message_type_id: Option<u64>,
}

fn ids(value: &Value) -> impl Iterator<Item = u64> + '_ {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
}

impl Iterable {
    /// The project `[sources.iterable]` configures.
    pub fn new(services: &Services) -> Result<Self, ActivateError> {
        Ok(Iterable {
            connection: services.connection(ServiceKind::Iterable)?,
        })
    }

    /// The person's standing now, judged by `consent`.
    pub async fn standing(&self, email: &str, consent: Consent) -> Result<Standing, ActivateError> {
        let call = Call::get("/api/users/getByEmail").query("email", email);
        let response = self
            .connection
            .client
            .send(&self.connection.service, &call)
            .await?;
        let answer: Value = response.json().await.map_err(|e| ActivateError::Answer {
            what: "Iterable GET /api/users/getByEmail".into(),
            message: e.to_string(),
        })?;
        let Some(user) = answer.get("user").filter(|u| u.is_object()) else {
            return Ok(Standing::Unknown);
        };
        let fields = &user["dataFields"];
        if ids(&fields["unsubscribedChannelIds"]).any(|id| id == consent.channel_id) {
            return Ok(Standing::Unsubscribed);
        }
        if consent
            .message_type_id
            .is_some_and(|t| ids(&fields["unsubscribedMessageTypeIds"]).any(|id| id == t))
        {
            return Ok(Standing::UnsubscribedMessageType);
        }
        Ok(Standing::Subscribed)
    }

    /// Whether the project has a profile for `email` (`getByEmail` answers `{}` when not).
    pub async fn exists(&self, email: &str) -> Result<bool, ActivateError> {
        let call = Call::get("/api/users/getByEmail").query("email", email);
        let response = self
            .connection
            .client
            .send(&self.connection.service, &call)
            .await?;
        let answer: Value = response.json().await.map_err(|e| ActivateError::Answer {
            what: "Iterable GET /api/users/getByEmail".into(),
            message: e.to_string(),
        })?;
        Ok(answer.get("user").is_some_and(Value::is_object))
    }

    /// Writes `fields` to an existing profile (`users/update` merges the data fields it is
    /// sent; it would create an unknown e-mail, so callers check [`Iterable::exists`]).
    pub async fn update_fields(
        &self,
        email: &str,
        fields: Map<String, Value>,
    ) -> Result<(), ActivateError> {
        let body = json!({ "email": email, "dataFields": fields });
        // An upsert: sending it again leaves the same profile (iterable.md §12).
        let call = Call::post("/api/users/update", Body::Json(body)).idempotent();
        self.connection
            .client
            .send(&self.connection.service, &call)
            .await?;
        Ok(())
    }

    /// Enrolls one person just read as existing into journey `workflow`, with `fields`.
    pub async fn enroll(
        &self,
        workflow: u64,
        email: &str,
        fields: &[Field],
    ) -> Result<(), ActivateError> {
        let data: Map<String, Value> = fields
            .iter()
            .map(|f| (f.name.clone(), f.value.clone()))
            .collect();
        let body = json!({ "workflowId": workflow, "email": email, "dataFields": data });
        let call = Call::post("/api/workflows/triggerWorkflow", Body::Json(body));
        self.connection
            .client
            .send(&self.connection.service, &call)
            .await?;
        Ok(())
    }
}

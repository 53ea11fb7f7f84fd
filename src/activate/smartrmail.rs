//! SmartrMail's side of win-back (`api-reference/smartrmail.md` §5 and §9): the person's
//! standing read at send time (`GET /subscribers/:email`: unknown is a 404), their fields
//! set by a partial `PUT` carrying only `custom_fields` (never `subscribed`), and the
//! enrollment itself — added to the win-back list by bulk add (only people just read as
//! known and subscribed, so it never creates anyone), or, when a custom-event webhook is
//! configured, that event posted with the fields.
//!
//! List membership can be read back (`GET /lists/:id/list_subscribers`), so an enrollment a
//! crash left in flight is resolved by looking; a custom event cannot be, so it stays
//! unknown.

use std::collections::HashSet;

use serde_json::{Value, json};

use super::normalize_email;
use super::{ActivateError, Field, Standing};
use crate::http::{Auth, Body, Call, Service};
use crate::services::{Connection, ServiceKind, Services};
use crate::sources::smartrmail::encode;

/// The configured SmartrMail account.
pub struct SmartrMail {
    connection: Connection,
    /// The custom-event webhook, when configured: enrollment by event, not by list.
    event_hook: Option<Service>,
}

impl SmartrMail {
    /// The account `[sources.smartrmail]` configures.
    pub fn new(services: &Services) -> Result<Self, ActivateError> {
        let connection = services.connection(ServiceKind::SmartrMail)?;
        let event_hook = services
            .optional_secret(ServiceKind::SmartrMail, "custom_event_webhook")?
            .map(|url| {
                url.expose()
                    .parse()
                    .map(|base_url| Service {
                        name: "SmartrMail custom-event webhook",
                        base_url,
                        auth: Auth::SecretUrl,
                        retry: connection.service.retry,
                        budget: None,
                    })
                    .map_err(|e: url::ParseError| ActivateError::Setting {
                        key: "sources.smartrmail.custom_event_webhook",
                        message: format!("not a URL: {e}"),
                    })
            })
            .transpose()?;
        Ok(SmartrMail {
            connection,
            event_hook,
        })
    }

    /// Whether an enrollment can be looked for afterwards (list membership, not events).
    pub fn can_read_back(&self) -> bool {
        self.event_hook.is_none()
    }

    /// The person's standing now.
    pub async fn standing(&self, email: &str) -> Result<Standing, ActivateError> {
        let call = Call::get(format!("/subscribers/{}", encode(email)));
        let subscriber: Value = match self
            .connection
            .client
            .send(&self.connection.service, &call)
            .await
        {
            Ok(response) => response.json().await.map_err(|e| ActivateError::Answer {
                what: "SmartrMail GET /subscribers".into(),
                message: e.to_string(),
            })?,
            Err(err) if err.status == Some(404) => return Ok(Standing::Unknown),
            Err(err) => return Err(err.into()),
        };
        Ok(if subscriber["complained"] == true {
            Standing::Complained
        } else if subscriber["subscribed"] != true || !subscriber["unsubscribed_at"].is_null() {
            Standing::Unsubscribed
        } else {
            Standing::Subscribed
        })
    }

    /// Sets `fields` on a known person: a partial `PUT` with `custom_fields` only.
    pub async fn set_fields(&self, email: &str, fields: &[Field]) -> Result<(), ActivateError> {
        if fields.is_empty() {
            return Ok(());
        }
        self.put_fields(email, fields).await
    }

    /// Sets `fields` on the person if SmartrMail knows them (a `PUT` never creates);
    /// false when it does not.
    pub async fn update_fields(
        &self,
        email: &str,
        fields: &[Field],
    ) -> Result<bool, ActivateError> {
        match self.put_fields(email, fields).await {
            Ok(()) => Ok(true),
            Err(ActivateError::Http(err)) if err.status == Some(404) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn put_fields(&self, email: &str, fields: &[Field]) -> Result<(), ActivateError> {
        let custom_fields: Vec<Value> = fields
            .iter()
            .map(|f| json!({ "field_name": f.name, "value": f.value, "value_type": f.kind.smartrmail() }))
            .collect();
        let call = Call::put(
            format!("/subscribers/{}", encode(email)),
            Body::Json(json!({ "custom_fields": custom_fields })),
        );
        self.connection
            .client
            .send(&self.connection.service, &call)
            .await?;
        Ok(())
    }

    /// Enrolls people just read as known and subscribed: adds them to `list` (at most
    /// 100 at a time: the API documents no maximum, smartrmail.md §5.1 suggests ≤ 100), or
    /// posts one custom event each with their fields.
    pub async fn enroll(
        &self,
        list: &str,
        people: &[(&str, &[Field])],
    ) -> Result<(), ActivateError> {
        if let Some(hook) = &self.event_hook {
            for (email, fields) in people {
                let mut event = serde_json::Map::new();
                event.insert("email".into(), Value::from(*email));
                event.insert("event".into(), Value::from(list));
                for field in *fields {
                    event.insert(field.name.clone(), field.value.clone());
                }
                let call = Call::post("", Body::Json(Value::Object(event)));
                self.connection.client.send(hook, &call).await?;
            }
            return Ok(());
        }
        // Bulk add never updates existing subscribers and these are all known: adding
        // them again changes nothing, so the call may be retried (smartrmail.md §6).
        let subscribers: Vec<Value> = people
            .iter()
            .map(|(email, _)| json!({ "email": email }))
            .collect();
        let call = Call::post(
            format!("/lists/{}/list_subscribers", encode(list)),
            Body::Json(json!({ "subscribers": subscribers })),
        )
        .idempotent();
        self.connection
            .client
            .send(&self.connection.service, &call)
            .await?;
        Ok(())
    }

    /// The normalized e-mails on `list`.
    pub async fn members(&self, list: &str) -> Result<HashSet<String>, ActivateError> {
        let call = Call::get(format!("/lists/{}/list_subscribers", encode(list)));
        let response = self
            .connection
            .client
            .send(&self.connection.service, &call)
            .await?;
        let members: Vec<Value> = response.json().await.map_err(|e| ActivateError::Answer {
            what: "SmartrMail GET /lists/:id/list_subscribers".into(),
            message: e.to_string(),
        })?;
        Ok(members
            .iter()
            .filter_map(|m| m["email"].as_str().and_then(normalize_email))
            .collect())
    }
}

//! Dotdigital's side of win-back (`api-reference/dotdigital.md` §8 and §14): the contact
//! read at send time (`GET /v2/contacts/{email}`: unknown is a 404, and only `Subscribed`
//! may be enrolled), the account's suppression list (the warehouse's
//! `dotdigital_suppressions`, or read whole when that table does not exist yet), and the
//! enrollment — `POST /v2/programs/enrolments` with contact ids, many per call, within the
//! account's 20 enrolment calls an hour.
//!
//! Enrolments can be read back (`GET /v2/programs/enrolments/{status}`), so one a crash
//! left in flight is resolved by looking for the contact in the program's enrolments.
//! mailroom never creates a contact and never calls `resubscribe-with-no-challenge`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use serde_json::{Value, json};

use super::{ActivateError, Standing, normalize_email};
use crate::http::fetch::Pages;
use crate::http::page::RecordsAt;
use crate::http::paginate::SkipSelect;
use crate::http::{Body, Call};
use crate::services::{Connection, ServiceKind, Services};
use crate::sources::smartrmail::encode;

/// Enrolment calls Dotdigital allows an account per hour (dotdigital.md §8).
pub const ENROLMENTS_PER_HOUR: u64 = 20;
/// Contacts per enrolment call: one call enrolls a whole batch.
pub const CONTACTS_PER_ENROLMENT: usize = 1000;

/// The configured Dotdigital account.
pub struct Dotdigital {
    connection: Connection,
    /// Contact ids by normalized e-mail, as read.
    ids: Mutex<HashMap<String, u64>>,
}

fn answer_error(what: &str, e: impl std::fmt::Display) -> ActivateError {
    ActivateError::Answer {
        what: what.into(),
        message: e.to_string(),
    }
}

impl Dotdigital {
    /// The account `[sources.dotdigital]` configures.
    pub fn new(services: &Services) -> Result<Self, ActivateError> {
        Ok(Dotdigital {
            connection: services.connection(ServiceKind::Dotdigital)?,
            ids: Mutex::new(HashMap::new()),
        })
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.ids
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The contact's standing now; its id is kept for the enrolment.
    pub async fn standing(&self, email: &str) -> Result<Standing, ActivateError> {
        let call = Call::get(format!("/v2/contacts/{}", encode(email)));
        let contact: Value = match self
            .connection
            .client
            .send(&self.connection.service, &call)
            .await
        {
            Ok(response) => response
                .json()
                .await
                .map_err(|e| answer_error("Dotdigital GET /v2/contacts", e))?,
            Err(err) if err.status == Some(404) => return Ok(Standing::Unknown),
            Err(err) => return Err(err.into()),
        };
        if let Some(id) = contact["id"].as_u64() {
            self.ids().insert(email.to_string(), id);
        }
        Ok(match contact["status"].as_str() {
            Some("Subscribed") => Standing::Subscribed,
            Some("IspComplained" | "DirectComplaint") => Standing::Complained,
            _ => Standing::Unsubscribed,
        })
    }

    /// Every suppressed address on the account, read whole (for when the warehouse has no
    /// `dotdigital_suppressions` yet).
    pub async fn suppressed(&self) -> Result<HashSet<String>, ActivateError> {
        let call = Call::get("/v2/contacts/suppressed-since/2000-01-01T00:00:00");
        let mut paginator = SkipSelect::new(1000);
        let (client, service) = (&self.connection.client, &self.connection.service);
        let mut pages = Pages::new(client, service, call, RecordsAt::Root, &mut paginator);
        let mut found = HashSet::new();
        while let Some(page) = pages
            .next()
            .await
            .map_err(|e| answer_error("Dotdigital suppressed-since", e))?
        {
            for record in page.records() {
                let entry: Value = serde_json::from_str(record).unwrap_or(Value::Null);
                if let Some(email) = entry["suppressedContact"]["email"]
                    .as_str()
                    .and_then(normalize_email)
                {
                    found.insert(email);
                }
            }
        }
        Ok(found)
    }

    /// Creates the data fields of `wanted` (name, type) the account does not have yet.
    pub async fn ensure_data_fields(&self, wanted: &[(&str, &str)]) -> Result<u64, ActivateError> {
        let call = Call::get("/v2/data-fields");
        let response = self
            .connection
            .client
            .send(&self.connection.service, &call)
            .await?;
        let existing: Vec<Value> = response
            .json()
            .await
            .map_err(|e| answer_error("Dotdigital GET /v2/data-fields", e))?;
        let have: HashSet<String> = existing
            .iter()
            .filter_map(|f| f["name"].as_str().map(str::to_uppercase))
            .collect();
        let mut created = 0;
        for (name, kind) in wanted {
            if have.contains(*name) {
                continue;
            }
            let body = json!({ "name": name, "type": kind, "visibility": "Private", "defaultValue": null });
            let call = Call::post("/v2/data-fields", Body::Json(body));
            match self
                .connection
                .client
                .send(&self.connection.service, &call)
                .await
            {
                Ok(_) => created += 1,
                // Made by another process meanwhile: what was wanted.
                Err(err) if err.message.contains("ERROR_NON_UNIQUE_DATAFIELD") => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(created)
    }

    /// Writes `fields` (data field name, value) to the contact if Dotdigital knows them (a
    /// `PUT` to a contact never creates one, nor changes its status); false when it does
    /// not.
    pub async fn update_fields(
        &self,
        email: &str,
        fields: &[(String, Value)],
    ) -> Result<bool, ActivateError> {
        let data: Vec<Value> = fields
            .iter()
            .map(|(key, value)| json!({ "key": key, "value": value }))
            .collect();
        let call = Call::put(
            format!("/v2/contacts/{}", encode(email)),
            Body::Json(json!({ "dataFields": data })),
        );
        match self
            .connection
            .client
            .send(&self.connection.service, &call)
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.status == Some(404) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    /// Enrolls contacts just read as subscribed into `program`, in one call.
    pub async fn enroll(&self, program: u64, emails: &[&str]) -> Result<(), ActivateError> {
        let ids: Vec<u64> = {
            let known = self.ids();
            emails
                .iter()
                .filter_map(|e| known.get(*e).copied())
                .collect()
        };
        if ids.len() != emails.len() {
            return Err(answer_error(
                "Dotdigital enrolment",
                "a contact's id was not read before enrolling",
            ));
        }
        let body = json!({ "programId": program, "contacts": ids });
        let call = Call::post("/v2/programs/enrolments", Body::Json(body));
        let service = self.connection.with_budget("enrolments");
        self.connection.client.send(&service, &call).await?;
        Ok(())
    }

    /// Which of `emails` the program's enrolments (processing or finished) include.
    pub async fn enrolled(
        &self,
        program: u64,
        emails: &[&str],
    ) -> Result<HashSet<String>, ActivateError> {
        let mut in_program = HashSet::new();
        for status in ["Processing", "Finished"] {
            let call = Call::get(format!("/v2/programs/enrolments/{status}"));
            let mut paginator = SkipSelect::new(1000);
            let (client, service) = (&self.connection.client, &self.connection.service);
            let mut pages = Pages::new(client, service, call, RecordsAt::Root, &mut paginator);
            while let Some(page) = pages
                .next()
                .await
                .map_err(|e| answer_error("Dotdigital enrolments", e))?
            {
                for record in page.records() {
                    let enrolment: Value = serde_json::from_str(record).unwrap_or(Value::Null);
                    if enrolment["programId"].as_u64() == Some(program) {
                        in_program.extend(
                            enrolment["contacts"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_u64),
                        );
                    }
                }
            }
        }
        let mut found = HashSet::new();
        for email in emails {
            // The id comes from the contact itself: a crash may have lost the run's reads.
            let _ = self.standing(email).await?;
            if self
                .ids()
                .get(*email)
                .is_some_and(|id| in_program.contains(id))
            {
                found.insert((*email).to_string());
            }
        }
        Ok(found)
    }
}

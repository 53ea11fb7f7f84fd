//! Loyalty-sync steps: each person's Smile values (the Smile account updated last for the
//! e-mail, from the warehouse) compared with what was last written to the platform, and
//! only the changed fields written — to people the platform knows. A null in Smile clears
//! nothing unless the step says `clear_nulls`. Someone the platform does not know is looked
//! for again after a week. A dry run counts what would change and writes nothing.

use chrono::{Duration, Utc};
use serde_json::Value;

use super::Pipeline;
use crate::activate::dotdigital::Dotdigital;
use crate::activate::iterable::Iterable;
use crate::activate::loyalty::{FIELDS, LoyaltyField, LoyaltyWriter, SMILE_QUERY};
use crate::activate::smartrmail::SmartrMail;
use crate::activate::{ActivateError, candidates};
use crate::config::SourceKind;
use crate::error::{Classify, ErrorKind};
use crate::scheduler::{RunContext, RunError};
use crate::state::{Counters, StateError};

/// How long someone a platform did not know is left alone.
const ABSENT_RECHECK_DAYS: i64 = 7;

fn bump(counters: &mut Counters, key: &str, by: u64) {
    *counters.entry(key.to_string()).or_default() += by;
}

fn ledger(err: StateError) -> RunError {
    RunError::new(err.kind(), format!("the loyalty-sync ledger: {err}"))
}

impl Pipeline {
    pub(super) async fn loyalty_sync(
        &self,
        platform: SourceKind,
        clear_nulls: bool,
        run: &RunContext,
        counters: &mut Counters,
    ) -> Result<(), RunError> {
        let name = platform.name();
        let what = format!("loyalty sync to {name}");
        let failed = |err: ActivateError| RunError::new(err.kind(), format!("{what}: {err}"));
        let writer = match platform {
            SourceKind::SmartrMail => {
                LoyaltyWriter::SmartrMail(SmartrMail::new(&self.services).map_err(failed)?)
            }
            SourceKind::Iterable => {
                LoyaltyWriter::Iterable(Iterable::new(&self.services).map_err(failed)?)
            }
            SourceKind::Dotdigital => {
                LoyaltyWriter::Dotdigital(Dotdigital::new(&self.services).map_err(failed)?)
            }
            other => {
                return Err(RunError::new(
                    ErrorKind::Config,
                    format!("{what}: {} is not an e-mail platform", other.name()),
                ));
            }
        };
        let engine = self.query_engine().await?;
        let sql = SMILE_QUERY.replace("{table}", &engine.table_names().qualify("smile_customers"));
        let answer = engine
            .run(&sql)
            .await
            .map_err(|err| RunError::new(err.kind(), format!("{what}: smile_customers: {err}")))?;
        let (people, _) = candidates(&answer).map_err(failed)?;
        let synced = self.state.loyalty_synced(name).map_err(ledger)?;
        let now = Utc::now();
        let mut plans = Vec::new();
        for person in &people {
            if synced
                .absent
                .get(&person.email)
                .is_some_and(|seen| now - *seen < Duration::days(ABSENT_RECHECK_DAYS))
            {
                bump(counters, "loyalty.not_on_platform", 1);
                continue;
            }
            let before = synced.values.get(&person.email);
            let changed: Vec<(LoyaltyField, Value)> = FIELDS
                .iter()
                .filter_map(|field| {
                    let now = person
                        .fields
                        .iter()
                        .find(|f| f.name == field.column)
                        .map_or(Value::Null, |f| f.value.clone());
                    let was = before.and_then(|b| b.get(field.column));
                    match (&now, was) {
                        (Value::Null, Some(was)) if clear_nulls && !was.is_null() => {
                            Some((*field, Value::Null))
                        }
                        (Value::Null, _) => None,
                        (now, Some(was)) if now == was => None,
                        (now, _) => Some((*field, now.clone())),
                    }
                })
                .collect();
            if changed.is_empty() {
                bump(counters, "loyalty.unchanged", 1);
            } else {
                plans.push((person.email.clone(), changed));
            }
        }
        let fields: u64 = plans.iter().map(|(_, c)| c.len() as u64).sum();
        tracing::info!(run_id = %run.run_id, platform = name, people = plans.len(), fields, "{}", if run.dry_run { "dry run: would write the changed loyalty fields" } else { "writing the changed loyalty fields" });
        if run.dry_run {
            bump(counters, "loyalty.would_update_people", plans.len() as u64);
            bump(counters, "loyalty.would_write_fields", fields);
            return Ok(());
        }
        if !plans.is_empty() {
            let created = writer.prepare().await.map_err(failed)?;
            bump(counters, "loyalty.data_fields_created", created);
        }
        for (email, changed) in plans {
            if writer.write(&email, &changed).await.map_err(failed)? {
                let written: Vec<(String, Value)> = changed
                    .iter()
                    .map(|(f, v)| (f.column.to_string(), v.clone()))
                    .collect();
                self.state
                    .record_loyalty(name, &email, &written, Utc::now())
                    .map_err(ledger)?;
                bump(counters, "loyalty.updated_people", 1);
                bump(counters, "loyalty.written_fields", written.len() as u64);
            } else {
                self.state
                    .record_loyalty_absent(name, &email, Utc::now())
                    .map_err(ledger)?;
                bump(counters, "loyalty.not_on_platform", 1);
            }
        }
        Ok(())
    }
}

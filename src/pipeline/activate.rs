//! Activate steps: a query's people enrolled into a win-back sequence, each at most once
//! per cooldown, never anyone who may not be mailed.
//!
//! In order: rows a crash left in flight are resolved where the platform can tell (list
//! membership) and otherwise recorded `unknown`; people enrolled, held out or unknown
//! within the cooldown are left alone; Shopify's marketing consent and the step's
//! `suppress_from` table are checked in the warehouse; the anomaly guard compares the
//! eligible count with recent runs; each remaining person's standing is read on the
//! platform itself; the consented get their arm (the holdout's hash, or the arm they
//! already had); `max_per_run` defers the rest. Every outcome is written to the ledger —
//! treatment rows `in_flight` before the calls — then the calls are made batch by batch
//! and their outcomes recorded. A dry run does the reads and writes nothing. After a real
//! run the ledger is exported as the warehouse table `winback_enrollments`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field as ArrowField, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Duration, Utc};

use super::{Pipeline, StepAnswer};
use crate::activate::dotdigital::{Dotdigital, ENROLMENTS_PER_HOUR};
use crate::activate::iterable::{Consent, Iterable};
use crate::activate::smartrmail::SmartrMail;
use crate::activate::{
    ActivateError, Candidate, Platform, Sent, Standing, candidates, holdout, mask_email,
};
use crate::config::{ActivatePolicy, JobConfig, SourceKind};
use crate::error::{Classify, ErrorKind};
use crate::scheduler::{RunContext, RunError};
use crate::state::{ActivationCounts, Arm, Counters, Enrollment, EnrollmentStatus, StateError};
use crate::warehouse::QueryResult;

/// The warehouse table the ledger is exported to.
pub const ENROLLMENTS_TABLE: &str = "winback_enrollments";
/// Recent runs the anomaly guard takes the median of.
const RECENT_RUNS: usize = 7;
/// Example e-mails a plan shows per reason.
const EXAMPLES: usize = 3;

/// One activate step of a run.
pub(super) struct ActivateStep<'a> {
    pub job: &'a JobConfig,
    pub run: &'a RunContext,
    pub platform: SourceKind,
    pub sequence: &'a str,
    pub policy: &'a ActivatePolicy,
}

fn bump(counters: &mut Counters, key: &str, by: u64) {
    *counters.entry(key.to_string()).or_default() += by;
}

fn ledger(err: StateError) -> RunError {
    RunError::new(err.kind(), format!("the enrollment ledger: {err}"))
}

/// Why a person is not enrolled this run, as the ledger and plans name it.
mod reason {
    pub const NO_SHOPIFY_CONSENT: &str = "no_shopify_consent";
    pub const SUPPRESSED: &str = "suppressed";
    pub const SUPPRESSED_ON_PLATFORM: &str = "suppressed_on_platform";
    pub const UNKNOWN_ON_PLATFORM: &str = "unknown_on_platform";
    pub const UNSUBSCRIBED: &str = "unsubscribed";
    pub const UNSUBSCRIBED_MESSAGE_TYPE: &str = "unsubscribed_message_type";
    pub const COMPLAINED: &str = "complained";
}

/// The median of `counts` (0 when empty).
fn median(counts: &[u64]) -> u64 {
    let mut sorted = counts.to_vec();
    sorted.sort_unstable();
    match sorted.len() {
        0 => 0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2,
    }
}

/// What one run decides for one person.
enum Decision {
    Skip(&'static str),
    Hold,
    Enroll,
    Defer,
}

impl Pipeline {
    pub(super) async fn activate(
        &self,
        step: ActivateStep<'_>,
        answer: &StepAnswer,
        counters: &mut Counters,
    ) -> Result<(), RunError> {
        let platform_name = step.platform.name();
        let what = format!("activate {platform_name} {}", step.sequence);
        let failed = |err: ActivateError| RunError::new(err.kind(), format!("{what}: {err}"));
        let platform = match step.platform {
            SourceKind::SmartrMail => {
                Platform::SmartrMail(SmartrMail::new(&self.services).map_err(failed)?)
            }
            SourceKind::Iterable => {
                let Some(channel) = step.policy.channel_id else {
                    return Err(RunError::new(
                        ErrorKind::Config,
                        format!(
                            "{what}: set channel_id, the marketing channel whose unsubscribes mean no"
                        ),
                    ));
                };
                let consent = Consent {
                    channel_id: channel,
                    message_type_id: step.policy.message_type_id,
                };
                Platform::Iterable(Iterable::new(&self.services).map_err(failed)?, consent)
            }
            SourceKind::Dotdigital => {
                Platform::Dotdigital(Dotdigital::new(&self.services).map_err(failed)?)
            }
            other => {
                return Err(RunError::new(
                    ErrorKind::Config,
                    format!("{what}: {} is not an e-mail platform", other.name()),
                ));
            }
        };
        let run = step.run;
        let now = Utc::now();
        let (people, unaddressed) = candidates(&answer.result).map_err(failed)?;
        bump(counters, "activate.people", people.len() as u64);
        bump(counters, "activate.rows_without_email", unaddressed as u64);
        let mut latest: HashMap<String, Enrollment> = self
            .state
            .enrollments(platform_name, step.sequence)
            .map_err(ledger)?
            .into_iter()
            .map(|e| (e.email.clone(), e))
            .collect();

        // Rows a crash left in flight: looked for on the platform, or unknown.
        let in_flight: Vec<String> = latest
            .values()
            .filter(|e| e.status == EnrollmentStatus::InFlight)
            .map(|e| e.email.clone())
            .collect();
        if !in_flight.is_empty() {
            let emails: Vec<&str> = in_flight.iter().map(String::as_str).collect();
            let members = platform
                .members(step.sequence, &emails)
                .await
                .map_err(failed)?;
            let mut resolved = Vec::new();
            for email in in_flight {
                let Some(row) = latest.get_mut(&email) else {
                    continue;
                };
                resolve(row, members.as_ref(), run, now);
                bump(
                    counters,
                    &format!("activate.resolved_{}", row.status.as_str()),
                    1,
                );
                resolved.push(row.clone());
            }
            tracing::warn!(run_id = %run.run_id, sequence = step.sequence, people = resolved.len(), "resolved enrollments an earlier run left in flight");
            if !run.dry_run {
                self.state.record_enrollments(&resolved).map_err(ledger)?;
            }
        }

        // Who is open this run: no row, a row that did not close its cycle, or a closed
        // cycle whose cooldown has passed (a new cycle).
        let cooldown = Duration::days(i64::from(step.policy.cooldown_days));
        let mut open: Vec<(&Candidate, u32, Option<Arm>)> = Vec::new();
        for person in &people {
            match latest.get(&person.email) {
                None => open.push((person, 1, None)),
                Some(row) if !row.status.is_final() => open.push((person, row.cycle, row.arm)),
                Some(row) => {
                    let since = row
                        .enrolled_at
                        .or(row.assigned_at)
                        .unwrap_or(row.created_at);
                    if now - since >= cooldown {
                        open.push((person, row.cycle + 1, row.arm));
                    } else {
                        bump(
                            counters,
                            &format!("activate.already_{}", row.status.as_str()),
                            1,
                        );
                    }
                }
            }
        }

        // The warehouse's consent and suppression.
        let emails: Vec<&str> = open.iter().map(|(p, ..)| p.email.as_str()).collect();
        let consented = self.shopify_consented(&emails).await?;
        let suppressed = match &step.policy.suppress_from {
            Some(table) => self.suppressed(table, &emails).await?,
            None => HashSet::new(),
        };
        let suppressed_on_platform = match &platform {
            Platform::Dotdigital(dotdigital) => {
                self.dotdigital_suppressed(dotdigital, run, &emails, counters)
                    .await?
            }
            _ => HashSet::new(),
        };
        let mut decisions: Vec<(&Candidate, u32, Option<Arm>, Decision)> = Vec::new();
        let mut checked = Vec::new();
        for (person, cycle, arm) in open {
            if !consented.contains(&person.email) {
                decisions.push((
                    person,
                    cycle,
                    arm,
                    Decision::Skip(reason::NO_SHOPIFY_CONSENT),
                ));
            } else if suppressed.contains(&person.email) {
                decisions.push((person, cycle, arm, Decision::Skip(reason::SUPPRESSED)));
            } else if suppressed_on_platform.contains(&person.email) {
                decisions.push((
                    person,
                    cycle,
                    arm,
                    Decision::Skip(reason::SUPPRESSED_ON_PLATFORM),
                ));
            } else {
                checked.push((person, cycle, arm));
            }
        }

        // The anomaly guard: far more people than usual means a broken upstream load more
        // often than a real change.
        let recent = self
            .state
            .recent_eligible(platform_name, step.sequence, RECENT_RUNS)
            .map_err(ledger)?;
        let usual = median(&recent);
        let eligible_now = checked.len() as u64;
        let anomalous = recent.len() >= 3
            && usual > 0
            && eligible_now as f64 > step.policy.anomaly_factor * usual as f64;
        if anomalous && self.force_activation {
            tracing::warn!(run_id = %run.run_id, eligible = eligible_now, usual, "far more people than usual are eligible; going on as --force asks");
        } else if anomalous {
            return Err(RunError::new(
                ErrorKind::Terminal,
                format!(
                    "{what}: {eligible_now} people are eligible, more than {} times the median of the last {} runs ({usual}); nothing was sent. Check the upstream data; if the number is right, run it once with `mailroom run-job {} --force`",
                    step.policy.anomaly_factor,
                    recent.len(),
                    step.job.name
                ),
            ));
        }

        // Dotdigital allows 20 enrolment calls an hour: what the calls left can take now;
        // the rest waits for a later run.
        let allowance = match &platform {
            Platform::Dotdigital(_) => {
                let used = self
                    .state
                    .platform_calls_since(platform_name, "enrolment", now - Duration::hours(1))
                    .map_err(ledger)?;
                let left = ENROLMENTS_PER_HOUR.saturating_sub(used);
                Some(left * platform.batch_size() as u64)
            }
            _ => None,
        };
        let cap = match (step.policy.max_per_run, allowance) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };

        // The platform's own word, just before enrolling.
        let salt = format!("{platform_name}/{}", step.sequence);
        let mut treatment = 0u64;
        for (person, cycle, arm) in checked {
            let standing = platform.standing(&person.email).await.map_err(failed)?;
            let decision = match standing {
                Standing::Unknown => Decision::Skip(reason::UNKNOWN_ON_PLATFORM),
                Standing::Unsubscribed => Decision::Skip(reason::UNSUBSCRIBED),
                Standing::UnsubscribedMessageType => {
                    Decision::Skip(reason::UNSUBSCRIBED_MESSAGE_TYPE)
                }
                Standing::Complained => Decision::Skip(reason::COMPLAINED),
                Standing::Subscribed => {
                    let arm = arm.unwrap_or_else(|| {
                        holdout::assign(&salt, &person.email, step.policy.holdout)
                    });
                    match arm {
                        Arm::Holdout => Decision::Hold,
                        Arm::Treatment if cap.is_some_and(|cap| treatment >= cap) => {
                            Decision::Defer
                        }
                        Arm::Treatment => {
                            treatment += 1;
                            Decision::Enroll
                        }
                    }
                }
            };
            decisions.push((person, cycle, arm, decision));
        }

        // The plan, counted and shown with a few masked examples.
        let mut examples: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut counts = ActivationCounts {
            eligible: eligible_now,
            ..ActivationCounts::default()
        };
        for (person, _, _, decision) in &decisions {
            let key = match decision {
                Decision::Skip(why) => {
                    counts.skipped += 1;
                    bump(counters, &format!("activate.skipped.{why}"), 1);
                    *why
                }
                Decision::Hold => {
                    counts.held_out += 1;
                    "held_out"
                }
                Decision::Enroll => "enroll",
                Decision::Defer => "deferred",
            };
            let shown = examples.entry(key).or_default();
            if shown.len() < EXAMPLES {
                shown.push(mask_email(&person.email));
            }
        }
        for (key, shown) in &examples {
            let total = decisions
                .iter()
                .filter(|(.., d)| match d {
                    Decision::Skip(why) => why == key,
                    Decision::Hold => *key == "held_out",
                    Decision::Enroll => *key == "enroll",
                    Decision::Defer => *key == "deferred",
                })
                .count();
            tracing::info!(run_id = %run.run_id, sequence = step.sequence, outcome = key, people = total, examples = %shown.join(", "), "{}", if run.dry_run { "dry run: would" } else { "plan" });
        }
        bump(counters, "activate.eligible", eligible_now);
        bump(counters, "activate.held_out", counts.held_out);
        let deferred = decisions
            .iter()
            .filter(|(.., d)| matches!(d, Decision::Defer))
            .count() as u64;
        if deferred > 0 {
            let message = match allowance {
                Some(_) => {
                    let per_hour = ENROLMENTS_PER_HOUR * platform.batch_size() as u64;
                    format!(
                        "more people than the hour's enrolment allowance takes: the rest wait for later runs (about {} hour(s) at this allowance)",
                        deferred.div_ceil(per_hour.max(1))
                    )
                }
                None => "more people than max_per_run: the rest wait for the next run".into(),
            };
            tracing::warn!(run_id = %run.run_id, sequence = step.sequence, deferred, "{message}");
        }
        if run.dry_run {
            bump(
                counters,
                "activate.would_make_calls",
                platform.calls_for(treatment),
            );
            bump(counters, "activate.would_enroll", treatment);
            bump(counters, "activate.would_defer", deferred);
            return self.post_summary(&step, &what, counters).await;
        }
        if deferred > 0 {
            bump(counters, "activate.deferred", deferred);
        }

        // The ledger first: skipped and held out are final for this run; treatment rows go
        // in flight before any call.
        let row = |person: &Candidate, cycle: u32, arm: Option<Arm>, status, why: Option<&str>| {
            let earlier = latest.get(&person.email).filter(|e| e.cycle == cycle);
            Enrollment {
                job: step.job.name.clone(),
                run_id: run.run_id.clone(),
                platform: platform_name.to_string(),
                sequence: step.sequence.to_string(),
                email: person.email.clone(),
                cycle,
                status,
                arm,
                reason: why.map(str::to_string),
                attempts: earlier.map_or(0, |e| e.attempts),
                created_at: earlier.map_or(now, |e| e.created_at),
                assigned_at: arm.and(earlier.and_then(|e| e.assigned_at).or(Some(now))),
                enrolled_at: None,
            }
        };
        let mut rows = Vec::new();
        let mut to_enroll = Vec::new();
        for (person, cycle, arm, decision) in &decisions {
            match decision {
                Decision::Skip(why) => rows.push(row(
                    person,
                    *cycle,
                    *arm,
                    EnrollmentStatus::Skipped,
                    Some(why),
                )),
                Decision::Hold => rows.push(row(
                    person,
                    *cycle,
                    Some(Arm::Holdout),
                    EnrollmentStatus::HeldOut,
                    None,
                )),
                Decision::Enroll => {
                    let mut r = row(
                        person,
                        *cycle,
                        Some(Arm::Treatment),
                        EnrollmentStatus::InFlight,
                        None,
                    );
                    r.attempts += 1;
                    rows.push(r.clone());
                    to_enroll.push((*person, r));
                }
                Decision::Defer => {}
            }
        }
        self.state.record_enrollments(&rows).map_err(ledger)?;

        for batch in to_enroll.chunks(platform.batch_size()) {
            let people: Vec<&Candidate> = batch.iter().map(|(p, _)| *p).collect();
            if matches!(platform, Platform::Dotdigital(_)) {
                // Counted before it is sent: a call that fails still uses the allowance.
                self.state
                    .record_platform_call(platform_name, "enrolment", Utc::now())
                    .map_err(ledger)?;
            }
            let outcomes = platform.enroll(step.sequence, &people).await;
            // Calls that ended without an answer are settled by the list, where there is one.
            let unsure = outcomes.iter().any(|o| matches!(o, Sent::Unknown(_)));
            let members = match unsure {
                true => {
                    let emails: Vec<&str> = people.iter().map(|p| p.email.as_str()).collect();
                    platform
                        .members(step.sequence, &emails)
                        .await
                        .ok()
                        .flatten()
                }
                false => None,
            };
            let mut done: Vec<Enrollment> = Vec::with_capacity(batch.len());
            for ((_, r), outcome) in batch.iter().zip(outcomes) {
                let mut r = r.clone();
                match outcome {
                    Sent::Done => {
                        r.status = EnrollmentStatus::Enrolled;
                        r.enrolled_at = Some(Utc::now());
                    }
                    Sent::Failed(why) => {
                        r.status = EnrollmentStatus::Failed;
                        r.reason = Some(why);
                    }
                    Sent::Unknown(why) => {
                        settle(&mut r, members.as_ref(), platform.can_read_back(), why, now)
                    }
                }
                bump(counters, &format!("activate.{}", r.status.as_str()), 1);
                if r.status == EnrollmentStatus::Enrolled {
                    counts.enrolled += 1;
                }
                done.push(r);
            }
            self.state.record_enrollments(&done).map_err(ledger)?;
        }
        self.state
            .record_activation_run(
                &run.run_id,
                &step.job.name,
                platform_name,
                step.sequence,
                counts,
                now,
            )
            .map_err(ledger)?;
        self.export_enrollments(run).await?;
        tracing::info!(run_id = %run.run_id, sequence = step.sequence, enrolled = counts.enrolled, held_out = counts.held_out, skipped = counts.skipped, "activation done");
        self.post_summary(&step, &what, counters).await
    }

    /// Tells the step's `summary_channel`, once per period, how many people were enrolled,
    /// held out, deferred, skipped (by reason), failed and unknown this run.
    async fn post_summary(
        &self,
        step: &ActivateStep<'_>,
        what: &str,
        counters: &mut Counters,
    ) -> Result<(), RunError> {
        let Some(channel) = &step.policy.summary_channel else {
            return Ok(());
        };
        let mut rows: Vec<(String, String, i64)> = Vec::new();
        for (key, n) in counters.iter() {
            let Some(rest) = key.strip_prefix("activate.") else {
                continue;
            };
            let (outcome, reason) = match rest.split_once('.') {
                Some(("skipped", why)) => ("skipped", why),
                _ => (rest, ""),
            };
            let shown = [
                "enrolled",
                "held_out",
                "deferred",
                "skipped",
                "failed",
                "unknown",
                "would_enroll",
                "would_defer",
            ];
            if shown.contains(&outcome) {
                rows.push((outcome.to_string(), reason.to_string(), *n as i64));
            }
        }
        let schema = Arc::new(Schema::new(vec![
            ArrowField::new("outcome", DataType::Utf8, false),
            ArrowField::new("reason", DataType::Utf8, false),
            ArrowField::new("people", DataType::Int64, false),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.0.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(
                rows.iter()
                    .map(|r| Some(r.1.as_str()))
                    .collect::<StringArray>(),
            ),
            Arc::new(arrow::array::Int64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ];
        let batch = RecordBatch::try_new(schema.clone(), columns)
            .map_err(|err| RunError::new(ErrorKind::Terminal, format!("{what}: summary: {err}")))?;
        let answer = StepAnswer {
            header: crate::sql::SqlHeader {
                title: format!("Win-back: {what}"),
                description: None,
                params: BTreeMap::new(),
                deliveries: Vec::new(),
                key_figures: Vec::new(),
                summary_row: BTreeMap::new(),
                chart: None,
            },
            result: QueryResult {
                schema,
                batches: vec![batch],
            },
        };
        let report = format!("activate_{}_{}", step.platform.name(), step.sequence);
        let deliver = super::deliver::DeliverStep {
            job: step.job,
            run: step.run,
            report: &report,
            target: channel,
        };
        self.deliver_to_slack(deliver, &answer, counters).await
    }

    /// The normalized e-mails among `emails` with Shopify e-mail marketing consent.
    async fn shopify_consented(&self, emails: &[&str]) -> Result<HashSet<String>, RunError> {
        let sql = |table: &str| {
            format!(
                "SELECT DISTINCT email_normalized FROM {table} WHERE marketing_state = 'SUBSCRIBED' AND email_normalized IS NOT NULL"
            )
        };
        self.emails_in("shopify_customers", sql, emails).await
    }

    /// The normalized e-mails among `emails` on Dotdigital's suppression list: the
    /// warehouse's `dotdigital_suppressions`, refreshed first (in real runs); read whole
    /// from Dotdigital when a dry run finds no table yet.
    async fn dotdigital_suppressed(
        &self,
        dotdigital: &Dotdigital,
        run: &RunContext,
        emails: &[&str],
        counters: &mut Counters,
    ) -> Result<HashSet<String>, RunError> {
        let table = "dotdigital_suppressions";
        if !run.dry_run {
            let streams = ["suppressions".to_string()];
            let plan = super::ExtractPlan {
                kind: SourceKind::Dotdigital,
                streams: &streams,
                stamp: super::stamp(run.run_id.clone(), run.scheduled_for),
                mode: crate::extract::Mode::Incremental,
                dry_run: false,
            };
            self.extract(plan, counters, &|_, _| {}, &|_| {}).await?;
        }
        let sql = |qualified: &str| {
            format!(
                "SELECT DISTINCT email_normalized FROM {qualified} WHERE email_normalized IS NOT NULL"
            )
        };
        match self.emails_in(table, sql, emails).await {
            Ok(found) => Ok(found),
            Err(_) if run.dry_run => {
                let wanted: HashSet<&str> = emails.iter().copied().collect();
                let all = dotdigital.suppressed().await.map_err(|err| {
                    RunError::new(err.kind(), format!("Dotdigital's suppression list: {err}"))
                })?;
                Ok(all
                    .into_iter()
                    .filter(|e| wanted.contains(e.as_str()))
                    .collect())
            }
            Err(err) => Err(err),
        }
    }

    /// The normalized e-mails among `emails` that `table` lists.
    async fn suppressed(&self, table: &str, emails: &[&str]) -> Result<HashSet<String>, RunError> {
        let sql = |qualified: &str| {
            format!(
                "SELECT DISTINCT email_normalized FROM {qualified} WHERE email_normalized IS NOT NULL"
            )
        };
        self.emails_in(table, sql, emails).await
    }

    /// The e-mails of `table` (as `sql` selects them) that are among `emails`.
    async fn emails_in(
        &self,
        table: &str,
        sql: impl Fn(&str) -> String,
        emails: &[&str],
    ) -> Result<HashSet<String>, RunError> {
        let engine = self.query_engine().await?;
        let answer = engine
            .run(&sql(&engine.table_names().qualify(table)))
            .await
            .map_err(|err| RunError::new(err.kind(), format!("reading {table}: {err}")))?;
        let wanted: HashSet<&str> = emails.iter().copied().collect();
        let (found, _) = candidates(&answer)
            .map_err(|err| RunError::new(err.kind(), format!("reading {table}: {err}")))?;
        Ok(found
            .into_iter()
            .map(|c| c.email)
            .filter(|e| wanted.contains(e.as_str()))
            .collect())
    }

    /// Replaces the warehouse's `winback_enrollments` with the whole ledger.
    async fn export_enrollments(&self, run: &RunContext) -> Result<(), RunError> {
        let rows = self.state.all_enrollments().map_err(ledger)?;
        let result = enrollments_table(&rows).map_err(|err| {
            RunError::new(ErrorKind::Terminal, format!("{ENROLLMENTS_TABLE}: {err}"))
        })?;
        let written = self.store(ENROLLMENTS_TABLE, &result, run).await?;
        tracing::info!(run_id = %run.run_id, table = ENROLLMENTS_TABLE, rows = written, "enrollment ledger exported");
        Ok(())
    }
}

/// An in-flight row resolved: on the list means enrolled, off it means the call did not
/// happen (failed, retried next run); with no list to look at, unknown.
fn resolve(
    row: &mut Enrollment,
    members: Option<&HashSet<String>>,
    run: &RunContext,
    now: DateTime<Utc>,
) {
    row.run_id = run.run_id.clone();
    match members {
        Some(members) if members.contains(&row.email) => {
            row.status = EnrollmentStatus::Enrolled;
            row.enrolled_at = Some(row.assigned_at.unwrap_or(now));
            row.reason = Some("found on the list after an interrupted run".into());
        }
        Some(_) => {
            row.status = EnrollmentStatus::Failed;
            row.reason = Some("an interrupted run did not add them; tried again".into());
        }
        None => {
            row.status = EnrollmentStatus::Unknown;
            row.reason = Some("an interrupted run may have enrolled them and the platform cannot be asked; not sent again within the cooldown".into());
        }
    }
}

/// A row whose enrolling call ended without an answer: settled by the list if it could
/// be read; left in flight (the next run looks) if it could not; `unknown` where the
/// platform can never tell.
fn settle(
    row: &mut Enrollment,
    members: Option<&HashSet<String>>,
    can_read_back: bool,
    why: String,
    now: DateTime<Utc>,
) {
    match members {
        Some(members) if members.contains(&row.email) => {
            row.status = EnrollmentStatus::Enrolled;
            row.enrolled_at = Some(now);
        }
        Some(_) => {
            row.status = EnrollmentStatus::Failed;
            row.reason = Some(why);
        }
        None if can_read_back => row.reason = Some(why),
        None => {
            row.status = EnrollmentStatus::Unknown;
            row.reason = Some(format!(
                "{why}; the platform cannot be asked whether it happened, so it is not sent again within the cooldown"
            ));
        }
    }
}

/// The ledger as the `winback_enrollments` table.
fn enrollments_table(rows: &[Enrollment]) -> Result<QueryResult, arrow::error::ArrowError> {
    let text = |f: &dyn Fn(&Enrollment) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let time = |f: &dyn Fn(&Enrollment) -> Option<DateTime<Utc>>| -> ArrayRef {
        Arc::new(
            rows.iter()
                .map(|r| f(r).map(|t| t.timestamp_micros()))
                .collect::<TimestampMicrosecondArray>()
                .with_timezone("UTC"),
        )
    };
    let stamp = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    let schema = Arc::new(Schema::new(vec![
        ArrowField::new("email_normalized", DataType::Utf8, true),
        ArrowField::new("platform", DataType::Utf8, true),
        ArrowField::new("sequence", DataType::Utf8, true),
        ArrowField::new("arm", DataType::Utf8, true),
        ArrowField::new("outcome", DataType::Utf8, true),
        ArrowField::new("reason", DataType::Utf8, true),
        ArrowField::new("assigned_at", stamp.clone(), true),
        ArrowField::new("enrolled_at", stamp, true),
        ArrowField::new("run_id", DataType::Utf8, true),
    ]));
    let columns = vec![
        text(&|r| Some(r.email.clone())),
        text(&|r| Some(r.platform.clone())),
        text(&|r| Some(r.sequence.clone())),
        text(&|r| r.arm.map(|a| a.as_str().to_string())),
        text(&|r| Some(r.status.as_str().to_string())),
        text(&|r| r.reason.clone()),
        time(&|r| r.assigned_at),
        time(&|r| r.enrolled_at),
        text(&|r| Some(r.run_id.clone())),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    Ok(QueryResult {
        schema,
        batches: vec![batch],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_recent_runs() {
        assert_eq!(median(&[]), 0);
        assert_eq!(median(&[5, 1, 9]), 5);
        assert_eq!(median(&[4, 10, 2, 8]), 6);
    }
}

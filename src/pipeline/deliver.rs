//! Deliver steps: each delivery recorded in the ledger before anything is sent and marked
//! sent after; one the ledger already holds as sent is skipped; a dry run only reads the
//! ledger. The period a delivery stands for is the job's latest fire time at or before the
//! run's, so reruns and manual runs of the same period share one delivery key.

use chrono::{Duration, SecondsFormat, Utc};

use super::Pipeline;
use crate::config::{DeliveryMode, JobConfig};
use crate::deliver::DeliverError;
use crate::deliver::sheets::Sheets;
use crate::error::Classify;
use crate::scheduler::{RunContext, RunError};
use crate::state::{Counters, Delivery, DeliveryStatus, StateError};
use crate::warehouse::QueryResult;

/// One Sheets deliver step of a run.
pub(super) struct SheetsDelivery<'a> {
    pub job: &'a JobConfig,
    pub run: &'a RunContext,
    pub report: &'a str,
    pub tab: &'a str,
    pub mode: DeliveryMode,
}

/// The period a run stands for: its job's latest fire time at or before the run's, in the
/// job's zone (a run outside the schedule stands for its own time).
pub fn period(job: &JobConfig, run: &RunContext) -> String {
    let at = run.scheduled_for;
    let fire = job
        .schedule
        .last_in(at - Duration::days(400), at)
        .unwrap_or(at);
    fire.with_timezone(&job.schedule.timezone())
        .to_rfc3339_opts(SecondsFormat::Secs, false)
}

fn bump(counters: &mut Counters, key: &str, by: u64) {
    *counters.entry(key.to_string()).or_default() += by;
}

fn ledger(err: StateError) -> RunError {
    RunError::new(err.kind(), format!("the delivery ledger: {err}"))
}

impl Pipeline {
    pub(super) async fn deliver_to_sheets(
        &self,
        step: SheetsDelivery<'_>,
        result: &QueryResult,
        counters: &mut Counters,
    ) -> Result<(), RunError> {
        let delivery = Delivery {
            job: step.job.name.clone(),
            report: step.report.to_string(),
            period: period(step.job, step.run),
            destination: "sheets".into(),
            target: step.tab.to_string(),
        };
        let failed = |err: DeliverError| {
            RunError::new(err.kind(), format!("sheets tab \"{}\": {err}", step.tab))
        };
        if step.run.dry_run {
            let done = self.state.delivery(&delivery).map_err(ledger)?;
            match done.map(|d| d.status) {
                Some(DeliveryStatus::Sent) => bump(counters, "deliveries_already_made", 1),
                _ => {
                    bump(counters, "deliveries_planned", 1);
                    bump(
                        counters,
                        &format!("rows.sheets {}", step.tab),
                        result.num_rows() as u64,
                    );
                }
            }
            return Ok(());
        }
        let record = self
            .state
            .begin_delivery(&delivery, &step.run.run_id, Utc::now())
            .map_err(ledger)?;
        if record.status == DeliveryStatus::Sent {
            tracing::info!(run_id = %step.run.run_id, key = %delivery.key(), "already delivered; nothing sent");
            bump(counters, "deliveries_already_made", 1);
            return Ok(());
        }
        let sheets = self
            .sheets
            .get_or_try_init(|| async { Sheets::new(&self.services, &self.config.base_dir) })
            .await
            .map_err(failed)?;
        match sheets
            .deliver(step.tab, step.mode, &delivery.key(), result)
            .await
        {
            Ok(written) => {
                self.state
                    .delivery_sent(&delivery, written.rows, &written.range, Utc::now())
                    .map_err(ledger)?;
                tracing::info!(run_id = %step.run.run_id, key = %delivery.key(), range = %written.range, rows = written.rows, "delivered to Sheets");
                bump(counters, "deliveries_sent", 1);
                bump(counters, &format!("rows.sheets {}", step.tab), written.rows);
                Ok(())
            }
            Err(err) => {
                self.state
                    .delivery_failed(&delivery, &err.to_string())
                    .map_err(ledger)?;
                Err(failed(err))
            }
        }
    }
}

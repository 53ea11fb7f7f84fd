//! Deliver steps: each delivery recorded in the ledger before anything is sent and marked
//! sent after; one the ledger already holds as sent is skipped; a dry run only reads the
//! ledger. The period a delivery stands for is the job's latest fire time at or before the
//! run's, so reruns and manual runs of the same period share one delivery key.

use std::future::Future;

use chrono::{Duration, SecondsFormat, Utc};

use super::{Pipeline, StepAnswer};
use crate::chart::BarChart;
use crate::config::{DeliveryMode, JobConfig};
use crate::deliver::DeliverError;
use crate::deliver::sheets::Sheets;
use crate::deliver::slack::{Report, Slack, chart_name, key_figures, message};
use crate::deliver::{csv_size, preview};
use crate::error::{Classify, ErrorKind};
use crate::scheduler::{RunContext, RunError};
use crate::state::{Counters, Delivery, DeliveryStatus, StateError};
use crate::warehouse::QueryResult;

/// One deliver step of a run: which answer goes where.
pub(super) struct DeliverStep<'a> {
    pub job: &'a JobConfig,
    pub run: &'a RunContext,
    /// The SQL step whose answer is sent.
    pub report: &'a str,
    /// The tab or channel.
    pub target: &'a str,
}

impl DeliverStep<'_> {
    /// The delivery this step makes to `destination` in its run's period.
    fn delivery(&self, destination: &str) -> Delivery {
        Delivery {
            job: self.job.name.clone(),
            report: self.report.to_string(),
            period: period(self.job, self.run),
            destination: destination.into(),
            target: self.target.to_string(),
        }
    }
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

/// A file name unique to a delivery: job, report and period, in characters any system
/// takes.
fn file_name(delivery: &Delivery) -> String {
    let stem: String = format!("{}_{}_{}", delivery.job, delivery.report, delivery.period)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("{stem}.csv")
}

/// A Slack chart's size in pixels: wide enough for a dozen labelled categories.
const CHART_SIZE: (u32, u32) = (960, 480);

fn bump(counters: &mut Counters, key: &str, by: u64) {
    *counters.entry(key.to_string()).or_default() += by;
}

fn ledger(err: StateError) -> RunError {
    RunError::new(err.kind(), format!("the delivery ledger: {err}"))
}

/// What a delivery would do, for dry runs, and whether its destination can be read back.
struct Plan {
    rows: u64,
    description: String,
    /// Whether the destination can be asked if an earlier attempt arrived (Sheets' key
    /// column, a channel's history); an incoming webhook cannot.
    can_read_back: bool,
}

/// What a destination wrote: where, and how many rows.
struct Sent {
    remote_ref: String,
    rows: u64,
}

impl Pipeline {
    /// The configured spreadsheet, set up on first use.
    async fn sheets(&self) -> Result<&Sheets, DeliverError> {
        self.sheets
            .get_or_try_init(|| async { Sheets::new(&self.services, &self.config.base_dir) })
            .await
    }

    /// The configured Slack workspace, set up on first use.
    pub(super) async fn slack(&self) -> Result<&Slack, DeliverError> {
        self.slack
            .get_or_try_init(|| async { Slack::new(&self.services) })
            .await
    }

    /// Runs one delivery through the ledger: a dry run only reads it; a sent delivery is
    /// skipped; otherwise it is recorded in flight, `send` runs, and the outcome is
    /// recorded. `rows` counts what the destination would get, for dry runs.
    ///
    /// Where the destination cannot be read back, an attempt that ended without an answer
    /// (or a crash while one was in flight) may have arrived: it is recorded `unknown`, the
    /// run fails once so people are told to look, and it is never sent again.
    async fn through_ledger<F>(
        &self,
        delivery: &Delivery,
        run: &RunContext,
        plan: Plan,
        counters: &mut Counters,
        send: F,
    ) -> Result<(), RunError>
    where
        F: Future<Output = Result<Sent, DeliverError>>,
    {
        let what = format!("{} {}", delivery.destination, delivery.target);
        let failed = |err: &DeliverError| RunError::new(err.kind(), format!("{what}: {err}"));
        if run.dry_run {
            match self
                .state
                .delivery(delivery)
                .map_err(ledger)?
                .map(|d| d.status)
            {
                Some(DeliveryStatus::Sent) => {
                    tracing::info!(key = %delivery.key(), "dry run: already delivered for this period; would send nothing");
                    bump(counters, "deliveries_already_made", 1);
                }
                Some(DeliveryStatus::Unknown) => {
                    tracing::info!(key = %delivery.key(), "dry run: may have been delivered (outcome unknown); would send nothing");
                    bump(counters, "deliveries_unknown", 1);
                }
                _ => {
                    tracing::info!(key = %delivery.key(), "dry run: would {}", plan.description);
                    bump(counters, "deliveries_planned", 1);
                    bump(counters, &format!("delivered_rows.{what}"), plan.rows);
                }
            }
            return Ok(());
        }
        if !plan.can_read_back {
            let earlier = self.state.delivery(delivery).map_err(ledger)?;
            match earlier.map(|d| d.status) {
                Some(DeliveryStatus::Unknown) => {
                    tracing::warn!(run_id = %run.run_id, key = %delivery.key(), "an earlier attempt may have arrived (outcome unknown); not sent again");
                    bump(counters, "deliveries_unknown", 1);
                    return Ok(());
                }
                Some(DeliveryStatus::InFlight) => {
                    let why = "an earlier attempt was interrupted while in flight";
                    return Err(self.outcome_unknown(delivery, &what, why, counters)?);
                }
                _ => {}
            }
        }
        let record = self
            .state
            .begin_delivery(delivery, &run.run_id, Utc::now())
            .map_err(ledger)?;
        if record.status == DeliveryStatus::Sent {
            tracing::info!(run_id = %run.run_id, key = %delivery.key(), "already delivered; nothing sent");
            bump(counters, "deliveries_already_made", 1);
            return Ok(());
        }
        match send.await {
            Ok(sent) => {
                self.state
                    .delivery_sent(delivery, sent.rows, &sent.remote_ref, Utc::now())
                    .map_err(ledger)?;
                tracing::info!(run_id = %run.run_id, key = %delivery.key(), to = %sent.remote_ref, rows = sent.rows, "delivered");
                bump(counters, "deliveries_sent", 1);
                bump(counters, &format!("delivered_rows.{what}"), sent.rows);
                Ok(())
            }
            Err(err) if !plan.can_read_back && err.outcome_unknown() => {
                Err(self.outcome_unknown(delivery, &what, &err.to_string(), counters)?)
            }
            Err(err) => {
                self.state
                    .delivery_failed(delivery, &err.to_string())
                    .map_err(ledger)?;
                Err(failed(&err))
            }
        }
    }

    /// Records `delivery` as of unknown outcome and returns the error that tells people to
    /// look at the destination themselves.
    fn outcome_unknown(
        &self,
        delivery: &Delivery,
        what: &str,
        why: &str,
        counters: &mut Counters,
    ) -> Result<RunError, RunError> {
        let message = format!(
            "{what}: {why}, and this destination cannot be asked whether it arrived; it is recorded as unknown and will not be sent again (look in the channel; a bot token instead of a webhook lets mailroom check)"
        );
        self.state
            .delivery_unknown(delivery, &message)
            .map_err(ledger)?;
        bump(counters, "deliveries_unknown", 1);
        Ok(RunError::new(ErrorKind::Terminal, message))
    }

    pub(super) async fn deliver_to_sheets(
        &self,
        step: DeliverStep<'_>,
        mode: DeliveryMode,
        result: &QueryResult,
        counters: &mut Counters,
    ) -> Result<(), RunError> {
        let delivery = step.delivery("sheets");
        let key = delivery.key();
        let send = async {
            let written = self
                .sheets()
                .await?
                .deliver(step.target, mode, &key, result)
                .await?;
            Ok(Sent {
                remote_ref: written.range,
                rows: written.rows,
            })
        };
        let rows = result.num_rows() as u64;
        let plan = Plan {
            rows,
            can_read_back: true,
            description: match mode {
                DeliveryMode::Append => format!(
                    "append {rows} rows to tab \"{}\" as this period's block{}",
                    step.target,
                    preview(result)
                ),
                DeliveryMode::Replace => format!(
                    "rewrite the data rows of tab \"{}\" with {rows} rows{}",
                    step.target,
                    preview(result)
                ),
            },
        };
        self.through_ledger(&delivery, step.run, plan, counters, send)
            .await
    }

    pub(super) async fn deliver_to_slack(
        &self,
        step: DeliverStep<'_>,
        answer: &StepAnswer,
        counters: &mut Counters,
    ) -> Result<(), RunError> {
        let delivery = step.delivery("slack");
        let key = delivery.key();
        let chart = match &answer.header.chart {
            Some(spec) => Some(
                BarChart::from_result(spec, &answer.header.title, &answer.result)
                    .and_then(|chart| chart.png(CHART_SIZE.0, CHART_SIZE.1))
                    .map_err(|source| {
                        let err = DeliverError::Chart {
                            title: answer.header.title.clone(),
                            source,
                        };
                        RunError::new(err.kind(), format!("slack {}: {err}", step.target))
                    })?,
            ),
            None => None,
        };
        let slack = self
            .slack()
            .await
            .map_err(|err| RunError::new(err.kind(), format!("slack {}: {err}", step.target)))?;
        let report = Report {
            title: &answer.header.title,
            key_figures: key_figures(&answer.header, &answer.result),
            period: &delivery.period,
            key: &key,
            file_name: file_name(&delivery),
            chart,
            result: &answer.result,
        };
        let send = async {
            Ok(Sent {
                remote_ref: slack.deliver(step.target, &report).await?,
                rows: answer.result.num_rows() as u64,
            })
        };
        let rows = answer.result.num_rows() as u64;
        let (text, _) = message(&report);
        let chart_file = report.chart.as_ref().map_or_else(String::new, |png| {
            format!(
                " and {} ({} bytes)",
                chart_name(&report.file_name),
                png.len()
            )
        });
        let plan = Plan {
            rows,
            can_read_back: slack.can_read_back(),
            description: format!(
                "post to {}: \"{text}\" with the top rows as a table, and share {} ({} bytes){chart_file}{}",
                step.target,
                report.file_name,
                csv_size(&answer.result),
                preview(&answer.result)
            ),
        };
        self.through_ledger(&delivery, step.run, plan, counters, send)
            .await
    }
}

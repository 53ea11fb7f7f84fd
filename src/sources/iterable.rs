//! Iterable: email campaigns and their metrics → `email_campaign_metrics`.
//!
//! Campaigns come in numbered pages (`page`, `pageSize`, until no `nextPageUrl`); their
//! metrics come from `GET /api/campaigns/metrics`, a CSV answer with one row per requested
//! campaign id and columns named as Iterable names them (read by name, never position).
//! The metrics endpoint allows 10 requests a minute, so ids go [`METRICS_BATCH`] at a time
//! through a per-minute budget of their own; an answer missing a requested id's row (a body
//! cut off at a line end still parses as CSV) is asked for again. Each campaign and its metrics row become one
//! record `{"campaign": …, "metrics": {…}}` for the decoder.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::campaign_metrics::{self, MetricFields};
use super::{Connection, Incremental, PageSender, Source, SourceError, Stream, Window};
use crate::http::fetch::{Pages, Parsed, fetch_parsed};
use crate::http::page::{CsvTable, Page, RecordsAt};
use crate::http::paginate::NumberedPages;
use crate::http::{Call, Service};
use crate::normalize::{Convert, TableSchema};

/// Campaign ids per metrics request.
pub const METRICS_BATCH: usize = 100;
/// Campaigns per page.
const PAGE_SIZE: u32 = 200;

/// The Iterable source.
#[derive(Debug, Clone)]
pub struct Iterable {
    api: Connection,
    /// The metrics endpoint's own budget, on the same credentials.
    metrics: Arc<Service>,
}

impl Iterable {
    /// The source over `api`; metrics calls wait on the credential's `metrics` budget.
    pub fn new(api: Connection) -> Self {
        let metrics = api.with_budget("metrics");
        Iterable {
            api,
            metrics: Arc::new(metrics),
        }
    }

    /// Every email campaign (its id, start and record as sent), and the campaign records
    /// that cannot be asked about, with the reason.
    async fn email_campaigns(&self) -> Result<(Vec<Campaign>, Vec<(String, String)>), SourceError> {
        let mut paginator = NumberedPages::new(PAGE_SIZE, "/nextPageUrl");
        let call = Call::get("/api/campaigns").query("sort", "id");
        let at = RecordsAt::Pointer("/campaigns");
        let mut pages = Pages::new(
            &self.api.client,
            &self.api.service,
            call,
            at,
            &mut paginator,
        );
        let (mut campaigns, mut rejected) = (Vec::new(), Vec::new());
        while let Some(page) = pages.next().await? {
            for record in page.records() {
                match serde_json::from_str::<CampaignSummary>(record) {
                    Ok(summary)
                        if summary.message_medium.as_deref().unwrap_or("Email") == "Email" =>
                    {
                        campaigns.push(Campaign {
                            id: summary.id,
                            start: summary.start_at.and_then(DateTime::from_timestamp_millis),
                            record: record.to_string(),
                        });
                    }
                    Ok(_) => {}
                    Err(err) => rejected.push((
                        record.to_string(),
                        format!(
                            "a campaign whose id, messageMedium or startAt cannot be read: {err}"
                        ),
                    )),
                }
            }
        }
        Ok((campaigns, rejected))
    }

    /// Sends one page per batch of campaigns: each campaign with its metrics row.
    async fn fetch_campaigns(&self, window: Window, pages: &PageSender) -> Result<(), SourceError> {
        let (campaigns, rejected) = self.email_campaigns().await?;
        // Campaigns that cannot be asked about go to quarantine first, on a page of their own.
        if !rejected.is_empty() {
            let page = Page::from_records(&[]).with_rejected(rejected);
            if pages.send(page).await.is_err() {
                return Ok(());
            }
        }
        for batch in campaigns.chunks(METRICS_BATCH) {
            // Lifetime totals: from the earliest send of the batch to the day after the run.
            let start = batch
                .iter()
                .filter_map(|c| c.start)
                .min()
                .unwrap_or(window.run_at);
            let end = window.run_at + Duration::days(1);
            let mut call = Call::get("/api/campaigns/metrics")
                .query(
                    "startDateTime",
                    start.to_rfc3339_opts(SecondsFormat::Secs, true),
                )
                .query(
                    "endDateTime",
                    end.to_rfc3339_opts(SecondsFormat::Secs, true),
                );
            for campaign in batch {
                call = call.query("campaignId", campaign.id);
            }
            let wanted: Vec<String> = batch.iter().map(|c| c.id.to_string()).collect();
            let csv = fetch_parsed(&self.api.client, &self.metrics, &call, |text| {
                match CsvTable::parse(&text, "id") {
                    Ok(csv) => match missing_rows(&csv, &wanted) {
                        None => Parsed::Ok(csv),
                        // A body cut at a line end still parses: the rows must all be there.
                        Some(id) => Parsed::Bad(format!("no metrics row for campaign {id}")),
                    },
                    Err(reason) => Parsed::Bad(reason),
                }
            })
            .await?;
            let id_column = csv.headers.iter().position(|h| h == "id").unwrap_or(0);
            let rows: HashMap<&str, &Vec<String>> = csv
                .rows
                .iter()
                .filter_map(|row| row.get(id_column).map(|id| (id.as_str(), row)))
                .collect();
            let records: Vec<String> = batch
                .iter()
                .map(|campaign| {
                    let metrics: Map<String, Value> = rows
                        .get(campaign.id.to_string().as_str())
                        .map(|row| {
                            csv.headers
                                .iter()
                                .zip(row.iter())
                                .filter(|(header, _)| header.as_str() != "id")
                                .map(|(header, value)| {
                                    (header.clone(), Value::from(value.as_str()))
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        r#"{{"campaign":{},"metrics":{}}}"#,
                        campaign.record,
                        Value::Object(metrics)
                    )
                })
                .collect();
            if pages.send(Page::from_records(&records)).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// The first wanted campaign id without a row in `csv`.
fn missing_rows<'a>(csv: &CsvTable, wanted: &'a [String]) -> Option<&'a str> {
    let id_column = csv.headers.iter().position(|h| h == "id")?;
    wanted
        .iter()
        .find(|id| !csv.rows.iter().any(|row| row.get(id_column) == Some(*id)))
        .map(String::as_str)
}

/// What mailroom reads of a campaign before asking for its metrics.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CampaignSummary {
    id: i64,
    message_medium: Option<String>,
    start_at: Option<i64>,
}

#[derive(Debug)]
struct Campaign {
    id: i64,
    start: Option<DateTime<Utc>>,
    record: String,
}

/// Where Iterable's records keep each metric (CSV headers as Iterable spells them).
const FIELDS: MetricFields = MetricFields {
    platform: "iterable",
    campaign_id: "campaign.id",
    name: "campaign.name",
    subject: None,
    sent_at: ("campaign.startAt", Convert::EpochMillis),
    sent: "metrics.Total Email Sends",
    delivered: "metrics.Total Emails Delivered",
    bounces: "metrics.Total Emails Bounced",
    opens: "metrics.Total Email Opens",
    unique_opens: "metrics.Unique Email Opens",
    clicks: "metrics.Total Emails Clicked",
    unique_clicks: "metrics.Unique Email Clicks",
    unsubscribes: "metrics.Total Unsubscribes",
    complaints: "metrics.Total Complaints",
    orders: Some("metrics.Total Purchases"),
    revenue: Some(("metrics.Revenue", Convert::Plain)),
    currency: None,
};

/// Iterable's part of `email_campaign_metrics`.
pub fn campaigns_table() -> TableSchema {
    // Campaign settings and the many other metric columns are not stored.
    campaign_metrics::table(FIELDS).ignoring(&["campaign.*", "metrics.*"])
}

impl Source for Iterable {
    fn name(&self) -> &'static str {
        "iterable"
    }

    fn streams(&self) -> Vec<Stream> {
        vec![Stream {
            name: "campaigns",
            table: campaigns_table(),
            incremental: Incremental::Full,
        }]
    }

    async fn fetch(
        &self,
        stream: &str,
        window: Window,
        pages: PageSender,
    ) -> Result<(), SourceError> {
        match stream {
            "campaigns" => self.fetch_campaigns(window, &pages).await,
            other => Err(SourceError::Config(format!(
                "iterable has no stream {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_well_declared() {
        campaigns_table().validate().unwrap();
    }
}

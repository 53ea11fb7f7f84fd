//! Dotdigital: sent campaigns and their summaries → `email_campaign_metrics`; the
//! account's suppression list → `dotdigital_suppressions`.
//!
//! Campaigns come in skip/select pages (at most 1000 a page, until a short page). There is
//! no bulk summary: each sent campaign costs one `GET /v2/campaigns/{id}/summary`, so after
//! the first load only campaigns with activity since the last run are read
//! (`/v2/campaigns/with-activity-since/{date}`). Summaries count in HTML/text/total
//! triples; mailroom uses the `numTotal*` totals, and bounces are hard plus soft.
//!
//! The suppression list (`api-reference/dotdigital.md` §14) is read from
//! `/v2/contacts/suppressed-since/{date}` (unsubscribes, bounces and complaints alike) from
//! the table's latest `date_removed` on, one row per address: a person once suppressed stays
//! in the table, which is what win-back needs (a contact's status alone can still say
//! `Subscribed` after a complaint).

use chrono::SecondsFormat;
use serde_json::Value;

use super::campaign_metrics::{self, MetricFields};
use super::{Connection, Incremental, PageSender, Source, SourceError, Stream, Window};
use crate::http::Call;
use crate::http::fetch::{Pages, fetch_object};
use crate::http::page::{Page, RecordsAt};
use crate::http::paginate::SkipSelect;
use crate::normalize::schema::{Column, ColumnType as T, ValueFrom};
use crate::normalize::{Convert, TableSchema};

/// Campaigns per page (Dotdigital's maximum).
const PAGE_SIZE: u32 = 1000;

/// The Dotdigital source.
#[derive(Debug, Clone)]
pub struct Dotdigital {
    api: Connection,
}

impl Dotdigital {
    /// The source over `api`.
    pub fn new(api: Connection) -> Self {
        Dotdigital { api }
    }

    /// Sends one page per page of campaigns: each sent campaign with its summary.
    async fn fetch_campaigns(&self, window: Window, pages: &PageSender) -> Result<(), SourceError> {
        let list = match window.since {
            Some(since) => Call::get(format!(
                "/v2/campaigns/with-activity-since/{}",
                since.to_rfc3339_opts(SecondsFormat::Secs, true)
            )),
            None => Call::get("/v2/campaigns"),
        };
        let mut paginator = SkipSelect::new(PAGE_SIZE);
        let (client, service) = (&self.api.client, &self.api.service);
        let mut listed = Pages::new(client, service, list, RecordsAt::Root, &mut paginator);
        while let Some(page) = listed.next().await? {
            let (mut records, mut rejected) = (Vec::new(), Vec::new());
            for campaign in page.records() {
                match self.with_summary(campaign).await? {
                    Composed::Record(record) => records.push(record),
                    Composed::Unsent => {}
                    Composed::Rejected(reason) => rejected.push((campaign.to_string(), reason)),
                }
            }
            let composed = Page::from_records(&records).with_rejected(rejected);
            if pages.send(composed).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Sends each page of the suppression list since the window's start (all of it at
    /// first).
    async fn fetch_suppressions(
        &self,
        window: Window,
        pages: &PageSender,
    ) -> Result<(), SourceError> {
        let since = window.since.map_or_else(
            || "2000-01-01T00:00:00".to_string(),
            |t| t.format("%Y-%m-%dT%H:%M:%S").to_string(),
        );
        let call = Call::get(format!("/v2/contacts/suppressed-since/{since}"));
        let mut paginator = SkipSelect::new(PAGE_SIZE);
        let (client, service) = (&self.api.client, &self.api.service);
        let mut listed = Pages::new(client, service, call, RecordsAt::Root, &mut paginator);
        while let Some(page) = listed.next().await? {
            if pages.send(page).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// `{"campaign": …, "summary": …, "derived": {"bounces": …}}` for a sent campaign.
    async fn with_summary(&self, campaign: &str) -> Result<Composed, SourceError> {
        let head: Value = serde_json::from_str(campaign).unwrap_or(Value::Null);
        if head["status"].as_str() != Some("Sent") {
            return Ok(Composed::Unsent);
        }
        let Some(id) = head["id"].as_i64() else {
            return Ok(Composed::Rejected(format!(
                "field `id`: expected an integer, got {}",
                head["id"]
            )));
        };
        let call = Call::get(format!("/v2/campaigns/{id}/summary"));
        let text = fetch_object(&self.api.client, &self.api.service, &call).await?;
        let totals: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let bounces = match (
            totals["numTotalHardBounces"].as_i64(),
            totals["numTotalSoftBounces"].as_i64(),
        ) {
            (Some(hard), Some(soft)) => Value::from(hard + soft),
            _ => Value::Null,
        };
        Ok(Composed::Record(format!(
            r#"{{"campaign":{campaign},"summary":{text},"derived":{{"bounces":{bounces}}}}}"#
        )))
    }
}

/// What became of one listed campaign.
enum Composed {
    /// Its record with its summary.
    Record(String),
    /// Not sent: no summary to read.
    Unsent,
    /// It cannot be asked about; the reason goes to quarantine with it.
    Rejected(String),
}

/// Where Dotdigital's records keep each metric.
const FIELDS: MetricFields = MetricFields {
    platform: "dotdigital",
    campaign_id: "campaign.id",
    name: "campaign.name",
    subject: Some("campaign.subject"),
    sent_at: ("summary.dateSent", Convert::Plain),
    sent: "summary.numTotalSent",
    delivered: "summary.numTotalDelivered",
    bounces: "derived.bounces",
    opens: "summary.numTotalOpens",
    unique_opens: "summary.numTotalUniqueOpens",
    clicks: "summary.numTotalClicks",
    unique_clicks: "summary.numRecipientsClicked",
    unsubscribes: "summary.numTotalUnsubscribes",
    complaints: "summary.numTotalIspComplaints",
    orders: Some("summary.numOrders"),
    revenue: Some(("summary.revenue", Convert::LenientMoney)),
    currency: None,
};

/// Dotdigital's part of `email_campaign_metrics`.
pub fn campaigns_table() -> TableSchema {
    // Content, sender settings and the HTML/text halves of each counter are not stored.
    campaign_metrics::table(FIELDS).ignoring(&["campaign.*", "summary.*"])
}

/// `dotdigital_suppressions`: every suppressed address with why and since when, merged by
/// address, read from the latest `date_removed` on.
pub fn suppressions_table() -> TableSchema {
    TableSchema::new(
        "dotdigital_suppressions",
        vec![
            Column::field("contact_id", T::Int64, "suppressedContact.id"),
            Column::field("email", T::Text, "suppressedContact.email").required(),
            Column::derived("email_normalized", T::Text, ValueFrom::Lowercase("email")).required(),
            Column::field("reason", T::Text, "reason"),
            Column::field("date_removed", T::Timestamp, "dateRemoved").required(),
        ],
    )
    .merge_on(&["email_normalized"])
    .cursor("date_removed")
    .ignoring(&["suppressedContact.*"])
}

impl Source for Dotdigital {
    fn name(&self) -> &'static str {
        "dotdigital"
    }

    fn streams(&self) -> Vec<Stream> {
        vec![
            Stream {
                name: "campaigns",
                table: campaigns_table(),
                incremental: Incremental::SinceLastRun,
            },
            Stream {
                name: "suppressions",
                table: suppressions_table(),
                // Removals are dated to the second; a minute's overlap re-reads the edge.
                incremental: Incremental::Since {
                    overlap: std::time::Duration::from_secs(60),
                },
            },
        ]
    }

    async fn fetch(
        &self,
        stream: &str,
        window: Window,
        pages: PageSender,
    ) -> Result<(), SourceError> {
        match stream {
            "campaigns" => self.fetch_campaigns(window, &pages).await,
            "suppressions" => self.fetch_suppressions(window, &pages).await,
            other => Err(SourceError::Config(format!(
                "dotdigital has no stream {other}"
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
        suppressions_table().validate().unwrap();
    }
}

//! SmartrMail: lists, subscribers (status, complaint flag, engagement counters), a daily
//! snapshot of those counters, and — experimental — campaign metrics.
//!
//! The public API returns whole arrays with no pagination: `GET /lists`, then
//! `GET /lists/{id}/list_subscribers` per list. Subscribers on several lists arrive more
//! than once; tables are merged on the subscriber's id, so each lands once. SmartrMail does
//! not publish a campaigns API: the `campaigns` stream follows mailroom's own contract
//! (api-reference/smartrmail.md §7) and runs only with `experimental_campaigns = true`.

use serde_json::Value;

use super::campaign_metrics::{self, MetricFields};
use super::{Connection, Incremental, PageSender, Source, SourceError, Stream, Window};
use crate::http::Call;
use crate::http::fetch::{fetch_page, fetch_pages};
use crate::http::page::RecordsAt;
use crate::http::paginate::SinglePage;
use crate::normalize::{Column, ColumnType as T, Convert, TableSchema, ValueFrom};

/// The SmartrMail source.
#[derive(Debug, Clone)]
pub struct SmartrMail {
    api: Connection,
    experimental_campaigns: bool,
}

impl SmartrMail {
    /// The source over `api`; its section's `experimental_campaigns` enables the
    /// `campaigns` stream.
    pub fn new(api: Connection) -> Self {
        let experimental_campaigns = api.flag("experimental_campaigns");
        SmartrMail {
            api,
            experimental_campaigns,
        }
    }

    /// Every list's id.
    async fn list_ids(&self) -> Result<Vec<String>, SourceError> {
        let page = fetch_page(
            &self.api.client,
            &self.api.service,
            &Call::get("/lists"),
            RecordsAt::Root,
            &mut SinglePage,
        )
        .await?;
        page.records()
            .map(|record| {
                let list: Value = serde_json::from_str(record).unwrap_or(Value::Null);
                match &list["id"] {
                    Value::String(id) => Ok(id.clone()),
                    Value::Number(id) => Ok(id.to_string()),
                    _ => Err(SourceError::Contract {
                        service: self.api.service.name,
                        message: format!("GET /lists returned a list without an id: {record}"),
                    }),
                }
            })
            .collect()
    }

    /// Sends the array `call` answers with as one page.
    async fn send_array(&self, call: Call, pages: &PageSender) -> Result<(), SourceError> {
        let (client, service) = (&self.api.client, &self.api.service);
        fetch_pages(
            client,
            service,
            call,
            RecordsAt::Root,
            &mut SinglePage,
            pages,
        )
        .await?;
        Ok(())
    }

    /// Sends each list's subscribers as one page.
    async fn fetch_subscribers(&self, pages: &PageSender) -> Result<(), SourceError> {
        for id in self.list_ids().await? {
            let call = Call::get(format!("/lists/{}/list_subscribers", encode(&id)));
            self.send_array(call, pages).await?;
        }
        Ok(())
    }
}

/// Percent-encodes an opaque id for use as one path segment.
pub(crate) fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// `smartrmail_lists`: every list, replaced by each load.
pub fn lists_table() -> TableSchema {
    TableSchema::new(
        "smartrmail_lists",
        vec![
            Column::named("id", T::Text).required(),
            Column::named("name", T::Text),
            Column::named("subscribers_count", T::Int64),
        ],
    )
    .replaced()
}

/// `smartrmail_subscribers`: one row per subscriber, merged on id.
pub fn subscribers_table() -> TableSchema {
    TableSchema::new(
        "smartrmail_subscribers",
        vec![
            Column::named("id", T::Text).required(),
            Column::named("email", T::Text),
            Column::derived("email_normalized", T::Text, ValueFrom::Lowercase("email")),
            Column::named("phone", T::Text).convert(Convert::NullText),
            Column::named("first_name", T::Text),
            Column::named("last_name", T::Text),
            Column::named("status", T::Text),
            Column::named("subscribed", T::Boolean).required(),
            Column::named("unsubscribed_at", T::Timestamp),
            Column::named("complained", T::Boolean),
            Column::named("delivered_count", T::Int64),
            Column::named("opened_count", T::Int64),
            Column::named("clicked_count", T::Int64),
            Column::named("joined_at", T::Timestamp),
        ],
    )
    .merge_on(&["id"])
    .ignoring(&["custom_fields"])
}

/// `smartrmail_engagement_daily`: each subscriber's counters as of each day, one row per
/// (day, subscriber) however often the stream runs that day.
pub fn engagement_daily_table() -> TableSchema {
    TableSchema::new(
        "smartrmail_engagement_daily",
        vec![
            Column::derived("snapshot_date", T::Date, ValueFrom::RunDate).required(),
            Column::field("subscriber_id", T::Text, "id").required(),
            Column::named("email", T::Text),
            Column::derived("email_normalized", T::Text, ValueFrom::Lowercase("email")),
            Column::named("subscribed", T::Boolean),
            Column::named("complained", T::Boolean),
            Column::named("delivered_count", T::Int64),
            Column::named("opened_count", T::Int64),
            Column::named("clicked_count", T::Int64),
        ],
    )
    .merge_on(&["snapshot_date", "subscriber_id"])
    .ignoring(&[
        "phone",
        "first_name",
        "last_name",
        "status",
        "unsubscribed_at",
        "joined_at",
        "custom_fields",
    ])
}

/// Where the experimental contract keeps each metric.
const CAMPAIGN_FIELDS: MetricFields = MetricFields {
    platform: "smartrmail",
    campaign_id: "id",
    name: "name",
    subject: Some("subject"),
    sent_at: ("sent_at", Convert::Plain),
    sent: "stats.sent_count",
    delivered: "stats.delivered_count",
    bounces: "stats.bounced_count",
    opens: "stats.opened_count",
    unique_opens: "stats.unique_opened_count",
    clicks: "stats.clicked_count",
    unique_clicks: "stats.unique_clicked_count",
    unsubscribes: "stats.unsubscribed_count",
    complaints: "stats.complained_count",
    orders: Some("stats.orders_count"),
    revenue: Some(("stats.revenue", Convert::Plain)),
    currency: Some("stats.currency"),
};

/// SmartrMail's part of `email_campaign_metrics`.
pub fn campaigns_table() -> TableSchema {
    campaign_metrics::table(CAMPAIGN_FIELDS).ignoring(&[
        "status",
        "list_ids",
        "stats.attribution_model",
    ])
}

impl Source for SmartrMail {
    fn name(&self) -> &'static str {
        "smartrmail"
    }

    fn streams(&self) -> Vec<Stream> {
        let mut streams = vec![
            Stream {
                name: "lists",
                table: lists_table(),
                incremental: Incremental::Full,
            },
            Stream {
                name: "subscribers",
                table: subscribers_table(),
                incremental: Incremental::Full,
            },
            Stream {
                name: "engagement_daily",
                table: engagement_daily_table(),
                incremental: Incremental::Daily,
            },
        ];
        if self.experimental_campaigns {
            streams.push(Stream {
                name: "campaigns",
                table: campaigns_table(),
                incremental: Incremental::Full,
            });
        }
        streams
    }

    async fn fetch(
        &self,
        stream: &str,
        _window: Window,
        pages: PageSender,
    ) -> Result<(), SourceError> {
        match stream {
            "lists" => self.send_array(Call::get("/lists"), &pages).await,
            "subscribers" | "engagement_daily" => self.fetch_subscribers(&pages).await,
            "campaigns" if self.experimental_campaigns => {
                let sent = Call::get("/campaigns").query("status", "sent");
                self.send_array(sent, &pages).await
            }
            "campaigns" => Err(SourceError::Config(
                "SmartrMail publishes no campaigns API; set experimental_campaigns = true in [sources.smartrmail] to use mailroom's own contract".into(),
            )),
            other => Err(SourceError::Config(format!("smartrmail has no stream {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_well_declared() {
        for table in [
            lists_table(),
            subscribers_table(),
            engagement_daily_table(),
            campaigns_table(),
        ] {
            table.validate().unwrap();
        }
    }
}

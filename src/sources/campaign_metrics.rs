//! `email_campaign_metrics`: one schema for every email platform's campaign results, so
//! reports do not care which platform sent the email.
//!
//! Each platform says where each metric is in its records ([`MetricFields`]); the columns,
//! types, key and the derived rates are the same for all. Rates divide by delivered emails
//! and are null, never infinite, when nothing was delivered.

use std::borrow::Cow;

use crate::normalize::{Column, ColumnType as T, Convert, TableSchema, ValueFrom};

/// The table's name.
pub const TABLE: &str = "email_campaign_metrics";

/// Where one platform's records keep each metric: a dotted field path, or `None` when the
/// platform does not report it.
#[derive(Debug, Clone, Copy)]
pub struct MetricFields {
    /// The platform's name, stored in `platform`.
    pub platform: &'static str,
    /// Campaign id (a string or a number).
    pub campaign_id: &'static str,
    /// Campaign name.
    pub name: &'static str,
    /// Subject line.
    pub subject: Option<&'static str>,
    /// When it was sent, and how the time is written.
    pub sent_at: (&'static str, Convert),
    /// Emails sent.
    pub sent: &'static str,
    /// Emails delivered.
    pub delivered: &'static str,
    /// Bounces.
    pub bounces: &'static str,
    /// Opens, all.
    pub opens: &'static str,
    /// People who opened.
    pub unique_opens: &'static str,
    /// Clicks, all.
    pub clicks: &'static str,
    /// People who clicked.
    pub unique_clicks: &'static str,
    /// Unsubscribes.
    pub unsubscribes: &'static str,
    /// Spam complaints.
    pub complaints: &'static str,
    /// Attributed orders.
    pub orders: Option<&'static str>,
    /// Attributed revenue, and how the amount is written.
    pub revenue: Option<(&'static str, Convert)>,
    /// Revenue currency.
    pub currency: Option<&'static str>,
}

fn field(name: &'static str, kind: T, path: Option<&'static str>, convert: Convert) -> Column {
    match path {
        Some(path) => Column::field(name, kind, path).convert(convert),
        None => Column::derived(name, kind, ValueFrom::Absent),
    }
}

fn count(name: &'static str, path: &'static str) -> Column {
    field(name, T::Int64, Some(path), Convert::NumberOrText)
}

/// The table as one platform fills it.
pub fn table(fields: MetricFields) -> TableSchema {
    let (sent_at, sent_at_convert) = fields.sent_at;
    let (revenue, revenue_convert) = match fields.revenue {
        Some((path, convert)) => (Some(path), convert),
        None => (None, Convert::Plain),
    };
    TableSchema::new(
        TABLE,
        vec![
            Column::derived("platform", T::Text, ValueFrom::Constant(fields.platform)).required(),
            Column {
                name: Cow::Borrowed("campaign_id"),
                kind: T::Text,
                nullable: false,
                from: ValueFrom::Field(Cow::Borrowed(fields.campaign_id), Convert::NumberOrText),
            },
            Column::field("name", T::Text, fields.name),
            field("subject", T::Text, fields.subject, Convert::Plain),
            Column::field("sent_at", T::Timestamp, sent_at).convert(sent_at_convert),
            count("sent", fields.sent),
            count("delivered", fields.delivered),
            count("bounces", fields.bounces),
            count("opens", fields.opens),
            count("unique_opens", fields.unique_opens),
            count("clicks", fields.clicks),
            count("unique_clicks", fields.unique_clicks),
            count("unsubscribes", fields.unsubscribes),
            count("complaints", fields.complaints),
            field("orders", T::Int64, fields.orders, Convert::NumberOrText),
            field("revenue", T::Money, revenue, revenue_convert),
            field("currency", T::Text, fields.currency, Convert::Plain),
            Column::derived(
                "open_rate",
                T::Float64,
                ValueFrom::Ratio("unique_opens", "delivered"),
            ),
            Column::derived(
                "click_through_rate",
                T::Float64,
                ValueFrom::Ratio("unique_clicks", "delivered"),
            ),
            Column::derived(
                "unsubscribe_rate",
                T::Float64,
                ValueFrom::Ratio("unsubscribes", "delivered"),
            ),
        ],
    )
    .merge_on(&["platform", "campaign_id"])
}

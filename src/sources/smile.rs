//! Smile.io loyalty: customers (points balance, referral URL, member state, VIP tier id and
//! name, date of birth), VIP tiers and points transactions.
//!
//! Lists page by cursor (`limit` up to 250, `metadata.next_cursor` until null), newest
//! first, filtered by `updated_at_min`; the token allows 10 requests per second, so every
//! call waits on one budget. A date of birth in year 1004 means "day and month only": the
//! date is null and `birth_month` / `birth_day` keep what is known.

use std::time::Duration;

use super::{Connection, Incremental, PageSender, Source, SourceError, Stream, Window};
use crate::http::Call;
use crate::http::fetch::fetch_pages;
use crate::http::page::RecordsAt;
use crate::http::paginate::{CursorPages, SinglePage};
use crate::normalize::{Column, ColumnType as T, Convert, TableSchema, ValueFrom};

/// Smile's documented limit per token.
/// The largest page Smile serves.
const PAGE_SIZE: u32 = 250;

/// The Smile.io source.
#[derive(Debug, Clone)]
pub struct Smile {
    api: Connection,
}

impl Smile {
    /// The source over `api`, whose service waits on the token's budget
    /// (`[sources.smile] requests_per_second`, Smile's documented 10 by default).
    pub fn new(api: Connection) -> Self {
        Smile { api }
    }
}

/// `smile_customers`: one row per Smile customer, merged on id.
pub fn customers_table() -> TableSchema {
    TableSchema::new(
        "smile_customers",
        vec![
            Column::named("id", T::Int64).required(),
            Column::named("email", T::Text),
            Column::derived("email_normalized", T::Text, ValueFrom::Lowercase("email")),
            Column::named("first_name", T::Text),
            Column::named("last_name", T::Text),
            Column::named("state", T::Text),
            Column::named("points_balance", T::Int64),
            Column::named("referral_url", T::Text),
            Column::field("vip_tier_id", T::Int64, "vip_status.vip_tier_id"),
            Column::field("vip_tier_name", T::Text, "vip_status.vip_tier.name"),
            Column::field(
                "vip_tier_expires_at",
                T::Timestamp,
                "vip_status.vip_tier_expires_at",
            ),
            Column::field("next_vip_tier_id", T::Int64, "vip_status.next_vip_tier_id"),
            Column::field(
                "points_to_next_vip_tier",
                T::Float64,
                "vip_status.delta_to_next_vip_tier",
            ),
            Column::named("date_of_birth", T::Date).convert(Convert::DateYear1004),
            Column::derived("birth_month", T::Int64, ValueFrom::MonthOf("date_of_birth")),
            Column::derived("birth_day", T::Int64, ValueFrom::DayOf("date_of_birth")),
            Column::named("created_at", T::Timestamp),
            Column::named("updated_at", T::Timestamp).required(),
        ],
    )
    .merge_on(&["id"])
    .cursor("updated_at")
    .ignoring(&[
        // Deprecated duplicate of vip_status.vip_tier_id.
        "vip_tier_id",
        "vip_status.progress_value",
        "vip_status.current_vip_period_end",
        "vip_status.delta_to_retain_vip_tier",
        "vip_status.vip_tier.id",
        "vip_status.vip_tier.image_url",
        "vip_status.vip_tier.milestone",
    ])
}

/// `smile_vip_tiers`: the program's tiers, replaced by every load.
pub fn vip_tiers_table() -> TableSchema {
    TableSchema::new(
        "smile_vip_tiers",
        vec![
            Column::named("id", T::Int64).required(),
            Column::named("name", T::Text),
            Column::named("milestone", T::Float64),
            Column::named("image_url", T::Text),
        ],
    )
    .replaced()
}

/// `smile_points_transactions`: the points ledger, merged on id.
pub fn points_transactions_table() -> TableSchema {
    TableSchema::new(
        "smile_points_transactions",
        vec![
            Column::named("id", T::Int64).required(),
            Column::named("customer_id", T::Int64).required(),
            Column::named("points_change", T::Int64).required(),
            Column::named("description", T::Text),
            Column::named("internal_note", T::Text),
            Column::named("created_at", T::Timestamp),
            Column::named("updated_at", T::Timestamp).required(),
        ],
    )
    .merge_on(&["id"])
    .cursor("updated_at")
}

fn since(window: &Window) -> Option<String> {
    window
        .since
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

impl Source for Smile {
    fn name(&self) -> &'static str {
        "smile"
    }

    fn streams(&self) -> Vec<Stream> {
        let changed = Incremental::Since {
            overlap: Duration::ZERO,
        };
        vec![
            Stream {
                name: "customers",
                table: customers_table(),
                incremental: changed,
            },
            Stream {
                name: "vip_tiers",
                table: vip_tiers_table(),
                incremental: Incremental::Full,
            },
            Stream {
                name: "points_transactions",
                table: points_transactions_table(),
                incremental: changed,
            },
        ]
    }

    async fn fetch(
        &self,
        stream: &str,
        window: Window,
        pages: PageSender,
    ) -> Result<(), SourceError> {
        let (call, at) = match stream {
            "customers" => (
                Call::get("/customers").query("include", "vip_status,vip_status.vip_tier"),
                RecordsAt::Pointer("/customers"),
            ),
            "points_transactions" => (
                Call::get("/points_transactions"),
                RecordsAt::Pointer("/points_transactions"),
            ),
            "vip_tiers" => {
                let call = Call::get("/vip_tiers");
                let at = RecordsAt::Pointer("/vip_tiers");
                fetch_pages(
                    &self.api.client,
                    &self.api.service,
                    call,
                    at,
                    &mut SinglePage,
                    &pages,
                )
                .await?;
                return Ok(());
            }
            other => return Err(SourceError::Config(format!("smile has no stream {other}"))),
        };
        let call = match since(&window) {
            Some(min) => call.query("updated_at_min", min),
            None => call,
        };
        let mut paginator = CursorPages {
            limit: PAGE_SIZE,
            next_cursor: "/metadata/next_cursor",
        };
        fetch_pages(
            &self.api.client,
            &self.api.service,
            call,
            at,
            &mut paginator,
            &pages,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_well_declared() {
        for table in [
            customers_table(),
            vip_tiers_table(),
            points_transactions_table(),
        ] {
            table.validate().unwrap();
        }
    }
}

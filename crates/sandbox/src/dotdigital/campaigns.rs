//! Dotdigital v2 campaigns: lists, `with-activity-since`, and per-campaign summaries whose
//! counters come in HTML/text/total triples with rates as fractions.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Response, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::world::{Campaign, Platform, World};
use crate::{Shared, json_response};

fn campaign_json(c: &Campaign) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "subject": c.subject,
        "fromName": "Trailhead Outfitters",
        "fromAddress": { "id": 301, "email": "news@trailhead.example.com" },
        "htmlContent": format!("<html><body><h1>{}</h1></body></html>", c.subject),
        "plainTextContent": c.subject,
        "replyAction": "Unset",
        "replyToAddress": "",
        "customReplyToAddress": null,
        "isSplitTest": false,
        "status": "Sent",
    })
}

pub(super) async fn list_campaigns(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let campaigns = shared.world.campaigns(Platform::Dotdigital);
    page(campaigns.iter().map(campaign_json).collect(), &query)
}

pub(super) async fn campaigns_since(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(date): Path<String>,
    Query(query): Q,
) -> Response<Body> {
    authorize!(headers);
    let Some(since) = crate::parse_time(&date) else {
        return fail(
            StatusCode::BAD_REQUEST,
            "The date is not valid.",
            "ERROR_PARAMETER_INVALID",
        );
    };
    // Activity (opens, clicks) goes on for seven days after a send.
    let campaigns = shared.world.campaigns(Platform::Dotdigital);
    let active = campaigns
        .iter()
        .filter(|c| c.sent_at + chrono::Duration::days(7) > since);
    page(active.map(campaign_json).collect(), &query)
}

fn find_campaign(world: &World, id: &str) -> Option<Campaign> {
    world
        .campaigns(Platform::Dotdigital)
        .into_iter()
        .find(|c| c.id.to_string() == id)
}

pub(super) async fn get_campaign(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers);
    match find_campaign(&shared.world, &id) {
        Some(c) => json_response(StatusCode::OK, &campaign_json(&c)),
        None => fail(StatusCode::NOT_FOUND, "Error:", "ERROR_CAMPAIGN_NOT_FOUND"),
    }
}

/// Splits a total into its HTML and plain-text parts (about 4% read the text version).
fn triple(total: u64) -> (u64, u64, u64) {
    let text = total / 25;
    (total - text, text, total)
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn summary_json(c: &Campaign) -> Value {
    let mut body = serde_json::Map::new();
    body.insert("dateSent".into(), Value::from(dd_time(c.sent_at)));
    let hard = c.bounces * 6 / 10;
    let soft = c.bounces - hard;
    let replies = c.delivered / 2000;
    let counters: [(&str, &str, u64); 11] = [
        ("numSent", "numTextSent", c.sent),
        ("numDelivered", "numTextDelivered", c.delivered),
        ("numOpens", "numTextOpens", c.opens),
        ("numUniqueOpens", "numUniqueTextOpens", c.unique_opens),
        ("numClicks", "numTextClicks", c.clicks),
        ("numPageViews", "numTextPageViews", 0),
        ("numReplies", "numTextReplies", replies),
        ("numHardBounces", "numTextHardBounces", hard),
        ("numSoftBounces", "numTextSoftBounces", soft),
        ("numUnsubscribes", "numTextUnsubscribes", c.unsubscribes),
        ("numIspComplaints", "numTextIspComplaints", c.complaints),
    ];
    for (html_key, text_key, total) in counters {
        let (html, text, total) = triple(total);
        let total_key = html_key.replacen("num", "numTotal", 1);
        body.insert(html_key.into(), Value::from(html));
        body.insert(text_key.into(), Value::from(text));
        body.insert(total_key, Value::from(total));
    }
    body.insert("numRecipientsClicked".into(), Value::from(c.unique_clicks));
    for key in [
        "numForwards",
        "numTextForwards",
        "numEstimatedForwards",
        "numTextEstimatedForwards",
        "numTotalEstimatedForwards",
        "numMailBlocks",
        "numTextMailBlocks",
        "numTotalMailBlocks",
    ] {
        body.insert(key.into(), Value::from(0));
    }
    let rates = [
        ("percentageDelivered", ratio(c.delivered, c.sent)),
        ("percentageUniqueOpens", ratio(c.unique_opens, c.delivered)),
        ("percentageOpens", ratio(c.opens, c.delivered)),
        ("percentageUnsubscribes", ratio(c.unsubscribes, c.delivered)),
        ("percentageReplies", ratio(replies, c.delivered)),
        ("percentageHardBounces", ratio(hard, c.sent)),
        ("percentageSoftBounces", ratio(soft, c.delivered)),
        (
            "percentageUsersClicked",
            ratio(c.unique_clicks, c.delivered),
        ),
        ("percentageClicksToOpens", ratio(c.unique_clicks, c.opens)),
    ];
    for (key, value) in rates {
        body.insert(key.into(), Value::from(value));
    }
    body.insert(
        "revenue".into(),
        Value::from(format!(
            "{}.{:02}",
            c.revenue_cents / 100,
            c.revenue_cents % 100
        )),
    );
    body.insert("assistedRevenue".into(), Value::from("0.00"));
    body.insert(
        "conversionRate".into(),
        Value::from(ratio(c.orders, c.delivered)),
    );
    body.insert("numOrders".into(), Value::from(c.orders));
    body.insert("numAssistedOrders".into(), Value::from(0));
    Value::Object(body)
}

pub(super) async fn summary(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response<Body> {
    authorize!(headers);
    match find_campaign(&shared.world, &id) {
        Some(c) => json_response(StatusCode::OK, &summary_json(&c)),
        None => fail(StatusCode::NOT_FOUND, "Error:", "ERROR_CAMPAIGN_NOT_FOUND"),
    }
}

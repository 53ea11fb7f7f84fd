//! The world's people and orders as Shopify objects, and connection paging over them.
//!
//! Objects are built as JSON with every field of the schema subset, in Shopify's encodings:
//! GIDs for ids, `UnsignedInt64` and money as strings (not fixed to two decimals), `Z`
//! timestamps, upper-case enums. Cursors are opaque base64 of the last sort value and id.

use std::cmp::Ordering;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::search::{Attr, Searchable};
use crate::world::{CURRENCY, Consent, Order, Person};

/// Shopify customer ids are offset from person indexes.
pub const CUSTOMER_BASE: u64 = 7_000_000;

/// A GID for a resource.
pub fn gid(kind: &str, id: u64) -> String {
    format!("gid://shopify/{kind}/{id}")
}

/// The resource type and numeric id of a GID.
pub fn parse_gid(gid: &str) -> Option<(&str, u64)> {
    let rest = gid.strip_prefix("gid://shopify/")?;
    let (kind, id) = rest.split_once('/')?;
    Some((kind, id.parse().ok()?))
}

fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Shopify's decimal strings: `84.9`, `2000.0`, `12.05`.
pub fn amount(cents: i64) -> String {
    let whole = format!("{}.{:02}", cents / 100, (cents % 100).abs());
    match whole.strip_suffix('0') {
        Some(short) if !short.ends_with('.') => short.to_string(),
        _ => whole,
    }
}

fn money(cents: i64) -> Value {
    json!({ "amount": amount(cents), "currencyCode": CURRENCY })
}

fn money_bag(cents: i64) -> Value {
    json!({ "shopMoney": money(cents), "presentmentMoney": money(cents) })
}

/// A person as a Shopify customer, with their orders' totals.
pub fn customer_json(person: &Person, orders: &[Order]) -> Value {
    let id = CUSTOMER_BASE + u64::from(person.index);
    let spent: i64 = orders
        .iter()
        .filter(|o| o.cancelled_at.is_none())
        .map(Order::total_cents)
        .sum();
    let (state, level, consent_at) = match person.consent {
        Consent::Subscribed => (
            "SUBSCRIBED",
            "SINGLE_OPT_IN",
            Value::from(time(person.created_at)),
        ),
        Consent::NotSubscribed => ("NOT_SUBSCRIBED", "UNKNOWN", Value::Null),
        Consent::Unsubscribed => (
            "UNSUBSCRIBED",
            "SINGLE_OPT_IN",
            Value::from(time(customer_updated_at(person, orders))),
        ),
    };
    json!({
        "id": gid("Customer", id),
        "legacyResourceId": id.to_string(),
        "email": person.shopify_email,
        "firstName": person.first_name,
        "lastName": person.last_name,
        "displayName": format!("{} {}", person.first_name, person.last_name),
        "numberOfOrders": orders.len().to_string(),
        "createdAt": time(person.created_at),
        "updatedAt": time(customer_updated_at(person, orders)),
        "tags": [],
        "state": "ENABLED",
        "verifiedEmail": true,
        "amountSpent": money(spent),
        "defaultEmailAddress": { "emailAddress": person.shopify_email, "marketingState": state },
        "emailMarketingConsent": { "marketingState": state, "marketingOptInLevel": level, "consentUpdatedAt": consent_at },
    })
}

/// A customer changes when they order.
pub fn customer_updated_at(person: &Person, orders: &[Order]) -> DateTime<Utc> {
    orders
        .iter()
        .map(|o| o.updated_at)
        .fold(person.created_at, DateTime::max)
}

/// An order with its line items and its customer.
pub fn order_json(order: &Order, customer: &Value) -> Value {
    let total = order.total_cents();
    let refunded = if order.cancelled_at.is_some() {
        total
    } else {
        0
    };
    let lines: Vec<Value> = order
        .lines
        .iter()
        .map(|line| {
            let unit = line.product.price_cents;
            let line_total = unit * i64::from(line.quantity);
            json!({
                "id": gid("LineItem", line.id),
                "title": line.product.title,
                "name": line.product.title,
                "sku": line.product.sku,
                "quantity": line.quantity,
                "currentQuantity": if order.cancelled_at.is_some() { 0 } else { line.quantity },
                "vendor": "Trailhead",
                "requiresShipping": !line.product.sku.is_empty(),
                "taxable": true,
                "originalUnitPriceSet": money_bag(unit),
                "discountedUnitPriceSet": money_bag(unit),
                "originalTotalSet": money_bag(line_total),
                "discountedTotalSet": money_bag(line_total),
                "product": { "id": gid("Product", line.product.id), "title": line.product.title },
                "variant": { "id": gid("ProductVariant", line.product.id * 10 + 1), "sku": line.product.sku },
            })
        })
        .collect();
    json!({
        "id": gid("Order", order.id),
        "legacyResourceId": order.id.to_string(),
        "name": format!("#{}", order.number),
        "email": order.email,
        "createdAt": time(order.created_at),
        "updatedAt": time(order.updated_at),
        "processedAt": time(order.processed_at),
        "cancelledAt": order.cancelled_at.map(time),
        "cancelReason": order.cancelled_at.map(|_| "CUSTOMER"),
        "closedAt": order.cancelled_at.map(time),
        "closed": order.cancelled_at.is_some(),
        "test": false,
        "displayFinancialStatus": order.financial_status,
        "displayFulfillmentStatus": order.fulfillment_status,
        "currencyCode": CURRENCY,
        "tags": [],
        "sourceName": "web",
        "totalPriceSet": money_bag(total),
        "currentTotalPriceSet": money_bag(total - refunded),
        "subtotalPriceSet": money_bag(total),
        "totalDiscountsSet": money_bag(0),
        "totalTaxSet": money_bag(total / 11),
        "totalRefundedSet": money_bag(refunded),
        "customer": customer,
        "lineItems": lines,
    })
}

impl Searchable for Order {
    fn attr(&self, field: &str) -> Option<Attr> {
        Some(match field {
            "updated_at" => Attr::Time(self.updated_at),
            "created_at" => Attr::Time(self.created_at),
            "processed_at" => Attr::Time(self.processed_at),
            "email" => Attr::Text(self.email.clone()),
            "financial_status" => Attr::Text(self.financial_status.to_lowercase()),
            "fulfillment_status" => Attr::Text(match self.fulfillment_status {
                "FULFILLED" => "shipped".into(),
                _ => "unshipped".into(),
            }),
            "status" => Attr::Text(if self.cancelled_at.is_some() {
                "cancelled".into()
            } else {
                "open".into()
            }),
            "customer_id" => Attr::Number(CUSTOMER_BASE as i64 + i64::from(self.customer)),
            "id" => Attr::Number(self.id as i64),
            "name" => Attr::Text(format!("#{}", self.number)),
            _ => return None,
        })
    }
}

/// A customer with what filters need to know.
#[derive(Clone, Copy)]
pub struct CustomerRow<'a> {
    /// The person.
    pub person: &'a Person,
    /// Their orders.
    pub orders: &'a [Order],
}

impl Searchable for CustomerRow<'_> {
    fn attr(&self, field: &str) -> Option<Attr> {
        Some(match field {
            "updated_at" => Attr::Time(customer_updated_at(self.person, self.orders)),
            "created_at" => Attr::Time(self.person.created_at),
            "email" => Attr::Text(self.person.shopify_email.clone()),
            "id" => Attr::Number(CUSTOMER_BASE as i64 + i64::from(self.person.index)),
            _ => return None,
        })
    }
}

/// A value connections sort by.
#[derive(Debug, Clone, PartialEq, PartialOrd)]
pub enum SortValue {
    /// A timestamp.
    Time(DateTime<Utc>),
    /// A number.
    Number(i64),
    /// Text.
    Text(String),
}

impl SortValue {
    fn to_json(&self) -> Value {
        match self {
            SortValue::Time(t) => Value::from(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string()),
            SortValue::Number(n) => Value::from(*n),
            SortValue::Text(s) => Value::from(s.clone()),
        }
    }

    fn from_json(value: &Value, like: &SortValue) -> Option<SortValue> {
        Some(match like {
            SortValue::Time(_) => SortValue::Time(
                chrono::NaiveDateTime::parse_from_str(value.as_str()?, "%Y-%m-%d %H:%M:%S%.f")
                    .ok()?
                    .and_utc(),
            ),
            SortValue::Number(_) => SortValue::Number(value.as_i64()?),
            SortValue::Text(_) => SortValue::Text(value.as_str()?.to_string()),
        })
    }
}

/// An opaque cursor: base64 of the last id and sort value.
pub fn encode_cursor(key: &SortValue, id: u64) -> String {
    STANDARD.encode(json!({ "last_id": id, "last_value": key.to_json() }).to_string())
}

fn decode_cursor(cursor: &str, like: &SortValue) -> Option<(SortValue, u64)> {
    let bytes = STANDARD.decode(cursor).ok()?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    let id = value.get("last_id")?.as_u64()?;
    Some((SortValue::from_json(value.get("last_value")?, like)?, id))
}

/// Paging arguments of a connection field.
#[derive(Debug, Clone, Default)]
pub struct PageArgs {
    /// Forward page size.
    pub first: Option<usize>,
    /// Start after this cursor.
    pub after: Option<String>,
    /// Backward page size.
    pub last: Option<usize>,
    /// End before this cursor.
    pub before: Option<String>,
    /// Reverse the sort.
    pub reverse: bool,
}

/// One page of a connection.
pub struct Page<T> {
    /// The items, in order, with their cursors.
    pub items: Vec<(T, String)>,
    /// More items after this page.
    pub has_next: bool,
    /// More items before this page.
    pub has_previous: bool,
}

/// A connection's sort key: the sort value, then the id.
pub type Key = (SortValue, u64);

/// Sorts `items` by `key` (then id), applies the cursors and the page size.
pub fn paginate<T>(
    items: impl IntoIterator<Item = T>,
    key: impl Fn(&T) -> Key,
    args: &PageArgs,
) -> Result<Page<T>, String> {
    let mut pager = Pager::new(args);
    for item in items {
        pager.push(key(&item), item)?;
    }
    pager.finish()
}

/// Builds one page of a connection from its items in any order, holding at most about
/// twice a page of them (every item, without a page size): a connection over millions of
/// orders costs a page's memory, not the connection's.
pub struct Pager<'a, T> {
    args: &'a PageArgs,
    /// The cursors, decoded once the first item shows which kind of sort value they hold.
    bounds: Option<(Option<Key>, Option<Key>)>,
    /// Items at or before `after`.
    earlier: usize,
    /// Items at or after `before`.
    later: usize,
    /// Items between the cursors.
    between: usize,
    /// The best candidates for the page among them.
    kept: Vec<(Key, T)>,
}

impl<'a, T> Pager<'a, T> {
    /// An empty page for `args`.
    pub fn new(args: &'a PageArgs) -> Self {
        Pager {
            args,
            bounds: None,
            earlier: 0,
            later: 0,
            between: 0,
            kept: Vec::new(),
        }
    }

    /// The connection's order: ascending by key, or descending when reversed.
    fn order(&self, a: &Key, b: &Key) -> Ordering {
        let ord = a.partial_cmp(b).unwrap_or(Ordering::Equal);
        if self.args.reverse {
            ord.reverse()
        } else {
            ord
        }
    }

    /// Decodes the cursors (once) as holding sort values like `like`.
    fn decode_bounds(&mut self, like: &SortValue) -> Result<(), String> {
        if self.bounds.is_none() {
            let decode = |cursor: &Option<String>| {
                let invalid = || "Invalid cursor for current pagination sort.".to_string();
                cursor
                    .as_deref()
                    .map(|c| decode_cursor(c, like).ok_or_else(invalid))
                    .transpose()
            };
            self.bounds = Some((decode(&self.args.after)?, decode(&self.args.before)?));
        }
        Ok(())
    }

    /// Takes one item of the connection.
    pub fn push(&mut self, key: Key, item: T) -> Result<(), String> {
        self.decode_bounds(&key.0)?;
        let (after, before) = self.bounds.as_ref().expect("decoded above");
        if after
            .as_ref()
            .is_some_and(|a| self.order(&key, a) != Ordering::Greater)
        {
            self.earlier += 1;
        } else if before
            .as_ref()
            .is_some_and(|b| self.order(&key, b) != Ordering::Less)
        {
            self.later += 1;
        } else {
            self.between += 1;
            self.kept.push((key, item));
            if let Some(size) = self.size()
                && self.kept.len() >= 2 * size.max(64)
            {
                self.keep_page(size);
            }
        }
        Ok(())
    }

    /// The page size asked for, `first` or else `last`.
    fn size(&self) -> Option<usize> {
        self.args.first.or(self.args.last)
    }

    /// Sorts what is kept and keeps the page's `size` items: the first ones, or the last
    /// ones when only `last` is given.
    fn keep_page(&mut self, size: usize) {
        let mut kept = std::mem::take(&mut self.kept);
        kept.sort_by(|a, b| self.order(&a.0, &b.0));
        if self.args.first.is_some() {
            kept.truncate(size);
        } else {
            kept.drain(..kept.len().saturating_sub(size));
        }
        self.kept = kept;
    }

    /// The page, with each item's cursor and whether items lie beyond it either way.
    pub fn finish(mut self) -> Result<Page<T>, String> {
        // A cursor must be valid even when the connection is empty.
        self.decode_bounds(&SortValue::Number(0))?;
        self.keep_page(self.size().unwrap_or(usize::MAX));
        let skipped = self.between - self.kept.len();
        let (has_previous, has_next) = if self.args.first.is_some() || self.args.last.is_none() {
            (self.earlier > 0, skipped > 0 || self.later > 0)
        } else {
            (self.earlier > 0 || skipped > 0, self.later > 0)
        };
        Ok(Page {
            items: self
                .kept
                .into_iter()
                .map(|((key, id), item)| (item, encode_cursor(&key, id)))
                .collect(),
            has_next,
            has_previous,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_decimal_strings_not_fixed_to_two_places() {
        assert_eq!(amount(8490), "84.9");
        assert_eq!(amount(200000), "2000.0");
        assert_eq!(amount(1205), "12.05");
        assert_eq!(amount(0), "0.0");
    }

    type Item = u64;

    /// Which end of a connection a walk starts from.
    #[derive(Clone, Copy, PartialEq)]
    enum Start {
        /// `first: size`, then `after` the last cursor.
        First,
        /// `last: size`, then `before` the first cursor.
        Last,
    }

    /// Every item of a connection in the connection's order, fetched page by page from one
    /// end, checking that only the first page fetched has nothing behind it.
    fn walk(
        items: &[Item],
        key: fn(&Item) -> Key,
        size: usize,
        reverse: bool,
        from: Start,
    ) -> Vec<Item> {
        let backward = from == Start::Last;
        let mut args = PageArgs {
            first: (!backward).then_some(size),
            last: backward.then_some(size),
            reverse,
            ..PageArgs::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = paginate(items.to_vec(), key, &args).expect("page");
            let (behind, ahead) = if backward {
                (page.has_next, page.has_previous)
            } else {
                (page.has_previous, page.has_next)
            };
            assert_eq!(behind, !seen.is_empty());
            let fetched = page.items.iter().map(|(i, _)| *i);
            if backward {
                seen.splice(0..0, fetched);
                args.before = page.items.first().map(|(_, c)| c.clone());
            } else {
                seen.extend(fetched);
                args.after = page.items.last().map(|(_, c)| c.clone());
            }
            if !ahead {
                return seen;
            }
        }
    }

    #[test]
    fn pages_of_a_connection_longer_than_a_pager_keeps_walk_it_in_order_both_ways() {
        // Far more items than a pager keeps (twice the page, at least 128), in no order.
        let items: Vec<Item> = (0..1000).map(|i| (i * 389) % 1000).collect();
        let key = |i: &Item| (SortValue::Number((*i % 7) as i64), *i);
        let mut sorted = items.clone();
        sorted.sort_by_key(|i| (i % 7, *i));
        let reversed: Vec<Item> = sorted.iter().rev().copied().collect();
        for from in [Start::First, Start::Last] {
            assert_eq!(walk(&items, key, 30, false, from), sorted);
            assert_eq!(walk(&items, key, 30, true, from), reversed);
        }
    }

    #[test]
    fn paging_forward_and_backward_visits_every_item_once() {
        let items: Vec<Item> = (1..=7).collect();
        let key = |i: &Item| (SortValue::Number((*i % 3) as i64), *i);
        assert_eq!(
            walk(&items, key, 3, false, Start::First),
            [3, 6, 1, 4, 7, 2, 5]
        );
        let back = paginate(
            items.clone(),
            key,
            &PageArgs {
                last: Some(2),
                ..PageArgs::default()
            },
        )
        .expect("page");
        assert_eq!(
            back.items.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [2, 5]
        );
        assert!(back.has_previous && !back.has_next);
        // A cursor that is not one is refused, even on an empty connection.
        let bogus = PageArgs {
            after: Some("bogus".into()),
            ..PageArgs::default()
        };
        assert!(paginate(items, key, &bogus).is_err());
        assert!(paginate(Vec::<Item>::new(), key, &bogus).is_err());
    }
}

//! Shopify's tables and the GraphQL selections that fill them.
//!
//! Each selection is written once and used by both the paged query and the bulk operation,
//! so the two ways of reading give the same columns.

use std::time::Duration;

use crate::normalize::{Column, ColumnType as T, Convert, TableSchema, ValueFrom};

/// How far before the cursor each incremental run starts again: Shopify's `updatedAt`
/// moves without visible edits, and changes can become visible a little late.
pub const OVERLAP: Duration = Duration::from_secs(10 * 60);

/// The fields of one order, line items excluded.
pub const ORDER_FIELDS: &str = "id name email createdAt updatedAt processedAt cancelledAt closedAt \
     test displayFinancialStatus displayFulfillmentStatus sourceName \
     totalPriceSet { shopMoney { amount currencyCode } } subtotalPriceSet { shopMoney { amount } } \
     totalDiscountsSet { shopMoney { amount } } totalTaxSet { shopMoney { amount } } \
     totalRefundedSet { shopMoney { amount } } customer { id }";

/// The fields of one line item.
pub const LINE_FIELDS: &str = "id title sku quantity currentQuantity \
     originalUnitPriceSet { shopMoney { amount } } product { id } variant { id }";

/// The fields of one customer.
pub const CUSTOMER_FIELDS: &str = "id email firstName lastName numberOfOrders createdAt updatedAt \
     amountSpent { amount currencyCode } \
     emailMarketingConsent { marketingState marketingOptInLevel consentUpdatedAt }";

fn gid(name: &'static str, path: &'static str) -> Column {
    Column::field(name, T::Int64, path).convert(Convert::GidNumber)
}

fn money(name: &'static str, path: &'static str) -> Column {
    Column::field(name, T::Money, path)
}

/// `shopify_order_lines`: an order's line items, keyed by line id.
pub fn order_lines_table() -> TableSchema {
    TableSchema::new(
        "shopify_order_lines",
        vec![
            gid("line_id", "id").required(),
            Column::derived("order_id", T::Int64, ValueFrom::Parent("id")).required(),
            Column::named("title", T::Text),
            Column::named("sku", T::Text),
            Column::named("quantity", T::Int64),
            Column::field("current_quantity", T::Int64, "currentQuantity"),
            money("unit_price", "originalUnitPriceSet.shopMoney.amount"),
            gid("product_id", "product.id"),
            gid("variant_id", "variant.id"),
        ],
    )
    .merge_on(&["line_id"])
    // Bulk results name each line's order in `__parentId`; the order's id is used instead.
    .ignoring(&["__parentId"])
}

/// `shopify_orders`: one row per order, merged on id, with its lines in
/// `shopify_order_lines`.
pub fn orders_table() -> TableSchema {
    TableSchema::new(
        "shopify_orders",
        vec![
            gid("id", "id").required(),
            Column::named("name", T::Text),
            Column::named("email", T::Text),
            Column::derived("email_normalized", T::Text, ValueFrom::Lowercase("email")),
            gid("customer_id", "customer.id"),
            Column::field("created_at", T::Timestamp, "createdAt"),
            Column::field("updated_at", T::Timestamp, "updatedAt").required(),
            Column::field("processed_at", T::Timestamp, "processedAt"),
            Column::field("cancelled_at", T::Timestamp, "cancelledAt"),
            Column::field("closed_at", T::Timestamp, "closedAt"),
            Column::named("test", T::Boolean),
            Column::field("financial_status", T::Text, "displayFinancialStatus"),
            Column::field("fulfillment_status", T::Text, "displayFulfillmentStatus"),
            Column::field("source_name", T::Text, "sourceName"),
            Column::field("currency", T::Text, "totalPriceSet.shopMoney.currencyCode"),
            money("total_price", "totalPriceSet.shopMoney.amount"),
            money("subtotal_price", "subtotalPriceSet.shopMoney.amount"),
            money("total_discounts", "totalDiscountsSet.shopMoney.amount"),
            money("total_tax", "totalTaxSet.shopMoney.amount"),
            money("total_refunded", "totalRefundedSet.shopMoney.amount"),
        ],
    )
    .merge_on(&["id"])
    .cursor("updated_at")
    .ignoring(&["lineItems.pageInfo"])
    .child("lineItems.nodes", order_lines_table())
}

/// `shopify_customers`: one row per customer with e-mail marketing consent, merged on id.
pub fn customers_table() -> TableSchema {
    TableSchema::new(
        "shopify_customers",
        vec![
            gid("id", "id").required(),
            Column::named("email", T::Text),
            Column::derived("email_normalized", T::Text, ValueFrom::Lowercase("email")),
            Column::field("first_name", T::Text, "firstName"),
            Column::field("last_name", T::Text, "lastName"),
            Column::field("number_of_orders", T::Int64, "numberOfOrders")
                .convert(Convert::NumberOrText),
            money("amount_spent", "amountSpent.amount"),
            Column::field("currency", T::Text, "amountSpent.currencyCode"),
            Column::field(
                "marketing_state",
                T::Text,
                "emailMarketingConsent.marketingState",
            ),
            Column::field(
                "marketing_opt_in_level",
                T::Text,
                "emailMarketingConsent.marketingOptInLevel",
            ),
            Column::field(
                "consent_updated_at",
                T::Timestamp,
                "emailMarketingConsent.consentUpdatedAt",
            ),
            Column::field("created_at", T::Timestamp, "createdAt"),
            Column::field("updated_at", T::Timestamp, "updatedAt").required(),
        ],
    )
    .merge_on(&["id"])
    .cursor("updated_at")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_well_declared() {
        for table in [orders_table(), customers_table()] {
            table.validate().unwrap();
        }
    }
}

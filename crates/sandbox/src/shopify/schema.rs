//! The subset of Shopify's Admin GraphQL schema the sandbox serves: each type's fields and
//! what kind of value each is. Queries are validated against it (an unknown field is the
//! same `undefinedField` error Shopify answers with), and it drives execution and cost.

/// What a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A scalar or enum (costs nothing).
    Scalar,
    /// An object of the named type (costs 1 plus its fields).
    Object(&'static str),
    /// A list of objects of the named type.
    List(&'static str),
    /// A connection of nodes of the named type (costs 2 plus nodes × node cost).
    Connection(&'static str),
}

use Kind::{Connection, List, Object, Scalar};

/// The fields of a type, or `None` for a type the sandbox does not know.
pub fn fields(type_name: &str) -> Option<&'static [(&'static str, Kind)]> {
    Some(match type_name {
        "QueryRoot" => &[
            ("orders", Connection("Order")),
            ("order", Object("Order")),
            ("customers", Connection("Customer")),
            ("customer", Object("Customer")),
            ("shop", Object("Shop")),
            ("node", Object("Node")),
            ("bulkOperation", Object("BulkOperation")),
            ("currentBulkOperation", Object("BulkOperation")),
            ("bulkOperations", Connection("BulkOperation")),
        ],
        "Mutation" => &[
            (
                "bulkOperationRunQuery",
                Object("BulkOperationRunQueryPayload"),
            ),
            ("bulkOperationCancel", Object("BulkOperationCancelPayload")),
        ],
        "Order" => &[
            ("id", Scalar),
            ("legacyResourceId", Scalar),
            ("name", Scalar),
            ("email", Scalar),
            ("createdAt", Scalar),
            ("updatedAt", Scalar),
            ("processedAt", Scalar),
            ("cancelledAt", Scalar),
            ("cancelReason", Scalar),
            ("closedAt", Scalar),
            ("closed", Scalar),
            ("test", Scalar),
            ("displayFinancialStatus", Scalar),
            ("displayFulfillmentStatus", Scalar),
            ("currencyCode", Scalar),
            ("tags", Scalar),
            ("sourceName", Scalar),
            ("totalPriceSet", Object("MoneyBag")),
            ("currentTotalPriceSet", Object("MoneyBag")),
            ("subtotalPriceSet", Object("MoneyBag")),
            ("totalDiscountsSet", Object("MoneyBag")),
            ("totalTaxSet", Object("MoneyBag")),
            ("totalRefundedSet", Object("MoneyBag")),
            ("customer", Object("Customer")),
            ("lineItems", Connection("LineItem")),
        ],
        "LineItem" => &[
            ("id", Scalar),
            ("title", Scalar),
            ("name", Scalar),
            ("sku", Scalar),
            ("quantity", Scalar),
            ("currentQuantity", Scalar),
            ("vendor", Scalar),
            ("requiresShipping", Scalar),
            ("taxable", Scalar),
            ("originalUnitPriceSet", Object("MoneyBag")),
            ("discountedUnitPriceSet", Object("MoneyBag")),
            ("originalTotalSet", Object("MoneyBag")),
            ("discountedTotalSet", Object("MoneyBag")),
            ("product", Object("Product")),
            ("variant", Object("ProductVariant")),
        ],
        "Customer" => &[
            ("id", Scalar),
            ("legacyResourceId", Scalar),
            ("email", Scalar),
            ("firstName", Scalar),
            ("lastName", Scalar),
            ("displayName", Scalar),
            ("numberOfOrders", Scalar),
            ("createdAt", Scalar),
            ("updatedAt", Scalar),
            ("tags", Scalar),
            ("state", Scalar),
            ("verifiedEmail", Scalar),
            ("amountSpent", Object("MoneyV2")),
            ("defaultEmailAddress", Object("CustomerEmailAddress")),
            (
                "emailMarketingConsent",
                Object("CustomerEmailMarketingConsentState"),
            ),
        ],
        "CustomerEmailAddress" => &[("emailAddress", Scalar), ("marketingState", Scalar)],
        "CustomerEmailMarketingConsentState" => &[
            ("marketingState", Scalar),
            ("marketingOptInLevel", Scalar),
            ("consentUpdatedAt", Scalar),
        ],
        "MoneyBag" => &[
            ("shopMoney", Object("MoneyV2")),
            ("presentmentMoney", Object("MoneyV2")),
        ],
        "MoneyV2" => &[("amount", Scalar), ("currencyCode", Scalar)],
        "Product" => &[("id", Scalar), ("title", Scalar)],
        "ProductVariant" => &[("id", Scalar), ("sku", Scalar)],
        "Shop" => &[
            ("id", Scalar),
            ("name", Scalar),
            ("currencyCode", Scalar),
            ("ianaTimezone", Scalar),
            ("myshopifyDomain", Scalar),
        ],
        "PageInfo" => &[
            ("hasNextPage", Scalar),
            ("hasPreviousPage", Scalar),
            ("startCursor", Scalar),
            ("endCursor", Scalar),
        ],
        "BulkOperation" => &[
            ("id", Scalar),
            ("status", Scalar),
            ("type", Scalar),
            ("errorCode", Scalar),
            ("createdAt", Scalar),
            ("completedAt", Scalar),
            ("objectCount", Scalar),
            ("rootObjectCount", Scalar),
            ("fileSize", Scalar),
            ("url", Scalar),
            ("partialDataUrl", Scalar),
            ("query", Scalar),
        ],
        "BulkOperationRunQueryPayload" | "BulkOperationCancelPayload" => &[
            ("bulkOperation", Object("BulkOperation")),
            ("userErrors", List("BulkOperationUserError")),
        ],
        "BulkOperationUserError" => &[("field", Scalar), ("message", Scalar), ("code", Scalar)],
        "Node" => &[("id", Scalar)],
        _ => return None,
    })
}

/// The kind of `type_name.field`, if the field exists.
pub fn field(type_name: &str, field: &str) -> Option<Kind> {
    fields(type_name)?
        .iter()
        .find(|(name, _)| *name == field)
        .map(|(_, kind)| *kind)
}

//! Smile's loyalty fields kept current on the e-mail platforms, as Smile's own dotmailer
//! app does for Dotdigital: points balance, referral URL, member state, VIP tier name and
//! id, each under the platform's naming — SmartrMail custom fields, Iterable profile data
//! fields, Dotdigital contact data fields (created once, typed). Only people the platform
//! already knows are written (nobody is created), and only fields whose value changed are
//! sent: an Iterable "User profile update" journey fires on any write of its field, changed
//! or not (`api-reference/iterable.md` §14).

use serde_json::{Map, Value};

use super::dotdigital::Dotdigital;
use super::iterable::Iterable;
use super::smartrmail::SmartrMail;
use super::{ActivateError, Field, FieldKind};

/// One loyalty field: its column in `smile_customers`, and its name on each platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoyaltyField {
    /// The column of the warehouse's Smile customers (as the sync's query names it).
    pub column: &'static str,
    /// SmartrMail's custom field.
    pub smartrmail: &'static str,
    /// Iterable's data field.
    pub iterable: &'static str,
    /// Dotdigital's data field (at most 20 characters, upper case).
    pub dotdigital: &'static str,
    /// Its type.
    pub kind: FieldKind,
}

impl LoyaltyField {
    /// Dotdigital's data field type.
    fn dotdigital_type(self) -> &'static str {
        match self.kind {
            FieldKind::Number => "Numeric",
            FieldKind::Date => "Date",
            FieldKind::Text => "String",
        }
    }
}

/// The fields synced.
pub const FIELDS: [LoyaltyField; 5] = [
    LoyaltyField {
        column: "points_balance",
        smartrmail: "points_balance",
        iterable: "pointsBalance",
        dotdigital: "POINTS",
        kind: FieldKind::Number,
    },
    LoyaltyField {
        column: "referral_url",
        smartrmail: "referral_url",
        iterable: "referralUrl",
        dotdigital: "REFERRAL_URL",
        kind: FieldKind::Text,
    },
    LoyaltyField {
        column: "member_state",
        smartrmail: "member_state",
        iterable: "memberState",
        dotdigital: "MEMBER_STATE",
        kind: FieldKind::Text,
    },
    LoyaltyField {
        column: "vip_tier_name",
        smartrmail: "vip_tier",
        iterable: "vipTier",
        dotdigital: "VIP_TIER",
        kind: FieldKind::Text,
    },
    LoyaltyField {
        column: "vip_tier_id",
        smartrmail: "vip_tier_id",
        iterable: "vipTierId",
        dotdigital: "VIP_TIER_ID",
        kind: FieldKind::Number,
    },
];

/// The query that gives each person's current values: the Smile account updated last
/// for each e-mail.
pub const SMILE_QUERY: &str = "SELECT email_normalized AS email, points_balance, referral_url, state AS member_state, vip_tier_name, vip_tier_id FROM {table} WHERE email_normalized IS NOT NULL QUALIFY ROW_NUMBER() OVER (PARTITION BY email_normalized ORDER BY updated_at DESC, id DESC) = 1";

/// Where loyalty fields are written.
pub enum LoyaltyWriter {
    /// Custom fields by partial `PUT`.
    SmartrMail(SmartrMail),
    /// Profile data fields by `users/update`, after checking the profile exists.
    Iterable(Iterable),
    /// Contact data fields by `PUT /v2/contacts/{email}`.
    Dotdigital(Dotdigital),
}

impl LoyaltyWriter {
    /// Makes what the writes need: Dotdigital's data fields. How many were created.
    pub async fn prepare(&self) -> Result<u64, ActivateError> {
        match self {
            LoyaltyWriter::Dotdigital(p) => {
                let wanted: Vec<(&str, &str)> = FIELDS
                    .iter()
                    .map(|f| (f.dotdigital, f.dotdigital_type()))
                    .collect();
                p.ensure_data_fields(&wanted).await
            }
            _ => Ok(0),
        }
    }

    /// Writes `changed` for a person the platform knows; false (and nothing written)
    /// when it does not know them.
    pub async fn write(
        &self,
        email: &str,
        changed: &[(LoyaltyField, Value)],
    ) -> Result<bool, ActivateError> {
        match self {
            LoyaltyWriter::SmartrMail(p) => {
                let fields: Vec<Field> = changed
                    .iter()
                    .map(|(f, v)| Field {
                        name: f.smartrmail.to_string(),
                        value: v.clone(),
                        kind: f.kind,
                    })
                    .collect();
                p.update_fields(email, &fields).await
            }
            LoyaltyWriter::Iterable(p) => {
                if !p.exists(email).await? {
                    return Ok(false);
                }
                let fields: Map<String, Value> = changed
                    .iter()
                    .map(|(f, v)| (f.iterable.to_string(), v.clone()))
                    .collect();
                p.update_fields(email, fields).await.map(|()| true)
            }
            LoyaltyWriter::Dotdigital(p) => {
                let fields: Vec<(String, Value)> = changed
                    .iter()
                    .map(|(f, v)| (f.dotdigital.to_string(), v.clone()))
                    .collect();
                p.update_fields(email, &fields).await
            }
        }
    }
}

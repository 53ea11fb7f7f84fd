//! The sandbox's seeded world: one set of people seen by every simulated service.
//!
//! Nothing is stored up front. Each entity is derived from `(seed, kind, index)` through its
//! own random stream, so the same seed gives the same world byte for byte, a world of a
//! million customers costs no memory, and adding a new kind of entity never changes the
//! existing ones. What services change at run time (unsubscribes, enrollments, appended
//! rows) lives in their own state beside the world, and `reset` drops it.
//!
//! The people: Shopify customers with orders over three years (a quarter of them lapsed),
//! most of them Smile members with points and VIP tiers (some e-mails shared by two Smile
//! records), most SmartrMail subscribers (some unsubscribed, some complained), and e-mail
//! campaigns with metrics on each platform. Some Shopify e-mails differ from the others only
//! in case.

use chrono::{DateTime, Duration, NaiveDate, SubsecRound, TimeZone, Utc};

/// What a world is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorldParams {
    /// The seed; the same seed gives the same world.
    pub seed: u64,
    /// How many people.
    pub customers: u32,
    /// The world's "today": every timestamp is at or before it.
    pub anchor: DateTime<Utc>,
}

impl WorldParams {
    /// The default anchor, fixed so that worlds do not change with the wall clock.
    pub fn default_anchor() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
            .single()
            .unwrap_or(DateTime::UNIX_EPOCH)
    }
}

/// A derived world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct World {
    /// Its parameters.
    pub params: WorldParams,
}

/// Independent random streams, one per kind of entity.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
enum Stream {
    Person = 1,
    Orders = 2,
    Smile = 3,
    SmartrMail = 4,
    Points = 5,
    Campaigns = 6,
    Iterable = 7,
}

const FIRST_NAMES: [&str; 24] = [
    "Ana", "Ben", "Chloe", "Dev", "Elena", "Farah", "George", "Hana", "Isaac", "Jade", "Kai",
    "Liam", "Maya", "Noah", "Olivia", "Priya", "Quinn", "Ravi", "Sofia", "Tom", "Uma", "Vera",
    "Wen", "Zoe",
];
const LAST_NAMES: [&str; 20] = [
    "Silva", "Nguyen", "Smith", "Patel", "Kim", "Garcia", "Brown", "Tanaka", "Okafor", "Rossi",
    "Cohen", "Murphy", "Larsen", "Haddad", "Walker", "Chen", "Dubois", "Novak", "Singh", "Evans",
];

/// A product in the shop's catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// Product id (the number in its GID).
    pub id: u64,
    /// Stock keeping unit.
    pub sku: &'static str,
    /// Title.
    pub title: &'static str,
    /// Unit price in cents.
    pub price_cents: i64,
}

/// The catalogue.
pub static PRODUCTS: [Product; 8] = [
    Product {
        id: 720001,
        sku: "TS-M-GR",
        title: "Trail Sock",
        price_cents: 1200,
    },
    Product {
        id: 720002,
        sku: "RJ-L-BL",
        title: "Rain Jacket",
        price_cents: 14900,
    },
    Product {
        id: 720003,
        sku: "BT-40",
        title: "Bamboo Tee",
        price_cents: 3900,
    },
    Product {
        id: 720004,
        sku: "WB-750",
        title: "Water Bottle",
        price_cents: 2450,
    },
    Product {
        id: 720005,
        sku: "CAP-OS",
        title: "Cap",
        price_cents: 2900,
    },
    Product {
        id: 720006,
        sku: "HK-PK",
        title: "Hiking Pack",
        price_cents: 18900,
    },
    Product {
        id: 720007,
        sku: "GL-S",
        title: "Gloves",
        price_cents: 3400,
    },
    Product {
        id: 720008,
        sku: "",
        title: "Gift Card",
        price_cents: 5000,
    },
];

/// The shop's currency.
pub const CURRENCY: &str = "AUD";

/// Shopify e-mail marketing consent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    /// Opted in.
    Subscribed,
    /// Never opted in.
    NotSubscribed,
    /// Opted out.
    Unsubscribed,
}

/// One person, as the shop knows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// 1-based index, also the Shopify customer number.
    pub index: u32,
    /// First name.
    pub first_name: &'static str,
    /// Last name.
    pub last_name: &'static str,
    /// The canonical (lower-case) e-mail.
    pub email: String,
    /// The e-mail as Shopify has it: for some people, in mixed case.
    pub shopify_email: String,
    /// When they became a customer.
    pub created_at: DateTime<Utc>,
    /// Shopify e-mail marketing consent.
    pub consent: Consent,
    /// How many orders they placed.
    pub order_count: u32,
    /// When they last ordered, if ever.
    pub last_order_at: Option<DateTime<Utc>>,
}

impl Person {
    /// Whether their last order is older than `days` before `now`.
    pub fn is_lapsed(&self, now: DateTime<Utc>, days: i64) -> bool {
        self.last_order_at
            .is_some_and(|t| now - t > Duration::days(days))
    }
}

/// One order line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// Line id.
    pub id: u64,
    /// What was bought (one of [`PRODUCTS`]).
    pub product: &'static Product,
    /// How many.
    pub quantity: u32,
}

/// One order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Order id (the number in its GID).
    pub id: u64,
    /// Order number shown to people (`#1001`).
    pub number: u64,
    /// The buyer's index.
    pub customer: u32,
    /// The e-mail on the order.
    pub email: String,
    /// When the sale happened.
    pub processed_at: DateTime<Utc>,
    /// When the order was created (equal to `processed_at` here).
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When it was cancelled, if it was.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Shopify's display financial status.
    pub financial_status: &'static str,
    /// Shopify's display fulfillment status.
    pub fulfillment_status: &'static str,
    /// The lines.
    pub lines: Vec<OrderLine>,
}

impl Order {
    /// The order total in cents.
    pub fn total_cents(&self) -> i64 {
        self.lines
            .iter()
            .map(|l| l.product.price_cents * i64::from(l.quantity))
            .sum()
    }
}

/// A Smile.io VIP tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VipTier {
    /// Tier id.
    pub id: u64,
    /// Name.
    pub name: &'static str,
    /// Points needed.
    pub milestone: i64,
}

/// The program's tiers, by milestone ascending.
pub const VIP_TIERS: [VipTier; 3] = [
    VipTier {
        id: 7001,
        name: "Bronze",
        milestone: 0,
    },
    VipTier {
        id: 7002,
        name: "Silver",
        milestone: 1000,
    },
    VipTier {
        id: 7003,
        name: "Gold",
        milestone: 3000,
    },
];

/// A Smile.io customer record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmileCustomer {
    /// Smile's id.
    pub id: u64,
    /// The person.
    pub person: u32,
    /// The e-mail on the record.
    pub email: String,
    /// `candidate`, `member` or `disabled`.
    pub state: &'static str,
    /// Points balance.
    pub points_balance: i64,
    /// Referral link.
    pub referral_url: String,
    /// Date of birth; year 1004 means day and month only.
    pub date_of_birth: Option<NaiveDate>,
    /// Current tier (members only).
    pub vip_tier: Option<VipTier>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
}

/// A Smile.io points transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PointsTransaction {
    /// Transaction id.
    pub id: u64,
    /// The Smile customer.
    pub customer_id: u64,
    /// Points added (positive) or spent (negative).
    pub points_change: i64,
    /// Shown to the customer.
    pub description: String,
    /// Only the merchant sees it.
    pub internal_note: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// A SmartrMail subscriber as seeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscriber {
    /// Opaque id (see [`World::subscriber_id`]).
    pub id: String,
    /// The person.
    pub person: u32,
    /// E-mail.
    pub email: String,
    /// Mobile number, for some.
    pub phone: Option<String>,
    /// Subscribed now.
    pub subscribed: bool,
    /// When they unsubscribed.
    pub unsubscribed_at: Option<DateTime<Utc>>,
    /// A spam complaint was recorded.
    pub complained: bool,
    /// Lifetime e-mails delivered.
    pub delivered_count: u64,
    /// Lifetime opens.
    pub opened_count: u64,
    /// Lifetime clicks.
    pub clicked_count: u64,
    /// When they joined.
    pub joined_at: DateTime<Utc>,
}

/// The Iterable project's marketing e-mail channel.
pub const ITERABLE_MARKETING_CHANNEL: u64 = 31;
/// The message type of the Iterable win-back journey's e-mails.
pub const ITERABLE_WINBACK_MESSAGE_TYPE: u64 = 48;
/// The Iterable project's static lists a user may belong to.
pub const ITERABLE_NEWSLETTER_LIST: u64 = 104233;

/// A person's Iterable profile: its subscription arrays (`api-reference/iterable.md` §14).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IterableUser {
    /// The person.
    pub person: u32,
    /// E-mail (the project is e-mail based).
    pub email: String,
    /// When the profile was made.
    pub signup_date: DateTime<Utc>,
    /// Static lists they belong to.
    pub email_list_ids: Vec<u64>,
    /// Channels they unsubscribed from.
    pub unsubscribed_channel_ids: Vec<u64>,
    /// Message types they unsubscribed from.
    pub unsubscribed_message_type_ids: Vec<u64>,
}

/// An e-mail platform with campaigns in the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    /// SmartrMail (project-defined campaigns contract).
    SmartrMail,
    /// Iterable.
    Iterable,
    /// Dotdigital.
    Dotdigital,
}

/// A sent campaign and its metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct Campaign {
    /// Numeric id, unique per platform.
    pub id: u64,
    /// Internal name.
    pub name: String,
    /// Subject line.
    pub subject: String,
    /// When it was sent.
    pub sent_at: DateTime<Utc>,
    /// Sent.
    pub sent: u64,
    /// Delivered.
    pub delivered: u64,
    /// Bounced.
    pub bounces: u64,
    /// Total opens.
    pub opens: u64,
    /// Unique opens.
    pub unique_opens: u64,
    /// Total clicks.
    pub clicks: u64,
    /// Unique clicks.
    pub unique_clicks: u64,
    /// Unsubscribes.
    pub unsubscribes: u64,
    /// Spam complaints.
    pub complaints: u64,
    /// Attributed orders.
    pub orders: u64,
    /// Attributed revenue in cents.
    pub revenue_cents: i64,
}

const CAMPAIGN_THEMES: [(&str, &str); 8] = [
    ("Spring sale", "20% off everything this weekend"),
    ("New arrivals", "Fresh gear for your next trail"),
    ("Loyalty boost", "Double points until Sunday"),
    ("We miss you", "Here is 15% off to come back"),
    ("Gift guide", "Gifts for every hiker"),
    ("Rain ready", "Stay dry: jackets are back"),
    ("Last chance", "Sale ends tonight"),
    ("Member preview", "Early access for VIPs"),
];

/// SplitMix64: turns (seed, stream, index) into a well-mixed 64-bit seed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Order ids are this plus [`ORDER_ID_SPAN`] × the buyer's index plus the order's place
/// among theirs (no one has more than 12 orders).
const ORDER_ID_BASE: u64 = 5_500_000_000;
/// Ids set aside per person for their orders.
const ORDER_ID_SPAN: u64 = 16;

impl World {
    /// A world from its parameters.
    pub fn new(params: WorldParams) -> Self {
        World { params }
    }

    fn rng(&self, stream: Stream, index: u64) -> fastrand::Rng {
        fastrand::Rng::with_seed(mix(mix(self.params.seed ^ (stream as u64) << 56) ^ index))
    }

    fn ago(&self, rng: &mut fastrand::Rng, min_days: i64, max_days: i64) -> DateTime<Utc> {
        let seconds = rng.i64(min_days * 86_400..=max_days * 86_400);
        self.params.anchor - Duration::seconds(seconds)
    }

    /// Person `index` (1-based, up to `customers`).
    pub fn person(&self, index: u32) -> Person {
        let mut rng = self.rng(Stream::Person, u64::from(index));
        let first_name = FIRST_NAMES[rng.usize(..FIRST_NAMES.len())];
        let last_name = LAST_NAMES[rng.usize(..LAST_NAMES.len())];
        let email = format!("{}.{}{}@example.com", first_name, last_name, index).to_lowercase();
        let shopify_email = if index.is_multiple_of(29) {
            format!("{first_name}.{last_name}{index}@Example.com")
        } else {
            email.clone()
        };
        let created_at = self.ago(&mut rng, 30, 1095);
        let order_count = match rng.u32(0..100) {
            0..15 => 0,
            15..45 => 1,
            45..80 => rng.u32(2..=4),
            _ => rng.u32(5..=12),
        };
        let lapsed = rng.u32(0..100) < 25;
        let last_order_at = (order_count > 0).then(|| {
            let (min, max) = if lapsed { (100, 700) } else { (0, 90) };
            let candidate = self.ago(&mut rng, min, max);
            candidate.max(created_at)
        });
        let consent = match rng.u32(0..100) {
            0..70 => Consent::Subscribed,
            70..90 => Consent::NotSubscribed,
            _ => Consent::Unsubscribed,
        };
        Person {
            index,
            first_name,
            last_name,
            email,
            shopify_email,
            created_at,
            consent,
            order_count,
            last_order_at,
        }
    }

    /// Every person, in index order.
    pub fn people(&self) -> impl Iterator<Item = Person> + '_ {
        (1..=self.params.customers).map(|i| self.person(i))
    }

    /// The order with id `id`, if the world has one.
    pub fn order(&self, id: u64) -> Option<Order> {
        let offset = id.checked_sub(ORDER_ID_BASE)?;
        let index = u32::try_from(offset / ORDER_ID_SPAN).ok()?;
        if index == 0 || index > self.params.customers {
            return None;
        }
        let place = usize::try_from(offset % ORDER_ID_SPAN).ok()?;
        self.orders_of(&self.person(index)).into_iter().nth(place)
    }

    /// The orders of person `index`, oldest first.
    pub fn orders_of(&self, person: &Person) -> Vec<Order> {
        let Some(last) = person.last_order_at else {
            return Vec::new();
        };
        let mut rng = self.rng(Stream::Orders, u64::from(person.index));
        let n = person.order_count;
        let span = last - person.created_at;
        (0..n)
            .map(|k| {
                let at = if n == 1 {
                    last
                } else {
                    (person.created_at + span * (k as i32 + 1) / n as i32).trunc_subsecs(0)
                };
                let id = ORDER_ID_BASE + u64::from(person.index) * ORDER_ID_SPAN + u64::from(k);
                let lines = (0..rng.u32(1..=3))
                    .map(|l| OrderLine {
                        id: 13_000_000_000 + id * 4 + u64::from(l),
                        product: &PRODUCTS[rng.usize(..PRODUCTS.len())],
                        quantity: rng.u32(1..=3),
                    })
                    .collect();
                let cancelled = rng.u32(0..100) < 3;
                let edited = rng.u32(0..100) < 20;
                let updated_at = if edited {
                    (at + Duration::hours(rng.i64(1..=240))).min(self.params.anchor)
                } else {
                    at
                };
                Order {
                    id,
                    number: 1000 + u64::from(person.index) * ORDER_ID_SPAN + u64::from(k),
                    customer: person.index,
                    email: person.shopify_email.clone(),
                    processed_at: at,
                    created_at: at,
                    updated_at,
                    cancelled_at: cancelled.then_some(updated_at),
                    financial_status: if cancelled { "REFUNDED" } else { "PAID" },
                    fulfillment_status: if cancelled {
                        "UNFULFILLED"
                    } else {
                        "FULFILLED"
                    },
                    lines,
                }
            })
            .collect()
    }

    /// The Smile records of a person: none, one, or (for every 50th member) two sharing
    /// the e-mail.
    pub fn smile_customers_of(&self, person: &Person) -> Vec<SmileCustomer> {
        let mut rng = self.rng(Stream::Smile, u64::from(person.index));
        if rng.u32(0..100) >= 75 {
            return Vec::new();
        }
        let state = match rng.u32(0..100) {
            0..85 => "member",
            85..95 => "candidate",
            _ => "disabled",
        };
        let points_balance = if state == "member" {
            rng.i64(0..=5000)
        } else {
            0
        };
        let vip_tier = (state == "member").then(|| {
            *VIP_TIERS
                .iter()
                .rev()
                .find(|t| points_balance >= t.milestone)
                .unwrap_or(&VIP_TIERS[0])
        });
        let date_of_birth = match rng.u32(0..10) {
            0..4 => None,
            4..7 => NaiveDate::from_ymd_opt(1004, rng.u32(1..=12), rng.u32(1..=28)),
            _ => NaiveDate::from_ymd_opt(rng.i32(1950..=2005), rng.u32(1..=12), rng.u32(1..=28)),
        };
        let created_at = person.created_at + Duration::days(rng.i64(0..=30));
        let created_at = created_at.min(self.params.anchor);
        let updated_at = self.ago(&mut rng, 0, 200).max(created_at);
        let code: String = (0..6)
            .map(|_| {
                char::from(
                    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"[rng.usize(..57)],
                )
            })
            .collect();
        let main = SmileCustomer {
            id: 100_000 + u64::from(person.index),
            person: person.index,
            email: person.email.clone(),
            state,
            points_balance,
            referral_url: format!("http://i.refs.cc/{code}"),
            date_of_birth,
            vip_tier,
            created_at,
            updated_at,
        };
        let mut records = vec![main.clone()];
        if person.index.is_multiple_of(50) {
            records.push(SmileCustomer {
                id: 5_000_000 + u64::from(person.index),
                state: "candidate",
                points_balance: 0,
                vip_tier: None,
                referral_url: format!("http://i.refs.cc/{code}x"),
                ..main
            });
        }
        records
    }

    /// Smile customer by id, if it exists.
    pub fn smile_customer(&self, id: u64) -> Option<SmileCustomer> {
        let index = match id {
            100_001..=4_999_999 => id - 100_000,
            5_000_001.. => id - 5_000_000,
            _ => return None,
        };
        let index = u32::try_from(index)
            .ok()
            .filter(|i| *i <= self.params.customers)?;
        self.smile_customers_of(&self.person(index))
            .into_iter()
            .find(|c| c.id == id)
    }

    /// The seeded points transactions of a Smile member, oldest first.
    pub fn points_transactions_of(&self, customer: &SmileCustomer) -> Vec<PointsTransaction> {
        if customer.state != "member" {
            return Vec::new();
        }
        let mut rng = self.rng(Stream::Points, customer.id);
        let n = rng.u64(1..=4);
        (0..n)
            .map(|k| {
                let (points_change, description) = match rng.u32(0..4) {
                    0 => (-rng.i64(1..=5) * 100, "Redeemed for a discount"),
                    1 => (200, "Birthday reward"),
                    _ => (rng.i64(1..=30) * 10, "Placed an order"),
                };
                PointsTransaction {
                    id: customer.id * 8 + k,
                    customer_id: customer.id,
                    points_change,
                    description: description.to_string(),
                    internal_note: None,
                    created_at: (customer.created_at
                        + (customer.updated_at - customer.created_at) * (k as i32 + 1) / n as i32)
                        .trunc_subsecs(0),
                }
            })
            .collect()
    }

    /// The seeded SmartrMail subscriber of a person, if they subscribed.
    pub fn subscriber_of(&self, person: &Person) -> Option<Subscriber> {
        let mut rng = self.rng(Stream::SmartrMail, u64::from(person.index));
        if rng.u32(0..100) >= 85 {
            return None;
        }
        let roll = rng.u32(0..100);
        let complained = roll < 3;
        let unsubscribed = (3..11).contains(&roll) || (complained && roll == 0);
        let subscribed = !unsubscribed;
        let joined_at = person.created_at;
        let delivered_count = rng.u64(5..=150);
        let opened_count = delivered_count * rng.u64(5..=60) / 100;
        let clicked_count = opened_count * rng.u64(0..=30) / 100;
        Some(Subscriber {
            id: self.subscriber_id(person.index),
            person: person.index,
            email: person.email.clone(),
            phone: (rng.u32(0..10) < 6).then(|| format!("+614{:08}", person.index)),
            subscribed,
            unsubscribed_at: (!subscribed).then(|| self.ago(&mut rng, 1, 300).max(joined_at)),
            complained,
            delivered_count,
            opened_count,
            clicked_count,
            joined_at,
        })
    }

    /// The seeded Iterable profile of a person, if they have one: about four in five do,
    /// drawn apart from SmartrMail so the platforms disagree — about one in twelve left
    /// the marketing channel, one in twenty only the win-back message type.
    pub fn iterable_user_of(&self, person: &Person) -> Option<IterableUser> {
        let mut rng = self.rng(Stream::Iterable, u64::from(person.index));
        if rng.u32(0..100) >= 80 {
            return None;
        }
        let roll = rng.u32(0..100);
        let unsubscribed_channel_ids = if roll < 8 {
            vec![ITERABLE_MARKETING_CHANNEL]
        } else {
            Vec::new()
        };
        let unsubscribed_message_type_ids = if (8..13).contains(&roll) {
            vec![ITERABLE_WINBACK_MESSAGE_TYPE]
        } else {
            Vec::new()
        };
        Some(IterableUser {
            person: person.index,
            email: person.email.clone(),
            signup_date: person.created_at,
            email_list_ids: if rng.bool() {
                vec![ITERABLE_NEWSLETTER_LIST]
            } else {
                Vec::new()
            },
            unsubscribed_channel_ids,
            unsubscribed_message_type_ids,
        })
    }

    /// The person an e-mail names, if it is one of the world's (any case).
    pub fn person_by_email(&self, email: &str) -> Option<Person> {
        let local = email.split('@').next()?;
        let digits = local.trim_start_matches(|c: char| !c.is_ascii_digit());
        let index: u32 = digits.parse().ok()?;
        if index == 0 || index > self.params.customers {
            return None;
        }
        let person = self.person(index);
        person
            .email
            .eq_ignore_ascii_case(email.trim())
            .then_some(person)
    }

    /// A seeded subscriber's opaque id: a check value, then the person's index, in hex.
    pub fn subscriber_id(&self, index: u32) -> String {
        let check = mix(self.params.seed ^ u64::from(index)) & 0xffff;
        format!("s_{check:04x}{index:x}")
    }

    /// The person a subscriber identifier names: an id, an e-mail (any case) or a phone.
    pub fn subscriber_person(&self, ident: &str) -> Option<u32> {
        let index = if let Some(hex) = ident.strip_prefix("s_") {
            let index = u32::from_str_radix(hex.get(4..)?, 16).ok()?;
            (self.subscriber_id(index) == ident).then_some(index)?
        } else if let Some(digits) = ident.strip_prefix("+614") {
            digits.parse().ok()?
        } else {
            let local = ident.split('@').next()?;
            let digits = local.trim_start_matches(|c: char| !c.is_ascii_digit());
            digits.parse().ok()?
        };
        if index == 0 || index > self.params.customers {
            return None;
        }
        let subscriber = self.subscriber_of(&self.person(index))?;
        let matches = subscriber.id == ident
            || subscriber.email.eq_ignore_ascii_case(ident)
            || subscriber.phone.as_deref() == Some(ident);
        matches.then_some(index)
    }

    /// The campaigns a platform sent, oldest first.
    pub fn campaigns(&self, platform: Platform) -> Vec<Campaign> {
        let mut rng = self.rng(Stream::Campaigns, platform as u64);
        let count = (12 + self.params.customers / 200).min(60);
        let audience = u64::from(self.params.customers) * 8 / 10;
        let mut campaigns: Vec<Campaign> = (0..count)
            .map(|k| {
                let (theme, subject) = CAMPAIGN_THEMES[rng.usize(..CAMPAIGN_THEMES.len())];
                let sent = (audience * rng.u64(30..=90) / 100).max(1);
                let delivered = sent * rng.u64(970..=995) / 1000;
                let unique_opens = delivered * rng.u64(15..=45) / 100;
                let unique_clicks = unique_opens * rng.u64(5..=20) / 100;
                let orders = unique_clicks * rng.u64(5..=20) / 100;
                Campaign {
                    id: 0,
                    name: format!("{theme} #{}", k + 1),
                    subject: subject.to_string(),
                    sent_at: self.ago(&mut rng, 0, 120),
                    sent,
                    delivered,
                    bounces: sent - delivered,
                    opens: unique_opens * rng.u64(110..=160) / 100,
                    unique_opens,
                    clicks: unique_clicks * rng.u64(110..=140) / 100,
                    unique_clicks,
                    unsubscribes: delivered * rng.u64(1..=5) / 1000,
                    complaints: delivered * rng.u64(0..=5) / 10_000,
                    orders,
                    revenue_cents: orders as i64 * rng.i64(6_000..=12_000),
                }
            })
            .collect();
        campaigns.sort_by_key(|c| c.sent_at);
        let base = match platform {
            Platform::SmartrMail => 1_000,
            Platform::Iterable => 2_000_000,
            Platform::Dotdigital => 300_000,
        };
        for (k, c) in campaigns.iter_mut().enumerate() {
            c.id = base + k as u64;
        }
        campaigns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(seed: u64, customers: u32) -> World {
        World::new(WorldParams {
            seed,
            customers,
            anchor: WorldParams::default_anchor(),
        })
    }

    #[test]
    fn every_order_is_found_by_its_id_and_no_other_id_finds_one() {
        let w = world(3, 40);
        let mut found = 0;
        for person in w.people() {
            let orders = w.orders_of(&person);
            for order in &orders {
                assert_eq!(w.order(order.id).as_ref(), Some(order));
                found += 1;
            }
            let next =
                ORDER_ID_BASE + u64::from(person.index) * ORDER_ID_SPAN + orders.len() as u64;
            assert_eq!(
                w.order(next),
                None,
                "past the last order of {}",
                person.index
            );
        }
        assert!(found > 40, "{found} orders");
        for id in [
            0,
            ORDER_ID_BASE - 1,
            ORDER_ID_BASE,
            ORDER_ID_BASE + 41 * ORDER_ID_SPAN,
        ] {
            assert_eq!(w.order(id), None, "{id}");
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_world_and_another_seed_another() {
        let (a, b, c) = (world(42, 500), world(42, 500), world(7, 500));
        let snapshot = |w: &World| {
            w.people()
                .map(|p| {
                    format!(
                        "{p:?}{:?}{:?}{:?}",
                        w.orders_of(&p),
                        w.smile_customers_of(&p),
                        w.subscriber_of(&p)
                    )
                })
                .collect::<String>()
        };
        assert_eq!(snapshot(&a), snapshot(&b));
        assert_ne!(snapshot(&a), snapshot(&c));
        assert_eq!(
            a.campaigns(Platform::Iterable),
            b.campaigns(Platform::Iterable)
        );
    }

    #[test]
    fn the_world_has_the_cases_reports_and_activation_must_handle() {
        let w = world(42, 2000);
        let anchor = w.params.anchor;
        let people: Vec<Person> = w.people().collect();
        let lapsed = people.iter().filter(|p| p.is_lapsed(anchor, 90)).count();
        assert!((300..700).contains(&lapsed), "{lapsed} lapsed of 2000");
        assert!(
            people
                .iter()
                .any(|p| p.shopify_email != p.email && p.shopify_email.to_lowercase() == p.email)
        );
        let subscribers: Vec<Subscriber> =
            people.iter().filter_map(|p| w.subscriber_of(p)).collect();
        assert!(subscribers.iter().any(|s| !s.subscribed));
        assert!(
            subscribers.iter().any(|s| s.complained && s.subscribed),
            "complained but never unsubscribed"
        );
        let lapsed_unsubscribed = people
            .iter()
            .filter(|p| p.is_lapsed(anchor, 90))
            .filter(|p| w.subscriber_of(p).is_some_and(|s| !s.subscribed))
            .count();
        assert!(lapsed_unsubscribed > 5, "{lapsed_unsubscribed}");
        let smile: Vec<SmileCustomer> = people
            .iter()
            .flat_map(|p| w.smile_customers_of(p))
            .collect();
        assert!(smile.iter().any(|c| {
            c.date_of_birth
                .is_some_and(|d| d.format("%Y").to_string() == "1004")
        }));
        let shared = smile.iter().filter(|c| c.id >= 5_000_000).count();
        assert!(shared > 0, "some e-mails have two Smile records");
        for order in people.iter().flat_map(|p| w.orders_of(p)) {
            assert!(order.updated_at >= order.created_at && order.updated_at <= anchor);
            assert_eq!(
                order.updated_at.timestamp_subsec_nanos(),
                0,
                "whole seconds, as Shopify has them"
            );
            assert!(!order.lines.is_empty());
        }
    }

    #[test]
    fn entities_can_be_looked_up_by_id() {
        let w = world(42, 300);
        for person in w.people().take(100) {
            for customer in w.smile_customers_of(&person) {
                assert_eq!(w.smile_customer(customer.id), Some(customer));
            }
        }
        assert_eq!(w.smile_customer(100_000 + 301), None);
        assert_eq!(w.smile_customer(12), None);
        for person in w.people() {
            if let Some(s) = w.subscriber_of(&person) {
                assert_eq!(w.subscriber_person(&s.id), Some(person.index));
                assert_eq!(
                    w.subscriber_person(&s.email.to_uppercase()),
                    Some(person.index)
                );
                if let Some(phone) = &s.phone {
                    assert_eq!(w.subscriber_person(phone), Some(person.index));
                }
            }
        }
        assert_eq!(w.subscriber_person("s_0000ffff"), None);
        assert_eq!(w.subscriber_person("nobody@example.com"), None);
    }
}

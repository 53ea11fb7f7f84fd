//! One field's value on its way from a source record to a column: the raw [`Cell`] the
//! decoder read, and the [`Typed`] value the column stores, with the conversions between
//! them (timestamps to UTC, money to decimals, epoch milliseconds, Shopify global ids).
//!
//! A conversion that fails returns the reason, which names what was expected and what
//! came; the decoder adds the field and sends the record to quarantine.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime};
use serde_json::value::RawValue;

use super::schema::{ColumnType, Convert, MONEY_SCALE};

/// A field as read from a record, before typing.
#[derive(Debug, Clone)]
pub enum Cell<'a> {
    /// The record has no such field.
    Missing,
    /// JSON `null` or an empty CSV cell.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction (or too large for `i64`).
    Float(f64),
    /// A string.
    Text(Cow<'a, str>),
    /// A nested array kept as written, for a child table.
    Raw(&'a RawValue),
    /// An object or array where a scalar belongs (skipped; only its shape is kept).
    Shape(&'static str),
}

impl Cell<'_> {
    /// How the value looked, for error messages (never the value itself if it is long).
    pub fn describe(&self) -> String {
        match self {
            Cell::Missing => "nothing".into(),
            Cell::Null => "null".into(),
            Cell::Bool(b) => format!("the boolean {b}"),
            Cell::Int(i) => format!("the integer {i}"),
            Cell::Float(f) => format!("the number {f}"),
            Cell::Text(t) if t.chars().count() <= 40 => format!("the string {t:?}"),
            Cell::Text(t) => format!("a string of {} characters", t.chars().count()),
            Cell::Raw(_) => "an array".into(),
            Cell::Shape(shape) => (*shape).into(),
        }
    }

    /// The text of a string cell.
    pub fn text(&self) -> Option<&str> {
        match self {
            Cell::Text(t) => Some(t),
            _ => None,
        }
    }
}

/// A value as its column stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum Typed<'a> {
    /// Null.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// Text.
    Text(Cow<'a, str>),
    /// Microseconds since the epoch, UTC.
    Micros(i64),
    /// Days since the epoch.
    Days(i32),
    /// A decimal scaled by 10^[`MONEY_SCALE`].
    Money(i128),
}

impl Typed<'_> {
    /// The same value, owning its text.
    pub fn to_owned_value(&self) -> Typed<'static> {
        match self {
            Typed::Null => Typed::Null,
            Typed::Bool(v) => Typed::Bool(*v),
            Typed::Int(v) => Typed::Int(*v),
            Typed::Float(v) => Typed::Float(*v),
            Typed::Text(v) => Typed::Text(Cow::Owned(v.to_string())),
            Typed::Micros(v) => Typed::Micros(*v),
            Typed::Days(v) => Typed::Days(*v),
            Typed::Money(v) => Typed::Money(*v),
        }
    }

    /// The value as a float, for ratios.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Typed::Int(i) => Some(*i as f64),
            Typed::Float(f) => Some(*f),
            Typed::Money(m) => Some(*m as f64 / 10f64.powi(MONEY_SCALE as i32)),
            _ => None,
        }
    }
}

/// Types `cell` for a column of `kind` read with `convert`; the error says what was wrong.
pub fn convert<'a>(
    cell: Cell<'a>,
    kind: ColumnType,
    convert: Convert,
) -> Result<Typed<'a>, String> {
    let expected = || format!("expected {}, got {}", kind.describe(), cell.describe());
    let typed = match (&cell, kind) {
        (Cell::Missing | Cell::Null, _) => Typed::Null,
        (Cell::Text(t), _) if convert == Convert::NullText && t.as_ref() == "null" => Typed::Null,
        (Cell::Text(t), _) if convert == Convert::NumberOrText && t.trim().is_empty() => {
            Typed::Null
        }
        (Cell::Bool(b), ColumnType::Boolean) => Typed::Bool(*b),
        (Cell::Text(t), ColumnType::Boolean) if convert == Convert::NumberOrText => {
            match t.trim().to_ascii_lowercase().as_str() {
                "true" => Typed::Bool(true),
                "false" => Typed::Bool(false),
                _ => return Err(expected()),
            }
        }
        (Cell::Int(i), ColumnType::Int64) => Typed::Int(*i),
        (Cell::Text(t), ColumnType::Int64) if convert == Convert::GidNumber => {
            let digits = t.rsplit('/').next().unwrap_or("");
            Typed::Int(digits.parse().map_err(|_| expected())?)
        }
        (Cell::Text(t), ColumnType::Int64) if convert == Convert::NumberOrText => {
            Typed::Int(t.trim().parse().map_err(|_| expected())?)
        }
        (Cell::Int(i), ColumnType::Float64) => Typed::Float(*i as f64),
        (Cell::Float(f), ColumnType::Float64) => Typed::Float(*f),
        (Cell::Text(t), ColumnType::Float64) if convert == Convert::NumberOrText => {
            Typed::Float(t.trim().parse().map_err(|_| expected())?)
        }
        (Cell::Text(_), ColumnType::Text) => match cell {
            Cell::Text(t) => Typed::Text(t),
            _ => unreachable!("matched above"),
        },
        (Cell::Int(i), ColumnType::Text) if convert == Convert::NumberOrText => {
            Typed::Text(Cow::Owned(i.to_string()))
        }
        (Cell::Int(ms), ColumnType::Timestamp) if convert == Convert::EpochMillis => {
            Typed::Micros(ms.checked_mul(1000).ok_or_else(expected)?)
        }
        (Cell::Text(t), ColumnType::Timestamp) => {
            Typed::Micros(parse_timestamp(t).ok_or_else(expected)?)
        }
        (Cell::Text(t), ColumnType::Date) => match parse_date(t) {
            Some(date) if convert == Convert::DateYear1004 && date.year() == 1004 => Typed::Null,
            Some(date) => Typed::Days(days_since_epoch(date)),
            None => return Err(expected()),
        },
        (Cell::Text(t), ColumnType::Money) => {
            let text = if convert == Convert::LenientMoney {
                Cow::Owned(strip_money_decorations(t))
            } else {
                Cow::Borrowed(t.as_ref())
            };
            if text.is_empty() && convert == Convert::LenientMoney {
                Typed::Null
            } else {
                Typed::Money(parse_decimal(&text).ok_or_else(expected)?)
            }
        }
        (Cell::Int(i), ColumnType::Money) => {
            Typed::Money(i128::from(*i) * 10i128.pow(MONEY_SCALE as u32))
        }
        (Cell::Float(f), ColumnType::Money) => {
            Typed::Money(parse_decimal(&f.to_string()).ok_or_else(expected)?)
        }
        _ => return Err(expected()),
    };
    Ok(typed)
}

/// Parses the timestamp forms the sources send, as microseconds since the epoch in UTC:
/// RFC 3339 with any offset, a date-time without a zone (taken as UTC, as Dotdigital
/// documents), and SmartrMail's `YYYY-MM-DD HH:MM:SS UTC`.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    let naive = text.strip_suffix(" UTC").unwrap_or(text);
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(naive, format).ok())
        .map(|t| t.and_utc().timestamp_micros())
}

/// Parses `YYYY-MM-DD` (a time after it is ignored), by hand: it runs up to three times
/// per Smile record (the date, its month, its day).
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    let day = text.trim().as_bytes().get(..10)?;
    let number = |digits: &[u8]| -> Option<u32> {
        digits.iter().try_fold(0u32, |n, b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    if day[4] != b'-' || day[7] != b'-' {
        return None;
    }
    let year = i32::try_from(number(&day[..4])?).ok()?;
    NaiveDate::from_ymd_opt(year, number(&day[5..7])?, number(&day[8..10])?)
}

/// Days from 1970-01-01 to `date` (Arrow's `Date32`).
pub fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

/// Keeps the digits, point and sign of a formatted amount (`"$1,528.20"` → `"1528.20"`).
fn strip_money_decorations(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect()
}

/// Parses a plain decimal (`-12`, `84.9`, `2000.0`) scaled by 10^[`MONEY_SCALE`]. More
/// fraction digits than the scale holds is an error, never a silent rounding.
pub fn parse_decimal(text: &str) -> Option<i128> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let fraction = fraction.trim_end_matches('0');
    let scale = MONEY_SCALE as usize;
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > scale
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: i128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction_value: i128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse::<i128>().ok()? * 10i128.pow((scale - fraction.len()) as u32)
    };
    let value = whole
        .checked_mul(10i128.pow(scale as u32))?
        .checked_add(fraction_value)?;
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Cell<'_> {
        Cell::Text(Cow::Borrowed(t))
    }

    #[test]
    fn timestamps_of_every_source_form_become_utc_micros() {
        let expected = 1_726_323_612_000_000;
        for form in [
            "2024-09-14T14:20:12Z",
            "2024-09-14T14:20:12.000Z",
            "2024-09-15T00:20:12+10:00",
            "2024-09-14T14:20:12",
            "2024-09-14 14:20:12 UTC",
        ] {
            assert_eq!(parse_timestamp(form), Some(expected), "{form}");
        }
        assert_eq!(parse_timestamp("14/09/2024"), None);
        assert_eq!(
            parse_date("1004-11-02"),
            NaiveDate::from_ymd_opt(1004, 11, 2)
        );
        assert_eq!(parse_date("2024-02-30"), None);
        assert_eq!(parse_date("2024/02/03"), None);
        assert_eq!(parse_date("24-02-03"), None);
    }

    #[test]
    fn money_is_exact_and_never_rounded() {
        let scale = 10i128.pow(MONEY_SCALE as u32);
        assert_eq!(parse_decimal("84.9"), Some(849 * scale / 10));
        assert_eq!(parse_decimal("2000.0"), Some(2000 * scale));
        assert_eq!(parse_decimal("-0.05"), Some(-5 * scale / 100));
        assert_eq!(parse_decimal("1.0000000001"), None);
        assert_eq!(parse_decimal("12x"), None);
        assert_eq!(parse_decimal(""), None);
        let lenient = convert(text("$1,528.20"), ColumnType::Money, Convert::LenientMoney);
        assert_eq!(lenient, Ok(Typed::Money(152_820 * scale / 100)));
    }

    #[test]
    fn wrong_types_say_what_was_expected_and_what_came() {
        let err = convert(text("12x"), ColumnType::Int64, Convert::Plain).unwrap_err();
        assert_eq!(err, "expected an integer, got the string \"12x\"");
        let err = convert(text("3"), ColumnType::Int64, Convert::Plain).unwrap_err();
        assert_eq!(err, "expected an integer, got the string \"3\"");
        assert_eq!(
            convert(text("3"), ColumnType::Int64, Convert::NumberOrText),
            Ok(Typed::Int(3))
        );
    }

    #[test]
    fn source_quirks_convert() {
        assert_eq!(
            convert(
                text("gid://shopify/Order/5512340011"),
                ColumnType::Int64,
                Convert::GidNumber
            ),
            Ok(Typed::Int(5_512_340_011))
        );
        assert_eq!(
            convert(
                Cell::Int(1_726_324_865_000),
                ColumnType::Timestamp,
                Convert::EpochMillis
            ),
            Ok(Typed::Micros(1_726_324_865_000_000))
        );
        assert_eq!(
            convert(text("1004-11-02"), ColumnType::Date, Convert::DateYear1004),
            Ok(Typed::Null)
        );
        assert_eq!(
            convert(text("1990-11-02"), ColumnType::Date, Convert::DateYear1004),
            Ok(Typed::Days(7610))
        );
        assert_eq!(
            convert(text("null"), ColumnType::Text, Convert::NullText),
            Ok(Typed::Null)
        );
    }
}

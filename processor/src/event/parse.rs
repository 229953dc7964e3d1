//! Raw bytes -> validated [`Event`], or an [`InvalidEvent`] naming what is wrong.
//!
//! The fast path deserializes straight into borrowed fields; only when that fails does a
//! slower diagnosis re-read the bytes to name the field at fault.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::time::parse_rfc3339_millis;
use super::{Channel, Currency, Event, EventType, SCHEMA_VERSION};

/// Why an event was refused: a stable machine-readable `code` and a message for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidEvent {
    pub code: &'static str,
    pub message: String,
}

impl InvalidEvent {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        InvalidEvent { code, message: message.into() }
    }
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// A JSON string borrowed from the input when it has no escapes, owned otherwise.
#[derive(Debug, PartialEq)]
pub(super) struct Text<'a>(pub(super) Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// The wire form; unknown fields (order_id, metadata, ...) are skipped.
#[derive(Deserialize, Debug, Default, PartialEq)]
pub(super) struct WireEvent<'a> {
    #[serde(borrow)]
    pub(super) event_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) event_type: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) event_time: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) store_id: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) sku_id: Option<Text<'a>>,
    pub(super) quantity_delta: Option<i64>,
    #[serde(borrow)]
    pub(super) unit_price: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) currency: Option<Text<'a>>,
    #[serde(borrow)]
    pub(super) channel: Option<Text<'a>>,
    pub(super) schema_version: Option<u32>,
    #[serde(borrow)]
    pub(super) terminal_id: Option<Text<'a>>,
    pub(super) sequence: Option<i64>,
}

fn required<'a>(field: &'static str, value: Option<Text<'a>>) -> Result<Cow<'a, str>, InvalidEvent> {
    match value {
        Some(Text(text)) if !text.is_empty() => Ok(text),
        Some(_) => Err(InvalidEvent::new("empty_field", format!("{field} is empty"))),
        None => Err(InvalidEvent::new("missing_field", format!("{field} is missing"))),
    }
}

/// Parses and validates one event. Never panics, whatever the bytes.
pub fn parse_event(bytes: &[u8]) -> Result<Event<'_>, InvalidEvent> {
    if bytes.len() > super::MAX_EVENT_BYTES {
        return Err(InvalidEvent::new(
            "event_too_large",
            format!("the event is over the {}-byte limit ({} bytes read)", super::MAX_EVENT_BYTES, bytes.len()),
        ));
    }
    let event = match super::fast::parse(bytes) {
        Some(event) => event,
        None => parse_checked(bytes)?,
    };
    check_bounds(&event)?;
    Ok(event)
}

/// The bounds of the schema that keep every sum in range (see [`super::MAX_QUANTITY`]).
fn check_bounds(event: &Event<'_>) -> Result<(), InvalidEvent> {
    let terminal = event.terminal_id.as_ref().map_or("", |t| t.as_ref());
    for (field, id) in
        [("store_id", event.store_id.as_ref()), ("sku_id", event.sku_id.as_ref()), ("terminal_id", terminal)]
    {
        if id.len() > super::MAX_ID_BYTES {
            return Err(InvalidEvent::new(
                "id_too_long",
                format!("{field} of {} bytes is over the {}-byte limit", id.len(), super::MAX_ID_BYTES),
            ));
        }
    }
    if event.quantity_delta.unsigned_abs() > super::MAX_QUANTITY.unsigned_abs() {
        return Err(InvalidEvent::new(
            "quantity_out_of_range",
            format!("quantity_delta {} is beyond ±{}", event.quantity_delta, super::MAX_QUANTITY),
        ));
    }
    if let Some(price) = event.unit_price
        && price >= super::MAX_UNIT_PRICE
    {
        return Err(InvalidEvent::new(
            "unit_price_out_of_range",
            format!("unit_price {price} is not below {}", super::MAX_UNIT_PRICE),
        ));
    }
    Ok(())
}

/// The checked path: reads any JSON, validates field by field and names the first problem.
pub(super) fn parse_checked(bytes: &[u8]) -> Result<Event<'_>, InvalidEvent> {
    match super::scan::scan(bytes) {
        Some(wire) => validate(wire),
        None => parse_with_serde(bytes),
    }
}

/// The checked path with serde_json reading every input (the scanner's reference).
pub(super) fn parse_with_serde(bytes: &[u8]) -> Result<Event<'_>, InvalidEvent> {
    validate(serde_json::from_slice(bytes).map_err(|e| diagnose(bytes, &e))?)
}

/// Validates the fields read, in schema order, and names the first problem.
pub(super) fn validate(wire: WireEvent<'_>) -> Result<Event<'_>, InvalidEvent> {
    if let Some(version) = wire.schema_version
        && version != SCHEMA_VERSION
    {
        return Err(InvalidEvent::new(
            "unsupported_schema_version",
            format!("schema_version {version} is not supported (this processor reads {SCHEMA_VERSION})"),
        ));
    }
    let id_text = required("event_id", wire.event_id)?;
    let event_id = uuid::Uuid::try_parse(&id_text)
        .map_err(|_| InvalidEvent::new("invalid_event_id", format!("event_id {id_text:?} is not a UUID")))?
        .as_u128();
    let type_text = required("event_type", wire.event_type)?;
    let event_type = EventType::from_name(&type_text).ok_or_else(|| {
        InvalidEvent::new("unknown_event_type", format!("event_type {type_text:?} is not one of SALE, RETURN, RESTOCK, ADJUSTMENT, TRANSFER_OUT, TRANSFER_IN, RESERVATION, RESERVATION_RELEASE"))
    })?;
    let time_text = required("event_time", wire.event_time)?;
    let event_time = parse_rfc3339_millis(&time_text).ok_or_else(|| {
        InvalidEvent::new("invalid_event_time", format!("event_time {time_text:?} is not an RFC 3339 timestamp"))
    })?;
    let store_id = required("store_id", wire.store_id)?;
    let sku_id = required("sku_id", wire.sku_id)?;
    let quantity_delta =
        wire.quantity_delta.ok_or_else(|| InvalidEvent::new("missing_field", "quantity_delta is missing"))?;
    let sign_ok = match event_type.required_sign() {
        1 => quantity_delta > 0,
        -1 => quantity_delta < 0,
        _ => quantity_delta != 0,
    };
    if !sign_ok {
        let wanted = match event_type.required_sign() {
            1 => "positive",
            -1 => "negative",
            _ => "non-zero",
        };
        return Err(InvalidEvent::new(
            "invalid_quantity",
            format!("quantity_delta {quantity_delta} of a {event_type} must be {wanted}"),
        ));
    }
    let unit_price = match wire.unit_price {
        Some(Text(text)) => Some(parse_price(&text)?),
        None => None,
    };
    let currency = match wire.currency {
        Some(Text(text)) => Some(Currency::parse(&text).ok_or_else(|| {
            InvalidEvent::new("invalid_currency", format!("currency {text:?} is not a 3-letter ISO 4217 code"))
        })?),
        None => None,
    };
    if event_type.moves_money() {
        if unit_price.is_none() {
            return Err(InvalidEvent::new("missing_field", format!("a {event_type} needs a unit_price")));
        }
        if currency.is_none() {
            return Err(InvalidEvent::new("missing_field", format!("a {event_type} needs a currency")));
        }
    }
    // A channel this version does not know keeps the event (with the store's channel).
    let (channel, unknown_channel) = match wire.channel {
        Some(Text(text)) => {
            let channel = Channel::from_name(&text);
            (channel, channel.is_none())
        }
        None => (None, false),
    };
    Ok(Event {
        event_id,
        event_type,
        event_time,
        store_id,
        sku_id,
        quantity_delta,
        unit_price,
        currency,
        channel,
        unknown_channel,
        terminal_id: wire.terminal_id.map(|Text(text)| text),
        sequence: wire.sequence,
    })
}

pub(super) fn parse_price(text: &str) -> Result<Decimal, InvalidEvent> {
    let invalid =
        || InvalidEvent::new("invalid_unit_price", format!("unit_price {text:?} is not a non-negative decimal"));
    // Plain decimal notation only (`^[0-9]+(\.[0-9]+)?$`): no sign, no exponent.
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
        Some(_) => return Err(invalid()),
        None => (text, ""),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(fraction) {
        return Err(invalid());
    }
    // Prices have few digits: build the decimal from an integer mantissa and a scale.
    if whole.len() + fraction.len() <= 18 {
        let mantissa = whole.bytes().chain(fraction.bytes()).fold(0i64, |m, d| m * 10 + i64::from(d - b'0'));
        return Ok(Decimal::new(mantissa, fraction.len() as u32));
    }
    Decimal::from_str(text).map_err(|_| invalid())
}

/// The slow path: say which field is wrong when the fast deserialization failed.
fn diagnose(bytes: &[u8], error: &serde_json::Error) -> InvalidEvent {
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(value) => value,
        Err(_) => {
            let shown = match std::str::from_utf8(bytes) {
                Ok(_) => format!("not JSON: {error}"),
                Err(_) => "not JSON: the bytes are not UTF-8".to_string(),
            };
            return InvalidEvent::new("not_json", shown);
        }
    };
    let Some(object) = value.as_object() else {
        return InvalidEvent::new("not_an_object", "the event is JSON but not an object");
    };
    let strings = [
        "event_id",
        "event_type",
        "event_time",
        "store_id",
        "sku_id",
        "unit_price",
        "currency",
        "channel",
        "terminal_id",
    ];
    for field in strings {
        if let Some(v) = object.get(field)
            && !v.is_string()
            && !v.is_null()
        {
            let hint = if field == "unit_price" { " (money is a decimal string, e.g. \"49.95\")" } else { "" };
            return InvalidEvent::new("invalid_type", format!("{field} must be a string, got {}{hint}", kind_of(v)));
        }
    }
    for field in ["quantity_delta", "sequence"] {
        if let Some(v) = object.get(field)
            && !v.is_null()
            && !v.is_i64()
        {
            return InvalidEvent::new("invalid_type", format!("{field} must be an integer, got {}", kind_of(v)));
        }
    }
    if let Some(v) = object.get("schema_version")
        && !v.is_null()
        && !v.is_u64()
    {
        return InvalidEvent::new("invalid_type", format!("schema_version must be an integer, got {}", kind_of(v)));
    }
    InvalidEvent::new("invalid_event", error.to_string())
}

fn kind_of(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(b) => format!("the boolean {b}"),
        serde_json::Value::Number(n) => format!("the number {n}"),
        serde_json::Value::String(s) => format!("the string {s:?}"),
        serde_json::Value::Array(_) => "an array".into(),
        serde_json::Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALE: &str = r#"{"event_id":"0b9f1c1e-3a51-4d57-9a53-1c6f0b1d2e3f","event_type":"SALE","event_time":"2026-11-27T10:00:00Z","store_id":"S001","sku_id":"SKU-1","quantity_delta":-2,"unit_price":"49.95","currency":"EUR","channel":"physical","terminal_id":"T1","metadata":{"promo":"BF"},"schema_version":1}"#;

    fn with(field: &str, value: &str) -> String {
        let mut v: serde_json::Value = serde_json::from_str(SALE).unwrap();
        if value == "<absent>" {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = serde_json::from_str(value).unwrap();
        }
        v.to_string()
    }

    fn reason(bytes: &str) -> String {
        parse_event(bytes.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn parses_a_sale_keeping_unknown_fields_out_of_the_way() {
        let e = parse_event(SALE.as_bytes()).unwrap();
        assert_eq!(e.event_id, 0x0b9f1c1e_3a51_4d57_9a53_1c6f0b1d2e3f);
        assert_eq!(e.event_type, EventType::Sale);
        assert_eq!(e.event_time, 1_795_773_600_000);
        assert_eq!((e.store_id.as_ref(), e.sku_id.as_ref()), ("S001", "SKU-1"));
        assert!(matches!(e.store_id, Cow::Borrowed(_)));
        assert_eq!(e.quantity_delta, -2);
        assert_eq!(e.unit_price, Some(Decimal::new(4995, 2)));
        assert_eq!(e.currency.map(|c| c.to_string()), Some("EUR".into()));
        assert_eq!(e.channel, Some(Channel::Physical));
    }

    #[test]
    fn terminal_and_sequence_are_read_on_every_path_and_checked() {
        let plain = with("sequence", "4096");
        let e = parse_event(plain.as_bytes()).unwrap();
        assert_eq!((e.terminal_id.as_deref(), e.sequence), (Some("T1"), Some(4096)));
        // The checked path (an escape makes the fast path decline) reads the same.
        let escaped = with("sequence", "-7").replace("\"T1\"", "\"T\\u0031\"");
        let e = parse_event(escaped.as_bytes()).unwrap();
        assert_eq!((e.terminal_id.as_deref(), e.sequence), (Some("T1"), Some(-7)));
        let null = with("terminal_id", "null");
        let e = parse_event(null.as_bytes()).unwrap();
        assert_eq!((e.terminal_id, e.sequence), (None, None));
        assert_eq!(
            reason(&with("sequence", "\"12\"")),
            "invalid_type: sequence must be an integer, got the string \"12\""
        );
        assert_eq!(reason(&with("sequence", "1.5")), "invalid_type: sequence must be an integer, got the number 1.5");
        assert_eq!(reason(&with("terminal_id", "7")), "invalid_type: terminal_id must be a string, got the number 7");
        let long = format!("\"{}\"", "t".repeat(300));
        assert_eq!(
            reason(&with("terminal_id", &long)),
            "id_too_long: terminal_id of 300 bytes is over the 256-byte limit"
        );
    }

    #[test]
    fn escaped_strings_are_accepted() {
        let json = with("store_id", r#""M\u00fcnchen-1""#);
        let e = parse_event(json.as_bytes()).unwrap();
        assert_eq!(e.store_id, "München-1");
    }

    #[test]
    fn every_invalid_input_has_its_reason() {
        let cases: Vec<(String, &str)> = vec![
            ("{not json".into(), "not_json: not JSON: key must be a string at line 1 column 2"),
            ("[1,2]".into(), "not_an_object: the event is JSON but not an object"),
            (with("event_id", "\"abc\""), "invalid_event_id: event_id \"abc\" is not a UUID"),
            (with("event_id", "<absent>"), "missing_field: event_id is missing"),
            (
                with("event_type", "\"THEFT\""),
                "unknown_event_type: event_type \"THEFT\" is not one of SALE, RETURN, RESTOCK, ADJUSTMENT, TRANSFER_OUT, TRANSFER_IN, RESERVATION, RESERVATION_RELEASE",
            ),
            (
                with("event_time", "\"yesterday\""),
                "invalid_event_time: event_time \"yesterday\" is not an RFC 3339 timestamp",
            ),
            (with("store_id", "\"\""), "empty_field: store_id is empty"),
            (with("sku_id", "<absent>"), "missing_field: sku_id is missing"),
            (with("quantity_delta", "0"), "invalid_quantity: quantity_delta 0 of a SALE must be negative"),
            (with("quantity_delta", "3"), "invalid_quantity: quantity_delta 3 of a SALE must be negative"),
            (with("quantity_delta", "1.5"), "invalid_type: quantity_delta must be an integer, got the number 1.5"),
            (
                with("unit_price", "49.95"),
                "invalid_type: unit_price must be a string, got the number 49.95 (money is a decimal string, e.g. \"49.95\")",
            ),
            (with("unit_price", "\"-1.00\""), "invalid_unit_price: unit_price \"-1.00\" is not a non-negative decimal"),
            (with("unit_price", "\"1e3\""), "invalid_unit_price: unit_price \"1e3\" is not a non-negative decimal"),
            (with("unit_price", "\"12.\""), "invalid_unit_price: unit_price \"12.\" is not a non-negative decimal"),
            (with("unit_price", "<absent>"), "missing_field: a SALE needs a unit_price"),
            (with("currency", "\"euro\""), "invalid_currency: currency \"euro\" is not a 3-letter ISO 4217 code"),
            (with("currency", "<absent>"), "missing_field: a SALE needs a currency"),
            (with("channel", "7"), "invalid_type: channel must be a string, got the number 7"),
            (
                with("schema_version", "2"),
                "unsupported_schema_version: schema_version 2 is not supported (this processor reads 1)",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(reason(&input), expected, "input: {input}");
        }
    }

    #[test]
    fn a_channel_this_version_does_not_know_keeps_the_sale() {
        for (value, channel, unknown) in [
            ("\"online\"", Some(Channel::Online), false),
            ("\"ONLINE\"", Some(Channel::Online), false),
            ("\"pos\"", None, true),
            ("\"kiosk\"", None, true),
            ("null", None, false),
            ("<absent>", None, false),
        ] {
            let input = with("channel", value);
            // Both readers give the same verdict: the fast path and the checked one.
            for event in [parse_event(input.as_bytes()).unwrap(), parse_checked(input.as_bytes()).unwrap()] {
                assert_eq!((event.channel, event.unknown_channel), (channel, unknown), "channel {value}");
                assert_eq!(event.quantity_delta, -2, "the sale is kept");
            }
        }
    }

    #[test]
    fn non_utf8_bytes_are_refused() {
        let err = parse_event(&[0xff, 0xfe, b'{']).unwrap_err();
        assert_eq!(err.to_string(), "not_json: not JSON: the bytes are not UTF-8");
    }

    #[test]
    fn signs_follow_the_table() {
        let cases = [
            ("RETURN", 1, true),
            ("RETURN", -1, false),
            ("RESTOCK", 5, true),
            ("RESTOCK", -5, false),
            ("TRANSFER_IN", 5, true),
            ("TRANSFER_OUT", -5, true),
            ("TRANSFER_OUT", 5, false),
            ("ADJUSTMENT", -3, true),
            ("ADJUSTMENT", 3, true),
            ("ADJUSTMENT", 0, false),
            ("RESERVATION", 1, true),
            ("RESERVATION", -1, false),
            ("RESERVATION_RELEASE", -1, true),
            ("RESERVATION_RELEASE", 1, false),
        ];
        for (kind, delta, ok) in cases {
            let mut v: serde_json::Value = serde_json::from_str(SALE).unwrap();
            v["event_type"] = kind.into();
            v["quantity_delta"] = delta.into();
            assert_eq!(parse_event(v.to_string().as_bytes()).is_ok(), ok, "{kind} {delta}");
        }
    }

    proptest::proptest! {
        /// The integer fast path reads prices exactly as rust_decimal's parser does.
        #[test]
        fn price_matches_decimal_parsing(text in "[0-9]{1,20}(\\.[0-9]{1,8})?") {
            proptest::prop_assert_eq!(parse_price(&text).ok(), Decimal::from_str(&text).ok());
        }
    }

    #[test]
    fn restock_needs_no_price() {
        let json = r#"{"event_id":"0b9f1c1e-3a51-4d57-9a53-1c6f0b1d2e3f","event_type":"RESTOCK","event_time":"2026-11-27T10:00:00+01:00","store_id":"S1","sku_id":"K","quantity_delta":10}"#;
        let e = parse_event(json.as_bytes()).unwrap();
        assert_eq!((e.unit_price, e.currency, e.channel), (None, None, None));
        assert_eq!(e.event_time, 1_795_770_000_000);
    }
}

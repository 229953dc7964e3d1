//! The event schema (version 1): what a POS, web shop, warehouse or marketplace sends.
//!
//! `parse` turns raw bytes into a validated [`Event`] or an [`InvalidEvent`] with a reason;
//! `time` holds the RFC 3339 <-> epoch-millisecond conversions used everywhere else.

mod fast;
mod lex;
#[cfg(test)]
mod mutate;
mod parse;
mod scan;
mod schema;
pub mod time;

use std::borrow::Cow;
use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

pub use parse::{InvalidEvent, parse_event};

/// The parser's paths one by one, for the differential fuzz target (`processor/fuzz`): not
/// part of the API.
#[doc(hidden)]
pub mod paths {
    use super::{Event, InvalidEvent};

    /// The fast path: an event, or `None` where it declines.
    pub fn fast(bytes: &[u8]) -> Option<Event<'_>> {
        super::fast::parse(bytes)
    }

    /// The checked path: the scanner where it reads the input, serde_json elsewhere.
    pub fn checked(bytes: &[u8]) -> Result<Event<'_>, InvalidEvent> {
        super::parse::parse_checked(bytes)
    }

    /// The checked path with serde_json reading every input.
    pub fn serde(bytes: &[u8]) -> Result<Event<'_>, InvalidEvent> {
        super::parse::parse_with_serde(bytes)
    }

    /// Whether the scanner reads the input (else it declines and serde_json reads it).
    pub fn scanned(bytes: &[u8]) -> bool {
        super::scan::scan(bytes).is_some()
    }
}
pub use schema::event_json_schema;

/// The schema version this processor reads; an absent `schema_version` means this one.
pub const SCHEMA_VERSION: u32 = 1;

/// The largest event, in bytes: a larger record is dead-lettered unread (`event_too_large`).
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The longest `store_id` or `sku_id`, in bytes (`id_too_long`). Both go into output keys,
/// changelog keys and every record about the position: an id of a megabyte, which the event
/// limit allows, would make records no Kafka topic takes. A StoreRegion's store ids are 64
/// characters at most.
pub const MAX_ID_BYTES: usize = 256;

/// The largest `quantity_delta`, either sign: one event moves at most a billion units. With
/// [`MAX_UNIT_PRICE`] it keeps every line amount and every window sum far inside the range
/// of the decimal type (7.9e28), so no input can overflow them.
pub const MAX_QUANTITY: i64 = 1_000_000_000;
/// The largest `unit_price`: below ten billion (at most ten integer digits).
pub const MAX_UNIT_PRICE: rust_decimal::Decimal = rust_decimal::Decimal::from_parts(1_410_065_408, 2, 0, false, 0);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventType {
    Sale,
    Return,
    Restock,
    Adjustment,
    TransferOut,
    TransferIn,
    Reservation,
    ReservationRelease,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        EventType::Sale,
        EventType::Return,
        EventType::Restock,
        EventType::Adjustment,
        EventType::TransferOut,
        EventType::TransferIn,
        EventType::Reservation,
        EventType::ReservationRelease,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Sale => "SALE",
            EventType::Return => "RETURN",
            EventType::Restock => "RESTOCK",
            EventType::Adjustment => "ADJUSTMENT",
            EventType::TransferOut => "TRANSFER_OUT",
            EventType::TransferIn => "TRANSFER_IN",
            EventType::Reservation => "RESERVATION",
            EventType::ReservationRelease => "RESERVATION_RELEASE",
        }
    }

    pub fn from_name(name: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// The sign `quantity_delta` must have: +1, -1, or 0 for "any non-zero".
    pub fn required_sign(self) -> i8 {
        match self {
            EventType::Sale | EventType::TransferOut | EventType::ReservationRelease => -1,
            EventType::Return | EventType::Restock | EventType::TransferIn | EventType::Reservation => 1,
            EventType::Adjustment => 0,
        }
    }

    /// Whether money moves, so `unit_price` and `currency` are required.
    pub fn moves_money(self) -> bool {
        matches!(self, EventType::Sale | EventType::Return)
    }

    /// Whether the event changes stock on hand (the others change reservations).
    pub fn changes_on_hand(self) -> bool {
        !matches!(self, EventType::Reservation | EventType::ReservationRelease)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a sale or stock movement happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Physical,
    Online,
    Warehouse,
    Marketplace,
}

impl Channel {
    pub const ALL: [Channel; 4] = [Channel::Physical, Channel::Online, Channel::Warehouse, Channel::Marketplace];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Physical => "physical",
            Channel::Online => "online",
            Channel::Warehouse => "warehouse",
            Channel::Marketplace => "marketplace",
        }
    }

    /// The channel of a name, in any ASCII case.
    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An ISO 4217 currency code: three upper-case ASCII letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency([u8; 3]);

impl Currency {
    pub fn parse(code: &str) -> Option<Currency> {
        let bytes: [u8; 3] = code.as_bytes().try_into().ok()?;
        bytes.iter().all(u8::is_ascii_uppercase).then_some(Currency(bytes))
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from three ASCII upper-case letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A valid event, borrowing its strings from the raw bytes where it can.
#[derive(Clone, Debug, PartialEq)]
pub struct Event<'a> {
    pub event_id: u128,
    pub event_type: EventType,
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub event_time: i64,
    pub store_id: Cow<'a, str>,
    pub sku_id: Cow<'a, str>,
    pub quantity_delta: i64,
    /// Present on SALE and RETURN (required there), optional elsewhere.
    pub unit_price: Option<Decimal>,
    pub currency: Option<Currency>,
    pub channel: Option<Channel>,
    /// The event named a channel this version does not know (a newer producer's, or a POS
    /// feed's own such as `pos`): it is kept, with the store's channel, and counted, rather
    /// than dead-lettered with its sale.
    pub unknown_channel: bool,
    /// The till or device that recorded the event, and its number in that device's sequence:
    /// together they identify the event for deduplication however late it comes (an offline
    /// terminal's upload hours later), in memory that does not grow with the events' count.
    pub terminal_id: Option<Cow<'a, str>>,
    pub sequence: Option<i64>,
}

/// A version-1 event as producers write it; what `generate` emits and tests build.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub event_id: String,
    pub event_type: EventType,
    pub event_time: String,
    pub store_id: String,
    pub sku_id: String,
    pub quantity_delta: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
    pub schema_version: u32,
}

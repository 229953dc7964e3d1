//! The fast path of `parse_event`: one pass from bytes straight to a validated [`Event`].
//!
//! It reads the flat, ASCII, escape-free objects producers write, whatever the order of their
//! members, and checks every rule on the way. On anything else (an escape, non-ASCII text, a
//! null, an unusual number or id form, an invalid value, a duplicate member) it declines with
//! `None` and the checked path ([`super::parse`]) parses the bytes again and says what is
//! wrong. So the fast path decides nothing on its own: a property test holds that whenever it
//! returns an event, the checked path returns the same one.
//!
//! Strings are searched with the shared search of `lex` (16 bytes at a time) for the byte
//! that ends them; an event has about two dozen short strings.

use std::borrow::Cow;

use rust_decimal::Decimal;

use super::lex::{HIGH, ONES, ascii_string_at, ws};
use super::scan::skip_value;
use super::time::fast_rfc3339_millis;
use super::{Channel, Currency, Event, EventType, SCHEMA_VERSION};

/// Reads a valid event, or declines.
pub(super) fn parse(b: &[u8]) -> Option<Event<'_>> {
    let mut fields = Fields::default();
    let mut i = ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i = ws(b, i + 1);
    // Producers write the members in one order: the next one expected is tried first, with
    // two word compares instead of a search for the key's end and a match on its text.
    let mut expected = 0;
    if *b.get(i)? != b'}' {
        loop {
            let bit = match NAMES.get(expected) {
                Some(name) if name.is_at(b, i) => {
                    i += name.len;
                    Some(1 << expected)
                }
                _ => {
                    let (key_start, key_end) = ascii_string_at(b, i)?;
                    i = key_end + 1;
                    field_bit(&b[key_start..key_end])
                }
            };
            i = ws(b, i);
            if *b.get(i)? != b':' {
                return None;
            }
            i = ws(b, i + 1);
            i = match bit {
                Some(bit) => {
                    expected = bit.trailing_zeros() as usize + 1;
                    fields.read(bit, b, i)?
                }
                // Members the processor does not read (order_id, metadata, ...).
                None => match *b.get(i)? {
                    b'"' => ascii_string_at(b, i).map(|(_, end)| end + 1)?,
                    _ => skip_value(b, i, 1)?,
                },
            };
            i = ws(b, i);
            match *b.get(i)? {
                b',' => i = ws(b, i + 1),
                b'}' => break,
                _ => return None,
            }
        }
    }
    if ws(b, i + 1) != b.len() {
        return None;
    }
    fields.into_event(b)
}

/// The members read so far: strings as (start, end) byte ranges, checked when the event is built.
#[derive(Default)]
struct Fields {
    seen: u16,
    event_id: Option<u128>,
    event_type: Option<EventType>,
    event_time: Option<i64>,
    store_id: (usize, usize),
    sku_id: (usize, usize),
    quantity_delta: Option<i64>,
    unit_price: Option<(usize, usize)>,
    currency: Option<Currency>,
    channel: Option<Channel>,
    unknown_channel: bool,
    terminal_id: Option<(usize, usize)>,
    sequence: Option<i64>,
}

const EVENT_ID: u16 = 1;
const EVENT_TYPE: u16 = 1 << 1;
const EVENT_TIME: u16 = 1 << 2;
const STORE_ID: u16 = 1 << 3;
const SKU_ID: u16 = 1 << 4;
const QUANTITY_DELTA: u16 = 1 << 5;
const UNIT_PRICE: u16 = 1 << 6;
const CURRENCY: u16 = 1 << 7;
const CHANNEL: u16 = 1 << 8;
const TERMINAL_ID: u16 = 1 << 9;
const SEQUENCE: u16 = 1 << 10;
const SCHEMA: u16 = 1 << 11;
const REQUIRED: u16 = EVENT_ID | EVENT_TYPE | EVENT_TIME | STORE_ID | SKU_ID | QUANTITY_DELTA;

/// The member a key names, as its bit; `None` for members the processor does not read.
#[inline(always)]
fn field_bit(key: &[u8]) -> Option<u16> {
    Some(match key {
        b"event_id" => EVENT_ID,
        b"event_type" => EVENT_TYPE,
        b"event_time" => EVENT_TIME,
        b"store_id" => STORE_ID,
        b"sku_id" => SKU_ID,
        b"quantity_delta" => QUANTITY_DELTA,
        b"unit_price" => UNIT_PRICE,
        b"currency" => CURRENCY,
        b"channel" => CHANNEL,
        b"terminal_id" => TERMINAL_ID,
        b"sequence" => SEQUENCE,
        b"schema_version" => SCHEMA,
        _ => return None,
    })
}

/// A member name as it appears on the wire, both quotes included (8 to 16 bytes), as two
/// little-endian words and the masks of its bytes in them.
struct Name {
    words: [u64; 2],
    masks: [u64; 2],
    len: usize,
}

impl Name {
    const fn quoted(text: &[u8]) -> Name {
        let mut bytes = [0u8; 16];
        let mut mask = [0u8; 16];
        let len = text.len() + 2;
        assert!(len >= 8 && len <= 16, "a name the word compare can hold");
        bytes[0] = b'"';
        bytes[len - 1] = b'"';
        let mut at = 0;
        while at < len {
            if at > 0 && at < len - 1 {
                bytes[at] = text[at - 1];
            }
            mask[at] = 0xff;
            at += 1;
        }
        Name { words: [le_word(&bytes, 0), le_word(&bytes, 8)], masks: [le_word(&mask, 0), le_word(&mask, 8)], len }
    }

    /// Whether the input at `i` starts with this name (a key exactly this one: the closing
    /// quote is part of the compare, and names hold no quote or backslash).
    #[inline(always)]
    fn is_at(&self, b: &[u8], i: usize) -> bool {
        let Some(chunk) = b.get(i..i + 16) else { return false };
        let word = |from: usize| u64::from_le_bytes(chunk[from..from + 8].try_into().unwrap_or_default());
        (word(0) & self.masks[0]) == self.words[0] && (word(8) & self.masks[1]) == self.words[1]
    }
}

/// Eight bytes from `from` as a little-endian word, at compile time.
const fn le_word(bytes: &[u8; 16], from: usize) -> u64 {
    let mut value = 0u64;
    let mut at = 0;
    while at < 8 {
        value |= (bytes[from + at] as u64) << (8 * at);
        at += 1;
    }
    value
}

/// The members the processor reads, in the order producers write them; entry n has bit n.
const NAMES: [Name; 12] = [
    Name::quoted(b"event_id"),
    Name::quoted(b"event_type"),
    Name::quoted(b"event_time"),
    Name::quoted(b"store_id"),
    Name::quoted(b"sku_id"),
    Name::quoted(b"quantity_delta"),
    Name::quoted(b"unit_price"),
    Name::quoted(b"currency"),
    Name::quoted(b"channel"),
    Name::quoted(b"terminal_id"),
    Name::quoted(b"sequence"),
    Name::quoted(b"schema_version"),
];

impl Fields {
    /// Reads the value of the member with `bit` at `i`; the index after it.
    #[inline(always)]
    fn read(&mut self, bit: u16, b: &[u8], i: usize) -> Option<usize> {
        if self.seen & bit != 0 {
            return None;
        }
        self.seen |= bit;
        if bit == QUANTITY_DELTA || bit == SEQUENCE || bit == SCHEMA {
            let (value, end) = small_integer_at(b, i)?;
            if bit == QUANTITY_DELTA {
                self.quantity_delta = Some(value);
            } else if bit == SEQUENCE {
                self.sequence = Some(value);
            } else if value != i64::from(SCHEMA_VERSION) {
                return None;
            }
            return Some(end);
        }
        let (start, end) = ascii_string_at(b, i)?;
        let text = &b[start..end];
        match bit {
            EVENT_ID => self.event_id = Some(uuid_hyphenated(text)?),
            EVENT_TYPE => self.event_type = Some(event_type(text)?),
            EVENT_TIME => self.event_time = Some(fast_rfc3339_millis(text)?),
            STORE_ID => self.store_id = (start, end),
            SKU_ID => self.sku_id = (start, end),
            UNIT_PRICE => self.unit_price = Some((start, end)),
            CURRENCY => self.currency = Some(currency(text)?),
            TERMINAL_ID => self.terminal_id = Some((start, end)),
            _ => {
                self.channel = Channel::from_name(ascii(text));
                self.unknown_channel = self.channel.is_none();
            }
        }
        Some(end + 1)
    }

    fn into_event(self, b: &[u8]) -> Option<Event<'_>> {
        if self.seen & REQUIRED != REQUIRED || self.store_id.0 == self.store_id.1 || self.sku_id.0 == self.sku_id.1 {
            return None;
        }
        let event_type = self.event_type?;
        let quantity_delta = self.quantity_delta?;
        let sign_ok = match event_type.required_sign() {
            1 => quantity_delta > 0,
            -1 => quantity_delta < 0,
            _ => quantity_delta != 0,
        };
        let unit_price = match self.unit_price {
            // Every byte of a string the fast path read is ASCII.
            Some((start, end)) => Some(price(&b[start..end])?),
            None => None,
        };
        if !sign_ok || (event_type.moves_money() && (unit_price.is_none() || self.currency.is_none())) {
            return None;
        }
        Some(Event {
            event_id: self.event_id?,
            event_type,
            event_time: self.event_time?,
            store_id: Cow::Borrowed(ascii(&b[self.store_id.0..self.store_id.1])),
            sku_id: Cow::Borrowed(ascii(&b[self.sku_id.0..self.sku_id.1])),
            quantity_delta,
            unit_price,
            currency: self.currency,
            channel: self.channel,
            unknown_channel: self.unknown_channel,
            terminal_id: self.terminal_id.map(|(start, end)| Cow::Borrowed(ascii(&b[start..end]))),
            sequence: self.sequence,
        })
    }
}

/// Text the fast path read: every byte of it was checked to be ASCII by [`ascii_string_at`].
#[inline(always)]
fn ascii(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: `ascii_string_at` returns only ranges whose every byte `find_special` passed over as
    // not special, and every byte at or above 0x80 is special; ASCII is valid UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

fn event_type(text: &[u8]) -> Option<EventType> {
    Some(match text {
        b"SALE" => EventType::Sale,
        b"RETURN" => EventType::Return,
        b"RESTOCK" => EventType::Restock,
        b"ADJUSTMENT" => EventType::Adjustment,
        b"TRANSFER_OUT" => EventType::TransferOut,
        b"TRANSFER_IN" => EventType::TransferIn,
        b"RESERVATION" => EventType::Reservation,
        b"RESERVATION_RELEASE" => EventType::ReservationRelease,
        _ => return None,
    })
}

fn currency(text: &[u8]) -> Option<Currency> {
    Currency::parse(ascii(text))
}

/// A UUID in its hyphenated form (`8-4-4-4-12` hex digits, either case) as a number.
#[inline(always)]
fn uuid_hyphenated(text: &[u8]) -> Option<u128> {
    let t: &[u8; 36] = text.try_into().ok()?;
    if t[8] != b'-' || t[13] != b'-' || t[18] != b'-' || t[23] != b'-' {
        return None;
    }
    // The 32 digits as four words of eight, hyphens left out.
    let word = |bytes: [u8; 8]| hex8(u64::from_le_bytes(bytes));
    let a = word([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]])?;
    let b = word([t[9], t[10], t[11], t[12], t[14], t[15], t[16], t[17]])?;
    let c = word([t[19], t[20], t[21], t[22], t[24], t[25], t[26], t[27]])?;
    let d = word([t[28], t[29], t[30], t[31], t[32], t[33], t[34], t[35]])?;
    let high = (u64::from(a) << 32) | u64::from(b);
    let low = (u64::from(c) << 32) | u64::from(d);
    Some((u128::from(high) << 64) | u128::from(low))
}

/// A unit price in plain decimal notation (`^[0-9]+(\.[0-9]+)?$`) of at most 18 digits,
/// read as the checked path's `parse_price` reads it.
#[inline(always)]
fn price(text: &[u8]) -> Option<Decimal> {
    let mut mantissa: i64 = 0;
    let mut digits = 0;
    let mut point = None;
    for (at, &c) in text.iter().enumerate() {
        match c {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 18 {
                    return None;
                }
                mantissa = mantissa * 10 + i64::from(c - b'0');
            }
            b'.' if point.is_none() && at > 0 => point = Some(at),
            _ => return None,
        }
    }
    let scale = match point {
        Some(at) if at + 1 == text.len() => return None,
        Some(at) => text.len() - at - 1,
        None => 0,
    };
    (digits >= 1).then(|| Decimal::new(mantissa, scale as u32))
}

/// High bit of each byte set where the (ASCII) byte is at least `low`.
#[inline(always)]
fn at_least(word: u64, low: u8) -> u64 {
    (word + ONES * u64::from(0x80 - low)) & HIGH
}

/// Eight ASCII hex digits (first digit in the lowest byte) as a number, or `None` if any is
/// not a hex digit. Word-at-a-time: every byte is range-checked and converted at once.
#[inline(always)]
fn hex8(word: u64) -> Option<u32> {
    if word & HIGH != 0 {
        return None;
    }
    let lower = word | (ONES * 0x20);
    let digit = at_least(word, b'0') & !at_least(word, b'9' + 1);
    let letter = at_least(lower, b'a') & !at_least(lower, b'f' + 1);
    if digit | letter != HIGH {
        return None;
    }
    // '0'..'9' -> 0..9; 'a'..'f' and 'A'..'F' (bit 6 set) -> 1..6 + 9.
    let nibbles = (word & (ONES * 0x0f)) + ((word >> 6) & ONES) * 9;
    // Pairs of nibbles to bytes (first digit high), then the four bytes together.
    let bytes = ((nibbles & 0x000f_000f_000f_000f) << 4) | ((nibbles >> 8) & 0x000f_000f_000f_000f);
    let packed = (bytes | (bytes >> 8)) & 0x0000_ffff_0000_ffff;
    let packed = (packed | (packed >> 16)) as u32;
    Some(packed.swap_bytes())
}

/// An integer written plainly (`-?[1-9][0-9]{0,17}`, well inside `i64`), and the index after it.
#[inline(always)]
fn small_integer_at(b: &[u8], mut i: usize) -> Option<(i64, usize)> {
    let negative = b.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let first = b.get(i)?.wrapping_sub(b'0');
    if !(1..=9).contains(&first) {
        return None;
    }
    let mut value = i64::from(first);
    let start = i;
    i += 1;
    while let Some(&c) = b.get(i) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            break;
        }
        // Eighteen digits at most, checked before the digit is added: never an overflow.
        if i - start >= 18 {
            return None;
        }
        value = value * 10 + i64::from(d);
        i += 1;
    }
    // A fraction or an exponent makes it no integer: the checked path says so.
    if let Some(b'.' | b'e' | b'E') = b.get(i) {
        return None;
    }
    Some((if negative { -value } else { value }, i))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::mutate::mutated;
    use super::super::parse::parse_checked;
    use super::*;
    use crate::generator::{Traffic, TrafficOptions, brand};

    /// Events of every shape the fast path takes, and some it declines (escapes, a null).
    const EVENTS: &[&str] = &[
        r#"{"event_id":"0b9f1c1e-3a51-4d57-9a53-1c6f0b1d2e3f","event_type":"SALE","event_time":"2026-11-27T10:00:00.120Z","store_id":"EUC-P01","sku_id":"SKU-000123","quantity_delta":-2,"unit_price":"49.95","currency":"EUR","channel":"physical","terminal_id":"T1","schema_version":1}"#,
        r#"{"schema_version":1,"order_id":"USE-O01-77","channel":"online","currency":"USD","unit_price":"120","quantity_delta":1,"sku_id":"SKU-002400","store_id":"USE-O01","event_time":"2026-11-27T05:00:00-05:00","event_type":"RETURN","event_id":"FFFFFFFF-0000-4000-8000-ABCDEFabcdef"}"#,
        r#" { "event_id" : "7d087128-06d6-4f70-9170-98f698a07be1" , "event_type" : "RESERVATION_RELEASE" , "event_time" : "2026-11-27T09:01:52.586Z" , "store_id" : "EUC-O03" , "sku_id" : "SKU-000648" , "quantity_delta" : -1 , "metadata" : {"promo":["BF",1,2.5e3,true,null],"x":{}} } "#,
        r#"{"event_id":"7d087128-06d6-4f70-9170-98f698a07be1","event_type":"ADJUSTMENT","event_time":"2026-11-27T09:01:52Z","store_id":"W1","sku_id":"K","quantity_delta":-12345678901234,"unit_price":null,"note":"a\"b"}"#,
        r#"{"event_id":"7d087128-06d6-4f70-9170-98f698a07be1","event_type":"TRANSFER_IN","event_time":"2026-11-27T09:01:52Z","store_id":"M\u00fcnchen","sku_id":"K","quantity_delta":4}"#,
    ];

    /// The checked path's verdict wherever the fast path gives one.
    fn assert_agrees(bytes: &[u8]) -> Result<(), TestCaseError> {
        if let Some(fast) = parse(bytes) {
            prop_assert_eq!(Ok(fast), parse_checked(bytes), "input {:?}", String::from_utf8_lossy(bytes));
        }
        Ok(())
    }

    #[test]
    fn takes_plain_events_and_declines_the_rest() {
        let taken: Vec<bool> = EVENTS.iter().map(|e| parse(e.as_bytes()).is_some()).collect();
        assert_eq!(taken, [true, true, true, false, false]);
        for event in EVENTS {
            assert_agrees(event.as_bytes()).unwrap();
        }
    }

    #[test]
    fn takes_every_valid_generated_event() {
        let options = TrafficOptions { malformed_share: 0.02, opening_stocktake: true, ..Default::default() };
        let (stores, catalog) = (brand::stores(), brand::catalog());
        let (mut valid, mut invalid) = (0, 0);
        for generated in Traffic::new(options, &stores, &catalog).take(20_000) {
            let bytes = &generated.payload;
            match parse_checked(bytes) {
                Ok(event) => {
                    assert_eq!(parse(bytes), Some(event), "{}", String::from_utf8_lossy(bytes));
                    valid += 1;
                }
                Err(_) => {
                    assert_eq!(parse(bytes), None, "{}", String::from_utf8_lossy(bytes));
                    invalid += 1;
                }
            }
        }
        assert!(valid > 19_000 && invalid > 100, "{valid} valid, {invalid} invalid");
    }

    #[test]
    fn names_follow_the_bits_and_match_only_their_key() {
        for (n, name) in NAMES.iter().enumerate() {
            let mut quoted = [name.words[0].to_le_bytes(), name.words[1].to_le_bytes()].concat();
            quoted.truncate(name.len);
            assert_eq!(field_bit(&quoted[1..name.len - 1]), Some(1 << n));
            let tail = b":1,\"padding_for_sixteen\":1}";
            assert!(name.is_at(&[&quoted[..], tail].concat(), 0));
            let longer = [&quoted[..name.len - 1], b"x\"", tail].concat();
            assert!(!name.is_at(&longer, 0), "a longer key is another member");
            assert!(!name.is_at(&quoted[..name.len - 1], 0), "fewer than 16 bytes left: no prediction");
        }
    }

    #[test]
    fn hex_digits_read_as_uuid_does() {
        let id = "0B9f1c1e-3a51-4d57-9a53-1c6f0b1d2eFF";
        assert_eq!(uuid_hyphenated(id.as_bytes()), Some(0x0b9f1c1e_3a51_4d57_9a53_1c6f0b1d2eff));
        for bad in [
            "0b9f1c1e-3a51-4d57-9a53-1c6f0b1d2e3g",
            "0b9f1c1e-3a51-4d57-9a53+1c6f0b1d2e3f",
            "0b9f1c1e3a514d579a531c6f0b1d2e3f",
            "{0b9f1c1e-3a51-4d57-9a53-1c6f0b1d2e3f}",
            "0b9f1c1e-3a51-4d57-9a53-1c6f0b1d2e3",
        ] {
            assert_eq!(uuid_hyphenated(bad.as_bytes()), None, "{bad}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]
        /// Whenever the fast path reads near-valid input, the checked path reads the same event.
        #[test]
        fn agrees_with_the_checked_path(bytes in mutated(EVENTS)) {
            assert_agrees(&bytes)?;
        }
    }

    proptest! {
        /// Every 36-byte text reads as the uuid crate reads it, or is declined.
        #[test]
        fn uuid_matches_the_uuid_crate(text in "[0-9a-fA-FgG/:@`-]{8}-[0-9a-fA-F@G]{4}-[0-9a-fA-F]{4}-[0-9a-f`]{4}-[0-9a-fA-F\\[]{12}") {
            let expected = uuid::Uuid::try_parse(&text).ok().map(|u| u.as_u128());
            prop_assert_eq!(uuid_hyphenated(text.as_bytes()), expected);
        }

        /// Prices read as the checked path reads them, or are declined.
        #[test]
        fn prices_read_as_the_checked_path_does(text in "[0-9]{0,20}(\\.[0-9]{0,8})?[.x]?") {
            if let Some(fast) = price(text.as_bytes()) {
                prop_assert_eq!(Ok(fast), super::super::parse::parse_price(&text));
            }
            if text.len() <= 12 && !text.ends_with('x') && !text.ends_with('.') && !text.starts_with('.') && !text.is_empty() {
                prop_assert!(price(text.as_bytes()).is_some(), "{}", text);
            }
        }

        /// Plain integers read exactly; anything else is declined.
        #[test]
        fn integers_read_exactly(value in -999_999_999_999_999_999i64..=999_999_999_999_999_999, tail in "[,}.eE ]") {
            let text = format!("{value}{tail}");
            let read = small_integer_at(text.as_bytes(), 0);
            if value == 0 || tail == "." || tail == "e" || tail == "E" {
                prop_assert_eq!(read, None);
            } else {
                prop_assert_eq!(read, Some((value, text.len() - 1)));
            }
        }
    }
}

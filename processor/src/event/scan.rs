//! The fast path of event parsing: one strict pass over a flat JSON object.
//!
//! It accepts exactly what `serde_json` accepts and reads it the same way, or declines
//! (`None`) and leaves the input to `serde_json`, which then parses it or says what is wrong.
//! It declines on anything unusual: escapes, control characters, duplicate known keys, a
//! known key of another type, numbers out of range, nesting deeper than 32, invalid UTF-8. A property test
//! holds the two paths equal.

use std::borrow::Cow;

use super::lex::{string_at, ws};
use super::parse::{Text, WireEvent};

const MAX_DEPTH: u32 = 32;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    EventId,
    EventType,
    EventTime,
    StoreId,
    SkuId,
    QuantityDelta,
    UnitPrice,
    Currency,
    Channel,
    SchemaVersion,
    TerminalId,
    Sequence,
}

#[inline(always)]
fn field(key: &[u8]) -> Option<Field> {
    Some(match key {
        b"event_id" => Field::EventId,
        b"event_type" => Field::EventType,
        b"event_time" => Field::EventTime,
        b"store_id" => Field::StoreId,
        b"sku_id" => Field::SkuId,
        b"quantity_delta" => Field::QuantityDelta,
        b"unit_price" => Field::UnitPrice,
        b"currency" => Field::Currency,
        b"channel" => Field::Channel,
        b"schema_version" => Field::SchemaVersion,
        b"terminal_id" => Field::TerminalId,
        b"sequence" => Field::Sequence,
        _ => return None,
    })
}

/// The end of a JSON number at `i`, strictly by the grammar, and whether it is an integer.
fn number_end(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let digits = |mut i: usize| {
        let from = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > from).then_some(i)
    };
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    i = match *b.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i)?,
        _ => return None,
    };
    let mut integer = true;
    if b.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
        integer = false;
    }
    if let Some(b'e' | b'E') = b.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        i = digits(i)?;
        integer = false;
    }
    Some((i, integer))
}

/// An integer at `i` that fits an `i64`, and the index after it.
#[inline(always)]
fn integer_at(b: &[u8], i: usize) -> Option<(i64, usize)> {
    let (end, integer) = number_end(b, i)?;
    if !integer {
        return None;
    }
    let (negative, digits) = match b[i] {
        b'-' => (true, &b[i + 1..end]),
        _ => (false, &b[i..end]),
    };
    let mut value: i64 = 0;
    for &d in digits {
        let d = i64::from(d - b'0');
        value = value.checked_mul(10)?;
        value = if negative { value.checked_sub(d)? } else { value.checked_add(d)? };
    }
    if negative && value == 0 {
        // serde_json reads `-0` as the float -0.0: decline, so that both paths say the same.
        return None;
    }
    Some((value, end))
}

/// Skips any JSON value at `i`, validating its grammar; the index after it.
pub(super) fn skip_value(b: &[u8], i: usize, depth: u32) -> Option<usize> {
    if depth > MAX_DEPTH {
        return None;
    }
    match *b.get(i)? {
        b'"' => string_at(b, i).map(|(_, end)| end + 1),
        open @ (b'{' | b'[') => {
            let close = if open == b'{' { b'}' } else { b']' };
            let mut i = ws(b, i + 1);
            if *b.get(i)? == close {
                return Some(i + 1);
            }
            loop {
                if open == b'{' {
                    let (_, end) = string_at(b, i)?;
                    i = ws(b, end + 1);
                    if *b.get(i)? != b':' {
                        return None;
                    }
                    i = ws(b, i + 1);
                }
                i = ws(b, skip_value(b, i, depth + 1)?);
                match *b.get(i)? {
                    b',' => i = ws(b, i + 1),
                    c if c == close => return Some(i + 1),
                    _ => return None,
                }
            }
        }
        b't' if b[i..].starts_with(b"true") => Some(i + 4),
        b'f' if b[i..].starts_with(b"false") => Some(i + 5),
        b'n' if b[i..].starts_with(b"null") => Some(i + 4),
        _ => number_end(b, i).map(|(end, _)| end),
    }
}

/// Reads a flat event object in one pass, or declines with `None`.
pub(super) fn scan(bytes: &[u8]) -> Option<WireEvent<'_>> {
    // serde_json refuses invalid UTF-8 in keys and in the strings it reads; declining on any
    // keeps the two paths equal, and makes every slice below a valid `str`.
    let text = std::str::from_utf8(bytes).ok()?;
    let b = bytes;
    let mut wire = WireEvent::default();
    let mut seen: u16 = 0;
    let mut i = ws(b, 0);
    if *b.get(i)? != b'{' {
        return None;
    }
    i = ws(b, i + 1);
    if *b.get(i)? == b'}' {
        i += 1;
    } else {
        loop {
            let (key_start, key_end) = string_at(b, i)?;
            i = ws(b, key_end + 1);
            if *b.get(i)? != b':' {
                return None;
            }
            i = ws(b, i + 1);
            match field(&b[key_start..key_end]) {
                None => i = skip_value(b, i, 1)?,
                Some(f) => {
                    let bit = 1u16 << (f as u16);
                    if seen & bit != 0 {
                        return None; // serde reports the duplicate
                    }
                    seen |= bit;
                    let is_null = b[i..].starts_with(b"null");
                    match f {
                        Field::QuantityDelta | Field::SchemaVersion | Field::Sequence => {
                            let value = if is_null {
                                i += 4;
                                None
                            } else {
                                let (value, end) = integer_at(b, i)?;
                                i = end;
                                Some(value)
                            };
                            if f == Field::QuantityDelta {
                                wire.quantity_delta = value;
                            } else if f == Field::Sequence {
                                wire.sequence = value;
                            } else {
                                wire.schema_version = value.map(u32::try_from).transpose().ok()?;
                            }
                        }
                        _ => {
                            let value = if is_null {
                                i += 4;
                                None
                            } else {
                                let (start, end) = string_at(b, i)?;
                                i = end + 1;
                                // Quotes are ASCII, so both ends are character boundaries.
                                Some(Text(Cow::Borrowed(text.get(start..end)?)))
                            };
                            let slot = match f {
                                Field::EventId => &mut wire.event_id,
                                Field::EventType => &mut wire.event_type,
                                Field::EventTime => &mut wire.event_time,
                                Field::StoreId => &mut wire.store_id,
                                Field::SkuId => &mut wire.sku_id,
                                Field::UnitPrice => &mut wire.unit_price,
                                Field::Currency => &mut wire.currency,
                                Field::TerminalId => &mut wire.terminal_id,
                                _ => &mut wire.channel,
                            };
                            *slot = value;
                        }
                    }
                }
            }
            i = ws(b, i);
            match *b.get(i)? {
                b',' => i = ws(b, i + 1),
                b'}' => {
                    i += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    (ws(b, i) == b.len()).then_some(wire)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const EVENT: &str = r#"{"event_id":"0b9f1c1e-3a51-4d57-9a53-1c6f0b1d2e3f","event_type":"SALE","event_time":"2026-11-27T10:00:00.120Z","store_id":"EUC-P01","sku_id":"SKU-000123","quantity_delta":-2,"unit_price":"49.95","currency":"EUR","channel":"physical","terminal_id":"T1","metadata":{"promo":["BF",1,2.5e3,true,null],"x":{}},"schema_version":1}"#;

    fn serde_path(bytes: &[u8]) -> Option<WireEvent<'_>> {
        serde_json::from_slice(bytes).ok()
    }

    #[test]
    fn reads_a_canonical_event_like_serde() {
        let fast = scan(EVENT.as_bytes()).expect("the fast path takes a canonical event");
        assert_eq!(Some(fast), serde_path(EVENT.as_bytes()));
    }

    #[test]
    fn declines_what_it_does_not_handle() {
        for input in [
            r#"{"store_id":"a\"b"}"#,             // escape
            r#"{"store_id":"a","store_id":"b"}"#, // duplicate known key
            r#"{"quantity_delta":1.0}"#,          // a float where an integer belongs
            r#"{"quantity_delta":99999999999999999999}"#,
            r#"{"quantity_delta":-0}"#, // serde_json's -0.0 (found by the parse_event fuzz target)
            r#"{"event_id":7}"#,        // wrong type
            r#"{"a":01}"#,              // not JSON
            r#"{"a":1,}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":1} x"#,
        ] {
            assert!(scan(input.as_bytes()).is_none(), "{input}");
        }
        assert_eq!(scan(br#" { "a" : [ ] , "store_id" : null } "#), Some(WireEvent::default()));
    }

    #[test]
    fn invalid_utf8_never_makes_the_paths_differ() {
        let bad = [0xff_u8, 0xfe];
        // serde_json checks UTF-8 in keys and in strings it reads, not in values it skips; the
        // fast path checks the whole input and declines, leaving such input to serde_json.
        let cases: [(&str, &[u8], &str, bool); 4] = [
            ("in an unknown value", br#"{"order_id":"O"#, r#"","store_id":"S"}"#, true),
            ("in an unknown key", br#"{"t"#, r#"":1,"store_id":"S"}"#, false),
            ("in a nested key", br#"{"metadata":{"k"#, r#"":1},"store_id":"S"}"#, true),
            ("in a known value", br#"{"store_id":"S"#, r#""}"#, false),
        ];
        for (place, head, tail, serde_accepts) in cases {
            let input = [head, &bad[..], tail.as_bytes()].concat();
            assert_eq!(serde_path(&input).is_some(), serde_accepts, "{place}");
            assert_eq!(scan(&input), None, "{place}: the fast path declines");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Whenever the fast path accepts input, serde accepts it and reads the same event.
        #[test]
        fn fast_path_agrees_with_serde(bytes in super::super::mutate::mutated(&[EVENT])) {
            if let Some(fast) = scan(&bytes) {
                prop_assert_eq!(Some(fast), serde_path(&bytes), "input {:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}

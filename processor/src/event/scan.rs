//! The fast path of event parsing: one strict pass over a flat JSON object.
//!
//! It accepts exactly what `serde_json` accepts and reads it the same way, or declines
//! (`None`) and leaves the input to `serde_json`, which then parses it or says what is wrong.
//! It declines on anything unusual: escapes, control characters, duplicate known keys, a
//! known key of another type, numbers out of range, nesting deeper than 32, invalid UTF-8. A property test
//! holds the two paths equal.

use std::borrow::Cow;

use super::parse::{Text, WireEvent};

const MAX_DEPTH: u32 = 32;

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    at: usize,
}

#[derive(Clone, Copy)]
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
}

#[inline(always)]
fn field(key: &str) -> Option<Field> {
    Some(match key {
        "event_id" => Field::EventId,
        "event_type" => Field::EventType,
        "event_time" => Field::EventTime,
        "store_id" => Field::StoreId,
        "sku_id" => Field::SkuId,
        "quantity_delta" => Field::QuantityDelta,
        "unit_price" => Field::UnitPrice,
        "currency" => Field::Currency,
        "channel" => Field::Channel,
        "schema_version" => Field::SchemaVersion,
        _ => return None,
    })
}

impl<'a> Scanner<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> Option<()> {
        self.skip_ws();
        (self.peek()? == byte).then(|| self.at += 1)
    }

    /// A string without escapes or control characters (the quotes excluded).
    #[inline(always)]
    fn raw_string(&mut self) -> Option<&'a str> {
        self.skip_ws();
        if self.peek()? != b'"' {
            return None;
        }
        let start = self.at + 1;
        let i = start + find_string_end(self.bytes.get(start..)?)?;
        if self.bytes[i] != b'"' {
            return None;
        }
        self.at = i + 1;
        // Quotes are ASCII, so both ends are character boundaries.
        self.text.get(start..i)
    }

    #[inline(always)]
    fn text(&mut self) -> Option<Text<'a>> {
        self.raw_string().map(|s| Text(Cow::Borrowed(s)))
    }

    /// `null` (-> None) or a string.
    #[inline(always)]
    fn optional_text(&mut self) -> Option<Option<Text<'a>>> {
        self.skip_ws();
        if self.bytes[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some(None);
        }
        self.text().map(Some)
    }

    /// The extent of a JSON number at the cursor, strictly by the grammar; whether it is an
    /// integer (no fraction, no exponent).
    fn number(&mut self) -> Option<(&'a str, bool)> {
        self.skip_ws();
        let start = self.at;
        let digits = |s: &mut Self| {
            let from = s.at;
            while s.peek().is_some_and(|b| b.is_ascii_digit()) {
                s.at += 1;
            }
            s.at > from
        };
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek()? {
            b'0' => self.at += 1,
            b'1'..=b'9' => {
                digits(self);
            }
            _ => return None,
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            self.at += 1;
            if !digits(self) {
                return None;
            }
            integer = false;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            if !digits(self) {
                return None;
            }
            integer = false;
        }
        Some((self.text.get(start..self.at)?, integer))
    }

    /// `null` (-> None) or an integer that fits `T`.
    fn optional_integer<T: std::str::FromStr>(&mut self) -> Option<Option<T>> {
        self.skip_ws();
        if self.bytes[self.at..].starts_with(b"null") {
            self.at += 4;
            return Some(None);
        }
        let (raw, integer) = self.number()?;
        if !integer {
            return None;
        }
        raw.parse().ok().map(Some)
    }

    /// Skips any JSON value, validating its grammar.
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.skip_ws();
        match self.peek()? {
            b'"' => self.raw_string().map(|_| ()),
            b'{' => {
                self.at += 1;
                if self.eat(b'}').is_some() {
                    return Some(());
                }
                loop {
                    self.raw_string()?;
                    self.eat(b':')?;
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b'}' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.at += 1;
                if self.eat(b']').is_some() {
                    return Some(());
                }
                loop {
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.peek()? {
                        b',' => self.at += 1,
                        b']' => {
                            self.at += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b't' | b'f' | b'n' => {
                let rest = &self.bytes[self.at..];
                let word: &[u8] = if rest.starts_with(b"true") {
                    b"true"
                } else if rest.starts_with(b"false") {
                    b"false"
                } else if rest.starts_with(b"null") {
                    b"null"
                } else {
                    return None;
                };
                self.at += word.len();
                Some(())
            }
            _ => self.number().map(|_| ()),
        }
    }
}

/// The index of the first `"`, `\\` or control character, eight bytes at a time (SWAR: the
/// classic "has zero byte" and "has byte less than" tricks; the lowest flagged byte is exact).
#[inline(always)]
fn find_string_end(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in chunks.by_ref() {
        let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).ok()?);
        let quote = word ^ (ONES * u64::from(b'"'));
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let flags = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (word.wrapping_sub(ONES * 0x20) & !word);
        let flags = flags & HIGH;
        if flags != 0 {
            return Some(offset + (flags.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    chunks.remainder().iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).map(|p| offset + p)
}

/// Reads a flat event object in one pass, or declines with `None`.
pub(super) fn scan(bytes: &[u8]) -> Option<WireEvent<'_>> {
    // serde_json refuses invalid UTF-8 in keys and in the strings it reads; declining on any
    // keeps the two paths equal, and makes every slice below a valid `str`.
    let text = std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner { text, bytes, at: 0 };
    let mut wire = WireEvent::default();
    let mut seen: u16 = 0;
    s.eat(b'{')?;
    if s.eat(b'}').is_none() {
        loop {
            let key = s.raw_string()?;
            s.eat(b':')?;
            match field(key) {
                None => s.skip_value(1)?,
                Some(f) => {
                    let bit = 1u16 << (f as u16);
                    if seen & bit != 0 {
                        return None; // serde reports the duplicate
                    }
                    seen |= bit;
                    match f {
                        Field::EventId => wire.event_id = s.optional_text()?,
                        Field::EventType => wire.event_type = s.optional_text()?,
                        Field::EventTime => wire.event_time = s.optional_text()?,
                        Field::StoreId => wire.store_id = s.optional_text()?,
                        Field::SkuId => wire.sku_id = s.optional_text()?,
                        Field::UnitPrice => wire.unit_price = s.optional_text()?,
                        Field::Currency => wire.currency = s.optional_text()?,
                        Field::Channel => wire.channel = s.optional_text()?,
                        Field::QuantityDelta => wire.quantity_delta = s.optional_integer()?,
                        Field::SchemaVersion => wire.schema_version = s.optional_integer()?,
                    }
                }
            }
            s.skip_ws();
            match s.peek()? {
                b',' => s.at += 1,
                b'}' => {
                    s.at += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    s.skip_ws();
    (s.at == bytes.len()).then_some(wire)
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
            r#"{"event_id":7}"#, // wrong type
            r#"{"a":01}"#,       // not JSON
            r#"{"a":1,}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":1} x"#,
        ] {
            assert!(scan(input.as_bytes()).is_none(), "{input}");
        }
        assert_eq!(scan(br#" { "a" : [ ] , "store_id" : null } "#), Some(WireEvent::default()));
    }

    proptest! {
        /// The word-at-a-time search finds what a byte-at-a-time search finds.
        #[test]
        fn string_end_matches_a_plain_search(bytes in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff], 0..40)) {
            let plain = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            prop_assert_eq!(find_string_end(&bytes), plain);
        }
    }

    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        let base = EVENT.as_bytes().to_vec();
        let len = base.len();
        proptest::collection::vec((0..len, 0..4u8, any::<u8>()), 0..4).prop_map(move |edits| {
            let mut bytes = base.clone();
            for (pos, op, byte) in edits {
                let pos = pos.min(bytes.len());
                let interesting = b" \"\\,:{}[]-.0e1nul\t";
                let b = if byte % 2 == 0 { interesting[byte as usize % interesting.len()] } else { byte };
                match op {
                    0 => bytes.insert(pos, b),
                    1 if pos < bytes.len() => {
                        bytes.remove(pos);
                    }
                    2 if pos < bytes.len() => bytes[pos] = b,
                    _ => bytes.truncate(pos),
                }
            }
            bytes
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Whenever the fast path accepts input, serde accepts it and reads the same event.
        #[test]
        fn fast_path_agrees_with_serde(bytes in mutated()) {
            if let Some(fast) = scan(&bytes) {
                prop_assert_eq!(Some(fast), serde_path(&bytes), "input {:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}

//! The lexing both event readers share: whitespace, and the search for the byte that ends a
//! plain JSON string, 16 bytes at a time (SSE2 on x86-64, an exact eight-bytes-at-a-time
//! search elsewhere).

pub(super) const ONES: u64 = 0x0101_0101_0101_0101;
pub(super) const HIGH: u64 = 0x8080_8080_8080_8080;

/// The index of the first non-whitespace byte at or after `i`; producers mostly write none.
#[inline(always)]
pub(super) fn ws(b: &[u8], i: usize) -> usize {
    match b.get(i) {
        Some(&c) if c > b' ' => i,
        _ => skip_ws(b, i),
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

/// A string whose opening quote is at `i`, printable ASCII without escapes: the (start, end)
/// of its contents, `end` at the closing quote.
#[inline(always)]
pub(super) fn ascii_string_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let end = find_special(b, i + 1)?;
    (b[end] == b'"').then_some((i + 1, end))
}

/// Whether a byte ends a plain ASCII string: a quote, a backslash, a control character or
/// a byte outside ASCII.
#[inline(always)]
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c)
}

/// The special bytes of 16 as a bit mask (bit n for byte n).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn special_mask(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8,
    };
    // SAFETY: SSE2 is enabled for this build (the cfg above; it is part of x86-64 itself),
    // and the load reads exactly the 16 bytes of `chunk`, with no alignment required.
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Signed bytes: below 0x20 is a control character or (negative) a byte outside ASCII.
        let other = _mm_cmplt_epi8(v, _mm_set1_epi8(0x20));
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), other)) as u32
    }
}

/// The index of the first special byte at or after `from`, 16 bytes at a time.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline(always)]
fn find_special(b: &[u8], mut i: usize) -> Option<usize> {
    let mask = special_mask;
    while let Some(chunk) = b.get(i..i + 16) {
        let found = mask(chunk.try_into().ok()?);
        if found != 0 {
            return Some(i + found.trailing_zeros() as usize);
        }
        i += 16;
    }
    // Fewer than 16 bytes left: look at the last 16 of the input, ignoring those before `i`.
    if b.len() >= 16 && i < b.len() {
        let last = b.len() - 16;
        let found = mask(b[last..].try_into().ok()?) >> (i - last);
        return (found != 0).then(|| i + found.trailing_zeros() as usize);
    }
    b.get(i..)?.iter().position(|&c| is_special(c)).map(|p| i + p)
}

/// The index of the first special byte at or after `from`.
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline(always)]
fn find_special(b: &[u8], i: usize) -> Option<usize> {
    find_special_by_words(b, i)
}

/// The index of the first special byte at or after `from`, eight bytes at a time (exact per
/// byte: no borrow crosses from one byte into the next).
#[cfg(any(test, not(all(target_arch = "x86_64", target_feature = "sse2"))))]
#[inline(always)]
fn find_special_by_words(b: &[u8], mut i: usize) -> Option<usize> {
    while let Some(chunk) = b.get(i..i + 8) {
        let word = u64::from_le_bytes(chunk.try_into().ok()?);
        let low7 = word & !HIGH;
        // Zero after the xor means equal; bytes outside ASCII are flagged on their own.
        let eq = |c: u8| {
            let x = low7 ^ (ONES * u64::from(c));
            !(((x & !HIGH) + !HIGH) | x) & HIGH
        };
        let below_space = !((low7 + ONES * (0x80 - 0x20)) & HIGH) & HIGH;
        let found = eq(b'"') | eq(b'\\') | below_space | (word & HIGH);
        if found != 0 {
            return Some(i + (found.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?.iter().position(|&c| is_special(c)).map(|p| i + p)
}

/// A string whose opening quote is at `i`, without escapes or control characters (text
/// outside ASCII passes: the caller checks UTF-8): the (start, end) of its contents, `end` at
/// the closing quote.
#[inline(always)]
pub(super) fn string_at(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if *b.get(i)? != b'"' {
        return None;
    }
    let mut from = i + 1;
    loop {
        let end = find_special(b, from)?;
        match b[end] {
            b'"' => return Some((i + 1, end)),
            c if c >= 0x80 => from = end + 1,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The 16-byte search finds what a byte-at-a-time search finds, from any start.
        #[test]
        fn special_search_matches_a_plain_search(
            bytes in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, 0x20u8..0x7f, 0x20u8..0x7f], 0..70),
            from in 0usize..72,
        ) {
            let plain = bytes.get(from..).and_then(|rest| rest.iter().position(|&c| is_special(c)).map(|p| from + p));
            prop_assert_eq!(find_special(&bytes, from), plain);
            prop_assert_eq!(find_special_by_words(&bytes, from), plain);
        }

        /// A string ends where a byte-at-a-time search finds its first quote, backslash or
        /// control character, whatever text outside ASCII it holds.
        #[test]
        fn string_ends_as_a_plain_search_finds(bytes in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff], 0..40)) {
            let input = [&b"\""[..], &bytes].concat();
            let plain = bytes.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20);
            let expected = plain.filter(|&p| bytes[p] == b'"').map(|p| (1, p + 1));
            prop_assert_eq!(string_at(&input, 0), expected);
        }
    }
}

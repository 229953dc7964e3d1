//! Test input: valid events with a few bytes inserted, removed, replaced or cut off, to hold
//! the fast parsing paths equal to the checked ones on near-valid input.

use proptest::prelude::*;

/// Bytes that matter to a JSON or event-field reader, chosen half of the time.
const INTERESTING: &[u8] = b" \"\\,:{}[]-.0e1nulT:Z+9aAF\t";

/// One of `bases` with up to three edits.
pub(super) fn mutated(bases: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<prop::sample::Index>(), 0..4u8, any::<u8>()), 0..4);
    (prop::sample::select(bases), edits).prop_map(|(base, edits)| {
        let mut bytes = base.as_bytes().to_vec();
        for (pos, op, byte) in edits {
            let pos = pos.index(bytes.len() + 1);
            let b = if byte % 2 == 0 { INTERESTING[byte as usize % INTERESTING.len()] } else { byte };
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

//! Deduplication by `event_id` over an event-time horizon, with bounded memory.
//!
//! Ids are remembered in time slices (a sixteenth of the horizon each) by event time. A slice
//! is forgotten once it lies wholly more than `horizon` behind the watermark. Memory is
//! bounded twice: by time (ids of events within `horizon` of the watermark, plus the
//! out-of-orderness ahead of it) and by a hard cap, `maxEntries`: past the cap the oldest
//! slice is forgotten early, and that is counted. An event older than the horizon cannot be
//! checked any more; the engine sends it to the late output instead of guessing.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;

use rustc_hash::FxHashMap;

type Id = (u64, u64);

fn split(id: u128) -> Id {
    ((id >> 64) as u64, id as u64)
}

fn join(id: Id) -> u128 {
    (u128::from(id.0) << 64) | u128::from(id.1)
}

/// Ids per changelog chunk: 4,096 ids are a 128 KiB record, well under Kafka's 1 MB limit.
pub const CHUNK_IDS: usize = 4_096;

/// Ids remembered since the last drain, and how many chunks each slice has in the changelog.
#[derive(Debug, Default)]
struct DedupeChanges {
    new_ids: Vec<(i64, Id)>,
    chunks: BTreeMap<i64, u32>,
    gone_chunks: Vec<(i64, u32)>,
}

/// One changelog entry of the dedupe state: chunk `seq` of a slice's ids; `None` = forgotten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeChunk {
    pub slice: i64,
    pub seq: u32,
    pub ids: Option<Vec<u128>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    New,
    Duplicate,
    BeyondHorizon,
}

#[derive(Debug)]
pub struct Dedupe {
    horizon: i64,
    slice: i64,
    max_entries: usize,
    /// Id -> the slice it is listed in. Ids are kept as two words: 24-byte entries instead
    /// of the 32 a 16-byte-aligned `u128` takes.
    seen: FxHashMap<Id, i64>,
    slices: BTreeMap<i64, Vec<Id>>,
    /// Slices dropped before their time because of `max_entries`.
    pub evicted_early: u64,
    changes: Option<Box<DedupeChanges>>,
}

impl Dedupe {
    pub fn new(horizon_ms: i64, max_entries: u64) -> Self {
        Dedupe {
            horizon: horizon_ms,
            slice: (horizon_ms / 16).max(1_000),
            max_entries: usize::try_from(max_entries).unwrap_or(usize::MAX).max(1),
            seen: FxHashMap::default(),
            slices: BTreeMap::new(),
            evicted_early: 0,
            changes: None,
        }
    }

    /// Starts recording remembered and forgotten ids, for [`Dedupe::drain_changes`].
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Box::default);
    }

    /// Hands out the ids remembered since the last call, in chunks per slice, and the chunks
    /// of slices forgotten since.
    pub fn drain_changes(&mut self, mut visit: impl FnMut(DedupeChunk)) {
        let Some(changes) = self.changes.as_mut() else { return };
        // Only ids still listed under their slice: one forgotten meanwhile must stay forgotten.
        let seen = &self.seen;
        changes.new_ids.retain(|(slice, id)| seen.get(id) == Some(slice));
        changes.new_ids.sort_by_key(|(slice, _)| *slice);
        for run in changes.new_ids.chunk_by(|a, b| a.0 == b.0) {
            let slice = run[0].0;
            for chunk in run.chunks(CHUNK_IDS) {
                let seq = changes.chunks.entry(slice).or_insert(0);
                visit(DedupeChunk { slice, seq: *seq, ids: Some(chunk.iter().map(|(_, id)| join(*id)).collect()) });
                *seq += 1;
            }
        }
        changes.new_ids.clear();
        for (slice, seq) in changes.gone_chunks.drain(..) {
            visit(DedupeChunk { slice, seq, ids: None });
        }
    }

    /// Restores one changelog chunk (the last value of its key).
    pub fn restore(&mut self, chunk: DedupeChunk) {
        let Some(ids) = chunk.ids else { return };
        let listed = self.slices.entry(chunk.slice).or_default();
        for id in ids {
            let id = split(id);
            self.seen.insert(id, chunk.slice);
            listed.push(id);
        }
        if let Some(changes) = self.changes.as_mut() {
            let count = changes.chunks.entry(chunk.slice).or_insert(0);
            *count = (*count).max(chunk.seq.saturating_add(1));
        }
    }

    /// Checks an id, remembering it when new. `watermark` is the engine's current one.
    pub fn check(&mut self, id: u128, event_time: i64, watermark: i64) -> Verdict {
        if watermark != i64::MIN && event_time < watermark.saturating_sub(self.horizon) {
            return Verdict::BeyondHorizon;
        }
        let slice = event_time.div_euclid(self.slice);
        let id = split(id);
        match self.seen.entry(id) {
            Entry::Occupied(_) => return Verdict::Duplicate,
            Entry::Vacant(vacant) => {
                vacant.insert(slice);
            }
        }
        if let Some(changes) = self.changes.as_mut() {
            changes.new_ids.push((slice, id));
        }
        match self.slices.last_entry() {
            // Events mostly arrive in time order: the newest slice, without a tree search.
            Some(mut newest) if *newest.key() == slice => newest.get_mut().push(id),
            _ => self.slices.entry(slice).or_default().push(id),
        }
        if self.seen.len() > self.max_entries {
            self.evict_oldest();
            self.evicted_early += 1;
        }
        Verdict::New
    }

    /// Forgets the slices that lie wholly beyond the horizon behind `watermark`.
    pub fn expire(&mut self, watermark: i64) {
        let limit = watermark.saturating_sub(self.horizon);
        while let Some((&first, _)) = self.slices.first_key_value() {
            if (first + 1).saturating_mul(self.slice) > limit {
                break;
            }
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        if let Some((slice, ids)) = self.slices.pop_first() {
            if let Some(changes) = self.changes.as_mut() {
                let written = changes.chunks.remove(&slice).unwrap_or(0);
                changes.gone_chunks.extend((0..written).map(|seq| (slice, seq)));
            }
            for id in ids {
                // One probe: the id goes unless it was listed again under a newer slice.
                if let Entry::Occupied(listed) = self.seen.entry(id)
                    && *listed.get() == slice
                {
                    listed.remove();
                }
            }
        }
    }

    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn second_sighting_is_a_duplicate() {
        let mut d = Dedupe::new(H, 100);
        assert_eq!(d.check(1, 10_000_000, i64::MIN), Verdict::New);
        assert_eq!(d.check(1, 10_000_000, i64::MIN), Verdict::Duplicate);
        assert_eq!(d.check(2, 10_000_000, i64::MIN), Verdict::New);
    }

    #[test]
    fn ids_are_forgotten_beyond_the_horizon_and_older_events_refused() {
        let mut d = Dedupe::new(H, 100);
        d.check(1, 0, i64::MIN);
        d.check(2, H, i64::MIN);
        d.expire(2 * H);
        assert_eq!(d.remembered(), 1, "the id at t=0 is wholly beyond the horizon");
        assert_eq!(d.check(2, H, 2 * H), Verdict::Duplicate);
        assert_eq!(d.check(1, 0, 2 * H), Verdict::BeyondHorizon);
    }

    #[test]
    fn cap_evicts_the_oldest_slice_and_counts_it() {
        let mut d = Dedupe::new(H, 3);
        let slice = H / 16;
        for i in 0..4 {
            d.check(i as u128, i * slice, i64::MIN);
        }
        assert_eq!(d.remembered(), 3);
        assert_eq!(d.evicted_early, 1);
        assert_eq!(d.check(0, 0, i64::MIN), Verdict::New, "the oldest id was forgotten");
    }
}

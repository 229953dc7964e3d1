//! Deduplication by `event_id`, measured against each store's own event time, with bounded
//! memory.
//!
//! Every store has its own clock: the newest event time checked from it. An id is remembered
//! in its store's time slices (a sixteenth of the horizon each, by event time) and forgotten
//! once its slice lies wholly more than `horizon` behind that store's clock. A store that was
//! offline for hours and then uploads its buffer is checked against its own past, not against
//! the other stores' progress: every buffered event is checked, and applied once.
//!
//! An event more than `horizon` older than its store's newest event cannot be checked any
//! more; the engine sends it to the late output instead of guessing.
//!
//! Memory is bounded twice. By time: per store, the ids of its events within `horizon` (plus
//! one slice) of its newest event. A quiet store keeps its last horizon of ids until it sends
//! again, because retries of what it sent just before an outage must still be recognised.
//! By a hard cap, `maxEntries`, over all stores: past it the oldest slice by event time, of
//! whichever store, is forgotten early, and that is counted.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

type Id = (u64, u64);

/// A store as the engine numbers it (its interned id).
pub type Store = u32;

fn split(id: u128) -> Id {
    ((id >> 64) as u64, id as u64)
}

fn join(id: Id) -> u128 {
    (u128::from(id.0) << 64) | u128::from(id.1)
}

/// Ids per changelog chunk: 4,096 ids are a 128 KiB record, well under Kafka's 1 MB limit.
pub const CHUNK_IDS: usize = 4_096;

/// Ids remembered and clocks moved since the last drain, and how many chunks each slice has
/// in the changelog.
#[derive(Debug, Default)]
struct DedupeChanges {
    new_ids: Vec<(Store, i64, Id)>,
    chunks: BTreeMap<(Store, i64), u32>,
    gone_chunks: Vec<(Store, i64, u32)>,
    clocks: BTreeSet<Store>,
}

/// One changelog entry of the dedupe state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeEntry {
    /// Chunk `seq` of the ids of a store's slice; `None` = forgotten.
    Chunk { store: Store, slice: i64, seq: u32, ids: Option<Vec<u128>> },
    /// A store's clock: the newest event time checked from it.
    Clock { store: Store, newest: i64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    New,
    Duplicate,
    /// Older than the horizon behind `newest`, the store's clock.
    BeyondHorizon {
        newest: i64,
    },
}

/// One store's clock and the ids it remembers, by slice.
#[derive(Debug)]
struct StoreIds {
    newest: i64,
    slices: BTreeMap<i64, Vec<Id>>,
}

impl Default for StoreIds {
    fn default() -> Self {
        StoreIds { newest: i64::MIN, slices: BTreeMap::new() }
    }
}

#[derive(Debug)]
pub struct Dedupe {
    horizon: i64,
    slice: i64,
    max_entries: usize,
    /// Id -> the slice it is listed in. Ids are kept as two words: 24-byte entries instead
    /// of the 32 a 16-byte-aligned `u128` takes.
    seen: FxHashMap<Id, i64>,
    stores: FxHashMap<Store, StoreIds>,
    /// Every (slice, store) that lists ids, oldest first: what the cap forgets first.
    listed: BTreeSet<(i64, Store)>,
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
            stores: FxHashMap::default(),
            listed: BTreeSet::new(),
            evicted_early: 0,
            changes: None,
        }
    }

    /// Starts recording remembered and forgotten ids and moved clocks, for
    /// [`Dedupe::drain_changes`].
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Box::default);
    }

    /// Hands out the ids remembered since the last call, in chunks per store and slice, the
    /// chunks of slices forgotten since, and the clocks that moved.
    pub fn drain_changes(&mut self, mut visit: impl FnMut(DedupeEntry)) {
        let Some(changes) = self.changes.as_mut() else { return };
        // Only ids still listed under their slice: one forgotten meanwhile must stay forgotten.
        let seen = &self.seen;
        changes.new_ids.retain(|(_, slice, id)| seen.get(id) == Some(slice));
        changes.new_ids.sort_by_key(|(store, slice, _)| (*store, *slice));
        for run in changes.new_ids.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
            let (store, slice) = (run[0].0, run[0].1);
            for chunk in run.chunks(CHUNK_IDS) {
                let seq = changes.chunks.entry((store, slice)).or_insert(0);
                let ids = Some(chunk.iter().map(|(_, _, id)| join(*id)).collect());
                visit(DedupeEntry::Chunk { store, slice, seq: *seq, ids });
                *seq += 1;
            }
        }
        changes.new_ids.clear();
        for (store, slice, seq) in changes.gone_chunks.drain(..) {
            visit(DedupeEntry::Chunk { store, slice, seq, ids: None });
        }
        for store in std::mem::take(&mut changes.clocks) {
            if let Some(ids) = self.stores.get(&store) {
                visit(DedupeEntry::Clock { store, newest: ids.newest });
            }
        }
    }

    /// Restores one changelog entry (the last value of its key).
    pub fn restore(&mut self, entry: DedupeEntry) {
        match entry {
            DedupeEntry::Clock { store, newest } => {
                let ids = self.stores.entry(store).or_default();
                ids.newest = ids.newest.max(newest);
            }
            DedupeEntry::Chunk { ids: None, .. } => {}
            DedupeEntry::Chunk { store, slice, seq, ids: Some(ids) } => {
                let list = self.stores.entry(store).or_default().slices.entry(slice).or_default();
                for id in ids {
                    let id = split(id);
                    if let Entry::Vacant(vacant) = self.seen.entry(id) {
                        vacant.insert(slice);
                        list.push(id);
                    }
                }
                self.listed.insert((slice, store));
                if let Some(changes) = self.changes.as_mut() {
                    let count = changes.chunks.entry((store, slice)).or_insert(0);
                    *count = (*count).max(seq.saturating_add(1));
                }
            }
        }
    }

    /// Checks an id of an event of `store`, remembering it when new.
    pub fn check(&mut self, id: u128, store: Store, event_time: i64) -> Verdict {
        let ids = self.stores.entry(store).or_default();
        if event_time < ids.newest.saturating_sub(self.horizon) {
            return Verdict::BeyondHorizon { newest: ids.newest };
        }
        let slice = event_time.div_euclid(self.slice);
        let id = split(id);
        match self.seen.entry(id) {
            Entry::Occupied(_) => return Verdict::Duplicate,
            Entry::Vacant(vacant) => {
                vacant.insert(slice);
            }
        }
        match ids.slices.last_entry() {
            // A store's events mostly arrive in time order: its newest slice, without a search.
            Some(mut newest) if *newest.key() == slice => newest.get_mut().push(id),
            _ => {
                ids.slices.entry(slice).or_default().push(id);
                self.listed.insert((slice, store));
            }
        }
        if let Some(changes) = self.changes.as_mut() {
            changes.new_ids.push((store, slice, id));
        }
        if event_time > ids.newest {
            ids.newest = event_time;
            if let Some(changes) = self.changes.as_mut() {
                changes.clocks.insert(store);
            }
            self.expire(store);
        }
        while self.seen.len() > self.max_entries {
            let Some((slice, store)) = self.listed.first().copied() else { break };
            self.forget(store, slice);
            self.evicted_early += 1;
        }
        Verdict::New
    }

    /// Forgets the slices of `store` that lie wholly beyond the horizon behind its clock.
    fn expire(&mut self, store: Store) {
        let Some(ids) = self.stores.get(&store) else { return };
        let limit = ids.newest.saturating_sub(self.horizon);
        let expired: Vec<i64> = ids
            .slices
            .keys()
            .take_while(|first| (**first).saturating_add(1).saturating_mul(self.slice) <= limit)
            .copied()
            .collect();
        for slice in expired {
            self.forget(store, slice);
        }
    }

    fn forget(&mut self, store: Store, slice: i64) {
        self.listed.remove(&(slice, store));
        let Some(ids) = self.stores.get_mut(&store).and_then(|ids| ids.slices.remove(&slice)) else { return };
        if let Some(changes) = self.changes.as_mut() {
            let written = changes.chunks.remove(&(store, slice)).unwrap_or(0);
            changes.gone_chunks.extend((0..written).map(|seq| (store, slice, seq)));
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

    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const SLICE: i64 = H / 16;

    #[test]
    fn second_sighting_is_a_duplicate() {
        let mut d = Dedupe::new(H, 100);
        assert_eq!(d.check(1, 0, 10_000_000), Verdict::New);
        assert_eq!(d.check(1, 0, 10_000_000), Verdict::Duplicate);
        assert_eq!(d.check(2, 0, 10_000_000), Verdict::New);
        assert_eq!(d.check(2, 7, 10_000_000), Verdict::Duplicate, "an id is one event, whatever the store");
    }

    #[test]
    fn ids_are_forgotten_beyond_the_horizon_of_their_own_store() {
        let mut d = Dedupe::new(H, 100);
        d.check(1, 0, 0);
        d.check(2, 0, H);
        d.check(3, 1, 0);
        assert_eq!(d.remembered(), 3);
        d.check(4, 0, 2 * H);
        assert_eq!(d.remembered(), 3, "store 0's id at t=0 is wholly beyond its horizon");
        assert_eq!(d.check(2, 0, H), Verdict::Duplicate);
        assert_eq!(d.check(1, 0, 0), Verdict::BeyondHorizon { newest: 2 * H });
        assert_eq!(d.check(3, 1, 0), Verdict::Duplicate, "store 1 has not moved on: its id is kept");
    }

    #[test]
    fn a_store_back_from_hours_offline_is_checked_against_its_own_past() {
        let mut d = Dedupe::new(H, 1_000);
        d.check(1, 1, 0);
        for i in 0..60 {
            assert_eq!(d.check(100 + i, 0, i as i64 * 6 * 60_000), Verdict::New, "store 0 runs 6 h ahead");
        }
        assert_eq!(d.check(1, 1, 0), Verdict::Duplicate, "a retry of what store 1 sent before it went offline");
        for i in 0..60 {
            assert_eq!(d.check(1_000 + i, 1, i as i64 * 6 * 60_000), Verdict::New, "store 1's buffered upload");
        }
        assert!(d.remembered() <= 2 * (16 + 1) * 10, "one horizon and a slice per store: {}", d.remembered());
    }

    #[test]
    fn cap_evicts_the_oldest_slice_of_any_store_and_counts_it() {
        let mut d = Dedupe::new(H, 3);
        d.check(0, 1, 0);
        for i in 1..4 {
            d.check(i as u128, 0, i * SLICE);
        }
        assert_eq!(d.remembered(), 3);
        assert_eq!(d.evicted_early, 1);
        assert_eq!(d.check(0, 1, 0), Verdict::New, "store 1's id, the oldest, was forgotten");
    }

    #[test]
    fn changes_restore_the_same_verdicts() {
        let mut d = Dedupe::new(H, 100);
        d.track_changes();
        for i in 0..40 {
            d.check(i, (i % 3) as Store, i as i64 * SLICE / 2);
        }
        let (mut chunks, mut clocks) = (BTreeMap::new(), Vec::new());
        d.drain_changes(|entry| match entry {
            DedupeEntry::Chunk { store, slice, seq, ids } => {
                chunks.insert((store, slice, seq), ids);
            }
            clock => clocks.push(clock),
        });
        assert_eq!(clocks.len(), 3, "one clock per store");
        let mut restored = Dedupe::new(H, 100);
        for entry in clocks {
            restored.restore(entry);
        }
        for ((store, slice, seq), ids) in chunks {
            restored.restore(DedupeEntry::Chunk { store, slice, seq, ids });
        }
        assert_eq!(restored.remembered(), d.remembered());
        for i in 0..40 {
            let t = i as i64 * SLICE / 2;
            assert_eq!(restored.check(i, (i % 3) as Store, t), d.check(i, (i % 3) as Store, t), "id {i}");
        }
    }
}

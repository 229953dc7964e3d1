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
//! Events that carry a `terminal_id` and a `sequence` are checked by those instead, the way
//! Kafka's idempotent producer tracks sequence numbers per producer: each terminal of a store
//! keeps the ranges of sequence numbers it has seen (`[1, 5120]` after 5,120 events in order),
//! so a terminal that was offline for hours, or days, uploads its buffer, retries included, and
//! every event is applied once, in memory that does not grow with the events' count. A
//! terminal's ranges are kept for [`SEQUENCE_HORIZON`] of its store's event time after its last
//! event; an event further behind its store's clock than that goes to the late output as above.
//! A terminal whose sequence numbers come so scattered that they make more than [`MAX_RANGES`]
//! ranges forgets its lowest range (counted as evicted early): a number below what it
//! remembers can no longer be checked, and goes to the late output.
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

/// How long a terminal's sequence ranges are kept after its last event (its store's event
/// time): an upload up to a week late is checked and applied once.
pub const SEQUENCE_HORIZON: i64 = 7 * 24 * 3_600_000;

/// Ranges of sequence numbers one terminal keeps at most (16 bytes each): 2,048 ranges are a
/// 32 KiB changelog record.
pub const MAX_RANGES: usize = 2_048;

/// The sequence numbers a terminal has sent: disjoint, sorted, inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalSequences {
    /// Numbers below it were forgotten (its ranges grew past [`MAX_RANGES`]).
    pub floor: i64,
    /// The newest event time seen from the terminal.
    pub newest: i64,
    pub ranges: Vec<(i64, i64)>,
}

impl TerminalSequences {
    fn new() -> Self {
        TerminalSequences { floor: i64::MIN, newest: i64::MIN, ranges: Vec::new() }
    }

    /// Records `sequence`: `Some(true)` when it is new, `Some(false)` when it was seen,
    /// `None` when it lies below what the terminal remembers.
    fn insert(&mut self, sequence: i64) -> Option<bool> {
        if sequence < self.floor {
            return None;
        }
        let ranges = &mut self.ranges;
        let next = ranges.partition_point(|range| range.0 <= sequence);
        if next > 0 && ranges[next - 1].1 >= sequence {
            return Some(false);
        }
        let joins_previous = next > 0 && ranges[next - 1].1.checked_add(1) == Some(sequence);
        let joins_next = next < ranges.len() && sequence.checked_add(1) == Some(ranges[next].0);
        match (joins_previous, joins_next) {
            (true, true) => {
                ranges[next - 1].1 = ranges[next].1;
                ranges.remove(next);
            }
            (true, false) => ranges[next - 1].1 = sequence,
            (false, true) => ranges[next].0 = sequence,
            (false, false) => ranges.insert(next, (sequence, sequence)),
        }
        Some(true)
    }

    /// Forgets the lowest ranges past [`MAX_RANGES`]; how many.
    fn bound(&mut self) -> u64 {
        let over = self.ranges.len().saturating_sub(MAX_RANGES);
        if over > 0 {
            let forgotten: Vec<(i64, i64)> = self.ranges.drain(..over).collect();
            if let Some(&(_, end)) = forgotten.last() {
                self.floor = end.saturating_add(1);
            }
        }
        over as u64
    }
}

/// Ids remembered and clocks moved since the last drain, and how many chunks each slice has
/// in the changelog.
#[derive(Debug, Default)]
struct DedupeChanges {
    new_ids: Vec<(Store, i64, Id)>,
    chunks: BTreeMap<(Store, i64), u32>,
    gone_chunks: Vec<(Store, i64, u32)>,
    clocks: BTreeSet<Store>,
    /// Terminals whose sequence numbers changed, by store.
    terminals: BTreeMap<Store, BTreeSet<Box<str>>>,
}

/// One changelog entry of the dedupe state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupeEntry {
    /// Chunk `seq` of the ids of a store's slice; `None` = forgotten.
    Chunk { store: Store, slice: i64, seq: u32, ids: Option<Vec<u128>> },
    /// A store's clock: the newest event time checked from it.
    Clock { store: Store, newest: i64 },
    /// The sequence numbers a terminal of a store has sent; `None` = forgotten.
    Terminal { store: Store, terminal: Box<str>, sequences: Option<TerminalSequences> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    New,
    Duplicate,
    /// Older than the horizon behind `newest`, the store's clock (or a sequence number below
    /// what its terminal remembers).
    BeyondHorizon {
        newest: i64,
    },
}

/// What identifies an event besides its id: its terminal and its number in the terminal's
/// sequence, when it carries both.
pub type TerminalSequence<'a> = Option<(&'a str, i64)>;

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
    /// The sequence numbers of each terminal, by store.
    terminals: FxHashMap<Store, FxHashMap<Box<str>, TerminalSequences>>,
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
            terminals: FxHashMap::default(),
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
        for (store, terminals) in std::mem::take(&mut changes.terminals) {
            for terminal in terminals {
                let sequences = self.terminals.get(&store).and_then(|t| t.get(&terminal)).cloned();
                visit(DedupeEntry::Terminal { store, terminal, sequences });
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
            DedupeEntry::Chunk { ids: None, .. } | DedupeEntry::Terminal { sequences: None, .. } => {}
            DedupeEntry::Terminal { store, terminal, sequences: Some(sequences) } => {
                self.terminals.entry(store).or_default().insert(terminal, sequences);
            }
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

    /// Checks an event of `store`, remembering it when new: by its terminal's sequence number
    /// when it carries one, else by its id.
    pub fn check(&mut self, id: u128, store: Store, event_time: i64, terminal: TerminalSequence<'_>) -> Verdict {
        if let Some((terminal, sequence)) = terminal.filter(|(terminal, _)| !terminal.is_empty()) {
            return self.check_sequence(store, event_time, terminal, sequence);
        }
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
        self.advance_clock(store, event_time);
        while self.seen.len() > self.max_entries {
            let Some((slice, store)) = self.listed.first().copied() else { break };
            self.forget(store, slice);
            self.evicted_early += 1;
        }
        Verdict::New
    }

    fn check_sequence(&mut self, store: Store, event_time: i64, terminal: &str, sequence: i64) -> Verdict {
        let newest = self.stores.entry(store).or_default().newest;
        if event_time < newest.saturating_sub(SEQUENCE_HORIZON) {
            return Verdict::BeyondHorizon { newest };
        }
        let terminals = self.terminals.entry(store).or_default();
        let sequences = match terminals.get_mut(terminal) {
            Some(sequences) => sequences,
            None => terminals.entry(Box::from(terminal)).or_insert_with(TerminalSequences::new),
        };
        match sequences.insert(sequence) {
            Some(true) => {}
            Some(false) => return Verdict::Duplicate,
            None => return Verdict::BeyondHorizon { newest },
        }
        sequences.newest = sequences.newest.max(event_time);
        self.evicted_early += sequences.bound();
        if let Some(changes) = self.changes.as_mut() {
            // Looked up before it is copied: no allocation per event of a known terminal.
            let changed = changes.terminals.entry(store).or_default();
            if !changed.contains(terminal) {
                changed.insert(Box::from(terminal));
            }
        }
        self.advance_clock(store, event_time);
        Verdict::New
    }

    /// Moves the store's clock to `event_time` if it is newer, and forgets what falls behind.
    fn advance_clock(&mut self, store: Store, event_time: i64) {
        let Some(ids) = self.stores.get_mut(&store) else { return };
        if event_time <= ids.newest {
            return;
        }
        let moved_slice = event_time.div_euclid(self.slice) != ids.newest.div_euclid(self.slice);
        ids.newest = event_time;
        if let Some(changes) = self.changes.as_mut() {
            changes.clocks.insert(store);
        }
        self.expire(store);
        if moved_slice {
            self.expire_terminals(store, event_time);
        }
    }

    /// Forgets the terminals of `store` silent for [`SEQUENCE_HORIZON`] before `clock`.
    fn expire_terminals(&mut self, store: Store, clock: i64) {
        let Some(terminals) = self.terminals.get_mut(&store) else { return };
        let limit = clock.saturating_sub(SEQUENCE_HORIZON);
        let changes = &mut self.changes;
        terminals.retain(|terminal, sequences| {
            let keep = sequences.newest >= limit;
            if !keep && let Some(changes) = changes.as_mut() {
                changes.terminals.entry(store).or_default().insert(terminal.clone());
            }
            keep
        });
    }

    /// Terminals whose sequence numbers are kept, and their ranges.
    pub fn terminal_ranges(&self) -> (usize, usize) {
        let terminals = self.terminals.values().map(FxHashMap::len).sum();
        let ranges = self.terminals.values().flat_map(FxHashMap::values).map(|s| s.ranges.len()).sum();
        (terminals, ranges)
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
        assert_eq!(d.check(1, 0, 10_000_000, None), Verdict::New);
        assert_eq!(d.check(1, 0, 10_000_000, None), Verdict::Duplicate);
        assert_eq!(d.check(2, 0, 10_000_000, None), Verdict::New);
        assert_eq!(d.check(2, 7, 10_000_000, None), Verdict::Duplicate, "an id is one event, whatever the store");
    }

    #[test]
    fn ids_are_forgotten_beyond_the_horizon_of_their_own_store() {
        let mut d = Dedupe::new(H, 100);
        d.check(1, 0, 0, None);
        d.check(2, 0, H, None);
        d.check(3, 1, 0, None);
        assert_eq!(d.remembered(), 3);
        d.check(4, 0, 2 * H, None);
        assert_eq!(d.remembered(), 3, "store 0's id at t=0 is wholly beyond its horizon");
        assert_eq!(d.check(2, 0, H, None), Verdict::Duplicate);
        assert_eq!(d.check(1, 0, 0, None), Verdict::BeyondHorizon { newest: 2 * H });
        assert_eq!(d.check(3, 1, 0, None), Verdict::Duplicate, "store 1 has not moved on: its id is kept");
    }

    #[test]
    fn a_store_back_from_hours_offline_is_checked_against_its_own_past() {
        let mut d = Dedupe::new(H, 1_000);
        d.check(1, 1, 0, None);
        for i in 0..60 {
            assert_eq!(d.check(100 + i, 0, i as i64 * 6 * 60_000, None), Verdict::New, "store 0 runs 6 h ahead");
        }
        assert_eq!(d.check(1, 1, 0, None), Verdict::Duplicate, "a retry of what store 1 sent before it went offline");
        for i in 0..60 {
            assert_eq!(d.check(1_000 + i, 1, i as i64 * 6 * 60_000, None), Verdict::New, "store 1's buffered upload");
        }
        assert!(d.remembered() <= 2 * (16 + 1) * 10, "one horizon and a slice per store: {}", d.remembered());
    }

    #[test]
    fn cap_evicts_the_oldest_slice_of_any_store_and_counts_it() {
        let mut d = Dedupe::new(H, 3);
        d.check(0, 1, 0, None);
        for i in 1..4 {
            d.check(i as u128, 0, i * SLICE, None);
        }
        assert_eq!(d.remembered(), 3);
        assert_eq!(d.evicted_early, 1);
        assert_eq!(d.check(0, 1, 0, None), Verdict::New, "store 1's id, the oldest, was forgotten");
    }

    #[test]
    fn changes_restore_the_same_verdicts() {
        let mut d = Dedupe::new(H, 100);
        d.track_changes();
        for i in 0..40 {
            d.check(i, (i % 3) as Store, i as i64 * SLICE / 2, None);
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
            assert_eq!(restored.check(i, (i % 3) as Store, t, None), d.check(i, (i % 3) as Store, t, None), "id {i}");
        }
    }

    #[test]
    fn a_terminal_offline_for_days_uploads_its_buffer_with_retries_and_each_event_counts_once() {
        let mut d = Dedupe::new(H, 1_000);
        // The store's other terminal trades on for three days.
        for i in 0..72 {
            let verdict = d.check(5_000 + i, 0, i as i64 * H, Some(("S0-T2", i as i64 + 1)));
            assert_eq!(verdict, Verdict::New);
        }
        // Terminal 1's buffer, three days old, uploaded with every event sent twice.
        for seq in 1..=100i64 {
            let at = seq * 60_000;
            assert_eq!(d.check(seq as u128, 0, at, Some(("S0-T1", seq))), Verdict::New, "sequence {seq}");
            assert_eq!(d.check(seq as u128, 0, at, Some(("S0-T1", seq))), Verdict::Duplicate, "retry of {seq}");
        }
        assert_eq!(d.terminal_ranges(), (2, 2), "one range per terminal");
        assert_eq!(d.remembered(), 0, "no event id is kept for events with a sequence number");
        // An id-only event that late is still beyond the horizon.
        assert_eq!(d.check(9, 0, 0, None), Verdict::BeyondHorizon { newest: 71 * H });
    }

    #[test]
    fn sequence_ranges_merge_whatever_the_order_they_come_in() {
        let mut d = Dedupe::new(H, 1_000);
        let mut order: Vec<i64> = (1..=1_000).collect();
        // A fixed shuffle: multiply by a unit modulo 1,001.
        order.sort_by_key(|n| (n * 389) % 1_001);
        for &seq in &order {
            assert_eq!(d.check(0, 0, 0, Some(("T", seq))), Verdict::New);
        }
        assert_eq!(d.terminal_ranges(), (1, 1));
        for &seq in order.iter().step_by(7) {
            assert_eq!(d.check(0, 0, 0, Some(("T", seq))), Verdict::Duplicate);
        }
        assert_eq!(d.check(0, 0, 0, Some(("T", i64::MAX))), Verdict::New, "no overflow at the ends");
        assert_eq!(d.check(0, 0, 0, Some(("T", i64::MIN))), Verdict::New);
        assert_eq!(d.check(0, 0, 0, Some(("T", i64::MAX))), Verdict::Duplicate);
        assert_eq!(d.terminal_ranges(), (1, 3));
    }

    #[test]
    fn scattered_numbers_and_silent_terminals_are_bounded() {
        let mut d = Dedupe::new(H, 1_000);
        for n in 0..(MAX_RANGES as i64 + 10) {
            assert_eq!(d.check(0, 0, 0, Some(("T", n * 2))), Verdict::New);
        }
        assert_eq!(d.terminal_ranges(), (1, MAX_RANGES));
        assert_eq!(d.evicted_early, 10);
        assert_eq!(d.check(0, 0, 0, Some(("T", 2))), Verdict::BeyondHorizon { newest: 0 }, "forgotten: unchecked");
        assert_eq!(d.check(0, 0, 0, Some(("T", 21))), Verdict::New, "above the floor");
        // A week and a slice later, the silent terminal is forgotten; another trades on.
        d.check(0, 0, SEQUENCE_HORIZON + 2 * SLICE, Some(("U", 1)));
        assert_eq!(d.terminal_ranges(), (1, 1));
        assert_eq!(d.check(0, 0, 0, Some(("T", 1))), Verdict::BeyondHorizon { newest: SEQUENCE_HORIZON + 2 * SLICE });
    }

    #[test]
    fn terminal_changes_restore_the_same_verdicts() {
        let mut d = Dedupe::new(H, 100);
        d.track_changes();
        for seq in [1, 2, 3, 7, 8, 20] {
            d.check(0, 1, seq * 1_000, Some(("T1", seq)));
        }
        d.check(0, 2, 0, Some(("T2", 5)));
        let mut entries = Vec::new();
        d.drain_changes(|entry| entries.push(entry));
        let terminals = entries.iter().filter(|e| matches!(e, DedupeEntry::Terminal { .. })).count();
        assert_eq!(terminals, 2, "one entry per terminal changed");
        let mut restored = Dedupe::new(H, 100);
        for entry in entries {
            restored.restore(entry);
        }
        assert_eq!(restored.terminal_ranges(), d.terminal_ranges());
        for seq in 0..25 {
            let (a, b) = (restored.check(0, 1, 30_000, Some(("T1", seq))), d.check(0, 1, 30_000, Some(("T1", seq))));
            assert_eq!(a, b, "sequence {seq}");
        }
    }
}

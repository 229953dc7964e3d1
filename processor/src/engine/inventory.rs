//! Inventory state per (store, sku): on hand, reserved, available, last event time, and the
//! sales history behind the 7-day velocity, days of inventory and sell-through date.
//!
//! Every valid, non-duplicate event applies, whatever its lateness: lateness concerns
//! windowed figures only. Changed positions are marked dirty and emitted together at the
//! next flush (a commit boundary), so a burst of sales of one SKU yields one record.

use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

use crate::event::{Event, EventType};

const DAY_MS: i64 = 86_400_000;
const VELOCITY_DAYS: usize = 7;

/// (store id, sku id), interned.
pub type PositionKey = u64;

pub fn position_key(store: u32, sku: u32) -> PositionKey {
    (u64::from(store) << 32) | u64::from(sku)
}

pub fn split_key(key: PositionKey) -> (u32, u32) {
    ((key >> 32) as u32, key as u32)
}

/// One cache line: the table touches one line per event and per flushed record.
#[derive(Debug, Clone, PartialEq, Eq)]
#[repr(align(64))]
pub struct Position {
    pub on_hand: i64,
    pub reserved: i64,
    pub last_event_time: i64,
    /// The newest day `sold_by_day` holds.
    latest_day: i64,
    /// Units sold per UTC day, a ring indexed by day number modulo 7 (saturating: a day
    /// with more than 2^31 units of one SKU in one store stays at the maximum).
    sold_by_day: [i32; VELOCITY_DAYS],
    dirty: bool,
}

impl Default for Position {
    fn default() -> Self {
        Position {
            on_hand: 0,
            reserved: 0,
            last_event_time: i64::MIN,
            latest_day: 0,
            sold_by_day: [0; VELOCITY_DAYS],
            dirty: false,
        }
    }
}

impl Position {
    pub fn available(&self) -> i64 {
        self.on_hand.saturating_sub(self.reserved)
    }

    fn record_sale(&mut self, event_time: i64, units: i64) {
        let day = event_time.div_euclid(DAY_MS);
        if day > self.latest_day {
            let gap = (day - self.latest_day).min(VELOCITY_DAYS as i64);
            for d in 0..gap {
                self.sold_by_day[(day - d).rem_euclid(VELOCITY_DAYS as i64) as usize] = 0;
            }
            self.latest_day = day;
        }
        if self.latest_day - day < VELOCITY_DAYS as i64 {
            let sold = &mut self.sold_by_day[day.rem_euclid(VELOCITY_DAYS as i64) as usize];
            *sold = sold.saturating_add(i32::try_from(units).unwrap_or(i32::MAX));
        }
    }

    /// Units sold over the 7 days ending with the day of the last event.
    fn sold_7d(&self) -> i64 {
        let last_day = self.last_event_time.div_euclid(DAY_MS);
        // Days of the ring older than the 7-day span ending at `last_day` no longer count.
        (0..VELOCITY_DAYS as i64)
            .map(|back| self.latest_day - back)
            .filter(|&day| last_day - day < VELOCITY_DAYS as i64)
            .map(|day| i64::from(self.sold_by_day[day.rem_euclid(VELOCITY_DAYS as i64) as usize]))
            .sum()
    }

    /// Units sold per day over the last 7 days, in hundredths (rounded half to even).
    fn velocity_hundredths(&self) -> i64 {
        div_round_half_even(self.sold_7d() * 100, VELOCITY_DAYS as i64)
    }

    /// Units sold per day over the 7 days ending with the day of the last event (2 decimals).
    pub fn velocity_7d(&self) -> Decimal {
        Decimal::new(self.velocity_hundredths(), 2)
    }

    /// `available / velocity` in tenths of a day; `None` when nothing sells.
    fn days_of_inventory_tenths(&self) -> Option<i64> {
        let velocity = self.velocity_hundredths();
        (velocity > 0).then(|| div_round_half_even(self.available().max(0).saturating_mul(1_000), velocity))
    }

    /// `available / velocity_7d` in days (1 decimal); `None` when nothing sells.
    pub fn days_of_inventory(&self) -> Option<Decimal> {
        self.days_of_inventory_tenths().map(|tenths| Decimal::new(tenths, 1))
    }

    /// When the available stock runs out at the current velocity.
    pub fn sell_through_time(&self) -> Option<i64> {
        let tenths = self.days_of_inventory_tenths()?;
        self.last_event_time.checked_add(tenths.checked_mul(DAY_MS / 10)?)
    }
}

/// A position as its changelog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PositionState {
    pub on_hand: i64,
    pub reserved: i64,
    pub last_event_time: i64,
    latest_day: i64,
    sold_by_day: [i32; VELOCITY_DAYS],
}

impl From<&Position> for PositionState {
    fn from(p: &Position) -> Self {
        PositionState {
            on_hand: p.on_hand,
            reserved: p.reserved,
            last_event_time: p.last_event_time,
            latest_day: p.latest_day,
            sold_by_day: p.sold_by_day,
        }
    }
}

/// `n / d` for `n >= 0, d > 0`, rounded half to even: exact decimal arithmetic in integers.
fn div_round_half_even(n: i64, d: i64) -> i64 {
    let (q, r) = (n / d, n % d);
    if 2 * r > d || (2 * r == d && q % 2 == 1) { q + 1 } else { q }
}

/// Positions in a dense slab in the order they appeared, found through an index by interned
/// store and SKU id: per store, a vector of slots indexed by SKU id, while that vector stays
/// at least an eighth full (a few hundred KiB for a brand's whole network, so it stays in
/// cache); positions of stores too sparse for that go to a hash map. Changed positions are
/// listed by slot until the next flush.
#[derive(Debug, Default)]
pub struct InventoryTable {
    rows: Vec<Row>,
    sparse: FxHashMap<PositionKey, u32>,
    keys: Vec<PositionKey>,
    positions: Vec<Position>,
    dirty: Vec<u32>,
    /// The positions as the last commit left them, where they changed since
    /// ([`InventoryTable::keep_committed`]).
    committed: Option<CommittedView>,
}

/// What a position was before the changes not committed yet: a reader of committed state (the
/// read API) never sees a value that an aborted transaction rolls back. Filled at a position's
/// first change after a flush (one copy per position and commit interval).
#[derive(Debug, Default)]
struct CommittedView {
    /// Positions changed since the last flush: their value at it (`None`: new since).
    since_flush: FxHashMap<u32, Option<Position>>,
    /// Positions changed in the transaction in flight (flushed when it began): their value
    /// then, which is what the last commit left.
    in_flight: FxHashMap<u32, Option<Position>>,
}

/// One store's slots by SKU id.
#[derive(Debug, Default)]
struct Row {
    slots: Vec<u32>,
    used: usize,
}

const VACANT: u32 = u32::MAX;

/// Available stock before and after an event, for the alert rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    pub available_before: i64,
    pub available_after: i64,
    pub on_hand_after: i64,
    /// The event moved on-hand stock (a reservation or a zero delta does not).
    pub on_hand_moved: bool,
}

impl InventoryTable {
    /// The slot of a position, if it exists.
    fn find(&self, key: PositionKey) -> Option<u32> {
        let (store, sku) = split_key(key);
        let dense = self.rows.get(store as usize).and_then(|row| row.slots.get(sku as usize));
        match dense {
            Some(&slot) if slot != VACANT => Some(slot),
            _ if self.sparse.is_empty() => None,
            _ => self.sparse.get(&key).copied(),
        }
    }

    /// The slot of a position, made (empty) if it does not exist yet.
    fn find_or_insert(&mut self, key: PositionKey) -> u32 {
        if let Some(slot) = self.find(key) {
            return slot;
        }
        // Slots are u32: four billion positions is far beyond one processor's memory.
        let slot = u32::try_from(self.positions.len()).unwrap_or(VACANT - 1);
        self.keys.push(key);
        self.positions.push(Position::default());
        let (store, sku) = split_key(key);
        let (store, sku) = (store as usize, sku as usize);
        if self.rows.len() <= store {
            self.rows.resize_with(store + 1, Row::default);
        }
        let row = &mut self.rows[store];
        if sku >= row.slots.len() && sku < 8 * (row.used + 16) {
            row.slots.resize(sku + 1, VACANT);
        }
        match row.slots.get_mut(sku) {
            Some(vacant) => {
                *vacant = slot;
                row.used += 1;
            }
            None => {
                self.sparse.insert(key, slot);
            }
        }
        slot
    }

    pub fn apply(&mut self, key: PositionKey, event: &Event<'_>) -> Change {
        let known = self.positions.len();
        let slot = self.find_or_insert(key);
        if let Some(view) = self.committed.as_mut()
            && let Some(position) = self.positions.get(slot as usize)
            && !position.dirty
        {
            let before = (self.positions.len() == known).then(|| position.clone());
            view.since_flush.insert(slot, before);
        }
        let position = &mut self.positions[slot as usize];
        let available_before = position.available();
        let on_hand_before = position.on_hand;
        if event.event_type.changes_on_hand() {
            position.on_hand = position.on_hand.saturating_add(event.quantity_delta);
        } else {
            position.reserved = position.reserved.saturating_add(event.quantity_delta);
        }
        if event.event_type == EventType::Sale {
            position.record_sale(event.event_time, event.quantity_delta.saturating_neg());
        }
        position.last_event_time = position.last_event_time.max(event.event_time);
        if !position.dirty {
            position.dirty = true;
            self.dirty.push(slot);
        }
        Change {
            available_before,
            available_after: position.available(),
            on_hand_after: position.on_hand,
            on_hand_moved: position.on_hand != on_hand_before,
        }
    }

    /// Sets a position from its changelog state (not marked changed).
    pub fn restore(&mut self, key: PositionKey, state: PositionState) {
        let slot = self.find_or_insert(key);
        let position = &mut self.positions[slot as usize];
        *position = Position {
            on_hand: state.on_hand,
            reserved: state.reserved,
            last_event_time: state.last_event_time,
            latest_day: state.latest_day,
            sold_by_day: state.sold_by_day,
            dirty: position.dirty,
        };
    }

    /// A position as it stands (tests; the read API asks [`Self::get_committed`]).
    #[cfg(test)]
    pub fn get(&self, key: PositionKey) -> Option<&Position> {
        self.find(key).map(|slot| &self.positions[slot as usize])
    }

    /// Keeps, from now on, what each position was at the last commit ([`Self::get_committed`]).
    pub fn keep_committed(&mut self) {
        self.committed.get_or_insert_with(CommittedView::default);
    }

    /// The transaction in flight (begun at the last flush) is committed.
    pub fn commit_ended(&mut self) {
        if let Some(view) = self.committed.as_mut() {
            view.in_flight.clear();
        }
    }

    /// A position as the last commit left it (as it stands, when committed state is not kept).
    pub fn get_committed(&self, key: PositionKey) -> Option<&Position> {
        self.committed_slot(self.find(key)?)
    }

    fn committed_slot(&self, slot: u32) -> Option<&Position> {
        let live = self.positions.get(slot as usize);
        let Some(view) = &self.committed else { return live };
        match view.in_flight.get(&slot).or_else(|| view.since_flush.get(&slot)) {
            Some(before) => before.as_ref(),
            None => live,
        }
    }

    /// Every position as the last commit left it, in the order they first appeared.
    pub fn iter_committed(&self) -> impl Iterator<Item = (PositionKey, &Position)> {
        (0..self.positions.len() as u32).filter_map(|slot| Some((self.keys[slot as usize], self.committed_slot(slot)?)))
    }

    /// Hands out the positions changed since the last call, in the order they first changed.
    /// (A transaction begins: what they were before is what it will commit over.)
    pub fn drain_dirty(&mut self, mut visit: impl FnMut(PositionKey, &Position)) {
        if let Some(view) = self.committed.as_mut() {
            view.in_flight = std::mem::take(&mut view.since_flush);
        }
        for slot in self.dirty.drain(..) {
            let position = &mut self.positions[slot as usize];
            position.dirty = false;
            visit(self.keys[slot as usize], position);
        }
    }

    pub fn count(&self) -> usize {
        self.positions.len()
    }

    /// Every position, in the order they first appeared.
    pub fn iter(&self) -> impl Iterator<Item = (PositionKey, &Position)> {
        self.keys.iter().copied().zip(&self.positions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn event(kind: EventType, delta: i64, time: i64) -> Event<'static> {
        Event {
            event_id: 0,
            event_type: kind,
            event_time: time,
            store_id: Cow::Borrowed("S"),
            sku_id: Cow::Borrowed("K"),
            quantity_delta: delta,
            unit_price: None,
            currency: None,
            channel: None,
            unknown_channel: false,
            terminal_id: None,
            sequence: None,
        }
    }

    #[test]
    fn every_event_type_moves_the_right_figure() {
        let mut t = InventoryTable::default();
        let k = position_key(1, 2);
        t.apply(k, &event(EventType::Restock, 20, 0));
        t.apply(k, &event(EventType::Sale, -3, 1));
        t.apply(k, &event(EventType::Return, 1, 2));
        t.apply(k, &event(EventType::TransferOut, -5, 3));
        t.apply(k, &event(EventType::TransferIn, 2, 4));
        t.apply(k, &event(EventType::Adjustment, -1, 5));
        t.apply(k, &event(EventType::Reservation, 4, 6));
        let c = t.apply(k, &event(EventType::ReservationRelease, -1, 7));
        let p = t.get(k).unwrap();
        assert_eq!((p.on_hand, p.reserved, p.available()), (14, 3, 11));
        assert_eq!(c, Change { available_before: 10, available_after: 11, on_hand_after: 14, on_hand_moved: false });
        assert_eq!(p.last_event_time, 7);
        let c = t.apply(k, &event(EventType::Sale, -2, 8));
        assert_eq!(c, Change { available_before: 11, available_after: 9, on_hand_after: 12, on_hand_moved: true });
    }

    #[test]
    fn velocity_counts_the_last_seven_days_of_sales() {
        let mut t = InventoryTable::default();
        let k = position_key(1, 2);
        t.apply(k, &event(EventType::Restock, 100, 0));
        for day in 0..10 {
            t.apply(k, &event(EventType::Sale, -(day + 1), day * DAY_MS + 1000));
        }
        // Days 3..=9 sold 4+5+...+10 = 49 units: 7 per day.
        let p = t.get(k).unwrap();
        assert_eq!(p.velocity_7d(), Decimal::from(7));
        assert_eq!(p.available(), 45);
        assert_eq!(p.days_of_inventory(), Some(Decimal::new(64, 1)));
        assert_eq!(p.sell_through_time(), Some(9 * DAY_MS + 1000 + 64 * DAY_MS / 10));
        // A late sale from 8 days before the newest day no longer counts in the velocity.
        t.apply(k, &event(EventType::Sale, -50, DAY_MS + 5));
        assert_eq!(t.get(k).unwrap().velocity_7d(), Decimal::from(7));
        // A week of silence: a restock brings the span forward, the velocity drops to zero.
        t.apply(k, &event(EventType::Restock, 5, 20 * DAY_MS));
        let p = t.get(k).unwrap();
        assert_eq!(p.velocity_7d(), Decimal::ZERO);
        assert_eq!(p.days_of_inventory(), None);
    }

    #[test]
    fn rounding_is_half_to_even() {
        assert_eq!(
            [
                div_round_half_even(5, 2),
                div_round_half_even(7, 2),
                div_round_half_even(10, 7),
                div_round_half_even(11, 7)
            ],
            [2, 4, 1, 2]
        );
        assert_eq!(div_round_half_even(100, 7), 14); // 14.29 units per day
    }

    #[test]
    fn sparse_stores_go_to_the_map_and_every_position_stays_found() {
        let mut t = InventoryTable::default();
        // Store 3 sees SKU 5, then SKU 1,000,000 (too sparse for its row), then fills in.
        let keys: Vec<PositionKey> = [(3, 5), (3, 1_000_000), (0, 7), (3, 6), (3, 4_000), (3, 100)]
            .map(|(st, sk)| position_key(st, sk))
            .to_vec();
        for (n, &key) in keys.iter().enumerate() {
            t.apply(key, &event(EventType::Restock, n as i64 + 1, 0));
        }
        for (n, &key) in keys.iter().enumerate() {
            t.apply(key, &event(EventType::Restock, 100, 1));
            assert_eq!(t.get(key).map(|p| p.on_hand), Some(n as i64 + 101), "{:?}", split_key(key));
        }
        assert_eq!(t.count(), 6);
        assert_eq!(t.sparse.len(), 2, "SKUs 1,000,000 and 4,000 of store 3 are sparse");
        assert_eq!(t.rows[3].slots.len(), 101, "SKU 100 is within eight times the row's use");
        assert_eq!(t.iter().map(|(k, _)| k).collect::<Vec<_>>(), keys, "in the order they appeared");
        assert_eq!(t.get(position_key(3, 7)), None);
    }

    #[test]
    fn committed_positions_lag_behind_until_the_transaction_that_changed_them_commits() {
        let mut t = InventoryTable::default();
        t.keep_committed();
        let key = position_key(1, 2);
        let on_hand = |t: &InventoryTable| t.get_committed(key).map(|p| p.on_hand);
        t.apply(key, &event(EventType::Restock, 5, 0));
        assert_eq!(on_hand(&t), None, "new since the last commit");
        t.drain_dirty(|_, _| {}); // a transaction begins with it
        t.apply(key, &event(EventType::Restock, 3, 1)); // processed while it commits
        assert_eq!(on_hand(&t), None, "the transaction in flight may still abort");
        assert_eq!(t.iter_committed().count(), 0);
        t.commit_ended();
        assert_eq!(on_hand(&t), Some(5), "the second change is not committed yet");
        t.drain_dirty(|_, _| {});
        assert_eq!(on_hand(&t), Some(5));
        t.commit_ended();
        assert_eq!(on_hand(&t), Some(8));
        assert_eq!(t.iter_committed().map(|(_, p)| p.on_hand).collect::<Vec<_>>(), vec![8]);
        assert_eq!(t.get(key).map(|p| p.on_hand), Some(8));
    }

    #[test]
    fn dirty_positions_are_emitted_once_per_flush() {
        let mut t = InventoryTable::default();
        t.apply(position_key(1, 1), &event(EventType::Restock, 1, 0));
        t.apply(position_key(1, 2), &event(EventType::Restock, 1, 0));
        t.apply(position_key(1, 1), &event(EventType::Restock, 1, 0));
        let mut seen = Vec::new();
        t.drain_dirty(|k, p| seen.push((split_key(k), p.on_hand)));
        assert_eq!(seen, vec![((1, 1), 2), ((1, 2), 1)]);
        let mut again = 0;
        t.drain_dirty(|_, _| again += 1);
        assert_eq!(again, 0);
    }
}

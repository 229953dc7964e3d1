//! Realistic store traffic, deterministic by seed.
//!
//! A simulated clock runs over Black Friday. Every store sells at a rate shaped by its
//! channel and format and by the local hour in its region's time zone (physical stores open
//! 09:00-20:00; web shops and marketplaces around the clock with an evening peak). SKUs are
//! picked by Zipf-distributed popularity. Stock is tracked so that the event stream is
//! consistent: an opening stock count (ADJUSTMENT) the first time a store carries a SKU,
//! sales that never sell what is not there, returns (8% of sales, within two hours), reservations and
//! their releases on the web, transfers from the regional warehouse when a store runs low,
//! supplier restocks of the warehouses, and some shrinkage. Configurable shares of events
//! are then disordered: stamped out of order within a bound, stamped late, duplicated, or
//! malformed.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::Write;

use chrono::{DateTime, Timelike};
use chrono_tz::Tz;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, Zipf};
use rust_decimal::Decimal;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::event::time::format_rfc3339_millis;
use crate::event::{Channel, EventType};
use crate::reference::{ProductRecord, StoreRecord};

/// Shares of disorder and the shape of the traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficOptions {
    pub seed: u64,
    /// Simulated time of the first event (epoch ms).
    pub start: i64,
    /// Events per second of the whole network at its busiest hour.
    pub peak_events_per_second: f64,
    /// Share of events stamped up to `out_of_order_max` before their arrival.
    pub out_of_order_share: f64,
    pub out_of_order_max_ms: i64,
    /// Share of events stamped `late_min_ms..late_max_ms` before their arrival.
    pub late_share: f64,
    pub late_min_ms: i64,
    pub late_max_ms: i64,
    /// Share of events sent a second time (a producer retry).
    pub duplicate_share: f64,
    /// Share of events corrupted on the way (bad JSON, fields, types or values).
    pub malformed_share: f64,
    /// Start with a stock count (ADJUSTMENT) of every SKU in every store, so the whole key
    /// space exists from the first minute; otherwise a store counts a SKU when it first sells it.
    pub opening_stocktake: bool,
}

impl Default for TrafficOptions {
    fn default() -> Self {
        TrafficOptions {
            seed: 1,
            // Black Friday 2026, 06:00 in Berlin, midnight in New York.
            start: 1_795_759_200_000,
            peak_events_per_second: 40.0,
            out_of_order_share: 0.02,
            out_of_order_max_ms: 25_000,
            late_share: 0.005,
            late_min_ms: 120_000,
            late_max_ms: 1_800_000,
            duplicate_share: 0.01,
            malformed_share: 0.002,
            opening_stocktake: false,
        }
    }
}

/// What kind of disorder, if any, an event was given (for tests and the demo's counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disorder {
    None,
    OutOfOrder,
    Late,
    Duplicate,
    Malformed,
}

/// One generated event: the key producers use (the store id), the JSON bytes, and the
/// simulated arrival time (processing time).
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedEvent {
    pub key: String,
    pub payload: Vec<u8>,
    pub arrival: i64,
    pub disorder: Disorder,
}

struct SimStore {
    record: StoreRecord,
    tz: Tz,
    /// Relative weight at the busiest hour.
    weight: f64,
    warehouse: usize,
    /// USD per EUR list price, or 1 for EUR.
    price_factor: Decimal,
    rate: f64,
}

#[derive(Debug, Clone)]
struct Pending {
    store: usize,
    sku: usize,
    kind: EventType,
    delta: i64,
    price: Option<Decimal>,
}

const MINUTE: i64 = 60_000;
/// Returns come back within two hours of their sale.
pub const RETURN_WITHIN: i64 = 120 * MINUTE;

pub struct Traffic {
    rng: ChaCha8Rng,
    options: TrafficOptions,
    stores: Vec<SimStore>,
    skus: Vec<String>,
    prices: Vec<Decimal>,
    popularity: Zipf<f64>,
    /// Popularity rank -> SKU index, so popular SKUs spread over categories.
    by_rank: Vec<usize>,
    stock: FxHashMap<(usize, usize), i64>,
    replenishing: FxHashSet<(usize, usize)>,
    scheduled: BinaryHeap<Reverse<(i64, u64)>>,
    pending: FxHashMap<u64, Pending>,
    sequence: u64,
    clock: i64,
    rates_valid_until: i64,
    total_rate_per_ms: f64,
    recent: VecDeque<(String, Vec<u8>)>,
    next_duplicate: Option<(String, Vec<u8>)>,
}

fn hour_profile(channel: Channel, hour: u32) -> f64 {
    match channel {
        Channel::Physical => match hour {
            9..=10 => 0.5,
            11..=13 => 0.9,
            14..=16 => 0.7,
            17..=19 => 1.0,
            _ => 0.0,
        },
        Channel::Online | Channel::Marketplace => match hour {
            0..=5 => 0.15,
            6..=8 => 0.4,
            9..=16 => 0.7,
            17..=22 => 1.0,
            _ => 0.5,
        },
        Channel::Warehouse => 0.0,
    }
}

impl Traffic {
    pub fn new(options: TrafficOptions, stores: &[StoreRecord], catalog: &[ProductRecord]) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let sim_stores: Vec<SimStore> = stores
            .iter()
            .map(|s| {
                let weight = match (s.channel, s.format.as_str()) {
                    (Channel::Physical, "flagship") => 1.6,
                    (Channel::Physical, "outlet") => 0.7,
                    (Channel::Physical, _) => 1.0,
                    (Channel::Online, _) => 3.0,
                    (Channel::Marketplace, _) => 1.5,
                    (Channel::Warehouse, _) => 0.0,
                };
                let warehouse =
                    stores.iter().position(|w| w.channel == Channel::Warehouse && w.region == s.region).unwrap_or(0);
                let price_factor = if s.currency == "EUR" { Decimal::ONE } else { Decimal::new(108, 2) };
                SimStore {
                    record: s.clone(),
                    tz: s.timezone.parse().unwrap_or(Tz::UTC),
                    weight,
                    warehouse,
                    price_factor,
                    rate: 0.0,
                }
            })
            .collect();
        let mut by_rank: Vec<usize> = (0..catalog.len()).collect();
        for i in (1..by_rank.len()).rev() {
            let j = rng.random_range(0..=i);
            by_rank.swap(i, j);
        }
        let popularity =
            Zipf::new(catalog.len().max(1) as f64, 1.07).unwrap_or_else(|_| Zipf::new(1.0, 1.0).expect("valid"));
        let start = options.start;
        let stocktake = options.opening_stocktake;
        let mut traffic = Traffic {
            rng,
            stores: sim_stores,
            skus: catalog.iter().map(|p| p.sku_id.clone()).collect(),
            prices: catalog.iter().map(|p| p.list_price.parse().unwrap_or(Decimal::TEN)).collect(),
            popularity,
            by_rank,
            stock: FxHashMap::default(),
            replenishing: FxHashSet::default(),
            scheduled: BinaryHeap::new(),
            pending: FxHashMap::default(),
            sequence: 0,
            clock: start,
            rates_valid_until: i64::MIN,
            total_rate_per_ms: 0.0,
            recent: VecDeque::with_capacity(256),
            next_duplicate: None,
            options,
        };
        if stocktake {
            traffic.schedule_stocktake();
        }
        traffic
    }

    /// A stock count of every SKU in every store, at the start, before any trading.
    fn schedule_stocktake(&mut self) {
        for store in 0..self.stores.len() {
            for sku in 0..self.skus.len() {
                let count = match self.stores[store].record.channel {
                    Channel::Physical => self.rng.random_range(6..=30),
                    Channel::Warehouse => self.rng.random_range(200..=600),
                    _ => self.rng.random_range(20..=120),
                };
                let at = self.clock;
                self.schedule(at, Pending { store, sku, kind: EventType::Adjustment, delta: count, price: None });
            }
        }
    }

    /// The simulated clock: the arrival time of the last event.
    pub fn clock(&self) -> i64 {
        self.clock
    }

    fn refresh_rates(&mut self) {
        let max_weight_sum: f64 = self.stores.iter().map(|s| s.weight).sum::<f64>().max(f64::EPSILON);
        let scale = self.options.peak_events_per_second / max_weight_sum / 1000.0;
        let now = DateTime::from_timestamp_millis(self.clock).unwrap_or_default();
        let mut total = 0.0;
        for store in &mut self.stores {
            let hour = now.with_timezone(&store.tz).hour();
            store.rate = store.weight * hour_profile(store.record.channel, hour) * scale;
            total += store.rate;
        }
        self.total_rate_per_ms = total;
        self.rates_valid_until = (self.clock / MINUTE + 1) * MINUTE;
    }

    fn schedule(&mut self, at: i64, pending: Pending) {
        self.sequence += 1;
        self.scheduled.push(Reverse((at, self.sequence)));
        self.pending.insert(self.sequence, pending);
    }

    fn pick_store(&mut self) -> usize {
        let mut target = self.rng.random::<f64>() * self.total_rate_per_ms;
        for (i, store) in self.stores.iter().enumerate() {
            target -= store.rate;
            if target <= 0.0 && store.rate > 0.0 {
                return i;
            }
        }
        self.stores.iter().rposition(|s| s.rate > 0.0).unwrap_or(0)
    }

    fn pick_sku(&mut self) -> usize {
        let rank = self.popularity.sample(&mut self.rng) as usize;
        self.by_rank[rank.saturating_sub(1).min(self.by_rank.len() - 1)]
    }

    fn price(&mut self, store: usize, sku: usize) -> Decimal {
        let mut price = self.prices[sku] * self.stores[store].price_factor;
        if self.rng.random_bool(0.3) {
            price *= Decimal::new(80, 2); // Black Friday: 20% off
        }
        price.round_dp(2)
    }

    /// The next stock-consistent event, before any disorder.
    fn next_clean(&mut self) -> Pending {
        loop {
            if self.clock >= self.rates_valid_until {
                self.refresh_rates();
            }
            let organic_at = if self.total_rate_per_ms > 0.0 {
                let gap = Exp::new(self.total_rate_per_ms).map(|e| e.sample(&mut self.rng)).unwrap_or(1_000.0);
                self.clock + gap.ceil() as i64
            } else {
                self.rates_valid_until
            };
            if let Some(&Reverse((at, seq))) = self.scheduled.peek()
                && at <= organic_at
            {
                self.scheduled.pop();
                self.clock = self.clock.max(at);
                if let Some(p) = self.pending.remove(&seq) {
                    return self.settle(p);
                }
                continue;
            }
            if organic_at > self.rates_valid_until {
                // The rates change at the next minute: re-draw from there.
                self.clock = self.rates_valid_until;
                continue;
            }
            self.clock = organic_at;
            if let Some(p) = self.organic() {
                return p;
            }
        }
    }

    /// Applies a scheduled event to the simulated stock.
    fn settle(&mut self, p: Pending) -> Pending {
        if p.kind.changes_on_hand() {
            *self.stock.entry((p.store, p.sku)).or_insert(0) += p.delta;
        }
        if matches!(p.kind, EventType::TransferIn | EventType::Restock) {
            self.replenishing.remove(&(p.store, p.sku));
        }
        p
    }

    fn organic(&mut self) -> Option<Pending> {
        let store = self.pick_store();
        let sku = self.pick_sku();
        let channel = self.stores[store].record.channel;
        let Some(&on_hand) = self.stock.get(&(store, sku)) else {
            // The first time a store carries a SKU: its opening stock count.
            let count = match channel {
                Channel::Physical => self.rng.random_range(6..=30),
                _ => self.rng.random_range(20..=120),
            };
            self.stock.insert((store, sku), count);
            return Some(Pending { store, sku, kind: EventType::Adjustment, delta: count, price: None });
        };
        if channel == Channel::Physical && self.rng.random_bool(0.01) && on_hand > 0 {
            self.stock.insert((store, sku), on_hand - 1);
            return Some(Pending { store, sku, kind: EventType::Adjustment, delta: -1, price: None });
        }
        if channel == Channel::Online && self.rng.random_bool(0.12) {
            let at = self.clock + self.rng.random_range(2 * MINUTE..=45 * MINUTE);
            self.schedule(at, Pending { store, sku, kind: EventType::ReservationRelease, delta: -1, price: None });
            if self.rng.random_bool(0.6) && on_hand > 1 {
                let price = self.price(store, sku);
                self.schedule(at + 1_000, Pending { store, sku, kind: EventType::Sale, delta: -1, price: Some(price) });
                self.stock.insert((store, sku), on_hand - 1);
            }
            return Some(Pending { store, sku, kind: EventType::Reservation, delta: 1, price: None });
        }
        let units = match self.rng.random_range(0..100) {
            0..=79 => 1,
            80..=94 => 2,
            _ => 3,
        };
        if on_hand < units {
            self.replenish(store, sku);
            return None; // a lost sale: nothing to sell
        }
        let price = self.price(store, sku);
        self.stock.insert((store, sku), on_hand - units);
        if self.rng.random_bool(0.08) {
            let at = self.clock + self.rng.random_range(10 * MINUTE..=RETURN_WITHIN);
            self.schedule(at, Pending { store, sku, kind: EventType::Return, delta: units, price: Some(price) });
        }
        if on_hand - units <= 3 {
            self.replenish(store, sku);
        }
        Some(Pending { store, sku, kind: EventType::Sale, delta: -units, price: Some(price) })
    }

    /// A transfer from the regional warehouse (and a supplier restock of the warehouse when
    /// it runs low itself).
    fn replenish(&mut self, store: usize, sku: usize) {
        if !self.replenishing.insert((store, sku)) {
            return;
        }
        let warehouse = self.stores[store].warehouse;
        let units = self.rng.random_range(12..=40);
        let ship = self.clock + self.rng.random_range(15 * MINUTE..=90 * MINUTE);
        let arrive = ship + self.rng.random_range(60 * MINUTE..=180 * MINUTE);
        if !self.options.opening_stocktake && !self.stock.contains_key(&(warehouse, sku)) {
            let count = self.rng.random_range(200..=600);
            self.stock.insert((warehouse, sku), 0);
            self.schedule(
                ship - 1_000,
                Pending { store: warehouse, sku, kind: EventType::Adjustment, delta: count, price: None },
            );
        }
        self.schedule(
            ship,
            Pending { store: warehouse, sku, kind: EventType::TransferOut, delta: -units, price: None },
        );
        self.schedule(arrive, Pending { store, sku, kind: EventType::TransferIn, delta: units, price: None });
        let warehouse_stock = self.stock.get(&(warehouse, sku)).copied().unwrap_or(0);
        if warehouse_stock < 100 && self.replenishing.insert((warehouse, sku)) {
            let at = ship + self.rng.random_range(2 * 60 * MINUTE..=12 * 60 * MINUTE);
            let units = self.rng.random_range(300..=800);
            self.schedule(at, Pending { store: warehouse, sku, kind: EventType::Restock, delta: units, price: None });
        }
    }

    fn render(&mut self, p: &Pending, event_time: i64) -> Vec<u8> {
        let store = &self.stores[p.store].record;
        let mut bytes = Vec::with_capacity(320);
        let id = uuid::Builder::from_random_bytes(self.rng.random()).into_uuid();
        // Writing to a Vec cannot fail.
        let _ = write!(
            bytes,
            r#"{{"event_id":"{id}","event_type":"{}","event_time":"{}","store_id":"{}","sku_id":"{}","quantity_delta":{}"#,
            p.kind,
            format_rfc3339_millis(event_time),
            store.store_id,
            self.skus[p.sku],
            p.delta
        );
        if let Some(price) = p.price {
            let _ = write!(bytes, r#","unit_price":"{price}","currency":"{}""#, store.currency);
        }
        let _ = write!(bytes, r#","channel":"{}""#, store.channel);
        match store.channel {
            Channel::Physical => {
                let _ = write!(bytes, r#","terminal_id":"{}-T{}""#, store.store_id, self.rng.random_range(1..=8));
            }
            Channel::Online | Channel::Marketplace => {
                let _ = write!(bytes, r#","order_id":"{}-{}""#, store.store_id, self.rng.random::<u32>());
            }
            Channel::Warehouse => {}
        }
        bytes.extend_from_slice(br#","schema_version":1}"#);
        bytes
    }

    fn corrupt(&mut self, payload: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(payload);
        match self.rng.random_range(0..6) {
            0 => payload[..payload.len() / 2].to_vec(),
            1 => text.replacen(r#""sku_id":"#, r#""sku":"#, 1).into_bytes(),
            2 => text.replacen(r#""event_type":""#, r#""event_type":"X"#, 1).into_bytes(),
            3 => text.replacen(r#""event_time":"2"#, r#""event_time":"yesterday 2"#, 1).into_bytes(),
            4 => text.replacen(r#""quantity_delta":"#, r#""quantity_delta":0,"was":"#, 1).into_bytes(),
            _ => text.replacen(r#""event_id":""#, r#""event_id":"not-a-uuid-"#, 1).into_bytes(),
        }
    }
}

impl Iterator for Traffic {
    type Item = GeneratedEvent;

    fn next(&mut self) -> Option<GeneratedEvent> {
        if let Some((key, payload)) = self.next_duplicate.take() {
            return Some(GeneratedEvent { key, payload, arrival: self.clock, disorder: Disorder::Duplicate });
        }
        let pending = self.next_clean();
        let o = &self.options;
        let roll: f64 = self.rng.random();
        let (event_time, mut disorder) = if roll < o.out_of_order_share {
            let back = self.rng.random_range(1_000..=o.out_of_order_max_ms.max(1_000));
            (self.clock - back, Disorder::OutOfOrder)
        } else if roll < o.out_of_order_share + o.late_share {
            let back = self.rng.random_range(o.late_min_ms..=o.late_max_ms.max(o.late_min_ms));
            (self.clock - back, Disorder::Late)
        } else {
            (self.clock, Disorder::None)
        };
        let mut payload = self.render(&pending, event_time);
        let key = self.stores[pending.store].record.store_id.clone();
        if self.rng.random_bool(self.options.malformed_share.clamp(0.0, 1.0)) {
            payload = self.corrupt(&payload);
            disorder = Disorder::Malformed;
        } else {
            if self.recent.len() == self.recent.capacity() {
                self.recent.pop_front();
            }
            self.recent.push_back((key.clone(), payload.clone()));
            if self.rng.random_bool(self.options.duplicate_share.clamp(0.0, 1.0)) {
                let pick = self.rng.random_range(0..self.recent.len());
                self.next_duplicate = self.recent.get(pick).cloned();
            }
        }
        Some(GeneratedEvent { key, payload, arrival: self.clock, disorder })
    }
}

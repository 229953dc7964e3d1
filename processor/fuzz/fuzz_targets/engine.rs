//! `Engine::process` over arbitrary sequences of events, retries, garbage and clock ticks:
//! never a panic, inventory equal to a straightforward fold of every valid, non-duplicate
//! event (dedupe measured against each store's own newest event), the counters equal to the
//! fold's, and, where no event can be late, every window's last figures equal to a recount.
#![no_main]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rust_decimal::Decimal;
use stockpulse_processor::config::PipelineConfig;
use stockpulse_processor::engine::{Engine, InputRecord, UNKNOWN};
use stockpulse_processor::event::time::format_rfc3339_millis;
use stockpulse_processor::event::{EventType, parse_event};
use stockpulse_processor::output::Output;

/// 2026-11-27T00:00:00Z, Black Friday.
const BASE: i64 = 1_795_737_600_000;
const HOUR: i64 = 3_600_000;
/// Processing time starts after every event time a step can make, so none is in the future.
const START: i64 = BASE + 65_536_000;
const STORES: [&str; 3] = ["EUC-P01", "EUC-O02", "USE-P03"];
const SKUS: [&str; 3] = ["SKU-000001", "SKU-000002", "SKU-000003"];
const KINDS: [&str; 8] =
    ["SALE", "RETURN", "RESTOCK", "ADJUSTMENT", "TRANSFER_OUT", "TRANSFER_IN", "RESERVATION", "RESERVATION_RELEASE"];
const CHANNELS: [Option<&str>; 5] = [Some("physical"), Some("online"), Some("pos"), Some("Warehouse"), None];

/// Windows that nothing in a run can be late for (lateness 30 days, events within 18 hours),
/// or a 1-hour horizon and 10 minutes of lateness, where events are late and beyond it.
const LENIENT: &str = "
name: fuzz
processing:
  groupBy: [store, sku]
  windows:
    - {name: w5, type: tumbling, size: 5m}
    - {name: s1h, type: sliding, size: 1h, slide: 15m, groupBy: [channel]}
  maxOutOfOrderness: 30s
  allowedLateness: 30d
  idleTimeout: 1m
  maxFutureSkew: 15m
  dedupe: {horizon: 30d}
";

#[derive(Arbitrary, Debug)]
struct Run {
    strict: bool,
    steps: Vec<Step>,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Event(EventSpec),
    /// The n-th payload before this one, sent again (a producer retry).
    Repeat(u8),
    /// Any bytes at all.
    Raw(Vec<u8>),
    /// Processing time moves on by this many seconds.
    Tick(u16),
}

#[derive(Arbitrary, Debug)]
struct EventSpec {
    kind: u8,
    store: u8,
    sku: u8,
    /// Event time: seconds after `BASE`.
    seconds: u16,
    delta: i64,
    /// A delta in -20..20 instead of any `i64`.
    small: bool,
    price_cents: u64,
    usd: bool,
    channel: u8,
    stream: bool,
}

impl EventSpec {
    fn payload(&self, index: usize) -> Vec<u8> {
        let delta = if self.small { self.delta % 20 } else { self.delta };
        let mut event = serde_json::json!({
            "event_id": format!("00000000-0000-4000-8000-{index:012x}"),
            "event_type": KINDS[usize::from(self.kind) % KINDS.len()],
            "event_time": format_rfc3339_millis(BASE + i64::from(self.seconds) * 1000),
            "store_id": STORES[usize::from(self.store) % STORES.len()],
            "sku_id": SKUS[usize::from(self.sku) % SKUS.len()],
            "quantity_delta": delta,
            "unit_price": format!("{}.{:02}", self.price_cents / 100, self.price_cents % 100),
            "currency": if self.usd { "USD" } else { "EUR" },
        });
        if let Some(channel) = CHANNELS[usize::from(self.channel) % CHANNELS.len()] {
            event["channel"] = channel.into();
        }
        event.to_string().into_bytes()
    }
}

type WindowKey = (String, i64, Option<String>, Option<String>, Option<String>, String);
type Figures = (i64, i64, Decimal, Decimal, u64);

/// The straightforward computation the engine must agree with.
#[derive(Default)]
struct Fold {
    seen: HashSet<u128>,
    newest: HashMap<String, i64>,
    inventory: BTreeMap<(String, String), (i64, i64)>,
    windows: BTreeMap<WindowKey, Figures>,
    dead: u64,
    duplicates: u64,
    beyond_horizon: u64,
    /// A valid event so old that a window may be late for it: the recount does not apply.
    may_be_late: bool,
}

impl Fold {
    fn apply(&mut self, payload: &[u8], now: i64, horizon: i64) {
        let Ok(e) = parse_event(payload) else {
            self.dead += 1;
            return;
        };
        if e.event_time > now + 15 * 60_000 {
            self.dead += 1;
            return;
        }
        let newest = self.newest.get(&*e.store_id).copied();
        if newest.is_some_and(|newest| e.event_time < newest.saturating_sub(horizon)) {
            self.beyond_horizon += 1;
            return;
        }
        if !self.seen.insert(e.event_id) {
            self.duplicates += 1;
            return;
        }
        self.newest.insert(e.store_id.to_string(), newest.map_or(e.event_time, |n| n.max(e.event_time)));
        let position = self.inventory.entry((e.store_id.to_string(), e.sku_id.to_string())).or_default();
        if e.event_type.changes_on_hand() {
            position.0 = position.0.saturating_add(e.quantity_delta);
        } else {
            position.1 = position.1.saturating_add(e.quantity_delta);
        }
        if e.event_time < BASE - 29 * 24 * HOUR {
            self.may_be_late = true;
        }
        let (Some(price), Some(currency)) = (e.unit_price, e.currency) else { return };
        let figures: Figures = match e.event_type {
            EventType::Sale => (-e.quantity_delta, 0, price * Decimal::from(-e.quantity_delta), Decimal::ZERO, 1),
            EventType::Return => (0, e.quantity_delta, Decimal::ZERO, price * Decimal::from(e.quantity_delta), 0),
            _ => return,
        };
        let channel = e.channel.map_or(UNKNOWN, |c| c.as_str()).to_string();
        let currency = currency.as_str().to_string();
        let five = 5 * 60_000;
        let w5 = e.event_time.div_euclid(five) * five;
        let mut keys = vec![(
            "w5".to_string(),
            w5,
            Some(e.store_id.to_string()),
            Some(e.sku_id.to_string()),
            None,
            currency.clone(),
        )];
        let step = 15 * 60_000;
        let mut start = e.event_time.div_euclid(step) * step;
        while start + HOUR > e.event_time {
            keys.push(("s1h".to_string(), start, None, None, Some(channel.clone()), currency.clone()));
            start -= step;
        }
        for key in keys {
            let sum = self.windows.entry(key).or_insert((0, 0, Decimal::ZERO, Decimal::ZERO, 0));
            sum.0 += figures.0;
            sum.1 += figures.1;
            sum.2 += figures.2;
            sum.3 += figures.3;
            sum.4 += figures.4;
        }
    }
}

fuzz_target!(|run: Run| {
    let config = if run.strict {
        LENIENT.replace("allowedLateness: 30d", "allowedLateness: 10m").replace("horizon: 30d", "horizon: 1h")
    } else {
        LENIENT.to_string()
    };
    let config = PipelineConfig::from_text(&config, "fuzz.yaml").expect("the fuzz config is valid");
    let horizon = config.processing.dedupe.horizon.as_millis_i64();
    let mut engine = Engine::new(&config, START);
    engine.assign(0);
    engine.assign(1);
    let topic: Arc<str> = Arc::from("fuzz.sales");
    let mut sent: Vec<(Vec<u8>, usize)> = Vec::new();
    let mut fold = Fold::default();
    let mut now = START;
    let mut out = Vec::new();
    let mut windows: BTreeMap<WindowKey, Figures> = BTreeMap::new();
    for (index, step) in run.steps.iter().take(2_000).enumerate() {
        let (payload, stream) = match step {
            Step::Event(spec) => (spec.payload(index), usize::from(spec.stream)),
            Step::Repeat(back) => match sent.len().checked_sub(usize::from(*back) + 1) {
                Some(at) => sent[at].clone(),
                None => continue,
            },
            Step::Raw(bytes) => (bytes.clone(), 0),
            Step::Tick(seconds) => {
                now += i64::from(*seconds) * 1000;
                engine.tick(now, &mut out);
                continue;
            }
        };
        let input = InputRecord { stream, topic: &topic, partition: 0, offset: index as i64, payload: &payload };
        engine.process(&input, &mut out);
        fold.apply(&payload, now, horizon);
        sent.push((payload, stream));
        collect(&mut out, &mut windows);
    }
    let inventory: BTreeMap<(String, String), (i64, i64)> =
        engine.positions().map(|p| ((p.store_id.to_string(), p.sku_id.to_string()), (p.on_hand, p.reserved))).collect();
    assert_eq!(inventory, fold.inventory, "inventory");
    let stats = engine.stats();
    assert_eq!(
        (stats.dead_lettered, stats.duplicates, stats.beyond_dedupe_horizon),
        (fold.dead, fold.duplicates, fold.beyond_horizon),
        "dead letters, duplicates, beyond the horizon"
    );
    engine.finish(&mut out);
    collect(&mut out, &mut windows);
    if !run.strict && !fold.may_be_late {
        assert_eq!(engine.stats().late_events, 0);
        assert_eq!(windows, fold.windows, "every window's last figures");
    }
});

/// Keeps the last figures of every window group the engine emitted.
fn collect(out: &mut Vec<Output>, windows: &mut BTreeMap<WindowKey, Figures>) {
    let name = |s: &Option<Arc<str>>| s.as_ref().map(|s| s.to_string());
    for output in out.drain(..) {
        if let Output::Aggregate(a) = output {
            windows.insert(
                (
                    a.window.to_string(),
                    a.window_start,
                    name(&a.store_id),
                    name(&a.sku_id),
                    name(&a.channel),
                    a.currency.to_string(),
                ),
                (a.units_sold, a.units_returned, a.gross_revenue, a.returns_revenue, a.transactions),
            );
        }
    }
}

//! Hand-built scenarios with exact expected outputs.

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::config::PipelineConfig;
use crate::event::time::parse_rfc3339_millis;
use crate::reference::{ProductRecord, StoreRecord};

pub(super) const CONFIG: &str = r#"
name: t
processing:
  groupBy: [store, sku]
  windows:
    - {name: w5, type: tumbling, size: 5m}
  maxOutOfOrderness: 1m
  allowedLateness: 10m
  idleTimeout: 1m
  maxFutureSkew: 15m
  dedupe: {horizon: 1h}
alerts:
  - {name: low, lowStock: {threshold: 2}, cooldown: 1h}
"#;

pub(super) fn at(hms: &str) -> i64 {
    parse_rfc3339_millis(&format!("2026-11-27T{hms}Z")).unwrap()
}

fn engine_with(yaml: &str) -> Engine {
    let config = PipelineConfig::from_text(yaml, "test").unwrap();
    Engine::new(&config, at("12:00:00"))
}

pub(super) fn sale(id: u32, hms: &str, store: &str, units: i64, price: &str) -> String {
    json!({
        "event_id": format!("00000000-0000-4000-8000-{id:012}"),
        "event_type": "SALE", "event_time": format!("2026-11-27T{hms}Z"),
        "store_id": store, "sku_id": "K1", "quantity_delta": -units,
        "unit_price": price, "currency": "EUR", "schema_version": 1
    })
    .to_string()
}

pub(super) fn stock(id: u32, kind: &str, hms: &str, store: &str, delta: i64) -> String {
    json!({
        "event_id": format!("00000000-0000-4000-8000-{id:012}"),
        "event_type": kind, "event_time": format!("2026-11-27T{hms}Z"),
        "store_id": store, "sku_id": "K1", "quantity_delta": delta
    })
    .to_string()
}

/// Store S1, a physical flagship in Berlin, in `region`.
fn store_s1(region: &str) -> StoreRecord {
    StoreRecord {
        store_id: "S1".into(),
        name: "Berlin Mitte".into(),
        region: region.into(),
        channel: Channel::Physical,
        format: "flagship".into(),
        city: "Berlin".into(),
        country: "DE".into(),
        timezone: "Europe/Berlin".into(),
        currency: "EUR".into(),
    }
}

/// Every aggregate the engine gives when it finishes, with its units sold, sorted by key.
fn units_sold_at_finish(run: &mut Run) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    run.engine.finish(&mut out);
    let mut groups: Vec<(String, i64)> = shown(out)
        .into_iter()
        .filter(|(k, _)| k.starts_with("aggregates"))
        .map(|(k, v)| (k, v["units_sold"].as_i64().unwrap()))
        .collect();
    groups.sort();
    groups
}

pub(super) struct Run {
    pub(super) engine: Engine,
    topic: Arc<str>,
    offset: i64,
}

impl Run {
    pub(super) fn new(yaml: &str) -> Self {
        let mut engine = engine_with(yaml);
        engine.assign(0);
        Run { engine, topic: Arc::from("t.sales"), offset: 0 }
    }

    /// Feeds records on a stream and returns what came out, each as (role key, json).
    fn feed_on(&mut self, stream: usize, payloads: &[String]) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        for payload in payloads {
            let input = InputRecord {
                stream,
                topic: &self.topic,
                partition: stream as i32,
                offset: self.offset,
                payload: payload.as_bytes(),
            };
            self.offset += 1;
            self.engine.process(&input, &mut out);
        }
        shown(out)
    }

    pub(super) fn feed(&mut self, payloads: &[String]) -> Vec<(String, Value)> {
        self.feed_on(0, payloads)
    }
}

pub(super) fn shown(out: Vec<Output>) -> Vec<(String, Value)> {
    out.iter().map(|o| (format!("{} {}", o.role(), o.key()), o.to_json())).collect()
}

fn aggregate(start: &str, end: &str, store: &str, sold: i64, gross: &str, transactions: u64, revision: u32) -> Value {
    json!({
        "window": "w5", "window_start": format!("2026-11-27T{start}Z"), "window_end": format!("2026-11-27T{end}Z"),
        "store_id": store, "sku_id": "K1", "currency": "EUR",
        "units_sold": sold, "units_returned": 0, "gross_revenue": gross, "returns_revenue": "0.00",
        "net_revenue": gross, "transactions": transactions, "revision": revision
    })
}

#[test]
fn out_of_order_within_the_bound_is_counted_in_its_window() {
    let mut run = Run::new(CONFIG);
    let out = run.feed(&[
        sale(1, "10:01:00", "S1", 1, "10.00"),
        sale(2, "10:04:30", "S1", 2, "10.00"),
        sale(3, "10:04:00", "S1", 3, "10.00"), // 30 s out of order: within the 1 m bound
        sale(4, "10:05:59", "S1", 1, "10.00"), // watermark 10:04:59: nothing fires yet
    ]);
    assert_eq!(out, vec![]);
    let out = run.feed(&[sale(5, "10:06:00", "S1", 1, "10.00")]); // watermark 10:05:00
    assert_eq!(
        out,
        vec![(
            "aggregates w5|2026-11-27T10:00:00Z|S1|K1|EUR".into(),
            aggregate("10:00:00", "10:05:00", "S1", 6, "60.00", 3, 1)
        )]
    );
}

#[test]
fn late_event_within_allowed_lateness_gives_revision_2() {
    let mut run = Run::new(CONFIG);
    run.feed(&[sale(1, "10:01:00", "S1", 1, "19.99"), sale(2, "10:06:00", "S1", 1, "19.99")]);
    let out = run.feed(&[sale(3, "10:02:00", "S1", 2, "19.99")]);
    assert_eq!(
        out,
        vec![(
            "aggregates w5|2026-11-27T10:00:00Z|S1|K1|EUR".into(),
            aggregate("10:00:00", "10:05:00", "S1", 3, "59.97", 2, 2)
        )]
    );
    assert_eq!(run.engine.stats().corrections, 1);
}

#[test]
fn too_late_goes_to_the_late_output_and_still_moves_inventory() {
    let mut run = Run::new(CONFIG);
    run.feed(&[
        stock(1, "RESTOCK", "10:00:00", "S1", 10),
        sale(2, "10:01:00", "S1", 1, "5.00"),
        sale(3, "10:16:00", "S1", 1, "5.00"),
    ]);
    // Watermark 10:15:00 = window end 10:05 + lateness 10m: the window is closed for good.
    let late = sale(4, "10:02:00", "S1", 2, "5.00");
    let out = run.feed(std::slice::from_ref(&late));
    assert_eq!(out.len(), 1);
    let (key, record) = &out[0];
    assert_eq!(key, "late 00000000-0000-4000-8000-000000000004");
    assert_eq!(record["reason_code"], "beyond_allowed_lateness");
    assert_eq!(
        record["reason"],
        "beyond_allowed_lateness: event_time 2026-11-27T10:02:00Z is too late for w5 (1 window) at watermark 2026-11-27T10:15:00Z; inventory applied it"
    );
    assert_eq!(record["original"], late.as_str());
    assert_eq!((record["topic"].as_str(), record["offset"].as_i64()), (Some("t.sales"), Some(3)));
    assert_eq!(run.engine.stats().late_events, 1);
    let mut flushed = Vec::new();
    run.engine.flush(&mut flushed);
    let inventory = &shown(flushed)[0].1;
    assert_eq!((inventory["on_hand"].as_i64(), inventory["available"].as_i64()), (Some(6), Some(6)));
}

#[test]
fn a_duplicate_is_counted_once() {
    let mut run = Run::new(CONFIG);
    let first = sale(1, "10:01:00", "S1", 2, "10.00");
    run.feed(&[first.clone(), first.clone(), stock(2, "RESTOCK", "10:00:00", "S1", 5)]);
    let out = run.feed(&[first, sale(3, "10:07:00", "S1", 1, "1.00")]);
    let out: Vec<_> = out.into_iter().filter(|(k, _)| k.starts_with("aggregates")).collect();
    assert_eq!(
        out,
        vec![(
            "aggregates w5|2026-11-27T10:00:00Z|S1|K1|EUR".into(),
            aggregate("10:00:00", "10:05:00", "S1", 2, "20.00", 1, 1)
        )]
    );
    assert_eq!(run.engine.stats().duplicates, 2);
    let mut flushed = Vec::new();
    run.engine.flush(&mut flushed);
    assert_eq!(shown(flushed)[0].1["on_hand"], 2, "5 restocked - 2 sold - 1 sold, each once");
}

#[test]
fn malformed_input_is_dead_lettered_with_its_reason_and_processing_goes_on() {
    let mut run = Run::new(CONFIG);
    let bad = stock(1, "SALE", "10:00:00", "S1", -1); // a SALE without price and currency
    let out = run.feed(&[bad.clone(), "garbage".into(), sale(2, "10:01:00", "S1", 1, "1.00")]);
    assert_eq!(
        out,
        vec![
            (
                "dead-letter t.sales/0/0".into(),
                json!({"reason": "missing_field: a SALE needs a unit_price", "reason_code": "missing_field", "original": bad,
                       "original_base64": false, "topic": "t.sales", "partition": 0, "offset": 0})
            ),
            (
                "dead-letter t.sales/0/1".into(),
                json!({"reason": "not_json: not JSON: expected value at line 1 column 1", "reason_code": "not_json", "original": "garbage",
                       "original_base64": false, "topic": "t.sales", "partition": 0, "offset": 1})
            ),
        ]
    );
    let stats = run.engine.stats();
    assert_eq!((stats.events_in, stats.dead_lettered, stats.events_applied), (3, 2, 1));
    assert_eq!(stats.dead_letter_reasons.get("missing_field"), Some(&1));
}

#[test]
fn event_beyond_the_future_skew_is_dead_lettered_and_does_not_move_the_watermark() {
    let mut run = Run::new(CONFIG); // processing time 12:00, skew 15m
    let out = run.feed(&[sale(1, "23:59:00", "S1", 1, "1.00")]);
    assert_eq!(
        out[0].1["reason"],
        "event_time_in_future: event_time 2026-11-27T23:59:00Z is more than 15m ahead of processing time 2026-11-27T12:00:00Z"
    );
    assert_eq!(run.engine.watermark(), i64::MIN);
    run.feed(&[sale(2, "10:01:00", "S1", 1, "1.00")]);
    assert_eq!(run.engine.watermark(), at("10:00:00"), "later events are not late");
}

#[test]
fn reference_data_change_applies_to_later_events_only() {
    let yaml = CONFIG.replace("groupBy: [store, sku]", "groupBy: [region, category, channel]");
    let mut run = Run::new(&yaml);
    let store = store_s1;
    run.engine.apply_reference(&ReferenceUpdate::Store(store("eu-central")));
    run.feed(&[sale(1, "10:01:00", "S1", 1, "1.00")]);
    run.engine.apply_reference(&ReferenceUpdate::Store(store("eu-west")));
    run.engine.apply_reference(&ReferenceUpdate::Product(ProductRecord {
        sku_id: "K1".into(),
        name: "Trail shoe".into(),
        category: "running".into(),
        brand: "Stridex".into(),
        price_band: "mid".into(),
        list_price: "89.90".into(),
    }));
    run.feed(&[sale(2, "10:02:00", "S1", 2, "1.00")]);
    run.engine.apply_reference(&ReferenceUpdate::StoreRemoved("S1".into()));
    run.feed(&[sale(3, "10:03:00", "S1", 4, "1.00")]);
    assert_eq!(
        units_sold_at_finish(&mut run),
        vec![
            ("aggregates w5|2026-11-27T10:00:00Z|eu-central|unknown|physical|EUR".to_string(), 1),
            ("aggregates w5|2026-11-27T10:00:00Z|eu-west|running|physical|EUR".to_string(), 2),
            ("aggregates w5|2026-11-27T10:00:00Z|unknown|running|unknown|EUR".to_string(), 4),
        ]
    );
}

#[test]
fn an_idle_partition_stops_holding_windows_back() {
    let mut run = Run::new(CONFIG);
    run.engine.assign(1);
    run.feed_on(0, &[sale(1, "10:01:00", "S1", 1, "1.00"), sale(2, "10:07:00", "S1", 1, "1.00")]);
    assert_eq!(run.engine.watermark(), i64::MIN, "partition 1 has sent nothing");
    let mut out = Vec::new();
    run.engine.tick(at("12:00:59"), &mut out);
    assert!(out.is_empty());
    run.engine.tick(at("12:01:00"), &mut out);
    assert_eq!(
        shown(out),
        vec![(
            "aggregates w5|2026-11-27T10:00:00Z|S1|K1|EUR".into(),
            aggregate("10:00:00", "10:05:00", "S1", 1, "1.00", 1, 1)
        )]
    );
}

#[test]
fn inventory_records_carry_velocity_and_sell_through() {
    let mut run = Run::new(CONFIG);
    run.feed(&[
        stock(1, "RESTOCK", "10:00:00", "S1", 100),
        sale(2, "10:01:00", "S1", 14, "1.00"),
        stock(3, "RESERVATION", "10:02:00", "S1", 2),
    ]);
    let mut out = Vec::new();
    run.engine.flush(&mut out);
    assert_eq!(
        shown(out),
        vec![(
            "inventory-state S1|K1".into(),
            json!({"store_id": "S1", "sku_id": "K1", "on_hand": 86, "reserved": 2, "available": 84,
                   "last_event_time": "2026-11-27T10:02:00Z", "velocity_7d": 2.0, "days_of_inventory": 42.0,
                   "sell_through_date": "2027-01-08"})
        )]
    );
}

/// Windows grouped without `store` on three tasks, merged through partials, give exactly the
/// figures one engine gives for the same events, when nothing is late for any of them (the
/// only case where one engine's watermark and three tasks' agree on what is late).
#[test]
fn three_tasks_merged_give_the_figures_of_one_engine() {
    use crate::generator::brand::{catalog, stores};
    use crate::generator::{Traffic, TrafficOptions};
    use std::collections::BTreeMap;

    let yaml = "name: t\nprocessing:\n  windows:\n\
                \x20   - {name: region-5m, type: tumbling, size: 5m, groupBy: [region, channel]}\n\
                \x20   - {name: category-15m, type: sliding, size: 15m, slide: 5m, groupBy: [category]}\n\
                \x20 maxOutOfOrderness: 1h\n  allowedLateness: 1d\n  idleTimeout: 1d\n  maxFutureSkew: 1d\n\
                \x20 dedupe: {horizon: 1d}\n";
    let config = PipelineConfig::from_text(yaml, "test").unwrap();
    let options = TrafficOptions { seed: 5, peak_events_per_second: 200.0, ..TrafficOptions::default() };
    let events: Vec<_> = Traffic::new(options.clone(), &stores(), &catalog()).take(20_000).collect();
    let engine_of = |task: u32, tasks: u32| {
        let mut engine = Engine::new(&config, options.start);
        engine.scale_out(task, tasks);
        for update in stores().into_iter().map(ReferenceUpdate::Store) {
            engine.apply_reference(&update);
        }
        for update in catalog().into_iter().map(ReferenceUpdate::Product) {
            engine.apply_reference(&update);
        }
        engine.assign(0);
        engine
    };
    let topic: Arc<str> = Arc::from("t.sales");
    let last_values = |outputs: Vec<Output>| -> BTreeMap<String, (i64, String, u64)> {
        outputs
            .into_iter()
            .filter_map(|o| match o {
                Output::Aggregate(r) => Some((r.key(), (r.units_sold, r.net_revenue.to_string(), r.transactions))),
                _ => None,
            })
            .collect()
    };

    let mut one = engine_of(0, 1);
    assert!(!one.repartitions());
    let mut single = Vec::new();
    for (offset, event) in events.iter().enumerate() {
        let input =
            InputRecord { stream: 0, topic: &topic, partition: 0, offset: offset as i64, payload: &event.payload };
        one.process(&input, &mut single);
    }
    one.finish(&mut single);
    assert_eq!(one.stats().late_events, 0, "the config makes nothing late");

    let tasks = 3u32;
    let mut engines: Vec<Engine> = (0..tasks).map(|t| engine_of(t, tasks)).collect();
    assert!(engines[0].repartitions());
    let mut outputs = Vec::new();
    for (offset, event) in events.iter().enumerate() {
        let task = crate::partitioner::partition_of(event.key.as_bytes(), tasks) as usize;
        let input = InputRecord {
            stream: 0,
            topic: &topic,
            partition: task as i32,
            offset: offset as i64,
            payload: &event.payload,
        };
        engines[task].process(&input, &mut outputs);
    }
    for engine in &mut engines {
        engine.finish_inputs(&mut outputs);
    }
    let partials: Vec<Output> = outputs.iter().filter(|o| matches!(o, Output::Partial(_))).cloned().collect();
    assert!(partials.len() > 100, "{} partials", partials.len());
    assert!(!outputs.iter().any(|o| matches!(o, Output::Aggregate(_))), "no task writes a merged window itself");
    let mut merged = Vec::new();
    let repartition: Arc<str> = Arc::from("t.repartition");
    for (offset, partial) in partials.iter().enumerate() {
        let Output::Partial(p) = partial else { continue };
        let owner = crate::partitioner::partition_of(p.key().as_bytes(), tasks) as usize;
        let payload = serde_json::to_vec(&partial.to_json()).unwrap();
        let input = InputRecord {
            stream: 0,
            topic: &repartition,
            partition: owner as i32,
            offset: offset as i64,
            payload: &payload,
        };
        engines[owner].merge_input(&input, &mut merged);
    }
    for engine in &mut engines {
        engine.finish_merge(&mut merged);
    }
    assert!(!merged.iter().any(|o| matches!(o, Output::DeadLetter(_))), "every partial is a valid record");
    let expected = last_values(single);
    assert!(expected.len() > 150, "{} groups", expected.len());
    assert_eq!(last_values(merged), expected);
}

#[test]
fn a_sale_on_a_channel_this_version_does_not_know_counts_on_the_store_channel() {
    let yaml = CONFIG.replace("groupBy: [store, sku]", "groupBy: [store, channel]");
    let mut run = Run::new(&yaml);
    run.engine.apply_reference(&ReferenceUpdate::Store(store_s1("eu-central")));
    let with_channel = |id: u32, channel: &str| {
        let mut v: Value = serde_json::from_str(&sale(id, "10:01:00", "S1", 1, "2.00")).unwrap();
        v["channel"] = json!(channel);
        v.to_string()
    };
    let out = run.feed(&[with_channel(1, "pos"), with_channel(2, "Online"), with_channel(3, "kiosk")]);
    assert!(out.iter().all(|(k, _)| !k.starts_with("dead-letter")), "{out:?}");
    assert_eq!(
        units_sold_at_finish(&mut run),
        vec![
            ("aggregates w5|2026-11-27T10:00:00Z|S1|online|EUR".to_string(), 1),
            ("aggregates w5|2026-11-27T10:00:00Z|S1|physical|EUR".to_string(), 2),
        ]
    );
    assert_eq!(run.engine.stats().unknown_channels, 2);
    assert_eq!(run.engine.stats().events_applied, 3);
}

/// One delivered event as the offline-store test sees it: store, event time, id, payload.
struct Delivered {
    store: String,
    time: i64,
    id: String,
    payload: Vec<u8>,
}

impl Delivered {
    fn of(payload: &[u8]) -> Option<Delivered> {
        // Only events the schema accepts: the dead-lettered ones touch nothing.
        crate::event::parse_event(payload).ok()?;
        let v: Value = serde_json::from_slice(payload).ok()?;
        Some(Delivered {
            store: v["store_id"].as_str()?.to_string(),
            time: parse_rfc3339_millis(v["event_time"].as_str()?)?,
            id: v["event_id"].as_str()?.to_lowercase(),
            payload: payload.to_vec(),
        })
    }
}

/// The dedupe bound as docs/processor.md states it, counted from the input: per store, the
/// distinct ids of its events in the slices (a sixteenth of the horizon each) that are not
/// wholly more than the horizon behind that store's newest event.
fn dedupe_bound(delivered: &[Delivered], horizon: i64) -> usize {
    let slice = horizon / 16;
    let mut first_seen: std::collections::HashMap<&str, &Delivered> = std::collections::HashMap::new();
    for d in delivered {
        first_seen.entry(&d.id).or_insert(d);
    }
    let mut newest: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for d in first_seen.values() {
        let t = newest.entry(&d.store).or_insert(i64::MIN);
        *t = (*t).max(d.time);
    }
    first_seen
        .values()
        .filter(|d| d.time.div_euclid(slice) >= (newest[d.store.as_str()] - horizon).div_euclid(slice))
        .count()
}

#[test]
fn a_store_back_after_six_hours_offline_has_every_buffered_event_applied_once() {
    use crate::generator::brand::{catalog, stores};
    use crate::generator::{Traffic, TrafficOptions};
    const HOUR: i64 = 3_600_000;

    let config = PipelineConfig::example();
    let horizon = config.processing.dedupe.horizon.as_millis_i64();
    assert_eq!(horizon, HOUR);
    let options =
        TrafficOptions { seed: 21, peak_events_per_second: 3.0, late_share: 0.0, ..TrafficOptions::default() };
    let start = options.start;
    let traffic: Vec<_> =
        Traffic::new(options, &stores(), &catalog()).take_while(|e| e.arrival < start + 8 * HOUR).collect();
    // The busiest physical store goes offline from hour 1 to hour 7 and keeps selling: its
    // terminals buffer, then upload, after every other store has moved on an hour further.
    let physical: Vec<String> =
        stores().into_iter().filter(|s| s.channel == Channel::Physical).map(|s| s.store_id).collect();
    let mut per_store = std::collections::BTreeMap::<String, usize>::new();
    for e in &traffic {
        if let Some(d) = Delivered::of(&e.payload).filter(|d| physical.contains(&d.store)) {
            *per_store.entry(d.store).or_default() += 1;
        }
    }
    let offline = per_store.iter().max_by_key(|(store, n)| (**n, std::cmp::Reverse(*store))).unwrap().0.clone();
    let outage = start + HOUR..start + 7 * HOUR;
    let is_buffered = |e: &crate::generator::GeneratedEvent| {
        outage.contains(&e.arrival) && Delivered::of(&e.payload).is_some_and(|d| d.store == offline)
    };
    let (buffered, online): (Vec<_>, Vec<_>) = traffic.iter().partition(|e| is_buffered(e));
    // The last ten events the store sent before the outage were never acknowledged: its
    // terminals send them again, first thing on reconnecting.
    let retries: Vec<_> = online
        .iter()
        .filter(|e| e.arrival < outage.start && Delivered::of(&e.payload).is_some_and(|d| d.store == offline))
        .rev()
        .take(10)
        .copied()
        .collect();
    assert!(buffered.len() > 500, "six hours of a busy store: {}", buffered.len());

    let mut engine = Engine::new(&config, start);
    for update in stores().into_iter().map(ReferenceUpdate::Store) {
        engine.apply_reference(&update);
    }
    engine.assign(0);
    let topic: Arc<str> = Arc::from("acme-sports.sales");
    let mut delivered = Vec::new();
    let mut late_ids = std::collections::BTreeSet::new();
    let mut feed =
        |engine: &mut Engine, events: &[&crate::generator::GeneratedEvent], delivered: &mut Vec<Delivered>| {
            let mut out = Vec::new();
            for (offset, e) in events.iter().enumerate() {
                engine.tick(e.arrival, &mut out);
                let input =
                    InputRecord { stream: 0, topic: &topic, partition: 0, offset: offset as i64, payload: &e.payload };
                engine.process(&input, &mut out);
                delivered.extend(Delivered::of(&e.payload));
            }
            for o in out {
                if let Output::Late(late) = o {
                    assert_eq!(late.reason_code, "beyond_allowed_lateness", "{}", late.reason);
                    late_ids.insert(late.event_id);
                }
            }
        };
    // The store comes back at hour 7 and uploads its buffer, oldest first, before its new sales.
    let back = online.iter().position(|e| e.arrival >= outage.end).unwrap();
    feed(&mut engine, &online[..back], &mut delivered);
    let watermark_at_upload = engine.watermark();
    assert!(watermark_at_upload > outage.end - 60_000, "the other stores moved on to the end of the outage");
    assert_eq!(engine.state_size().dedupe_ids, dedupe_bound(&delivered, horizon), "before the upload");
    let upload: Vec<_> = retries.iter().chain(buffered.iter()).copied().collect();
    feed(&mut engine, &upload, &mut delivered);
    assert_eq!(engine.watermark(), watermark_at_upload, "the buffer is older than the watermark");
    feed(&mut engine, &online[back..], &mut delivered);
    assert_eq!(engine.state_size().dedupe_ids, dedupe_bound(&delivered, horizon), "at the end");
    assert_eq!(engine.stats().beyond_dedupe_horizon, 0);

    // Inventory: the straightforward fold of every valid event, each id once.
    let mut seen = std::collections::HashSet::new();
    let mut expected = std::collections::BTreeMap::<(String, String), (i64, i64)>::new();
    let mut expected_late = std::collections::BTreeSet::new();
    let buffered_ids: std::collections::HashSet<String> =
        buffered.iter().filter_map(|e| Delivered::of(&e.payload)).map(|d| d.id).collect();
    for d in &delivered {
        if !seen.insert(d.id.clone()) {
            continue;
        }
        let v: Value = serde_json::from_slice(&d.payload).unwrap();
        let (kind, delta) = (v["event_type"].as_str().unwrap(), v["quantity_delta"].as_i64().unwrap());
        let position = expected.entry((d.store.clone(), v["sku_id"].as_str().unwrap().to_string())).or_default();
        if kind.starts_with("RESERVATION") {
            position.1 += delta;
        } else {
            position.0 += delta;
        }
        // A buffered sale or return is late when its first window (the 5-minute one: the
        // hour-long sliding windows that hold it end with it or later) had closed, 10 minutes
        // of lateness after its end, at the watermark of the upload.
        let first_end = d.time.div_euclid(300_000) * 300_000 + 300_000;
        if buffered_ids.contains(&d.id)
            && matches!(kind, "SALE" | "RETURN")
            && first_end + 600_000 <= watermark_at_upload
        {
            expected_late.insert(d.id.clone());
        }
    }
    let inventory: std::collections::BTreeMap<(String, String), (i64, i64)> =
        engine.positions().map(|p| ((p.store_id.to_string(), p.sku_id.to_string()), (p.on_hand, p.reserved))).collect();
    assert_eq!(inventory, expected);
    assert!(expected_late.len() > 300, "{}", expected_late.len());
    assert_eq!(late_ids, expected_late, "the late output holds the buffered sales and returns of closed windows");
    assert!(engine.stats().duplicates >= 10, "the retries were recognised");
}

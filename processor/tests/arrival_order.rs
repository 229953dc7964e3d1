//! Property: any arrival order that keeps within the out-of-orderness bound gives identical
//! final aggregates and inventory, across partitions, with duplicates.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value, json};
use stockpulse_processor::config::PipelineConfig;
use stockpulse_processor::engine::{Engine, InputRecord};
use stockpulse_processor::output::Output;

const CONFIG: &str = r#"
name: prop
processing:
  groupBy: [store, sku]
  windows:
    - {name: t1m, type: tumbling, size: 1m}
    - {name: s3m, type: sliding, size: 3m, slide: 1m, groupBy: [sku, channel]}
  maxOutOfOrderness: 20s
  allowedLateness: 0s
  dedupe: {horizon: 1h}
"#;
const BOUND_MS: i64 = 20_000;
const START: i64 = 1_795_773_600_000;
const KINDS: [(&str, i64); 6] =
    [("SALE", -1), ("SALE", -3), ("RETURN", 1), ("RESTOCK", 5), ("RESERVATION", 2), ("ADJUSTMENT", -1)];

#[derive(Debug, Clone)]
struct Spec {
    gap_ms: i64,
    store: usize,
    sku: usize,
    kind: usize,
    delay_ms: i64,
    duplicate: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (0i64..15_000, 0usize..3, 0usize..4, 0usize..KINDS.len(), 0..=BOUND_MS, proptest::bool::weighted(0.1)).prop_map(
        |(gap_ms, store, sku, kind, delay_ms, duplicate)| Spec { gap_ms, store, sku, kind, delay_ms, duplicate },
    )
}

fn payload(i: usize, time: i64, s: &Spec) -> String {
    let (kind, delta) = KINDS[s.kind];
    let mut v = json!({
        "event_id": format!("00000000-0000-4000-8000-{i:012}"),
        "event_type": kind,
        "event_time": chrono::DateTime::from_timestamp_millis(time).unwrap().to_rfc3339(),
        "store_id": format!("S{}", s.store), "sku_id": format!("K{}", s.sku), "quantity_delta": delta,
        "channel": if s.store == 0 { "online" } else { "physical" },
    });
    if kind == "SALE" || kind == "RETURN" {
        v["unit_price"] = json!(format!("{}.{:02}", 10 + s.sku, 5 * s.kind));
        v["currency"] = json!("EUR");
    }
    v.to_string()
}

/// Runs events in the given order; returns the final figures of every aggregate key and the
/// final inventory positions.
fn final_state(arrivals: &[(usize, String)]) -> (BTreeMap<String, Value>, BTreeMap<String, (i64, i64)>) {
    let config = PipelineConfig::from_text(CONFIG, "prop").unwrap();
    let mut engine = Engine::new(&config, START + 86_400_000);
    let topic: Arc<str> = Arc::from("prop.sales");
    for p in 0..3 {
        engine.assign(p);
    }
    let mut out = Vec::new();
    for (offset, (partition, payload)) in arrivals.iter().enumerate() {
        let input = InputRecord {
            stream: *partition,
            topic: &topic,
            partition: *partition as i32,
            offset: offset as i64,
            payload: payload.as_bytes(),
        };
        engine.process(&input, &mut out);
    }
    engine.finish(&mut out);
    let mut aggregates: BTreeMap<String, Value> = BTreeMap::new();
    let mut inventory = BTreeMap::new();
    for o in &out {
        match o {
            Output::Aggregate(a) => {
                let mut figures = o.to_json();
                figures.as_object_mut().unwrap().remove("revision");
                aggregates.insert(a.key(), figures);
            }
            Output::Inventory(i) => {
                inventory.insert(i.key(), (i.on_hand, i.reserved));
            }
            Output::Late(l) => panic!("within the bound nothing is late: {}", l.reason),
            Output::DeadLetter(d) => panic!("generated events are valid: {}", d.reason),
            Output::Alert(_) => {}
            Output::Partial(p) => panic!("one engine merges nothing: {}", p.key()),
        }
    }
    (aggregates, inventory)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn bounded_disorder_does_not_change_the_result(specs in proptest::collection::vec(spec(), 1..120)) {
        // Events in event-time order, partitioned by store as producers do.
        let mut time = START;
        let mut in_order = Vec::new();
        for (i, s) in specs.iter().enumerate() {
            time += s.gap_ms;
            in_order.push((time, s.store, payload(i, time, s), s.delay_ms, s.duplicate));
        }
        // Each event is delayed by at most the bound: arrival = time + delay. Whatever the
        // delays, no event arrives more than the bound behind the newest one seen.
        let mut arrivals: Vec<(i64, usize, usize, String)> = Vec::new();
        for (seq, (time, store, payload, delay, duplicate)) in in_order.iter().enumerate() {
            arrivals.push((time + delay, seq, *store, payload.clone()));
            if *duplicate {
                arrivals.push((time + BOUND_MS, seq, *store, payload.clone()));
            }
        }
        arrivals.sort_by_key(|(at, seq, _, _)| (*at, *seq));
        let shuffled: Vec<(usize, String)> = arrivals.into_iter().map(|(_, _, p, e)| (p, e)).collect();
        let ordered: Vec<(usize, String)> = in_order.into_iter().map(|(_, p, e, _, _)| (p, e)).collect();

        let (expected_aggregates, expected_inventory) = final_state(&ordered);
        let (aggregates, inventory) = final_state(&shuffled);
        prop_assert_eq!(aggregates, expected_aggregates);
        prop_assert_eq!(inventory, expected_inventory);
    }
}

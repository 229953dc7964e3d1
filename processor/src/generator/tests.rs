use std::collections::HashMap;

use chrono::{DateTime, Timelike};

use super::*;
use crate::event::{Channel, EventType, parse_event};

fn traffic(options: TrafficOptions) -> Traffic {
    Traffic::new(options, &brand::stores(), &brand::catalog())
}

fn clean() -> TrafficOptions {
    TrafficOptions {
        out_of_order_share: 0.0,
        late_share: 0.0,
        duplicate_share: 0.0,
        malformed_share: 0.0,
        ..Default::default()
    }
}

#[test]
fn same_seed_same_events_other_seed_other_events() {
    let a: Vec<_> = traffic(TrafficOptions { seed: 7, ..Default::default() }).take(5_000).collect();
    let b: Vec<_> = traffic(TrafficOptions { seed: 7, ..Default::default() }).take(5_000).collect();
    let c: Vec<_> = traffic(TrafficOptions { seed: 8, ..Default::default() }).take(5_000).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn clean_traffic_is_valid_ordered_and_never_sells_missing_stock() {
    let stores: HashMap<String, Channel> = brand::stores().into_iter().map(|s| (s.store_id, s.channel)).collect();
    let mut on_hand: HashMap<(String, String), i64> = HashMap::new();
    let mut last_time = i64::MIN;
    let mut kinds: HashMap<EventType, u64> = HashMap::new();
    let (mut sales, mut returns) = (Vec::new(), 0u64);
    for generated in traffic(clean()).take(200_000) {
        let event = parse_event(&generated.payload).expect("clean traffic is valid");
        assert_eq!(generated.disorder, Disorder::None);
        assert!(event.event_time >= last_time, "clean traffic is in order");
        last_time = event.event_time;
        assert_eq!(generated.key, event.store_id);
        *kinds.entry(event.event_type).or_default() += 1;
        match event.event_type {
            EventType::Sale => sales.push(event.event_time),
            EventType::Return => returns += 1,
            _ => {}
        }
        let channel = stores[event.store_id.as_ref()];
        if event.event_type.changes_on_hand() {
            let stock = on_hand.entry((event.store_id.to_string(), event.sku_id.to_string())).or_default();
            *stock += event.quantity_delta;
            if channel != Channel::Warehouse {
                assert!(*stock >= 0, "{} {} sold below zero", event.store_id, event.sku_id);
            }
        }
        if channel == Channel::Physical && event.event_type == EventType::Sale {
            let local = DateTime::from_timestamp_millis(event.event_time).unwrap().with_timezone(
                &(if event.store_id.starts_with("EUC") {
                    chrono_tz::Europe::Berlin
                } else {
                    chrono_tz::America::New_York
                }),
            );
            assert!((9..20).contains(&local.hour()), "physical store sold at {local}");
        }
    }
    for kind in EventType::ALL {
        assert!(kinds.get(&kind).copied().unwrap_or(0) > 0, "no {kind} in 200k events");
    }
    // Every sale older than RETURN_WITHIN has had its chance of a return.
    let settled = sales.iter().filter(|&&t| t <= last_time - RETURN_WITHIN).count() as f64;
    let return_rate = returns as f64 / settled;
    assert!((0.065..0.11).contains(&return_rate), "returns are {return_rate:.3} of settled sales");
}

#[test]
fn disorder_shares_are_close_to_the_options() {
    let options = TrafficOptions {
        out_of_order_share: 0.05,
        late_share: 0.02,
        duplicate_share: 0.03,
        malformed_share: 0.01,
        ..Default::default()
    };
    let events: Vec<_> = traffic(options.clone()).take(100_000).collect();
    let share = |d: Disorder| events.iter().filter(|e| e.disorder == d).count() as f64 / events.len() as f64;
    assert!((0.04..0.06).contains(&share(Disorder::OutOfOrder)), "{}", share(Disorder::OutOfOrder));
    assert!((0.015..0.025).contains(&share(Disorder::Late)), "{}", share(Disorder::Late));
    assert!((0.025..0.035).contains(&share(Disorder::Duplicate)), "{}", share(Disorder::Duplicate));
    assert!((0.007..0.013).contains(&share(Disorder::Malformed)), "{}", share(Disorder::Malformed));
    for e in &events {
        let parsed = parse_event(&e.payload);
        match e.disorder {
            Disorder::Malformed => assert!(parsed.is_err(), "{}", String::from_utf8_lossy(&e.payload)),
            Disorder::OutOfOrder => {
                let lag = e.arrival - parsed.unwrap().event_time;
                assert!((1_000..=options.out_of_order_max_ms).contains(&lag), "{lag}");
            }
            Disorder::Late => {
                let lag = e.arrival - parsed.unwrap().event_time;
                assert!((options.late_min_ms..=options.late_max_ms).contains(&lag), "{lag}");
            }
            _ => assert!(parsed.is_ok()),
        }
    }
}

#[test]
fn popularity_is_skewed() {
    let mut per_sku: HashMap<String, u64> = HashMap::new();
    for e in traffic(clean()).take(100_000) {
        let event = parse_event(&e.payload).unwrap();
        if event.event_type == EventType::Sale {
            *per_sku.entry(event.sku_id.to_string()).or_default() += 1;
        }
    }
    let mut counts: Vec<u64> = per_sku.into_values().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let total: u64 = counts.iter().sum();
    let top_1_percent: u64 = counts.iter().take(24).sum();
    assert!(top_1_percent * 100 / total >= 15, "top 24 SKUs sell {top_1_percent} of {total}");
}

#[test]
fn opening_stocktake_counts_every_position_first() {
    let stores = brand::stores().len();
    let skus = brand::catalog().len();
    let options = TrafficOptions { opening_stocktake: true, ..clean() };
    let mut positions = std::collections::HashSet::new();
    for e in traffic(options).take(stores * skus) {
        let event = parse_event(&e.payload).unwrap();
        assert_eq!(event.event_type, EventType::Adjustment);
        assert!(event.quantity_delta > 0);
        positions.insert((event.store_id.to_string(), event.sku_id.to_string()));
    }
    assert_eq!(positions.len(), stores * skus);
}

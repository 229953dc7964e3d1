//! Each rule over hand-built streams, with the exact alerts expected.

use serde_json::{Value, json};

use crate::engine::tests::{Run, sale, stock};

fn config(policy: &str) -> String {
    format!(
        "name: t\nprocessing:\n  groupBy: [store, sku]\n  windows:\n    - {{name: w5, type: tumbling, size: 5m}}\n  maxOutOfOrderness: 1m\n  allowedLateness: 10m\n  idleTimeout: 1m\n  maxFutureSkew: 15m\n  dedupe: {{horizon: 1h}}\nalerts:\n  - {policy}\n"
    )
}

/// The alerts among outputs: (alert id, record).
fn alerts(out: Vec<(String, Value)>) -> Vec<(String, Value)> {
    out.into_iter().filter_map(|(k, v)| k.strip_prefix("alerts ").map(|id| (id.to_string(), v))).collect()
}

fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[test]
fn low_stock_fires_once_per_fall_and_rearms_above_the_band() {
    let mut run = Run::new(&config("{name: low, lowStock: {threshold: 2, hysteresis: 3}, cooldown: 1m}"));
    let out = run.feed(&[
        stock(1, "RESTOCK", "10:00:00", "S1", 10),
        sale(2, "10:01:00", "S1", 8, "1.00"),     // 2: falls through the threshold
        stock(3, "RESTOCK", "10:02:00", "S1", 1), // 3: hovers
        sale(4, "10:03:00", "S1", 1, "1.00"),     // 2: falls again, not re-armed
        stock(5, "RESTOCK", "10:04:00", "S1", 3), // 5: at the band's top, still not re-armed
        sale(6, "10:05:00", "S1", 3, "1.00"),     // 2: nothing
        stock(7, "RESTOCK", "10:06:00", "S1", 4), // 6: above 2 + 3: re-armed
        sale(8, "10:07:00", "S1", 6, "1.00"),     // 0: fires, critical
    ]);
    let fired = alerts(out);
    assert_eq!(
        fired[0],
        (
            format!("low/lowStock/S1|K1/{}", id(2)),
            json!({
                "alert_id": format!("low/lowStock/S1|K1/{}", id(2)),
                "policy": "low", "rule": "lowStock", "severity": "warning",
                "store_id": "S1", "sku_id": "K1", "region": "unknown", "category": "unknown",
                "figures": {"available": 2, "threshold": 2, "rearm_above": 5},
                "event_time": "2026-11-27T10:01:00Z", "event_id": id(2),
                "message": "S1|K1: available 2 is at or below 2; fires again once it has climbed above 5 (low lowStock)"
            })
        )
    );
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(fired[1].0, format!("low/lowStock/S1|K1/{}", id(8)));
    assert_eq!(
        (fired[1].1["severity"].as_str(), fired[1].1["figures"]["available"].as_i64()),
        (Some("critical"), Some(0))
    );

    // Re-armed again, but the next fall comes within the minute's cooldown: held back.
    let out = run.feed(&[stock(9, "RESTOCK", "10:07:10", "S1", 9), sale(10, "10:07:30", "S1", 8, "1.00")]);
    assert_eq!(alerts(out), vec![]);
    assert_eq!(run.engine.stats().alerts_suppressed, 1);
    // That fall is spent: another climb, another fall after the cooldown fires.
    let out = run.feed(&[stock(11, "RESTOCK", "10:09:00", "S1", 9), sale(12, "10:10:00", "S1", 9, "1.00")]);
    assert_eq!(
        alerts(out).iter().map(|(k, _)| k.clone()).collect::<Vec<_>>(),
        [format!("low/lowStock/S1|K1/{}", id(12))]
    );
}

#[test]
fn low_stock_ignores_a_position_never_seen_above_the_threshold() {
    let mut run = Run::new(&config("{name: low, lowStock: {threshold: 2}, cooldown: 1m}"));
    // Stock never counted: the sale takes it below zero, which says nothing about a fall.
    let out = run.feed(&[sale(1, "10:00:00", "S1", 1, "1.00"), stock(2, "RESERVATION", "10:01:00", "S1", 1)]);
    assert_eq!(alerts(out), vec![]);
}

#[test]
fn stuck_inventory_fires_once_per_episode() {
    let mut run = Run::new(&config("{name: stuck, stuckInventory: {period: 30m, minEvents: 3}, cooldown: 1h}"));
    let out = run.feed(&[
        stock(1, "RESTOCK", "10:00:00", "S1", 5),
        stock(2, "RESERVATION", "10:10:00", "S1", 1),
        stock(3, "RESERVATION_RELEASE", "10:20:00", "S1", -1),
        stock(4, "RESERVATION", "10:25:00", "S1", 1), // 3 events, but only 25 minutes
        stock(5, "RESERVATION_RELEASE", "10:31:00", "S1", -1), // 31 minutes, 4 events: fires
        stock(6, "RESERVATION", "10:40:00", "S1", 1), // the same episode: quiet
    ]);
    let fired = alerts(out);
    assert_eq!(
        fired,
        vec![(
            format!("stuck/stuckInventory/S1|K1/{}", id(5)),
            json!({
                "alert_id": format!("stuck/stuckInventory/S1|K1/{}", id(5)),
                "policy": "stuck", "rule": "stuckInventory", "severity": "warning",
                "store_id": "S1", "sku_id": "K1", "region": "unknown", "category": "unknown",
                "figures": {"on_hand": 5, "unchanged_since": "2026-11-27T10:00:00Z", "events_since_change": 4},
                "event_time": "2026-11-27T10:31:00Z", "event_id": id(5),
                "message": "S1|K1: on hand 5 has not moved since 2026-11-27T10:00:00Z despite 4 events (stuck stuckInventory)"
            })
        )]
    );
    // A sale moves stock: a new episode, which meets the rule at 11:21, within the hour's
    // cooldown of 10:31: held back.
    let out = run.feed(&[
        sale(7, "10:50:00", "S1", 1, "1.00"),
        stock(8, "RESERVATION_RELEASE", "11:00:00", "S1", -1),
        stock(9, "RESERVATION", "11:10:00", "S1", 1),
        stock(10, "RESERVATION_RELEASE", "11:21:00", "S1", -1),
    ]);
    assert_eq!(alerts(out), vec![]);
    assert_eq!(run.engine.stats().alerts_suppressed, 1);
}

#[test]
fn amount_outlier_judges_a_line_against_the_stores_distribution() {
    let mut run = Run::new(&config("{name: big, amountOutlier: {sigma: 3, minSamples: 5}, cooldown: 1m}"));
    let out = run.feed(&[
        sale(1, "10:00:00", "S1", 1, "10.00"),
        sale(2, "10:00:01", "S1", 1, "10.00"),
        sale(3, "10:00:02", "S1", 50, "10.00"), // far off, but only 2 lines known
        sale(4, "10:00:03", "S1", 1, "10.00"),
        sale(5, "10:00:04", "S1", 1, "10.00"),
    ]);
    assert_eq!(alerts(out), vec![]);
    // 5 lines: 10, 10, 500, 10, 10: mean 108, standard deviation 219.135...
    let out = run.feed(&[sale(6, "10:00:05", "S1", 1, "12.00"), sale(7, "10:00:06", "S1", 200, "10.00")]);
    let fired = alerts(out);
    assert_eq!(fired.len(), 1, "{fired:?}");
    let (key, record) = &fired[0];
    assert_eq!(key, &format!("big/amountOutlier/S1/{}", id(7)));
    let f = &record["figures"];
    // After 6 lines (10, 10, 500, 10, 10, 12): mean 92, sample variance 39,952.
    assert_eq!((f["value"].as_f64(), f["samples"].as_u64(), f["sigma"].as_f64()), (Some(2000.0), Some(6), Some(3.0)));
    assert!((f["mean"].as_f64().unwrap() - 92.0).abs() < 1e-9, "{f}");
    assert!((f["stddev"].as_f64().unwrap() - 39_952f64.sqrt()).abs() < 1e-9, "{f}");
    assert_eq!((record["store_id"].as_str(), record["sku_id"].as_str()), (Some("S1"), Some("K1")));
    // Within the cooldown another one is held back.
    let out = run.feed(&[sale(8, "10:00:30", "S1", 900, "10.00")]);
    assert_eq!(alerts(out), vec![]);
    assert_eq!(run.engine.stats().alerts_suppressed, 1);
}

#[test]
fn sales_spike_compares_a_window_with_its_groups_baseline() {
    let mut run = Run::new(&config(
        "{name: spike, salesSpike: {window: w5, factor: 3, baselineWindows: 4, minBaseline: 2}, cooldown: 1m}",
    ));
    let mut events = Vec::new();
    for (n, minute) in [0, 5, 10, 15].into_iter().enumerate() {
        // Two units in each of four windows: a baseline of 2.
        events.push(sale(n as u32 + 1, &format!("10:{minute:02}:30"), "S1", 2, "1.00"));
    }
    events.push(sale(5, "10:20:30", "S1", 7, "1.00")); // 3.5 x 2
    events.push(sale(6, "10:26:00", "S1", 1, "1.00")); // watermark 10:25: the 10:20 window fires
    let fired = alerts(run.feed(&events));
    assert_eq!(
        fired,
        vec![(
            "spike/salesSpike/S1|K1|EUR/2026-11-27T10:20:00Z".to_string(),
            json!({
                "alert_id": "spike/salesSpike/S1|K1|EUR/2026-11-27T10:20:00Z",
                "policy": "spike", "rule": "salesSpike", "severity": "warning",
                "store_id": "S1", "sku_id": "K1", "window": "w5",
                "window_start": "2026-11-27T10:20:00Z", "window_end": "2026-11-27T10:25:00Z",
                "figures": {"measure": "units", "value": 7.0, "baseline": 2.0, "factor": 3.0},
                "event_time": "2026-11-27T10:25:00Z",
                "message": "S1|K1|EUR: w5 units 7.00 in 2026-11-27T10:20:00Z is 3.5x the baseline 2.00 (factor 3) (spike salesSpike)"
            })
        )]
    );
    // A late sale corrects the 10:20 window (8 units): the same cause, no second alert.
    let out = run.feed(&[sale(7, "10:21:00", "S1", 1, "1.00")]);
    assert!(out.iter().any(|(k, v)| k.starts_with("aggregates") && v["revision"] == 2), "{out:?}");
    assert_eq!(alerts(out), vec![]);
}

#[test]
fn sales_spike_waits_for_a_whole_baseline() {
    let mut run = Run::new(&config(
        "{name: spike, salesSpike: {window: w5, factor: 3, baselineWindows: 4, minBaseline: 2}, cooldown: 1m}",
    ));
    // Only three windows before the big one: no baseline yet.
    let out = run.feed(&[
        sale(1, "10:05:30", "S1", 2, "1.00"),
        sale(2, "10:10:30", "S1", 2, "1.00"),
        sale(3, "10:15:30", "S1", 2, "1.00"),
        sale(4, "10:20:30", "S1", 30, "1.00"),
        sale(5, "10:26:00", "S1", 1, "1.00"),
    ]);
    assert_eq!(alerts(out), vec![]);
}

#[test]
fn a_replay_fires_the_same_alert_ids() {
    let policy = "{name: low, lowStock: {threshold: 2}, cooldown: 1m}";
    let events = [
        stock(1, "RESTOCK", "10:00:00", "S1", 10),
        sale(2, "10:01:00", "S1", 8, "1.00"),
        sale(3, "10:01:30", "S1", 1, "1.00"),
    ];
    let first = alerts(Run::new(&config(policy)).feed(&events));
    let second = alerts(Run::new(&config(policy)).feed(&events));
    assert_eq!(first.len(), 1);
    assert_eq!(first, second);
}

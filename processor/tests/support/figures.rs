//! The figures of a run, read back from the output topics or from `replay` of the same
//! events, and their comparison.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{Pipeline, last_values, replay_lines};

/// The figures of a run, each keyed as the output topics key them.
#[derive(Debug, PartialEq)]
pub struct Figures {
    pub aggregates: BTreeMap<String, Value>,
    pub inventory: BTreeMap<String, Value>,
    pub alerts: BTreeMap<String, Value>,
    /// (reason code, original bytes), sorted.
    pub dead_letters: Vec<(String, String)>,
    pub late: Vec<String>,
}

pub fn aggregate_key(v: &Value) -> String {
    let mut key = format!("{}|{}", v["window"].as_str().unwrap(), v["window_start"].as_str().unwrap());
    for dim in ["store_id", "sku_id", "region", "category", "channel"] {
        if let Some(d) = v.get(dim).and_then(Value::as_str) {
            key.push('|');
            key.push_str(d);
        }
    }
    key.push('|');
    key.push_str(v["currency"].as_str().unwrap());
    key
}

pub fn from_replay(pipeline: &Pipeline) -> Figures {
    let out = pipeline.replay();
    let keyed = |name: &str, key: &dyn Fn(&Value) -> String| -> BTreeMap<String, Value> {
        replay_lines(&out, name).into_iter().map(|v| (key(&v), v)).collect()
    };
    let mut dead_letters: Vec<(String, String)> = replay_lines(&out, "dead-letter.ndjson")
        .iter()
        .map(|v| (v["reason_code"].as_str().unwrap().to_string(), v["original"].as_str().unwrap().to_string()))
        .collect();
    dead_letters.sort();
    let mut late: Vec<String> =
        replay_lines(&out, "late.ndjson").iter().map(|v| v["event_id"].as_str().unwrap().to_string()).collect();
    late.sort();
    Figures {
        aggregates: keyed("aggregates.ndjson", &aggregate_key),
        inventory: keyed("inventory.ndjson", &|v| {
            format!("{}|{}", v["store_id"].as_str().unwrap(), v["sku_id"].as_str().unwrap())
        }),
        alerts: keyed("alerts.ndjson", &|v| v["alert_id"].as_str().unwrap().to_string()),
        dead_letters,
        late,
    }
}

pub fn from_kafka(pipeline: &Pipeline) -> Figures {
    let mut dead_letters: Vec<(String, String)> = pipeline
        .read_topic("dead-letter")
        .iter()
        .map(|r| {
            (
                r.headers.get("stockpulse.reason_code").cloned().unwrap_or_default(),
                String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
            )
        })
        .collect();
    dead_letters.sort();
    // Late records are keyed by event id; a replayed transaction may not repeat one.
    let mut late: Vec<String> = pipeline.read_topic("late").iter().filter_map(|r| r.key.clone()).collect();
    late.sort();
    Figures {
        aggregates: last_values(&pipeline.read_topic("aggregates")),
        inventory: last_values(&pipeline.read_topic("inventory-state")),
        alerts: last_values(&pipeline.read_topic("alerts")),
        dead_letters,
        late,
    }
}

pub fn assert_same(kafka: &Figures, replay: &Figures) {
    assert!(replay.aggregates.len() > 1_000, "a meaningful run: {} aggregates", replay.aggregates.len());
    assert!(!replay.dead_letters.is_empty() && !replay.late.is_empty() && !replay.alerts.is_empty());
    let merged = replay.aggregates.keys().filter(|k| k.starts_with("region-channel-5m|")).count();
    assert!(merged > 20, "windows merged across tasks are compared too: {merged}");
    for (name, a, b) in [
        ("aggregates", &kafka.aggregates, &replay.aggregates),
        ("inventory", &kafka.inventory, &replay.inventory),
        ("alerts", &kafka.alerts, &replay.alerts),
    ] {
        if let Some(difference) = differences(name, a, b) {
            panic!("{difference}");
        }
    }
    assert_eq!(kafka.dead_letters, replay.dead_letters, "dead letters");
    assert_eq!(kafka.late, replay.late, "late events");
}

/// What differs between the last values of a run (`a`) and replay's (`b`): `None` when they
/// are the same, else the counts and the first few keys.
pub fn differences(name: &str, a: &BTreeMap<String, Value>, b: &BTreeMap<String, Value>) -> Option<String> {
    let missing: Vec<&String> = b.keys().filter(|k| !a.contains_key(*k)).collect();
    let extra: Vec<&String> = a.keys().filter(|k| !b.contains_key(*k)).collect();
    let differing: Vec<(&String, &Value, &Value)> =
        a.iter().filter_map(|(k, v)| b.get(k).filter(|w| *w != v).map(|w| (k, v, w))).collect();
    if missing.is_empty() && extra.is_empty() && differing.is_empty() {
        return None;
    }
    Some(format!(
        "{name}: {} on Kafka, {} in replay; {} missing {:?}, {} extra {:?}, {} differing (kafka, replay) {:?}",
        a.len(),
        b.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        extra.len(),
        &extra[..extra.len().min(5)],
        differing.len(),
        &differing[..differing.len().min(3)]
    ))
}

/// The aggregates of windows that end at or before `end` (RFC 3339, UTC, as the records
/// write it): those a watermark at `end` has fired.
pub fn ended_by(aggregates: &BTreeMap<String, Value>, end: &str) -> BTreeMap<String, Value> {
    aggregates
        .iter()
        .filter(|(_, v)| v["window_end"].as_str().is_some_and(|e| e <= end))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

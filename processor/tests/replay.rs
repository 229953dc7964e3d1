//! `replay` end to end, through the binary: the same input twice gives the same outputs, and
//! the figures equal those of an independent, straightforward computation written here
//! (full-memory dedupe, brute-force window assignment, a running watermark), not the engine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::Value;
use stockpulse_processor::config::{Dimension, PipelineConfig};

const BIN: &str = env!("CARGO_BIN_EXE_stockpulse-processor");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/pipeline.yaml");
const NOW: &str = "2027-01-01T00:00:00Z";

fn run(args: &[&str]) {
    let output = Command::new(BIN).args(args).output().expect("the binary runs");
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// `generate` with `args` into `dir`: the events, stores and catalog files.
fn generated(dir: &Path, args: &[&str]) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let files = (dir.join("events.ndjson"), dir.join("stores.ndjson"), dir.join("catalog.ndjson"));
    let mut all = vec!["generate"];
    all.extend_from_slice(args);
    all.extend(["--out", files.0.to_str().unwrap(), "--stores-out", files.1.to_str().unwrap()]);
    all.extend(["--catalog-out", files.2.to_str().unwrap()]);
    run(&all);
    files
}

/// `replay` of generated (events, stores, catalog) files with the example config into `out`,
/// with `args` more.
fn replay_generated(files: (&Path, &Path, &Path), out: &Path, args: &[&str]) {
    let (events, stores, catalog) = files;
    let mut all = vec!["replay", "--config", CONFIG, "--input", events.to_str().unwrap()];
    all.extend(["--stores", stores.to_str().unwrap(), "--catalog", catalog.to_str().unwrap()]);
    all.extend(["--out", out.to_str().unwrap(), "--now", NOW]);
    all.extend_from_slice(args);
    run(&all);
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn ms(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text).unwrap().timestamp_millis()
}

/// What the reference computation expects of one window group.
#[derive(Default, Debug, Clone, PartialEq)]
struct Figures {
    units_sold: i64,
    units_returned: i64,
    gross: Decimal,
    returns: Decimal,
    transactions: u64,
}

struct Reference {
    aggregates: BTreeMap<String, Figures>,
    inventory: BTreeMap<(String, String), (i64, i64)>,
    dead_letters: usize,
    late: usize,
    duplicates: usize,
}

/// Validation as DESIGN.md states it, written from the table, not from the engine.
fn valid(v: &Value) -> bool {
    let Some(o) = v.as_object() else { return false };
    let text = |k: &str| o.get(k).and_then(Value::as_str);
    let non_empty = |k: &str| text(k).is_some_and(|s| !s.is_empty());
    if !(non_empty("store_id") && non_empty("sku_id")) {
        return false;
    }
    if text("event_id").is_none_or(|s| uuid::Uuid::parse_str(s).is_err()) {
        return false;
    }
    if text("event_time").is_none_or(|s| chrono::DateTime::parse_from_rfc3339(s).is_err()) {
        return false;
    }
    let Some(delta) = o.get("quantity_delta").and_then(Value::as_i64) else { return false };
    let sign_ok = match text("event_type") {
        Some("SALE" | "TRANSFER_OUT" | "RESERVATION_RELEASE") => delta < 0,
        Some("RETURN" | "RESTOCK" | "TRANSFER_IN" | "RESERVATION") => delta > 0,
        Some("ADJUSTMENT") => delta != 0,
        _ => false,
    };
    if !sign_ok {
        return false;
    }
    if matches!(text("event_type"), Some("SALE" | "RETURN")) {
        let price_ok = text("unit_price")
            .is_some_and(|p| p.chars().all(|c| c.is_ascii_digit() || c == '.') && Decimal::from_str(p).is_ok());
        let currency_ok = text("currency").is_some_and(|c| c.len() == 3 && c.chars().all(|x| x.is_ascii_uppercase()));
        return price_ok && currency_ok;
    }
    true
}

fn reference(events: &Path, stores: &Path, catalog: &Path, config: &PipelineConfig) -> Reference {
    let store_info: HashMap<String, (String, String)> = lines(stores)
        .into_iter()
        .map(|s| {
            (
                s["store_id"].as_str().unwrap().to_string(),
                (s["region"].as_str().unwrap().to_string(), s["channel"].as_str().unwrap().to_string()),
            )
        })
        .collect();
    let categories: HashMap<String, String> = lines(catalog)
        .into_iter()
        .map(|p| (p["sku_id"].as_str().unwrap().to_string(), p["category"].as_str().unwrap().to_string()))
        .collect();
    let p = &config.processing;
    let bound = p.max_out_of_orderness.as_millis() as i64;
    let lateness = p.allowed_lateness.as_millis() as i64;
    let horizon = p.dedupe.horizon.as_millis() as i64;

    let mut r =
        Reference { aggregates: BTreeMap::new(), inventory: BTreeMap::new(), dead_letters: 0, late: 0, duplicates: 0 };
    let mut seen = HashSet::new();
    let mut store_newest: HashMap<String, i64> = HashMap::new();
    let mut max_time = i64::MIN;
    for line in std::fs::read_to_string(events).unwrap().lines() {
        let Some(v) = serde_json::from_str::<Value>(line).ok().filter(valid) else {
            r.dead_letters += 1;
            continue;
        };
        let t = ms(v["event_time"].as_str().unwrap());
        let store = v["store_id"].as_str().unwrap().to_string();
        // Dedupe is measured against each store's own newest event.
        let newest = store_newest.get(&store).copied();
        if newest.is_some_and(|newest| t < newest - horizon) {
            r.late += 1;
            continue;
        }
        if !seen.insert(v["event_id"].as_str().unwrap().to_lowercase()) {
            r.duplicates += 1;
            continue;
        }
        store_newest.insert(store.clone(), newest.map_or(t, |newest| newest.max(t)));
        let watermark = if max_time == i64::MIN { i64::MIN } else { max_time - bound };
        let sku = v["sku_id"].as_str().unwrap().to_string();
        let kind = v["event_type"].as_str().unwrap();
        let delta = v["quantity_delta"].as_i64().unwrap();
        let position = r.inventory.entry((store.clone(), sku.clone())).or_default();
        if kind.starts_with("RESERVATION") {
            position.1 += delta
        } else {
            position.0 += delta
        }

        if kind == "SALE" || kind == "RETURN" {
            let price = Decimal::from_str(v["unit_price"].as_str().unwrap()).unwrap();
            let (region, store_channel) =
                store_info.get(&store).cloned().unwrap_or(("unknown".into(), "unknown".into()));
            let channel = v["channel"].as_str().map(str::to_string).unwrap_or(store_channel);
            let category = categories.get(&sku).cloned().unwrap_or("unknown".into());
            let mut missed = false;
            for w in &p.windows {
                let (size, step) = (w.size.as_millis() as i64, w.step().as_millis() as i64);
                // Every window start k*step with start <= t < start + size.
                let mut start = t.div_euclid(step) * step;
                while start + size > t {
                    let end = start + size;
                    if watermark != i64::MIN && end + lateness <= watermark {
                        missed = true;
                    } else {
                        let dims = p.group_by_of(w);
                        let mut key = format!(
                            "{}|{}",
                            w.name,
                            chrono::DateTime::from_timestamp_millis(start)
                                .unwrap()
                                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                        );
                        for (dim, value) in [
                            (Dimension::Store, &store),
                            (Dimension::Sku, &sku),
                            (Dimension::Region, &region),
                            (Dimension::Category, &category),
                            (Dimension::Channel, &channel),
                        ] {
                            if dims.contains(&dim) {
                                key.push('|');
                                key.push_str(value);
                            }
                        }
                        key.push('|');
                        key.push_str(v["currency"].as_str().unwrap());
                        let f = r.aggregates.entry(key).or_default();
                        if kind == "SALE" {
                            f.units_sold += -delta;
                            f.gross += price * Decimal::from(-delta);
                            f.transactions += 1;
                        } else {
                            f.units_returned += delta;
                            f.returns += price * Decimal::from(delta);
                        }
                    }
                    start -= step;
                }
            }
            if missed {
                r.late += 1;
            }
        }
        max_time = max_time.max(t);
    }
    r
}

fn aggregate_key(a: &Value) -> String {
    let mut key = format!("{}|{}", a["window"].as_str().unwrap(), a["window_start"].as_str().unwrap());
    for field in ["store_id", "sku_id", "region", "category", "channel"] {
        if let Some(v) = a.get(field).and_then(Value::as_str) {
            key.push('|');
            key.push_str(v);
        }
    }
    key.push('|');
    key.push_str(a["currency"].as_str().unwrap());
    key
}

#[test]
fn replay_is_repeatable_and_matches_an_independent_computation() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (events, stores, catalog) = generated(dir.path(), &["--seed", "11", "--events", "40000", "--peak-rate", "60"]);
    for out in ["a", "b"] {
        replay_generated((&events, &stores, &catalog), &path(out), &[]);
    }
    for file in ["aggregates.ndjson", "inventory.ndjson", "alerts.ndjson", "dead-letter.ndjson", "late.ndjson"] {
        let (a, b) = (std::fs::read(path("a").join(file)).unwrap(), std::fs::read(path("b").join(file)).unwrap());
        assert!(a == b, "{file} differs between two replays of the same input");
    }

    let config = PipelineConfig::load(Path::new(CONFIG)).unwrap();
    let expected = reference(&events, &stores, &catalog, &config);
    let out = path("a");

    // Aggregates: the last revision of every key equals the reference figures, exactly.
    let mut latest: BTreeMap<String, Value> = BTreeMap::new();
    for a in lines(&out.join("aggregates.ndjson")) {
        let key = aggregate_key(&a);
        let newer = latest.get(&key).is_none_or(|old| old["revision"].as_u64() < a["revision"].as_u64());
        assert!(newer, "revisions of {key} grow");
        latest.insert(key, a);
    }
    let actual: BTreeMap<String, Figures> = latest
        .iter()
        .map(|(k, a)| {
            let money = |f: &str| Decimal::from_str(a[f].as_str().unwrap()).unwrap();
            assert_eq!(money("net_revenue"), money("gross_revenue") - money("returns_revenue"));
            (
                k.clone(),
                Figures {
                    units_sold: a["units_sold"].as_i64().unwrap(),
                    units_returned: a["units_returned"].as_i64().unwrap(),
                    gross: money("gross_revenue"),
                    returns: money("returns_revenue"),
                    transactions: a["transactions"].as_u64().unwrap(),
                },
            )
        })
        .collect();
    assert!(expected.aggregates.len() > 10_000, "a meaningful test: {} groups", expected.aggregates.len());
    let differing: Vec<_> = expected.aggregates.iter().filter(|(k, f)| actual.get(*k) != Some(f)).take(5).collect();
    assert!(differing.is_empty(), "first differences: {differing:?}");
    assert_eq!(actual.len(), expected.aggregates.len());
    assert!(latest.values().any(|a| a["revision"].as_u64() > Some(1)), "late corrections were exercised");

    // Inventory: the last record of every position equals the reference.
    let mut positions: BTreeMap<(String, String), (i64, i64)> = BTreeMap::new();
    for i in lines(&out.join("inventory.ndjson")) {
        let (on_hand, reserved) = (i["on_hand"].as_i64().unwrap(), i["reserved"].as_i64().unwrap());
        assert_eq!(i["available"].as_i64().unwrap(), on_hand - reserved);
        positions.insert(
            (i["store_id"].as_str().unwrap().into(), i["sku_id"].as_str().unwrap().into()),
            (on_hand, reserved),
        );
    }
    assert_eq!(positions, expected.inventory);

    // Nothing lost: every refused and every late event is in its file.
    assert!(expected.dead_letters > 0 && expected.late > 0 && expected.duplicates > 0);
    assert_eq!(lines(&out.join("dead-letter.ndjson")).len(), expected.dead_letters);
    assert_eq!(lines(&out.join("late.ndjson")).len(), expected.late);
}

#[test]
fn bad_config_and_missing_input_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "name: x\nprocessing:\n  windows:\n  - {name: w, type: sliding, size: 1h, slide: 7m}\n")
        .unwrap();
    let out = Command::new(BIN)
        .args([
            "replay",
            "--config",
            bad.to_str().unwrap(),
            "--input",
            "/nonexistent.ndjson",
            "--out",
            dir.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml is invalid")
            && err.contains("processing.windows[0].slide: 7m must divide size (1h) evenly"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["replay", "--config", CONFIG, "--input", "/nonexistent.ndjson", "--out", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("events file /nonexistent.ndjson: No such file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(BIN).args(["generate", "--events", "5", "--duplicate-share", "2"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"2\" is not a share between 0 and 1"));
    // Checked before any connection: a delivery timeout past the transaction's.
    let out = Command::new(BIN).args(["run", "--config", CONFIG, "--delivery-timeout", "90s"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--delivery-timeout 90s: from 1s to 10s (the transaction timeout)"), "{err}");
    let out = Command::new(BIN).args(["run", "--config", CONFIG, "--commit-interval", "30s"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("--commit-interval 30s: at most 5s under exactly-once"), "{err}");
}

#[test]
fn unreadable_reference_records_are_named_and_the_rest_applies() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (events, stores, catalog) = generated(dir.path(), &["--seed", "5", "--events", "3000"]);
    // Every product without its optional name and list price, then a broken line; a store
    // without its time zone.
    let mut products: Vec<String> = lines(&catalog)
        .into_iter()
        .map(|mut p| {
            let object = p.as_object_mut().unwrap();
            object.remove("name");
            object.remove("list_price");
            p.to_string()
        })
        .collect();
    products.push("{\"sku_id\": \"SKU-BROKEN\"".into());
    std::fs::write(&catalog, products.join("\n")).unwrap();
    // The store of the first readable event loses its time zone.
    let events_text = std::fs::read_to_string(&events).unwrap();
    let left_out = events_text
        .lines()
        .find_map(|l| serde_json::from_str::<Value>(l).ok().and_then(|e| e["store_id"].as_str().map(String::from)))
        .unwrap();
    let mut store_lines: Vec<Value> = lines(&stores);
    let at = store_lines.iter().position(|s| s["store_id"] == left_out.as_str()).unwrap();
    store_lines[at].as_object_mut().unwrap().remove("timezone");
    std::fs::write(&stores, store_lines.iter().map(Value::to_string).collect::<Vec<_>>().join("\n")).unwrap();

    let output = Command::new(BIN)
        .args(["replay", "--config", CONFIG, "--input", events.to_str().unwrap()])
        .args(["--stores", stores.to_str().unwrap(), "--catalog", catalog.to_str().unwrap()])
        .args(["--out", path("out").to_str().unwrap(), "--now", NOW])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let broken_line = products.len();
    assert!(stderr.contains(&format!("product record left out: {}:{broken_line}: EOF", catalog.display())), "{stderr}");
    assert!(stderr.contains(&format!("stores.ndjson:{}: missing field `timezone`", at + 1)), "{stderr}");
    assert!(stderr.contains("1 store record(s) left out; the others apply"), "{stderr}");
    // The products without name or list price enrich as before: no category is unknown;
    // the store left out is, and only it.
    let aggregates = lines(&path("out").join("aggregates.ndjson"));
    let trend: Vec<&Value> = aggregates.iter().filter(|a| a["window"] == "trend-1h").collect();
    assert!(!trend.is_empty());
    assert!(trend.iter().all(|a| a["category"] != "unknown"), "a product without name or list price lost its category");
    let unknown_region = aggregates.iter().filter(|a| a["region"] == "unknown").count();
    // (The generated events include malformed ones, so they are searched as text.)
    let needle = format!("\"store_id\":\"{left_out}\"");
    let of_left_out = events_text.lines().filter(|e| e.contains(&needle)).count();
    assert!(of_left_out > 0, "the store left out has events");
    assert!(unknown_region > 0, "the events of the store left out have no region");
}

#[test]
fn a_5_mb_line_is_dead_lettered_and_the_rest_applies() {
    let dir = tempfile::tempdir().unwrap();
    let (events, stores, catalog) =
        generated(dir.path(), &["--seed", "9", "--events", "200", "--malformed-share", "0"]);
    let mut text: Vec<String> = std::fs::read_to_string(&events).unwrap().lines().map(String::from).collect();
    let huge = format!("{{\"note\":\"{}\"}}", "x".repeat(5 * 1024 * 1024));
    text.insert(2, huge.clone());
    std::fs::write(&events, text.join("\n")).unwrap();
    let out = dir.path().join("out");
    let output = Command::new(BIN)
        .args(["replay", "--config", CONFIG, "--input", events.to_str().unwrap()])
        .args(["--stores", stores.to_str().unwrap(), "--catalog", catalog.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--now", NOW])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("line 3: {} bytes, over the 1048576-byte limit", huge.len() + 1)), "{stderr}");
    let dead = lines(&out.join("dead-letter.ndjson"));
    assert_eq!(dead.len(), 1, "only the huge line");
    assert_eq!(dead[0]["reason_code"], "event_too_large");
    assert_eq!(dead[0]["offset"], 2);
    assert_eq!(dead[0]["reason"], "event_too_large: the event is over the 1048576-byte limit (1048577 bytes read)");
    let inventory = lines(&out.join("inventory.ndjson"));
    assert!(!inventory.is_empty(), "the other 200 events apply");
}

/// For input with no late event, the figures do not depend on how the stores are spread over
/// tasks: one task, or four whose windows by region and channel are merged from partials,
/// give the same outputs, record for record (in another order). A merged window's revision is
/// the sum of its partials' (revision `k` from `k` tasks): it is left out of the comparison
/// of windows not grouped by store.
#[test]
fn without_late_events_the_figures_are_the_same_whatever_the_partition_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let (events, stores, catalog) =
        generated(dir.path(), &["--seed", "23", "--events", "30000", "--peak-rate", "60", "--late-share", "0"]);
    for partitions in ["1", "4"] {
        replay_generated((&events, &stores, &catalog), &path(partitions), &["--partitions", partitions]);
    }
    // Records in sorted order; a dead letter's source partition is the one replay fed it to.
    let sorted = |partitions: &str, file: &str| {
        let mut records: Vec<String> = lines(&path(partitions).join(file))
            .into_iter()
            .map(|mut record| {
                if let Some(fields) = record.as_object_mut() {
                    fields.remove("partition");
                    if file == "aggregates.ndjson" && !fields.contains_key("store_id") {
                        fields.remove("revision");
                    }
                }
                record.to_string()
            })
            .collect();
        records.sort();
        records
    };
    assert!(sorted("1", "late.ndjson").is_empty() && sorted("4", "late.ndjson").is_empty(), "no event is late");
    // Inventory records go out at each flush, and tasks flush on their own: the last record of
    // each position is compared.
    let last_positions = |partitions: &str| {
        let mut last = BTreeMap::new();
        for record in lines(&path(partitions).join("inventory.ndjson")) {
            let key = format!("{}|{}", record["store_id"], record["sku_id"]);
            last.insert(key, record);
        }
        last
    };
    let (one, four) = (last_positions("1"), last_positions("4"));
    assert!(one.len() > 1_000 && one == four, "inventory: {} and {} positions", one.len(), four.len());
    for file in ["aggregates.ndjson", "alerts.ndjson", "dead-letter.ndjson"] {
        let (one, four) = (sorted("1", file), sorted("4", file));
        assert!(!one.is_empty() || file == "alerts.ndjson", "{file} has records");
        let differing: Vec<(&String, &String)> = one.iter().zip(&four).filter(|(a, b)| a != b).take(3).collect();
        assert!(
            one.len() == four.len() && differing.is_empty(),
            "{file}: {} and {} records; {differing:?}",
            one.len(),
            four.len()
        );
    }
    let merged = sorted("4", "aggregates.ndjson").iter().filter(|l| l.contains("\"region\"")).count();
    assert!(merged > 0, "windows merged across the four tasks are compared");
}

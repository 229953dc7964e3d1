//! `stockpulse-processor produce` on a real Apache Kafka broker: generated events for the
//! stores published on the pipeline's `stores` topic, stamped with the wall clock, each on
//! the input topic of its type, keyed by store; a pipeline without its topics is refused
//! with a message naming the topic.

mod support;

use std::collections::BTreeSet;
use std::process::Command;

use serde_json::Value;
use stockpulse_processor::generator::brand::stores;
use stockpulse_testkit::kafka::Kafka;
use support::{BIN, Pipeline};

#[test]
fn produce_writes_generated_events_for_the_published_stores_on_their_topics() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let pipeline = Pipeline::create(&kafka.bootstrap, "produce", 4);
    let before = chrono::Utc::now().timestamp_millis();
    let output = Command::new(BIN)
        .args(["produce", "--events", "3000", "--peak-rate", "200000", "--seed", "7", "--config"])
        .arg(&pipeline.config)
        .output()
        .expect("run produce");
    let after = chrono::Utc::now().timestamp_millis();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "produce failed: {stdout}{}", String::from_utf8_lossy(&output.stderr));

    let sales = pipeline.read_topic("sales");
    let inventory = pipeline.read_topic("inventory");
    assert_eq!(
        stdout.trim(),
        format!("3000 events written: {} to produce.sales, {} to produce.inventory", sales.len(), inventory.len())
    );
    assert_eq!(sales.len() + inventory.len(), 3000, "every event written once");
    assert!(!sales.is_empty() && !inventory.is_empty(), "{} sales, {} inventory", sales.len(), inventory.len());

    let published: BTreeSet<String> = stores().into_iter().map(|s| s.store_id).collect();
    let (mut parsed, mut stamped_now) = (0, 0);
    for (topic, records) in [("sales", &sales), ("inventory", &inventory)] {
        for record in records.iter() {
            let key = record.key.clone().unwrap_or_default();
            assert!(published.contains(&key), "{topic} record keyed {key:?}, a published store");
            let Some(event) = record.value.as_deref().and_then(|v| serde_json::from_slice::<Value>(v).ok()) else {
                continue; // a corrupted event (the traffic's malformed share)
            };
            let Some(kind) = event["event_type"].as_str() else { continue };
            parsed += 1;
            let is_sale = matches!(kind, "SALE" | "RETURN");
            assert_eq!(is_sale, topic == "sales", "a {kind} event on {topic}");
            let time = event["event_time"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            // Stamped now: out of order by 25 s at most, late ones 2-30 minutes back.
            if time.is_some_and(|t| (before - 26_000..=after).contains(&t.timestamp_millis())) {
                stamped_now += 1;
            }
        }
    }
    assert!(parsed > 2900, "nearly every event is well-formed: {parsed}");
    assert!(stamped_now > parsed * 9 / 10, "events stamped with the wall clock: {stamped_now} of {parsed}");
}

#[test]
fn produce_names_a_missing_reference_topic() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pipeline.yaml");
    std::fs::write(&config, format!("name: nowhere\nkafka:\n  bootstrapServers: {}\n", kafka.bootstrap)).unwrap();
    let output = Command::new(BIN).args(["produce", "--events", "10", "--config"]).arg(&config).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "refused");
    assert!(stderr.contains("topic nowhere.stores does not exist"), "{stderr}");
}

#[test]
fn an_empty_catalog_is_refused_or_given_the_example_brands() {
    let _serial = support::SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let kafka = Kafka::shared();
    let pipeline = Pipeline::create(&kafka.bootstrap, "produce-catalog", 2);
    // The pipeline's catalog topic is one that holds no product yet (its `late` topic).
    let config = pipeline.dir.path().join("empty-catalog.yaml");
    std::fs::write(
        &config,
        format!(
            "name: produce-catalog\nkafka:\n  bootstrapServers: {}\ntopics:\n  catalog: produce-catalog.late\n",
            kafka.bootstrap
        ),
    )
    .unwrap();
    let produce = |extra: &[&str]| {
        Command::new(BIN)
            .args(["produce", "--events", "200", "--peak-rate", "200000", "--config"])
            .arg(&config)
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = produce(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "refused");
    assert!(stderr.contains("no product is published on topic produce-catalog.late"), "{stderr}");
    assert!(stderr.contains("--publish-example-catalog"), "{stderr}");
    assert!(pipeline.read_topic("late").is_empty(), "nothing written when refused");

    let published = produce(&["--publish-example-catalog"]);
    assert!(published.status.success(), "{}", String::from_utf8_lossy(&published.stderr));
    let catalog = pipeline.read_topic("late");
    let skus: BTreeSet<String> = catalog.iter().filter_map(|r| r.key.clone()).collect();
    let expected: BTreeSet<String> =
        stockpulse_processor::generator::brand::catalog().into_iter().map(|p| p.sku_id).collect();
    assert_eq!(skus, expected, "the example brand's catalog, keyed by SKU");
    assert_eq!(catalog.len(), expected.len(), "each product once");
    let events = pipeline.read_topic("sales").len() + pipeline.read_topic("inventory").len();
    assert_eq!(events, 200);
}

//! The whole system on this machine: Apache Kafka (KRaft, one node, started here), a
//! producer of POS events stamped with the wall clock, and one `stockpulse-processor run`
//! instance (exactly-once, 4 input partitions, windows by store and SKU and one by region
//! and channel merged across tasks). Prints, for each target rate, the rate produced, the
//! rate processed and the produce-to-output latency (p50, p99, max), measured from outside:
//! a `read_committed` consumer of the inventory-state topic takes each record's
//! `last_event_time` (the production time of the last event it applied) from the time it
//! reads the record. Then the highest sustained rate: a backlog of events processed from a
//! standing start.
//!
//! `cargo bench -p stockpulse-processor --bench kafka_pipeline` (after `source .tools/env.sh`;
//! about three minutes). Arguments: `-- RATE...` for other target rates, `--seconds N` per
//! rate (default 20), `--backlog N` events (default 1,000,000), `--commit-interval D`
//! (default 100ms), `--warmup N` seconds at 60,000 events/s before the measured rates
//! (default 20; the broker's JIT compiler is busy until then).

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use stockpulse_processor::event::time::{format_rfc3339_millis, parse_rfc3339_millis};
use stockpulse_processor::generator::brand::{catalog, stores};
use stockpulse_testkit::kafka::Kafka;
use support::{Pipeline, client};

/// Store ids with their channel, and SKU ids with a list price, to build events from.
struct Catalog {
    stores: Vec<(String, &'static str)>,
    skus: Vec<(String, String)>,
    /// The POS producers' `compression.type`.
    compression: String,
}

impl Catalog {
    fn new() -> Self {
        Catalog {
            stores: stores().into_iter().map(|s| (s.store_id, s.channel.as_str())).collect(),
            skus: catalog().into_iter().take(600).map(|p| (p.sku_id, p.list_price)).collect(),
            compression: "none".to_string(),
        }
    }

    /// Event `n`: nine SALEs in ten, then a RESTOCK, stamped `time` (RFC 3339, formatted
    /// once for the events of a millisecond). (inventory or not, key, value)
    fn event(&self, n: u64, time: &str) -> (bool, &str, String) {
        let mix = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (store, channel) = &self.stores[(mix % self.stores.len() as u64) as usize];
        let (sku, price) = &self.skus[((mix >> 20) % self.skus.len() as u64) as usize];
        let id = format!("00000000-0000-4000-8000-{:012x}", n & 0xffff_ffff_ffff);
        if n % 10 == 9 {
            let value = format!(
                r#"{{"event_id":"{id}","event_type":"RESTOCK","event_time":"{time}","store_id":"{store}","sku_id":"{sku}","quantity_delta":40}}"#
            );
            (true, store, value)
        } else {
            let value = format!(
                r#"{{"event_id":"{id}","event_type":"SALE","event_time":"{time}","store_id":"{store}","sku_id":"{sku}","quantity_delta":-1,"unit_price":"{price}","currency":"EUR","channel":"{channel}"}}"#
            );
            (false, store, value)
        }
    }
}

fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Produces at `rate` events/s for `seconds`, from event number `first`; returns how many.
fn produce_at(pipeline: &Pipeline, catalog: &Catalog, first: u64, rate: u64, seconds: u64) -> u64 {
    let producer: BaseProducer = client(&pipeline.bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .set("compression.type", &catalog.compression)
        .set("queue.buffering.max.messages", "2000000")
        .create()
        .expect("producer");
    // The producer's own work kept small: it shares the two cores with what it measures.
    let (sales_topic, inventory_topic) = (format!("{}.sales", pipeline.name), format!("{}.inventory", pipeline.name));
    let started = Instant::now();
    let mut sent = 0u64;
    let total = rate * seconds;
    while sent < total {
        // Send what is due by now, in 1 ms steps.
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
        let time = format_rfc3339_millis(now_millis());
        while sent < due {
            let (inventory, key, value) = catalog.event(first + sent, &time);
            let topic = if inventory { &inventory_topic } else { &sales_topic };
            let record = BaseRecord::to(topic).key(key).payload(&value);
            stockpulse_testkit::kafka::send(&producer, record).unwrap_or_else(|e| panic!("{e}"));
            sent += 1;
        }
        producer.poll(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1));
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    sent
}

/// Reads inventory-state records from its end until `stop`; the latency of each record whose
/// last event was produced after `from` (ms).
fn latencies(bootstrap: String, topic: String, from: i64, stop: Arc<AtomicBool>) -> Vec<i64> {
    let consumer: BaseConsumer = client(&bootstrap)
        .set("group.id", "stockpulse-bench-latency")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(10)).expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in 0..metadata.topics()[0].partitions().len() as i32 {
        tpl.add_partition_offset(&topic, p, Offset::End).expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            let seen = now_millis();
            // The field's text found without parsing the whole record: the reader shares the
            // two cores with what it measures.
            let time = message.payload().and_then(last_event_time);
            if let Some(time) = time.filter(|t| *t >= from) {
                samples.push(seen - time);
            }
        }
    }
    samples
}

/// `last_event_time` of an inventory-state record.
fn last_event_time(record: &[u8]) -> Option<i64> {
    const FIELD: &[u8] = b"\"last_event_time\":\"";
    let start = record.windows(FIELD.len()).position(|w| w == FIELD)? + FIELD.len();
    let end = start + record[start..].iter().position(|&b| b == b'"')?;
    parse_rfc3339_millis(std::str::from_utf8(&record[start..end]).ok()?)
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The processor's commits so far, from its `/metrics`: how many and their mean duration.
fn commit_summary(address: &str) -> String {
    let (_, metrics) = support::http_get(address, "/metrics");
    let value = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let (count, sum) =
        (value("stockpulse_processor_commit_seconds_count"), value("stockpulse_processor_commit_seconds_sum"));
    let (events, dead) = (
        value("stockpulse_processor_events_total{outcome=\"in\"}"),
        value("stockpulse_processor_events_total{outcome=\"dead_lettered\"}"),
    );
    // Every generated event is valid: a dead letter here means the benchmark measures the
    // wrong work (it once sent a channel the processor refused, 90% of its events).
    assert!(dead == 0.0, "{dead} of {events} events dead-lettered");
    let mean = |count: f64, sum: f64| if count > 0.0 { sum / count * 1000.0 } else { 0.0 };
    let phase = |name: &str| {
        let labels = format!("{{phase=\"{name}\"}}");
        let (count, sum) = (
            value(&format!("stockpulse_processor_commit_phase_seconds_count{labels}")),
            value(&format!("stockpulse_processor_commit_phase_seconds_sum{labels}")),
        );
        format!("{name} {:.1}", mean(count, sum))
    };
    format!(
        "events: {events:.0}, none dead-lettered; commits: {count:.0}, mean {:.1} ms ({}, {}, {} ms)",
        mean(count, sum),
        phase("deliver"),
        phase("offsets"),
        phase("end"),
    )
}

fn main() {
    let mut rates = Vec::new();
    let mut seconds = 20u64;
    let mut backlog = 1_000_000u64;
    let mut commit_interval = "100ms".to_string();
    let mut warmup = 20u64;
    let mut catalog = Catalog::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => {}
            "--seconds" => seconds = args.next().and_then(|v| v.parse().ok()).expect("--seconds N"),
            "--backlog" => backlog = args.next().and_then(|v| v.parse().ok()).expect("--backlog N"),
            "--commit-interval" => commit_interval = args.next().expect("--commit-interval DURATION"),
            "--warmup" => warmup = args.next().and_then(|v| v.parse().ok()).expect("--warmup SECONDS"),
            "--producer-compression" => catalog.compression = args.next().expect("--producer-compression CODEC"),
            other => rates.push(other.parse::<u64>().unwrap_or_else(|_| panic!("not a rate: {other}"))),
        }
    }
    if rates.is_empty() {
        rates = vec![10_000, 100_000];
    }
    let kafka = Kafka::start_for_benchmarks();
    let pipeline = Pipeline::create(&kafka.bootstrap, "bench", 4);
    let mut processor = pipeline.start_with("bench-0", &["--commit-interval", &commit_interval]);
    let address = processor.address(Duration::from_secs(30));
    support::wait_ready(&address, Duration::from_secs(60));
    let mut next = 0u64;
    // Warm-up, not reported: the broker's JIT compiles its hot paths in the first tens of
    // seconds (perf showed its C2 compiler threads taking a sixth of the machine during a
    // 100,000 events/s run after a 10 s warm-up at 20,000/s).
    next += produce_at(&pipeline, &catalog, next, 60_000, warmup);
    pipeline.wait_caught_up(Duration::from_secs(600), &mut [&mut processor]);

    println!(
        "stockpulse on Apache Kafka, this machine: one broker, one processor instance, 4 partitions, exactly-once"
    );
    println!(
        "{:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
        "target/s", "produced/s", "processed/s", "p50 ms", "p99 ms", "max ms", "samples"
    );
    for rate in rates {
        let stop = Arc::new(AtomicBool::new(false));
        let warm_up = now_millis() + 2_000;
        let reader = {
            let (bootstrap, topic, stop) =
                (pipeline.bootstrap.clone(), format!("{}.inventory-state", pipeline.name), stop.clone());
            std::thread::spawn(move || latencies(bootstrap, topic, warm_up, stop))
        };
        let started = Instant::now();
        let sent = produce_at(&pipeline, &catalog, next, rate, seconds);
        let produced_in = started.elapsed();
        next += sent;
        pipeline.wait_caught_up(Duration::from_secs(600), &mut [&mut processor]);
        let processed_in = started.elapsed();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        let mut samples = reader.join().expect("latency reader");
        samples.sort_unstable();
        println!(
            "{:>10} {:>10.0} {:>10.0} {:>9} {:>9} {:>9} {:>9}",
            rate,
            sent as f64 / produced_in.as_secs_f64(),
            sent as f64 / processed_in.as_secs_f64(),
            percentile(&samples, 0.5),
            percentile(&samples, 0.99),
            samples.last().copied().unwrap_or(0),
            samples.len()
        );
    }

    println!("{}", commit_summary(&address));

    // The highest sustained rate: a backlog processed from a standing start.
    processor.terminate(Duration::from_secs(30));
    if backlog == 0 {
        return; // `--backlog 0`: the rates only
    }
    // As fast as the producer goes (the rate it is given is never the limit).
    let produced = produce_at(&pipeline, &catalog, next, backlog, 1);
    let started = Instant::now();
    let (done_before, _) = pipeline.committed_progress();
    let mut processor = pipeline.start_with("bench-0", &["--commit-interval", &commit_interval]);
    // When the first records of the backlog are committed, processing has begun: the rate
    // from then on is the instance's own, without its start (reference load, restore).
    let (first_commit, done_then) = loop {
        processor.assert_running();
        let (done, _) = pipeline.committed_progress();
        if done > done_before {
            break (Instant::now(), done);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    pipeline.wait_caught_up(Duration::from_secs(1_200), &mut [&mut processor]);
    let took = started.elapsed();
    let (_, metrics) = support::http_get(&processor.address(Duration::from_secs(30)), "/metrics");
    let metric = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or("?")
            .to_string()
    };
    // Committed progress counts input records of both topics, as the backlog does.
    let steady = (done_before + produced as i64 - done_then).max(0) as f64 / first_commit.elapsed().as_secs_f64();
    println!(
        "backlog: {produced} events processed in {:.1} s from a standing start (start, reference load and restore included): {:.0} events/s; {:.0} events/s from the first commit on",
        took.as_secs_f64(),
        produced as f64 / took.as_secs_f64(),
        steady
    );
    println!(
        "restore: {} tasks in {} s (summed), {} changelog records read",
        metric("stockpulse_processor_restore_seconds_count"),
        metric("stockpulse_processor_restore_seconds_sum"),
        metric("stockpulse_processor_restore_records_total")
    );
    processor.terminate(Duration::from_secs(30));
}

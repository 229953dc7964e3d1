//! The replicator against a plain consume-produce loop, in the same run, between two Apache
//! Kafka brokers on this machine (a region's cluster and the pipeline's):
//!
//! 1. throughput: a backlog of N records (default 500,000, ~190 bytes, keyed by store) in
//!    the region, copied from a standing start, timed to the last record committed;
//! 2. latency, once each copier runs: records produced at a fixed rate (default 20,000/s
//!    for 15 s) stamped with the wall clock; a reader of the target takes each record's age
//!    when it reads it (`read_committed` for the replicator, whose records are visible at
//!    commit), p50/p99/max; the replicator's added latency is the difference.
//!
//! The plain loop is the at-least-once copier without transactions or checkpoints: consume,
//! produce (idempotent, acks=all, same partitioning), no commit anywhere.
//!
//! `cargo bench -p stockpulse-operator --bench replication` (after `source .tools/env.sh`).
//! Arguments: `--records N`, `--rate R`, `--seconds S`, `--batch-ms M` (the replicator's
//! transaction interval, default 100), `--batch-records B` (records per transaction, at most;
//! default 10,000).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use stockpulse_operator::kafka_admin::KafkaTarget;
use stockpulse_operator::replicator::checkpoint::read_checkpoints;
use stockpulse_operator::replicator::health::Health;
use stockpulse_operator::replicator::partitioning::target_partition;
use stockpulse_operator::replicator::{Replication, run};
use stockpulse_testkit::kafka::{Kafka, send};

const PARTITIONS: i32 = 4;

struct Options {
    records: u64,
    rate: u64,
    seconds: u64,
    batch_ms: u64,
    batch_records: u64,
}

fn options() -> Options {
    let mut options = Options { records: 500_000, rate: 20_000, seconds: 15, batch_ms: 100, batch_records: 10_000 };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (args[i].as_str(), value) {
            ("--records", Some(v)) => options.records = v,
            ("--rate", Some(v)) => options.rate = v.max(1),
            ("--seconds", Some(v)) => options.seconds = v.max(1),
            ("--batch-ms", Some(v)) => options.batch_ms = v.max(1),
            ("--batch-records", Some(v)) => options.batch_records = v.max(1),
            ("--bench", _) => {
                i += 1;
                continue;
            }
            (other, _) => {
                eprintln!("unknown or incomplete argument {other}");
                std::process::exit(2);
            }
        }
        i += 2;
    }
    options
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn create_topics(bootstrap: &str, names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let topics: Vec<NewTopic> =
        names.iter().map(|n| NewTopic::new(n, PARTITIONS, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in futures::executor::block_on(admin.create_topics(topics.iter(), &options)).expect("create topics") {
        result.unwrap_or_else(|(topic, e)| panic!("creating {topic}: {e}"));
    }
}

fn producer(bootstrap: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("partitioner", "murmur2_random")
        .set("queue.buffering.max.messages", "2000000")
        .create()
        .expect("producer")
}

fn value(n: u64, now: i64) -> String {
    format!(
        r#"{{"event_id":"00000000-0000-4000-8000-{n:012x}","event_type":"SALE","event_time":"{now}","store_id":"store-{:03}","sku_id":"SKU-{:06}","quantity_delta":-1,"unit_price":"19.99","currency":"EUR"}}"#,
        n % 200,
        n % 5000
    )
}

/// Produces records `range` to `topic`, stamped now; at `rate` per second when given.
fn produce(bootstrap: &str, topic: &str, range: std::ops::Range<u64>, rate: Option<u64>) {
    let producer = producer(bootstrap);
    let started = Instant::now();
    let first = range.start;
    for n in range {
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64((n - first) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let now = now_ms();
        let key = format!("store-{:03}", n % 200);
        let payload = value(n, now);
        send(&producer, BaseRecord::to(topic).key(key.as_str()).payload(payload.as_str()).timestamp(now))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

fn ends(bootstrap: &str, topic: &str) -> BTreeMap<i32, i64> {
    let consumer: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "bench").create().expect("consumer");
    (0..PARTITIONS)
        .map(|p| (p, consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks").1))
        .collect()
}

/// The plain loop: copies `from` (source) to `to` (target) until `stop`; returns records copied.
fn plain_loop(source: &str, target: &str, from: &str, to: &str, stop: &AtomicBool) -> u64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", source)
        .set("group.id", "bench-plain")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .set("queued.min.messages", "200000")
        .create()
        .expect("plain consumer");
    let mut assignment = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        assignment.add_partition_offset(from, p, Offset::Beginning).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", target)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("plain producer");
    let mut copied = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            let partition = target_partition(m.key(), m.partition(), PARTITIONS as u32);
            let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(to).partition(partition);
            if let Some(key) = m.key() {
                record = record.key(key);
            }
            if let Some(payload) = m.payload() {
                record = record.payload(payload);
            }
            if let Some(t) = m.timestamp().to_millis() {
                record = record.timestamp(t);
            }
            send(&producer, record).unwrap_or_else(|e| panic!("{e}"));
            copied += 1;
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
    copied
}

/// Waits until `topic` in the target holds `count` records (sum of high watermarks).
fn wait_target_count(target: &str, topic: &str, count: i64) -> Instant {
    loop {
        let total: i64 = ends(target, topic).values().sum();
        if total >= count {
            return Instant::now();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the replicator's checkpoints reach `source_ends` of `topic`.
fn wait_checkpoints(target: &str, checkpoint_topic: &str, topic: &str, source_ends: &BTreeMap<i32, i64>) -> Instant {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", target)
        .set("group.id", "bench-checkpoints")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader");
    loop {
        if let Ok(Some(found)) = read_checkpoints(&reader, checkpoint_topic, Some(200), Duration::from_secs(10)) {
            let done = source_ends
                .iter()
                .all(|(p, end)| found.partitions.get(&(topic.to_string(), *p)).map(|c| c.next_offset) == Some(*end));
            if done {
                return Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads `topic` in the target from its current end until `count` records arrived; the age
/// of each (ms) when read.
fn latencies(target: &str, topic: &str, committed: bool, count: u64, ready: &AtomicBool) -> Vec<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", target)
        .set("group.id", "bench-latency")
        .set("isolation.level", if committed { "read_committed" } else { "read_uncommitted" })
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("latency reader");
    let mut assignment = TopicPartitionList::new();
    for (p, end) in ends(target, topic) {
        assignment.add_partition_offset(topic, p, Offset::Offset(end)).expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    ready.store(true, Ordering::Relaxed);
    let mut out = Vec::with_capacity(count as usize);
    let deadline = Instant::now() + Duration::from_secs(600);
    while (out.len() as u64) < count && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100))
            && let Some(t) = m.timestamp().to_millis()
        {
            out.push(now_ms() - t);
        }
    }
    out
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

struct Figures {
    rate: f64,
    p50: i64,
    p99: i64,
    max: i64,
}

fn main() {
    let options = options();
    eprintln!("starting two Apache Kafka brokers (benchmark JVM settings)...");
    let region = Kafka::start_for_benchmarks();
    let central = Kafka::start_for_benchmarks();
    create_topics(&region.bootstrap, &["bench.backlog", "bench.live"]);
    create_topics(&central.bootstrap, &["bench.backlog", "bench.live", "plain.backlog", "plain.live"]);

    let replication = |topic: &str, id: &str| {
        let mut r = Replication::new(
            KafkaTarget::plain(region.bootstrap.clone()),
            KafkaTarget::plain(central.bootstrap.clone()),
            vec![topic.to_string()],
            id.to_string(),
            "eu-central".to_string(),
        );
        r.batch_time = Duration::from_millis(options.batch_ms);
        r.batch_records = options.batch_records;
        r
    };

    // Warm-up: both JVMs compile while a first slice is copied both ways.
    eprintln!("producing a backlog of {} records...", options.records);
    produce(&region.bootstrap, "bench.backlog", 0..options.records, None);
    let backlog_ends = ends(&region.bootstrap, "bench.backlog");
    let total: i64 = backlog_ends.values().sum();

    // 1. Throughput from a standing start, and from the moment the replicator copies (its
    // start-up creates the target's transaction log and checkpoint topic).
    let stop = Arc::new(AtomicBool::new(false));
    let health = Arc::new(Health::default());
    let started = Instant::now();
    let copier = {
        let (r, stop, health) = (replication("bench.backlog", "bench-backlog"), stop.clone(), health.clone());
        std::thread::spawn(move || run(&r, &health, &stop))
    };
    while !health.ready() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let copying = Instant::now();
    let copied_all = u64::try_from(total).unwrap_or(0);
    while health.metrics.records_copied.get() < copied_all {
        std::thread::sleep(Duration::from_millis(5));
    }
    let done = Instant::now();
    let checkpointed =
        wait_checkpoints(&central.bootstrap, "bench-backlog.checkpoints", "bench.backlog", &backlog_ends);
    stop.store(true, Ordering::Relaxed);
    let _ = copier.join();
    let replicator_rate = total as f64 / (done - started).as_secs_f64();
    let replicator_steady = total as f64 / (done - copying).as_secs_f64();
    eprintln!(
        "replicator start-up {:?}, checkpoints seen {:?} after the last commit",
        copying - started,
        checkpointed - done
    );

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let copier = {
        let (source, target, stop) = (region.bootstrap.clone(), central.bootstrap.clone(), stop.clone());
        std::thread::spawn(move || plain_loop(&source, &target, "bench.backlog", "plain.backlog", &stop))
    };
    let done = wait_target_count(&central.bootstrap, "plain.backlog", total);
    stop.store(true, Ordering::Relaxed);
    let _ = copier.join();
    let plain_rate = total as f64 / (done - started).as_secs_f64();

    // 2. Latency at a fixed rate, each copier in turn on its own slice of the live topic.
    let count = options.rate * options.seconds;
    let mut live = Vec::new();
    for (name, replicated) in [("replicator", true), ("plain loop", false)] {
        let stop = Arc::new(AtomicBool::new(false));
        let health = Arc::new(Health::default());
        let copier = if replicated {
            let (r, stop, health) = (replication("bench.live", "bench-live"), stop.clone(), health.clone());
            std::thread::spawn(move || {
                run(&r, &health, &stop);
            })
        } else {
            let (source, target, stop) = (region.bootstrap.clone(), central.bootstrap.clone(), stop.clone());
            std::thread::spawn(move || {
                plain_loop(&source, &target, "bench.live", "plain.live", &stop);
            })
        };
        let target_topic = if replicated { "bench.live" } else { "plain.live" };
        // The first copier starts from the beginning of bench.live, the second too: wait
        // until it copied what the first slice left, then measure a new slice.
        let already: i64 = ends(&region.bootstrap, "bench.live").values().sum();
        wait_target_count(&central.bootstrap, target_topic, already);
        // Latency is measured from a running copier: the replicator's start-up (fencing,
        // checkpoints) is timed by the throughput figures.
        while replicated && !health.ready() {
            std::thread::sleep(Duration::from_millis(5));
        }
        let ready = Arc::new(AtomicBool::new(false));
        let reader = {
            let (target, ready) = (central.bootstrap.clone(), ready.clone());
            let topic = target_topic.to_string();
            std::thread::spawn(move || latencies(&target, &topic, replicated, count, &ready))
        };
        while !ready.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = u64::try_from(already).unwrap_or(0);
        let produce_started = Instant::now();
        produce(&region.bootstrap, "bench.live", first..first + count, Some(options.rate));
        let produced_rate = count as f64 / produce_started.elapsed().as_secs_f64();
        let mut ages = reader.join().expect("latency reader");
        stop.store(true, Ordering::Relaxed);
        let _ = copier.join();
        ages.sort_unstable();
        eprintln!("{name}: {} records read at {produced_rate:.0}/s produced", ages.len());
        live.push(Figures {
            rate: produced_rate,
            p50: percentile(&ages, 0.50),
            p99: percentile(&ages, 0.99),
            max: ages.last().copied().unwrap_or(0),
        });
    }

    println!(
        "replication benchmark: 2 Apache Kafka 4.4.0 brokers on loopback, {PARTITIONS} partitions, ~190-byte records"
    );
    println!("throughput, backlog of {total} records from a standing start:");
    println!(
        "  replicator (exactly-once, {} ms transactions): {replicator_rate:>9.0} records/s ({replicator_steady:.0}/s once started)",
        options.batch_ms
    );
    println!("  plain consume-produce loop (at-least-once):      {plain_rate:>9.0} records/s");
    println!(
        "latency, produce to readable in the target, at {} records/s for {} s (ms):",
        options.rate, options.seconds
    );
    for (name, f) in [("replicator (read_committed)", &live[0]), ("plain loop", &live[1])] {
        println!("  {name:<28} p50 {:>5}  p99 {:>5}  max {:>5}  (produced at {:.0}/s)", f.p50, f.p99, f.max, f.rate);
    }
    println!("added by exactly-once: p50 {} ms, p99 {} ms", live[0].p50 - live[1].p50, live[0].p99 - live[1].p99);
}

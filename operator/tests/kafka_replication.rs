//! The replicator (`stockpulse-operator replicate`, the real binary as a process) between
//! two Apache Kafka brokers standing in for a region's cluster and the pipeline's cluster:
//!
//! - 200,000 events mirrored while the replicator is SIGKILLed 3 times at random points:
//!   the target holds every source record exactly once (`read_committed`), per key in
//!   source order, with key, value, headers and timestamp, an `origin-region` header, on
//!   the partition Java's murmur2 gives its key; records that came from the target are not
//!   copied back;
//! - the source broker stopped for 60 s mid-run: `/readyz` fails with `SourceUnreachable`
//!   (and the status committed to the checkpoint topic says so), the process stays up, and
//!   after the restart it catches up, losing and doubling nothing.
//!
//! The two tests start two brokers each, so they take turns.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use stockpulse_operator::replicator::checkpoint::{Checkpoints, read_checkpoints};
use stockpulse_processor::partitioner::partition_of;
use stockpulse_testkit::kafka::{Kafka, send};

const SALES: &str = "shop.sales";
const INVENTORY: &str = "shop.inventory";
const ID: &str = "stockpulse-replicator.acme.eu-central";
const CHECKPOINTS: &str = "stockpulse-replicator.acme.eu-central.checkpoints";
/// Partitions: 4 in the region, 6 in the pipeline's cluster (so murmur2 decides).
const SOURCE_PARTITIONS: i32 = 4;
const TARGET_PARTITIONS: i32 = 6;
const STORES: u64 = 40;
/// One event in this many comes from the target (`origin-region: central`): never copied.
const FROM_TARGET_EVERY: u64 = 1_000;
/// One event in this many already carries another origin, which is kept.
const OTHER_ORIGIN_EVERY: u64 = 997;

static TWO_BROKERS: Mutex<()> = Mutex::new(());

/// Event numbers of `topic`/`partition` at source offsets `from..to`.
fn events_at(source: &str, topic: &str, partition: i32, from: i64, to: i64) -> Vec<u64> {
    let consumer = reader(source);
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(from)).expect("assign");
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < usize::try_from(to - from).unwrap_or(0) {
        assert!(Instant::now() < deadline, "reading {topic}/{partition} took over 30 s");
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let value: serde_json::Value = serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON");
            out.push(value["n"].as_u64().expect("n"));
        }
    }
    out
}

fn create_topics(bootstrap: &str, partitions: i32, names: &[&str]) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let topics: Vec<NewTopic> =
        names.iter().map(|n| NewTopic::new(n, partitions, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in futures::executor::block_on(admin.create_topics(topics.iter(), &options)).expect("create topics") {
        result.unwrap_or_else(|(topic, e)| panic!("creating {topic}: {e}"));
    }
}

/// Event `n`: its topic, key (a store), and its number among the events of its key.
struct Event {
    topic: &'static str,
    key: String,
    n: u64,
}

fn event(n: u64) -> Event {
    let store = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    Event { topic: if n % 10 == 9 { INVENTORY } else { SALES }, key: format!("store-{:03}", store % STORES), n }
}

/// The timestamp given to event `n` (ms): distinct values an hour before the test began
/// (within the brokers' 7-day retention, or the log would delete them) show it is preserved.
fn timestamp_of(n: u64) -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    let base = *BASE.get_or_init(|| chrono::Utc::now().timestamp_millis() - 3_600_000);
    base + i64::try_from(n).unwrap_or(0)
}

fn origin_of(n: u64) -> Option<&'static str> {
    if n % FROM_TARGET_EVERY == 500 {
        Some("central")
    } else if n.is_multiple_of(OTHER_ORIGIN_EVERY) {
        Some("us-east")
    } else {
        None
    }
}

/// Produces events `range` to the source, keyed by store, with a `trace` header.
fn produce(bootstrap: &str, range: std::ops::Range<u64>) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("partitioner", "murmur2_random")
        .create()
        .expect("source producer");
    for n in range {
        let e = event(n);
        let value = format!("{{\"n\":{}}}", e.n);
        let trace = format!("t-{n}");
        let mut headers = OwnedHeaders::new().insert(Header { key: "trace", value: Some(trace.as_bytes()) });
        if let Some(origin) = origin_of(n) {
            headers = headers.insert(Header { key: "origin-region", value: Some(origin.as_bytes()) });
        }
        let record = BaseRecord::to(e.topic)
            .key(e.key.as_str())
            .payload(value.as_str())
            .timestamp(timestamp_of(n))
            .headers(headers);
        send(&producer, record).unwrap_or_else(|e| panic!("{e}"));
    }
    producer.flush(Duration::from_secs(60)).expect("flush the source producer");
}

/// A `replicate` process, SIGKILLed when dropped (a failing test leaves none behind).
struct Replicator(Child);

impl Replicator {
    fn kill(&mut self) -> std::io::Result<()> {
        self.0.kill()
    }
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
    fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.0.try_wait()
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `replicate` process; its log appended to `log`.
fn start_replicator(source: &str, target: &str, port: u16, log: &std::path::Path) -> Replicator {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("replicator log");
    Command::new(env!("CARGO_BIN_EXE_stockpulse-operator"))
        .args(["replicate", "--id", ID, "--region", "eu-central", "--target-region", "central"])
        .args(["--topic", SALES, "--topic", INVENTORY, "--http-port", &port.to_string()])
        .env("SOURCE_BOOTSTRAP_SERVERS", source)
        .env("TARGET_BOOTSTRAP_SERVERS", target)
        .env("RUST_LOG", std::env::var("STOCKPULSE_REPLICATOR_RUST_LOG").unwrap_or_else(|_| "info".into()))
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log handle"))
        .stderr(file)
        .spawn()
        .map(Replicator)
        .expect("start stockpulse-operator replicate")
}

/// `GET path` on the loopback `port`: (status code, body); `None` when nothing answers.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.get(9..12)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((code, body))
}

fn reader(bootstrap: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kafka-replication-test")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .expect("reader")
}

fn checkpoints(target: &str) -> Option<Checkpoints> {
    read_checkpoints(&reader(target), CHECKPOINTS, None, Duration::from_secs(10)).ok().flatten()
}

/// Source end offsets per (topic, partition).
fn source_ends(source: &str) -> BTreeMap<(String, i32), i64> {
    let consumer = reader(source);
    let mut ends = BTreeMap::new();
    for topic in [SALES, INVENTORY] {
        for p in 0..SOURCE_PARTITIONS {
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("source watermarks");
            ends.insert((topic.to_string(), p), high);
        }
    }
    ends
}

/// Waits until the target's checkpoints reach the source's ends (at most `within`).
fn wait_caught_up(source: &str, target: &str, within: Duration) -> Checkpoints {
    let ends = source_ends(source);
    let deadline = Instant::now() + within;
    loop {
        if let Some(found) = checkpoints(target) {
            let behind: Vec<String> = ends
                .iter()
                .filter(|(k, end)| found.partitions.get(*k).map(|c| c.next_offset) != Some(**end))
                .map(|((t, p), end)| format!("{t}/{p}: {:?} of {end}", found.partitions.get(&(t.clone(), *p))))
                .collect();
            if behind.is_empty() {
                return found;
            }
            assert!(Instant::now() < deadline, "not caught up within {within:?}: {behind:?}");
        }
        assert!(Instant::now() < deadline, "no checkpoints within {within:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A record as the target holds it.
#[derive(Debug)]
struct Copied {
    topic: String,
    partition: i32,
    key: String,
    n: u64,
    timestamp: Option<i64>,
    headers: Vec<(String, String)>,
}

fn read_target(target: &str) -> Vec<Copied> {
    let consumer = reader(target);
    let mut assignment = TopicPartitionList::new();
    let mut open = 0;
    for topic in [SALES, INVENTORY] {
        for p in 0..TARGET_PARTITIONS {
            assignment.add_partition_offset(topic, p, Offset::Beginning).expect("assign");
            open += 1;
        }
    }
    consumer.assign(&assignment).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    while open > 0 {
        assert!(Instant::now() < deadline, "reading the target took over 3 minutes");
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                let value: serde_json::Value =
                    serde_json::from_slice(m.payload().unwrap_or_default()).expect("JSON value");
                let headers = m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_string(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Copied {
                    topic: m.topic().to_string(),
                    partition: m.partition(),
                    key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    n: value["n"].as_u64().expect("n"),
                    timestamp: m.timestamp().to_millis(),
                    headers,
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => panic!("reading the target: {e}"),
            None => {}
        }
    }
    out
}

/// The target holds events `0..count` exactly once each (those from the target aside), per
/// key in order, each as produced plus its origin, on murmur2's partition.
fn assert_exactly_once(target: &str, count: u64) -> u64 {
    assert_exactly(target, count, &std::collections::BTreeSet::new())
}

/// [`assert_exactly_once`], but for the events `gone` (deleted from the source unread).
fn assert_exactly(target: &str, count: u64, gone: &std::collections::BTreeSet<u64>) -> u64 {
    let copied = read_target(target);
    let expected: Vec<u64> = (0..count).filter(|n| origin_of(*n) != Some("central") && !gone.contains(n)).collect();
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for c in &copied {
        *seen.entry(c.n).or_default() += 1;
    }
    let doubled: Vec<(&u64, &usize)> = seen.iter().filter(|(_, times)| **times > 1).take(10).collect();
    assert!(doubled.is_empty(), "records copied more than once (n, times): {doubled:?}");
    let missing: Vec<&u64> = expected.iter().filter(|n| !seen.contains_key(n)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} records not copied ({} read), the first: {:?}, the last: {:?}",
        missing.len(),
        expected.len(),
        copied.len(),
        &missing[..missing.len().min(5)],
        missing.last()
    );
    assert_eq!(copied.len(), expected.len(), "the target holds only the source's records");
    // Per key, in the order the target holds them: the source's order.
    let mut by_key: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for c in &copied {
        by_key.entry((c.topic.clone(), c.key.clone())).or_default().push(c.n);
    }
    let mut want: BTreeMap<(String, String), Vec<u64>> = BTreeMap::new();
    for n in &expected {
        let e = event(*n);
        want.entry((e.topic.to_string(), e.key)).or_default().push(*n);
    }
    assert_eq!(by_key.len(), want.len());
    for (key, ns) in &want {
        assert_eq!(by_key.get(key), Some(ns), "order of {key:?}");
    }
    for c in &copied {
        let e = event(c.n);
        assert_eq!((c.topic.as_str(), c.key.as_str()), (e.topic, e.key.as_str()));
        assert_eq!(c.timestamp, Some(timestamp_of(c.n)), "timestamp of {}", c.n);
        let origin = origin_of(c.n).unwrap_or("eu-central");
        let headers =
            vec![("trace".to_string(), format!("t-{}", c.n)), ("origin-region".to_string(), origin.to_string())];
        assert_eq!(c.headers, headers, "headers of {}", c.n);
        let partition = partition_of(c.key.as_bytes(), TARGET_PARTITIONS as u32) as i32;
        assert_eq!(c.partition, partition, "partition of {}", c.key);
    }
    expected.len() as u64
}

/// A small random number generator (xorshift), seeded and printed for a rerun.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

fn seed() -> u64 {
    let seed = std::env::var("STOCKPULSE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(stockpulse_operator::replicator::backoff::random)
        | 1;
    println!("seed {seed} (STOCKPULSE_TEST_SEED={seed} to repeat)");
    seed
}

#[test]
fn two_hundred_thousand_events_mirrored_exactly_once_through_three_sigkills() {
    let _turn = TWO_BROKERS.lock().unwrap_or_else(|e| e.into_inner());
    const EVENTS: u64 = 200_000;
    let mut random = Random(seed());
    let source = Kafka::start();
    let target = Kafka::start();
    create_topics(&source.bootstrap, SOURCE_PARTITIONS, &[SALES, INVENTORY]);
    create_topics(&target.bootstrap, TARGET_PARTITIONS, &[SALES, INVENTORY]);
    let dir = tempfile::tempdir().unwrap();
    let log =
        std::env::var_os("STOCKPULSE_REPLICATOR_LOG").map_or_else(|| dir.path().join("replicator.log"), Into::into);
    let port = stockpulse_testkit::free_port();

    // Events arrive in 20 slices of 10,000 over about 20 s while the replicator runs.
    let bootstrap = source.bootstrap.clone();
    let producing = std::thread::spawn(move || {
        for slice in 0..20 {
            produce(&bootstrap, slice * 10_000..(slice + 1) * 10_000);
            std::thread::sleep(Duration::from_millis(800));
        }
    });
    let mut replicator = start_replicator(&source.bootstrap, &target.bootstrap, port, &log);
    for kill in 1..=3 {
        let after = Duration::from_millis(1_500 + random.below(6_000));
        std::thread::sleep(after);
        replicator.kill().expect("SIGKILL the replicator");
        let _ = replicator.wait();
        let at = checkpoints(&target.bootstrap).map(|c| c.status.map(|s| s.records_copied)).unwrap_or_default();
        println!("kill {kill} after {after:?}: {at:?} records committed");
        replicator = start_replicator(&source.bootstrap, &target.bootstrap, port, &log);
    }
    producing.join().expect("producer thread");
    let found = wait_caught_up(&source.bootstrap, &target.bootstrap, Duration::from_secs(240));
    let copied = assert_exactly_once(&target.bootstrap, EVENTS);
    let status = found.status.expect("a status record");
    assert_eq!((status.reason.as_str(), status.records_copied, status.records_lost), ("Replicating", copied, 0));
    let (code, _) = http_get(port, "/readyz").expect("the replicator answers");
    assert_eq!(code, 200);
    let metrics = http_get(port, "/metrics").expect("metrics").1;
    let skipped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("stockpulse_replicator_records_skipped_total "))
        .map(str::to_string);
    assert!(skipped.is_some(), "{metrics}");
    replicator.kill().ok();
    let _ = replicator.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!text.contains("panicked"), "{text}");
}

#[test]
fn a_source_outage_of_sixty_seconds_is_reported_and_caught_up() {
    let _turn = TWO_BROKERS.lock().unwrap_or_else(|e| e.into_inner());
    let mut source = Kafka::start();
    let target = Kafka::start();
    create_topics(&source.bootstrap, SOURCE_PARTITIONS, &[SALES, INVENTORY]);
    create_topics(&target.bootstrap, TARGET_PARTITIONS, &[SALES, INVENTORY]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("replicator.log");
    let port = stockpulse_testkit::free_port();
    produce(&source.bootstrap, 0..50_000);
    let mut replicator = start_replicator(&source.bootstrap, &target.bootstrap, port, &log);
    wait_caught_up(&source.bootstrap, &target.bootstrap, Duration::from_secs(120));
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(200));

    source.kill();
    let down = Instant::now();
    let deadline = down + Duration::from_secs(20);
    let body = loop {
        if let Some((503, body)) = http_get(port, "/readyz") {
            break body;
        }
        assert!(Instant::now() < deadline, "/readyz still 200 20 s into the outage");
        std::thread::sleep(Duration::from_millis(250));
    };
    println!("outage seen after {:?}: {body}", down.elapsed());
    assert!(body.starts_with("SourceUnreachable: "), "{body}");
    std::thread::sleep(Duration::from_secs(5));
    let reported = checkpoints(&target.bootstrap).and_then(|c| c.status).expect("a status record");
    assert_eq!(reported.reason, "SourceUnreachable", "{reported:?}");
    while down.elapsed() < Duration::from_secs(60) {
        assert!(replicator.try_wait().expect("try_wait").is_none(), "the replicator exited during the outage");
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(http_get(port, "/readyz").map(|r| r.0), Some(503));

    source.resume();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/readyz").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "/readyz not 200 within 60 s of the source's return");
        std::thread::sleep(Duration::from_millis(250));
    }
    produce(&source.bootstrap, 50_000..100_000);
    let mut found = wait_caught_up(&source.bootstrap, &target.bootstrap, Duration::from_secs(120));
    let copied = assert_exactly_once(&target.bootstrap, 100_000);
    // The restarted source can drop a connection once more just after it answers again, and
    // a probe then reports it unreachable for a few seconds: the status record says so until
    // the next probe succeeds and the replicator commits the status again.
    let deadline = Instant::now() + Duration::from_secs(30);
    while found.status.as_ref().is_some_and(|s| s.reason != "Replicating") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        found = checkpoints(&target.bootstrap).unwrap_or(found);
    }
    let status = found.status.expect("a status record");
    assert_eq!(
        (status.reason.as_str(), status.records_copied, status.records_lost),
        ("Replicating", copied, 0),
        "the replicator's log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(replicator.try_wait().expect("try_wait").is_none(), "the replicator exited");
    replicator.kill().ok();
    let _ = replicator.wait();
}

#[test]
fn records_the_region_deleted_before_they_were_copied_are_counted_not_replayed() {
    let _turn = TWO_BROKERS.lock().unwrap_or_else(|e| e.into_inner());
    let source = Kafka::start();
    let target = Kafka::start();
    create_topics(&source.bootstrap, SOURCE_PARTITIONS, &[SALES, INVENTORY]);
    create_topics(&target.bootstrap, TARGET_PARTITIONS, &[SALES, INVENTORY]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("replicator.log");
    let port = stockpulse_testkit::free_port();
    produce(&source.bootstrap, 0..10_000);
    let mut replicator = start_replicator(&source.bootstrap, &target.bootstrap, port, &log);
    let first = wait_caught_up(&source.bootstrap, &target.bootstrap, Duration::from_secs(120));
    replicator.kill().expect("stop the replicator");
    let _ = replicator.wait();

    // While it is away, the region's retention deletes 1,500 records it has not copied.
    produce(&source.bootstrap, 10_000..20_000);
    let checkpoint = first.partitions.get(&(SALES.to_string(), 0)).map(|c| c.next_offset).expect("checkpoint");
    let delete_to = checkpoint + 1_500;
    let gone: std::collections::BTreeSet<u64> =
        events_at(&source.bootstrap, SALES, 0, checkpoint, delete_to).into_iter().collect();
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", &source.bootstrap).create().expect("admin");
    let mut offsets = TopicPartitionList::new();
    offsets.add_partition_offset(SALES, 0, Offset::Offset(delete_to)).expect("offsets");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    futures::executor::block_on(admin.delete_records(&offsets, &options)).expect("delete records");

    let mut replicator = start_replicator(&source.bootstrap, &target.bootstrap, port, &log);
    let found = wait_caught_up(&source.bootstrap, &target.bootstrap, Duration::from_secs(120));
    let status = found.status.expect("a status record");
    let copied = assert_exactly(&target.bootstrap, 20_000, &gone);
    assert_eq!((status.records_lost, status.records_copied), (1_500, copied));
    let metrics = http_get(port, "/metrics").expect("metrics").1;
    assert!(metrics.lines().any(|l| l == "stockpulse_replicator_records_lost_total 1500"), "{metrics}");
    // A restart counts nothing twice: the loss was committed with the checkpoint past it.
    replicator.kill().expect("stop the replicator");
    let _ = replicator.wait();
    let mut replicator = start_replicator(&source.bootstrap, &target.bootstrap, port, &log);
    let deadline = Instant::now() + Duration::from_secs(60);
    while http_get(port, "/readyz").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "not ready again within 60 s");
        std::thread::sleep(Duration::from_millis(250));
    }
    let again = checkpoints(&target.bootstrap).and_then(|c| c.status).expect("a status record");
    assert_eq!(again.records_lost, 1_500);
    replicator.kill().ok();
    let _ = replicator.wait();
}

/// tansu as a region's cluster (as in the local end-to-end suite): the replicator only reads
/// there, so tansu's missing transaction filtering does not matter. One record per batch:
/// tansu's high watermark counts batches.
#[test]
fn a_tansu_regional_cluster_is_copied_from() {
    let _turn = TWO_BROKERS.lock().unwrap_or_else(|e| e.into_inner());
    let source = stockpulse_testkit::tansu::Tansu::start();
    let target = Kafka::start();
    create_topics(&source.bootstrap, 1, &[SALES, INVENTORY]);
    create_topics(&target.bootstrap, TARGET_PARTITIONS, &[SALES, INVENTORY]);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &source.bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let mut produced = Vec::new();
    for n in (0..40).filter(|n| event(*n).topic == SALES).take(5) {
        let e = event(n);
        let value = format!("{{\"n\":{n}}}");
        let headers = OwnedHeaders::new().insert(Header { key: "trace", value: Some(format!("t-{n}").as_bytes()) });
        let record = BaseRecord::to(SALES)
            .key(e.key.as_str())
            .payload(value.as_str())
            .timestamp(timestamp_of(n))
            .headers(headers);
        send(&producer, record).unwrap_or_else(|e| panic!("{e}"));
        producer.flush(Duration::from_secs(10)).expect("flush");
        produced.push(n);
    }
    let dir = tempfile::tempdir().unwrap();
    let port = stockpulse_testkit::free_port();
    let mut replicator = start_replicator(&source.bootstrap, &target.bootstrap, port, &dir.path().join("log"));
    let deadline = Instant::now() + Duration::from_secs(90);
    let copied = loop {
        let copied = read_target(&target.bootstrap);
        if copied.len() >= produced.len() || Instant::now() > deadline {
            break copied;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let numbers: Vec<u64> = copied.iter().map(|c| c.n).collect();
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, produced, "{}", std::fs::read_to_string(dir.path().join("log")).unwrap_or_default());
    for c in &copied {
        let headers =
            vec![("trace".to_string(), format!("t-{}", c.n)), ("origin-region".to_string(), "eu-central".into())];
        assert_eq!((c.timestamp, &c.headers), (Some(timestamp_of(c.n)), &headers));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/readyz").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "not ready on tansu: {:?}", http_get(port, "/readyz"));
        std::thread::sleep(Duration::from_millis(250));
    }
    replicator.kill().ok();
    let _ = replicator.wait();
}

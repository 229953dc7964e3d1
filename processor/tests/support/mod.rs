//! A pipeline on a real Apache Kafka broker for the processor's integration tests: topics,
//! reference data, generated events, processor processes, and the outputs read back
//! `read_committed`; and `replay` of the same events for comparison.

#![allow(dead_code)]

pub mod figures;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::Value;
use stockpulse_processor::generator::brand::{catalog, stores};
use stockpulse_processor::generator::{Traffic, TrafficOptions};

pub const BIN: &str = env!("CARGO_BIN_EXE_stockpulse-processor");

/// Serialises the tests of one binary: each runs brokers' worth of work on two cores.
pub static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct Pipeline {
    pub name: String,
    pub bootstrap: String,
    pub partitions: i32,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// Events as produced: (topic role "sales"/"inventory", partition, payload).
    pub produced: Vec<(String, i32, Vec<u8>)>,
    /// Rounds of sentinels produced (each round's event ids are new).
    sentinel_rounds: u32,
}

pub fn client(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

impl Pipeline {
    /// Topics of pipeline `name` (`partitions` input partitions), the example brand's stores
    /// and catalog on their topics, and a config with windows grouped by store and one grouped
    /// by region and channel (merged across tasks through the repartition topic).
    pub fn create(bootstrap: &str, name: &str, partitions: i32) -> Pipeline {
        Self::create_with(bootstrap, name, partitions, true)
    }

    /// [`Pipeline::create`], with `processing.exactlyOnce` as given.
    pub fn create_with(bootstrap: &str, name: &str, partitions: i32, exactly_once: bool) -> Pipeline {
        let admin: AdminClient<DefaultClientContext> = client(bootstrap).create().expect("admin client");
        let compact = [("cleanup.policy", "compact")];
        let mut topics = Vec::new();
        let names: Vec<(String, i32, bool)> = vec![
            (format!("{name}.sales"), partitions, false),
            (format!("{name}.inventory"), partitions, false),
            (format!("{name}.changelog"), partitions, true),
            (format!("{name}.repartition"), partitions, false),
            (format!("{name}.aggregates"), 2, true),
            (format!("{name}.inventory-state"), 2, true),
            (format!("{name}.alerts"), 1, false),
            (format!("{name}.dead-letter"), 1, false),
            (format!("{name}.late"), 1, false),
            (format!("{name}.stores"), 1, true),
            (format!("{name}.catalog"), 1, true),
        ];
        for (topic, parts, compacted) in &names {
            // Inputs take records up to 8 MB, so that a test can send an oversized one.
            let mut t = NewTopic::new(topic, *parts, TopicReplication::Fixed(1)).set("max.message.bytes", "8388608");
            if *compacted {
                t = t.set(compact[0].0, compact[0].1);
            }
            if topic.ends_with(".changelog") {
                // As the operator creates it: segments the cleaner compacts as the run goes.
                t = t.set("segment.bytes", "67108864");
            }
            topics.push(t);
        }
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = runtime
            .block_on(
                admin.create_topics(&topics, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))),
            )
            .expect("create topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
        }
        let producer: BaseProducer = client(bootstrap).create().expect("producer");
        for store in stores() {
            let value = serde_json::to_vec(&store).unwrap();
            send(&producer, &format!("{name}.stores"), None, &store.store_id, &value);
        }
        for product in catalog() {
            let value = serde_json::to_vec(&product).unwrap();
            send(&producer, &format!("{name}.catalog"), None, &product.sku_id, &value);
        }
        producer.flush(Duration::from_secs(30)).expect("flush reference data");
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("pipeline.yaml");
        std::fs::write(
            &config,
            format!(
                "name: {name}\n\
                 kafka:\n  bootstrapServers: {bootstrap}\n\
                 processing:\n  groupBy: [store, sku]\n  windows:\n\
                 \x20   - {{name: sales-5m, type: tumbling, size: 5m}}\n\
                 \x20   - {{name: store-channel-15m, type: sliding, size: 15m, slide: 5m, groupBy: [store, channel]}}\n\
                 \x20   - {{name: region-channel-5m, type: tumbling, size: 5m, groupBy: [region, channel]}}\n\
                 \x20 maxOutOfOrderness: 30s\n  allowedLateness: 10m\n  idleTimeout: 1h\n  maxFutureSkew: 15m\n\
                 \x20 dedupe: {{horizon: 1h}}\n  exactlyOnce: {exactly_once}\n\
                 alerts:\n  - {{name: low-stock, lowStock: {{threshold: 3}}, cooldown: 1h}}\n\
                 \x20 - {{name: stuck, stuckInventory: {{period: 20m, minEvents: 5}}, cooldown: 1h}}\n\
                 \x20 - {{name: spike, salesSpike: {{window: store-channel-15m, factor: 1.5, baselineWindows: 3, minBaseline: 5}}, cooldown: 10m}}\n\
                 \x20 - {{name: big, amountOutlier: {{sigma: 4, minSamples: 50}}, cooldown: 10m}}\n"
            ),
        )
        .unwrap();
        let stores_file = dir.path().join("stores.ndjson");
        let catalog_file = dir.path().join("catalog.ndjson");
        std::fs::write(&stores_file, ndjson(&stores())).unwrap();
        std::fs::write(&catalog_file, ndjson(&catalog())).unwrap();
        let (name, bootstrap) = (name.into(), bootstrap.into());
        Pipeline { name, bootstrap, partitions, dir, config, produced: Vec::new(), sentinel_rounds: 0 }
    }

    /// Deletes the topic of `role` (an operator's mistake, or a retention script gone wrong).
    pub fn delete_topic(&self, role: &str) {
        let admin: AdminClient<DefaultClientContext> = client(&self.bootstrap).create().expect("admin client");
        let topic = format!("{}.{role}", self.name);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = runtime
            .block_on(
                admin.delete_topics(&[&topic], &AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)))),
            )
            .expect("delete topics");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("deleting topic {t}: {e}"));
        }
    }

    /// Gives the topics of `roles` `partitions` partitions (CreatePartitions), as the operator
    /// does when a pipeline's `partitions` grows.
    pub fn add_partitions(&self, roles: &[&str], partitions: usize) {
        let admin: AdminClient<DefaultClientContext> = client(&self.bootstrap).create().expect("admin client");
        let topics: Vec<String> = roles.iter().map(|role| format!("{}.{role}", self.name)).collect();
        let new: Vec<rdkafka::admin::NewPartitions> =
            topics.iter().map(|t| rdkafka::admin::NewPartitions::new(t, partitions)).collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = runtime.block_on(admin.create_partitions(&new, &options)).expect("create partitions");
        for r in results {
            r.unwrap_or_else(|(t, e)| panic!("adding partitions to {t}: {e}"));
        }
    }

    /// Sets the `max.message.bytes` of the topic of `role` (the others keep the 8 MB above).
    pub fn set_record_limit(&self, role: &str, bytes: usize) {
        let admin: AdminClient<DefaultClientContext> = client(&self.bootstrap).create().expect("admin client");
        let topic = format!("{}.{role}", self.name);
        let bytes = bytes.to_string();
        let change = AlterConfig::new(ResourceSpecifier::Topic(&topic)).set("max.message.bytes", &bytes);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let results = runtime
            .block_on(
                admin.alter_configs([&change], &AdminOptions::new().request_timeout(Some(Duration::from_secs(30)))),
            )
            .expect("alter configs");
        for r in results {
            r.unwrap_or_else(|(resource, e)| panic!("setting max.message.bytes of {resource:?}: {e}"));
        }
        let described = runtime
            .block_on(admin.describe_configs([&ResourceSpecifier::Topic(&topic)], &AdminOptions::new()))
            .expect("describe configs");
        let set = described.into_iter().flatten().flat_map(|r| r.entries).find(|e| e.name == "max.message.bytes");
        assert_eq!(set.and_then(|e| e.value).as_deref(), Some(bytes.as_str()), "max.message.bytes of {topic}");
    }

    /// Produces `count` generated events (seeded) keyed by store; sales and returns to the
    /// sales topic, the rest to inventory. Then a RESTOCK on every input partition stamped two
    /// hours after the last event: every window fires, in every task.
    pub fn produce_events(&mut self, seed: u64, count: usize) {
        let last_time = self.produce_traffic(seed, count);
        self.produce_sentinels(last_time + 2 * 3_600_000);
    }

    /// Produces `count` generated events (seeded) keyed by store, as [`Pipeline::produce_events`]
    /// does but without the closing RESTOCKs; returns the latest event time.
    pub fn produce_traffic(&mut self, seed: u64, count: usize) -> i64 {
        let mut traffic = self.live_traffic(seed, TrafficOptions::default().start);
        traffic.produce(self, count);
        traffic.last_time
    }

    /// A generator of store traffic (seeded, from event time `start`) whose events go to this
    /// pipeline's topics batch after batch, its event time going on from one to the next.
    pub fn live_traffic(&self, seed: u64, start: i64) -> LiveTraffic {
        let options = TrafficOptions { seed, start, peak_events_per_second: 20.0, ..TrafficOptions::default() };
        let producer: BaseProducer =
            client(&self.bootstrap).set("partitioner", "murmur2_random").set("linger.ms", "5").create().unwrap();
        LiveTraffic { events: Traffic::new(options, &stores(), &catalog()), producer, last_time: start }
    }

    /// A RESTOCK stamped `at` on every input partition: every task's watermark passes it. Its
    /// store id is one the default partitioner puts on that partition, so that `replay`, which
    /// places events by store, feeds it to the same task; its event ids are new each round.
    pub fn produce_sentinels(&mut self, at: i64) {
        let round = i64::from(self.sentinel_rounds);
        self.sentinel_rounds += 1;
        let mut restocks = Vec::new();
        for p in 0..self.partitions {
            for role in ["sales", "inventory"] {
                restocks.push((role, p, round * 1000 + i64::from(p) * 2 + i64::from(role == "inventory"), at));
            }
        }
        self.produce_restocks(&restocks);
    }

    /// A store that trades on: one RESTOCK stamped `at` on the sales topic's partition `p`
    /// (a store of that partition), event id number `n` (from 1,000,000 up: apart from the
    /// sentinels').
    pub fn produce_restock(&mut self, p: i32, n: i64, at: i64) {
        self.produce_restocks(&[("sales", p, 1_000_000 + n, at)]);
    }

    /// RESTOCKs of SKU `SENTINEL` as (topic role, partition, event id number, event time), each
    /// of a store the default partitioner puts on its partition, in order.
    fn produce_restocks(&mut self, restocks: &[(&str, i32, i64, i64)]) {
        let producer: BaseProducer = client(&self.bootstrap).set("linger.ms", "5").create().unwrap();
        for &(role, p, n, at) in restocks {
            let when = chrono::DateTime::from_timestamp_millis(at).unwrap();
            let store = sentinel_store(p, self.partitions);
            let payload = serde_json::json!({
                "event_id": format!("00000000-0000-4000-8000-{n:012}"),
                "event_type": "RESTOCK", "event_time": when.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "store_id": store, "sku_id": "SENTINEL", "quantity_delta": 1
            })
            .to_string()
            .into_bytes();
            send(&producer, &format!("{}.{role}", self.name), Some(p), &store, &payload);
            self.produced.push((role.to_string(), p, payload));
        }
        producer.flush(Duration::from_secs(60)).expect("flush restocks");
    }

    /// Changes one setting of the config the instances start with: `from` (a line's text, as
    /// [`Pipeline::create`] writes it) becomes `to`.
    pub fn configure(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).unwrap();
        assert!(text.contains(from), "the config has no {from:?}:\n{text}");
        std::fs::write(&self.config, text.replacen(from, to, 1)).unwrap();
    }

    /// Produces raw bytes to an input topic, keyed by `key` (any bytes, any size up to 8 MB).
    pub fn produce_raw(&mut self, role: &str, key: &str, payload: &[u8]) {
        let producer: BaseProducer = client(&self.bootstrap)
            .set("partitioner", "murmur2_random")
            .set("message.max.bytes", "10000000")
            .create()
            .unwrap();
        send(&producer, &format!("{}.{role}", self.name), None, key, payload);
        producer.flush(Duration::from_secs(30)).expect("flush");
    }

    /// Produces an event to an input topic keyed by `key`, and keeps it for the replay.
    pub fn produce_recorded(&mut self, role: &str, key: &str, payload: &[u8]) {
        self.produce_raw(role, key, payload);
        self.produced.push((role.to_string(), -1, payload.to_vec()));
    }

    /// The produced events as one NDJSON file, in production order (the replay's input).
    pub fn events_file(&self) -> PathBuf {
        let path = self.dir.path().join("events.ndjson");
        let mut text = Vec::new();
        for (_, _, payload) in &self.produced {
            text.extend_from_slice(payload);
            text.push(b'\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `replay` of the produced events: its output folder.
    pub fn replay(&self) -> PathBuf {
        let out = self.dir.path().join("replay");
        let status = Command::new(BIN)
            .args(["replay", "--config"])
            .arg(&self.config)
            .arg("--input")
            .arg(self.events_file())
            .arg("--stores")
            .arg(self.dir.path().join("stores.ndjson"))
            .arg("--catalog")
            .arg(self.dir.path().join("catalog.ndjson"))
            .arg("--out")
            .arg(&out)
            .arg("--partitions")
            .arg(self.partitions.to_string())
            .status()
            .expect("replay runs");
        assert!(status.success(), "replay failed");
        out
    }

    /// Starts a processor instance.
    pub fn start(&self, instance: &str) -> Processor {
        self.start_with(instance, &[])
    }

    /// Starts a processor instance with more arguments of `run`.
    pub fn start_with(&self, instance: &str, args: &[&str]) -> Processor {
        let address_file = self.dir.path().join(format!("{instance}.address"));
        let _ = std::fs::remove_file(&address_file);
        let log = std::fs::File::create(self.dir.path().join(format!("{instance}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(["run", "--http-port", "0", "--instance-id", instance])
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .arg("--address-file")
            .arg(&address_file)
            .env("RUST_LOG", "stockpulse_processor=info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the processor");
        Processor { child: Some(child), address_file, log: self.dir.path().join(format!("{instance}.log")) }
    }

    /// Starts an instance, waits until it has committed all the input there is, and stops it
    /// (SIGTERM, exit 0).
    pub fn run_to_the_end(&self, instance: &str) {
        let mut processor = self.start(instance);
        self.wait_caught_up(Duration::from_secs(180), &mut [&mut processor]);
        let (status, _) = processor.terminate(Duration::from_secs(20));
        assert!(status.success(), "exit status {status}: {}", processor.log_tail());
    }

    /// The end offset of every input partition.
    pub fn input_ends(&self) -> BTreeMap<(String, i32), i64> {
        let consumer: BaseConsumer = client(&self.bootstrap).create().unwrap();
        let mut ends = BTreeMap::new();
        for role in ["sales", "inventory"] {
            let topic = format!("{}.{role}", self.name);
            for p in 0..self.partitions {
                let (_, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).unwrap();
                ends.insert((topic.clone(), p), high);
            }
        }
        ends
    }

    /// Input records the group has committed, and the input's total.
    pub fn committed_progress(&self) -> (i64, i64) {
        let ends = self.input_ends();
        // read_uncommitted: the last stable offsets, without waiting for a killed instance's
        // pending transaction to be aborted.
        let consumer: BaseConsumer = client(&self.bootstrap)
            .set("group.id", &self.name)
            .set("isolation.level", "read_uncommitted")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in ends.keys() {
            tpl.add_partition(topic, *p);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        let committed = loop {
            match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(committed) => break committed,
                Err(e) => assert!(Instant::now() < deadline, "committed offsets: {e}"),
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let done = ends
            .keys()
            .map(|(t, p)| committed.find_partition(t, *p).and_then(|e| e.offset().to_raw()).unwrap_or(0).max(0))
            .sum();
        (done, ends.values().sum())
    }

    /// Whether the group has committed every record of task `p`'s sales and inventory
    /// partitions.
    pub fn task_caught_up(&self, p: i32) -> bool {
        let ends = self.input_ends();
        let consumer: BaseConsumer = client(&self.bootstrap).set("group.id", &self.name).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for role in ["sales", "inventory"] {
            tpl.add_partition(&format!("{}.{role}", self.name), p);
        }
        let Ok(committed) = consumer.committed_offsets(tpl, Duration::from_secs(10)) else { return false };
        committed.elements().iter().all(|e| {
            let end = ends.get(&(e.topic().to_string(), p)).copied().unwrap_or(0);
            e.offset().to_raw().unwrap_or(-1) >= end
        })
    }

    /// Waits until the group has committed every input record.
    pub fn wait_caught_up(&self, timeout: Duration, processors: &mut [&mut Processor]) {
        let ends = self.input_ends();
        let consumer: BaseConsumer = client(&self.bootstrap)
            .set("group.id", &self.name)
            .set("isolation.level", "read_committed")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for (topic, p) in ends.keys() {
            tpl.add_partition(topic, *p);
        }
        let deadline = Instant::now() + timeout;
        loop {
            for p in processors.iter_mut() {
                p.assert_running();
            }
            let committed = match consumer.committed_offsets(tpl.clone(), Duration::from_secs(10)) {
                Ok(committed) => committed,
                Err(e) => {
                    // The group coordinator may still be loading on a new broker.
                    assert!(Instant::now() < deadline, "committed offsets of group {}: {e}", self.name);
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            let behind = stockpulse_testkit::kafka::behind(&committed, &ends);
            if behind.is_empty() && self.repartition_merged() {
                return;
            }
            assert!(Instant::now() < deadline, "not caught up within {timeout:?}: {behind:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Whether the group has committed every record of the repartition topic: no committed
    /// record lies beyond a partition's committed offset. (Its end offset is no measure: the
    /// markers of the transactions that wrote it take offsets too.)
    pub fn repartition_merged(&self) -> bool {
        let topic = format!("{}.repartition", self.name);
        let group: BaseConsumer = client(&self.bootstrap).set("group.id", &self.name).create().unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions {
            tpl.add_partition(&topic, p);
        }
        let Ok(committed) = group.committed_offsets(tpl, Duration::from_secs(10)) else { return false };
        let reader = stockpulse_testkit::kafka::committed_reader(&self.bootstrap).unwrap_or_else(|e| panic!("{e}"));
        let mut from = TopicPartitionList::new();
        for p in 0..self.partitions {
            let offset = committed.find_partition(&topic, p).and_then(|e| e.offset().to_raw()).unwrap_or(0).max(0);
            from.add_partition_offset(&topic, p, Offset::Offset(offset)).unwrap();
        }
        reader.assign(&from).unwrap();
        let mut open = self.partitions;
        let deadline = Instant::now() + Duration::from_secs(30);
        while open > 0 && Instant::now() < deadline {
            match reader.poll(Duration::from_millis(200)) {
                Some(Ok(_)) => return false,
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => open -= 1,
                Some(Err(_)) | None => {}
            }
        }
        open == 0
    }

    /// Every record of an output topic, `read_committed`, from the beginning to its end.
    pub fn read_topic(&self, role: &str) -> Vec<Record> {
        read_committed(&self.bootstrap, &format!("{}.{role}", self.name))
    }
}

pub use stockpulse_testkit::kafka::Record;

pub fn read_committed(bootstrap: &str, topic: &str) -> Vec<Record> {
    stockpulse_testkit::kafka::read_committed(bootstrap, topic).unwrap_or_else(|e| panic!("{e}"))
}

/// The last value of each key (a compacted topic's meaning).
pub fn last_values(records: &[Record]) -> BTreeMap<String, Value> {
    let mut last = BTreeMap::new();
    for r in records {
        let Some(key) = &r.key else { continue };
        match &r.value {
            Some(v) => {
                last.insert(key.clone(), serde_json::from_slice(v).expect("JSON output"));
            }
            None => {
                last.remove(key);
            }
        }
    }
    last
}

/// Generated traffic produced batch by batch ([`Pipeline::live_traffic`]).
pub struct LiveTraffic {
    events: Traffic,
    producer: BaseProducer,
    /// The latest event time produced so far.
    pub last_time: i64,
}

impl LiveTraffic {
    /// Produces the next `count` events keyed by store (sales and returns to the sales topic,
    /// the rest to inventory), recorded in `pipeline` for replay.
    pub fn produce(&mut self, pipeline: &mut Pipeline, count: usize) {
        let events: Vec<_> = self.events.by_ref().take(count).collect();
        for event in &events {
            let parsed: Option<Value> = serde_json::from_slice(&event.payload).ok();
            let kind = parsed.as_ref().and_then(|v| v.get("event_type")).and_then(Value::as_str).unwrap_or("SALE");
            if let Some(t) = parsed.as_ref().and_then(|v| v.get("event_time")).and_then(Value::as_str)
                && let Ok(t) = chrono::DateTime::parse_from_rfc3339(t)
            {
                self.last_time = self.last_time.max(t.timestamp_millis());
            }
            let role = if matches!(kind, "SALE" | "RETURN") { "sales" } else { "inventory" };
            send(&self.producer, &format!("{}.{role}", pipeline.name), None, &event.key, &event.payload);
        }
        self.producer.flush(Duration::from_secs(60)).expect("flush events");
        pipeline.produced.extend(events.iter().map(|e| ("event".to_string(), -1, e.payload.clone())));
    }
}

pub struct Processor {
    child: Option<Child>,
    address_file: PathBuf,
    pub log: PathBuf,
}

impl Processor {
    /// The HTTP address, once the instance is listening.
    pub fn address(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(&self.address_file)
                && !text.is_empty()
            {
                return text.replace("0.0.0.0", "127.0.0.1");
            }
            assert!(Instant::now() < deadline, "the processor did not listen within {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!("the processor exited ({status}):\n{}", self.log_tail());
        }
    }

    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends the process a signal by name (`STOP`, `CONT`, ...).
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -{name}");
    }

    /// Waits for the process to exit by itself; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the processor did not exit within {timeout:?}:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status and how long the exit took.
    pub fn terminate(&mut self, timeout: Duration) -> (std::process::ExitStatus, Duration) {
        let mut child = self.child.take().expect("running");
        let started = Instant::now();
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return (status, started.elapsed());
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the processor did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Processor {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `SENTINEL-<p>-<n>` with the first `n` that Kafka's default partitioner puts on partition `p`.
pub fn sentinel_store(p: i32, partitions: i32) -> String {
    let on_p = |store: &String| {
        stockpulse_processor::partitioner::partition_of(store.as_bytes(), partitions as u32) == p as u32
    };
    (0..10_000).map(|n| format!("SENTINEL-{p}-{n}")).find(on_p).expect("a sentinel store id on each partition")
}

/// A GET on the processor's HTTP port: (status, body).
pub fn http_get(address: &str, path: &str) -> (u16, String) {
    let response = http_request(address, path);
    (response.status, response.body)
}

/// Waits until the instance at `address` answers `/readyz` with 200.
pub fn wait_ready(address: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = http_get(address, "/readyz");
        if status == 200 {
            return;
        }
        assert!(Instant::now() < deadline, "{address} not ready within {timeout:?}: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// `GET path` on `address` (HTTP/1.1, the connection closed after it).
pub fn http_request(address: &str, path: &str) -> HttpResponse {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the processor");
    stream.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    HttpResponse { status, headers, body: body.to_string() }
}

/// Sends a record stamped with a strictly increasing time, so that a task's timestamp merge
/// of its two partitions gives back exactly the order of production.
fn send(producer: &BaseProducer, topic: &str, partition: Option<i32>, key: &str, value: &[u8]) {
    static CLOCK: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let now = chrono::Utc::now().timestamp_millis();
    let next = |last: i64| Some(last.max(now - 1) + 1);
    let last = CLOCK.fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, next);
    let stamp = last.map_or(now, |last| last.max(now - 1) + 1);
    let mut record = BaseRecord::to(topic).key(key).payload(value).timestamp(stamp);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    stockpulse_testkit::kafka::send(producer, record).unwrap_or_else(|e| panic!("{e}"));
}

fn ndjson<T: serde::Serialize>(items: &[T]) -> String {
    items.iter().map(|i| serde_json::to_string(i).unwrap() + "\n").collect()
}

/// Lines of an NDJSON output file of `replay`.
pub fn replay_lines(dir: &Path, name: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(name))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("replay output is JSON"))
        .collect()
}

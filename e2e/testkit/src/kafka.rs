//! Apache Kafka, KRaft mode, one node (broker and controller) on free loopback ports, with
//! its data in a temporary folder; from the jars in `STOCKPULSE_KAFKA_LIBS`.
//!
//! The JVM runs under a small shell guard that reads the test's end of a pipe: when the test
//! process ends, however it ends, the pipe closes and the guard kills the broker, so a broker
//! shared by the tests of one binary ([`Kafka::shared`]) never outlives it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::{free_port, tool, wait_for_port};

/// How long a broker may take to listen (a cold JVM on a loaded 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(90);

pub struct Kafka {
    /// `host:port` of the PLAINTEXT listener.
    pub bootstrap: String,
    port: u16,
    controller_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The JVM's options (tuned for a quick start unless [`Kafka::start_for_benchmarks`]).
    jvm: &'static [&'static str],
    /// Whether the guard removes the data folder once the JVM is dead: a shared broker is a
    /// static, never dropped, so its `TempDir` would stay behind (126 MB a test binary).
    guard_removes_data: bool,
}

/// A quick start for tests: C1 only, a small heap.
const TEST_JVM: &[&str] = &["-Xms256m", "-Xmx768m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"];
/// Throughput for benchmarks: the full JIT, G1 (Kafka's own defaults), a larger heap.
const BENCHMARK_JVM: &[&str] = &["-Xms1g", "-Xmx1g", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20"];

impl Kafka {
    /// A new broker of its own, stopped when dropped.
    pub fn start() -> Kafka {
        Self::start_with_jvm(TEST_JVM, false)
    }

    /// A broker whose JVM runs as Kafka's own scripts start it (full JIT, G1), for
    /// throughput and latency figures; it takes longer to warm up.
    pub fn start_for_benchmarks() -> Kafka {
        Self::start_with_jvm(BENCHMARK_JVM, false)
    }

    fn start_with_jvm(jvm: &'static [&'static str], guard_removes_data: bool) -> Kafka {
        let dir = tempfile::Builder::new().prefix("stockpulse-kafka-").tempdir().expect("temporary folder for Kafka");
        let (port, controller_port) = (free_port(), free_port());
        let bootstrap = format!("127.0.0.1:{port}");
        let mut kafka = Kafka { bootstrap, port, controller_port, dir, child: None, jvm, guard_removes_data };
        kafka.write_config();
        kafka.format();
        kafka.launch();
        kafka
    }

    /// One broker for all the tests of this test binary (tests name their own topics and
    /// groups); it ends with the binary.
    pub fn shared() -> &'static Kafka {
        static SHARED: OnceLock<Kafka> = OnceLock::new();
        SHARED.get_or_init(|| Self::start_with_jvm(TEST_JVM, true))
    }

    /// Kills the broker (SIGKILL) and keeps its data: [`Kafka::resume`] starts it again on
    /// the same ports.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take()); // the guard kills the JVM
            let _ = child.wait();
        }
    }

    /// Starts a killed broker again on its ports and data.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the broker at {} is running", self.bootstrap);
        self.launch();
    }

    /// Stalls the broker: its JVM stopped (SIGSTOP) for `duration`, then continued, the way
    /// a long garbage collection or an overloaded host stalls it. Clients see no error, only
    /// requests that take that long.
    pub fn stall(&self, duration: Duration) {
        let guard = self.child.as_ref().expect("the broker runs").id();
        // The guard's children: the JVM and the subshell that kills it when stdin closes.
        let children = std::fs::read_to_string(format!("/proc/{guard}/task/{guard}/children"))
            .unwrap_or_else(|e| panic!("cannot list the broker guard's processes: {e}"));
        let pids: Vec<&str> = children.split_whitespace().collect();
        assert!(!pids.is_empty(), "the broker guard {guard} has no JVM");
        let signal = |name: &str| {
            let status = Command::new("kill").arg(format!("-{name}")).args(&pids).status();
            assert!(status.is_ok_and(|s| s.success()), "kill -{name} {pids:?} failed");
        };
        signal("STOP");
        std::thread::sleep(duration);
        signal("CONT");
    }

    /// The broker's log (warnings and errors), for a failing test's message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("server.properties")
    }

    fn write_config(&self) {
        let data = self.dir.path().join("data");
        let config = format!(
            "process.roles=broker,controller\n\
             node.id=1\n\
             controller.quorum.bootstrap.servers=127.0.0.1:{cp}\n\
             listeners=PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{cp}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{p}\n\
             controller.listener.names=CONTROLLER\n\
             inter.broker.listener.name=PLAINTEXT\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             log.dirs={data}\n\
             num.partitions=1\n\
             auto.create.topics.enable=false\n\
             offsets.topic.replication.factor=1\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor=1\n\
             transaction.state.log.min.isr=1\n\
             transaction.state.log.num.partitions=4\n\
             share.coordinator.state.topic.replication.factor=1\n\
             share.coordinator.state.topic.min.isr=1\n\
             group.initial.rebalance.delay.ms=0\n\
             log.cleaner.backoff.ms=1000\n",
            p = self.port,
            cp = self.controller_port,
            data = data.display()
        );
        std::fs::write(self.config_path(), config).expect("write Kafka's server.properties");
    }

    fn java(&self) -> Command {
        let libs = tool("STOCKPULSE_KAFKA_LIBS");
        let mut java = Command::new("java");
        java.args(self.jvm).arg("-Djava.awt.headless=true");
        if let Some(log4j) = std::env::var_os("STOCKPULSE_KAFKA_LOG4J") {
            java.arg(format!("-Dlog4j2.configurationFile={}", Path::new(&log4j).display()));
        }
        java.arg("-cp").arg(format!("{}/*", libs.display()));
        java
    }

    fn format(&self) {
        let cluster_id = cluster_id();
        let output = self
            .java()
            .args(["kafka.tools.StorageTool", "format", "--standalone", "-t", &cluster_id, "-c"])
            .arg(self.config_path())
            .output()
            .unwrap_or_else(|e| panic!("cannot run java for Kafka's storage tool: {e}"));
        assert!(
            output.status.success(),
            "formatting Kafka's storage failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("open the broker's log");
        let java = self.java();
        let mut args: Vec<String> = java.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        args.push("kafka.Kafka".into());
        args.push(self.config_path().display().to_string());
        // The guard: the JVM in the background; when stdin closes, SIGKILL it (and, for a
        // shared broker, remove its data once it is dead).
        let remove = if self.guard_removes_data { self.dir.path().display().to_string() } else { String::new() };
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(
                r#"java "$@" </dev/null & pid=$!
                { cat >/dev/null; kill -9 "$pid" 2>/dev/null
                  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
                  if [ -n "$GUARD_REMOVE" ]; then rm -rf -- "$GUARD_REMOVE"; fi; } <&0 &
                wait "$pid""#,
            )
            .arg("kafka-guard")
            .env("GUARD_REMOVE", remove)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Apache Kafka: {e}"));
        if let Some(stdin) = child.stdin.as_mut() {
            let _ = stdin.flush();
        }
        self.child = Some(child);
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(&self.bootstrap).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("Apache Kafka exited ({status}) before listening:\n{}", self.log_tail());
            }
            if started.elapsed() > START_TIMEOUT {
                panic!(
                    "Apache Kafka did not listen on {} within {START_TIMEOUT:?}:\n{}",
                    self.bootstrap,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        wait_for_port(&self.bootstrap, "Apache Kafka", Duration::from_secs(1));
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A KRaft cluster id: 16 bytes (time and process), URL-safe base64 without padding.
fn cluster_id() -> String {
    use base64::Engine as _;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(1);
    let bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// One record read back from a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Option<String>,
    pub value: Option<Vec<u8>>,
    /// Header values as text (lossy).
    pub headers: std::collections::BTreeMap<String, String>,
}

/// A `read_committed` consumer with no offsets of its own and end-of-partition events on:
/// the tests' way to read what a pipeline committed.
pub fn committed_reader(bootstrap: &str) -> Result<rdkafka::consumer::BaseConsumer, String> {
    rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "stockpulse-test-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .map_err(|e| format!("creating a reader of {bootstrap}: {e}"))
}

/// Every committed record of `topic`, from the beginning to its end (at most 2 minutes).
pub fn read_committed(bootstrap: &str, topic: &str) -> Result<Vec<Record>, String> {
    use rdkafka::consumer::Consumer;
    use rdkafka::message::{Headers, Message};
    use rdkafka::{Offset, TopicPartitionList};
    let consumer = committed_reader(bootstrap)?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let partitions = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    let mut tpl = TopicPartitionList::new();
    let mut open = 0;
    for p in 0..partitions as i32 {
        let (low, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        if high > low {
            tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(|e| e.to_string())?;
            open += 1;
        }
    }
    let mut records = Vec::new();
    if open == 0 {
        return Ok(records);
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while open > 0 {
        if std::time::Instant::now() > deadline {
            return Err(format!("reading {topic} to its end took over 2 minutes"));
        }
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
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
                records.push(Record {
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers,
                });
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => return Err(format!("reading {topic}: {e}")),
            None => {}
        }
    }
    Ok(records)
}

/// Sends a record, serving delivery reports while the producer's queue is full; any other
/// refusal is an error naming the topic.
pub fn send<K, P>(
    producer: &rdkafka::producer::BaseProducer,
    mut record: rdkafka::producer::BaseRecord<'_, K, P>,
) -> Result<(), String>
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    loop {
        match producer.send(record) {
            Ok(()) => {
                producer.poll(Duration::ZERO);
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, back)) => return Err(format!("producing to {}: {e}", back.topic)),
        }
    }
}

/// The partitions whose committed offset is missing or short of its end, as `topic/p (end N)`.
pub fn behind(
    committed: &rdkafka::TopicPartitionList,
    ends: &std::collections::BTreeMap<(String, i32), i64>,
) -> Vec<String> {
    ends.iter()
        .filter(|((t, p), end)| {
            committed.find_partition(t, *p).and_then(|e| e.offset().to_raw()).is_none_or(|c| c < **end)
        })
        .map(|((t, p), end)| format!("{t}/{p} (end {end})"))
        .collect()
}

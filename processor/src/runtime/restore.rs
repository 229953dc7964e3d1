//! Reading a task's changelog partition back, a step at a time, on the processing loop (never
//! inside a rebalance callback): the loop goes on turning, so `/healthz` beats, the other
//! tasks keep processing and the consumer keeps polling while a large changelog is read.
//!
//! Two readings:
//! - [`ChangelogReader::whole`]: every record from the beginning, the last value of each key,
//!   until the changelog reaches the committed input offsets (a restore);
//! - [`ChangelogReader::since`]: whether anything was written after the end this instance saw
//!   when it gave the task up. A task that comes back (A -> B -> A) with its committed offsets
//!   unchanged may still have been changed by B on wall-clock ticks (windows fired, alerts
//!   sent); any record written since means it was, and the task is restored.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::RunError;
use super::client::ConsumerLog;
use super::task::{OFFSETS_HEADER, PARTITIONS_HEADER, parse_offsets_header};

/// How long a restore waits for the changelog to reach the committed offsets: a transaction
/// left open by an instance that died unseen hides every later commit from `read_committed`
/// readers until the broker aborts it (the transaction timeout: 10 s for this version's
/// instances, 60 s for earlier ones).
pub const OPEN_TRANSACTION_WAIT: Duration = Duration::from_secs(75);

/// How long a reading may go without a record or reaching the end before it fails (the
/// broker is away or the partition has no leader): the run ends, and the restart retries. A
/// reading that makes progress has no limit, however large the changelog.
pub const NO_PROGRESS_LIMIT: Duration = Duration::from_secs(300);

/// What one step of reading came to.
pub enum Step {
    /// More to read (the step's time is up).
    Pending,
    /// The whole reading is done: the last value of every key, the records read, the
    /// reader's position at the end (`None`: not known), and the input partitions the last
    /// record's state was built for (`None`: a changelog of an earlier version).
    Read { state: HashMap<String, String>, records: u64, end: Option<i64>, built_for: Option<u32> },
    /// ([`ChangelogReader::since`]) Nothing was written since: the suspended task is current.
    Unchanged,
    /// ([`ChangelogReader::since`]) Something was written since: the task must be restored.
    Changed,
}

enum Mode {
    Whole,
    Since,
}

/// What a whole reading has gathered.
struct Entries {
    partition: i32,
    /// The committed input offsets the changelog must reach (-1: nothing committed).
    limit: [i64; 3],
    /// The highest input offsets the changelog records read so far reflect.
    reached: [i64; 3],
    state: HashMap<String, String>,
    records: u64,
    built_for: Option<u32>,
}

pub struct ChangelogReader {
    consumer: BaseConsumer<ConsumerLog>,
    topic: String,
    partition: i32,
    mode: Mode,
    read: Entries,
    started: Instant,
    last_progress: Instant,
    /// At the end the reader sees (a `read_committed` reader: the last stable offset).
    at_end: bool,
    /// Whether the wait behind an open transaction, and a read error, were logged.
    said_waiting: bool,
    said_error: bool,
}

impl ChangelogReader {
    /// Reads changelog partition `partition` whole, until it reaches `committed`, left out
    /// what is beyond those offsets (a broker that shows aborted records, such as tansu,
    /// would otherwise hand back state the committed offsets do not cover).
    ///
    /// Every commit of a task writes at least its `["meta"]` entry, with a header naming the
    /// committed offsets, so the changelog reaches the committed offsets once it is read
    /// whole. A `read_committed` reader stops short of that while a dead instance's
    /// transaction is open on the partition (the end it reports is the last stable offset,
    /// before that transaction): the commits after it, another instance's, are then not
    /// visible yet. The reading waits for them ([`OPEN_TRANSACTION_WAIT`] at most); restoring
    /// the older state with the newer offsets would lose the work in between.
    pub fn whole(
        client: &ClientConfig,
        topic: &str,
        partition: i32,
        committed: [Option<i64>; 3],
    ) -> Result<Self, RunError> {
        let mut reader = Self::open(client, topic, partition, Offset::Beginning, "read_committed", Mode::Whole)?;
        reader.read.limit = committed.map(|c| c.unwrap_or(-1));
        Ok(reader)
    }

    /// Reads changelog partition `partition` from `end` (its end when this instance gave the
    /// task up), uncommitted records included: any record there, committed, aborted or still
    /// open, means another instance worked on the task meanwhile.
    pub fn since(client: &ClientConfig, topic: &str, partition: i32, end: i64) -> Result<Self, RunError> {
        Self::open(client, topic, partition, Offset::Offset(end), "read_uncommitted", Mode::Since)
    }

    fn open(
        client: &ClientConfig,
        topic: &str,
        partition: i32,
        from: Offset,
        isolation: &str,
        mode: Mode,
    ) -> Result<Self, RunError> {
        let consumer: BaseConsumer<ConsumerLog> = client
            .clone()
            .set("group.id", "stockpulse-restore")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", isolation)
            .create_with_context(ConsumerLog)
            .map_err(|e| RunError::kafka("creating the changelog reader", e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, from)
            .map_err(|e| RunError::kafka("assigning the changelog partition", e))?;
        consumer.assign(&tpl).map_err(|e| RunError::kafka("assigning the changelog partition", e))?;
        let now = Instant::now();
        Ok(ChangelogReader {
            consumer,
            topic: topic.to_string(),
            partition,
            mode,
            read: Entries {
                partition,
                limit: [-1; 3],
                reached: [-1; 3],
                state: HashMap::new(),
                records: 0,
                built_for: None,
            },
            started: now,
            last_progress: now,
            at_end: false,
            said_waiting: false,
            said_error: false,
        })
    }

    /// Reads for `budget` at most.
    pub fn step(&mut self, budget: Duration) -> Result<Step, RunError> {
        let until = Instant::now() + budget;
        loop {
            if self.at_end && matches!(self.mode, Mode::Whole) && self.started.elapsed() >= OPEN_TRANSACTION_WAIT {
                tracing::warn!(
                    topic = %self.topic,
                    partition = self.partition,
                    committed = ?self.read.limit,
                    reached = ?self.read.reached,
                    "the changelog ends before the committed offsets after waiting {OPEN_TRANSACTION_WAIT:?}; restoring the state it holds"
                );
                return Ok(self.done());
            }
            if !self.at_end && self.last_progress.elapsed() >= NO_PROGRESS_LIMIT {
                return Err(RunError::Restore {
                    partition: self.partition,
                    message: format!(
                        "changelog {}/{}: no record and no end for {NO_PROGRESS_LIMIT:?} ({} records read)",
                        self.topic, self.partition, self.read.records
                    ),
                });
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Step::Pending);
            }
            match self.consumer.poll(left.min(Duration::from_millis(50))) {
                None => {}
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    self.last_progress = Instant::now();
                    self.at_end = true;
                    if matches!(self.mode, Mode::Since) {
                        return Ok(Step::Unchanged);
                    }
                    if self.read.complete() {
                        return Ok(self.done());
                    }
                    if !self.said_waiting {
                        self.said_waiting = true;
                        tracing::info!(
                            topic = %self.topic,
                            partition = self.partition,
                            committed = ?self.read.limit,
                            reached = ?self.read.reached,
                            "the changelog's committed end is behind an open transaction (an instance that died?); waiting until the broker ends it"
                        );
                    }
                }
                Some(Err(e)) if !self.said_error => {
                    self.said_error = true;
                    tracing::warn!(error = %e, topic = %self.topic, partition = self.partition, "reading the changelog; retrying");
                }
                Some(Err(_)) => {}
                Some(Ok(message)) => {
                    self.last_progress = Instant::now();
                    self.at_end = false;
                    if matches!(self.mode, Mode::Since) {
                        return Ok(Step::Changed);
                    }
                    self.read.take(&message)?;
                }
            }
        }
    }

    /// The reading's end: what it gathered, and where it stands (past markers and aborted
    /// records: a later reading from there sees only what was written after).
    fn done(&mut self) -> Step {
        let end = self.consumer.position().ok().and_then(|tpl| {
            match tpl.find_partition(&self.topic, self.partition)?.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            }
        });
        Step::Read {
            state: std::mem::take(&mut self.read.state),
            records: self.read.records,
            end,
            built_for: self.read.built_for,
        }
    }
}

impl Entries {
    /// Whether the records read reach the committed offsets.
    fn complete(&self) -> bool {
        self.reached.iter().zip(self.limit).all(|(reached, limit)| *reached >= limit)
    }

    fn take(&mut self, message: &rdkafka::message::BorrowedMessage<'_>) -> Result<(), RunError> {
        self.records += 1;
        let header =
            |name: &str| message.headers().and_then(|h| h.iter().find(|h| h.key == name).and_then(|h| h.value));
        let offsets = header(OFFSETS_HEADER).and_then(parse_offsets_header);
        if let Some(count) = header(PARTITIONS_HEADER).and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()) {
            self.built_for = Some(count);
        }
        for (reached, offset) in self.reached.iter_mut().zip(offsets.unwrap_or([-1; 3])) {
            *reached = (*reached).max(offset);
        }
        if offsets.is_some_and(|o| o.iter().zip(self.limit).any(|(offset, limit)| *offset > limit)) {
            return Ok(());
        }
        let partition = self.partition;
        let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
            return Err(RunError::Restore {
                partition,
                message: format!("changelog record at offset {} has no UTF-8 key", message.offset()),
            });
        };
        match message.payload() {
            None => {
                self.state.remove(key);
            }
            Some(value) => {
                let value = std::str::from_utf8(value).map_err(|_| RunError::Restore {
                    partition,
                    message: format!("changelog record {key} is not UTF-8"),
                })?;
                self.state.insert(key.to_string(), value.to_string());
            }
        }
        Ok(())
    }
}

//! One copying session: connect to both clusters, resume from the target's checkpoints, then
//! copy in batches, each one Kafka transaction on the target holding the copied records,
//! the checkpoints of the source offsets they cover and the status record. Any failure that
//! librdkafka does not ride out itself ends the session with a [`SessionError`]; the
//! supervisor (`replicator::run`) waits (backoff with jitter) and starts a new one, which
//! aborts whatever the last one left open and resumes from what was committed.
//!
//! Records are sent without waiting for each other: librdkafka batches them per target
//! partition, with up to 5 requests in flight and idempotence (implied by transactions), so
//! order per partition holds. The transaction commits when the batch reaches
//! `batch_records` or `batch_time`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::Replication;
use super::checkpoint::{Checkpoint, ReaderLog, ReplicationStatus, STATUS_KEY, partition_key, read_checkpoints};
use super::health::{Health, Reason, Side, classify};
use super::partitioning::target_partition;
use crate::kafka_admin::rdkafka_client::client_config;

/// The header naming the region a record was first produced in.
pub const ORIGIN_HEADER: &str = "origin-region";
/// How long a call to a cluster may take before it counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a source probe may take: short, so a WAN loss shows within seconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", reason.as_str())]
pub struct SessionError {
    pub reason: Reason,
    pub message: String,
}

fn failed(side: Side, step: &str, error: KafkaError) -> SessionError {
    SessionError { reason: classify(side, &error), message: format!("{step}: {error}") }
}

fn missing(message: String) -> SessionError {
    SessionError { reason: Reason::TopicMissing, message }
}

/// A source partition being copied.
#[derive(Debug)]
struct Partition {
    target_partitions: u32,
    /// Next source offset to copy, as far as records were sent (committed or not).
    next: i64,
    /// Next source offset as committed in the target's checkpoint topic.
    committed: i64,
    /// Timestamp (ms) of the last record read, for lag in seconds.
    last_timestamp: Option<i64>,
}

/// What the open transaction holds.
#[derive(Debug, Default)]
struct Batch {
    started: Option<Instant>,
    records: u64,
    bytes: u64,
    skipped: u64,
}

struct Session<'a> {
    replication: &'a Replication,
    health: &'a Health,
    producer: BaseProducer,
    partitions: BTreeMap<(String, i32), Partition>,
    status: ReplicationStatus,
    batch: Batch,
    /// The status changed since it was last committed.
    status_dirty: bool,
}

/// Runs one session until `stop` (then the open batch is committed: `Ok`) or a failure.
pub fn session(replication: &Replication, health: &Health, stop: &AtomicBool) -> Result<(), SessionError> {
    health.set(Reason::Starting, "connecting to the target, reading checkpoints");
    let producer: BaseProducer = client_config(&replication.target)
        .set("client.id", format!("{}-producer", replication.id))
        .set("transactional.id", &replication.id)
        .set("transaction.timeout.ms", TRANSACTION_TIMEOUT.as_millis().to_string())
        .set("linger.ms", replication.linger.as_millis().to_string())
        .set("batch.size", "1000000")
        // A batch (at most `batch_records`) is all that waits here; the bound keeps a backlog
        // within the pod's memory limit.
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "131072")
        .create()
        .map_err(|e| failed(Side::Target, "creating the target producer", e))?;
    producer
        .init_transactions(CALL_TIMEOUT * 3)
        .map_err(|e| failed(Side::Target, "initialising transactions (fencing an older replicator)", e))?;
    ensure_checkpoint_topic(replication)?;
    let checkpoints = {
        let reader: BaseConsumer<ReaderLog> = client_config(&replication.target)
            .set("group.id", format!("{}-checkpoint-reader", replication.id))
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create_with_context(ReaderLog)
            .map_err(|e| failed(Side::Target, "creating the checkpoint reader", e))?;
        read_checkpoints(&reader, &replication.checkpoint_topic, None, CALL_TIMEOUT)
            .map_err(|e| failed(Side::Target, "reading the checkpoints", e))?
            .unwrap_or_default()
    };
    let target_counts =
        partition_counts(producer.client(), &replication.topics, Side::Target, "the pipeline's cluster")?;

    health.set(Reason::Starting, "connecting to the source");
    let consumer: BaseConsumer = client_config(&replication.source)
        .set("client.id", format!("{}-consumer", replication.id))
        // Never used for commits: the checkpoints live in the target.
        .set("group.id", &replication.id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // An offset the source no longer holds is an error, counted as lost, never a replay.
        .set("auto.offset.reset", "error")
        // Records of the region's aborted transactions are never copied.
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .set("queued.min.messages", "50000")
        // Prefetched records per partition, at most 8 MiB: bounded memory with many partitions.
        .set("queued.max.messages.kbytes", "8192")
        .create()
        .map_err(|e| failed(Side::Source, "creating the source consumer", e))?;
    let source_counts = partition_counts(consumer.client(), &replication.topics, Side::Source, "the regional cluster")?;

    let mut status = checkpoints.status.clone().unwrap_or_default();
    let mut partitions = BTreeMap::new();
    let mut assignment = TopicPartitionList::new();
    let mut lost_now = 0u64;
    let mut status_dirty = false;
    for (topic, count) in &source_counts {
        let target_count = target_counts.get(topic).and_then(|c| u32::try_from(*c).ok()).unwrap_or(1);
        for partition in 0..*count {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, CALL_TIMEOUT)
                .map_err(|e| failed(Side::Source, &format!("reading the offsets of {topic}/{partition}"), e))?;
            let saved = checkpoints.partitions.get(&(topic.clone(), partition)).map(|c| c.next_offset);
            let (start, lost) = resume_offset(saved, low, high);
            if lost > 0 {
                tracing::error!(
                    topic = %topic,
                    partition,
                    checkpoint = saved.unwrap_or(0),
                    earliest = low,
                    lost,
                    "the regional cluster deleted records before they were copied"
                );
                status_dirty = true;
            }
            lost_now = lost_now.saturating_add(lost);
            // A partition first seen, or resumed past a gap, is checkpointed at its start
            // with the next transaction, so a loss is counted once.
            let committed = if saved.is_none() || lost > 0 { -1 } else { start };
            partitions.insert(
                (topic.clone(), partition),
                Partition { target_partitions: target_count, next: start, committed, last_timestamp: None },
            );
            assignment
                .add_partition_offset(topic, partition, Offset::Offset(start))
                .map_err(|e| failed(Side::Source, "assigning partitions", e))?;
        }
    }
    if lost_now > 0 {
        health.metrics.records_lost.inc_by(lost_now);
        status.records_lost = status.records_lost.saturating_add(lost_now);
    }
    consumer.assign(&assignment).map_err(|e| failed(Side::Source, "assigning partitions", e))?;
    let mut session =
        Session { replication, health, producer, partitions, status, batch: Batch::default(), status_dirty };
    session.set_reason(Reason::Replicating, session.copying_message());
    session.run(&consumer, stop)
}

/// Where to resume a partition holding offsets `low..high`, and how many records were lost:
/// from its checkpoint; from `low` when there is none (a new region copies all it holds);
/// from `low` when the checkpoint is below it, the gap counted as lost.
pub fn resume_offset(checkpoint: Option<i64>, low: i64, high: i64) -> (i64, u64) {
    match checkpoint {
        None => (low, 0),
        Some(next) if next < low => (low, u64::try_from(low.saturating_sub(next)).unwrap_or(0)),
        // Beyond the end (a recreated topic): wait there rather than copy again.
        Some(next) => {
            if next > high {
                tracing::warn!(checkpoint = next, end = high, "checkpoint beyond the end of the source partition");
            }
            (next, 0)
        }
    }
}

impl Session<'_> {
    fn copying_message(&self) -> String {
        format!("copying {} partitions of {}", self.partitions.len(), self.replication.topics.join(", "))
    }

    fn set_reason(&mut self, reason: Reason, message: String) {
        if self.status.reason != reason.as_str() || self.status.message != message {
            self.status.reason = reason.as_str().to_string();
            self.status.message = message.clone();
            self.status_dirty = true;
        }
        self.health.set(reason, message);
    }

    fn run(&mut self, consumer: &BaseConsumer, stop: &AtomicBool) -> Result<(), SessionError> {
        let mut next_probe = Instant::now();
        loop {
            if stop.load(Ordering::Relaxed) {
                return self.commit();
            }
            let wait = match self.batch.started {
                Some(started) => self.replication.batch_time.saturating_sub(started.elapsed()),
                None => Duration::from_millis(100),
            };
            match consumer.poll(wait) {
                Some(Ok(message)) => self.copy(&message)?,
                Some(Err(e)) => self.on_consume_error(e)?,
                None => {}
            }
            self.producer.poll(Duration::ZERO);
            let full = self.batch.records + self.batch.skipped >= self.replication.batch_records;
            let due = self.batch.started.is_some_and(|s| s.elapsed() >= self.replication.batch_time);
            if full || due || (self.status_dirty && self.batch.started.is_none()) {
                self.commit()?;
            }
            if Instant::now() >= next_probe {
                self.probe(consumer)?;
                next_probe = Instant::now() + self.replication.probe_every;
            }
        }
    }

    fn begin(&mut self) -> Result<(), SessionError> {
        if self.batch.started.is_none() {
            self.producer.begin_transaction().map_err(|e| failed(Side::Target, "beginning a transaction", e))?;
            self.batch.started = Some(Instant::now());
        }
        Ok(())
    }

    fn copy(&mut self, message: &BorrowedMessage<'_>) -> Result<(), SessionError> {
        let key = (message.topic().to_string(), message.partition());
        let Some(target_partitions) = self.partitions.get(&key).map(|p| p.target_partitions) else {
            return Ok(());
        };
        self.begin()?;
        let origin = message
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == ORIGIN_HEADER).map(|h| h.value.unwrap_or_default().to_vec()));
        if origin.as_deref() == Some(self.replication.target_region.as_bytes()) {
            // It came from the target: copying it back would loop.
            self.batch.skipped += 1;
        } else {
            let mut headers = OwnedHeaders::new_with_capacity(message.headers().map_or(0, |h| h.count()) + 1);
            if let Some(borrowed) = message.headers() {
                for header in borrowed.iter() {
                    headers = headers.insert(header);
                }
            }
            if origin.is_none() {
                headers =
                    headers.insert(Header { key: ORIGIN_HEADER, value: Some(self.replication.region.as_bytes()) });
            }
            let partition = target_partition(message.key(), message.partition(), target_partitions);
            let mut record: BaseRecord<'_, [u8], [u8]> =
                BaseRecord::to(message.topic()).partition(partition).headers(headers);
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            if let Some(timestamp) = message.timestamp().to_millis() {
                record = record.timestamp(timestamp);
            }
            self.send(record)?;
            self.batch.records += 1;
            self.batch.bytes +=
                (message.key().map_or(0, <[u8]>::len) + message.payload().map_or(0, <[u8]>::len)) as u64;
        }
        if let Some(partition) = self.partitions.get_mut(&key) {
            partition.next = message.offset().saturating_add(1);
            partition.last_timestamp = message.timestamp().to_millis();
        }
        Ok(())
    }

    fn send(&self, mut record: BaseRecord<'_, [u8], [u8]>) -> Result<(), SessionError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(failed(Side::Target, "sending a record", e)),
            }
        }
    }

    /// A consumer error: an offset the source no longer holds (or a partition gone) ends
    /// the session, so the next one counts the loss and resumes from the earliest offset;
    /// transport errors are librdkafka's to retry, and the probe reports them.
    fn on_consume_error(&mut self, error: KafkaError) -> Result<(), SessionError> {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AutoOffsetReset | RDKafkaErrorCode::OffsetOutOfRange) => {
                self.commit()?;
                Err(SessionError {
                    reason: Reason::Starting,
                    message: format!("an offset is no longer in the regional cluster ({error}); resuming"),
                })
            }
            Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownPartition) => {
                Err(failed(Side::Source, "consuming", error))
            }
            _ => {
                tracing::debug!(error = %error, "source consumer error (retried by librdkafka)");
                Ok(())
            }
        }
    }

    /// Commits the open batch (and the status, when it changed) with the checkpoints of the
    /// partitions it advanced; a failed commit is aborted and ends the session.
    fn commit(&mut self) -> Result<(), SessionError> {
        let advanced: Vec<(String, i32, i64)> = self
            .partitions
            .iter()
            .filter(|(_, p)| p.next != p.committed)
            .map(|((t, p), part)| (t.clone(), *p, part.next))
            .collect();
        if self.batch.started.is_none() && advanced.is_empty() && !self.status_dirty {
            return Ok(());
        }
        self.begin()?;
        let now = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
        let topic = self.replication.checkpoint_topic.clone();
        for (source_topic, partition, next) in &advanced {
            let value = serde_json::to_vec(&Checkpoint { next_offset: *next, time: now.clone() })
                .map_err(|e| SessionError { reason: Reason::Starting, message: e.to_string() })?;
            let key = partition_key(source_topic, *partition);
            self.send(BaseRecord::to(&topic).partition(0).key(key.as_bytes()).payload(value.as_slice()))?;
        }
        let mut status = self.status.clone();
        status.records_copied = status.records_copied.saturating_add(self.batch.records);
        status.time = now;
        let value = serde_json::to_vec(&status)
            .map_err(|e| SessionError { reason: Reason::Starting, message: e.to_string() })?;
        self.send(BaseRecord::to(&topic).partition(0).key(STATUS_KEY.as_bytes()).payload(value.as_slice()))?;
        match self.producer.commit_transaction(TRANSACTION_TIMEOUT) {
            Ok(()) => {
                let metrics = &self.health.metrics;
                metrics.transaction("committed");
                metrics.records_copied.inc_by(self.batch.records);
                metrics.bytes_copied.inc_by(self.batch.bytes);
                metrics.records_skipped.inc_by(self.batch.skipped);
                if let Some(started) = self.batch.started {
                    metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
                }
                for (source_topic, partition, next) in advanced {
                    if let Some(p) = self.partitions.get_mut(&(source_topic, partition)) {
                        p.committed = next;
                    }
                }
                self.status = status;
                self.status_dirty = false;
                self.batch = Batch::default();
                Ok(())
            }
            Err(e) => {
                self.health.metrics.transaction("aborted");
                if let Err(abort) = self.producer.abort_transaction(TRANSACTION_TIMEOUT) {
                    tracing::warn!(error = %abort, "aborting the failed transaction failed too");
                }
                Err(failed(Side::Target, "committing a transaction", e))
            }
        }
    }

    /// Looks at the source: reachable, its topics there with as many partitions, and how far
    /// behind the copy is. Sets the reason accordingly.
    fn probe(&mut self, consumer: &BaseConsumer) -> Result<(), SessionError> {
        let mut lag_records = 0i64;
        let mut lag_seconds = 0f64;
        let now_ms = Utc::now().timestamp_millis();
        let metadata = match consumer.fetch_metadata(None, PROBE_TIMEOUT) {
            Ok(metadata) => metadata,
            Err(e) => {
                self.set_reason(
                    classify(Side::Source, &e),
                    format!("{}: {e}", self.replication.source.bootstrap_servers),
                );
                return Ok(());
            }
        };
        for topic in &self.replication.topics {
            let count = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
            let assigned = self.partitions.keys().filter(|(t, _)| t == topic).count();
            if count == 0 {
                self.set_reason(Reason::TopicMissing, format!("topic {topic} is not in the regional cluster"));
                return Ok(());
            }
            if count != assigned {
                self.commit()?;
                return Err(SessionError {
                    reason: Reason::Starting,
                    message: format!("{topic} now has {count} partitions (was {assigned}); resuming with them all"),
                });
            }
        }
        let keys: Vec<(String, i32)> = self.partitions.keys().cloned().collect();
        for (topic, partition) in keys {
            let (_, high) = match consumer.fetch_watermarks(&topic, partition, PROBE_TIMEOUT) {
                Ok(marks) => marks,
                Err(e) => {
                    let message =
                        format!("{}: offsets of {topic}/{partition}: {e}", self.replication.source.bootstrap_servers);
                    self.set_reason(classify(Side::Source, &e), message);
                    return Ok(());
                }
            };
            let Some(p) = self.partitions.get(&(topic.clone(), partition)) else { continue };
            // The consumer's position passes transaction markers the copy never sees.
            let position = position(consumer, &topic, partition).unwrap_or(p.next).max(p.next);
            let behind = high.saturating_sub(position).max(0);
            lag_records = lag_records.saturating_add(behind);
            if behind > 0 {
                // The oldest record not copied is no older than the last one read.
                let age = p.last_timestamp.map_or(0, |t| now_ms.saturating_sub(t)).max(0);
                lag_seconds = lag_seconds.max(age as f64 / 1000.0);
            }
        }
        self.health.metrics.lag_records.set(lag_records);
        self.health.metrics.lag_seconds.set(lag_seconds);
        self.status.lag_records = lag_records;
        self.status.lag_seconds = lag_seconds;
        let message = self.copying_message();
        self.set_reason(Reason::Replicating, message);
        Ok(())
    }
}

/// The consumer's position in a partition (past transaction markers), when it has one.
fn position(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let positions = consumer.position().ok()?;
    positions.find_partition(topic, partition)?.offset().to_raw().filter(|o| *o >= 0)
}

/// The partition count of each of `topics` in a cluster; a missing topic is `TopicMissing`.
fn partition_counts<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topics: &[String],
    side: Side,
    cluster: &str,
) -> Result<BTreeMap<String, i32>, SessionError> {
    let mut counts = BTreeMap::new();
    for topic in topics {
        let metadata = client
            .fetch_metadata(Some(topic), CALL_TIMEOUT)
            .map_err(|e| failed(side, &format!("reading the metadata of {topic}"), e))?;
        let found = metadata.topics().iter().find(|t| t.name() == topic);
        let count = match found {
            Some(t) if t.error().is_none() => t.partitions().len(),
            _ => 0,
        };
        if count == 0 {
            return Err(missing(format!("topic {topic} is not in {cluster}")));
        }
        counts.insert(topic.clone(), i32::try_from(count).unwrap_or(i32::MAX));
    }
    Ok(counts)
}

/// Creates the checkpoint topic in the target if it is not there: one partition, compacted.
fn ensure_checkpoint_topic(replication: &Replication) -> Result<(), SessionError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(&replication.target).create().map_err(|e| failed(Side::Target, "creating an admin client", e))?;
    let topic = &replication.checkpoint_topic;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), CALL_TIMEOUT)
        .map_err(|e| failed(Side::Target, "reading the checkpoint topic's metadata", e))?;
    if metadata.topics().iter().any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty()) {
        return Ok(());
    }
    let replicas = i32::try_from(metadata.brokers().len().clamp(1, 3)).unwrap_or(1);
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(replicas))
        .set("cleanup.policy", "compact")
        .set("segment.ms", "600000")
        .set("min.cleanable.dirty.ratio", "0.1");
    let options = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics([&new], &options))
        .map_err(|e| failed(Side::Target, "creating the checkpoint topic", e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(failed(
                    Side::Target,
                    &format!("creating the checkpoint topic {name}"),
                    KafkaError::AdminOp(code),
                ));
            }
        }
    }
    tracing::info!(topic = %topic, "created the checkpoint topic");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resuming_counts_what_retention_took_and_never_replays() {
        assert_eq!(resume_offset(None, 40, 90), (40, 0), "a new region copies what its cluster holds");
        assert_eq!(resume_offset(Some(55), 40, 90), (55, 0));
        assert_eq!(resume_offset(Some(90), 40, 90), (90, 0));
        assert_eq!(resume_offset(Some(10), 40, 90), (40, 30), "30 records expired before they were copied");
        assert_eq!(resume_offset(Some(120), 0, 90), (120, 0));
        assert_eq!(resume_offset(Some(i64::MIN), i64::MAX, i64::MAX), (i64::MAX, i64::MAX as u64), "no overflow");
    }
}

//! One copying session: once `resume` connected and found where each partition resumes,
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
use stockpulse_processor::runtime::cached_high_watermark;

use chrono::{SecondsFormat, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use super::Replication;
use super::checkpoint::{Checkpoint, ReplicationStatus, STATUS_KEY, partition_key};
use super::health::{Health, Reason, Side, classify};
use super::partitioning::target_partition;
use super::resume::{Partition, Resumed, SessionError, TRANSACTION_TIMEOUT, failed, resume};

/// The header naming the region a record was first produced in.
pub const ORIGIN_HEADER: &str = "origin-region";
/// How long a source probe may take: short, so a WAN loss shows within seconds.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

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
    let Resumed { producer, consumer, partitions, status, status_dirty } = resume(replication, health)?;
    let mut session =
        Session { replication, health, producer, partitions, status, batch: Batch::default(), status_dirty };
    session.set_reason(Reason::Replicating, session.copying_message());
    session.run(&consumer, stop)
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
        let committing = Instant::now();
        match self.flush().and_then(|()| self.producer.commit_transaction(TRANSACTION_TIMEOUT)) {
            Ok(()) => {
                tracing::debug!(
                    records = self.batch.records,
                    open_ms = self.batch.started.map_or(0, |s| s.elapsed().as_millis()),
                    commit_ms = committing.elapsed().as_millis(),
                    "committed"
                );
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

    /// Waits for every record sent to be acknowledged, serving delivery reports as they come.
    /// (rust-rdkafka's own flush, which `commit_transaction` calls first, polls in steps of
    /// 100 ms and so added 100 ms to every commit; after this one it returns at once.)
    fn flush(&self) -> Result<(), KafkaError> {
        let deadline = Instant::now() + TRANSACTION_TIMEOUT;
        while self.producer.in_flight_count() > 0 {
            if Instant::now() > deadline {
                return Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut));
            }
            self.producer.poll(Duration::from_millis(1));
        }
        Ok(())
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
            // The high watermark the last fetch response brought (no round trip, so the copy
            // is not held up); asked for only when there is none yet.
            let high = match cached_high_watermark(consumer, &topic, partition) {
                Some(high) => high,
                None => match consumer.fetch_watermarks(&topic, partition, PROBE_TIMEOUT) {
                    Ok((_, high)) => high,
                    Err(e) => {
                        let message = format!(
                            "{}: offsets of {topic}/{partition}: {e}",
                            self.replication.source.bootstrap_servers
                        );
                        self.set_reason(classify(Side::Source, &e), message);
                        return Ok(());
                    }
                },
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

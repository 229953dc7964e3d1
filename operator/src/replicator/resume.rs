//! The start of a copying session: the target producer (fencing any older replicator with
//! the same transactional id), the checkpoint topic (created if missing) read
//! `read_committed`, the topics on both sides, and where each source partition resumes, a
//! gap the source no longer holds counted as lost.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::Replication;
use super::checkpoint::{ReaderLog, ReplicationStatus, read_checkpoints};
use super::health::{Health, Reason, Side, classify};
use crate::kafka_admin::rdkafka_client::client_config;

/// How long a call to a cluster may take before it counts as unreachable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", reason.as_str())]
pub struct SessionError {
    pub reason: Reason,
    pub message: String,
}

pub fn failed(side: Side, step: &str, error: KafkaError) -> SessionError {
    SessionError { reason: classify(side, &error), message: format!("{step}: {error}") }
}

fn missing(message: String) -> SessionError {
    SessionError { reason: Reason::TopicMissing, message }
}

/// A source partition being copied.
#[derive(Debug)]
pub struct Partition {
    pub target_partitions: u32,
    /// Next source offset to copy, as far as records were sent (committed or not).
    pub next: i64,
    /// Next source offset as committed in the target's checkpoint topic.
    pub committed: i64,
    /// Timestamp (ms) of the last record read, for lag in seconds.
    pub last_timestamp: Option<i64>,
}

/// A session's clients and where it resumes.
pub struct Resumed {
    pub producer: BaseProducer,
    pub consumer: BaseConsumer,
    pub partitions: BTreeMap<(String, i32), Partition>,
    /// The last committed status, with any loss found now added.
    pub status: ReplicationStatus,
    /// Something (a loss) must be committed even before a record is copied.
    pub status_dirty: bool,
}

/// Connects to both clusters and finds where each source partition resumes.
pub fn resume(replication: &Replication, health: &Health) -> Result<Resumed, SessionError> {
    health.set(Reason::Starting, "connecting to the target, reading checkpoints");
    let producer: BaseProducer = client_config(&replication.target)
        .set("client.id", format!("{}-producer", replication.id))
        .set("transactional.id", &replication.id)
        .set("transaction.timeout.ms", TRANSACTION_TIMEOUT.as_millis().to_string())
        .set("linger.ms", replication.linger.as_millis().to_string())
        .set("batch.size", "1000000")
        // After a commit the broker answers the next transaction's first AddPartitionsToTxn
        // with CONCURRENT_TRANSACTIONS until its markers are written; librdkafka's default
        // backoff (100 ms, doubling to 1 s) would stall every batch that long.
        .set("retry.backoff.ms", "5")
        .set("retry.backoff.max.ms", "50")
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
        // Past either bound librdkafka backs every partition off for fetch.queue.backoff.ms,
        // 1 s by default: long enough for the copy to drain the queue and wait (as the
        // processor found). 10 ms keeps the queue filled.
        .set("fetch.queue.backoff.ms", "10")
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
    Ok(Resumed { producer, consumer, partitions, status, status_dirty })
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

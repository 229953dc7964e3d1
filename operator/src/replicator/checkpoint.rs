//! The replicator's checkpoints: a compacted topic in the TARGET cluster holding, per source
//! partition, the next source offset to copy, and one `status` record the operator reads.
//! Both are written in the same transaction as the records they cover, so what a
//! `read_committed` reader finds there is exactly what the target holds.
//!
//! Keys: `<source topic>/<partition>` (a Kafka topic name never holds `/`) and `status`.
//! Values: JSON, [`Checkpoint`] and [`ReplicationStatus`].

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

/// The key of the status record.
pub const STATUS_KEY: &str = "status";

/// The default checkpoint topic of a replicator (its transactional id as a name).
pub fn checkpoint_topic_of(replicator_id: &str) -> String {
    format!("{replicator_id}.checkpoints")
}

/// Where a source partition's copying stands: every record before `next_offset` is in the
/// target (or was skipped by the loop guard).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub next_offset: i64,
    /// When the transaction holding this checkpoint was committed (RFC 3339).
    pub time: String,
}

/// What the replicator last said about itself, committed with its latest transaction (or
/// alone, when the source is unreachable and nothing is copied).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicationStatus {
    /// `Replicating`, or why not: `SourceUnreachable`, `AuthFailed`, `TopicMissing`, ...
    pub reason: String,
    pub message: String,
    /// Records copied into the target since the replicator first ran (skipped ones aside).
    pub records_copied: u64,
    /// Records the source deleted (retention) before they were copied: lost for good.
    pub records_lost: u64,
    /// Records in the source not yet copied, when last measured.
    pub lag_records: i64,
    /// Age of the oldest record not yet copied, in seconds (0 when caught up).
    pub lag_seconds: f64,
    /// When this was written (RFC 3339).
    pub time: String,
}

/// The key of a partition's checkpoint.
pub fn partition_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The (topic, partition) of a checkpoint key; `None` for the status key or garbage.
pub fn parse_partition_key(key: &str) -> Option<(String, i32)> {
    let (topic, partition) = key.rsplit_once('/')?;
    let partition: i32 = partition.parse().ok()?;
    (!topic.is_empty() && partition >= 0).then(|| (topic.to_string(), partition))
}

/// What a checkpoint topic holds: the last checkpoint per source partition and the last
/// status. Unreadable records are counted, not fatal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoints {
    pub partitions: BTreeMap<(String, i32), Checkpoint>,
    pub status: Option<ReplicationStatus>,
    pub unreadable: u64,
}

impl Checkpoints {
    /// Folds one record (in log order) in: the last value of a key wins, a tombstone removes it.
    pub fn apply(&mut self, key: Option<&[u8]>, value: Option<&[u8]>) {
        let Some(key) = key.and_then(|k| std::str::from_utf8(k).ok()) else {
            self.unreadable += 1;
            return;
        };
        if key == STATUS_KEY {
            match value.map(serde_json::from_slice::<ReplicationStatus>) {
                Some(Ok(status)) => self.status = Some(status),
                Some(Err(_)) => self.unreadable += 1,
                None => self.status = None,
            }
            return;
        }
        let Some(partition) = parse_partition_key(key) else {
            self.unreadable += 1;
            return;
        };
        match value.map(serde_json::from_slice::<Checkpoint>) {
            Some(Ok(checkpoint)) if checkpoint.next_offset >= 0 => {
                self.partitions.insert(partition, checkpoint);
            }
            Some(_) => self.unreadable += 1,
            None => {
                self.partitions.remove(&partition);
            }
        }
    }

    /// The newest checkpoint time over all partitions.
    pub fn last_time(&self) -> Option<&str> {
        self.partitions.values().map(|c| c.time.as_str()).max()
    }
}

/// The context of a reader that reads to the end: the end of a partition (an error event
/// librdkafka also logs) is expected, so it is logged at debug level only.
#[derive(Default)]
pub struct ReaderLog;

impl rdkafka::ClientContext for ReaderLog {
    fn error(&self, error: KafkaError, reason: &str) {
        if matches!(error, KafkaError::PartitionEOF(_)) {
            tracing::debug!(error = %error, reason, "end of partition");
        } else {
            tracing::warn!(error = %error, reason, "librdkafka error");
        }
    }
}

impl ConsumerContext for ReaderLog {}

/// Reads a checkpoint topic to its end with a `read_committed` consumer (`reader` must be
/// one): to its last stable offset when the read begins, so whole transactions only, each
/// partition's checkpoints with the status committed with them. `Ok(None)` when the topic
/// does not exist. With `tail`, only the last `tail` records of each partition are read
/// (enough to find the newest status record).
pub fn read_checkpoints<C: ConsumerContext>(
    reader: &BaseConsumer<C>,
    topic: &str,
    tail: Option<i64>,
    timeout: Duration,
) -> Result<Option<Checkpoints>, KafkaError> {
    let metadata = reader.fetch_metadata(Some(topic), timeout)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Ok(None);
    };
    if found.error().is_some() || found.partitions().is_empty() {
        return Ok(None);
    }
    let mut assignment = TopicPartitionList::new();
    let mut ends: BTreeMap<i32, i64> = BTreeMap::new();
    for partition in found.partitions() {
        let id = partition.id();
        let (low, high) = reader.fetch_watermarks(topic, id, timeout)?;
        if high <= low {
            continue;
        }
        let start = match tail {
            Some(n) => high.saturating_sub(n).max(low),
            None => low,
        };
        assignment.add_partition_offset(topic, id, Offset::Offset(start))?;
        ends.insert(id, high);
    }
    let mut checkpoints = Checkpoints::default();
    if ends.is_empty() {
        return Ok(Some(checkpoints));
    }
    reader.assign(&assignment)?;
    let deadline = std::time::Instant::now() + timeout.max(Duration::from_secs(1)) * 3;
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            return Err(KafkaError::MessageConsumption(rdkafka::types::RDKafkaErrorCode::OperationTimedOut));
        }
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let Some(end) = ends.get(&message.partition()).copied() else { continue };
                match place(message.offset(), end) {
                    Place::Before => checkpoints.apply(message.key(), message.payload()),
                    Place::Last => {
                        checkpoints.apply(message.key(), message.payload());
                        ends.remove(&message.partition());
                    }
                    Place::Beyond => {
                        ends.remove(&message.partition());
                    }
                }
            }
            // The end of what is committed (the last stable offset): a transaction marker or
            // an aborted batch may stand between it and the high watermark.
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                ends.remove(&partition);
            }
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(Some(checkpoints))
}

/// Where a record stands against the end a read stops at (the last stable offset when it
/// began).
#[derive(Debug, PartialEq, Eq)]
enum Place {
    /// Before the end's last offset: read it and go on.
    Before,
    /// The last offset before the end: read it and stop.
    Last,
    /// At or past the end: a transaction committed since the read began. Its records are
    /// left out: reading some of them (the checkpoints before its status record) would
    /// mix two transactions.
    Beyond,
}

fn place(offset: i64, end: i64) -> Place {
    match offset.saturating_add(1).cmp(&end) {
        std::cmp::Ordering::Less => Place::Before,
        std::cmp::Ordering::Equal => Place::Last,
        std::cmp::Ordering::Greater => Place::Beyond,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json<T: Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).unwrap()
    }

    #[test]
    fn keys_name_a_partition_or_the_status() {
        assert_eq!(partition_key("acme.sales", 3), "acme.sales/3");
        assert_eq!(parse_partition_key("acme.sales/3"), Some(("acme.sales".to_string(), 3)));
        assert_eq!(parse_partition_key("status"), None);
        assert_eq!(parse_partition_key("/3"), None);
        assert_eq!(parse_partition_key("t/-1"), None);
        assert_eq!(parse_partition_key("t/99999999999"), None);
        assert_eq!(checkpoint_topic_of("stockpulse-replicator.acme.eu"), "stockpulse-replicator.acme.eu.checkpoints");
    }

    #[test]
    fn a_read_stops_at_its_end_and_leaves_out_a_transaction_committed_since() {
        // The end is the last stable offset (after the transaction marker at end - 1); the
        // record at `end` opens a transaction committed after the read began.
        assert_eq!(place(0, 10), Place::Before);
        assert_eq!(place(8, 10), Place::Before);
        assert_eq!(place(9, 10), Place::Last);
        assert_eq!(place(10, 10), Place::Beyond);
        assert_eq!(place(11, 10), Place::Beyond);
        assert_eq!(place(i64::MAX, i64::MAX), Place::Last, "no overflow");
    }

    #[test]
    fn the_last_value_of_each_key_wins_and_garbage_is_counted() {
        let mut checkpoints = Checkpoints::default();
        let first = Checkpoint { next_offset: 10, time: "2026-12-02T10:00:00Z".into() };
        let second = Checkpoint { next_offset: 25, time: "2026-12-02T10:00:05Z".into() };
        let other = Checkpoint { next_offset: 7, time: "2026-12-02T10:00:01Z".into() };
        checkpoints.apply(Some(b"s/0"), Some(&json(&first)));
        checkpoints.apply(Some(b"s/1"), Some(&json(&other)));
        checkpoints.apply(Some(b"s/0"), Some(&json(&second)));
        checkpoints.apply(Some(b"s/2"), Some(b"{not json"));
        checkpoints.apply(Some(b"s/3"), Some(br#"{"next_offset":-4,"time":"x"}"#));
        checkpoints.apply(None, Some(b"{}"));
        checkpoints.apply(Some(&[0xff, 0xfe]), Some(b"{}"));
        let status = ReplicationStatus { reason: "Replicating".into(), records_copied: 32, ..Default::default() };
        checkpoints.apply(Some(b"status"), Some(&json(&status)));
        assert_eq!(
            checkpoints.partitions,
            BTreeMap::from([(("s".to_string(), 0), second), (("s".to_string(), 1), other)])
        );
        assert_eq!(checkpoints.status, Some(status));
        assert_eq!(checkpoints.unreadable, 4);
        assert_eq!(checkpoints.last_time(), Some("2026-12-02T10:00:05Z"));
        checkpoints.apply(Some(b"s/1"), None);
        assert_eq!(checkpoints.partitions.len(), 1);
    }
}

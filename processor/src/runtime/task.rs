//! A task: one input partition number `p` (sales p and inventory p hold the same stores),
//! its own engine, and the next offset of each of its two input partitions. Its state is
//! written to changelog partition `p` at every commit and restored from there when the task
//! is created on an instance.
//!
//! The two partitions are merged by record timestamp (Kafka Streams' timestamp
//! synchronisation): a task processes its records in the order they were produced, however
//! the consumer's fetches interleave them, so a burst fetched from one partition never makes
//! the other's events late. While one partition has no record buffered but is known to hold
//! more, the task waits for it, at most `max_wait`; a partition read to its end is not
//! waited for.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::engine::{Engine, EngineStats, RestoreReport};

use super::RunError;

/// The input streams of a task: sales p and inventory p, merged by timestamp, and with a
/// repartition stage, repartition p (other tasks' partials, taken as they come).
pub const SALES: usize = 0;
pub const INVENTORY: usize = 1;
pub const REPARTITION: usize = 2;

/// The header of every changelog record: the input offsets the state reflects, as
/// `<next sales offset>,<next inventory offset>,<next repartition offset>` (-1 where nothing
/// was read yet; the third is absent in changelogs written before the repartition stage).
pub const OFFSETS_HEADER: &str = "stockpulse.offsets";

/// A record fetched and not processed yet.
pub struct Buffered {
    pub offset: i64,
    pub timestamp: i64,
    pub payload: Vec<u8>,
    pub arrived: Instant,
}

pub struct Task {
    pub partition: i32,
    pub engine: Engine,
    /// Next offset to process of sales p, inventory p and repartition p (`None` before the
    /// first record).
    pub next: [Option<i64>; 3],
    /// Fetched records of each partition, in offset order.
    pub buffers: [VecDeque<Buffered>; 2],
    /// The offset after the last buffered record of each partition.
    pub fetched: [Option<i64>; 2],
    /// Engine figures already counted in the metrics.
    pub counted: EngineStats,
    /// Whether anything happened since the last commit.
    pub dirty: bool,
    /// The watermark last sent to the repartition partitions (repartition stage only).
    pub reported: Option<(i64, bool)>,
}

impl Task {
    pub fn new(partition: i32, engine: Engine, next: [Option<i64>; 3]) -> Self {
        let counted = engine.stats().clone();
        Task {
            partition,
            engine,
            next,
            buffers: [VecDeque::new(), VecDeque::new()],
            fetched: [next[SALES], next[INVENTORY]],
            counted,
            dirty: false,
            reported: None,
        }
    }

    /// Buffers a fetched record; `false` when it is one already buffered or processed (the
    /// consumer fetched it again after a rewind).
    pub fn buffer(&mut self, stream: usize, record: Buffered) -> bool {
        if self.fetched[stream].is_some_and(|next| record.offset < next) {
            return false;
        }
        self.fetched[stream] = Some(record.offset + 1);
        self.buffers[stream].push_back(record);
        true
    }

    /// Forgets what is buffered (the consumer fetches it again from the committed offsets).
    pub fn clear_buffers(&mut self) {
        self.buffers = [VecDeque::new(), VecDeque::new()];
        self.fetched = [self.next[SALES], self.next[INVENTORY]];
    }

    /// The stream whose head record comes next in timestamp order, or `None` to wait.
    /// `has_more(stream)` tells whether a partition with nothing buffered holds more records.
    pub fn next_stream(&self, max_wait: Duration, has_more: impl Fn(usize) -> bool) -> Option<usize> {
        match (self.buffers[SALES].front(), self.buffers[INVENTORY].front()) {
            (Some(a), Some(b)) => Some(if (b.timestamp, INVENTORY) < (a.timestamp, SALES) { INVENTORY } else { SALES }),
            (Some(head), None) => (!has_more(INVENTORY) || head.arrived.elapsed() >= max_wait).then_some(SALES),
            (None, Some(head)) => (!has_more(SALES) || head.arrived.elapsed() >= max_wait).then_some(INVENTORY),
            (None, None) => None,
        }
    }

    pub fn offsets_header(&self) -> String {
        let [sales, inventory, repartition] = self.next.map(|n| n.unwrap_or(-1));
        format!("{sales},{inventory},{repartition}")
    }
}

fn parse_offsets_header(text: &[u8]) -> Option<[i64; 3]> {
    let text = std::str::from_utf8(text).ok()?;
    let mut parts = text.split(',');
    let sales = parts.next()?.parse().ok()?;
    let inventory = parts.next()?.parse().ok()?;
    let repartition = match parts.next() {
        Some(offset) => offset.parse().ok()?,
        None => -1,
    };
    parts.next().is_none().then_some([sales, inventory, repartition])
}

/// The committed offsets of a task's input partitions, in [`SALES`], [`INVENTORY`],
/// [`REPARTITION`] order (`None`: nothing committed, or no such topic).
pub fn committed_offsets<C: rdkafka::consumer::ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topics: &[&str],
    partition: i32,
    timeout: Duration,
) -> Result<[Option<i64>; 3], RunError> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        tpl.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(tpl, timeout)
        .map_err(|e| RunError::kafka(&format!("reading the committed offsets of partition {partition}"), e))?;
    Ok(std::array::from_fn(|stream| {
        let topic = topics.get(stream)?;
        committed.find_partition(topic, partition).and_then(|p| match p.offset() {
            Offset::Offset(n) => Some(n),
            _ => None,
        })
    }))
}

/// The last value of every key of changelog partition `p`, left out what is beyond the
/// committed input offsets (a broker that shows aborted records, such as tansu, would
/// otherwise hand back state the committed offsets do not cover).
pub fn read_changelog(
    client: &ClientConfig,
    topic: &str,
    partition: i32,
    committed: [Option<i64>; 3],
    timeout: Duration,
) -> Result<(HashMap<String, String>, u64), RunError> {
    let mut state = HashMap::new();
    let consumer: BaseConsumer = client
        .clone()
        .set("group.id", "stockpulse-restore")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| RunError::kafka("creating the changelog reader", e))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, timeout)
        .map_err(|e| RunError::kafka(&format!("reading the end of changelog {topic}/{partition}"), e))?;
    if high <= low {
        return Ok((state, 0));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .map_err(|e| RunError::kafka("assigning the changelog partition", e))?;
    consumer.assign(&tpl).map_err(|e| RunError::kafka("assigning the changelog partition", e))?;
    let deadline = Instant::now() + timeout;
    let mut records = 0u64;
    let limit = committed.map(|c| c.unwrap_or(-1));
    loop {
        if Instant::now() > deadline {
            return Err(RunError::Restore {
                partition,
                message: format!("changelog {topic}/{partition} not read to its end within {timeout:?}"),
            });
        }
        match consumer.poll(Duration::from_millis(500)) {
            None => continue,
            Some(Err(KafkaError::PartitionEOF(_))) => break,
            Some(Err(e)) => {
                tracing::warn!(error = %e, topic, partition, "reading the changelog; retrying");
                continue;
            }
            Some(Ok(message)) => {
                records += 1;
                let offsets = message
                    .headers()
                    .and_then(|h| h.iter().find(|h| h.key == OFFSETS_HEADER).and_then(|h| h.value))
                    .and_then(parse_offsets_header);
                if offsets.is_some_and(|o| o.iter().zip(limit).any(|(offset, limit)| *offset > limit)) {
                    continue;
                }
                let Some(key) = message.key().and_then(|k| std::str::from_utf8(k).ok()) else {
                    return Err(RunError::Restore {
                        partition,
                        message: format!("changelog record at offset {} has no UTF-8 key", message.offset()),
                    });
                };
                match message.payload() {
                    None => {
                        state.remove(key);
                    }
                    Some(value) => {
                        let value = std::str::from_utf8(value).map_err(|_| RunError::Restore {
                            partition,
                            message: format!("changelog record {key} is not UTF-8"),
                        })?;
                        state.insert(key.to_string(), value.to_string());
                    }
                }
            }
        }
    }
    Ok((state, records))
}

/// Restores an engine from changelog entries.
pub fn restore(
    engine: &mut Engine,
    partition: i32,
    state: &HashMap<String, String>,
) -> Result<RestoreReport, RunError> {
    engine
        .restore(state.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|e| RunError::Restore { partition, message: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_header_round_trips() {
        assert_eq!(parse_offsets_header(b"12,-1,7"), Some([12, -1, 7]));
        assert_eq!(parse_offsets_header(b"12,-1"), Some([12, -1, -1]), "written before the repartition stage");
        assert_eq!(parse_offsets_header(b"12"), None);
        assert_eq!(parse_offsets_header(b"1,2,3,4"), None);
        assert_eq!(parse_offsets_header(b"x,1"), None);
    }
}

//! A task: one input partition number `p` (sales p and inventory p hold the same stores),
//! its own engine, and the next offset of each of its two input partitions. Its state is
//! written to changelog partition `p` at every commit and restored from there when the task
//! is created on an instance.
//!
//! The two partitions are merged by record timestamp (Kafka Streams' timestamp
//! synchronisation): a task processes its records in the order they were produced, however
//! the consumer's fetches interleave them, so a burst fetched from one partition never makes
//! the other's events late. The rule is Kafka Streams' (KIP-695): while one partition has no
//! record buffered but is known to hold more (the consumer's position is behind the end the
//! last fetch response gave), the task waits for it, for as long as that takes; a partition
//! read to its end is waited for `max_idle` at most (a producer may be about to write it).
//! So the order never depends on how fast the broker answers.
//!
//! A partition whose buffer fills up while the task waits for the other is paused, so memory
//! stays bounded, and resumed once the task has worked its buffer down.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

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

/// The header of every changelog record naming the input partitions (tasks) the pipeline had
/// when it was written: a store's state lives in the task of `partition_of(store, N)`, so state
/// written for one count does not fit another (absent in changelogs of earlier versions).
pub const PARTITIONS_HEADER: &str = "stockpulse.partitions";

/// Why state written for `built_for` input partitions cannot be used with `now` of them.
pub fn partitions_changed(built_for: u32, now: u32) -> String {
    format!(
        "the input topics have {now} partitions, and the state in the changelog was built for {built_for}: a \
         store's state lives in the task of its partition, and with a new count stores move to other tasks without \
         their state (inventory, windows, dedupe), so this instance stops instead of computing wrong figures. Either \
         rebuild the state for {now} partitions: a new consumer group and new changelog and repartition topics \
         (the processors then read the input again from its earliest offsets), as docs/operator.md says under \
         \"Runbook: partitions added to a running pipeline\""
    )
}

/// How a task merges its two partitions (`run`'s `--max-task-idle` and
/// `--max-buffered-records` give the values and their defaults).
#[derive(Debug, Clone, Copy)]
pub struct MergeOptions {
    /// How long a task waits for a partition read to its end (one known to hold more is
    /// waited for without a limit).
    pub max_idle: Duration,
    /// Records buffered per partition before the consumer pauses fetching it; resumed at
    /// half. Kafka Streams' `buffered.records.per.partition` is 1,000; these records are
    /// small, and a backlog's fetches bring a partition's records in chunks of up to 4 MB
    /// (about 13,000 events), which should not pause a partition in normal running: pausing
    /// drops librdkafka's prefetched records of the partition, fetched again on resume.
    pub max_buffered: usize,
    /// Bytes of outputs (estimated) the loop may compute and hold while a commit is in flight
    /// before it pauses every input until the commit ends.
    pub max_held_bytes: usize,
}

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
    /// Whether fetching each partition is paused (its buffer is full).
    pub paused: [bool; 2],
    /// Whether the current long wait for a partition was logged.
    pub warned: bool,
    /// Engine figures already counted in the metrics.
    pub counted: EngineStats,
    /// Whether anything happened since the last commit.
    pub dirty: bool,
    /// The watermark last sent to the repartition partitions (repartition stage only).
    pub reported: Option<(i64, bool)>,
    /// Where the changelog records its state reflects end: the restore's end, then the end
    /// of this instance's records at each commit (`None`: not known).
    pub changelog_end: Option<i64>,
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
            paused: [false; 2],
            warned: false,
            counted,
            dirty: false,
            reported: None,
            changelog_end: None,
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
    /// The caller resumes the partitions [`Task::paused`] names first.
    pub fn clear_buffers(&mut self) {
        self.paused = [false; 2];
        self.buffers = [VecDeque::new(), VecDeque::new()];
        self.fetched = [self.next[SALES], self.next[INVENTORY]];
    }

    /// The stream whose head record comes next in timestamp order, or `None` to wait.
    /// `has_more(stream)` tells whether a partition with nothing buffered holds more records
    /// (then the task waits for them however long it takes); one that does not is waited
    /// for `max_idle` at most.
    pub fn next_stream(&self, max_idle: Duration, has_more: impl Fn(usize) -> bool) -> Option<usize> {
        let go_on = |head: &Buffered, other: usize| !has_more(other) && head.arrived.elapsed() >= max_idle;
        match (self.buffers[SALES].front(), self.buffers[INVENTORY].front()) {
            (Some(a), Some(b)) => Some(if (b.timestamp, INVENTORY) < (a.timestamp, SALES) { INVENTORY } else { SALES }),
            (Some(head), None) => go_on(head, INVENTORY).then_some(SALES),
            (None, Some(head)) => go_on(head, SALES).then_some(INVENTORY),
            (None, None) => None,
        }
    }

    /// The partition the task waits for, and since when its other partition's head record
    /// has waited (`None` when it is not waiting).
    pub fn waiting(&self) -> Option<(usize, Instant)> {
        match (self.buffers[SALES].front(), self.buffers[INVENTORY].front()) {
            (Some(head), None) => Some((INVENTORY, head.arrived)),
            (None, Some(head)) => Some((SALES, head.arrived)),
            _ => None,
        }
    }

    pub fn offsets_header(&self) -> String {
        let [sales, inventory, repartition] = self.next.map(|n| n.unwrap_or(-1));
        format!("{sales},{inventory},{repartition}")
    }
}

pub(super) fn parse_offsets_header(text: &[u8]) -> Option<[i64; 3]> {
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
    use crate::config::PipelineConfig;

    fn task() -> Task {
        Task::new(0, Engine::new(&PipelineConfig::example(), 0), [None; 3])
    }

    fn record(offset: i64, timestamp: i64, waited: Duration) -> Buffered {
        let arrived = Instant::now().checked_sub(waited).unwrap_or_else(Instant::now);
        Buffered { offset, timestamp, payload: Vec::new(), arrived }
    }

    #[test]
    fn the_earlier_head_goes_first_and_sales_wins_a_tie() {
        let mut task = task();
        assert!(task.buffer(SALES, record(0, 20, Duration::ZERO)));
        assert!(task.buffer(INVENTORY, record(0, 10, Duration::ZERO)));
        assert_eq!(task.next_stream(Duration::ZERO, |_| true), Some(INVENTORY));
        task.buffers[INVENTORY].clear();
        assert!(task.buffer(INVENTORY, record(1, 20, Duration::ZERO)));
        assert_eq!(task.next_stream(Duration::ZERO, |_| true), Some(SALES));
        assert!(!task.buffer(INVENTORY, record(1, 20, Duration::ZERO)), "a record fetched again is not buffered twice");
    }

    #[test]
    fn a_partition_known_to_hold_more_is_waited_for_however_long_it_takes() {
        let mut task = task();
        task.buffer(SALES, record(0, 10, Duration::from_secs(3600)));
        assert_eq!(task.next_stream(Duration::ZERO, |stream| stream == INVENTORY), None);
        assert_eq!(task.waiting().map(|(stream, _)| stream), Some(INVENTORY));
        // Inventory read to its end: sales goes on, after max_idle.
        assert_eq!(task.next_stream(Duration::ZERO, |_| false), Some(SALES));
        assert_eq!(task.next_stream(Duration::from_secs(7200), |_| false), None);
        assert_eq!(task.next_stream(Duration::from_secs(60), |_| false), Some(SALES));
    }

    #[test]
    fn offsets_header_round_trips() {
        assert_eq!(parse_offsets_header(b"12,-1,7"), Some([12, -1, 7]));
        assert_eq!(parse_offsets_header(b"12,-1"), Some([12, -1, -1]), "written before the repartition stage");
        assert_eq!(parse_offsets_header(b"12"), None);
        assert_eq!(parse_offsets_header(b"1,2,3,4"), None);
        assert_eq!(parse_offsets_header(b"x,1"), None);
    }
}

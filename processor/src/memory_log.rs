//! An in-memory, partitioned, append-only log with consumer-group offsets: the same model
//! as a Kafka cluster, for the embedded demo and fast deterministic tests. Shared by clones.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub key: Option<Vec<u8>>,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

#[derive(Default, Debug)]
struct Topics {
    partitions: BTreeMap<String, Vec<Vec<LogRecord>>>,
    committed: BTreeMap<(String, String, i32), i64>,
}

#[derive(Clone, Default, Debug)]
pub struct MemoryLog {
    inner: Arc<Mutex<Topics>>,
}

/// The partition of a key, stable across runs (FNV-1a); keyless records go to partition 0.
pub fn partition_for(key: Option<&[u8]>, partitions: usize) -> i32 {
    let Some(key) = key else { return 0 };
    let mut hash: u32 = 0x811c_9dc5;
    for b in key {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash % partitions.max(1) as u32) as i32
}

impl MemoryLog {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Topics> {
        // A panic while holding the lock leaves plain data behind; keep using it.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Creates a topic (no-op when it exists).
    pub fn create_topic(&self, topic: &str, partitions: usize) {
        self.lock().partitions.entry(topic.to_string()).or_insert_with(|| vec![Vec::new(); partitions.max(1)]);
    }

    pub fn partition_count(&self, topic: &str) -> usize {
        self.lock().partitions.get(topic).map_or(0, Vec::len)
    }

    /// Appends a record, partitioned by key; returns (partition, offset).
    pub fn append(&self, topic: &str, record: LogRecord) -> (i32, i64) {
        let mut topics = self.lock();
        let partitions = topics.partitions.entry(topic.to_string()).or_insert_with(|| vec![Vec::new()]);
        let partition = partition_for(record.key.as_deref(), partitions.len());
        let log = &mut partitions[partition as usize];
        log.push(record);
        (partition, log.len() as i64 - 1)
    }

    /// Reads up to `max` records of a partition from `offset`.
    pub fn read(&self, topic: &str, partition: i32, offset: i64, max: usize) -> Vec<(i64, LogRecord)> {
        let topics = self.lock();
        let Some(log) = topics.partitions.get(topic).and_then(|p| p.get(partition as usize)) else { return Vec::new() };
        let start = offset.max(0) as usize;
        log.iter().enumerate().skip(start).take(max).map(|(i, r)| (i as i64, r.clone())).collect()
    }

    /// The offset after the last record of a partition.
    pub fn end_offset(&self, topic: &str, partition: i32) -> i64 {
        self.lock().partitions.get(topic).and_then(|p| p.get(partition as usize)).map_or(0, |l| l.len() as i64)
    }

    pub fn commit(&self, group: &str, topic: &str, partition: i32, next_offset: i64) {
        self.lock().committed.insert((group.to_string(), topic.to_string(), partition), next_offset);
    }

    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.lock().committed.get(&(group.to_string(), topic.to_string(), partition)).copied()
    }

    /// The latest value of every key of a compacted topic, as a consumer would rebuild it.
    pub fn latest_by_key(&self, topic: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let topics = self.lock();
        let mut latest = BTreeMap::new();
        for log in topics.partitions.get(topic).into_iter().flatten() {
            for record in log {
                let Some(key) = &record.key else { continue };
                match &record.value {
                    Some(value) => latest.insert(key.clone(), value.clone()),
                    None => latest.remove(key),
                };
            }
        }
        latest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: Option<&str>) -> LogRecord {
        LogRecord { key: Some(key.into()), value: value.map(Into::into), headers: vec![] }
    }

    #[test]
    fn keys_keep_their_partition_and_offsets_grow() {
        let log = MemoryLog::new();
        log.create_topic("t", 4);
        let (p1, o1) = log.append("t", rec("S1", Some("a")));
        let (p2, o2) = log.append("t", rec("S1", Some("b")));
        assert_eq!((p1, o1 + 1), (p2, o2));
        assert_eq!(log.read("t", p1, o1, 10).len(), 2);
        assert_eq!(log.end_offset("t", p1), o2 + 1);
        assert_eq!(partition_for(Some(b"S1"), 4), p1);
    }

    #[test]
    fn latest_by_key_honours_tombstones() {
        let log = MemoryLog::new();
        log.append("c", rec("a", Some("1")));
        log.append("c", rec("b", Some("2")));
        log.append("c", rec("a", None));
        log.append("c", rec("b", Some("3")));
        let latest = log.latest_by_key("c");
        assert_eq!(latest.len(), 1);
        assert_eq!(latest.get(b"b".as_slice()), Some(&b"3".to_vec()));
    }

    #[test]
    fn group_offsets_are_kept() {
        let log = MemoryLog::new();
        assert_eq!(log.committed("g", "t", 0), None);
        log.commit("g", "t", 0, 42);
        assert_eq!(log.committed("g", "t", 0), Some(42));
    }
}

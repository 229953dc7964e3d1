//! Sources over the in-memory log: events from the input topics, reference data from the
//! compacted `stores` and `catalog` topics (read from the beginning, then followed).

use std::sync::Arc;

use super::{IoError, ReferenceSource, SourceRecord};
use crate::memory_log::MemoryLog;
use crate::reference::ReferenceUpdate;

pub struct MemorySource {
    log: MemoryLog,
    /// (topic, partition, next offset), resumed from the group's committed offsets.
    positions: Vec<(Arc<str>, i32, i64)>,
    next: usize,
}

impl MemorySource {
    /// Consumes every partition of `topics` as consumer group `group`.
    pub fn new(log: MemoryLog, group: &str, topics: &[String]) -> Self {
        let mut positions = Vec::new();
        for topic in topics {
            let name: Arc<str> = Arc::from(topic.as_str());
            for partition in 0..log.partition_count(topic) as i32 {
                let offset = log.committed(group, topic, partition).unwrap_or(0);
                positions.push((name.clone(), partition, offset));
            }
        }
        MemorySource { log, positions, next: 0 }
    }
}

impl super::Source for MemorySource {
    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> Result<(), IoError> {
        // Round-robin over partitions, a fair share each, like a consumer's fetch.
        let count = self.positions.len();
        if count == 0 {
            return Ok(());
        }
        let share = (max / count).max(1);
        for _ in 0..count {
            let i = self.next % count;
            self.next += 1;
            let (topic, partition, offset) = &mut self.positions[i];
            for (at, record) in self.log.read(topic, *partition, *offset, share) {
                *offset = at + 1;
                out.push(SourceRecord {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: at,
                    key: record.key,
                    payload: record.value.unwrap_or_default(),
                });
            }
        }
        Ok(())
    }

    fn assignment(&self) -> Vec<(Arc<str>, i32)> {
        self.positions.iter().map(|(t, p, _)| (t.clone(), *p)).collect()
    }
}

pub struct MemoryReferenceSource {
    log: MemoryLog,
    stores: String,
    catalog: String,
    positions: Vec<(bool, i32, i64)>,
}

impl MemoryReferenceSource {
    pub fn new(log: MemoryLog, stores_topic: &str, catalog_topic: &str) -> Self {
        let mut positions = Vec::new();
        for (is_store, topic) in [(true, stores_topic), (false, catalog_topic)] {
            for partition in 0..log.partition_count(topic).max(1) as i32 {
                positions.push((is_store, partition, 0));
            }
        }
        MemoryReferenceSource { log, stores: stores_topic.to_string(), catalog: catalog_topic.to_string(), positions }
    }
}

impl ReferenceSource for MemoryReferenceSource {
    fn poll(&mut self, out: &mut Vec<ReferenceUpdate>) -> Result<(), IoError> {
        for (is_store, partition, offset) in &mut self.positions {
            let topic = if *is_store { &self.stores } else { &self.catalog };
            for (at, record) in self.log.read(topic, *partition, *offset, usize::MAX) {
                *offset = at + 1;
                let key = record.key.unwrap_or_default();
                let update = if *is_store {
                    ReferenceUpdate::store_from_record(&key, record.value.as_deref())
                } else {
                    ReferenceUpdate::product_from_record(&key, record.value.as_deref())
                };
                match update {
                    Ok(update) => out.push(update),
                    // A bad reference record must not stop the pipeline; it is reported.
                    Err(e) => {
                        tracing::warn!(topic = %topic, offset = at, error = %e, "skipping invalid reference record")
                    }
                }
            }
        }
        Ok(())
    }
}

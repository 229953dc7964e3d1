//! Appends outputs to the in-memory log's output topics and commits group offsets there.

use crate::config::{PipelineConfig, TopicRole};
use crate::memory_log::{LogRecord, MemoryLog};
use crate::output::Output;
use crate::source::IoError;

use super::Position;

pub struct MemorySink {
    log: MemoryLog,
    group: String,
    topics: Vec<(TopicRole, String)>,
}

impl MemorySink {
    pub fn new(log: MemoryLog, config: &PipelineConfig) -> Self {
        let topics = TopicRole::OUTPUTS.into_iter().map(|role| (role, config.topic(role))).collect();
        MemorySink { log, group: config.consumer_group().to_string(), topics }
    }

    fn topic(&self, role: TopicRole) -> &str {
        self.topics.iter().find(|(r, _)| *r == role).map_or("unrouted", |(_, t)| t.as_str())
    }
}

impl super::Sink for MemorySink {
    fn write(&mut self, outputs: &[Output]) -> Result<(), IoError> {
        for output in outputs {
            // Dead-letter and late records: the original bytes, the reason in headers.
            let mut value = Vec::new();
            output.write_value(&mut value);
            let headers = output.headers().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            self.log.append(
                self.topic(output.role()),
                LogRecord { key: Some(output.key().into_bytes()), value: Some(value), headers },
            );
        }
        Ok(())
    }

    fn commit(&mut self, positions: &[Position]) -> Result<(), IoError> {
        for p in positions {
            self.log.commit(&self.group, &p.topic, p.partition, p.next_offset);
        }
        Ok(())
    }
}

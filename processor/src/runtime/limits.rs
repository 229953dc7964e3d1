//! How large a record each topic the processor writes takes: its `max.message.bytes` (the
//! broker's `message.max.bytes` unless the topic sets its own), read once at start. Kafka
//! applies the limit to a whole batch, after compression, so it bounds two things: the value
//! of a single dead-letter or late record (the original event is cut to fit), and the
//! producer's `batch.size` (batches of small records must fit the smallest limit too).
//! Without them a topic configured below a record's size refuses it, the transaction fails,
//! and the same record fails again after every restart.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;

use super::RunError;

/// The producer's own bound on a request (librdkafka's `message.max.bytes` default): no record
/// is made larger whatever a topic takes.
const CLIENT_LIMIT: usize = 1_000_000;
/// A batch's header (61 bytes) and one record's framing (varints, attributes, timestamp and
/// offset deltas, header counts), with room to spare.
const FRAMING: usize = 256;
/// The smallest batch worth configuring: below it the topic takes no useful record anyway.
const MIN_BATCH: usize = 1024;

/// `max.message.bytes` of each topic written, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordLimits {
    by_topic: BTreeMap<String, usize>,
}

impl RecordLimits {
    pub fn new(by_topic: BTreeMap<String, usize>) -> Self {
        RecordLimits { by_topic }
    }

    fn limit(&self, topic: &str) -> usize {
        self.by_topic.get(topic).copied().unwrap_or(CLIENT_LIMIT).min(CLIENT_LIMIT)
    }

    /// The largest value a record of `topic` may carry beside a key and headers of these
    /// sizes: what is left of the topic's limit after framing, less what LZ4 adds to bytes
    /// it cannot compress (1/255 of them and 16).
    pub fn value_room(&self, topic: &str, key: usize, headers: usize) -> usize {
        let room = self.limit(topic).saturating_sub(FRAMING).saturating_sub(key).saturating_sub(headers);
        lz4_input_room(room)
    }

    /// The producer's `batch.size`: a batch, compressed, fits the smallest limit.
    pub fn batch_size(&self) -> usize {
        let smallest = self.by_topic.keys().map(|topic| self.limit(topic)).min().unwrap_or(CLIENT_LIMIT);
        lz4_input_room(smallest.saturating_sub(FRAMING)).max(MIN_BATCH)
    }

    /// Each topic whose limit is below the client's, with it (for the start-up log).
    pub fn small(&self) -> impl Iterator<Item = (&str, usize)> {
        self.by_topic.iter().filter(|(_, limit)| **limit < CLIENT_LIMIT).map(|(topic, limit)| (topic.as_str(), *limit))
    }
}

/// The most bytes whose LZ4 compression, in the worst case, takes at most `room` bytes.
fn lz4_input_room(room: usize) -> usize {
    room.saturating_sub(16) / 256 * 255
}

/// Reads `max.message.bytes` of each topic (DescribeConfigs). A topic whose configuration
/// cannot be read (no DescribeConfigs permission, a broker without the call) is taken to hold
/// the client's 1,000,000 bytes, with a warning: the processor runs as it did before it read
/// limits, rather than not at all.
pub fn read(client: &ClientConfig, topics: &[&str], timeout: Duration) -> Result<RecordLimits, RunError> {
    let admin: AdminClient<DefaultClientContext> =
        client.create().map_err(|e| RunError::kafka("creating the admin client", e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Config(format!("cannot start a runtime for DescribeConfigs: {e}")))?;
    let specifiers: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let options = AdminOptions::new().request_timeout(Some(timeout));
    let results = match runtime.block_on(admin.describe_configs(specifiers.iter(), &options)) {
        Ok(results) => results,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the written topics' max.message.bytes (DescribeConfigs); taking 1,000,000 bytes");
            return Ok(RecordLimits::default());
        }
    };
    let mut by_topic = BTreeMap::new();
    for (topic, result) in topics.iter().zip(results) {
        let resource = match result {
            Ok(resource) => resource,
            Err(code) => {
                tracing::warn!(topic, error = %code, "cannot read the topic's max.message.bytes (DescribeConfigs; grant it to read the limit); taking 1,000,000 bytes");
                continue;
            }
        };
        let value = resource.entries.into_iter().find(|e| e.name == "max.message.bytes").and_then(|e| e.value);
        let limit = value.as_deref().map(str::parse::<usize>).transpose().map_err(|e| {
            RunError::Config(format!("topic {topic} has max.message.bytes {value:?}, not a number of bytes: {e}"))
        })?;
        // A broker that does not say takes Kafka's default, which is above the client's.
        by_topic.insert((*topic).to_string(), limit.unwrap_or(CLIENT_LIMIT));
    }
    Ok(RecordLimits { by_topic })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(entries: &[(&str, usize)]) -> RecordLimits {
        RecordLimits::new(entries.iter().map(|(t, l)| (t.to_string(), *l)).collect())
    }

    #[test]
    fn a_value_fits_its_topic_after_framing_key_headers_and_lz4() {
        let l = limits(&[("dlq", 20_000), ("big", 8_388_608)]);
        // 20,000 - 256 - 30 - 70 = 19,644; less 16, in whole 256-byte blocks of which 255.
        assert_eq!(l.value_room("dlq", 30, 70), 19_628 / 256 * 255);
        let room = l.value_room("dlq", 30, 70);
        assert!(room + room / 255 + 16 + 256 + 30 + 70 <= 20_000);
        // No topic takes more than the client sends; an unknown topic gets the client's bound.
        assert_eq!(l.value_room("big", 0, 0), l.value_room("unknown", 0, 0));
        assert_eq!(l.value_room("big", 0, 0), (1_000_000 - 256 - 16) / 256 * 255);
    }

    #[test]
    fn the_batch_fits_the_smallest_topic_and_a_tiny_limit_leaves_no_room() {
        assert_eq!(limits(&[("a", 20_000), ("b", 1_048_588)]).batch_size(), (20_000 - 256 - 16) / 256 * 255);
        assert_eq!(limits(&[]).batch_size(), (1_000_000 - 256 - 16) / 256 * 255);
        assert_eq!(limits(&[("a", 100)]).batch_size(), MIN_BATCH);
        assert_eq!(limits(&[("a", 100)]).value_room("a", 10, 10), 0);
        assert_eq!(limits(&[("a", 20_000), ("b", 2_000_000)]).small().collect::<Vec<_>>(), vec![("a", 20_000)]);
    }
}

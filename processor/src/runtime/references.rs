//! Reference data on Kafka: the compacted `stores` and `catalog` topics, read to their end by
//! every instance before any event is processed, then followed live. Every instance reads
//! every partition (broadcast), with no consumer group. The current table is kept so that a
//! task created later starts with all of it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::reference::{ProductRecord, ReferenceUpdate, StoreRecord};

use super::RunError;
use super::client::ConsumerLog;
use super::metrics::Metrics;

pub struct References {
    consumer: BaseConsumer<ConsumerLog>,
    stores_topic: String,
    /// Partitions not yet read to the end they had at start, with that end.
    loading: BTreeMap<(String, i32), i64>,
    pub stores: BTreeMap<String, StoreRecord>,
    pub products: BTreeMap<String, ProductRecord>,
}

impl References {
    /// Assigns every partition of the reference topics from their beginning. `catalog` is
    /// `None` when products come from a file.
    pub fn new(
        client: &ClientConfig,
        stores_topic: &str,
        catalog_topic: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, RunError> {
        let consumer: BaseConsumer<ConsumerLog> = client
            .clone()
            .set("group.id", "stockpulse-reference-reader")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .create_with_context(ConsumerLog)
            .map_err(|e| RunError::kafka("creating the reference-data consumer", e))?;
        let mut assignment = TopicPartitionList::new();
        let mut loading = BTreeMap::new();
        for topic in std::iter::once(stores_topic).chain(catalog_topic) {
            let metadata = consumer
                .fetch_metadata(Some(topic), timeout)
                .map_err(|e| RunError::kafka(&format!("reading metadata of topic {topic}"), e))?;
            let Some(meta) = metadata.topics().first().filter(|t| t.error().is_none() && !t.partitions().is_empty())
            else {
                return Err(RunError::MissingTopic(topic.to_string()));
            };
            for partition in meta.partitions() {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition.id(), timeout)
                    .map_err(|e| RunError::kafka(&format!("reading the end of {topic}/{}", partition.id()), e))?;
                assignment
                    .add_partition_offset(topic, partition.id(), Offset::Beginning)
                    .map_err(|e| RunError::kafka("assigning reference partitions", e))?;
                if high > low {
                    loading.insert((topic.to_string(), partition.id()), high);
                }
            }
        }
        consumer.assign(&assignment).map_err(|e| RunError::kafka("assigning reference partitions", e))?;
        Ok(References {
            consumer,
            stores_topic: stores_topic.to_string(),
            loading,
            stores: BTreeMap::new(),
            products: BTreeMap::new(),
        })
    }

    /// Whether every partition has been read to the end it had at start.
    pub fn loaded(&self) -> bool {
        self.loading.is_empty()
    }

    /// Reads until [`References::loaded`], or fails after `timeout`.
    pub fn load(
        &mut self,
        timeout: Duration,
        metrics: &Metrics,
        out: &mut Vec<ReferenceUpdate>,
    ) -> Result<(), RunError> {
        let deadline = Instant::now() + timeout;
        while !self.loaded() {
            if Instant::now() > deadline {
                let left: Vec<String> = self.loading.keys().map(|(t, p)| format!("{t}/{p}")).collect();
                return Err(RunError::Reference(format!(
                    "reference data not read to its end within {timeout:?}: {}",
                    left.join(", ")
                )));
            }
            self.poll_once(Duration::from_millis(200), metrics, out)?;
        }
        Ok(())
    }

    /// Takes what arrived since the last call, without waiting.
    pub fn poll(&mut self, metrics: &Metrics, out: &mut Vec<ReferenceUpdate>) -> Result<(), RunError> {
        while self.poll_once(Duration::ZERO, metrics, out)? {}
        Ok(())
    }

    /// One record or event; `false` when none was there.
    fn poll_once(
        &mut self,
        wait: Duration,
        metrics: &Metrics,
        out: &mut Vec<ReferenceUpdate>,
    ) -> Result<bool, RunError> {
        match self.consumer.poll(wait) {
            None => Ok(false),
            Some(Err(KafkaError::PartitionEOF(_))) => {
                self.check_loaded();
                Ok(true)
            }
            Some(Err(e)) => {
                metrics.kafka_errors.get_or_create(&vec![("operation", "reference".to_string())]).inc();
                tracing::warn!(error = %e, "reading reference data");
                Ok(false)
            }
            Some(Ok(message)) => {
                let key = message.key().unwrap_or_default();
                let value = message.payload();
                let is_stores = message.topic() == self.stores_topic;
                let decoded = if is_stores {
                    ReferenceUpdate::store_from_record(key, value)
                } else {
                    ReferenceUpdate::product_from_record(key, value)
                };
                match decoded {
                    Ok(update) => {
                        self.remember(&update);
                        out.push(update);
                    }
                    Err(e) => {
                        let kind = if is_stores { "store" } else { "product" };
                        metrics.reference_errors.get_or_create(&vec![("kind", kind.to_string())]).inc();
                        tracing::warn!(error = %e, topic = message.topic(), offset = message.offset(), "reference record left out");
                    }
                }
                if !self.loading.is_empty() {
                    self.check_loaded();
                }
                Ok(true)
            }
        }
    }

    /// Drops from `loading` the partitions whose position reached their end at start.
    fn check_loaded(&mut self) {
        let Ok(positions) = self.consumer.position() else { return };
        self.loading.retain(|(topic, partition), end| {
            let at = positions.find_partition(topic, *partition).and_then(|p| p.offset().to_raw());
            at.is_none_or(|offset| offset < *end)
        });
    }

    fn remember(&mut self, update: &ReferenceUpdate) {
        match update {
            ReferenceUpdate::Store(record) => {
                self.stores.insert(record.store_id.clone(), record.clone());
            }
            ReferenceUpdate::StoreRemoved(id) => {
                self.stores.remove(id);
            }
            ReferenceUpdate::Product(record) => {
                self.products.insert(record.sku_id.clone(), record.clone());
            }
            ReferenceUpdate::ProductRemoved(id) => {
                self.products.remove(id);
            }
        }
    }

    /// Every current record, as updates (for a new task).
    pub fn snapshot(&self) -> impl Iterator<Item = ReferenceUpdate> + '_ {
        self.stores
            .values()
            .cloned()
            .map(ReferenceUpdate::Store)
            .chain(self.products.values().cloned().map(ReferenceUpdate::Product))
    }
}

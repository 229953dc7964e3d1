//! [`KafkaAccess`] on a real broker through librdkafka.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use super::describe_topic_ids::{TopicLookup, describe_topic_id};
use super::incremental_alter_configs::set_topic_configs;
use super::{GroupProgress, KafkaAccess, KafkaError, KafkaTarget, PartitionOffsets, TopicIdentity};
use crate::plan::stores::OutgoingRecord;
use crate::plan::topics::{ObservedTopic, TopicAction};
use crate::replicator::checkpoint::{Checkpoints, ReaderLog, read_checkpoints};

/// How many of a checkpoint topic's last records the operator reads for a region's status.
const CHECKPOINT_TAIL: i64 = 500;

/// Talks to the brokers of each target with a short-lived client per call.
#[derive(Clone, Debug)]
pub struct RdKafkaAccess {
    pub timeout: Duration,
}

impl Default for RdKafkaAccess {
    fn default() -> Self {
        RdKafkaAccess { timeout: Duration::from_secs(10) }
    }
}

/// The librdkafka settings of a target.
pub fn client_config(target: &KafkaTarget) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &target.bootstrap_servers);
    config.set("client.id", "stockpulse-operator");
    let tls = target.ca_pem.is_some() || target.cert_pem.is_some();
    if let Some(ca) = &target.ca_pem {
        config.set("ssl.ca.pem", ca);
    }
    if let (Some(cert), Some(key)) = (&target.cert_pem, &target.key_pem) {
        config.set("ssl.certificate.pem", cert);
        config.set("ssl.key.pem", key);
    }
    let protocol = match (&target.sasl, tls) {
        (Some((mechanism, user, password)), tls) => {
            config.set("sasl.mechanisms", mechanism);
            config.set("sasl.username", user);
            config.set("sasl.password", password);
            if tls { "sasl_ssl" } else { "sasl_plaintext" }
        }
        (None, true) => "ssl",
        (None, false) => "plaintext",
    };
    config.set("security.protocol", protocol);
    config
}

fn failed(operation: &'static str, e: impl std::fmt::Display) -> KafkaError {
    KafkaError::Failed { operation, message: e.to_string() }
}

impl RdKafkaAccess {
    fn admin(&self, target: &KafkaTarget) -> Result<Arc<AdminClient<DefaultClientContext>>, KafkaError> {
        client_config(target).create().map(Arc::new).map_err(|e| failed("connect", e))
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new().request_timeout(Some(self.timeout)).operation_timeout(Some(self.timeout))
    }

    async fn describe(
        &self,
        target: &KafkaTarget,
        names: &[String],
    ) -> Result<BTreeMap<String, ObservedTopic>, KafkaError> {
        let admin = self.admin(target)?;
        let timeout = self.timeout;
        let meta_admin = admin.clone();
        let partitions: BTreeMap<String, i32> = tokio::task::spawn_blocking(move || {
            meta_admin.inner().fetch_metadata(None, timeout).map(|m| {
                m.topics()
                    .iter()
                    .filter(|t| t.error().is_none())
                    .map(|t| (t.name().to_string(), i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)))
                    .collect()
            })
        })
        .await
        .map_err(|e| failed("metadata", e))?
        .map_err(|e| failed("metadata", e))?;
        let existing: Vec<&String> = names.iter().filter(|n| partitions.contains_key(*n)).collect();
        let mut out = BTreeMap::new();
        if existing.is_empty() {
            return Ok(out);
        }
        let specifiers: Vec<ResourceSpecifier<'_>> = existing.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        let results = admin
            .describe_configs(specifiers.iter(), &self.options())
            .await
            .map_err(|e| failed("DescribeConfigs", e))?;
        for (name, result) in existing.into_iter().zip(results) {
            let resource = result.map_err(|code| failed("DescribeConfigs", format!("{name}: {code}")))?;
            let configs = resource.entries.into_iter().filter_map(|e| e.value.map(|v| (e.name, v))).collect();
            out.insert(name.clone(), ObservedTopic { partitions: partitions[name], configs });
        }
        Ok(out)
    }

    async fn identity(&self, target: &KafkaTarget, topic: &str) -> Result<Option<TopicIdentity>, KafkaError> {
        let admin = self.admin(target)?;
        let (topic, timeout) = (topic.to_string(), self.timeout);
        tokio::task::spawn_blocking(move || {
            let found = describe_topic_id(&admin, &topic, timeout).map_err(|e| failed("DescribeTopics", e))?;
            let TopicLookup::Found(topic_id) = found else { return Ok(None) };
            // The metadata answer carries the cluster id (None from a broker that has none).
            let cluster_id = admin.inner().fetch_cluster_id(timeout);
            Ok(Some(TopicIdentity { cluster_id, topic_id }))
        })
        .await
        .map_err(|e| failed("DescribeTopics", e))?
    }

    async fn apply_action(&self, target: &KafkaTarget, action: &TopicAction) -> Result<(), KafkaError> {
        let admin = self.admin(target)?;
        match action {
            TopicAction::Create { name, partitions, replication_factor, configs } => {
                let mut topic = NewTopic::new(name, *partitions, TopicReplication::Fixed(*replication_factor));
                for (k, v) in configs {
                    topic = topic.set(k, v);
                }
                let results =
                    admin.create_topics([&topic], &self.options()).await.map_err(|e| failed("CreateTopics", e))?;
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                        Err((topic, code)) => {
                            return Err(failed("CreateTopics", format!("{topic}: {code}")));
                        }
                    }
                }
                Ok(())
            }
            TopicAction::AlignConfigs { name, set } => {
                let (name, set, timeout) = (name.clone(), set.clone(), self.timeout);
                tokio::task::spawn_blocking(move || set_topic_configs(&admin, &name, &set, timeout))
                    .await
                    .map_err(|e| failed("IncrementalAlterConfigs", e))?
                    .map_err(|e| failed("IncrementalAlterConfigs", e))
            }
            TopicAction::IncreasePartitions { name, to, .. } => {
                let count = usize::try_from(*to).unwrap_or(0);
                let partitions = NewPartitions::new(name, count);
                let result = admin.create_partitions([&partitions], &self.options()).await;
                match result {
                    Ok(results) => {
                        for r in results {
                            if let Err((topic, code)) = r {
                                return Err(partition_error(format!("{topic}: {code}"), Some(code)));
                            }
                        }
                        Ok(())
                    }
                    Err(RdError::AdminOp(code)) => Err(partition_error(code.to_string(), Some(code))),
                    Err(e) => Err(partition_error(e.to_string(), None)),
                }
            }
            TopicAction::Delete { name } => {
                let results = admin
                    .delete_topics(&[name.as_str()], &self.options())
                    .await
                    .map_err(|e| failed("DeleteTopics", e))?;
                for result in results {
                    match result {
                        Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                        Err((topic, code)) => {
                            return Err(failed("DeleteTopics", format!("{topic}: {code}")));
                        }
                    }
                }
                Ok(())
            }
        }
    }

    async fn progress(
        &self,
        target: &KafkaTarget,
        group: &str,
        topics: &[String],
    ) -> Result<Option<GroupProgress>, KafkaError> {
        let partitions = self.committed(target, group, topics).await?;
        let mut progress = GroupProgress { lag: 0, committed: 0, last_checkpoint: None };
        let mut any_committed = false;
        for (p, metadata) in &partitions {
            progress.lag += match p.committed {
                Some(at) => {
                    any_committed = true;
                    progress.committed += at;
                    // RFC 3339 UTC times compare as text.
                    if !metadata.is_empty() && progress.last_checkpoint.as_deref().is_none_or(|t| t < metadata.as_str())
                    {
                        progress.last_checkpoint = Some(metadata.clone());
                    }
                    (p.high - at).max(0)
                }
                None => (p.high - p.low).max(0),
            };
        }
        Ok(any_committed.then_some(progress))
    }

    async fn members(&self, target: &KafkaTarget, group: &str) -> Result<Vec<String>, KafkaError> {
        let consumer: BaseConsumer = client_config(target).create().map_err(|e| failed("connect", e))?;
        let (group, timeout) = (group.to_string(), self.timeout);
        tokio::task::spawn_blocking(move || {
            let list = consumer.fetch_group_list(Some(&group), timeout).map_err(|e| failed("DescribeGroups", e))?;
            Ok(list.groups().iter().flat_map(|g| g.members().iter().map(|m| m.client_id().to_string())).collect())
        })
        .await
        .map_err(|e| failed("DescribeGroups", e))?
    }

    async fn offsets(
        &self,
        target: &KafkaTarget,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<PartitionOffsets>, KafkaError> {
        Ok(self.committed(target, group, topics).await?.into_iter().map(|(p, _)| p).collect())
    }

    /// Every partition of `topics` with its watermarks and `group`'s committed offset, and
    /// the metadata of that commit.
    async fn committed(
        &self,
        target: &KafkaTarget,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<(PartitionOffsets, String)>, KafkaError> {
        let consumer: BaseConsumer = client_config(target)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| failed("connect", e))?;
        let topics = topics.to_vec();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(None, timeout).map_err(|e| failed("metadata", e))?;
            let mut partitions = TopicPartitionList::new();
            for topic in metadata.topics().iter().filter(|t| topics.iter().any(|n| n == t.name())) {
                for p in topic.partitions() {
                    partitions.add_partition(topic.name(), p.id());
                }
            }
            if partitions.count() == 0 {
                return Ok(Vec::new());
            }
            let committed = consumer.committed_offsets(partitions, timeout).map_err(|e| failed("OffsetFetch", e))?;
            let mut out = Vec::new();
            for element in committed.elements() {
                let (low, high) = consumer
                    .fetch_watermarks(element.topic(), element.partition(), timeout)
                    .map_err(|e| failed("ListOffsets", e))?;
                let committed = match element.offset() {
                    Offset::Offset(at) => Some(at),
                    _ => None,
                };
                let partition = PartitionOffsets {
                    topic: element.topic().to_string(),
                    partition: element.partition(),
                    low,
                    high,
                    committed,
                };
                out.push((partition, element.metadata().to_string()));
            }
            Ok(out)
        })
        .await
        .map_err(|e| failed("OffsetFetch", e))?
    }

    async fn checkpoints(&self, target: &KafkaTarget, topic: &str) -> Result<Option<Checkpoints>, KafkaError> {
        let reader: BaseConsumer<ReaderLog> = client_config(target)
            .set("group.id", "stockpulse-operator-checkpoint-reader")
            .set("enable.auto.commit", "false")
            .set("isolation.level", "read_committed")
            .set("enable.partition.eof", "true")
            .create_with_context(ReaderLog)
            .map_err(|e| failed("connect", e))?;
        let topic = topic.to_string();
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            // A replicator writes its status with every transaction: the last few hundred
            // records hold the newest one, and the checkpoints of the partitions moving.
            read_checkpoints(&reader, &topic, Some(CHECKPOINT_TAIL), timeout).map_err(|e| failed("Fetch", e))
        })
        .await
        .map_err(|e| failed("Fetch", e))?
    }

    async fn produce_records(&self, target: &KafkaTarget, records: &[OutgoingRecord]) -> Result<(), KafkaError> {
        let producer: FutureProducer = client_config(target)
            .set("acks", "all")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", self.timeout.as_millis().to_string())
            .create()
            .map_err(|e| failed("connect", e))?;
        for r in records {
            let mut record: FutureRecord<'_, str, str> = FutureRecord::to(&r.topic).key(&r.key);
            if let Some(value) = &r.value {
                record = record.payload(value);
            }
            producer
                .send(record, self.timeout)
                .await
                .map_err(|(e, _)| failed("Produce", format!("{} key {}: {e}", r.topic, r.key)))?;
        }
        Ok(())
    }
}

/// A failed partition increase: unsupported by the broker (tansu has no CreatePartitions)
/// or failed for another reason.
fn partition_error(message: String, code: Option<RDKafkaErrorCode>) -> KafkaError {
    let unsupported = matches!(
        code,
        Some(
            RDKafkaErrorCode::UnsupportedVersion
                | RDKafkaErrorCode::UnsupportedFeature
                | RDKafkaErrorCode::InvalidRequest
        )
    ) || message.contains("not supported")
        || message.contains("Unsupported");
    if unsupported {
        KafkaError::Unsupported { operation: "CreatePartitions", message }
    } else {
        KafkaError::Failed { operation: "CreatePartitions", message }
    }
}

impl KafkaAccess for RdKafkaAccess {
    fn describe_topics<'a>(
        &'a self,
        target: &'a KafkaTarget,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, ObservedTopic>, KafkaError>> {
        self.describe(target, names).boxed()
    }

    fn topic_identity<'a>(
        &'a self,
        target: &'a KafkaTarget,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicIdentity>, KafkaError>> {
        self.identity(target, topic).boxed()
    }

    fn apply<'a>(&'a self, target: &'a KafkaTarget, action: &'a TopicAction) -> BoxFuture<'a, Result<(), KafkaError>> {
        self.apply_action(target, action).boxed()
    }

    fn group_progress<'a>(
        &'a self,
        target: &'a KafkaTarget,
        group: &'a str,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<Option<GroupProgress>, KafkaError>> {
        self.progress(target, group, topics).boxed()
    }

    fn partition_offsets<'a>(
        &'a self,
        target: &'a KafkaTarget,
        group: &'a str,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<PartitionOffsets>, KafkaError>> {
        self.offsets(target, group, topics).boxed()
    }

    fn group_members<'a>(
        &'a self,
        target: &'a KafkaTarget,
        group: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, KafkaError>> {
        self.members(target, group).boxed()
    }

    fn replication_checkpoints<'a>(
        &'a self,
        target: &'a KafkaTarget,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<Checkpoints>, KafkaError>> {
        self.checkpoints(target, topic).boxed()
    }

    fn produce<'a>(
        &'a self,
        target: &'a KafkaTarget,
        records: &'a [OutgoingRecord],
    ) -> BoxFuture<'a, Result<(), KafkaError>> {
        self.produce_records(target, records).boxed()
    }
}

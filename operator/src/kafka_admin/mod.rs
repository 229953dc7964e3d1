//! The operator's side of Kafka: topics through the admin API and store records through a
//! producer. A trait, so controllers are tested with an in-memory broker and the real
//! implementation is tested against tansu.

mod admin_request;
mod describe_topic_ids;
mod incremental_alter_configs;
pub mod memory;
pub mod rdkafka_client;

use std::collections::BTreeMap;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::plan::stores::OutgoingRecord;
use crate::plan::topics::{ObservedTopic, TopicAction};
use crate::replicator::checkpoint::Checkpoints;

/// How to reach a cluster, with the credentials read from the referenced Secrets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KafkaTarget {
    pub bootstrap_servers: String,
    pub ca_pem: Option<String>,
    pub cert_pem: Option<String>,
    pub key_pem: Option<String>,
    /// (mechanism, username, password)
    pub sasl: Option<(String, String, String)>,
}

impl KafkaTarget {
    pub fn plain(bootstrap_servers: impl Into<String>) -> Self {
        KafkaTarget { bootstrap_servers: bootstrap_servers.into(), ..KafkaTarget::default() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KafkaError {
    /// The broker does not implement what was asked (tansu: CreatePartitions).
    #[error("the broker does not support {operation}: {message}")]
    Unsupported { operation: &'static str, message: String },
    #[error("{operation} failed: {message}")]
    Failed { operation: &'static str, message: String },
}

impl KafkaError {
    pub fn operation(&self) -> &'static str {
        match self {
            KafkaError::Unsupported { operation, .. } | KafkaError::Failed { operation, .. } => operation,
        }
    }
}

/// Which topic on which cluster a name stands for: the same name can come back as another
/// topic (deleted and created again) or on another cluster (a changed `bootstrapServers`).
/// Each part is `None` where the broker does not tell.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicIdentity {
    pub cluster_id: Option<String>,
    pub topic_id: Option<String>,
}

/// How far a consumer group is behind, and when it last committed (if it says).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupProgress {
    pub lag: i64,
    /// Sum of the committed offsets: records consumed (and, for the replicator, copied).
    pub committed: i64,
    pub last_checkpoint: Option<String>,
}

/// One input partition as the autoscaler samples it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub topic: String,
    pub partition: i32,
    /// Low and high watermarks.
    pub low: i64,
    pub high: i64,
    /// The group's committed offset, when it committed one.
    pub committed: Option<i64>,
}

impl PartitionOffsets {
    /// High watermark minus committed offset (the whole partition when nothing is committed).
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low)).max(0)
    }
}

/// Topics and records on a Kafka cluster.
pub trait KafkaAccess: Send + Sync {
    /// The topics among `names` that exist, with partitions and configs.
    fn describe_topics<'a>(
        &'a self,
        target: &'a KafkaTarget,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, ObservedTopic>, KafkaError>>;

    /// The identity of `topic` (cluster id and topic id); `None` when it does not exist.
    fn topic_identity<'a>(
        &'a self,
        target: &'a KafkaTarget,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicIdentity>, KafkaError>>;

    /// Makes one change.
    fn apply<'a>(&'a self, target: &'a KafkaTarget, action: &'a TopicAction) -> BoxFuture<'a, Result<(), KafkaError>>;

    /// Consumer-group lag over `topics`: the sum over their partitions of the end offset
    /// minus the group's committed offset (the whole partition when nothing is committed).
    /// `None` when the group has committed nothing on them yet. The lag of
    /// [`KafkaAccess::group_progress`].
    fn consumer_lag<'a>(
        &'a self,
        target: &'a KafkaTarget,
        group: &'a str,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<Option<i64>, KafkaError>> {
        self.group_progress(target, group, topics).map(|progress| progress.map(|p| p.map(|p| p.lag))).boxed()
    }

    /// Lag of `group` over `topics` and the latest time it checkpointed (the newest offset
    /// commit metadata, as the replicator writes it). `None` when nothing is committed.
    fn group_progress<'a>(
        &'a self,
        target: &'a KafkaTarget,
        group: &'a str,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<Option<GroupProgress>, KafkaError>>;

    /// Every partition of `topics` with its watermarks and the offset `group` committed on it.
    fn partition_offsets<'a>(
        &'a self,
        target: &'a KafkaTarget,
        group: &'a str,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<PartitionOffsets>, KafkaError>>;

    /// The client ids of the members of consumer group `group` (each processor puts the
    /// address of its HTTP port there). Nothing where the access cannot describe groups.
    fn group_members<'a>(
        &'a self,
        _target: &'a KafkaTarget,
        _group: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, KafkaError>> {
        futures::future::ready(Ok(Vec::new())).boxed()
    }

    /// The last checkpoints and status a replicator committed to its checkpoint `topic`
    /// (read `read_committed`, the tail only); `None` when the topic does not exist yet.
    fn replication_checkpoints<'a>(
        &'a self,
        target: &'a KafkaTarget,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<Checkpoints>, KafkaError>>;

    /// Produces records (a `None` value is a tombstone) and waits for their acknowledgement.
    fn produce<'a>(
        &'a self,
        target: &'a KafkaTarget,
        records: &'a [OutgoingRecord],
    ) -> BoxFuture<'a, Result<(), KafkaError>>;
}

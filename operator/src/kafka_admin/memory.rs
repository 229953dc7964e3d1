//! An in-memory [`KafkaAccess`] for controller tests: topics, configs and the records
//! produced, with switches to fail like tansu does.

use std::collections::BTreeMap;
use std::sync::Mutex;

use futures::future::{BoxFuture, FutureExt};

use super::{GroupProgress, KafkaAccess, KafkaError, KafkaTarget, PartitionOffsets, TopicIdentity};
use crate::plan::stores::OutgoingRecord;
use crate::plan::topics::{ObservedTopic, TopicAction};
use crate::replicator::checkpoint::Checkpoints;

#[derive(Debug, Default)]
pub struct MemoryKafka {
    state: Mutex<MemoryState>,
}

#[derive(Debug, Default, Clone)]
pub struct MemoryState {
    pub topics: BTreeMap<String, ObservedTopic>,
    /// The id of each topic, new on every creation (`"topic-<n>"`).
    pub topic_ids: BTreeMap<String, String>,
    /// Topics created so far, for the next id.
    pub created: u64,
    /// What the broker answers as its cluster id.
    pub cluster_id: Option<String>,
    /// Every action applied, in order.
    pub actions: Vec<TopicAction>,
    pub produced: Vec<OutgoingRecord>,
    /// Refuse partition increases as tansu does.
    pub no_create_partitions: bool,
    /// What `group_progress` answers (and so `consumer_lag`).
    pub progress: Option<GroupProgress>,
    /// What `group_members` answers: the client ids of a consumer group's members.
    pub members: Vec<String>,
    /// What `partition_offsets` answers.
    pub offsets: Vec<PartitionOffsets>,
    /// What `replication_checkpoints` answers.
    pub checkpoints: Option<Checkpoints>,
}

impl MemoryKafka {
    pub fn new() -> Self {
        MemoryKafka::default()
    }
    pub fn with_state(state: MemoryState) -> Self {
        MemoryKafka { state: Mutex::new(state) }
    }
    /// A copy of the state, for assertions.
    pub fn state(&self) -> MemoryState {
        self.lock().clone()
    }
    /// Sets what `partition_offsets` answers (a sample of the broker).
    pub fn set_offsets(&self, offsets: Vec<PartitionOffsets>) {
        self.lock().offsets = offsets;
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl KafkaAccess for MemoryKafka {
    fn group_members<'a>(
        &'a self,
        _target: &'a KafkaTarget,
        _group: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, KafkaError>> {
        let members = self.state.lock().map(|s| s.members.clone()).unwrap_or_default();
        futures::future::ready(Ok(members)).boxed()
    }

    fn describe_topics<'a>(
        &'a self,
        _target: &'a KafkaTarget,
        names: &'a [String],
    ) -> BoxFuture<'a, Result<BTreeMap<String, ObservedTopic>, KafkaError>> {
        let state = self.lock();
        let found = names.iter().filter_map(|n| state.topics.get(n).map(|t| (n.clone(), t.clone()))).collect();
        futures::future::ready(Ok(found)).boxed()
    }

    fn topic_identity<'a>(
        &'a self,
        _target: &'a KafkaTarget,
        topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<TopicIdentity>, KafkaError>> {
        let state = self.lock();
        let identity = state.topics.contains_key(topic).then(|| TopicIdentity {
            cluster_id: state.cluster_id.clone(),
            topic_id: state.topic_ids.get(topic).cloned(),
        });
        futures::future::ready(Ok(identity)).boxed()
    }

    fn apply<'a>(&'a self, _target: &'a KafkaTarget, action: &'a TopicAction) -> BoxFuture<'a, Result<(), KafkaError>> {
        let mut state = self.lock();
        let result = match action {
            TopicAction::Create { name, partitions, configs, .. } => {
                state.topics.insert(name.clone(), ObservedTopic { partitions: *partitions, configs: configs.clone() });
                state.created += 1;
                let id = format!("topic-{}", state.created);
                state.topic_ids.insert(name.clone(), id);
                Ok(())
            }
            TopicAction::AlignConfigs { name, set } => match state.topics.get_mut(name) {
                Some(t) => {
                    t.configs.extend(set.clone());
                    Ok(())
                }
                None => Err(KafkaError::Failed {
                    operation: "IncrementalAlterConfigs",
                    message: format!("{name}: unknown topic"),
                }),
            },
            TopicAction::IncreasePartitions { name, to, .. } => {
                if state.no_create_partitions {
                    Err(KafkaError::Unsupported {
                        operation: "CreatePartitions",
                        message: format!("{name}: unsupported"),
                    })
                } else if let Some(t) = state.topics.get_mut(name) {
                    t.partitions = *to;
                    Ok(())
                } else {
                    Err(KafkaError::Failed { operation: "CreatePartitions", message: format!("{name}: unknown topic") })
                }
            }
            TopicAction::Delete { name } => {
                state.topics.remove(name);
                state.topic_ids.remove(name);
                Ok(())
            }
        };
        state.actions.push(action.clone());
        futures::future::ready(result).boxed()
    }

    fn group_progress<'a>(
        &'a self,
        _target: &'a KafkaTarget,
        _group: &'a str,
        _topics: &'a [String],
    ) -> BoxFuture<'a, Result<Option<GroupProgress>, KafkaError>> {
        futures::future::ready(Ok(self.lock().progress.clone())).boxed()
    }

    fn partition_offsets<'a>(
        &'a self,
        _target: &'a KafkaTarget,
        _group: &'a str,
        topics: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<PartitionOffsets>, KafkaError>> {
        let offsets = self.lock().offsets.iter().filter(|o| topics.contains(&o.topic)).cloned().collect();
        futures::future::ready(Ok(offsets)).boxed()
    }

    fn replication_checkpoints<'a>(
        &'a self,
        _target: &'a KafkaTarget,
        _topic: &'a str,
    ) -> BoxFuture<'a, Result<Option<Checkpoints>, KafkaError>> {
        futures::future::ready(Ok(self.lock().checkpoints.clone())).boxed()
    }

    fn produce<'a>(
        &'a self,
        _target: &'a KafkaTarget,
        records: &'a [OutgoingRecord],
    ) -> BoxFuture<'a, Result<(), KafkaError>> {
        self.lock().produced.extend(records.iter().cloned());
        futures::future::ready(Ok(())).boxed()
    }
}

//! Topic reconciliation: create what is missing, align configs, increase partitions, and
//! refuse (never attempt) a decrease; on deletion, delete only `deletionPolicy: Delete` topics.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::build::topics::DesiredTopic;
use crate::crd::DeletionPolicy;

/// A topic as the broker has it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTopic {
    pub partitions: i32,
    /// Every config the broker reports for the topic.
    pub configs: BTreeMap<String, String>,
}

/// One change to make on the broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "camelCase")]
pub enum TopicAction {
    #[serde(rename_all = "camelCase")]
    Create {
        name: String,
        partitions: i32,
        replication_factor: i32,
        configs: BTreeMap<String, String>,
    },
    /// Set these configs (IncrementalAlterConfigs SET), leaving the others alone.
    #[serde(rename_all = "camelCase")]
    AlignConfigs {
        name: String,
        set: BTreeMap<String, String>,
    },
    #[serde(rename_all = "camelCase")]
    IncreasePartitions { name: String, from: i32, to: i32 },
    #[serde(rename_all = "camelCase")]
    Delete { name: String },
}

/// A change the operator will not make, with why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub topic: String,
    pub reason: &'static str,
    pub message: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TopicPlan {
    pub actions: Vec<TopicAction>,
    pub refusals: Vec<Refusal>,
}

/// What to do so the broker matches `desired`.
pub fn plan_topics(
    desired: &[DesiredTopic],
    observed: &BTreeMap<String, ObservedTopic>,
) -> TopicPlan {
    let mut plan = TopicPlan::default();
    for topic in desired {
        match observed.get(&topic.name) {
            None => plan.actions.push(TopicAction::Create {
                name: topic.name.clone(),
                partitions: topic.partitions,
                replication_factor: topic.replication_factor,
                configs: topic.configs.clone(),
            }),
            Some(have) => {
                let set: BTreeMap<String, String> = topic
                    .configs
                    .iter()
                    .filter(|(k, v)| have.configs.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !set.is_empty() {
                    plan.actions.push(TopicAction::AlignConfigs {
                        name: topic.name.clone(),
                        set,
                    });
                }
                if topic.partitions > have.partitions {
                    plan.actions.push(TopicAction::IncreasePartitions {
                        name: topic.name.clone(),
                        from: have.partitions,
                        to: topic.partitions,
                    });
                } else if topic.partitions < have.partitions {
                    plan.refusals.push(Refusal {
                        topic: topic.name.clone(),
                        reason: "PartitionDecreaseRefused",
                        message: format!(
                            "topic {} has {} partitions and the spec asks for {}: Kafka cannot remove partitions; \
                             set partitions to {} or more",
                            topic.name, have.partitions, topic.partitions, have.partitions
                        ),
                    });
                }
            }
        }
    }
    plan
}

/// The topics to delete when the pipeline goes: those with `deletionPolicy: Delete` that exist.
pub fn plan_topic_cleanup(
    desired: &[DesiredTopic],
    observed: &BTreeMap<String, ObservedTopic>,
) -> Vec<TopicAction> {
    desired
        .iter()
        .filter(|t| t.deletion_policy == DeletionPolicy::Delete && observed.contains_key(&t.name))
        .map(|t| TopicAction::Delete {
            name: t.name.clone(),
        })
        .collect()
}

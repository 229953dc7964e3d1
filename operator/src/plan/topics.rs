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
    Create { name: String, partitions: i32, replication_factor: i32, configs: BTreeMap<String, String> },
    /// Set these configs (IncrementalAlterConfigs SET), leaving the others alone.
    #[serde(rename_all = "camelCase")]
    AlignConfigs { name: String, set: BTreeMap<String, String> },
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
pub fn plan_topics(desired: &[DesiredTopic], observed: &BTreeMap<String, ObservedTopic>) -> TopicPlan {
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
                    plan.actions.push(TopicAction::AlignConfigs { name: topic.name.clone(), set });
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
pub fn plan_topic_cleanup(desired: &[DesiredTopic], observed: &BTreeMap<String, ObservedTopic>) -> Vec<TopicAction> {
    desired
        .iter()
        .filter(|t| t.deletion_policy == DeletionPolicy::Delete && observed.contains_key(&t.name))
        .map(|t| TopicAction::Delete { name: t.name.clone() })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use stockpulse_processor::config::TopicRole;

    use super::*;

    fn desired(name: &str, partitions: i32, cleanup: &str, policy: DeletionPolicy) -> DesiredTopic {
        DesiredTopic {
            role: TopicRole::Sales,
            name: name.to_string(),
            partitions,
            replication_factor: 3,
            configs: BTreeMap::from([("cleanup.policy".to_string(), cleanup.to_string())]),
            deletion_policy: policy,
        }
    }

    fn observed(partitions: i32, configs: &[(&str, &str)]) -> ObservedTopic {
        ObservedTopic { partitions, configs: configs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn topic_plans() {
        struct Case {
            name: &'static str,
            want: DesiredTopic,
            have: Option<ObservedTopic>,
            actions: Vec<TopicAction>,
            refused: Vec<&'static str>,
        }
        let cases = vec![
            Case {
                name: "create a missing topic",
                want: desired("t", 6, "delete", DeletionPolicy::Retain),
                have: None,
                actions: vec![TopicAction::Create {
                    name: "t".into(),
                    partitions: 6,
                    replication_factor: 3,
                    configs: configs(&[("cleanup.policy", "delete")]),
                }],
                refused: vec![],
            },
            Case {
                name: "nothing to do",
                want: desired("t", 6, "delete", DeletionPolicy::Retain),
                have: Some(observed(6, &[("cleanup.policy", "delete"), ("segment.bytes", "1073741824")])),
                actions: vec![],
                refused: vec![],
            },
            Case {
                name: "update a drifted config",
                want: desired("t", 6, "compact", DeletionPolicy::Retain),
                have: Some(observed(6, &[("cleanup.policy", "delete")])),
                actions: vec![TopicAction::AlignConfigs {
                    name: "t".into(),
                    set: configs(&[("cleanup.policy", "compact")]),
                }],
                refused: vec![],
            },
            Case {
                name: "increase partitions",
                want: desired("t", 12, "delete", DeletionPolicy::Retain),
                have: Some(observed(6, &[("cleanup.policy", "delete")])),
                actions: vec![TopicAction::IncreasePartitions { name: "t".into(), from: 6, to: 12 }],
                refused: vec![],
            },
            Case {
                name: "refuse a decrease but still align configs",
                want: desired("t", 3, "compact", DeletionPolicy::Retain),
                have: Some(observed(6, &[("cleanup.policy", "delete")])),
                actions: vec![TopicAction::AlignConfigs {
                    name: "t".into(),
                    set: configs(&[("cleanup.policy", "compact")]),
                }],
                refused: vec!["PartitionDecreaseRefused"],
            },
        ];
        for case in cases {
            let observed: BTreeMap<String, ObservedTopic> =
                case.have.into_iter().map(|o| ("t".to_string(), o)).collect();
            let plan = plan_topics(std::slice::from_ref(&case.want), &observed);
            assert_eq!(plan.actions, case.actions, "{}", case.name);
            let refused: Vec<&str> = plan.refusals.iter().map(|r| r.reason).collect();
            assert_eq!(refused, case.refused, "{}", case.name);
        }
    }

    #[test]
    fn deletion_follows_each_topics_policy() {
        let want = vec![
            desired("kept", 3, "delete", DeletionPolicy::Retain),
            desired("dropped", 3, "delete", DeletionPolicy::Delete),
            desired("never-created", 3, "delete", DeletionPolicy::Delete),
        ];
        let observed =
            BTreeMap::from([("kept".to_string(), observed(3, &[])), ("dropped".to_string(), observed(3, &[]))]);
        assert_eq!(plan_topic_cleanup(&want, &observed), vec![TopicAction::Delete { name: "dropped".into() }]);
        let all_retained: Vec<DesiredTopic> =
            want.into_iter().map(|t| DesiredTopic { deletion_policy: DeletionPolicy::Retain, ..t }).collect();
        assert_eq!(plan_topic_cleanup(&all_retained, &observed), vec![]);
    }
}

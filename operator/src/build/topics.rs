//! The Kafka topics a pipeline wants: name, partitions, replication factor, configs and
//! deletion policy per role.

use std::collections::BTreeMap;

use kube::ResourceExt;
use stockpulse_processor::config::{Duration, TopicRole};

use super::{SpecProblem, SpecProblems};
use crate::crd::retail_pipeline::{TopicSpec, TopicsSpec};
use crate::crd::{AlertPolicy, DeletionPolicy, RetailPipeline};

/// The segment size of compacted changelog topics (64 MiB).
pub const CHANGELOG_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// How long a changelog record stays uncompacted at least, at least once (10 minutes).
pub const CHANGELOG_COMPACTION_LAG_MS: u64 = 600_000;

/// A topic as the spec wants it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DesiredTopic {
    pub role: TopicRole,
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic configs the operator owns (`cleanup.policy`, `retention.ms`, and a changelog's
    /// `segment.bytes` and `min.compaction.lag.ms`).
    pub configs: BTreeMap<String, String>,
    pub deletion_policy: DeletionPolicy,
}

/// The spec entry of a role.
pub fn topic_spec(topics: &TopicsSpec, role: TopicRole) -> &TopicSpec {
    match role {
        TopicRole::Sales => &topics.sales,
        TopicRole::Inventory => &topics.inventory,
        TopicRole::Aggregates => &topics.aggregates,
        TopicRole::InventoryState => &topics.inventory_state,
        TopicRole::Alerts => &topics.alerts,
        TopicRole::DeadLetter => &topics.dead_letter,
        TopicRole::Late => &topics.late,
        TopicRole::Stores => &topics.stores,
        TopicRole::Catalog => &topics.catalog,
        TopicRole::Changelog => &topics.changelog,
        TopicRole::Repartition => &topics.repartition,
    }
}

/// The topic name of a role: the spec's, else `<pipeline>.<role>`.
pub fn topic_name(pipeline: &RetailPipeline, role: TopicRole) -> String {
    topic_spec(&pipeline.spec.topics, role)
        .name
        .clone()
        .unwrap_or_else(|| format!("{}.{}", pipeline.name_any(), role.default_suffix()))
}

/// Every topic of the pipeline, in `TopicRole::ALL` order.
pub fn desired_topics(pipeline: &RetailPipeline) -> Result<Vec<DesiredTopic>, SpecProblems> {
    let topics = &pipeline.spec.topics;
    let mut problems = Vec::new();
    let mut out: Vec<DesiredTopic> = Vec::new();
    for role in TopicRole::ALL {
        let spec = topic_spec(topics, role);
        let field = format!("spec.topics.{}", camel(role));
        let mut configs = BTreeMap::new();
        let cleanup = match spec.cleanup_policy {
            Some(p) => p.as_str(),
            None if role.is_compacted() => "compact",
            None => "delete",
        };
        configs.insert("cleanup.policy".to_string(), cleanup.to_string());
        if role == TopicRole::Changelog && cleanup == "compact" {
            // The cleaner compacts closed segments only: with Kafka's 1-GiB segments a busy
            // day's changelog stays whole, and a task moved by a rebalance or a scale-out reads
            // all of it back. 64-MiB segments are compacted as the day goes.
            configs.insert("segment.bytes".to_string(), CHANGELOG_SEGMENT_BYTES.to_string());
            if !pipeline.spec.processing.exactly_once {
                // At least once, a crash can leave changelog records beyond the committed
                // input offsets, which a restore leaves out: the values before them must not
                // be compacted away meanwhile. (Under exactly-once the cleaner stops at the
                // last stable offset, and every committed record is covered.)
                configs.insert("min.compaction.lag.ms".to_string(), CHANGELOG_COMPACTION_LAG_MS.to_string());
            }
        }
        if let Some(retention) = &spec.retention {
            match retention.parse::<Duration>() {
                Ok(d) => {
                    configs.insert("retention.ms".to_string(), d.as_millis().to_string());
                }
                Err(e) => problems.push(SpecProblem { field: format!("{field}.retention"), message: e.to_string() }),
            }
        }
        let name = topic_name(pipeline, role);
        if let Some(other) = out.iter().find(|t| t.name == name) {
            problems.push(SpecProblem {
                field: format!("{field}.name"),
                message: format!("{name:?} is already the {} topic", other.role),
            });
        }
        out.push(DesiredTopic {
            role,
            name,
            partitions: spec.partitions.unwrap_or(topics.partitions),
            replication_factor: spec.replication_factor.unwrap_or(topics.replication_factor),
            configs,
            deletion_policy: spec.deletion_policy.unwrap_or(topics.deletion_policy),
        });
    }
    co_partitioning(&out, &mut problems);
    if problems.is_empty() { Ok(out) } else { Err(SpecProblems(problems)) }
}

/// Every topic of the pipeline, then the topics its alert policies name as Kafka sinks
/// ([`alert_sink_topics`]).
pub fn desired_topics_with_sinks(
    pipeline: &RetailPipeline,
    policies: &[AlertPolicy],
) -> Result<Vec<DesiredTopic>, SpecProblems> {
    let mut topics = desired_topics(pipeline)?;
    let sinks = alert_sink_topics(pipeline, policies, &topics);
    topics.extend(sinks);
    Ok(topics)
}

/// The topics the pipeline's alert policies name as Kafka sinks, shaped like its alerts
/// topic (partitions, replication, configs), in name order. They are kept when the pipeline
/// goes (a policy's topic may be shared with other consumers); one that is already a topic
/// of the pipeline is left out.
pub fn alert_sink_topics(
    pipeline: &RetailPipeline,
    policies: &[AlertPolicy],
    pipeline_topics: &[DesiredTopic],
) -> Vec<DesiredTopic> {
    let Some(alerts) = pipeline_topics.iter().find(|t| t.role == TopicRole::Alerts) else { return Vec::new() };
    let names: std::collections::BTreeSet<&str> = super::pipeline_config::policies_of(pipeline, policies)
        .into_iter()
        .flat_map(|p| p.spec.sinks.iter())
        .filter_map(|sink| sink.kafka.as_ref().map(|k| k.topic.as_str()))
        .filter(|name| pipeline_topics.iter().all(|t| t.name != *name))
        .collect();
    names
        .into_iter()
        .map(|name| DesiredTopic { name: name.to_string(), deletion_policy: DeletionPolicy::Retain, ..alerts.clone() })
        .collect()
}

/// The processor's task `p` reads sales p and inventory p together, merges the partials of
/// repartition partition p and keeps its state in changelog partition p: inventory and
/// repartition must have the sales topic's partitions, the changelog at least as many.
fn co_partitioning(topics: &[DesiredTopic], problems: &mut Vec<SpecProblem>) {
    let partitions = |role: TopicRole| topics.iter().find(|t| t.role == role).map_or(0, |t| t.partitions);
    let sales = partitions(TopicRole::Sales);
    if partitions(TopicRole::Inventory) != sales {
        problems.push(SpecProblem {
            field: "spec.topics.inventory.partitions".into(),
            message: format!(
                "must equal the sales topic's {sales} partitions: a processor task reads sales p and inventory p together"
            ),
        });
    }
    if partitions(TopicRole::Repartition) != sales {
        problems.push(SpecProblem {
            field: "spec.topics.repartition.partitions".into(),
            message: format!(
                "must equal the sales topic's {sales} partitions: processor task p merges repartition partition p"
            ),
        });
    }
    if partitions(TopicRole::Changelog) < sales {
        problems.push(SpecProblem {
            field: "spec.topics.changelog.partitions".into(),
            message: format!(
                "must be at least the sales topic's {sales} partitions: task p keeps its state in changelog partition p"
            ),
        });
    }
}

/// The camelCase field name of a role in `spec.topics`.
pub fn camel(role: TopicRole) -> &'static str {
    match role {
        TopicRole::Sales => "sales",
        TopicRole::Inventory => "inventory",
        TopicRole::Aggregates => "aggregates",
        TopicRole::InventoryState => "inventoryState",
        TopicRole::Alerts => "alerts",
        TopicRole::DeadLetter => "deadLetter",
        TopicRole::Late => "late",
        TopicRole::Stores => "stores",
        TopicRole::Catalog => "catalog",
        TopicRole::Changelog => "changelog",
        TopicRole::Repartition => "repartition",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{low_stock_policy, pipeline};

    #[test]
    fn a_compacted_changelog_has_segments_the_cleaner_can_compact() {
        let configs_of = |pipeline: &RetailPipeline, role| {
            desired_topics(pipeline).unwrap().into_iter().find(|t| t.role == role).unwrap().configs
        };
        let mut pipeline = pipeline();
        let changelog = configs_of(&pipeline, TopicRole::Changelog);
        assert_eq!(
            changelog,
            BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("segment.bytes".to_string(), "67108864".to_string()),
            ])
        );
        for role in [TopicRole::Stores, TopicRole::InventoryState, TopicRole::Sales] {
            assert!(!configs_of(&pipeline, role).contains_key("segment.bytes"), "{role}: Kafka's default");
        }
        pipeline.spec.processing.exactly_once = false;
        let at_least_once = configs_of(&pipeline, TopicRole::Changelog);
        assert_eq!(at_least_once.get("min.compaction.lag.ms").map(String::as_str), Some("600000"), "{at_least_once:?}");
        assert_eq!(at_least_once.len(), 3);
        pipeline.spec.topics.changelog.cleanup_policy = Some(crate::crd::retail_pipeline::CleanupPolicy::Delete);
        assert!(!configs_of(&pipeline, TopicRole::Changelog).contains_key("segment.bytes"), "only when compacted");
    }

    #[test]
    fn a_policys_kafka_sink_is_a_topic_shaped_like_the_alerts_topic_and_kept() {
        let pipeline = pipeline();
        let mut merch = low_stock_policy("merch", "shop", 3);
        merch.spec.sinks = serde_json::from_value(serde_json::json!([
            {"kafka": {"topic": "shop.merchandising-alerts"}},
            {"kafka": {"topic": "shop.alerts"}}
        ]))
        .unwrap();
        let mut other = low_stock_policy("other", "another-pipeline", 3);
        other.spec.sinks = serde_json::from_value(serde_json::json!([{"kafka": {"topic": "elsewhere"}}])).unwrap();
        let topics = desired_topics_with_sinks(&pipeline, &[merch, other]).unwrap();
        let alerts = topics.iter().find(|t| t.name == "shop.alerts").unwrap();
        let extra: Vec<&DesiredTopic> = topics.iter().skip(TopicRole::ALL.len()).collect();
        assert_eq!(
            extra,
            [&DesiredTopic {
                name: "shop.merchandising-alerts".into(),
                deletion_policy: DeletionPolicy::Retain,
                ..alerts.clone()
            }],
            "the pipeline's own alerts topic is not added twice; another pipeline's policy adds nothing"
        );
    }
}

//! Whether a region with a cluster of its own gets a replicator (pure): not when its
//! cluster is the pipeline's own (records would be copied onto themselves, doubled), nor
//! when another region of the namespace already copies the same topics from the same
//! cluster (each record would arrive twice). And which regional topics to create.

use std::collections::{BTreeMap, BTreeSet};

use crate::build::topics::DesiredTopic;
use crate::plan::topics::{ObservedTopic, TopicAction};

/// Another region of the namespace with a cluster of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherRegion {
    pub name: String,
    pub bootstrap_servers: String,
    /// The topics its replicator copies.
    pub topics: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationPlan {
    Replicate,
    /// No replicator: `reason` and `message` go into `ReplicationReady=False`.
    Refuse {
        reason: &'static str,
        message: String,
    },
}

/// The `host:port` addresses of a bootstrap list, lowercased, without blanks.
fn addresses(bootstrap_servers: &str) -> BTreeSet<String> {
    bootstrap_servers
        .split(',')
        .map(|a| a.trim().trim_start_matches("PLAINTEXT://").trim_start_matches("SSL://").to_ascii_lowercase())
        .filter(|a| !a.is_empty())
        .collect()
}

/// Two bootstrap lists name the same cluster when they share an address.
pub fn same_cluster(a: &str, b: &str) -> bool {
    !addresses(a).is_disjoint(&addresses(b))
}

/// The plan for region `name` with cluster `regional`, copying `topics` into the cluster
/// `pipeline`. Of regions sharing a cluster and topics, the first by name keeps copying.
pub fn plan_replication(
    name: &str,
    regional: &str,
    pipeline: &str,
    topics: &[String],
    others: &[OtherRegion],
) -> ReplicationPlan {
    if same_cluster(regional, pipeline) {
        return ReplicationPlan::Refuse {
            reason: "SameClusterAsPipeline",
            message: format!(
                "spec.kafka.bootstrapServers ({regional}) is the pipeline's own cluster ({pipeline}): its records \
                 are there already, copying them would double them; remove spec.kafka"
            ),
        };
    }
    let mut rivals: Vec<&OtherRegion> = others
        .iter()
        .filter(|o| o.name != name && same_cluster(&o.bootstrap_servers, regional))
        .filter(|o| o.topics.iter().any(|t| topics.contains(t)))
        .collect();
    rivals.sort_by(|a, b| a.name.cmp(&b.name));
    match rivals.first() {
        Some(first) if first.name.as_str() < name => {
            let shared: Vec<&str> = topics.iter().filter(|t| first.topics.contains(t)).map(String::as_str).collect();
            ReplicationPlan::Refuse {
                reason: "ClusterShared",
                message: format!(
                    "StoreRegion {} already copies {} from {regional}: a second replicator would copy every \
                     record twice; give each region its own cluster, or put both regions' stores in one StoreRegion",
                    first.name,
                    shared.join(", ")
                ),
            }
        }
        _ => ReplicationPlan::Replicate,
    }
}

/// The regional topics to create: those of `desired` (the pipeline's topics a region
/// produces) the regional cluster does not have. Existing ones are left as they are (the
/// regional cluster is the region's).
pub fn plan_regional_topics(desired: &[DesiredTopic], observed: &BTreeMap<String, ObservedTopic>) -> Vec<TopicAction> {
    desired
        .iter()
        .filter(|t| !observed.contains_key(&t.name))
        .map(|t| TopicAction::Create {
            name: t.name.clone(),
            partitions: t.partitions,
            replication_factor: t.replication_factor,
            configs: t.configs.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn other(name: &str, bootstrap: &str, copied: &[&str]) -> OtherRegion {
        OtherRegion { name: name.into(), bootstrap_servers: bootstrap.into(), topics: topics(copied) }
    }

    #[test]
    fn the_pipelines_own_cluster_is_refused() {
        let plan = plan_replication("eu", "Kafka:9092, b:9092", "kafka:9092", &topics(&["shop.sales"]), &[]);
        assert_eq!(
            plan,
            ReplicationPlan::Refuse {
                reason: "SameClusterAsPipeline",
                message: "spec.kafka.bootstrapServers (Kafka:9092, b:9092) is the pipeline's own cluster \
                          (kafka:9092): its records are there already, copying them would double them; remove \
                          spec.kafka"
                    .into()
            }
        );
        assert_eq!(
            plan_replication("eu", "eu:9092", "kafka:9092", &topics(&["shop.sales"]), &[]),
            ReplicationPlan::Replicate
        );
    }

    #[test]
    fn of_two_regions_sharing_a_cluster_and_topics_the_first_by_name_copies() {
        let copied = topics(&["shop.sales", "shop.inventory"]);
        let others =
            [other("eu-north", "eu:9092", &["shop.sales", "shop.inventory"]), other("us", "us:9092", &["shop.sales"])];
        assert_eq!(
            plan_replication("eu-west", "eu:9092", "kafka:9092", &copied, &others),
            ReplicationPlan::Refuse {
                reason: "ClusterShared",
                message: "StoreRegion eu-north already copies shop.sales, shop.inventory from eu:9092: a second \
                          replicator would copy every record twice; give each region its own cluster, or put both \
                          regions' stores in one StoreRegion"
                    .into()
            }
        );
        // eu-north itself keeps copying.
        let west = [other("eu-west", "eu:9092", &["shop.sales", "shop.inventory"])];
        assert_eq!(plan_replication("eu-north", "eu:9092", "kafka:9092", &copied, &west), ReplicationPlan::Replicate);
        // The same cluster, other topics (another pipeline's): no conflict.
        let elsewhere = [other("eu-north", "eu:9092", &["outlet.sales"])];
        assert_eq!(
            plan_replication("eu-west", "eu:9092", "kafka:9092", &copied, &elsewhere),
            ReplicationPlan::Replicate
        );
    }

    #[test]
    fn only_missing_regional_topics_are_created() {
        let desired = |name: &str| DesiredTopic {
            role: stockpulse_processor::config::TopicRole::Sales,
            name: name.into(),
            partitions: 6,
            replication_factor: 3,
            configs: BTreeMap::from([("retention.ms".to_string(), "604800000".to_string())]),
            deletion_policy: crate::crd::DeletionPolicy::Retain,
        };
        let observed =
            BTreeMap::from([("shop.sales".to_string(), ObservedTopic { partitions: 2, configs: BTreeMap::new() })]);
        assert_eq!(
            plan_regional_topics(&[desired("shop.sales"), desired("shop.inventory")], &observed),
            vec![TopicAction::Create {
                name: "shop.inventory".into(),
                partitions: 6,
                replication_factor: 3,
                configs: BTreeMap::from([("retention.ms".to_string(), "604800000".to_string())]),
            }]
        );
    }
}

//! `StoreRegion` (short name `sr`): the stores of one region, onboarded into a pipeline by
//! publishing them to the pipeline's compacted `stores` topic.

// clippy reads the repeated `type_` of kube's printcolumn(...) as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, DNS_LABEL_PATTERN, ID_PATTERN, KafkaConnection, PipelineRef};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "retail.stockpulse.io",
    version = "v1alpha1",
    kind = "StoreRegion",
    namespaced,
    shortname = "sr",
    category = "stockpulse",
    status = "StoreRegionStatus",
    doc = "The stores of one region, published to a pipeline's stores topic.",
    validation = Rule::new("self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("the name must be a DNS-1035 label of at most 52 characters: the region's replicator is named <name>-replicator and labelled with <name>"),
    printcolumn(name = "Pipeline", type_ = "string", json_path = ".spec.pipelineRef.name"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region"),
    printcolumn(name = "Stores", type_ = "integer", json_path = ".status.stores"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct StoreRegionSpec {
    pub pipeline_ref: PipelineRef,
    /// Region code, e.g. `eu-central`.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub region: String,
    /// IANA time zone of the region's stores, e.g. `Europe/Berlin`.
    #[schemars(length(min = 1, max = 64), regex(pattern = "^(UTC|[A-Z][A-Za-z_]+(/[A-Za-z0-9_+-]+){1,2})$"))]
    pub timezone: String,
    /// ISO 4217 currency code, e.g. `EUR`.
    #[schemars(regex(pattern = "^[A-Z]{3}$"))]
    pub currency: String,
    /// A regional Kafka cluster the stores produce to; the operator then replicates its
    /// sales and inventory topics to the pipeline's cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaConnection>,
    #[schemars(length(max = 5000))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["id".into()]))]
    pub stores: Vec<StoreSpec>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Physical,
    Online,
    Warehouse,
    Marketplace,
}

/// The CRD's channel (it carries a schema) is the processor's channel on the wire.
impl From<Channel> for stockpulse_processor::event::Channel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::Physical => Self::Physical,
            Channel::Online => Self::Online,
            Channel::Warehouse => Self::Warehouse,
            Channel::Marketplace => Self::Marketplace,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreSpec {
    /// The `store_id` of the store's events; unique across the pipeline.
    #[schemars(regex(pattern = ID_PATTERN))]
    pub id: String,
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    pub channel: Channel,
    /// Store format, e.g. `flagship`, `outlet`, `web`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub city: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    #[schemars(regex(pattern = "^[A-Z]{2}$"))]
    pub country: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StoreRegionStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Stores published.
    #[serde(default)]
    pub stores: i32,
    /// The topic the stores were published to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_topic: Option<String>,
    /// The store ids published there (a removed one gets a tombstone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub published_stores: Vec<String>,
    /// SHA-256 of the published records: unchanged records are not published again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_digest: Option<String>,
    /// The id of the Kafka cluster published to: on another cluster (a changed
    /// `bootstrapServers`) every store is published again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_cluster_id: Option<String>,
    /// The id of the topic published to: a topic deleted and created again under the same
    /// name gets every store again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_topic_id: Option<String>,
    /// Records behind on the replicated topics, with a regional cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_lag: Option<i64>,
    /// Records the replicator has copied, as committed with its checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicated_records: Option<i64>,
    /// Records the regional cluster deleted (retention) before they could be copied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_records_lost: Option<i64>,
    /// When the replicator last committed a checkpoint (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checkpoint_time: Option<String>,
}

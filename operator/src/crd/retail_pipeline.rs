//! `RetailPipeline` (short name `rp`): one stream-processing pipeline of a brand — its Kafka
//! cluster and topics, what it computes, and how its processor runs.

// clippy reads the repeated `type_` of kube's printcolumn(...) as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stockpulse_processor::config::DURATION_PATTERN;

use super::common::{Condition, DNS_LABEL_PATTERN, DeletionPolicy, KafkaConnection, TOPIC_NAME_PATTERN};

/// The desired state of a pipeline.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "retail.stockpulse.io",
    version = "v1alpha1",
    kind = "RetailPipeline",
    namespaced,
    shortname = "rp",
    category = "stockpulse",
    status = "RetailPipelineStatus",
    doc = "A stockpulse pipeline: Kafka topics, the processing it runs and the processor Deployment.",
    validation = Rule::new("self.metadata.name.size() <= 53 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("the name must be a DNS-1035 label of at most 53 characters: the processor's objects are named <name>-processor"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas.current"
    ),
    printcolumn(name = "Stores", type_ = "integer", json_path = ".status.stores"),
    printcolumn(name = "Regions", type_ = "integer", json_path = ".status.regions"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct RetailPipelineSpec {
    /// The pipeline's Kafka cluster.
    pub kafka: PipelineKafka,
    /// The topics by role; an absent one gets the defaults (`<pipeline>.<role>`).
    #[serde(default)]
    pub topics: TopicsSpec,
    /// What the processor computes.
    #[serde(default)]
    pub processing: ProcessingSpec,
    /// How the processor runs.
    #[serde(default)]
    pub processor: ProcessorSpec,
    /// Which StoreRegions (of those naming this pipeline in `pipelineRef`) feed it; absent
    /// means all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_selector: Option<LabelSelector>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineKafka {
    #[serde(flatten)]
    pub connection: KafkaConnection,
    /// Consumer group and transactional-id prefix; defaults to the pipeline name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249))]
    pub consumer_group: Option<String>,
}

/// Defaults for every topic, then one entry per role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicsSpec {
    /// Partitions of a topic that does not set its own.
    #[serde(default = "defaults::partitions")]
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: i32,
    /// Replication factor of a topic that does not set its own.
    #[serde(default = "defaults::replication_factor")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: i32,
    /// What happens to a topic that does not set its own when the pipeline is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    #[serde(default)]
    pub sales: TopicSpec,
    #[serde(default)]
    pub inventory: TopicSpec,
    #[serde(default)]
    pub aggregates: TopicSpec,
    #[serde(default)]
    pub inventory_state: TopicSpec,
    #[serde(default)]
    pub alerts: TopicSpec,
    #[serde(default)]
    pub dead_letter: TopicSpec,
    #[serde(default)]
    pub late: TopicSpec,
    #[serde(default)]
    pub stores: TopicSpec,
    #[serde(default)]
    pub catalog: TopicSpec,
    #[serde(default)]
    pub changelog: TopicSpec,
    /// Between the processor's tasks: their watermarks (one event-time clock for the pipeline)
    /// and the partial figures of windows grouped without `store`, merged by the task that owns
    /// the group; needs the sales topic's partitions.
    #[serde(default)]
    pub repartition: TopicSpec,
}

impl Default for TopicsSpec {
    fn default() -> Self {
        TopicsSpec {
            partitions: defaults::partitions(),
            replication_factor: defaults::replication_factor(),
            deletion_policy: DeletionPolicy::Retain,
            sales: TopicSpec::default(),
            inventory: TopicSpec::default(),
            aggregates: TopicSpec::default(),
            inventory_state: TopicSpec::default(),
            alerts: TopicSpec::default(),
            dead_letter: TopicSpec::default(),
            late: TopicSpec::default(),
            stores: TopicSpec::default(),
            catalog: TopicSpec::default(),
            changelog: TopicSpec::default(),
            repartition: TopicSpec::default(),
        }
    }
}

/// One topic; every field overrides the `topics` default.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// Topic name; default `<pipeline>.<role>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = TOPIC_NAME_PATTERN))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub partitions: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 32))]
    pub replication_factor: Option<i32>,
    /// `retention.ms` as a duration (`7d`); absent keeps the broker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub retention: Option<String>,
    /// Default: `compact` for aggregates, inventory-state, stores, catalog and changelog;
    /// `delete` for the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_policy: Option<CleanupPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CleanupPolicy {
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "compact")]
    Compact,
    #[serde(rename = "compact,delete")]
    CompactDelete,
}

impl CleanupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// A dimension aggregates can be grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Sku,
    Store,
    Region,
    Category,
    Channel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowType {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling,
    /// Windows of `size` starting every `slide` (hopping).
    Sliding,
}

/// A window of aggregation.
///
/// Durations with a day unit (`1d`) are checked by the operator rather than by the API
/// server, whose CEL `duration()` has no day unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'sliding' ? has(self.slide) : !has(self.slide)")
        .message("a sliding window needs a slide, a tumbling window has none"),
    validation = Rule::new("!has(self.slide) || self.size.contains('d') || self.slide.contains('d') || (duration(self.slide) <= duration(self.size) && duration(self.size).getMilliseconds() % duration(self.slide).getMilliseconds() == 0)")
        .message("slide must be at most size and divide it evenly")
)]
pub struct WindowSpec {
    /// Names the window in output records.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    #[serde(rename = "type")]
    pub type_: WindowType,
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub size: String,
    /// Sliding windows only: how often a window starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub slide: Option<String>,
    /// Overrides `processing.groupBy` for this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 5))]
    pub group_by: Option<Vec<Dimension>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessingSpec {
    #[serde(default = "defaults::windows")]
    #[schemars(length(min = 1, max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub windows: Vec<WindowSpec>,
    /// Default group-by dimensions of every window.
    #[serde(default = "defaults::group_by")]
    #[schemars(length(min = 1, max = 5))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub group_by: Vec<Dimension>,
    /// Bounded out-of-orderness: the watermark trails the highest event time by this much.
    #[serde(default = "defaults::max_out_of_orderness")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub max_out_of_orderness: String,
    /// How long after a window fired a late event still corrects it.
    #[serde(default = "defaults::allowed_lateness")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub allowed_lateness: String,
    /// A partition silent this long stops holding the watermark back.
    #[serde(default = "defaults::idle_timeout")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub idle_timeout: String,
    /// Events stamped further ahead of processing time are dead-lettered.
    #[serde(default = "defaults::max_future_skew")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub max_future_skew: String,
    #[serde(default)]
    pub dedupe: DedupeSpec,
    /// Kafka transactions from input to output.
    #[serde(default = "defaults::yes")]
    pub exactly_once: bool,
    #[serde(default)]
    pub enrichment: EnrichmentSpec,
}

impl Default for ProcessingSpec {
    fn default() -> Self {
        ProcessingSpec {
            windows: defaults::windows(),
            group_by: defaults::group_by(),
            max_out_of_orderness: defaults::max_out_of_orderness(),
            allowed_lateness: defaults::allowed_lateness(),
            idle_timeout: defaults::idle_timeout(),
            max_future_skew: defaults::max_future_skew(),
            dedupe: DedupeSpec::default(),
            exactly_once: true,
            enrichment: EnrichmentSpec::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DedupeSpec {
    /// How far behind its store's newest event an `event_id` is remembered; at least `allowedLateness`.
    #[serde(default = "defaults::dedupe_horizon")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub horizon: String,
    /// Hard cap on remembered ids.
    #[serde(default = "defaults::dedupe_max_entries")]
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub max_entries: i64,
}

impl Default for DedupeSpec {
    fn default() -> Self {
        DedupeSpec { horizon: defaults::dedupe_horizon(), max_entries: defaults::dedupe_max_entries() }
    }
}

/// Where product reference data comes from: the pipeline's compacted `catalog` topic, or a
/// ConfigMap key of NDJSON product records mounted into the processor.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EnrichmentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_config_map_ref: Option<ConfigMapKeyRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// The processor Deployment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.maxReplicas >= self.minReplicas")
    .message("maxReplicas must be greater than or equal to minReplicas"))]
pub struct ProcessorSpec {
    #[serde(default = "defaults::image")]
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,
    /// Requests and limits of the processor container; default 500m/1Gi requests, 2Gi limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default = "defaults::min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Never more than the partitions of the input topics, whatever is set here.
    #[serde(default = "defaults::max_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Port of `/metrics`, `/healthz`, `/readyz` and the read API.
    #[serde(default = "defaults::http_port")]
    #[schemars(range(min = 1024, max = 65535))]
    pub http_port: i32,
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,
    /// Planned peaks: while a schedule is active, replicas never fall below its floor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub schedules: Vec<ScheduleSpec>,
}

impl Default for ProcessorSpec {
    fn default() -> Self {
        ProcessorSpec {
            image: defaults::image(),
            image_pull_policy: None,
            resources: None,
            min_replicas: defaults::min_replicas(),
            max_replicas: defaults::max_replicas(),
            http_port: defaults::http_port(),
            autoscaling: AutoscalingSpec::default(),
            schedules: Vec::new(),
        }
    }
}

/// How the processor is scaled: to the input rate with headroom, plus draining the lag
/// within `targetDrainSeconds`, with a per-replica capacity learned from the consumer group
/// (docs/autoscaling.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// `false`: the operator leaves the Deployment's `replicas` to an HPA or KEDA (it stops
    /// applying the field, handing it over at its current value) and samples nothing.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Seconds in which the current lag should be drained, on top of keeping up with the input.
    #[serde(default = "defaults::target_drain_seconds")]
    #[schemars(range(min = 1, max = 86400))]
    pub target_drain_seconds: i32,
    /// Spare capacity over the input rate, in percent.
    #[serde(default = "defaults::headroom_percent")]
    #[schemars(range(min = 0, max = 500))]
    pub headroom_percent: i32,
    /// Records per second one replica is assumed to process until it is learned from the
    /// consumer group (processed rate per ready replica while they are saturated).
    #[serde(default = "defaults::capacity_per_replica")]
    #[schemars(range(min = 1))]
    pub capacity_per_replica: i64,
    /// How often the broker is sampled (lag, input and processed rates, ready replicas).
    #[serde(default = "defaults::sample_interval")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub sample_interval: String,
    /// A scale-up on the input rate goes to the smallest recommendation over this window
    /// (a lag growing over two samples scales up at once, whatever it is).
    #[serde(default = "defaults::scale_up_stabilization")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub scale_up_stabilization: String,
    /// A scale-down goes only to the largest recommendation over this window.
    #[serde(default = "defaults::scale_down_stabilization")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub scale_down_stabilization: String,
    /// At most this share of the replicas (percent, at least one replica) goes in one
    /// scale-down; scale-downs are at least a minute apart.
    #[serde(default = "defaults::scale_down_step_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub scale_down_step_percent: i32,
    /// Deprecated and ignored: the lag is now drained within `targetDrainSeconds` on top of
    /// the input rate, with the capacity per replica learned. Remove it; to keep roughly the
    /// old sizing, set `capacityPerReplica` to the records per second one replica processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_lag_per_replica: Option<i64>,
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        AutoscalingSpec {
            enabled: true,
            target_drain_seconds: defaults::target_drain_seconds(),
            headroom_percent: defaults::headroom_percent(),
            capacity_per_replica: defaults::capacity_per_replica(),
            sample_interval: defaults::sample_interval(),
            scale_up_stabilization: defaults::scale_up_stabilization(),
            scale_down_stabilization: defaults::scale_down_stabilization(),
            scale_down_step_percent: defaults::scale_down_step_percent(),
            target_lag_per_replica: None,
        }
    }
}

/// A named window of time (Black Friday) with a replica floor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.end > self.start").message("end must be after start"))]
pub struct ScheduleSpec {
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// RFC 3339 start time.
    #[schemars(extend("format" = "date-time"))]
    pub start: String,
    /// RFC 3339 end time.
    #[schemars(extend("format" = "date-time"))]
    pub end: String,
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
}

/// What the operator observed and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetailPipelineStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Every topic with its actual partition count.
    #[serde(default)]
    pub topics: Vec<TopicStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicasStatus>,
    /// Total consumer-group lag over the input topics, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_lag: Option<i64>,
    /// Stores of the StoreRegions feeding the pipeline.
    #[serde(default)]
    pub stores: i32,
    /// StoreRegions feeding the pipeline.
    #[serde(default)]
    pub regions: i32,
    /// AlertPolicies rendered into the processor's config.
    #[serde(default)]
    pub alert_policies: i32,
    /// What the autoscaler saw at its last sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingStatus>,
    /// SHA-256 of the rendered processor config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    pub role: String,
    pub name: String,
    /// Partitions the topic has on the broker (0 when it does not exist yet).
    pub partitions: i32,
    /// Partitions the spec asks for.
    pub desired_partitions: i32,
}

/// What the autoscaler saw at its last sample (for people and dashboards: its memory is the
/// operator's, rebuilt from the broker after a restart, never read back from here).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// RFC 3339 time of the sample.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampled_at: Option<String>,
    /// Records per second into the input topics (growth of their high watermarks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_rate: Option<i64>,
    /// Records per second the consumer group processed (growth of its committed offsets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub processed_rate: Option<i64>,
    /// Records per second per replica in use: learned, or `spec.processor.autoscaling.capacityPerReplica`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_per_replica: Option<i64>,
    /// Whether the capacity per replica was learned from the consumer group.
    #[serde(default)]
    pub capacity_learned: bool,
    /// Replicas the last sample asked for, before the stabilization windows and bounds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recommendation: Option<i32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicasStatus {
    /// Replicas the Deployment has.
    pub current: i32,
    /// Replicas the operator asks for.
    pub desired: i32,
    /// Replicas ready.
    pub ready: i32,
    /// Why `desired` is what it is: `MinReplicas`, `Schedule <name>`, `CappedAtMaxReplicas`,
    /// `CappedAtPartitions`, `LagGrowing`, `InputAboveCapacity`, `InputBelowCapacity`,
    /// `Holding`, or `AutoscalingDisabled`.
    pub reason: String,
    /// RFC 3339 time the operator last changed the replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_time: Option<String>,
}

pub(crate) mod defaults {
    use super::{Dimension, WindowSpec, WindowType};

    pub fn partitions() -> i32 {
        6
    }
    pub fn replication_factor() -> i32 {
        3
    }
    pub fn windows() -> Vec<WindowSpec> {
        vec![WindowSpec {
            name: "sales-5m".to_string(),
            type_: WindowType::Tumbling,
            size: "5m".to_string(),
            slide: None,
            group_by: None,
        }]
    }
    pub fn group_by() -> Vec<Dimension> {
        vec![Dimension::Store, Dimension::Sku]
    }
    pub fn max_out_of_orderness() -> String {
        "30s".to_string()
    }
    pub fn allowed_lateness() -> String {
        "10m".to_string()
    }
    pub fn idle_timeout() -> String {
        "1m".to_string()
    }
    pub fn max_future_skew() -> String {
        "15m".to_string()
    }
    pub fn dedupe_horizon() -> String {
        "1h".to_string()
    }
    pub fn dedupe_max_entries() -> i64 {
        2_000_000
    }
    pub fn yes() -> bool {
        true
    }
    pub fn image() -> String {
        "ghcr.io/stockpulse/stockpulse-processor:0.1.0".to_string()
    }
    pub fn min_replicas() -> i32 {
        1
    }
    pub fn max_replicas() -> i32 {
        6
    }
    pub fn http_port() -> i32 {
        8080
    }
    pub fn target_drain_seconds() -> i32 {
        60
    }
    pub fn headroom_percent() -> i32 {
        20
    }
    pub fn capacity_per_replica() -> i64 {
        1000
    }
    pub fn sample_interval() -> String {
        "15s".to_string()
    }
    pub fn scale_up_stabilization() -> String {
        "0s".to_string()
    }
    pub fn scale_down_stabilization() -> String {
        "5m".to_string()
    }
    pub fn scale_down_step_percent() -> i32 {
        50
    }
}

//! `AlertPolicy` (short name `ap`): alert rules rendered into a pipeline's processor config.

// clippy reads the repeated `type_` of kube's printcolumn(...) as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use stockpulse_processor::config::DURATION_PATTERN;

use super::common::{Condition, PipelineRef, SecretKeyRef, TOPIC_NAME_PATTERN};

#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "retail.stockpulse.io",
    version = "v1alpha1",
    kind = "AlertPolicy",
    namespaced,
    shortname = "ap",
    category = "stockpulse",
    status = "AlertPolicyStatus",
    doc = "Alert rules evaluated by a pipeline's processor.",
    validation = Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')")
        .message("the name must be a DNS-1123 label of at most 63 characters: it names the policy in alert records, metric labels and the processor's config"),
    printcolumn(name = "Pipeline", type_ = "string", json_path = ".spec.pipelineRef.name"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct AlertPolicySpec {
    pub pipeline_ref: PipelineRef,
    /// Which events the rules look at; empty lists mean all.
    #[serde(default)]
    pub scope: AlertScope,
    pub rules: AlertRules,
    /// After firing for a (store, SKU), a rule stays quiet this long.
    #[serde(default = "default_cooldown")]
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub cooldown: String,
    /// Where alerts go besides the pipeline's alerts topic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub sinks: Vec<AlertSink>,
}

fn default_cooldown() -> String {
    "1h".to_string()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertScope {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub stores: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub skus: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub categories: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.lowStock) || has(self.stuckInventory) || has(self.salesSpike) || has(self.amountOutlier)")
    .message("at least one rule is required: lowStock, stuckInventory, salesSpike or amountOutlier"))]
pub struct AlertRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_stock: Option<LowStockRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_inventory: Option<StuckInventoryRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_spike: Option<SalesSpikeRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_outlier: Option<AmountOutlierRule>,
}

/// Fires when `available` falls to `threshold` or below; it re-arms for a position only
/// once stock climbs above `threshold + hysteresis`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LowStockRule {
    #[schemars(range(min = 0, max = 1_000_000_000))]
    pub threshold: i64,
    /// Units above the threshold that stock must climb past before the rule can fire again
    /// for the position (default: half the threshold, at least 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1_000_000_000))]
    pub hysteresis: Option<i64>,
}

/// Fires when on-hand stock has not changed for `period` despite `minEvents` events.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StuckInventoryRule {
    #[schemars(length(max = 32), regex(pattern = DURATION_PATTERN))]
    pub period: String,
    #[schemars(range(min = 1, max = 1_000_000))]
    pub min_events: i32,
}

/// Fires when a window's units sold (or net revenue) exceed `factor` times the group's
/// baseline: its mean over the `baselineWindows` windows before.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.factor > 1.0").message("factor must be greater than 1"))]
pub struct SalesSpikeRule {
    /// A window of the pipeline, by name.
    #[schemars(length(min = 1, max = 63))]
    pub window: String,
    pub factor: f64,
    /// `units` (default) or `revenue` (net revenue).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure: Option<SpikeMeasure>,
    /// How many windows before the one evaluated make its baseline (default 12).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub baseline_windows: Option<i32>,
    /// Groups whose baseline is below this are not evaluated (default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub min_baseline: Option<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SpikeMeasure {
    Units,
    Revenue,
}

/// Fires on a sale line whose amount is more than `sigma` standard deviations from the mean
/// of the store's sale lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.sigma > 0.0").message("sigma must be greater than 0"))]
pub struct AmountOutlierRule {
    pub sigma: f64,
    /// Sale lines a store's distribution must hold before it judges one (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 1_000_000))]
    pub min_samples: Option<i32>,
}

/// Exactly one of `kafka` or `webhook`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.kafka) != has(self.webhook)").message("a sink is exactly one of kafka or webhook"))]
pub struct AlertSink {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaSink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookSink>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSink {
    #[schemars(regex(pattern = TOPIC_NAME_PATTERN))]
    pub topic: String,
}

/// A Slack-compatible webhook; its URL is a Secret key (it carries a token).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSink {
    pub url_secret_ref: SecretKeyRef,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AlertPolicyStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Alerts fired, as counted by the processor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts_fired: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fired_time: Option<String>,
}

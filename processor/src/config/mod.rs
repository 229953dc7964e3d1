//! `PipelineConfig`: the processor's own configuration, read from YAML or JSON.
//!
//! It mirrors the `RetailPipeline` custom resource (and the `AlertPolicy`s that select the
//! pipeline) without knowing anything of Kubernetes: the operator renders it into a
//! ConfigMap, a developer writes it by hand for `replay` or `run`. Field names are camelCase
//! like the custom resources. Unknown fields are refused so that a typo names itself.

mod duration;
mod validate;

use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use duration::{DURATION_PATTERN, Duration, ParseDurationError};
pub use validate::{ConfigProblem, ConfigProblems};

/// The example configuration of a sports-equipment brand; the embedded default of `demo`.
pub const EXAMPLE_PIPELINE_YAML: &str = include_str!("../../../examples/pipeline.yaml");

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineConfig {
    /// The pipeline's name; default topic names are `<name>.<role>`.
    pub name: String,
    #[serde(default)]
    pub kafka: KafkaConfig,
    #[serde(default)]
    pub topics: TopicNames,
    #[serde(default)]
    pub processing: ProcessingConfig,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertPolicyConfig>,
    #[serde(default)]
    pub http: HttpConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list.
    pub bootstrap_servers: String,
    /// Consumer group and transactional-id prefix; defaults to the pipeline name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslConfig>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig { bootstrap_servers: "localhost:9092".to_string(), consumer_group: None, tls: None, sasl: None }
    }
}

/// TLS material as files (the operator mounts the referenced Secret there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

// One type for the processor's config and the operator's CRDs, so the two cannot drift.
/// How the client authenticates, named as Kafka clients name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// The name Kafka clients take (`sasl.mechanism`), the same as in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials as files (the operator mounts the referenced Secret there).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SaslConfig {
    pub mechanism: SaslMechanism,
    pub username_file: String,
    pub password_file: String,
}

/// Every topic the pipeline uses, by role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TopicRole {
    Sales,
    Inventory,
    Aggregates,
    InventoryState,
    Alerts,
    DeadLetter,
    Late,
    Stores,
    Catalog,
    Changelog,
    Repartition,
}

impl TopicRole {
    pub const ALL: [TopicRole; 11] = [
        TopicRole::Sales,
        TopicRole::Inventory,
        TopicRole::Aggregates,
        TopicRole::InventoryState,
        TopicRole::Alerts,
        TopicRole::DeadLetter,
        TopicRole::Late,
        TopicRole::Stores,
        TopicRole::Catalog,
        TopicRole::Changelog,
        TopicRole::Repartition,
    ];

    /// The roles the engine writes outputs to.
    pub const OUTPUTS: [TopicRole; 5] =
        [TopicRole::Aggregates, TopicRole::InventoryState, TopicRole::Alerts, TopicRole::DeadLetter, TopicRole::Late];

    /// The suffix of the default topic name, `<pipeline>.<suffix>`.
    pub fn default_suffix(self) -> &'static str {
        match self {
            TopicRole::Sales => "sales",
            TopicRole::Inventory => "inventory",
            TopicRole::Aggregates => "aggregates",
            TopicRole::InventoryState => "inventory-state",
            TopicRole::Alerts => "alerts",
            TopicRole::DeadLetter => "dead-letter",
            TopicRole::Late => "late",
            TopicRole::Stores => "stores",
            TopicRole::Catalog => "catalog",
            TopicRole::Changelog => "changelog",
            TopicRole::Repartition => "repartition",
        }
    }

    /// Whether the topic holds keyed state or reference data and is compacted.
    pub fn is_compacted(self) -> bool {
        matches!(
            self,
            TopicRole::Aggregates
                | TopicRole::InventoryState
                | TopicRole::Stores
                | TopicRole::Catalog
                | TopicRole::Changelog
        )
    }
}

impl fmt::Display for TopicRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default_suffix())
    }
}

/// Topic names by role; an absent one is `<pipeline>.<role>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TopicNames {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregates: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inventory_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alerts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub late: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changelog: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repartition: Option<String>,
}

impl TopicNames {
    pub fn get(&self, role: TopicRole) -> Option<&str> {
        let name = match role {
            TopicRole::Sales => &self.sales,
            TopicRole::Inventory => &self.inventory,
            TopicRole::Aggregates => &self.aggregates,
            TopicRole::InventoryState => &self.inventory_state,
            TopicRole::Alerts => &self.alerts,
            TopicRole::DeadLetter => &self.dead_letter,
            TopicRole::Late => &self.late,
            TopicRole::Stores => &self.stores,
            TopicRole::Catalog => &self.catalog,
            TopicRole::Changelog => &self.changelog,
            TopicRole::Repartition => &self.repartition,
        };
        name.as_deref()
    }

    pub fn set(&mut self, role: TopicRole, name: String) {
        let slot = match role {
            TopicRole::Sales => &mut self.sales,
            TopicRole::Inventory => &mut self.inventory,
            TopicRole::Aggregates => &mut self.aggregates,
            TopicRole::InventoryState => &mut self.inventory_state,
            TopicRole::Alerts => &mut self.alerts,
            TopicRole::DeadLetter => &mut self.dead_letter,
            TopicRole::Late => &mut self.late,
            TopicRole::Stores => &mut self.stores,
            TopicRole::Catalog => &mut self.catalog,
            TopicRole::Changelog => &mut self.changelog,
            TopicRole::Repartition => &mut self.repartition,
        };
        *slot = Some(name);
    }
}

/// A dimension that aggregates can be grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Sku,
    Store,
    Region,
    Category,
    Channel,
}

impl Dimension {
    pub const ALL: [Dimension; 5] =
        [Dimension::Store, Dimension::Sku, Dimension::Region, Dimension::Category, Dimension::Channel];

    /// The field name of the dimension in output records.
    pub fn field_name(self) -> &'static str {
        match self {
            Dimension::Sku => "sku_id",
            Dimension::Store => "store_id",
            Dimension::Region => "region",
            Dimension::Category => "category",
            Dimension::Channel => "channel",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowKind {
    /// Fixed, non-overlapping windows of `size`.
    Tumbling,
    /// Overlapping windows of `size` starting every `slide` (also called hopping).
    Sliding,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowConfig {
    /// Names the window in output records; unique within a pipeline.
    pub name: String,
    #[serde(rename = "type")]
    pub kind: WindowKind,
    pub size: Duration,
    /// Sliding windows only: how often a window starts; must divide `size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<Duration>,
    /// Overrides `processing.groupBy` for this window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<Vec<Dimension>>,
}

impl WindowConfig {
    /// The step between window starts: the slide of a sliding window, the size of a tumbling one.
    pub fn step(&self) -> Duration {
        match self.kind {
            WindowKind::Tumbling => self.size,
            WindowKind::Sliding => self.slide.unwrap_or(self.size),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DedupeConfig {
    /// How far behind its store's newest event an `event_id` is remembered.
    #[serde(default = "defaults::dedupe_horizon")]
    pub horizon: Duration,
    /// Hard cap on remembered ids; past it the oldest time slice is forgotten early.
    #[serde(default = "defaults::dedupe_max_entries")]
    pub max_entries: u64,
}

impl Default for DedupeConfig {
    fn default() -> Self {
        DedupeConfig { horizon: defaults::dedupe_horizon(), max_entries: defaults::dedupe_max_entries() }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnrichmentConfig {
    /// Where product data comes from: the pipeline's compacted catalog topic (default) or a
    /// file of NDJSON product records read at start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_file: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessingConfig {
    #[serde(default = "defaults::windows")]
    pub windows: Vec<WindowConfig>,
    /// Default group-by dimensions of every window.
    #[serde(default = "defaults::group_by")]
    pub group_by: Vec<Dimension>,
    /// Bounded out-of-orderness: the watermark trails the highest event time by this much.
    #[serde(default = "defaults::max_out_of_orderness")]
    pub max_out_of_orderness: Duration,
    /// How long after a window fired a late event still corrects it.
    #[serde(default = "defaults::allowed_lateness")]
    pub allowed_lateness: Duration,
    /// A partition silent this long (processing time) stops holding the watermark back.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: Duration,
    /// Events stamped further than this ahead of processing time are dead-lettered.
    #[serde(default = "defaults::max_future_skew")]
    pub max_future_skew: Duration,
    #[serde(default)]
    pub dedupe: DedupeConfig,
    #[serde(default = "defaults::yes")]
    pub exactly_once: bool,
    #[serde(default)]
    pub enrichment: EnrichmentConfig,
}

impl Default for ProcessingConfig {
    fn default() -> Self {
        ProcessingConfig {
            windows: defaults::windows(),
            group_by: defaults::group_by(),
            max_out_of_orderness: defaults::max_out_of_orderness(),
            allowed_lateness: defaults::allowed_lateness(),
            idle_timeout: defaults::idle_timeout(),
            max_future_skew: defaults::max_future_skew(),
            dedupe: DedupeConfig::default(),
            exactly_once: true,
            enrichment: EnrichmentConfig::default(),
        }
    }
}

impl ProcessingConfig {
    /// The group-by dimensions of a window: its own, else the pipeline's.
    pub fn group_by_of<'a>(&'a self, window: &'a WindowConfig) -> &'a [Dimension] {
        window.group_by.as_deref().unwrap_or(&self.group_by)
    }
}

/// Which events an alert policy looks at; empty lists mean "all".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertScope {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stores: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skus: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LowStockRule {
    /// Fires when `available` falls to this value or below.
    pub threshold: i64,
    /// After firing, the rule re-arms for a position only once its available stock climbs
    /// above `threshold + hysteresis`, so stock that hovers at the threshold fires once.
    /// Default: half the threshold, at least 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hysteresis: Option<i64>,
}

impl LowStockRule {
    pub fn hysteresis(&self) -> i64 {
        self.hysteresis.unwrap_or((self.threshold / 2).max(2))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StuckInventoryRule {
    /// No change of on-hand stock for this long...
    pub period: Duration,
    /// ...despite at least this many events for the (store, sku).
    pub min_events: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SalesSpikeRule {
    /// The window (by name) whose figures are compared with their baseline.
    pub window: String,
    /// Fires when a window's measure exceeds `factor` x the baseline of its group.
    pub factor: f64,
    /// What is compared: units sold, or net revenue.
    #[serde(default)]
    pub measure: SpikeMeasure,
    /// The baseline: the mean of the group's measure over this many windows before the
    /// one evaluated (a window with no sales counts as 0).
    #[serde(default = "defaults::baseline_windows")]
    pub baseline_windows: u32,
    /// A group whose baseline is below this (in the measure's unit) is not evaluated: a
    /// rise from 1 to 4 units is no spike.
    #[serde(default = "defaults::min_baseline")]
    pub min_baseline: f64,
}

impl SalesSpikeRule {
    pub const DEFAULT_BASELINE_WINDOWS: u32 = 12;
    pub const DEFAULT_MIN_BASELINE: f64 = 5.0;
}

impl AmountOutlierRule {
    pub const DEFAULT_MIN_SAMPLES: u32 = 30;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SpikeMeasure {
    #[default]
    Units,
    Revenue,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AmountOutlierRule {
    /// Fires on a sale line whose amount (unit price x units) is more than `sigma`
    /// standard deviations from the mean of the store's sale lines so far.
    pub sigma: f64,
    /// The store's distribution must hold this many sale lines before it judges one.
    #[serde(default = "defaults::min_samples")]
    pub min_samples: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum AlertSinkConfig {
    /// A Kafka topic of the pipeline's cluster (the pipeline's alerts topic is always written).
    #[serde(rename_all = "camelCase")]
    Kafka { topic: String },
    /// A Slack-compatible webhook; the URL is read from a mounted Secret file.
    #[serde(rename_all = "camelCase")]
    Webhook { url_file: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertPolicyConfig {
    pub name: String,
    #[serde(default)]
    pub scope: AlertScope,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_stock: Option<LowStockRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stuck_inventory: Option<StuckInventoryRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sales_spike: Option<SalesSpikeRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_outlier: Option<AmountOutlierRule>,
    /// After firing for a (store, sku), the rule stays quiet this long (event time).
    #[serde(default = "defaults::cooldown")]
    pub cooldown: Duration,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sinks: Vec<AlertSinkConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig {
    /// Port of `/metrics`, `/healthz`, `/readyz` and the read API.
    #[serde(default = "defaults::http_port")]
    pub port: u16,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { port: defaults::http_port() }
    }
}

mod defaults {
    use super::{Dimension, Duration, WindowConfig, WindowKind};

    pub fn windows() -> Vec<WindowConfig> {
        vec![WindowConfig {
            name: "sales-5m".to_string(),
            kind: WindowKind::Tumbling,
            size: Duration::from_mins(5),
            slide: None,
            group_by: None,
        }]
    }
    pub fn group_by() -> Vec<Dimension> {
        vec![Dimension::Store, Dimension::Sku]
    }
    pub fn max_out_of_orderness() -> Duration {
        Duration::from_secs(30)
    }
    pub fn allowed_lateness() -> Duration {
        Duration::from_mins(10)
    }
    pub fn idle_timeout() -> Duration {
        Duration::from_mins(1)
    }
    pub fn max_future_skew() -> Duration {
        Duration::from_mins(15)
    }
    pub fn dedupe_horizon() -> Duration {
        Duration::from_hours(1)
    }
    pub fn dedupe_max_entries() -> u64 {
        2_000_000
    }
    pub fn cooldown() -> Duration {
        Duration::from_hours(1)
    }
    pub fn baseline_windows() -> u32 {
        super::SalesSpikeRule::DEFAULT_BASELINE_WINDOWS
    }
    pub fn min_baseline() -> f64 {
        super::SalesSpikeRule::DEFAULT_MIN_BASELINE
    }
    pub fn min_samples() -> u32 {
        super::AmountOutlierRule::DEFAULT_MIN_SAMPLES
    }
    pub fn http_port() -> u16 {
        8080
    }
    pub fn yes() -> bool {
        true
    }
}

/// Why a config could not be used; every variant names the file or field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path} is not a valid pipeline config: {message}")]
    Parse { path: String, message: String },
    #[error("config file {path} is invalid:\n{problems}")]
    Invalid { path: String, problems: ConfigProblems },
}

impl PipelineConfig {
    /// Reads, parses (YAML, of which JSON is a subset) and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: shown.clone(), source })?;
        Self::from_text(&text, &shown)
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn from_text(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: PipelineConfig = serde_yaml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: origin.to_string(), message: e.to_string() })?;
        config.validate().map_err(|problems| ConfigError::Invalid { path: origin.to_string(), problems })?;
        Ok(config)
    }

    /// The embedded example config (a sports-equipment brand, two regions).
    pub fn example() -> Self {
        // The example is part of the binary and covered by a test, so it always parses.
        Self::from_text(EXAMPLE_PIPELINE_YAML, "examples/pipeline.yaml")
            .unwrap_or_else(|e| panic!("embedded example config is broken: {e}"))
    }

    /// The topic name of a role: configured, else `<pipeline>.<role>`.
    pub fn topic(&self, role: TopicRole) -> String {
        match self.topics.get(role) {
            Some(name) => name.to_string(),
            None => format!("{}.{}", self.name, role.default_suffix()),
        }
    }

    /// The consumer group (and transactional-id prefix): configured, else the pipeline name.
    pub fn consumer_group(&self) -> &str {
        self.kafka.consumer_group.as_deref().unwrap_or(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_mechanisms_are_named_as_in_the_config() {
        for mechanism in [SaslMechanism::Plain, SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
            assert_eq!(serde_json::to_value(mechanism).unwrap(), mechanism.as_str());
        }
        assert_eq!(SaslMechanism::ScramSha512.as_str(), "SCRAM-SHA-512");
    }

    #[test]
    fn example_config_parses_and_validates() {
        let config = PipelineConfig::example();
        assert_eq!(config.name, "acme-sports");
        assert!(config.processing.windows.len() >= 2);
        assert_eq!(config.topic(TopicRole::DeadLetter), "acme-sports.dead-letter");
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let config = PipelineConfig::from_text("name: p1\n", "inline").unwrap();
        assert_eq!(config.processing, ProcessingConfig::default());
        assert_eq!(config.topic(TopicRole::InventoryState), "p1.inventory-state");
        assert_eq!(config.consumer_group(), "p1");
        assert_eq!(config.http.port, 8080);
    }

    #[test]
    fn json_round_trips() {
        let config = PipelineConfig::example();
        let json = serde_json::to_string(&config).unwrap();
        let back = PipelineConfig::from_text(&json, "json").unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn unknown_field_is_named() {
        let err = PipelineConfig::from_text("name: p1\nprocesing: {}\n", "p.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("p.yaml") && text.contains("processing"), "{text}");
        assert!(text.contains("unknown field `procesing`"), "{text}");
    }

    #[test]
    fn bad_duration_is_named() {
        let err =
            PipelineConfig::from_text("name: p1\nprocessing:\n  allowedLateness: 10 minutes\n", "p.yaml").unwrap_err();
        assert!(err.to_string().contains("invalid duration \"10 minutes\""), "{err}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = PipelineConfig::load(Path::new("/nonexistent/pipeline.yaml")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/pipeline.yaml"), "{err}");
    }
}

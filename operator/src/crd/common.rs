//! Types shared by the three custom resources: references, Kafka connection settings,
//! the deletion policy and the name patterns the schemas enforce.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every stockpulse custom resource.
pub const GROUP: &str = "retail.stockpulse.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

/// A Kafka topic name: 1 to 249 of `a-z A-Z 0-9 . _ -`.
pub const TOPIC_NAME_PATTERN: &str = "^[a-zA-Z0-9._-]{1,249}$";
/// A DNS-1123 label (names of regions and of Kubernetes objects).
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A store, SKU or category id: letters, digits and `. _ -`, starting with a letter or digit.
pub const ID_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$";

/// Names another custom resource of the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRef {
    /// Name of a RetailPipeline in the same namespace.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
}

/// A key of a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// How to reach a Kafka cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaConnection {
    /// Comma-separated `host:port` list.
    #[schemars(length(min = 1, max = 2048), regex(pattern = "^[^,\\s]+:[0-9]{1,5}(,[^,\\s]+:[0-9]{1,5})*$"))]
    pub bootstrap_servers: String,
    /// TLS to the brokers; the CA (and client certificate for mTLS) come from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<KafkaTls>,
    /// SASL authentication; the credentials come from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<KafkaSasl>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaTls {
    /// Secret holding `ca.crt`, and `tls.crt` plus `tls.key` for mutual TLS.
    pub secret_ref: SecretRef,
    /// Present a client certificate (`tls.crt`, `tls.key` of the Secret).
    #[serde(default)]
    pub client_auth: bool,
}

/// The processor's own type: the CRD field and the rendered config cannot drift apart.
pub use stockpulse_processor::config::SaslMechanism;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    /// Secret holding the keys `username` and `password`.
    pub secret_ref: SecretRef,
}

/// What happens to a Kafka topic when its RetailPipeline is deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Keep the topic and its data (the default).
    #[default]
    Retain,
    /// Delete the topic with the pipeline.
    Delete,
}

/// A condition of a custom resource's status, in the Kubernetes convention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `TopicsReady`, `ProcessorReady`, `ReplicationReady`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason a program can act on.
    pub reason: String,
    /// What a person should know, and what to do.
    pub message: String,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// Extra labels and annotations for what the operator creates.
pub type StringMap = BTreeMap<String, String>;

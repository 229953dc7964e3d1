//! The ConfigMap holding the rendered `PipelineConfig`, and its hash.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use sha2::{Digest, Sha256};
use stockpulse_processor::config::PipelineConfig;

use super::labels::{config_map_name, object_meta};
use super::pipeline_config::CONFIG_FILE;
use crate::crd::RetailPipeline;

/// The config as the processor reads it.
pub fn config_text(config: &PipelineConfig) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(config)
}

/// Hex SHA-256 of a text.
pub fn sha256_hex(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn config_map(pipeline: &RetailPipeline, config_text: &str) -> ConfigMap {
    ConfigMap {
        metadata: object_meta(pipeline, config_map_name(pipeline)),
        data: Some(BTreeMap::from([(CONFIG_FILE.to_string(), config_text.to_string())])),
        ..ConfigMap::default()
    }
}

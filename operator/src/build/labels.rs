//! Names, labels and owner references of what the operator creates for a pipeline.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::crd::RetailPipeline;

/// The field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "stockpulse-operator";
/// The annotation on the pod template that carries the config hash.
pub const CONFIG_HASH_ANNOTATION: &str = "retail.stockpulse.io/config-hash";
/// The label naming the pipeline an object belongs to.
pub const PIPELINE_LABEL: &str = "retail.stockpulse.io/pipeline";

/// Name of the processor's Deployment, Service, PDB and ServiceAccount.
pub fn processor_name(pipeline: &RetailPipeline) -> String {
    format!("{}-processor", pipeline.name_any())
}

/// Name of the ConfigMap holding the rendered config.
pub fn config_map_name(pipeline: &RetailPipeline) -> String {
    format!("{}-config", pipeline.name_any())
}

/// Labels that select the processor pods (stable: changing them would orphan pods).
pub fn selector_labels(pipeline: &RetailPipeline) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "stockpulse-processor".to_string()),
        ("app.kubernetes.io/instance".to_string(), pipeline.name_any()),
    ])
}

/// Every label of an object of the pipeline.
pub fn labels(pipeline: &RetailPipeline) -> BTreeMap<String, String> {
    let mut labels = selector_labels(pipeline);
    labels.insert("app.kubernetes.io/component".to_string(), "processor".to_string());
    labels.insert("app.kubernetes.io/part-of".to_string(), "stockpulse".to_string());
    labels.insert("app.kubernetes.io/managed-by".to_string(), FIELD_MANAGER.to_string());
    labels.insert(PIPELINE_LABEL.to_string(), pipeline.name_any());
    labels
}

/// The controller owner reference to the pipeline (garbage collection on delete).
pub fn owner_reference(pipeline: &RetailPipeline) -> OwnerReference {
    OwnerReference {
        api_version: RetailPipeline::api_version(&()).to_string(),
        kind: RetailPipeline::kind(&()).to_string(),
        name: pipeline.name_any(),
        uid: pipeline.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Metadata of an object owned by the pipeline.
pub fn object_meta(pipeline: &RetailPipeline, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: pipeline.namespace(),
        labels: Some(labels(pipeline)),
        owner_references: Some(vec![owner_reference(pipeline)]),
        ..ObjectMeta::default()
    }
}

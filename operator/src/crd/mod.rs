//! The custom resources, one file per kind, and what they share.

pub mod alert_policy;
pub mod common;
pub mod retail_pipeline;
pub mod store_region;

pub use alert_policy::{AlertPolicy, AlertPolicySpec, AlertPolicyStatus};
pub use common::{Condition, DeletionPolicy, GROUP, VERSION};
pub use retail_pipeline::{RetailPipeline, RetailPipelineSpec, RetailPipelineStatus};
pub use store_region::{StoreRegion, StoreRegionSpec, StoreRegionStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD, with the file name it is written to.
pub fn all() -> Vec<(&'static str, CustomResourceDefinition)> {
    vec![
        ("retailpipelines.yaml", RetailPipeline::crd()),
        ("storeregions.yaml", StoreRegion::crd()),
        ("alertpolicies.yaml", AlertPolicy::crd()),
    ]
}

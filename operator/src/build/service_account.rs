//! The processor's ServiceAccount: it needs no Kubernetes API access.

use k8s_openapi::api::core::v1::ServiceAccount;

use super::labels::{object_meta, processor_name};
use crate::crd::RetailPipeline;

pub fn service_account(pipeline: &RetailPipeline) -> ServiceAccount {
    ServiceAccount {
        metadata: object_meta(pipeline, processor_name(pipeline)),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

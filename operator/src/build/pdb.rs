//! The processor's PodDisruptionBudget: a drain takes one pod at a time.

use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{object_meta, processor_name, selector_labels};
use crate::crd::RetailPipeline;

pub fn pod_disruption_budget(pipeline: &RetailPipeline) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: object_meta(pipeline, processor_name(pipeline)),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(selector_labels(pipeline)), ..LabelSelector::default() }),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    }
}

//! The whole plan of a RetailPipeline: a pure function of its spec, the StoreRegions and
//! AlertPolicies of its namespace, the topics observed on the broker, and the time.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::core::{Selector, SelectorExt};
use stockpulse_processor::config::TopicRole;

use super::replicas::{ReplicaDecision, plan_replicas};
use super::topics::{ObservedTopic, TopicPlan, plan_topics};
use crate::build::config_map::{config_map, config_text, sha256_hex};
use crate::build::deployment::deployment;
use crate::build::pdb::pod_disruption_budget;
use crate::build::pipeline_config::{RenderedConfig, render};
use crate::build::service::service;
use crate::build::service_account::service_account;
use crate::build::topics::{DesiredTopic, desired_topics};
use crate::build::{SpecProblem, SpecProblems};
use crate::crd::{AlertPolicy, RetailPipeline, StoreRegion};

/// What the plan reads.
pub struct PipelineInput<'a> {
    pub pipeline: &'a RetailPipeline,
    pub regions: &'a [StoreRegion],
    pub policies: &'a [AlertPolicy],
    pub observed_topics: &'a BTreeMap<String, ObservedTopic>,
    pub now: DateTime<Utc>,
}

/// The Kubernetes objects of a pipeline, in the order they are applied (the Deployment
/// last, so pods start with their config, account and service in place).
#[derive(Clone, Debug, PartialEq)]
pub struct DesiredObjects {
    pub service_account: ServiceAccount,
    pub config_map: ConfigMap,
    pub service: Service,
    pub pod_disruption_budget: PodDisruptionBudget,
    pub deployment: Deployment,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PipelinePlan {
    pub topics: Vec<DesiredTopic>,
    pub topic_plan: TopicPlan,
    pub config: RenderedConfig,
    pub config_hash: String,
    pub replicas: ReplicaDecision,
    pub objects: DesiredObjects,
    /// Names of the StoreRegions feeding the pipeline, sorted.
    pub regions: Vec<String>,
    /// Stores of those regions.
    pub stores: i32,
}

/// Whether a StoreRegion feeds the pipeline: it names the pipeline, and the pipeline's
/// `regionSelector` (if any) matches its labels.
pub fn selects(pipeline: &RetailPipeline, region: &StoreRegion) -> Result<bool, SpecProblems> {
    if region.spec.pipeline_ref.name != pipeline.name_any()
        || region.metadata.deletion_timestamp.is_some()
    {
        return Ok(false);
    }
    match &pipeline.spec.region_selector {
        None => Ok(true),
        Some(selector) => {
            let selector = Selector::try_from(selector.clone())
                .map_err(|e| SpecProblems::one("spec.regionSelector", e.to_string()))?;
            Ok(selector.matches(region.labels()))
        }
    }
}

pub fn plan_pipeline(input: &PipelineInput<'_>) -> Result<PipelinePlan, SpecProblems> {
    let pipeline = input.pipeline;
    let mut problems: Vec<SpecProblem> = Vec::new();
    let topics = desired_topics(pipeline)
        .map_err(|p| problems.extend(p.0))
        .ok();
    let config = render(pipeline, input.policies)
        .map_err(|p| problems.extend(p.0))
        .ok();
    let mut regions = Vec::new();
    let mut stores = 0;
    for region in input.regions {
        match selects(pipeline, region) {
            Ok(true) => {
                regions.push(region.name_any());
                stores += i32::try_from(region.spec.stores.len()).unwrap_or(i32::MAX);
            }
            Ok(false) => {}
            Err(p) => {
                problems.extend(p.0);
                break;
            }
        }
    }
    regions.sort();
    let input_partitions = topics
        .as_ref()
        .map(|t| {
            t.iter()
                .filter(|t| matches!(t.role, TopicRole::Sales | TopicRole::Inventory))
                .map(|t| t.partitions)
                .max()
                .unwrap_or(1)
        })
        .unwrap_or(1);
    let replicas = plan_replicas(&pipeline.spec.processor, input_partitions, input.now)
        .map_err(|p| problems.extend(p.0))
        .ok();
    let (Some(topics), Some(config), Some(replicas)) = (topics, config, replicas) else {
        return Err(SpecProblems(problems));
    };
    if !problems.is_empty() {
        return Err(SpecProblems(problems));
    }
    let text = config_text(&config.config)
        .map_err(|e| SpecProblems::one("spec", format!("config does not serialize: {e}")))?;
    let config_hash = sha256_hex(&text);
    let topic_plan = plan_topics(&topics, input.observed_topics);
    let objects = DesiredObjects {
        service_account: service_account(pipeline),
        config_map: config_map(pipeline, &text),
        service: service(pipeline),
        pod_disruption_budget: pod_disruption_budget(pipeline),
        deployment: deployment(pipeline, replicas.desired, &config_hash, &config.mounts),
    };
    Ok(PipelinePlan {
        topics,
        topic_plan,
        config,
        config_hash,
        replicas,
        objects,
        regions,
        stores,
    })
}

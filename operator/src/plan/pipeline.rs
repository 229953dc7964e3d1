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

use super::replicas::{ReplicaDecision, ReplicaInput, plan_replicas};
use super::topics::{ObservedTopic, TopicPlan, plan_topics};
use crate::build::config_map::{config_map, config_text, sha256_hex};
use crate::build::deployment::deployment;
use crate::build::pdb::pod_disruption_budget;
use crate::build::pipeline_config::{RenderedConfig, render};
use crate::build::service::service;
use crate::build::service_account::service_account;
use crate::build::topics::{DesiredTopic, desired_topics_with_sinks};
use crate::build::{SpecProblem, SpecProblems};
use crate::crd::{AlertPolicy, RetailPipeline, StoreRegion};
use crate::settings::OperatorSettings;

/// What the plan reads.
pub struct PipelineInput<'a> {
    pub pipeline: &'a RetailPipeline,
    pub regions: &'a [StoreRegion],
    pub policies: &'a [AlertPolicy],
    pub observed_topics: &'a BTreeMap<String, ObservedTopic>,
    /// The Deployment's `spec.replicas` as observed, when known.
    pub current_replicas: Option<i32>,
    /// The autoscaler's latest decision (desired, reason), when it has sampled.
    pub autoscaled: Option<(i32, String)>,
    pub now: DateTime<Utc>,
    /// The operator's own configuration.
    pub settings: &'a OperatorSettings,
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
    if region.spec.pipeline_ref.name != pipeline.name_any() || region.metadata.deletion_timestamp.is_some() {
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
    if let Some(refusal) = input.settings.allowed_images.refusal(&pipeline.spec.processor.image) {
        problems.push(SpecProblem { field: "spec.processor.image".to_string(), message: refusal });
    }
    let topics = desired_topics_with_sinks(pipeline, input.policies).map_err(|p| problems.extend(p.0)).ok();
    let config = render(pipeline, input.policies).map_err(|p| problems.extend(p.0)).ok();
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
    let replica_input =
        ReplicaInput { input_partitions, current: input.current_replicas, autoscaled: input.autoscaled.clone() };
    let replicas =
        plan_replicas(&pipeline.spec.processor, &replica_input, input.now).map_err(|p| problems.extend(p.0)).ok();
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
        deployment: deployment(
            pipeline,
            replicas.managed.then_some(replicas.desired),
            &config_hash,
            &config.mounts,
            &input.settings.pods,
        ),
    };
    Ok(PipelinePlan { topics, topic_plan, config, config_hash, replicas, objects, regions, stores })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::labels::CONFIG_HASH_ANNOTATION;
    use crate::fixtures::{low_stock_policy, now, pipeline, region};

    fn plan(p: &RetailPipeline, regions: &[StoreRegion], policies: &[AlertPolicy]) -> PipelinePlan {
        let topics = BTreeMap::new();
        plan_pipeline(&PipelineInput {
            pipeline: p,
            regions,
            policies,
            observed_topics: &topics,
            current_replicas: None,
            autoscaled: None,
            now: now(),
            settings: &OperatorSettings::default(),
        })
        .unwrap()
    }

    #[test]
    fn regions_naming_the_pipeline_are_counted() {
        let regions = vec![
            region("eu-central", "shop", &["a", "b", "c"]),
            region("us-east", "shop", &["d", "e"]),
            region("elsewhere", "other", &["f"]),
        ];
        let plan = plan(&pipeline(), &regions, &[]);
        assert_eq!(plan.regions, vec!["eu-central", "us-east"]);
        assert_eq!(plan.stores, 5);
    }

    #[test]
    fn the_region_selector_narrows_the_regions() {
        let mut p = pipeline();
        p.spec.region_selector = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some(BTreeMap::from([("tier".to_string(), "gold".to_string())])),
            ..Default::default()
        });
        let mut gold = region("eu-central", "shop", &["a"]);
        gold.metadata.labels = Some(BTreeMap::from([("tier".to_string(), "gold".to_string())]));
        let plain = region("us-east", "shop", &["b"]);
        let plan = plan(&p, &[gold, plain], &[]);
        assert_eq!(plan.regions, vec!["eu-central"]);
        assert_eq!(plan.stores, 1);
    }

    #[test]
    fn alert_policies_are_rendered_and_change_the_hash() {
        let without = plan(&pipeline(), &[], &[]);
        let policies = vec![low_stock_policy("low", "shop", 3), low_stock_policy("not-ours", "other", 1)];
        let with = plan(&pipeline(), &[], &policies);
        assert_eq!(with.config.alert_policies, vec!["low"]);
        assert_eq!(with.config.config.alerts.len(), 1);
        assert_eq!(with.config.config.alerts[0].low_stock.as_ref().map(|r| r.threshold), Some(3));
        assert_ne!(without.config_hash, with.config_hash);
        let annotations = with.objects.deployment.spec.template.metadata.as_ref().and_then(|m| m.annotations.clone());
        assert_eq!(annotations.and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned()), Some(with.config_hash.clone()));
    }

    #[test]
    fn an_invalid_alert_policy_is_left_out() {
        let mut bad = low_stock_policy("bad", "shop", 3);
        bad.spec.rules.sales_spike = Some(crate::crd::alert_policy::SalesSpikeRule {
            window: "missing".into(),
            factor: 2.0,
            measure: None,
            baseline_windows: None,
            min_baseline: None,
        });
        let plan = plan(&pipeline(), &[], &[bad, low_stock_policy("good", "shop", 1)]);
        assert_eq!(plan.config.alert_policies, vec!["good"]);
    }

    #[test]
    fn the_rendered_config_is_what_the_processor_loads() {
        let plan = plan(&pipeline(), &[], &[low_stock_policy("low", "shop", 3)]);
        let text = crate::build::config_map::config_text(&plan.config.config).unwrap();
        let loaded = stockpulse_processor::config::PipelineConfig::from_text(&text, "rendered").unwrap();
        assert_eq!(loaded, plan.config.config);
        assert_eq!(loaded.topic(stockpulse_processor::config::TopicRole::Sales), "shop.sales");
        assert_eq!(loaded.http.port, 8080);
    }

    #[test]
    fn the_deployment_probes_and_hardening() {
        let plan = plan(&pipeline(), &[], &[]);
        let d = serde_json::to_value(&plan.objects.deployment).unwrap();
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(c["ports"][0]["containerPort"], 8080);
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
        assert_eq!(c["securityContext"]["runAsNonRoot"], true);
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
        assert_eq!(c["args"], serde_json::json!(["run", "--config", "/etc/stockpulse/config/pipeline.yaml"]));
        assert_eq!(
            c["env"],
            serde_json::json!([{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]),
            "the read API's address for the other instances"
        );
        assert_eq!(c["resources"]["requests"]["cpu"], "500m");
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["metadata"]["ownerReferences"][0]["kind"], "RetailPipeline");
    }

    #[test]
    fn the_operators_pod_settings_go_on_processor_and_replicator_pods() {
        let pods = crate::settings::PodSettings {
            image_pull_secrets: vec!["regcred".into()],
            labels: BTreeMap::from([("team".into(), "retail".into()), ("app.kubernetes.io/name".into(), "x".into())]),
            annotations: BTreeMap::from([("owner".into(), "platform".into())]),
        };
        let settings = OperatorSettings { pods, ..OperatorSettings::default() };
        let topics = BTreeMap::new();
        let p = pipeline();
        let input = PipelineInput {
            pipeline: &p,
            regions: &[],
            policies: &[],
            observed_topics: &topics,
            current_replicas: None,
            autoscaled: None,
            now: now(),
            settings: &settings,
        };
        let deployment = plan_pipeline(&input).unwrap().objects.deployment;
        let pod = |d: &Deployment| serde_json::to_value(d).unwrap()["spec"]["template"]["spec"].clone();
        assert_eq!(pod(&deployment)["imagePullSecrets"], serde_json::json!([{"name": "regcred"}]));
        let meta = |d: &Deployment| serde_json::to_value(d).unwrap()["spec"]["template"]["metadata"].clone();
        assert_eq!(meta(&deployment)["labels"]["team"], "retail");
        assert_eq!(meta(&deployment)["labels"]["app.kubernetes.io/name"], "stockpulse-processor", "ours win");
        assert_eq!(meta(&deployment)["annotations"]["owner"], "platform");
        assert_eq!(
            pod(&deployment)["topologySpreadConstraints"][0]["topologyKey"],
            "topology.kubernetes.io/zone",
            "a pipeline's processors spread over zones"
        );
        assert_eq!(pod(&plan(&p, &[], &[]).objects.deployment).get("imagePullSecrets"), None, "none by default");

        let mut r = region("eu-central", "shop", &["a"]);
        let regional =
            crate::crd::common::KafkaConnection { bootstrap_servers: "kafka.eu:9092".into(), tls: None, sasl: None };
        r.spec.kafka = Some(regional.clone());
        let replicator = crate::build::replicator::replicator_deployment(&r, &regional, &p, "img", &settings.pods);
        assert_eq!(pod(&replicator)["imagePullSecrets"], serde_json::json!([{"name": "regcred"}]));
        assert_eq!(meta(&replicator)["labels"]["team"], "retail");
        assert_eq!(meta(&replicator)["annotations"]["owner"], "platform");
    }
}

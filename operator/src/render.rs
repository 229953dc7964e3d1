//! `stockpulse-operator render`: offline, with no cluster, what the operator would apply for
//! some custom resources — every Kubernetes object and every Kafka topic — through the same
//! planner the controllers use (observed state: nothing exists yet).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kube::ResourceExt;
use serde::Serialize;
use serde_json::Value;

use crate::build::pipeline_config::{alert_policy_config, base_config, policies_of};
use crate::build::replicator::{replicated_topics, replicator_deployment};
use crate::build::topics::DesiredTopic;
use crate::controller::DEFAULT_OPERATOR_IMAGE;
use crate::crd::{AlertPolicy, RetailPipeline, StoreRegion};
use crate::plan::pipeline::{PipelineInput, plan_pipeline, selects};
use crate::plan::replication::{OtherRegion, ReplicationPlan, plan_replication};
use crate::settings::OperatorSettings;

/// The custom resources read from the input files.
#[derive(Default, Debug)]
pub struct Resources {
    pub pipelines: Vec<RetailPipeline>,
    pub regions: Vec<StoreRegion>,
    pub policies: Vec<AlertPolicy>,
}

/// The topics of one pipeline, as `render` prints them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineTopics {
    pub pipeline: String,
    pub bootstrap_servers: String,
    pub topics: Vec<DesiredTopic>,
}

/// What `render` prints.
#[derive(Default, Debug)]
pub struct Rendered {
    /// Kubernetes objects in apply order.
    pub objects: Vec<Value>,
    pub topics: Vec<PipelineTopics>,
    /// Problems that do not stop the rendering (an invalid AlertPolicy, an orphan StoreRegion).
    pub warnings: Vec<String>,
}

/// Which part of the output to print.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Only {
    All,
    Objects,
    Topics,
}

/// Reads every document of a multi-document YAML text; `origin` names it in errors.
pub fn read_resources(text: &str, origin: &str, into: &mut Resources) -> anyhow::Result<()> {
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value: serde_yaml::Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| anyhow::anyhow!("{origin}, document {}: not YAML: {e}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let kind = value.get("kind").and_then(serde_yaml::Value::as_str).unwrap_or("").to_string();
        let at = || format!("{origin}, document {}: {kind}", i + 1);
        match kind.as_str() {
            "RetailPipeline" => into
                .pipelines
                .push(with_namespace(serde_yaml::from_value(value).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?)),
            "StoreRegion" => into
                .regions
                .push(with_namespace(serde_yaml::from_value(value).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?)),
            "AlertPolicy" => into
                .policies
                .push(with_namespace(serde_yaml::from_value(value).map_err(|e| anyhow::anyhow!("{}: {e}", at()))?)),
            // A kustomization next to the samples lists them; it is no resource of its own.
            "Kustomization" => {}
            other => anyhow::bail!(
                "{origin}, document {}: kind {other:?} is not a stockpulse resource (RetailPipeline, StoreRegion, AlertPolicy)",
                i + 1
            ),
        }
    }
    Ok(())
}

fn with_namespace<K: kube::Resource>(mut object: K) -> K {
    if object.meta().namespace.is_none() {
        object.meta_mut().namespace = Some("default".to_string());
    }
    object
}

fn same_namespace<K: kube::Resource>(a: &RetailPipeline, b: &K) -> bool {
    a.namespace() == b.namespace()
}

/// Plans every pipeline of `resources` at `now`, as if nothing existed yet.
pub fn render(resources: &Resources, now: DateTime<Utc>) -> anyhow::Result<Rendered> {
    let mut out = Rendered::default();
    let no_topics = BTreeMap::new();
    for pipeline in &resources.pipelines {
        let regions: Vec<StoreRegion> =
            resources.regions.iter().filter(|r| same_namespace(pipeline, *r)).cloned().collect();
        let policies: Vec<AlertPolicy> =
            resources.policies.iter().filter(|p| same_namespace(pipeline, *p)).cloned().collect();
        let input = PipelineInput {
            pipeline,
            regions: &regions,
            policies: &policies,
            observed_topics: &no_topics,
            current_replicas: None,
            autoscaled: None,
            now,
            // The preview renders what the spec asks for; the operator's settings are its own.
            settings: &OperatorSettings::default(),
        };
        let plan = plan_pipeline(&input)
            .map_err(|p| anyhow::anyhow!("RetailPipeline {}: invalid spec: {p}", pipeline.name_any()))?;
        if let Ok((base, _)) = base_config(pipeline) {
            let mut index = 0;
            for policy in policies_of(pipeline, &policies) {
                if let Err(p) = alert_policy_config(policy, &base, &mut index) {
                    out.warnings.push(format!("AlertPolicy {}: left out of the config: {p}", policy.name_any()));
                }
            }
        }
        let o = &plan.objects;
        out.objects.push(serde_json::to_value(&o.service_account)?);
        out.objects.push(serde_json::to_value(&o.config_map)?);
        out.objects.push(serde_json::to_value(&o.service)?);
        out.objects.push(serde_json::to_value(&o.pod_disruption_budget)?);
        out.objects.push(serde_json::to_value(&o.deployment)?);
        out.topics.push(PipelineTopics {
            pipeline: pipeline.name_any(),
            bootstrap_servers: pipeline.spec.kafka.connection.bootstrap_servers.clone(),
            topics: plan.topics,
        });
    }
    let image = std::env::var("STOCKPULSE_OPERATOR_IMAGE").unwrap_or_else(|_| DEFAULT_OPERATOR_IMAGE.to_string());
    for region in &resources.regions {
        let fed_by =
            resources.pipelines.iter().find(|p| same_namespace(p, region) && selects(p, region).unwrap_or(false));
        if let (Some(pipeline), Some(regional)) = (fed_by, &region.spec.kafka) {
            let others: Vec<OtherRegion> = resources
                .regions
                .iter()
                .filter(|o| o.namespace() == region.namespace())
                .filter_map(|o| {
                    let kafka = o.spec.kafka.as_ref()?;
                    let fed =
                        resources.pipelines.iter().find(|p| same_namespace(p, o) && selects(p, o).unwrap_or(false))?;
                    Some(OtherRegion {
                        name: o.name_any(),
                        bootstrap_servers: kafka.bootstrap_servers.clone(),
                        topics: replicated_topics(fed),
                    })
                })
                .collect();
            let plan = plan_replication(
                &region.name_any(),
                &regional.bootstrap_servers,
                &pipeline.spec.kafka.connection.bootstrap_servers,
                &replicated_topics(pipeline),
                &others,
            );
            match plan {
                ReplicationPlan::Replicate => out.objects.push(serde_json::to_value(replicator_deployment(
                    region,
                    regional,
                    pipeline,
                    &image,
                    &Default::default(),
                ))?),
                ReplicationPlan::Refuse { reason, message } => {
                    out.warnings.push(format!("StoreRegion {}: no replicator ({reason}): {message}", region.name_any()))
                }
            }
        }
        if fed_by.is_none() {
            out.warnings.push(format!(
                "StoreRegion {}: no RetailPipeline given selects it (pipelineRef {})",
                region.name_any(),
                region.spec.pipeline_ref.name
            ));
        }
    }
    Ok(out)
}

/// The YAML stream `render` prints.
pub fn to_yaml(rendered: &Rendered, only: Only) -> anyhow::Result<String> {
    let mut text = String::new();
    if only != Only::Topics {
        for object in &rendered.objects {
            text.push_str("---\n");
            text.push_str(&serde_yaml::to_string(object)?);
        }
    }
    if only != Only::Objects {
        for topics in &rendered.topics {
            text.push_str(&format!("---\n# Kafka topics of RetailPipeline {}\n", topics.pipeline));
            text.push_str(&serde_yaml::to_string(topics)?);
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{now, pipeline_yaml};

    #[test]
    fn an_unknown_kind_is_named() {
        let mut resources = Resources::default();
        let err = read_resources("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "x.yaml", &mut resources)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.yaml, document 1: kind \"ConfigMap\" is not a stockpulse resource (RetailPipeline, StoreRegion, AlertPolicy)"
        );
    }

    #[test]
    fn an_invalid_pipeline_stops_the_rendering_with_its_problems() {
        let mut resources = Resources::default();
        let yaml = pipeline_yaml().replace("    sales:\n", "    sales:\n      name: shop.inventory\n");
        read_resources(&yaml, "p.yaml", &mut resources).unwrap();
        let err = render(&resources, now()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "RetailPipeline shop: invalid spec: spec.topics.inventory.name: \"shop.inventory\" is already the sales topic"
        );
    }

    #[test]
    fn inputs_and_changelog_that_are_not_co_partitioned_are_refused() {
        let mut resources = Resources::default();
        let yaml = pipeline_yaml().replace(
            "    sales:\n",
            "    inventory:\n      partitions: 4\n    changelog:\n      partitions: 1\n    sales:\n",
        );
        read_resources(&yaml, "p.yaml", &mut resources).unwrap();
        let err = render(&resources, now()).unwrap_err().to_string();
        assert!(
            err.contains("spec.topics.inventory.partitions: must equal the sales topic's")
                && err.contains("spec.topics.changelog.partitions: must be at least the sales topic's"),
            "{err}"
        );
    }

    #[test]
    fn a_refused_region_gets_no_replicator_but_a_warning() {
        let mut resources = Resources::default();
        read_resources(pipeline_yaml(), "p.yaml", &mut resources).unwrap();
        let regional = |bootstrap: &str| crate::crd::common::KafkaConnection {
            bootstrap_servers: bootstrap.into(),
            tls: None,
            sasl: None,
        };
        let mut central = crate::fixtures::region("eu-central", "shop", &["a"]);
        central.spec.kafka = Some(regional("kafka.eu:9092"));
        let mut west = crate::fixtures::region("eu-west", "shop", &["b"]);
        west.spec.kafka = Some(regional("kafka.eu:9092"));
        let mut local = crate::fixtures::region("local", "shop", &["c"]);
        local.spec.kafka = Some(regional("kafka:9092"));
        resources.regions.extend([central, west, local]);
        let rendered = render(&resources, now()).unwrap();
        let replicators: Vec<&str> = rendered
            .objects
            .iter()
            .filter(|o| o["kind"] == "Deployment")
            .filter_map(|o| o["metadata"]["name"].as_str())
            .filter(|n| n.ends_with("-replicator"))
            .collect();
        assert_eq!(replicators, ["eu-central-replicator"]);
        let refused: Vec<&String> = rendered.warnings.iter().filter(|w| w.contains("no replicator")).collect();
        assert_eq!(refused.len(), 2, "{:?}", rendered.warnings);
        assert!(refused[0].starts_with("StoreRegion eu-west: no replicator (ClusterShared): "), "{}", refused[0]);
        assert!(refused[1].starts_with("StoreRegion local: no replicator (SameClusterAsPipeline): "), "{}", refused[1]);
    }

    #[test]
    fn orphan_regions_and_invalid_policies_are_warnings() {
        let mut resources = Resources::default();
        read_resources(pipeline_yaml(), "p.yaml", &mut resources).unwrap();
        resources.regions.push(crate::fixtures::region("lost", "nowhere", &["x"]));
        let mut bad = crate::fixtures::low_stock_policy("bad", "shop", 1);
        bad.spec.cooldown = "soon".into();
        resources.policies.push(bad);
        let rendered = render(&resources, now()).unwrap();
        assert_eq!(
            rendered.warnings,
            vec![
                "AlertPolicy bad: left out of the config: spec.cooldown: invalid duration \"soon\": each part must start with a number (expected e.g. 500ms, 30s, 5m, 1h30m, 7d)",
                "StoreRegion lost: no RetailPipeline given selects it (pipelineRef nowhere)",
            ]
        );
        assert_eq!(rendered.objects.len(), 5);
        let mut regional = crate::fixtures::region("eu-central", "shop", &["a"]);
        regional.spec.kafka =
            Some(crate::crd::common::KafkaConnection { bootstrap_servers: "eu:9092".into(), tls: None, sasl: None });
        resources.regions.push(regional);
        let with_replicator = render(&resources, now()).unwrap();
        assert_eq!(with_replicator.objects.len(), 6);
        assert_eq!(with_replicator.objects[5]["metadata"]["name"], "eu-central-replicator");
        let text = to_yaml(&rendered, Only::Topics).unwrap();
        assert!(text.starts_with("---\n# Kafka topics of RetailPipeline shop\npipeline: shop\n"), "{text}");
    }
}

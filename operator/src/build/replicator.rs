//! The Deployment that replicates a StoreRegion's regional cluster into its pipeline's
//! cluster (`stockpulse-operator replicate`), with both clusters' credentials from Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use stockpulse_processor::config::TopicRole;

use super::deployment::{RUN_AS_USER, probe};
use super::labels::FIELD_MANAGER;
use super::topics::topic_name;
use crate::crd::common::KafkaConnection;
use crate::crd::{RetailPipeline, StoreRegion};
use crate::credentials::credentials;
use crate::replicator::replicator_id;
use crate::settings::{PodSettings, merged};

/// Name of a region's replicator Deployment.
pub fn replicator_name(region: &StoreRegion) -> String {
    format!("{}-replicator", region.name_any())
}

/// The topic roles a region's stores produce, so the ones its replicator copies.
pub const REGION_PRODUCED_ROLES: [TopicRole; 2] = [TopicRole::Sales, TopicRole::Inventory];

/// The topics a replicator copies: every role a region produces, under the names the
/// pipeline declares (the same names in the regional cluster).
pub fn replicated_topics(pipeline: &RetailPipeline) -> Vec<String> {
    REGION_PRODUCED_ROLES.iter().map(|role| topic_name(pipeline, *role)).collect()
}

/// The port of the replicator's /metrics, /healthz and /readyz (`replicate`'s default).
pub const HTTP_PORT: i32 = 8080;

fn value(name: String, value: String) -> EnvVar {
    EnvVar { name, value: Some(value), ..EnvVar::default() }
}

fn from_secret(name: String, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// `<PREFIX>_*` variables of a cluster, as `replicator::target_from_env` reads them.
fn cluster_env(prefix: &str, kafka: &KafkaConnection) -> Vec<EnvVar> {
    let mut env = vec![value(format!("{prefix}_BOOTSTRAP_SERVERS"), kafka.bootstrap_servers.clone())];
    if let Some(sasl) = &kafka.sasl {
        env.push(value(format!("{prefix}_SASL_MECHANISM"), sasl.mechanism.as_str().to_string()));
    }
    for source in credentials(kafka) {
        let credential = source.credential;
        env.push(from_secret(format!("{prefix}_{}", credential.env_suffix()), &source.secret, credential.secret_key()));
    }
    env
}

/// The replicator of `region` (which has a regional cluster) into `pipeline`'s cluster.
pub fn replicator_deployment(
    region: &StoreRegion,
    regional: &KafkaConnection,
    pipeline: &RetailPipeline,
    image: &str,
    pods: &PodSettings,
) -> Deployment {
    let selector = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "stockpulse-replicator".to_string()),
        ("app.kubernetes.io/instance".to_string(), region.name_any()),
    ]);
    let mut labels = selector.clone();
    labels.insert("app.kubernetes.io/part-of".to_string(), "stockpulse".to_string());
    labels.insert("app.kubernetes.io/managed-by".to_string(), FIELD_MANAGER.to_string());
    let namespace = region.namespace().unwrap_or_default();
    let mut args = vec![
        "replicate".to_string(),
        format!("--id={}", replicator_id(&namespace, &region.name_any())),
        format!("--region={}", region.spec.region),
        format!("--target-region={}", pipeline.name_any()),
    ];
    for topic in replicated_topics(pipeline) {
        args.push("--topic".to_string());
        args.push(topic);
    }
    let mut env = cluster_env("SOURCE", regional);
    env.extend(cluster_env("TARGET", &pipeline.spec.kafka.connection));
    env.push(value("RUST_LOG".to_string(), "info".to_string()));
    let owner = OwnerReference {
        api_version: StoreRegion::api_version(&()).to_string(),
        kind: StoreRegion::kind(&()).to_string(),
        name: region.name_any(),
        uid: region.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Deployment {
        metadata: ObjectMeta {
            name: Some(replicator_name(region)),
            namespace: region.namespace(),
            labels: Some(labels.clone()),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: DeploymentSpec {
            // One copier per region: two would copy every record twice.
            replicas: Some(1),
            strategy: Some(DeploymentStrategy { type_: Some("Recreate".to_string()), ..DeploymentStrategy::default() }),
            selector: LabelSelector { match_labels: Some(selector), ..LabelSelector::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(merged(labels, &pods.labels)),
                    annotations: (!pods.annotations.is_empty()).then(|| pods.annotations.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    image_pull_secrets: crate::build::deployment::pull_secrets(&pods.image_pull_secrets),
                    automount_service_account_token: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![Container {
                        name: "replicator".to_string(),
                        image: Some(image.to_string()),
                        args: Some(args),
                        env: Some(env),
                        ports: Some(vec![ContainerPort {
                            name: Some("http".to_string()),
                            container_port: HTTP_PORT,
                            protocol: Some("TCP".to_string()),
                            ..ContainerPort::default()
                        }]),
                        // Ready while it copies: not while the region is unreachable.
                        readiness_probe: Some(probe("/readyz", 5, 2)),
                        liveness_probe: Some(probe("/healthz", 10, 3)),
                        resources: Some(ResourceRequirements {
                            requests: Some(BTreeMap::from([
                                ("cpu".to_string(), Quantity("100m".to_string())),
                                ("memory".to_string(), Quantity("128Mi".to_string())),
                            ])),
                            limits: Some(BTreeMap::from([("memory".to_string(), Quantity("512Mi".to_string()))])),
                            ..ResourceRequirements::default()
                        }),
                        security_context: Some(SecurityContext {
                            run_as_non_root: Some(true),
                            read_only_root_filesystem: Some(true),
                            allow_privilege_escalation: Some(false),
                            capabilities: Some(Capabilities {
                                drop: Some(vec!["ALL".to_string()]),
                                ..Capabilities::default()
                            }),
                            ..SecurityContext::default()
                        }),
                        ..Container::default()
                    }],
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

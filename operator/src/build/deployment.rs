//! The processor Deployment: probes on the processor's endpoints, resources, non-root,
//! read-only root filesystem, the config hash on the pod template.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{CONFIG_HASH_ANNOTATION, config_map_name, labels, object_meta, processor_name, selector_labels};
use super::pipeline_config::{CONFIG_DIR, CONFIG_FILE, FileMount, MountSource};
use crate::crd::RetailPipeline;
use crate::crd::retail_pipeline::PullPolicy;
use crate::settings::{PodSettings, merged};

/// The user id the processor runs as (distroless `nonroot`).
pub const RUN_AS_USER: i64 = 65532;

fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("500m".to_string())),
            ("memory".to_string(), Quantity("1Gi".to_string())),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), Quantity("2Gi".to_string()))])),
        ..ResourceRequirements::default()
    }
}

pub(crate) fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".to_string()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn volume_of(mount: &FileMount) -> Volume {
    let items = Some(
        mount
            .items
            .iter()
            .map(|(key, path)| KeyToPath { key: key.clone(), path: path.clone(), ..KeyToPath::default() })
            .collect(),
    );
    match &mount.source {
        MountSource::Secret(name) => Volume {
            name: mount.volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(name.clone()),
                items,
                ..SecretVolumeSource::default()
            }),
            ..Volume::default()
        },
        MountSource::ConfigMap(name) => Volume {
            name: mount.volume.clone(),
            config_map: Some(ConfigMapVolumeSource { name: name.clone(), items, ..ConfigMapVolumeSource::default() }),
            ..Volume::default()
        },
    }
}

/// A pipeline's processors spread over zones, then nodes, as far as the cluster allows
/// (`ScheduleAnyway`: a single-zone cluster still schedules them); per ReplicaSet, so a
/// rollout does not count the old pods.
fn spread(selector: BTreeMap<String, String>) -> Vec<TopologySpreadConstraint> {
    ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.to_string(),
            when_unsatisfiable: "ScheduleAnyway".to_string(),
            label_selector: Some(LabelSelector { match_labels: Some(selector.clone()), ..LabelSelector::default() }),
            match_label_keys: Some(vec!["pod-template-hash".to_string()]),
            ..TopologySpreadConstraint::default()
        })
        .collect()
}

/// The pod's `imagePullSecrets`: `None` when there are none (the field left out).
pub fn pull_secrets(names: &[String]) -> Option<Vec<k8s_openapi::api::core::v1::LocalObjectReference>> {
    (!names.is_empty()).then(|| {
        names.iter().map(|name| k8s_openapi::api::core::v1::LocalObjectReference { name: name.clone() }).collect()
    })
}

/// The Deployment with `replicas` pods (`None`: the field left to an HPA or KEDA) whose
/// template carries `config_hash`.
pub fn deployment(
    pipeline: &RetailPipeline,
    replicas: Option<i32>,
    config_hash: &str,
    mounts: &[FileMount],
    pods: &PodSettings,
) -> Deployment {
    let spec = &pipeline.spec.processor;
    let mut volumes = vec![
        Volume {
            name: "config".to_string(),
            config_map: Some(ConfigMapVolumeSource {
                name: config_map_name(pipeline),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        Volume { name: "tmp".to_string(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() },
    ];
    let mut volume_mounts = vec![
        VolumeMount {
            name: "config".to_string(),
            mount_path: CONFIG_DIR.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        },
        VolumeMount { name: "tmp".to_string(), mount_path: "/tmp".to_string(), ..VolumeMount::default() },
    ];
    for mount in mounts {
        volumes.push(volume_of(mount));
        volume_mounts.push(VolumeMount {
            name: mount.volume.clone(),
            mount_path: mount.dir.clone(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    let container = Container {
        name: "processor".to_string(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| {
            match p {
                PullPolicy::Always => "Always",
                PullPolicy::IfNotPresent => "IfNotPresent",
                PullPolicy::Never => "Never",
            }
            .to_string()
        }),
        args: Some(vec!["run".to_string(), "--config".to_string(), format!("{CONFIG_DIR}/{CONFIG_FILE}")]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_string()),
            container_port: spec.http_port,
            protocol: Some("TCP".to_string()),
            ..ContainerPort::default()
        }]),
        // The read API's address that the other instances are told (the pod's IP).
        env: Some(vec![EnvVar {
            name: "POD_IP".to_string(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector { field_path: "status.podIP".to_string(), ..Default::default() }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        }]),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        liveness_probe: Some(probe("/healthz", 10, 3)),
        readiness_probe: Some(probe("/readyz", 5, 3)),
        startup_probe: Some(probe("/healthz", 5, 60)),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            read_only_root_filesystem: Some(true),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_string()]), ..Capabilities::default() }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(volume_mounts),
        ..Container::default()
    };
    let annotations = BTreeMap::from([
        (CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string()),
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), spec.http_port.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    Deployment {
        metadata: object_meta(pipeline, processor_name(pipeline)),
        spec: DeploymentSpec {
            replicas,
            selector: LabelSelector { match_labels: Some(selector_labels(pipeline)), ..LabelSelector::default() },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_string()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(merged(labels(pipeline), &pods.labels)),
                    annotations: Some(merged(annotations, &pods.annotations)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(processor_name(pipeline)),
                    image_pull_secrets: pull_secrets(&pods.image_pull_secrets),
                    topology_spread_constraints: Some(spread(selector_labels(pipeline))),
                    automount_service_account_token: Some(false),
                    termination_grace_period_seconds: Some(60),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(volumes),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

//! The RetailPipeline controller with Kubernetes' own controllers behind it: etcd,
//! kube-apiserver and kube-controller-manager (garbage collector, Deployment and ReplicaSet
//! controllers; see stockpulse_testkit::control_plane), and a real Apache Kafka broker. A
//! config change rolls the processor out as Kubernetes does it, to a new ReplicaSet with a
//! new `pod-template-hash`, and deleting the pipeline garbage-collects every object it owns
//! through their owner references once the finalizer has deleted its topics. No kubelet
//! runs: pods are created, never scheduled.
//!
//! Skipped, with a printed `SKIPPED: control plane: ...`, where the binaries are not
//! installed, except in CI.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use stockpulse_operator::build::labels::CONFIG_HASH_ANNOTATION;
use stockpulse_operator::controller::{Context, retail_pipeline};
use stockpulse_operator::crd::RetailPipeline;
use stockpulse_operator::kafka_admin::rdkafka_client::RdKafkaAccess;
use stockpulse_operator::metrics::Metrics;
use stockpulse_testkit::control_plane::ControlPlane;
use stockpulse_testkit::kafka::Kafka;

const NAMESPACE: &str = "controllers";
const NAME: &str = "outdoor";
const PROCESSOR: &str = "outdoor-processor";
const TEST_TIMEOUT: Duration = Duration::from_secs(300);
/// How long Kubernetes' controllers may take to act (a loaded 2-core machine).
const CONTROLLER_TIMEOUT: Duration = Duration::from_secs(90);

/// The `pod-template-hash` and config hash of each ReplicaSet the Deployment owns.
async fn replica_sets(client: &kube::Client, deployment: &Deployment) -> BTreeSet<(String, String)> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), NAMESPACE);
    let uid = deployment.uid().unwrap_or_default();
    api.list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list ReplicaSets: {e}"))
        .items
        .into_iter()
        .filter(|rs| rs.owner_references().iter().any(|o| o.uid == uid && o.controller == Some(true)))
        .map(|rs| {
            let hash = rs.labels().get("pod-template-hash").cloned().unwrap_or_default();
            let config = rs
                .spec
                .template
                .as_ref()
                .and_then(|t| t.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
                .unwrap_or_default();
            (hash, config)
        })
        .collect()
}

/// The kinds of the pipeline's objects still stored (the Deployment's ReplicaSets as
/// `ReplicaSet`).
async fn owned_objects_left(client: &kube::Client, deployment: &Deployment) -> Vec<&'static str> {
    async fn present<K>(client: &kube::Client, name: &str) -> bool
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::<K>::namespaced(client.clone(), NAMESPACE)
            .get_opt(name)
            .await
            .unwrap_or_else(|e| panic!("get {name}: {e}"))
            .is_some()
    }
    let mut left = Vec::new();
    for (kind, there) in [
        ("ServiceAccount", present::<ServiceAccount>(client, PROCESSOR).await),
        ("ConfigMap", present::<ConfigMap>(client, "outdoor-config").await),
        ("Service", present::<Service>(client, PROCESSOR).await),
        ("PodDisruptionBudget", present::<PodDisruptionBudget>(client, PROCESSOR).await),
        ("Deployment", present::<Deployment>(client, PROCESSOR).await),
        ("ReplicaSet", !replica_sets(client, deployment).await.is_empty()),
    ] {
        if there {
            left.push(kind);
        }
    }
    left
}

fn config_hash(deployment: &Deployment) -> String {
    deployment
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
        .unwrap_or_default()
}

/// Polls `read` every 200 ms until `done` holds for what it read, and returns that; or
/// panics with `what` and the controller manager's log.
async fn eventually<T, F, Fut>(plane: &ControlPlane, what: &str, read: F, done: impl Fn(&T) -> bool) -> T
where
    T: std::fmt::Debug,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + CONTROLLER_TIMEOUT;
    loop {
        let value = read().await;
        if done(&value) {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {CONTROLLER_TIMEOUT:?} (last {value:?})\nkube-controller-manager:\n{}",
            plane.controller_manager_log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_rolls_a_new_replica_set_and_deletion_garbage_collects_the_owned_objects() {
    let test = async {
        let Some((plane, kafka)) =
            tokio::task::spawn_blocking(|| ControlPlane::shared_with_controllers().map(|p| (p, Kafka::shared())))
                .await
                .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        else {
            return;
        };
        let client = plane.client().await;
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
        Api::<Namespace>::all(client.clone())
            .patch(NAMESPACE, &PatchParams::apply("stockpulse-test"), &Patch::Apply(&body))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pipelines: Api<RetailPipeline> = Api::namespaced(client.clone(), NAMESPACE);
        let pipeline: RetailPipeline = serde_json::from_value(json!({
            "apiVersion": "retail.stockpulse.io/v1alpha1",
            "kind": "RetailPipeline",
            "metadata": {"name": NAME, "namespace": NAMESPACE},
            "spec": {
                "kafka": {"bootstrapServers": kafka.bootstrap},
                "topics": {"partitions": 1, "replicationFactor": 1, "deletionPolicy": "Delete"},
                "processing": {"allowedLateness": "10m"},
                "processor": {"image": "stockpulse-processor:test", "minReplicas": 1, "maxReplicas": 1}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        pipelines.create(&PostParams::default(), &pipeline).await.unwrap_or_else(|e| panic!("{e}"));
        let ctx = Arc::new(Context::new(
            client.clone(),
            Arc::new(RdKafkaAccess::default()),
            Arc::new(Metrics::default()),
            Some("controllers-test".to_string()),
        ));
        let reconcile = || async {
            let current = pipelines.get(NAME).await.unwrap_or_else(|e| panic!("{e}"));
            retail_pipeline::reconcile(Arc::new(current), ctx.clone())
                .await
                .unwrap_or_else(|e| panic!("reconcile: {e}"))
        };
        reconcile().await; // the finalizer
        reconcile().await; // topics and objects
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
        let first = deployments.get(PROCESSOR).await.unwrap_or_else(|e| panic!("{e}"));
        let first_config = config_hash(&first);
        assert_eq!(first_config.len(), 64, "a SHA-256 in hex: {first_config:?}");

        // The Deployment controller makes one ReplicaSet for the pod template.
        let first_sets =
            eventually(plane, "a ReplicaSet for the Deployment", || replica_sets(&client, &first), |s| s.len() == 1)
                .await;
        let (first_hash, config) = first_sets.iter().next().cloned().unwrap_or_default();
        assert_eq!(config, first_config);
        assert!(!first_hash.is_empty());

        // A new rendered config: a new pod template, so a second ReplicaSet with another
        // pod-template-hash and the new config hash.
        pipelines
            .patch(
                NAME,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"processing": {"allowedLateness": "20m"}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        reconcile().await;
        let second = deployments.get(PROCESSOR).await.unwrap_or_else(|e| panic!("{e}"));
        let second_config = config_hash(&second);
        assert_ne!(second_config, first_config);
        let sets = eventually(
            plane,
            "a second ReplicaSet for the new pod template",
            || replica_sets(&client, &second),
            |s| s.len() == 2,
        )
        .await;
        let (new_hash, new_config) =
            sets.iter().find(|(hash, _)| *hash != first_hash).cloned().unwrap_or_else(|| panic!("{sets:?}"));
        assert_ne!(new_hash, first_hash);
        assert_eq!(new_config, second_config);

        // Deletion: the finalizer deletes the topics, then the garbage collector deletes
        // every object the pipeline owns, and the ReplicaSets the Deployment owned.
        // The processors go first: scaled to zero, the cleanup waits (an error keeps the
        // finalizer) until the Deployment controller has removed their pods.
        pipelines.delete(NAME, &DeleteParams::default()).await.unwrap_or_else(|e| panic!("{e}"));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut waits = 0;
        while let Some(current) = pipelines.get_opt(NAME).await.unwrap_or_else(|e| panic!("{e}")) {
            match retail_pipeline::reconcile(Arc::new(current), ctx.clone()).await {
                Ok(_) => {}
                Err(e) if e.to_string().contains("waiting for the pipeline's writers to stop") => waits += 1,
                Err(e) => panic!("reconcile of the deletion: {e}"),
            }
            assert!(std::time::Instant::now() < deadline, "the pipeline is still there after 60 s");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert!(waits > 0, "its pods were there: the cleanup waited for them");
        let scaled = deployments.get(PROCESSOR).await.map(|d| d.spec.replicas);
        assert!(matches!(scaled, Ok(Some(0)) | Err(_)), "{scaled:?}");
        let left = eventually(
            plane,
            "the owned objects garbage-collected",
            || owned_objects_left(&client, &second),
            |left| left.is_empty(),
        )
        .await;
        assert_eq!(left, Vec::<&str>::new());
    };
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("controllers test timed out");
}

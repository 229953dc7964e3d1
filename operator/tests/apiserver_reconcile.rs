//! The RetailPipeline controller's reconcile against a real kube-apiserver (etcd +
//! kube-apiserver, see stockpulse_testkit::control_plane) and a real Apache Kafka broker
//! (stockpulse_testkit::kafka): server-side apply under the operator's field manager, owner
//! references, status conditions and observedGeneration, no write when nothing changed, a
//! config change rolling the Deployment, and deletion through the finalizer.
//!
//! No kube-controller-manager runs: Deployments get no ReplicaSets (so no
//! `pod-template-hash`; the rollout is seen as a new pod template, its config-hash
//! annotation and the Deployment's generation), and nothing garbage-collects the owned
//! objects after the pipeline is deleted, so the deletion test asserts their owner
//! references instead.
//!
//! The reconcile function is called directly (as the controller calls it on a watch event),
//! so each step is one reconcile and the writes of each can be checked.
//!
//! Skipped, with a printed `SKIPPED: control plane: ...`, where the binaries are not
//! installed, except in CI.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use stockpulse_processor::config::TopicRole;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use sha2::Digest;
use stockpulse_operator::build::labels::{CONFIG_HASH_ANNOTATION, FIELD_MANAGER};
use stockpulse_operator::controller::{Context, retail_pipeline, store_region};
use stockpulse_operator::crd::{RetailPipeline, StoreRegion};
use stockpulse_operator::kafka_admin::rdkafka_client::RdKafkaAccess;
use stockpulse_operator::kafka_admin::{KafkaAccess, KafkaTarget};
use stockpulse_operator::metrics::Metrics;
use stockpulse_operator::plan::topics::TopicAction;
use stockpulse_testkit::control_plane::ControlPlane;
use stockpulse_testkit::kafka::Kafka;

/// Every test here is bounded, the control plane's and the broker's start included.
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("API-server test timed out");
}

/// The shared control plane and the shared broker, started off the async workers; `None`
/// where the control plane is skipped.
async fn control_plane_and_kafka() -> Option<(&'static ControlPlane, &'static Kafka)> {
    tokio::task::spawn_blocking(|| ControlPlane::shared().map(|plane| (plane, Kafka::shared())))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn pipeline_manifest(name: &str, namespace: &str, bootstrap: &str) -> serde_json::Value {
    json!({
        "apiVersion": "retail.stockpulse.io/v1alpha1",
        "kind": "RetailPipeline",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "kafka": {"bootstrapServers": bootstrap},
            "topics": {
                "partitions": 2,
                "replicationFactor": 1,
                "deletionPolicy": "Retain",
                "sales": {"deletionPolicy": "Delete", "retention": "1d"},
                "inventory": {"deletionPolicy": "Delete"}
            },
            "processing": {"allowedLateness": "10m"},
            "processor": {"image": "stockpulse-processor:test", "minReplicas": 1, "maxReplicas": 2}
        }
    })
}

/// The topic names of a pipeline named `name` (every role, default names).
fn topic_names(name: &str) -> Vec<String> {
    stockpulse_processor::config::TopicRole::ALL
        .iter()
        .map(|role| format!("{name}.{}", role.default_suffix()))
        .collect()
}

struct Setup {
    client: kube::Client,
    ctx: Arc<Context>,
    pipelines: Api<RetailPipeline>,
    namespace: String,
    name: String,
    kafka: &'static Kafka,
}

impl Setup {
    async fn new(plane: &ControlPlane, kafka: &'static Kafka, namespace: &str, name: &str) -> Setup {
        let client = plane.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        namespaces
            .patch(namespace, &PatchParams::apply("stockpulse-test"), &Patch::Apply(&body))
            .await
            .unwrap_or_else(|e| panic!("namespace {namespace}: {e}"));
        let pipelines: Api<RetailPipeline> = Api::namespaced(client.clone(), namespace);
        let manifest: RetailPipeline = serde_json::from_value(pipeline_manifest(name, namespace, &kafka.bootstrap))
            .unwrap_or_else(|e| panic!("pipeline manifest: {e}"));
        pipelines.create(&PostParams::default(), &manifest).await.unwrap_or_else(|e| panic!("create pipeline: {e}"));
        let ctx = Context::new(
            client.clone(),
            Arc::new(RdKafkaAccess::default()),
            Arc::new(Metrics::default()),
            Some("apiserver-test".to_string()),
        );
        Setup { client, ctx: Arc::new(ctx), pipelines, namespace: namespace.to_string(), name: name.to_string(), kafka }
    }

    async fn pipeline(&self) -> RetailPipeline {
        self.pipelines.get(&self.name).await.unwrap_or_else(|e| panic!("get pipeline {}: {e}", self.name))
    }

    /// One reconcile of the pipeline as it now is on the API server.
    async fn reconcile(&self) -> Action {
        let pipeline = Arc::new(self.pipeline().await);
        retail_pipeline::reconcile(pipeline, self.ctx.clone())
            .await
            .unwrap_or_else(|e| panic!("reconcile of {} failed: {e}", self.name))
    }

    fn api<K>(&self) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    /// `kind/name -> resourceVersion` of the pipeline and its five objects.
    async fn resource_versions(&self) -> BTreeMap<String, String> {
        let processor = format!("{}-processor", self.name);
        let config = format!("{}-config", self.name);
        let mut versions = BTreeMap::new();
        let mut put = |kind: &str, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            versions.insert(
                format!("{kind}/{}", meta.name.clone().unwrap_or_default()),
                meta.resource_version.clone().unwrap_or_default(),
            );
        };
        put("RetailPipeline", self.pipeline().await.meta());
        put(
            "ServiceAccount",
            self.api::<ServiceAccount>().get(&processor).await.unwrap_or_else(|e| panic!("{e}")).meta(),
        );
        put("ConfigMap", self.api::<ConfigMap>().get(&config).await.unwrap_or_else(|e| panic!("{e}")).meta());
        put("Service", self.api::<Service>().get(&processor).await.unwrap_or_else(|e| panic!("{e}")).meta());
        put(
            "PodDisruptionBudget",
            self.api::<PodDisruptionBudget>().get(&processor).await.unwrap_or_else(|e| panic!("{e}")).meta(),
        );
        put("Deployment", self.api::<Deployment>().get(&processor).await.unwrap_or_else(|e| panic!("{e}")).meta());
        versions
    }

    async fn event_reasons(&self) -> Vec<String> {
        let events: Api<Event> = self.api();
        let mut list: Vec<Event> =
            events.list(&ListParams::default()).await.unwrap_or_else(|e| panic!("events: {e}")).items;
        list.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        list.into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(self.name.as_str()))
            .map(|e| e.reason.unwrap_or_default())
            .collect()
    }

    fn target(&self) -> KafkaTarget {
        KafkaTarget::plain(self.kafka.bootstrap.clone())
    }
}

/// What `managedFields` says about the operator's entry of an object: its operation and
/// the top-level fields it owns.
fn operator_entry(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, Vec<String>) {
    let entries = meta.managed_fields.clone().unwrap_or_default();
    let ours: Vec<_> = entries.iter().filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER)).collect();
    assert_eq!(ours.len(), 1, "one managedFields entry of {FIELD_MANAGER}: {entries:?}");
    let fields = ours[0].fields_v1.as_ref().map(|f| f.0.clone()).unwrap_or_default();
    let mut top: Vec<String> = fields.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
    top.sort();
    (ours[0].operation.clone().unwrap_or_default(), top)
}

/// Checks the owner reference of an owned object: the pipeline, as controller.
fn assert_owned_by(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta, pipeline: &RetailPipeline) {
    let owners = meta.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{:?}: {owners:?}", meta.name);
    let owner = &owners[0];
    assert_eq!(
        (owner.api_version.as_str(), owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("retail.stockpulse.io/v1alpha1", "RetailPipeline", pipeline.name_any().as_str(), Some(true)),
        "{:?}",
        meta.name
    );
    assert_eq!(Some(owner.uid.clone()), pipeline.uid(), "{:?}", meta.name);
}

fn condition(pipeline: &RetailPipeline, type_: &str) -> (String, String, String) {
    let status = pipeline.status.clone().unwrap_or_else(|| panic!("no status on {}", pipeline.name_any()));
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition: {:?}", status.conditions));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn sha256_hex(text: &str) -> String {
    sha2::Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_reconciles_by_server_side_apply_then_writes_nothing_then_rolls_on_a_config_change() {
    bounded(async {
        let Some((plane, kafka)) = control_plane_and_kafka().await else { return };
        let s = Setup::new(plane, kafka, "reconcile", "shop").await;

        // The first reconcile only adds the finalizer (the watch event of that write starts the next).
        let action = s.reconcile().await;
        assert_eq!(action, Action::await_change());
        assert_eq!(s.pipeline().await.finalizers(), ["retail.stockpulse.io/topics"]);

        // The second creates the topics and applies the five objects, then the status.
        let action = s.reconcile().await;
        assert_eq!(
            action,
            Action::requeue(retail_pipeline::NOT_READY_RETRY),
            "no kubelet: the processor is never ready"
        );
        let pipeline = s.pipeline().await;
        let processor = "shop-processor";

        let topics = RdKafkaAccess::default()
            .describe_topics(&s.target(), &topic_names("shop"))
            .await
            .unwrap_or_else(|e| panic!("describe topics: {e}"));
        assert_eq!(topics.keys().cloned().collect::<Vec<_>>(), {
            let mut names = topic_names("shop");
            names.sort();
            names
        });
        assert_eq!(topics["shop.sales"].partitions, 2);
        assert_eq!(topics["shop.sales"].configs.get("retention.ms").map(String::as_str), Some("86400000"));

        let sa = s.api::<ServiceAccount>().get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        let cm = s.api::<ConfigMap>().get("shop-config").await.unwrap_or_else(|e| panic!("{e}"));
        let svc = s.api::<Service>().get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        let pdb = s.api::<PodDisruptionBudget>().get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        let dep = s.api::<Deployment>().get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        for (kind, meta, fields) in [
            ("ServiceAccount", sa.meta(), vec!["f:automountServiceAccountToken", "f:metadata"]),
            ("ConfigMap", cm.meta(), vec!["f:data", "f:metadata"]),
            ("Service", svc.meta(), vec!["f:metadata", "f:spec"]),
            ("PodDisruptionBudget", pdb.meta(), vec!["f:metadata", "f:spec"]),
            ("Deployment", dep.meta(), vec!["f:metadata", "f:spec"]),
        ] {
            assert_eq!(
                operator_entry(meta),
                ("Apply".to_string(), fields.iter().map(|f| f.to_string()).collect()),
                "{kind}"
            );
            assert_owned_by(meta, &pipeline);
            assert_eq!(
                meta.labels.as_ref().and_then(|l| l.get("app.kubernetes.io/managed-by")).map(String::as_str),
                Some("stockpulse-operator"),
                "{kind}"
            );
        }
        let config_text = cm.data.as_ref().and_then(|d| d.get("pipeline.yaml")).cloned().unwrap_or_default();
        assert!(config_text.contains("\n  allowedLateness: 10m\n"), "{config_text}");
        let template_hash = |d: &Deployment| {
            d.spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get(CONFIG_HASH_ANNOTATION).cloned())
        };
        assert_eq!(template_hash(&dep), Some(sha256_hex(&config_text)));
        assert_eq!(dep.spec.replicas, Some(1));
        assert_eq!(dep.metadata.generation, Some(1));

        // Status, through the status subresource under the operator's field manager.
        let status = pipeline.status.clone().unwrap_or_else(|| panic!("no status"));
        assert_eq!(status.observed_generation, Some(1));
        assert_eq!(status.config_hash, Some(sha256_hex(&config_text)));
        assert_eq!(status.topics.len(), TopicRole::ALL.len());
        assert_eq!(
            condition(&pipeline, "TopicsReady"),
            ("True".into(), "TopicsReconciled".into(), format!("{} topics match the spec", TopicRole::ALL.len()))
        );
        assert_eq!(
            condition(&pipeline, "ProcessorReady"),
            ("False".into(), "ProcessorProgressing".into(), "0 of 1 replicas ready, 0 updated".into())
        );
        assert_eq!(
            condition(&pipeline, "Ready"),
            ("False".into(), "ProcessorProgressing".into(), "ProcessorReady: 0 of 1 replicas ready, 0 updated".into())
        );
        let status_managers: Vec<(String, Option<String>)> = pipeline
            .managed_fields()
            .iter()
            .filter(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
            .map(|m| (m.operation.clone().unwrap_or_default(), m.subresource.clone()))
            .collect();
        assert_eq!(status_managers, [("Apply".to_string(), Some("status".to_string()))]);
        assert_eq!(s.event_reasons().await, ["Reconciled"]);

        // Nothing changed: a reconcile writes nothing (no object, no status, no event).
        let before = s.resource_versions().await;
        let action = s.reconcile().await;
        assert_eq!(action, Action::requeue(retail_pipeline::NOT_READY_RETRY));
        assert_eq!(s.resource_versions().await, before);
        assert_eq!(s.event_reasons().await, ["Reconciled"]);

        // A change of the replicas only: the Deployment is applied, its pod template is not
        // touched, so nothing rolls.
        s.pipelines
            .patch("shop", &PatchParams::default(), &Patch::Merge(json!({"spec": {"processor": {"minReplicas": 2}}})))
            .await
            .unwrap_or_else(|e| panic!("patch: {e}"));
        s.reconcile().await;
        let scaled = s.api::<Deployment>().get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(scaled.spec.replicas, Some(2));
        assert_eq!(scaled.spec.template, dep.spec.template);
        assert_eq!(s.pipeline().await.status.and_then(|s| s.observed_generation), Some(2));

        // A change of the rendered config: a new ConfigMap and a new pod template (its
        // config-hash annotation), so the Deployment rolls.
        s.pipelines
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"processing": {"allowedLateness": "20m"}}})),
            )
            .await
            .unwrap_or_else(|e| panic!("patch: {e}"));
        s.reconcile().await;
        let cm2 = s.api::<ConfigMap>().get("shop-config").await.unwrap_or_else(|e| panic!("{e}"));
        let config_text2 = cm2.data.as_ref().and_then(|d| d.get("pipeline.yaml")).cloned().unwrap_or_default();
        assert!(config_text2.contains("\n  allowedLateness: 20m\n"), "{config_text2}");
        let rolled = s.api::<Deployment>().get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(template_hash(&rolled), Some(sha256_hex(&config_text2)));
        assert_ne!(template_hash(&rolled), template_hash(&dep));
        assert_eq!(rolled.metadata.generation, Some(3), "generation 1, the scale to 2, then the new template");
        let pipeline = s.pipeline().await;
        assert_eq!(pipeline.status.as_ref().and_then(|s| s.observed_generation), Some(3));
        assert_eq!(pipeline.status.as_ref().and_then(|s| s.config_hash.clone()), Some(sha256_hex(&config_text2)));
        let (operation, _) = operator_entry(rolled.meta());
        assert_eq!(operation, "Apply");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_pipeline_runs_its_finalizer_deleting_only_the_delete_policy_topics() {
    bounded(async {
        let Some((plane, kafka)) = control_plane_and_kafka().await else { return };
        let s = Setup::new(plane, kafka, "deletion", "outlet").await;
        s.reconcile().await; // the finalizer
        s.reconcile().await; // topics and objects
        let pipeline = s.pipeline().await;
        let kafka_access = RdKafkaAccess::default();
        let before =
            kafka_access.describe_topics(&s.target(), &topic_names("outlet")).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(before.len(), TopicRole::ALL.len());

        // Deleting: the API server only marks it while the finalizer is there.
        s.pipelines.delete("outlet", &DeleteParams::default()).await.unwrap_or_else(|e| panic!("delete: {e}"));
        let marked = s.pipeline().await;
        assert!(marked.metadata.deletion_timestamp.is_some());
        assert_eq!(marked.finalizers(), ["retail.stockpulse.io/topics"]);

        // Its processors still run (two pods, as the Deployment's status says): the cleanup
        // scales them to zero and waits, deleting no topic meanwhile.
        let deployments = s.api::<Deployment>();
        let pods = |n: i32| json!({"status": {"replicas": n}});
        deployments
            .patch_status("outlet-processor", &PatchParams::default(), &Patch::Merge(&pods(2)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let waiting = || async {
            let error = retail_pipeline::reconcile(Arc::new(s.pipeline().await), s.ctx.clone())
                .await
                .expect_err("the cleanup waits (an error keeps the finalizer)");
            assert!(
                error.to_string().ends_with(
                    "waiting for the pipeline's writers to stop before deleting its topics: Deployment outlet-processor (2 pods)"
                ),
                "{error}"
            );
            let action = stockpulse_operator::controller::error_policy(Arc::new(s.pipeline().await), &error, s.ctx.clone());
            assert_eq!(action, Action::requeue(retail_pipeline::WRITERS_STOPPING_RETRY));
        };
        waiting().await;
        let deployment = deployments.get("outlet-processor").await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(deployment.spec.replicas, Some(0));
        let still = kafka_access.describe_topics(&s.target(), &topic_names("outlet")).await.unwrap();
        assert_eq!(still.len(), TopicRole::ALL.len(), "no topic deleted while a processor runs");
        waiting().await;

        // The pods gone: the cleanup deletes the topics and removes the finalizer.
        deployments
            .patch_status("outlet-processor", &PatchParams::default(), &Patch::Merge(&pods(0)))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let action = s.reconcile().await;
        assert_eq!(action, Action::await_change());
        let gone = s.pipelines.get_opt("outlet").await.unwrap_or_else(|e| panic!("{e}"));
        assert!(gone.is_none(), "the pipeline is still there: {gone:?}");

        // deletionPolicy: Delete on sales and inventory, Retain (the default) elsewhere. The
        // broker deletes a topic asynchronously: its metadata may list it for a moment more.
        let mut kept = topic_names("outlet");
        kept.retain(|t| t != "outlet.sales" && t != "outlet.inventory");
        kept.sort();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let after = kafka_access
                .describe_topics(&s.target(), &topic_names("outlet"))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let names: Vec<String> = after.keys().cloned().collect();
            if names == kept {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "topics on the broker 30 s after the cleanup: {names:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert_eq!(s.event_reasons().await, ["Reconciled", "ProcessorsStopping", "TopicsDeleted"]);

        // No garbage collector runs here (no kube-controller-manager): the owned objects
        // stay, each with the controller owner reference to the deleted pipeline that the
        // garbage collector would follow to delete them.
        let processor = "outlet-processor";
        let metas = [
            s.api::<ServiceAccount>().get(processor).await.unwrap_or_else(|e| panic!("{e}")).metadata,
            s.api::<ConfigMap>().get("outlet-config").await.unwrap_or_else(|e| panic!("{e}")).metadata,
            s.api::<Service>().get(processor).await.unwrap_or_else(|e| panic!("{e}")).metadata,
            s.api::<PodDisruptionBudget>().get(processor).await.unwrap_or_else(|e| panic!("{e}")).metadata,
            s.api::<Deployment>().get(processor).await.unwrap_or_else(|e| panic!("{e}")).metadata,
        ];
        for meta in &metas {
            assert_owned_by(meta, &pipeline);
        }
    })
    .await;
}

/// The managers owning `spec.replicas` of a Deployment, sorted.
fn replicas_owners(deployment: &Deployment) -> Vec<String> {
    let mut owners: Vec<String> = deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| {
            m.fields_v1.as_ref().and_then(|f| f.0.get("f:spec")).is_some_and(|spec| spec.get("f:replicas").is_some())
        })
        .filter_map(|m| m.manager.clone())
        .collect();
    owners.sort();
    owners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_autoscaling_disabled_an_hpa_owns_replicas_and_the_operator_never_fights_it() {
    bounded(async {
        let Some((plane, kafka)) = control_plane_and_kafka().await else { return };
        let s = Setup::new(plane, kafka, "autoscaling-opt-out", "handoff").await;
        let processor = "handoff-processor";
        let deployments = s.api::<Deployment>();
        let patch_spec = |spec: serde_json::Value| {
            let pipelines = s.pipelines.clone();
            async move {
                pipelines
                    .patch("handoff", &PatchParams::default(), &Patch::Merge(json!({"spec": spec})))
                    .await
                    .unwrap_or_else(|e| panic!("patch pipeline: {e}"));
            }
        };
        assert_eq!(s.reconcile().await, Action::await_change(), "the finalizer first");
        patch_spec(json!({"processor": {"minReplicas": 2}})).await;
        s.reconcile().await;
        let dep = deployments.get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dep.spec.replicas, Some(2), "the operator sets replicas");
        assert_eq!(replicas_owners(&dep), [FIELD_MANAGER]);

        // Disabled: the field is handed over at its value, not reset to 1.
        patch_spec(json!({"processor": {"autoscaling": {"enabled": false}}})).await;
        s.reconcile().await;
        let dep = deployments.get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dep.spec.replicas, Some(2), "kept at its value");
        assert_eq!(replicas_owners(&dep), [retail_pipeline::REPLICAS_HANDOFF_MANAGER], "the operator let go of it");

        // An HPA scales through the scale subresource.
        let scale = json!({"spec": {"replicas": 5}});
        let hpa = PatchParams { field_manager: Some("horizontal-pod-autoscaler".into()), ..PatchParams::default() };
        deployments.patch_scale(processor, &hpa, &Patch::Merge(&scale)).await.unwrap_or_else(|e| panic!("scale: {e}"));

        // A config change makes the operator apply the Deployment again: the HPA's count stays.
        patch_spec(json!({"processing": {"allowedLateness": "20m"}})).await;
        s.reconcile().await;
        let dep = deployments.get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dep.spec.replicas, Some(5), "the HPA's count");
        assert!(!replicas_owners(&dep).contains(&FIELD_MANAGER.to_string()), "{:?}", replicas_owners(&dep));
        let replicas = s.pipeline().await.status.and_then(|s| s.replicas).unwrap_or_else(|| panic!("no replicas"));
        assert_eq!((replicas.desired, replicas.reason.as_str()), (5, "AutoscalingDisabled"));

        // Enabled again: the operator takes replicas back, within its bounds (maxReplicas 2).
        patch_spec(json!({"processor": {"autoscaling": {"enabled": true}}})).await;
        s.reconcile().await;
        let dep = deployments.get(processor).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dep.spec.replicas, Some(2));
        assert!(replicas_owners(&dep).contains(&FIELD_MANAGER.to_string()), "{:?}", replicas_owners(&dep));
        let events = s.event_reasons().await;
        assert!(events.contains(&"Scaled".to_string()), "{events:?}");
    })
    .await;
}

/// The Ready condition's (status, reason, message).
async fn ready_of(s: &Setup) -> (String, String, String) {
    condition(&s.pipeline().await, "Ready")
}

#[tokio::test]
async fn a_missing_secret_or_key_and_an_unreachable_cluster_show_as_conditions_with_events() {
    bounded(async {
        let Some((plane, kafka)) = control_plane_and_kafka().await else { return };
        let s = Setup::new(plane, kafka, "failures", "shop").await;
        s.reconcile().await; // the finalizer
        let patch = |spec: serde_json::Value| {
            let pipelines = s.pipelines.clone();
            async move {
                pipelines
                    .patch("shop", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"kafka": spec}})))
                    .await
                    .unwrap_or_else(|e| panic!("patch: {e}"));
            }
        };
        patch(json!({"sasl": {"mechanism": "SCRAM-SHA-512", "secretRef": {"name": "kafka-user"}}})).await;
        assert_eq!(s.reconcile().await, Action::requeue(retail_pipeline::NOT_READY_RETRY));
        assert_eq!(
            ready_of(&s).await,
            (
                "False".into(),
                "SecretNotFound".into(),
                "Secret kafka-user (named by kafka.sasl.secretRef) does not exist in namespace failures: \
                 create it, or fix the reference"
                    .into()
            )
        );
        let secrets: Api<k8s_openapi::api::core::v1::Secret> = s.api();
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "kafka-user"},
                            "stringData": {"username": "shop"}});
        secrets
            .create(&PostParams::default(), &serde_json::from_value(secret).unwrap())
            .await
            .unwrap_or_else(|e| panic!("create secret: {e}"));
        assert_eq!(s.reconcile().await, Action::requeue(retail_pipeline::NOT_READY_RETRY));
        assert_eq!(
            ready_of(&s).await,
            (
                "False".into(),
                "SecretKeyMissing".into(),
                "Secret kafka-user: has no key \"password\": add the key to the Secret".into()
            )
        );
        // Nothing listens on port 1.
        patch(json!({"sasl": null, "bootstrapServers": "127.0.0.1:1"})).await;
        assert_eq!(s.reconcile().await, Action::requeue(retail_pipeline::NOT_READY_RETRY));
        let (status, reason, message) = ready_of(&s).await;
        assert_eq!((status.as_str(), reason.as_str()), ("False", "KafkaUnreachable"), "{message}");
        assert!(message.ends_with("check spec.kafka.bootstrapServers and the network to the brokers"), "{message}");
        // The cluster back: the next look reconciles, and the reason is no longer about it.
        patch(json!({"bootstrapServers": kafka.bootstrap})).await;
        s.reconcile().await;
        let (_, reason, _) = ready_of(&s).await;
        assert!(!["SecretNotFound", "SecretKeyMissing", "KafkaUnreachable"].contains(&reason.as_str()), "{reason}");
        let events = s.event_reasons().await;
        for reason in ["SecretNotFound", "SecretKeyMissing", "KafkaUnreachable"] {
            assert_eq!(events.iter().filter(|e| *e == reason).count(), 1, "one {reason} event: {events:?}");
        }
    })
    .await;
}

/// The stores a region published to its pipeline's `stores` topic, as (key, has a value).
async fn stores_on(kafka: &Kafka, topic: &str) -> Vec<(String, bool)> {
    let (bootstrap, topic) = (kafka.bootstrap.clone(), topic.to_string());
    let records = tokio::task::spawn_blocking(move || stockpulse_testkit::kafka::read_committed(&bootstrap, &topic))
        .await
        .unwrap_or_else(|e| panic!("reader: {e}"))
        .unwrap_or_else(|e| panic!("{e}"));
    records.into_iter().map(|r| (r.key.unwrap_or_default(), r.value.is_some())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stores_topic_deleted_and_created_again_gets_every_store_again() {
    bounded(async {
        let Some((plane, kafka)) = control_plane_and_kafka().await else { return };
        let s = Setup::new(plane, kafka, "republish", "republish").await;
        s.reconcile().await; // the finalizer
        s.reconcile().await; // the topics
        let regions: Api<StoreRegion> = s.api();
        let region: StoreRegion = serde_json::from_value(json!({
            "apiVersion": "retail.stockpulse.io/v1alpha1",
            "kind": "StoreRegion",
            "metadata": {"name": "eu-central", "namespace": "republish"},
            "spec": {
                "pipelineRef": {"name": "republish"},
                "region": "eu-central",
                "timezone": "Europe/Berlin",
                "currency": "EUR",
                "stores": [
                    {"id": "de-ber-001", "name": "Berlin", "channel": "physical", "country": "DE"},
                    {"id": "de-muc-002", "name": "Munich", "channel": "physical", "country": "DE"}
                ]
            }
        }))
        .unwrap_or_else(|e| panic!("region manifest: {e}"));
        regions.create(&PostParams::default(), &region).await.unwrap_or_else(|e| panic!("create region: {e}"));
        let reconcile_region = || async {
            let region = Arc::new(regions.get("eu-central").await.unwrap_or_else(|e| panic!("get region: {e}")));
            store_region::reconcile(region, s.ctx.clone()).await.unwrap_or_else(|e| panic!("region reconcile: {e}"))
        };
        reconcile_region().await; // the finalizer
        assert_eq!(reconcile_region().await, Action::requeue(store_region::RECHECK));
        let both = vec![("de-ber-001".to_string(), true), ("de-muc-002".to_string(), true)];
        assert_eq!(stores_on(kafka, "republish.stores").await, both);
        let status = regions.get("eu-central").await.unwrap_or_else(|e| panic!("{e}")).status.unwrap_or_default();
        let first_topic_id = status.published_topic_id.clone();
        assert!(first_topic_id.is_some(), "Apache Kafka tells topic ids: {status:?}");
        assert!(status.published_cluster_id.is_some(), "and its cluster id: {status:?}");

        // Reconciled again: nothing published.
        reconcile_region().await;
        assert_eq!(stores_on(kafka, "republish.stores").await, both);

        // The topic is deleted; the pipeline's reconcile creates it again (empty); the
        // region, reconciled while it was missing, says so, then publishes every store again.
        s.ctx.kafka.apply(&s.target(), &TopicAction::Delete { name: "republish.stores".into() }).await.unwrap();
        wait_until_gone(&s, "republish.stores").await;
        reconcile_region().await;
        let region = regions.get("eu-central").await.unwrap_or_else(|e| panic!("{e}"));
        let ready = region.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
        assert_eq!(ready.map(|c| c.reason).as_deref(), Some("TopicMissing"));
        s.reconcile().await;
        reconcile_region().await;
        assert_eq!(stores_on(kafka, "republish.stores").await, both);
        let status = regions.get("eu-central").await.unwrap_or_else(|e| panic!("{e}")).status.unwrap_or_default();
        assert!(status.published_topic_id.is_some() && status.published_topic_id != first_topic_id, "{status:?}");
    })
    .await;
}

/// Waits (up to 30 s) until the broker no longer lists `topic`.
async fn wait_until_gone(s: &Setup, topic: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while s.ctx.kafka.topic_identity(&s.target(), topic).await.unwrap_or_else(|e| panic!("{e}")).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "{topic} still listed 30 s after its deletion");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

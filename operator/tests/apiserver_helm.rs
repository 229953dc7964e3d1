//! `helm install` of `charts/stockpulse` against a real kube-apiserver of its own (etcd +
//! kube-apiserver, see stockpulse_testkit::control_plane, started without CRDs so the chart
//! installs them): every object of the release is accepted and stored, and the chart's RBAC,
//! used by impersonating the operator's ServiceAccount, lets the operator do a whole
//! reconcile of a pipeline (topics on a real Apache Kafka, the five objects, status, events,
//! the Lease, the deletion through the finalizer) and refuses what it does not need.
//!
//! No `--wait` and no kubelet: the operator's Deployment is stored, its pods never run.
//!
//! Skipped, with a printed `SKIPPED: control plane: ...`, where the binaries are not
//! installed, except in CI.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Secret, Service, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::pinned_kind;
use serde_json::{Value, json};
use stockpulse_operator::controller::cache::Caches;
use stockpulse_operator::controller::{Context, retail_pipeline};
use stockpulse_operator::crd::RetailPipeline;
use stockpulse_operator::kafka_admin::rdkafka_client::RdKafkaAccess;
use stockpulse_operator::leader::{LeaseConfig, release, try_lead};
use stockpulse_operator::metrics::Metrics;
use stockpulse_testkit::control_plane::{ControlPlane, binaries_or_skip};
use stockpulse_testkit::kafka::Kafka;

const RELEASE_NAMESPACE: &str = "stockpulse-system";
/// The operator's ServiceAccount as the chart names it for release `stockpulse`.
const OPERATOR_SA: &str = "stockpulse-operator";
const TEST_TIMEOUT: Duration = Duration::from_secs(300);

fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn helm(plane: &ControlPlane, args: &[&str]) -> String {
    let helm = stockpulse_testkit::tool("STOCKPULSE_HELM");
    let output = Command::new(&helm)
        .current_dir(repo_root())
        .args(args)
        .env("KUBECONFIG", &plane.kubeconfig)
        // helm's caches and config in the control plane's folder, not the user's home.
        .env("HELM_CACHE_HOME", plane.dir().join("helm/cache"))
        .env("HELM_CONFIG_HOME", plane.dir().join("helm/config"))
        .env("HELM_DATA_HOME", plane.dir().join("helm/data"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm.display()));
    assert!(
        output.status.success(),
        "helm {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `Kind namespace/name` of every object of a multi-document YAML stream.
fn objects_of(manifest: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(manifest)
        .filter_map(|doc| {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap_or_else(|e| panic!("manifest: {e}"));
            (!value.is_null()).then_some(value)
        })
        .collect()
}

fn forbidden<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) {
    match result {
        Err(kube::Error::Api(status)) if status.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_installs_the_chart_and_its_rbac_lets_the_operator_reconcile_and_no_more() {
    let test = async {
        let Some(binaries) = binaries_or_skip() else { return };
        let (plane, kafka) = tokio::task::spawn_blocking(move || (ControlPlane::start(&binaries), Kafka::shared()))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let admin = plane.client().await;

        // The chart, CRDs included, on an API server that has none yet.
        helm(
            &plane,
            &["install", "stockpulse", "charts/stockpulse", "--namespace", RELEASE_NAMESPACE, "--create-namespace"],
        );
        let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
        let mut names: Vec<String> = crds
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items
            .into_iter()
            .map(|c| {
                let established = c
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| cs.iter().any(|x| x.type_ == "Established" && x.status == "True"));
                format!("{} established={established}", c.metadata.name.unwrap_or_default())
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "alertpolicies.retail.stockpulse.io established=true",
                "retailpipelines.retail.stockpulse.io established=true",
                "storeregions.retail.stockpulse.io established=true"
            ]
        );

        // Every object of the release is stored as rendered.
        let manifest = helm(&plane, &["get", "manifest", "stockpulse", "--namespace", RELEASE_NAMESPACE]);
        let mut stored = Vec::new();
        for object in objects_of(&manifest) {
            let api_version = object["apiVersion"].as_str().unwrap_or_default();
            let kind = object["kind"].as_str().unwrap_or_default();
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let (resource, capabilities) = pinned_kind(&admin, &GroupVersionKind::gvk(group, version, kind))
                .await
                .unwrap_or_else(|e| panic!("{api_version} {kind}: {e}"));
            let api: Api<DynamicObject> = if capabilities.scope == kube::discovery::Scope::Namespaced {
                let namespace = object["metadata"]["namespace"].as_str().unwrap_or(RELEASE_NAMESPACE);
                Api::namespaced_with(admin.clone(), namespace, &resource)
            } else {
                Api::all_with(admin.clone(), &resource)
            };
            let found = api.get(name).await.unwrap_or_else(|e| panic!("{kind} {name} not stored: {e}"));
            let labels = found.metadata.labels.clone().unwrap_or_default();
            assert_eq!(labels.get("app.kubernetes.io/managed-by").map(String::as_str), Some("Helm"), "{kind} {name}");
            stored.push(format!("{kind}/{name}"));
        }
        stored.sort();
        assert_eq!(
            stored,
            [
                "ClusterRole/stockpulse-operator",
                "ClusterRoleBinding/stockpulse-operator",
                "Deployment/stockpulse-operator",
                "Role/stockpulse-operator-leader-election",
                "RoleBinding/stockpulse-operator-leader-election",
                "Service/stockpulse-operator-metrics",
                "ServiceAccount/stockpulse-operator",
            ]
        );

        // The operator as the API server sees it in the cluster: its ServiceAccount.
        let operator_user = format!("system:serviceaccount:{RELEASE_NAMESPACE}:{OPERATOR_SA}");
        let sa_group = format!("system:serviceaccounts:{RELEASE_NAMESPACE}");
        let operator =
            plane.client_as(&operator_user, &["system:serviceaccounts", &sa_group, "system:authenticated"]).await;

        // Leader election on the Lease of the release namespace.
        let lease = LeaseConfig {
            name: "stockpulse-operator".into(),
            namespace: RELEASE_NAMESPACE.into(),
            identity: "operator-0".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_every: Duration::from_secs(5),
        };
        let leases: Api<Lease> = Api::namespaced(operator.clone(), RELEASE_NAMESPACE);
        let now = chrono::Utc::now();
        assert!(try_lead(&leases, &lease, now).await.unwrap_or_else(|e| panic!("create the Lease: {e}")));
        assert!(try_lead(&leases, &lease, now).await.unwrap_or_else(|e| panic!("renew the Lease: {e}")));
        assert!(release(&leases, &lease).await.unwrap_or_else(|e| panic!("release the Lease: {e}")));

        // A pipeline (created by an admin) reconciled by the operator's identity.
        let namespace = "rbac";
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        namespaces
            .patch(namespace, &PatchParams::apply("stockpulse-test"), &Patch::Apply(&body))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pipeline: RetailPipeline = serde_json::from_value(json!({
            "apiVersion": "retail.stockpulse.io/v1alpha1",
            "kind": "RetailPipeline",
            "metadata": {"name": "rbac", "namespace": namespace},
            "spec": {
                "kafka": {"bootstrapServers": kafka.bootstrap},
                "topics": {"partitions": 1, "replicationFactor": 1, "deletionPolicy": "Delete"},
                "processor": {"image": "stockpulse-processor:test"}
            }
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        Api::<RetailPipeline>::namespaced(admin.clone(), namespace)
            .create(&PostParams::default(), &pipeline)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The operator reads through watch caches (list and watch), as `run` does.
        let ctx = Arc::new(
            Context::new(
                operator.clone(),
                Arc::new(RdKafkaAccess::default()),
                Arc::new(Metrics::default()),
                Some("operator-0".to_string()),
            )
            .with_caches(Caches::spawn(&operator, Some(namespace))),
        );
        let as_operator: Api<RetailPipeline> = Api::namespaced(operator.clone(), namespace);
        let as_admin: Api<RetailPipeline> = Api::namespaced(admin.clone(), namespace);
        let reconcile = || async {
            let current = as_admin.get("rbac").await.unwrap_or_else(|e| panic!("{e}"));
            retail_pipeline::reconcile(Arc::new(current), ctx.clone())
                .await
                .unwrap_or_else(|e| panic!("reconcile as the operator: {e}"))
        };
        reconcile().await; // the finalizer
        reconcile().await; // topics, objects, status, event
        let reconciled = as_admin.get("rbac").await.unwrap_or_else(|e| panic!("{e}"));
        let topics_ready = reconciled
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "TopicsReady"))
            .map(|c| (c.status.clone(), c.reason.clone()));
        assert_eq!(topics_ready, Some(("True".to_string(), "TopicsReconciled".to_string())));
        Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
            .get("rbac-processor")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Api::<ConfigMap>::namespaced(admin.clone(), namespace)
            .get("rbac-config")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Api::<Service>::namespaced(admin.clone(), namespace)
            .get("rbac-processor")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Api::<PodDisruptionBudget>::namespaced(admin.clone(), namespace)
            .get("rbac-processor")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Api::<Deployment>::namespaced(admin.clone(), namespace)
            .get("rbac-processor")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The event was allowed too (the recorder only logs a refused one).
        let events: Vec<String> = Api::<Event>::namespaced(admin.clone(), namespace)
            .list(&ListParams::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items
            .into_iter()
            .map(|e| e.reason.unwrap_or_default())
            .collect();
        assert_eq!(events, ["Reconciled"]);

        // And no more: what the operator never does is refused. It reads and watches Secrets
        // (a changed Kafka credential is picked up at once) but never writes one.
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "planted", "namespace": namespace}
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        forbidden(
            Api::<Secret>::namespaced(operator.clone(), namespace).create(&PostParams::default(), &secret).await,
            "create a Secret",
        );
        forbidden(as_operator.delete("rbac", &DeleteParams::default()).await, "delete a RetailPipeline");
        forbidden(
            try_lead(
                &Api::namespaced(operator.clone(), namespace),
                &LeaseConfig { namespace: namespace.into(), ..lease.clone() },
                now,
            )
            .await
            .map_err(|e| match e {
                stockpulse_operator::Error::Kube(k) => k,
                other => panic!("{other}"),
            }),
            "a Lease outside the release namespace",
        );
        forbidden(Api::<Node>::all(operator.clone()).list(&ListParams::default()).await, "list Nodes");
        forbidden(
            Api::<Namespace>::all(operator.clone()).delete(namespace, &DeleteParams::default()).await,
            "delete a Namespace",
        );

        // Deletion: the finalizer runs under the operator's identity too.
        Api::<RetailPipeline>::namespaced(admin.clone(), namespace)
            .delete("rbac", &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        reconcile().await;
        assert!(as_admin.get_opt("rbac").await.unwrap_or_else(|e| panic!("{e}")).is_none());
        drop(plane);
    };
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("helm test timed out");
}

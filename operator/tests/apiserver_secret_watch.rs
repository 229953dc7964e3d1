//! Secrets are watched: a `stockpulse-operator run` process on a real kube-apiserver
//! (stockpulse_testkit::control_plane) reconciles a pipeline as soon as a Secret it names is
//! created or changed, not at its next retry (30 s after `SecretNotFound`). The pipeline
//! names a SASL Secret that does not exist: `Ready=False SecretNotFound`. The Secret is then
//! created without its `password` key: the condition turns to `SecretKeyMissing` within a few
//! seconds, well before the 30-s retry. The test prints how long it took. With
//! `--watch-secrets=false` the operator makes no list or watch of Secrets, only the GET.
//!
//! Skipped, with a printed `SKIPPED: control plane: ...`, where the binaries are not
//! installed, except in CI.

use std::ffi::OsStr;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use stockpulse_operator::controller::retail_pipeline::NOT_READY_RETRY;
use stockpulse_operator::crd::RetailPipeline;
use stockpulse_testkit::control_plane::{ControlPlane, Guarded};
use stockpulse_testkit::kafka::Kafka;
use stockpulse_testkit::{free_port, operator_requests};

const NAMESPACE: &str = "secret-watch";
const TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// The reason of the pipeline's `Ready` condition, once it has one.
async fn ready_reason(pipelines: &Api<RetailPipeline>) -> Option<String> {
    let pipeline = pipelines.get_opt("watched").await.ok().flatten()?;
    let status = pipeline.status?;
    status.conditions.into_iter().find(|c| c.type_ == "Ready").map(|c| c.reason)
}

/// Waits up to `bound` for the `Ready` reason to be `want`; the time it took.
async fn reason_within(
    pipelines: &Api<RetailPipeline>,
    want: &str,
    bound: Duration,
    log: impl Fn() -> String,
) -> Duration {
    let start = Instant::now();
    loop {
        if ready_reason(pipelines).await.as_deref() == Some(want) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < bound,
            "Ready reason {:?}, not {want}, after {bound:?}; operator log:\n{}",
            ready_reason(pipelines).await,
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `stockpulse-operator run` process watching `namespace` (with `--watch-secrets` as
/// given), and a pipeline there naming the SASL Secret `kafka-user`, which does not exist.
struct Started {
    operator: Guarded,
    http: String,
    pipelines: Api<RetailPipeline>,
    secrets: Api<Secret>,
}

async fn start(namespace: &str, watch_secrets: bool) -> Option<Started> {
    let (plane, kafka) = tokio::task::spawn_blocking(|| ControlPlane::shared().map(|plane| (plane, Kafka::shared())))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    let client = plane.client().await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
    namespaces.patch(namespace, &PatchParams::apply("stockpulse-test"), &Patch::Apply(&body)).await.unwrap();

    let http = format!("127.0.0.1:{}", free_port());
    let args: Vec<String> = [
        "run",
        "--http-addr",
        &http,
        "--namespace",
        namespace,
        "--leader-election",
        "false",
        "--watch-secrets",
        if watch_secrets { "true" } else { "false" },
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let log_filter = std::env::var("STOCKPULSE_OPERATOR_RUST_LOG").unwrap_or_else(|_| "info".into());
    let operator = Guarded::spawn(
        &format!("{namespace}-operator"),
        Path::new(env!("CARGO_BIN_EXE_stockpulse-operator")),
        &args,
        &[("KUBECONFIG", plane.kubeconfig.as_os_str()), ("RUST_LOG", OsStr::new(&log_filter))],
        plane.dir().join(format!("{namespace}-operator.log")),
    );

    let pipelines: Api<RetailPipeline> = Api::namespaced(client.clone(), namespace);
    let manifest: RetailPipeline = serde_json::from_value(json!({
        "apiVersion": "retail.stockpulse.io/v1alpha1",
        "kind": "RetailPipeline",
        "metadata": {"name": "watched", "namespace": namespace},
        "spec": {
            "kafka": {
                "bootstrapServers": kafka.bootstrap,
                "sasl": {"mechanism": "SCRAM-SHA-512", "secretRef": {"name": "kafka-user"}}
            },
            "processor": {"image": "stockpulse-processor:test"}
        }
    }))
    .unwrap();
    pipelines.create(&PostParams::default(), &manifest).await.unwrap();
    reason_within(&pipelines, "SecretNotFound", Duration::from_secs(60), || operator.log_text()).await;
    Some(Started { operator, http, pipelines, secrets: Api::namespaced(client, namespace) })
}

/// The operator's requests on Secrets so far, by verb.
fn secret_requests(http: &str) -> Vec<(String, u64)> {
    let requests = operator_requests(http).unwrap_or_else(|e| panic!("{e}"));
    requests.into_iter().filter(|((_, resource), _)| resource == "secrets").map(|((verb, _), n)| (verb, n)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_secret_is_picked_up_at_once_not_at_the_next_retry() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let Some(started) = start(NAMESPACE, true).await else {
            return;
        };
        // The Secret arrives, still without its password.
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "kafka-user", "namespace": NAMESPACE},
            "stringData": {"username": "pos-gateway"}
        }))
        .unwrap();
        started.secrets.create(&PostParams::default(), &secret).await.unwrap();
        let bound = NOT_READY_RETRY / 2;
        let took = reason_within(&started.pipelines, "SecretKeyMissing", bound, || started.operator.log_text()).await;
        println!("secret watch: the pipeline saw its new Secret after {took:?} (the retry would come after {NOT_READY_RETRY:?})");
        // The read behind it is the one use of `get` on Secrets, which the chart grants (the
        // local suite's Kafka names no Secret, so its RBAC check counts on this test for it).
        let requests = secret_requests(&started.http);
        let verbs: Vec<&str> = requests.iter().map(|(verb, _)| verb.as_str()).collect();
        assert_eq!(verbs, ["get", "list", "watch"], "{requests:?}");
    })
    .await
    .expect("secret watch test timed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_secret_watch_off_the_operator_only_gets_secrets() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let Some(started) = start("no-secret-watch", false).await else {
            return;
        };
        // `SecretNotFound` came from a GET; no list or watch of Secrets was made, which is
        // what the chart's `watchSecrets: false` grants.
        let requests = secret_requests(&started.http);
        let verbs: Vec<&str> = requests.iter().map(|(verb, _)| verb.as_str()).collect();
        assert_eq!(verbs, ["get"], "{requests:?}");
    })
    .await
    .expect("secret watch test timed out");
}

//! Test-only builders and the mocked API server (kube-rs's `ApiServerVerifier` pattern:
//! every expected request is asserted — method, path, field manager — and answered, in
//! order; every test is bounded by a timeout so a missing request fails fast).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{Request, Response};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use crate::controller::Context;
use crate::crd::{AlertPolicy, RetailPipeline, StoreRegion};
use crate::kafka_admin::memory::MemoryKafka;
use crate::metrics::Metrics;

pub const NS: &str = "acme";

/// The time every controller test runs at.
pub fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").map(|t| t.with_timezone(&Utc)).unwrap_or_default()
}

/// A small pipeline `shop` in namespace `acme`, with uid and generation as the API server sets them.
pub fn pipeline_yaml() -> &'static str {
    r#"
apiVersion: retail.stockpulse.io/v1alpha1
kind: RetailPipeline
metadata:
  name: shop
  namespace: acme
  uid: 11111111-2222-3333-4444-555555555555
  generation: 1
  finalizers: [retail.stockpulse.io/topics]
spec:
  kafka:
    bootstrapServers: kafka:9092
  topics:
    partitions: 3
    replicationFactor: 1
    sales:
      deletionPolicy: Delete
      retention: 1d
  processor:
    image: stockpulse-processor:test
    minReplicas: 1
    maxReplicas: 2
"#
}

pub fn pipeline() -> RetailPipeline {
    from_yaml(pipeline_yaml())
}

pub fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("fixture does not parse: {e}\n{yaml}"))
}

pub fn region(name: &str, pipeline: &str, stores: &[&str]) -> StoreRegion {
    let stores: Vec<Value> = stores
        .iter()
        .map(|id| json!({"id": id, "name": format!("Store {id}"), "channel": "physical", "country": "DE", "city": "Berlin"}))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "retail.stockpulse.io/v1alpha1",
        "kind": "StoreRegion",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": 1,
                     "finalizers": ["retail.stockpulse.io/stores"]},
        "spec": {"pipelineRef": {"name": pipeline}, "region": name, "timezone": "Europe/Berlin", "currency": "EUR",
                 "stores": stores}
    }))
    .unwrap_or_else(|e| panic!("region fixture: {e}"))
}

pub fn low_stock_policy(name: &str, pipeline: &str, threshold: i64) -> AlertPolicy {
    serde_json::from_value(json!({
        "apiVersion": "retail.stockpulse.io/v1alpha1",
        "kind": "AlertPolicy",
        "metadata": {"name": name, "namespace": NS, "uid": format!("uid-{name}"), "generation": 1},
        "spec": {"pipelineRef": {"name": pipeline}, "rules": {"lowStock": {"threshold": threshold}}}
    }))
    .unwrap_or_else(|e| panic!("policy fixture: {e}"))
}

/// A context on a mocked API server and an in-memory Kafka, at [`now`].
pub fn context(kafka: Arc<MemoryKafka>) -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, NS);
    let ctx =
        Context::new(client, kafka, Arc::new(Metrics::default()), Some("test".to_string())).with_clock(Arc::new(now));
    (Arc::new(ctx), ApiServerVerifier(handle))
}

/// One expected request and its answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub method: &'static str,
    pub path: String,
    /// Status of the answer.
    pub status: u16,
    /// Body of the answer; `Echo` answers with the request body.
    pub answer: Answer,
}

#[derive(Clone, Debug)]
pub enum Answer {
    Json(Value),
    Echo,
    /// The request body, with `status` merged in (a Deployment as the API server returns it).
    EchoWithStatus(Value),
    NotFound,
}

impl Exchange {
    pub fn get(path: impl Into<String>, answer: Value) -> Self {
        Exchange { method: "GET", path: path.into(), status: 200, answer: Answer::Json(answer) }
    }
    pub fn get_missing(path: impl Into<String>) -> Self {
        Exchange { method: "GET", path: path.into(), status: 404, answer: Answer::NotFound }
    }
    pub fn patch(path: impl Into<String>) -> Self {
        Exchange { method: "PATCH", path: path.into(), status: 200, answer: Answer::Echo }
    }
    pub fn patch_answering(path: impl Into<String>, answer: Answer) -> Self {
        Exchange { method: "PATCH", path: path.into(), status: 200, answer }
    }
    /// A DELETE answered with a success Status (a Deployment deleted in the background).
    pub fn delete(path: impl Into<String>) -> Self {
        let answer = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
        Exchange { method: "DELETE", path: path.into(), status: 200, answer: Answer::Json(answer) }
    }
    pub fn post(path: impl Into<String>) -> Self {
        Exchange { method: "POST", path: path.into(), status: 201, answer: Answer::Echo }
    }
}

/// A request as the verifier received it.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

pub struct ApiServerVerifier(tower_test::mock::Handle<Request<Body>, Response<Body>>);

fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound",
           "message": "not found", "code": 404})
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

impl ApiServerVerifier {
    /// Answers `script` in order, asserting each request; returns what was received.
    pub async fn run(mut self, script: Vec<Exchange>) -> Vec<Received> {
        let mut received = Vec::new();
        for (i, expected) in script.into_iter().enumerate() {
            let Some((request, respond)) = self.0.next_request().await else {
                panic!("request {i} ({} {}) never came", expected.method, expected.path);
            };
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let query = request.uri().query().unwrap_or("").to_string();
            let content_type =
                request.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            let bytes = request.into_body().collect_bytes().await.unwrap_or_default();
            let body: Value =
                if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap_or(Value::Null) };
            assert_eq!(
                (method.as_str(), path.as_str()),
                (expected.method, expected.path.as_str()),
                "request {i}: expected {} {}, got {method} {path}?{query}",
                expected.method,
                expected.path
            );
            let answer = match &expected.answer {
                Answer::Json(v) => v.clone(),
                Answer::Echo => body.clone(),
                Answer::EchoWithStatus(status) => {
                    let mut v = body.clone();
                    merge(&mut v, &json!({ "status": status }));
                    v
                }
                Answer::NotFound => not_found(),
            };
            let response = Response::builder()
                .status(expected.status)
                .header("content-type", "application/json")
                .body(Body::from(serde_json::to_vec(&answer).unwrap_or_default()))
                .unwrap_or_else(|e| panic!("response: {e}"));
            respond.send_response(response);
            received.push(Received { method, path, query, content_type, body });
        }
        received
    }
}

/// Runs `reconcile` against the verifier playing `script`, both bounded by a timeout.
pub async fn play<F, T>(verifier: ApiServerVerifier, script: Vec<Exchange>, reconcile: F) -> (T, Vec<Received>)
where
    F: std::future::Future<Output = T>,
{
    let server = tokio::spawn(verifier.run(script));
    let result = tokio::time::timeout(Duration::from_secs(5), reconcile).await.expect("reconcile timed out");
    let received = tokio::time::timeout(Duration::from_secs(1), server)
        .await
        .expect("the API server script was not played to the end")
        .unwrap_or_else(|e| panic!("API server script failed: {e}"));
    (result, received)
}

/// Paths of the mocked API.
pub mod paths {
    use super::NS;

    pub fn pipeline(name: &str) -> String {
        format!("/apis/retail.stockpulse.io/v1alpha1/namespaces/{NS}/retailpipelines/{name}")
    }
    pub fn pipeline_status(name: &str) -> String {
        format!("{}/status", pipeline(name))
    }
    pub fn regions() -> String {
        format!("/apis/retail.stockpulse.io/v1alpha1/namespaces/{NS}/storeregions")
    }
    pub fn region(name: &str) -> String {
        format!("{}/{name}", regions())
    }
    pub fn policies() -> String {
        format!("/apis/retail.stockpulse.io/v1alpha1/namespaces/{NS}/alertpolicies")
    }
    pub fn policy(name: &str) -> String {
        format!("{}/{name}", policies())
    }
    pub fn service_account(name: &str) -> String {
        format!("/api/v1/namespaces/{NS}/serviceaccounts/{name}")
    }
    pub fn config_map(name: &str) -> String {
        format!("/api/v1/namespaces/{NS}/configmaps/{name}")
    }
    pub fn service(name: &str) -> String {
        format!("/api/v1/namespaces/{NS}/services/{name}")
    }
    pub fn pdb(name: &str) -> String {
        format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/{name}")
    }
    pub fn deployment(name: &str) -> String {
        format!("/apis/apps/v1/namespaces/{NS}/deployments/{name}")
    }
    pub fn events() -> String {
        format!("/apis/events.k8s.io/v1/namespaces/{NS}/events")
    }
}

/// A list answer.
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "retail.stockpulse.io/v1alpha1", "kind": format!("{kind}List"), "metadata": {}, "items": items})
}

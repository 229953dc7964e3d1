//! The CRDs of `crds/` on a real kube-apiserver (etcd + kube-apiserver from
//! `scripts/install-test-tools.sh`, see stockpulse_testkit::control_plane): the API server's
//! own schema and CEL validation refuses every file of `e2e/wrong/` with the message in its
//! `# expect:` line, refuses the wrong variants of the samples that `crd_schema.rs` checks
//! offline with the API server's exact message, and accepts and stores every sample of
//! `manifests/samples/`.
//!
//! The exact messages show where the offline emulation (support/schema.rs) words things
//! differently from kube-apiserver 1.37: a CEL rule's message has no `"object": ` after
//! `Invalid value:`, a duplicate list-map key reads `Duplicate value: {"name":"sales-5m"}`,
//! an unknown field is refused by strict decoding (400) before validation, and a missing
//! required field adds a note that the CEL rules were not checked.
//!
//! Skipped, with a printed `SKIPPED: control plane: ...`, where the binaries are not
//! installed, except in CI.

use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use stockpulse_operator::crd::{AlertPolicy, RetailPipeline, StoreRegion};
use stockpulse_testkit::control_plane::ControlPlane;

/// Every test here is bounded, the control plane's start included.
const TEST_TIMEOUT: Duration = Duration::from_secs(240);

async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("API-server test timed out");
}

/// The shared control plane, started off the async workers; `None` where skipped.
async fn control_plane() -> Option<&'static ControlPlane> {
    tokio::task::spawn_blocking(ControlPlane::shared)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

fn resource_of(kind: &str) -> ApiResource {
    match kind {
        "RetailPipeline" => ApiResource::erase::<RetailPipeline>(&()),
        "StoreRegion" => ApiResource::erase::<StoreRegion>(&()),
        "AlertPolicy" => ApiResource::erase::<AlertPolicy>(&()),
        other => panic!("unknown kind {other}"),
    }
}

async fn ensure_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
    namespaces
        .patch(name, &PatchParams::apply("stockpulse-test"), &Patch::Apply(&body))
        .await
        .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
}

/// Creates `object` in `namespace` as a dry run with strict field validation, as
/// `kubectl create --dry-run=server` (and `kubectl apply` of a new object) sends it: the API
/// server validates it completely and stores nothing. Returns its refusal message, or
/// `None` when it was accepted.
async fn dry_run_create(client: &kube::Client, object: &Value, namespace: &str) -> Option<String> {
    let kind = object["kind"].as_str().unwrap_or_else(|| panic!("no kind in {object}"));
    let resource = resource_of(kind);
    let mut object = object.clone();
    object["metadata"]["namespace"] = json!(namespace);
    let url = format!(
        "/apis/{}/namespaces/{namespace}/{}?dryRun=All&fieldValidation=Strict&fieldManager=stockpulse-test",
        resource.api_version, resource.plural
    );
    let body = serde_json::to_vec(&object).unwrap_or_else(|e| panic!("{e}"));
    let request = http::Request::post(url)
        .header("content-type", "application/json")
        .body(body)
        .unwrap_or_else(|e| panic!("request: {e}"));
    match client.request::<Value>(request).await {
        Ok(_) => None,
        Err(kube::Error::Api(status)) => {
            // 422 for the schema and CEL rules; 400 for what strict decoding refuses
            // (unknown fields) before validation.
            let refusal = (status.code, status.reason.as_str());
            assert!(
                refusal == (422, "Invalid")
                    || (refusal == (400, "BadRequest") && status.message.contains("strict decoding error")),
                "not a validation refusal: {status:?}"
            );
            Some(status.message)
        }
        Err(e) => panic!("creating {kind} failed other than by validation: {e}"),
    }
}

/// Whether every field of `sent` is in `stored` with the same value (numbers compared as
/// numbers: the API server stores `3.0` as `3`).
fn stored_as_sent(sent: &Value, stored: &Value) -> bool {
    match (sent, stored) {
        (Value::Object(a), Value::Object(b)) => a.iter().all(|(k, v)| b.get(k).is_some_and(|w| stored_as_sent(v, w))),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(v, w)| stored_as_sent(v, w)),
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (a, b) => a == b,
    }
}

fn repo_root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The YAML files of a folder of the repository, sorted by name.
fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    stockpulse_testkit::yaml_files(&repo_root().join(dir))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_refuses_every_file_of_e2e_wrong_with_its_expected_message() {
    bounded(async {
        let Some(plane) = control_plane().await else { return };
        let client = plane.client().await;
        ensure_namespace(&client, "acme-sports").await;
        let files = yaml_files("e2e/wrong");
        assert_eq!(files.len(), 5, "{files:?}");
        let mut failures = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let expect = text
                .lines()
                .find_map(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} has no `# expect:` line", file.display()));
            let object: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default").to_string();
            match dry_run_create(&client, &object, &namespace).await {
                Some(message) if message.contains(expect) => {}
                Some(message) => failures.push(format!("{}: expected {expect:?} in {message:?}", file.display())),
                None => failures.push(format!("{}: accepted", file.display())),
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    })
    .await;
}

/// Sets (`Some`) or removes (`None`) the value at a JSON pointer whose parent exists.
fn change(object: &mut Value, pointer: &str, value: Option<Value>) {
    let (parent, last) = pointer.rsplit_once('/').unwrap_or_else(|| panic!("bad pointer {pointer}"));
    let at = object.pointer_mut(parent).unwrap_or_else(|| panic!("{parent} not in the sample"));
    match (at, value) {
        (Value::Object(map), Some(v)) => {
            map.insert(last.to_string(), v);
        }
        (Value::Object(map), None) => {
            map.remove(last);
        }
        (Value::Array(items), Some(v)) => {
            let index: usize = last.parse().unwrap_or_else(|e| panic!("{pointer}: {e}"));
            items[index] = v;
        }
        (other, _) => panic!("cannot change {pointer} in {other}"),
    }
}

fn sample(name: &str) -> Value {
    let path = repo_root().join("manifests/samples").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The wrong variants of `crd_schema.rs` (`wrong_resources_are_refused_with_a_clear_message`),
/// each with the whole message of kube-apiserver 1.37: the schema and CEL rules of each CRD.
/// What a variant is (for the failure message), the sample it starts from, the changes
/// (JSON pointer, new value or `None` to remove), and the API server's whole message.
type Variant = (&'static str, &'static str, Vec<(&'static str, Option<Value>)>, &'static str);

fn wrong_variants() -> Vec<Variant> {
    let pipeline = "retailpipeline-acme-sports.yaml";
    let region = "storeregion-eu-central.yaml";
    let policy = "alertpolicy-sales-spike.yaml";
    vec![
        (
            "negative partitions of one topic",
            pipeline,
            vec![("/spec/topics/sales/partitions", Some(json!(-1)))],
            "RetailPipeline.retail.stockpulse.io \"acme-sports\" is invalid: spec.topics.sales.partitions: Invalid value: -1: spec.topics.sales.partitions in body should be greater than or equal to 1",
        ),
        (
            "bad duration",
            pipeline,
            vec![("/spec/processing/windows/0/size", Some(json!("5 minutes")))],
            "RetailPipeline.retail.stockpulse.io \"acme-sports\" is invalid: spec.processing.windows[0].size: Invalid value: \"5 minutes\": spec.processing.windows[0].size in body should match '^([0-9]+(ms|s|m|h|d))+$'",
        ),
        (
            "slide larger than size",
            pipeline,
            vec![("/spec/processing/windows/1/slide", Some(json!("2h")))],
            "RetailPipeline.retail.stockpulse.io \"acme-sports\" is invalid: spec.processing.windows[1]: Invalid value: slide must be at most size and divide it evenly",
        ),
        (
            "sliding window without slide",
            pipeline,
            vec![("/spec/processing/windows/1/slide", None)],
            "RetailPipeline.retail.stockpulse.io \"acme-sports\" is invalid: spec.processing.windows[1]: Invalid value: a sliding window needs a slide, a tumbling window has none",
        ),
        (
            "two windows with one name",
            pipeline,
            vec![("/spec/processing/windows/2/name", Some(json!("sales-5m")))],
            "RetailPipeline.retail.stockpulse.io \"acme-sports\" is invalid: spec.processing.windows[2]: Duplicate value: {\"name\":\"sales-5m\"}",
        ),
        (
            "schedule ending before it starts",
            pipeline,
            vec![("/spec/processor/schedules/0/end", Some(json!("2026-11-26T00:00:00Z")))],
            "RetailPipeline.retail.stockpulse.io \"acme-sports\" is invalid: spec.processor.schedules[0]: Invalid value: end must be after start",
        ),
        (
            "misspelt field",
            pipeline,
            vec![("/spec/processing/alowedLateness", Some(json!("10m")))],
            "RetailPipeline in version \"v1alpha1\" cannot be handled as a RetailPipeline: strict decoding error: unknown field \"spec.processing.alowedLateness\"",
        ),
        (
            "missing bootstrap servers",
            pipeline,
            vec![("/spec/kafka/bootstrapServers", None)],
            "RetailPipeline.retail.stockpulse.io \"acme-sports\" is invalid: [spec.kafka.bootstrapServers: Required value, <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]",
        ),
        (
            "pipeline name too long for its objects",
            pipeline,
            vec![("/metadata/name", Some(json!("acme-sports-with-a-very-long-name-for-its-pipeline-xyz")))],
            "RetailPipeline.retail.stockpulse.io \"acme-sports-with-a-very-long-name-for-its-pipeline-xyz\" is invalid: <nil>: Invalid value: the name must be a DNS-1035 label of at most 53 characters: the processor's objects are named <name>-processor",
        ),
        (
            "unknown store channel",
            region,
            vec![("/spec/stores/0/channel", Some(json!("kiosk")))],
            "StoreRegion.retail.stockpulse.io \"eu-central\" is invalid: [spec.stores[0].channel: Unsupported value: \"kiosk\": supported values: \"physical\", \"online\", \"warehouse\", \"marketplace\", <nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation]",
        ),
        (
            "lower-case currency",
            region,
            vec![("/spec/currency", Some(json!("eur")))],
            "StoreRegion.retail.stockpulse.io \"eu-central\" is invalid: spec.currency: Invalid value: \"eur\": spec.currency in body should match '^[A-Z]{3}$'",
        ),
        (
            "duplicate store id",
            region,
            vec![("/spec/stores/1/id", Some(json!("de-ber-001")))],
            "StoreRegion.retail.stockpulse.io \"eu-central\" is invalid: spec.stores[1]: Duplicate value: {\"id\":\"de-ber-001\"}",
        ),
        (
            "policy without a rule",
            policy,
            vec![("/spec/rules/salesSpike", None), ("/spec/rules/amountOutlier", None)],
            "AlertPolicy.retail.stockpulse.io \"sales-spike\" is invalid: spec.rules: Invalid value: at least one rule is required: lowStock, stuckInventory, salesSpike or amountOutlier",
        ),
        (
            "spike factor not above 1",
            policy,
            vec![("/spec/rules/salesSpike/factor", Some(json!(0.5)))],
            "AlertPolicy.retail.stockpulse.io \"sales-spike\" is invalid: spec.rules.salesSpike: Invalid value: factor must be greater than 1",
        ),
        (
            "region name too long for its replicator",
            region,
            vec![("/metadata/name", Some(json!("eu-central-with-a-very-long-name-for-its-replicator-x")))],
            "StoreRegion.retail.stockpulse.io \"eu-central-with-a-very-long-name-for-its-replicator-x\" is invalid: <nil>: Invalid value: the name must be a DNS-1035 label of at most 52 characters: the region's replicator is named <name>-replicator and labelled with <name>",
        ),
        (
            "policy name that is no DNS label",
            policy,
            vec![("/metadata/name", Some(json!("sales.spike")))],
            "AlertPolicy.retail.stockpulse.io \"sales.spike\" is invalid: <nil>: Invalid value: the name must be a DNS-1123 label of at most 63 characters: it names the policy in alert records, metric labels and the processor's config",
        ),
        (
            "sink with two targets",
            policy,
            vec![("/spec/sinks/0/webhook", Some(json!({"urlSecretRef": {"name": "s", "key": "url"}})))],
            "AlertPolicy.retail.stockpulse.io \"sales-spike\" is invalid: spec.sinks[0]: Invalid value: a sink is exactly one of kafka or webhook",
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_crd_refuses_wrong_variants_of_the_samples_in_the_api_servers_words() {
    bounded(async {
        let Some(plane) = control_plane().await else { return };
        let client = plane.client().await;
        ensure_namespace(&client, "wrong-variants").await;
        let mut failures = Vec::new();
        let mut kinds = std::collections::BTreeSet::new();
        for (what, file, changes, expected) in wrong_variants() {
            let mut object = sample(file);
            for (pointer, value) in changes {
                change(&mut object, pointer, value);
            }
            kinds.insert(object["kind"].as_str().unwrap_or_default().to_string());
            match dry_run_create(&client, &object, "wrong-variants").await {
                Some(message) if message == expected => {}
                Some(message) => failures.push(format!("{what}:\n  expected {expected:?}\n  found    {message:?}")),
                None => failures.push(format!("{what}: accepted")),
            }
        }
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["AlertPolicy", "RetailPipeline", "StoreRegion"]);
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_accepts_and_stores_every_sample() {
    bounded(async {
        let Some(plane) = control_plane().await else { return };
        let client = plane.client().await;
        let files = yaml_files("manifests/samples");
        assert_eq!(files.len(), 5, "{files:?}");
        for file in &files {
            let object: Value = serde_yaml::from_str(&std::fs::read_to_string(file).unwrap_or_default())
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
            let kind = object["kind"].as_str().unwrap_or_default();
            let namespace = object["metadata"]["namespace"].as_str().unwrap_or("default");
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            ensure_namespace(&client, namespace).await;
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource_of(kind));
            let created: DynamicObject = api
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
                )
                .await
                .unwrap_or_else(|e| panic!("{} refused: {e}", file.display()));
            // Stored as sent: the server's defaults only add fields.
            let stored = api.get(name).await.unwrap_or_else(|e| panic!("{kind} {namespace}/{name}: {e}"));
            assert_eq!(stored.metadata.uid, created.metadata.uid);
            assert_eq!(stored.metadata.generation, Some(1), "{}", file.display());
            let stored = serde_json::to_value(&stored).unwrap_or_default();
            assert!(
                stored_as_sent(&object["spec"], &stored["spec"]),
                "{}: stored spec {} does not contain the sample's {}",
                file.display(),
                stored["spec"],
                object["spec"]
            );
        }
    })
    .await;
}

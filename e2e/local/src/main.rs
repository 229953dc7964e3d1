//! `stockpulse-e2e-local`: the local end-to-end suite (run by `e2e/local.sh`, which builds the
//! binaries and checks the tools first). On one machine, without Docker: etcd,
//! kube-apiserver and kube-controller-manager (the garbage collector only), Apache Kafka, the
//! operator as a process, and the process kubelet (`stockpulse-process-kubelet`) that runs
//! the processor Deployment's pods as local processes.
//!
//! It applies the samples of `manifests/samples/` (bootstrap servers pointed at the local
//! broker, replication factor 1, the brand's catalog from a ConfigMap), produces generated
//! events, starts the kubelet, waits for `Ready`, compares every output topic with `replay`
//! of the same events, kills a processor, changes the config, scales up and down, gives a
//! region a Kafka cluster of its own (tansu) and so a replicator, deletes the pipeline, and
//! prints `ok   - <check>` / `FAIL - <check>` lines and `e2e-local: N passed, M failed`.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use kube::discovery::{Scope, pinned_kind};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, TopicPartitionList};
use serde_json::{Value, json};
use stockpulse_e2e_local::kubelet::repository_of;
use stockpulse_e2e_local::rbac;
use stockpulse_processor::config::{PipelineConfig, TopicRole};
use stockpulse_processor::generator::brand::catalog;
use stockpulse_processor::generator::{Traffic, TrafficOptions};
use stockpulse_processor::reference::StoreRecord;
use stockpulse_testkit::control_plane::{Binaries, ControlPlane, Guarded};
use stockpulse_testkit::kafka::Kafka;
use stockpulse_testkit::kafka::{Record, read_committed};
use stockpulse_testkit::{http_get, operator_requests};

const NS: &str = "acme-sports";
const PIPELINE: &str = "acme-sports";
const DEPLOYMENT: &str = "acme-sports-processor";
const CONFIG_MAP: &str = "acme-sports-config";
const CATALOG_CONFIG_MAP: &str = "acme-sports-catalog";
const CATALOG_KEY: &str = "catalog.ndjson";
const WEBHOOK_SECRET: &str = "acme-sports-slack";
const LEASE_NAMESPACE: &str = "stockpulse-system";
const OPERATOR_IDENTITY: &str = "e2e-local-operator";
const MANAGER: &str = "stockpulse-e2e-local";
const GROUP: &str = "retail.stockpulse.io";
/// The image the operator gives its replicator Deployments (`STOCKPULSE_OPERATOR_IMAGE`),
/// which the kubelet maps to the operator's binary.
const OPERATOR_IMAGE: &str = "ghcr.io/stockpulse/stockpulse-operator:e2e-local";
/// The region that gets a Kafka cluster of its own (a tansu broker).
const REPLICATED_REGION: &str = "eu-central";
const VERSION: &str = "v1alpha1";

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);

#[derive(Parser, Clone)]
#[command(name = "stockpulse-e2e-local", about = "The local end-to-end suite (run it through e2e/local.sh)")]
struct Cli {
    #[arg(long)]
    processor: PathBuf,
    #[arg(long)]
    operator: PathBuf,
    #[arg(long)]
    kubelet: PathBuf,
    /// The repository root (samples, namespace manifest).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Generated events to produce (plus one sentinel per input partition and topic).
    #[arg(long, env = "E2E_LOCAL_EVENTS", default_value_t = 10_000)]
    events: usize,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the work folder (logs, pod folders) after the run.
    #[arg(long, env = "E2E_LOCAL_KEEP", value_parser = clap::builder::FalseyValueParser::new())]
    keep: bool,
}

fn check(name: &str, result: Result<(), String>) -> bool {
    match result {
        Ok(()) => {
            println!("ok   - {name}");
            PASSED.fetch_add(1, Ordering::Relaxed);
            true
        }
        Err(why) => {
            println!("FAIL - {name}");
            for line in why.lines().take(40) {
                println!("#   {line}");
            }
            FAILED.fetch_add(1, Ordering::Relaxed);
            false
        }
    }
}

/// Retries `probe` every second until it succeeds, or returns its last error after `timeout`.
async fn eventually<F, Fut>(timeout: Duration, mut probe: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last = match probe().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(format!("not within {timeout:?}: {last}"));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn main() -> std::process::ExitCode {
    let mut cli = Cli::parse();
    for path in [&mut cli.processor, &mut cli.operator, &mut cli.kubelet, &mut cli.repo] {
        match std::fs::canonicalize(&*path) {
            Ok(absolute) => *path = absolute,
            Err(e) => {
                check(&format!("{} exists", path.display()), Err(e.to_string()));
                println!("e2e-local: 0 passed, 1 failed");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(|| run(&cli));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic".to_string());
        check("the suite ran to its end", Err(message));
    }
    let (passed, failed) = (PASSED.load(Ordering::Relaxed), FAILED.load(Ordering::Relaxed));
    println!("e2e-local: {passed} passed, {failed} failed ({:.0}s)", started.elapsed().as_secs_f64());
    if failed == 0 { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE }
}

/// The services, then the suite; the services stop when this returns (or panics).
fn run(cli: &Cli) {
    let binaries = match Binaries::from_env() {
        Ok(b) if b.controller_manager.is_some() => b,
        Ok(_) => {
            check("tools installed", Err("STOCKPULSE_KUBE_CONTROLLER_MANAGER is not set".into()));
            return;
        }
        Err(e) => {
            check("tools installed", Err(e));
            return;
        }
    };
    let work = match tempfile::Builder::new().prefix("stockpulse-e2e-local-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            check("work folder", Err(e.to_string()));
            return;
        }
    };
    let t = Instant::now();
    let kafka = Kafka::start();
    let mut plane = ControlPlane::start(&binaries);
    plane.install_crds(&stockpulse_testkit::control_plane::crate_root_crds());
    plane.start_controller_manager_with(&binaries, "garbage-collector-controller");
    check(
        &format!(
            "services up in {:.0}s: Apache Kafka, etcd, kube-apiserver with the CRDs, the garbage collector",
            t.elapsed().as_secs_f64()
        ),
        Ok(()),
    );
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            check("tokio runtime", Err(e.to_string()));
            return;
        }
    };
    let mut services = Services { kafka, plane, work: work.path().to_path_buf(), operator: None, kubelet: None };
    runtime.block_on(suite(cli, &mut services));
    if FAILED.load(Ordering::Relaxed) > 0 {
        services.print_logs();
    }
    if cli.keep {
        let kept = work.keep();
        println!("# work folder kept: {}", kept.display());
    }
}

struct Services {
    kafka: Kafka,
    plane: ControlPlane,
    work: PathBuf,
    operator: Option<Guarded>,
    kubelet: Option<Guarded>,
}

impl Services {
    fn print_logs(&self) {
        let tail = |title: &str, path: &Path, n: usize| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            println!("# ---- {title} ({}), last {n} lines", path.display());
            for line in &lines[lines.len().saturating_sub(n)..] {
                println!("#   {line}");
            }
        };
        tail("operator", &self.work.join("operator.log"), 40);
        tail("process kubelet", &self.work.join("kubelet.log"), 40);
        tail("kube-controller-manager", &self.plane.dir().join("controller-manager.log"), 10);
        println!("# ---- Apache Kafka\n{}", self.kafka.log_tail());
        let pods = self.work.join("kubelet").join(NS);
        for entry in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
            tail("pod", &entry.path().join("container.log"), 20);
        }
    }
}

/// Everything the checks need.
struct Ctx {
    bootstrap: String,
    work: PathBuf,
    processor: PathBuf,
}

fn pipelines(client: &kube::Client) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(GROUP, VERSION, "RetailPipeline");
    Api::namespaced_with(client.clone(), NS, &kube::api::ApiResource::from_gvk_with_plural(&gvk, "retailpipelines"))
}

fn custom(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(GROUP, VERSION, kind);
    Api::namespaced_with(client.clone(), NS, &kube::api::ApiResource::from_gvk_with_plural(&gvk, plural))
}

/// (status, reason, message) of a condition in `status.conditions`.
fn condition(object: &DynamicObject, type_: &str) -> Option<(String, String, String)> {
    let conditions = object.data.get("status")?.get("conditions")?.as_array()?;
    let c = conditions.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(type_))?;
    let text = |f: &str| c.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
    Some((text("status"), text("reason"), text("message")))
}

async fn condition_is(api: &Api<DynamicObject>, name: &str, type_: &str, want: &str) -> Result<(), String> {
    let object = api.get(name).await.map_err(|e| format!("{name}: {e}"))?;
    match condition(&object, type_) {
        Some((status, _, _)) if status == want => Ok(()),
        found => Err(format!("{name}: {type_} is {found:?}, want {want}")),
    }
}

/// Server-side applies one object of any kind (field manager [`MANAGER`]).
async fn apply(client: &kube::Client, object: &Value) -> Result<(), String> {
    let text = |f: &str| object.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let meta = object.get("metadata");
    let name = meta.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
    let namespace = meta.and_then(|m| m.get("namespace")).and_then(Value::as_str).unwrap_or(NS);
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let (resource, caps) = pinned_kind(client, &gvk).await.map_err(|e| format!("{kind}: {e}"))?;
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(object))
        .await
        .map(|_| ())
        .map_err(|e| format!("applying {kind} {name}: {e}"))
}

/// The YAML documents of a file, as JSON values.
fn documents(path: &Path) -> Result<Vec<Value>, String> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = Value::deserialize(document).map_err(|e| format!("{}: {e}", path.display()))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The sample pipeline made to run here: the local broker, replication factor 1, the
/// brand's catalog from a ConfigMap; its windows, partitions and the rest as they are.
fn derive_pipeline(pipeline: &mut Value, bootstrap: &str) {
    let Some(spec) = pipeline.get_mut("spec").and_then(Value::as_object_mut) else { return };
    if let Some(kafka) = spec.get_mut("kafka").and_then(Value::as_object_mut) {
        kafka.insert("bootstrapServers".into(), json!(bootstrap));
    }
    if let Some(topics) = spec.get_mut("topics").and_then(Value::as_object_mut) {
        if topics.contains_key("replicationFactor") {
            topics.insert("replicationFactor".into(), json!(1));
        }
        for (_, role) in topics.iter_mut() {
            if let Some(role) = role.as_object_mut()
                && role.contains_key("replicationFactor")
            {
                role.insert("replicationFactor".into(), json!(1));
            }
        }
    }
    if let Some(processing) = spec.get_mut("processing").and_then(Value::as_object_mut) {
        processing.insert(
            "enrichment".into(),
            json!({ "catalogConfigMapRef": { "name": CATALOG_CONFIG_MAP, "key": CATALOG_KEY } }),
        );
    }
}

async fn suite(cli: &Cli, services: &mut Services) {
    let client = services.plane.client().await;
    let ctx = Ctx {
        bootstrap: services.kafka.bootstrap.clone(),
        work: services.work.clone(),
        processor: cli.processor.clone(),
    };

    // ---- namespaces, the operator
    let namespaces = documents(&cli.repo.join("manifests/namespace.yaml"));
    let applied = async {
        for ns in namespaces? {
            apply(&client, &ns).await?;
        }
        Ok::<(), String>(())
    }
    .await;
    if !check("namespaces applied (manifests/namespace.yaml)", applied) {
        return;
    }
    let operator_port = stockpulse_testkit::free_port();
    let kubeconfig = services.plane.kubeconfig.clone();
    let args: Vec<String> = vec![
        "run".into(),
        format!("--http-addr=127.0.0.1:{operator_port}"),
        format!("--lease-namespace={LEASE_NAMESPACE}"),
        format!("--identity={OPERATOR_IDENTITY}"),
    ];
    services.operator = Some(Guarded::spawn(
        "stockpulse-operator",
        &cli.operator,
        &args,
        &[
            ("KUBECONFIG", kubeconfig.as_os_str()),
            ("RUST_LOG", std::ffi::OsStr::new("info")),
            ("STOCKPULSE_OPERATOR_IMAGE", std::ffi::OsStr::new(OPERATOR_IMAGE)),
        ],
        services.work.join("operator.log"),
    ));
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let led = eventually(Duration::from_secs(60), || async {
        let lease = leases.get("stockpulse-operator").await.map_err(|e| e.to_string())?;
        let holder = lease.spec.and_then(|s| s.holder_identity);
        if holder.as_deref() == Some(OPERATOR_IDENTITY) { Ok(()) } else { Err(format!("holder {holder:?}")) }
    })
    .await;
    if !check("the operator (a local process) holds the leader Lease", led) {
        return;
    }

    // ---- the samples
    let catalog_text: String =
        catalog().iter().filter_map(|p| serde_json::to_string(p).ok()).map(|l| l + "\n").collect();
    let mut objects = vec![
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": WEBHOOK_SECRET, "namespace": NS},
               "stringData": {"url": "http://127.0.0.1:9/slack-webhook"}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": CATALOG_CONFIG_MAP, "namespace": NS},
               "data": {CATALOG_KEY: catalog_text}}),
    ];
    let mut processor_image = String::new();
    let samples = stockpulse_testkit::yaml_files(&cli.repo.join("manifests/samples"));
    for file in &samples {
        match documents(file) {
            Ok(docs) => {
                for mut doc in docs {
                    if doc.get("kind").and_then(Value::as_str) == Some("RetailPipeline") {
                        derive_pipeline(&mut doc, &ctx.bootstrap);
                        processor_image = doc
                            .pointer("/spec/processor/image")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string();
                    }
                    objects.push(doc);
                }
            }
            Err(e) => {
                check("samples read", Err(e));
                return;
            }
        }
    }
    let applied = async {
        for object in &objects {
            apply(&client, object).await?;
        }
        Ok::<(), String>(())
    }
    .await;
    if !check(
        &format!(
            "{} samples applied (local bootstrap servers, replication factor 1, catalog ConfigMap, webhook Secret)",
            samples.len()
        ),
        applied,
    ) {
        return;
    }
    let rp = pipelines(&client);
    let topics_ready =
        eventually(Duration::from_secs(120), || condition_is(&rp, PIPELINE, "TopicsReady", "True")).await;
    if !check("pipeline TopicsReady (topics created on Apache Kafka)", topics_ready) {
        return;
    }
    let regions = custom(&client, "StoreRegion", "storeregions");
    let policies = custom(&client, "AlertPolicy", "alertpolicies");
    for (api, names, what) in [
        (&regions, ["eu-central", "us-east"], "store regions"),
        (&policies, ["low-stock", "sales-spike"], "alert policies"),
    ] {
        let ready = eventually(Duration::from_secs(60), || async {
            for name in names {
                condition_is(api, name, "Ready", "True").await?;
            }
            Ok(())
        })
        .await;
        check(&format!("{what} Ready"), ready);
    }
    let counted = eventually(Duration::from_secs(60), || async {
        let p = rp.get(PIPELINE).await.map_err(|e| e.to_string())?;
        let stores = p.data.pointer("/status/stores").and_then(Value::as_i64);
        if stores == Some(10) { Ok(()) } else { Err(format!("status.stores {stores:?}")) }
    })
    .await;
    check("pipeline counts the regions' 10 stores", counted);

    // The processor config as the operator rendered it.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let config_text = match config_maps.get(CONFIG_MAP).await {
        Ok(cm) => cm.data.and_then(|d| d.get("pipeline.yaml").cloned()).unwrap_or_default(),
        Err(e) => {
            check("the rendered ConfigMap", Err(e.to_string()));
            return;
        }
    };
    let config = match PipelineConfig::from_text(&config_text, CONFIG_MAP) {
        Ok(c) => c,
        Err(e) => {
            check("the rendered config parses", Err(e.to_string()));
            return;
        }
    };
    let stores = eventually_stores(&ctx, &config).await;
    let stores = match stores {
        Ok(s) => {
            check("the stores topic holds the regions' 10 stores (written by the operator)", Ok(()));
            s
        }
        Err(e) => {
            check("the stores topic holds the regions' 10 stores (written by the operator)", Err(e));
            return;
        }
    };

    // ---- events, before any processor runs (so that the processing order is the
    // production order, which `replay` reproduces: the processors' tests do the same).
    let partitions = match input_partitions(&ctx.bootstrap, &config.topic(TopicRole::Sales)) {
        Ok(p) => p,
        Err(e) => {
            check("input partitions", Err(e));
            return;
        }
    };
    let produced = produce(&ctx, &config, &stores, partitions, cli.seed, cli.events);
    let events = match produced {
        Ok(events) => {
            check(
                &format!(
                    "produced {} generated events over the 10 stores, and {} sentinels ({partitions} partitions)",
                    cli.events,
                    events.len() - cli.events
                ),
                Ok(()),
            );
            events
        }
        Err(e) => {
            check("events produced", Err(e));
            return;
        }
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    let wanted = eventually(Duration::from_secs(60), || async {
        let d = deployments.get(DEPLOYMENT).await.map_err(|e| e.to_string())?;
        let replicas = d.spec.replicas;
        if replicas == Some(2) { Ok(()) } else { Err(format!("spec.replicas {replicas:?}")) }
    })
    .await;
    check("processor Deployment wants minReplicas (2) replicas", wanted);
    check("ProcessorReady=False while no process runs", condition_is(&rp, PIPELINE, "ProcessorReady", "False").await);

    // ---- the process kubelet
    let repository = repository_of(&processor_image).to_string();
    let kubelet_dir = services.work.join("kubelet");
    let args: Vec<String> = vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--namespace={NS}"),
        format!("--work-dir={}", kubelet_dir.display()),
        format!("--image={repository}={}", cli.processor.display()),
        format!("--port-flag={repository}=--http-port"),
        format!("--image={}={}", repository_of(OPERATOR_IMAGE), cli.operator.display()),
        format!("--port-flag={}=--http-port", repository_of(OPERATOR_IMAGE)),
    ];
    services.kubelet =
        Some(Guarded::spawn("stockpulse-process-kubelet", &cli.kubelet, &args, &[], services.work.join("kubelet.log")));
    check(
        "2 processor processes run",
        eventually(Duration::from_secs(60), || async { count_processes(&ctx.processor, 2) }).await,
    );
    check(
        "2 Pods Running and Ready in the API server (status written by the kubelet)",
        eventually(Duration::from_secs(120), || pods_ready(&client, 2)).await,
    );
    check(
        "Deployment status: 2 of 2 ready, observedGeneration current",
        eventually(Duration::from_secs(60), || deployment_ready(&deployments, 2)).await,
    );
    if !check(
        "pipeline ProcessorReady=True",
        eventually(Duration::from_secs(90), || condition_is(&rp, PIPELINE, "ProcessorReady", "True")).await,
    ) {
        return;
    }
    check(
        "pipeline Ready=True",
        eventually(Duration::from_secs(60), || condition_is(&rp, PIPELINE, "Ready", "True")).await,
    );

    // ---- the outputs equal replay
    let caught_up = eventually(Duration::from_secs(300), || async { caught_up(&ctx, &config, partitions) }).await;
    if check(&format!("the processors committed every input record (group {})", config.consumer_group()), caught_up)
        && let Some(inventory) = compare(&ctx, &config, &config_text, &stores, &catalog_text, &events, partitions)
    {
        check(
            "the read API of one processor gives replay's positions, following 307s to the other's",
            read_api(&kubelet_dir, &inventory),
        );
        // The processors' alert counters reach the policy's status through the operator.
        let counted = eventually(Duration::from_secs(150), || async {
            let policy = policies.get("low-stock").await.map_err(|e| e.to_string())?;
            let fired = policy.data.pointer("/status/alertsFired").and_then(Value::as_i64).unwrap_or(0);
            let last = policy.data.pointer("/status/lastFiredTime").and_then(Value::as_str);
            match last {
                Some(last) if fired > 0 => {
                    println!("# AlertPolicy low-stock: alertsFired {fired}, lastFiredTime {last}");
                    Ok(())
                }
                _ => Err(format!("alertsFired {fired}, lastFiredTime {last:?}")),
            }
        })
        .await;
        check("AlertPolicy status counts the alerts its processors fired", counted);
        steady_state(&ctx, &config, &stores, operator_port).await;
    }

    // ---- a process that dies is restarted
    let restarted = async {
        let pids = processes_of(&ctx.processor);
        let pid = *pids.first().ok_or("no processor process")?;
        let pid = i32::try_from(pid).map_err(|e| e.to_string())?;
        // SAFETY: kill(2) of a pid just read from /proc; at worst it names a process gone since.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            return Err(format!("kill -9 {pid}: {}", std::io::Error::last_os_error()));
        }
        eventually(Duration::from_secs(90), || async {
            let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
            let list = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
            let restarts: Vec<i32> = list
                .items
                .iter()
                .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref()?.first().map(|c| c.restart_count))
                .collect();
            if restarts.iter().sum::<i32>() != 1 {
                return Err(format!("restart counts {restarts:?}"));
            }
            pods_ready(&client, 2).await?;
            count_processes(&ctx.processor, 2)
        })
        .await
    }
    .await;
    check("a processor killed with SIGKILL is restarted (restartCount 1, 2 Pods Ready again)", restarted);

    // ---- a config change replaces the processes
    let before = pod_names(&client).await.unwrap_or_default();
    let patched = rp
        .patch(PIPELINE, &PatchParams::default(), &Patch::Merge(json!({"spec": {"processing": {"idleTimeout": "2m"}}})))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    if check("pipeline patched: processing.idleTimeout 2m", patched) {
        // The operator's strategy is a rolling update with maxUnavailable 0: the ready count,
        // sampled every second, never drops under 2.
        let fewest_ready = std::cell::Cell::new(i32::MAX);
        let replaced = eventually(Duration::from_secs(180), || async {
            if let Ok(d) = deployments.get(DEPLOYMENT).await {
                let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
                fewest_ready.set(fewest_ready.get().min(ready));
            }
            let now = pod_names(&client).await?;
            if now.iter().any(|n| before.contains(n)) {
                return Err(format!("old pods remain: {now:?}"));
            }
            pods_ready(&client, 2).await?;
            count_processes(&ctx.processor, 2)?;
            deployment_ready(&deployments, 2).await
        })
        .await;
        check("a config change replaces both processes (new pod-template hash), 2 ready again", replaced);
        let fewest = fewest_ready.get();
        check(
            &format!("the rolling update kept 2 processes ready throughout (fewest ready seen: {fewest})"),
            if fewest >= 2 { Ok(()) } else { Err(format!("{fewest} ready at one point")) },
        );
        check("the replaced processes exited cleanly on SIGTERM", clean_exits(&kubelet_dir, &before));
    }

    // ---- scaling
    let scaled = rp
        .patch(PIPELINE, &PatchParams::default(), &Patch::Merge(json!({"spec": {"processor": {"minReplicas": 3}}})))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    if check("pipeline patched: minReplicas 3", scaled) {
        check(
            "Deployment scaled to 3; 3 processes run; 3 Pods Ready",
            eventually(Duration::from_secs(120), || async {
                deployment_ready(&deployments, 3).await?;
                count_processes(&ctx.processor, 3)?;
                pods_ready(&client, 3).await
            })
            .await,
        );
        check(
            "pipeline ProcessorReady=True at 3 replicas",
            eventually(Duration::from_secs(60), || condition_is(&rp, PIPELINE, "ProcessorReady", "True")).await,
        );
    }
    let three = pod_names(&client).await.unwrap_or_default();
    // The autoscaler scales down only after its window (5m in the sample) and by at most
    // half the replicas a minute: with the window at 0s and whole steps, the floor's decrease
    // shows at its next sample (15 s).
    let scaled = rp
        .patch(
            PIPELINE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"processor": {"minReplicas": 1, "autoscaling":
                {"scaleDownStabilization": "0s", "scaleDownStepPercent": 100}}}})),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    if check("pipeline patched: minReplicas 1 (scaleDownStabilization 0s, whole steps)", scaled) {
        check(
            "Deployment scaled to 1; 1 process runs; 1 Pod Ready",
            eventually(Duration::from_secs(120), || async {
                deployment_ready(&deployments, 1).await?;
                count_processes(&ctx.processor, 1)?;
                pods_ready(&client, 1).await
            })
            .await,
        );
        let now = pod_names(&client).await.unwrap_or_default();
        let stopped: Vec<String> = three.iter().filter(|n| !now.contains(n)).cloned().collect();
        check("the 2 stopped processes exited cleanly on SIGTERM", clean_exits(&kubelet_dir, &stopped));
    }

    // ---- a short real surge scales the processor up, then back down
    surge(&ctx, &config, &stores, &rp, &deployments, &client).await;

    // ---- a region with a Kafka cluster of its own gets a replicator process
    replication(&ctx, &client, &config, &cli.operator).await;

    // ---- deletion
    let deleted = rp.delete(PIPELINE, &Default::default()).await.map(|_| ()).map_err(|e| e.to_string());
    if check("pipeline deleted", deleted) {
        check(
            "the finalizer completes: pipeline gone",
            eventually(Duration::from_secs(120), || async {
                match rp.get_opt(PIPELINE).await {
                    Ok(None) => Ok(()),
                    Ok(Some(p)) => Err(format!("still there, finalizers {:?}", p.metadata.finalizers)),
                    Err(e) => Err(e.to_string()),
                }
            })
            .await,
        );
        let services_api: Api<Service> = Api::namespaced(client.clone(), NS);
        check(
            "Deployment, ConfigMap and Service garbage-collected (owner references)",
            eventually(Duration::from_secs(120), || async {
                let d = deployments.get_opt(DEPLOYMENT).await.map_err(|e| e.to_string())?;
                let c = config_maps.get_opt(CONFIG_MAP).await.map_err(|e| e.to_string())?;
                let s = services_api.get_opt(DEPLOYMENT).await.map_err(|e| e.to_string())?;
                if d.is_none() && c.is_none() && s.is_none() {
                    Ok(())
                } else {
                    Err(format!("left: deployment {} configmap {} service {}", d.is_some(), c.is_some(), s.is_some()))
                }
            })
            .await,
        );
        check(
            "no processor process runs, no Pod is left",
            eventually(Duration::from_secs(120), || async {
                count_processes(&ctx.processor, 0)?;
                let pods = pod_names(&client).await?;
                if pods.is_empty() { Ok(()) } else { Err(format!("pods {pods:?}")) }
            })
            .await,
        );
        check("the topics are retained (deletionPolicy Retain)", topics_exist(&ctx.bootstrap, &config));
        check(
            "the replicator Deployment is deleted with the pipeline it fed, its process stopped",
            eventually(Duration::from_secs(120), || async {
                if deployments
                    .get_opt(&format!("{REPLICATED_REGION}-replicator"))
                    .await
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    return Err("the replicator Deployment is still there".into());
                }
                // The operator itself is the one process of its binary left.
                count_processes(&cli.operator, 1)
            })
            .await,
        );
    }

    // ---- least privilege: what the whole lifecycle asked of the API server, against the grants
    check(
        "RBAC: manifests/operator/install.yaml grants exactly the verbs the operator used over the whole run",
        rbac_matches(operator_port),
    );
}

/// The operator's requests over the run, as RBAC permissions, against the install
/// manifest's Roles and ClusterRoles (see [`rbac`]).
fn rbac_matches(operator_port: u16) -> Result<(), String> {
    const MANIFEST: &str = "manifests/operator/install.yaml";
    let needed = rbac::needed(&operator_requests(&format!("127.0.0.1:{operator_port}"))?);
    let manifest = std::fs::read_to_string(MANIFEST).map_err(|e| format!("{MANIFEST}: {e}"))?;
    let granted = rbac::granted(&manifest)?;
    let shown: Vec<String> = needed.iter().map(ToString::to_string).collect();
    println!("# RBAC needed by the operator's requests over the run: {}", shown.join(", "));
    for unseen in rbac::needed_without_a_request() {
        println!("# RBAC also granted: {} ({})", unseen.permission, unseen.why);
    }
    let (unused, missing) = rbac::compare(&needed, &granted);
    let names = |p: &[rbac::Permission]| p.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
    match (unused.is_empty(), missing.is_empty()) {
        (true, true) => Ok(()),
        (false, true) => Err(format!("granted but never used: {}", names(&unused))),
        (true, false) => Err(format!("used but not granted: {}", names(&missing))),
        (false, false) => {
            Err(format!("granted but never used: {}; used but not granted: {}", names(&unused), names(&missing)))
        }
    }
}

/// A tansu broker as the region's own cluster: the region points at it, the operator runs a
/// replicator Deployment, the kubelet its process; events produced to the regional cluster
/// arrive in the pipeline's sales topic, and the region reports `ReplicationReady`.
async fn replication(ctx: &Ctx, client: &kube::Client, config: &PipelineConfig, operator: &Path) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let regional = stockpulse_testkit::tansu::Tansu::start();
    let sales = config.topic(TopicRole::Sales);
    let created = async {
        let admin: AdminClient<rdkafka::client::DefaultClientContext> =
            client_config(&regional.bootstrap).create().map_err(|e| e.to_string())?;
        let names = [sales.clone(), config.topic(TopicRole::Inventory)];
        let topics: Vec<NewTopic> = names.iter().map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1))).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        for result in admin.create_topics(topics.iter(), &options).await.map_err(|e| e.to_string())? {
            result.map_err(|(topic, e)| format!("creating {topic} on tansu: {e}"))?;
        }
        Ok::<(), String>(())
    }
    .await;
    if !check("a regional cluster (tansu) with the pipeline's input topics", created) {
        return;
    }
    let regions = custom(client, "StoreRegion", "storeregions");
    let patch = json!({"spec": {"kafka": {"bootstrapServers": regional.bootstrap}}});
    let patched = regions
        .patch(REPLICATED_REGION, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    if !check(&format!("region {REPLICATED_REGION} patched: its own Kafka cluster"), patched) {
        return;
    }
    check(
        "a replicator process runs (the operator's image, run by the kubelet)",
        eventually(Duration::from_secs(90), || async { count_processes(operator, 2) }).await,
    );
    // Events of the region's stores, one record per batch (tansu counts batches).
    let ids: Vec<String> = (0..5).map(|i| format!("00000000-0000-4000-9000-{i:012}")).collect();
    let produced = (|| {
        let producer: BaseProducer =
            client_config(&regional.bootstrap).set("linger.ms", "0").create().map_err(|e| e.to_string())?;
        for id in &ids {
            let payload = json!({
                "event_id": id, "event_type": "SALE", "event_time": chrono::Utc::now().to_rfc3339(),
                "store_id": "de-ber-001", "sku_id": "SKU-000001", "currency": "EUR",
                "quantity_delta": -1, "unit_price": "19.99"
            })
            .to_string();
            producer
                .send(BaseRecord::to(&sales).key("de-ber-001").payload(&payload))
                .map_err(|(e, _)| format!("producing to tansu: {e}"))?;
            producer.flush(Duration::from_secs(10)).map_err(|e| format!("flushing to tansu: {e}"))?;
        }
        Ok::<(), String>(())
    })();
    if check(&format!("{} events produced to the regional cluster", ids.len()), produced) {
        check(
            "they arrive in the pipeline's sales topic, keyed by store",
            eventually(Duration::from_secs(90), || async {
                let records = read_committed(&ctx.bootstrap, &sales)?;
                let arrived = records
                    .iter()
                    .filter(|r| r.key.as_deref() == Some("de-ber-001"))
                    .filter_map(|r| serde_json::from_slice::<Value>(r.value.as_deref()?).ok())
                    .filter(|v| ids.iter().any(|id| v.get("event_id").and_then(Value::as_str) == Some(id)))
                    .count();
                if arrived == ids.len() { Ok(()) } else { Err(format!("{arrived} of {} arrived", ids.len())) }
            })
            .await,
        );
    }
    check(
        &format!("region {REPLICATED_REGION} ReplicationReady=True"),
        eventually(Duration::from_secs(150), || condition_is(&regions, REPLICATED_REGION, "ReplicationReady", "True"))
            .await,
    );
}

async fn eventually_stores(ctx: &Ctx, config: &PipelineConfig) -> Result<Vec<StoreRecord>, String> {
    let topic = config.topic(TopicRole::Stores);
    let mut found = Vec::new();
    eventually(Duration::from_secs(60), || {
        let result = read_committed(&ctx.bootstrap, &topic).and_then(|records| {
            let last = last_values(&records);
            let stores: Vec<StoreRecord> =
                last.values().filter_map(|v| serde_json::from_value(v.clone()).ok()).collect();
            if stores.len() == 10 { Ok(stores) } else { Err(format!("{} stores on {topic}", stores.len())) }
        });
        let out = match result {
            Ok(stores) => {
                found = stores;
                Ok(())
            }
            Err(e) => Err(e),
        };
        async move { out }
    })
    .await?;
    Ok(found)
}

/// Pids of the processes whose executable is `binary` (from /proc, not the kubelet's word).
fn processes_of(binary: &Path) -> Vec<u32> {
    let Ok(target) = std::fs::canonicalize(binary) else { return Vec::new() };
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Ok(exe) = std::fs::read_link(entry.path().join("exe")) {
            let exe = exe.to_string_lossy().trim_end_matches(" (deleted)").to_string();
            if Path::new(&exe) == target {
                pids.push(pid);
            }
        }
    }
    pids
}

fn count_processes(binary: &Path, want: usize) -> Result<(), String> {
    let pids = processes_of(binary);
    if pids.len() == want {
        Ok(())
    } else {
        Err(format!("{} processes of {} (pids {pids:?})", pids.len(), binary.display()))
    }
}

async fn pod_names(client: &kube::Client) -> Result<Vec<String>, String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let list = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
    Ok(list.items.iter().filter_map(|p| p.metadata.name.clone()).collect())
}

async fn pods_ready(client: &kube::Client, want: usize) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let list = pods.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
    let ready = |p: &Pod| {
        let status = p.status.as_ref();
        status.and_then(|s| s.phase.as_deref()) == Some("Running")
            && status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
    };
    let summary: Vec<String> = list
        .items
        .iter()
        .map(|p| {
            format!(
                "{} {:?} ready={}",
                p.metadata.name.as_deref().unwrap_or("?"),
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                ready(p)
            )
        })
        .collect();
    if list.items.len() == want && list.items.iter().all(ready) { Ok(()) } else { Err(format!("pods {summary:?}")) }
}

async fn deployment_ready(deployments: &Api<Deployment>, want: i32) -> Result<(), String> {
    let d = deployments.get(DEPLOYMENT).await.map_err(|e| e.to_string())?;
    let spec_replicas = d.spec.replicas;
    let generation = d.metadata.generation;
    let status = d.status.unwrap_or_default();
    let fine = spec_replicas == Some(want)
        && status.replicas == Some(want)
        && status.ready_replicas == Some(want)
        && status.updated_replicas == Some(want)
        && status.available_replicas == Some(want)
        && status.observed_generation == generation;
    if fine {
        Ok(())
    } else {
        Err(format!(
            "spec.replicas {spec_replicas:?}, status replicas {:?} ready {:?} updated {:?} available {:?}, \
             observedGeneration {:?} of {generation:?}",
            status.replicas,
            status.ready_replicas,
            status.updated_replicas,
            status.available_replicas,
            status.observed_generation
        ))
    }
}

/// Whether every pod of `pods` last exited with code 0 after SIGTERM (the kubelet's state).
fn clean_exits(kubelet_dir: &Path, pods: &[String]) -> Result<(), String> {
    if pods.is_empty() {
        return Err("no pod to look at".into());
    }
    let text = std::fs::read_to_string(kubelet_dir.join("state.json")).map_err(|e| e.to_string())?;
    let state: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let exits = state.get("exits").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    for pod in pods {
        // The last exit: a pod restarted earlier (killed by the restart check) has more than one.
        let exit = exits.iter().rev().find(|e| e.get("pod").and_then(Value::as_str) == Some(pod));
        match exit {
            Some(e)
                if e.get("status").and_then(Value::as_str) == Some("exit code 0")
                    && e.get("after_sigterm").and_then(Value::as_bool) == Some(true) => {}
            other => problems.push(format!("{pod}: {other:?}")),
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(problems.join("\n")) }
}

// ---- Kafka

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", bootstrap);
    config
}

fn input_partitions(bootstrap: &str, topic: &str) -> Result<i32, String> {
    let consumer: BaseConsumer = client_config(bootstrap).create().map_err(|e| e.to_string())?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let n = metadata.topics().first().map(|t| t.partitions().len()).unwrap_or(0);
    i32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| format!("{topic} has no partitions"))
}

fn topics_exist(bootstrap: &str, config: &PipelineConfig) -> Result<(), String> {
    let consumer: BaseConsumer = client_config(bootstrap).create().map_err(|e| e.to_string())?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let names: Vec<&str> = metadata.topics().iter().map(|t| t.name()).collect();
    let missing: Vec<String> = [TopicRole::Sales, TopicRole::Inventory, TopicRole::Changelog, TopicRole::Aggregates]
        .iter()
        .map(|r| config.topic(*r))
        .filter(|t| !names.contains(&t.as_str()))
        .collect();
    if missing.is_empty() { Ok(()) } else { Err(format!("missing {missing:?}")) }
}

/// Sends a record stamped with a strictly increasing time, so that a task's timestamp merge
/// of its two partitions gives back the order of production.
fn send(producer: &BaseProducer, clock: &mut i64, topic: &str, partition: Option<i32>, key: &str, value: &[u8]) {
    *clock = (*clock + 1).max(chrono::Utc::now().timestamp_millis());
    let mut record = BaseRecord::to(topic).key(key).payload(value).timestamp(*clock);
    if let Some(p) = partition {
        record = record.partition(p);
    }
    if let Err(e) = stockpulse_testkit::kafka::send(producer, record) {
        panic!("{e}");
    }
}

/// Generated traffic on a thread: `batch` events every `every` for `duration` (sales and
/// returns to the sales topic, the rest to inventory); the thread answers how many it sent.
fn traffic_for(
    ctx: &Ctx,
    config: &PipelineConfig,
    stores: &[StoreRecord],
    seed: u64,
    batch: usize,
    every: Duration,
    duration: Duration,
) -> std::thread::JoinHandle<Result<usize, String>> {
    let (bootstrap, sales, inventory) =
        (ctx.bootstrap.clone(), config.topic(TopicRole::Sales), config.topic(TopicRole::Inventory));
    let stores = stores.to_vec();
    std::thread::spawn(move || -> Result<usize, String> {
        let options = TrafficOptions { seed, peak_events_per_second: 20.0, ..TrafficOptions::default() };
        let producer: BaseProducer = client_config(&bootstrap)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create()
            .map_err(|e| e.to_string())?;
        let mut clock = 0;
        let mut events = Traffic::new(options, &stores, &catalog());
        let started = Instant::now();
        let mut sent = 0usize;
        while started.elapsed() < duration {
            for event in events.by_ref().take(batch) {
                let kind = serde_json::from_slice::<Value>(&event.payload)
                    .ok()
                    .and_then(|v| v.get("event_type").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default();
                let topic = if matches!(kind.as_str(), "SALE" | "RETURN") { &sales } else { &inventory };
                send(&producer, &mut clock, topic, None, &event.key, &event.payload);
                sent += 1;
            }
            producer.poll(Duration::ZERO);
            std::thread::sleep(every);
        }
        producer.flush(Duration::from_secs(30)).map_err(|e| format!("flushing the traffic: {e}"))?;
        Ok(sent)
    })
}

/// How long the steady-state check watches the operator: 10 minutes, or
/// `E2E_LOCAL_STEADY_SECS` (a shorter run while working on the suite; its check then says so).
fn steady_window() -> Duration {
    let secs = std::env::var("E2E_LOCAL_STEADY_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(600);
    Duration::from_secs(secs)
}

/// A converged system (two regions, two policies, two processors) under a consumer whose
/// lag moves all the time (5 events a second): over 10 minutes the operator applies nothing,
/// posts no Event, writes each status at most once per sampling interval (a pipeline's
/// 15 s, a region's and a policy's minute), and reads none of the objects it caches (its
/// custom resources and what it owns) from the API server: every reconcile, the pipeline's
/// 5-minute resync included, reads its watch caches.
async fn steady_state(ctx: &Ctx, config: &PipelineConfig, stores: &[StoreRecord], operator_port: u16) {
    let window = steady_window();
    let producer = traffic_for(ctx, config, stores, 11, 1, Duration::from_millis(200), window);
    let result = async {
        let before = operator_requests(&format!("127.0.0.1:{operator_port}"))?;
        tokio::time::sleep(window).await;
        let after = operator_requests(&format!("127.0.0.1:{operator_port}"))?;
        let sent = tokio::task::spawn_blocking(move || producer.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "the trickle producer panicked".to_string())??;
        let delta: BTreeMap<(String, String), u64> = after
            .iter()
            .map(|(k, n)| (k.clone(), n.saturating_sub(before.get(k).copied().unwrap_or(0))))
            .filter(|(_, n)| *n > 0)
            .collect();
        let shown: Vec<String> = delta.iter().map(|((verb, resource), n)| format!("{verb} {resource}: {n}")).collect();
        println!(
            "# steady state, {sent} events in {window:?}: the operator's requests: {}",
            if shown.is_empty() { "none".into() } else { shown.join(", ") }
        );
        let count = |verbs: &[&str], resource: &str| {
            delta.iter().filter(|((v, r), _)| r == resource && verbs.contains(&v.as_str())).map(|(_, n)| n).sum::<u64>()
        };
        const WRITES: &[&str] = &["create", "update", "patch", "delete"];
        let mut wrong = Vec::new();
        for resource in [
            "deployments.apps",
            "configmaps",
            "services",
            "serviceaccounts",
            "poddisruptionbudgets.policy",
            "events.events.k8s.io",
        ] {
            if count(WRITES, resource) > 0 {
                wrong.push(format!("{} writes of {resource}", count(WRITES, resource)));
            }
        }
        // One pipeline sampled every 15 s; two regions and two policies looked at every minute.
        for (resource, most) in [
            ("retailpipelines.retail.stockpulse.io/status", window.as_secs() / 15 + 1),
            ("storeregions.retail.stockpulse.io/status", 2 * (window.as_secs() / 60 + 1)),
            ("alertpolicies.retail.stockpulse.io/status", 2 * (window.as_secs() / 60 + 1)),
        ] {
            if count(WRITES, resource) > most {
                wrong.push(format!("{} writes of {resource}, more than {most}", count(WRITES, resource)));
            }
        }
        for resource in [
            "retailpipelines.retail.stockpulse.io",
            "storeregions.retail.stockpulse.io",
            "alertpolicies.retail.stockpulse.io",
            "deployments.apps",
            "configmaps",
            "services",
            "serviceaccounts",
            "poddisruptionbudgets.policy",
        ] {
            if count(&["get", "list"], resource) > 0 {
                wrong.push(format!("{} reads of {resource} (it is cached)", count(&["get", "list"], resource)));
            }
        }
        if wrong.is_empty() { Ok(()) } else { Err(wrong.join("; ")) }
    };
    check(
        &format!(
            "steady state over {window:?}: no apply, no Event, each status written at most once per sampling \
             interval, no read of a cached kind"
        ),
        result.await,
    );
}

/// A short real surge: the generated traffic's peak is 20 events/s; 100/s (x5) for a
/// minute. The autoscaler (sampling every 15 s, its window at 0s from the step before)
/// scales the processor above its floor of 1 while the surge lasts, and back to 1 after.
/// `capacityPerReplica` is set low and `headroomPercent` high so that one process, which
/// keeps up with 100/s, still counts as needing company: the point is the loop from the
/// broker's offsets to the Deployment and back, not the local processes' speed.
async fn surge(
    ctx: &Ctx,
    config: &PipelineConfig,
    stores: &[StoreRecord],
    rp: &Api<DynamicObject>,
    deployments: &Api<Deployment>,
    client: &kube::Client,
) {
    let patched = rp
        .patch(
            PIPELINE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"processor": {"autoscaling":
                {"capacityPerReplica": 30, "headroomPercent": 100}}}})),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string());
    if !check("pipeline patched: capacityPerReplica 30, headroomPercent 100", patched) {
        return;
    }
    // 10 events every 100 ms for 60 s.
    let producer = traffic_for(ctx, config, stores, 7, 10, Duration::from_millis(100), Duration::from_secs(60));
    let most = std::cell::Cell::new(1);
    let up = eventually(Duration::from_secs(75), || async {
        let d = deployments.get(DEPLOYMENT).await.map_err(|e| e.to_string())?;
        let wanted = d.spec.replicas.unwrap_or(0);
        most.set(most.get().max(wanted));
        if wanted > 1 { Ok(()) } else { Err(format!("spec.replicas {wanted}")) }
    })
    .await;
    check("a 5x surge (100 events/s) scales the processor above 1 replica while it lasts", up);
    let sent = tokio::task::spawn_blocking(move || producer.join())
        .await
        .map_err(|e| e.to_string())
        .and_then(|joined| joined.map_err(|_| "the surge producer panicked".to_string()))
        .and_then(|r| r);
    check(&format!("the surge was produced ({} events)", sent.as_ref().map_or(0, |n| *n)), sent.map(|_| ()));
    let reason = async {
        let p = rp.get(PIPELINE).await.map_err(|e| e.to_string())?;
        Ok::<String, String>(p.data["status"]["replicas"]["reason"].as_str().unwrap_or_default().to_string())
    };
    let reason = reason.await.unwrap_or_default();
    check(
        &format!(
            "after the surge, back to 1 replica, 1 process, 1 Pod Ready (up to {}; reason then {reason})",
            most.get()
        ),
        eventually(Duration::from_secs(180), || async {
            deployment_ready(deployments, 1).await?;
            count_processes(&ctx.processor, 1)?;
            pods_ready(client, 1).await
        })
        .await,
    );
}

/// Generated events over `stores` keyed by store (sales and returns to the sales topic, the
/// rest to inventory), then a RESTOCK on every input partition of both topics stamped two
/// hours after the last event, so that every window fires in every task. Returns the
/// payloads in production order (`replay`'s input).
fn produce(
    ctx: &Ctx,
    config: &PipelineConfig,
    stores: &[StoreRecord],
    partitions: i32,
    seed: u64,
    count: usize,
) -> Result<Vec<Vec<u8>>, String> {
    let options = TrafficOptions { seed, peak_events_per_second: 20.0, ..TrafficOptions::default() };
    let producer: BaseProducer = client_config(&ctx.bootstrap)
        .set("partitioner", "murmur2_random")
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    let (sales, inventory) = (config.topic(TopicRole::Sales), config.topic(TopicRole::Inventory));
    let mut clock = 0;
    let mut last_time = options.start;
    let mut produced = Vec::new();
    for event in Traffic::new(options, stores, &catalog()).take(count) {
        let parsed: Option<Value> = serde_json::from_slice(&event.payload).ok();
        let kind = parsed.as_ref().and_then(|v| v.get("event_type")).and_then(Value::as_str).unwrap_or("SALE");
        if let Some(t) = parsed.as_ref().and_then(|v| v.get("event_time")).and_then(Value::as_str)
            && let Ok(t) = chrono::DateTime::parse_from_rfc3339(t)
        {
            last_time = last_time.max(t.timestamp_millis());
        }
        let topic = if matches!(kind, "SALE" | "RETURN") { &sales } else { &inventory };
        send(&producer, &mut clock, topic, None, &event.key, &event.payload);
        produced.push(event.payload);
    }
    producer.flush(Duration::from_secs(60)).map_err(|e| format!("flushing events: {e}"))?;
    let when = chrono::DateTime::from_timestamp_millis(last_time + 2 * 3_600_000).ok_or("a time out of range")?;
    for p in 0..partitions {
        for (i, topic) in [&sales, &inventory].into_iter().enumerate() {
            let payload = json!({
                "event_id": format!("00000000-0000-4000-8000-{:012}", p * 2 + i as i32),
                "event_type": "RESTOCK", "event_time": when.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "store_id": format!("SENTINEL-{p}"), "sku_id": "SENTINEL", "quantity_delta": 1
            })
            .to_string()
            .into_bytes();
            send(&producer, &mut clock, topic, Some(p), &format!("SENTINEL-{p}"), &payload);
            produced.push(payload);
        }
    }
    producer.flush(Duration::from_secs(60)).map_err(|e| format!("flushing sentinels: {e}"))?;
    Ok(produced)
}

/// Whether the group has committed every record of the input topics.
fn caught_up(ctx: &Ctx, config: &PipelineConfig, partitions: i32) -> Result<(), String> {
    let consumer: BaseConsumer = client_config(&ctx.bootstrap)
        .set("group.id", config.consumer_group())
        .set("isolation.level", "read_committed")
        .create()
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for topic in [config.topic(TopicRole::Sales), config.topic(TopicRole::Inventory)] {
        for p in 0..partitions {
            let (_, high) = consumer.fetch_watermarks(&topic, p, Duration::from_secs(10)).map_err(|e| e.to_string())?;
            ends.insert((topic.clone(), p), high);
            tpl.add_partition(&topic, p);
        }
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    let behind = stockpulse_testkit::kafka::behind(&committed, &ends);
    if behind.is_empty() { Ok(()) } else { Err(format!("behind: {}", behind.join(", "))) }
}

/// The last value of each key (a compacted topic's meaning); values that are not JSON are
/// kept as strings, so a difference shows.
fn last_values(records: &[Record]) -> BTreeMap<String, Value> {
    let mut last = BTreeMap::new();
    for r in records {
        let Some(key) = &r.key else { continue };
        match &r.value {
            Some(v) => {
                let value =
                    serde_json::from_slice(v).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(v).into()));
                last.insert(key.clone(), value);
            }
            None => {
                last.remove(key);
            }
        }
    }
    last
}

// ---- the comparison with replay

fn text<'a>(v: &'a Value, field: &str) -> &'a str {
    v.get(field).and_then(Value::as_str).unwrap_or_default()
}

/// The aggregates topic's key of a replayed aggregate.
fn aggregate_key(v: &Value) -> String {
    let mut key = format!("{}|{}", text(v, "window"), text(v, "window_start"));
    for dim in ["store_id", "sku_id", "region", "category", "channel"] {
        if let Some(d) = v.get(dim).and_then(Value::as_str) {
            key.push('|');
            key.push_str(d);
        }
    }
    key.push('|');
    key.push_str(text(v, "currency"));
    key
}

fn replay_lines(dir: &Path, name: &str) -> Result<Vec<Value>, String> {
    let path = dir.join(name);
    let content = std::fs::read_to_string(&path).unwrap_or_default();
    content.lines().map(|l| serde_json::from_str(l).map_err(|e| format!("{}: {e}", path.display()))).collect()
}

fn same(name: &str, kafka: &BTreeMap<String, Value>, replay: &BTreeMap<String, Value>) -> Result<(), String> {
    let missing: Vec<&String> = replay.keys().filter(|k| !kafka.contains_key(*k)).take(5).collect();
    let extra: Vec<&String> = kafka.keys().filter(|k| !replay.contains_key(*k)).take(5).collect();
    let differing: Vec<String> = kafka
        .iter()
        .filter_map(|(k, v)| replay.get(k).filter(|w| *w != v).map(|w| format!("{k}: kafka {v} replay {w}")))
        .take(3)
        .collect();
    if missing.is_empty() && extra.is_empty() && differing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{name}: {} on Kafka, {} in replay; missing {missing:?}, extra {extra:?}, differing {differing:?}",
            kafka.len(),
            replay.len()
        ))
    }
}

/// Every 25th position of replay's inventory, asked of the first processor's read API (a
/// `307` followed once to the owner): each answer equals replay's line, and some are
/// answered by the other processor.
fn read_api(kubelet_dir: &Path, inventory: &BTreeMap<String, Value>) -> Result<(), String> {
    let text = std::fs::read_to_string(kubelet_dir.join("state.json")).map_err(|e| e.to_string())?;
    let state: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let port = state
        .get("pods")
        .and_then(Value::as_array)
        .and_then(|pods| pods.iter().find(|p| p.get("ready") == Some(&Value::Bool(true))))
        .and_then(|p| p.pointer("/ports/http"))
        .and_then(Value::as_u64)
        .ok_or("no ready processor with an http port in the kubelet's state")?;
    let address = format!("127.0.0.1:{port}");
    let (mut asked, mut redirected) = (0, 0);
    for (key, expected) in inventory.iter().filter(|(k, _)| !k.starts_with("SENTINEL")).step_by(25) {
        let Some((store, sku)) = key.split_once('|') else { continue };
        let path = format!("/v1/inventory/{store}/{sku}");
        let (mut status, location, mut body) = http_get(&address, &path)?;
        if status == 307 {
            let target = location.ok_or_else(|| format!("{path}: 307 without Location"))?;
            let rest = target.strip_prefix("http://").ok_or_else(|| format!("{path}: Location {target}"))?;
            let (owner, owner_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            (status, _, body) = http_get(owner, owner_path)?;
            redirected += 1;
        }
        let got: Value = serde_json::from_str(&body).map_err(|e| format!("{path}: {status} {body:?}: {e}"))?;
        if status != 200 || &got != expected {
            return Err(format!("{path}: {status} {got}, replay {expected}"));
        }
        asked += 1;
    }
    if asked < 20 {
        return Err(format!("only {asked} positions asked"));
    }
    if redirected == 0 || redirected == asked {
        return Err(format!("{redirected} of {asked} answers came from the other processor: want some, not all"));
    }
    println!("# read API: {asked} positions equal replay's, {redirected} answered by the other processor");
    Ok(())
}

/// Compares every output topic with replay; returns replay's inventory (by `store|sku`).
#[allow(clippy::too_many_arguments)]
fn compare(
    ctx: &Ctx,
    config: &PipelineConfig,
    config_text: &str,
    stores: &[StoreRecord],
    catalog_text: &str,
    events: &[Vec<u8>],
    partitions: i32,
) -> Option<BTreeMap<String, Value>> {
    let dir = ctx.work.join("replay");
    let written = (|| -> Result<(), String> {
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let write = |name: &str, bytes: &[u8]| std::fs::write(dir.join(name), bytes).map_err(|e| e.to_string());
        write("pipeline.yaml", config_text.as_bytes())?;
        write("catalog.ndjson", catalog_text.as_bytes())?;
        let stores_text: String =
            stores.iter().filter_map(|s| serde_json::to_string(s).ok()).map(|l| l + "\n").collect();
        write("stores.ndjson", stores_text.as_bytes())?;
        let mut input = Vec::new();
        for event in events {
            input.extend_from_slice(event);
            input.push(b'\n');
        }
        write("events.ndjson", &input)
    })();
    let out = dir.join("out");
    let replayed = written.and_then(|()| {
        let output = std::process::Command::new(&ctx.processor)
            .arg("replay")
            .arg("--config")
            .arg(dir.join("pipeline.yaml"))
            .arg("--input")
            .arg(dir.join("events.ndjson"))
            .arg("--stores")
            .arg(dir.join("stores.ndjson"))
            .arg("--catalog")
            .arg(dir.join("catalog.ndjson"))
            .arg("--out")
            .arg(&out)
            .arg("--partitions")
            .arg(partitions.to_string())
            .output()
            .map_err(|e| format!("cannot run replay: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("replay failed: {}", String::from_utf8_lossy(&output.stderr)))
        }
    });
    if !check(&format!("replay --partitions {partitions} of the same events, config, stores and catalog"), replayed) {
        return None;
    }
    let topic = |role: TopicRole| read_committed(&ctx.bootstrap, &config.topic(role));
    let keyed = |name: &str, key: &dyn Fn(&Value) -> String| -> Result<BTreeMap<String, Value>, String> {
        Ok(replay_lines(&out, name)?.into_iter().map(|v| (key(&v), v)).collect())
    };
    // Aggregates.
    let result = (|| {
        let kafka = last_values(&topic(TopicRole::Aggregates)?);
        let replay = keyed("aggregates.ndjson", &aggregate_key)?;
        if replay.len() < 100 {
            return Err(format!("not a meaningful run: {} aggregates in replay", replay.len()));
        }
        // Every window of the config has figures (those grouped without `store` go through
        // the repartition stage).
        let windows: std::collections::BTreeSet<&str> = replay.values().map(|v| text(v, "window")).collect();
        let silent: Vec<&str> =
            config.processing.windows.iter().map(|w| w.name.as_str()).filter(|w| !windows.contains(w)).collect();
        if !silent.is_empty() {
            return Err(format!("no aggregate of windows {silent:?} in replay"));
        }
        same("aggregates", &kafka, &replay).map(|()| (replay.len(), windows.into_iter().collect::<Vec<_>>().join(", ")))
    })();
    let (n, windows) = result.as_ref().cloned().unwrap_or_default();
    check(
        &format!("aggregates on Kafka equal replay ({n} keys over windows {windows}, last value per key)"),
        result.map(|_| ()),
    );
    // Inventory.
    let replay_inventory = keyed("inventory.ndjson", &|v| format!("{}|{}", text(v, "store_id"), text(v, "sku_id")));
    let result = (|| {
        let kafka = last_values(&topic(TopicRole::InventoryState)?);
        let replay = replay_inventory.as_ref().map_err(String::clone)?;
        if replay.len() < 100 {
            return Err(format!("not a meaningful run: {} inventory positions in replay", replay.len()));
        }
        same("inventory", &kafka, replay).map(|()| replay.len())
    })();
    let n = result.as_ref().map(|n| *n).unwrap_or(0);
    check(&format!("inventory on Kafka equals replay ({n} store/SKU positions)"), result.map(|_| ()));
    // Alerts.
    let result = (|| {
        let kafka = last_values(&topic(TopicRole::Alerts)?);
        let replay = keyed("alerts.ndjson", &|v| text(v, "alert_id").to_string())?;
        same("alerts", &kafka, &replay).map(|()| replay.len())
    })();
    let n = result.as_ref().map(|n| *n).unwrap_or(0);
    check(&format!("alerts on Kafka equal replay ({n} alerts)"), result.map(|_| ()));
    // Dead letters and late events.
    let result = (|| {
        let mut kafka: Vec<(String, String)> = topic(TopicRole::DeadLetter)?
            .iter()
            .map(|r| {
                (
                    r.headers.get("stockpulse.reason_code").cloned().unwrap_or_default(),
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned(),
                )
            })
            .collect();
        kafka.sort();
        let mut replay: Vec<(String, String)> = replay_lines(&out, "dead-letter.ndjson")?
            .iter()
            .map(|v| (text(v, "reason_code").to_string(), text(v, "original").to_string()))
            .collect();
        replay.sort();
        let mut kafka_late: Vec<String> = topic(TopicRole::Late)?.iter().filter_map(|r| r.key.clone()).collect();
        kafka_late.sort();
        let mut replay_late: Vec<String> =
            replay_lines(&out, "late.ndjson")?.iter().map(|v| text(v, "event_id").to_string()).collect();
        replay_late.sort();
        if kafka != replay {
            return Err(format!("dead letters: {} on Kafka, {} in replay", kafka.len(), replay.len()));
        }
        if kafka_late != replay_late {
            return Err(format!("late events: {} on Kafka, {} in replay", kafka_late.len(), replay_late.len()));
        }
        Ok((replay.len(), replay_late.len()))
    })();
    let (d, l) = result.as_ref().map(|x| *x).unwrap_or((0, 0));
    check(&format!("dead letters ({d}) and late events ({l}) on Kafka equal replay"), result.map(|_| ()));
    replay_inventory.ok()
}

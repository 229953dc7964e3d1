//! The process kubelet: for each Deployment in the namespaces it watches, it runs the pod
//! template's container as local processes, one per replica, and writes pod and Deployment
//! status back to the API server. No containers, no images, no network namespaces:
//!
//! - **Images** map to local binaries (`--image REPOSITORY=BINARY`; the tag is ignored); a
//!   container's `args` are given to that binary (its `command`, if any, stands for the
//!   image's entrypoint: its first word is dropped, the rest go before `args`).
//! - **Volumes**: `configMap`, `secret` (their `items`, or every key) and `emptyDir` are
//!   materialised under the pod's folder (`<work>/<namespace>/<pod>/root/<mountPath>`). As
//!   there is no mount namespace, the mount paths are rewritten to those folders in the
//!   container's args and env values and in the text of the files written from ConfigMaps
//!   (a config file that names a mounted file, as the processor's `pipeline.yaml` does). A
//!   missing ConfigMap or Secret keeps the pod `Pending` (`CreateContainerConfigError`), as a
//!   kubelet would; other volume kinds and `subPath` are refused the same way.
//! - **Env**: `HOSTNAME` is the pod name (the processor's instance id); `value`,
//!   `valueFrom.secretKeyRef`, `valueFrom.configMapKeyRef` and `valueFrom.fieldRef`
//!   (`metadata.name`, `metadata.namespace`) are resolved.
//! - **Ports**: each pod has its own network in Kubernetes, here they share the loopback: the
//!   container's `http` port becomes a free port, given to the binary with the flag named by
//!   `--port-flag REPOSITORY=FLAG` (the processor's `--http-port`), and probes use it.
//! - **Replicas** follow `spec.replicas`; a changed pod template (its hash, which includes the
//!   operator's config-hash annotation) replaces every pod: a rolling update within the
//!   strategy's `maxSurge` and `maxUnavailable` (new pods started, old ones stopped once
//!   enough are ready), or with `type: Recreate` all old pods stopped first. Scale-down stops
//!   not-ready pods first, then the newest.
//! - **Stopping** is SIGTERM, then SIGKILL after `terminationGracePeriodSeconds`. A process
//!   that exits on its own is restarted with a back-off (`restartPolicy: Always`). Every
//!   process gets SIGKILL if the kubelet dies (`PR_SET_PDEATHSIG`).
//! - **Readiness** is the container's `readinessProbe.httpGet` with its `periodSeconds`,
//!   `failureThreshold` and `successThreshold` (a ready pod turns unready after that many
//!   failures a period apart), except that a pod not ready is probed every second, so it is
//!   seen ready sooner than a kubelet would; without a probe, "running". Liveness and
//!   startup probes are not run.
//! - **Status**: a Pod object per process (owned by the Deployment, `nodeName` the kubelet's,
//!   its status `Running`/`Pending`, `Ready`, restarts, exit codes) and the Deployment's
//!   status subresource (`replicas`, `updatedReplicas`, `readyReplicas`,
//!   `availableReplicas`, `unavailableReplicas`, `observedGeneration`, the `Available` and
//!   `Progressing` conditions), written only when they change.
//!
//! Each process logs to `<work>/<namespace>/<pod>/container.log`; `<work>/state.json` lists
//! the processes (pid, pod, readiness, the loopback ports standing for the container's) and
//! the exits seen, for the suite and for debugging.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, PodSpec, Secret};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The label the kubelet puts on its pods, as a ReplicaSet would.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// An image repository and the local binary that stands for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageBinary {
    pub repository: String,
    pub binary: PathBuf,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub namespaces: Vec<String>,
    pub work_dir: PathBuf,
    pub images: Vec<ImageBinary>,
    /// Repository -> the flag that gives the binary its HTTP port.
    pub port_flags: BTreeMap<String, String>,
    pub node_name: String,
    pub period: Duration,
}

/// `REPOSITORY=VALUE`, split at the last `=`.
pub fn split_pair(text: &str) -> Result<(String, String), String> {
    match text.rsplit_once('=') {
        Some((k, v)) if !k.is_empty() && !v.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{text:?} is not REPOSITORY=VALUE")),
    }
}

/// An image reference without its tag or digest.
pub fn repository_of(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(colon) if !image[colon..].contains('/') => &image[..colon],
        _ => image,
    }
}

/// The hash of a pod template (ten hex digits).
pub fn template_hash(template: &impl serde::Serialize) -> String {
    let text = serde_json::to_vec(template).unwrap_or_default();
    let digest = Sha256::digest(&text);
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// Rewrites every mount path of `mounts` (container path -> local folder) found in `text`,
/// where it is followed by `/`, the end, or a character that cannot be in a path. The longest
/// mount path wins where one contains another.
pub fn rewrite_paths(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut sorted: Vec<&(String, PathBuf)> = mounts.iter().filter(|(p, _)| p.len() > 1).collect();
    sorted.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'scan: while !rest.is_empty() {
        for (path, local) in &sorted {
            if let Some(after) = rest.strip_prefix(path.as_str()) {
                let boundary = after.chars().next().is_none_or(|c| !(c.is_alphanumeric() || "-_.".contains(c)));
                let starts_word = out.chars().last().is_none_or(|c| !(c.is_alphanumeric() || "-_./".contains(c)));
                if boundary && starts_word {
                    out.push_str(&local.display().to_string());
                    rest = after;
                    continue 'scan;
                }
            }
        }
        let mut chars = rest.chars();
        if let Some(c) = chars.next() {
            out.push(c);
        }
        rest = chars.as_str();
    }
    out
}

/// What a pod runs, once its volumes are materialised.
#[derive(Debug)]
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    readiness: Option<ReadinessProbe>,
    /// Container port name (or number) -> the loopback port standing for it.
    ports: BTreeMap<String, u16>,
    image: String,
    container: String,
}

/// An HTTP readiness probe on a loopback port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReadinessProbe {
    path: String,
    port: u16,
    period: Duration,
    failure_threshold: u32,
    success_threshold: u32,
}

#[derive(Debug)]
struct PodProcess {
    name: String,
    namespace: String,
    deployment: String,
    deployment_uid: String,
    hash: String,
    dir: PathBuf,
    template: k8s_openapi::api::core::v1::PodTemplateSpec,
    launch: Option<Launch>,
    /// Why the process does not run (reason, message).
    waiting: Option<(String, String)>,
    child: Option<Child>,
    started_at: Option<String>,
    ready: bool,
    next_probe: Option<Instant>,
    probe_failures: u32,
    probe_successes: u32,
    restarts: i32,
    restart_at: Option<Instant>,
    last_exit: Option<String>,
    /// When SIGKILL follows the SIGTERM already sent.
    kill_at: Option<Instant>,
    created_in_api: bool,
    written_status: Option<Value>,
}

impl PodProcess {
    fn terminating(&self) -> bool {
        self.kill_at.is_some()
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// One exit the kubelet saw, for the state file.
#[derive(Clone, Debug, serde::Serialize)]
struct Exit {
    namespace: String,
    pod: String,
    status: String,
    after_sigterm: bool,
}

pub struct Kubelet {
    client: Client,
    options: Options,
    pods: Vec<PodProcess>,
    exits: Vec<Exit>,
    counter: u64,
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn exit_text(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// A GET of `path` on the loopback `port`: whether it answered 2xx or 3xx within a second.
fn probe(port: u16, path: &str) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    if write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
    }
    let text = String::from_utf8_lossy(&head[..read]);
    text.split_whitespace().nth(1).and_then(|s| s.parse::<u16>().ok()).is_some_and(|code| (200..400).contains(&code))
}

/// Writes `bytes` to `path`, creating its folder.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Keys of a volume: its items (key, path), or every key.
fn volume_items(
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
    keys: Vec<String>,
) -> Vec<(String, String)> {
    match items {
        Some(items) => items.iter().map(|i| (i.key.clone(), i.path.clone())).collect(),
        None => keys.into_iter().map(|k| (k.clone(), k)).collect(),
    }
}

type Waiting = (String, String);

fn config_error(message: String) -> Waiting {
    ("CreateContainerConfigError".to_string(), message)
}

/// The ConfigMaps and Secrets of a namespace, by name.
struct Sources {
    config_maps: HashMap<String, ConfigMap>,
    secrets: HashMap<String, Secret>,
}

impl Kubelet {
    pub fn new(client: Client, options: Options) -> Kubelet {
        Kubelet { client, options, pods: Vec::new(), exits: Vec::new(), counter: 0 }
    }

    /// Runs until SIGTERM or SIGINT, then stops every process (SIGTERM, SIGKILL after the
    /// grace period).
    pub async fn run(mut self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        self.delete_stale_pods().await;
        loop {
            if let Err(e) = self.sync().await {
                eprintln!("process-kubelet: {e}");
            }
            self.write_state();
            tokio::select! {
                _ = tokio::time::sleep(self.options.period) => {}
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        eprintln!("process-kubelet: stopping {} process(es)", self.pods.iter().filter(|p| p.child.is_some()).count());
        for pod in &mut self.pods {
            if !pod.terminating() {
                terminate(pod);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        while self.pods.iter().any(|p| p.child.is_some()) && Instant::now() < deadline {
            self.drive_processes();
            std::thread::sleep(Duration::from_millis(100));
        }
        for pod in &mut self.pods {
            if let Some(child) = pod.child.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        self.write_state();
        Ok(())
    }

    /// Pod objects on this kubelet's node that no process of this kubelet stands for (a
    /// kubelet before this one ran them): deleted, as their processes died with it.
    async fn delete_stale_pods(&self) {
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.options.node_name));
        for namespace in &self.options.namespaces {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
            let Ok(list) = api.list(&params).await else { continue };
            for pod in list.items {
                let name = pod.name_any();
                eprintln!("process-kubelet: deleting pod {namespace}/{name} of an earlier kubelet");
                let delete = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
                if let Err(e) = api.delete(&name, &delete).await {
                    eprintln!("process-kubelet: deleting pod {namespace}/{name}: {e}");
                }
            }
        }
    }

    /// One pass: every Deployment of every namespace reconciled, processes driven, status
    /// written.
    pub async fn sync(&mut self) -> anyhow::Result<()> {
        let mut seen_uids = HashSet::new();
        let namespaces = self.options.namespaces.clone();
        let mut all_deployments = Vec::new();
        for namespace in &namespaces {
            let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), namespace);
            let list = deployments.list(&ListParams::default()).await?.items;
            let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
            let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
            let sources = Sources {
                config_maps: config_maps
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .map(|c| (c.name_any(), c))
                    .collect(),
                secrets: secrets
                    .list(&ListParams::default())
                    .await?
                    .items
                    .into_iter()
                    .map(|s| (s.name_any(), s))
                    .collect(),
            };
            for deployment in &list {
                seen_uids.insert(deployment.uid().unwrap_or_default());
                self.reconcile(deployment, &sources);
            }
            // Pods still waiting for a ConfigMap or Secret try again.
            for pod in self.pods.iter_mut().filter(|p| &p.namespace == namespace) {
                if pod.launch.is_none() && !pod.terminating() {
                    match prepare(pod, &self.options, &sources) {
                        Ok(launch) => {
                            pod.launch = Some(launch);
                            pod.waiting = None;
                        }
                        Err(waiting) => pod.waiting = Some(waiting),
                    }
                }
            }
            all_deployments.extend(list);
        }
        // Pods of deleted Deployments stop.
        for pod in &mut self.pods {
            if !seen_uids.contains(&pod.deployment_uid) && !pod.terminating() {
                eprintln!(
                    "process-kubelet: deployment {}/{} is gone: stopping {}",
                    pod.namespace, pod.deployment, pod.name
                );
                terminate(pod);
            }
        }
        self.drive_processes();
        self.write_pods().await;
        for deployment in &all_deployments {
            if let Err(e) = self.write_deployment_status(deployment).await {
                eprintln!("process-kubelet: status of deployment {}: {e}", deployment.name_any());
            }
        }
        Ok(())
    }

    fn reconcile(&mut self, deployment: &Deployment, sources: &Sources) {
        let spec = &deployment.spec;
        let uid = deployment.uid().unwrap_or_default();
        let name = deployment.name_any();
        let namespace = deployment.namespace().unwrap_or_default();
        let desired =
            if deployment.metadata.deletion_timestamp.is_some() { 0 } else { spec.replicas.unwrap_or(1).max(0) };
        let desired = usize::try_from(desired).unwrap_or(0);
        let hash = template_hash(&spec.template);
        let grace = spec.template.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
        let live = |p: &PodProcess| p.deployment_uid == uid && !p.terminating();
        let old: Vec<usize> =
            (0..self.pods.len()).filter(|&i| live(&self.pods[i]) && self.pods[i].hash != hash).collect();
        let mut current: Vec<usize> =
            (0..self.pods.len()).filter(|&i| live(&self.pods[i]) && self.pods[i].hash == hash).collect();
        let recreate = spec.strategy.as_ref().and_then(|s| s.type_.as_deref()) == Some("Recreate");
        if recreate {
            // Every pod of an old template stops, and none of the new one starts before.
            for &i in &old {
                eprintln!("process-kubelet: {name}: template {hash} (Recreate): stopping {}", self.pods[i].name);
                terminate_with_grace(&mut self.pods[i], grace);
            }
            if self.pods.iter().any(|p| p.deployment_uid == uid && p.hash != hash) {
                return;
            }
        } else if !old.is_empty() {
            // A rolling update: new pods up to `desired`, never more than `desired + maxSurge`
            // in all; old pods stop (not ready ones first) while `desired - maxUnavailable`
            // stay ready.
            let (surge, unavailable) = rolling_limits(spec.strategy.as_ref(), desired);
            let mut total = old.len() + current.len();
            while current.len() < desired && total < desired + surge {
                let pod = self.new_pod(&namespace, &name, &uid, &hash, &spec.template, sources);
                eprintln!("process-kubelet: {namespace}/{name}: rolling to {hash}: starting pod {}", pod.name);
                self.pods.push(pod);
                current.push(self.pods.len() - 1);
                total += 1;
            }
            let min_ready = desired.saturating_sub(unavailable);
            let mut ready = old.iter().chain(&current).filter(|&&i| self.pods[i].ready).count();
            let mut old = old;
            old.sort_by_key(|&i| (self.pods[i].ready, std::cmp::Reverse(i)));
            for i in old {
                let was_ready = self.pods[i].ready;
                if was_ready && ready <= min_ready {
                    break;
                }
                eprintln!("process-kubelet: {namespace}/{name}: rolling to {hash}: stopping {}", self.pods[i].name);
                terminate_with_grace(&mut self.pods[i], grace);
                if was_ready {
                    ready -= 1;
                }
            }
            return;
        }
        while current.len() < desired {
            let pod = self.new_pod(&namespace, &name, &uid, &hash, &spec.template, sources);
            eprintln!(
                "process-kubelet: {namespace}/{name}: starting pod {} ({} of {desired})",
                pod.name,
                current.len() + 1
            );
            self.pods.push(pod);
            current.push(self.pods.len() - 1);
        }
        if current.len() > desired {
            // Not ready first, then the newest.
            current.sort_by_key(|&i| (self.pods[i].ready, std::cmp::Reverse(i)));
            for &i in &current[..current.len() - desired] {
                eprintln!(
                    "process-kubelet: {namespace}/{name}: scaling down to {desired}: stopping {}",
                    self.pods[i].name
                );
                terminate_with_grace(&mut self.pods[i], grace);
            }
        }
    }

    fn new_pod(
        &mut self,
        namespace: &str,
        deployment: &str,
        uid: &str,
        hash: &str,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
        sources: &Sources,
    ) -> PodProcess {
        self.counter += 1;
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let mut seed =
            (nanos as u64) ^ self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ u64::from(std::process::id());
        let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
        let suffix: String = (0..5)
            .map(|_| {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                alphabet[((seed >> 33) % alphabet.len() as u64) as usize] as char
            })
            .collect();
        let name = format!("{deployment}-{hash}-{suffix}");
        let dir = self.options.work_dir.join(namespace).join(&name);
        let mut pod = PodProcess {
            name,
            namespace: namespace.to_string(),
            deployment: deployment.to_string(),
            deployment_uid: uid.to_string(),
            hash: hash.to_string(),
            dir,
            template: template.clone(),
            launch: None,
            waiting: None,
            child: None,
            started_at: None,
            ready: false,
            next_probe: None,
            probe_failures: 0,
            probe_successes: 0,
            restarts: 0,
            restart_at: Some(Instant::now()),
            last_exit: None,
            kill_at: None,
            created_in_api: false,
            written_status: None,
        };
        match prepare(&pod, &self.options, sources) {
            Ok(launch) => pod.launch = Some(launch),
            Err(waiting) => {
                eprintln!("process-kubelet: pod {} waits: {}: {}", pod.name, waiting.0, waiting.1);
                pod.waiting = Some(waiting);
            }
        }
        pod
    }

    /// Exits, restarts, readiness and the SIGKILL of the grace period.
    fn drive_processes(&mut self) {
        let now = Instant::now();
        for pod in &mut self.pods {
            if let Some(child) = pod.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let text = exit_text(status);
                eprintln!("process-kubelet: pod {} exited: {text}", pod.name);
                self.exits.push(Exit {
                    namespace: pod.namespace.clone(),
                    pod: pod.name.clone(),
                    status: text.clone(),
                    after_sigterm: pod.terminating(),
                });
                pod.child = None;
                pod.ready = false;
                pod.last_exit = Some(text);
                if !pod.terminating() {
                    pod.restarts += 1;
                    let backoff = Duration::from_secs(1 << pod.restarts.clamp(0, 4));
                    pod.restart_at = Some(now + backoff);
                }
            }
            if let Some(kill_at) = pod.kill_at
                && now >= kill_at
                && let Some(child) = pod.child.as_mut()
            {
                eprintln!("process-kubelet: pod {} did not stop within its grace period: SIGKILL", pod.name);
                let _ = child.kill();
            }
            if pod.child.is_none()
                && !pod.terminating()
                && pod.launch.is_some()
                && pod.restart_at.is_some_and(|at| now >= at)
            {
                pod.restart_at = None;
                match spawn(pod) {
                    Ok(child) => {
                        eprintln!("process-kubelet: pod {} runs as pid {}", pod.name, child.id());
                        pod.child = Some(child);
                        pod.started_at = Some(now_rfc3339());
                        pod.waiting = None;
                        pod.next_probe = Some(now);
                        pod.probe_failures = 0;
                        pod.probe_successes = 0;
                    }
                    Err(e) => {
                        eprintln!("process-kubelet: pod {}: {e}", pod.name);
                        pod.waiting = Some(("RunContainerError".to_string(), e));
                        pod.restarts += 1;
                        pod.restart_at = Some(now + Duration::from_secs(5));
                    }
                }
            }
            if pod.child.is_some() && !pod.terminating() {
                match pod.launch.as_ref().and_then(|l| l.readiness.clone()) {
                    None => pod.ready = true,
                    Some(readiness) if pod.next_probe.is_none_or(|at| now >= at) => {
                        if probe(readiness.port, &readiness.path) {
                            pod.probe_successes += 1;
                            pod.probe_failures = 0;
                        } else {
                            pod.probe_failures += 1;
                            pod.probe_successes = 0;
                        }
                        if !pod.ready && pod.probe_successes >= readiness.success_threshold {
                            pod.ready = true;
                        } else if pod.ready && pod.probe_failures >= readiness.failure_threshold {
                            eprintln!(
                                "process-kubelet: pod {} is not ready ({} probes failed)",
                                pod.name, pod.probe_failures
                            );
                            pod.ready = false;
                        }
                        let every = if pod.ready { readiness.period } else { Duration::from_secs(1) };
                        pod.next_probe = Some(now + every);
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// Creates, updates and deletes the Pod objects of the processes.
    async fn write_pods(&mut self) {
        let client = self.client.clone();
        let node = self.options.node_name.clone();
        let mut gone = Vec::new();
        for (i, pod) in self.pods.iter_mut().enumerate() {
            let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
            if pod.terminating() && pod.child.is_none() {
                let params = DeleteParams { grace_period_seconds: Some(0), ..DeleteParams::default() };
                match api.delete(&pod.name, &params).await {
                    Ok(_) => gone.push(i),
                    Err(kube::Error::Api(e)) if e.code == 404 => gone.push(i),
                    Err(e) => eprintln!("process-kubelet: deleting pod {}: {e}", pod.name),
                }
                continue;
            }
            if !pod.created_in_api {
                match api.create(&PostParams::default(), &pod_object(pod, &node)).await {
                    Ok(_) => pod.created_in_api = true,
                    Err(kube::Error::Api(e)) if e.code == 409 => pod.created_in_api = true,
                    Err(e) => {
                        eprintln!("process-kubelet: creating pod {}: {e}", pod.name);
                        continue;
                    }
                }
            }
            let status = pod_status(pod);
            if pod.written_status.as_ref() != Some(&status) {
                let patch = json!({ "status": status });
                match api.patch_status(&pod.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => pod.written_status = Some(status),
                    Err(kube::Error::Api(e)) if e.code == 404 => pod.created_in_api = false,
                    Err(e) => eprintln!("process-kubelet: status of pod {}: {e}", pod.name),
                }
            }
        }
        for i in gone.into_iter().rev() {
            self.pods.remove(i);
        }
    }

    async fn write_deployment_status(&self, deployment: &Deployment) -> Result<(), kube::Error> {
        let spec = &deployment.spec;
        let uid = deployment.uid().unwrap_or_default();
        let hash = template_hash(&spec.template);
        let desired = spec.replicas.unwrap_or(1).max(0);
        let pods: Vec<&PodProcess> = self.pods.iter().filter(|p| p.deployment_uid == uid && !p.terminating()).collect();
        let count = |f: &dyn Fn(&PodProcess) -> bool| pods.iter().filter(|p| f(p)).count() as i32;
        let replicas = pods.len() as i32;
        let updated = count(&|p| p.hash == hash);
        let ready = count(&|p| p.ready);
        let unavailable = (desired - ready).max(0);
        let current = deployment.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or(Value::Null));
        let old_condition = |type_: &str| -> Option<Value> {
            current
                .as_ref()
                .and_then(|s| s.get("conditions"))
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c.get("type").and_then(Value::as_str) == Some(type_)).cloned())
        };
        let condition = |type_: &str, status: bool, reason: &str, message: String| -> Value {
            let status = if status { "True" } else { "False" };
            let now = now_rfc3339();
            let old = old_condition(type_);
            let same = |field: &str, value: &str| {
                old.as_ref().and_then(|c| c.get(field)).and_then(Value::as_str) == Some(value)
            };
            let keep = |field: &str, unchanged: bool| -> Value {
                match old.as_ref().and_then(|c| c.get(field)) {
                    Some(t) if unchanged => t.clone(),
                    _ => Value::String(now.clone()),
                }
            };
            let transition = keep("lastTransitionTime", same("status", status));
            let update =
                keep("lastUpdateTime", same("status", status) && same("reason", reason) && same("message", &message));
            json!({ "type": type_, "status": status, "reason": reason, "message": message,
                    "lastTransitionTime": transition, "lastUpdateTime": update })
        };
        let available = ready >= desired;
        let complete = updated == desired && ready == desired && replicas == desired;
        let conditions = vec![
            condition(
                "Available",
                available,
                if available { "MinimumReplicasAvailable" } else { "MinimumReplicasUnavailable" },
                format!("{ready} of {desired} replicas ready (process-kubelet)"),
            ),
            condition(
                "Progressing",
                true,
                if complete { "NewReplicaSetAvailable" } else { "ReplicaSetUpdated" },
                format!("pod template {hash}: {updated} updated, {ready} ready (process-kubelet)"),
            ),
        ];
        let status = json!({
            "observedGeneration": deployment.metadata.generation,
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": if unavailable > 0 { json!(unavailable) } else { Value::Null },
            "conditions": conditions,
        });
        let unchanged = current.as_ref().is_some_and(|c| {
            [
                "observedGeneration",
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
            ]
            .iter()
            .all(|f| c.get(*f).filter(|v| !v.is_null()) == status.get(*f).filter(|v| !v.is_null()))
                && c.get("conditions") == status.get("conditions")
        });
        if unchanged {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), &deployment.namespace().unwrap_or_default());
        match api
            .patch_status(&deployment.name_any(), &PatchParams::default(), &Patch::Merge(&json!({ "status": status })))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn write_state(&self) {
        let pods: Vec<Value> = self
            .pods
            .iter()
            .map(|p| {
                json!({
                    "namespace": p.namespace, "deployment": p.deployment, "pod": p.name, "hash": p.hash,
                    "pid": p.pid(), "ready": p.ready, "terminating": p.terminating(), "restarts": p.restarts,
                    "waiting": p.waiting.as_ref().map(|(r, m)| format!("{r}: {m}")), "lastExit": p.last_exit,
                    "log": p.dir.join("container.log"), "ports": p.launch.as_ref().map(|l| &l.ports),
                })
            })
            .collect();
        let state = json!({ "pods": pods, "exits": self.exits });
        let path = self.options.work_dir.join("state.json");
        let temp = self.options.work_dir.join("state.json.tmp");
        let text = serde_json::to_vec_pretty(&state).unwrap_or_default();
        if std::fs::write(&temp, text).is_ok() {
            let _ = std::fs::rename(&temp, &path);
        }
    }
}

/// (maxSurge, maxUnavailable) of a rolling update to `desired` pods: a number, or a percentage
/// of `desired` (surge rounded up, unavailable down), 25% each by default; never both 0.
pub fn rolling_limits(
    strategy: Option<&k8s_openapi::api::apps::v1::DeploymentStrategy>,
    desired: usize,
) -> (usize, usize) {
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    let value = |v: Option<&IntOrString>, round_up: bool| -> usize {
        match v {
            Some(IntOrString::Int(n)) => usize::try_from(*n).unwrap_or(0),
            Some(IntOrString::String(text)) => {
                let percent = text.trim_end_matches('%').parse::<usize>().unwrap_or(25);
                if round_up { (desired * percent).div_ceil(100) } else { desired * percent / 100 }
            }
            None => {
                if round_up {
                    (desired * 25).div_ceil(100)
                } else {
                    desired * 25 / 100
                }
            }
        }
    };
    let surge = value(rolling.and_then(|r| r.max_surge.as_ref()), true);
    let unavailable = value(rolling.and_then(|r| r.max_unavailable.as_ref()), false);
    if surge == 0 && unavailable == 0 { (1, 0) } else { (surge, unavailable) }
}

fn terminate(pod: &mut PodProcess) {
    let grace = pod.template.spec.as_ref().and_then(|s| s.termination_grace_period_seconds).unwrap_or(30);
    terminate_with_grace(pod, grace);
}

/// SIGTERM now, SIGKILL after `grace` seconds.
fn terminate_with_grace(pod: &mut PodProcess, grace: i64) {
    pod.kill_at = Some(Instant::now() + Duration::from_secs(u64::try_from(grace).unwrap_or(0)));
    pod.ready = false;
    if let Some(pid) = pod.pid().and_then(|p| i32::try_from(p).ok()) {
        // SAFETY: kill(2) on the pid of a child of this process that has not been reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}

/// Starts the pod's process, logging to `container.log` in its folder, with SIGKILL as its
/// parent-death signal.
fn spawn(pod: &PodProcess) -> Result<Child, String> {
    let launch = pod.launch.as_ref().ok_or("nothing to launch")?;
    let log_path = pod.dir.join("container.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let err = log.try_clone().map_err(|e| format!("cannot clone the log handle: {e}"))?;
    let mut command = Command::new(&launch.program);
    command.args(&launch.args).envs(launch.env.iter().cloned()).current_dir(&pod.dir);
    command.stdin(Stdio::null()).stdout(log).stderr(err).process_group(0);
    // SAFETY: prctl(2) is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn().map_err(|e| format!("cannot start {}: {e}", launch.program.display()))
}

/// The container's volumes written under the pod's folder, its args, env and ports resolved.
fn prepare(pod: &PodProcess, options: &Options, sources: &Sources) -> Result<Launch, Waiting> {
    let spec: &PodSpec = pod.template.spec.as_ref().ok_or_else(|| config_error("the template has no spec".into()))?;
    let container: &Container =
        spec.containers.first().ok_or_else(|| config_error("the template has no container".into()))?;
    if spec.init_containers.as_ref().is_some_and(|c| !c.is_empty()) || spec.containers.len() > 1 {
        return Err(config_error("one container and no init containers is all this kubelet runs".into()));
    }
    let image = container.image.clone().unwrap_or_default();
    let repository = repository_of(&image);
    let binary = options
        .images
        .iter()
        .find(|i| i.repository == repository)
        .map(|i| i.binary.clone())
        .ok_or_else(|| ("ErrImageNeverPull".to_string(), format!("no local binary for image {image}")))?;

    let root = pod.dir.join("root");
    let mut mounts: Vec<(String, PathBuf)> = Vec::new();
    // (file, from a ConfigMap): ConfigMap files are rewritten once every mount is known.
    let mut files: Vec<(PathBuf, Vec<u8>, bool)> = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        if mount.sub_path.as_ref().is_some_and(|s| !s.is_empty()) {
            return Err(config_error(format!("volume mount {}: subPath is not supported", mount.name)));
        }
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .ok_or_else(|| config_error(format!("volume {} is not in the pod spec", mount.name)))?;
        let local = root.join(mount.mount_path.trim_start_matches('/'));
        if let Some(source) = &volume.config_map {
            match sources.config_maps.get(&source.name) {
                Some(config_map) => {
                    let data = config_map.data.clone().unwrap_or_default();
                    let binary_data = config_map.binary_data.clone().unwrap_or_default();
                    let keys = data.keys().chain(binary_data.keys()).cloned().collect();
                    for (key, path) in volume_items(source.items.as_ref(), keys) {
                        let bytes = match (data.get(&key), binary_data.get(&key)) {
                            (Some(text), _) => text.clone().into_bytes(),
                            (None, Some(bytes)) => bytes.0.clone(),
                            (None, None) => {
                                return Err(config_error(format!("configmap {} has no key {key}", source.name)));
                            }
                        };
                        files.push((local.join(path), bytes, true));
                    }
                }
                None if source.optional == Some(true) => {}
                None => return Err(config_error(format!("configmap \"{}\" not found", source.name))),
            }
        } else if let Some(source) = &volume.secret {
            let name = source.secret_name.clone().unwrap_or_default();
            match sources.secrets.get(&name) {
                Some(secret) => {
                    let mut data: BTreeMap<String, Vec<u8>> =
                        secret.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                    for (k, v) in secret.string_data.clone().unwrap_or_default() {
                        data.insert(k, v.into_bytes());
                    }
                    for (key, path) in volume_items(source.items.as_ref(), data.keys().cloned().collect()) {
                        let bytes = data
                            .get(&key)
                            .ok_or_else(|| config_error(format!("secret {name} has no key {key}")))?
                            .clone();
                        files.push((local.join(path), bytes, false));
                    }
                }
                None if source.optional == Some(true) => {}
                None => return Err(config_error(format!("secret \"{name}\" not found"))),
            }
        } else if volume.empty_dir.is_none() {
            return Err(config_error(format!(
                "volume {}: only configMap, secret and emptyDir are supported",
                volume.name
            )));
        }
        std::fs::create_dir_all(&local).map_err(|e| config_error(format!("cannot create {}: {e}", local.display())))?;
        mounts.push((mount.mount_path.clone(), local));
    }
    for (path, bytes, from_config_map) in files {
        let bytes = match (from_config_map, String::from_utf8(bytes)) {
            (true, Ok(text)) => rewrite_paths(&text, &mounts).into_bytes(),
            (_, Ok(text)) => text.into_bytes(),
            (_, Err(e)) => e.into_bytes(),
        };
        write_file(&path, &bytes).map_err(config_error)?;
    }

    let mut env: Vec<(String, String)> = vec![("HOSTNAME".to_string(), pod.name.clone())];
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => rewrite_paths(value, &mounts),
            (None, Some(from)) => {
                if let Some(key) = &from.secret_key_ref {
                    let secret = sources.secrets.get(&key.name);
                    let bytes = secret
                        .and_then(|s| s.data.as_ref())
                        .and_then(|d| d.get(&key.key))
                        .map(|b| b.0.clone())
                        .or_else(|| {
                            secret.and_then(|s| s.string_data.as_ref()?.get(&key.key).map(|v| v.clone().into_bytes()))
                        });
                    match bytes {
                        Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(config_error(format!(
                                "secret {} key {} not found (env {})",
                                key.name, key.key, var.name
                            )));
                        }
                    }
                } else if let Some(key) = &from.config_map_key_ref {
                    match sources.config_maps.get(&key.name).and_then(|c| c.data.as_ref()?.get(&key.key).cloned()) {
                        Some(value) => value,
                        None if key.optional == Some(true) => continue,
                        None => {
                            return Err(config_error(format!(
                                "configmap {} key {} not found (env {})",
                                key.name, key.key, var.name
                            )));
                        }
                    }
                } else if let Some(field) = &from.field_ref {
                    match field.field_path.as_str() {
                        "metadata.name" => pod.name.clone(),
                        "metadata.namespace" => pod.namespace.clone(),
                        "spec.nodeName" => options.node_name.clone(),
                        "status.podIP" | "status.hostIP" => "127.0.0.1".to_string(),
                        other => {
                            return Err(config_error(format!("env {}: fieldRef {other} is not supported", var.name)));
                        }
                    }
                } else {
                    return Err(config_error(format!("env {}: this valueFrom is not supported", var.name)));
                }
            }
            (None, None) => String::new(),
        };
        env.push((var.name.clone(), value));
    }

    let mut args: Vec<String> = match &container.command {
        Some(command) => command.iter().skip(1).cloned().collect(),
        None => Vec::new(),
    };
    args.extend(container.args.iter().flatten().cloned());
    let mut args: Vec<String> = args.iter().map(|a| rewrite_paths(a, &mounts)).collect();

    // Ports: each named container port gets a free loopback port.
    let mut ports: HashMap<String, u16> = HashMap::new();
    let mut by_number: HashMap<i32, u16> = HashMap::new();
    for port in container.ports.iter().flatten() {
        let local = stockpulse_testkit::free_port();
        by_number.insert(port.container_port, local);
        if let Some(name) = &port.name {
            ports.insert(name.clone(), local);
        }
    }
    if let (Some(flag), Some(port)) = (options.port_flags.get(repository), ports.get("http")) {
        args.push(flag.clone());
        args.push(port.to_string());
    }
    let readiness = container.readiness_probe.as_ref().and_then(|probe| {
        let get = probe.http_get.as_ref()?;
        let port = match &get.port {
            IntOrString::String(name) => ports.get(name).copied().unwrap_or(0),
            IntOrString::Int(n) => by_number.get(n).copied().unwrap_or_else(|| u16::try_from(*n).unwrap_or(0)),
        };
        let positive =
            |v: Option<i32>, default: u32| v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0).unwrap_or(default);
        Some(ReadinessProbe {
            path: get.path.clone().unwrap_or_else(|| "/".to_string()),
            port,
            period: Duration::from_secs(u64::from(positive(probe.period_seconds, 10))),
            failure_threshold: positive(probe.failure_threshold, 3),
            success_threshold: positive(probe.success_threshold, 1),
        })
    });
    std::fs::create_dir_all(&pod.dir).map_err(|e| config_error(format!("cannot create {}: {e}", pod.dir.display())))?;
    let mut port_map: BTreeMap<String, u16> = by_number.iter().map(|(n, p)| (n.to_string(), *p)).collect();
    port_map.extend(ports);
    Ok(Launch { program: binary, args, env, readiness, ports: port_map, image, container: container.name.clone() })
}

/// The Pod object of a process: the template's labels (with the template hash), annotations
/// and spec, on the kubelet's node, owned by the Deployment.
fn pod_object(pod: &PodProcess, node: &str) -> Pod {
    let meta = pod.template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(TEMPLATE_HASH_LABEL.to_string(), pod.hash.clone());
    let mut spec = pod.template.spec.clone().unwrap_or_default();
    spec.node_name = Some(node.to_string());
    Pod {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(pod.name.clone()),
            namespace: Some(pod.namespace.clone()),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "apps/v1".to_string(),
                kind: "Deployment".to_string(),
                name: pod.deployment.clone(),
                uid: pod.deployment_uid.clone(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

fn pod_status(pod: &PodProcess) -> Value {
    let running = pod.child.is_some();
    let (image, container) = match &pod.launch {
        Some(l) => (l.image.clone(), l.container.clone()),
        None => {
            let c = pod.template.spec.as_ref().and_then(|s| s.containers.first());
            (c.and_then(|c| c.image.clone()).unwrap_or_default(), c.map(|c| c.name.clone()).unwrap_or_default())
        }
    };
    let state = match (&pod.child, &pod.waiting, &pod.last_exit) {
        (Some(_), _, _) => json!({ "running": { "startedAt": pod.started_at } }),
        (None, Some((reason, message)), _) => json!({ "waiting": { "reason": reason, "message": message } }),
        (None, None, Some(exit)) => json!({ "waiting": { "reason": "CrashLoopBackOff", "message": exit } }),
        (None, None, None) => json!({ "waiting": { "reason": "ContainerCreating" } }),
    };
    let ready = if pod.ready { "True" } else { "False" };
    let phase = if running || pod.restarts > 0 { "Running" } else { "Pending" };
    json!({
        "phase": phase,
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "podIPs": [{ "ip": "127.0.0.1" }],
        "startTime": pod.started_at,
        "conditions": [
            { "type": "PodScheduled", "status": "True" },
            { "type": "Initialized", "status": "True" },
            { "type": "ContainersReady", "status": ready },
            { "type": "Ready", "status": ready },
        ],
        "containerStatuses": [{
            "name": container, "image": image, "imageID": "", "ready": pod.ready, "started": running,
            "restartCount": pod.restarts, "state": state,
            "lastState": match &pod.last_exit {
                Some(exit) => json!({ "terminated": { "exitCode": exit_code(exit), "reason": exit } }),
                None => json!({}),
            },
        }],
    })
}

fn exit_code(text: &str) -> i32 {
    if let Some(code) = text.strip_prefix("exit code ") {
        return code.parse().unwrap_or(1);
    }
    text.strip_prefix("signal ").and_then(|s| s.parse::<i32>().ok()).map_or(1, |s| 128 + s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_drop_the_tag_and_digest_but_not_a_registry_port() {
        assert_eq!(
            repository_of("ghcr.io/stockpulse/stockpulse-processor:0.1.0"),
            "ghcr.io/stockpulse/stockpulse-processor"
        );
        assert_eq!(repository_of("localhost:5000/processor"), "localhost:5000/processor");
        assert_eq!(repository_of("localhost:5000/processor:1@sha256:ab"), "localhost:5000/processor");
        assert_eq!(repository_of("processor"), "processor");
    }

    #[test]
    fn mount_paths_are_rewritten_on_path_boundaries_only() {
        let mounts = vec![
            ("/etc/stockpulse/config".to_string(), PathBuf::from("/w/root/etc/stockpulse/config")),
            ("/etc/stockpulse/catalog".to_string(), PathBuf::from("/w/root/etc/stockpulse/catalog")),
            ("/tmp".to_string(), PathBuf::from("/w/root/tmp")),
        ];
        assert_eq!(
            rewrite_paths("/etc/stockpulse/config/pipeline.yaml", &mounts),
            "/w/root/etc/stockpulse/config/pipeline.yaml"
        );
        assert_eq!(
            rewrite_paths("catalogFile: /etc/stockpulse/catalog/catalog.ndjson\n", &mounts),
            "catalogFile: /w/root/etc/stockpulse/catalog/catalog.ndjson\n"
        );
        assert_eq!(rewrite_paths("--out=/tmp", &mounts), "--out=/w/root/tmp");
        // Not a mount: a longer name, or the mount path inside another path.
        assert_eq!(rewrite_paths("/etc/stockpulse/configs/x", &mounts), "/etc/stockpulse/configs/x");
        assert_eq!(rewrite_paths("/var/tmp/x", &mounts), "/var/tmp/x");
        assert_eq!(rewrite_paths("/tmpfile", &mounts), "/tmpfile");
    }

    fn pod_of(template: Value, dir: &Path) -> PodProcess {
        PodProcess {
            name: "p-0123456789-abcde".into(),
            namespace: "ns".into(),
            deployment: "p".into(),
            deployment_uid: "uid".into(),
            hash: "0123456789".into(),
            dir: dir.to_path_buf(),
            template: serde_json::from_value(template).expect("a pod template"),
            launch: None,
            waiting: None,
            child: None,
            started_at: None,
            ready: false,
            next_probe: None,
            probe_failures: 0,
            probe_successes: 0,
            restarts: 0,
            restart_at: None,
            last_exit: None,
            kill_at: None,
            created_in_api: false,
            written_status: None,
        }
    }

    fn template() -> Value {
        json!({
            "spec": {
                "containers": [{
                    "name": "processor",
                    "image": "example.org/proc:1.0",
                    "args": ["run", "--config", "/etc/app/config/pipeline.yaml"],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5, "failureThreshold": 2},
                    "env": [
                        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                        {"name": "DATA", "value": "/etc/app/secret/token"}
                    ],
                    "volumeMounts": [
                        {"name": "config", "mountPath": "/etc/app/config"},
                        {"name": "secret", "mountPath": "/etc/app/secret"},
                        {"name": "tmp", "mountPath": "/tmp"}
                    ]
                }],
                "volumes": [
                    {"name": "config", "configMap": {"name": "cfg"}},
                    {"name": "secret", "secret": {"secretName": "creds", "items": [{"key": "token", "path": "token"}]}},
                    {"name": "tmp", "emptyDir": {}}
                ]
            }
        })
    }

    fn sources(with_secret: bool) -> Sources {
        let config_map: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "cfg"},
            "data": {"pipeline.yaml": "tokenFile: /etc/app/secret/token\nother: /etc/app/secrets\n"}
        }))
        .expect("a ConfigMap");
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": "creds"},
            "data": {"token": "czNjcjN0"}
        }))
        .expect("a Secret");
        Sources {
            config_maps: HashMap::from([("cfg".to_string(), config_map)]),
            secrets: if with_secret { HashMap::from([("creds".to_string(), secret)]) } else { HashMap::new() },
        }
    }

    fn options() -> Options {
        Options {
            namespaces: vec!["ns".into()],
            work_dir: PathBuf::from("/unused"),
            images: vec![ImageBinary { repository: "example.org/proc".into(), binary: PathBuf::from("/bin/proc") }],
            port_flags: BTreeMap::from([("example.org/proc".to_string(), "--http-port".to_string())]),
            node_name: "node".into(),
            period: Duration::from_secs(1),
        }
    }

    #[test]
    fn a_pod_gets_its_volumes_env_args_and_a_port_of_its_own() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let pod = pod_of(template(), dir.path());
        let launch = prepare(&pod, &options(), &sources(true)).expect("the pod can start");
        let root = dir.path().join("root");
        let config = root.join("etc/app/config");
        assert_eq!(launch.program, PathBuf::from("/bin/proc"));
        let port = launch.readiness.as_ref().map(|r| r.port).expect("a readiness probe");
        assert_eq!(
            launch.readiness,
            Some(ReadinessProbe {
                path: "/readyz".into(),
                port,
                period: Duration::from_secs(5),
                failure_threshold: 2,
                success_threshold: 1
            })
        );
        assert_eq!(
            launch.args,
            vec![
                "run".to_string(),
                "--config".to_string(),
                config.join("pipeline.yaml").display().to_string(),
                "--http-port".to_string(),
                port.to_string()
            ]
        );
        // The ConfigMap's file names the Secret's by its mount path: rewritten; a longer name is not.
        let text = std::fs::read_to_string(config.join("pipeline.yaml")).expect("the config file");
        let token = root.join("etc/app/secret/token");
        assert_eq!(text, format!("tokenFile: {}\nother: /etc/app/secrets\n", token.display()));
        assert_eq!(std::fs::read(&token).expect("the secret file"), b"s3cr3t");
        assert!(root.join("tmp").is_dir());
        let env: BTreeMap<String, String> = launch.env.into_iter().collect();
        assert_eq!(env["HOSTNAME"], "p-0123456789-abcde");
        assert_eq!(env["POD"], "p-0123456789-abcde");
        assert_eq!(env["TOKEN"], "s3cr3t");
        assert_eq!(env["DATA"], token.display().to_string());
    }

    #[test]
    fn a_missing_secret_or_an_unknown_image_keeps_the_pod_waiting() {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let pod = pod_of(template(), dir.path());
        let (reason, message) = prepare(&pod, &options(), &sources(false)).expect_err("no secret");
        assert_eq!((reason.as_str(), message.as_str()), ("CreateContainerConfigError", "secret \"creds\" not found"));
        let mut other = template();
        other["spec"]["containers"][0]["image"] = json!("example.org/other:1.0");
        let pod = pod_of(other, dir.path());
        let (reason, _) = prepare(&pod, &options(), &sources(true)).expect_err("no binary");
        assert_eq!(reason, "ErrImageNeverPull");
    }

    #[test]
    fn rolling_limits_follow_the_strategy() {
        use k8s_openapi::api::apps::v1::{DeploymentStrategy, RollingUpdateDeployment};
        let strategy = |surge: IntOrString, unavailable: IntOrString| DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(surge),
                max_unavailable: Some(unavailable),
            }),
        };
        // The operator's: one more pod, none unavailable.
        assert_eq!(rolling_limits(Some(&strategy(IntOrString::Int(1), IntOrString::Int(0))), 2), (1, 0));
        assert_eq!(rolling_limits(None, 4), (1, 1));
        assert_eq!(rolling_limits(None, 2), (1, 0));
        let percent = strategy(IntOrString::String("50%".into()), IntOrString::String("50%".into()));
        assert_eq!(rolling_limits(Some(&percent), 3), (2, 1));
        assert_eq!(rolling_limits(Some(&strategy(IntOrString::Int(0), IntOrString::Int(0))), 3), (1, 0));
    }

    #[test]
    fn pairs_split_at_the_last_equals_sign() {
        assert_eq!(split_pair("a/b:1=/bin/x"), Ok(("a/b:1".to_string(), "/bin/x".to_string())));
        assert!(split_pair("nothing").is_err());
    }

    #[test]
    fn the_template_hash_follows_the_template() {
        let a = json!({"metadata": {"annotations": {"h": "1"}}});
        let b = json!({"metadata": {"annotations": {"h": "2"}}});
        assert_eq!(template_hash(&a).len(), 10);
        assert_eq!(template_hash(&a), template_hash(&a.clone()));
        assert_ne!(template_hash(&a), template_hash(&b));
    }
}

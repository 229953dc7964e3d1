//! A Kubernetes control plane for tests: etcd and kube-apiserver on free loopback ports, from
//! the binaries `scripts/install-test-tools.sh` builds (`STOCKPULSE_ETCD`,
//! `STOCKPULSE_KUBE_APISERVER`, `STOCKPULSE_KUBE_CONTROLLER_MANAGER`), with everything they
//! need generated in a temporary folder by the `openssl` command: a CA, the API server's
//! serving certificate (127.0.0.1, localhost), an admin client certificate (group
//! `system:masters`), the service-account signing key pair, and an admin kubeconfig
//! (`kubeconfig`).
//!
//! The API server runs with `--authorization-mode=RBAC` and the admission plugin
//! `OwnerReferencesPermissionEnforcement` (besides the default ones). No kubelet runs. By default
//! ([`ControlPlane::shared`]) no kube-controller-manager runs either: nothing turns
//! Deployments into ReplicaSets or pods, and owned objects are not garbage-collected (tests
//! assert the owner references instead), and nothing but the test writes to the API server.
//! [`ControlPlane::shared_with_controllers`] adds kube-controller-manager with the garbage
//! collector and the Deployment and ReplicaSet controllers.
//!
//! Each process runs under a small shell guard that reads the test's end of a pipe: when the
//! test process ends, however it ends, the pipe closes and the guard kills the process, so a
//! control plane shared by the tests of one binary never outlives it ([`Drop`] kills them
//! too), and etcd's guard removes the temporary folder.
//!
//! Where the binaries are not installed, [`ControlPlane::shared`] returns `None` after
//! writing `SKIPPED: control plane: <reason>` to stderr (uncaptured, so the line is in the
//! test log), and the test returns early; with the environment variable `CI` set it panics
//! instead: CI installs the binaries, so there the tests run.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Deserialize as _;

use crate::{free_port, wait_for_port};

/// The environment variable naming the etcd binary.
pub const ETCD_VAR: &str = "STOCKPULSE_ETCD";
/// The environment variable naming the kube-apiserver binary.
pub const APISERVER_VAR: &str = "STOCKPULSE_KUBE_APISERVER";
/// The environment variable naming the kube-controller-manager binary (only
/// [`ControlPlane::shared_with_controllers`] needs it).
pub const CONTROLLER_MANAGER_VAR: &str = "STOCKPULSE_KUBE_CONTROLLER_MANAGER";

/// The controllers [`ControlPlane::shared_with_controllers`] runs: garbage collection of
/// owned objects, and Deployments turned into ReplicaSets and those into (never scheduled)
/// pods.
pub const CONTROLLERS: &str = "garbage-collector-controller,deployment-controller,replicaset-controller";

/// How long etcd and the API server may take to serve (a cold start on a loaded 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the CRDs may take to be Established.
const CRD_TIMEOUT: Duration = Duration::from_secs(60);

/// The field manager the harness installs CRDs with.
pub const HARNESS_MANAGER: &str = "stockpulse-testkit";

/// The binaries a control plane needs, from the environment.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub apiserver: PathBuf,
    /// Where [`CONTROLLER_MANAGER_VAR`] names a file.
    pub controller_manager: Option<PathBuf>,
}

impl Binaries {
    /// The binaries named by [`ETCD_VAR`] and [`APISERVER_VAR`], or why they cannot be used.
    pub fn from_env() -> Result<Binaries, String> {
        let one = |var: &str| -> Result<PathBuf, String> {
            match std::env::var_os(var) {
                Some(path) if !path.is_empty() => {
                    let path = PathBuf::from(path);
                    if path.is_file() { Ok(path) } else { Err(format!("{var}={} is not a file", path.display())) }
                }
                _ => {
                    Err(format!("{var} is not set (run `bash scripts/install-test-tools.sh && source .tools/env.sh`)"))
                }
            }
        };
        Ok(Binaries {
            etcd: one(ETCD_VAR)?,
            apiserver: one(APISERVER_VAR)?,
            controller_manager: one(CONTROLLER_MANAGER_VAR).ok(),
        })
    }
}

/// What a test does when the control plane's binaries are missing: in CI (env `CI` set)
/// that is a failure; elsewhere the test is skipped, loudly. Returns the binaries, or `None`
/// after printing `SKIPPED: control plane: <reason>`.
pub fn binaries_or_skip() -> Option<Binaries> {
    skip_unless(Binaries::from_env())
}

/// The binaries including kube-controller-manager, or `None` after a printed skip (a panic
/// in CI), as [`binaries_or_skip`].
pub fn binaries_with_controller_manager_or_skip() -> Option<Binaries> {
    skip_unless(Binaries::from_env().and_then(|b| match b.controller_manager {
        Some(_) => Ok(b),
        None => Err(format!(
            "{CONTROLLER_MANAGER_VAR} is not set (run `bash scripts/install-test-tools.sh && source .tools/env.sh`)"
        )),
    }))
}

fn skip_unless(binaries: Result<Binaries, String>) -> Option<Binaries> {
    match binaries {
        Ok(binaries) => Some(binaries),
        Err(reason) => {
            if std::env::var_os("CI").is_some() {
                panic!("CI is set, so the control-plane tests must run, but: {reason}");
            }
            // Straight to stderr, past the test harness's capture, so the skip is in the log.
            let _ = writeln!(std::io::stderr(), "SKIPPED: control plane: {reason}");
            None
        }
    }
}

/// A process under the kill-on-exit guard: it is SIGKILLed when [`Guarded::kill`] is called,
/// when this is dropped, and when the test process ends however it ends (the guard reads the
/// test's end of a pipe). Its stdout and stderr go to a log file.
pub struct Guarded {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Guarded {
    /// Starts `program` with `args` and the extra environment `env`, logging to `log`.
    pub fn spawn(name: &str, program: &Path, args: &[String], env: &[(&str, &OsStr)], log: PathBuf) -> Guarded {
        Guarded::spawn_removing(name, program, args, env, log, None)
    }

    /// As [`Guarded::spawn`]; the guard also removes `remove` after killing the process (the
    /// folder of a harness that lives in a `static` and is never dropped).
    fn spawn_removing(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &OsStr)],
        log: PathBuf,
        remove: Option<&Path>,
    ) -> Guarded {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
        let err = out.try_clone().unwrap_or_else(|e| panic!("cannot clone the log handle of {name}: {e}"));
        // The guard: the program in the background; when stdin closes (the test process
        // ended, or kill() closed it), SIGKILL it, then remove what it was given. A SIGTERM
        // to the guard (terminate()) is passed on to the program. The
        // explicit `<&0` matters: without it a non-interactive bash gives a background list
        // /dev/null as stdin, and the guard would fire at once.
        let mut command = Command::new("bash");
        command
            .arg("-c")
            .arg(
                r#"remove=$1; shift; "$@" </dev/null & pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM
{ cat >/dev/null; kill -9 "$pid" 2>/dev/null; [ -z "$remove" ] && exit
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done; rm -rf "$remove"; } <&0 &
wait "$pid"; status=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; status=$?; done
exit "$status""#,
            )
            .arg(format!("{name}-guard"))
            .arg(remove.map(|p| p.as_os_str()).unwrap_or_default())
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(out)
            .stderr(err);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.display()));
        Guarded { name: name.to_string(), child: Some(child), log }
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Panics with the log's tail if the process has exited.
    pub fn check_running(&mut self) {
        if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
            panic!("{} exited ({status}):\n{}", self.name, tail(&self.log, 40));
        }
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends the process SIGTERM (a graceful stop) and waits up to `within` for it to exit;
    /// its exit status, or `None` if it was still running and got killed.
    pub fn terminate(&mut self, within: std::time::Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = std::time::Instant::now() + within;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        self.kill();
        None
    }

    /// SIGKILLs the process and waits for its guard.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take()); // the guard kills the process
            let _ = child.wait();
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// etcd and kube-apiserver, running; stopped when dropped.
pub struct ControlPlane {
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    /// The admin kubeconfig (client certificate, group `system:masters`).
    pub kubeconfig: PathBuf,
    /// The CA that signed the serving and client certificates.
    pub ca_cert: PathBuf,
    controller_manager: Option<Guarded>,
    apiserver: Guarded,
    etcd: Guarded,
    /// The `--etcd-servers` URL.
    pub etcd_url: String,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// One control plane for all the tests of this test binary, with the CRDs of `crds/`
    /// installed and Established (tests use namespaces of their own); it ends with the binary.
    /// `None` (after a printed skip) where the binaries are not installed, outside CI.
    pub fn shared() -> Option<&'static ControlPlane> {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        let binaries = binaries_or_skip()?;
        Some(SHARED.get_or_init(|| {
            let plane = ControlPlane::start(&binaries);
            plane.install_crds(&crate_root_crds());
            plane
        }))
    }

    /// As [`ControlPlane::shared`], with kube-controller-manager running [`CONTROLLERS`]:
    /// owned objects are garbage-collected, Deployments get ReplicaSets and pods.
    pub fn shared_with_controllers() -> Option<&'static ControlPlane> {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        let binaries = binaries_with_controller_manager_or_skip()?;
        Some(SHARED.get_or_init(|| {
            let mut plane = ControlPlane::start(&binaries);
            plane.install_crds(&crate_root_crds());
            plane.start_controller_manager(&binaries);
            plane
        }))
    }

    /// Starts kube-controller-manager with [`CONTROLLERS`] on the admin kubeconfig (no
    /// leader election, no serving port).
    pub fn start_controller_manager(&mut self, binaries: &Binaries) {
        self.start_controller_manager_with(binaries, CONTROLLERS);
    }

    /// Starts kube-controller-manager with only `controllers` (a `--controllers` list; the
    /// local e2e suite runs the garbage collector alone, its process kubelet standing in for
    /// the Deployment and ReplicaSet controllers).
    pub fn start_controller_manager_with(&mut self, binaries: &Binaries, controllers: &str) {
        let binary =
            binaries.controller_manager.as_ref().unwrap_or_else(|| panic!("{CONTROLLER_MANAGER_VAR} is not set"));
        let args: Vec<String> = vec![
            format!("--kubeconfig={}", self.kubeconfig.display()),
            format!("--controllers={controllers}"),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            "--use-service-account-credentials=false".into(),
            "--v=1".into(),
        ];
        let mut process = Guarded::spawn(
            "kube-controller-manager",
            binary,
            &args,
            &[],
            self.dir.path().join("controller-manager.log"),
        );
        std::thread::sleep(Duration::from_millis(500));
        process.check_running();
        self.controller_manager = Some(process);
    }

    /// The last lines of kube-controller-manager's log, if it runs.
    pub fn controller_manager_log_tail(&self) -> String {
        self.controller_manager.as_ref().map(|p| tail(&p.log, 40)).unwrap_or_default()
    }

    /// A new control plane of its own (no CRDs), stopped when dropped.
    pub fn start(binaries: &Binaries) -> ControlPlane {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("stockpulse-kube-")
            .tempdir()
            .expect("temporary folder for the control plane");
        let d = dir.path().to_path_buf();
        generate_credentials(&d);

        let (etcd_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args: Vec<String> = vec![
            "--name=test".into(),
            format!("--data-dir={}", d.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=test={peer_url}"),
            // A test's data need not survive a power cut: no fsync, a quick start.
            "--unsafe-no-fsync".into(),
            "--log-level=warn".into(),
        ];
        // etcd's guard removes the folder: a shared control plane is never dropped.
        let mut etcd = Guarded::spawn_removing("etcd", &binaries.etcd, &etcd_args, &[], d.join("etcd.log"), Some(&d));
        wait_listening(&mut etcd, &format!("127.0.0.1:{etcd_port}"), started);

        let port = free_port();
        let path = |name: &str| d.join(name).display().to_string();
        let apiserver_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", path("apiserver-certs")),
            format!("--tls-cert-file={}", path("serving.crt")),
            format!("--tls-private-key-file={}", path("serving.key")),
            format!("--client-ca-file={}", path("ca.crt")),
            format!("--service-account-key-file={}", path("sa.pub")),
            format!("--service-account-signing-key-file={}", path("sa.key")),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            "--api-audiences=https://kubernetes.default.svc.cluster.local".into(),
            "--authorization-mode=RBAC".into(),
            // As many clusters run it: setting blockOwnerDeletion on an owner reference needs
            // `update` on the owner's finalizers (the operator's RBAC grants that).
            "--enable-admission-plugins=OwnerReferencesPermissionEnforcement".into(),
            "--service-cluster-ip-range=10.96.0.0/16".into(),
            // The `kubernetes` Service's endpoints may not be a loopback address; no
            // in-cluster client needs them here.
            "--endpoint-reconciler-type=none".into(),
            "--profiling=false".into(),
            "--v=1".into(),
        ];
        let mut apiserver =
            Guarded::spawn("kube-apiserver", &binaries.apiserver, &apiserver_args, &[], d.join("apiserver.log"));
        let server = format!("https://127.0.0.1:{port}");
        wait_listening(&mut apiserver, &format!("127.0.0.1:{port}"), started);

        let kubeconfig = d.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_text(&server, &d)).expect("write the admin kubeconfig");
        let mut plane = ControlPlane {
            server,
            kubeconfig,
            ca_cert: d.join("ca.crt"),
            controller_manager: None,
            apiserver,
            etcd,
            etcd_url,
            dir,
        };
        plane.wait_ready(started);
        let _ = writeln!(
            std::io::stderr(),
            "control plane: etcd and kube-apiserver ready at {} in {:.1}s",
            plane.server,
            started.elapsed().as_secs_f64()
        );
        plane
    }

    /// The temporary folder: credentials, logs, etcd's data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the API server's log, for a failing test's message.
    pub fn apiserver_log_tail(&self) -> String {
        tail(&self.apiserver.log, 40)
    }

    /// A client with the admin credentials, on the calling runtime.
    pub async fn client(&self) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.kubeconfig.display()));
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot use {}: {e}", self.kubeconfig.display()));
        kube::Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a client for {}: {e}", self.server))
    }

    /// A client with the admin credentials that impersonates `user` in `groups` (the API
    /// server authorizes each request as that user), on the calling runtime.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> kube::Client {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", self.kubeconfig.display()));
        let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("cannot use {}: {e}", self.kubeconfig.display()));
        config.auth_info.impersonate = Some(user.to_string());
        config.auth_info.impersonate_groups = Some(groups.iter().map(|g| g.to_string()).collect());
        kube::Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a client for {}: {e}", self.server))
    }

    /// Runs `work` on a runtime of its own, on a thread of its own, so it can be called from
    /// synchronous code and from inside another runtime alike.
    fn block_on<T: Send + 'static>(
        &self,
        work: impl FnOnce(PathBuf) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>> + Send + 'static,
    ) -> T {
        let kubeconfig = self.kubeconfig.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("cannot build a runtime: {e}"));
            runtime.block_on(work(kubeconfig))
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    }

    /// Waits until `/readyz` answers `ok` (every post-start hook done, the bootstrap RBAC
    /// roles among them).
    fn wait_ready(&mut self, started: Instant) {
        let deadline = started + START_TIMEOUT;
        loop {
            self.etcd.check_running();
            self.apiserver.check_running();
            let answer = self.block_on(|kubeconfig| {
                Box::pin(async move {
                    let client = client_from(&kubeconfig).await?;
                    let request = http::Request::get("/readyz").body(Vec::new()).map_err(|e| e.to_string())?;
                    client.request_text(request).await.map_err(|e| e.to_string())
                })
            });
            match answer {
                Ok(text) if text.trim() == "ok" => return,
                other => {
                    if Instant::now() > deadline {
                        panic!(
                            "kube-apiserver at {} not ready within {START_TIMEOUT:?}: last answer {other:?}\n{}",
                            self.server,
                            self.apiserver_log_tail()
                        );
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Server-side applies every CRD of the files in `files` (field manager
    /// [`HARNESS_MANAGER`]) and waits until each is Established.
    pub fn install_crds(&self, files: &[PathBuf]) {
        let mut crds: Vec<CustomResourceDefinition> = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
            for document in serde_yaml::Deserializer::from_str(&text) {
                let value = serde_yaml::Value::deserialize(document)
                    .unwrap_or_else(|e| panic!("{} is not YAML: {e}", file.display()));
                if value.is_null() {
                    continue;
                }
                let crd: CustomResourceDefinition = serde_yaml::from_value(value)
                    .unwrap_or_else(|e| panic!("{} is not a CustomResourceDefinition: {e}", file.display()));
                crds.push(crd);
            }
        }
        let result = self.block_on(move |kubeconfig| {
            Box::pin(async move {
                let client = client_from(&kubeconfig).await?;
                let api: Api<CustomResourceDefinition> = Api::all(client);
                let params = PatchParams::apply(HARNESS_MANAGER).force();
                let mut names = Vec::new();
                for crd in &crds {
                    let name = crd.metadata.name.clone().ok_or("a CRD without metadata.name")?;
                    api.patch(&name, &params, &Patch::Apply(crd))
                        .await
                        .map_err(|e| format!("applying CRD {name}: {e}"))?;
                    names.push(name);
                }
                let deadline = Instant::now() + CRD_TIMEOUT;
                for name in &names {
                    loop {
                        let crd = api.get(name).await.map_err(|e| format!("reading CRD {name}: {e}"))?;
                        let established = crd
                            .status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"));
                        if established {
                            break;
                        }
                        if Instant::now() > deadline {
                            return Err(format!("CRD {name} not Established within {CRD_TIMEOUT:?}: {:?}", crd.status));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Ok::<(), String>(())
            })
        });
        if let Err(e) = result {
            panic!("installing the CRDs failed: {e}\n{}", self.apiserver_log_tail());
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The controllers, the API server, its store; the folder goes after.
        if let Some(mut controller_manager) = self.controller_manager.take() {
            controller_manager.kill();
        }
        self.apiserver.kill();
        self.etcd.kill();
    }
}

/// The CRD files of the repository's `crds/` folder, sorted.
pub fn crate_root_crds() -> Vec<PathBuf> {
    crate::yaml_files(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds"))
}

async fn client_from(kubeconfig: &Path) -> Result<kube::Client, String> {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    kube::Client::try_from(config).map_err(|e| e.to_string())
}

/// Waits until the guarded process listens on `addr`, or panics with its log.
fn wait_listening(process: &mut Guarded, addr: &str, started: Instant) {
    while std::net::TcpStream::connect(addr).is_err() {
        process.check_running();
        if started.elapsed() > START_TIMEOUT {
            panic!("{} did not listen on {addr} within {START_TIMEOUT:?}:\n{}", process.name, tail(&process.log, 40));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    wait_for_port(addr, &process.name, Duration::from_secs(1));
}

/// Runs `openssl` with `args` in `dir`, or panics with its output.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run openssl (the control plane's certificates need it): {e}"));
    assert!(
        output.status.success(),
        "openssl {} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The CA, the serving and admin certificates, and the service-account key pair, in `dir`.
fn generate_credentials(dir: &Path) {
    std::fs::write(
        dir.join("serving.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("write serving.ext");
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    )
    .expect("write client.ext");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "3", "-subj", "/CN=stockpulse-test-ca"]);
    openssl(dir, &ca);
    for (name, subject, ext) in [
        ("serving", "/CN=kube-apiserver", "serving.ext"),
        ("admin", "/O=system:masters/CN=stockpulse-test-admin", "client.ext"),
    ] {
        let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
        let mut req = vec!["req"];
        req.extend(ec);
        req.extend(["-keyout", &key, "-out", &csr, "-subj", subject]);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "3",
                "-extfile",
                ext,
                "-out",
                &crt,
            ],
        );
    }
    openssl(dir, &["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key"]);
    openssl(dir, &["pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
}

fn kubeconfig_text(server: &str, dir: &Path) -> String {
    let p = |name: &str| dir.join(name).display().to_string();
    format!(
        "apiVersion: v1\n\
         kind: Config\n\
         clusters:\n\
         - name: stockpulse-test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\n\
         users:\n\
         - name: admin\n  user:\n    client-certificate: {crt}\n    client-key: {key}\n\
         contexts:\n\
         - name: admin\n  context:\n    cluster: stockpulse-test\n    user: admin\n    namespace: default\n\
         current-context: admin\n",
        ca = p("ca.crt"),
        crt = p("admin.crt"),
        key = p("admin.key"),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::Guarded;

    #[test]
    fn the_guard_keeps_the_process_until_killed_then_kills_it_and_removes_its_folder() {
        let dir = tempfile::tempdir().expect("temporary folder");
        let folder = dir.path().join("data");
        std::fs::create_dir(&folder).expect("create the folder");
        let mut process = Guarded::spawn_removing(
            "sleep",
            Path::new("sleep"),
            &["30".to_string()],
            &[],
            dir.path().join("sleep.log"),
            Some(&folder),
        );
        // A guard that read /dev/null instead of the pipe would have fired by now.
        std::thread::sleep(Duration::from_millis(500));
        assert!(process.is_running(), "the guard killed the process early: {}", process.log_text());
        let killed = Instant::now();
        process.kill();
        assert!(!process.is_running());
        assert!(killed.elapsed() < Duration::from_secs(5), "kill took {:?}", killed.elapsed());
        let deadline = Instant::now() + Duration::from_secs(10);
        while folder.exists() {
            assert!(Instant::now() < deadline, "the guard did not remove {}", folder.display());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

//! `stockpulse-operator run` starts, serves /healthz, /readyz and /metrics, and keeps trying
//! leader election (without crashing) while the API server cannot be reached.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: smoke\r\nConnection: close\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn run_serves_its_endpoints_while_the_api_server_is_unreachable() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: none\n  cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}\nusers:\n- name: u\n  user: {token: t}\ncontexts:\n- name: c\n  context: {cluster: none, user: u, namespace: default}\ncurrent-context: c\n",
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_stockpulse-operator"))
        .args(["run", "--http-addr", &addr, "--identity", "smoke", "--lease-namespace", "default"])
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        if let Some(r) = get(&addr, "/healthz") {
            break r;
        }
        assert!(Instant::now() < deadline, "/healthz never answered");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(get(&addr, "/readyz").unwrap_or_default().starts_with("HTTP/1.1 200"));
    let metrics = get(&addr, "/metrics").unwrap_or_default();
    // Valid OpenMetrics text. Nothing was reconciled: the only series counts the attempts
    // to read the Lease.
    assert!(metrics.starts_with("HTTP/1.1 200") && metrics.ends_with("\n# EOF\n"), "{metrics}");
    let series: Vec<&str> = metrics.lines().filter(|l| l.starts_with("stockpulse_operator_")).collect();
    assert!(
        !series.is_empty()
            && series.iter().all(|l| l.starts_with(
                "stockpulse_operator_kube_requests_total{verb=\"get\",resource=\"leases.coordination.k8s.io\"}"
            )),
        "{metrics}"
    );
    // Still waiting for the Lease a while later, not crashed.
    std::thread::sleep(Duration::from_secs(2));
    assert!(running.0.try_wait().unwrap().is_none(), "the operator exited without a cluster");
}

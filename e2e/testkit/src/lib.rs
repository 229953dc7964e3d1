//! Test harnesses of stockpulse: real services on free loopback ports, started and stopped
//! by the tests themselves.
//!
//! - [`kafka::Kafka`]: Apache Kafka in KRaft mode, one node (the reference broker: every
//!   exactly-once, rebalance and lag claim is proven on it), from the jars that
//!   `scripts/install-test-tools.sh` puts in `STOCKPULSE_KAFKA_LIBS`.
//! - [`tansu::Tansu`]: the tansu broker, in memory, for quick protocol tests.
//! - [`image`]: whether an image's runtime base provides the libraries its binary links.
//! - [`control_plane::ControlPlane`]: etcd and kube-apiserver with an admin kubeconfig and
//!   the CRDs of `crds/` installed (`STOCKPULSE_ETCD`, `STOCKPULSE_KUBE_APISERVER`); where
//!   they are not installed its tests print `SKIPPED: control plane: ...` and return, except
//!   in CI (env `CI` set), where that is a failure.
//!
//! A harness whose tool is not installed panics with the command that installs it: a test
//! never passes, or skips silently, for want of its broker.

pub mod control_plane;
pub mod image;
pub mod kafka;
pub mod tansu;

use std::net::TcpListener;
use std::path::PathBuf;

/// The path in an environment variable the install script sets, or a panic that says how
/// to set it.
pub fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{var} is not set: run `bash scripts/install-test-tools.sh && source .tools/env.sh` first \
             (this test never skips silently)"
        ),
    }
}

/// The `.yaml` files of a folder, sorted by name, or a panic naming the folder.
pub fn yaml_files(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        // A kustomization lists the files; it is not one of them.
        .filter(|p| p.file_name().is_some_and(|n| n != "kustomization.yaml"))
        .collect();
    files.sort();
    files
}

/// A loopback port that was free a moment ago, and never handed out before by this process
/// (the kernel may give a just-closed port again at once, and two services started on one
/// port fail: Kafka's broker and controller listeners did).
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or_else(|e| panic!("no free loopback port: {e}"));
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Waits until `addr` accepts TCP connections, or panics naming `what` after `timeout`.
pub fn wait_for_port(addr: &str, what: &str, timeout: std::time::Duration) {
    let deadline = std::time::Instant::now() + timeout;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(std::time::Instant::now() < deadline, "{what} did not listen on {addr} within {timeout:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A GET on a loopback HTTP address: (status, `Location`, body).
pub fn http_get(address: &str, path: &str) -> Result<(u16, Option<String>, String), String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).map_err(|e| format!("connect {address}: {e}"))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).map_err(|e| e.to_string())?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|e| format!("GET {path} on {address}: {e}"))?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let location = head.lines().find_map(|l| {
        l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("location")).map(|(_, v)| v.trim().to_string())
    });
    // A chunked body is not expected (the processor's and operator's answers carry a length).
    Ok((status, location, body.to_string()))
}

/// A `stockpulse-operator run` process's requests to the API server so far, by verb and
/// resource: its metric `stockpulse_operator_kube_requests_total` from `/metrics` at
/// `address`.
pub fn operator_requests(address: &str) -> Result<std::collections::BTreeMap<(String, String), u64>, String> {
    let (status, _, body) = http_get(address, "/metrics")?;
    if status != 200 {
        return Err(format!("operator /metrics answered {status}"));
    }
    let mut requests = std::collections::BTreeMap::new();
    for line in body.lines().filter(|l| l.starts_with("stockpulse_operator_kube_requests_total{")) {
        let label = |name: &str| {
            line.split(&format!("{name}=\"")).nth(1).and_then(|rest| rest.split('"').next()).unwrap_or_default()
        };
        let count = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) as u64;
        requests.insert((label("verb").to_string(), label("resource").to_string()), count);
    }
    Ok(requests)
}

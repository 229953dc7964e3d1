//! Leader election of two `stockpulse-operator run` processes on a real kube-apiserver
//! (stockpulse_testkit::control_plane): one holds the coordination.k8s.io Lease and keeps
//! it, the other waits; when the leader is killed (SIGKILL, so it cannot release anything)
//! the other takes the Lease over once it expires. The operator's lease lasts 15 s and a
//! candidate retries every 5 s, so the takeover comes at most 20 s after the kill. A leader
//! stopped gracefully (SIGTERM) releases the Lease, and a third takes it at its next retry,
//! within 5 s. The test prints both times it measured.
//!
//! Skipped, with a printed `SKIPPED: control plane: ...`, where the binaries are not
//! installed, except in CI.

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use stockpulse_testkit::control_plane::{ControlPlane, Guarded};
use stockpulse_testkit::free_port;

const NAMESPACE: &str = "leader-election";
const LEASE: &str = "stockpulse-operator";
/// The operator's lease duration and retry period (controller/run.rs).
const LEASE_DURATION: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(5);

const TEST_TIMEOUT: Duration = Duration::from_secs(240);

/// An operator process under the testkit's kill-on-exit guard (SIGKILLed on kill(), on
/// drop, and when the test process ends).
struct Operator {
    identity: &'static str,
    process: Guarded,
}

impl Operator {
    fn start(plane: &ControlPlane, identity: &'static str) -> Operator {
        let args: Vec<String> = [
            "run",
            "--http-addr",
            &format!("127.0.0.1:{}", free_port()),
            "--identity",
            identity,
            "--namespace",
            NAMESPACE,
            "--lease-namespace",
            NAMESPACE,
            "--lease-name",
            LEASE,
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        let process = Guarded::spawn(
            identity,
            Path::new(env!("CARGO_BIN_EXE_stockpulse-operator")),
            &args,
            &[("KUBECONFIG", plane.kubeconfig.as_os_str()), ("RUST_LOG", OsStr::new("info"))],
            plane.dir().join(format!("{identity}.log")),
        );
        Operator { identity, process }
    }

    fn log_text(&self) -> String {
        self.process.log_text()
    }

    fn kill(&mut self) {
        self.process.kill();
    }

    fn assert_running(&mut self) {
        assert!(self.process.is_running(), "operator {} exited:\n{}", self.identity, self.log_text());
    }
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .unwrap_or_else(|e| panic!("reading the Lease: {e}"))
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
}

/// Waits until `next` holds the Lease, at most `bound` after `since` (when the leader
/// stopped, as `how` says); prints and returns how long it took.
async fn takes_over(leases: &Api<Lease>, next: &mut Operator, since: Instant, bound: Duration, how: &str) -> Duration {
    while holder(leases).await.as_deref() != Some(next.identity) {
        next.assert_running();
        assert!(since.elapsed() < bound, "{} did not take over within {bound:?}:\n{}", next.identity, next.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = since.elapsed();
    let _ = writeln!(
        std::io::stderr(),
        "leader election: {} took the Lease {took:.1?} after the leader {how}",
        next.identity
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_operators_elect_one_leader_and_the_other_takes_over_when_it_is_killed() {
    let test = async {
        let Some(plane) = tokio::task::spawn_blocking(ControlPlane::shared)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        else {
            return;
        };
        let client = plane.client().await;
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}});
        namespaces
            .patch(NAMESPACE, &PatchParams::apply("stockpulse-test"), &Patch::Apply(&body))
            .await
            .unwrap_or_else(|e| panic!("namespace: {e}"));
        let leases: Api<Lease> = Api::namespaced(client, NAMESPACE);

        let mut a = Operator::start(plane, "operator-a");
        // The first one alone creates the Lease and leads.
        let deadline = Instant::now() + Duration::from_secs(60);
        while holder(&leases).await.as_deref() != Some("operator-a") {
            a.assert_running();
            assert!(Instant::now() < deadline, "operator-a never took the Lease:\n{}", a.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut b = Operator::start(plane, "operator-b");

        // For two retry periods of b and two renewals of a, a keeps the Lease and b waits.
        let watch_until = Instant::now() + 2 * RETRY + Duration::from_secs(1);
        let mut renewals = std::collections::BTreeSet::new();
        while Instant::now() < watch_until {
            let lease = leases.get(LEASE).await.unwrap_or_else(|e| panic!("{e}"));
            let spec = lease.spec.unwrap_or_default();
            assert_eq!(spec.holder_identity.as_deref(), Some("operator-a"));
            assert_eq!(spec.lease_duration_seconds, Some(15));
            renewals.insert(spec.renew_time.map(|t| t.0));
            a.assert_running();
            b.assert_running();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        assert!(renewals.len() >= 2, "the leader renews every 5 s: {renewals:?}");
        assert!(a.log_text().contains("\"message\":\"leading\""), "{}", a.log_text());
        assert!(!b.log_text().contains("\"message\":\"leading\""), "operator-b leads too:\n{}", b.log_text());

        // Kill the leader; b takes the Lease once it has expired.
        let transitions_before = leases.get(LEASE).await.ok().and_then(|l| l.spec).and_then(|s| s.lease_transitions);
        let killed_at = Instant::now();
        a.kill();
        let takeover =
            takes_over(&leases, &mut b, killed_at, LEASE_DURATION + RETRY + Duration::from_secs(2), "was killed").await;
        // Not before the lease of a (renewed at most 5 s before the kill) could expire.
        assert!(takeover >= LEASE_DURATION - RETRY, "took over after {takeover:?}, before the lease expired");
        let lease = leases.get(LEASE).await.unwrap_or_else(|e| panic!("{e}")).spec.unwrap_or_default();
        assert_eq!(lease.lease_transitions, Some(transitions_before.unwrap_or(0) + 1));
        let deadline = Instant::now() + Duration::from_secs(10);
        while !b.log_text().contains("\"message\":\"leading\"") {
            assert!(
                Instant::now() < deadline,
                "operator-b holds the Lease but never logged `leading`:\n{}",
                b.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        b.assert_running();

        // A graceful stop (SIGTERM, as Kubernetes stops a pod) releases the Lease: the
        // standby takes it at its next retry, not after the lease expired.
        let mut c = Operator::start(plane, "operator-c");
        tokio::time::sleep(Duration::from_secs(2)).await;
        c.assert_running();
        assert_eq!(holder(&leases).await.as_deref(), Some("operator-b"));
        let stopped_at = Instant::now();
        let status = tokio::task::block_in_place(|| b.process.terminate(Duration::from_secs(10)));
        assert!(status.is_some_and(|s| s.success()), "operator-b did not stop cleanly ({status:?}):\n{}", b.log_text());
        assert!(b.log_text().contains("released the leader lease"), "{}", b.log_text());
        takes_over(&leases, &mut c, stopped_at, RETRY + Duration::from_secs(2), "was stopped with SIGTERM").await;
    };
    tokio::time::timeout(TEST_TIMEOUT, test).await.expect("leader election test timed out");
}

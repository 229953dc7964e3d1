//! `stockpulse-operator replicate`: copies a region's topics from its regional Kafka cluster
//! (the source) to the pipeline's cluster (the target), exactly once. The StoreRegion
//! controller runs it as a Deployment.
//!
//! - [`resume`]: a session's start: connect, fence an older replicator, read the
//!   checkpoints, find where each partition resumes (a gap counted as lost);
//! - [`copy_loop`]: a session's copying, in batches, one target transaction per batch
//!   holding the records and the source offsets they cover;
//! - [`checkpoint`]: the compacted checkpoint topic in the target (offsets and status);
//! - [`partitioning`]: the target partition of a record (Java's murmur2 of its key);
//! - [`health`]: reasons, metrics and the HTTP endpoints; [`backoff`]: waits between
//!   sessions, so an outage never becomes a crash loop.
//!
//! Copied records keep key, value, headers and timestamp, and get an `origin-region`
//! header (the region) unless they have one; a record whose `origin-region` is the target's
//! is not copied back. Source-side consumer-group offsets are never used.

pub mod backoff;
pub mod checkpoint;
pub mod copy_loop;
pub mod health;
pub mod partitioning;
pub mod resume;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::kafka_admin::KafkaTarget;
use health::Health;

/// A region's replicator id: its transactional id in the target (a restarted replicator
/// fences the one before it) and, with `.checkpoints`, the name of its checkpoint topic.
pub fn replicator_id(namespace: &str, region: &str) -> String {
    format!("stockpulse-replicator.{namespace}.{region}")
}

#[derive(Clone, Debug)]
pub struct Replication {
    pub source: KafkaTarget,
    pub target: KafkaTarget,
    /// Topics copied, under the same names in both clusters.
    pub topics: Vec<String>,
    /// Transactional id in the target (see [`replicator_id`]).
    pub id: String,
    /// The region records come from: the value of the `origin-region` header added.
    pub region: String,
    /// The origin of records produced in the target: never copied back.
    pub target_region: String,
    /// Compacted topic in the target holding the checkpoints.
    pub checkpoint_topic: String,
    /// A transaction commits after this many records ...
    pub batch_records: u64,
    /// ... or this long after its first record, whichever comes first.
    pub batch_time: Duration,
    /// The producer's `linger.ms`.
    pub linger: Duration,
    /// How often the source is probed (reachability, lag).
    pub probe_every: Duration,
}

impl Replication {
    /// Settings with the defaults of the command line.
    pub fn new(source: KafkaTarget, target: KafkaTarget, topics: Vec<String>, id: String, region: String) -> Self {
        Replication {
            source,
            target,
            topics,
            checkpoint_topic: checkpoint::checkpoint_topic_of(&id),
            id,
            region,
            target_region: "central".to_string(),
            batch_records: 10_000,
            batch_time: Duration::from_millis(100),
            linger: Duration::from_millis(5),
            probe_every: Duration::from_secs(1),
        }
    }
}

/// A session that ran this long before failing starts the backoff over.
const HEALTHY_SESSION: Duration = Duration::from_secs(60);

/// Copies until `stop` is set: a session after another, with a jittered backoff between
/// them; the reason of the last failure stays on `health` (and so `/readyz`) meanwhile.
pub fn run(replication: &Replication, health: &Health, stop: &AtomicBool) {
    let mut failures = 0u32;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match copy_loop::session(replication, health, stop) {
            Ok(()) => return,
            Err(e) => {
                failures = if started.elapsed() >= HEALTHY_SESSION { 1 } else { failures.saturating_add(1) };
                let wait = backoff::wait(failures, backoff::random());
                tracing::warn!(reason = e.reason.as_str(), error = %e.message, retry_in = ?wait, "replication session ended");
                health.set(e.reason, e.message);
                let until = Instant::now() + wait;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

/// A cluster's settings from the environment: `<PREFIX>_BOOTSTRAP_SERVERS` and the optional
/// `<PREFIX>_CA_PEM`, `_CERT_PEM`, `_KEY_PEM`, `_SASL_MECHANISM`, `_SASL_USERNAME`,
/// `_SASL_PASSWORD` (the Deployment fills them from Secrets).
pub fn target_from_env(prefix: &str, env: impl Fn(&str) -> Option<String>) -> Result<KafkaTarget, String> {
    let get = |name: &str| env(&format!("{prefix}_{name}")).filter(|v| !v.is_empty());
    let bootstrap_servers = get("BOOTSTRAP_SERVERS").ok_or_else(|| format!("{prefix}_BOOTSTRAP_SERVERS is not set"))?;
    let sasl = match (get("SASL_MECHANISM"), get("SASL_USERNAME"), get("SASL_PASSWORD")) {
        (Some(m), Some(u), Some(p)) => Some((m, u, p)),
        (None, None, None) => None,
        _ => return Err(format!("{prefix}_SASL_MECHANISM, _SASL_USERNAME and _SASL_PASSWORD go together")),
    };
    Ok(KafkaTarget {
        bootstrap_servers,
        ca_pem: get("CA_PEM"),
        cert_pem: get("CERT_PEM"),
        key_pem: get("KEY_PEM"),
        sasl,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_come_from_prefixed_environment() {
        let env = |name: &str| match name {
            "SOURCE_BOOTSTRAP_SERVERS" => Some("eu:9092".to_string()),
            "SOURCE_SASL_MECHANISM" => Some("SCRAM-SHA-512".to_string()),
            "SOURCE_SASL_USERNAME" => Some("u".to_string()),
            "SOURCE_SASL_PASSWORD" => Some("p".to_string()),
            "TARGET_BOOTSTRAP_SERVERS" => Some("central:9092".to_string()),
            "TARGET_SASL_USERNAME" => Some("only-user".to_string()),
            _ => None,
        };
        let source = target_from_env("SOURCE", env).unwrap();
        assert_eq!(source.bootstrap_servers, "eu:9092");
        assert_eq!(source.sasl, Some(("SCRAM-SHA-512".into(), "u".into(), "p".into())));
        assert_eq!(
            target_from_env("TARGET", env).unwrap_err(),
            "TARGET_SASL_MECHANISM, _SASL_USERNAME and _SASL_PASSWORD go together"
        );
        assert_eq!(target_from_env("OTHER", env).unwrap_err(), "OTHER_BOOTSTRAP_SERVERS is not set");
        assert_eq!(replicator_id("acme", "eu-central"), "stockpulse-replicator.acme.eu-central");
    }
}

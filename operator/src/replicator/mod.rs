//! `stockpulse-operator replicate`: copies a region's topics from its regional Kafka cluster
//! to the pipeline's cluster (the StoreRegion controller runs it as a Deployment).
//!
//! At-least-once: a record's source offset is committed (in the source cluster, under the
//! replicator's consumer group) only after the target acknowledged it; a restart replays at
//! most the records since the last checkpoint, which the processor drops by `event_id`.
//! Records keep their key (the store id), so per-store order holds on the target. Each
//! commit carries its time as offset metadata: the operator reads it back as the region's
//! `lastCheckpointTime`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka_admin::KafkaTarget;
use crate::kafka_admin::rdkafka_client::client_config;

/// The consumer group of a region's replicator.
pub fn group_of(namespace: &str, region: &str) -> String {
    format!("stockpulse-replicator.{namespace}.{region}")
}

#[derive(Clone, Debug)]
pub struct Replication {
    pub source: KafkaTarget,
    pub target: KafkaTarget,
    pub topics: Vec<String>,
    pub group: String,
    /// How often consumed offsets are committed.
    pub checkpoint_every: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("replication {step}: {message}")]
pub struct ReplicationError {
    step: &'static str,
    message: String,
}

fn err(step: &'static str, e: impl std::fmt::Display) -> ReplicationError {
    ReplicationError { step, message: e.to_string() }
}

/// Copies records until `keep_going` says stop; returns how many were copied.
pub async fn replicate(
    replication: &Replication,
    mut keep_going: impl FnMut(u64) -> bool,
) -> Result<u64, ReplicationError> {
    let consumer: BaseConsumer = client_config(&replication.source)
        .set("group.id", &replication.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .map_err(|e| err("connect to the source", e))?;
    let producer: FutureProducer = client_config(&replication.target)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .create()
        .map_err(|e| err("connect to the target", e))?;
    let topics: Vec<&str> = replication.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|e| err("subscribe", e))?;

    let mut copied = 0u64;
    // Next offset to commit per (topic, partition).
    let mut pending: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut last_checkpoint = Instant::now();
    while keep_going(copied) {
        let polled = tokio::task::block_in_place(|| consumer.poll(Duration::from_millis(200)));
        if let Some(message) = polled {
            let message = message.map_err(|e| err("consume", e))?;
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(message.topic());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(payload) = message.payload() {
                record = record.payload(payload);
            }
            if let Some(timestamp) = message.timestamp().to_millis() {
                record = record.timestamp(timestamp);
            }
            producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| err("produce", e))?;
            pending.insert((message.topic().to_string(), message.partition()), message.offset() + 1);
            copied += 1;
        }
        if !pending.is_empty() && last_checkpoint.elapsed() >= replication.checkpoint_every {
            checkpoint(&consumer, &mut pending)?;
            last_checkpoint = Instant::now();
        }
    }
    if !pending.is_empty() {
        checkpoint(&consumer, &mut pending)?;
    }
    Ok(copied)
}

fn checkpoint(consumer: &BaseConsumer, pending: &mut BTreeMap<(String, i32), i64>) -> Result<(), ReplicationError> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), offset) in pending.iter() {
        let mut element = offsets.add_partition(topic, *partition);
        element.set_offset(Offset::Offset(*offset)).map_err(|e| err("checkpoint", e))?;
        element.set_metadata(now.as_str());
    }
    tokio::task::block_in_place(|| consumer.commit(&offsets, CommitMode::Sync)).map_err(|e| err("checkpoint", e))?;
    pending.clear();
    Ok(())
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
        assert_eq!(group_of("acme", "eu-central"), "stockpulse-replicator.acme.eu-central");
    }
}

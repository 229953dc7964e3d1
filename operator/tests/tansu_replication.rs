//! The replicator between two tansu brokers standing in for a regional cluster and the
//! pipeline's cluster: records copied with their keys, offsets checkpointed in the source
//! with their time, a second run resuming where the first stopped.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use stockpulse_operator::kafka_admin::rdkafka_client::RdKafkaAccess;
use stockpulse_operator::kafka_admin::{KafkaAccess, KafkaTarget};
use stockpulse_operator::plan::stores::OutgoingRecord;
use stockpulse_operator::plan::topics::TopicAction;
use stockpulse_operator::replicator::{Replication, replicate};
use stockpulse_testkit::tansu::Tansu;

const TOPIC: &str = "shop.sales";

async fn create_topic(access: &RdKafkaAccess, target: &KafkaTarget) {
    let create = TopicAction::Create {
        name: TOPIC.into(),
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]),
    };
    access.apply(target, &create).await.unwrap();
}

async fn produce(access: &RdKafkaAccess, target: &KafkaTarget, range: std::ops::Range<u32>) {
    // One record per batch: tansu's high watermark counts batches (see docs/operator.md).
    for i in range {
        let record =
            OutgoingRecord { topic: TOPIC.into(), key: format!("store-{i}"), value: Some(format!("event-{i}")) };
        access.produce(target, std::slice::from_ref(&record)).await.unwrap();
    }
}

fn read(bootstrap: &str, expected: usize) -> Vec<(String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment.add_partition_offset(TOPIC, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            out.push((
                String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            ));
        }
    }
    // Nothing beyond what was expected either.
    if let Some(Ok(m)) = consumer.poll(Duration::from_secs(1)) {
        out.push((String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(), "unexpected".into()));
    }
    out
}

async fn run_until(replication: &Replication, count: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    replicate(replication, |copied| copied < count && Instant::now() < deadline).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_copied_with_keys_and_checkpointed_in_the_source() {
    tokio::time::timeout(Duration::from_secs(120), body()).await.expect("replication test timed out after 120s");
}

async fn body() {
    let region = Tansu::start();
    let central = Tansu::start();
    let access = RdKafkaAccess::default();
    let source = KafkaTarget::plain(region.bootstrap.clone());
    let target = KafkaTarget::plain(central.bootstrap.clone());
    create_topic(&access, &source).await;
    create_topic(&access, &target).await;
    produce(&access, &source, 0..5).await;

    let replication = Replication {
        source: source.clone(),
        target,
        topics: vec![TOPIC.to_string()],
        group: "stockpulse-replicator.acme.eu-central".into(),
        checkpoint_every: Duration::from_millis(500),
    };
    assert_eq!(run_until(&replication, 5).await, 5);
    let topics = vec![TOPIC.to_string()];
    let progress = access.group_progress(&source, &replication.group, &topics).await.unwrap().unwrap();
    assert_eq!((progress.lag, progress.committed), (0, 5));
    // The replicator writes its time as commit metadata; tansu 0.6 does not return commit
    // metadata on OffsetFetch, so there the operator dates checkpoints by the offsets it
    // sees move (see docs/operator.md).
    assert_eq!(progress.last_checkpoint, None, "tansu now returns commit metadata: update docs/operator.md");

    // Two more records: a new run copies only those.
    produce(&access, &source, 5..7).await;
    let behind = access.group_progress(&source, &replication.group, &topics).await.unwrap().unwrap();
    assert_eq!((behind.lag, behind.committed), (2, 5));
    assert_eq!(run_until(&replication, 2).await, 2);

    let bootstrap = central.bootstrap.clone();
    let copied = tokio::task::spawn_blocking(move || read(&bootstrap, 7)).await.unwrap();
    let expected: Vec<(String, String)> = (0..7).map(|i| (format!("store-{i}"), format!("event-{i}"))).collect();
    assert_eq!(copied, expected);
}

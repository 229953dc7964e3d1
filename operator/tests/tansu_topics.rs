//! Topic reconciliation and store publication against a real Kafka-protocol broker: tansu
//! 0.6 (memory storage). tansu has no CreatePartitions and no legacy AlterConfigs, so configs
//! are aligned with IncrementalAlterConfigs and a partition increase must be reported, not
//! crash the reconcile.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use stockpulse_operator::build::topics::desired_topics;
use stockpulse_operator::crd::RetailPipeline;
use stockpulse_operator::kafka_admin::rdkafka_client::RdKafkaAccess;
use stockpulse_operator::kafka_admin::{KafkaAccess, KafkaError, KafkaTarget};
use stockpulse_operator::plan::stores::OutgoingRecord;
use stockpulse_operator::plan::topics::{TopicAction, plan_topics};
use stockpulse_testkit::tansu::Tansu;

/// Every broker test is bounded: a hung broker call fails the test instead of hanging it.
async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(Duration::from_secs(90), test).await.expect("test against tansu timed out after 90s");
}

fn pipeline(bootstrap: &str) -> RetailPipeline {
    serde_yaml::from_str(&format!(
        r#"
apiVersion: retail.stockpulse.io/v1alpha1
kind: RetailPipeline
metadata: {{name: shop, namespace: acme}}
spec:
  kafka: {{bootstrapServers: "{bootstrap}"}}
  topics:
    partitions: 2
    replicationFactor: 1
    sales: {{partitions: 4, retention: 7d}}
    inventory: {{partitions: 4}}
    changelog: {{partitions: 4}}
    repartition: {{partitions: 4}}
    stores: {{partitions: 1}}
"#
    ))
    .unwrap()
}

fn wanted_configs(
    t: &stockpulse_operator::build::topics::DesiredTopic,
    have: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    t.configs.keys().filter_map(|k| have.get(k).map(|v| (k.clone(), v.clone()))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_with_partitions_and_configs_then_realigned_after_drift() {
    bounded(topics_are_created_with_partitions_and_configs_then_realigned_after_drift_body()).await;
}

async fn topics_are_created_with_partitions_and_configs_then_realigned_after_drift_body() {
    let tansu = Tansu::start();
    let access = RdKafkaAccess::default();
    let target = KafkaTarget::plain(tansu.bootstrap.clone());
    let p = pipeline(&tansu.bootstrap);
    let desired = desired_topics(&p).unwrap();
    let names: Vec<String> = desired.iter().map(|t| t.name.clone()).collect();

    // Nothing exists: the plan creates every role's topic.
    let observed = access.describe_topics(&target, &names).await.unwrap();
    assert!(observed.is_empty(), "{observed:?}");
    let plan = plan_topics(&desired, &observed);
    assert_eq!(plan.actions.len(), stockpulse_processor::config::TopicRole::ALL.len());
    for action in &plan.actions {
        access.apply(&target, action).await.unwrap_or_else(|e| panic!("{action:?}: {e}"));
    }

    // The broker has them with the right partitions and configs; the plan is now empty.
    let observed = access.describe_topics(&target, &names).await.unwrap();
    for t in &desired {
        let have = observed.get(&t.name).unwrap_or_else(|| panic!("{} missing", t.name));
        assert_eq!(have.partitions, t.partitions, "{}", t.name);
        assert_eq!(wanted_configs(t, &have.configs), t.configs, "{}", t.name);
    }
    assert_eq!(observed["shop.sales"].partitions, 4);
    assert_eq!(observed["shop.sales"].configs.get("retention.ms").map(String::as_str), Some("604800000"));
    assert_eq!(observed["shop.stores"].configs.get("cleanup.policy").map(String::as_str), Some("compact"));
    let again = plan_topics(&desired, &observed);
    assert_eq!(again.actions, vec![], "a second pass changes nothing");

    // Someone changes a config behind the operator's back: the next plan sets it back.
    let drift = TopicAction::AlignConfigs {
        name: "shop.sales".into(),
        set: BTreeMap::from([("retention.ms".to_string(), "1000".to_string())]),
    };
    access.apply(&target, &drift).await.unwrap();
    let drifted = access.describe_topics(&target, &names).await.unwrap();
    assert_eq!(drifted["shop.sales"].configs.get("retention.ms").map(String::as_str), Some("1000"));
    let realign = plan_topics(&desired, &drifted);
    assert_eq!(
        realign.actions,
        vec![TopicAction::AlignConfigs {
            name: "shop.sales".into(),
            set: BTreeMap::from([("retention.ms".to_string(), "604800000".to_string())]),
        }]
    );
    for action in &realign.actions {
        access.apply(&target, action).await.unwrap();
    }
    let healed = access.describe_topics(&target, &names).await.unwrap();
    assert_eq!(healed["shop.sales"].configs.get("retention.ms").map(String::as_str), Some("604800000"));
    assert_eq!(plan_topics(&desired, &healed).actions, vec![]);

    // Deletion (a `deletionPolicy: Delete` topic going with its pipeline).
    access.apply(&target, &TopicAction::Delete { name: "shop.late".into() }).await.unwrap();
    let after = access.describe_topics(&target, &names).await.unwrap();
    assert!(!after.contains_key("shop.late"));
    assert_eq!(after.len(), names.len() - 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_increase_on_tansu_is_an_error_not_a_crash() {
    bounded(a_partition_increase_on_tansu_is_an_error_not_a_crash_body()).await;
}

async fn a_partition_increase_on_tansu_is_an_error_not_a_crash_body() {
    let tansu = Tansu::start();
    let access = RdKafkaAccess { timeout: Duration::from_secs(5) };
    let target = KafkaTarget::plain(tansu.bootstrap.clone());
    let create = TopicAction::Create {
        name: "grow".into(),
        partitions: 2,
        replication_factor: 1,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]),
    };
    access.apply(&target, &create).await.unwrap();
    let result = access.apply(&target, &TopicAction::IncreasePartitions { name: "grow".into(), from: 2, to: 4 }).await;
    // librdkafka sees that tansu does not offer CreatePartitions and says so locally.
    match result {
        Err(KafkaError::Unsupported { operation, message }) => {
            assert_eq!(operation, "CreatePartitions");
            assert!(message.contains("UnsupportedFeature"), "{message}");
        }
        other => panic!("tansu 0.6 has no CreatePartitions; got {other:?} (if it now has, update docs/operator.md)"),
    }
    let observed = access.describe_topics(&target, &["grow".to_string()]).await.unwrap();
    assert_eq!(observed["grow"].partitions, 2);
}

fn read_all(bootstrap: &str, topic: &str, expected: usize) -> Vec<(String, Option<String>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "stores-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .unwrap();
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment.add_partition_offset(topic, 0, rdkafka::Offset::Beginning).unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = m.payload().map(|v| String::from_utf8_lossy(v).into_owned());
            out.push((key, value));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stores_topic_receives_stores_and_tombstones() {
    bounded(the_stores_topic_receives_stores_and_tombstones_body()).await;
}

async fn the_stores_topic_receives_stores_and_tombstones_body() {
    let tansu = Tansu::start();
    let access = RdKafkaAccess::default();
    let target = KafkaTarget::plain(tansu.bootstrap.clone());
    let create = TopicAction::Create {
        name: "shop.stores".into(),
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
    };
    access.apply(&target, &create).await.unwrap();

    // The planner's records for a region with two stores, then with one removed.
    let region: stockpulse_operator::crd::StoreRegion = serde_yaml::from_str(
        r#"
apiVersion: retail.stockpulse.io/v1alpha1
kind: StoreRegion
metadata: {name: eu-central, namespace: acme}
spec:
  pipelineRef: {name: shop}
  region: eu-central
  timezone: Europe/Berlin
  currency: EUR
  stores:
    - {id: de-ber-001, name: Berlin, channel: physical, format: flagship, city: Berlin, country: DE}
    - {id: eu-web-001, name: Web shop, channel: online, country: DE}
"#,
    )
    .unwrap();
    let records = stockpulse_operator::build::store_records::store_records(&region);
    // The topic's identity as the broker tells it (tansu may give no ids: the plan then goes by
    // name and digest).
    let identity = access.topic_identity(&target, "shop.stores").await.unwrap().expect("the topic exists");
    assert_eq!(access.topic_identity(&target, "shop.nothing").await.unwrap(), None);
    let first =
        stockpulse_operator::plan::stores::plan_stores(Some(("shop.stores", &identity)), &records, &Default::default());
    access.produce(&target, &first.records).await.unwrap();
    let status = stockpulse_operator::crd::StoreRegionStatus {
        published_topic: first.published_topic.clone(),
        published_stores: first.published_stores.clone(),
        published_digest: first.published_digest.clone(),
        published_cluster_id: first.published_identity.cluster_id.clone(),
        published_topic_id: first.published_identity.topic_id.clone(),
        ..Default::default()
    };
    let second =
        stockpulse_operator::plan::stores::plan_stores(Some(("shop.stores", &identity)), &records[..1], &status);
    assert_eq!(
        second.records[0],
        OutgoingRecord { topic: "shop.stores".into(), key: "eu-web-001".into(), value: None }
    );
    access.produce(&target, &second.records).await.unwrap();

    let bootstrap = tansu.bootstrap.clone();
    let seen = tokio::task::spawn_blocking(move || read_all(&bootstrap, "shop.stores", 4)).await.unwrap();
    let berlin = r#"{"store_id":"de-ber-001","name":"Berlin","region":"eu-central","channel":"physical","format":"flagship","city":"Berlin","country":"DE","timezone":"Europe/Berlin","currency":"EUR"}"#;
    let web = r#"{"store_id":"eu-web-001","name":"Web shop","region":"eu-central","channel":"online","country":"DE","timezone":"Europe/Berlin","currency":"EUR"}"#;
    assert_eq!(
        seen,
        vec![
            ("de-ber-001".to_string(), Some(berlin.to_string())),
            ("eu-web-001".to_string(), Some(web.to_string())),
            ("eu-web-001".to_string(), None),
            ("de-ber-001".to_string(), Some(berlin.to_string())),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_lag_is_end_offset_minus_committed_offset() {
    bounded(consumer_lag_body()).await;
}

async fn consumer_lag_body() {
    let tansu = Tansu::start();
    let access = RdKafkaAccess::default();
    let target = KafkaTarget::plain(tansu.bootstrap.clone());
    let create = TopicAction::Create {
        name: "shop.sales".into(),
        partitions: 1,
        replication_factor: 1,
        configs: BTreeMap::from([("cleanup.policy".to_string(), "delete".to_string())]),
    };
    access.apply(&target, &create).await.unwrap();
    // One record per batch: tansu reports the high watermark of the last batch's base offset.
    for i in 0..5 {
        let record = OutgoingRecord { topic: "shop.sales".into(), key: format!("k{i}"), value: Some(format!("v{i}")) };
        access.produce(&target, std::slice::from_ref(&record)).await.unwrap();
    }
    let topics = vec!["shop.sales".to_string()];
    assert_eq!(access.consumer_lag(&target, "shop", &topics).await.unwrap(), None, "nothing committed yet");

    let bootstrap = tansu.bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "shop")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .create()
            .unwrap();
        let mut offsets = rdkafka::TopicPartitionList::new();
        offsets.add_partition_offset("shop.sales", 0, rdkafka::Offset::Offset(2)).unwrap();
        consumer.commit(&offsets, rdkafka::consumer::CommitMode::Sync).unwrap();
    })
    .await
    .unwrap();
    assert_eq!(access.consumer_lag(&target, "shop", &topics).await.unwrap(), Some(3));
    // What the autoscaler samples: per partition, the watermarks and the committed offset.
    let offsets = access.partition_offsets(&target, "shop", &topics).await.unwrap();
    assert_eq!(offsets.len(), 1, "{offsets:?}");
    assert_eq!(
        (offsets[0].topic.as_str(), offsets[0].partition, offsets[0].high, offsets[0].committed, offsets[0].lag()),
        ("shop.sales", 0, 5, Some(2), 3)
    );
}

//! Controller tests on the mocked API server: the exact request sequence of each scenario.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::runtime::controller::Action;
use serde_json::{Value, json};

use super::{alert_policy, retail_pipeline, store_region};
use crate::build::labels::CONFIG_HASH_ANNOTATION;
use crate::build::store_records::store_records;
use crate::crd::{RetailPipeline, StoreRegion, StoreRegionStatus};
use crate::fixtures::{self, Answer, Exchange, Received, context, list, now, paths, pipeline, play};
use crate::kafka_admin::memory::{MemoryKafka, MemoryState};
use crate::kafka_admin::{KafkaAccess, KafkaTarget};
use crate::plan::pipeline::{PipelineInput, PipelinePlan, plan_pipeline};
use crate::plan::stores::OutgoingRecord;
use crate::plan::topics::{ObservedTopic, TopicAction};
use crate::settings::OperatorSettings;
use crate::settings::images::AllowedImages;
use stockpulse_processor::config::TopicRole;

const PROCESSOR: &str = "shop-processor";

fn plan_of(p: &RetailPipeline, topics: &BTreeMap<String, ObservedTopic>) -> PipelinePlan {
    plan_pipeline(&PipelineInput {
        pipeline: p,
        regions: &[],
        policies: &[],
        observed_topics: topics,
        current_replicas: None,
        autoscaled: None,
        now: now(),
        settings: &OperatorSettings::default(),
    })
    .unwrap_or_else(|e| panic!("plan: {e}"))
}

fn pipeline_json() -> Value {
    serde_json::to_value(pipeline()).unwrap()
}

fn region_json(name: &str) -> Value {
    serde_json::to_value(fixtures::region(name, "shop", &[])).unwrap()
}

fn policy_json(name: &str) -> Value {
    serde_json::to_value(fixtures::low_stock_policy(name, "shop", 1)).unwrap()
}

fn ready_deployment_status() -> Value {
    json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1})
}

/// The objects of `plan` as the API server would return them (with server fields added).
fn observed_objects(plan: &PipelinePlan) -> [Value; 5] {
    let mut deployment = serde_json::to_value(&plan.objects.deployment).unwrap();
    deployment["metadata"]["generation"] = json!(1);
    deployment["metadata"]["resourceVersion"] = json!("42");
    deployment["spec"]["progressDeadlineSeconds"] = json!(600);
    deployment["status"] = ready_deployment_status();
    let mut service = serde_json::to_value(&plan.objects.service).unwrap();
    service["spec"]["clusterIP"] = json!("10.0.0.7");
    [
        serde_json::to_value(&plan.objects.service_account).unwrap(),
        serde_json::to_value(&plan.objects.config_map).unwrap(),
        service,
        serde_json::to_value(&plan.objects.pod_disruption_budget).unwrap(),
        deployment,
    ]
}

fn lists() -> Vec<Exchange> {
    vec![
        Exchange::get(paths::regions(), list("StoreRegion", vec![])),
        Exchange::get(paths::policies(), list("AlertPolicy", vec![])),
    ]
}

fn gets_of_existing(objects: &[Value; 5]) -> Vec<Exchange> {
    vec![
        Exchange::get(paths::service_account(PROCESSOR), objects[0].clone()),
        Exchange::get(paths::config_map("shop-config"), objects[1].clone()),
        Exchange::get(paths::service(PROCESSOR), objects[2].clone()),
        Exchange::get(paths::pdb(PROCESSOR), objects[3].clone()),
        Exchange::get(paths::deployment(PROCESSOR), objects[4].clone()),
    ]
}

fn assert_server_side_apply(r: &Received) {
    assert_eq!(r.content_type, "application/apply-patch+yaml", "{} {}", r.method, r.path);
    assert!(r.query.contains("fieldManager=stockpulse-operator") && r.query.contains("force=true"), "{}", r.query);
}

fn all_topics(partitions: i32) -> BTreeMap<String, ObservedTopic> {
    let p = pipeline();
    plan_of(&p, &BTreeMap::new())
        .topics
        .iter()
        .map(|t| (t.name.clone(), ObservedTopic { partitions, configs: t.configs.clone() }))
        .collect()
}

#[tokio::test]
async fn a_new_pipeline_first_gets_the_finalizer() {
    let mut p = pipeline();
    p.metadata.finalizers = None;
    let kafka = Arc::new(MemoryKafka::new());
    let (ctx, verifier) = context(kafka.clone());
    let script = vec![Exchange::patch_answering(paths::pipeline("shop"), Answer::Json(pipeline_json()))];
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(p), ctx)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(received[0].content_type, "application/json-patch+json");
    assert_eq!(
        received[0].body,
        json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
               {"op": "add", "path": "/metadata/finalizers", "value": ["retail.stockpulse.io/topics"]}])
    );
    assert!(kafka.state().actions.is_empty());
}

#[tokio::test]
async fn first_reconcile_creates_topics_and_objects_then_patches_status() {
    let kafka = Arc::new(MemoryKafka::new());
    let (ctx, verifier) = context(kafka.clone());
    let regions = vec![
        serde_json::to_value(fixtures::region("eu-central", "shop", &["a", "b"])).unwrap(),
        serde_json::to_value(fixtures::region("us-east", "shop", &["c"])).unwrap(),
        serde_json::to_value(fixtures::region("elsewhere", "other", &["d"])).unwrap(),
    ];
    let policies = vec![serde_json::to_value(fixtures::low_stock_policy("low", "shop", 2)).unwrap()];
    let mut script = vec![
        Exchange::get(paths::regions(), list("StoreRegion", regions)),
        Exchange::get(paths::policies(), list("AlertPolicy", policies)),
    ];
    for path in [
        paths::service_account(PROCESSOR),
        paths::config_map("shop-config"),
        paths::service(PROCESSOR),
        paths::pdb(PROCESSOR),
    ] {
        script.push(Exchange::get_missing(path.clone()));
        script.push(Exchange::patch(path));
    }
    script.push(Exchange::get_missing(paths::deployment(PROCESSOR)));
    script.push(Exchange::patch_answering(
        paths::deployment(PROCESSOR),
        Answer::EchoWithStatus(
            json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 0, "updatedReplicas": 1}),
        ),
    ));
    script.push(Exchange::post(paths::events()));
    script.push(Exchange::patch_answering(paths::pipeline_status("shop"), Answer::Json(pipeline_json())));
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(pipeline()), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(retail_pipeline::NOT_READY_RETRY));

    // Topics: every role's created with the spec's partitions and configs.
    let state = kafka.state();
    let created: Vec<(String, i32)> = state
        .actions
        .iter()
        .map(|a| match a {
            TopicAction::Create { name, partitions, .. } => (name.clone(), *partitions),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let expected: Vec<(String, i32)> =
        TopicRole::ALL.iter().map(|role| (format!("shop.{}", role.default_suffix()), 3)).collect();
    assert_eq!(expected.len(), 11);
    assert_eq!(created, expected);
    assert_eq!(state.topics["shop.sales"].configs.get("retention.ms").map(String::as_str), Some("86400000"));
    assert_eq!(state.topics["shop.stores"].configs.get("cleanup.policy").map(String::as_str), Some("compact"));

    // Objects: server-side applied with the operator's field manager and an owner reference.
    for r in received.iter().filter(|r| r.method == "PATCH" && !r.path.ends_with("/status")) {
        assert_server_side_apply(r);
        assert_eq!(r.body["metadata"]["ownerReferences"][0]["uid"], "11111111-2222-3333-4444-555555555555");
        assert_eq!(r.body["metadata"]["ownerReferences"][0]["controller"], true);
    }
    let deployment = &received[11].body;
    let expected_hash = plan_pipeline(&PipelineInput {
        pipeline: &pipeline(),
        regions: &[],
        policies: &[fixtures::low_stock_policy("low", "shop", 2)],
        observed_topics: &BTreeMap::new(),
        current_replicas: None,
        autoscaled: None,
        now: now(),
        settings: &OperatorSettings::default(),
    })
    .unwrap()
    .config_hash;
    let config_text = received[5].body["data"]["pipeline.yaml"].as_str().unwrap();
    assert!(config_text.contains("alerts:\n- name: low\n"), "{config_text}");
    assert_eq!(deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION], json!(expected_hash));
    assert_eq!(received[12].body["reason"], "Reconciled");

    // Status: server-side applied, with the conditions, topics and replicas.
    let status_patch = &received[13];
    assert_server_side_apply(status_patch);
    let status = &status_patch.body["status"];
    assert_eq!(
        status["conditions"],
        json!([
            {"type": "ProcessorReady", "status": "False", "reason": "ProcessorProgressing",
             "message": "0 of 1 replicas ready, 1 updated", "lastTransitionTime": "2026-11-20T10:00:00Z", "observedGeneration": 1},
            {"type": "Ready", "status": "False", "reason": "ProcessorProgressing",
             "message": "ProcessorReady: 0 of 1 replicas ready, 1 updated", "lastTransitionTime": "2026-11-20T10:00:00Z", "observedGeneration": 1},
            {"type": "TopicsReady", "status": "True", "reason": "TopicsReconciled",
             "message": "11 topics match the spec", "lastTransitionTime": "2026-11-20T10:00:00Z", "observedGeneration": 1},
        ])
    );
    assert_eq!(
        status["topics"][0],
        json!({"role": "sales", "name": "shop.sales", "partitions": 3, "desiredPartitions": 3})
    );
    assert_eq!(status["replicas"], json!({"current": 1, "desired": 1, "ready": 0, "reason": "MinReplicas"}));
    assert_eq!(status["observedGeneration"], 1);
    assert_eq!(
        (status["stores"].clone(), status["regions"].clone(), status["alertPolicies"].clone()),
        (json!(3), json!(2), json!(1))
    );
    assert_eq!(status["configHash"], json!(expected_hash));
}

#[tokio::test]
async fn reconciling_an_unchanged_pipeline_writes_nothing() {
    let kafka = Arc::new(MemoryKafka::with_state(MemoryState { topics: all_topics(3), ..MemoryState::default() }));
    let objects = observed_objects(&plan_of(&pipeline(), &all_topics(3)));

    // The first pass finds everything in place but no status yet: it writes the status only.
    let (ctx, verifier) = context(kafka.clone());
    let mut script = lists();
    script.extend(gets_of_existing(&objects));
    script.push(Exchange::patch_answering(paths::pipeline_status("shop"), Answer::Json(pipeline_json())));
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(pipeline()), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(retail_pipeline::RESYNC));
    let status: crate::crd::RetailPipelineStatus = serde_json::from_value(received[7].body["status"].clone()).unwrap();
    assert!(status.conditions.iter().all(|c| c.status == "True"), "{:?}", status.conditions);

    // The second pass, with that status: only reads.
    let mut p = pipeline();
    p.status = Some(status);
    let (ctx, verifier) = context(kafka.clone());
    let mut script = lists();
    script.extend(gets_of_existing(&objects));
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(p), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(retail_pipeline::RESYNC));
    assert!(received.iter().all(|r| r.method == "GET"));
    assert!(kafka.state().actions.is_empty(), "{:?}", kafka.state().actions);
}

#[tokio::test]
async fn a_spec_change_reapplies_the_config_and_rolls_the_deployment() {
    let kafka = Arc::new(MemoryKafka::with_state(MemoryState { topics: all_topics(3), ..MemoryState::default() }));
    let old_plan = plan_of(&pipeline(), &all_topics(3));
    let objects = observed_objects(&old_plan);
    let mut changed = pipeline();
    changed.metadata.generation = Some(2);
    changed.spec.processing.allowed_lateness = "20m".to_string();
    changed.spec.processing.dedupe.horizon = "2h".to_string();
    let new_plan = plan_of(&changed, &all_topics(3));

    let (ctx, verifier) = context(kafka.clone());
    let mut script = lists();
    let gets = gets_of_existing(&objects);
    script.push(gets[0].clone());
    script.push(gets[1].clone());
    script.push(Exchange::patch(paths::config_map("shop-config")));
    script.push(gets[2].clone());
    script.push(gets[3].clone());
    script.push(gets[4].clone());
    script.push(Exchange::patch_answering(
        paths::deployment(PROCESSOR),
        Answer::EchoWithStatus(ready_deployment_status()),
    ));
    script.push(Exchange::post(paths::events()));
    script.push(Exchange::patch_answering(paths::pipeline_status("shop"), Answer::Json(pipeline_json())));
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(changed), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(retail_pipeline::RESYNC));
    let config_text = received[4].body["data"]["pipeline.yaml"].as_str().unwrap();
    assert!(config_text.contains("allowedLateness: 20m"), "{config_text}");
    let hash = &received[8].body["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION];
    assert_ne!(old_plan.config_hash, new_plan.config_hash);
    assert_eq!(hash, &json!(new_plan.config_hash));
    assert_eq!(received[9].body["note"], "applied ConfigMap; applied Deployment");
    assert_eq!(received[10].body["status"]["observedGeneration"], 2);
    assert!(kafka.state().actions.is_empty());
}

#[tokio::test]
async fn a_partition_decrease_is_refused_with_a_condition() {
    let mut topics = all_topics(3);
    topics.insert("shop.sales".to_string(), ObservedTopic { partitions: 6, ..topics["shop.sales"].clone() });
    let kafka = Arc::new(MemoryKafka::with_state(MemoryState {
        topics: topics.clone(),
        progress: Some(crate::kafka_admin::GroupProgress { lag: 4_200, committed: 0, last_checkpoint: None }),
        ..MemoryState::default()
    }));
    let objects = observed_objects(&plan_of(&pipeline(), &topics));
    let (ctx, verifier) = context(kafka.clone());
    let mut script = lists();
    script.extend(gets_of_existing(&objects));
    script.push(Exchange::post(paths::events()));
    script.push(Exchange::patch_answering(paths::pipeline_status("shop"), Answer::Json(pipeline_json())));
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(pipeline()), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(retail_pipeline::NOT_READY_RETRY));
    assert!(kafka.state().actions.is_empty(), "a decrease must not be attempted");
    assert_eq!(received[7].body["type"], "Warning");
    assert_eq!(received[7].body["reason"], "PartitionDecreaseRefused");
    let topics_ready = &received[8].body["status"]["conditions"][2];
    assert_eq!(topics_ready["type"], "TopicsReady");
    assert_eq!(topics_ready["status"], "False");
    assert_eq!(topics_ready["reason"], "PartitionDecreaseRefused");
    assert_eq!(
        topics_ready["message"],
        "topic shop.sales has 6 partitions and the spec asks for 3: Kafka cannot remove partitions; set partitions to 6 or more"
    );
    assert_eq!(received[8].body["status"]["topics"][0]["partitions"], 6);
    assert_eq!(received[8].body["status"]["consumerLag"], 4_200);
}

/// Reconciles a pipeline whose spec the operator refuses: an Event and a status, nothing on
/// Kafka, and no retry until the spec changes. Returns the status written.
async fn reconcile_refused(p: RetailPipeline, allowed_images: AllowedImages) -> Value {
    let kafka = Arc::new(MemoryKafka::new());
    let (mut ctx, verifier) = context(kafka.clone());
    Arc::get_mut(&mut ctx).expect("the only handle").settings.allowed_images = allowed_images;
    let mut script = lists();
    script.push(Exchange::post(paths::events()));
    script.push(Exchange::patch_answering(paths::pipeline_status("shop"), Answer::Json(pipeline_json())));
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(p), ctx)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(received[2].body["reason"], "InvalidSpec");
    assert!(kafka.state().actions.is_empty(), "nothing is done on Kafka for a refused spec");
    received[3].body["status"].clone()
}

#[tokio::test]
async fn an_invalid_spec_is_a_condition_not_a_retry() {
    let mut p = pipeline();
    p.spec.processing.allowed_lateness = "2h".to_string();
    let status = reconcile_refused(p, AllowedImages::default()).await;
    assert_eq!(
        status["conditions"],
        json!([{"type": "Ready", "status": "False", "reason": "InvalidSpec",
                "message": "spec.processing.dedupe.horizon: must be at least allowedLateness (2h), or a late correction could count a duplicate (fix the spec of shop)",
                "lastTransitionTime": "2026-11-20T10:00:00Z", "observedGeneration": 1}])
    );
}

#[tokio::test]
async fn an_image_outside_the_allowed_repositories_is_refused_as_a_condition() {
    let mut p = pipeline();
    p.spec.processor.image = "docker.io/library/busybox:1".to_string();
    let status = reconcile_refused(p, AllowedImages::parse("ghcr.io/stockpulse/")).await;
    assert_eq!(
        status["conditions"][0]["message"],
        "spec.processor.image: image \"docker.io/library/busybox:1\" is not from a repository this operator allows (ghcr.io/stockpulse/); use one of them or ask the operator's administrators to allow it (fix the spec of shop)"
    );
}

#[tokio::test]
async fn deletion_through_the_finalizer_deletes_only_delete_policy_topics() {
    let mut p = pipeline();
    p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_790_000_000).unwrap(),
    ));
    let kafka = Arc::new(MemoryKafka::with_state(MemoryState { topics: all_topics(3), ..MemoryState::default() }));
    let (ctx, verifier) = context(kafka.clone());
    // The writers first: no processor Deployment left, no region feeding the pipeline.
    let script = vec![
        Exchange::get_missing(paths::deployment("shop-processor")),
        Exchange::get(paths::regions(), list("StoreRegion", vec![])),
        Exchange::post(paths::events()),
        Exchange::patch_answering(paths::pipeline("shop"), Answer::Json(pipeline_json())),
    ];
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(p), ctx)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert_eq!(kafka.state().actions, vec![TopicAction::Delete { name: "shop.sales".to_string() }]);
    assert_eq!(kafka.state().topics.len(), TopicRole::ALL.len() - 1);
    assert_eq!(received[2].body["reason"], "TopicsDeleted");
    assert_eq!(
        received[3].body,
        json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "retail.stockpulse.io/topics"},
               {"op": "remove", "path": "/metadata/finalizers/0"}])
    );
}

#[tokio::test]
async fn deletion_with_retain_policy_keeps_every_topic() {
    let mut p = pipeline();
    p.spec.topics.sales.deletion_policy = Some(crate::crd::DeletionPolicy::Retain);
    p.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(1_790_000_000).unwrap(),
    ));
    let kafka = Arc::new(MemoryKafka::with_state(MemoryState { topics: all_topics(3), ..MemoryState::default() }));
    let (ctx, verifier) = context(kafka.clone());
    let script = vec![Exchange::patch_answering(paths::pipeline("shop"), Answer::Json(pipeline_json()))];
    let (result, _) = play(verifier, script, retail_pipeline::reconcile(Arc::new(p), ctx)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    assert!(kafka.state().actions.is_empty());
    assert_eq!(kafka.state().topics.len(), TopicRole::ALL.len());
}

#[tokio::test]
async fn a_store_region_publishes_its_stores_and_counts_them() {
    let region = fixtures::region("eu-central", "shop", &["de-ber-001", "de-muc-002"]);
    let kafka = Arc::new(with_stores_topic("cluster-a"));
    let (ctx, verifier) = context(kafka.clone());
    let script = publishing_script();
    let (result, received) = play(verifier, script, store_region::reconcile(Arc::new(region.clone()), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    let produced = kafka.state().produced;
    let value = |id: &str, name: &str| {
        format!(
            r#"{{"store_id":"{id}","name":"{name}","region":"eu-central","channel":"physical","city":"Berlin","country":"DE","timezone":"Europe/Berlin","currency":"EUR"}}"#
        )
    };
    assert_eq!(
        produced,
        vec![
            OutgoingRecord {
                topic: "shop.stores".into(),
                key: "de-ber-001".into(),
                value: Some(value("de-ber-001", "Store de-ber-001"))
            },
            OutgoingRecord {
                topic: "shop.stores".into(),
                key: "de-muc-002".into(),
                value: Some(value("de-muc-002", "Store de-muc-002"))
            },
        ]
    );
    assert_eq!(received[1].body["note"], "2 stores published, 0 tombstones");
    let status: StoreRegionStatus = serde_json::from_value(received[2].body["status"].clone()).unwrap();
    assert_eq!(status.stores, 2);
    assert_eq!(status.published_stores, vec!["de-ber-001", "de-muc-002"]);
    assert_eq!(status.published_topic.as_deref(), Some("shop.stores"));
    assert_eq!(status.conditions[0].reason, "Published");
    assert_eq!(status.published_cluster_id.as_deref(), Some("cluster-a"));
    assert_eq!(status.published_topic_id.as_deref(), Some("topic-1"));

    // Reconciled again with that status: nothing produced, nothing written.
    let mut again = region;
    again.status = Some(status);
    let (ctx, verifier) = context(kafka.clone());
    let script = vec![Exchange::get(paths::pipeline("shop"), serde_json::to_value(pipeline()).unwrap())];
    let (result, _) = play(verifier, script, store_region::reconcile(Arc::new(again.clone()), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    assert_eq!(kafka.state().produced.len(), 2);

    // The topic is deleted and created again under its name: every store is published
    // again, with no tombstone, and the status names the new topic.
    let stores = kafka.state().topics["shop.stores"].clone();
    let delete = TopicAction::Delete { name: "shop.stores".into() };
    kafka.apply(&KafkaTarget::plain("kafka:9092"), &delete).await.unwrap();
    let create = TopicAction::Create {
        name: "shop.stores".into(),
        partitions: stores.partitions,
        replication_factor: 1,
        configs: stores.configs,
    };
    kafka.apply(&KafkaTarget::plain("kafka:9092"), &create).await.unwrap();
    let (ctx, verifier) = context(kafka.clone());
    let (result, received) = play(verifier, publishing_script(), store_region::reconcile(Arc::new(again), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    let republished = &kafka.state().produced[2..];
    assert_eq!(
        republished.iter().map(|r| (r.key.as_str(), r.value.is_some())).collect::<Vec<_>>(),
        vec![("de-ber-001", true), ("de-muc-002", true)]
    );
    assert_eq!(received[2].body["status"]["publishedTopicId"], "topic-2");
}

#[tokio::test]
async fn a_pipeline_moved_to_another_cluster_gets_every_store_again() {
    let mut region = fixtures::region("eu-central", "shop", &["de-ber-001"]);
    region.status = Some(StoreRegionStatus {
        published_topic: Some("shop.stores".into()),
        published_stores: vec!["de-ber-001".into(), "de-muc-002".into()],
        published_digest: Some(crate::plan::stores::digest("shop.stores", &store_records(&region))),
        published_cluster_id: Some("cluster-a".into()),
        published_topic_id: Some("topic-1".into()),
        ..StoreRegionStatus::default()
    });
    // The same topic name and even the same id, on a cluster with another id.
    let kafka = Arc::new(with_stores_topic("cluster-b"));
    let (ctx, verifier) = context(kafka.clone());
    let (result, received) = play(verifier, publishing_script(), store_region::reconcile(Arc::new(region), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    let produced = kafka.state().produced;
    assert_eq!(
        produced.iter().map(|r| (r.key.as_str(), r.value.is_some())).collect::<Vec<_>>(),
        vec![("de-ber-001", true)]
    );
    assert_eq!(received[2].body["status"]["publishedClusterId"], "cluster-b");
}

#[tokio::test]
async fn a_region_whose_stores_topic_is_missing_waits_for_it() {
    let region = fixtures::region("eu-central", "shop", &["de-ber-001"]);
    let kafka = Arc::new(MemoryKafka::new());
    let (ctx, verifier) = context(kafka.clone());
    let script = vec![
        Exchange::get(paths::pipeline("shop"), serde_json::to_value(pipeline()).unwrap()),
        Exchange::patch_answering(paths::region("eu-central") + "/status", Answer::Json(region_json("eu-central"))),
    ];
    let (result, received) = play(verifier, script, store_region::reconcile(Arc::new(region), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    assert_eq!(received[1].body["status"]["conditions"][0]["reason"], "TopicMissing");
    assert!(kafka.state().produced.is_empty(), "nothing produced: the broker would create the topic");
}

/// An in-memory cluster with id `cluster` and the pipeline `shop`'s `stores` topic
/// (`topic-1`).
fn with_stores_topic(cluster: &str) -> MemoryKafka {
    MemoryKafka::with_state(stores_topic_state(cluster))
}

fn stores_topic_state(cluster: &str) -> MemoryState {
    let mut state = MemoryState { cluster_id: Some(cluster.to_string()), created: 1, ..MemoryState::default() };
    state.topics.insert("shop.stores".into(), ObservedTopic { partitions: 1, configs: BTreeMap::new() });
    state.topic_ids.insert("shop.stores".into(), "topic-1".into());
    state
}

/// A region publishing to the pipeline `shop`: the pipeline read, the Event, the status.
fn publishing_script() -> Vec<Exchange> {
    vec![
        Exchange::get(paths::pipeline("shop"), serde_json::to_value(pipeline()).unwrap()),
        Exchange::post(paths::events()),
        Exchange::patch_answering(paths::region("eu-central") + "/status", Answer::Json(region_json("eu-central"))),
    ]
}

#[tokio::test]
async fn a_removed_store_gets_a_tombstone() {
    let mut region = fixtures::region("eu-central", "shop", &["de-ber-001"]);
    region.status = Some(StoreRegionStatus {
        published_topic: Some("shop.stores".into()),
        published_stores: vec!["de-ber-001".into(), "de-muc-002".into()],
        published_digest: Some("old".into()),
        ..StoreRegionStatus::default()
    });
    let kafka = Arc::new(with_stores_topic("cluster-a"));
    let (ctx, verifier) = context(kafka.clone());
    let script = publishing_script();
    let (result, received) = play(verifier, script, store_region::reconcile(Arc::new(region), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    let produced = kafka.state().produced;
    assert_eq!(produced[0], OutgoingRecord { topic: "shop.stores".into(), key: "de-muc-002".into(), value: None });
    assert_eq!(produced.len(), 2);
    assert_eq!(received[2].body["status"]["publishedStores"], json!(["de-ber-001"]));
}

#[tokio::test]
async fn a_store_region_without_its_pipeline_says_so() {
    let region = fixtures::region("us-east", "missing", &["us-nyc-001"]);
    let kafka = Arc::new(MemoryKafka::new());
    let (ctx, verifier) = context(kafka.clone());
    let script = vec![
        Exchange::get_missing(paths::pipeline("missing")),
        Exchange::patch_answering(paths::region("us-east") + "/status", Answer::Json(region_json("us-east"))),
    ];
    let (result, received) = play(verifier, script, store_region::reconcile(Arc::new(region), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(std::time::Duration::from_secs(60)));
    assert_eq!(received[1].body["status"]["conditions"][0]["reason"], "PipelineNotFound");
    assert_eq!(
        received[1].body["status"]["conditions"][0]["message"],
        "no RetailPipeline \"missing\" in namespace acme"
    );
    assert!(kafka.state().produced.is_empty());
}

#[tokio::test]
async fn an_alert_policy_is_validated_against_its_pipeline() {
    let mut policy = fixtures::low_stock_policy("spike", "shop", 3);
    policy.spec.rules.sales_spike = Some(crate::crd::alert_policy::SalesSpikeRule {
        window: "no-such-window".into(),
        factor: 2.0,
        measure: None,
        baseline_windows: None,
        min_baseline: None,
    });
    let (ctx, verifier) = context(Arc::new(MemoryKafka::new()));
    let script = vec![
        Exchange::get(paths::pipeline("shop"), serde_json::to_value(pipeline()).unwrap()),
        Exchange::post(paths::events()),
        Exchange::patch_answering(paths::policy("spike") + "/status", Answer::Json(policy_json("spike"))),
    ];
    let (result, received) = play(verifier, script, alert_policy::reconcile(Arc::new(policy), ctx)).await;
    assert_eq!(result.unwrap(), Action::await_change());
    let condition = &received[2].body["status"]["conditions"][0];
    assert_eq!(condition["reason"], "InvalidSpec");
    assert_eq!(condition["message"], "spec.rules.salesSpike.window: no window named \"no-such-window\"");

    // A rendered policy: its figures come from the processors' /metrics, found as members
    // of the pipeline's consumer group; they are read again a minute later.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let body = "stockpulse_processor_alerts_total{policy=\"low\",rule=\"lowStock\"} 4\n\
                        stockpulse_processor_alerts_total{policy=\"other\",rule=\"lowStock\"} 9\n\
                        stockpulse_processor_alert_last_fired_timestamp_seconds{policy=\"low\"} 1795773660\n";
            let _ = stream.write_all(format!("HTTP/1.0 200 OK\r\n\r\n{body}").as_bytes()).await;
        }
    });
    let members = vec![format!("stockpulse@{address}"), "some-other-client".to_string()];
    let policy = fixtures::low_stock_policy("low", "shop", 3);
    let (ctx, verifier) = context(Arc::new(MemoryKafka::with_state(MemoryState { members, ..MemoryState::default() })));
    let script = vec![
        Exchange::get(paths::pipeline("shop"), serde_json::to_value(pipeline()).unwrap()),
        Exchange::patch_answering(paths::policy("low") + "/status", Answer::Json(policy_json("low"))),
    ];
    let (result, received) = play(verifier, script, alert_policy::reconcile(Arc::new(policy), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(alert_policy::FIGURES_EVERY));
    let status = &received[1].body["status"];
    assert_eq!(status["conditions"][0]["reason"], "Rendered");
    assert_eq!(
        (status["alertsFired"].as_i64(), status["lastFiredTime"].as_str()),
        (Some(4), Some("2026-11-27T10:01:00.000Z"))
    );
}

#[tokio::test]
async fn the_autoscalers_decision_is_applied_with_an_event_and_in_status() {
    let kafka = Arc::new(MemoryKafka::with_state(MemoryState { topics: all_topics(3), ..MemoryState::default() }));
    let objects = observed_objects(&plan_of(&pipeline(), &all_topics(3)));
    let p = pipeline();
    let (ctx, verifier) = context(kafka);
    // Two samples: 2000 records/s in, 25000 behind, one replica: 3 replicas (all the
    // partitions) at the configured 1000/s each, capped at maxReplicas 2.
    let policy = crate::plan::replicas::policy(&p.spec.processor).unwrap();
    let bounds = crate::plan::replicas::bounds(&p.spec.processor, 3, now()).unwrap();
    let key = crate::autoscale::sampler::key(&p);
    let sample = |seconds: i64, end: i64, committed: i64| crate::autoscale::decision::Sample {
        at: now() - chrono::Duration::seconds(15 - seconds),
        end_offsets: end,
        committed,
        lag: end - committed,
        partitions: 3,
        ready: 1,
    };
    ctx.autoscaling.decide(&key, &policy, sample(0, 0, 0), 1, &bounds);
    let decision = ctx.autoscaling.decide(&key, &policy, sample(15, 30_000, 5_000), 1, &bounds);
    assert_eq!((decision.desired, decision.reason.as_str()), (2, "CappedAtMaxReplicas"));
    let mut script = lists();
    script.extend(gets_of_existing(&objects));
    script.push(Exchange::patch_answering(
        paths::deployment(PROCESSOR),
        Answer::EchoWithStatus(ready_deployment_status()),
    ));
    script.push(Exchange::post(paths::events()));
    script.push(Exchange::post(paths::events()));
    script.push(Exchange::patch_answering(paths::pipeline_status("shop"), Answer::Json(pipeline_json())));
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(p), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(retail_pipeline::NOT_READY_RETRY));
    assert_eq!(received[7].body["spec"]["replicas"], 2);
    assert_eq!(received[8].body["reason"], "Scaled");
    assert_eq!(
        received[8].body["note"],
        "replicas 1 -> 2: CappedAtMaxReplicas (input 2000/s, processed 333/s, lag 25000, capacity 1000/s per replica, configured)"
    );
    assert_eq!(received[9].body["note"], "applied Deployment");
    let status = &received[10].body["status"];
    let now_text = now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(
        status["replicas"],
        json!({"current": 1, "desired": 2, "ready": 1, "reason": "CappedAtMaxReplicas", "lastScaleTime": now_text})
    );
    assert_eq!(status["consumerLag"], 25_000);
    assert_eq!(
        status["autoscaling"],
        json!({"sampledAt": now_text, "inputRate": 2000, "processedRate": 333, "capacityPerReplica": 1000,
               "capacityLearned": false, "recommendation": 3})
    );
}

#[tokio::test]
async fn with_autoscaling_disabled_replicas_are_left_out_of_the_apply() {
    let kafka = Arc::new(MemoryKafka::with_state(MemoryState { topics: all_topics(3), ..MemoryState::default() }));
    let mut p = pipeline();
    p.spec.processor.autoscaling.enabled = false;
    let plan = plan_of(&p, &all_topics(3));
    assert_eq!(serde_json::to_value(&plan.objects.deployment).unwrap()["spec"].get("replicas"), None);
    // The Deployment as an HPA left it, with the operator's template from before.
    let mut objects = observed_objects(&plan_of(&pipeline(), &all_topics(3)));
    objects[4]["spec"]["replicas"] = json!(5);
    let (ctx, verifier) = context(kafka);
    let mut script = lists();
    script.extend(gets_of_existing(&objects));
    script.push(Exchange::patch_answering(paths::pipeline_status("shop"), Answer::Json(pipeline_json())));
    let (result, received) = play(verifier, script, retail_pipeline::reconcile(Arc::new(p), ctx)).await;
    assert!(result.is_ok());
    let status = &received[7].body["status"];
    assert_eq!(status["replicas"]["desired"], 5, "what the HPA set: {status}");
    assert_eq!(status["replicas"]["reason"], "AutoscalingDisabled");
}

#[tokio::test]
async fn a_schedule_boundary_is_the_next_requeue() {
    let kafka = Arc::new(MemoryKafka::with_state(MemoryState { topics: all_topics(3), ..MemoryState::default() }));
    let mut p = pipeline();
    let start = now() + chrono::Duration::seconds(42);
    p.spec.processor.schedules = vec![crate::crd::retail_pipeline::ScheduleSpec {
        name: "black-friday".into(),
        start: start.to_rfc3339(),
        end: (start + chrono::Duration::days(3)).to_rfc3339(),
        min_replicas: 3,
    }];
    let objects = observed_objects(&plan_of(&p, &all_topics(3)));
    let (ctx, verifier) = context(kafka);
    let mut script = lists();
    script.extend(gets_of_existing(&objects));
    script.push(Exchange::patch_answering(paths::pipeline_status("shop"), Answer::Json(pipeline_json())));
    let (result, _) = play(verifier, script, retail_pipeline::reconcile(Arc::new(p), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(std::time::Duration::from_secs(42)));
}

fn regional(region: &mut StoreRegion, bootstrap: &str) {
    region.spec.kafka =
        Some(crate::crd::common::KafkaConnection { bootstrap_servers: bootstrap.into(), tls: None, sasl: None });
}

#[tokio::test]
async fn a_region_with_its_own_cluster_gets_a_replicator() {
    use crate::replicator::checkpoint::{Checkpoint, Checkpoints, ReplicationStatus};
    let mut region = fixtures::region("eu-central", "shop", &["de-ber-001"]);
    regional(&mut region, "kafka.eu-central:9092");
    // Another region on another cluster: no conflict.
    let mut other = fixtures::region("us-east", "shop", &["us-nyc-001"]);
    regional(&mut other, "kafka.us-east:9092");
    let checkpoints = Checkpoints {
        partitions: BTreeMap::from([(
            ("shop.sales".to_string(), 0),
            Checkpoint { next_offset: 120, time: "2026-11-20T09:59:58Z".into() },
        )]),
        status: Some(ReplicationStatus {
            reason: "Replicating".into(),
            message: "copying 2 partitions".into(),
            records_copied: 120,
            records_lost: 0,
            lag_records: 7,
            lag_seconds: 2.0,
            time: "2026-11-20T09:59:58Z".into(),
        }),
        unreadable: 0,
    };
    let kafka = Arc::new(MemoryKafka::with_state(MemoryState {
        checkpoints: Some(checkpoints),
        ..stores_topic_state("cluster-a")
    }));
    let (ctx, verifier) = context(kafka.clone());
    let replicator = "/apis/apps/v1/namespaces/acme/deployments/eu-central-replicator";
    let regions = vec![serde_json::to_value(&region).unwrap(), serde_json::to_value(&other).unwrap()];
    let script = vec![
        Exchange::get(paths::pipeline("shop"), pipeline_json()),
        Exchange::post(paths::events()),
        Exchange::get(paths::regions(), list("StoreRegion", regions)),
        Exchange::post(paths::events()),
        Exchange::get_missing(replicator),
        Exchange::patch_answering(replicator, Answer::EchoWithStatus(json!({"replicas": 1, "readyReplicas": 1}))),
        Exchange::post(paths::events()),
        Exchange::patch_answering(paths::region("eu-central") + "/status", Answer::Json(region_json("eu-central"))),
    ];
    let (result, received) = play(verifier, script, store_region::reconcile(Arc::new(region), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    // The regional topics the pipeline declares are created in the regional cluster.
    let created: Vec<String> = kafka
        .state()
        .actions
        .iter()
        .filter_map(|a| match a {
            crate::plan::topics::TopicAction::Create { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(created, ["shop.sales", "shop.inventory"]);
    assert_eq!(received[3].body["reason"], "RegionalTopicsCreated");
    assert_eq!(received[3].body["note"], "created shop.sales, shop.inventory in the regional cluster");
    let deployment = &received[5].body;
    assert_server_side_apply(&received[5]);
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["kind"], "StoreRegion");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["args"],
        json!([
            "replicate",
            "--id=stockpulse-replicator.acme.eu-central",
            "--region=eu-central",
            "--target-region=shop",
            "--topic",
            "shop.sales",
            "--topic",
            "shop.inventory"
        ])
    );
    assert_eq!(container["readinessProbe"]["httpGet"], json!({"path": "/readyz", "port": "http"}));
    assert_eq!(container["ports"], json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]));
    assert_eq!(container["env"][0], json!({"name": "SOURCE_BOOTSTRAP_SERVERS", "value": "kafka.eu-central:9092"}));
    assert_eq!(container["env"][1], json!({"name": "TARGET_BOOTSTRAP_SERVERS", "value": "kafka:9092"}));
    assert_eq!(received[6].body["reason"], "ReplicatorApplied");
    let status = &received[7].body["status"];
    assert_eq!(status["replicationLag"], 7);
    assert_eq!(status["replicatedRecords"], 120);
    assert_eq!(status["replicationRecordsLost"], 0);
    assert_eq!(status["lastCheckpointTime"], "2026-11-20T09:59:58Z");
    let replication_ready =
        status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ReplicationReady").unwrap();
    assert_eq!(replication_ready["status"], "True");
    assert_eq!(replication_ready["reason"], "Replicating");
    assert_eq!(replication_ready["message"], "120 records replicated, 7 behind (2 s)");
}

#[tokio::test]
async fn a_region_on_the_pipelines_own_cluster_gets_no_replicator() {
    let mut region = fixtures::region("eu-central", "shop", &["de-ber-001"]);
    regional(&mut region, "kafka:9092");
    let kafka = Arc::new(with_stores_topic("cluster-a"));
    let (ctx, verifier) = context(kafka.clone());
    let replicator = "/apis/apps/v1/namespaces/acme/deployments/eu-central-replicator";
    let script = vec![
        Exchange::get(paths::pipeline("shop"), pipeline_json()),
        Exchange::post(paths::events()),
        Exchange::get(paths::regions(), list("StoreRegion", vec![serde_json::to_value(&region).unwrap()])),
        Exchange::get_missing(replicator),
        Exchange::post(paths::events()),
        Exchange::patch_answering(paths::region("eu-central") + "/status", Answer::Json(region_json("eu-central"))),
    ];
    let (result, received) = play(verifier, script, store_region::reconcile(Arc::new(region), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    assert_eq!(received[4].body["reason"], "SameClusterAsPipeline");
    assert_eq!(received[4].body["type"], "Warning");
    let status = &received[5].body["status"];
    let condition = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ReplicationReady").unwrap();
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "SameClusterAsPipeline");
    assert!(kafka.state().actions.is_empty(), "no regional topic is created on the pipeline's cluster");
}

#[tokio::test]
async fn the_second_region_on_a_shared_cluster_gets_no_replicator() {
    let mut region = fixtures::region("eu-west", "shop", &["fr-par-001"]);
    regional(&mut region, "kafka.eu:9092");
    let mut first = fixtures::region("eu-central", "shop", &["de-ber-001"]);
    regional(&mut first, "kafka.eu:9092");
    let kafka = Arc::new(with_stores_topic("cluster-a"));
    let (ctx, verifier) = context(kafka.clone());
    let replicator = "/apis/apps/v1/namespaces/acme/deployments/eu-west-replicator";
    let regions = vec![serde_json::to_value(&first).unwrap(), serde_json::to_value(&region).unwrap()];
    let script = vec![
        Exchange::get(paths::pipeline("shop"), pipeline_json()),
        Exchange::post(paths::events()),
        Exchange::get(paths::regions(), list("StoreRegion", regions)),
        Exchange::get_missing(replicator),
        Exchange::post(paths::events()),
        Exchange::patch_answering(paths::region("eu-west") + "/status", Answer::Json(region_json("eu-west"))),
    ];
    let (result, received) = play(verifier, script, store_region::reconcile(Arc::new(region), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    let status = &received[5].body["status"];
    let condition = status["conditions"].as_array().unwrap().iter().find(|c| c["type"] == "ReplicationReady").unwrap();
    assert_eq!(condition["status"], "False");
    assert_eq!(condition["reason"], "ClusterShared");
    assert_eq!(
        condition["message"],
        "StoreRegion eu-central already copies shop.sales, shop.inventory from kafka.eu:9092: a second replicator \
         would copy every record twice; give each region its own cluster, or put both regions' stores in one \
         StoreRegion"
    );
}

#[tokio::test]
async fn a_region_that_loses_its_own_cluster_loses_its_replicator() {
    let mut region = fixtures::region("eu-central", "shop", &["de-ber-001"]);
    region.status = Some(StoreRegionStatus {
        conditions: vec![crate::crd::common::Condition {
            type_: "ReplicationReady".into(),
            status: "True".into(),
            reason: "Replicating".into(),
            message: "120 records replicated, 7 behind".into(),
            last_transition_time: "2026-11-20T09:00:00Z".into(),
            observed_generation: None,
        }],
        replication_lag: Some(7),
        replicated_records: Some(120),
        ..StoreRegionStatus::default()
    });
    let kafka = Arc::new(with_stores_topic("cluster-a"));
    let (ctx, verifier) = context(kafka.clone());
    let replicator = "/apis/apps/v1/namespaces/acme/deployments/eu-central-replicator";
    let script = vec![
        Exchange::get(paths::pipeline("shop"), pipeline_json()),
        Exchange::post(paths::events()),
        Exchange::get(
            replicator,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "eu-central-replicator", "namespace": "acme"}}),
        ),
        Exchange::delete(replicator),
        Exchange::post(paths::events()),
        Exchange::patch_answering(paths::region("eu-central") + "/status", Answer::Json(region_json("eu-central"))),
    ];
    let (result, received) = play(verifier, script, store_region::reconcile(Arc::new(region), ctx)).await;
    assert_eq!(result.unwrap(), Action::requeue(store_region::RECHECK));
    assert_eq!(received[4].body["reason"], "ReplicatorDeleted");
    assert_eq!(received[4].body["note"], "the region has no Kafka cluster of its own any more");
    let status = &received[5].body["status"];
    let types: Vec<&str> = status["conditions"].as_array().unwrap().iter().filter_map(|c| c["type"].as_str()).collect();
    assert_eq!(types, ["Ready"], "ReplicationReady is gone with the replicator");
    assert!(status.get("replicationLag").is_none_or(Value::is_null), "{status}");
}

#[tokio::test]
async fn the_sampler_reads_partition_offsets_and_the_deployment_then_decides() {
    use std::sync::atomic::{AtomicI64, Ordering};

    use crate::kafka_admin::PartitionOffsets;

    let kafka = Arc::new(MemoryKafka::with_state(MemoryState { topics: all_topics(3), ..MemoryState::default() }));
    let (ctx, verifier) = context(kafka.clone());
    let seconds = Arc::new(AtomicI64::new(0));
    let clock = seconds.clone();
    let ctx = Arc::try_unwrap(ctx)
        .ok()
        .expect("one context")
        .with_clock(Arc::new(move || now() + chrono::Duration::seconds(clock.load(Ordering::SeqCst))));
    let offsets = |high: i64, committed: i64| -> Vec<PartitionOffsets> {
        let mut all = Vec::new();
        for partition in 0..3 {
            all.push(PartitionOffsets {
                topic: "shop.sales".into(),
                partition,
                low: 0,
                high,
                committed: Some(committed),
            });
            all.push(PartitionOffsets {
                topic: "shop.inventory".into(),
                partition,
                low: 0,
                high: 100,
                committed: Some(100),
            });
        }
        all
    };
    let objects = observed_objects(&plan_of(&pipeline(), &all_topics(3)));
    let script = vec![
        Exchange::get(paths::deployment(PROCESSOR), objects[4].clone()),
        Exchange::get(paths::deployment(PROCESSOR), objects[4].clone()),
    ];
    let p = pipeline();
    let run = async {
        kafka.set_offsets(offsets(1000, 900));
        let first = crate::autoscale::sampler::sample_once(&ctx, &p).await.unwrap().unwrap();
        assert_eq!(ctx.autoscaling.get("acme/shop").unwrap().latest.unwrap().1.partitions, 3, "per topic");
        // 15 s later: 1000 records/s in, 800/s committed.
        seconds.store(15, Ordering::SeqCst);
        kafka.set_offsets(offsets(6000, 4900));
        let second = crate::autoscale::sampler::sample_once(&ctx, &p).await.unwrap().unwrap();
        (first, second, ctx.metrics.encode())
    };
    let ((first, second, metrics), _) = play(verifier, script, run).await;
    assert_eq!(first.current, Some(1));
    assert_eq!((first.decision.desired, first.decision.input_rate), (1, None), "one sample: no rates yet");
    let d = &second.decision;
    assert_eq!((d.input_rate, d.processed_rate, d.lag), (Some(1000.0), Some(800.0), 3300));
    assert_eq!((d.desired, d.reason.as_str(), d.recommendation), (2, "InputAboveCapacity", Some(2)));
    for line in [
        "stockpulse_operator_partition_lag{namespace=\"acme\",pipeline=\"shop\",topic=\"shop.sales\",partition=\"0\"} 1100",
        "stockpulse_operator_input_rate{namespace=\"acme\",pipeline=\"shop\"} 1000.0",
        "stockpulse_operator_processed_rate{namespace=\"acme\",pipeline=\"shop\"} 800.0",
        "stockpulse_operator_capacity_per_replica{namespace=\"acme\",pipeline=\"shop\"} 1000.0",
        "stockpulse_operator_autoscaler_desired_replicas{namespace=\"acme\",pipeline=\"shop\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

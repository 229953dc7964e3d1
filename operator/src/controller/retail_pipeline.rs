//! The RetailPipeline controller: topics, the processor's objects and the pipeline status.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use stockpulse_processor::config::TopicRole;

use super::apply::{apply_if_changed, apply_unless_matching, owns_replicas};
use super::kafka_target::kafka_target;
use super::{Context, apply_status, object_key};
use crate::autoscale::sampler::{self, ensure_sampler};
use crate::build::labels::FIELD_MANAGER;
use crate::build::topics::{desired_topics, desired_topics_with_sinks};
use crate::crd::{AlertPolicy, RetailPipeline, StoreRegion};
use crate::error::{Error, Result};
use crate::kafka_admin::{KafkaError, KafkaTarget};
use crate::plan::pipeline::{PipelineInput, PipelinePlan, plan_pipeline};
use crate::plan::replicas::{ReplicaInput, next_boundary, plan_replicas};
use crate::plan::topics::{ObservedTopic, TopicAction, plan_topic_cleanup};
use crate::status::pipeline::{
    PipelineObservation, TopicFailure, connection_failure_status, connection_problem, invalid_spec_status,
    pipeline_status,
};

pub const KIND: &str = "RetailPipeline";
/// The finalizer that deletes `deletionPolicy: Delete` topics before the pipeline goes.
pub const FINALIZER: &str = "retail.stockpulse.io/topics";

/// How often a healthy pipeline is looked at again (drift of topics, schedules).
pub const RESYNC: Duration = Duration::from_secs(300);
/// The field manager that holds `spec.replicas` at its last value when autoscaling is
/// disabled, so the operator's apply without it does not reset it and an HPA or KEDA takes
/// it over from there.
pub const REPLICAS_HANDOFF_MANAGER: &str = "stockpulse-operator-replicas-handoff";
/// How soon a pipeline that is not ready yet is looked at again.
pub const NOT_READY_RETRY: Duration = Duration::from_secs(30);

pub async fn reconcile(pipeline: Arc<RetailPipeline>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start(KIND);
    let namespace = pipeline.namespace().ok_or(Error::MissingField(KIND, "metadata.namespace"))?;
    let api: Api<RetailPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = object_key(KIND, pipeline.namespace(), &pipeline.name_any());
    let result = finalizer(&api, FINALIZER, pipeline, |event| async {
        match event {
            FinalizerEvent::Apply(p) => apply(p, ctx.clone()).await,
            FinalizerEvent::Cleanup(p) => cleanup(p, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.reset_backoff(&key);
    }
    result
}

/// Transient errors: requeue with exponential backoff.
/// The pipeline's Kafka cluster or its Secrets could not be used: `Ready=False` with the
/// reason, a Warning Event when that is news, and another look in [`NOT_READY_RETRY`] (a
/// Secret created or fixed, or a cluster back, is picked up then).
async fn connection_failed(
    ctx: &Context,
    api: &Api<RetailPipeline>,
    pipeline: &RetailPipeline,
    reason: &'static str,
    message: String,
) -> Result<Action> {
    let status = connection_failure_status(pipeline, reason, &message, &ctx.now_text());
    if pipeline.status.as_ref() != Some(&status) {
        let was = pipeline.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        if was.is_none_or(|c| c.reason != reason) {
            ctx.event(&pipeline.object_ref(&()), true, reason, "Connect", message).await;
        }
        apply_status(api, &pipeline.name_any(), &status).await?;
    }
    Ok(Action::requeue(NOT_READY_RETRY))
}

fn failure_of(topic: &str, error: &KafkaError) -> TopicFailure {
    let reason = match error {
        KafkaError::Unsupported { operation: "CreatePartitions", .. } => "PartitionIncreaseUnsupported",
        KafkaError::Unsupported { .. } => "TopicOperationUnsupported",
        KafkaError::Failed { .. } => "TopicReconcileFailed",
    };
    TopicFailure { topic: topic.to_string(), reason, message: format!("{topic}: {error}") }
}

fn action_topic(action: &TopicAction) -> &str {
    match action {
        TopicAction::Create { name, .. }
        | TopicAction::AlignConfigs { name, .. }
        | TopicAction::IncreasePartitions { name, .. }
        | TopicAction::Delete { name } => name,
    }
}

fn describe_action(action: &TopicAction) -> String {
    match action {
        TopicAction::Create { name, partitions, .. } => format!("created topic {name} ({partitions} partitions)"),
        TopicAction::AlignConfigs { name, set } => {
            format!(
                "set {} on topic {name}",
                set.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
            )
        }
        TopicAction::IncreasePartitions { name, from, to } => {
            format!("increased topic {name} from {from} to {to} partitions")
        }
        TopicAction::Delete { name } => format!("deleted topic {name}"),
    }
}

/// Consumer lag of the pipeline's group over its input topics. It steers autoscaling but is
/// not needed for the rest: a failure to read it is logged and the reconcile goes on.
async fn consumer_lag(
    ctx: &Context,
    target: &KafkaTarget,
    pipeline: &RetailPipeline,
    topics: &[crate::build::topics::DesiredTopic],
) -> Option<i64> {
    let inputs: Vec<String> = topics
        .iter()
        .filter(|t| matches!(t.role, TopicRole::Sales | TopicRole::Inventory))
        .map(|t| t.name.clone())
        .collect();
    let name = pipeline.name_any();
    let group = pipeline.spec.kafka.consumer_group.clone().unwrap_or_else(|| name.clone());
    match ctx.kafka.consumer_lag(target, &group, &inputs).await {
        Ok(lag) => lag,
        Err(e) => {
            tracing::warn!(pipeline = %name, error = %e, "cannot read consumer lag");
            None
        }
    }
}

/// The partitions of the input topics (the cap of replicas) as the plan has them.
fn input_partitions(plan: &PipelinePlan) -> i32 {
    plan.topics
        .iter()
        .filter(|t| matches!(t.role, TopicRole::Sales | TopicRole::Inventory))
        .map(|t| t.partitions)
        .max()
        .unwrap_or(1)
}

/// What applying the topic plan did.
struct TopicChanges {
    done: Vec<String>,
    failures: Vec<TopicFailure>,
    /// The topics created.
    created: Vec<String>,
}

/// Applies the topic plan; returns what changed and what failed.
async fn apply_topics(ctx: &Context, target: &KafkaTarget, plan: &PipelinePlan) -> TopicChanges {
    let mut changes = TopicChanges { done: Vec::new(), failures: Vec::new(), created: Vec::new() };
    for action in &plan.topic_plan.actions {
        match ctx.kafka.apply(target, action).await {
            Ok(()) => {
                changes.done.push(describe_action(action));
                if let TopicAction::Create { name, .. } = action {
                    changes.created.push(name.clone());
                }
            }
            Err(e) => changes.failures.push(failure_of(action_topic(action), &e)),
        }
    }
    changes
}

/// How long topics just created may take to show in the broker's metadata.
const CREATED_TOPICS_VISIBLE: Duration = Duration::from_secs(2);

/// The topics after changes. Apache Kafka answers CreateTopics before a new topic's
/// partitions have leaders, and until then its metadata leaves the topic out: describe again,
/// briefly, until every created topic shows, so a fresh pipeline is not reported
/// `TopicsMissing` (with a warning event) for a moment's lag.
async fn describe_after_changes(
    ctx: &Context,
    target: &KafkaTarget,
    names: &[String],
    created: &[String],
) -> Result<BTreeMap<String, ObservedTopic>> {
    let deadline = tokio::time::Instant::now() + CREATED_TOPICS_VISIBLE;
    loop {
        let topics = ctx.kafka.describe_topics(target, names).await?;
        if created.iter().all(|t| topics.contains_key(t)) || tokio::time::Instant::now() >= deadline {
            return Ok(topics);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn apply(pipeline: Arc<RetailPipeline>, ctx: Arc<Context>) -> Result<Action> {
    let client = &ctx.client;
    let namespace = pipeline.namespace().ok_or(Error::MissingField(KIND, "metadata.namespace"))?;
    let name = pipeline.name_any();
    let reference = pipeline.object_ref(&());
    let pipelines: Api<RetailPipeline> = Api::namespaced(client.clone(), &namespace);
    let now = ctx.now();
    let now_text = ctx.now_text();

    // Observe.
    let regions = ctx.list::<StoreRegion>(&namespace).await?;
    let policies = ctx.list::<AlertPolicy>(&namespace).await?;
    let desired = desired_topics_with_sinks(&pipeline, &policies).unwrap_or_default();
    let names: Vec<String> = desired.iter().map(|t| t.name.clone()).collect();
    let mut observed_topics = BTreeMap::new();
    let mut lag = None;
    let target = if names.is_empty() {
        None
    } else {
        let observed = async {
            let target = kafka_target(client, &pipeline).await?;
            let topics = ctx.kafka.describe_topics(&target, &names).await.map_err(Error::Kafka)?;
            Ok::<_, Error>((target, topics))
        };
        let target = match observed.await {
            Ok((target, topics)) => {
                observed_topics = topics;
                target
            }
            Err(error) => match connection_problem(&error) {
                // The cluster or its Secrets: a condition the user sees, retried soon.
                Some((reason, message)) => {
                    return connection_failed(&ctx, &pipelines, &pipeline, reason, message).await;
                }
                None => return Err(error),
            },
        };
        lag = consumer_lag(&ctx, &target, &pipeline, &desired).await;
        Some(target)
    };

    // Plan.
    let input = PipelineInput {
        pipeline: &pipeline,
        regions: &regions,
        policies: &policies,
        observed_topics: &observed_topics,
        current_replicas: None,
        autoscaled: ctx.autoscaling.autoscaled(&sampler::key(&pipeline)),
        now,
        settings: &ctx.settings,
    };
    let plan = match plan_pipeline(&input) {
        Ok(plan) => plan,
        Err(problems) => {
            let status = invalid_spec_status(&pipeline, &problems, &now_text);
            if pipeline.status.as_ref() != Some(&status) {
                ctx.event(&reference, true, "InvalidSpec", "Validate", problems.to_string()).await;
                apply_status(&pipelines, &name, &status).await?;
            }
            // A spec error waits for the spec to change: no hot loop.
            return Ok(Action::await_change());
        }
    };
    let Some(target) = target else {
        return Err(Error::MissingField(KIND, "topics"));
    };

    // Apply: topics, then objects in dependency order (the Deployment last).
    let TopicChanges { done: mut changes, failures, created } = apply_topics(&ctx, &target, &plan).await;
    let topics_after: BTreeMap<String, ObservedTopic> = if changes.is_empty() {
        observed_topics
    } else {
        describe_after_changes(&ctx, &target, &names, &created).await?
    };
    let o = &plan.objects;
    let (_, sa) = apply_if_changed(&ctx, &namespace, &o.service_account).await?;
    let (_, cm) = apply_if_changed(&ctx, &namespace, &o.config_map).await?;
    let (_, svc) = apply_if_changed(&ctx, &namespace, &o.service).await?;
    let (_, pdb) = apply_if_changed(&ctx, &namespace, &o.pod_disruption_budget).await?;
    // The Deployment: the replicas are decided against its current count.
    let deployments = Api::<Deployment>::namespaced(client.clone(), &namespace);
    let mut plan = plan;
    let observed_deployment =
        ctx.get::<Deployment>(&namespace, &crate::build::labels::processor_name(&pipeline)).await?;
    let current = observed_deployment.as_ref().and_then(|d| d.spec.replicas);
    let replica_input = ReplicaInput {
        input_partitions: input_partitions(&plan),
        current,
        autoscaled: ctx.autoscaling.autoscaled(&sampler::key(&pipeline)),
    };
    if let Ok(decision) = plan_replicas(&pipeline.spec.processor, &replica_input, now) {
        plan.objects.deployment.spec.replicas = decision.managed.then_some(decision.desired);
        plan.replicas = decision;
    }
    let handoff = !plan.replicas.managed
        && observed_deployment.as_ref().is_some_and(|d| owns_replicas(&d.metadata, FIELD_MANAGER));
    if handoff && let Some(replicas) = current {
        // Autoscaling was just disabled: another manager keeps `replicas` at its value, then
        // the operator's apply leaves the field out (and so gives up its share of it).
        let body = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": crate::build::labels::processor_name(&pipeline)},
            "spec": {"replicas": replicas},
        });
        deployments
            .patch(
                &crate::build::labels::processor_name(&pipeline),
                &kube::api::PatchParams::apply(REPLICAS_HANDOFF_MANAGER),
                &kube::api::Patch::Apply(&body),
            )
            .await?;
        changes.push(format!("handed replicas ({replicas}) over to the HPA or KEDA"));
    }
    let o = &plan.objects;
    let (deployment, dep) = apply_unless_matching(&deployments, &o.deployment, observed_deployment, handoff).await?;
    for (changed, kind) in
        [(sa, "ServiceAccount"), (cm, "ConfigMap"), (svc, "Service"), (pdb, "PodDisruptionBudget"), (dep, "Deployment")]
    {
        if changed {
            changes.push(format!("applied {kind}"));
        }
    }

    // A scale: an event, the time, a metric.
    let key = sampler::key(&pipeline);
    if plan.replicas.managed
        && let Some(before) = current
        && before != plan.replicas.desired
    {
        let scaling = ctx.autoscaling.get(&key);
        let seen = scaling
            .as_ref()
            .and_then(|s| s.latest.as_ref())
            .map(|(d, _)| {
                let rate = |r: Option<f64>| r.map_or("?".to_string(), |r| format!("{r:.0}/s"));
                format!(
                    " (input {}, processed {}, lag {}, capacity {:.0}/s per replica{})",
                    rate(d.input_rate),
                    rate(d.processed_rate),
                    d.lag,
                    d.capacity_per_replica,
                    if d.capacity_learned { ", learned" } else { ", configured" }
                )
            })
            .unwrap_or_default();
        let note = format!("replicas {before} -> {}: {}{seen}", plan.replicas.desired, plan.replicas.reason);
        ctx.event(&reference, false, "Scaled", "Scale", note).await;
        ctx.autoscaling.scaled(&key, &now_text);
        ctx.metrics.scaled(&namespace, &name, plan.replicas.desired > before);
    }

    // Status.
    let scaling = ctx.autoscaling.get(&key);
    let latest = scaling.as_ref().and_then(|s| s.latest.as_ref());
    let observation = PipelineObservation {
        topics: topics_after,
        topic_failures: failures.clone(),
        deployment: Some(deployment),
        consumer_lag: latest.map(|(d, _)| d.lag).or(lag),
        autoscaling: latest.filter(|_| plan.replicas.managed).map(|(d, s)| sampler::status_of(d, s)),
        last_scale_time: scaling.as_ref().and_then(|s| s.last_scale_time.clone()).or_else(|| {
            pipeline.status.as_ref().and_then(|s| s.replicas.as_ref()).and_then(|r| r.last_scale_time.clone())
        }),
    };
    let status = pipeline_status(&pipeline, &plan, &observation, &now_text);
    if !changes.is_empty() {
        ctx.event(&reference, false, "Reconciled", "Reconcile", changes.join("; ")).await;
    }
    let previous_topics_reason = pipeline
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "TopicsReady"))
        .map(|c| c.reason.clone());
    let topics_condition = status.conditions.iter().find(|c| c.type_ == "TopicsReady");
    if let Some(c) = topics_condition
        && c.status == "False"
        && previous_topics_reason.as_deref() != Some(c.reason.as_str())
    {
        ctx.event(&reference, true, &c.reason, "ReconcileTopics", c.message.clone()).await;
    }
    let ready = status.replicas.as_ref().map_or(0, |r| r.ready);
    ctx.metrics.pipeline(&namespace, &name, lag, plan.replicas.desired, ready);
    if pipeline.status.as_ref() != Some(&status) {
        apply_status(&pipelines, &name, &status).await?;
    }
    let ready = status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True");
    let mut next = if ready { RESYNC } else { NOT_READY_RETRY };
    // A schedule's floor takes effect at its boundary: look again right then.
    if let Some(boundary) = next_boundary(&pipeline.spec.processor, now) {
        let until = (boundary - now).to_std().unwrap_or_default();
        next = next.min(until.max(Duration::from_millis(100)));
    }
    ensure_sampler(&ctx, &pipeline);
    Ok(Action::requeue(next))
}

/// Deletes the topics whose deletion policy is `Delete`; the objects go by garbage collection.
async fn cleanup(pipeline: Arc<RetailPipeline>, ctx: Arc<Context>) -> Result<Action> {
    let reference = pipeline.object_ref(&());
    let Ok(topics) = desired_topics(&pipeline) else {
        ctx.event(&reference, true, "TopicsKept", "Delete", "invalid topics spec: no topic deleted".to_string()).await;
        return Ok(Action::await_change());
    };
    if topics.iter().all(|t| t.deletion_policy == crate::crd::DeletionPolicy::Retain) {
        return Ok(Action::await_change());
    }
    let overdue = ctx
        .now()
        .signed_duration_since(
            pipeline
                .metadata
                .deletion_timestamp
                .as_ref()
                .and_then(|t| chrono::DateTime::from_timestamp_millis(t.0.as_millisecond()))
                .unwrap_or(ctx.now()),
        )
        .to_std()
        .is_ok_and(|waited| waited > CLEANUP_DEADLINE);
    // The writers go first: a topic deleted under a running processor or replicator would be
    // created again by its next write.
    let writers = stop_writers(&ctx, &pipeline).await?;
    if !writers.is_empty() {
        if overdue {
            let message = format!("still running after {CLEANUP_DEADLINE:?}: {}; no topic deleted", writers.join(", "));
            ctx.event(&reference, true, "CleanupAbandoned", "Delete", message).await;
            return Ok(Action::await_change());
        }
        // An error keeps the finalizer (a cleanup that returns Ok removes it); the error
        // policy looks again in WRITERS_STOPPING_RETRY.
        return Err(Error::WritersRunning(writers.join(", ")));
    }
    let deleted = async {
        let target = kafka_target(&ctx.client, &pipeline).await?;
        let names: Vec<String> = topics.iter().map(|t| t.name.clone()).collect();
        let observed = ctx.kafka.describe_topics(&target, &names).await?;
        let mut done = Vec::new();
        for action in &plan_topic_cleanup(&topics, &observed) {
            ctx.kafka.apply(&target, action).await?;
            done.push(describe_action(action));
        }
        Ok::<_, Error>(done)
    };
    match deleted.await {
        Ok(done) => {
            if !done.is_empty() {
                ctx.event(&reference, false, "TopicsDeleted", "Delete", done.join("; ")).await;
            }
            Ok(Action::await_change())
        }
        // The cluster or its Secret out of reach for too long (its namespace may be going
        // away with it): the pipeline goes, its topics stay, and the Event says so.
        Err(e) if overdue => {
            let message = format!("topics not deleted after {CLEANUP_DEADLINE:?}: {e}");
            ctx.event(&reference, true, "CleanupAbandoned", "Delete", message).await;
            Ok(Action::await_change())
        }
        Err(e) => Err(e),
    }
}

/// How long a deletion waits for its writers to stop, or for Kafka and its Secrets, before
/// the finalizer gives up with a Warning Event rather than hold the namespace.
pub const CLEANUP_DEADLINE: Duration = Duration::from_secs(600);
/// How soon a deletion waiting for its writers looks again (see [`super::error_policy`]).
pub const WRITERS_STOPPING_RETRY: Duration = Duration::from_secs(5);

/// Scales the pipeline's processors to zero and names the writers still running: the
/// processor Deployment until its pods are gone, and the replicators of the regions feeding
/// the pipeline (their controller deletes them once the pipeline is being deleted).
async fn stop_writers(ctx: &Context, pipeline: &RetailPipeline) -> Result<Vec<String>> {
    let namespace = pipeline.namespace().ok_or(Error::MissingField(KIND, "metadata.namespace"))?;
    let deployments: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut running = Vec::new();
    let processor = crate::build::labels::processor_name(pipeline);
    if let Some(deployment) = ctx.get::<Deployment>(&namespace, &processor).await? {
        if deployment.spec.replicas != Some(0) {
            let patch = serde_json::json!({"spec": {"replicas": 0}});
            let params = kube::api::PatchParams { field_manager: Some(STOP_MANAGER.into()), ..Default::default() };
            deployments.patch(&processor, &params, &kube::api::Patch::Merge(&patch)).await?;
            ctx.event(
                &pipeline.object_ref(&()),
                false,
                "ProcessorsStopping",
                "Delete",
                format!("scaled Deployment {processor} to 0 before deleting topics"),
            )
            .await;
        }
        let pods = deployment.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if pods > 0 {
            running.push(format!("Deployment {processor} ({pods} pods)"));
        }
    }
    let regions = ctx.list::<StoreRegion>(&namespace).await?;
    for region in regions.iter().filter(|r| r.spec.pipeline_ref.name == pipeline.name_any()) {
        let name = crate::build::replicator::replicator_name(region);
        if ctx.get::<Deployment>(&namespace, &name).await?.is_some() {
            running.push(format!("Deployment {name} (replicator of StoreRegion {})", region.name_any()));
        }
    }
    Ok(running)
}

/// The field manager of the scale-down before deletion.
const STOP_MANAGER: &str = "stockpulse-operator-cleanup";

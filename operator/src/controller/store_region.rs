//! The StoreRegion controller: validates the region and publishes its stores to the
//! selected pipeline's compacted `stores` topic (tombstones for removed stores).

use std::sync::Arc;

use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use stockpulse_processor::config::TopicRole;

use k8s_openapi::api::apps::v1::Deployment;

use super::apply::apply_if_changed;
use super::kafka_target::{connection_target, kafka_target};
use super::{Context, apply_status, object_key};
use crate::build::replicator::{REGION_PRODUCED_ROLES, replicated_topics, replicator_deployment, replicator_name};
use crate::build::store_records::store_records;
use crate::build::topics::{desired_topics, topic_name};
use crate::build::{SpecProblem, SpecProblems};
use crate::crd::{RetailPipeline, StoreRegion, StoreRegionStatus};
use crate::error::{Error, Result};
use crate::plan::pipeline::selects;
use crate::plan::replication::{OtherRegion, ReplicationPlan, plan_regional_topics, plan_replication};
use crate::plan::stores::{plan_stores, plan_withdrawal};
use crate::replicator::checkpoint::checkpoint_topic_of;
use crate::replicator::replicator_id;
use crate::status::conditions::{NewCondition, READY, REPLICATION_READY, merge};
use crate::status::replication::replication_condition;

/// What is known of a region's replication.
struct Replication {
    lag: Option<i64>,
    replicated: Option<i64>,
    lost: Option<i64>,
    last_checkpoint: Option<String>,
}

pub const KIND: &str = "StoreRegion";
/// How often a region without its pipeline, or with a replicator, is looked at again.
pub const RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// The finalizer that withdraws the region's stores (tombstones) before it goes.
pub const FINALIZER: &str = "retail.stockpulse.io/stores";

/// Checks what the schema cannot: the time zone exists, store ids are unique.
pub fn validate(region: &StoreRegion) -> Result<(), SpecProblems> {
    let mut problems = Vec::new();
    if region.spec.timezone.parse::<chrono_tz::Tz>().is_err() {
        problems.push(SpecProblem {
            field: "spec.timezone".into(),
            message: format!("{:?} is not an IANA time zone", region.spec.timezone),
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, store) in region.spec.stores.iter().enumerate() {
        if !seen.insert(store.id.as_str()) {
            problems.push(SpecProblem {
                field: format!("spec.stores[{i}].id"),
                message: format!("duplicate store id {:?}", store.id),
            });
        }
    }
    if problems.is_empty() { Ok(()) } else { Err(SpecProblems(problems)) }
}

pub async fn reconcile(region: Arc<StoreRegion>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start(KIND);
    let namespace = region.namespace().ok_or(Error::MissingField(KIND, "metadata.namespace"))?;
    let api: Api<StoreRegion> = Api::namespaced(ctx.client.clone(), &namespace);
    let key = object_key(KIND, region.namespace(), &region.name_any());
    let result = finalizer(&api, FINALIZER, region, |event| async {
        match event {
            FinalizerEvent::Apply(r) => apply(r, ctx.clone()).await,
            FinalizerEvent::Cleanup(r) => cleanup(r, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    if result.is_ok() {
        ctx.reset_backoff(&key);
    }
    result
}

pub fn error_policy(region: Arc<StoreRegion>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(KIND, error.metric_label());
    let delay = ctx.backoff(&object_key(KIND, region.namespace(), &region.name_any()));
    tracing::warn!(region = %region.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

async fn apply(region: Arc<StoreRegion>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = region.namespace().ok_or(Error::MissingField(KIND, "metadata.namespace"))?;
    let name = region.name_any();
    let reference = region.object_ref(&());
    let api: Api<StoreRegion> = Api::namespaced(ctx.client.clone(), &namespace);
    let previous = region.status.clone().unwrap_or_default();
    let generation = region.metadata.generation;
    let now = ctx.now_text();

    if let Err(problems) = validate(&region) {
        let ready = NewCondition::new(READY, false, "InvalidSpec", problems.to_string());
        let status = StoreRegionStatus {
            observed_generation: generation,
            conditions: merge(&previous.conditions, &[ready], generation, &now),
            ..previous.clone()
        };
        if region.status.as_ref() != Some(&status) {
            ctx.event(&reference, true, "InvalidSpec", "Validate", problems.to_string()).await;
            apply_status(&api, &name, &status).await?;
        }
        return Ok(Action::await_change());
    }

    let pipelines: Api<RetailPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let pipeline = pipelines.get_opt(&region.spec.pipeline_ref.name).await?;
    let (target_topic, ready) = match &pipeline {
        None => (
            None,
            NewCondition::new(
                READY,
                false,
                "PipelineNotFound",
                format!("no RetailPipeline {:?} in namespace {namespace}", region.spec.pipeline_ref.name),
            ),
        ),
        Some(p) => match selects(p, &region) {
            Ok(true) => {
                let topic = topic_name(p, TopicRole::Stores);
                let message = format!("{} stores published to {topic}", region.spec.stores.len());
                (Some(topic), NewCondition::new(READY, true, "Published", message))
            }
            Ok(false) => (
                None,
                NewCondition::new(
                    READY,
                    false,
                    "NotSelected",
                    format!(
                        "the regionSelector of RetailPipeline {} does not match this region's labels",
                        p.name_any()
                    ),
                ),
            ),
            Err(e) => (None, NewCondition::new(READY, false, "PipelineInvalid", e.to_string())),
        },
    };
    let records = store_records(&region);
    let plan = plan_stores(target_topic.as_deref(), &records, &previous);
    if !plan.records.is_empty() {
        // Tombstones for a region leaving its pipeline go to the cluster of the pipeline
        // it named; without a pipeline there is no cluster to reach.
        if let Some(p) = &pipeline {
            let target = kafka_target(&ctx.client, p).await?;
            ctx.kafka.produce(&target, &plan.records).await?;
            ctx.event(
                &reference,
                false,
                "StoresPublished",
                "Publish",
                format!("{} stores published, {} tombstones", plan.upserts(), plan.tombstones()),
            )
            .await;
        }
    }
    let mut conditions = vec![ready];
    let mut replication = Replication {
        lag: previous.replication_lag,
        replicated: previous.replicated_records,
        lost: previous.replication_records_lost,
        last_checkpoint: previous.last_checkpoint_time.clone(),
    };
    let replicator_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut dropped: Vec<&str> = Vec::new();
    match (&region.spec.kafka, &pipeline, target_topic.is_some()) {
        (Some(regional), Some(p), true) => {
            let topics = replicated_topics(p);
            let others = other_regions(&ctx, &api, &region, p).await?;
            let plan = plan_replication(
                &name,
                &regional.bootstrap_servers,
                &p.spec.kafka.connection.bootstrap_servers,
                &topics,
                &others,
            );
            match plan {
                ReplicationPlan::Refuse { reason, message } => {
                    delete_replicator(&replicator_api, &region, &ctx, &message).await?;
                    if !previous.conditions.iter().any(|c| c.type_ == REPLICATION_READY && c.reason == reason) {
                        ctx.event(&reference, true, reason, "Replicate", message.clone()).await;
                    }
                    conditions.push(NewCondition::new(REPLICATION_READY, false, reason, message));
                }
                ReplicationPlan::Replicate => {
                    let source = connection_target(&ctx.client, &namespace, regional).await?;
                    let missing = create_regional_topics(&ctx, &source, p, &reference).await;
                    let desired =
                        replicator_deployment(&region, regional, p, &ctx.replicator_image, &ctx.settings.pods);
                    let (deployment, changed) = apply_if_changed(&replicator_api, &desired).await?;
                    if changed {
                        ctx.event(
                            &reference,
                            false,
                            "ReplicatorApplied",
                            "Replicate",
                            format!("applied Deployment {}", replicator_name(&region)),
                        )
                        .await;
                    }
                    let target = kafka_target(&ctx.client, p).await?;
                    let checkpoint_topic = checkpoint_topic_of(&replicator_id(&namespace, &name));
                    let checkpoints = match ctx.kafka.replication_checkpoints(&target, &checkpoint_topic).await {
                        Ok(found) => found,
                        Err(e) => {
                            tracing::warn!(region = %name, error = %e, "cannot read the replicator's checkpoints");
                            None
                        }
                    };
                    let status = checkpoints.as_ref().and_then(|c| c.status.as_ref());
                    if let Some(s) = status {
                        replication.lag = Some(s.lag_records);
                        replication.replicated = Some(i64::try_from(s.records_copied).unwrap_or(i64::MAX));
                        replication.lost = Some(i64::try_from(s.records_lost).unwrap_or(i64::MAX));
                    }
                    if let Some(at) = checkpoints.as_ref().and_then(|c| c.last_time()) {
                        replication.last_checkpoint = Some(at.to_string());
                    }
                    let ready = deployment.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
                    conditions.push(match missing {
                        Some(message) => NewCondition::new(REPLICATION_READY, false, "TopicMissing", message),
                        None => replication_condition(ready, status),
                    });
                }
            }
        }
        (Some(_), _, _) => {
            delete_replicator(&replicator_api, &region, &ctx, "the region feeds no pipeline").await?;
            conditions.push(NewCondition::new(
                REPLICATION_READY,
                false,
                "NoPipeline",
                "the region feeds no pipeline: nothing to replicate to",
            ));
        }
        // The region had a cluster of its own and no longer has: its replicator goes, and
        // so does the condition about it.
        (None, _, _) if previous.conditions.iter().any(|c| c.type_ == REPLICATION_READY) => {
            delete_replicator(&replicator_api, &region, &ctx, "the region has no Kafka cluster of its own any more")
                .await?;
            replication = Replication { lag: None, replicated: None, lost: None, last_checkpoint: None };
            dropped.push(REPLICATION_READY);
        }
        (None, _, _) => {}
    }
    let kept: Vec<_> = previous.conditions.iter().filter(|c| !dropped.contains(&c.type_.as_str())).cloned().collect();
    let status = StoreRegionStatus {
        observed_generation: generation,
        conditions: merge(&kept, &conditions, generation, &now),
        stores: i32::try_from(region.spec.stores.len()).unwrap_or(i32::MAX),
        published_topic: plan.published_topic.clone(),
        published_stores: plan.published_stores.clone(),
        published_digest: plan.published_digest.clone(),
        replication_lag: replication.lag,
        replicated_records: replication.replicated,
        replication_records_lost: replication.lost,
        last_checkpoint_time: replication.last_checkpoint,
    };
    if region.status.as_ref() != Some(&status) {
        apply_status(&api, &name, &status).await?;
    }
    Ok(if target_topic.is_none() || region.spec.kafka.is_some() {
        // Looked at again: a missing pipeline may appear; replication lag moves.
        Action::requeue(RECHECK)
    } else {
        Action::await_change()
    })
}

/// The other regions of the namespace with a cluster of their own, and what they copy.
async fn other_regions(
    ctx: &Context,
    api: &Api<StoreRegion>,
    region: &StoreRegion,
    pipeline: &RetailPipeline,
) -> Result<Vec<OtherRegion>> {
    let mut others = Vec::new();
    let pipelines: Api<RetailPipeline> = Api::namespaced(ctx.client.clone(), &region.namespace().unwrap_or_default());
    for other in api.list(&ListParams::default()).await?.items {
        let Some(kafka) = &other.spec.kafka else { continue };
        if other.name_any() == region.name_any() {
            continue;
        }
        let topics = if other.spec.pipeline_ref.name == pipeline.name_any() {
            replicated_topics(pipeline)
        } else {
            match pipelines.get_opt(&other.spec.pipeline_ref.name).await? {
                Some(p) => replicated_topics(&p),
                None => continue,
            }
        };
        others.push(OtherRegion { name: other.name_any(), bootstrap_servers: kafka.bootstrap_servers.clone(), topics });
    }
    Ok(others)
}

/// Creates the pipeline's region-produced topics the regional cluster lacks; the message
/// of a `TopicMissing` condition when one cannot be created. An unreachable regional
/// cluster is left to the replicator to report.
async fn create_regional_topics(
    ctx: &Context,
    source: &crate::kafka_admin::KafkaTarget,
    pipeline: &RetailPipeline,
    reference: &k8s_openapi::api::core::v1::ObjectReference,
) -> Option<String> {
    let desired: Vec<_> =
        desired_topics(pipeline).ok()?.into_iter().filter(|t| REGION_PRODUCED_ROLES.contains(&t.role)).collect();
    let names: Vec<String> = desired.iter().map(|t| t.name.clone()).collect();
    let observed = match ctx.kafka.describe_topics(source, &names).await {
        Ok(observed) => observed,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the regional cluster's topics");
            return None;
        }
    };
    let mut failures = Vec::new();
    let mut created = Vec::new();
    for action in plan_regional_topics(&desired, &observed) {
        let crate::plan::topics::TopicAction::Create { name, .. } = &action else { continue };
        match ctx.kafka.apply(source, &action).await {
            Ok(()) => created.push(name.clone()),
            Err(e) => failures.push(format!("{name} ({e})")),
        }
    }
    if !created.is_empty() {
        let note = format!("created {} in the regional cluster", created.join(", "));
        ctx.event(reference, false, "RegionalTopicsCreated", "Replicate", note).await;
    }
    (!failures.is_empty()).then(|| format!("missing in the regional cluster and not created: {}", failures.join(", ")))
}

/// Deletes the region's replicator if there is one, with an Event saying `why`.
async fn delete_replicator(api: &Api<Deployment>, region: &StoreRegion, ctx: &Context, why: &str) -> Result<()> {
    let name = replicator_name(region);
    if api.get_opt(&name).await?.is_some() {
        api.delete(&name, &Default::default()).await?;
        ctx.event(&region.object_ref(&()), false, "ReplicatorDeleted", "Replicate", why.to_string()).await;
    }
    Ok(())
}

async fn cleanup(region: Arc<StoreRegion>, ctx: Arc<Context>) -> Result<Action> {
    let status = region.status.clone().unwrap_or_default();
    let records = plan_withdrawal(&status);
    if records.is_empty() {
        return Ok(Action::await_change());
    }
    let namespace = region.namespace().ok_or(Error::MissingField(KIND, "metadata.namespace"))?;
    let pipelines: Api<RetailPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    match pipelines.get_opt(&region.spec.pipeline_ref.name).await? {
        Some(p) => {
            let target = kafka_target(&ctx.client, &p).await?;
            ctx.kafka.produce(&target, &records).await?;
            ctx.event(
                &region.object_ref(&()),
                false,
                "StoresWithdrawn",
                "Delete",
                format!("{} tombstones", records.len()),
            )
            .await;
        }
        None => tracing::warn!(region = %region.name_any(), "pipeline gone: stores not withdrawn"),
    }
    Ok(Action::await_change())
}

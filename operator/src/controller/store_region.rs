//! The StoreRegion controller: validates the region and publishes its stores to the
//! selected pipeline's compacted `stores` topic (tombstones for removed stores); a region
//! with a cluster of its own gets a replicator (region_replication.rs).

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use stockpulse_processor::config::TopicRole;

use k8s_openapi::api::apps::v1::Deployment;

use super::kafka_target::kafka_target;
use super::{Context, apply_status, object_key, region_replication};
use crate::build::replicator::replicator_name;
use crate::build::store_records::store_records;
use crate::build::topics::topic_name;
use crate::build::{SpecProblem, SpecProblems};
use crate::crd::{RetailPipeline, StoreRegion, StoreRegionStatus};
use crate::error::{Error, Result};
use crate::plan::pipeline::selects;
use crate::plan::stores::{plan_stores, plan_withdrawal};
use crate::status::conditions::{NewCondition, READY, REPLICATION_READY, merge};

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
        // Being deleted: its topics go once its writers are gone, this region's replicator
        // among them.
        Some(p) if p.metadata.deletion_timestamp.is_some() => (
            None,
            NewCondition::new(
                READY,
                false,
                "PipelineDeleting",
                format!("RetailPipeline {} is being deleted", p.name_any()),
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
    let mut replication = region_replication::Replication {
        lag: previous.replication_lag,
        replicated: previous.replicated_records,
        lost: previous.replication_records_lost,
        last_checkpoint: previous.last_checkpoint_time.clone(),
    };
    let replicator_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let mut dropped: Vec<&str> = Vec::new();
    match (&region.spec.kafka, &pipeline, target_topic.is_some()) {
        (Some(regional), Some(p), true) => {
            conditions.push(region_replication::reconcile(&ctx, &region, regional, p, &mut replication).await?);
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
            replication =
                region_replication::Replication { lag: None, replicated: None, lost: None, last_checkpoint: None };
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

/// Deletes the region's replicator if there is one, with an Event saying `why`.
pub(super) async fn delete_replicator(
    api: &Api<Deployment>,
    region: &StoreRegion,
    ctx: &Context,
    why: &str,
) -> Result<()> {
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

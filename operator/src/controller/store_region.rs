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
use crate::kafka_admin::KafkaTarget;
use crate::plan::pipeline::selects;
use crate::plan::region::{ReplicationStep, Selection, plan_region};
use crate::plan::stores::{StorePlan, plan_withdrawal};
use crate::status::conditions::{NewCondition, READY, merge};
use crate::status::region::{ReplicationFigures, ReplicationOutcome, region_status};

pub const KIND: &str = "StoreRegion";
pub use crate::plan::region::RECHECK;

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

/// observe -> plan -> apply -> status.
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

    let observed = observe(&ctx, &region, &namespace).await?;
    let records = store_records(&region);
    let plan = plan_region(region.spec.kafka.is_some(), &records, &observed.selection, &previous);
    publish(&ctx, &region, &observed, &plan.stores).await?;
    let replication = replicate(&ctx, &region, observed.pipeline.as_ref(), &plan.replication).await?;

    let status = region_status(&previous, generation, region.spec.stores.len(), &plan, replication, &now);
    if region.status.as_ref() != Some(&status) {
        apply_status(&api, &name, &status).await?;
    }
    Ok(plan.requeue.map_or_else(Action::await_change, Action::requeue))
}

/// What a region's reconcile reads: its pipeline, the pipeline's cluster (when the region
/// feeds it) and the identity of its `stores` topic there.
struct Observed {
    pipeline: Option<RetailPipeline>,
    target: Option<KafkaTarget>,
    selection: Selection,
}

async fn observe(ctx: &Context, region: &StoreRegion, namespace: &str) -> Result<Observed> {
    let wanted = &region.spec.pipeline_ref.name;
    let pipeline = ctx.get::<RetailPipeline>(namespace, wanted).await?;
    let mut target = None;
    let selection = match &pipeline {
        None => Selection::PipelineNotFound { pipeline: wanted.clone(), namespace: namespace.to_string() },
        Some(p) if p.metadata.deletion_timestamp.is_some() => Selection::PipelineDeleting { pipeline: p.name_any() },
        Some(p) => match selects(p, region) {
            Ok(false) => Selection::NotSelected { pipeline: p.name_any() },
            Err(e) => Selection::PipelineInvalid { message: e.to_string() },
            Ok(true) => {
                let topic = topic_name(p, TopicRole::Stores);
                let cluster = kafka_target(&ctx.client, p).await?;
                let identity = ctx.kafka.topic_identity(&cluster, &topic).await?;
                target = Some(cluster);
                match identity {
                    Some(identity) => Selection::Selected { topic, identity },
                    None => Selection::TopicMissing { topic },
                }
            }
        },
    };
    Ok(Observed { pipeline, target, selection })
}

/// Produces the planned store records (and tombstones), to the cluster of the pipeline the
/// region names; without a pipeline there is no cluster to reach.
async fn publish(ctx: &Context, region: &StoreRegion, observed: &Observed, plan: &StorePlan) -> Result<()> {
    let (false, Some(pipeline)) = (plan.records.is_empty(), &observed.pipeline) else { return Ok(()) };
    let target = match &observed.target {
        Some(target) => target.clone(),
        None => kafka_target(&ctx.client, pipeline).await?,
    };
    ctx.kafka.produce(&target, &plan.records).await?;
    let note = format!("{} stores published, {} tombstones", plan.upserts(), plan.tombstones());
    ctx.event(&region.object_ref(&()), false, "StoresPublished", "Publish", note).await;
    Ok(())
}

/// Applies the planned replication step.
async fn replicate(
    ctx: &Context,
    region: &StoreRegion,
    pipeline: Option<&RetailPipeline>,
    step: &ReplicationStep,
) -> Result<ReplicationOutcome> {
    let namespace = region.namespace().unwrap_or_default();
    let replicators: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    Ok(match (step, &region.spec.kafka, pipeline) {
        (ReplicationStep::Replicate, Some(regional), Some(p)) => {
            let (condition, figures) = region_replication::reconcile(ctx, region, regional, p).await?;
            ReplicationOutcome::Reported(condition, figures)
        }
        (ReplicationStep::Remove { why, condition }, _, _) => {
            delete_replicator(&replicators, region, ctx, why).await?;
            match condition {
                Some(c) => ReplicationOutcome::Reported(
                    c.clone(),
                    ReplicationFigures::of(&region.status.clone().unwrap_or_default()),
                ),
                None => ReplicationOutcome::Gone,
            }
        }
        _ => ReplicationOutcome::Untouched,
    })
}

/// Deletes the region's replicator if there is one, with an Event saying `why`. The cache
/// may still show a replicator just deleted: a delete that finds nothing is no error.
pub(super) async fn delete_replicator(
    api: &Api<Deployment>,
    region: &StoreRegion,
    ctx: &Context,
    why: &str,
) -> Result<()> {
    let name = replicator_name(region);
    let namespace = region.namespace().unwrap_or_default();
    if ctx.get::<Deployment>(&namespace, &name).await?.is_none() {
        return Ok(());
    }
    match api.delete(&name, &Default::default()).await {
        Ok(_) => {
            ctx.event(&region.object_ref(&()), false, "ReplicatorDeleted", "Replicate", why.to_string()).await;
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn cleanup(region: Arc<StoreRegion>, ctx: Arc<Context>) -> Result<Action> {
    let status = region.status.clone().unwrap_or_default();
    let records = plan_withdrawal(&status);
    if records.is_empty() {
        return Ok(Action::await_change());
    }
    let namespace = region.namespace().ok_or(Error::MissingField(KIND, "metadata.namespace"))?;
    match ctx.get::<RetailPipeline>(&namespace, &region.spec.pipeline_ref.name).await? {
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

//! The StoreRegion controller: validates the region and publishes its stores to the
//! selected pipeline's compacted `stores` topic (tombstones for removed stores).

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::{Resource, ResourceExt};
use stockpulse_processor::config::TopicRole;

use super::kafka_target::kafka_target;
use super::{Context, apply_status, object_key};
use crate::build::store_records::store_records;
use crate::build::topics::topic_name;
use crate::build::{SpecProblem, SpecProblems};
use crate::crd::{RetailPipeline, StoreRegion, StoreRegionStatus};
use crate::error::{Error, Result};
use crate::plan::pipeline::selects;
use crate::plan::stores::{plan_stores, plan_withdrawal};
use crate::status::conditions::{NewCondition, READY, REPLICATION_READY, merge};

pub const KIND: &str = "StoreRegion";
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
    if region.spec.kafka.is_some() {
        conditions.push(NewCondition::new(
            REPLICATION_READY,
            false,
            "ReplicatorNotAvailable",
            "this operator release does not run a replicator from a regional cluster yet; produce to the pipeline's cluster",
        ));
    }
    let status = StoreRegionStatus {
        observed_generation: generation,
        conditions: merge(&previous.conditions, &conditions, generation, &now),
        stores: i32::try_from(region.spec.stores.len()).unwrap_or(i32::MAX),
        published_topic: plan.published_topic.clone(),
        published_stores: plan.published_stores.clone(),
        published_digest: plan.published_digest.clone(),
        replication_lag: previous.replication_lag,
        last_checkpoint_time: previous.last_checkpoint_time.clone(),
    };
    if region.status.as_ref() != Some(&status) {
        apply_status(&api, &name, &status).await?;
    }
    Ok(if target_topic.is_some() {
        Action::await_change()
    } else {
        Action::requeue(std::time::Duration::from_secs(60))
    })
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

//! The StoreRegion controller's replication part, for a region with a cluster of its own:
//! refuse it (the pipeline's own cluster, a cluster and topics another region copies) or
//! create the missing regional topics and apply the replicator Deployment; then the
//! `ReplicationReady` condition from the pod's readiness and the status the replicator
//! committed to its checkpoint topic.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::Api;
use kube::{Resource, ResourceExt};

use super::Context;
use super::apply::apply_if_changed;
use super::kafka_target::{connection_target, kafka_target};
use super::store_region::delete_replicator;
use crate::build::replicator::{REGION_PRODUCED_ROLES, replicated_topics, replicator_deployment, replicator_name};
use crate::build::topics::desired_topics;
use crate::crd::common::KafkaConnection;
use crate::crd::{RetailPipeline, StoreRegion};
use crate::error::{Error, Result};
use crate::kafka_admin::KafkaTarget;
use crate::plan::replication::{OtherRegion, ReplicationPlan, plan_regional_topics, plan_replication};
use crate::plan::topics::TopicAction;
use crate::replicator::checkpoint::checkpoint_topic_of;
use crate::replicator::replicator_id;
use crate::status::conditions::{NewCondition, REPLICATION_READY};
use crate::status::region::ReplicationFigures;
use crate::status::replication::replication_condition;

/// Plans and applies the replication of `region` (which has the cluster `regional`) into
/// `pipeline`'s cluster: the `ReplicationReady` condition, and the figures the replicator
/// last committed to its checkpoint topic (those of the status where none can be read).
pub async fn reconcile(
    ctx: &Context,
    region: &StoreRegion,
    regional: &KafkaConnection,
    p: &RetailPipeline,
) -> Result<(NewCondition, ReplicationFigures)> {
    let name = region.name_any();
    let namespace = region.namespace().ok_or(Error::MissingField("StoreRegion", "metadata.namespace"))?;
    let reference = region.object_ref(&());
    let replicator_api: Api<Deployment> = Api::namespaced(ctx.client.clone(), &namespace);
    let previous = region.status.clone().unwrap_or_default();
    let mut replication = ReplicationFigures::of(&previous);
    let topics = replicated_topics(p);
    let others = other_regions(ctx, region, p).await?;
    let plan = plan_replication(
        &name,
        &regional.bootstrap_servers,
        &p.spec.kafka.connection.bootstrap_servers,
        &topics,
        &others,
    );
    match plan {
        ReplicationPlan::Refuse { reason, message } => {
            delete_replicator(&replicator_api, region, ctx, &message).await?;
            if !previous.conditions.iter().any(|c| c.type_ == REPLICATION_READY && c.reason == reason) {
                ctx.event(&reference, true, reason, "Replicate", message.clone()).await;
            }
            Ok((NewCondition::new(REPLICATION_READY, false, reason, message), replication))
        }
        ReplicationPlan::Replicate => {
            let source = connection_target(&ctx.client, &namespace, regional).await?;
            let missing = create_regional_topics(ctx, &source, p, &reference).await;
            let desired = replicator_deployment(region, regional, p, &ctx.replicator_image, &ctx.settings.pods);
            let (deployment, changed) = apply_if_changed(ctx, &namespace, &desired).await?;
            if changed {
                ctx.event(
                    &reference,
                    false,
                    "ReplicatorApplied",
                    "Replicate",
                    format!("applied Deployment {}", replicator_name(region)),
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
            let condition = match missing {
                Some(message) => NewCondition::new(REPLICATION_READY, false, "TopicMissing", message),
                None => replication_condition(ready, status),
            };
            Ok((condition, replication))
        }
    }
}

/// The other regions of the namespace with a cluster of their own, and what they copy.
async fn other_regions(ctx: &Context, region: &StoreRegion, pipeline: &RetailPipeline) -> Result<Vec<OtherRegion>> {
    let mut others = Vec::new();
    let namespace = region.namespace().unwrap_or_default();
    for other in ctx.list::<StoreRegion>(&namespace).await? {
        let Some(kafka) = &other.spec.kafka else { continue };
        if other.name_any() == region.name_any() {
            continue;
        }
        let topics = if other.spec.pipeline_ref.name == pipeline.name_any() {
            replicated_topics(pipeline)
        } else {
            match ctx.get::<RetailPipeline>(&namespace, &other.spec.pipeline_ref.name).await? {
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
    source: &KafkaTarget,
    pipeline: &RetailPipeline,
    reference: &ObjectReference,
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
        let TopicAction::Create { name, .. } = &action else { continue };
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

//! A StoreRegion's status from its plan and what its replication reported.

use crate::crd::StoreRegionStatus;
use crate::plan::region::RegionPlan;
use crate::status::conditions::{NewCondition, REPLICATION_READY, merge};

/// What is known of a region's replication (the status fields).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicationFigures {
    pub lag: Option<i64>,
    pub replicated: Option<i64>,
    pub lost: Option<i64>,
    pub last_checkpoint: Option<String>,
}

impl ReplicationFigures {
    /// The figures a status carries.
    pub fn of(status: &StoreRegionStatus) -> Self {
        ReplicationFigures {
            lag: status.replication_lag,
            replicated: status.replicated_records,
            lost: status.replication_records_lost,
            last_checkpoint: status.last_checkpoint_time.clone(),
        }
    }
}

/// What became of the replication in this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationOutcome {
    /// Nothing about replication: the status keeps what it had.
    Untouched,
    /// `ReplicationReady` is this, with these figures.
    Reported(NewCondition, ReplicationFigures),
    /// The region replicates no more: the condition and the figures go.
    Gone,
}

/// The status after a reconcile of a region with `stores` stores, at `generation`.
pub fn region_status(
    previous: &StoreRegionStatus,
    generation: Option<i64>,
    stores: usize,
    plan: &RegionPlan,
    replication: ReplicationOutcome,
    now: &str,
) -> StoreRegionStatus {
    let mut conditions = vec![plan.ready.clone()];
    let mut kept = previous.conditions.clone();
    let figures = match replication {
        ReplicationOutcome::Untouched => ReplicationFigures::of(previous),
        ReplicationOutcome::Reported(condition, figures) => {
            conditions.push(condition);
            figures
        }
        ReplicationOutcome::Gone => {
            kept.retain(|c| c.type_ != REPLICATION_READY);
            ReplicationFigures::default()
        }
    };
    let published = &plan.stores;
    StoreRegionStatus {
        observed_generation: generation,
        conditions: merge(&kept, &conditions, generation, now),
        stores: i32::try_from(stores).unwrap_or(i32::MAX),
        published_topic: published.published_topic.clone(),
        published_stores: published.published_stores.clone(),
        published_digest: published.published_digest.clone(),
        published_cluster_id: published.published_identity.cluster_id.clone(),
        published_topic_id: published.published_identity.topic_id.clone(),
        replication_lag: figures.lag,
        replicated_records: figures.replicated,
        replication_records_lost: figures.lost,
        last_checkpoint_time: figures.last_checkpoint,
    }
}

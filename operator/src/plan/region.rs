//! What a StoreRegion's reconcile does, from what was observed of its pipeline and topic:
//! the `Ready` condition, the stores to publish or withdraw, what becomes of its
//! replicator, and when to look again. Pure: the controller observes, this plans, the
//! controller applies and writes the status.

use std::time::Duration;

use crate::build::store_records::StoreRecord;
use crate::crd::StoreRegionStatus;
use crate::kafka_admin::TopicIdentity;
use crate::plan::stores::{StorePlan, plan_stores};
use crate::status::conditions::{NewCondition, READY, REPLICATION_READY};

/// How often a region is looked at again when something outside its spec can change what it
/// should do: a pipeline that may appear, a `stores` topic created again, replication.
pub const RECHECK: Duration = Duration::from_secs(60);

/// What the region's pipeline and its `stores` topic were found to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    PipelineNotFound {
        pipeline: String,
        namespace: String,
    },
    /// Being deleted: its topics go once its writers, this region's replicator among them,
    /// are gone.
    PipelineDeleting {
        pipeline: String,
    },
    NotSelected {
        pipeline: String,
    },
    PipelineInvalid {
        message: String,
    },
    /// Selected, but the pipeline's `stores` topic does not exist (yet).
    TopicMissing {
        topic: String,
    },
    Selected {
        topic: String,
        identity: TopicIdentity,
    },
}

impl Selection {
    /// Whether the region feeds its pipeline (its replicator copies into it).
    pub fn feeds_pipeline(&self) -> bool {
        matches!(self, Selection::Selected { .. } | Selection::TopicMissing { .. })
    }
}

/// What becomes of the region's replicator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicationStep {
    /// The region has no cluster of its own, and had none: nothing to do.
    Nothing,
    /// Plan and apply the replicator into the pipeline (`region_replication`).
    Replicate,
    /// Delete the replicator, saying `why`; `condition` is the new `ReplicationReady`, or
    /// with `None` that condition and the replication figures leave the status.
    Remove { why: &'static str, condition: Option<NewCondition> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegionPlan {
    pub ready: NewCondition,
    pub stores: StorePlan,
    pub replication: ReplicationStep,
    /// `None`: only a change brings the region back.
    pub requeue: Option<Duration>,
}

/// Plans a valid region: `has_cluster` says whether it has a Kafka cluster of its own,
/// `records` are its stores, `previous` its status before this reconcile.
pub fn plan_region(
    has_cluster: bool,
    records: &[StoreRecord],
    selection: &Selection,
    previous: &StoreRegionStatus,
) -> RegionPlan {
    let ready = match selection {
        Selection::PipelineNotFound { pipeline, namespace } => NewCondition::new(
            READY,
            false,
            "PipelineNotFound",
            format!("no RetailPipeline {pipeline:?} in namespace {namespace}"),
        ),
        Selection::PipelineDeleting { pipeline } => {
            NewCondition::new(READY, false, "PipelineDeleting", format!("RetailPipeline {pipeline} is being deleted"))
        }
        Selection::NotSelected { pipeline } => NewCondition::new(
            READY,
            false,
            "NotSelected",
            format!("the regionSelector of RetailPipeline {pipeline} does not match this region's labels"),
        ),
        Selection::PipelineInvalid { message } => NewCondition::new(READY, false, "PipelineInvalid", message.clone()),
        Selection::TopicMissing { topic } => NewCondition::new(
            READY,
            false,
            "TopicMissing",
            format!(
                "topic {topic} does not exist in the pipeline's cluster; the stores are published once the pipeline creates it"
            ),
        ),
        Selection::Selected { topic, .. } => {
            NewCondition::new(READY, true, "Published", format!("{} stores published to {topic}", records.len()))
        }
    };
    let stores = match selection {
        Selection::Selected { topic, identity } => plan_stores(Some((topic, identity)), records, previous),
        Selection::TopicMissing { .. } => StorePlan::hold(previous),
        _ => plan_stores(None, records, previous),
    };
    let had_replication = previous.conditions.iter().any(|c| c.type_ == REPLICATION_READY);
    let replication = match (has_cluster, selection.feeds_pipeline()) {
        (true, true) => ReplicationStep::Replicate,
        (true, false) => ReplicationStep::Remove {
            why: "the region feeds no pipeline",
            condition: Some(NewCondition::new(
                REPLICATION_READY,
                false,
                "NoPipeline",
                "the region feeds no pipeline: nothing to replicate to",
            )),
        },
        // The region had a cluster of its own and no longer has: its replicator goes, and
        // so does the condition about it.
        (false, _) if had_replication => {
            ReplicationStep::Remove { why: "the region has no Kafka cluster of its own any more", condition: None }
        }
        (false, _) => ReplicationStep::Nothing,
    };
    // Looked at again while something outside the spec can change the outcome: a pipeline
    // that may appear, its `stores` topic created again (its id), replication figures.
    RegionPlan { ready, stores, replication, requeue: Some(RECHECK) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: &str) -> StoreRecord {
        crate::plan::stores::tests::record(id, &format!("Store {id}"))
    }

    fn selected(topic: &str) -> Selection {
        Selection::Selected { topic: topic.to_string(), identity: TopicIdentity::default() }
    }

    fn replicating() -> StoreRegionStatus {
        StoreRegionStatus {
            conditions: vec![crate::crd::common::Condition {
                type_: REPLICATION_READY.to_string(),
                status: "True".to_string(),
                reason: "Replicating".to_string(),
                message: String::new(),
                last_transition_time: "2026-11-01T00:00:00Z".to_string(),
                observed_generation: None,
            }],
            ..StoreRegionStatus::default()
        }
    }

    #[test]
    fn ready_reasons_and_replication_steps() {
        let records = [store("a")];
        let none = StoreRegionStatus::default();
        let missing = Selection::PipelineNotFound { pipeline: "shop".into(), namespace: "acme".into() };
        // (selection, has a cluster, status before, Ready reason, replication step)
        let cases: Vec<(Selection, bool, StoreRegionStatus, &str, &str)> = vec![
            (selected("shop.stores"), false, none.clone(), "Published", "nothing"),
            (selected("shop.stores"), true, none.clone(), "Published", "replicate"),
            (Selection::TopicMissing { topic: "shop.stores".into() }, true, none.clone(), "TopicMissing", "replicate"),
            (missing.clone(), true, none.clone(), "PipelineNotFound", "remove NoPipeline"),
            (missing, false, replicating(), "PipelineNotFound", "remove, condition dropped"),
            (
                Selection::PipelineDeleting { pipeline: "shop".into() },
                true,
                none.clone(),
                "PipelineDeleting",
                "remove NoPipeline",
            ),
            (Selection::NotSelected { pipeline: "shop".into() }, false, none.clone(), "NotSelected", "nothing"),
            (Selection::PipelineInvalid { message: "bad".into() }, false, none, "PipelineInvalid", "nothing"),
        ];
        for (selection, has_cluster, previous, reason, step) in cases {
            let plan = plan_region(has_cluster, &records, &selection, &previous);
            assert_eq!(plan.ready.reason, reason, "{selection:?}");
            assert_eq!(plan.ready.is_true(), reason == "Published", "{selection:?}");
            let got = match &plan.replication {
                ReplicationStep::Nothing => "nothing".to_string(),
                ReplicationStep::Replicate => "replicate".to_string(),
                ReplicationStep::Remove { condition: Some(c), .. } => format!("remove {}", c.reason),
                ReplicationStep::Remove { condition: None, .. } => "remove, condition dropped".to_string(),
            };
            assert_eq!(got, step, "{selection:?}");
            assert_eq!(plan.requeue, Some(RECHECK));
        }
    }

    #[test]
    fn a_missing_topic_holds_the_publication_instead_of_withdrawing_it() {
        let previous = StoreRegionStatus {
            published_topic: Some("shop.stores".into()),
            published_stores: vec!["a".into()],
            published_digest: Some("d".into()),
            published_topic_id: Some("id-1".into()),
            ..StoreRegionStatus::default()
        };
        let plan =
            plan_region(false, &[store("a")], &Selection::TopicMissing { topic: "shop.stores".into() }, &previous);
        assert!(plan.stores.records.is_empty());
        assert_eq!(plan.stores.published_stores, vec!["a"]);
        assert_eq!(plan.stores.published_identity.topic_id.as_deref(), Some("id-1"));
        // Not selected any more: withdrawn.
        let plan = plan_region(false, &[store("a")], &Selection::NotSelected { pipeline: "shop".into() }, &previous);
        assert_eq!(plan.stores.tombstones(), 1);
        assert_eq!(plan.stores.published_topic, None);
    }
}

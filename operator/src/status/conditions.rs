//! Conditions in the Kubernetes convention, merged so that `lastTransitionTime` changes only
//! when `status` does: reconciling an unchanged resource yields an identical status.

use crate::crd::Condition;

pub const READY: &str = "Ready";
pub const TOPICS_READY: &str = "TopicsReady";
pub const PROCESSOR_READY: &str = "ProcessorReady";
pub const REPLICATION_READY: &str = "ReplicationReady";

/// A condition to set: type, status (`True`/`False`/`Unknown`), reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCondition {
    pub type_: &'static str,
    pub status: &'static str,
    pub reason: String,
    pub message: String,
}

impl NewCondition {
    pub fn new(type_: &'static str, ok: bool, reason: impl Into<String>, message: impl Into<String>) -> Self {
        NewCondition {
            type_,
            status: if ok { "True" } else { "False" },
            reason: reason.into(),
            message: message.into(),
        }
    }
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Merges `new` into `existing`: other types are kept, a type whose status is unchanged
/// keeps its `lastTransitionTime`. The result is sorted by type.
pub fn merge(existing: &[Condition], new: &[NewCondition], generation: Option<i64>, now: &str) -> Vec<Condition> {
    let mut out: Vec<Condition> =
        existing.iter().filter(|c| !new.iter().any(|n| n.type_ == c.type_)).cloned().collect();
    for n in new {
        let previous = existing.iter().find(|c| c.type_ == n.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == n.status => p.last_transition_time.clone(),
            _ => now.to_string(),
        };
        out.push(Condition {
            type_: n.type_.to_string(),
            status: n.status.to_string(),
            reason: n.reason.clone(),
            message: n.message.clone(),
            last_transition_time,
            observed_generation: generation,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// `Ready` from the other conditions: true when all are; else the first false one's reason.
pub fn ready_from(parts: &[NewCondition]) -> NewCondition {
    match parts.iter().find(|c| !c.is_true()) {
        None => NewCondition::new(READY, true, "Reconciled", "all topics and the processor are ready"),
        Some(c) => NewCondition::new(READY, false, c.reason.clone(), format!("{}: {}", c.type_, c.message)),
    }
}

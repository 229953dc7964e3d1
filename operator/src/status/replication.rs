//! A region's `ReplicationReady` condition (pure), from its replicator Deployment's ready
//! replicas (the pod's readiness probe is the replicator's `/readyz`) and the status the
//! replicator last committed to its checkpoint topic.

use crate::replicator::checkpoint::ReplicationStatus;
use crate::status::conditions::{NewCondition, REPLICATION_READY};

pub fn replication_condition(ready_replicas: i32, status: Option<&ReplicationStatus>) -> NewCondition {
    let not_ready = |reason: &str, message: String| NewCondition::new(REPLICATION_READY, false, reason, message);
    match status {
        // The replicator's own word on why it does not copy (the source unreachable, ...).
        Some(s) if s.reason != "Replicating" && !s.reason.is_empty() => {
            not_ready(&s.reason, format!("{} (reported by the replicator at {})", s.message, s.time))
        }
        _ if ready_replicas < 1 => not_ready(
            "ReplicatorNotReady",
            "the replicator pod is not ready (its /readyz fails: starting, or a cluster unreachable)".to_string(),
        ),
        None => not_ready("ReplicatorStarting", "no checkpoint committed yet".to_string()),
        Some(s) => {
            let progress =
                format!("{} records replicated, {} behind ({:.0} s)", s.records_copied, s.lag_records, s.lag_seconds);
            if s.records_lost > 0 {
                NewCondition::new(
                    REPLICATION_READY,
                    true,
                    "RecordsLost",
                    format!(
                        "{progress}; {} records were deleted by the regional cluster's retention before they \
                         were copied",
                        s.records_lost
                    ),
                )
            } else {
                NewCondition::new(REPLICATION_READY, true, "Replicating", progress)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(reason: &str, lost: u64) -> ReplicationStatus {
        ReplicationStatus {
            reason: reason.into(),
            message: "eu:9092: all brokers down".into(),
            records_copied: 120,
            records_lost: lost,
            lag_records: 7,
            lag_seconds: 2.4,
            time: "2026-12-02T10:00:00Z".into(),
        }
    }

    #[test]
    fn the_condition_says_what_the_replicator_says() {
        let copying = replication_condition(1, Some(&status("Replicating", 0)));
        assert_eq!(
            (copying.status, copying.reason.as_str(), copying.message.as_str()),
            ("True", "Replicating", "120 records replicated, 7 behind (2 s)")
        );
        let down = replication_condition(0, Some(&status("SourceUnreachable", 0)));
        assert_eq!(
            (down.status, down.reason.as_str(), down.message.as_str()),
            (
                "False",
                "SourceUnreachable",
                "eu:9092: all brokers down (reported by the replicator at 2026-12-02T10:00:00Z)"
            )
        );
        let lost = replication_condition(1, Some(&status("Replicating", 30)));
        assert_eq!((lost.status, lost.reason.as_str()), ("True", "RecordsLost"));
        assert!(
            lost.message
                .ends_with("; 30 records were deleted by the regional cluster's retention before they were copied")
        );
        let stale = replication_condition(0, Some(&status("Replicating", 0)));
        assert_eq!((stale.status, stale.reason.as_str()), ("False", "ReplicatorNotReady"));
        let new = replication_condition(1, None);
        assert_eq!((new.status, new.reason.as_str()), ("False", "ReplicatorStarting"));
    }
}

//! How many processor replicas: the spec's minimum, raised by an active schedule's floor,
//! never above maxReplicas nor above the partitions of the input topics.

use chrono::{DateTime, Utc};

use crate::build::{SpecProblem, SpecProblems};
use crate::crd::retail_pipeline::ProcessorSpec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaDecision {
    pub desired: i32,
    /// Why: `MinReplicas`, `Schedule <name>`, `CappedAtMaxReplicas`, `CappedAtPartitions`.
    pub reason: String,
}

/// Decides the replicas at `now` for input topics of `input_partitions` partitions.
pub fn plan_replicas(
    spec: &ProcessorSpec,
    input_partitions: i32,
    now: DateTime<Utc>,
) -> Result<ReplicaDecision, SpecProblems> {
    let mut problems = Vec::new();
    let mut desired = spec.min_replicas;
    let mut reason = "MinReplicas".to_string();
    for (i, schedule) in spec.schedules.iter().enumerate() {
        let parse = |field: &str, text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| SpecProblem {
                    field: format!("spec.processor.schedules[{i}].{field}"),
                    message: format!("{text:?} is not an RFC 3339 time: {e}"),
                })
        };
        match (parse("start", &schedule.start), parse("end", &schedule.end)) {
            (Ok(start), Ok(end)) => {
                if start <= now && now < end && schedule.min_replicas > desired {
                    desired = schedule.min_replicas;
                    reason = format!("Schedule {}", schedule.name);
                }
            }
            (a, b) => problems.extend([a.err(), b.err()].into_iter().flatten()),
        }
    }
    if !problems.is_empty() {
        return Err(SpecProblems(problems));
    }
    if desired > spec.max_replicas {
        desired = spec.max_replicas;
        reason = "CappedAtMaxReplicas".to_string();
    }
    if desired > input_partitions {
        desired = input_partitions;
        reason = "CappedAtPartitions".to_string();
    }
    Ok(ReplicaDecision { desired, reason })
}

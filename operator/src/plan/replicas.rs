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
            DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).map_err(|e| SpecProblem {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::retail_pipeline::ScheduleSpec;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).unwrap()
    }

    #[test]
    fn replica_decisions() {
        let spec = |min, max| ProcessorSpec {
            min_replicas: min,
            max_replicas: max,
            schedules: vec![ScheduleSpec {
                name: "black-friday".into(),
                start: "2026-11-27T00:00:00Z".into(),
                end: "2026-11-30T23:59:59Z".into(),
                min_replicas: 8,
            }],
            ..ProcessorSpec::default()
        };
        let cases = [
            ("outside the schedule", spec(2, 12), 12, "2026-11-20T10:00:00Z", 2, "MinReplicas"),
            ("during the schedule", spec(2, 12), 12, "2026-11-28T10:00:00Z", 8, "Schedule black-friday"),
            ("schedule above max", spec(2, 6), 12, "2026-11-28T10:00:00Z", 6, "CappedAtMaxReplicas"),
            ("never above partitions", spec(2, 12), 4, "2026-11-28T10:00:00Z", 4, "CappedAtPartitions"),
            ("schedule ended", spec(2, 12), 12, "2026-12-01T00:00:00Z", 2, "MinReplicas"),
        ];
        for (name, spec, partitions, now, desired, reason) in cases {
            let decision = plan_replicas(&spec, partitions, at(now)).unwrap();
            assert_eq!(decision, ReplicaDecision { desired, reason: reason.to_string() }, "{name}");
        }
    }
}

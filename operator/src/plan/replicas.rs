//! How many processor replicas, as the reconcile applies them. The floor is `minReplicas`,
//! raised by an active schedule (Black Friday) from the second it starts; the cap is
//! `maxReplicas`, lowered to the partitions of the input topics. Between them the
//! autoscaler's latest decision ([`crate::autoscale::decision`], made by the sampler on its
//! own interval) rules; without one, the Deployment's current count holds. With
//! `autoscaling.enabled: false` the operator leaves `replicas` to an HPA or KEDA.

use chrono::{DateTime, Utc};
use stockpulse_processor::config::Duration;

use crate::autoscale::decision::{Bounds, Policy};
use crate::build::{SpecProblem, SpecProblems};
use crate::crd::retail_pipeline::ProcessorSpec;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaDecision {
    pub desired: i32,
    /// Why: a bound (`MinReplicas`, `Schedule <name>`, `CappedAtMaxReplicas`,
    /// `CappedAtPartitions`), the autoscaler's reason, `Holding`, or `AutoscalingDisabled`.
    pub reason: String,
    /// Whether the operator sets the Deployment's `replicas` (`autoscaling.enabled`).
    pub managed: bool,
}

/// What the replica planner reads besides the spec.
#[derive(Clone, Debug, Default)]
pub struct ReplicaInput {
    pub input_partitions: i32,
    /// The Deployment's `spec.replicas` as observed, when it exists.
    pub current: Option<i32>,
    /// The autoscaler's latest decision (desired, reason), when it has sampled.
    pub autoscaled: Option<(i32, String)>,
}

fn parse_time(field: String, text: &str) -> Result<DateTime<Utc>, SpecProblem> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| SpecProblem { field, message: format!("{text:?} is not an RFC 3339 time: {e}") })
}

fn duration(field: &str, text: &str) -> Result<chrono::Duration, SpecProblem> {
    let d: Duration = text.parse().map_err(|e| SpecProblem { field: field.to_string(), message: format!("{e}") })?;
    Ok(chrono::Duration::milliseconds(d.as_millis_i64()))
}

/// A schedule as (name, start, end, floor).
type Schedule = (String, DateTime<Utc>, DateTime<Utc>, i32);

/// Every schedule, its times parsed.
fn schedules(spec: &ProcessorSpec) -> Result<Vec<Schedule>, SpecProblems> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for (i, schedule) in spec.schedules.iter().enumerate() {
        let at = |f: &str| format!("spec.processor.schedules[{i}].{f}");
        match (parse_time(at("start"), &schedule.start), parse_time(at("end"), &schedule.end)) {
            (Ok(start), Ok(end)) => out.push((schedule.name.clone(), start, end, schedule.min_replicas)),
            (a, b) => problems.extend([a.err(), b.err()].into_iter().flatten()),
        }
    }
    if problems.is_empty() { Ok(out) } else { Err(SpecProblems(problems)) }
}

/// The floor and cap at `now`.
pub fn bounds(spec: &ProcessorSpec, input_partitions: i32, now: DateTime<Utc>) -> Result<Bounds, SpecProblems> {
    let mut floor = spec.min_replicas;
    let mut floor_reason = "MinReplicas".to_string();
    for (name, start, end, min) in schedules(spec)? {
        if start <= now && now < end && min > floor {
            floor = min;
            floor_reason = format!("Schedule {name}");
        }
    }
    let (cap, cap_reason) = if input_partitions < spec.max_replicas {
        (input_partitions.max(1), "CappedAtPartitions")
    } else {
        (spec.max_replicas, "CappedAtMaxReplicas")
    };
    Ok(Bounds { floor, floor_reason, cap, cap_reason })
}

/// The next start or end of a schedule after `now`: the operator looks again right then,
/// so a floor takes effect at its boundary.
pub fn next_boundary(spec: &ProcessorSpec, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let all = schedules(spec).ok()?;
    all.iter().flat_map(|(_, start, end, _)| [*start, *end]).filter(|t| *t > now).min()
}

/// The autoscaler's tuning from the spec.
pub fn policy(spec: &ProcessorSpec) -> Result<Policy, SpecProblems> {
    let a = &spec.autoscaling;
    let up = duration("spec.processor.autoscaling.scaleUpStabilization", &a.scale_up_stabilization);
    let down = duration("spec.processor.autoscaling.scaleDownStabilization", &a.scale_down_stabilization);
    let sample = duration("spec.processor.autoscaling.sampleInterval", &a.sample_interval);
    match (up, down, sample) {
        (Ok(up), Ok(down), Ok(_)) => Ok(Policy {
            target_drain_seconds: f64::from(a.target_drain_seconds.max(1)),
            headroom: f64::from(a.headroom_percent.max(0)) / 100.0,
            default_capacity: a.capacity_per_replica.max(1) as f64,
            scale_up_window: up,
            scale_down_window: down,
            scale_down_step_percent: a.scale_down_step_percent.clamp(1, 100),
        }),
        (up, down, sample) => Err(SpecProblems([up.err(), down.err(), sample.err()].into_iter().flatten().collect())),
    }
}

/// How often the sampler looks at the broker; at least a second.
pub fn sample_interval(spec: &ProcessorSpec) -> std::time::Duration {
    let millis = spec.autoscaling.sample_interval.parse::<Duration>().map(|d| d.as_millis_i64()).unwrap_or(15_000);
    std::time::Duration::from_millis(u64::try_from(millis.max(1000)).unwrap_or(15_000))
}

/// Decides the replicas at `now`.
pub fn plan_replicas(
    spec: &ProcessorSpec,
    input: &ReplicaInput,
    now: DateTime<Utc>,
) -> Result<ReplicaDecision, SpecProblems> {
    let bounds = bounds(spec, input.input_partitions, now);
    let policy = policy(spec);
    let bounds = match (bounds, policy) {
        (Ok(bounds), Ok(_)) => bounds,
        (bounds, policy) => {
            let mut problems = Vec::new();
            problems.extend(bounds.err().map(|p| p.0).unwrap_or_default());
            problems.extend(policy.err().map(|p| p.0).unwrap_or_default());
            return Err(SpecProblems(problems));
        }
    };
    if !spec.autoscaling.enabled {
        return Ok(ReplicaDecision {
            desired: input.current.unwrap_or(bounds.floor),
            reason: "AutoscalingDisabled".to_string(),
            managed: false,
        });
    }
    let (wanted, reason) = match (&input.autoscaled, input.current) {
        (Some((n, reason)), _) => (*n, reason.clone()),
        (None, Some(n)) => (n, "Holding".to_string()),
        (None, None) => (bounds.floor, bounds.floor_reason.clone()),
    };
    let (desired, mut reason) = bounds.clamp(wanted, &reason);
    if input.autoscaled.is_none() && desired == bounds.floor {
        // Held at the floor: the floor is why.
        reason = bounds.floor_reason.clone();
    }
    Ok(ReplicaDecision { desired, reason, managed: true })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::retail_pipeline::ScheduleSpec;

    const NOW: &str = "2026-11-20T10:00:00Z";

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).unwrap()
    }

    fn spec(min: i32, max: i32) -> ProcessorSpec {
        ProcessorSpec {
            min_replicas: min,
            max_replicas: max,
            schedules: vec![ScheduleSpec {
                name: "black-friday".into(),
                // Midnight in New York: the offset is the schedule's time zone.
                start: "2026-11-27T00:00:00-05:00".into(),
                end: "2026-11-30T23:59:59-05:00".into(),
                min_replicas: 8,
            }],
            ..ProcessorSpec::default()
        }
    }

    #[test]
    fn floors_and_caps() {
        struct Case {
            name: &'static str,
            spec: ProcessorSpec,
            partitions: i32,
            now: &'static str,
            current: Option<i32>,
            autoscaled: Option<(i32, &'static str)>,
            desired: i32,
            reason: &'static str,
        }
        let cases = [
            Case {
                name: "a new pipeline starts at the floor",
                spec: spec(2, 12),
                partitions: 12,
                now: NOW,
                current: None,
                autoscaled: None,
                desired: 2,
                reason: "MinReplicas",
            },
            Case {
                name: "the autoscaler rules between the bounds",
                spec: spec(2, 12),
                partitions: 12,
                now: NOW,
                current: Some(3),
                autoscaled: Some((6, "LagGrowing")),
                desired: 6,
                reason: "LagGrowing",
            },
            Case {
                name: "before the autoscaler has sampled, the Deployment's count holds",
                spec: spec(2, 12),
                partitions: 12,
                now: NOW,
                current: Some(5),
                autoscaled: None,
                desired: 5,
                reason: "Holding",
            },
            Case {
                name: "the schedule's floor from the second it starts (its own offset)",
                spec: spec(2, 12),
                partitions: 12,
                now: "2026-11-27T05:00:00Z",
                current: Some(3),
                autoscaled: Some((3, "InputBelowCapacity")),
                desired: 8,
                reason: "Schedule black-friday",
            },
            Case {
                name: "a second before it, the floor is minReplicas",
                spec: spec(2, 12),
                partitions: 12,
                now: "2026-11-27T04:59:59Z",
                current: Some(3),
                autoscaled: Some((3, "InputBelowCapacity")),
                desired: 3,
                reason: "InputBelowCapacity",
            },
            Case {
                name: "schedule above max",
                spec: spec(2, 6),
                partitions: 12,
                now: "2026-11-28T10:00:00Z",
                current: None,
                autoscaled: None,
                desired: 6,
                reason: "CappedAtMaxReplicas",
            },
            Case {
                name: "never above partitions",
                spec: spec(2, 12),
                partitions: 4,
                now: "2026-11-28T10:00:00Z",
                current: Some(2),
                autoscaled: Some((10, "LagGrowing")),
                desired: 4,
                reason: "CappedAtPartitions",
            },
        ];
        for case in cases {
            let input = ReplicaInput {
                input_partitions: case.partitions,
                current: case.current,
                autoscaled: case.autoscaled.map(|(n, r)| (n, r.to_string())),
            };
            let decision = plan_replicas(&case.spec, &input, at(case.now)).unwrap();
            assert_eq!(
                decision,
                ReplicaDecision { desired: case.desired, reason: case.reason.to_string(), managed: true },
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn disabled_leaves_replicas_alone() {
        let mut s = spec(2, 12);
        s.autoscaling.enabled = false;
        let input = ReplicaInput { input_partitions: 12, current: Some(7), autoscaled: Some((3, "x".into())) };
        let decision = plan_replicas(&s, &input, at(NOW)).unwrap();
        assert_eq!(decision, ReplicaDecision { desired: 7, reason: "AutoscalingDisabled".into(), managed: false });
    }

    #[test]
    fn the_next_boundary_is_the_next_start_or_end() {
        let s = spec(2, 12);
        assert_eq!(next_boundary(&s, at(NOW)), Some(at("2026-11-27T05:00:00Z")));
        assert_eq!(next_boundary(&s, at("2026-11-27T05:00:00Z")), Some(at("2026-12-01T04:59:59Z")));
        assert_eq!(next_boundary(&s, at("2026-12-02T00:00:00Z")), None);
    }

    #[test]
    fn the_policy_comes_from_the_spec() {
        let mut s = spec(2, 12);
        let p = policy(&s).unwrap();
        assert_eq!(p, Policy { default_capacity: 1000.0, ..Policy::default() }, "the CRD defaults are the policy's");
        assert_eq!(sample_interval(&s), std::time::Duration::from_secs(15));
        s.autoscaling.scale_down_stabilization = "soon".into();
        let problems = policy(&s).unwrap_err();
        assert_eq!(problems.0[0].field, "spec.processor.autoscaling.scaleDownStabilization");
    }
}

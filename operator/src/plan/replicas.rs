//! How many processor replicas. The floor is `minReplicas`, raised by an active schedule
//! (Black Friday); the cap is `maxReplicas`, lowered to the partitions of the input topics.
//! Between them, consumer lag decides: `ceil(lag / targetLagPerReplica)` replicas, reached
//! only after the wish has held for the stabilization window (short up, long down), so a
//! burst does not flap the Deployment. Without a lag reading the floor rules.

use chrono::{DateTime, SecondsFormat, Utc};
use stockpulse_processor::config::Duration;

use crate::build::{SpecProblem, SpecProblems};
use crate::crd::retail_pipeline::{AutoscalingStatus, ProcessorSpec};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaDecision {
    pub desired: i32,
    /// Why: `MinReplicas`, `Schedule <name>`, `CappedAtMaxReplicas`, `CappedAtPartitions`,
    /// `LagAboveTarget`, `LagBelowTarget`.
    pub reason: String,
    /// A scaling wish waiting for its stabilization window, kept in status.
    pub pending: Option<AutoscalingStatus>,
}

/// What the replica planner reads besides the spec.
#[derive(Clone, Debug, Default)]
pub struct ReplicaInput<'a> {
    pub input_partitions: i32,
    /// Consumer lag over the input topics, when known.
    pub lag: Option<i64>,
    /// The replicas decided last time (status), and the pending wish.
    pub previous_desired: Option<i32>,
    pub previous_reason: Option<&'a str>,
    pub pending: Option<&'a AutoscalingStatus>,
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

/// Decides the replicas at `now`.
pub fn plan_replicas(
    spec: &ProcessorSpec,
    input: &ReplicaInput<'_>,
    now: DateTime<Utc>,
) -> Result<ReplicaDecision, SpecProblems> {
    let mut problems = Vec::new();
    let mut floor = spec.min_replicas;
    let mut floor_reason = "MinReplicas".to_string();
    for (i, schedule) in spec.schedules.iter().enumerate() {
        let at = |f: &str| format!("spec.processor.schedules[{i}].{f}");
        match (parse_time(at("start"), &schedule.start), parse_time(at("end"), &schedule.end)) {
            (Ok(start), Ok(end)) => {
                if start <= now && now < end && schedule.min_replicas > floor {
                    floor = schedule.min_replicas;
                    floor_reason = format!("Schedule {}", schedule.name);
                }
            }
            (a, b) => problems.extend([a.err(), b.err()].into_iter().flatten()),
        }
    }
    let a = &spec.autoscaling;
    let up = duration("spec.processor.autoscaling.scaleUpStabilization", &a.scale_up_stabilization);
    let down = duration("spec.processor.autoscaling.scaleDownStabilization", &a.scale_down_stabilization);
    let (up, down) = match (up, down) {
        (Ok(up), Ok(down)) => (up, down),
        (up, down) => {
            problems.extend([up.err(), down.err()].into_iter().flatten());
            (chrono::Duration::zero(), chrono::Duration::zero())
        }
    };
    if !problems.is_empty() {
        return Err(SpecProblems(problems));
    }
    let (cap, cap_reason) = if input.input_partitions < spec.max_replicas {
        (input.input_partitions.max(1), "CappedAtPartitions")
    } else {
        (spec.max_replicas, "CappedAtMaxReplicas")
    };
    let clamp = |n: i32, reason: String| -> (i32, String) {
        if n > cap {
            (cap, cap_reason.to_string())
        } else if n < floor {
            (floor.min(cap), if floor > cap { cap_reason.to_string() } else { floor_reason.clone() })
        } else {
            (n, reason)
        }
    };
    let Some(lag) = input.lag else {
        // No lag reading: hold what lag decided before, else follow the floor.
        let (desired, reason) = match (input.previous_desired, input.previous_reason) {
            (Some(n), Some(reason)) if reason.starts_with("Lag") => clamp(n, reason.to_string()),
            _ => clamp(floor, floor_reason.clone()),
        };
        return Ok(ReplicaDecision { desired, reason, pending: None });
    };
    let current = input.previous_desired.unwrap_or(floor);
    let kept_reason = input.previous_reason.map(str::to_string).unwrap_or_else(|| floor_reason.clone());
    let (current, current_reason) = clamp(current, kept_reason);
    let target = a.target_lag_per_replica.max(1);
    let by_lag = i32::try_from((lag.max(0) + target - 1) / target).unwrap_or(i32::MAX);
    let (wanted, _) = clamp(by_lag, String::new());
    let now_text = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let (direction, window, reason) = match wanted.cmp(&current) {
        std::cmp::Ordering::Equal => {
            return Ok(ReplicaDecision { desired: current, reason: current_reason, pending: None });
        }
        std::cmp::Ordering::Greater => ("up", up, "LagAboveTarget"),
        std::cmp::Ordering::Less => ("down", down, "LagBelowTarget"),
    };
    let since = match input.pending {
        Some(p) if p.direction == direction => p.since.clone(),
        _ => now_text,
    };
    let held = DateTime::parse_from_rfc3339(&since).map(|t| now - t.with_timezone(&Utc)).unwrap_or_default();
    if held >= window {
        Ok(ReplicaDecision { desired: wanted, reason: reason.to_string(), pending: None })
    } else {
        Ok(ReplicaDecision {
            desired: current,
            reason: current_reason,
            pending: Some(AutoscalingStatus { direction: direction.to_string(), replicas: wanted, since, lag }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::retail_pipeline::{AutoscalingSpec, ScheduleSpec};

    const NOW: &str = "2026-11-20T10:00:00Z";

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).map(|t| t.with_timezone(&Utc)).unwrap()
    }

    fn spec(min: i32, max: i32) -> ProcessorSpec {
        ProcessorSpec {
            min_replicas: min,
            max_replicas: max,
            autoscaling: AutoscalingSpec {
                target_lag_per_replica: 1000,
                scale_up_stabilization: "1m".into(),
                scale_down_stabilization: "10m".into(),
            },
            schedules: vec![ScheduleSpec {
                name: "black-friday".into(),
                start: "2026-11-27T00:00:00Z".into(),
                end: "2026-11-30T23:59:59Z".into(),
                min_replicas: 8,
            }],
            ..ProcessorSpec::default()
        }
    }

    fn pending(direction: &str, replicas: i32, since: &str, lag: i64) -> AutoscalingStatus {
        AutoscalingStatus { direction: direction.into(), replicas, since: since.into(), lag }
    }

    #[test]
    fn floors_and_caps_without_lag() {
        let cases = [
            ("outside the schedule", spec(2, 12), 12, NOW, 2, "MinReplicas"),
            ("during the schedule", spec(2, 12), 12, "2026-11-28T10:00:00Z", 8, "Schedule black-friday"),
            ("schedule above max", spec(2, 6), 12, "2026-11-28T10:00:00Z", 6, "CappedAtMaxReplicas"),
            ("never above partitions", spec(2, 12), 4, "2026-11-28T10:00:00Z", 4, "CappedAtPartitions"),
            ("schedule ended", spec(2, 12), 12, "2026-12-01T00:00:00Z", 2, "MinReplicas"),
        ];
        for (name, spec, partitions, now, desired, reason) in cases {
            let input = ReplicaInput { input_partitions: partitions, ..ReplicaInput::default() };
            let decision = plan_replicas(&spec, &input, at(now)).unwrap();
            assert_eq!(decision, ReplicaDecision { desired, reason: reason.to_string(), pending: None }, "{name}");
        }
    }

    #[test]
    fn lag_scales_up_quickly_and_down_slowly() {
        struct Case {
            name: &'static str,
            now: &'static str,
            lag: Option<i64>,
            previous: Option<(i32, &'static str)>,
            pending: Option<AutoscalingStatus>,
            desired: i32,
            reason: &'static str,
            left_pending: Option<AutoscalingStatus>,
        }
        let cases = vec![
            Case {
                name: "no lag reading holds what lag decided",
                now: NOW,
                lag: None,
                previous: Some((5, "LagAboveTarget")),
                pending: None,
                desired: 5,
                reason: "LagAboveTarget",
                left_pending: None,
            },
            Case {
                name: "no lag reading after a schedule: back to the floor",
                now: "2026-12-01T00:00:00Z",
                lag: None,
                previous: Some((8, "Schedule black-friday")),
                pending: None,
                desired: 2,
                reason: "MinReplicas",
                left_pending: None,
            },
            Case {
                name: "lag above target starts a wish to scale up",
                now: NOW,
                lag: Some(5_500),
                previous: Some((2, "MinReplicas")),
                pending: None,
                desired: 2,
                reason: "MinReplicas",
                left_pending: Some(pending("up", 6, NOW, 5_500)),
            },
            Case {
                name: "the wish held for the up window: scale up",
                now: NOW,
                lag: Some(5_500),
                previous: Some((2, "MinReplicas")),
                pending: Some(pending("up", 6, "2026-11-20T09:58:00Z", 5_000)),
                desired: 6,
                reason: "LagAboveTarget",
                left_pending: None,
            },
            Case {
                name: "not held long enough yet: keep the start of the wish",
                now: NOW,
                lag: Some(5_500),
                previous: Some((2, "MinReplicas")),
                pending: Some(pending("up", 6, "2026-11-20T09:59:30Z", 5_000)),
                desired: 2,
                reason: "MinReplicas",
                left_pending: Some(pending("up", 6, "2026-11-20T09:59:30Z", 5_500)),
            },
            Case {
                name: "never above max replicas",
                now: NOW,
                lag: Some(50_000),
                previous: Some((2, "MinReplicas")),
                pending: Some(pending("up", 12, "2026-11-20T09:58:00Z", 50_000)),
                desired: 12,
                reason: "LagAboveTarget",
                left_pending: None,
            },
            Case {
                name: "low lag starts a wish to scale down",
                now: NOW,
                lag: Some(100),
                previous: Some((6, "LagAboveTarget")),
                pending: None,
                desired: 6,
                reason: "LagAboveTarget",
                left_pending: Some(pending("down", 2, NOW, 100)),
            },
            Case {
                name: "a wish that changed direction starts over",
                now: NOW,
                lag: Some(100),
                previous: Some((6, "LagAboveTarget")),
                pending: Some(pending("up", 9, "2026-11-20T09:00:00Z", 9_000)),
                desired: 6,
                reason: "LagAboveTarget",
                left_pending: Some(pending("down", 2, NOW, 100)),
            },
            Case {
                name: "the down window passed: scale down, not below the floor",
                now: NOW,
                lag: Some(100),
                previous: Some((6, "LagAboveTarget")),
                pending: Some(pending("down", 2, "2026-11-20T09:49:00Z", 150)),
                desired: 2,
                reason: "LagBelowTarget",
                left_pending: None,
            },
            Case {
                name: "a schedule floor applies at once, whatever the lag",
                now: "2026-11-28T10:00:00Z",
                lag: Some(0),
                previous: Some((3, "LagAboveTarget")),
                pending: None,
                desired: 8,
                reason: "Schedule black-friday",
                left_pending: None,
            },
            Case {
                name: "lag matching the replicas: nothing pending",
                now: NOW,
                lag: Some(3_000),
                previous: Some((3, "LagAboveTarget")),
                pending: Some(pending("up", 4, "2026-11-20T09:59:00Z", 3_500)),
                desired: 3,
                reason: "LagAboveTarget",
                left_pending: None,
            },
        ];
        for case in cases {
            let input = ReplicaInput {
                input_partitions: 12,
                lag: case.lag,
                previous_desired: case.previous.map(|p| p.0),
                previous_reason: case.previous.map(|p| p.1),
                pending: case.pending.as_ref(),
            };
            let decision = plan_replicas(&spec(2, 12), &input, at(case.now)).unwrap();
            let expected =
                ReplicaDecision { desired: case.desired, reason: case.reason.to_string(), pending: case.left_pending };
            assert_eq!(decision, expected, "{}", case.name);
        }
    }
}

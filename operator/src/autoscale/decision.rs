//! The autoscaler's decision, a pure function of the samples it was given: no clock, no
//! broker, no API server. The operator's sampler and the holiday simulation
//! (`examples/holiday_sim.rs`) both drive this same [`Autoscaler`].
//!
//! Each sample (every 15 s by default) gives the input rate (growth of the input topics'
//! high watermarks), the processed rate (growth of the consumer group's committed offsets),
//! the lag and the ready replicas. From them:
//!
//! - **capacity per replica** is learned from the processed rate per active consumer while
//!   the consumers are saturated (lag present over the whole interval, replicas stable for
//!   three samples, so a rebalance pause does not count). Until then the configured
//!   `capacityPerReplica` is used; an unsaturated interval only raises the estimate (what was
//!   processed is a lower bound of what could be).
//! - the **recommendation** is `ceil((inputRate x (1 + headroom) + lag / targetDrainSeconds)
//!   / capacityPerReplica)`: enough for the input with headroom plus draining the lag.
//! - **scale up at once** when the lag grew over the last two samples (by at least one
//!   second of input): the recommendation is applied on the spot.
//! - otherwise **scale up** to the smallest recommendation of the up window (HPA style;
//!   default 0 s, so at once) and **scale down** only to the largest recommendation of the
//!   down window (default 5 min), computed with 10 % more margin so a load hovering on a
//!   replica boundary does not flap, by at most `scaleDownStepPercent` of the replicas per
//!   step and at most one step per minute.
//! - never above the partitions on the broker or `maxReplicas`, never below `minReplicas`
//!   or an active schedule's floor.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, Utc};

/// The tuning of a pipeline's autoscaler (from `spec.processor.autoscaling`).
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Seconds in which the current lag should be drained, on top of the input.
    pub target_drain_seconds: f64,
    /// Extra capacity over the input rate: 0.2 is 20 %.
    pub headroom: f64,
    /// Records per second one replica is assumed to process until it is learned.
    pub default_capacity: f64,
    /// A scale-up waits for the smallest recommendation over this window.
    pub scale_up_window: Duration,
    /// A scale-down waits for the largest recommendation over this window.
    pub scale_down_window: Duration,
    /// At most this share (percent) of the replicas goes in one scale-down (at least one).
    pub scale_down_step_percent: i32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            target_drain_seconds: 60.0,
            headroom: 0.2,
            default_capacity: 1000.0,
            scale_up_window: Duration::zero(),
            scale_down_window: Duration::minutes(5),
            scale_down_step_percent: 50,
        }
    }
}

/// Extra margin of a scale-down recommendation: the load must fit in the smaller count
/// with 10 % to spare, so a load on a replica boundary holds the larger count.
pub const SCALE_DOWN_MARGIN: f64 = 0.1;
/// Scale-downs are at least this far apart.
pub const SCALE_DOWN_PERIOD: Duration = Duration::minutes(1);
/// Saturated intervals the capacity estimate is the median of.
const CAPACITY_SAMPLES: usize = 8;
/// The backlog, in seconds of input, above which the consumers are taken as saturated.
pub const SATURATION_SECONDS: f64 = 5.0;
/// Samples kept beyond the longest window.
const SPARE_SAMPLES: usize = 4;

/// One look at the broker and the Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    /// Sum of the high watermarks of the input partitions.
    pub end_offsets: i64,
    /// Sum of the consumer group's committed offsets on them.
    pub committed: i64,
    /// Sum over the input partitions of high watermark minus committed offset.
    pub lag: i64,
    /// Input partitions on the broker.
    pub partitions: i32,
    /// Processor replicas ready.
    pub ready: i32,
}

/// The floor and the cap at the time of a decision, with their reasons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub floor: i32,
    /// `MinReplicas` or `Schedule <name>`.
    pub floor_reason: String,
    pub cap: i32,
    /// `CappedAtPartitions` or `CappedAtMaxReplicas`.
    pub cap_reason: &'static str,
}

impl Bounds {
    /// `n` within the bounds, with the reason when a bound decided it. The cap wins over a
    /// floor above it.
    pub fn clamp(&self, n: i32, reason: &str) -> (i32, String) {
        if n > self.cap || self.floor > self.cap {
            (self.cap, self.cap_reason.to_string())
        } else if n < self.floor {
            (self.floor, self.floor_reason.clone())
        } else {
            (n, reason.to_string())
        }
    }
}

/// What the autoscaler decided on a sample, and what it saw.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub desired: i32,
    /// `LagGrowing`, `InputAboveCapacity`, `InputBelowCapacity`, `Holding` (no rates yet, or
    /// nothing to change), or a bound's reason.
    pub reason: String,
    /// The recommendation of this sample (unbounded), when rates are known.
    pub recommendation: Option<i32>,
    pub input_rate: Option<f64>,
    pub processed_rate: Option<f64>,
    /// Records per second per replica, learned or configured.
    pub capacity_per_replica: f64,
    /// Whether the capacity was learned from a saturated interval.
    pub capacity_learned: bool,
    pub lag: i64,
}

/// The autoscaler of one pipeline: its recent samples and recommendations (memory only).
#[derive(Clone, Debug, Default)]
pub struct Autoscaler {
    samples: VecDeque<Sample>,
    /// (time, recommendation for scaling up, recommendation for scaling down)
    recommendations: VecDeque<(DateTime<Utc>, i32, i32)>,
    /// Per-replica processed rates of saturated intervals.
    saturated: VecDeque<f64>,
    last_scale_down: Option<DateTime<Utc>>,
    /// The reason of the last change, kept while nothing changes.
    last_reason: Option<String>,
}

fn rate(from: &Sample, to: &Sample, value: impl Fn(&Sample) -> i64) -> Option<f64> {
    let seconds = (to.at - from.at).num_milliseconds() as f64 / 1000.0;
    (seconds > 0.0).then(|| (value(to) - value(from)).max(0) as f64 / seconds)
}

/// Consumers' worth of throughput `replicas` give over `partitions` equally loaded
/// partitions: the busiest consumer has `ceil(partitions / replicas)` of them and sets the
/// pace, so 13 to 23 replicas on 24 partitions do no more than 12.
pub fn effective_consumers(replicas: i32, partitions: i32) -> f64 {
    if replicas <= 0 {
        return 0.0;
    }
    if partitions <= 0 {
        return f64::from(replicas);
    }
    let busiest = (partitions + replicas - 1) / replicas;
    f64::from(partitions) / f64::from(busiest)
}

/// The fewest replicas whose effective consumers reach `consumers`: past the partitions,
/// more than the partitions (the cap takes it back).
pub fn replicas_for(consumers: f64, partitions: i32) -> i32 {
    if !consumers.is_finite() || consumers > f64::from(i32::MAX) {
        return i32::MAX;
    }
    let wanted = consumers.ceil().max(0.0) as i32;
    if partitions <= 0 || wanted <= 0 {
        return wanted;
    }
    if wanted > partitions {
        return wanted;
    }
    // The largest share of partitions per consumer that still gives `consumers`.
    let per_consumer = (f64::from(partitions) / consumers).floor().max(1.0) as i32;
    (partitions + per_consumer - 1) / per_consumer
}

impl Autoscaler {
    pub fn new() -> Self {
        Autoscaler::default()
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> impl Iterator<Item = &Sample> {
        self.samples.iter()
    }

    /// The per-replica capacity in use: the median of the saturated intervals (else the
    /// configured default), raised to what an unsaturated interval of the history showed.
    pub fn capacity(&self, policy: &Policy) -> (f64, bool) {
        let learned = !self.saturated.is_empty();
        let mut base = if learned {
            let mut sorted: Vec<f64> = self.saturated.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            sorted[sorted.len() / 2]
        } else {
            policy.default_capacity
        };
        let samples: Vec<&Sample> = self.samples.iter().collect();
        for pair in samples.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let active = effective_consumers(b.ready, b.partitions);
            if active > 0.0
                && a.ready == b.ready
                && let Some(processed) = rate(a, b, |s| s.committed)
            {
                base = base.max(processed / active);
            }
        }
        (base.max(1.0), learned)
    }

    fn learn(&mut self) {
        let n = self.samples.len();
        if n < 3 {
            return;
        }
        let (s0, s1, s2) = (&self.samples[n - 3], &self.samples[n - 2], &self.samples[n - 1]);
        let stable = s0.ready == s1.ready && s1.ready == s2.ready;
        let active = effective_consumers(s2.ready, s2.partitions);
        // Saturated: a backlog of several seconds of input at both ends of the interval, so
        // the consumers never waited for records (a second or so is always in flight).
        let input = rate(s1, s2, |s| s.end_offsets).unwrap_or(0.0);
        let backlog = SATURATION_SECONDS * input.max(1.0);
        if stable
            && active > 0.0
            && s1.lag as f64 >= backlog
            && s2.lag as f64 >= backlog
            && let Some(processed) = rate(s1, s2, |s| s.committed)
        {
            self.saturated.push_back(processed / active);
            while self.saturated.len() > CAPACITY_SAMPLES {
                self.saturated.pop_front();
            }
        }
    }

    /// Takes a sample and decides the replicas. `current` is what the Deployment asks for
    /// now (or, before it exists, the floor).
    pub fn decide(&mut self, policy: &Policy, sample: Sample, current: i32, bounds: &Bounds) -> Decision {
        let now = sample.at;
        self.samples.push_back(sample);
        let keep = policy.scale_up_window.max(policy.scale_down_window) + Duration::seconds(1);
        while self.samples.len() > SPARE_SAMPLES + 1 && self.samples.front().is_some_and(|s| now - s.at > keep) {
            self.samples.pop_front();
        }
        self.learn();
        let (capacity, learned) = self.capacity(policy);
        let n = self.samples.len();
        let last = self.samples[n - 1].clone();
        let previous = (n >= 2).then(|| self.samples[n - 2].clone());
        let input_rate = previous.as_ref().and_then(|p| rate(p, &last, |s| s.end_offsets));
        let processed_rate = previous.as_ref().and_then(|p| rate(p, &last, |s| s.committed));
        let mut decision = Decision {
            desired: current,
            reason: String::new(),
            recommendation: None,
            input_rate,
            processed_rate,
            capacity_per_replica: capacity,
            capacity_learned: learned,
            lag: last.lag,
        };
        let hold = |this: &Self| this.last_reason.clone().unwrap_or_else(|| "Holding".to_string());
        let Some(input) = input_rate else {
            // One sample (a new pipeline, or the operator just started): hold within bounds.
            let (desired, reason) = bounds.clamp(current, &hold(self));
            decision.desired = desired;
            decision.reason = reason;
            return self.finish(decision, current, now);
        };
        let drain = last.lag.max(0) as f64 / policy.target_drain_seconds.max(1.0);
        let need = (input * (1.0 + policy.headroom) + drain) / capacity;
        let up_rec = replicas_for(need, last.partitions);
        let down_rec = replicas_for(need * (1.0 + SCALE_DOWN_MARGIN), last.partitions);
        decision.recommendation = Some(up_rec);
        self.recommendations.push_back((now, up_rec, down_rec));
        let window = policy.scale_up_window.max(policy.scale_down_window);
        while self.recommendations.front().is_some_and(|(at, _, _)| now - *at > window) {
            self.recommendations.pop_front();
        }
        let (bounded_current, current_reason) = bounds.clamp(current, &hold(self));
        let lags: Vec<i64> = self.samples.iter().rev().take(3).map(|s| s.lag).collect();
        let growing =
            lags.len() == 3 && lags[0] > lags[1] && lags[1] > lags[2] && (lags[0] - lags[2]) as f64 >= input.max(1.0);
        let (up_bounded, _) = bounds.clamp(up_rec, "");
        if growing && up_bounded > bounded_current {
            let (desired, reason) = bounds.clamp(up_rec, "LagGrowing");
            decision.desired = desired;
            decision.reason = reason;
            return self.finish(decision, current, now);
        }
        let covers = |w: Duration| {
            self.recommendations.front().is_some_and(|(at, _, _)| now - *at >= w)
                || w <= Duration::zero()
                || self.samples.front().is_some_and(|s| now - s.at >= w)
        };
        let in_window = |w: Duration| self.recommendations.iter().filter(move |(at, _, _)| now - *at <= w);
        let up_min = in_window(policy.scale_up_window).map(|r| r.1).min().unwrap_or(up_rec);
        let (up_target, _) = bounds.clamp(up_min, "");
        if up_target > bounded_current && covers(policy.scale_up_window) {
            let (desired, reason) = bounds.clamp(up_min, "InputAboveCapacity");
            decision.desired = desired;
            decision.reason = reason;
            return self.finish(decision, current, now);
        }
        let down_max = in_window(policy.scale_down_window).map(|r| r.2).max().unwrap_or(down_rec);
        let (down_target, _) = bounds.clamp(down_max, "");
        let period_passed = self.last_scale_down.is_none_or(|at| now - at >= SCALE_DOWN_PERIOD);
        // A full window of samples is needed: after a restart the memory is rebuilt from the
        // broker for a whole window before anything is taken away.
        let full_window = self.samples.front().is_some_and(|s| now - s.at >= policy.scale_down_window);
        if down_target < bounded_current && period_passed && full_window {
            let step = ((i64::from(bounded_current) * i64::from(policy.scale_down_step_percent.clamp(1, 100))) / 100)
                .max(1) as i32;
            let (desired, reason) = bounds.clamp(down_max.max(bounded_current - step), "InputBelowCapacity");
            decision.desired = desired;
            decision.reason = reason;
            return self.finish(decision, current, now);
        }
        decision.desired = bounded_current;
        decision.reason = if up_rec >= bounds.cap && bounded_current == bounds.cap {
            bounds.cap_reason.to_string()
        } else if down_rec <= bounds.floor && bounded_current == bounds.floor {
            bounds.floor_reason.clone()
        } else {
            current_reason
        };
        self.finish(decision, current, now)
    }

    fn finish(&mut self, decision: Decision, current: i32, now: DateTime<Utc>) -> Decision {
        if decision.desired < current {
            self.last_scale_down = Some(now);
        }
        if decision.desired != current || self.last_reason.is_none() {
            self.last_reason = Some(decision.reason.clone());
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// Feeds samples 15 s apart, each `(input rate, lag, ready)`, following the decisions
    /// (the Deployment takes every desired count; `ready` is given).
    fn run(policy: &Policy, bounds: &Bounds, partitions: i32, start: i32, steps: &[(f64, i64, i32)]) -> Vec<Decision> {
        let epoch = Utc.with_ymd_and_hms(2027, 11, 26, 0, 0, 0).unwrap();
        let mut scaler = Autoscaler::new();
        let (mut end, mut current) = (1_000_000.0_f64, start);
        let mut out = Vec::new();
        for (i, (rate, lag, ready)) in steps.iter().enumerate() {
            if i > 0 {
                end += rate * 15.0;
            }
            let sample = Sample {
                at: epoch + Duration::seconds(15 * i as i64),
                end_offsets: end as i64,
                committed: end as i64 - lag,
                lag: *lag,
                partitions,
                ready: *ready,
            };
            let d = scaler.decide(policy, sample, current, bounds);
            current = d.desired;
            out.push(d);
        }
        out
    }

    fn bounds(floor: i32, floor_reason: &str, max: i32, partitions: i32) -> Bounds {
        let (cap, cap_reason) =
            if partitions < max { (partitions, "CappedAtPartitions") } else { (max, "CappedAtMaxReplicas") };
        Bounds { floor, floor_reason: floor_reason.into(), cap, cap_reason }
    }

    fn policy() -> Policy {
        Policy { default_capacity: 500.0, ..Policy::default() }
    }

    /// `n` samples of the same load.
    fn steady(n: usize, rate: f64, lag: i64, ready: i32) -> Vec<(f64, i64, i32)> {
        vec![(rate, lag, ready); n]
    }

    fn changes(decisions: &[Decision], start: i32) -> Vec<(usize, i32, String)> {
        let mut last = start;
        let mut out = Vec::new();
        for (i, d) in decisions.iter().enumerate() {
            if d.desired != last {
                out.push((i, d.desired, d.reason.clone()));
                last = d.desired;
            }
        }
        out
    }

    #[test]
    fn effective_consumers_follow_the_busiest_partition_share() {
        let cases =
            [(1, 24, 1.0), (5, 24, 4.8), (6, 24, 6.0), (7, 24, 6.0), (13, 24, 12.0), (24, 24, 24.0), (30, 24, 24.0)];
        for (replicas, partitions, consumers) in cases {
            assert_eq!(effective_consumers(replicas, partitions), consumers, "{replicas} on {partitions}");
        }
        let cases =
            [(4.0, 24, 4), (4.1, 24, 5), (6.5, 24, 8), (12.0, 24, 12), (12.5, 24, 24), (30.0, 24, 30), (2.5, 0, 3)];
        for (consumers, partitions, replicas) in cases {
            assert_eq!(replicas_for(consumers, partitions), replicas, "{consumers} on {partitions}");
        }
    }

    #[test]
    fn bounds_decide_first() {
        struct Case {
            name: &'static str,
            bounds: Bounds,
            partitions: i32,
            rate: f64,
            desired: i32,
            reason: &'static str,
        }
        let cases = [
            Case {
                name: "never above the partitions on the broker",
                bounds: bounds(2, "MinReplicas", 12, 6),
                partitions: 6,
                rate: 50_000.0,
                desired: 6,
                reason: "CappedAtPartitions",
            },
            Case {
                name: "never above maxReplicas",
                bounds: bounds(2, "MinReplicas", 8, 24),
                partitions: 24,
                rate: 50_000.0,
                desired: 8,
                reason: "CappedAtMaxReplicas",
            },
            Case {
                name: "an active schedule's floor whatever the load",
                bounds: bounds(8, "Schedule black-friday", 12, 24),
                partitions: 24,
                rate: 100.0,
                desired: 8,
                reason: "Schedule black-friday",
            },
            Case {
                name: "a schedule floor above the partitions: the partitions win",
                bounds: bounds(8, "Schedule black-friday", 12, 4),
                partitions: 4,
                rate: 100.0,
                desired: 4,
                reason: "CappedAtPartitions",
            },
            Case {
                name: "minReplicas when idle",
                bounds: bounds(2, "MinReplicas", 12, 24),
                partitions: 24,
                rate: 0.0,
                desired: 2,
                reason: "MinReplicas",
            },
        ];
        for case in cases {
            // 3 replicas at 500/s each: the lag grows by what they cannot take. Then the
            // decided replicas keep up for a long while (scale-downs have their window).
            let growth = ((case.rate - 1500.0).max(0.0) * 15.0) as i64;
            let mut steps = vec![(case.rate, 0, 3), (case.rate, growth, 3), (case.rate, 2 * growth, 3)];
            steps.extend(steady(40, case.rate, 0, case.desired));
            let decisions = run(&policy(), &case.bounds, case.partitions, 3, &steps);
            let last = decisions.last().unwrap();
            assert_eq!((last.desired, last.reason.as_str()), (case.desired, case.reason), "{}", case.name);
            assert!(decisions.iter().all(|d| d.desired <= case.bounds.cap), "{}", case.name);
        }
    }

    #[test]
    fn scale_up_at_once_when_lag_grows_down_after_the_window_in_steps() {
        // 3 replicas keep up with 1000/s; then the input goes to 6000/s and lag grows. A
        // 1-minute up window would hold a scale-up on the rate alone; growing lag does not wait.
        let policy = Policy { scale_up_window: Duration::minutes(1), ..policy() };
        let mut steps = steady(4, 1000.0, 0, 3);
        steps.extend([(6000.0, 67_500, 3), (6000.0, 135_000, 3)]);
        steps.extend(steady(4, 6000.0, 40_000, 16));
        // Back to 1000/s for 12 minutes.
        steps.extend(steady(48, 1000.0, 0, 16));
        let decisions = run(&policy, &bounds(2, "MinReplicas", 24, 24), 24, 3, &steps);
        let changes = changes(&decisions, 3);
        assert_eq!(changes[0].0, 5, "up on the second sample of growing lag: {changes:?}");
        assert_eq!(changes[0].2, "LagGrowing");
        assert!(changes[0].1 >= 14, "enough for 6000/s with headroom and the drain: {changes:?}");
        let downs: Vec<&(usize, i32, String)> = changes.iter().filter(|c| c.2 == "InputBelowCapacity").collect();
        assert!(!downs.is_empty(), "{changes:?}");
        // The load fell at sample 10: nothing goes before the 5-minute window (20 samples).
        assert!(downs[0].0 >= 10 + 20, "{changes:?}");
        // Bounded steps: at most half the replicas each, at least a minute (4 samples) apart.
        let mut previous = (downs[0].0 - 4, changes[0].1);
        for d in &downs {
            assert!(d.1 >= previous.1 - previous.1 / 2, "{changes:?}");
            assert!(d.0 >= previous.0 + 4, "{changes:?}");
            previous = (d.0, d.1);
        }
        assert_eq!(decisions.last().unwrap().desired, 3, "{changes:?}");
    }

    #[test]
    fn scale_down_takes_the_largest_recommendation_of_the_window() {
        // 10 replicas; the input is low except for one burst 3 minutes in: the window still
        // holds the burst, so the scale-down stops at what the burst needed.
        let mut steps = steady(12, 800.0, 0, 10);
        steps.push((2400.0, 0, 10));
        steps.extend(steady(10, 800.0, 0, 10));
        let decisions = run(&policy(), &bounds(1, "MinReplicas", 24, 24), 24, 10, &steps);
        let first_down = decisions.iter().position(|d| d.desired < 10).unwrap();
        assert_eq!(first_down, 20, "the window is full after 5 minutes");
        let burst = replicas_for(2400.0 * 1.2 * 1.1 / 500.0, 24);
        assert_eq!(decisions[first_down].desired, burst.max(5), "window max, at most half at once");
        assert_eq!(decisions[first_down].reason, "InputBelowCapacity");
    }

    #[test]
    fn no_flapping_when_lag_hovers_at_the_threshold() {
        struct Case {
            name: &'static str,
            steps: Vec<(f64, i64, i32)>,
            start: i32,
        }
        // An hour of samples.
        let hovering_lag: Vec<(f64, i64, i32)> =
            (0..240).map(|i| (1000.0, if i % 2 == 0 { 4_900 } else { 5_100 }, 3)).collect();
        let creeping_lag: Vec<(f64, i64, i32)> =
            (0..240).map(|i| (1000.0, 4_000 + [0, 600, 1200, 300][i % 4], 3)).collect();
        // 1000/s x 1.2 / 500 = 2.4: on the boundary between 2 and 3 replicas, with noise.
        let boundary_rate: Vec<(f64, i64, i32)> =
            (0..240).map(|i| (if i % 3 == 0 { 1080.0 } else { 960.0 }, 100, 3)).collect();
        let cases = [
            Case { name: "lag alternating around 5 s of input", steps: hovering_lag, start: 3 },
            Case { name: "lag rising twice, then falling back", steps: creeping_lag, start: 3 },
            Case { name: "input on a replica boundary", steps: boundary_rate, start: 3 },
        ];
        for case in cases {
            let decisions = run(&policy(), &bounds(1, "MinReplicas", 24, 24), 24, case.start, &case.steps);
            let changes = changes(&decisions, case.start);
            assert!(changes.len() <= 1, "{}: {changes:?}", case.name);
            let downs = changes.iter().filter(|c| c.1 < case.start).count();
            assert!(downs <= 1, "{}: {changes:?}", case.name);
        }
    }

    #[test]
    fn capacity_is_learned_from_saturated_intervals_only() {
        let p = policy();
        let b = bounds(1, "MinReplicas", 24, 24);
        // Unsaturated: 4 replicas process 1000/s between them, well under the default
        // 500/s each: the estimate stays at the default.
        let d = run(&p, &b, 24, 4, &steady(6, 1000.0, 10, 4));
        assert_eq!((d.last().unwrap().capacity_per_replica, d.last().unwrap().capacity_learned), (500.0, false));
        // Saturated: a steady backlog of 60 s of input while 4 replicas process 1200/s:
        // 300/s each, learned (3 stable samples needed).
        let mut scaler = Autoscaler::new();
        let epoch = Utc.with_ymd_and_hms(2027, 11, 26, 0, 0, 0).unwrap();
        let mut last = None;
        for i in 0..5i64 {
            let sample = Sample {
                at: epoch + Duration::seconds(15 * i),
                end_offsets: 1_000_000 + 1_200 * 15 * i,
                committed: 1_000_000 - 72_000 + 1_200 * 15 * i,
                lag: 72_000,
                partitions: 24,
                ready: 4,
            };
            last = Some(scaler.decide(&p, sample, 4, &b));
        }
        let last = last.unwrap();
        assert!(last.capacity_learned);
        assert!((last.capacity_per_replica - 300.0).abs() < 1.0, "{last:?}");
        // And it asks for enough: 1200 x 1.2 + 72000 / 60 = 2640/s, at 300/s: 9 replicas
        // (8 effective consumers would be 2400), growing lag or not.
        assert!(last.recommendation.unwrap() >= 9, "{last:?}");
    }

    #[test]
    fn without_rates_the_current_count_holds_within_bounds() {
        let b = bounds(2, "MinReplicas", 12, 24);
        let d = run(&policy(), &b, 24, 5, &[(0.0, 0, 5)]);
        assert_eq!((d[0].desired, d[0].recommendation), (5, None));
        let d = run(&policy(), &b, 24, 30, &[(0.0, 0, 5)]);
        assert_eq!((d[0].desired, d[0].reason.as_str()), (12, "CappedAtMaxReplicas"));
        let d = run(&policy(), &bounds(8, "Schedule black-friday", 12, 24), 24, 2, &[(0.0, 0, 2)]);
        assert_eq!((d[0].desired, d[0].reason.as_str()), (8, "Schedule black-friday"));
    }
}

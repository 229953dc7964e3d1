//! A holiday replayed against a model of the processors, second by second, to compare
//! autoscaling rules (`cargo run --release -p stockpulse-operator --example holiday_sim`).
//!
//! The trace: steady load; a 5x surge ramped over 10 minutes and held for an hour; a
//! decline; steady again; a second, unannounced 4x surge ramped over 3 minutes. Noise: ±5 %
//! per second and a slow ±3 % wave, from a fixed seed, so every run gives the same figures.
//!
//! The model: every replica processes at most `capacity_per_replica` records per second
//! from the partitions it is assigned (partitions spread as evenly as they go, so the
//! busiest consumer sets the pace); a new pod is ready `start_delay` after it is asked for;
//! each change of the ready pods stops every consumer for `rebalance_pause` (an eager
//! rebalance); offsets are committed once per second, so the measured lag includes a second
//! of records in flight.
//!
//! The rules: this operator's [`Autoscaler`] (the very function the operator runs, sampled
//! every 15 s); a fixed deployment at `maxReplicas`; and KEDA's Kafka scaler as the HPA
//! applies it (replicas = ceil(total lag / lagThreshold), polled every 30 s, the HPA's 10 %
//! tolerance, at once up, down to the largest value of the last 300 s, capped at the
//! partitions and `maxReplicas`).

use chrono::{DateTime, Duration, TimeZone, Utc};

use super::decision::{Autoscaler, Bounds, Policy, Sample};

/// The processors and the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub partitions: i32,
    /// True records per second one replica processes (the autoscaler learns it).
    pub capacity_per_replica: f64,
    /// Seconds from asking for a pod to its consumer joining the group.
    pub start_delay: u32,
    /// Seconds every consumer stops when the group rebalances.
    pub rebalance_pause: u32,
    pub min_replicas: i32,
    pub max_replicas: i32,
    /// Replicas every rule starts with, ready (what the steady load needs).
    pub initial_replicas: i32,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            partitions: 24,
            capacity_per_replica: 600.0,
            start_delay: 45,
            rebalance_pause: 10,
            min_replicas: 2,
            max_replicas: 24,
            initial_replicas: 5,
        }
    }
}

/// Input records per second, second by second.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub rates: Vec<f64>,
    /// Periods of steady load, settled (seconds, end excluded): where scale-downs per
    /// hour are counted.
    pub steady: Vec<(usize, usize)>,
}

/// The base rate of the holiday trace, records per second.
pub const BASE_RATE: f64 = 2000.0;

/// Steady 90 min; ramp to 5x over 10 min; hold 60 min; decline over 30 min; steady 60 min;
/// an unannounced ramp to 4x over 3 min; hold 30 min; decline over 10 min; steady to 6 h.
pub fn holiday_trace() -> Trace {
    let m = |minutes: f64| minutes * 60.0;
    // (end minute, level at the end); linear from the previous point.
    let points = [
        (0.0, 1.0),
        (90.0, 1.0),
        (100.0, 5.0),
        (160.0, 5.0),
        (190.0, 1.0),
        (250.0, 1.0),
        (253.0, 4.0),
        (283.0, 4.0),
        (293.0, 1.0),
        (360.0, 1.0),
    ];
    let total = m(360.0) as usize;
    let mut rng = 0x2545_f491_4f6c_dd1d_u64;
    let mut rates = Vec::with_capacity(total);
    for t in 0..total {
        let minute = t as f64 / 60.0;
        let i = points.iter().position(|p| p.0 > minute).unwrap_or(points.len() - 1).max(1);
        let ((m0, l0), (m1, l1)) = (points[i - 1], points[i]);
        let level = if m1 > m0 { l0 + (l1 - l0) * ((minute - m0) / (m1 - m0)).clamp(0.0, 1.0) } else { l1 };
        // xorshift64*
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        let uniform = (rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64;
        let noise = 1.0 + 0.05 * (2.0 * uniform - 1.0) + 0.03 * (t as f64 / 600.0 * std::f64::consts::TAU).sin();
        rates.push(BASE_RATE * level * noise);
    }
    let steady = [(15.0, 90.0), (205.0, 250.0), (308.0, 360.0)];
    Trace { rates, steady: steady.iter().map(|(a, b)| (m(*a) as usize, m(*b) as usize)).collect() }
}

/// A scaling rule: asked every second, answers the desired replicas.
pub trait Rule {
    fn name(&self) -> String;
    fn desired(&mut self, t: usize, observed: &Observed, current: i32) -> i32;
}

/// What a rule can see at a second.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub end_offsets: i64,
    pub committed: i64,
    pub lag: i64,
    pub ready: i32,
    pub partitions: i32,
}

/// The operator's autoscaler, sampled every `interval` seconds.
pub struct Operator {
    pub policy: Policy,
    pub autoscaler: Autoscaler,
    pub interval: usize,
    pub bounds: Bounds,
    pub epoch: DateTime<Utc>,
}

impl Operator {
    pub fn new(policy: Policy, model: &Model) -> Self {
        let (cap, cap_reason) = if model.partitions < model.max_replicas {
            (model.partitions, "CappedAtPartitions")
        } else {
            (model.max_replicas, "CappedAtMaxReplicas")
        };
        Operator {
            policy,
            autoscaler: Autoscaler::new(),
            interval: 15,
            bounds: Bounds { floor: model.min_replicas, floor_reason: "MinReplicas".into(), cap, cap_reason },
            epoch: Utc.with_ymd_and_hms(2027, 11, 26, 0, 0, 0).single().unwrap_or_default(),
        }
    }
}

impl Rule for Operator {
    fn name(&self) -> String {
        "stockpulse autoscaler".into()
    }
    fn desired(&mut self, t: usize, o: &Observed, current: i32) -> i32 {
        if !t.is_multiple_of(self.interval) {
            return current;
        }
        let sample = Sample {
            at: self.epoch + Duration::seconds(t as i64),
            end_offsets: o.end_offsets,
            committed: o.committed,
            lag: o.lag,
            partitions: o.partitions,
            ready: o.ready,
        };
        self.autoscaler.decide(&self.policy, sample, current, &self.bounds).desired
    }
}

/// Always `replicas`.
pub struct Fixed(pub i32);

impl Rule for Fixed {
    fn name(&self) -> String {
        format!("fixed at maxReplicas ({})", self.0)
    }
    fn desired(&mut self, _t: usize, _o: &Observed, _current: i32) -> i32 {
        self.0
    }
}

/// KEDA's Kafka scaler through the HPA.
pub struct Keda {
    pub lag_threshold: i64,
    pub polling_interval: usize,
    pub cooldown: usize,
    pub min: i32,
    pub max: i32,
    /// (second, recommendation)
    history: Vec<(usize, i32)>,
}

impl Keda {
    pub fn new(lag_threshold: i64, model: &Model) -> Self {
        Keda {
            lag_threshold,
            polling_interval: 30,
            cooldown: 300,
            min: model.min_replicas,
            max: model.max_replicas.min(model.partitions),
            history: Vec::new(),
        }
    }
}

impl Rule for Keda {
    fn name(&self) -> String {
        format!("KEDA Kafka rule (lagThreshold {})", self.lag_threshold)
    }
    fn desired(&mut self, t: usize, o: &Observed, current: i32) -> i32 {
        if !t.is_multiple_of(self.polling_interval) {
            return current;
        }
        // The HPA with an AverageValue target: ceil(current x (lag / current) / threshold),
        // left alone within 10 % of the target.
        let ratio = o.lag as f64 / (self.lag_threshold as f64 * f64::from(current.max(1)));
        let rec =
            if (ratio - 1.0).abs() <= 0.1 { current } else { (o.lag as f64 / self.lag_threshold as f64).ceil() as i32 }
                .clamp(self.min, self.max);
        self.history.push((t, rec));
        self.history.retain(|(at, _)| t - at <= self.cooldown);
        if rec >= current {
            return rec;
        }
        self.history.iter().map(|(_, r)| *r).max().unwrap_or(rec).min(current)
    }
}

/// The figures of one rule over the trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub name: String,
    /// The largest lag, in seconds of the input rate at that moment.
    pub peak_lag_seconds: f64,
    /// The longest time from a lag peak above 5 s of input until the lag is back under
    /// 2 s of input.
    pub time_to_drain_seconds: usize,
    /// Pods (starting or ready) integrated over time.
    pub replica_minutes: f64,
    pub scale_changes: usize,
    pub scale_downs: usize,
    /// Scale-downs per hour during the settled steady periods.
    pub steady_scale_downs_per_hour: f64,
    /// Desired replicas every second.
    pub replicas: Vec<i32>,
    /// Lag in seconds of input every second.
    pub lag_seconds: Vec<f64>,
}

/// Replays `trace` against `model` under `rule`.
pub fn simulate(rule: &mut dyn Rule, trace: &Trace, model: &Model) -> Report {
    let mut pods: Vec<usize> = Vec::new(); // ready_at per pod
    let mut desired = rule.desired(0, &Observed::default_for(model), model.initial_replicas);
    // Start settled: the pods asked for at the start are ready.
    pods.resize(desired as usize, 0);
    let (mut end, mut processed, mut committed) = (0.0_f64, 0.0_f64, 0.0_f64);
    let mut paused_until = 0usize;
    let mut last_ready = desired;
    let (mut peak, mut replica_seconds) = (0.0_f64, 0.0_f64);
    let (mut changes, mut downs, mut steady_downs) = (0usize, 0usize, 0usize);
    let mut replicas = Vec::with_capacity(trace.rates.len());
    let mut lags = Vec::with_capacity(trace.rates.len());
    // Drain episodes: (peak lag in seconds of input, its second) while above 2 s of input.
    let mut episode: Option<(f64, usize)> = None;
    let mut longest_drain = 0usize;
    for (t, rate) in trace.rates.iter().copied().enumerate() {
        end += rate;
        let ready = pods.iter().filter(|at| **at <= t).count() as i32;
        if ready != last_ready {
            paused_until = t + model.rebalance_pause as usize;
            last_ready = ready;
        }
        if t >= paused_until && ready > 0 {
            let active = ready.min(model.partitions);
            let busiest = (model.partitions + active - 1) / active;
            let capacity = model.capacity_per_replica * f64::from(model.partitions) / f64::from(busiest);
            processed += capacity.min(end - processed);
        }
        let lag = (end - committed).max(0.0);
        let observed = Observed {
            end_offsets: end as i64,
            committed: committed as i64,
            lag: lag as i64,
            ready,
            partitions: model.partitions,
        };
        committed = processed;
        let lag_seconds = lag / rate.max(1.0);
        peak = peak.max(lag_seconds);
        lags.push(lag_seconds);
        match episode {
            None if lag_seconds > 5.0 => episode = Some((lag_seconds, t)),
            Some((p, _)) if lag_seconds > p => episode = Some((lag_seconds, t)),
            Some((_, at)) if lag_seconds < 2.0 => {
                longest_drain = longest_drain.max(t - at);
                episode = None;
            }
            _ => {}
        }
        let next = rule.desired(t, &observed, desired);
        if next != desired {
            changes += 1;
            if next < desired {
                downs += 1;
                if trace.steady.iter().any(|(a, b)| (*a..*b).contains(&t)) {
                    steady_downs += 1;
                }
            }
            desired = next;
        }
        let n = desired.max(0) as usize;
        if n > pods.len() {
            pods.extend(std::iter::repeat_n(t + model.start_delay as usize, n - pods.len()));
        } else {
            // The ReplicaSet removes pods not ready first, then the newest.
            pods.sort_unstable();
            pods.truncate(n);
        }
        replica_seconds += pods.len() as f64;
        replicas.push(desired);
    }
    if let Some((_, at)) = episode {
        longest_drain = longest_drain.max(trace.rates.len() - at);
    }
    let steady_hours: f64 = trace.steady.iter().map(|(a, b)| (b - a) as f64 / 3600.0).sum();
    Report {
        name: rule.name(),
        peak_lag_seconds: peak,
        time_to_drain_seconds: longest_drain,
        replica_minutes: replica_seconds / 60.0,
        scale_changes: changes,
        scale_downs: downs,
        steady_scale_downs_per_hour: if steady_hours > 0.0 { steady_downs as f64 / steady_hours } else { 0.0 },
        replicas,
        lag_seconds: lags,
    }
}

impl Observed {
    fn default_for(model: &Model) -> Self {
        Observed { end_offsets: 0, committed: 0, lag: 0, ready: model.initial_replicas, partitions: model.partitions }
    }
}

/// KEDA's default `lagThreshold` is 10 records for consumers that take about a second a
/// record: ten seconds of one replica's work. Scaled to this workload: ten seconds of
/// `capacity_per_replica`.
pub fn keda_threshold(model: &Model) -> i64 {
    (10.0 * model.capacity_per_replica) as i64
}

/// The autoscaler's policy in the simulation: the CRD's defaults, with the configured
/// capacity per replica left at its default (1000/s, above the model's true 600/s: it is
/// learned).
pub fn operator_policy() -> Policy {
    Policy::default()
}

/// The three rules on the holiday trace: this autoscaler, fixed at `maxReplicas`, KEDA.
pub fn holiday() -> (Model, Vec<Report>) {
    let model = Model::default();
    let trace = holiday_trace();
    let mut ours = Operator::new(operator_policy(), &model);
    let mut fixed = Fixed(model.max_replicas);
    let mut keda = Keda::new(keda_threshold(&model), &model);
    let reports = vec![
        simulate(&mut ours, &trace, &model),
        simulate(&mut fixed, &trace, &model),
        simulate(&mut keda, &trace, &model),
    ];
    (model, reports)
}

/// The reports as a Markdown table.
pub fn table(reports: &[Report]) -> String {
    let mut out = String::from(
        "| rule | peak lag (s of input) | time to drain (s) | replica-minutes | scale changes | scale-downs/h steady |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in reports {
        out.push_str(&format!(
            "| {} | {:.1} | {} | {:.0} | {} | {:.2} |\n",
            r.name,
            r.peak_lag_seconds,
            r.time_to_drain_seconds,
            r.replica_minutes,
            r.scale_changes,
            r.steady_scale_downs_per_hour
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The targets of the holiday: the simulation is deterministic, so the figures are exact
    /// (docs/autoscaling.md shows them; a change here is a change there).
    #[test]
    fn the_holiday_targets_hold() {
        let (_, reports) = holiday();
        let (ours, fixed, keda) = (&reports[0], &reports[1], &reports[2]);
        assert!(ours.peak_lag_seconds < 60.0, "{ours:?}");
        assert!(ours.replica_minutes <= 0.6 * fixed.replica_minutes, "{ours:?} {fixed:?}");
        assert!(ours.steady_scale_downs_per_hour <= 2.0, "{ours:?}");
        assert!(ours.peak_lag_seconds < keda.peak_lag_seconds, "{ours:?} {keda:?}");
        assert!(ours.replica_minutes <= keda.replica_minutes, "{ours:?} {keda:?}");
        let figures = |r: &Report| {
            (
                format!("{:.1}", r.peak_lag_seconds),
                r.time_to_drain_seconds,
                format!("{:.0}", r.replica_minutes),
                r.scale_changes,
            )
        };
        assert_eq!(figures(ours), ("38.7".into(), 60, "4358".into(), 20));
        assert_eq!(figures(fixed), ("1.0".into(), 0, "8640".into(), 0));
        assert_eq!(figures(keda), ("83.6".into(), 183, "5480".into(), 183));
    }

    #[test]
    fn the_trace_has_its_phases() {
        let trace = holiday_trace();
        assert_eq!(trace.rates.len(), 6 * 3600);
        let at = |minute: usize| trace.rates[minute * 60] / BASE_RATE;
        assert!((0.9..1.1).contains(&at(30)), "steady");
        assert!((4.5..5.5).contains(&at(130)), "the surge held");
        assert!((0.9..1.1).contains(&at(220)), "after the decline");
        assert!((3.6..4.4).contains(&at(270)), "the second surge");
    }
}

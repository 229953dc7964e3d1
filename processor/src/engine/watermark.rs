//! Event-time watermarks: bounded out-of-orderness per input partition, the minimum across
//! partitions, idle partitions left out, and never moving backwards.
//!
//! A partition's watermark is its highest event time minus `max_out_of_orderness`. A
//! partition that is caught up and has received nothing for `idle_timeout` of processing
//! time (given by ticks, never read from a clock here) stops holding the overall watermark
//! back, so a closed store does not freeze every window. A partition whose records are not
//! all processed yet is never idle ([`Watermarks::backlog`]), and a restored one starts
//! active. When every partition is idle, the overall watermark follows the most advanced one,
//! and the pipeline's clock where the engine is one task of several ([`Watermarks::follow`]).

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct PartitionClock {
    max_event_time: i64,
    last_active: i64,
    idle: bool,
}

/// The watermarks' state as a changelog keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WatermarkState {
    partitions: Vec<Option<PartitionClock>>,
    current: i64,
}

#[derive(Debug, Clone)]
pub struct Watermarks {
    bound: i64,
    idle_timeout: i64,
    partitions: Vec<Option<PartitionClock>>,
    current: i64,
}

impl Watermarks {
    pub fn new(max_out_of_orderness_ms: i64, idle_timeout_ms: i64) -> Self {
        Watermarks {
            bound: max_out_of_orderness_ms,
            idle_timeout: idle_timeout_ms,
            partitions: Vec::new(),
            current: i64::MIN,
        }
    }

    /// The overall watermark: every window ending at or before it may fire.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Starts tracking a partition (an assignment); it holds the watermark back until it
    /// receives an event or turns idle.
    pub fn assign(&mut self, partition: usize, now: i64) {
        if self.partitions.len() <= partition {
            self.partitions.resize(partition + 1, None);
        }
        if self.partitions[partition].is_none() {
            self.partitions[partition] =
                Some(PartitionClock { max_event_time: i64::MIN, last_active: now, idle: false });
        }
    }

    /// Stops tracking a partition (a revocation).
    pub fn revoke(&mut self, partition: usize) {
        if let Some(slot) = self.partitions.get_mut(partition) {
            *slot = None;
        }
        self.recompute();
    }

    /// Records an event; returns true when the overall watermark advanced.
    pub fn observe(&mut self, partition: usize, event_time: i64, now: i64) -> bool {
        self.assign(partition, now);
        let Some(clock) = self.partitions[partition].as_mut() else { return false };
        let was_idle = clock.idle;
        clock.last_active = now;
        clock.idle = false;
        if event_time > clock.max_event_time || was_idle {
            clock.max_event_time = clock.max_event_time.max(event_time);
            return self.recompute();
        }
        false
    }

    /// The inputs hold records not processed yet (fetched or still on the broker): every
    /// partition counts as active at `now`, so none turns idle while it has work.
    pub fn backlog(&mut self, now: i64) {
        for clock in self.partitions.iter_mut().flatten() {
            clock.last_active = clock.last_active.max(now);
            clock.idle = false;
        }
    }

    /// Takes the pipeline's clock (the other tasks' watermarks) while every partition here is
    /// idle: a quiet task closes its windows with the rest. Returns true when the overall
    /// watermark advanced.
    pub fn follow(&mut self, pipeline: i64) -> bool {
        if !self.all_idle() || pipeline <= self.current {
            return false;
        }
        self.current = pipeline;
        true
    }

    /// Advances processing time; partitions silent for `idle_timeout` turn idle. Returns true
    /// when the overall watermark advanced.
    pub fn tick(&mut self, now: i64) -> bool {
        let mut changed = false;
        for clock in self.partitions.iter_mut().flatten() {
            if !clock.idle && now.saturating_sub(clock.last_active) >= self.idle_timeout {
                clock.idle = true;
                changed = true;
            }
        }
        changed && self.recompute()
    }

    /// Where each partition stands and the overall watermark, for a changelog.
    pub fn state(&self) -> WatermarkState {
        WatermarkState { partitions: self.partitions.clone(), current: self.current }
    }

    /// Restores what [`Watermarks::state`] gave. Every partition starts active at `now`: its
    /// silence before the restore says nothing of the records waiting for the new owner.
    pub fn restore(&mut self, state: WatermarkState, now: i64) {
        self.partitions = state.partitions;
        for clock in self.partitions.iter_mut().flatten() {
            clock.last_active = now;
            clock.idle = false;
        }
        self.current = state.current;
    }

    /// Whether every tracked partition is idle (or none is tracked).
    pub fn all_idle(&self) -> bool {
        self.partitions.iter().flatten().all(|c| c.idle)
    }

    /// End of input: every window may fire.
    pub fn finish(&mut self) {
        self.current = i64::MAX;
    }

    fn partition_watermark(&self, clock: &PartitionClock) -> i64 {
        if clock.max_event_time == i64::MIN { i64::MIN } else { clock.max_event_time.saturating_sub(self.bound) }
    }

    fn recompute(&mut self) -> bool {
        let active = self.partitions.iter().flatten().filter(|c| !c.idle).map(|c| self.partition_watermark(c)).min();
        let candidate = match active {
            Some(min) => min,
            None => self.partitions.iter().flatten().map(|c| self.partition_watermark(c)).max().unwrap_or(i64::MIN),
        };
        if candidate > self.current {
            self.current = candidate;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_across_partitions_minus_the_bound() {
        let mut w = Watermarks::new(30, 1_000);
        w.assign(0, 0);
        w.assign(1, 0);
        assert!(!w.observe(0, 1_000, 0), "partition 1 has seen nothing yet");
        assert_eq!(w.current(), i64::MIN);
        assert!(w.observe(1, 500, 0));
        assert_eq!(w.current(), 470);
        assert!(w.observe(1, 2_000, 0));
        assert_eq!(w.current(), 970);
        assert!(!w.observe(1, 1_500, 0), "an older event does not move it");
    }

    #[test]
    fn idle_partition_stops_holding_back_and_watermark_never_regresses() {
        let mut w = Watermarks::new(0, 1_000);
        w.observe(0, 100, 0);
        w.observe(1, 5_000, 0);
        assert_eq!(w.current(), 100);
        assert!(!w.tick(999));
        w.observe(1, 6_000, 900);
        assert!(w.tick(1_000), "partition 0 silent for the idle timeout");
        assert_eq!(w.current(), 6_000);
        w.observe(0, 200, 1_100);
        assert_eq!(w.current(), 6_000, "a partition waking up does not pull it back");
    }

    #[test]
    fn a_partition_with_a_backlog_never_turns_idle() {
        let mut w = Watermarks::new(0, 1_000);
        w.observe(0, 100, 0);
        w.observe(1, 5_000, 0);
        w.backlog(900);
        assert!(!w.tick(1_500), "active at 900: not silent for the idle timeout yet");
        assert_eq!(w.current(), 100);
        assert!(w.tick(1_900));
        assert_eq!(w.current(), 5_000);
    }

    #[test]
    fn a_restored_partition_starts_active_whatever_it_was() {
        let mut w = Watermarks::new(0, 1_000);
        w.observe(0, 100, 0);
        w.observe(1, 5_000, 0);
        w.tick(2_000);
        assert!(w.all_idle());
        let mut restored = Watermarks::new(0, 1_000);
        restored.restore(w.state(), 10_000);
        assert!(!restored.all_idle());
        assert!(!restored.tick(10_999));
        assert!(!restored.follow(9_000), "an active task keeps its own clock");
        assert!(!restored.tick(11_000), "idle again, at the watermark it had");
        assert!(restored.follow(9_000));
        assert_eq!(restored.current(), 9_000);
        assert!(!restored.follow(8_000), "never backwards");
    }

    #[test]
    fn all_idle_follows_the_most_advanced() {
        let mut w = Watermarks::new(10, 100);
        w.assign(0, 0);
        w.assign(1, 0);
        w.observe(0, 1_000, 0);
        w.observe(1, 300, 0);
        assert_eq!(w.current(), 290);
        w.tick(500);
        assert_eq!(w.current(), 990);
        w.finish();
        assert_eq!(w.current(), i64::MAX);
    }
}

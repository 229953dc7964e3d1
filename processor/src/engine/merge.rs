//! The repartition stage's merge: windows grouped without `store` on several tasks.
//!
//! Such a window (say sales by region and channel) gets events from every task, since every
//! task holds some of the region's stores. Each task computes its own **partial** figures for
//! the window with its own watermark and lateness, exactly as it would a window grouped by
//! store, and sends them, with their revision, to the repartition topic keyed by window and
//! group. It also sends its watermark to every repartition partition at each commit. The task
//! that owns a group's repartition partition merges:
//!
//! - it keeps the latest partial of each upstream task (a higher revision replaces a lower;
//!   a repeat is ignored, so at-least-once delivery counts nothing twice);
//! - its watermark is the minimum of every upstream task's watermark, idle tasks included, so
//!   a window fires only once every task has sent its partial or said, by a watermark past
//!   the window's end, that it has none. An idle task does not hold it back for long: it takes
//!   the pipeline's clock ([`Merge::pipeline_clock`]), fires its own windows and reports the
//!   watermark it took;
//! - when it fires, the record is the sum of the partials, and every partial that arrives
//!   later (a task's late-event correction) re-emits the sum;
//! - the revision of a merged record is the sum of the partials' revisions: it grows with
//!   every change, and the last record of a key has the same figures and revision whatever
//!   the order in which the tasks' partials arrived. Two, three or one instances give the
//!   same last values. (It is not the revision one engine would give the window: that counts
//!   corrections, and whether a partial came before or after its task passed the window's
//!   end is not an order the merge can count on after a restore.)
//!
//! State of a window is kept until every upstream task is past its allowed lateness; a
//! partial that arrives after that (an idle task that wakes up far behind) is counted as late
//! and left out, as one engine would leave out the events behind it.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::figures::Figures;
use super::state::StateChange;
use crate::output::AggregateRecord;

/// A window's group by names: store, sku, region, category, channel (`None` where the window
/// does not group by it) and currency.
pub type GroupNames = [Option<String>; 6];

/// What goes through the repartition topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RepartitionRecord {
    /// One task's figures for a window and group.
    Partial(Box<Partial>),
    /// Where a task's watermark stands; sent to every repartition partition.
    Watermark { task: u32, watermark: i64, idle: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub task: u32,
    pub window: String,
    pub start: i64,
    pub end: i64,
    pub group: GroupNames,
    pub figures: Figures,
    pub revision: u32,
}

impl Partial {
    /// The repartition key: window and group, so every task's partial of a group goes to the
    /// same partition, and so does every window of the group: the task that merges a group
    /// sees all of its windows in order, as one engine would (a sales-spike rule compares a
    /// window with the group's windows before it). Keyed by start as well, a group's windows
    /// were spread over the merging tasks, and each judged spikes on the few it saw.
    pub fn key(&self) -> String {
        let mut key = self.window.to_string();
        for name in self.group.iter().flatten() {
            key.push('|');
            key.push_str(name);
        }
        key
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamClock {
    pub watermark: i64,
    pub idle: bool,
}

/// A merged window's state key: ordered by end, so firing walks it in order.
type EntryKey = (i64, String, i64, GroupNames);

/// One upstream task's latest partial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartialState {
    pub figures: Figures,
    pub revision: u32,
}

/// Why a repartition record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("repartition record of task {task}, but the pipeline has {tasks} tasks")]
    UnknownTask { task: u32, tasks: u32 },
    #[error("partial of window {window} at {start}: it ends at {end}, before it starts")]
    BadWindow { window: String, start: i64, end: i64 },
}

#[derive(Debug)]
pub struct Merge {
    tasks: u32,
    lateness: i64,
    clocks: Vec<Option<UpstreamClock>>,
    merged: i64,
    entries: BTreeMap<EntryKey, BTreeMap<u32, PartialState>>,
    /// Partials that came after their window's state was dropped.
    pub late_partials: u64,
    changes: Option<Vec<StateChange>>,
}

fn json<T: Serialize>(value: &T) -> String {
    // Plain data of strings and integers: serialization cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

impl Merge {
    /// The merge of `tasks` upstream tasks, keeping windows `allowed_lateness_ms` past their end.
    pub fn new(tasks: u32, allowed_lateness_ms: i64) -> Self {
        Merge {
            tasks,
            lateness: allowed_lateness_ms,
            clocks: vec![None; tasks as usize],
            merged: i64::MIN,
            entries: BTreeMap::new(),
            late_partials: 0,
            changes: None,
        }
    }

    /// Merged window groups held (for metrics).
    pub fn groups(&self) -> usize {
        self.entries.len()
    }

    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    pub fn drain_changes(&mut self, out: &mut Vec<StateChange>) {
        if let Some(changes) = self.changes.as_mut() {
            out.append(changes);
        }
    }

    fn record(&mut self, key: String, value: Option<String>) {
        if let Some(changes) = self.changes.as_mut() {
            changes.push(StateChange { key, value });
        }
    }

    fn expired(&self, end: i64) -> bool {
        self.merged != i64::MIN && end.saturating_add(self.lateness) <= self.merged
    }

    /// Takes one repartition record; merged aggregates go to `out`.
    pub fn apply(&mut self, record: RepartitionRecord, out: &mut Vec<AggregateRecord>) -> Result<(), MergeError> {
        match record {
            RepartitionRecord::Partial(partial) => self.partial(*partial, out),
            RepartitionRecord::Watermark { task, watermark, idle } => {
                self.upstream_watermark(task, watermark, idle, out)
            }
        }
    }

    fn check_task(&self, task: u32) -> Result<(), MergeError> {
        if task < self.tasks { Ok(()) } else { Err(MergeError::UnknownTask { task, tasks: self.tasks }) }
    }

    fn partial(&mut self, partial: Partial, out: &mut Vec<AggregateRecord>) -> Result<(), MergeError> {
        self.check_task(partial.task)?;
        if partial.end <= partial.start {
            return Err(MergeError::BadWindow { window: partial.window, start: partial.start, end: partial.end });
        }
        if self.expired(partial.end) {
            self.late_partials += 1;
            return Ok(());
        }
        let entry_key: EntryKey = (partial.end, partial.window, partial.start, partial.group);
        let partials = self.entries.entry(entry_key.clone()).or_default();
        if partials.get(&partial.task).is_some_and(|known| known.revision >= partial.revision) {
            return Ok(()); // a repeat, or an older revision delivered again
        }
        let state = PartialState { figures: partial.figures, revision: partial.revision };
        partials.insert(partial.task, state);
        let fired = entry_key.0 <= self.merged;
        if fired {
            out.push(merged_record(&entry_key, partials));
        }
        self.record(partial_state_key(&entry_key, partial.task), Some(json(&state)));
        Ok(())
    }

    fn upstream_watermark(
        &mut self,
        task: u32,
        watermark: i64,
        idle: bool,
        out: &mut Vec<AggregateRecord>,
    ) -> Result<(), MergeError> {
        self.check_task(task)?;
        let slot = &mut self.clocks[task as usize];
        let clock = UpstreamClock { watermark: slot.map_or(watermark, |c| c.watermark.max(watermark)), idle };
        if *slot == Some(clock) {
            return Ok(());
        }
        *slot = Some(clock);
        self.record(json(&("mwm", task)), Some(json(&clock)));
        self.advance(out);
        Ok(())
    }

    /// The minimum of every upstream task's watermark, idle ones included (each has fired its
    /// partials up to its watermark before reporting it); `i64::MIN` until every task has
    /// reported.
    fn combined(&self) -> i64 {
        let mut least = i64::MAX;
        for clock in &self.clocks {
            let Some(clock) = clock else { return i64::MIN };
            least = least.min(clock.watermark);
        }
        least
    }

    /// The pipeline's clock as task `own` (whose live clock is `own_clock`) sees it: the
    /// minimum of the watermarks of the tasks that are not idle, or when every task is idle
    /// the most advanced one; `i64::MIN` until every task has reported. An idle task takes it,
    /// so a partition that went quiet holds back no window anywhere, and closes its own.
    pub fn pipeline_clock(&self, own: u32, own_clock: UpstreamClock) -> i64 {
        let mut active = i64::MAX;
        let mut most = i64::MIN;
        for (task, clock) in self.clocks.iter().enumerate() {
            let clock = if task == own as usize { Some(own_clock) } else { *clock };
            let Some(clock) = clock else { return i64::MIN };
            most = most.max(clock.watermark);
            if !clock.idle {
                active = active.min(clock.watermark);
            }
        }
        if active < i64::MAX { active } else { most }
    }

    fn advance(&mut self, out: &mut Vec<AggregateRecord>) {
        let combined = self.combined();
        if combined <= self.merged {
            return;
        }
        self.fire(combined, out);
    }

    /// Every window ending at or before `watermark` and not fired yet fires; state past its
    /// lateness is dropped.
    fn fire(&mut self, watermark: i64, out: &mut Vec<AggregateRecord>) {
        let before = self.merged;
        self.merged = watermark;
        self.record(json(&("merge",)), Some(json(&self.merged)));
        for (key, partials) in &self.entries {
            if key.0 > watermark {
                break;
            }
            if key.0 > before {
                out.push(merged_record(key, partials));
            }
        }
        let live: Vec<EntryKey> = self.entries.keys().filter(|k| !self.expired(k.0)).cloned().collect();
        let mut kept = BTreeMap::new();
        for key in live {
            if let Some(partials) = self.entries.remove(&key) {
                kept.insert(key, partials);
            }
        }
        let gone = std::mem::replace(&mut self.entries, kept);
        for (key, partials) in gone {
            for task in partials.keys() {
                self.record(partial_state_key(&key, *task), None);
            }
        }
    }

    /// End of input: every window fires.
    pub fn finish(&mut self, out: &mut Vec<AggregateRecord>) {
        if self.merged < i64::MAX {
            self.fire(i64::MAX, out);
        }
    }

    /// Restores one changelog entry of the merge (`parts` is its key as a JSON array).
    pub fn restore(&mut self, parts: &[serde_json::Value], value: &str) -> Result<(), String> {
        match parts.first().and_then(serde_json::Value::as_str) {
            Some("merge") => {
                self.merged = serde_json::from_str(value).map_err(|e| e.to_string())?;
            }
            Some("mwm") => {
                let task = parts.get(1).and_then(serde_json::Value::as_u64).ok_or("expected [\"mwm\", task]")?;
                let clock: UpstreamClock = serde_json::from_str(value).map_err(|e| e.to_string())?;
                let slot = usize::try_from(task).ok().and_then(|t| self.clocks.get_mut(t));
                // A changelog of a pipeline with more tasks than now: that task is gone.
                if let Some(slot) = slot {
                    *slot = Some(clock);
                }
            }
            Some("mp") => {
                let parsed: (String, String, i64, i64, GroupNames, u32) =
                    serde_json::from_value(serde_json::Value::Array(parts.to_vec()))
                        .map_err(|_| "expected [\"mp\", window, start, end, group, task]".to_string())?;
                let (_, window, start, end, group, task) = parsed;
                let state: PartialState = serde_json::from_str(value).map_err(|e| e.to_string())?;
                self.entries.entry((end, window, start, group)).or_default().insert(task, state);
            }
            _ => return Err("unknown kind of merge state".into()),
        }
        Ok(())
    }
}

fn partial_state_key(key: &EntryKey, task: u32) -> String {
    json(&("mp", &key.1, key.2, key.0, &key.3, task))
}

fn merged_record(key: &EntryKey, partials: &BTreeMap<u32, PartialState>) -> AggregateRecord {
    let (end, window, start, group) = key;
    let mut figures = Figures::default();
    let mut revision = 0u32;
    for partial in partials.values() {
        figures.add(&partial.figures);
        revision = revision.saturating_add(partial.revision);
    }
    let name = |slot: usize| group[slot].as_deref().map(Arc::from);
    AggregateRecord {
        window: Arc::from(window.as_str()),
        window_start: *start,
        window_end: *end,
        store_id: name(0),
        sku_id: name(1),
        region: name(2),
        category: name(3),
        channel: name(4),
        currency: name(5).unwrap_or_else(|| Arc::from("")),
        units_sold: figures.units_sold,
        units_returned: figures.units_returned,
        gross_revenue: figures.gross_revenue,
        returns_revenue: figures.returns_revenue,
        net_revenue: figures.net_revenue(),
        transactions: figures.transactions,
        revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    const MIN: i64 = 60_000;

    fn group(region: &str) -> GroupNames {
        [None, None, Some(region.into()), None, Some("STORE".into()), Some("EUR".into())]
    }

    fn partial(task: u32, start_min: i64, region: &str, units: i64, revision: u32) -> RepartitionRecord {
        RepartitionRecord::Partial(Box::new(Partial {
            task,
            window: "region-5m".into(),
            start: start_min * MIN,
            end: (start_min + 5) * MIN,
            group: group(region),
            figures: Figures {
                units_sold: units,
                gross_revenue: Decimal::from(units * 10),
                transactions: 1,
                ..Figures::default()
            },
            revision,
        }))
    }

    fn mark(task: u32, minute: i64, idle: bool) -> RepartitionRecord {
        RepartitionRecord::Watermark { task, watermark: minute * MIN, idle }
    }

    fn apply(merge: &mut Merge, records: Vec<RepartitionRecord>) -> Vec<(String, i64, u32)> {
        let mut out = Vec::new();
        for record in records {
            merge.apply(record, &mut out).unwrap();
        }
        out.iter().map(|r| (r.region.as_deref().unwrap_or("").to_string(), r.units_sold, r.revision)).collect()
    }

    #[test]
    fn fires_once_every_task_is_past_the_end_with_the_sum_of_the_partials() {
        let mut merge = Merge::new(2, 10 * MIN);
        let out = apply(&mut merge, vec![partial(0, 0, "EU", 3, 1), mark(0, 6, false), partial(1, 0, "EU", 4, 1)]);
        assert!(out.is_empty(), "task 1 has not reported its watermark: {out:?}");
        let out = apply(&mut merge, vec![mark(1, 5, false)]);
        assert_eq!(out, vec![("EU".to_string(), 7, 2)]);
        // A correction of task 1 re-emits the sum, one revision up.
        let out = apply(&mut merge, vec![partial(1, 0, "EU", 5, 2)]);
        assert_eq!(out, vec![("EU".to_string(), 8, 3)]);
        // A repeat (at-least-once delivery) changes nothing.
        let out = apply(&mut merge, vec![partial(1, 0, "EU", 5, 2), partial(1, 0, "EU", 4, 1)]);
        assert!(out.is_empty());
    }

    #[test]
    fn a_partial_that_comes_after_the_window_fired_re_emits_it() {
        let mut merge = Merge::new(2, 10 * MIN);
        let out = apply(&mut merge, vec![partial(0, 0, "EU", 3, 1), mark(0, 6, false), mark(1, 6, false)]);
        assert_eq!(out, vec![("EU".to_string(), 3, 1)]);
        // A late event on task 1, in a group it had no figures for: its first partial.
        let out = apply(&mut merge, vec![partial(1, 0, "EU", 4, 1)]);
        assert_eq!(out, vec![("EU".to_string(), 7, 2)], "re-emitted, one revision up");
    }

    #[test]
    fn the_last_value_does_not_depend_on_arrival_order() {
        let records = vec![
            partial(0, 0, "EU", 3, 1),
            partial(1, 0, "EU", 4, 1),
            mark(0, 6, false),
            partial(0, 0, "EU", 6, 2),
            mark(1, 7, false),
            partial(1, 0, "EU", 5, 2),
            mark(0, 30, false),
            mark(1, 30, false),
        ];
        // Each task's own records stay in order (one producer per partition); the two
        // tasks' records interleave in every possible way.
        let (zero, one): (Vec<_>, Vec<_>) = records.into_iter().partition(|r| match r {
            RepartitionRecord::Partial(p) => p.task == 0,
            RepartitionRecord::Watermark { task, .. } => *task == 0,
        });
        let mut lasts = std::collections::BTreeSet::new();
        for mask in 0u32..(1 << (zero.len() + one.len())) {
            if mask.count_ones() as usize != zero.len() {
                continue;
            }
            let (mut a, mut b) = (zero.iter(), one.iter());
            let order: Vec<RepartitionRecord> = (0..zero.len() + one.len())
                .filter_map(|i| if mask & (1 << i) != 0 { a.next() } else { b.next() }.cloned())
                .collect();
            let mut merge = Merge::new(2, 10 * MIN);
            lasts.insert(apply(&mut merge, order).last().cloned());
        }
        assert_eq!(lasts.into_iter().collect::<Vec<_>>(), vec![Some(("EU".to_string(), 11, 4))]);
    }

    #[test]
    fn a_merged_window_waits_for_every_task_idle_ones_included_and_late_partials_are_left_out() {
        let mut merge = Merge::new(3, 5 * MIN);
        let out = apply(
            &mut merge,
            vec![partial(0, 0, "EU", 1, 1), mark(0, 20, false), mark(1, 20, false), mark(2, 3, true)],
        );
        assert!(out.is_empty(), "task 2 is idle at minute 3: its part of 0-5 may still come");
        // Task 2 took the pipeline's clock and reports it: it has nothing for the window.
        let out = apply(&mut merge, vec![mark(2, 20, true)]);
        assert_eq!(out, vec![("EU".to_string(), 1, 1)]);
        assert_eq!(merge.groups(), 0, "past its lateness: dropped");
        let out = apply(&mut merge, vec![partial(2, 0, "EU", 9, 1)]);
        assert!(out.is_empty());
        assert_eq!(merge.late_partials, 1);
    }

    #[test]
    fn the_pipeline_clock_is_the_least_active_task_or_the_most_advanced_when_all_are_idle() {
        let mut merge = Merge::new(3, 5 * MIN);
        let own = |minute: i64, idle| UpstreamClock { watermark: minute * MIN, idle };
        assert_eq!(merge.pipeline_clock(2, own(1, true)), i64::MIN, "tasks 0 and 1 not heard from");
        apply(&mut merge, vec![mark(0, 20, false), mark(1, 12, false)]);
        assert_eq!(merge.pipeline_clock(2, own(1, true)), 12 * MIN);
        apply(&mut merge, vec![mark(1, 12, true)]);
        assert_eq!(merge.pipeline_clock(2, own(1, true)), 20 * MIN, "idle tasks hold nothing back");
        apply(&mut merge, vec![mark(0, 20, true)]);
        assert_eq!(merge.pipeline_clock(2, own(25, true)), 25 * MIN, "all idle: the most advanced");
        assert_eq!(merge.pipeline_clock(2, own(3, false)), 3 * MIN, "its own clock is the live one");
    }

    #[test]
    fn unknown_tasks_are_refused() {
        let mut merge = Merge::new(2, 0);
        let mut out = Vec::new();
        assert_eq!(
            merge.apply(mark(2, 1, false), &mut out).unwrap_err().to_string(),
            "repartition record of task 2, but the pipeline has 2 tasks"
        );
    }

    #[test]
    fn restored_state_continues_the_same() {
        let mut merge = Merge::new(2, 10 * MIN);
        merge.track_changes();
        apply(&mut merge, vec![partial(0, 0, "EU", 3, 1), mark(0, 6, false), partial(1, 0, "EU", 4, 1)]);
        let mut changes = Vec::new();
        merge.drain_changes(&mut changes);
        let mut restored = Merge::new(2, 10 * MIN);
        for change in &changes {
            let parts: Vec<serde_json::Value> = serde_json::from_str(&change.key).unwrap();
            restored.restore(&parts, change.value.as_deref().unwrap()).unwrap();
        }
        let next = vec![mark(1, 8, false), partial(0, 0, "EU", 5, 2)];
        assert_eq!(apply(&mut restored, next.clone()), apply(&mut merge, next));
    }
}

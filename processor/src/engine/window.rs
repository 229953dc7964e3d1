//! Event-time windows over panes: tumbling and sliding (hopping) in one operator.
//!
//! A window of `size` starting every `step` (step = size for tumbling) is the sum of
//! `size / step` consecutive panes of `step`. Each event updates exactly one pane, whatever
//! the overlap, and a window is summed from its panes when it fires. Pane `j` covers
//! `[j*step, (j+1)*step)`; window `k` covers panes `k .. k+n` and ends at `(k+n)*step`.
//!
//! Firing: when the watermark reaches a window's end, every group with data in it emits
//! revision 1. Lateness: an event for a window that has fired but whose end is less than
//! `allowed_lateness` behind the watermark updates the pane and re-emits that group's figures
//! with the next revision. Past that, the window has missed the event: the caller sends it
//! to the late output. State of a pane is kept until its last window can no longer change.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::{FxHashMap, FxHashSet};

use super::figures::Figures;

/// Interned group-by values: store, sku, region, category, channel, currency;
/// [`super::intern::NONE`] where the window does not group by that dimension.
pub type GroupKey = [u32; 6];

/// A window's figures for one group, ready to become an output record.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowResult {
    pub start: i64,
    pub end: i64,
    pub key: GroupKey,
    pub figures: Figures,
    pub revision: u32,
}

type Groups = FxHashMap<GroupKey, Figures>;

/// The panes held in memory, ordered by index. Few (a window's worth plus the lateness) and
/// nearly always hit at the newest end, so a sorted deque beats a tree.
#[derive(Debug, Default)]
struct Panes(VecDeque<(i64, Groups)>);

impl Panes {
    fn get_or_insert(&mut self, pane: i64) -> &mut Groups {
        let at = self.0.iter().rposition(|(p, _)| *p <= pane);
        let index = match at {
            Some(i) if self.0[i].0 == pane => i,
            Some(i) => {
                self.0.insert(i + 1, (pane, self.sized_like_the_newest()));
                i + 1
            }
            None => {
                self.0.push_front((pane, self.sized_like_the_newest()));
                0
            }
        };
        &mut self.0[index].1
    }

    /// An empty pane with room for as many groups as the newest pane has: panes fill up
    /// alike, so this spares growing the new one step by step.
    fn sized_like_the_newest(&self) -> Groups {
        let groups = self.0.back().map_or(0, |(_, g)| g.len());
        Groups::with_capacity_and_hasher(groups, Default::default())
    }

    fn get(&self, pane: i64) -> Option<&Groups> {
        let at = self.0.partition_point(|(p, _)| *p < pane);
        self.0.get(at).filter(|(p, _)| *p == pane).map(|(_, g)| g)
    }

    /// The panes with index in `from..to`.
    fn range(&self, from: i64, to: i64) -> impl Iterator<Item = &Groups> {
        let start = self.0.partition_point(|(p, _)| *p < from);
        self.0.range(start..).take_while(move |(p, _)| *p < to).map(|(_, g)| g)
    }

    fn first(&self) -> Option<i64> {
        self.0.front().map(|(p, _)| *p)
    }

    fn last(&self) -> Option<i64> {
        self.0.back().map(|(p, _)| *p)
    }

    /// The first pane index at or after `pane`.
    fn next_from(&self, pane: i64) -> Option<i64> {
        let start = self.0.partition_point(|(p, _)| *p < pane);
        self.0.get(start).map(|(p, _)| *p)
    }
}

#[derive(Debug)]
pub struct WindowOperator {
    step: i64,
    panes_per_window: i64,
    lateness: i64,
    panes: Panes,
    /// Revisions emitted per fired window (by window index) and group.
    revisions: BTreeMap<i64, FxHashMap<GroupKey, u32>>,
    /// Every window ending at or before this has fired.
    fired_through: i64,
    /// The end of the earliest unfired window that holds data (i64::MAX when none).
    next_due: i64,
    /// What changed since the last [`WindowOperator::drain_changes`], when a changelog is kept.
    changes: Option<Box<WindowChanges>>,
}

/// Pane groups and revisions changed or dropped since the last drain.
#[derive(Debug, Default)]
struct WindowChanges {
    panes: FxHashSet<(i64, GroupKey)>,
    revisions: FxHashSet<(i64, GroupKey)>,
    gone_panes: Vec<(i64, GroupKey)>,
    gone_revisions: Vec<(i64, GroupKey)>,
}

/// One changed piece of a window operator's state, for the changelog; `None` = dropped.
#[derive(Debug, Clone, PartialEq)]
pub enum WindowEntry {
    Pane { pane: i64, key: GroupKey, figures: Option<Figures> },
    Revision { window: i64, key: GroupKey, revision: Option<u32> },
}

/// Where firing stands: restored with the panes so that nothing fires twice or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowProgress {
    pub step: i64,
    pub panes_per_window: i64,
    pub fired_through: i64,
    pub next_due: i64,
}

/// What happened to one event in one window operator.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Windows of this operator that had already passed their allowed lateness.
    pub missed_windows: u32,
    /// Corrected results emitted for fired windows.
    pub corrections: u32,
}

impl WindowOperator {
    pub fn new(size_ms: i64, step_ms: i64, allowed_lateness_ms: i64) -> Self {
        WindowOperator {
            step: step_ms,
            panes_per_window: (size_ms / step_ms).max(1),
            lateness: allowed_lateness_ms,
            panes: Panes::default(),
            revisions: BTreeMap::new(),
            fired_through: i64::MIN,
            next_due: i64::MAX,
            changes: None,
        }
    }

    /// Starts recording what changes, for [`WindowOperator::drain_changes`].
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Box::default);
    }

    /// Hands out every pane group and revision changed or dropped since the last call.
    pub fn drain_changes(&mut self, mut visit: impl FnMut(WindowEntry)) {
        let Some(changes) = self.changes.as_mut() else { return };
        for (pane, key) in changes.panes.drain() {
            if let Some(figures) = self.panes.get(pane).and_then(|groups| groups.get(&key)) {
                visit(WindowEntry::Pane { pane, key, figures: Some(*figures) });
            }
        }
        for (window, key) in changes.revisions.drain() {
            if let Some(revision) = self.revisions.get(&window).and_then(|groups| groups.get(&key)) {
                visit(WindowEntry::Revision { window, key, revision: Some(*revision) });
            }
        }
        for (pane, key) in changes.gone_panes.drain(..) {
            visit(WindowEntry::Pane { pane, key, figures: None });
        }
        for (window, key) in changes.gone_revisions.drain(..) {
            visit(WindowEntry::Revision { window, key, revision: None });
        }
    }

    pub fn progress(&self) -> WindowProgress {
        WindowProgress {
            step: self.step,
            panes_per_window: self.panes_per_window,
            fired_through: self.fired_through,
            next_due: self.next_due,
        }
    }

    /// Restores one changelog entry (the last one of its key).
    pub fn restore(&mut self, entry: WindowEntry) {
        match entry {
            WindowEntry::Pane { pane, key, figures: Some(figures) } => {
                self.panes.get_or_insert(pane).insert(key, figures);
            }
            WindowEntry::Revision { window, key, revision: Some(revision) } => {
                self.revisions.entry(window).or_default().insert(key, revision);
            }
            WindowEntry::Pane { figures: None, .. } | WindowEntry::Revision { revision: None, .. } => {}
        }
    }

    /// Restores where firing stood; `false` (and nothing restored) when the window's size or
    /// step differs from the one the changelog was written with.
    pub fn restore_progress(&mut self, progress: WindowProgress) -> bool {
        if progress.step != self.step || progress.panes_per_window != self.panes_per_window {
            return false;
        }
        self.fired_through = progress.fired_through;
        self.next_due = progress.next_due;
        true
    }

    fn window_end(&self, k: i64) -> i64 {
        (k + self.panes_per_window).saturating_mul(self.step)
    }

    fn expired(&self, k: i64, watermark: i64) -> bool {
        watermark != i64::MIN && self.window_end(k).saturating_add(self.lateness) <= watermark
    }

    /// Adds an event's figures at `event_time` for `key`; corrections go to `results`.
    pub fn add(
        &mut self,
        event_time: i64,
        key: GroupKey,
        delta: &Figures,
        watermark: i64,
        results: &mut Vec<WindowResult>,
    ) -> Placement {
        let pane = event_time.div_euclid(self.step);
        let first_window = pane - self.panes_per_window + 1;
        let mut placement = Placement::default();
        let live_from = (first_window..=pane).find(|&k| !self.expired(k, watermark));
        placement.missed_windows = match live_from {
            Some(k) => (k - first_window) as u32,
            None => self.panes_per_window as u32,
        };
        let Some(live_from) = live_from else {
            return placement;
        };
        // A fired window that gets this event emits a correction. Its revision follows the
        // group's last one: 1 if the window fired with the group in it, none if the group is new
        // to it. Only corrections are remembered; a window fires once, always as revision 1.
        let corrects = self.window_end(live_from) <= self.fired_through;
        let in_pane_before = corrects && self.panes.get(pane).is_some_and(|groups| groups.contains_key(&key));
        self.panes.get_or_insert(pane).entry(key).or_default().add(delta);
        if let Some(changes) = self.changes.as_mut() {
            changes.panes.insert((pane, key));
        }
        for k in live_from..=pane {
            if self.window_end(k) <= self.fired_through {
                let had_group = in_pane_before || self.in_other_panes(k, pane, &key);
                let figures = self.sum(k, &key);
                let end = self.window_end(k);
                let revision = self.revisions.entry(k).or_default().entry(key).or_insert(if had_group { 1 } else { 0 });
                *revision += 1;
                if let Some(changes) = self.changes.as_mut() {
                    changes.revisions.insert((k, key));
                }
                results.push(WindowResult { start: k * self.step, end, key, figures, revision: *revision });
                placement.corrections += 1;
            } else {
                self.next_due = self.next_due.min(self.window_end(k));
                break;
            }
        }
        placement
    }

    /// Whether a pane of window `k` other than `pane` holds the group.
    fn in_other_panes(&self, k: i64, pane: i64, key: &GroupKey) -> bool {
        (k..k + self.panes_per_window)
            .filter(|&p| p != pane)
            .any(|p| self.panes.get(p).is_some_and(|groups| groups.contains_key(key)))
    }

    /// The figures of window `k` for one group.
    fn sum(&self, k: i64, key: &GroupKey) -> Figures {
        let mut total = Figures::default();
        for groups in self.panes.range(k, k + self.panes_per_window) {
            if let Some(f) = groups.get(key) {
                total.add(f);
            }
        }
        total
    }

    /// Fires every window that ends at or before `watermark`, then drops state that can no
    /// longer change.
    pub fn advance(&mut self, watermark: i64, results: &mut Vec<WindowResult>) {
        if watermark <= self.fired_through {
            return;
        }
        if watermark >= self.next_due {
            self.fire(watermark, results);
        }
        self.fired_through = watermark;
        self.expire(watermark);
    }

    fn fire(&mut self, watermark: i64, results: &mut Vec<WindowResult>) {
        let (Some(first_pane), Some(last_pane)) = (self.panes.first(), self.panes.last()) else {
            return;
        };
        let n = self.panes_per_window;
        let mut k = first_pane - n + 1;
        while k <= last_pane && self.window_end(k) <= watermark {
            if self.window_end(k) <= self.fired_through {
                k += 1;
                continue;
            }
            let (start, end) = (k * self.step, self.window_end(k));
            let first = |key, figures| WindowResult { start, end, key, figures, revision: 1 };
            let mut panes = self.panes.range(k, k + n).peekable();
            let any = panes.peek().is_some();
            if n == 1 {
                for groups in panes {
                    results.extend(groups.iter().map(|(key, figures)| first(*key, *figures)));
                }
            } else {
                let most = self.panes.range(k, k + n).map(|g| g.len()).max().unwrap_or(0);
                let mut merged: FxHashMap<GroupKey, Figures> =
                    FxHashMap::with_capacity_and_hasher(most, Default::default());
                for groups in panes {
                    for (key, f) in groups {
                        merged.entry(*key).or_default().add(f);
                    }
                }
                results.extend(merged.into_iter().map(|(key, figures)| first(key, figures)));
            }
            if any {
                k += 1;
            } else {
                // Jump over a gap with no panes (a store network asleep at night).
                let next_pane = self.panes.next_from(k + n).unwrap_or(i64::MAX);
                k = (next_pane - n + 1).max(k + 1);
            }
        }
        let fired_through = watermark;
        self.next_due = self
            .panes
            .0
            .iter()
            .filter_map(|&(p, _)| (p - n + 1..=p).map(|w| self.window_end(w)).find(|&end| end > fired_through))
            .min()
            .unwrap_or(i64::MAX);
    }

    fn expire(&mut self, watermark: i64) {
        while let Some(pane) = self.panes.first() {
            // A pane lives as long as its last window (index = pane) can change.
            if !self.expired(pane, watermark) {
                break;
            }
            if let (Some((pane, groups)), Some(changes)) = (self.panes.0.pop_front(), self.changes.as_mut()) {
                changes.gone_panes.extend(groups.into_keys().map(|key| (pane, key)));
            }
        }
        while let Some((&k, _)) = self.revisions.first_key_value() {
            if !self.expired(k, watermark) {
                break;
            }
            if let (Some((k, groups)), Some(changes)) = (self.revisions.pop_first(), self.changes.as_mut()) {
                changes.gone_revisions.extend(groups.into_keys().map(|key| (k, key)));
            }
        }
    }

    /// Every window whose figures are all held (it has not passed its allowed lateness), by
    /// its panes: `visit(start, end, group, figures)` once per pane of the window and group.
    /// The watermark it stands at is `fired_through`.
    pub fn held(&self, mut visit: impl FnMut(i64, i64, &GroupKey, &Figures)) {
        let watermark = self.fired_through;
        for (pane, groups) in &self.panes.0 {
            for k in pane - self.panes_per_window + 1..=*pane {
                if self.expired(k, watermark) {
                    continue;
                }
                let (start, end) = (k * self.step, self.window_end(k));
                for (key, figures) in groups {
                    visit(start, end, key, figures);
                }
            }
        }
    }

    /// The watermark the operator last advanced to: every window ending at or before it fired.
    pub fn fired_through(&self) -> i64 {
        self.fired_through
    }

    /// Panes and fired windows held in memory (for metrics and the benchmark).
    pub fn state_size(&self) -> (usize, usize) {
        (self.panes.0.iter().map(|(_, g)| g.len()).sum(), self.revisions.values().map(|g| g.len()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    const MIN: i64 = 60_000;
    const K: GroupKey = [1, 2, 0, 0, 0, 0];

    fn sale(units: i64) -> Figures {
        Figures { units_sold: units, gross_revenue: Decimal::from(units * 10), transactions: 1, ..Default::default() }
    }

    fn summary(results: &[WindowResult]) -> Vec<(i64, i64, i64, u32)> {
        let mut v: Vec<_> =
            results.iter().map(|r| (r.start / MIN, r.end / MIN, r.figures.units_sold, r.revision)).collect();
        v.sort();
        v
    }

    #[test]
    fn tumbling_fires_at_end_and_corrects_within_lateness() {
        let mut w = WindowOperator::new(5 * MIN, 5 * MIN, 10 * MIN);
        let mut out = Vec::new();
        w.add(MIN, K, &sale(1), i64::MIN, &mut out);
        w.add(4 * MIN, K, &sale(2), i64::MIN, &mut out);
        w.advance(5 * MIN - 1, &mut out);
        assert!(out.is_empty(), "not before the end");
        w.advance(5 * MIN, &mut out);
        assert_eq!(summary(&out), vec![(0, 5, 3, 1)]);
        out.clear();
        let p = w.add(2 * MIN, K, &sale(4), 14 * MIN, &mut out);
        assert_eq!(p, Placement { missed_windows: 0, corrections: 1 });
        assert_eq!(summary(&out), vec![(0, 5, 7, 2)]);
        out.clear();
        w.advance(15 * MIN, &mut out);
        let p = w.add(2 * MIN, K, &sale(1), 15 * MIN, &mut out);
        assert_eq!(p, Placement { missed_windows: 1, corrections: 0 });
        assert!(out.is_empty());
        assert_eq!(w.state_size(), (0, 0), "all state of the expired window is gone");
    }

    #[test]
    fn a_group_new_to_a_fired_window_starts_at_revision_one() {
        const OTHER: GroupKey = [1, 3, 0, 0, 0, 0];
        // 10-minute windows every 5: the pane of minute 7 belongs to windows [0,10) and [5,15).
        let mut w = WindowOperator::new(10 * MIN, 5 * MIN, 30 * MIN);
        let mut out = Vec::new();
        w.add(2 * MIN, K, &sale(1), i64::MIN, &mut out);
        w.advance(16 * MIN, &mut out);
        assert_eq!(summary(&out), vec![(-5, 5, 1, 1), (0, 10, 1, 1)]);
        out.clear();
        // K was in [0,10) through another pane: revision 2 there; OTHER is new everywhere.
        w.add(7 * MIN, K, &sale(2), 16 * MIN, &mut out);
        w.add(7 * MIN, OTHER, &sale(5), 16 * MIN, &mut out);
        let mut revisions: Vec<_> =
            out.iter().map(|r| (r.key[1], r.start / MIN, r.figures.units_sold, r.revision)).collect();
        revisions.sort();
        assert_eq!(revisions, vec![(2, 0, 3, 2), (2, 5, 2, 1), (3, 0, 5, 1), (3, 5, 5, 1)]);
        out.clear();
        w.add(8 * MIN, OTHER, &sale(1), 16 * MIN, &mut out);
        assert_eq!(
            out.iter().map(|r| (r.start / MIN, r.figures.units_sold, r.revision)).collect::<Vec<_>>(),
            vec![(0, 6, 2), (5, 6, 2)]
        );
        assert_eq!(w.state_size().1, 4, "only corrected groups are remembered");
    }

    #[test]
    fn panes_stay_ordered_whatever_the_arrival() {
        let mut panes = Panes::default();
        for (pane, units) in [(5, 1), (3, 2), (7, 3), (4, 4), (5, 10)] {
            panes.get_or_insert(pane).entry(K).or_default().add(&sale(units));
        }
        let order: Vec<(i64, i64)> = panes.0.iter().map(|(p, g)| (*p, g[&K].units_sold)).collect();
        assert_eq!(order, vec![(3, 2), (4, 4), (5, 11), (7, 3)]);
        assert_eq!(panes.range(4, 7).map(|g| g[&K].units_sold).collect::<Vec<_>>(), vec![4, 11]);
        assert_eq!(
            (panes.first(), panes.last(), panes.next_from(6), panes.next_from(8)),
            (Some(3), Some(7), Some(7), None)
        );
    }

    #[test]
    fn sliding_window_sums_its_panes() {
        // 15-minute windows every 5 minutes.
        let mut w = WindowOperator::new(15 * MIN, 5 * MIN, 0);
        let mut out = Vec::new();
        w.add(MIN, K, &sale(1), i64::MIN, &mut out); // pane 0
        w.add(6 * MIN, K, &sale(10), i64::MIN, &mut out); // pane 1
        w.add(11 * MIN, K, &sale(100), i64::MIN, &mut out); // pane 2
        w.advance(i64::MAX, &mut out);
        assert_eq!(
            summary(&out),
            vec![(-10, 5, 1, 1), (-5, 10, 11, 1), (0, 15, 111, 1), (5, 20, 110, 1), (10, 25, 100, 1)]
        );
    }

    #[test]
    fn sliding_late_event_corrects_only_windows_still_open_to_it() {
        let mut w = WindowOperator::new(15 * MIN, 5 * MIN, 5 * MIN);
        let mut out = Vec::new();
        w.add(MIN, K, &sale(1), i64::MIN, &mut out);
        w.add(16 * MIN, K, &sale(1), i64::MIN, &mut out);
        w.advance(19 * MIN, &mut out);
        out.clear();
        // Pane 0 belongs to windows ending at 5, 10 and 15 minutes; with lateness 5m and the
        // watermark at 19m, only the one ending at 15 can still change.
        let p = w.add(2 * MIN, K, &sale(5), 19 * MIN, &mut out);
        assert_eq!(p, Placement { missed_windows: 2, corrections: 1 });
        assert_eq!(summary(&out), vec![(0, 15, 6, 2)]);
    }

    #[test]
    fn gaps_are_skipped_and_empty_windows_never_emit() {
        let mut w = WindowOperator::new(5 * MIN, 5 * MIN, 0);
        let mut out = Vec::new();
        w.add(MIN, K, &sale(1), i64::MIN, &mut out);
        w.add(10_000 * MIN, K, &sale(1), i64::MIN, &mut out);
        w.advance(i64::MAX, &mut out);
        assert_eq!(summary(&out), vec![(0, 5, 1, 1), (10_000, 10_005, 1, 1)]);
    }
}

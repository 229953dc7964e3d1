//! `salesSpike`: a window's units sold (or net revenue) for a group exceed `factor` x the
//! group's baseline, the mean of its measure over the `baselineWindows` windows before
//! (a window without sales counts as 0). A group is judged only once it has a whole
//! baseline: its first window that reached `minBaseline` lies that many windows back (a
//! few late events stamped before a group really started selling do not start it), and the
//! baseline itself reaches `minBaseline`. Each window fires at most once per group; a late correction can fire a
//! window that had not.

use std::sync::Arc;

use rust_decimal::prelude::ToPrimitive;
use serde::{Deserialize, Serialize};

use super::{About, AlertEntry, Fired, Keyed, Scope, cooled_down};
use crate::config::{SalesSpikeRule, SpikeMeasure, WindowConfig};
use crate::output::{AggregateRecord, AlertFigures};

/// A group's recent windows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpikeState {
    /// Start of the group's first window whose measure reached `minBaseline`, if any.
    pub first_start: Option<i64>,
    /// (window start, measure), by start; only as far back as a baseline or a correction
    /// can reach.
    pub history: Vec<(i64, f64)>,
    /// Windows (by start) that fired, within the same reach.
    pub fired: Vec<i64>,
    pub last_fired: Option<i64>,
}

#[derive(Debug)]
pub(super) struct Spike {
    pub(super) policy: Arc<str>,
    window: Arc<str>,
    factor: f64,
    measure: SpikeMeasure,
    baseline_windows: u32,
    min_baseline: f64,
    /// Distance between window starts.
    step: i64,
    /// How far behind the newest window a result can still arrive (a correction) or a
    /// baseline reach.
    reach: i64,
    cooldown: i64,
    scope: Scope,
    pub(super) keyed: Keyed<String, SpikeState>,
}

/// A window result's group, as the key of its state and of its alerts: the dimensions the
/// window groups by, and the currency.
pub(super) fn group_key(r: &AggregateRecord) -> String {
    let mut key = String::new();
    for dim in [&r.store_id, &r.sku_id, &r.region, &r.category, &r.channel].into_iter().flatten() {
        key.push_str(dim);
        key.push('|');
    }
    key.push_str(&r.currency);
    key
}

impl Spike {
    pub(super) fn new(
        policy: Arc<str>,
        rule: &SalesSpikeRule,
        window: &WindowConfig,
        lateness: i64,
        cooldown: i64,
        scope: Scope,
    ) -> Self {
        let step = window.step().as_millis_i64().max(1);
        let baseline_span = step.saturating_mul(i64::from(rule.baseline_windows));
        Spike {
            policy,
            window: Arc::from(window.name.as_str()),
            factor: rule.factor,
            measure: rule.measure,
            baseline_windows: rule.baseline_windows.max(1),
            min_baseline: rule.min_baseline,
            step,
            reach: baseline_span.saturating_add(lateness).saturating_add(window.size.as_millis_i64()),
            cooldown,
            scope,
            keyed: Keyed::default(),
        }
    }

    fn value(&self, r: &AggregateRecord) -> f64 {
        match self.measure {
            // Units are far below 2^53: exact as f64.
            SpikeMeasure::Units => r.units_sold as f64,
            SpikeMeasure::Revenue => r.net_revenue.to_f64().unwrap_or(0.0),
        }
    }

    pub(super) fn evaluate(&mut self, r: &AggregateRecord, fired: &mut Vec<Fired>, suppressed: &mut u64) {
        if *r.window != *self.window || !self.scope.admits_group(r) {
            return;
        }
        let value = self.value(r);
        let group = group_key(r);
        let start = r.window_start;
        let state = self.keyed.state.entry(group.clone()).or_insert_with(|| SpikeState {
            first_start: None,
            history: Vec::new(),
            fired: Vec::new(),
            last_fired: None,
        });
        if value >= self.min_baseline {
            state.first_start = Some(state.first_start.map_or(start, |first| first.min(start)));
        }
        match state.history.binary_search_by_key(&start, |&(s, _)| s) {
            Ok(i) => state.history[i].1 = value,
            Err(i) => state.history.insert(i, (start, value)),
        }
        let newest = state.history.last().map_or(start, |&(s, _)| s);
        let keep_from = newest.saturating_sub(self.reach);
        state.history.retain(|&(s, _)| s >= keep_from);
        state.fired.retain(|&s| s >= keep_from);
        self.keyed.changes.mark(group);

        let span = self.step.saturating_mul(i64::from(self.baseline_windows));
        let from = start.saturating_sub(span);
        if state.first_start.is_none_or(|first| first > from) || from < keep_from || state.fired.contains(&start) {
            return;
        }
        let sum: f64 = state.history.iter().filter(|&&(s, _)| s >= from && s < start).map(|&(_, v)| v).sum();
        let baseline = sum / f64::from(self.baseline_windows);
        if baseline < self.min_baseline || baseline <= 0.0 || value <= self.factor * baseline {
            return;
        }
        state.fired.push(start);
        if !cooled_down(&mut state.last_fired, start, self.cooldown) {
            *suppressed += 1;
            return;
        }
        fired.push(Fired {
            policy: self.policy.clone(),
            rule: "salesSpike",
            severity: if value >= 2.0 * self.factor * baseline { "critical" } else { "warning" },
            about: About::Group(Box::new(r.clone())),
            event_id: None,
            event_time: r.window_end,
            figures: AlertFigures {
                measure: Some(match self.measure {
                    SpikeMeasure::Units => "units",
                    SpikeMeasure::Revenue => "revenue",
                }),
                value: Some(value),
                baseline: Some(baseline),
                factor: Some(self.factor),
                ..AlertFigures::default()
            },
        });
    }

    pub(super) fn drain(&mut self, visit: &mut impl FnMut(AlertEntry)) {
        let policy = &self.policy;
        self.keyed.drain(|group, state| visit(AlertEntry::Spike { policy: policy.clone(), group, state }));
    }
}

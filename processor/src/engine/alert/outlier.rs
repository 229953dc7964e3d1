//! `amountOutlier`: a sale line (unit price x units) more than `sigma` standard deviations
//! from the mean of the store's sale lines so far. The distribution is a running one
//! (Welford's method: count, mean, sum of squared deviations), three numbers per store,
//! judged once it holds `minSamples` lines; every line joins it after being judged.

use std::sync::Arc;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use super::{About, AlertEntry, Changes, Fired, Scope, Subject, cooled_down};
use crate::config::AmountOutlierRule;
use crate::event::Event;
use crate::output::AlertFigures;

/// A store's running distribution of sale-line amounts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OutlierState {
    pub count: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    pub last_fired: Option<i64>,
}

impl OutlierState {
    fn stddev(&self) -> f64 {
        if self.count < 2 { 0.0 } else { (self.m2 / (self.count - 1) as f64).sqrt() }
    }

    fn add(&mut self, x: f64) {
        self.count = self.count.saturating_add(1);
        let delta = x - self.mean;
        self.mean += delta / self.count as f64;
        self.m2 += delta * (x - self.mean);
    }
}

#[derive(Debug)]
pub(super) struct Outlier {
    pub(super) policy: Arc<str>,
    sigma: f64,
    min_samples: u64,
    cooldown: i64,
    scope: Scope,
    state: FxHashMap<u32, OutlierState>,
    pub(super) changes: Changes<u32>,
}

impl Outlier {
    pub(super) fn new(policy: Arc<str>, rule: &AmountOutlierRule, cooldown: i64, scope: Scope) -> Self {
        Outlier {
            policy,
            sigma: rule.sigma,
            min_samples: u64::from(rule.min_samples.max(2)),
            cooldown,
            scope,
            state: FxHashMap::default(),
            changes: Changes::default(),
        }
    }

    /// Judges a SALE line, then adds it to the store's distribution.
    pub(super) fn evaluate(
        &mut self,
        subject: Subject,
        event: &Event<'_>,
        fired: &mut Vec<Fired>,
        suppressed: &mut u64,
    ) {
        let Some(price) = event.unit_price else { return };
        if !self.scope.admits(&subject) {
            return;
        }
        let units = Decimal::from(event.quantity_delta.saturating_neg());
        let Some(amount) = price.checked_mul(units).and_then(|a| a.to_f64()) else { return };
        if !amount.is_finite() {
            return;
        }
        self.changes.mark(subject.store);
        let state = self.state.entry(subject.store).or_default();
        let (mean, stddev, count) = (state.mean, state.stddev(), state.count);
        state.add(amount);
        if count < self.min_samples || stddev <= 0.0 || (amount - mean).abs() <= self.sigma * stddev {
            return;
        }
        if !cooled_down(&mut state.last_fired, event.event_time, self.cooldown) {
            *suppressed += 1;
            return;
        }
        fired.push(Fired {
            policy: self.policy.clone(),
            rule: "amountOutlier",
            severity: "warning",
            about: About::Store(subject),
            event_id: Some(event.event_id),
            event_time: event.event_time,
            figures: AlertFigures {
                value: Some(amount),
                mean: Some(mean),
                stddev: Some(stddev),
                sigma: Some(self.sigma),
                samples: Some(count),
                ..AlertFigures::default()
            },
        });
    }

    pub(super) fn drain(&mut self, visit: &mut impl FnMut(AlertEntry)) {
        for store in self.changes.take() {
            let state = self.state.get(&store).copied();
            visit(AlertEntry::Outlier { policy: self.policy.clone(), store, state });
        }
    }

    pub(super) fn restore(&mut self, store: u32, state: OutlierState) {
        self.state.insert(store, state);
    }
}

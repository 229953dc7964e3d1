//! `amountOutlier`: a sale line (unit price x units) more than `sigma` standard deviations
//! from the mean of the store's sale lines so far. The distribution is a running one
//! (Welford's method: count, mean, sum of squared deviations), three numbers per store,
//! judged once it holds `minSamples` lines; every line joins it after being judged.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{About, AlertEntry, Fired, Keyed, Scope, Subject, cooled_down};
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

/// A sale line's amount as a float: the price's mantissa scaled (an exact decimal product is
/// not needed to judge a distribution, and this costs a few instructions per line).
fn line_amount(price: Decimal, units: i64) -> f64 {
    const POWERS: [f64; 29] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19,
        1e20, 1e21, 1e22, 1e23, 1e24, 1e25, 1e26, 1e27, 1e28,
    ];
    let scale = POWERS.get(price.scale() as usize).copied().unwrap_or(f64::INFINITY);
    price.mantissa() as f64 / scale * units as f64
}

#[derive(Debug)]
pub(super) struct Outlier {
    pub(super) policy: Arc<str>,
    sigma: f64,
    min_samples: u64,
    cooldown: i64,
    scope: Scope,
    pub(super) keyed: Keyed<u32, OutlierState>,
}

impl Outlier {
    pub(super) fn new(policy: Arc<str>, rule: &AmountOutlierRule, cooldown: i64, scope: Scope) -> Self {
        Outlier {
            policy,
            sigma: rule.sigma,
            min_samples: u64::from(rule.min_samples.max(2)),
            cooldown,
            scope,
            keyed: Keyed::default(),
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
        let amount = line_amount(price, event.quantity_delta.saturating_neg());
        if !amount.is_finite() {
            return;
        }
        self.keyed.changes.mark(subject.store);
        let state = self.keyed.state.entry(subject.store).or_default();
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
        let policy = &self.policy;
        self.keyed.drain(|store, state| visit(AlertEntry::Outlier { policy: policy.clone(), store, state }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_amount_is_the_price_times_the_units() {
        assert_eq!(line_amount(Decimal::new(1999, 2), 3), 59.97);
        assert_eq!(line_amount(Decimal::new(5, 0), 2), 10.0);
        assert_eq!(line_amount(Decimal::new(12_345, 3), 1), 12.345);
    }
}

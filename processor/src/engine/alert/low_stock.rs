//! `lowStock`: fires when a position's available stock falls from above the threshold to
//! at or below it, then stays quiet for that position until stock has climbed above
//! `threshold + hysteresis` (it re-arms), and at most once per cooldown.
//!
//! Only crossings touch the state: a fall through the threshold, or a climb through the
//! re-arm level. A position with no entry is armed and has never fired, so the state holds
//! only positions that fired, and the hot path looks up nothing for stock between the two
//! levels. A position first seen at or below the threshold (stock never counted) does not
//! fire until it has been above it.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{About, AlertEntry, Fired, Keyed, Scope, Subject, cooled_down};
use crate::config::LowStockRule;
use crate::engine::inventory::{Change, PositionKey};
use crate::event::Event;
use crate::output::AlertFigures;

/// A position's state once the rule has fired for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LowStockState {
    /// Whether a fall through the threshold fires.
    pub armed: bool,
    /// Event time of the last alert.
    pub last_fired: Option<i64>,
}

#[derive(Debug)]
pub(super) struct LowStock {
    pub(super) policy: Arc<str>,
    threshold: i64,
    rearm_above: i64,
    cooldown: i64,
    scope: Scope,
    pub(super) keyed: Keyed<PositionKey, LowStockState>,
}

impl LowStock {
    pub(super) fn new(policy: Arc<str>, rule: &LowStockRule, cooldown: i64, scope: Scope) -> Self {
        LowStock {
            policy,
            threshold: rule.threshold,
            rearm_above: rule.threshold.saturating_add(rule.hysteresis()),
            cooldown,
            scope,
            keyed: Keyed::default(),
        }
    }

    pub(super) fn evaluate(
        &mut self,
        subject: Subject,
        change: Change,
        event: &Event<'_>,
        fired: &mut Vec<Fired>,
        suppressed: &mut u64,
    ) {
        let falls = change.available_before > self.threshold && change.available_after <= self.threshold;
        let climbs = change.available_before <= self.rearm_above && change.available_after > self.rearm_above;
        if !(falls || climbs) || !self.scope.admits(&subject) {
            return;
        }
        if climbs {
            if let Some(state) = self.keyed.state.get_mut(&subject.key)
                && !state.armed
            {
                state.armed = true;
                self.keyed.changes.mark(subject.key);
            }
            return;
        }
        let state = self.keyed.state.entry(subject.key).or_insert(LowStockState { armed: true, last_fired: None });
        if !state.armed {
            return;
        }
        // Fired or held back by the cooldown, this fall is spent: the next one needs a climb.
        state.armed = false;
        self.keyed.changes.mark(subject.key);
        if !cooled_down(&mut state.last_fired, event.event_time, self.cooldown) {
            *suppressed += 1;
            return;
        }
        fired.push(Fired {
            policy: self.policy.clone(),
            rule: "lowStock",
            severity: if change.available_after <= 0 { "critical" } else { "warning" },
            about: About::Position(subject),
            event_id: Some(event.event_id),
            event_time: event.event_time,
            figures: AlertFigures {
                available: Some(change.available_after),
                threshold: Some(self.threshold),
                rearm_above: Some(self.rearm_above),
                ..AlertFigures::default()
            },
        });
    }

    pub(super) fn drain(&mut self, visit: &mut impl FnMut(AlertEntry)) {
        let policy = &self.policy;
        self.keyed.drain(|key, state| visit(AlertEntry::LowStock { policy: policy.clone(), key, state }));
    }
}

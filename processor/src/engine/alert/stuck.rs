//! `stuckInventory`: stock that events keep touching but that never moves. A position whose
//! on-hand stock has not changed for `period` (event time) although at least `minEvents`
//! events (reservations, releases, zero adjustments) touched it since fires once; the next
//! on-hand move starts a new episode.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{About, AlertEntry, Fired, Keyed, Scope, Subject, cooled_down};
use crate::config::StuckInventoryRule;
use crate::engine::inventory::{Change, PositionKey};
use crate::event::Event;
use crate::output::AlertFigures;

/// A position's clock: since when on-hand stock stands still, and how many events touched
/// it since.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StuckState {
    pub since: i64,
    pub touches: u32,
    /// This episode has fired (or was held back by the cooldown).
    pub fired: bool,
    pub last_fired: Option<i64>,
}

#[derive(Debug)]
pub(super) struct Stuck {
    pub(super) policy: Arc<str>,
    period: i64,
    min_events: u32,
    cooldown: i64,
    scope: Scope,
    pub(super) keyed: Keyed<PositionKey, StuckState>,
}

impl Stuck {
    pub(super) fn new(policy: Arc<str>, rule: &StuckInventoryRule, cooldown: i64, scope: Scope) -> Self {
        Stuck {
            policy,
            period: rule.period.as_millis_i64(),
            min_events: rule.min_events,
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
        if !self.scope.admits(&subject) {
            return;
        }
        let at = event.event_time;
        self.keyed.changes.mark(subject.key);
        let state = self.keyed.state.entry(subject.key).or_insert(StuckState {
            since: at,
            touches: 0,
            fired: false,
            last_fired: None,
        });
        if change.on_hand_moved {
            state.since = state.since.max(at);
            state.touches = 0;
            state.fired = false;
            return;
        }
        state.touches = state.touches.saturating_add(1);
        if state.fired || state.touches < self.min_events || at.saturating_sub(state.since) < self.period {
            return;
        }
        state.fired = true;
        if !cooled_down(&mut state.last_fired, at, self.cooldown) {
            *suppressed += 1;
            return;
        }
        fired.push(Fired {
            policy: self.policy.clone(),
            rule: "stuckInventory",
            severity: "warning",
            about: About::Position(subject),
            event_id: Some(event.event_id),
            event_time: at,
            figures: AlertFigures {
                on_hand: Some(change.on_hand_after),
                unchanged_since: Some(state.since),
                events_since_change: Some(state.touches),
                ..AlertFigures::default()
            },
        });
    }

    pub(super) fn drain(&mut self, visit: &mut impl FnMut(AlertEntry)) {
        let policy = &self.policy;
        self.keyed.drain(|key, state| visit(AlertEntry::Stuck { policy: policy.clone(), key, state }));
    }
}

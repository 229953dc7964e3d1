//! Alert rules of the pipeline's alert policies, evaluated on the stream: each decision
//! reads event time and the order of the input, never the wall clock, so a replay of the
//! same input fires the same alerts with the same ids.
//!
//! | rule | evaluated on | key | fires |
//! | --- | --- | --- | --- |
//! | `lowStock` | an inventory change | store, SKU | available falls to the threshold or below, once per fall: it re-arms when stock climbs above `threshold + hysteresis` |
//! | `stuckInventory` | an inventory event | store, SKU | on-hand stock has not changed for `period`, although `minEvents` events touched the position since |
//! | `salesSpike` | a result of the rule's window | the window's group | the window's units (or net revenue) exceed `factor` x the mean of the group's `baselineWindows` windows before |
//! | `amountOutlier` | a sale line | store | its amount is more than `sigma` standard deviations from the mean of the store's sale lines |
//!
//! Every rule keeps a cooldown per key (event time); a fire it holds back is counted as
//! suppressed. State is one small entry per key: positions for the first two, groups of the
//! window for spikes, stores for outliers.

mod low_stock;
mod outlier;
mod spike;
mod stuck;

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::intern::Interner;
use super::inventory::{Change, PositionKey};
use crate::config::{AlertPolicyConfig, WindowConfig};
use crate::event::{Event, EventType};
use crate::output::{AggregateRecord, AlertFigures, AlertRecord};

pub use low_stock::LowStockState;
pub use outlier::OutlierState;
pub use spike::SpikeState;
pub use stuck::StuckState;

/// The interned scope of a policy; an empty set matches everything.
#[derive(Debug, Default)]
struct Scope {
    stores: FxHashSet<u32>,
    skus: FxHashSet<u32>,
    regions: FxHashSet<u32>,
    categories: FxHashSet<u32>,
    /// The same lists by name, for window results (which carry names).
    names: crate::config::AlertScope,
}

fn matches(set: &FxHashSet<u32>, id: u32) -> bool {
    set.is_empty() || set.contains(&id)
}

fn matches_name(list: &[String], name: Option<&Arc<str>>) -> bool {
    list.is_empty() || name.is_some_and(|name| list.iter().any(|n| **n == **name))
}

impl Scope {
    fn new(policy: &AlertPolicyConfig, stores: &mut Interner, skus: &mut Interner, labels: &mut Interner) -> Scope {
        let intern_all = |names: &[String], interner: &mut Interner| names.iter().map(|n| interner.intern(n)).collect();
        let s = &policy.scope;
        Scope {
            stores: intern_all(&s.stores, stores),
            skus: intern_all(&s.skus, skus),
            regions: intern_all(&s.regions, labels),
            categories: intern_all(&s.categories, labels),
            names: s.clone(),
        }
    }

    fn admits(&self, s: &Subject) -> bool {
        matches(&self.stores, s.store)
            && matches(&self.skus, s.sku)
            && matches(&self.regions, s.region)
            && matches(&self.categories, s.category)
    }

    /// A window result's group; a dimension the window does not group by is refused by the
    /// config's validation when a scope names it.
    fn admits_group(&self, r: &AggregateRecord) -> bool {
        let n = &self.names;
        matches_name(&n.stores, r.store_id.as_ref())
            && matches_name(&n.skus, r.sku_id.as_ref())
            && matches_name(&n.regions, r.region.as_ref())
            && matches_name(&n.categories, r.category.as_ref())
    }
}

/// Where a position stands, for scope matching (interned ids).
#[derive(Debug, Clone, Copy)]
pub struct Subject {
    pub key: PositionKey,
    pub store: u32,
    pub sku: u32,
    pub region: u32,
    pub category: u32,
}

/// What a rule fired about.
#[derive(Debug, Clone)]
pub enum About {
    Position(Subject),
    /// A sale line, keyed by its store.
    Store(Subject),
    Group(Box<AggregateRecord>),
}

/// A rule's firing, before names are attached.
#[derive(Debug, Clone)]
pub struct Fired {
    pub policy: Arc<str>,
    pub rule: &'static str,
    pub severity: &'static str,
    pub about: About,
    /// The event that made the rule fire; `None` for a window's result.
    pub event_id: Option<u128>,
    pub event_time: i64,
    pub figures: AlertFigures,
}

/// The names an alert record carries.
pub struct Names<'a> {
    pub stores: &'a Interner,
    pub skus: &'a Interner,
    pub labels: &'a Interner,
}

impl Fired {
    /// The alert record: its id is `policy/rule/key/cause`, the cause being the event that
    /// made the rule fire, or the window's start.
    pub fn into_record(self, names: &Names<'_>) -> AlertRecord {
        let mut record = AlertRecord {
            alert_id: String::new(),
            policy: self.policy,
            rule: self.rule,
            severity: self.severity,
            store_id: None,
            sku_id: None,
            region: None,
            category: None,
            channel: None,
            window: None,
            window_start: None,
            window_end: None,
            figures: self.figures,
            event_time: self.event_time,
            event_id: self.event_id.map(|id| uuid::Uuid::from_u128(id).to_string()),
            message: String::new(),
        };
        let key = match self.about {
            About::Position(s) | About::Store(s) => {
                record.store_id = Some(names.stores.name(s.store).clone());
                record.sku_id = Some(names.skus.name(s.sku).clone());
                record.region = Some(names.labels.name(s.region).clone());
                record.category = Some(names.labels.name(s.category).clone());
                match self.about {
                    About::Store(_) => names.stores.name(s.store).to_string(),
                    _ => format!("{}|{}", names.stores.name(s.store), names.skus.name(s.sku)),
                }
            }
            About::Group(r) => {
                let key = spike::group_key(&r);
                record.window = Some(r.window);
                record.window_start = Some(r.window_start);
                record.window_end = Some(r.window_end);
                (record.store_id, record.sku_id, record.region) = (r.store_id, r.sku_id, r.region);
                (record.category, record.channel) = (r.category, r.channel);
                key
            }
        };
        let cause = match (&record.event_id, record.window_start) {
            (Some(id), _) => id.clone(),
            (None, Some(start)) => crate::event::time::format_rfc3339_millis(start),
            (None, None) => String::new(),
        };
        record.alert_id = format!("{}/{}/{}/{}", record.policy, record.rule, key, cause);
        record.message = message(&record, &key);
        record
    }
}

fn message(r: &AlertRecord, key: &str) -> String {
    let f = &r.figures;
    let n = |v: Option<i64>| v.unwrap_or_default();
    let x = |v: Option<f64>| v.unwrap_or_default();
    let what = match r.rule {
        "lowStock" => format!(
            "available {} is at or below {}; fires again once it has climbed above {}",
            n(f.available),
            n(f.threshold),
            n(f.rearm_above)
        ),
        "stuckInventory" => format!(
            "on hand {} has not moved since {} despite {} events",
            n(f.on_hand),
            f.unchanged_since.map(crate::event::time::format_rfc3339_millis).unwrap_or_default(),
            f.events_since_change.unwrap_or_default()
        ),
        "salesSpike" => format!(
            "{} {} {:.2} in {} is {:.1}x the baseline {:.2} (factor {})",
            r.window.as_deref().unwrap_or_default(),
            f.measure.unwrap_or_default(),
            x(f.value),
            r.window_start.map(crate::event::time::format_rfc3339_millis).unwrap_or_default(),
            x(f.value) / x(f.baseline).max(f64::MIN_POSITIVE),
            x(f.baseline),
            x(f.factor)
        ),
        _ => format!(
            "sale line of {:.2} is {:.1} standard deviations from the store's mean {:.2} (limit {})",
            x(f.value),
            (x(f.value) - x(f.mean)).abs() / x(f.stddev).max(f64::MIN_POSITIVE),
            x(f.mean),
            x(f.sigma)
        ),
    };
    format!("{key}: {what} ({} {})", r.policy, r.rule)
}

/// One key's state of one rule, as the changelog keeps it; `None` when it is gone.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertEntry {
    LowStock { policy: Arc<str>, key: PositionKey, state: Option<LowStockState> },
    Stuck { policy: Arc<str>, key: PositionKey, state: Option<StuckState> },
    Spike { policy: Arc<str>, group: String, state: Option<SpikeState> },
    Outlier { policy: Arc<str>, store: u32, state: Option<OutlierState> },
}

/// The rules of every policy, with their state.
#[derive(Debug, Default)]
pub struct AlertRules {
    low_stock: Vec<low_stock::LowStock>,
    stuck: Vec<stuck::Stuck>,
    spikes: Vec<spike::Spike>,
    outliers: Vec<outlier::Outlier>,
    /// Fires held back by a cooldown.
    pub suppressed: u64,
}

impl AlertRules {
    pub fn new(
        policies: &[AlertPolicyConfig],
        windows: &[WindowConfig],
        lateness: i64,
        stores: &mut Interner,
        skus: &mut Interner,
        labels: &mut Interner,
    ) -> Self {
        let mut rules = AlertRules::default();
        for p in policies {
            let policy: Arc<str> = Arc::from(p.name.as_str());
            let cooldown = p.cooldown.as_millis_i64();
            let mut scope = || Scope::new(p, &mut *stores, &mut *skus, &mut *labels);
            if let Some(rule) = &p.low_stock {
                rules.low_stock.push(low_stock::LowStock::new(policy.clone(), rule, cooldown, scope()));
            }
            if let Some(rule) = &p.stuck_inventory {
                rules.stuck.push(stuck::Stuck::new(policy.clone(), rule, cooldown, scope()));
            }
            if let Some(rule) = &p.sales_spike
                && let Some(window) = windows.iter().find(|w| w.name == rule.window)
            {
                rules.spikes.push(spike::Spike::new(policy.clone(), rule, window, lateness, cooldown, scope()));
            }
            if let Some(rule) = &p.amount_outlier {
                rules.outliers.push(outlier::Outlier::new(policy.clone(), rule, cooldown, scope()));
            }
        }
        rules
    }

    pub fn track_changes(&mut self) {
        self.low_stock.iter_mut().for_each(|r| r.keyed.changes.track());
        self.stuck.iter_mut().for_each(|r| r.keyed.changes.track());
        self.spikes.iter_mut().for_each(|r| r.keyed.changes.track());
        self.outliers.iter_mut().for_each(|r| r.keyed.changes.track());
    }

    /// Any rule on inventory events (lowStock, stuckInventory, amountOutlier)?
    pub fn on_events(&self) -> bool {
        !(self.low_stock.is_empty() && self.stuck.is_empty() && self.outliers.is_empty())
    }

    /// Any rule on window results (salesSpike)?
    pub fn on_windows(&self) -> bool {
        !self.spikes.is_empty()
    }

    /// Evaluates the rules after an event changed a position.
    pub fn evaluate(&mut self, subject: Subject, change: Change, event: &Event<'_>, fired: &mut Vec<Fired>) {
        for rule in &mut self.low_stock {
            rule.evaluate(subject, change, event, fired, &mut self.suppressed);
        }
        for rule in &mut self.stuck {
            rule.evaluate(subject, change, event, fired, &mut self.suppressed);
        }
        if event.event_type == EventType::Sale {
            for rule in &mut self.outliers {
                rule.evaluate(subject, event, fired, &mut self.suppressed);
            }
        }
    }

    /// Evaluates the spike rules on a window's result.
    pub fn evaluate_window(&mut self, result: &AggregateRecord, fired: &mut Vec<Fired>) {
        for rule in &mut self.spikes {
            rule.evaluate(result, fired, &mut self.suppressed);
        }
    }

    /// Hands out the state changed since the last call.
    pub fn drain_changes(&mut self, mut visit: impl FnMut(AlertEntry)) {
        self.low_stock.iter_mut().for_each(|r| r.drain(&mut visit));
        self.stuck.iter_mut().for_each(|r| r.drain(&mut visit));
        self.spikes.iter_mut().for_each(|r| r.drain(&mut visit));
        self.outliers.iter_mut().for_each(|r| r.drain(&mut visit));
    }

    /// Restores one key's state; `false` when no rule of that policy and kind exists any
    /// more (the entry is left out).
    pub fn restore(&mut self, entry: AlertEntry) -> bool {
        match entry {
            AlertEntry::LowStock { policy, key, state: Some(state) } => self
                .low_stock
                .iter_mut()
                .find(|r| r.policy == policy)
                .map(|r| r.keyed.state.insert(key, state))
                .is_some(),
            AlertEntry::Stuck { policy, key, state: Some(state) } => {
                self.stuck.iter_mut().find(|r| r.policy == policy).map(|r| r.keyed.state.insert(key, state)).is_some()
            }
            AlertEntry::Spike { policy, group, state: Some(state) } => self
                .spikes
                .iter_mut()
                .find(|r| r.policy == policy)
                .map(|r| r.keyed.state.insert(group, state))
                .is_some(),
            AlertEntry::Outlier { policy, store, state: Some(state) } => self
                .outliers
                .iter_mut()
                .find(|r| r.policy == policy)
                .map(|r| r.keyed.state.insert(store, state))
                .is_some(),
            _ => false,
        }
    }
}

/// A rule's state per key, and the keys changed since the last drain.
#[derive(Debug)]
struct Keyed<K, S> {
    state: FxHashMap<K, S>,
    changes: Changes<K>,
}

impl<K, S> Default for Keyed<K, S> {
    fn default() -> Self {
        Keyed { state: FxHashMap::default(), changes: Changes::default() }
    }
}

impl<K: std::hash::Hash + Eq, S: Clone> Keyed<K, S> {
    /// Hands out each changed key with its state (`None`: gone).
    fn drain(&mut self, mut visit: impl FnMut(K, Option<S>)) {
        for key in self.changes.take() {
            let state = self.state.get(&key).cloned();
            visit(key, state);
        }
    }
}

/// The keys whose state changed since the last drain, when a changelog is kept.
#[derive(Debug)]
struct Changes<K>(Option<FxHashSet<K>>);

impl<K> Default for Changes<K> {
    fn default() -> Self {
        Changes(None)
    }
}

impl<K: std::hash::Hash + Eq> Changes<K> {
    fn track(&mut self) {
        self.0.get_or_insert_with(FxHashSet::default);
    }

    fn mark(&mut self, key: K) {
        if let Some(set) = self.0.as_mut() {
            set.insert(key);
        }
    }

    fn take(&mut self) -> Vec<K> {
        self.0.as_mut().map(|set| set.drain().collect()).unwrap_or_default()
    }
}

/// A per-key cooldown in event time: `true` (and the time kept) when `at` is past it.
fn cooled_down(last_fired: &mut Option<i64>, at: i64, cooldown: i64) -> bool {
    match *last_fired {
        Some(last) if at < last.saturating_add(cooldown) => false,
        _ => {
            *last_fired = Some(at);
            true
        }
    }
}

#[cfg(test)]
mod tests;

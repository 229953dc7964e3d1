//! Alert rules evaluated on inventory changes. This version evaluates `lowStock`: it fires
//! when a position's available stock falls from above the threshold to at or below it, at
//! most once per `cooldown` (event time) per (policy, store, sku).

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use super::intern::Interner;
use super::inventory::{Change, PositionKey};
use crate::config::AlertPolicyConfig;

/// The interned scope of a policy; an empty set matches everything.
#[derive(Debug, Default)]
struct Scope {
    stores: FxHashSet<u32>,
    skus: FxHashSet<u32>,
    regions: FxHashSet<u32>,
    categories: FxHashSet<u32>,
}

fn matches(set: &FxHashSet<u32>, id: u32) -> bool {
    set.is_empty() || set.contains(&id)
}

#[derive(Debug)]
struct LowStock {
    policy: Arc<str>,
    threshold: i64,
    cooldown: i64,
    scope: Scope,
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

/// A low-stock alert to emit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowStockAlert {
    pub policy: Arc<str>,
    pub threshold: i64,
    pub available: i64,
}

#[derive(Debug, Default)]
pub struct AlertRules {
    low_stock: Vec<LowStock>,
    last_fired: FxHashMap<(usize, PositionKey), i64>,
    /// Cooldowns started since the last drain, when a changelog is kept.
    changes: Option<Vec<(usize, PositionKey)>>,
}

/// A rule's cooldown for one position, as the changelog keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CooldownEntry {
    pub policy: Arc<str>,
    pub key: PositionKey,
    pub last_fired: i64,
}

impl AlertRules {
    pub fn new(
        policies: &[AlertPolicyConfig],
        stores: &mut Interner,
        skus: &mut Interner,
        labels: &mut Interner,
    ) -> Self {
        let intern_all = |names: &[String], interner: &mut Interner| names.iter().map(|n| interner.intern(n)).collect();
        let low_stock = policies
            .iter()
            .filter_map(|p| {
                let rule = p.low_stock.as_ref()?;
                Some(LowStock {
                    policy: Arc::from(p.name.as_str()),
                    threshold: rule.threshold,
                    cooldown: p.cooldown.as_millis_i64(),
                    scope: Scope {
                        stores: intern_all(&p.scope.stores, stores),
                        skus: intern_all(&p.scope.skus, skus),
                        regions: intern_all(&p.scope.regions, labels),
                        categories: intern_all(&p.scope.categories, labels),
                    },
                })
            })
            .collect();
        AlertRules { low_stock, last_fired: FxHashMap::default(), changes: None }
    }

    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(Vec::new);
    }

    /// Hands out the cooldowns started since the last call.
    pub fn drain_changes(&mut self, mut visit: impl FnMut(CooldownEntry)) {
        let Some(changes) = self.changes.as_mut() else { return };
        for (index, key) in changes.drain(..) {
            if let (Some(rule), Some(&last_fired)) = (self.low_stock.get(index), self.last_fired.get(&(index, key))) {
                visit(CooldownEntry { policy: rule.policy.clone(), key, last_fired });
            }
        }
    }

    /// Restores a cooldown; one of a policy that no longer has a low-stock rule is left out.
    pub fn restore(&mut self, entry: CooldownEntry) {
        if let Some(index) = self.low_stock.iter().position(|rule| rule.policy == entry.policy) {
            self.last_fired.insert((index, entry.key), entry.last_fired);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.low_stock.is_empty()
    }

    /// Evaluates the rules after an inventory change at `event_time`.
    pub fn evaluate(&mut self, subject: Subject, change: Change, event_time: i64, fired: &mut Vec<LowStockAlert>) {
        for (index, rule) in self.low_stock.iter().enumerate() {
            let crossed = change.available_before > rule.threshold && change.available_after <= rule.threshold;
            if !crossed
                || !matches(&rule.scope.stores, subject.store)
                || !matches(&rule.scope.skus, subject.sku)
                || !matches(&rule.scope.regions, subject.region)
                || !matches(&rule.scope.categories, subject.category)
            {
                continue;
            }
            let last = self.last_fired.entry((index, subject.key)).or_insert(i64::MIN);
            if *last != i64::MIN && event_time < last.saturating_add(rule.cooldown) {
                continue;
            }
            *last = event_time;
            if let Some(changes) = self.changes.as_mut() {
                changes.push((index, subject.key));
            }
            fired.push(LowStockAlert {
                policy: rule.policy.clone(),
                threshold: rule.threshold,
                available: change.available_after,
            });
        }
    }
}

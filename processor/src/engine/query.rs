//! Read-only queries over an engine's live state, for the read API: one position, a store's
//! positions at or below a threshold, and units per SKU in the windows still held.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::intern::NONE;
use super::inventory::position_key;
use super::{Engine, inventory_record};
use crate::output::InventoryRecord;

/// Units and net revenue of one SKU in one window, summed over the groups of a region.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkuFigures {
    pub units_sold: i64,
    pub net_revenue: Decimal,
}

/// One window held by a task: per SKU, what it sold in the region asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldWindow {
    pub start: i64,
    pub end: i64,
    pub skus: BTreeMap<String, SkuFigures>,
}

/// What a task can say about a window for top-SKU questions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowHoldings {
    /// Every window ending at or before this has fired on the task.
    pub watermark: i64,
    /// How long after its end a window's figures stay held (the allowed lateness).
    pub lateness: i64,
    pub windows: Vec<HeldWindow>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("no window named {0:?} in this pipeline")]
    UnknownWindow(String),
    #[error("window {0:?} does not group by sku")]
    NotBySku(String),
}

impl Engine {
    /// From now on the positions answered are those the last commit left: the caller says
    /// when a transaction commits ([`Engine::commit_ended`]); one begins at each
    /// [`Engine::flush`]. Without it, positions are answered as they stand.
    pub fn keep_committed(&mut self) {
        self.inventory.keep_committed();
    }

    /// The transaction begun at the last [`Engine::flush`] is committed.
    pub fn commit_ended(&mut self) {
        self.inventory.commit_ended();
    }

    /// The position of `sku` in `store`, if the store has had an event for it.
    pub fn position(&self, store: &str, sku: &str) -> Option<InventoryRecord> {
        let key = position_key(self.stores.get(store)?, self.skus.get(sku)?);
        let position = self.inventory.get_committed(key)?;
        Some(inventory_record(&self.stores, &self.skus, key, position))
    }

    /// The positions of `store` whose available stock is at or below `threshold`, by SKU.
    pub fn low_stock(&self, store: &str, threshold: i64) -> Vec<InventoryRecord> {
        let Some(store_id) = self.stores.get(store) else { return Vec::new() };
        let mut positions: Vec<InventoryRecord> = self
            .inventory
            .iter_committed()
            .filter(|(key, position)| {
                super::inventory::split_key(*key).0 == store_id && position.available() <= threshold
            })
            .map(|(key, position)| inventory_record(&self.stores, &self.skus, key, position))
            .collect();
        positions.sort_by(|a, b| a.sku_id.cmp(&b.sku_id));
        positions
    }

    /// Units and net revenue per SKU of `window` in every window it still holds, over the
    /// stores of `region` (every region when `None`). The window must group by sku; a
    /// store's region comes from the window's group, or else from the store's reference data.
    pub fn sku_windows(&self, window: &str, region: Option<&str>) -> Result<WindowHoldings, QueryError> {
        let spec = self
            .windows
            .iter()
            .find(|w| &*w.name == window)
            .ok_or_else(|| QueryError::UnknownWindow(window.to_string()))?;
        if !spec.keep[1] {
            return Err(QueryError::NotBySku(window.to_string()));
        }
        let wanted = match region {
            Some(name) => match self.labels.get(name) {
                Some(id) => Some(id),
                None => return Ok(self.holdings(spec, BTreeMap::new())),
            },
            None => None,
        };
        let mut windows: BTreeMap<(i64, i64), BTreeMap<String, SkuFigures>> = BTreeMap::new();
        spec.operator.held(|start, end, key, figures| {
            let region_of = if key[2] != NONE {
                Some(key[2])
            } else if key[0] != NONE {
                Some(self.enrichment.store(key[0]).map_or(self.unknown, |(region, _)| region))
            } else {
                None
            };
            if wanted.is_some_and(|w| region_of != Some(w)) {
                return;
            }
            let sku = self.skus.name(key[1]);
            let entry = windows.entry((start, end)).or_default().entry(sku.to_string()).or_default();
            entry.units_sold = entry.units_sold.saturating_add(figures.units_sold);
            entry.net_revenue = entry.net_revenue.checked_add(figures.net_revenue()).unwrap_or(Decimal::MAX);
        });
        Ok(self.holdings(spec, windows))
    }

    fn holdings(
        &self,
        spec: &super::WindowSpec,
        windows: BTreeMap<(i64, i64), BTreeMap<String, SkuFigures>>,
    ) -> WindowHoldings {
        WindowHoldings {
            watermark: spec.operator.fired_through(),
            lateness: self.lateness,
            windows: windows.into_iter().map(|((start, end), skus)| HeldWindow { start, end, skus }).collect(),
        }
    }
}

/// The SKUs that sold most in one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopSkus {
    pub start: i64,
    pub end: i64,
    /// By units sold, then SKU id.
    pub skus: Vec<(String, SkuFigures)>,
}

/// Top SKUs over several tasks' holdings: the latest window that is complete on every task
/// (it ended at or before the lowest watermark) and still held by every task (not past its
/// lateness at the highest), or the window starting at `at` if it is such a window.
pub fn top_skus(holdings: &[WindowHoldings], at: Option<i64>, limit: usize) -> Option<TopSkus> {
    let lowest = holdings.iter().map(|h| h.watermark).min()?;
    let highest = holdings.iter().map(|h| h.watermark).max()?;
    let lateness = holdings.iter().map(|h| h.lateness).min()?;
    let mut merged: BTreeMap<(i64, i64), BTreeMap<String, SkuFigures>> = BTreeMap::new();
    for holding in holdings {
        for window in &holding.windows {
            let skus = merged.entry((window.start, window.end)).or_default();
            for (sku, figures) in &window.skus {
                let entry = skus.entry(sku.clone()).or_default();
                entry.units_sold = entry.units_sold.saturating_add(figures.units_sold);
                entry.net_revenue = entry.net_revenue.checked_add(figures.net_revenue).unwrap_or(Decimal::MAX);
            }
        }
    }
    let held_everywhere = |end: i64| end <= lowest && end.saturating_add(lateness) > highest;
    let chosen =
        merged.keys().rev().find(|(start, end)| held_everywhere(*end) && at.is_none_or(|at| *start == at)).copied()?;
    let mut skus: Vec<(String, SkuFigures)> = merged.remove(&chosen).unwrap_or_default().into_iter().collect();
    skus.sort_by(|a, b| b.1.units_sold.cmp(&a.1.units_sold).then_with(|| a.0.cmp(&b.0)));
    skus.truncate(limit);
    Some(TopSkus { start: chosen.0, end: chosen.1, skus })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(watermark: i64, windows: &[(i64, &[(&str, i64)])]) -> WindowHoldings {
        WindowHoldings {
            watermark,
            lateness: 10,
            windows: windows
                .iter()
                .map(|(start, skus)| HeldWindow {
                    start: *start,
                    end: start + 5,
                    skus: skus
                        .iter()
                        .map(|(sku, units)| {
                            (sku.to_string(), SkuFigures { units_sold: *units, net_revenue: Decimal::from(*units) })
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    fn ranked(top: &TopSkus) -> Vec<(&str, i64)> {
        top.skus.iter().map(|(sku, f)| (sku.as_str(), f.units_sold)).collect()
    }

    #[test]
    fn the_latest_window_complete_on_every_task_summed_and_ranked() {
        let tasks = [
            holding(12, &[(0, &[("A", 3), ("B", 1)]), (5, &[("A", 1)]), (10, &[("C", 9)])]),
            holding(10, &[(0, &[("B", 4)]), (5, &[("B", 2), ("C", 2)])]),
        ];
        // Window [10,15) has not ended on the second task; [5,10) has ended on both.
        let top = top_skus(&tasks, None, 10).unwrap();
        assert_eq!((top.start, top.end), (5, 10));
        assert_eq!(ranked(&top), vec![("B", 2), ("C", 2), ("A", 1)]);
        let top = top_skus(&tasks, Some(0), 1).unwrap();
        assert_eq!(ranked(&top), vec![("B", 5)]);
        assert_eq!(top_skus(&tasks, Some(10), 1), None, "not complete everywhere");
    }

    #[test]
    fn a_window_past_its_lateness_on_some_task_is_not_offered() {
        // On the first task [0,5) is past its lateness (5 + 10 <= 15): its panes may be gone.
        let tasks = [holding(15, &[(10, &[("A", 1)])]), holding(6, &[(0, &[("A", 7)])])];
        assert_eq!(top_skus(&tasks, None, 3), None);
    }
}

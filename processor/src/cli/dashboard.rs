//! The demo's live view, built from the engine's output records the way a downstream
//! consumer of the output topics would: keyed upserts, latest revision wins.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::sync::Arc;

use rust_decimal::Decimal;

use crate::config::{Dimension, PipelineConfig, WindowKind};
use crate::engine::EngineStats;
use crate::event::time::format_rfc3339_millis;
use crate::output::{AlertRecord, Output};

type RegionChannel = (Arc<str>, Arc<str>, Arc<str>);

pub struct Dashboard {
    sku_window: Option<String>,
    channel_window: Option<String>,
    names: HashMap<String, String>,
    units_by_key: HashMap<String, (Arc<str>, i64)>,
    units_by_sku: HashMap<Arc<str>, i64>,
    revenue_by_key: HashMap<String, (RegionChannel, Decimal)>,
    revenue: BTreeMap<RegionChannel, Decimal>,
    /// Each rule's count and latest alert.
    alerts: BTreeMap<&'static str, (u64, AlertRecord)>,
    alert_count: u64,
}

fn tumbling_window_by(config: &PipelineConfig, wanted: &[Dimension], unwanted: &[Dimension]) -> Option<String> {
    config
        .processing
        .windows
        .iter()
        .find(|w| {
            let dims = config.processing.group_by_of(w);
            w.kind == WindowKind::Tumbling
                && wanted.iter().all(|d| dims.contains(d))
                && unwanted.iter().all(|d| !dims.contains(d))
        })
        .map(|w| w.name.clone())
}

impl Dashboard {
    pub fn new(config: &PipelineConfig, names: HashMap<String, String>) -> Self {
        Dashboard {
            sku_window: tumbling_window_by(config, &[Dimension::Sku], &[]),
            channel_window: tumbling_window_by(
                config,
                &[Dimension::Region, Dimension::Channel],
                &[Dimension::Store, Dimension::Sku],
            ),
            names,
            units_by_key: HashMap::new(),
            units_by_sku: HashMap::new(),
            revenue_by_key: HashMap::new(),
            revenue: BTreeMap::new(),
            alerts: BTreeMap::new(),
            alert_count: 0,
        }
    }

    /// Takes one output record into the view.
    pub fn observe(&mut self, output: &Output) {
        match output {
            Output::Aggregate(r) if Some(r.window.as_ref()) == self.sku_window.as_deref() => {
                let Some(sku) = r.sku_id.clone() else { return };
                let previous = self.units_by_key.insert(r.key(), (sku.clone(), r.units_sold)).map_or(0, |(_, u)| u);
                *self.units_by_sku.entry(sku).or_insert(0) += r.units_sold - previous;
            }
            Output::Aggregate(r) if Some(r.window.as_ref()) == self.channel_window.as_deref() => {
                let (Some(region), Some(channel)) = (r.region.clone(), r.channel.clone()) else { return };
                let group = (region, channel, r.currency.clone());
                let previous = self
                    .revenue_by_key
                    .insert(r.key(), (group.clone(), r.net_revenue))
                    .map_or(Decimal::ZERO, |(_, v)| v);
                *self.revenue.entry(group).or_insert(Decimal::ZERO) += r.net_revenue - previous;
            }
            Output::Alert(a) => {
                self.alert_count += 1;
                let entry = self.alerts.entry(a.rule).or_insert_with(|| (0, (**a).clone()));
                entry.0 += 1;
                if a.event_time >= entry.1.event_time {
                    entry.1 = (**a).clone();
                }
            }
            _ => {}
        }
    }

    /// The top `n` SKUs by units sold in closed windows.
    pub fn top_skus(&self, n: usize) -> Vec<(Arc<str>, i64)> {
        let mut top: Vec<(Arc<str>, i64)> = self.units_by_sku.iter().map(|(k, v)| (k.clone(), *v)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        top
    }

    #[cfg(test)]
    pub fn revenue(&self) -> &BTreeMap<RegionChannel, Decimal> {
        &self.revenue
    }

    /// The whole view as text.
    pub fn render(&self, header: &str, stats: &EngineStats, watermark: i64) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "{header}");
        let _ = writeln!(
            s,
            "events {}  applied {}  duplicates {}  late {}  dead-lettered {}  corrections {}  alerts {}",
            stats.events_in,
            stats.events_applied,
            stats.duplicates,
            stats.late_events,
            stats.dead_lettered,
            stats.corrections,
            self.alert_count
        );
        let watermark = if watermark == i64::MIN { "(none yet)".to_string() } else { format_rfc3339_millis(watermark) };
        let reasons: Vec<String> = stats.dead_letter_reasons.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "watermark {watermark}   dead letters by reason: {}",
            if reasons.is_empty() { "-".into() } else { reasons.join(", ") }
        );
        let _ = writeln!(s);
        let _ = writeln!(s, "Top SKUs (units sold, closed {} windows)", self.sku_window.as_deref().unwrap_or("-"));
        for (rank, (sku, units)) in self.top_skus(8).iter().enumerate() {
            let name = self.names.get(sku.as_ref()).map_or("", String::as_str);
            let _ = writeln!(s, "  {:>2}. {:<11} {:<42} {:>7}", rank + 1, sku, name, units);
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Net revenue by region and channel (closed {} windows)",
            self.channel_window.as_deref().unwrap_or("-")
        );
        for ((region, channel, currency), value) in &self.revenue {
            let _ = writeln!(s, "  {:<11} {:<12} {} {:>14}", region, channel, currency, value.round_dp(2));
        }
        let _ = writeln!(s);
        let _ = writeln!(s, "Alerts by rule (count so far, latest)");
        for (rule, (count, a)) in &self.alerts {
            let _ = writeln!(
                s,
                "  {rule:<14} {count:>5}  {}  {:<8} {}",
                format_rfc3339_millis(a.event_time),
                a.severity,
                a.message
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::AggregateRecord;

    fn record(
        window: &str,
        start: i64,
        sku: Option<&str>,
        region: Option<&str>,
        units: i64,
        net: i64,
        revision: u32,
    ) -> Output {
        Output::Aggregate(AggregateRecord {
            window: window.into(),
            window_start: start,
            window_end: start + 300_000,
            store_id: sku.map(|_| "S1".into()),
            sku_id: sku.map(Into::into),
            region: region.map(Into::into),
            category: None,
            channel: region.map(|_| "online".into()),
            currency: "EUR".into(),
            units_sold: units,
            units_returned: 0,
            gross_revenue: Decimal::from(net),
            returns_revenue: Decimal::ZERO,
            net_revenue: Decimal::from(net),
            transactions: 1,
            revision,
        })
    }

    #[test]
    fn latest_revision_replaces_its_window_and_windows_add_up() {
        let mut d = Dashboard::new(&PipelineConfig::example(), HashMap::new());
        d.observe(&record("sales-5m", 0, Some("K1"), None, 3, 30, 1));
        d.observe(&record("sales-5m", 300_000, Some("K1"), None, 2, 20, 1));
        d.observe(&record("sales-5m", 0, Some("K1"), None, 5, 50, 2)); // correction of the first
        d.observe(&record("sales-5m", 0, Some("K2"), None, 4, 40, 1));
        d.observe(&record("channel-5m", 0, None, Some("eu-central"), 9, 90, 1));
        d.observe(&record("channel-5m", 0, None, Some("eu-central"), 9, 95, 2));
        d.observe(&record("trend-1h", 0, None, Some("eu-central"), 99, 990, 1)); // not summed: overlapping
        assert_eq!(d.top_skus(5), vec![(Arc::from("K1"), 7), (Arc::from("K2"), 4)]);
        assert_eq!(d.revenue().values().copied().collect::<Vec<_>>(), vec![Decimal::from(95)]);
        let text = d.render("header", &EngineStats::default(), i64::MIN);
        assert!(text.contains("   1. K1") && text.contains("eu-central  online       EUR             95"), "{text}");
    }
}

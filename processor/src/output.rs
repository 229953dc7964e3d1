//! The records the engine emits, their topics and their deterministic keys.
//!
//! Keys are a pure function of what a record describes (window and group, store and SKU,
//! source coordinates), so a replay overwrites earlier records instead of duplicating them.

use std::sync::Arc;

use base64::Engine as _;
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};

use crate::config::TopicRole;
use crate::event::time::{DateOf, Rfc3339Millis, format_rfc3339_millis};

fn rfc3339<S: Serializer>(millis: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&Rfc3339Millis(*millis))
}

fn decimal_str<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&value.normalize_money())
}

trait NormalizeMoney {
    fn normalize_money(&self) -> Decimal;
}

impl NormalizeMoney for Decimal {
    /// Money prints with at least two decimals (`12.50`), never in exponent form.
    fn normalize_money(&self) -> Decimal {
        let mut value = self.normalize();
        if value.scale() < 2 {
            value.rescale(2);
        }
        value
    }
}

/// Where an input record came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceCoordinates {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
}

/// One window's figures for one group; `revision` grows with each late correction.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AggregateRecord {
    pub window: Arc<str>,
    #[serde(serialize_with = "rfc3339")]
    pub window_start: i64,
    #[serde(serialize_with = "rfc3339")]
    pub window_end: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Arc<str>>,
    /// Money of different currencies is never summed: the currency is part of every group.
    pub currency: Arc<str>,
    pub units_sold: i64,
    pub units_returned: i64,
    #[serde(serialize_with = "decimal_str")]
    pub gross_revenue: Decimal,
    #[serde(serialize_with = "decimal_str")]
    pub returns_revenue: Decimal,
    #[serde(serialize_with = "decimal_str")]
    pub net_revenue: Decimal,
    pub transactions: u64,
    pub revision: u32,
}

impl AggregateRecord {
    pub fn key(&self) -> String {
        let mut key = format!("{}|{}", self.window, Rfc3339Millis(self.window_start));
        for dim in [&self.store_id, &self.sku_id, &self.region, &self.category, &self.channel].into_iter().flatten() {
            key.push('|');
            key.push_str(dim);
        }
        key.push('|');
        key.push_str(&self.currency);
        key
    }
}

/// The stock position of one SKU in one store.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InventoryRecord {
    pub store_id: Arc<str>,
    pub sku_id: Arc<str>,
    pub on_hand: i64,
    pub reserved: i64,
    pub available: i64,
    #[serde(serialize_with = "rfc3339")]
    pub last_event_time: i64,
    /// Units sold per day over the 7 days up to `last_event_time` (2 decimals).
    #[serde(serialize_with = "decimal_number")]
    pub velocity_7d: Decimal,
    /// `available / velocity_7d` (1 decimal); absent when nothing sold in 7 days.
    #[serde(serialize_with = "optional_decimal_number")]
    pub days_of_inventory: Option<Decimal>,
    /// The UTC date the stock runs out at the current velocity; absent when it does not.
    #[serde(serialize_with = "optional_date")]
    pub sell_through_date: Option<i64>,
}

fn decimal_number<S: Serializer>(value: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    use rust_decimal::prelude::ToPrimitive;
    s.serialize_f64(value.to_f64().unwrap_or(0.0))
}

fn optional_decimal_number<S: Serializer>(value: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => decimal_number(v, s),
        None => s.serialize_none(),
    }
}

fn optional_rfc3339<S: Serializer>(value: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(millis) => s.collect_str(&Rfc3339Millis(*millis)),
        None => s.serialize_none(),
    }
}

fn optional_date<S: Serializer>(value: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(millis) => s.collect_str(&DateOf(*millis)),
        None => s.serialize_none(),
    }
}

impl InventoryRecord {
    pub fn key(&self) -> String {
        format!("{}|{}", self.store_id, self.sku_id)
    }
}

/// An alert fired by a rule of an alert policy.
///
/// `alert_id` is a pure function of its cause (policy, rule, key and the crossing event or
/// window), so a replay or a restart after a crash gives the same id, and a consumer keeps
/// one alert per id. Fields that do not apply to the rule are left out.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertRecord {
    pub alert_id: String,
    pub policy: Arc<str>,
    /// `lowStock`, `stuckInventory`, `salesSpike` or `amountOutlier`.
    pub rule: &'static str,
    /// `critical`, `warning` or `info`.
    pub severity: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sku_id: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Arc<str>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "optional_rfc3339")]
    pub window_start: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "optional_rfc3339")]
    pub window_end: Option<i64>,
    /// The figures that made the rule fire.
    pub figures: AlertFigures,
    /// Event time of what made the rule fire (for a window, its end).
    #[serde(serialize_with = "rfc3339")]
    pub event_time: i64,
    /// The event that made the rule fire (not for window rules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub message: String,
}

/// The figures behind an alert; each rule fills its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AlertFigures {
    /// lowStock: available stock after the event, the threshold, and the level stock must
    /// climb above before the rule re-arms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rearm_above: Option<i64>,
    /// stuckInventory: on-hand stock, unchanged since `unchanged_since`, over
    /// `events_since_change` events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_hand: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "optional_rfc3339")]
    pub unchanged_since: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_since_change: Option<u32>,
    /// salesSpike: the window's measure (`units` or `revenue`), its value, the baseline
    /// and the factor; amountOutlier: the sale line's amount as `value`, and the store's
    /// mean, standard deviation, sigma and samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub measure: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stddev: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sigma: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<u64>,
}

impl AlertRecord {
    pub fn key(&self) -> String {
        self.alert_id.clone()
    }
}

/// An input record refused as invalid: the original bytes, untouched, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetterRecord {
    pub reason_code: &'static str,
    pub reason: String,
    pub original: Vec<u8>,
    pub source: SourceCoordinates,
}

/// A valid event that came too late for some of its windows (or for deduplication).
/// Inventory has already applied it unless `reason_code` is `beyond_dedupe_horizon`.
#[derive(Clone, Debug, PartialEq)]
pub struct LateRecord {
    pub reason_code: &'static str,
    pub reason: String,
    pub event_id: String,
    pub event_time: i64,
    pub original: Vec<u8>,
    pub source: SourceCoordinates,
}

/// A partial as the repartition topic carries it (`{"kind": "partial", ...}`), by reference.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum PartialRef<'a> {
    Partial(&'a crate::engine::Partial),
}

fn original_fields(original: &[u8]) -> (String, bool) {
    match std::str::from_utf8(original) {
        Ok(text) => (text.to_string(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(original), true),
    }
}

/// Everything the engine emits.
#[derive(Clone, Debug, PartialEq)]
pub enum Output {
    Aggregate(AggregateRecord),
    Inventory(InventoryRecord),
    Alert(Box<AlertRecord>),
    DeadLetter(DeadLetterRecord),
    Late(LateRecord),
    /// A task's partial figures of a window merged across tasks (the repartition stage).
    Partial(crate::engine::Partial),
}

impl Output {
    /// About the memory the record holds while it waits to be sent: a fixed part for its
    /// fields, and the input a dead-letter or late record quotes.
    pub fn held_bytes(&self) -> usize {
        const FIELDS: usize = 256;
        FIELDS
            + match self {
                Output::DeadLetter(d) => d.original.len().saturating_add(d.reason.len()),
                Output::Late(l) => l.original.len().saturating_add(l.reason.len()),
                _ => 0,
            }
    }

    /// The topic (by role) the record goes to.
    pub fn role(&self) -> TopicRole {
        match self {
            Output::Aggregate(_) => TopicRole::Aggregates,
            Output::Inventory(_) => TopicRole::InventoryState,
            Output::Alert(_) => TopicRole::Alerts,
            Output::DeadLetter(_) => TopicRole::DeadLetter,
            Output::Late(_) => TopicRole::Late,
            Output::Partial(_) => TopicRole::Repartition,
        }
    }

    /// The record key: deterministic, so a replay overwrites.
    pub fn key(&self) -> String {
        match self {
            Output::Aggregate(r) => r.key(),
            Output::Inventory(r) => r.key(),
            Output::Alert(r) => r.key(),
            Output::DeadLetter(r) => format!("{}/{}/{}", r.source.topic, r.source.partition, r.source.offset),
            Output::Late(r) => r.event_id.clone(),
            Output::Partial(p) => p.key(),
        }
    }

    /// Writes the record as one JSON document ([`Output::to_json`]'s text) to `out`,
    /// serialized straight from the record: no `serde_json::Value` in between for the
    /// records the hot path emits (aggregates, inventory, alerts, partials).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let written = match self {
            Output::Aggregate(r) => serde_json::to_writer(&mut *out, r),
            Output::Inventory(r) => serde_json::to_writer(&mut *out, r),
            Output::Alert(r) => serde_json::to_writer(&mut *out, r),
            Output::Partial(p) => serde_json::to_writer(&mut *out, &PartialRef::Partial(p)),
            Output::DeadLetter(_) | Output::Late(_) => serde_json::to_writer(&mut *out, &self.to_json()),
        };
        // Writing plain structs into a Vec cannot fail; keep a readable record if it ever did.
        if let Err(e) = written {
            out.clear();
            out.extend_from_slice(serde_json::json!({ "serialization_error": e.to_string() }).to_string().as_bytes());
        }
    }

    /// The value of the record on Kafka: dead-letter and late records carry the original
    /// bytes (the rest goes in headers); the others their JSON document.
    pub fn write_value(&self, out: &mut Vec<u8>) {
        match self {
            Output::DeadLetter(r) => out.extend_from_slice(&r.original),
            Output::Late(r) => out.extend_from_slice(&r.original),
            _ => self.write_json(out),
        }
    }

    /// The record as a JSON document (for NDJSON files and the demo). On Kafka, dead-letter
    /// and late records carry the original bytes as the value and the rest in headers.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Output::Aggregate(r) => serde_json::to_value(r),
            Output::Inventory(r) => serde_json::to_value(r),
            Output::Alert(r) => serde_json::to_value(r),
            Output::Partial(p) => serde_json::to_value(PartialRef::Partial(p)),
            Output::DeadLetter(r) => {
                let (original, base64) = original_fields(&r.original);
                Ok(serde_json::json!({
                    "reason": r.reason,
                    "reason_code": r.reason_code,
                    "original": original,
                    "original_base64": base64,
                    "topic": r.source.topic,
                    "partition": r.source.partition,
                    "offset": r.source.offset,
                }))
            }
            Output::Late(r) => {
                let (original, base64) = original_fields(&r.original);
                Ok(serde_json::json!({
                    "reason": r.reason,
                    "reason_code": r.reason_code,
                    "event_id": r.event_id,
                    "event_time": format_rfc3339_millis(r.event_time),
                    "original": original,
                    "original_base64": base64,
                    "topic": r.source.topic,
                    "partition": r.source.partition,
                    "offset": r.source.offset,
                }))
            }
        };
        // Serializing these plain structs cannot fail; keep a readable record if it ever did.
        value.unwrap_or_else(|e| serde_json::json!({ "serialization_error": e.to_string() }))
    }

    /// Headers of the Kafka record (reason and coordinates of dead-letter and late records).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        match self {
            Output::DeadLetter(r) => vec![
                ("stockpulse.reason", r.reason.clone()),
                ("stockpulse.reason_code", r.reason_code.to_string()),
                ("stockpulse.source", format!("{}/{}/{}", r.source.topic, r.source.partition, r.source.offset)),
            ],
            Output::Late(r) => vec![
                ("stockpulse.reason", r.reason.clone()),
                ("stockpulse.reason_code", r.reason_code.to_string()),
                ("stockpulse.source", format!("{}/{}/{}", r.source.topic, r.source.partition, r.source.offset)),
            ],
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn coords() -> SourceCoordinates {
        SourceCoordinates { topic: "p.sales".into(), partition: 3, offset: 42 }
    }

    #[test]
    fn aggregate_json_and_key() {
        let r = AggregateRecord {
            window: "sales-5m".into(),
            window_start: 1_795_773_600_000,
            window_end: 1_795_773_900_000,
            store_id: Some("S1".into()),
            sku_id: Some("K1".into()),
            region: None,
            category: None,
            channel: None,
            currency: "EUR".into(),
            units_sold: 3,
            units_returned: 1,
            gross_revenue: Decimal::new(14985, 2),
            returns_revenue: Decimal::new(4995, 2),
            net_revenue: Decimal::new(9990, 2),
            transactions: 2,
            revision: 1,
        };
        assert_eq!(Output::Aggregate(r.clone()).key(), "sales-5m|2026-11-27T10:00:00Z|S1|K1|EUR");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"window":"sales-5m","window_start":"2026-11-27T10:00:00Z","window_end":"2026-11-27T10:05:00Z","store_id":"S1","sku_id":"K1","currency":"EUR","units_sold":3,"units_returned":1,"gross_revenue":"149.85","returns_revenue":"49.95","net_revenue":"99.90","transactions":2,"revision":1}"#
        );
    }

    #[test]
    fn money_prints_two_decimals_at_least() {
        assert_eq!(Decimal::new(5, 0).normalize_money().to_string(), "5.00");
        assert_eq!(Decimal::new(12345, 3).normalize_money().to_string(), "12.345");
        assert_eq!(Decimal::new(1200, 2).normalize_money().to_string(), "12.00");
    }

    #[test]
    fn dead_letter_keeps_bytes_as_text_or_base64() {
        let text = Output::DeadLetter(DeadLetterRecord {
            reason_code: "not_json",
            reason: "not_json: nope".into(),
            original: b"{oops".to_vec(),
            source: coords(),
        });
        assert_eq!(text.key(), "p.sales/3/42");
        assert_eq!(text.to_json()["original"], "{oops");
        assert_eq!(text.to_json()["original_base64"], false);
        let binary = Output::DeadLetter(DeadLetterRecord {
            reason_code: "not_json",
            reason: "x".into(),
            original: vec![0xff, 0x00],
            source: coords(),
        });
        assert_eq!(binary.to_json()["original"], "/wA=");
        assert_eq!(binary.to_json()["original_base64"], true);
        assert_eq!(binary.headers()[2], ("stockpulse.source", "p.sales/3/42".to_string()));
        let mut value = Vec::new();
        binary.write_value(&mut value);
        assert_eq!(value, [0xff, 0x00], "on Kafka, the original bytes untouched");
    }

    #[test]
    fn written_json_is_the_json_document() {
        let inventory = Output::Inventory(InventoryRecord {
            store_id: "S1".into(),
            sku_id: "K1".into(),
            on_hand: 7,
            reserved: 1,
            available: 6,
            last_event_time: 1_795_773_600_250,
            velocity_7d: Decimal::new(125, 2),
            days_of_inventory: Some(Decimal::new(48, 1)),
            sell_through_date: Some(1_796_169_600_000),
        });
        let late = Output::Late(LateRecord {
            reason_code: "beyond_allowed_lateness",
            reason: "too late".into(),
            event_id: "e1".into(),
            event_time: 0,
            original: b"{}".to_vec(),
            source: coords(),
        });
        for output in [inventory, late] {
            let mut written = Vec::new();
            output.write_json(&mut written);
            assert_eq!(serde_json::from_slice::<serde_json::Value>(&written).unwrap(), output.to_json());
        }
        let partial = crate::engine::Partial {
            task: 1,
            window: "region-5m".into(),
            start: 0,
            end: 300_000,
            group: [None, None, Some("eu".into()), None, None, Some("EUR".into())],
            figures: crate::engine::Figures::default(),
            revision: 2,
        };
        let mut written = Vec::new();
        Output::Partial(partial.clone()).write_json(&mut written);
        let read: crate::engine::RepartitionRecord = serde_json::from_slice(&written).unwrap();
        assert_eq!(read, crate::engine::RepartitionRecord::Partial(Box::new(partial)));
    }
}

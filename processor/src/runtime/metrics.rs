//! The processor's Prometheus metrics (prometheus-client), served on `/metrics`.
//!
//! Counters grow by the engine's figures at each commit, so they count what was committed
//! together with its outputs (an aborted transaction's work is counted when redone).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::engine::EngineStats;

type Labels = Vec<(&'static str, String)>;

pub struct Metrics {
    registry: DescribedRegistry,
    pub events: Family<Labels, Counter>,
    pub dead_letters: Family<Labels, Counter>,
    pub outputs: Family<Labels, Counter>,
    pub transactions: Family<Labels, Counter>,
    pub watermark_delay: Family<Labels, Gauge<f64, AtomicU64>>,
    pub consumer_lag: Family<Labels, Gauge>,
    pub latency: Histogram,
    pub restore_records: Counter,
    pub restore_seconds: Histogram,
    pub held_output_bytes: Histogram,
    pub input_holds: Counter,
    pub commit_seconds: Histogram,
    pub commit_phase_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    pub tasks: Gauge,
    pub reference_errors: Family<Labels, Counter>,
    pub kafka_errors: Family<Labels, Counter>,
    pub partition_pauses: Counter,
    pub unknown_values: Family<Labels, Counter>,
    pub alerts: Family<Labels, Counter>,
    pub alert_last_fired: Family<Labels, Gauge<f64, AtomicU64>>,
    pub webhook_deliveries: Family<Labels, Counter>,
    pub webhook_in_flight: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = DescribedRegistry::with_prefix("stockpulse_processor");
        let events = Family::<Labels, Counter>::default();
        registry.register(
            "events",
            "Input events by outcome: in, applied, duplicate, late, dead_lettered",
            events.clone(),
        );
        let dead_letters = Family::<Labels, Counter>::default();
        registry.register("dead_letters", "Events sent to the dead-letter topic, by reason", dead_letters.clone());
        let outputs = Family::<Labels, Counter>::default();
        registry.register("outputs", "Output records written, by topic role", outputs.clone());
        let transactions = Family::<Labels, Counter>::default();
        registry.register(
            "transactions",
            "Kafka transactions (commits), by result: committed, aborted",
            transactions.clone(),
        );
        let watermark_delay = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "watermark_delay_seconds",
            "Processing time minus the event-time watermark, per task (input partition)",
            watermark_delay.clone(),
        );
        let consumer_lag = Family::<Labels, Gauge>::default();
        registry.register(
            "consumer_lag_records",
            "Records behind the end of the log (last stable offset), per input partition",
            consumer_lag.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.005, 2.0, 14));
        registry.register(
            "end_to_end_latency_seconds",
            "From an input record's timestamp to the commit of its outputs",
            latency.clone(),
        );
        let restore_records = Counter::default();
        registry.register("restore_records", "Changelog records read while restoring tasks", restore_records.clone());
        let restore_seconds = Histogram::new(exponential_buckets(0.01, 2.0, 14));
        registry.register("restore_seconds", "Time to restore a task's state", restore_seconds.clone());
        let held_output_bytes = Histogram::new(exponential_buckets(16_384.0, 4.0, 9));
        registry.register(
            "held_output_bytes",
            "Outputs (estimated bytes) computed while a commit was in flight and held for the next transaction, at the commit's end",
            held_output_bytes.clone(),
        );
        let input_holds = Counter::default();
        registry.register(
            "input_holds",
            "Times every input was paused until the commit in flight ended, its held outputs past --max-held-output-bytes",
            input_holds.clone(),
        );
        let commit_seconds = commit_histogram();
        registry.register(
            "commit_seconds",
            "Time to commit the work of every task (the transaction, or the flush and the offsets)",
            commit_seconds.clone(),
        );
        let commit_phase_seconds =
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(commit_histogram as fn() -> Histogram);
        registry.register(
            "commit_phase_seconds",
            "Time of each phase of a transaction's commit, by phase: deliver (the outputs acknowledged), offsets (the input offsets added), end (the transaction committed)",
            commit_phase_seconds.clone(),
        );
        let tasks = Gauge::default();
        registry.register("tasks", "Tasks (input partition numbers) this instance processes", tasks.clone());
        let reference_errors = Family::<Labels, Counter>::default();
        registry.register(
            "reference_errors",
            "Reference records (stores, catalog) that could not be read, by kind",
            reference_errors.clone(),
        );
        let kafka_errors = Family::<Labels, Counter>::default();
        registry.register("kafka_errors", "Kafka errors by operation (retried unless fatal)", kafka_errors.clone());
        let partition_pauses = Counter::default();
        registry.register(
            "partition_pauses",
            "Times a task paused fetching one of its partitions, its buffer full while it waited for the other",
            partition_pauses.clone(),
        );
        let unknown_values = Family::<Labels, Counter>::default();
        registry.register(
            "unknown_values",
            "Events kept although a field held a value this version does not know, by field (channel: given the store's)",
            unknown_values.clone(),
        );
        let alerts = Family::<Labels, Counter>::default();
        registry.register("alerts", "Alerts fired and written, by policy and rule", alerts.clone());
        let alert_last_fired = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "alert_last_fired_timestamp_seconds",
            "Event time of the latest alert written, by policy",
            alert_last_fired.clone(),
        );
        let webhook_deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Alert webhook deliveries by policy and outcome: delivered, retried (an attempt), failed (dead-lettered), repeated (an id already posted)",
            webhook_deliveries.clone(),
        );
        let webhook_in_flight = Gauge::default();
        registry.register("webhook_in_flight", "Alert webhook deliveries under way", webhook_in_flight.clone());
        Metrics {
            registry,
            events,
            dead_letters,
            outputs,
            transactions,
            watermark_delay,
            consumer_lag,
            latency,
            restore_records,
            restore_seconds,
            held_output_bytes,
            input_holds,
            commit_seconds,
            commit_phase_seconds,
            tasks,
            reference_errors,
            kafka_errors,
            partition_pauses,
            unknown_values,
            alerts,
            alert_last_fired,
            webhook_deliveries,
            webhook_in_flight,
        }
    }

    /// The histograms of each phase of a transaction's commit.
    pub fn commit_phases(&self) -> super::committer::Phases {
        let phase = |name: &str| self.commit_phase_seconds.get_or_create(&vec![("phase", name.to_string())]).clone();
        super::committer::Phases { deliver: phase("deliver"), offsets: phase("offsets"), end: phase("end") }
    }

    /// Adds what the engine did between two of its statistics.
    pub fn add_engine_delta(&self, before: &EngineStats, after: &EngineStats) {
        for (outcome, a, b) in [
            ("in", before.events_in, after.events_in),
            ("applied", before.events_applied, after.events_applied),
            ("duplicate", before.duplicates, after.duplicates),
            ("late", before.late_events, after.late_events),
            ("dead_lettered", before.dead_lettered, after.dead_lettered),
        ] {
            if b > a {
                self.events.get_or_create(&vec![("outcome", outcome.to_string())]).inc_by(b - a);
            }
        }
        if after.unknown_channels > before.unknown_channels {
            self.unknown_values
                .get_or_create(&vec![("field", "channel".to_string())])
                .inc_by(after.unknown_channels - before.unknown_channels);
        }
        for (reason, count) in &after.dead_letter_reasons {
            let was = before.dead_letter_reasons.get(reason).copied().unwrap_or(0);
            if *count > was {
                self.dead_letters.get_or_create(&vec![("reason", reason.to_string())]).inc_by(count - was);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        self.registry.encode()
    }

    /// Every metric it exports.
    pub fn described(&self) -> &[MetricDescription] {
        self.registry.described()
    }
}

fn commit_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// One registered metric: its full name (prefix included), type and help.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricDescription {
    pub name: String,
    pub kind: &'static str,
    pub help: String,
}

impl MetricDescription {
    /// The series it is scraped as: `_total` for a counter, `_bucket`, `_sum` and `_count`
    /// for a histogram.
    pub fn series(&self) -> Vec<String> {
        match self.kind {
            "counter" => vec![format!("{}_total", self.name)],
            "histogram" => ["_bucket", "_sum", "_count"].iter().map(|s| format!("{}{s}", self.name)).collect(),
            _ => vec![self.name.clone()],
        }
    }
}

/// A Prometheus registry that keeps what was registered in it, so that the metrics reference
/// names every metric, families without a series yet included (the text format leaves those
/// out).
#[derive(Debug)]
pub struct DescribedRegistry {
    registry: Registry,
    prefix: &'static str,
    described: Vec<MetricDescription>,
}

impl DescribedRegistry {
    pub fn with_prefix(prefix: &'static str) -> Self {
        DescribedRegistry { registry: Registry::with_prefix(prefix), prefix, described: Vec::new() }
    }

    pub fn register(&mut self, name: &str, help: &str, metric: impl Metric) {
        let kind = match metric.metric_type().as_str() {
            "counter" => "counter",
            "gauge" => "gauge",
            "histogram" => "histogram",
            "info" => "info",
            _ => "unknown",
        };
        let help_text = if help.ends_with('.') { help.to_string() } else { format!("{help}.") };
        self.described.push(MetricDescription { name: format!("{}_{name}", self.prefix), kind, help: help_text });
        self.registry.register(name, help, metric);
    }

    /// Every metric registered, in order.
    pub fn described(&self) -> &[MetricDescription] {
        &self.described
    }

    /// The text exposition format (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_type_is_named_by_the_series_it_is_scraped_as() {
        let metric = |name: &str, kind| MetricDescription { name: name.to_string(), kind, help: String::new() };
        assert_eq!(metric("a_events", "counter").series(), ["a_events_total"]);
        assert_eq!(metric("a_lag", "gauge").series(), ["a_lag"]);
        assert_eq!(metric("a_commit", "histogram").series(), ["a_commit_bucket", "a_commit_sum", "a_commit_count"]);
    }

    #[test]
    fn the_description_names_every_metric_the_text_format_shows() {
        let metrics = Metrics::new();
        metrics.events.get_or_create(&vec![("outcome", "in".to_string())]).inc();
        metrics.commit_phases().end.observe(0.01);
        let described: Vec<(&str, &str)> = metrics.described().iter().map(|m| (m.name.as_str(), m.kind)).collect();
        let text = metrics.encode();
        let typed: Vec<(&str, &str)> =
            text.lines().filter_map(|line| line.strip_prefix("# TYPE ")?.split_once(' ')).collect();
        assert!(typed.contains(&("stockpulse_processor_events", "counter")), "{text}");
        assert!(typed.contains(&("stockpulse_processor_commit_phase_seconds", "histogram")), "{text}");
        for metric in &typed {
            assert!(described.contains(metric), "{metric:?} is described: {described:?}");
        }
        assert!(described.len() > typed.len(), "families without a series are described too");
    }
}

//! Prometheus metrics of the operator: reconciles, errors and durations by kind.

use std::sync::atomic::AtomicU64;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use stockpulse_processor::runtime::metrics::{DescribedRegistry, MetricDescription};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub kind: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub namespace: String,
    pub pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub namespace: String,
    pub pipeline: String,
    pub topic: String,
    pub partition: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleLabels {
    pub namespace: String,
    pub pipeline: String,
    pub direction: String,
}

#[derive(Debug)]
pub struct Metrics {
    pub reconciles: Family<KindLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: Family<KindLabels, Histogram>,
    pub consumer_lag: Family<PipelineLabels, Gauge>,
    pub desired_replicas: Family<PipelineLabels, Gauge>,
    pub ready_replicas: Family<PipelineLabels, Gauge>,
    pub partition_lag: Family<PartitionLabels, Gauge>,
    pub input_rate: Family<PipelineLabels, Gauge<f64, AtomicU64>>,
    pub processed_rate: Family<PipelineLabels, Gauge<f64, AtomicU64>>,
    pub capacity_per_replica: Family<PipelineLabels, Gauge<f64, AtomicU64>>,
    pub recommended_replicas: Family<PipelineLabels, Gauge>,
    pub autoscaler_desired_replicas: Family<PipelineLabels, Gauge>,
    pub scale_events: Family<ScaleLabels, Counter>,
    pub kube_requests: Family<crate::kube_requests::RequestLabels, Counter>,
    registry: DescribedRegistry,
}

fn duration_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = DescribedRegistry::with_prefix("stockpulse_operator");
        let reconciles = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        registry.register("reconciles", "Reconciliations by kind", reconciles.clone());
        registry.register("reconcile_errors", "Failed reconciliations by kind and error", errors.clone());
        registry.register("reconcile_duration_seconds", "Duration of reconciliations by kind", duration.clone());
        let consumer_lag = Family::<PipelineLabels, Gauge>::default();
        let desired_replicas = Family::<PipelineLabels, Gauge>::default();
        registry.register("consumer_lag", "Consumer-group lag over a pipeline's input topics", consumer_lag.clone());
        registry.register("desired_replicas", "Processor replicas the operator asks for", desired_replicas.clone());
        let ready_replicas = Family::<PipelineLabels, Gauge>::default();
        registry.register(
            "ready_replicas",
            "Processor replicas ready, as the Deployment reports",
            ready_replicas.clone(),
        );
        let partition_lag = Family::<PartitionLabels, Gauge>::default();
        registry.register(
            "partition_lag",
            "Consumer-group lag of each input partition, as the autoscaler sampled it",
            partition_lag.clone(),
        );
        let input_rate = Family::<PipelineLabels, Gauge<f64, AtomicU64>>::default();
        registry.register("input_rate", "Records per second into a pipeline's input topics", input_rate.clone());
        let processed_rate = Family::<PipelineLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "processed_rate",
            "Records per second the processor's consumer group committed",
            processed_rate.clone(),
        );
        let capacity_per_replica = Family::<PipelineLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "capacity_per_replica",
            "Records per second per replica the autoscaler uses (learned or configured)",
            capacity_per_replica.clone(),
        );
        let recommended_replicas = Family::<PipelineLabels, Gauge>::default();
        registry.register(
            "recommended_replicas",
            "Replicas the last sample asked for, before stabilization and bounds",
            recommended_replicas.clone(),
        );
        let autoscaler_desired_replicas = Family::<PipelineLabels, Gauge>::default();
        registry.register(
            "autoscaler_desired_replicas",
            "Replicas the autoscaler decided at its last sample",
            autoscaler_desired_replicas.clone(),
        );
        let scale_events = Family::<ScaleLabels, Counter>::default();
        registry.register("scale_events", "Changes of a pipeline's replicas by direction", scale_events.clone());
        let kube_requests = Family::<crate::kube_requests::RequestLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests to the Kubernetes API server, by verb and resource (plural.group/subresource)",
            kube_requests.clone(),
        );
        Metrics {
            reconciles,
            errors,
            duration,
            consumer_lag,
            desired_replicas,
            ready_replicas,
            partition_lag,
            input_rate,
            processed_rate,
            capacity_per_replica,
            recommended_replicas,
            autoscaler_desired_replicas,
            scale_events,
            kube_requests,
            registry,
        }
    }
}

impl Metrics {
    /// Counts a reconcile of `kind` and times it until the returned guard drops.
    pub fn start(&self, kind: &str) -> ReconcileTimer<'_> {
        self.reconciles.get_or_create(&KindLabels { kind: kind.to_string() }).inc();
        ReconcileTimer { metrics: self, kind: kind.to_string(), start: Instant::now() }
    }

    pub fn error(&self, kind: &str, error: &str) {
        self.errors.get_or_create(&ErrorLabels { kind: kind.to_string(), error: error.to_string() }).inc();
    }

    /// Records a pipeline's lag (when known), desired replicas and ready replicas.
    pub fn pipeline(&self, namespace: &str, pipeline: &str, lag: Option<i64>, desired_replicas: i32, ready: i32) {
        let labels = PipelineLabels { namespace: namespace.to_string(), pipeline: pipeline.to_string() };
        if let Some(lag) = lag {
            self.consumer_lag.get_or_create(&labels).set(lag);
        }
        self.desired_replicas.get_or_create(&labels).set(i64::from(desired_replicas));
        self.ready_replicas.get_or_create(&labels).set(i64::from(ready));
    }

    /// Records an autoscaler sample: lag per partition, rates, capacity, replicas.
    pub fn autoscaling(
        &self,
        namespace: &str,
        pipeline: &str,
        decision: &crate::autoscale::decision::Decision,
        offsets: &[crate::kafka_admin::PartitionOffsets],
    ) {
        let labels = PipelineLabels { namespace: namespace.to_string(), pipeline: pipeline.to_string() };
        for o in offsets {
            let partition = PartitionLabels {
                namespace: namespace.to_string(),
                pipeline: pipeline.to_string(),
                topic: o.topic.clone(),
                partition: o.partition.to_string(),
            };
            self.partition_lag.get_or_create(&partition).set(o.lag());
        }
        self.consumer_lag.get_or_create(&labels).set(decision.lag);
        if let Some(rate) = decision.input_rate {
            self.input_rate.get_or_create(&labels).set(rate);
        }
        if let Some(rate) = decision.processed_rate {
            self.processed_rate.get_or_create(&labels).set(rate);
        }
        self.capacity_per_replica.get_or_create(&labels).set(decision.capacity_per_replica);
        if let Some(n) = decision.recommendation {
            self.recommended_replicas.get_or_create(&labels).set(i64::from(n));
        }
        self.autoscaler_desired_replicas.get_or_create(&labels).set(i64::from(decision.desired));
    }

    /// Counts a change of a pipeline's replicas.
    pub fn scaled(&self, namespace: &str, pipeline: &str, up: bool) {
        let labels = ScaleLabels {
            namespace: namespace.to_string(),
            pipeline: pipeline.to_string(),
            direction: if up { "up" } else { "down" }.to_string(),
        };
        self.scale_events.get_or_create(&labels).inc();
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

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    kind: String,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&KindLabels { kind: std::mem::take(&mut self.kind) })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciles_errors_and_durations_by_kind() {
        let metrics = Metrics::default();
        drop(metrics.start("RetailPipeline"));
        drop(metrics.start("RetailPipeline"));
        metrics.error("StoreRegion", "kafka");
        metrics.pipeline("acme", "shop", Some(4200), 3, 2);
        let text = metrics.encode();
        assert!(text.contains("stockpulse_operator_reconciles_total{kind=\"RetailPipeline\"} 2"), "{text}");
        assert!(
            text.contains("stockpulse_operator_reconcile_errors_total{kind=\"StoreRegion\",error=\"kafka\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("stockpulse_operator_reconcile_duration_seconds_count{kind=\"RetailPipeline\"} 2"),
            "{text}"
        );
        assert!(text.contains("stockpulse_operator_consumer_lag{namespace=\"acme\",pipeline=\"shop\"} 4200"), "{text}");
        assert!(
            text.contains("stockpulse_operator_desired_replicas{namespace=\"acme\",pipeline=\"shop\"} 3"),
            "{text}"
        );
        assert!(text.contains("stockpulse_operator_ready_replicas{namespace=\"acme\",pipeline=\"shop\"} 2"), "{text}");
    }
}

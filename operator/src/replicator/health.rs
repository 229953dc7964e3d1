//! What the replicator says about itself: why it is or is not copying ([`Reason`]), its
//! Prometheus metrics, and the HTTP endpoints `/metrics`, `/healthz` and `/readyz` (ready
//! only while it copies: not while the source is unreachable, credentials are refused or a
//! topic is missing).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::atomic::AtomicU64;
use stockpulse_processor::runtime::metrics::{DescribedRegistry, MetricDescription};

/// Why the replicator copies or does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Connecting, reading its checkpoints.
    Starting,
    Replicating,
    /// The regional cluster does not answer (WAN down, brokers down).
    SourceUnreachable,
    /// The pipeline's cluster does not answer or refused a transaction.
    TargetUnreachable,
    /// A cluster refused the credentials or an operation (SASL, TLS, ACLs).
    AuthFailed,
    /// A topic to copy from or into does not exist.
    TopicMissing,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Starting => "Starting",
            Reason::Replicating => "Replicating",
            Reason::SourceUnreachable => "SourceUnreachable",
            Reason::TargetUnreachable => "TargetUnreachable",
            Reason::AuthFailed => "AuthFailed",
            Reason::TopicMissing => "TopicMissing",
        }
    }
}

/// Which side of the copy an error came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

/// The reason a Kafka error on `side` stands for.
pub fn classify(side: Side, error: &KafkaError) -> Reason {
    use RDKafkaErrorCode as C;
    let unreachable = match side {
        Side::Source => Reason::SourceUnreachable,
        Side::Target => Reason::TargetUnreachable,
    };
    match error.rdkafka_error_code() {
        Some(
            C::SaslAuthenticationFailed
            | C::Authentication
            | C::TopicAuthorizationFailed
            | C::GroupAuthorizationFailed
            | C::ClusterAuthorizationFailed
            | C::TransactionalIdAuthorizationFailed
            | C::SSL,
        ) => Reason::AuthFailed,
        Some(C::UnknownTopicOrPartition | C::UnknownTopic | C::UnknownPartition) => Reason::TopicMissing,
        _ => unreachable,
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// The replicator's Prometheus metrics (prefix `stockpulse_replicator`).
#[derive(Debug)]
pub struct Metrics {
    pub records_copied: Counter,
    pub bytes_copied: Counter,
    /// Records not copied because their origin is the target (the loop guard).
    pub records_skipped: Counter,
    pub records_lost: Counter,
    pub lag_records: Gauge,
    pub lag_seconds: Gauge<f64, AtomicU64>,
    pub batch_seconds: Histogram,
    pub transactions: Family<ResultLabels, Counter>,
    /// 1 for the current reason, 0 for the others.
    pub state: Family<ReasonLabels, Gauge>,
    registry: DescribedRegistry,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = DescribedRegistry::with_prefix("stockpulse_replicator");
        let records_copied = Counter::default();
        let bytes_copied = Counter::default();
        let records_skipped = Counter::default();
        let records_lost = Counter::default();
        let lag_records = Gauge::default();
        let lag_seconds = Gauge::<f64, AtomicU64>::default();
        let batch_seconds = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]);
        let transactions = Family::<ResultLabels, Counter>::default();
        let state = Family::<ReasonLabels, Gauge>::default();
        registry.register("records_copied", "Records copied into the target, committed", records_copied.clone());
        registry.register(
            "bytes_copied",
            "Key and value bytes copied into the target, committed",
            bytes_copied.clone(),
        );
        registry.register(
            "records_skipped",
            "Records not copied because they came from the target (origin-region header)",
            records_skipped.clone(),
        );
        registry.register(
            "records_lost",
            "Records the source deleted (retention) before they were copied",
            records_lost.clone(),
        );
        registry.register("lag_records", "Records in the source not yet copied", lag_records.clone());
        registry.register(
            "lag_seconds",
            "Age of the oldest record not yet copied (0 when caught up)",
            lag_seconds.clone(),
        );
        registry.register(
            "batch_duration_seconds",
            "Time from a batch's first record to its committed transaction",
            batch_seconds.clone(),
        );
        registry.register("transactions", "Target transactions by result (committed, aborted)", transactions.clone());
        registry.register("state", "1 for the replicator's current reason", state.clone());
        Metrics {
            records_copied,
            bytes_copied,
            records_skipped,
            records_lost,
            lag_records,
            lag_seconds,
            batch_seconds,
            transactions,
            state,
            registry,
        }
    }
}

impl Metrics {
    pub fn transaction(&self, result: &str) {
        self.transactions.get_or_create(&ResultLabels { result: result.to_string() }).inc();
    }

    pub fn encode(&self) -> String {
        self.registry.encode()
    }

    /// Every metric it exports.
    pub fn described(&self) -> &[MetricDescription] {
        self.registry.described()
    }
}

/// The replicator's state, shared by the copy loop and the HTTP server.
#[derive(Debug)]
pub struct Health {
    pub metrics: Metrics,
    state: Mutex<(Reason, String)>,
}

impl Default for Health {
    fn default() -> Self {
        let health = Health { metrics: Metrics::default(), state: Mutex::new((Reason::Starting, String::new())) };
        health.set(Reason::Starting, "connecting to both clusters");
        health
    }
}

impl Health {
    /// Sets the current reason; logs a change.
    pub fn set(&self, reason: Reason, message: impl Into<String>) {
        let message = message.into();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.0 != reason {
            if reason == Reason::Replicating {
                tracing::info!(reason = reason.as_str(), %message, "replicating");
            } else {
                tracing::warn!(reason = reason.as_str(), %message, "not replicating");
            }
            self.metrics.state.get_or_create(&ReasonLabels { reason: state.0.as_str().to_string() }).set(0);
        }
        self.metrics.state.get_or_create(&ReasonLabels { reason: reason.as_str().to_string() }).set(1);
        *state = (reason, message);
    }

    pub fn current(&self) -> (Reason, String) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn ready(&self) -> bool {
        self.current().0 == Reason::Replicating
    }
}

pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(health): State<Arc<Health>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], health.metrics.encode())
}

/// 200 `Replicating` while copying; else 503 with the reason and its message.
async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let (reason, message) = health.current();
    let status = if reason == Reason::Replicating { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, format!("{}: {message}\n", reason.as_str()))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }

    #[test]
    fn errors_name_their_reason() {
        let auth = KafkaError::MetadataFetch(RDKafkaErrorCode::SaslAuthenticationFailed);
        let missing = KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition);
        let down = KafkaError::MetadataFetch(RDKafkaErrorCode::AllBrokersDown);
        assert_eq!(classify(Side::Source, &auth), Reason::AuthFailed);
        assert_eq!(classify(Side::Target, &missing), Reason::TopicMissing);
        assert_eq!(classify(Side::Source, &down), Reason::SourceUnreachable);
        assert_eq!(classify(Side::Target, &down), Reason::TargetUnreachable);
        assert_eq!(classify(Side::Source, &KafkaError::Canceled), Reason::SourceUnreachable);
    }

    #[tokio::test]
    async fn readiness_follows_the_reason_and_metrics_are_served() {
        let health = Arc::new(Health::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(axum::serve(listener, router(health.clone())).into_future());
        let check = async {
            assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
            let starting = get(addr, "/readyz").await;
            assert!(starting.starts_with("HTTP/1.1 503"), "{starting}");
            assert!(starting.ends_with("Starting: connecting to both clusters\n"), "{starting}");
            health.set(Reason::Replicating, "3 partitions");
            assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
            health.set(Reason::SourceUnreachable, "eu:9092: all brokers down");
            let down = get(addr, "/readyz").await;
            assert!(down.starts_with("HTTP/1.1 503"), "{down}");
            assert!(down.ends_with("SourceUnreachable: eu:9092: all brokers down\n"), "{down}");
            health.metrics.records_copied.inc_by(7);
            health.metrics.transaction("committed");
            let text = get(addr, "/metrics").await;
            for line in [
                "stockpulse_replicator_records_copied_total 7",
                "stockpulse_replicator_transactions_total{result=\"committed\"} 1",
                "stockpulse_replicator_state{reason=\"SourceUnreachable\"} 1",
                "stockpulse_replicator_state{reason=\"Replicating\"} 0",
            ] {
                assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), check).await.expect("HTTP test timed out");
        server.abort();
    }
}

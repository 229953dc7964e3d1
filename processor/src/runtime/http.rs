//! The processor's HTTP port: `/metrics`, `/healthz` (the loop is alive), `/readyz`
//! (reference data loaded, every task restored, Kafka answering) and the read API
//! ([`super::read_api`]), on a thread of its own so that a busy processing loop never delays
//! a probe.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use super::metrics::Metrics;
use super::{RunError, now_millis};

/// What the probes report, set by the processing loop.
#[derive(Debug, Default)]
pub struct Health {
    pub references_loaded: AtomicBool,
    /// Whether the consumer group has assigned this instance its partitions (none, when the
    /// group has more members than partitions) since it joined.
    pub assigned: AtomicBool,
    /// Tasks being restored from the changelog.
    pub restoring: AtomicUsize,
    /// The last Kafka error that is not resolved yet (cleared by the next successful commit).
    pub kafka_error: Mutex<Option<String>>,
    /// When the processing loop last went round (epoch ms).
    pub heartbeat: AtomicI64,
}

/// The loop counts as stuck when it has not gone round for this long.
const STUCK_AFTER: Duration = Duration::from_secs(60);

impl Health {
    pub fn beat(&self) {
        self.heartbeat.store(now_millis(), Ordering::Relaxed);
    }

    pub fn set_kafka_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.kafka_error.lock() {
            *slot = error;
        }
    }

    /// Why the processor is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<String> {
        if !self.references_loaded.load(Ordering::Relaxed) {
            return Some("reference data (stores, catalog) not loaded yet".into());
        }
        if !self.assigned.load(Ordering::Relaxed) {
            return Some("waiting for the consumer group to assign partitions".into());
        }
        let restoring = self.restoring.load(Ordering::Relaxed);
        if restoring > 0 {
            return Some(format!("{restoring} task(s) restoring state from the changelog"));
        }
        if let Some(error) = self.kafka_error.lock().ok().and_then(|e| e.clone()) {
            return Some(format!("Kafka: {error}"));
        }
        None
    }

    /// How long ago the processing loop last went round.
    fn since_beat(&self) -> Duration {
        let beat = self.heartbeat.load(Ordering::Relaxed);
        Duration::from_millis(u64::try_from(now_millis().saturating_sub(beat)).unwrap_or(0))
    }
}

/// Starts the server on `port` (all interfaces) on its own thread, with the probes, the
/// metrics and `api` (the read API's routes); returns the bound address.
pub fn serve(port: u16, health: Arc<Health>, metrics: Arc<Metrics>, api: Router) -> Result<SocketAddr, RunError> {
    let listener = std::net::TcpListener::bind(("0.0.0.0", port))
        .map_err(|e| RunError::Http(format!("cannot listen on port {port}: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| RunError::Http(e.to_string()))?;
    let addr = listener.local_addr().map_err(|e| RunError::Http(e.to_string()))?;
    let app = api
        .route(
            "/metrics",
            get({
                let metrics = metrics.clone();
                move || async move {
                    (
                        [(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                        metrics.encode(),
                    )
                }
            }),
        )
        .route(
            "/healthz",
            get({
                let health = health.clone();
                move || async move {
                    let since = health.since_beat();
                    if since < STUCK_AFTER {
                        (StatusCode::OK, format!("ok: the processing loop turned {} ms ago\n", since.as_millis()))
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, format!("processing loop stuck for over {STUCK_AFTER:?}\n"))
                    }
                }
            }),
        )
        .route(
            "/readyz",
            get(move || async move {
                match health.not_ready() {
                    None => (StatusCode::OK, "ready\n".to_string()).into_response(),
                    Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response(),
                }
            }),
        );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Http(format!("cannot start the HTTP runtime: {e}")))?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = axum::serve(listener, app).await {
                            tracing::error!(error = %e, "HTTP server stopped");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "HTTP listener"),
                }
            })
        })
        .map_err(|e| RunError::Http(format!("cannot start the HTTP thread: {e}")))?;
    Ok(addr)
}

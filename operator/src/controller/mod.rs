//! The controllers: one per kind, each observe -> plan (pure) -> apply -> status.

pub mod alert_policy;
pub mod apply;
pub mod cache;
pub mod kafka_target;
pub mod region_replication;
pub mod retail_pipeline;
pub mod run;
pub mod store_region;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::api::{Api, Patch};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use serde::Serialize;
use serde_json::json;

pub use run::{RunOptions, run_blocking};

use crate::error::{Error, Result};
use crate::kafka_admin::KafkaAccess;
use crate::metrics::Metrics;
use crate::settings::OperatorSettings;

/// The operator image when `STOCKPULSE_OPERATOR_IMAGE` is not set (the chart sets it).
pub const DEFAULT_OPERATOR_IMAGE: &str = "ghcr.io/stockpulse/stockpulse-operator:0.1.0";

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub kafka: Arc<dyn KafkaAccess>,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    /// The image of replicator Deployments (the operator's own image).
    pub replicator_image: String,
    /// The operator's own configuration: allowed processor images, image pull Secrets.
    pub settings: OperatorSettings,
    /// The time, injected so tests are deterministic.
    pub clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    /// Every pipeline's autoscaling memory (samples, latest decision, last scale time).
    pub autoscaling: Arc<crate::autoscale::sampler::Registry>,
    /// Where samplers ask for a reconcile; `None`: no sampler runs (tests call
    /// `sample_once` themselves).
    pub sampler_trigger: Option<futures::channel::mpsc::UnboundedSender<ObjectRef<crate::crd::RetailPipeline>>>,
    /// The watch caches reads go to; `None`: every read asks the API server.
    pub caches: Option<cache::Caches>,
    failures: Mutex<HashMap<String, u32>>,
}

impl Context {
    pub fn new(client: Client, kafka: Arc<dyn KafkaAccess>, metrics: Arc<Metrics>, instance: Option<String>) -> Self {
        let reporter = Reporter { controller: "stockpulse-operator".to_string(), instance };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            kafka,
            metrics,
            replicator_image: std::env::var("STOCKPULSE_OPERATOR_IMAGE")
                .unwrap_or_else(|_| DEFAULT_OPERATOR_IMAGE.to_string()),
            settings: OperatorSettings::default(),
            clock: Arc::new(Utc::now),
            autoscaling: Arc::default(),
            sampler_trigger: None,
            caches: None,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The operator's own configuration (allowed images, what its pods get).
    pub fn with_settings(mut self, settings: OperatorSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Runs a sampler per autoscaled pipeline, asking for reconciles through `trigger`.
    pub fn with_sampler_trigger(
        mut self,
        trigger: futures::channel::mpsc::UnboundedSender<ObjectRef<crate::crd::RetailPipeline>>,
    ) -> Self {
        self.sampler_trigger = Some(trigger);
        self
    }

    /// Reads from these watch caches instead of the API server.
    pub fn with_caches(mut self, caches: cache::Caches) -> Self {
        self.caches = Some(caches);
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>) -> Self {
        self.clock = clock;
        self
    }

    pub fn now(&self) -> DateTime<Utc> {
        (self.clock)()
    }

    /// The current time as status timestamps are written.
    pub fn now_text(&self) -> String {
        self.now().to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// The next delay for an object after a transient error: 5s doubling up to 5 minutes.
    pub fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        let delay = Duration::from_secs(5u64.saturating_mul(1 << (*n).min(6))).min(Duration::from_secs(300));
        *n += 1;
        delay
    }

    /// Forgets the failures of an object after a successful reconcile.
    pub fn reset_backoff(&self, key: &str) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }

    /// Publishes an event; a failure to publish is logged, never fatal.
    pub async fn event(&self, reference: &ObjectReference, warning: bool, reason: &str, action: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, reference).await {
            tracing::warn!(error = %e, reason, "cannot publish event");
        }
    }
}

/// Writes `status` through the status subresource by server-side apply.
pub async fn apply_status<K>(api: &Api<K>, name: &str, status: &impl Serialize) -> Result<()>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(name, &apply::apply_params(), &Patch::Apply(&body)).await.map_err(Error::Kube)?;
    Ok(())
}

/// How every controller retries a failed reconcile: a pipeline deletion waiting for its
/// writers looks again in [`retail_pipeline::WRITERS_STOPPING_RETRY`]; anything else backs
/// off per object ([`Context::backoff`]), counted by kind and error.
pub fn error_policy<K>(object: Arc<K>, error: &Error, ctx: Arc<Context>) -> Action
where
    K: kube::Resource<DynamicType = ()>,
{
    let kind = K::kind(&());
    let name = object.meta().name.clone().unwrap_or_default();
    ctx.metrics.error(&kind, error.metric_label());
    if let Error::Finalizer(inner) = error
        && let kube::runtime::finalizer::Error::CleanupFailed(Error::WritersRunning(writers)) = inner.as_ref()
    {
        tracing::info!(%kind, %name, %writers, "deletion waits for the writers");
        return Action::requeue(retail_pipeline::WRITERS_STOPPING_RETRY);
    }
    let delay = ctx.backoff(&object_key(&kind, object.meta().namespace.clone(), &name));
    tracing::warn!(%kind, %name, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// A key naming an object for the backoff table.
pub fn object_key(kind: &str, namespace: Option<String>, name: &str) -> String {
    format!("{kind}/{}/{name}", namespace.unwrap_or_default())
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod backoff_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::fixtures::context;
    use crate::kafka_admin::memory::MemoryKafka;

    #[tokio::test]
    async fn transient_errors_back_off_exponentially_up_to_five_minutes_and_reset() {
        let (ctx, _verifier) = context(Arc::new(MemoryKafka::new()));
        let delays: Vec<u64> = (0..9).map(|_| ctx.backoff("RetailPipeline/acme/shop").as_secs()).collect();
        assert_eq!(delays, vec![5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(ctx.backoff("RetailPipeline/acme/other"), Duration::from_secs(5));
        ctx.reset_backoff("RetailPipeline/acme/shop");
        assert_eq!(ctx.backoff("RetailPipeline/acme/shop"), Duration::from_secs(5));
    }
}

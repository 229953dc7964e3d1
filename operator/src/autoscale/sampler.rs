//! The sampler: per RetailPipeline, on its own interval (`autoscaling.sampleInterval`,
//! default 15 s) and independent of reconciles, it reads from the broker the watermarks of
//! the input partitions and the offsets the processor's consumer group committed, and from
//! the Deployment its replicas and ready replicas; feeds them to the pipeline's
//! [`Autoscaler`]; and, when the decision differs from the Deployment, asks for a reconcile,
//! which applies it.
//!
//! The history lives in the operator's memory only. After a restart (or a leader change) it
//! is rebuilt from the broker, sample by sample: the Deployment's count holds until two
//! samples give rates, and nothing is scaled down before a whole down window was sampled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use stockpulse_processor::config::TopicRole;

use super::decision::{Autoscaler, Decision, Sample};
use crate::build::labels::processor_name;
use crate::build::topics::desired_topics;
use crate::controller::Context;
use crate::controller::kafka_target::kafka_target;
use crate::crd::RetailPipeline;
use crate::crd::retail_pipeline::AutoscalingStatus;
use crate::error::{Error, Result};
use crate::kafka_admin::PartitionOffsets;
use crate::plan::replicas::{bounds, policy, sample_interval};

/// The autoscaling memory of one pipeline.
#[derive(Clone, Debug, Default)]
pub struct Scaling {
    pub autoscaler: Autoscaler,
    /// The latest decision and the sample it was made on.
    pub latest: Option<(Decision, Sample)>,
    /// RFC 3339 time the operator last changed the replicas.
    pub last_scale_time: Option<String>,
    /// Whether a sampler task runs for the pipeline.
    running: bool,
}

/// Every pipeline's autoscaling memory, by `namespace/name`.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<HashMap<String, Scaling>>,
}

pub fn key(pipeline: &RetailPipeline) -> String {
    format!("{}/{}", pipeline.namespace().unwrap_or_default(), pipeline.name_any())
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Scaling>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of a pipeline's memory.
    pub fn get(&self, key: &str) -> Option<Scaling> {
        self.lock().get(key).cloned()
    }

    /// The latest decision as (desired, reason).
    pub fn autoscaled(&self, key: &str) -> Option<(i32, String)> {
        self.lock().get(key).and_then(|s| s.latest.as_ref().map(|(d, _)| (d.desired, d.reason.clone())))
    }

    /// Notes that the replicas were changed at `now`.
    pub fn scaled(&self, key: &str, now: &str) {
        self.lock().entry(key.to_string()).or_default().last_scale_time = Some(now.to_string());
    }

    /// Marks a sampler as running; false when one already was.
    fn start(&self, key: &str) -> bool {
        let mut all = self.lock();
        let scaling = all.entry(key.to_string()).or_default();
        !std::mem::replace(&mut scaling.running, true)
    }

    /// Forgets a pipeline (deleted, or autoscaling disabled).
    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// Feeds a sample to the pipeline's autoscaler.
    pub fn decide(
        &self,
        key: &str,
        policy: &super::decision::Policy,
        sample: Sample,
        current: i32,
        bounds: &super::decision::Bounds,
    ) -> Decision {
        let mut all = self.lock();
        let scaling = all.entry(key.to_string()).or_default();
        let decision = scaling.autoscaler.decide(policy, sample.clone(), current, bounds);
        scaling.latest = Some((decision.clone(), sample));
        decision
    }
}

/// The status figures of a decision.
pub fn status_of(decision: &Decision, sample: &Sample) -> AutoscalingStatus {
    AutoscalingStatus {
        sampled_at: Some(sample.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        input_rate: decision.input_rate.map(|r| r.round() as i64),
        processed_rate: decision.processed_rate.map(|r| r.round() as i64),
        capacity_per_replica: Some(decision.capacity_per_replica.round() as i64),
        capacity_learned: decision.capacity_learned,
        recommendation: decision.recommendation,
    }
}

/// A sample from the offsets of the input partitions. The partitions are those of the
/// input topic with the most: partition `i` of sales and of inventory go to the same task,
/// so that is the processor's parallelism (and the replicas' cap).
pub fn sample_of(at: chrono::DateTime<chrono::Utc>, offsets: &[PartitionOffsets], ready: i32) -> Sample {
    let mut per_topic: HashMap<&str, i32> = HashMap::new();
    for o in offsets {
        *per_topic.entry(o.topic.as_str()).or_default() += 1;
    }
    Sample {
        at,
        end_offsets: offsets.iter().map(|o| o.high).sum(),
        committed: offsets.iter().map(|o| o.committed.unwrap_or(o.low)).sum(),
        lag: offsets.iter().map(PartitionOffsets::lag).sum(),
        partitions: per_topic.values().copied().max().unwrap_or(0),
        ready,
    }
}

/// The input topics of a pipeline (sales and inventory).
fn input_topics(pipeline: &RetailPipeline) -> Vec<String> {
    desired_topics(pipeline)
        .unwrap_or_default()
        .into_iter()
        .filter(|t| matches!(t.role, TopicRole::Sales | TopicRole::Inventory))
        .map(|t| t.name)
        .collect()
}

/// What one sample decided, with what the Deployment asks for now.
#[derive(Clone, Debug, PartialEq)]
pub struct Sampled {
    pub decision: Decision,
    pub current: Option<i32>,
}

/// Samples the broker and the Deployment once and decides. `None` when the pipeline does not
/// autoscale or has no input partitions on the broker yet.
pub async fn sample_once(ctx: &Context, pipeline: &RetailPipeline) -> Result<Option<Sampled>> {
    let spec = &pipeline.spec.processor;
    if !spec.autoscaling.enabled {
        return Ok(None);
    }
    let (Ok(policy), namespace) = (policy(spec), pipeline.namespace()) else {
        return Ok(None);
    };
    let namespace = namespace.ok_or(Error::MissingField("RetailPipeline", "metadata.namespace"))?;
    let group = pipeline.spec.kafka.consumer_group.clone().unwrap_or_else(|| pipeline.name_any());
    let topics = input_topics(pipeline);
    let target = kafka_target(&ctx.client, pipeline).await?;
    let offsets = ctx.kafka.partition_offsets(&target, &group, &topics).await?;
    if offsets.is_empty() {
        return Ok(None);
    }
    let deployment = ctx.get::<Deployment>(&namespace, &processor_name(pipeline)).await?;
    let current = deployment.as_ref().and_then(|d| d.spec.replicas);
    let ready = deployment.as_ref().and_then(|d| d.status.as_ref().and_then(|s| s.ready_replicas)).unwrap_or(0);
    let now = ctx.now();
    let sample = sample_of(now, &offsets, ready);
    let Ok(bounds) = bounds(spec, sample.partitions, now) else {
        return Ok(None);
    };
    let decision = ctx.autoscaling.decide(&key(pipeline), &policy, sample, current.unwrap_or(bounds.floor), &bounds);
    ctx.metrics.autoscaling(&namespace, &pipeline.name_any(), &decision, &offsets);
    Ok(Some(Sampled { decision, current }))
}

/// Starts the sampler of a pipeline unless it runs already. It stops by itself when the
/// pipeline is deleted or its autoscaling disabled.
pub fn ensure_sampler(ctx: &Arc<Context>, pipeline: &RetailPipeline) {
    let Some(trigger) = ctx.sampler_trigger.clone() else {
        return;
    };
    let key = key(pipeline);
    if !pipeline.spec.processor.autoscaling.enabled {
        // A running sampler sees it at its next sample and stops.
        return;
    }
    if !ctx.autoscaling.start(&key) {
        return;
    }
    let (Some(namespace), name) = (pipeline.namespace(), pipeline.name_any()) else {
        return;
    };
    let ctx = ctx.clone();
    tokio::spawn(async move { run(ctx, namespace, name, key, trigger).await });
}

async fn run(
    ctx: Arc<Context>,
    namespace: String,
    name: String,
    key: String,
    trigger: UnboundedSender<ObjectRef<RetailPipeline>>,
) {
    tracing::info!(pipeline = %name, namespace = %namespace, "autoscaling sampler started");
    loop {
        let pipeline = match ctx.get::<RetailPipeline>(&namespace, &name).await {
            Ok(Some(p)) if p.meta().deletion_timestamp.is_none() && p.spec.processor.autoscaling.enabled => p,
            Ok(_) => break,
            Err(e) => {
                tracing::warn!(pipeline = %name, error = %e, "autoscaling sampler cannot read the pipeline");
                tokio::time::sleep(std::time::Duration::from_secs(15)).await;
                continue;
            }
        };
        let interval = sample_interval(&pipeline.spec.processor);
        match sample_once(&ctx, &pipeline).await {
            Ok(Some(sampled)) if Some(sampled.decision.desired) != sampled.current => {
                tracing::info!(pipeline = %name, desired = sampled.decision.desired, current = ?sampled.current,
                    reason = %sampled.decision.reason, "autoscaler asks for a change");
                if trigger.unbounded_send(ObjectRef::from_obj(&pipeline)).is_err() {
                    break;
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(pipeline = %name, error = %e, "autoscaling sample failed"),
        }
        tokio::time::sleep(interval).await;
    }
    ctx.autoscaling.forget(&key);
    tracing::info!(pipeline = %name, namespace = %namespace, "autoscaling sampler stopped");
}

//! The AlertPolicy controller: validates a policy against its pipeline and reports whether
//! it is rendered into the pipeline's config (the RetailPipeline controller renders it).

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use stockpulse_processor::runtime::ADDRESS_PREFIX;

use super::kafka_target::kafka_target;
use super::{Context, apply_status, object_key};
use crate::build::pipeline_config::{alert_policy_config, base_config};
use crate::crd::{AlertPolicy, AlertPolicyStatus, RetailPipeline};
use crate::error::{Error, Result};
use crate::status::alert_figures::{self, PolicyFigures};
use crate::status::conditions::{NewCondition, READY, merge};

pub const KIND: &str = "AlertPolicy";

pub async fn reconcile(policy: Arc<AlertPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start(KIND);
    let namespace = policy.namespace().ok_or(Error::MissingField(KIND, "metadata.namespace"))?;
    let name = policy.name_any();
    let api: Api<AlertPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let pipeline_name = &policy.spec.pipeline_ref.name;
    let pipeline = ctx.get::<RetailPipeline>(&namespace, pipeline_name).await?;
    let (ready, retry) = match &pipeline {
        None => (
            NewCondition::new(
                READY,
                false,
                "PipelineNotFound",
                format!("no RetailPipeline {pipeline_name:?} in namespace {namespace}"),
            ),
            Some(Duration::from_secs(60)),
        ),
        Some(pipeline) => match base_config(pipeline) {
            Err(p) => {
                (NewCondition::new(READY, false, "PipelineInvalid", p.to_string()), Some(Duration::from_secs(60)))
            }
            Ok((base, _)) => match alert_policy_config(&policy, &base, &mut 0) {
                Ok(_) => (
                    NewCondition::new(
                        READY,
                        true,
                        "Rendered",
                        format!("rendered into the config of RetailPipeline {pipeline_name}"),
                    ),
                    // The figures the processors count are read again a minute later.
                    Some(FIGURES_EVERY),
                ),
                Err(p) => (NewCondition::new(READY, false, "InvalidSpec", p.to_string()), None),
            },
        },
    };
    let previous = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let figures = match (&pipeline, ready.is_true()) {
        (Some(pipeline), true) => processor_figures(&ctx, pipeline, &name).await,
        _ => None,
    };
    let has_webhooks = policy.spec.sinks.iter().any(|sink| sink.webhook.is_some());
    let (with_figures, sinks) = alert_figures::with_figures(&previous, figures.as_ref(), has_webhooks);
    let mut conditions = vec![ready.clone()];
    conditions.extend(sinks);
    let status = AlertPolicyStatus {
        observed_generation: generation,
        conditions: merge(&previous.conditions, &conditions, generation, &ctx.now_text()),
        ..with_figures
    };
    if policy.status.as_ref() != Some(&status) {
        if !ready.is_true() {
            ctx.event(&policy.object_ref(&()), true, &ready.reason, "Validate", ready.message.clone()).await;
        }
        apply_status(&api, &name, &status).await?;
    }
    ctx.reset_backoff(&object_key(KIND, policy.namespace(), &name));
    Ok(retry.map(Action::requeue).unwrap_or_else(Action::await_change))
}

/// How often a rendered policy's figures are read from its processors.
pub const FIGURES_EVERY: Duration = Duration::from_secs(60);

/// The policy's figures from the `/metrics` of its pipeline's processors (found as members of
/// the pipeline's consumer group, which name their HTTP address); `None` when none answered.
async fn processor_figures(ctx: &Context, pipeline: &RetailPipeline, policy: &str) -> Option<PolicyFigures> {
    let target = kafka_target(&ctx.client, pipeline).await.ok()?;
    let group = pipeline.spec.kafka.consumer_group.clone().unwrap_or_else(|| pipeline.name_any());
    let members = match ctx.kafka.group_members(&target, &group).await {
        Ok(members) => members,
        Err(e) => {
            tracing::debug!(error = %e, %group, "cannot describe the processors' group");
            return None;
        }
    };
    let mut figures = PolicyFigures::default();
    let mut answered = false;
    for address in members.iter().filter_map(|m| m.strip_prefix(ADDRESS_PREFIX)) {
        match metrics_text(address).await {
            Ok(text) => {
                alert_figures::add_metrics(&mut figures, &text, policy);
                answered = true;
            }
            Err(e) => tracing::debug!(error = %e, %address, "processor metrics"),
        }
    }
    answered.then_some(figures)
}

/// `GET /metrics` of a processor (plain HTTP/1.0 on its pod address): the body of a 200.
async fn metrics_text(address: &str) -> std::result::Result<String, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await.map_err(|e| e.to_string())?;
        let request = format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::new();
        // A processor's metrics are a few kilobytes; more than 4 MiB is not one.
        (&mut stream).take(4 << 20).read_to_end(&mut answer).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(3), exchange)
        .await
        .map_err(|_| "no answer within 3 s".to_string())??;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("not an HTTP answer")?;
    match head.lines().next() {
        Some(status) if status.split_whitespace().nth(1) == Some("200") => Ok(body.to_string()),
        status => Err(format!("answered {}", status.unwrap_or_default())),
    }
}

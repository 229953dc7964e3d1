//! The AlertPolicy controller: validates a policy against its pipeline and reports whether
//! it is rendered into the pipeline's config (the RetailPipeline controller renders it).

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::{Context, apply_status, object_key};
use crate::build::pipeline_config::{alert_policy_config, base_config};
use crate::crd::{AlertPolicy, AlertPolicyStatus, RetailPipeline};
use crate::error::{Error, Result};
use crate::status::conditions::{NewCondition, READY, merge};

pub const KIND: &str = "AlertPolicy";

pub async fn reconcile(policy: Arc<AlertPolicy>, ctx: Arc<Context>) -> Result<Action> {
    let _timer = ctx.metrics.start(KIND);
    let namespace = policy.namespace().ok_or(Error::MissingField(KIND, "metadata.namespace"))?;
    let name = policy.name_any();
    let api: Api<AlertPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let pipelines: Api<RetailPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let pipeline_name = &policy.spec.pipeline_ref.name;
    let (ready, retry) = match pipelines.get_opt(pipeline_name).await? {
        None => (
            NewCondition::new(
                READY,
                false,
                "PipelineNotFound",
                format!("no RetailPipeline {pipeline_name:?} in namespace {namespace}"),
            ),
            Some(Duration::from_secs(60)),
        ),
        Some(pipeline) => match base_config(&pipeline) {
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
                    None,
                ),
                Err(p) => (NewCondition::new(READY, false, "InvalidSpec", p.to_string()), None),
            },
        },
    };
    let previous = policy.status.clone().unwrap_or_default();
    let generation = policy.metadata.generation;
    let status = AlertPolicyStatus {
        observed_generation: generation,
        conditions: merge(&previous.conditions, std::slice::from_ref(&ready), generation, &ctx.now_text()),
        alerts_fired: previous.alerts_fired,
        last_fired_time: previous.last_fired_time.clone(),
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

pub fn error_policy(policy: Arc<AlertPolicy>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.error(KIND, error.metric_label());
    let delay = ctx.backoff(&object_key(KIND, policy.namespace(), &policy.name_any()));
    tracing::warn!(policy = %policy.name_any(), error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

//! The status of a RetailPipeline, from its plan (or spec problems) and what was observed
//! after applying it.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use kube::ResourceExt;

use super::conditions::{NewCondition, PROCESSOR_READY, READY, TOPICS_READY, merge, ready_from};
use crate::build::SpecProblems;
use crate::build::topics::camel;
use crate::crd::retail_pipeline::{AutoscalingStatus, ReplicasStatus, TopicStatus};
use crate::crd::{RetailPipeline, RetailPipelineStatus};
use crate::error::Error;
use crate::kafka_admin::KafkaError;
use crate::plan::pipeline::PipelinePlan;
use crate::plan::topics::ObservedTopic;

/// A topic change the broker refused or failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicFailure {
    pub topic: String,
    pub reason: &'static str,
    pub message: String,
}

/// What was observed after the plan was applied.
#[derive(Clone, Debug, Default)]
pub struct PipelineObservation {
    pub topics: BTreeMap<String, ObservedTopic>,
    pub topic_failures: Vec<TopicFailure>,
    pub deployment: Option<Deployment>,
    /// Consumer-group lag over the input topics, when it could be read.
    pub consumer_lag: Option<i64>,
    /// What the autoscaler saw at its last sample.
    pub autoscaling: Option<AutoscalingStatus>,
    /// When the operator last changed the replicas.
    pub last_scale_time: Option<String>,
}

fn topics_condition(plan: &PipelinePlan, observed: &PipelineObservation) -> NewCondition {
    let mut problems: Vec<(&str, String)> =
        plan.topic_plan.refusals.iter().map(|r| (r.reason, r.message.clone())).collect();
    problems.extend(observed.topic_failures.iter().map(|f| (f.reason, f.message.clone())));
    if let Some((reason, _)) = problems.first() {
        let message = problems.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ");
        return NewCondition::new(TOPICS_READY, false, *reason, message);
    }
    let missing: Vec<&str> =
        plan.topics.iter().filter(|t| !observed.topics.contains_key(&t.name)).map(|t| t.name.as_str()).collect();
    if !missing.is_empty() {
        return NewCondition::new(
            TOPICS_READY,
            false,
            "TopicsMissing",
            format!("not on the broker yet: {}", missing.join(", ")),
        );
    }
    NewCondition::new(TOPICS_READY, true, "TopicsReconciled", format!("{} topics match the spec", plan.topics.len()))
}

fn processor_condition(
    plan: &PipelinePlan,
    deployment: Option<&Deployment>,
    last_scale_time: Option<String>,
) -> (NewCondition, ReplicasStatus) {
    let Some(deployment) = deployment else {
        let desired = plan.replicas.desired;
        let replicas =
            ReplicasStatus { current: 0, desired, ready: 0, reason: plan.replicas.reason.clone(), last_scale_time };
        return (
            NewCondition::new(PROCESSOR_READY, false, "ProcessorCreating", "the Deployment does not exist yet"),
            replicas,
        );
    };
    let status = deployment.status.clone().unwrap_or_default();
    // Left to an HPA or KEDA, the desired count is what they set.
    let desired = if plan.replicas.managed {
        plan.replicas.desired
    } else {
        deployment.spec.replicas.unwrap_or(plan.replicas.desired)
    };
    let ready = status.ready_replicas.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let current = status.replicas.unwrap_or(0);
    let rolled_out = status.observed_generation.unwrap_or(0) >= deployment.metadata.generation.unwrap_or(0);
    let replicas = ReplicasStatus { current, desired, ready, reason: plan.replicas.reason.clone(), last_scale_time };
    let condition = if rolled_out && ready >= desired && updated >= desired {
        NewCondition::new(PROCESSOR_READY, true, "ProcessorAvailable", format!("{ready} of {desired} replicas ready"))
    } else {
        NewCondition::new(
            PROCESSOR_READY,
            false,
            "ProcessorProgressing",
            format!("{ready} of {desired} replicas ready, {updated} updated"),
        )
    };
    (condition, replicas)
}

/// The status after a reconcile with a valid spec.
pub fn pipeline_status(
    pipeline: &RetailPipeline,
    plan: &PipelinePlan,
    observed: &PipelineObservation,
    now: &str,
) -> RetailPipelineStatus {
    let previous = pipeline.status.clone().unwrap_or_default();
    let generation = pipeline.metadata.generation;
    let topics_ready = topics_condition(plan, observed);
    let (processor_ready, replicas) =
        processor_condition(plan, observed.deployment.as_ref(), observed.last_scale_time.clone());
    let ready = ready_from(&[topics_ready.clone(), processor_ready.clone()]);
    RetailPipelineStatus {
        observed_generation: generation,
        conditions: merge(&previous.conditions, &[ready, topics_ready, processor_ready], generation, now),
        topics: plan
            .topics
            .iter()
            .map(|t| TopicStatus {
                role: camel(t.role).to_string(),
                name: t.name.clone(),
                partitions: observed.topics.get(&t.name).map(|o| o.partitions).unwrap_or(0),
                desired_partitions: t.partitions,
            })
            .collect(),
        replicas: Some(replicas),
        consumer_lag: observed.consumer_lag,
        stores: plan.stores,
        regions: i32::try_from(plan.regions.len()).unwrap_or(i32::MAX),
        alert_policies: i32::try_from(plan.config.alert_policies.len()).unwrap_or(i32::MAX),
        autoscaling: observed.autoscaling.clone(),
        config_hash: Some(plan.config_hash.clone()),
    }
}

/// The status when the spec cannot be used: `Ready=False, reason InvalidSpec`, the rest kept.
/// Why the pipeline's Kafka cluster could not be used, as a condition reason and message;
/// `None` for an error that is not about the cluster or its Secrets (it is retried).
pub fn connection_problem(error: &Error) -> Option<(&'static str, String)> {
    let fix = match error {
        Error::SecretNotFound { .. } => ("SecretNotFound", "create it, or fix the reference"),
        Error::Secret { .. } => ("SecretKeyMissing", "add the key to the Secret"),
        Error::Kafka(KafkaError::Failed { message, .. }) if is_auth_failure(message) => {
            ("KafkaAuthFailed", "check the credentials and certificates in spec.kafka")
        }
        Error::Kafka(_) => ("KafkaUnreachable", "check spec.kafka.bootstrapServers and the network to the brokers"),
        _ => return None,
    };
    Some((fix.0, format!("{error}: {}", fix.1)))
}

/// A broker's or librdkafka's words for refused credentials or certificates.
fn is_auth_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    ["authentication", "authoriz", "sasl", "ssl handshake", "certificate"].iter().any(|w| message.contains(w))
}

/// The status when the cluster could not be used: `Ready=False` with the reason, the rest
/// as it was (nothing was observed to replace it).
pub fn connection_failure_status(
    pipeline: &RetailPipeline,
    reason: &'static str,
    message: &str,
    now: &str,
) -> RetailPipelineStatus {
    let previous = pipeline.status.clone().unwrap_or_default();
    let generation = pipeline.metadata.generation;
    let ready = NewCondition::new(READY, false, reason, message);
    RetailPipelineStatus {
        observed_generation: generation,
        conditions: merge(&previous.conditions, &[ready], generation, now),
        ..previous
    }
}

pub fn invalid_spec_status(pipeline: &RetailPipeline, problems: &SpecProblems, now: &str) -> RetailPipelineStatus {
    let previous = pipeline.status.clone().unwrap_or_default();
    let generation = pipeline.metadata.generation;
    let ready = NewCondition::new(
        READY,
        false,
        "InvalidSpec",
        format!("{} (fix the spec of {})", problems, pipeline.name_any()),
    );
    RetailPipelineStatus {
        observed_generation: generation,
        conditions: merge(&previous.conditions, &[ready], generation, now),
        ..previous
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_and_secret_errors_get_their_own_reason() {
        let failed =
            |message: &str| Error::Kafka(KafkaError::Failed { operation: "metadata", message: message.to_string() });
        let reason = |e: &Error| connection_problem(e).map(|(r, _)| r);
        assert_eq!(reason(&failed("Local: Broker transport failure")), Some("KafkaUnreachable"));
        assert_eq!(reason(&failed("Local: Timed out")), Some("KafkaUnreachable"));
        assert_eq!(
            reason(&failed("SASL authentication error: Authentication failed during authentication")),
            Some("KafkaAuthFailed")
        );
        assert_eq!(reason(&failed("SSL handshake failed: certificate verify failed")), Some("KafkaAuthFailed"));
        assert_eq!(reason(&failed("Broker: Cluster authorization failed")), Some("KafkaAuthFailed"));
        let missing = Error::SecretNotFound { name: "s".into(), namespace: "n".into(), field: "kafka.tls.secretRef" };
        assert_eq!(reason(&missing), Some("SecretNotFound"));
        assert_eq!(
            reason(&Error::Secret { name: "s".into(), message: "has no key \"ca.crt\"".into() }),
            Some("SecretKeyMissing")
        );
        assert_eq!(
            reason(&Error::MissingField("RetailPipeline", "metadata.namespace")),
            None,
            "retried, not a condition"
        );
    }
}

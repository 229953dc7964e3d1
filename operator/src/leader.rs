//! Leader election on a coordination.k8s.io Lease, so two or more operator replicas can run
//! and only one reconciles. The decision is a pure function of the Lease and the time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;

use crate::error::Result;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    /// How long a holder keeps the lease without renewing it.
    pub lease_duration: Duration,
    /// How long the holder goes on leading without a successful renewal: shorter than
    /// `lease_duration`, so it has stopped before anyone else may take the lease over.
    pub renew_deadline: Duration,
    /// How often the holder renews (and a candidate retries).
    pub renew_every: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No lease yet: create it, held by us.
    Create,
    /// Free or expired: take it over.
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Held by another live replica.
    Wait { holder: String },
}

fn to_chrono(t: &MicroTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_micros(t.0.as_microsecond())
}

fn to_micro(t: DateTime<Utc>) -> MicroTime {
    MicroTime(Timestamp::from_microsecond(t.timestamp_micros()).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// What a candidate does with the lease it sees at `now`.
pub fn decide(lease: Option<&Lease>, identity: &str, now: DateTime<Utc>) -> LeaseDecision {
    let Some(lease) = lease else {
        return LeaseDecision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::Acquire;
    }
    let duration = chrono::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match spec.renew_time.as_ref().and_then(to_chrono) {
        Some(renewed) if renewed + duration > now => LeaseDecision::Wait { holder },
        _ => LeaseDecision::Acquire,
    }
}

fn lease_spec(config: &LeaseConfig, now: DateTime<Utc>, acquire: bool, previous: Option<&LeaseSpec>) -> LeaseSpec {
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(config.lease_duration.as_secs()).unwrap_or(15)),
        acquire_time: if acquire { Some(to_micro(now)) } else { previous.and_then(|p| p.acquire_time.clone()) },
        renew_time: Some(to_micro(now)),
        lease_transitions: Some(if acquire && previous.is_some() { transitions + 1 } else { transitions }),
        ..LeaseSpec::default()
    }
}

/// One round of election; true when we hold the lease afterwards. A lost race (conflict)
/// is "not leader", not an error.
pub async fn try_lead(api: &Api<Lease>, config: &LeaseConfig, now: DateTime<Utc>) -> Result<bool> {
    let lease = api.get_opt(&config.name).await?;
    let decision = decide(lease.as_ref(), &config.identity, now);
    let result = match (decision, lease) {
        (LeaseDecision::Wait { .. }, _) => return Ok(false),
        (LeaseDecision::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.name.clone()),
                    namespace: Some(config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(lease_spec(config, now, true, None)),
            };
            api.create(&PostParams::default(), &lease).await.map(|_| ())
        }
        (decision, Some(mut lease)) => {
            let acquire = decision == LeaseDecision::Acquire;
            lease.spec = Some(lease_spec(config, now, acquire, lease.spec.as_ref()));
            api.replace(&config.name, &PostParams::default(), &lease).await.map(|_| ())
        }
        (_, None) => return Ok(false),
    };
    match result {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Renews the lease every `renew_every` through `renew` (one [`try_lead`]) for as long as
/// this candidate leads; returns why it must stop leading: a renewal that found another
/// holder, or no successful renewal within `renew_deadline` of the last one (a renewal that
/// hangs counts as failed at the deadline). The deadline is shorter than the lease, so the
/// caller has stopped before another candidate may take the lease over.
pub async fn keep_leading<F, Fut>(config: &LeaseConfig, mut renew: F) -> anyhow::Error
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let mut renewed_at = tokio::time::Instant::now();
    loop {
        let deadline = renewed_at + config.renew_deadline;
        let next = tokio::time::Instant::now() + config.renew_every;
        if next >= deadline {
            // The next try would come too late: wait for the deadline and step down.
            tokio::time::sleep_until(deadline).await;
        } else {
            tokio::time::sleep_until(next).await;
            let attempt_at = tokio::time::Instant::now();
            match tokio::time::timeout_at(deadline, renew()).await {
                Ok(Ok(true)) => {
                    renewed_at = attempt_at;
                    continue;
                }
                Ok(Ok(false)) => return anyhow::anyhow!("lost the leader lease {}", config.name),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot renew the lease");
                    continue;
                }
                Err(_) => {}
            }
        }
        return anyhow::anyhow!(
            "could not renew the leader lease {} within {:?}: stepping down before it expires",
            config.name,
            config.renew_deadline
        );
    }
}

/// Gives the lease up (on shutdown), so that a standby takes it at its next retry instead
/// of waiting for it to expire. Only a lease this candidate still holds is touched; true
/// when it was released.
pub async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<bool> {
    let Some(mut lease) = api.get_opt(&config.name).await? else { return Ok(false) };
    let Some(spec) = lease.spec.as_mut() else { return Ok(false) };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    match api.replace(&config.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: &str, renewed: DateTime<Utc>) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_string()),
                lease_duration_seconds: Some(15),
                renew_time: Some(to_micro(renewed)),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn decisions_follow_holder_and_expiry() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T08:00:00Z").unwrap().with_timezone(&Utc);
        let cases = [
            (None, LeaseDecision::Create),
            (Some(lease("me", now)), LeaseDecision::Renew),
            (Some(lease("other", now - chrono::Duration::seconds(5))), LeaseDecision::Wait { holder: "other".into() }),
            (Some(lease("other", now - chrono::Duration::seconds(16))), LeaseDecision::Acquire),
            (Some(lease("", now)), LeaseDecision::Acquire),
        ];
        for (lease, expected) in cases {
            assert_eq!(decide(lease.as_ref(), "me", now), expected, "{lease:?}");
        }
    }

    fn config() -> LeaseConfig {
        LeaseConfig {
            name: "stockpulse-operator".into(),
            namespace: crate::fixtures::NS.into(),
            identity: "me".into(),
            lease_duration: std::time::Duration::from_secs(15),
            renew_deadline: std::time::Duration::from_secs(10),
            renew_every: std::time::Duration::from_secs(5),
        }
    }

    fn lease_path() -> String {
        format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases/stockpulse-operator", crate::fixtures::NS)
    }

    fn api() -> (Api<Lease>, crate::fixtures::ApiServerVerifier) {
        let (ctx, verifier) =
            crate::fixtures::context(std::sync::Arc::new(crate::kafka_admin::memory::MemoryKafka::new()));
        (Api::namespaced(ctx.client.clone(), crate::fixtures::NS), verifier)
    }

    #[tokio::test]
    async fn a_missing_lease_is_created_and_held() {
        use crate::fixtures::{Exchange, play};
        let (api, verifier) = api();
        let script = vec![
            Exchange::get_missing(lease_path()),
            Exchange::post(format!("/apis/coordination.k8s.io/v1/namespaces/{}/leases", crate::fixtures::NS)),
        ];
        let now = crate::fixtures::now();
        let (result, received) = play(verifier, script, try_lead(&api, &config(), now)).await;
        assert!(result.unwrap());
        assert_eq!(received[1].body["spec"]["holderIdentity"], "me");
        assert_eq!(received[1].body["spec"]["leaseDurationSeconds"], 15);
    }

    #[tokio::test]
    async fn a_live_lease_of_another_replica_is_left_alone() {
        use crate::fixtures::{Exchange, play};
        let (api, verifier) = api();
        let now = crate::fixtures::now();
        let held = serde_json::to_value(lease("other", now - chrono::Duration::seconds(3))).unwrap();
        let script = vec![Exchange::get(lease_path(), held)];
        let (result, received) = play(verifier, script, try_lead(&api, &config(), now)).await;
        assert!(!result.unwrap());
        assert_eq!(received.len(), 1);
    }

    #[tokio::test]
    async fn an_expired_lease_is_taken_over() {
        use crate::fixtures::{Exchange, play};
        let (api, verifier) = api();
        let now = crate::fixtures::now();
        let mut expired = lease("other", now - chrono::Duration::seconds(30));
        expired.metadata.name = Some("stockpulse-operator".into());
        expired.metadata.resource_version = Some("7".into());
        let script = vec![
            Exchange::get(lease_path(), serde_json::to_value(&expired).unwrap()),
            Exchange { method: "PUT", path: lease_path(), status: 200, answer: crate::fixtures::Answer::Echo },
        ];
        let (result, received) = play(verifier, script, try_lead(&api, &config(), now)).await;
        assert!(result.unwrap());
        assert_eq!(received[1].body["spec"]["holderIdentity"], "me");
        assert_eq!(received[1].body["spec"]["leaseTransitions"], 1);
        assert_eq!(received[1].body["metadata"]["resourceVersion"], "7", "optimistic concurrency on the takeover");
    }

    #[tokio::test]
    async fn release_hands_over_only_a_lease_it_holds() {
        use crate::fixtures::{Exchange, play};
        let now = crate::fixtures::now();
        let mut ours = lease("me", now);
        ours.metadata.name = Some("stockpulse-operator".into());
        ours.metadata.resource_version = Some("9".into());
        let (leases, verifier) = api();
        let script = vec![
            Exchange::get(lease_path(), serde_json::to_value(&ours).unwrap()),
            Exchange { method: "PUT", path: lease_path(), status: 200, answer: crate::fixtures::Answer::Echo },
        ];
        let (result, received) = play(verifier, script, release(&leases, &config())).await;
        assert!(result.unwrap());
        assert_eq!(received[1].body["spec"].get("holderIdentity"), None, "no holder: the next candidate acquires");
        assert_eq!(received[1].body["spec"]["leaseDurationSeconds"], 1);
        assert_eq!(received[1].body["metadata"]["resourceVersion"], "9");

        let (leases, verifier) = api();
        let theirs = serde_json::to_value(lease("other", now)).unwrap();
        let (result, received) =
            play(verifier, vec![Exchange::get(lease_path(), theirs)], release(&leases, &config())).await;
        assert!(!result.unwrap());
        assert_eq!(received.len(), 1, "another holder's lease is left alone");
    }

    #[tokio::test(start_paused = true)]
    async fn the_leader_steps_down_at_the_renew_deadline_before_the_lease_expires() {
        let start = tokio::time::Instant::now();
        let failing = || async { Err(crate::error::Error::MissingField("Lease", "spec")) };
        let reason = keep_leading(&config(), failing).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10), "{reason}");
        assert_eq!(
            reason.to_string(),
            "could not renew the leader lease stockpulse-operator within 10s: stepping down before it expires"
        );

        let start = tokio::time::Instant::now();
        let hanging = || std::future::pending::<Result<bool>>();
        keep_leading(&config(), hanging).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10), "a renewal that hangs fails at the deadline");

        let start = tokio::time::Instant::now();
        let mut renewals = 0;
        let lost = keep_leading(&config(), || {
            renewals += 1;
            std::future::ready(Ok(renewals < 4))
        })
        .await;
        assert_eq!(start.elapsed(), Duration::from_secs(20), "renewed three times, lost at the fourth");
        assert_eq!(lost.to_string(), "lost the leader lease stockpulse-operator");
    }
}

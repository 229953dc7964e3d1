//! What a StoreRegion publishes: every store when something changed, tombstones for the
//! stores removed (or all of them when the region leaves a pipeline or is deleted), and
//! nothing at all when the records are those already published where they were published
//! (the same topic on the same cluster: a topic created again, or another cluster, gets
//! every store again).

use crate::build::config_map::sha256_hex;
use crate::build::store_records::StoreRecord;
use crate::crd::StoreRegionStatus;
use crate::kafka_admin::TopicIdentity;

/// One record to produce: `value: None` is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingRecord {
    pub topic: String,
    pub key: String,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorePlan {
    pub records: Vec<OutgoingRecord>,
    /// What the status records as published after the records are produced.
    pub published_topic: Option<String>,
    pub published_stores: Vec<String>,
    pub published_digest: Option<String>,
    pub published_identity: TopicIdentity,
}

impl StorePlan {
    pub fn upserts(&self) -> usize {
        self.records.iter().filter(|r| r.value.is_some()).count()
    }
    pub fn tombstones(&self) -> usize {
        self.records.iter().filter(|r| r.value.is_none()).count()
    }
    /// Nothing produced, and the status keeps what it says was published (the target topic
    /// is not there yet: publishing would let the broker create it with the wrong settings).
    pub fn hold(status: &StoreRegionStatus) -> Self {
        StorePlan {
            records: Vec::new(),
            published_topic: status.published_topic.clone(),
            published_stores: status.published_stores.clone(),
            published_digest: status.published_digest.clone(),
            published_identity: published_identity(status),
        }
    }
}

/// The identity the status recorded for what it published.
pub fn published_identity(status: &StoreRegionStatus) -> TopicIdentity {
    TopicIdentity { cluster_id: status.published_cluster_id.clone(), topic_id: status.published_topic_id.clone() }
}

/// Whether two ids are known to differ (an unknown one differs from nothing).
fn differ(a: Option<&str>, b: Option<&str>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a != b)
}

/// The digest of what is published where: unchanged digest, nothing to publish.
pub fn digest(topic: &str, records: &[StoreRecord]) -> String {
    let body = serde_json::to_string(records).unwrap_or_default();
    sha256_hex(&format!("{topic}\n{body}"))
}

/// Plans the publication of `records` to `target`, the topic name and its identity (None:
/// the region feeds no pipeline, so whatever it published is withdrawn), given what `status`
/// says was published before.
///
/// The same name on another cluster, or a topic created again under the same name, is a new,
/// empty topic: every store is published there, and no tombstone goes to it. Tombstones for
/// a previous topic go only where it still is: the same cluster, the same topic.
pub fn plan_stores(
    target: Option<(&str, &TopicIdentity)>,
    records: &[StoreRecord],
    status: &StoreRegionStatus,
) -> StorePlan {
    let previous_topic = status.published_topic.as_deref();
    let mut out = Vec::new();
    let Some((target, identity)) = target else {
        if let Some(previous) = previous_topic {
            for id in &status.published_stores {
                out.push(OutgoingRecord { topic: previous.to_string(), key: id.clone(), value: None });
            }
        }
        return StorePlan { records: out, ..StorePlan::default() };
    };
    let before = published_identity(status);
    let same_cluster = !differ(before.cluster_id.as_deref(), identity.cluster_id.as_deref());
    let same_topic = previous_topic == Some(target)
        && same_cluster
        && !differ(before.topic_id.as_deref(), identity.topic_id.as_deref());
    let new_digest = digest(target, records);
    let ids: Vec<String> = records.iter().map(|r| r.store_id.clone()).collect();
    let published = |records: Vec<OutgoingRecord>| StorePlan {
        records,
        published_topic: Some(target.to_string()),
        published_stores: ids.clone(),
        published_digest: Some(new_digest.clone()),
        // What is learnt of the identity is kept; an id the broker stops telling is not lost.
        published_identity: TopicIdentity {
            cluster_id: identity.cluster_id.clone().or_else(|| before.cluster_id.clone().filter(|_| same_cluster)),
            topic_id: identity.topic_id.clone().or_else(|| before.topic_id.clone().filter(|_| same_topic)),
        },
    };
    if same_topic && status.published_digest.as_deref() == Some(new_digest.as_str()) {
        return published(Vec::new());
    }
    if let Some(previous) = previous_topic
        && same_cluster
    {
        for id in &status.published_stores {
            let moved = previous != target;
            if moved || (same_topic && !ids.contains(id)) {
                out.push(OutgoingRecord { topic: previous.to_string(), key: id.clone(), value: None });
            }
        }
    }
    for record in records {
        out.push(OutgoingRecord {
            topic: target.to_string(),
            key: record.store_id.clone(),
            value: Some(serde_json::to_string(record).unwrap_or_default()),
        });
    }
    published(out)
}

/// On deletion of the region: a tombstone for every published store.
pub fn plan_withdrawal(status: &StoreRegionStatus) -> Vec<OutgoingRecord> {
    plan_stores(None, &[], status).records
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A store record of the region eu-central (Berlin time, euros).
    pub(crate) fn record(id: &str, name: &str) -> StoreRecord {
        StoreRecord {
            store_id: id.to_string(),
            name: name.to_string(),
            region: "eu-central".to_string(),
            channel: stockpulse_processor::event::Channel::Physical,
            format: String::new(),
            city: String::new(),
            country: "DE".to_string(),
            timezone: "Europe/Berlin".to_string(),
            currency: "EUR".to_string(),
        }
    }

    /// Topic `topic` as first created on cluster `c1`.
    fn at(topic: &str) -> TopicIdentity {
        TopicIdentity { cluster_id: Some("c1".into()), topic_id: Some(format!("id-{topic}")) }
    }

    fn published(topic: &str, ids: &[&str], records: &[StoreRecord]) -> StoreRegionStatus {
        let identity = at(topic);
        StoreRegionStatus {
            published_cluster_id: identity.cluster_id,
            published_topic_id: identity.topic_id,
            published_topic: Some(topic.to_string()),
            published_stores: ids.iter().map(|s| s.to_string()).collect(),
            published_digest: Some(digest(topic, records)),
            ..StoreRegionStatus::default()
        }
    }

    /// (topic, key, is a tombstone)
    fn summary(plan: &StorePlan) -> Vec<(String, String, bool)> {
        plan.records.iter().map(|r| (r.topic.clone(), r.key.clone(), r.value.is_none())).collect()
    }

    fn row(topic: &str, key: &str, tombstone: bool) -> (String, String, bool) {
        (topic.to_string(), key.to_string(), tombstone)
    }

    /// (what, target topic and its identity, records, status before, expected (topic, key,
    /// tombstone))
    type Case = (
        &'static str,
        Option<(&'static str, TopicIdentity)>,
        Vec<StoreRecord>,
        StoreRegionStatus,
        Vec<(String, String, bool)>,
    );

    #[test]
    fn store_plans() {
        let a = record("a", "Store A");
        let b = record("b", "Store B");
        let a_renamed = record("a", "Store A (new name)");
        let cases: Vec<Case> = vec![
            (
                "onboarding: every store published",
                Some(("p.stores", at("p.stores"))),
                vec![a.clone(), b.clone()],
                StoreRegionStatus::default(),
                vec![row("p.stores", "a", false), row("p.stores", "b", false)],
            ),
            (
                "unchanged: nothing published",
                Some(("p.stores", at("p.stores"))),
                vec![a.clone(), b.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![],
            ),
            (
                "removal: a tombstone for the removed store",
                Some(("p.stores", at("p.stores"))),
                vec![a.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![row("p.stores", "b", true), row("p.stores", "a", false)],
            ),
            (
                "a changed store is published again",
                Some(("p.stores", at("p.stores"))),
                vec![a_renamed.clone(), b.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![row("p.stores", "a", false), row("p.stores", "b", false)],
            ),
            (
                "moved to another pipeline: tombstones there, records here",
                Some(("q.stores", at("q.stores"))),
                vec![a.clone()],
                published("p.stores", &["a"], std::slice::from_ref(&a)),
                vec![row("p.stores", "a", true), row("q.stores", "a", false)],
            ),
            (
                "no pipeline selects the region any more: everything withdrawn",
                None,
                vec![a.clone(), b.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![row("p.stores", "a", true), row("p.stores", "b", true)],
            ),
            (
                "the topic was deleted and created again: every store again, no tombstone",
                Some(("p.stores", TopicIdentity { topic_id: Some("id-again".into()), ..at("p.stores") })),
                vec![a.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![row("p.stores", "a", false)],
            ),
            (
                "the pipeline's cluster changed: every store on the new one, no tombstone",
                Some((
                    "p.stores",
                    TopicIdentity { cluster_id: Some("c2".into()), topic_id: Some("id-p.stores".into()) },
                )),
                vec![a.clone(), b.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![row("p.stores", "a", false), row("p.stores", "b", false)],
            ),
            (
                "moved to a pipeline on another cluster: no tombstone sent there for the old topic",
                Some(("q.stores", TopicIdentity { cluster_id: Some("c2".into()), topic_id: Some("id-q".into()) })),
                vec![a.clone()],
                published("p.stores", &["a"], std::slice::from_ref(&a)),
                vec![row("q.stores", "a", false)],
            ),
            (
                "a broker that tells no ids: the name and digest decide, as before",
                Some(("p.stores", TopicIdentity::default())),
                vec![a.clone(), b.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![],
            ),
        ];
        for (name, target, records, status, expected) in cases {
            let plan = plan_stores(target.as_ref().map(|(t, i)| (*t, i)), &records, &status);
            assert_eq!(summary(&plan), expected, "{name}");
        }
    }

    #[test]
    fn published_value_is_the_json_the_processor_reads() {
        let plan =
            plan_stores(Some(("p.stores", &at("p.stores"))), &[record("a", "Store A")], &StoreRegionStatus::default());
        assert_eq!(
            plan.records[0].value.as_deref(),
            Some(
                r#"{"store_id":"a","name":"Store A","region":"eu-central","channel":"physical","country":"DE","timezone":"Europe/Berlin","currency":"EUR"}"#
            )
        );
        assert_eq!(plan.published_stores, vec!["a"]);
        assert_eq!(plan.published_identity, at("p.stores"));
    }

    #[test]
    fn an_identity_the_broker_stops_telling_is_kept() {
        let a = record("a", "Store A");
        let status = published("p.stores", &["a"], std::slice::from_ref(&a));
        let plan = plan_stores(Some(("p.stores", &TopicIdentity::default())), &[a], &status);
        assert!(plan.records.is_empty());
        assert_eq!(plan.published_identity, at("p.stores"));
    }

    #[test]
    fn withdrawal_tombstones_every_published_store() {
        let status = published("p.stores", &["a", "b"], &[]);
        let records = plan_withdrawal(&status);
        let keys: Vec<(&str, bool)> = records.iter().map(|r| (r.key.as_str(), r.value.is_none())).collect();
        assert_eq!(keys, vec![("a", true), ("b", true)]);
        assert!(plan_withdrawal(&StoreRegionStatus::default()).is_empty());
    }
}

//! What a StoreRegion publishes: every store when something changed, tombstones for the
//! stores removed (or all of them when the region leaves a pipeline or is deleted), and
//! nothing at all when the records are those already published.

use crate::build::config_map::sha256_hex;
use crate::build::store_records::StoreRecord;
use crate::crd::StoreRegionStatus;

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
}

impl StorePlan {
    pub fn upserts(&self) -> usize {
        self.records.iter().filter(|r| r.value.is_some()).count()
    }
    pub fn tombstones(&self) -> usize {
        self.records.iter().filter(|r| r.value.is_none()).count()
    }
}

/// The digest of what is published where: unchanged digest, nothing to publish.
pub fn digest(topic: &str, records: &[StoreRecord]) -> String {
    let body = serde_json::to_string(records).unwrap_or_default();
    sha256_hex(&format!("{topic}\n{body}"))
}

/// Plans the publication of `records` to `target` (None: the region feeds no pipeline, so
/// whatever it published is withdrawn), given what `status` says was published before.
pub fn plan_stores(target: Option<&str>, records: &[StoreRecord], status: &StoreRegionStatus) -> StorePlan {
    let previous_topic = status.published_topic.as_deref();
    let mut out = Vec::new();
    let Some(target) = target else {
        if let Some(previous) = previous_topic {
            for id in &status.published_stores {
                out.push(OutgoingRecord { topic: previous.to_string(), key: id.clone(), value: None });
            }
        }
        return StorePlan { records: out, ..StorePlan::default() };
    };
    let new_digest = digest(target, records);
    let ids: Vec<String> = records.iter().map(|r| r.store_id.clone()).collect();
    if previous_topic == Some(target) && status.published_digest.as_deref() == Some(new_digest.as_str()) {
        return StorePlan {
            records: Vec::new(),
            published_topic: Some(target.to_string()),
            published_stores: ids,
            published_digest: Some(new_digest),
        };
    }
    if let Some(previous) = previous_topic {
        for id in &status.published_stores {
            if previous != target || !ids.contains(id) {
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
    StorePlan {
        records: out,
        published_topic: Some(target.to_string()),
        published_stores: ids,
        published_digest: Some(new_digest),
    }
}

/// On deletion of the region: a tombstone for every published store.
pub fn plan_withdrawal(status: &StoreRegionStatus) -> Vec<OutgoingRecord> {
    plan_stores(None, &[], status).records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, name: &str) -> StoreRecord {
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

    fn published(topic: &str, ids: &[&str], records: &[StoreRecord]) -> StoreRegionStatus {
        StoreRegionStatus {
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

    /// (what, target topic, records, status before, expected (topic, key, tombstone))
    type Case = (&'static str, Option<&'static str>, Vec<StoreRecord>, StoreRegionStatus, Vec<(String, String, bool)>);

    #[test]
    fn store_plans() {
        let a = record("a", "Store A");
        let b = record("b", "Store B");
        let a_renamed = record("a", "Store A (new name)");
        let cases: Vec<Case> = vec![
            (
                "onboarding: every store published",
                Some("p.stores"),
                vec![a.clone(), b.clone()],
                StoreRegionStatus::default(),
                vec![row("p.stores", "a", false), row("p.stores", "b", false)],
            ),
            (
                "unchanged: nothing published",
                Some("p.stores"),
                vec![a.clone(), b.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![],
            ),
            (
                "removal: a tombstone for the removed store",
                Some("p.stores"),
                vec![a.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![row("p.stores", "b", true), row("p.stores", "a", false)],
            ),
            (
                "a changed store is published again",
                Some("p.stores"),
                vec![a_renamed.clone(), b.clone()],
                published("p.stores", &["a", "b"], &[a.clone(), b.clone()]),
                vec![row("p.stores", "a", false), row("p.stores", "b", false)],
            ),
            (
                "moved to another pipeline: tombstones there, records here",
                Some("q.stores"),
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
        ];
        for (name, target, records, status, expected) in cases {
            let plan = plan_stores(target, &records, &status);
            assert_eq!(summary(&plan), expected, "{name}");
        }
    }

    #[test]
    fn published_value_is_the_json_the_processor_reads() {
        let plan = plan_stores(Some("p.stores"), &[record("a", "Store A")], &StoreRegionStatus::default());
        assert_eq!(
            plan.records[0].value.as_deref(),
            Some(
                r#"{"store_id":"a","name":"Store A","region":"eu-central","channel":"physical","country":"DE","timezone":"Europe/Berlin","currency":"EUR"}"#
            )
        );
        assert_eq!(plan.published_stores, vec!["a"]);
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

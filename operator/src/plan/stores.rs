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
pub fn plan_stores(
    target: Option<&str>,
    records: &[StoreRecord],
    status: &StoreRegionStatus,
) -> StorePlan {
    let previous_topic = status.published_topic.as_deref();
    let mut out = Vec::new();
    let Some(target) = target else {
        if let Some(previous) = previous_topic {
            for id in &status.published_stores {
                out.push(OutgoingRecord {
                    topic: previous.to_string(),
                    key: id.clone(),
                    value: None,
                });
            }
        }
        return StorePlan {
            records: out,
            ..StorePlan::default()
        };
    };
    let new_digest = digest(target, records);
    let ids: Vec<String> = records.iter().map(|r| r.store_id.clone()).collect();
    if previous_topic == Some(target)
        && status.published_digest.as_deref() == Some(new_digest.as_str())
    {
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
                out.push(OutgoingRecord {
                    topic: previous.to_string(),
                    key: id.clone(),
                    value: None,
                });
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

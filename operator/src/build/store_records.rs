//! The records a StoreRegion publishes to a pipeline's `stores` topic: key the store id,
//! value the JSON the processor reads for enrichment.

use serde::Serialize;

use crate::crd::StoreRegion;

/// A store as the processor reads it from the `stores` topic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoreRecord {
    pub store_id: String,
    pub name: String,
    pub region: String,
    pub channel: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    pub country: String,
    pub timezone: String,
    pub currency: String,
}

/// The region's stores, sorted by id.
pub fn store_records(region: &StoreRegion) -> Vec<StoreRecord> {
    let spec = &region.spec;
    let mut records: Vec<StoreRecord> = spec
        .stores
        .iter()
        .map(|s| StoreRecord {
            store_id: s.id.clone(),
            name: s.name.clone(),
            region: spec.region.clone(),
            channel: s.channel.as_str().to_string(),
            format: s.format.clone(),
            city: s.city.clone(),
            country: s.country.clone(),
            timezone: spec.timezone.clone(),
            currency: spec.currency.clone(),
        })
        .collect();
    records.sort_by(|a, b| a.store_id.cmp(&b.store_id));
    records
}

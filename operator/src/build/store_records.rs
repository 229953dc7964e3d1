//! The records a StoreRegion publishes to a pipeline's `stores` topic: key the store id,
//! value the JSON the processor reads for enrichment, written with the processor's own type.

pub use stockpulse_processor::reference::StoreRecord;

use crate::crd::StoreRegion;

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
            channel: s.channel.into(),
            format: s.format.clone().unwrap_or_default(),
            city: s.city.clone().unwrap_or_default(),
            country: s.country.clone(),
            timezone: spec.timezone.clone(),
            currency: spec.currency.clone(),
        })
        .collect();
    records.sort_by(|a, b| a.store_id.cmp(&b.store_id));
    records
}

#[cfg(test)]
mod tests {
    use stockpulse_processor::event::Channel;
    use stockpulse_processor::reference::{ReferenceUpdate, StoreRecord as ProcessorStore};

    use crate::crd::StoreRegionStatus;
    use crate::plan::stores::plan_stores;

    /// The contract with the processor: what the operator publishes, the processor decodes.
    #[test]
    fn published_records_decode_in_the_processor() {
        let mut region = crate::fixtures::region("eu-central", "shop", &["de-ber-001", "eu-web-001"]);
        region.spec.stores[1].channel = crate::crd::store_region::Channel::Online;
        region.spec.stores[1].city = None;
        region.spec.stores[1].format = Some("web".into());
        let plan = plan_stores(
            Some(("shop.stores", &Default::default())),
            &super::store_records(&region),
            &StoreRegionStatus::default(),
        );
        let decoded: Vec<ReferenceUpdate> = plan
            .records
            .iter()
            .map(|r| {
                ReferenceUpdate::store_from_record(r.key.as_bytes(), r.value.as_deref().map(str::as_bytes)).unwrap()
            })
            .collect();
        let store = |id: &str, name: &str, channel, format: &str, city: &str| {
            ReferenceUpdate::Store(ProcessorStore {
                store_id: id.into(),
                name: name.into(),
                region: "eu-central".into(),
                channel,
                format: format.into(),
                city: city.into(),
                country: "DE".into(),
                timezone: "Europe/Berlin".into(),
                currency: "EUR".into(),
            })
        };
        assert_eq!(
            decoded,
            vec![
                store("de-ber-001", "Store de-ber-001", Channel::Physical, "", "Berlin"),
                store("eu-web-001", "Store eu-web-001", Channel::Online, "web", ""),
            ]
        );
        let tombstone = ReferenceUpdate::store_from_record(b"de-ber-001", None).unwrap();
        assert_eq!(tombstone, ReferenceUpdate::StoreRemoved("de-ber-001".into()));
    }
}

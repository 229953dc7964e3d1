//! Enrichment: store -> region and channel, SKU -> category, from reference data that can
//! change at run time. A key without reference data is tagged `unknown`, never dropped.

use super::intern::Interner;
use crate::reference::{ProductRecord, StoreRecord};

/// The label of a dimension whose reference data is missing.
pub const UNKNOWN: &str = "unknown";

#[derive(Debug, Clone, Copy)]
struct StoreDims {
    region: u32,
    channel: u32,
}

#[derive(Debug, Default)]
pub struct Enrichment {
    stores: Vec<Option<StoreDims>>,
    categories: Vec<Option<u32>>,
}

impl Enrichment {
    pub fn upsert_store(&mut self, store: u32, record: &StoreRecord, labels: &mut Interner) {
        let dims = StoreDims { region: labels.intern(&record.region), channel: labels.intern(record.channel.as_str()) };
        set(&mut self.stores, store, Some(dims));
    }

    pub fn remove_store(&mut self, store: u32) {
        set(&mut self.stores, store, None);
    }

    pub fn upsert_product(&mut self, sku: u32, record: &ProductRecord, labels: &mut Interner) {
        set(&mut self.categories, sku, Some(labels.intern(&record.category)));
    }

    pub fn remove_product(&mut self, sku: u32) {
        set(&mut self.categories, sku, None);
    }

    /// The store's region and channel label ids, if the store is known.
    pub fn store(&self, store: u32) -> Option<(u32, u32)> {
        self.stores.get(store as usize).copied().flatten().map(|d| (d.region, d.channel))
    }

    /// The SKU's category label id, if the product is known.
    pub fn category(&self, sku: u32) -> Option<u32> {
        self.categories.get(sku as usize).copied().flatten()
    }
}

fn set<T: Copy>(table: &mut Vec<Option<T>>, id: u32, value: Option<T>) {
    let index = id as usize;
    if table.len() <= index {
        table.resize(index + 1, None);
    }
    table[index] = value;
}

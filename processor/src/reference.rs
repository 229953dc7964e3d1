//! Reference data: stores (from the compacted `stores` topic, published by the operator from
//! StoreRegions) and products (from the compacted `catalog` topic). Both are broadcast to
//! every processor instance and may change while it runs. Records are JSON keyed by id; a
//! tombstone (empty value) removes the key.

use serde::{Deserialize, Serialize};

use crate::event::Channel;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreRecord {
    pub store_id: String,
    pub name: String,
    pub region: String,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub format: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub city: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub country: String,
    /// IANA time zone of the store's region, e.g. `Europe/Berlin`.
    pub timezone: String,
    /// ISO 4217 code the store sells in.
    pub currency: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub sku_id: String,
    pub name: String,
    pub category: String,
    pub brand: String,
    /// `budget`, `mid` or `premium`.
    pub price_band: String,
    /// List price in EUR, a decimal string.
    pub list_price: String,
}

/// A change to reference data, as read from a compacted topic or a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReferenceUpdate {
    Store(StoreRecord),
    StoreRemoved(String),
    Product(ProductRecord),
    ProductRemoved(String),
}

/// Why a reference record could not be read; it names the record.
#[derive(Debug, thiserror::Error)]
#[error("{kind} record {key:?} is not valid: {message}")]
pub struct ReferenceError {
    pub kind: &'static str,
    pub key: String,
    pub message: String,
}

impl ReferenceUpdate {
    /// Decodes a record of the `stores` topic: key = store id, empty value = tombstone.
    pub fn store_from_record(key: &[u8], value: Option<&[u8]>) -> Result<Self, ReferenceError> {
        Self::decode("store", key, value, ReferenceUpdate::Store, ReferenceUpdate::StoreRemoved)
    }

    /// Decodes a record of the `catalog` topic: key = SKU id, empty value = tombstone.
    pub fn product_from_record(key: &[u8], value: Option<&[u8]>) -> Result<Self, ReferenceError> {
        Self::decode("product", key, value, ReferenceUpdate::Product, ReferenceUpdate::ProductRemoved)
    }

    fn decode<T: for<'de> Deserialize<'de>>(
        kind: &'static str,
        key: &[u8],
        value: Option<&[u8]>,
        upsert: fn(T) -> Self,
        removed: fn(String) -> Self,
    ) -> Result<Self, ReferenceError> {
        let key = String::from_utf8_lossy(key).into_owned();
        match value {
            None | Some([]) => Ok(removed(key)),
            Some(bytes) => serde_json::from_slice(bytes).map(upsert).map_err(|e| ReferenceError {
                kind,
                key,
                message: e.to_string(),
            }),
        }
    }
}

/// Reads NDJSON reference records (one store or product per line) from text.
pub fn read_ndjson<T: for<'de> Deserialize<'de>>(text: &str, origin: &str) -> Result<Vec<T>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| serde_json::from_str(line).map_err(|e| format!("{origin}:{}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstone_removes_and_bad_record_is_named() {
        assert_eq!(
            ReferenceUpdate::store_from_record(b"S1", None).unwrap(),
            ReferenceUpdate::StoreRemoved("S1".into())
        );
        assert_eq!(
            ReferenceUpdate::product_from_record(b"K1", Some(b"")).unwrap(),
            ReferenceUpdate::ProductRemoved("K1".into())
        );
        let err = ReferenceUpdate::store_from_record(b"S2", Some(b"{\"store_id\":\"S2\"}")).unwrap_err();
        assert_eq!(err.to_string(), "store record \"S2\" is not valid: missing field `name` at line 1 column 17");
    }

    #[test]
    fn ndjson_errors_name_the_line() {
        let err = read_ndjson::<ProductRecord>("\n{}\n", "catalog.ndjson").unwrap_err();
        assert_eq!(err, "catalog.ndjson:2: missing field `sku_id` at line 1 column 2");
    }
}

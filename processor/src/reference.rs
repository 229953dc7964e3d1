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

/// A catalog record: what enrichment needs is the category, brand and price band; the name
/// and list price are optional (the processor does not read them).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRecord {
    pub sku_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub category: String,
    pub brand: String,
    /// `budget`, `mid` or `premium`.
    pub price_band: String,
    /// List price in EUR, a decimal string.
    #[serde(default, skip_serializing_if = "String::is_empty")]
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

/// NDJSON reference records (one store or product per line) read from text: those that
/// could be read, and for each line that could not, a message naming the file and line. A
/// bad record leaves the rest applying (a catalog with one broken line is still a catalog).
pub struct NdjsonRecords<T> {
    pub records: Vec<T>,
    pub errors: Vec<String>,
}

/// Reads NDJSON reference records from text; `origin` names it in error messages.
pub fn read_ndjson<T: for<'de> Deserialize<'de>>(text: &str, origin: &str) -> NdjsonRecords<T> {
    let mut read = NdjsonRecords { records: Vec::new(), errors: Vec::new() };
    for (i, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        match serde_json::from_str(line) {
            Ok(record) => read.records.push(record),
            Err(e) => read.errors.push(format!("{origin}:{}: {e}", i + 1)),
        }
    }
    read
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
    fn a_bad_ndjson_line_is_named_and_the_rest_is_read() {
        let text = concat!(
            "{\"sku_id\":\"K1\",\"category\":\"running\",\"brand\":\"Stridex\",\"price_band\":\"mid\"}\n",
            "\n",
            "{}\n",
            "{\"sku_id\":\"K2\",\"name\":\"Trail\",\"category\":\"outdoor\",\"brand\":\"Alpin\",\"price_band\":\"premium\",\"list_price\":\"120.00\"}\n",
            "not json\n",
        );
        let read = read_ndjson::<ProductRecord>(text, "catalog.ndjson");
        let ids: Vec<&str> = read.records.iter().map(|p| p.sku_id.as_str()).collect();
        assert_eq!(ids, ["K1", "K2"], "name and list_price are optional");
        assert_eq!(
            read.errors,
            [
                "catalog.ndjson:3: missing field `sku_id` at line 1 column 2",
                "catalog.ndjson:5: expected ident at line 1 column 2",
            ]
        );
    }
}

//! Where input records come from. The `memory` source reads the in-memory log, `ndjson`
//! a recorded file; a Kafka source implements the same trait.

mod memory;
mod ndjson;

use std::sync::Arc;

pub use memory::{MemoryReferenceSource, MemorySource};
pub use ndjson::NdjsonSource;

use crate::reference::ReferenceUpdate;

/// An input record (an event's bytes) with its coordinates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceRecord {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

/// Why a source or sink failed; it names what it was reading or writing.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("{0}")]
    Other(String),
}

/// A source of event records.
pub trait Source {
    /// Appends up to `max` records to `out`; appends none when nothing is available now.
    fn poll(&mut self, max: usize, out: &mut Vec<SourceRecord>) -> Result<(), IoError>;
    /// The input partitions currently assigned, as (topic, partition).
    fn assignment(&self) -> Vec<(Arc<str>, i32)>;
    /// Whether the input has ended (a file); a live log never ends.
    fn is_finished(&self) -> bool {
        false
    }
}

/// A source of reference-data changes (stores and catalog).
pub trait ReferenceSource {
    /// Appends the changes that arrived since the last call.
    fn poll(&mut self, out: &mut Vec<ReferenceUpdate>) -> Result<(), IoError>;
}

/// A fixed set of reference data, applied once (files given to `replay`).
pub struct StaticReferences(pub Vec<ReferenceUpdate>);

impl ReferenceSource for StaticReferences {
    fn poll(&mut self, out: &mut Vec<ReferenceUpdate>) -> Result<(), IoError> {
        out.append(&mut self.0);
        Ok(())
    }
}

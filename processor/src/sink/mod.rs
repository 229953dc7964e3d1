//! Where output records go. The `memory` sink appends to the in-memory log, `ndjson` writes
//! one file per output kind; a transactional Kafka sink implements the same trait.

mod memory;
mod ndjson;

use std::sync::Arc;

pub use memory::MemorySink;
pub use ndjson::NdjsonSink;

use crate::output::Output;
use crate::source::IoError;

/// The next offset to consume of an input partition, committed with the outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: Arc<str>,
    pub partition: i32,
    pub next_offset: i64,
}

/// A sink of output records.
pub trait Sink {
    /// Writes records; they become visible to `read_committed` readers at `commit`.
    fn write(&mut self, outputs: &[Output]) -> Result<(), IoError>;
    /// Commits what was written together with the input positions it reflects: the
    /// exactly-once boundary (a Kafka transaction; a plain write for files and memory).
    fn commit(&mut self, positions: &[Position]) -> Result<(), IoError>;
}

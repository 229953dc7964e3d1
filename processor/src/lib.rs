//! stockpulse processor: turns raw retail events into live sales and inventory figures.
//!
//! Layout: `config` (the `PipelineConfig`), `event` (schema, parsing, validation), `engine`
//! (pure: dedupe, enrichment, watermarks, windows, inventory, alerts; time passed in),
//! `output` (the records it emits and their keys), `source`/`sink` (the I/O traits and
//! their in-memory implementations), `pipeline` (the loop that drives an engine between a
//! source and a sink), `generator` (realistic store traffic) and `cli` (the commands).

pub mod cli;
pub mod config;
pub mod engine;
pub mod event;
pub mod generator;
pub mod memory_log;
pub mod output;
pub mod partitioner;
pub mod pipeline;
pub mod reference;
pub mod runtime;
pub mod sink;
pub mod source;

//! Pure planners: what to change, from what is wanted and what was observed.

pub mod pipeline;
pub mod region;
pub mod replicas;
pub mod replication;
pub mod stores;
pub mod topics;

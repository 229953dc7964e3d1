//! Status of the custom resources: conditions merged in one place, and the pure functions
//! that compute each kind's status from its plan and what was observed.

pub mod alert_figures;
pub mod conditions;
pub mod pipeline;
pub mod region;
pub mod replication;

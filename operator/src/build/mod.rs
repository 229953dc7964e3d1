//! Pure builders: from validated custom resources to the desired Kubernetes objects, Kafka
//! topics, processor config and store records. No client, no clock.

pub mod config_map;
pub mod deployment;
pub mod labels;
pub mod pdb;
pub mod pipeline_config;
pub mod replicator;
pub mod service;
pub mod service_account;
pub mod store_records;
pub mod topics;

use std::fmt;

/// One thing wrong with a spec, by field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblem {
    pub field: String,
    pub message: String,
}

/// Everything wrong with a spec; the operator reports it as a condition and waits for a
/// change instead of retrying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecProblems(pub Vec<SpecProblem>);

impl SpecProblems {
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecProblems(vec![SpecProblem { field: field.into(), message: message.into() }])
    }
}

impl fmt::Display for SpecProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}: {}", p.field, p.message)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecProblems {}

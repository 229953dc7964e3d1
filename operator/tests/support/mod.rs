//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod schema;

use std::path::PathBuf;

/// The repository root (the operator crate's parent).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[allow(unused_imports)]
pub use stockpulse_testkit::tool;

/// The sample custom resources of `manifests/samples/`, sorted by file name.
pub fn sample_files() -> Vec<PathBuf> {
    stockpulse_testkit::yaml_files(&repo_root().join("manifests/samples"))
}

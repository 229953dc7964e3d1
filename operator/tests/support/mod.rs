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
    let dir = repo_root().join("manifests/samples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

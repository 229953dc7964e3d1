//! Helpers shared by the integration tests.

#![allow(dead_code)]

pub mod schema;
pub mod tansu;

use std::path::PathBuf;

/// The repository root (the operator crate's parent).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The path of a test tool from its environment variable, or a panic that says how to get it.
pub fn tool(var: &str) -> PathBuf {
    match std::env::var_os(var) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => panic!(
            "{var} is not set: run `eval \"$(bash scripts/install-test-tools.sh)\"` first (this test never skips silently)"
        ),
    }
}

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

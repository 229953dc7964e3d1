//! The operator image starts: every shared library the binary links is in the runtime base
//! of operator/Dockerfile (distroless cc: libc, libssl3, libgcc, libstdc++; no libz, which
//! librdkafka therefore takes statically).

use std::path::Path;

use stockpulse_testkit::image::{assert_image_runs, libraries_missing_from_runtime};

const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile");
const BINARY: &str = env!("CARGO_BIN_EXE_stockpulse-operator");

#[test]
fn the_runtime_base_has_every_library_the_binary_links() {
    assert_image_runs(Path::new(DOCKERFILE), Path::new(BINARY), "stockpulse-operator");
}

#[test]
fn a_base_without_those_libraries_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    std::fs::write(&dockerfile, "FROM gcr.io/distroless/static-debian12:nonroot\n").unwrap();
    let missing = libraries_missing_from_runtime(&dockerfile, Path::new(BINARY)).unwrap();
    assert!(missing.contains(&"libc.so.6".to_string()) && missing.contains(&"libssl.so.3".to_string()), "{missing:?}");
}

//! The processor image starts: every shared library the binary links is in the runtime base
//! of processor/Dockerfile (distroless cc: libc, libssl3, libgcc, libstdc++; no libz, which
//! librdkafka therefore takes statically).

use std::path::Path;

use stockpulse_testkit::image::assert_image_runs;

const DOCKERFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile");
const BINARY: &str = env!("CARGO_BIN_EXE_stockpulse-processor");

#[test]
fn the_runtime_base_has_every_library_the_binary_links() {
    assert_image_runs(Path::new(DOCKERFILE), Path::new(BINARY), "stockpulse-processor");
}

//! The committed generated files (CRDs in crds/, manifests/crds/, charts/stockpulse/crds/,
//! and docs/crd-reference.md) are what `stockpulse-operator crdgen` makes now.

mod support;

#[test]
fn committed_generated_files_are_up_to_date() {
    let stale = stockpulse_operator::generate::stale_files(&support::repo_root()).unwrap();
    assert!(
        stale.is_empty(),
        "stale generated files {stale:?}: run `cargo run -p stockpulse-operator -- crdgen` and commit the result"
    );
}

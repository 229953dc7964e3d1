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

/// docs/ and the README are for users who have only the repository: they never send a reader
/// to design notes outside it.
#[test]
fn the_docs_stand_alone() {
    let root = support::repo_root();
    let mut files = vec![root.join("README.md"), root.join("charts/stockpulse/templates/NOTES.txt")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        files.push(entry.unwrap().path());
    }
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (number, line) in text.lines().enumerate() {
            if ["DESIGN.md", "STYLE.md", "../shared"].iter().any(|outside| line.contains(outside)) {
                found.push(format!("{}:{}: {line}", file.display(), number + 1));
            }
        }
    }
    assert!(found.is_empty(), "references to files outside the repository:\n{}", found.join("\n"));
}

//! `stockpulse-operator render` on the samples prints objects that the official Kubernetes
//! schemas accept strictly (unknown fields refused), checked by `kubernetes-validate`.

mod support;

use std::process::Command;

fn kubernetes_validate_strict(path: &std::path::Path) -> String {
    let tool = support::tool("STOCKPULSE_KUBERNETES_VALIDATE");
    let output = Command::new(&tool)
        .arg("--strict")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "kubernetes-validate --strict refused {}:\n{text}", path.display());
    text
}

#[test]
fn rendered_objects_of_the_samples_validate_strictly() {
    let output = Command::new(env!("CARGO_BIN_EXE_stockpulse-operator"))
        .args(["render", "--only", "objects", "-f"])
        .args(support::sample_files())
        .output()
        .unwrap();
    assert!(output.status.success(), "render failed: {}", String::from_utf8_lossy(&output.stderr));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rendered.yaml");
    std::fs::write(&path, &output.stdout).unwrap();
    let report = kubernetes_validate_strict(&path);
    let passed: Vec<&str> = report.lines().filter(|l| l.contains(" passed for resource ")).collect();
    let kinds: Vec<String> = passed
        .iter()
        .filter_map(|l| l.split(" passed for resource ").nth(1))
        .map(|r| r.split(" against").next().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "serviceaccount/acme-sports-processor",
            "configmap/acme-sports-config",
            "service/acme-sports-processor",
            "poddisruptionbudget/acme-sports-processor",
            "deployment/acme-sports-processor",
        ],
        "{report}"
    );
}

#[test]
fn generated_crds_validate_strictly() {
    for file in ["retailpipelines.yaml", "storeregions.yaml", "alertpolicies.yaml"] {
        let report = kubernetes_validate_strict(&support::repo_root().join("crds").join(file));
        assert!(report.contains("passed for resource customresourcedefinition/"), "{report}");
    }
}

#[test]
fn render_prints_every_topic_of_the_sample_pipeline() {
    let output = Command::new(env!("CARGO_BIN_EXE_stockpulse-operator"))
        .args(["render", "--only", "topics", "-f"])
        .args(support::sample_files())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let doc: serde_json::Value = serde_yaml::from_slice(&output.stdout).unwrap();
    let topics: Vec<(String, i64, String)> = doc["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["partitions"].as_i64().unwrap(),
                t["configs"]["cleanup.policy"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, i64, String)> = [
        ("acme-sports.sales", 12, "delete"),
        ("acme-sports.inventory", 12, "delete"),
        ("acme-sports.aggregates", 12, "compact"),
        ("acme-sports.inventory-state", 12, "compact"),
        ("acme-sports.alerts", 12, "delete"),
        ("acme-sports.dead-letter", 3, "delete"),
        ("acme-sports.late", 3, "delete"),
        ("acme-sports.stores", 1, "compact"),
        ("acme-sports.catalog", 3, "compact"),
        ("acme-sports.changelog", 12, "compact"),
        ("acme-sports.repartition", 12, "delete"),
        // The Kafka sink of the sample sales-spike AlertPolicy, shaped like the alerts topic.
        ("acme-sports.merchandising-alerts", 12, "delete"),
    ]
    .into_iter()
    .map(|(n, p, c)| (n.to_string(), p, c.to_string()))
    .collect();
    assert_eq!(topics, expected);
    assert_eq!(doc["topics"][0]["configs"]["retention.ms"], "604800000");
}

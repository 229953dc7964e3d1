//! The Helm chart renders objects that the official Kubernetes schemas accept strictly, in
//! both shapes (one replica; two replicas with leader election and a PDB), the plain
//! manifests in manifests/operator/ are what the chart renders, and `kubectl kustomize`
//! renders the install (manifests/) and the samples (manifests/samples/).

mod support;

use std::path::Path;
use std::process::Command;

fn helm_template(args: &[&str]) -> String {
    let helm = support::tool("STOCKPULSE_HELM");
    let root = support::repo_root();
    let output = Command::new(&helm)
        .current_dir(&root)
        .args(["template", "stockpulse", "charts/stockpulse", "--namespace", "stockpulse-system"])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm.display()));
    assert!(output.status.success(), "helm template failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

fn validate_strict(yaml: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chart.yaml");
    std::fs::write(&path, yaml).unwrap();
    let tool = support::tool("STOCKPULSE_KUBERNETES_VALIDATE");
    let output = Command::new(&tool).arg("--strict").arg(&path).output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "kubernetes-validate --strict refused the chart:\n{text}");
    text.lines()
        .filter_map(|l| l.split(" passed for resource ").nth(1))
        .map(|r| r.split(" against").next().unwrap_or("").to_string())
        .collect()
}

#[test]
fn chart_renders_valid_objects_with_one_replica() {
    let resources = validate_strict(&helm_template(&[]));
    assert_eq!(
        resources,
        vec![
            "serviceaccount/stockpulse-operator",
            "clusterrole/stockpulse-operator",
            "clusterrolebinding/stockpulse-operator",
            "role/stockpulse-operator-leader-election",
            "rolebinding/stockpulse-operator-leader-election",
            "service/stockpulse-operator-metrics",
            "deployment/stockpulse-operator",
        ]
    );
}

#[test]
fn chart_with_two_replicas_adds_a_pdb_and_keeps_leader_election() {
    let yaml = helm_template(&["--set", "replicaCount=2", "--set", "watchNamespace=acme-sports"]);
    let resources = validate_strict(&yaml);
    assert!(resources.contains(&"poddisruptionbudget/stockpulse-operator".to_string()), "{resources:?}");
    assert!(resources.contains(&"role/stockpulse-operator".to_string()), "{resources:?}");
    assert!(yaml.contains("replicas: 2"));
    assert!(yaml.contains("- --leader-election=true"));
    assert!(yaml.contains("- --namespace=acme-sports"));
}

#[test]
fn chart_passes_the_allowed_processor_images_to_the_operator() {
    let yaml = helm_template(&["--set", "allowedProcessorImages={ghcr.io/stockpulse/,registry.local/processor}"]);
    validate_strict(&yaml);
    assert!(
        yaml.contains("- name: STOCKPULSE_ALLOWED_PROCESSOR_IMAGES\n              value: \"ghcr.io/stockpulse/,registry.local/processor\""),
        "{yaml}"
    );
    assert!(!helm_template(&[]).contains("STOCKPULSE_ALLOWED_PROCESSOR_IMAGES"), "empty by default: any image");
}

#[test]
fn chart_ships_the_generated_crds() {
    let yaml = helm_template(&["--include-crds"]);
    for name in ["retailpipelines", "storeregions", "alertpolicies"] {
        assert!(yaml.contains(&format!("name: {name}.retail.stockpulse.io")), "{name}");
    }
}

#[test]
fn plain_manifests_are_what_the_chart_renders() {
    let committed =
        std::fs::read_to_string(support::repo_root().join(Path::new("manifests/operator/install.yaml"))).unwrap();
    assert!(
        committed == helm_template(&["--set", "plainManifests=true"]),
        "manifests/operator/install.yaml is stale: run `helm template stockpulse charts/stockpulse --namespace stockpulse-system --set plainManifests=true > manifests/operator/install.yaml`"
    );
    for helm_label in ["helm.sh/chart", "managed-by: Helm"] {
        assert!(!committed.contains(helm_label), "the plain manifests carry the Helm label {helm_label}");
    }
    assert!(helm_template(&[]).contains("managed-by: Helm"), "a Helm install keeps its labels");
}

fn kustomize(dir: &str) -> String {
    let kubectl = support::tool("STOCKPULSE_KUBECTL");
    let output = Command::new(&kubectl)
        .arg("kustomize")
        .arg(support::repo_root().join(dir))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", kubectl.display()));
    assert!(output.status.success(), "kubectl kustomize {dir} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

/// (kind, name) of every document of a multi-document YAML text, sorted.
fn kinds_and_names(text: &str) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = serde_yaml::Deserializer::from_str(text)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &serde_yaml::Value| !v.is_null())
        .map(|v| (v["kind"].as_str().unwrap().to_string(), v["metadata"]["name"].as_str().unwrap().to_string()))
        .collect();
    found.sort();
    found
}

#[test]
fn kustomize_renders_the_install_and_the_samples() {
    let install = kustomize("manifests");
    let resources = validate_strict(&install);
    let mut expected: Vec<String> = vec!["namespace/stockpulse-system".into(), "namespace/acme-sports".into()];
    for crd in ["retailpipelines", "storeregions", "alertpolicies"] {
        expected.push(format!("customresourcedefinition/{crd}.retail.stockpulse.io"));
    }
    expected.extend(validate_strict(&helm_template(&[])));
    let mut resources = resources;
    resources.sort();
    expected.sort();
    assert_eq!(resources, expected, "the install is the namespaces, the CRDs and what the chart renders");

    let samples = kustomize("manifests/samples");
    let files: String =
        support::sample_files().iter().map(|f| format!("{}\n---\n", std::fs::read_to_string(f).unwrap())).collect();
    assert_eq!(kinds_and_names(&samples), kinds_and_names(&files), "the samples kustomization lists every sample");
}

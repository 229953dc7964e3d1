//! The Helm chart renders objects that the official Kubernetes schemas accept strictly, in
//! both shapes (one replica; two replicas with leader election and a PDB), its monitoring
//! objects (ServiceMonitor, PodMonitor, PrometheusRule) are what the prometheus-operator CRDs
//! accept strictly, the plain manifests in manifests/operator/ are what the chart renders, and
//! `kubectl kustomize` renders the install (manifests/) and the samples (manifests/samples/).

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

/// The kinds of the Prometheus Operator that the chart renders. kubernetes-validate has no
/// schema for them (it warns "Couldn't find schema" and passes), so
/// scripts/tools/validate_custom_resources.py checks them against the CRDs of the pinned
/// prometheus-operator release (scripts/install-test-tools.sh copies them to .tools/crds/).
const MONITORING_KINDS: [&str; 3] = ["ServiceMonitor", "PodMonitor", "PrometheusRule"];

/// Every monitoring option on (and the dashboard, a ConfigMap).
const ALL_MONITORING: &[&str] = &[
    "--set",
    "monitoring.serviceMonitor.enabled=true",
    "--set",
    "monitoring.podMonitor.enabled=true",
    "--set",
    "monitoring.prometheusRule.enabled=true",
    "--set",
    "monitoring.dashboard.enabled=true",
];

/// The documents of a rendered chart whose kind is one of `MONITORING_KINDS`.
fn monitoring_documents(yaml: &str) -> Vec<serde_yaml::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).unwrap())
        .filter(|v: &serde_yaml::Value| v["kind"].as_str().is_some_and(|k| MONITORING_KINDS.contains(&k)))
        .collect()
}

/// Runs the custom-resource validator over `documents` with the three prometheus-operator
/// CRDs: whether it passed them, and what it printed ("ok KIND NAME" per valid document).
fn validate_custom_resources(documents: &[serde_yaml::Value]) -> (bool, String) {
    let crds = support::tool("STOCKPULSE_MONITORING_CRDS");
    let validator = support::tool("STOCKPULSE_VALIDATE_CUSTOM_RESOURCES");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("monitoring.yaml");
    let text: String = documents.iter().map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap())).collect();
    std::fs::write(&path, text).unwrap();
    let mut command = Command::new(&validator);
    for kind in ["servicemonitors", "podmonitors", "prometheusrules"] {
        command.arg("--crd").arg(crds.join(format!("monitoring.coreos.com_{kind}.yaml")));
    }
    let output = command.arg(&path).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", validator.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[test]
fn monitoring_objects_are_valid_against_the_prometheus_operator_crds() {
    let yaml = helm_template(ALL_MONITORING);
    let built_in = validate_strict(&yaml);
    assert!(built_in.contains(&"configmap/stockpulse-operator-dashboard".to_string()), "{built_in:?}");
    let documents = monitoring_documents(&yaml);
    let (ok, text) = validate_custom_resources(&documents);
    assert!(ok, "the prometheus-operator CRDs refuse the chart's monitoring objects:\n{text}");
    let mut validated: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("ok ")).collect();
    validated.sort();
    assert_eq!(
        validated,
        [
            "PodMonitor stockpulse-operator-processors",
            "PodMonitor stockpulse-operator-replicators",
            "PrometheusRule stockpulse-operator",
            "ServiceMonitor stockpulse-operator",
        ],
        "each monitoring object validated once:\n{text}"
    );
    for kind in MONITORING_KINDS {
        assert!(validated.iter().any(|v| v.starts_with(&format!("{kind} "))), "no {kind} validated:\n{text}");
    }
    let all = kinds_and_names(&yaml).len();
    assert_eq!(built_in.len() + validated.len(), all, "every rendered document is validated by one or the other");
}

#[test]
fn the_crd_validation_refuses_a_misspelled_monitoring_field_and_unknown_kinds() {
    let yaml = helm_template(ALL_MONITORING);
    let mut documents = monitoring_documents(&yaml);
    let service_monitor = documents.iter_mut().find(|d| d["kind"] == "ServiceMonitor").expect("a ServiceMonitor");
    let spec = service_monitor["spec"].as_mapping_mut().unwrap();
    let endpoints = spec.remove("endpoints").expect("spec.endpoints");
    spec.insert("endpoint".into(), endpoints);
    let (ok, text) = validate_custom_resources(&documents);
    assert!(!ok, "a ServiceMonitor with spec.endpoint passed:\n{text}");
    assert!(
        text.contains("ServiceMonitor stockpulse-operator: spec: Additional properties are not allowed ('endpoint' was unexpected)"),
        "{text}"
    );
    assert!(text.contains("ServiceMonitor stockpulse-operator: spec: 'endpoints' is a required property"), "{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with("ok ")).count(), 3, "the other three still pass:\n{text}");

    // A kind without a CRD given fails rather than passing unchecked.
    let config_map: serde_yaml::Value =
        serde_yaml::from_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stray}\n").unwrap();
    let (ok, text) = validate_custom_resources(&[config_map]);
    assert!(!ok && text.contains("ConfigMap stray: no CRD given for apiVersion v1 kind ConfigMap"), "{text}");
}

/// The verbs the rendered Role or ClusterRole grants on Secrets.
fn secret_verbs(yaml: &str) -> Vec<String> {
    use serde::Deserialize;
    let mut verbs = Vec::new();
    for document in serde_yaml::Deserializer::from_str(yaml) {
        let value = serde_yaml::Value::deserialize(document).unwrap();
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        for rule in value.get("rules").and_then(|r| r.as_sequence()).into_iter().flatten() {
            let resources = rule.get("resources").and_then(|r| r.as_sequence()).cloned().unwrap_or_default();
            if resources.iter().any(|r| r.as_str() == Some("secrets")) {
                let granted = rule.get("verbs").and_then(|v| v.as_sequence()).cloned().unwrap_or_default();
                verbs.extend(granted.iter().filter_map(|v| v.as_str().map(str::to_string)));
            }
        }
    }
    verbs
}

#[test]
fn without_the_secret_watch_the_operator_may_only_get_secrets() {
    assert_eq!(secret_verbs(&helm_template(&[])), ["get", "list", "watch"]);
    let yaml = helm_template(&["--set", "watchSecrets=false"]);
    validate_strict(&yaml);
    assert_eq!(secret_verbs(&yaml), ["get"]);
    assert!(yaml.contains("- --watch-secrets=false"));
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

/// Every option of values.yaml (its top-level keys and those of `image`, `leaderElection`,
/// `metrics`, `monitoring`, `workloadPods`), each as a value that differs from the default and what it must put in the
/// rendered chart (or, after `!`, take out of it).
const OPTIONS: &[(&str, &[&str], &str)] = &[
    (
        "image.repository",
        &["image.repository=registry.local/stockpulse-operator"],
        "image: registry.local/stockpulse-operator:0.1.0",
    ),
    ("image.tag", &["image.tag=0.2.0"], "stockpulse-operator:0.2.0"),
    ("image.pullPolicy", &["image.pullPolicy=Always"], "imagePullPolicy: Always"),
    (
        "imagePullSecrets",
        &["imagePullSecrets[0].name=regcred"],
        "name: STOCKPULSE_IMAGE_PULL_SECRETS\n              value: \"regcred\"",
    ),
    ("replicaCount", &["replicaCount=3"], "replicas: 3"),
    ("leaderElection.enabled", &["leaderElection.enabled=false"], "- --leader-election=false"),
    ("leaderElection.leaseName", &["leaderElection.leaseName=acme-lease"], "- --lease-name=acme-lease"),
    ("watchNamespace", &["watchNamespace=acme-sports"], "- --namespace=acme-sports"),
    ("watchSecrets", &["watchSecrets=false"], "- --watch-secrets=false"),
    ("allowedProcessorImages", &["allowedProcessorImages={ghcr.io/acme/}"], "value: \"ghcr.io/acme/\""),
    ("logLevel", &["logLevel=debug"], "value: \"debug\""),
    ("resources", &["resources.limits.memory=512Mi"], "memory: 512Mi"),
    ("metrics.port", &["metrics.port=9095"], "containerPort: 9095"),
    ("metrics.scrapeAnnotations", &["metrics.scrapeAnnotations=false"], "!prometheus.io/scrape"),
    (
        "monitoring.serviceMonitor",
        &["monitoring.serviceMonitor.enabled=true", "monitoring.serviceMonitor.interval=1m"],
        "kind: ServiceMonitor",
    ),
    (
        "monitoring.podMonitor",
        &["monitoring.podMonitor.enabled=true", "monitoring.podMonitor.interval=20s"],
        "targetLabel: pipeline",
    ),
    (
        "monitoring.prometheusRule",
        &["monitoring.prometheusRule.enabled=true", "monitoring.prometheusRule.lagThreshold=50000"],
        "stockpulse_operator_consumer_lag > 50000",
    ),
    (
        "monitoring.dashboard",
        &["monitoring.dashboard.enabled=true", "monitoring.dashboard.label=grafana_dashboard"],
        "grafana_dashboard: \"1\"",
    ),
    ("workloadPods.labels", &["workloadPods.labels.team=retail"], r#"value: "{\"team\":\"retail\"}""#),
    ("workloadPods.annotations", &["workloadPods.annotations.owner=platform"], r#"value: "{\"owner\":\"platform\"}""#),
    ("podAnnotations", &["podAnnotations.team=retail"], "team: retail"),
    ("nodeSelector", &["nodeSelector.pool=system"], "pool: system"),
    ("tolerations", &["tolerations[0].key=dedicated", "tolerations[0].operator=Exists"], "key: dedicated"),
    (
        "affinity",
        &[
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
            "affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
        ],
        "nodeAffinity:",
    ),
    (
        "topologySpreadConstraints",
        &[
            "topologySpreadConstraints[0].maxSkew=1",
            "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
            "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        ],
        "topologyKey: topology.kubernetes.io/zone",
    ),
    ("plainManifests", &["plainManifests=true"], "!helm.sh/chart"),
];

/// The option paths of values.yaml: top-level keys, and the keys of the objects whose keys
/// are options themselves.
fn documented_options() -> Vec<String> {
    let text = std::fs::read_to_string(support::repo_root().join("charts/stockpulse/values.yaml")).unwrap();
    let values: serde_yaml::Mapping = serde_yaml::from_str(&text).unwrap();
    let mut options = Vec::new();
    for (key, value) in &values {
        let key = key.as_str().unwrap();
        match value.as_mapping() {
            Some(inner) if ["image", "leaderElection", "metrics", "monitoring", "workloadPods"].contains(&key) => {
                options.extend(inner.keys().map(|k| format!("{key}.{}", k.as_str().unwrap())));
            }
            _ => options.push(key.to_string()),
        }
    }
    options.sort();
    options
}

#[test]
fn every_documented_option_renders_valid_objects_and_takes_effect() {
    let mut covered: Vec<String> = OPTIONS.iter().map(|(name, _, _)| name.to_string()).collect();
    covered.sort();
    assert_eq!(covered, documented_options(), "every option of values.yaml has a case here, and only those");
    let default = helm_template(&[]);
    for (name, sets, effect) in OPTIONS {
        let args: Vec<&str> = sets.iter().flat_map(|s| ["--set", *s]).collect();
        let yaml = helm_template(&args);
        validate_strict(&yaml);
        match effect.strip_prefix('!') {
            Some(gone) => assert!(!yaml.contains(gone), "{name}: the rendered chart still has {gone:?}:\n{yaml}"),
            None => assert!(yaml.contains(effect), "{name}: the rendered chart lacks {effect:?}:\n{yaml}"),
        }
        assert_ne!(yaml, default, "{name}: changing it changes nothing");
    }
}

#[test]
fn the_values_schema_refuses_typos_and_wrong_types_and_helm_lint_passes() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(support::repo_root().join("charts/stockpulse/values.schema.json")).unwrap(),
    )
    .unwrap();
    let mut in_schema = Vec::new();
    for (key, property) in schema["properties"].as_object().unwrap() {
        match property["properties"].as_object() {
            Some(inner) if property["additionalProperties"] == false => {
                in_schema.extend(inner.keys().map(|k| format!("{key}.{k}")));
            }
            _ => in_schema.push(key.clone()),
        }
    }
    in_schema.sort();
    assert_eq!(in_schema, documented_options(), "values.schema.json describes exactly the options of values.yaml");

    let helm = support::tool("STOCKPULSE_HELM");
    let run = |args: &[&str]| {
        let output = Command::new(&helm).current_dir(support::repo_root()).args(args).output().unwrap();
        (
            output.status.success(),
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr)),
        )
    };
    let (ok, text) = run(&["lint", "charts/stockpulse"]);
    assert!(ok, "helm lint: {text}");
    for (set, message) in [
        ("replicaCont=2", "additional properties 'replicaCont' not allowed"),
        ("replicaCount=two", "at '/replicaCount': got string, want integer"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("metrics.port=70000", "at '/metrics/port'"),
        ("watchNamespace=Acme_Sports", "at '/watchNamespace'"),
    ] {
        let (ok, text) = run(&["template", "stockpulse", "charts/stockpulse", "--set", set]);
        assert!(!ok && text.contains(message), "--set {set}: expected a refusal with {message:?}, got:\n{text}");
    }
}

/// The metric names the processor and the operator export, as Prometheus sees them
/// (counters with `_total`, histograms with `_bucket`, `_sum`, `_count`).
fn exported_metrics() -> std::collections::BTreeSet<String> {
    let processor = stockpulse_processor::runtime::metrics::Metrics::new();
    let operator = stockpulse_operator::metrics::Metrics::default();
    let replicator = stockpulse_operator::replicator::health::Metrics::default();
    [processor.described(), operator.described(), replicator.described()]
        .into_iter()
        .flatten()
        .flat_map(|metric| metric.series())
        .collect()
}

/// The `stockpulse_*` metric names a PromQL expression reads.
fn metrics_read(expr: &str) -> Vec<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("stockpulse_"))
        .map(String::from)
        .collect()
}

#[test]
fn the_dashboard_and_the_alert_rules_read_only_metrics_the_code_exports() {
    let root = support::repo_root();
    let dashboard = std::fs::read_to_string(root.join("charts/stockpulse/dashboards/stockpulse.json")).unwrap();
    let copy = std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).unwrap();
    assert_eq!(dashboard, copy, "docs/grafana-dashboard.json is a copy of the chart's dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    let titles: Vec<String> = panels.iter().map(|p| p["title"].as_str().unwrap().to_lowercase()).collect();
    for subject in
        ["throughput", "lag", "watermark", "dead letters", "late", "replicas", "transactions", "alerts", "reconciles"]
    {
        assert!(titles.iter().any(|t| t.contains(subject)), "no panel shows {subject}: {titles:?}");
    }
    let mut exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter().map(|t| t["expr"].as_str().unwrap().to_string()))
        .collect();
    let rules = helm_template(&["--set", "monitoring.prometheusRule.enabled=true"]);
    for doc in serde_yaml::Deserializer::from_str(&rules) {
        let doc: serde_yaml::Value = serde::Deserialize::deserialize(doc).unwrap();
        if doc["kind"] == "PrometheusRule" {
            for group in doc["spec"]["groups"].as_sequence().unwrap() {
                for rule in group["rules"].as_sequence().unwrap() {
                    exprs.push(rule["expr"].as_str().unwrap().to_string());
                }
            }
        }
    }
    assert!(exprs.len() >= panels.len() + 5, "the panels' queries and the five rules: {exprs:?}");
    let exported = exported_metrics();
    for expr in &exprs {
        let read = metrics_read(expr);
        assert!(!read.is_empty(), "{expr} reads no stockpulse metric");
        for name in read {
            assert!(exported.contains(&name), "{expr} reads {name}, which the code does not export: {exported:?}");
        }
    }
}

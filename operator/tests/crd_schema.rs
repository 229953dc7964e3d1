//! The generated CRD schemas, with their CEL rules, accept every sample and refuse wrong
//! resources with a clear message — checked the way the API server checks (see
//! support/schema.rs).

mod support;

use serde_json::{Value, json};
use support::schema::{crd_schema, validate};

fn schema_of(kind: &str) -> Value {
    let file = match kind {
        "RetailPipeline" => "retailpipelines.yaml",
        "StoreRegion" => "storeregions.yaml",
        "AlertPolicy" => "alertpolicies.yaml",
        other => panic!("unknown kind {other}"),
    };
    let path = support::repo_root().join("crds").join(file);
    crd_schema(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn sample(name: &str) -> Value {
    let path = support::repo_root().join("manifests/samples").join(name);
    serde_yaml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn every_sample_passes_its_crd_schema_and_cel_rules() {
    let files = support::sample_files();
    assert_eq!(files.len(), 5, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let object: Value = serde::Deserialize::deserialize(doc).unwrap();
            let kind = object["kind"].as_str().unwrap().to_string();
            assert_eq!(validate(&schema_of(&kind), &object), Vec::<String>::new(), "{}", file.display());
        }
    }
}

#[test]
fn every_cel_rule_compiles() {
    for kind in ["RetailPipeline", "StoreRegion", "AlertPolicy"] {
        let compiled = kube_cel::compile_schema(&schema_of(kind));
        let errors: Vec<String> = compiled.compilation_errors().iter().map(|e| e.to_string()).collect();
        assert_eq!(errors, Vec::<String>::new(), "{kind}");
    }
}

/// Sets `value` at a JSON pointer, creating objects on the way.
fn set(object: &mut Value, pointer: &str, value: Value) {
    let mut at = object;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        at = match at {
            Value::Array(items) => {
                let index: usize = part.parse().unwrap();
                if last {
                    items[index] = value;
                    return;
                }
                &mut items[index]
            }
            Value::Object(map) => {
                if last {
                    map.insert(part.to_string(), value);
                    return;
                }
                map.entry(part.to_string()).or_insert_with(|| json!({}))
            }
            other => panic!("cannot descend into {other} at {part}"),
        };
    }
}

fn remove(object: &mut Value, pointer: &str) {
    let (parent, last) = pointer.rsplit_once('/').unwrap();
    if let Some(Value::Object(map)) = object.pointer_mut(parent) {
        map.remove(last);
    }
}

struct Case {
    what: &'static str,
    sample: &'static str,
    changes: Vec<(&'static str, Option<Value>)>,
    expected: Vec<&'static str>,
}

#[test]
fn wrong_resources_are_refused_with_a_clear_message() {
    let pipeline = "retailpipeline-acme-sports.yaml";
    let region = "storeregion-eu-central.yaml";
    let policy = "alertpolicy-sales-spike.yaml";
    let cases = vec![
        Case {
            what: "negative partitions",
            sample: pipeline,
            changes: vec![("/spec/topics/partitions", Some(json!(-3)))],
            expected: vec![
                "spec.topics.partitions: Invalid value: -3: spec.topics.partitions in body should be greater than or equal to 1",
            ],
        },
        Case {
            what: "negative partitions of one topic",
            sample: pipeline,
            changes: vec![("/spec/topics/sales/partitions", Some(json!(-1)))],
            expected: vec![
                "spec.topics.sales.partitions: Invalid value: -1: spec.topics.sales.partitions in body should be greater than or equal to 1",
            ],
        },
        Case {
            what: "min > max replicas",
            sample: pipeline,
            changes: vec![
                ("/spec/processor/minReplicas", Some(json!(8))),
                ("/spec/processor/maxReplicas", Some(json!(4))),
            ],
            expected: vec![
                "spec.processor: Invalid value: \"object\": maxReplicas must be greater than or equal to minReplicas",
            ],
        },
        Case {
            what: "unknown window type",
            sample: pipeline,
            changes: vec![("/spec/processing/windows/0/type", Some(json!("session")))],
            expected: vec![
                "spec.processing.windows[0].type: Unsupported value: \"session\": supported values: \"tumbling\", \"sliding\"",
            ],
        },
        Case {
            what: "bad duration",
            sample: pipeline,
            changes: vec![("/spec/processing/windows/0/size", Some(json!("5 minutes")))],
            expected: vec![
                "spec.processing.windows[0].size: Invalid value: \"5 minutes\": spec.processing.windows[0].size in body should match '^([0-9]+(ms|s|m|h|d))+$'",
            ],
        },
        Case {
            what: "bad lateness duration",
            sample: pipeline,
            changes: vec![("/spec/processing/allowedLateness", Some(json!("10min")))],
            expected: vec![
                "spec.processing.allowedLateness: Invalid value: \"10min\": spec.processing.allowedLateness in body should match '^([0-9]+(ms|s|m|h|d))+$'",
            ],
        },
        Case {
            what: "slide larger than size",
            sample: pipeline,
            changes: vec![("/spec/processing/windows/1/slide", Some(json!("2h")))],
            expected: vec![
                "spec.processing.windows[1]: Invalid value: \"object\": slide must be at most size and divide it evenly",
            ],
        },
        Case {
            what: "slide that does not divide size",
            sample: pipeline,
            changes: vec![("/spec/processing/windows/1/slide", Some(json!("7m")))],
            expected: vec![
                "spec.processing.windows[1]: Invalid value: \"object\": slide must be at most size and divide it evenly",
            ],
        },
        Case {
            what: "sliding window without slide",
            sample: pipeline,
            changes: vec![("/spec/processing/windows/1/slide", None)],
            expected: vec![
                "spec.processing.windows[1]: Invalid value: \"object\": a sliding window needs a slide, a tumbling window has none",
            ],
        },
        Case {
            what: "two windows with one name",
            sample: pipeline,
            changes: vec![("/spec/processing/windows/2/name", Some(json!("sales-5m")))],
            expected: vec![
                "spec.processing.windows[2]: Duplicate value: map[string]interface {}{\"name\"=\"sales-5m\"}",
            ],
        },
        Case {
            what: "schedule ending before it starts",
            sample: pipeline,
            changes: vec![("/spec/processor/schedules/0/end", Some(json!("2026-11-26T00:00:00Z")))],
            expected: vec!["spec.processor.schedules[0]: Invalid value: \"object\": end must be after start"],
        },
        Case {
            what: "misspelt field",
            sample: pipeline,
            changes: vec![("/spec/processing/alowedLateness", Some(json!("10m")))],
            expected: vec!["spec.processing.alowedLateness: unknown field \"spec.processing.alowedLateness\""],
        },
        Case {
            what: "missing bootstrap servers",
            sample: pipeline,
            changes: vec![("/spec/kafka/bootstrapServers", None)],
            expected: vec!["spec.kafka.bootstrapServers: Required value"],
        },
        Case {
            what: "pipeline name too long for its objects",
            sample: pipeline,
            changes: vec![("/metadata/name", Some(json!("acme-sports-with-a-very-long-name-for-its-pipeline-xyz")))],
            expected: vec![
                "<nil>: Invalid value: \"object\": the name must be a DNS-1035 label of at most 53 characters: the processor's objects are named <name>-processor",
            ],
        },
        Case {
            what: "unknown store channel",
            sample: region,
            changes: vec![("/spec/stores/0/channel", Some(json!("kiosk")))],
            expected: vec![
                "spec.stores[0].channel: Unsupported value: \"kiosk\": supported values: \"physical\", \"online\", \"warehouse\", \"marketplace\"",
            ],
        },
        Case {
            what: "lower-case currency",
            sample: region,
            changes: vec![("/spec/currency", Some(json!("eur")))],
            expected: vec!["spec.currency: Invalid value: \"eur\": spec.currency in body should match '^[A-Z]{3}$'"],
        },
        Case {
            what: "duplicate store id",
            sample: region,
            changes: vec![("/spec/stores/1/id", Some(json!("de-ber-001")))],
            expected: vec!["spec.stores[1]: Duplicate value: map[string]interface {}{\"id\"=\"de-ber-001\"}"],
        },
        Case {
            what: "policy without a rule",
            sample: policy,
            changes: vec![("/spec/rules/salesSpike", None), ("/spec/rules/amountOutlier", None)],
            expected: vec![
                "spec.rules: Invalid value: \"object\": at least one rule is required: lowStock, stuckInventory, salesSpike or amountOutlier",
            ],
        },
        Case {
            what: "spike factor not above 1",
            sample: policy,
            changes: vec![("/spec/rules/salesSpike/factor", Some(json!(0.5)))],
            expected: vec!["spec.rules.salesSpike: Invalid value: \"object\": factor must be greater than 1"],
        },
        Case {
            what: "region name too long for its replicator",
            sample: region,
            changes: vec![("/metadata/name", Some(json!("eu-central-with-a-very-long-name-for-its-replicator-x")))],
            expected: vec![
                "<nil>: Invalid value: \"object\": the name must be a DNS-1035 label of at most 52 characters: the region's replicator is named <name>-replicator and labelled with <name>",
            ],
        },
        Case {
            what: "policy name that is no DNS label",
            sample: policy,
            changes: vec![("/metadata/name", Some(json!("sales.spike")))],
            expected: vec![
                "<nil>: Invalid value: \"object\": the name must be a DNS-1123 label of at most 63 characters: it names the policy in alert records, metric labels and the processor's config",
            ],
        },
        Case {
            what: "sink with two targets",
            sample: policy,
            changes: vec![("/spec/sinks/0/webhook", Some(json!({"urlSecretRef": {"name": "s", "key": "url"}})))],
            expected: vec!["spec.sinks[0]: Invalid value: \"object\": a sink is exactly one of kafka or webhook"],
        },
    ];
    let mut failures = Vec::new();
    for case in cases {
        let mut object = sample(case.sample);
        for (pointer, value) in &case.changes {
            match value {
                Some(v) => set(&mut object, pointer, v.clone()),
                None => remove(&mut object, pointer),
            }
        }
        let kind = object["kind"].as_str().unwrap().to_string();
        let found = validate(&schema_of(&kind), &object);
        if found != case.expected {
            failures.push(format!("{}:\n  expected {:?}\n  found    {:?}", case.what, case.expected, found));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The sample pipeline's peak schedule runs from a Black Friday (the day after the fourth
/// Thursday of November) at midnight UTC through the Cyber Monday after it.
#[test]
fn the_sample_schedule_is_black_friday_through_cyber_monday() {
    use chrono::{Datelike, Weekday};
    let pipeline = sample("retailpipeline-acme-sports.yaml");
    let schedule = &pipeline["spec"]["processor"]["schedules"][0];
    let at = |field: &str| chrono::DateTime::parse_from_rfc3339(schedule[field].as_str().unwrap()).unwrap();
    let (start, end) = (at("start"), at("end"));
    let thanksgiving = (22..=28)
        .map(|day| chrono::NaiveDate::from_ymd_opt(start.year(), 11, day).unwrap())
        .find(|d| d.weekday() == Weekday::Thu)
        .unwrap();
    assert_eq!(start.date_naive(), thanksgiving.succ_opt().unwrap(), "starts on Black Friday {}", start.year());
    assert_eq!(start.time(), chrono::NaiveTime::MIN);
    assert_eq!(end.date_naive(), start.date_naive() + chrono::Days::new(3), "ends on Cyber Monday");
}

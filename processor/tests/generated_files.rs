//! Generated files are current, and the published event schema says what the parser does.
//! When a staleness test fails, run `scripts/generate.sh` and commit the result.

use std::path::PathBuf;

use stockpulse_processor::event::{event_json_schema, parse_event};
use stockpulse_processor::generator::{Disorder, Traffic, TrafficOptions, brand};

fn repo_file(relative: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}; run scripts/generate.sh", path.display()))
}

fn ndjson<T: serde::Serialize>(records: &[T]) -> String {
    records.iter().map(|r| serde_json::to_string(r).unwrap() + "\n").collect()
}

#[test]
fn example_reference_data_is_current() {
    assert!(
        repo_file("examples/stores.ndjson") == ndjson(&brand::stores()),
        "examples/stores.ndjson is stale: run scripts/generate.sh"
    );
    assert!(
        repo_file("examples/catalog.ndjson") == ndjson(&brand::catalog()),
        "examples/catalog.ndjson is stale: run scripts/generate.sh"
    );
}

#[test]
fn event_schema_is_current() {
    let generated = serde_json::to_string_pretty(&event_json_schema()).unwrap() + "\n";
    assert!(
        repo_file("docs/event.schema.json") == generated,
        "docs/event.schema.json is stale: run scripts/generate.sh"
    );
}

#[test]
fn schema_and_parser_agree_on_generated_traffic() {
    let schema = event_json_schema();
    let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
    let options = TrafficOptions { malformed_share: 0.05, ..Default::default() };
    let (mut valid, mut invalid) = (0, 0);
    for event in Traffic::new(options, &brand::stores(), &brand::catalog()).take(20_000) {
        let parsed_ok = parse_event(&event.payload).is_ok();
        let schema_ok =
            serde_json::from_slice::<serde_json::Value>(&event.payload).is_ok_and(|v| validator.is_valid(&v));
        assert_eq!(parsed_ok, schema_ok, "{}", String::from_utf8_lossy(&event.payload));
        assert_eq!(parsed_ok, event.disorder != Disorder::Malformed);
        if parsed_ok { valid += 1 } else { invalid += 1 }
    }
    assert!(valid > 18_000 && invalid > 500, "{valid} valid, {invalid} invalid");
}

#[test]
fn schema_refuses_what_the_parser_refuses() {
    let schema = event_json_schema();
    let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
    let base = serde_json::json!({
        "event_id": "0b9f1c1e-3a51-4d57-9a53-1c6f0b1d2e3f", "event_type": "SALE", "event_time": "2026-11-27T10:00:00Z",
        "store_id": "S1", "sku_id": "K1", "quantity_delta": -1, "unit_price": "9.99", "currency": "EUR", "schema_version": 1
    });
    assert!(validator.is_valid(&base));
    assert!(parse_event(base.to_string().as_bytes()).is_ok());
    let cases: [(&str, serde_json::Value); 12] = [
        ("event_id", "nope".into()),
        ("event_type", "THEFT".into()),
        ("event_time", "yesterday".into()),
        ("store_id", "".into()),
        ("store_id", "S".repeat(257).into()),
        ("sku_id", "K".repeat(257).into()),
        ("quantity_delta", 0.into()),
        ("quantity_delta", 2.into()),
        ("unit_price", "-1".into()),
        ("unit_price", "12.".into()),
        ("currency", "eur".into()),
        ("schema_version", 2.into()),
    ];
    for (field, value) in cases {
        let mut event = base.clone();
        event[field] = value.clone();
        assert!(!validator.is_valid(&event), "schema accepts {field} = {value}");
        assert!(parse_event(event.to_string().as_bytes()).is_err(), "parser accepts {field} = {value}");
    }
}

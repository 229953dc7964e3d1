//! What the API server checks on a custom resource before storing it, run offline: the
//! generated CRD's structural OpenAPI schema (types, unknown fields, required, enums,
//! patterns, ranges, lengths, list uniqueness, formats, defaults) and then its CEL rules
//! (`x-kubernetes-validations`, evaluated with the kube-cel crate). Messages follow the
//! API server's wording.

use regex::Regex;
use serde_json::Value;

/// The openAPIV3Schema of a generated CRD file.
pub fn crd_schema(crd_yaml: &str) -> Value {
    let crd: Value = serde_yaml::from_str(crd_yaml).expect("CRD file is YAML");
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every problem the API server would report for `object`, schema first, then CEL.
pub fn validate(schema: &Value, object: &Value) -> Vec<String> {
    let defaulted = kube_cel::apply_defaults(schema, object);
    let mut problems = Vec::new();
    structural(schema, &defaulted, "", &mut problems, true);
    if problems.is_empty()
        && let Err(errors) = kube_cel::Validator::new().validate(schema, object, None)
    {
        for e in errors.into_vec() {
            // The API server names the root `<nil>`.
            let path = if e.field_path.is_empty() { "<nil>" } else { e.field_path.as_str() };
            problems.push(format!("{path}: Invalid value: \"object\": {}", e.message));
        }
    }
    problems
}

fn shown(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

fn type_ok(expected: &str, v: &Value) -> bool {
    match expected {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => true,
    }
}

fn structural(schema: &Value, v: &Value, path: &str, out: &mut Vec<String>, root: bool) {
    if v.is_null() {
        if !schema.get("nullable").and_then(Value::as_bool).unwrap_or(false) {
            out.push(format!(
                "{path}: Invalid value: \"null\": {path} in body must be of type {}",
                schema["type"].as_str().unwrap_or("object")
            ));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            out.push(format!("{path}: Invalid value: {}: {path} in body must be of type int-or-string", shown(v)));
        }
        return;
    }
    if let Some(t) = schema.get("type").and_then(Value::as_str)
        && !type_ok(t, v)
    {
        out.push(format!("{path}: Invalid value: {}: {path} in body must be of type {t}", shown(v)));
        return;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(v)
    {
        let supported: Vec<String> = values.iter().map(shown).collect();
        out.push(format!("{path}: Unsupported value: {}: supported values: {}", shown(v), supported.join(", ")));
    }
    match v {
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                out.push(format!(
                    "{path}: Invalid value: {}: {path} in body should be at least {min} chars long",
                    shown(v)
                ));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                out.push(format!("{path}: Too long: may not be more than {max} bytes"));
            }
            if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
                let re =
                    Regex::new(p).unwrap_or_else(|e| panic!("schema pattern {p:?} at {path} does not compile: {e}"));
                if !re.is_match(s) {
                    out.push(format!("{path}: Invalid value: {}: {path} in body should match '{p}'", shown(v)));
                }
            }
            if schema.get("format").and_then(Value::as_str) == Some("date-time")
                && chrono::DateTime::parse_from_rfc3339(s).is_err()
            {
                out.push(format!("{path}: Invalid value: {}: {path} in body must be of type date-time", shown(v)));
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && x < min
            {
                out.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be greater than or equal to {}",
                    min as i64
                ));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && x > max
            {
                out.push(format!(
                    "{path}: Invalid value: {n}: {path} in body should be less than or equal to {}",
                    max as i64
                ));
            }
        }
        Value::Array(items) => {
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                out.push(format!(
                    "{path}: Invalid value: {}: {path} in body should have at least {min} items",
                    items.len()
                ));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && (items.len() as u64) > max
            {
                out.push(format!("{path}: Too many: {}: must have at most {max} items", items.len()));
            }
            match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
                Some("map") => {
                    let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                        .as_array()
                        .map(|k| k.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    let mut seen = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let key: Vec<Value> =
                            keys.iter().map(|k| item.get(*k).cloned().unwrap_or(Value::Null)).collect();
                        if seen.contains(&key) {
                            let shown_key: Vec<String> =
                                keys.iter().zip(&key).map(|(k, v)| format!("\"{k}\"={}", shown(v))).collect();
                            out.push(format!(
                                "{path}[{i}]: Duplicate value: map[string]interface {{}}{{{}}}",
                                shown_key.join(", ")
                            ));
                        }
                        seen.push(key);
                    }
                }
                Some("set") => {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].contains(item) {
                            out.push(format!("{path}[{i}]: Duplicate value: {}", shown(item)));
                        }
                    }
                }
                _ => {}
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    structural(item_schema, item, &format!("{path}[{i}]"), out, false);
                }
            }
        }
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for r in required.iter().filter_map(Value::as_str) {
                    if !fields.contains_key(r) {
                        out.push(format!("{}: Required value", join(path, r)));
                    }
                }
            }
            for (name, value) in fields {
                let at = join(path, name);
                if let Some(sub) = properties.and_then(|p| p.get(name)) {
                    structural(sub, value, &at, out, false);
                } else if let Some(sub) = additional.filter(|a| a.is_object()) {
                    structural(sub, value, &at, out, false);
                } else if properties.is_some()
                    && !preserve
                    && !(root && matches!(name.as_str(), "apiVersion" | "kind" | "metadata"))
                {
                    out.push(format!("{at}: unknown field \"{at}\""));
                }
            }
        }
        _ => {}
    }
}

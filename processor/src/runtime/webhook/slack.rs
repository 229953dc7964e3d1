//! The body a Slack-compatible incoming webhook takes: `text` (what every such endpoint
//! shows) and one attachment with the alert's fields, coloured by severity.

use serde_json::{Value, json};

/// The webhook body for an alert record (as it is on the alerts topic).
pub fn payload(alert: &Value) -> Vec<u8> {
    let text = |field: &str| alert.get(field).and_then(Value::as_str).unwrap_or_default();
    let severity = text("severity");
    let color = match severity {
        "critical" => "#d0021b",
        "warning" => "#f5a623",
        _ => "#4a90e2",
    };
    let mut fields = vec![
        json!({"title": "policy", "value": text("policy"), "short": true}),
        json!({"title": "rule", "value": text("rule"), "short": true}),
    ];
    for field in ["store_id", "sku_id", "region", "window"] {
        if let Some(value) = alert.get(field).and_then(Value::as_str) {
            fields.push(json!({"title": field, "value": value, "short": true}));
        }
    }
    fields.push(json!({"title": "alert id", "value": text("alert_id"), "short": false}));
    let body = json!({
        "text": format!("[{severity}] {}", text("message")),
        "attachments": [{
            "color": color,
            "fallback": text("message"),
            "fields": fields,
            "ts": alert.get("event_time").and_then(Value::as_str).and_then(crate::event::time::parse_rfc3339_millis).map(|ms| ms / 1000),
        }],
    });
    body.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_becomes_text_and_an_attachment() {
        let alert = json!({
            "alert_id": "low/lowStock/S1|K1/00000000-0000-4000-8000-000000000002",
            "policy": "low", "rule": "lowStock", "severity": "critical",
            "store_id": "S1", "sku_id": "K1", "region": "eu-central",
            "event_time": "2026-11-27T10:01:00Z",
            "message": "S1|K1: available 0 is at or below 2 (low lowStock)"
        });
        let body: Value = serde_json::from_slice(&payload(&alert)).unwrap();
        assert_eq!(
            body,
            json!({
                "text": "[critical] S1|K1: available 0 is at or below 2 (low lowStock)",
                "attachments": [{
                    "color": "#d0021b",
                    "fallback": "S1|K1: available 0 is at or below 2 (low lowStock)",
                    "fields": [
                        {"title": "policy", "value": "low", "short": true},
                        {"title": "rule", "value": "lowStock", "short": true},
                        {"title": "store_id", "value": "S1", "short": true},
                        {"title": "sku_id", "value": "K1", "short": true},
                        {"title": "region", "value": "eu-central", "short": true},
                        {"title": "alert id", "value": "low/lowStock/S1|K1/00000000-0000-4000-8000-000000000002", "short": false}
                    ],
                    "ts": 1_795_773_660
                }]
            })
        );
    }
}

//! An AlertPolicy's figures, as its pipeline's processors export them on `/metrics`: alerts
//! fired, the latest one's event time, and how its webhook deliveries fare. Pure: the
//! AlertPolicy controller reads the texts and writes the status this gives.

use chrono::{DateTime, SecondsFormat};

use crate::crd::AlertPolicyStatus;
use crate::status::conditions::NewCondition;

/// The condition about a policy's sinks.
pub const SINKS_HEALTHY: &str = "SinksHealthy";

/// One policy's figures summed over the processors that answered.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct PolicyFigures {
    pub fired: u64,
    /// Event time (seconds) of the latest alert.
    pub last_fired: Option<f64>,
    pub delivered: u64,
    pub failed: u64,
}

/// Adds what one processor's `/metrics` text says of `policy`.
pub fn add_metrics(figures: &mut PolicyFigures, text: &str, policy: &str) {
    let wanted = format!("policy=\"{policy}\"");
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let Some((name, labels)) = series.split_once('{') else { continue };
        if !labels.split(',').any(|l| l.trim_end_matches('}') == wanted) {
            continue;
        }
        let Ok(value) = value.parse::<f64>() else { continue };
        if !value.is_finite() || value < 0.0 {
            continue;
        }
        // Counters are whole numbers well below 2^53.
        let count = value as u64;
        match name {
            "stockpulse_processor_alerts_total" => figures.fired = figures.fired.saturating_add(count),
            "stockpulse_processor_alert_last_fired_timestamp_seconds" => {
                figures.last_fired = Some(figures.last_fired.map_or(value, |t| t.max(value)));
            }
            "stockpulse_processor_webhook_deliveries_total" if labels.contains("outcome=\"delivered\"") => {
                figures.delivered = figures.delivered.saturating_add(count);
            }
            "stockpulse_processor_webhook_deliveries_total" if labels.contains("outcome=\"failed\"") => {
                figures.failed = figures.failed.saturating_add(count);
            }
            _ => {}
        }
    }
}

/// The status with the figures of the processors that answered (`None`: none did, and the
/// figures stay as they were). The sinks condition is there only for a policy with webhooks.
pub fn with_figures(
    previous: &AlertPolicyStatus,
    figures: Option<&PolicyFigures>,
    has_webhooks: bool,
) -> (AlertPolicyStatus, Option<NewCondition>) {
    let mut status = previous.clone();
    let Some(f) = figures else { return (status, None) };
    status.alerts_fired = Some(i64::try_from(f.fired).unwrap_or(i64::MAX));
    status.last_fired_time = f
        .last_fired
        .and_then(|t| DateTime::from_timestamp_millis((t * 1000.0) as i64))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .or(status.last_fired_time);
    let condition = has_webhooks.then(|| {
        if f.failed > 0 {
            NewCondition::new(
                SINKS_HEALTHY,
                false,
                "WebhookFailures",
                format!(
                    "{} alert(s) could not be delivered to the webhook and went to the dead-letter topic ({} delivered)",
                    f.failed, f.delivered
                ),
            )
        } else {
            NewCondition::new(SINKS_HEALTHY, true, "Delivering", format!("{} alert(s) delivered", f.delivered))
        }
    });
    (status, condition)
}

#[cfg(test)]
mod tests {
    use super::*;

    const METRICS: &str = r#"# HELP stockpulse_processor_alerts Alerts fired and written, by policy and rule
# TYPE stockpulse_processor_alerts counter
stockpulse_processor_alerts_total{policy="low-stock",rule="lowStock"} 12
stockpulse_processor_alerts_total{policy="low-stock-eu",rule="lowStock"} 7
stockpulse_processor_alerts_total{policy="big",rule="amountOutlier"} 3
stockpulse_processor_alert_last_fired_timestamp_seconds{policy="low-stock"} 1795773660.5
stockpulse_processor_webhook_deliveries_total{policy="low-stock",outcome="delivered"} 10
stockpulse_processor_webhook_deliveries_total{policy="low-stock",outcome="retried"} 4
stockpulse_processor_webhook_deliveries_total{policy="low-stock",outcome="failed"} 1
# EOF
"#;

    #[test]
    fn figures_of_one_policy_summed_over_processors() {
        let mut f = PolicyFigures::default();
        add_metrics(&mut f, METRICS, "low-stock");
        add_metrics(&mut f, &METRICS.replace("} 12", "} 5").replace("1795773660.5", "1795773000"), "low-stock");
        assert_eq!(f, PolicyFigures { fired: 17, last_fired: Some(1_795_773_660.5), delivered: 20, failed: 2 });
    }

    #[test]
    fn the_status_takes_the_figures_and_says_how_the_webhooks_fare() {
        let previous = AlertPolicyStatus { alerts_fired: Some(3), ..AlertPolicyStatus::default() };
        let (same, none) = with_figures(&previous, None, true);
        assert_eq!((same, none), (previous.clone(), None), "no processor answered: nothing changes");
        let f = PolicyFigures { fired: 17, last_fired: Some(1_795_773_660.5), delivered: 20, failed: 2 };
        let (status, condition) = with_figures(&previous, Some(&f), true);
        assert_eq!(status.alerts_fired, Some(17));
        assert_eq!(status.last_fired_time.as_deref(), Some("2026-11-27T10:01:00.500Z"));
        let condition = condition.unwrap();
        assert_eq!((condition.is_true(), condition.reason.as_str()), (false, "WebhookFailures"));
        assert_eq!(
            condition.message,
            "2 alert(s) could not be delivered to the webhook and went to the dead-letter topic (20 delivered)"
        );
        let (_, condition) = with_figures(&previous, Some(&PolicyFigures { delivered: 4, ..f.clone() }), false);
        assert_eq!(condition, None, "no webhook, no sinks condition");
    }
}

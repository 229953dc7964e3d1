//! What the operator's own configuration (the chart's values, as its environment) adds to
//! every plan.

pub mod images;

use std::collections::BTreeMap;

use images::AllowedImages;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorSettings {
    /// The processor images pipelines may name (`STOCKPULSE_ALLOWED_PROCESSOR_IMAGES`).
    pub allowed_images: AllowedImages,
    /// What every processor and replicator pod gets.
    pub pods: PodSettings,
}

/// What the operator adds to every pod it creates (processors and replicators).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSettings {
    /// Secrets for pulling images (`STOCKPULSE_IMAGE_PULL_SECRETS`, comma-separated; they
    /// must exist in each pipeline's and region's namespace).
    pub image_pull_secrets: Vec<String>,
    /// Extra pod labels (`STOCKPULSE_POD_LABELS`, a JSON object); the operator's own labels
    /// win on a clash, so selectors never change.
    pub labels: BTreeMap<String, String>,
    /// Extra pod annotations (`STOCKPULSE_POD_ANNOTATIONS`, a JSON object).
    pub annotations: BTreeMap<String, String>,
}

impl OperatorSettings {
    /// From the operator's environment; an unreadable variable is named in the error.
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        Ok(OperatorSettings {
            allowed_images: AllowedImages::parse(&var("STOCKPULSE_ALLOWED_PROCESSOR_IMAGES")),
            pods: PodSettings {
                image_pull_secrets: list(&var("STOCKPULSE_IMAGE_PULL_SECRETS")),
                labels: string_map("STOCKPULSE_POD_LABELS", &var("STOCKPULSE_POD_LABELS"))?,
                annotations: string_map("STOCKPULSE_POD_ANNOTATIONS", &var("STOCKPULSE_POD_ANNOTATIONS"))?,
            },
        })
    }
}

/// A comma-separated list, blank entries left out.
pub fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect()
}

/// A JSON object of strings (empty text: none), or an error naming `name`.
fn string_map(name: &str, text: &str) -> Result<BTreeMap<String, String>, String> {
    if text.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    serde_json::from_str(text).map_err(|e| format!("{name} is not a JSON object of strings ({e}): {text}"))
}

/// `own` with `extra` added where `own` has no such key.
pub fn merged(own: BTreeMap<String, String>, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = extra.clone();
    all.extend(own);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_labels_and_annotations_are_json_objects_and_a_bad_one_is_named() {
        assert_eq!(string_map("X", "").unwrap(), BTreeMap::new());
        assert_eq!(
            string_map("X", r#"{"team":"retail"}"#).unwrap(),
            BTreeMap::from([("team".to_string(), "retail".to_string())])
        );
        let err = string_map("STOCKPULSE_POD_LABELS", "team=retail").unwrap_err();
        assert!(err.starts_with("STOCKPULSE_POD_LABELS is not a JSON object of strings"), "{err}");
    }

    #[test]
    fn the_operators_own_labels_win() {
        let own = BTreeMap::from([("app.kubernetes.io/name".to_string(), "stockpulse-processor".to_string())]);
        let extra = BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), "mine".to_string()),
            ("team".to_string(), "retail".to_string()),
        ]);
        let all = merged(own, &extra);
        assert_eq!(all["app.kubernetes.io/name"], "stockpulse-processor");
        assert_eq!(all["team"], "retail");
    }
}

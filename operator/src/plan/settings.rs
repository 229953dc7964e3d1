//! What the operator's own configuration (the chart's values, as its environment) adds to
//! every plan.

use super::images::AllowedImages;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorSettings {
    /// The processor images pipelines may name (`STOCKPULSE_ALLOWED_PROCESSOR_IMAGES`).
    pub allowed_images: AllowedImages,
    /// Secrets for pulling images, named on every processor and replicator pod
    /// (`STOCKPULSE_IMAGE_PULL_SECRETS`; they must exist in each pipeline's namespace).
    pub image_pull_secrets: Vec<String>,
}

impl OperatorSettings {
    /// From the operator's environment.
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).unwrap_or_default();
        OperatorSettings {
            allowed_images: AllowedImages::parse(&var("STOCKPULSE_ALLOWED_PROCESSOR_IMAGES")),
            image_pull_secrets: list(&var("STOCKPULSE_IMAGE_PULL_SECRETS")),
        }
    }
}

/// A comma-separated list, blank entries left out.
pub fn list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect()
}

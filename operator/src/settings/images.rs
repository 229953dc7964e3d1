//! The operator-level allow-list of processor images: a RetailPipeline names the image its
//! pods run, and those pods get the Secrets the pipeline references, so a platform team can
//! limit the images to repositories it trusts.

/// Repositories a pipeline's `spec.processor.image` may come from; empty allows any.
///
/// An entry is a repository (`registry.example.com/stockpulse/processor`: any tag or digest
/// of it) or, ending in `/`, every repository under a path (`registry.example.com/stockpulse/`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedImages(Vec<String>);

impl AllowedImages {
    /// From a comma-separated list (the operator's `STOCKPULSE_ALLOWED_PROCESSOR_IMAGES`);
    /// blank entries are ignored.
    pub fn parse(list: &str) -> Self {
        AllowedImages(super::list(list))
    }

    /// `None` when `image` may run, else why not.
    pub fn refusal(&self, image: &str) -> Option<String> {
        if self.0.is_empty() {
            return None;
        }
        let repository = repository_of(image);
        let allowed = self.0.iter().any(|entry| match entry.strip_suffix('/') {
            Some(path) => repository.strip_prefix(path).is_some_and(|rest| rest.starts_with('/')),
            None => repository == entry,
        });
        (!allowed).then(|| {
            format!(
                "image {image:?} is not from a repository this operator allows ({}); use one of them or ask the operator's administrators to allow it",
                self.0.join(", ")
            )
        })
    }
}

/// The repository of an image reference: without its digest (`@sha256:...`) and its tag (a
/// `:` after the last `/`; a `:` before it is a registry's port).
fn repository_of(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    match image.rfind(':') {
        Some(colon) if image.rfind('/').is_none_or(|slash| colon > slash) => &image[..colon],
        _ => image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_list_allows_any_image() {
        assert_eq!(AllowedImages::parse(" , ").refusal("evil.example/x:1"), None);
    }

    #[test]
    fn repositories_allow_their_tags_and_digests_and_paths_their_repositories() {
        let allowed = AllowedImages::parse("registry.local:5000/stockpulse/processor, ghcr.io/acme/");
        for image in [
            "registry.local:5000/stockpulse/processor",
            "registry.local:5000/stockpulse/processor:1.2.3",
            "registry.local:5000/stockpulse/processor@sha256:0123abcd",
            "registry.local:5000/stockpulse/processor:1.2.3@sha256:0123abcd",
            "ghcr.io/acme/processor:0.1.0",
            "ghcr.io/acme/team/processor",
        ] {
            assert_eq!(allowed.refusal(image), None, "{image}");
        }
        for image in [
            "registry.local:5000/stockpulse/processor-evil:1",
            "registry.local:5000/stockpulse/processor/sub:1",
            "registry.local/stockpulse/processor:1",
            "ghcr.io/acme",
            "ghcr.io/acme-evil/processor",
            "processor:1",
        ] {
            assert!(allowed.refusal(image).is_some(), "{image}");
        }
        assert_eq!(
            allowed.refusal("docker.io/library/busybox:1").unwrap(),
            "image \"docker.io/library/busybox:1\" is not from a repository this operator allows (registry.local:5000/stockpulse/processor, ghcr.io/acme/); use one of them or ask the operator's administrators to allow it"
        );
    }
}

//! Least privilege, checked: the RBAC verbs the operator's requests needed (its counter
//! `stockpulse_operator_kube_requests_total` over a whole lifecycle) against the rules the
//! install manifest grants (`manifests/operator/install.yaml`, rendered from the chart's
//! `templates/rbac.yaml`; a generated-files test keeps the two equal). A grant nobody used
//! and a use nobody granted both fail.

use std::collections::{BTreeMap, BTreeSet};

/// One RBAC permission: API group (`""` for the core group), resource (with `/subresource`)
/// and verb.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Permission {
    pub group: String,
    pub resource: String,
    pub verb: String,
}

impl Permission {
    pub fn new(group: &str, resource: &str, verb: &str) -> Self {
        Permission { group: group.to_string(), resource: resource.to_string(), verb: verb.to_string() }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let group = if self.group.is_empty() { "core" } else { &self.group };
        write!(f, "{} {} ({group})", self.verb, self.resource)
    }
}

/// The kinds the operator creates by server-side apply: a PATCH that creates the object is
/// authorized as `create` too.
const CREATED_BY_APPLY: &[(&str, &str)] = &[
    ("", "configmaps"),
    ("", "services"),
    ("", "serviceaccounts"),
    ("apps", "deployments"),
    ("policy", "poddisruptionbudgets"),
];

/// A grant the operator's own requests never show, each with why it is needed.
pub struct Unseen {
    pub permission: Permission,
    pub why: &'static str,
}

/// The grants the local suite's run does not show but that are needed: checked by the API
/// server for something else, or used on a path another test takes (and asserts).
pub fn needed_without_a_request() -> Vec<Unseen> {
    let blocking = "the owner references the operator sets carry blockOwnerDeletion, which \
                    the OwnerReferencesPermissionEnforcement admission plugin allows only to \
                    who may update the owner's finalizers; the test control plane enables it, \
                    and operator/tests/apiserver_helm.rs reconciles as the operator's \
                    ServiceAccount";
    vec![
        Unseen {
            permission: Permission::new("retail.stockpulse.io", "retailpipelines/finalizers", "update"),
            why: blocking,
        },
        Unseen {
            permission: Permission::new("retail.stockpulse.io", "storeregions/finalizers", "update"),
            why: blocking,
        },
        Unseen {
            permission: Permission::new("", "secrets", "get"),
            why: "read when a Kafka connection names a TLS or SASL Secret, which the local suite's \
                  Kafka does not; operator/tests/apiserver_secret_watch.rs asserts the operator's \
                  request",
        },
    ]
}

/// The permission a request needs, from the counter's labels (`verb`, and `resource` as
/// `plural.group/subresource`); `None` for requests outside resources (discovery).
pub fn permissions_of(verb: &str, resource: &str) -> Vec<Permission> {
    if resource == "other" || verb == "other" {
        return Vec::new();
    }
    let (kind, sub) = match resource.split_once('/') {
        Some((kind, sub)) => (kind, Some(sub)),
        None => (resource, None),
    };
    let (plural, group) = kind.split_once('.').unwrap_or((kind, ""));
    let resource = match sub {
        Some(sub) => format!("{plural}/{sub}"),
        None => plural.to_string(),
    };
    let mut needed = vec![Permission::new(group, &resource, verb)];
    if verb == "patch" && CREATED_BY_APPLY.contains(&(group, resource.as_str())) {
        needed.push(Permission::new(group, &resource, "create"));
    }
    needed
}

/// Every permission the counted requests needed.
pub fn needed(requests: &BTreeMap<(String, String), u64>) -> BTreeSet<Permission> {
    requests.iter().filter(|(_, n)| **n > 0).flat_map(|((verb, resource), _)| permissions_of(verb, resource)).collect()
}

/// Every permission the Roles and ClusterRoles of a multi-document manifest grant.
pub fn granted(manifest: &str) -> Result<BTreeSet<Permission>, String> {
    use serde::Deserialize;
    let mut permissions = BTreeSet::new();
    for document in serde_yaml::Deserializer::from_str(manifest) {
        let value = serde_yaml::Value::deserialize(document).map_err(|e| format!("the manifest: {e}"))?;
        let kind = value.get("kind").and_then(|k| k.as_str()).unwrap_or_default();
        if kind != "Role" && kind != "ClusterRole" {
            continue;
        }
        let strings = |rule: &serde_yaml::Value, field: &str| -> Vec<String> {
            rule.get(field)
                .and_then(|v| v.as_sequence())
                .map(|s| s.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                .unwrap_or_default()
        };
        for rule in value.get("rules").and_then(|r| r.as_sequence()).into_iter().flatten() {
            for group in strings(rule, "apiGroups") {
                for resource in strings(rule, "resources") {
                    for verb in strings(rule, "verbs") {
                        if group == "*" || resource == "*" || verb == "*" {
                            return Err(format!("a wildcard in a {kind}: {group} {resource} {verb}"));
                        }
                        permissions.insert(Permission { group: group.clone(), resource: resource.clone(), verb });
                    }
                }
            }
        }
    }
    Ok(permissions)
}

/// What differs between the permissions needed (requests plus [`needed_without_a_request`])
/// and those granted: `(granted but unused, used but not granted)`.
pub fn compare(needed: &BTreeSet<Permission>, granted: &BTreeSet<Permission>) -> (Vec<Permission>, Vec<Permission>) {
    let mut all_needed = needed.clone();
    all_needed.extend(needed_without_a_request().into_iter().map(|u| u.permission));
    let unused = granted.difference(&all_needed).cloned().collect();
    let missing = all_needed.difference(granted).cloned().collect();
    (unused, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(pairs: &[(&str, &str)]) -> BTreeMap<(String, String), u64> {
        pairs.iter().map(|(v, r)| ((v.to_string(), r.to_string()), 3)).collect()
    }

    #[test]
    fn requests_map_to_rbac_resources_and_an_apply_needs_create() {
        assert_eq!(
            permissions_of("patch", "deployments.apps"),
            vec![Permission::new("apps", "deployments", "patch"), Permission::new("apps", "deployments", "create")]
        );
        assert_eq!(
            permissions_of("patch", "retailpipelines.retail.stockpulse.io/status"),
            vec![Permission::new("retail.stockpulse.io", "retailpipelines/status", "patch")]
        );
        assert_eq!(permissions_of("watch", "secrets"), vec![Permission::new("", "secrets", "watch")]);
        assert_eq!(
            permissions_of("create", "events.events.k8s.io"),
            vec![Permission::new("events.k8s.io", "events", "create")]
        );
        assert!(permissions_of("get", "other").is_empty());
    }

    const MANIFEST: &str = "\
apiVersion: v1
kind: ServiceAccount
metadata: {name: op}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: op}
rules:
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [list, watch, patch, create, update]
  - apiGroups: [retail.stockpulse.io]
    resources: [retailpipelines/finalizers, storeregions/finalizers]
    verbs: [update]
  - apiGroups: [\"\"]
    resources: [secrets]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: leader}
rules:
  - apiGroups: [coordination.k8s.io]
    resources: [leases]
    verbs: [get]
";

    #[test]
    fn an_unused_grant_and_a_missing_one_are_both_named() {
        let granted = granted(MANIFEST).unwrap();
        assert_eq!(granted.len(), 9);
        let needed = needed(&counted(&[
            ("list", "deployments.apps"),
            ("watch", "deployments.apps"),
            ("patch", "deployments.apps"),
            ("get", "leases.coordination.k8s.io"),
            ("update", "leases.coordination.k8s.io"),
            ("get", "other"),
        ]));
        let (unused, missing) = compare(&needed, &granted);
        assert_eq!(unused, vec![Permission::new("apps", "deployments", "update")]);
        assert_eq!(missing, vec![Permission::new("coordination.k8s.io", "leases", "update")]);
    }

    #[test]
    fn wildcards_are_refused() {
        let manifest = "kind: ClusterRole\nrules:\n  - apiGroups: ['*']\n    resources: [pods]\n    verbs: [get]\n";
        assert!(granted(manifest).unwrap_err().contains("wildcard"));
    }
}

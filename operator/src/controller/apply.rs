//! Server-side apply that writes nothing when the object already is as wanted: the desired
//! object is compared with the observed one (every field the operator sets must be equal;
//! fields the API server or others add are ignored), and applied only on a difference. The
//! observed object comes from the operator's watch cache (see [`super::cache`]).

use std::fmt::Debug;

use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Context;
use super::cache::Cached;
use crate::build::labels::FIELD_MANAGER;
use crate::error::{Error, Result};

/// Whether every field of `desired` has the same value in `observed`; lists must have the
/// same length, their items compared in order.
pub fn is_subset(desired: &Value, observed: &Value) -> bool {
    match (desired, observed) {
        (Value::Object(d), Value::Object(o)) => d.iter().all(|(k, v)| match o.get(k) {
            Some(ov) => is_subset(v, ov),
            None => v.is_null() || v.as_object().is_some_and(|m| m.is_empty()),
        }),
        (Value::Array(d), Value::Array(o)) => d.len() == o.len() && d.iter().zip(o).all(|(a, b)| is_subset(a, b)),
        (d, o) => d == o,
    }
}

/// Server-side apply params of the operator.
pub fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

/// Applies `desired` in `namespace` unless the object as the operator sees it (its watch
/// cache, else a GET) already matches it. Returns the object as it now is and whether it was
/// written.
pub async fn apply_if_changed<K>(ctx: &Context, namespace: &str, desired: &K) -> Result<(K, bool)>
where
    K: Cached + Serialize,
{
    let name = desired.meta().name.clone().ok_or(Error::MissingField("object", "metadata.name"))?;
    let observed = ctx.get::<K>(namespace, &name).await?;
    apply_unless_matching(&Api::namespaced(ctx.client.clone(), namespace), desired, observed, false).await
}

/// Applies `desired` unless `observed` (as read just before) already matches it, or always
/// with `force_write`.
pub async fn apply_unless_matching<K>(
    api: &Api<K>,
    desired: &K,
    observed: Option<K>,
    force_write: bool,
) -> Result<(K, bool)>
where
    K: Resource<DynamicType = ()> + Clone + Serialize + DeserializeOwned + Debug,
{
    let name = desired.meta().name.clone().ok_or(Error::MissingField("object", "metadata.name"))?;
    let wanted =
        serde_json::to_value(desired).map_err(|e| Error::Serialization { what: "object", message: e.to_string() })?;
    if let Some(observed) = observed
        && !force_write
    {
        let have = serde_json::to_value(&observed)
            .map_err(|e| Error::Serialization { what: "object", message: e.to_string() })?;
        if is_subset(&wanted, &have) {
            return Ok((observed, false));
        }
    }
    let applied = api.patch(&name, &apply_params(), &Patch::Apply(desired)).await?;
    tracing::info!(kind = %K::kind(&()), name = %applied.name_any(), "applied");
    Ok((applied, true))
}

/// Whether `manager` owns `spec.replicas` of an object by server-side apply.
pub fn owns_replicas(meta: &kube::api::ObjectMeta, manager: &str) -> bool {
    meta.managed_fields.iter().flatten().any(|entry| {
        entry.manager.as_deref() == Some(manager)
            && entry.operation.as_deref() == Some("Apply")
            && entry
                .fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .is_some_and(|spec| spec.get("f:replicas").is_some())
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::is_subset;

    #[test]
    fn subset_ignores_fields_added_by_the_server() {
        let desired = json!({"spec": {"replicas": 2, "template": {"containers": [{"name": "p", "image": "i"}]}}});
        let observed = json!({"metadata": {"uid": "u"}, "spec": {"replicas": 2, "progressDeadlineSeconds": 600,
            "template": {"containers": [{"name": "p", "image": "i", "terminationMessagePath": "/dev/termination-log"}]}}});
        assert!(is_subset(&desired, &observed));
    }

    #[test]
    fn subset_sees_changed_values_and_list_lengths() {
        let observed = json!({"spec": {"replicas": 2, "ports": [{"port": 80}]}});
        assert!(!is_subset(&json!({"spec": {"replicas": 3}}), &observed));
        assert!(!is_subset(&json!({"spec": {"ports": [{"port": 80}, {"port": 81}]}}), &observed));
        assert!(!is_subset(&json!({"spec": {"paused": true}}), &observed));
        assert!(is_subset(&json!({"spec": {"emptyDir": {}}}), &json!({"spec": {}})));
    }
}

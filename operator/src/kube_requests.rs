//! Counts the operator's requests to the Kubernetes API server by verb and resource, as the
//! metric `stockpulse_operator_kube_requests_total`: a steady operator makes few, and a
//! reconcile storm shows at once. A tower layer on the kube client.

use std::task::{Context, Poll};

use http::{Method, Request, Uri};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tower::{Layer, Service};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub resource: String,
}

/// The verb (as RBAC names it) and resource (`plural.group`, `/subresource` added) of a
/// request to the API server; discovery and other paths are resource `other`.
pub fn classify(method: &Method, uri: &Uri) -> RequestLabels {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let (group, rest) = match segments.as_slice() {
        ["api", _version, rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => ("", &[][..]),
    };
    let rest = match rest {
        ["namespaces", _namespace, rest @ ..] if !rest.is_empty() => rest,
        rest => rest,
    };
    let (resource, name, subresource) = match rest {
        [] => (None, None, None),
        [resource] => (Some(*resource), None, None),
        [resource, name] => (Some(*resource), Some(*name), None),
        [resource, name, sub, ..] => (Some(*resource), Some(*name), Some(*sub)),
    };
    let watch = uri.query().is_some_and(|q| q.split('&').any(|p| p == "watch=true" || p == "watch=1"));
    let verb = match (method, name.is_some()) {
        (&Method::GET, _) if watch => "watch",
        (&Method::GET, true) => "get",
        (&Method::GET, false) => "list",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => "other",
    };
    let resource = match resource {
        None => "other".to_string(),
        Some(plural) => {
            let mut resource = if group.is_empty() { plural.to_string() } else { format!("{plural}.{group}") };
            if let Some(sub) = subresource {
                resource.push('/');
                resource.push_str(sub);
            }
            resource
        }
    };
    RequestLabels { verb: verb.to_string(), resource }
}

/// Counts every request that passes.
#[derive(Clone)]
pub struct CountRequestsLayer {
    counter: Family<RequestLabels, Counter>,
}

impl CountRequestsLayer {
    pub fn new(counter: Family<RequestLabels, Counter>) -> Self {
        CountRequestsLayer { counter }
    }
}

impl<S> Layer<S> for CountRequestsLayer {
    type Service = CountRequests<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountRequests { inner, counter: self.counter.clone() }
    }
}

#[derive(Clone)]
pub struct CountRequests<S> {
    inner: S,
    counter: Family<RequestLabels, Counter>,
}

impl<S, B> Service<Request<B>> for CountRequests<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        self.counter.get_or_create(&classify(request.method(), request.uri())).inc();
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(method: Method, uri: &str) -> (String, String) {
        let labels = classify(&method, &uri.parse().unwrap());
        (labels.verb, labels.resource)
    }

    #[test]
    fn requests_are_named_as_rbac_names_them() {
        let cases = [
            (Method::GET, "/apis/apps/v1/namespaces/acme/deployments/shop-processor", "get", "deployments.apps"),
            (Method::GET, "/apis/apps/v1/namespaces/acme/deployments?labelSelector=x", "list", "deployments.apps"),
            (Method::GET, "/apis/apps/v1/deployments?watch=true&resourceVersion=1", "watch", "deployments.apps"),
            (
                Method::PATCH,
                "/apis/retail.stockpulse.io/v1alpha1/namespaces/acme/retailpipelines/shop/status?fieldManager=x",
                "patch",
                "retailpipelines.retail.stockpulse.io/status",
            ),
            (Method::POST, "/apis/events.k8s.io/v1/namespaces/acme/events", "create", "events.events.k8s.io"),
            (Method::GET, "/api/v1/namespaces/acme/secrets/kafka-user", "get", "secrets"),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/ops/leases/op",
                "update",
                "leases.coordination.k8s.io",
            ),
            (Method::DELETE, "/apis/apps/v1/namespaces/acme/deployments/eu-replicator", "delete", "deployments.apps"),
            (Method::GET, "/api/v1/namespaces/acme", "get", "namespaces"),
            (Method::GET, "/version", "list", "other"),
        ];
        for (method, uri, verb, resource) in cases {
            assert_eq!(of(method, uri), (verb.to_string(), resource.to_string()), "{uri}");
        }
    }
}

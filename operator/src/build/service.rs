//! The processor's Service: metrics and the read API on the http port.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::labels::{object_meta, processor_name, selector_labels};
use crate::crd::RetailPipeline;

pub fn service(pipeline: &RetailPipeline) -> Service {
    Service {
        metadata: object_meta(pipeline, processor_name(pipeline)),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector_labels(pipeline)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_string()),
                port: pipeline.spec.processor.http_port,
                target_port: Some(IntOrString::String("http".to_string())),
                protocol: Some("TCP".to_string()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

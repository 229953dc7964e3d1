//! The Kafka cluster of a pipeline, with TLS and SASL material read from its Secrets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use crate::crd::RetailPipeline;
use crate::crd::common::KafkaConnection;
use crate::credentials::credentials;
use crate::error::{Error, Result};
use crate::kafka_admin::KafkaTarget;

fn key(secret: &Secret, key: &str) -> Result<String> {
    let name = secret.name_any();
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .ok_or_else(|| Error::Secret { name: name.clone(), message: format!("has no key {key:?}") })?;
    String::from_utf8(bytes.0.clone()).map_err(|_| Error::Secret { name, message: format!("key {key:?} is not UTF-8") })
}

pub async fn kafka_target(client: &Client, pipeline: &RetailPipeline) -> Result<KafkaTarget> {
    let namespace = pipeline.namespace().ok_or(Error::MissingField("RetailPipeline", "metadata.namespace"))?;
    connection_target(client, &namespace, &pipeline.spec.kafka.connection).await
}

/// A cluster described by `connection`, its Secrets read from `namespace` (each once).
pub async fn connection_target(client: &Client, namespace: &str, connection: &KafkaConnection) -> Result<KafkaTarget> {
    let mut target = KafkaTarget::plain(connection.bootstrap_servers.clone());
    target.sasl = connection.sasl.as_ref().map(|s| (s.mechanism.as_str().to_string(), String::new(), String::new()));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut read: BTreeMap<String, Secret> = BTreeMap::new();
    for source in credentials(connection) {
        if !read.contains_key(&source.secret) {
            let secret = secrets.get_opt(&source.secret).await?.ok_or_else(|| Error::SecretNotFound {
                name: source.secret.clone(),
                namespace: namespace.to_string(),
                field: source.field,
            })?;
            read.insert(source.secret.clone(), secret);
        }
        let secret = &read[&source.secret];
        source.credential.set(&mut target, key(secret, source.credential.secret_key())?);
    }
    Ok(target)
}

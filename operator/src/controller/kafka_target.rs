//! The Kafka cluster of a pipeline, with TLS and SASL material read from its Secrets.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Client, ResourceExt};

use crate::crd::RetailPipeline;
use crate::crd::common::KafkaConnection;
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

/// A cluster described by `connection`, its Secrets read from `namespace`.
pub async fn connection_target(client: &Client, namespace: &str, connection: &KafkaConnection) -> Result<KafkaTarget> {
    let mut target = KafkaTarget::plain(connection.bootstrap_servers.clone());
    if connection.tls.is_none() && connection.sasl.is_none() {
        return Ok(target);
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let get = |name: &str, field: &'static str| {
        let (secrets, name) = (secrets.clone(), name.to_string());
        async move {
            secrets.get_opt(&name).await?.ok_or(Error::SecretNotFound { name, namespace: namespace.to_string(), field })
        }
    };
    if let Some(tls) = &connection.tls {
        let secret = get(&tls.secret_ref.name, "kafka.tls.secretRef").await?;
        target.ca_pem = Some(key(&secret, "ca.crt")?);
        if tls.client_auth {
            target.cert_pem = Some(key(&secret, "tls.crt")?);
            target.key_pem = Some(key(&secret, "tls.key")?);
        }
    }
    if let Some(sasl) = &connection.sasl {
        let secret = get(&sasl.secret_ref.name, "kafka.sasl.secretRef").await?;
        let mechanism = sasl.mechanism.as_str();
        target.sasl = Some((mechanism.to_string(), key(&secret, "username")?, key(&secret, "password")?));
    }
    Ok(target)
}

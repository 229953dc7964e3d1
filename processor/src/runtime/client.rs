//! Kafka client settings from the pipeline's `kafka` section: bootstrap servers, TLS files
//! and SASL credentials read from the files the operator mounts from Secrets.

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

use super::RunError;

/// The settings every client of the processor shares (consumers, producer, restore readers).
pub fn base_config(kafka: &KafkaConfig) -> Result<ClientConfig, RunError> {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.bootstrap_servers);
    config.set("client.id", "stockpulse-processor");
    let protocol = match (&kafka.tls, &kafka.sasl) {
        (None, None) => "plaintext",
        (Some(_), None) => "ssl",
        (None, Some(_)) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    if let Some(tls) = &kafka.tls {
        for (key, file) in [
            ("ssl.ca.location", &tls.ca_file),
            ("ssl.certificate.location", &tls.cert_file),
            ("ssl.key.location", &tls.key_file),
        ] {
            if let Some(file) = file {
                if !std::path::Path::new(file).is_file() {
                    return Err(RunError::Config(format!("kafka.tls: file {file} ({key}) does not exist")));
                }
                config.set(key, file);
            }
        }
    }
    if let Some(sasl) = &kafka.sasl {
        config.set("sasl.mechanism", sasl.mechanism.as_str());
        config.set("sasl.username", read_secret(&sasl.username_file, "kafka.sasl.usernameFile")?);
        config.set("sasl.password", read_secret(&sasl.password_file, "kafka.sasl.passwordFile")?);
    }
    Ok(config)
}

/// A credential from a mounted Secret file, without the trailing newline editors add.
fn read_secret(path: &str, field: &str) -> Result<String, RunError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| RunError::Config(format!("{field}: cannot read {path}: {e}")))?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    if value.is_empty() {
        return Err(RunError::Config(format!("{field}: {path} is empty")));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SaslConfig, SaslMechanism, TlsConfig};

    #[test]
    fn sasl_credentials_come_from_their_files() {
        let dir = tempfile::tempdir().unwrap();
        let (user, pass) = (dir.path().join("user"), dir.path().join("pass"));
        std::fs::write(&user, "stockpulse\n").unwrap();
        std::fs::write(&pass, "s3cret").unwrap();
        let kafka = KafkaConfig {
            bootstrap_servers: "k:9093".into(),
            consumer_group: None,
            tls: None,
            sasl: Some(SaslConfig {
                mechanism: SaslMechanism::ScramSha512,
                username_file: user.display().to_string(),
                password_file: pass.display().to_string(),
            }),
        };
        let config = base_config(&kafka).unwrap();
        assert_eq!(config.get("security.protocol"), Some("sasl_plaintext"));
        assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(config.get("sasl.username"), Some("stockpulse"));
        assert_eq!(config.get("sasl.password"), Some("s3cret"));
    }

    #[test]
    fn a_missing_file_is_named() {
        let kafka = KafkaConfig {
            bootstrap_servers: "k:9093".into(),
            consumer_group: None,
            tls: Some(TlsConfig { ca_file: Some("/nonexistent/ca.crt".into()), cert_file: None, key_file: None }),
            sasl: None,
        };
        let err = base_config(&kafka).unwrap_err();
        assert_eq!(err.to_string(), "config: kafka.tls: file /nonexistent/ca.crt (ssl.ca.location) does not exist");
    }
}

/// The context of the processor's consumers: a consumer error is returned by `poll` too, and
/// the code that polls decides how loud it is (a partition's end is no error at all), so
/// librdkafka's report of it stays at debug level instead of rdkafka's default `ERROR` line.
#[derive(Default)]
pub struct ConsumerLog;

impl rdkafka::ClientContext for ConsumerLog {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        log_consumer_error(&error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for ConsumerLog {}

/// How a consumer's error event is logged before `poll` returns it to the caller.
pub fn log_consumer_error(error: &rdkafka::error::KafkaError, reason: &str) {
    tracing::debug!(error = %error, reason, "librdkafka consumer event");
}

//! The one place that maps a Kafka connection's Secret keys to Kafka client settings. The
//! operator reads them (its own admin clients), the replicator gets them as environment
//! variables and the processor as mounted files: all three from [`credentials`].

use crate::crd::common::KafkaConnection;
use crate::kafka_admin::KafkaTarget;

/// One piece of a cluster's credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    CaPem,
    CertPem,
    KeyPem,
    SaslUsername,
    SaslPassword,
}

impl Credential {
    /// The key of the Secret that holds it.
    pub fn secret_key(self) -> &'static str {
        match self {
            Credential::CaPem => "ca.crt",
            Credential::CertPem => "tls.crt",
            Credential::KeyPem => "tls.key",
            Credential::SaslUsername => "username",
            Credential::SaslPassword => "password",
        }
    }

    /// The suffix of the replicator's `<PREFIX>_*` environment variable that carries it.
    pub fn env_suffix(self) -> &'static str {
        match self {
            Credential::CaPem => "CA_PEM",
            Credential::CertPem => "CERT_PEM",
            Credential::KeyPem => "KEY_PEM",
            Credential::SaslUsername => "SASL_USERNAME",
            Credential::SaslPassword => "SASL_PASSWORD",
        }
    }

    /// Whether it belongs to TLS (else to SASL).
    pub fn is_tls(self) -> bool {
        matches!(self, Credential::CaPem | Credential::CertPem | Credential::KeyPem)
    }

    /// Puts `value` where a client of `target` reads it; SASL values need `target.sasl`
    /// set first (its mechanism is no Secret's).
    pub fn set(self, target: &mut KafkaTarget, value: String) {
        match (self, target.sasl.as_mut()) {
            (Credential::CaPem, _) => target.ca_pem = Some(value),
            (Credential::CertPem, _) => target.cert_pem = Some(value),
            (Credential::KeyPem, _) => target.key_pem = Some(value),
            (Credential::SaslUsername, Some(sasl)) => sasl.1 = value,
            (Credential::SaslPassword, Some(sasl)) => sasl.2 = value,
            (Credential::SaslUsername | Credential::SaslPassword, None) => {}
        }
    }
}

/// Where one credential comes from: the Secret, and the resource field that names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialSource {
    pub credential: Credential,
    pub secret: String,
    pub field: &'static str,
}

/// Every credential `connection` needs, in a fixed order: TLS (CA, then the client
/// certificate and key with `clientAuth`), then SASL.
pub fn credentials(connection: &KafkaConnection) -> Vec<CredentialSource> {
    let mut out = Vec::new();
    let mut push = |credential, secret: &str, field| {
        out.push(CredentialSource { credential, secret: secret.to_string(), field });
    };
    if let Some(tls) = &connection.tls {
        push(Credential::CaPem, &tls.secret_ref.name, "kafka.tls.secretRef");
        if tls.client_auth {
            push(Credential::CertPem, &tls.secret_ref.name, "kafka.tls.secretRef");
            push(Credential::KeyPem, &tls.secret_ref.name, "kafka.tls.secretRef");
        }
    }
    if let Some(sasl) = &connection.sasl {
        push(Credential::SaslUsername, &sasl.secret_ref.name, "kafka.sasl.secretRef");
        push(Credential::SaslPassword, &sasl.secret_ref.name, "kafka.sasl.secretRef");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(yaml: &str) -> KafkaConnection {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn mutual_tls_and_sasl_need_five_keys_from_two_secrets() {
        let c = connection(
            "{bootstrapServers: 'k:9093', tls: {secretRef: {name: ca}, clientAuth: true}, \
             sasl: {mechanism: SCRAM-SHA-512, secretRef: {name: user}}}",
        );
        let sources = credentials(&c);
        let got: Vec<(&str, &str, &str)> =
            sources.iter().map(|s| (s.secret.as_str(), s.credential.secret_key(), s.field)).collect();
        assert_eq!(
            got,
            vec![
                ("ca", "ca.crt", "kafka.tls.secretRef"),
                ("ca", "tls.crt", "kafka.tls.secretRef"),
                ("ca", "tls.key", "kafka.tls.secretRef"),
                ("user", "username", "kafka.sasl.secretRef"),
                ("user", "password", "kafka.sasl.secretRef"),
            ]
        );
        assert!(credentials(&connection("{bootstrapServers: 'k:9092'}")).is_empty());
        let server_tls = connection("{bootstrapServers: 'k:9093', tls: {secretRef: {name: ca}}}");
        assert_eq!(credentials(&server_tls).len(), 1);
    }

    #[test]
    fn values_land_in_the_client_settings() {
        let mut target = KafkaTarget::plain("k:9093");
        Credential::CaPem.set(&mut target, "CA".into());
        Credential::SaslUsername.set(&mut target, "ignored".into());
        assert_eq!(target.sasl, None, "no SASL without a mechanism");
        target.sasl = Some(("PLAIN".to_string(), String::new(), String::new()));
        Credential::SaslUsername.set(&mut target, "u".into());
        Credential::SaslPassword.set(&mut target, "p".into());
        assert_eq!(target.ca_pem.as_deref(), Some("CA"));
        assert_eq!(target.sasl, Some(("PLAIN".to_string(), "u".to_string(), "p".to_string())));
    }
}

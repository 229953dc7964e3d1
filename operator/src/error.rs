//! The one error type of the operator; each variant names the step that failed.

use crate::kafka_admin::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    #[error("Kafka: {0}")]
    Kafka(#[source] KafkaError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("cannot serialize {what}: {message}")]
    Serialization { what: &'static str, message: String },
    #[error("{0} has no {1}")]
    MissingField(&'static str, &'static str),
    #[error("Secret {name}: {message}")]
    Secret { name: String, message: String },
    /// A deletion waits for these to stop before it deletes topics (the finalizer stays).
    #[error("waiting for the pipeline's writers to stop before deleting its topics: {0}")]
    WritersRunning(String),
    #[error("Secret {name} (named by {field}) does not exist in namespace {namespace}")]
    SecretNotFound { name: String, namespace: String, field: &'static str },
    /// The watch behind a cache stopped (the operator is shutting down).
    #[error("the {0} cache is closed")]
    CacheClosed(String),
}

impl Error {
    /// A short, stable label for the errors metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "kube",
            Error::Kafka(_) => "kafka",
            Error::Finalizer(e) => match e.as_ref() {
                kube::runtime::finalizer::Error::ApplyFailed(inner)
                | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
            Error::Serialization { .. } => "serialization",
            Error::MissingField(..) => "missing_field",
            Error::Secret { .. } | Error::SecretNotFound { .. } => "secret",
            Error::WritersRunning(_) => "writers_running",
            Error::CacheClosed(_) => "cache_closed",
        }
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Error::Kube(e)
    }
}

impl From<KafkaError> for Error {
    fn from(e: KafkaError) -> Self {
        Error::Kafka(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

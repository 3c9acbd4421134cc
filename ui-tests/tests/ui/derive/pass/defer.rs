use recourse::classify::ErrorView;
use recourse::{Classifier, Classify, OutcomeKind};

/// A `std::error::Error` with nothing to say about retries.
#[derive(Debug, thiserror::Error, Classifier)]
#[error("config service: {0}")]
#[classify(defer)]
struct ConfigError(#[source] std::io::Error);

#[derive(Debug, thiserror::Error, Classifier)]
#[classify(default = defer)]
enum StoreError {
    #[error("row locked")]
    #[classify(retryable)]
    Locked,
    #[error("store: {0}")]
    Other(#[source] std::io::Error),
    #[error("unit")]
    #[classify(defer)]
    Unit,
}

fn main() {
    let config = ConfigError(std::io::ErrorKind::ConnectionReset.into());
    assert!(config.classify().is_none());
    // Its message and its chain are visible to classifiers and timelines.
    let shown = config.as_error().map(ToString::to_string);
    assert_eq!(shown.as_deref(), Some("config service: connection reset"));
    let view: &dyn ErrorView = &config;
    assert!(view.find::<ConfigError>().is_some());
    assert_eq!(view.find::<std::io::Error>().map(std::io::Error::kind), Some(std::io::ErrorKind::ConnectionReset));

    assert_eq!(StoreError::Locked.classify().map(|o| o.kind), Some(OutcomeKind::Retryable));
    assert!(StoreError::Other(std::io::ErrorKind::NotFound.into()).classify().is_none());
    assert!(StoreError::Unit.classify().is_none());
}

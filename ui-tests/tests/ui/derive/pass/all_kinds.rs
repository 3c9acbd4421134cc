use recourse::{Classifier, Classify, OutcomeKind};
use std::time::Duration;

#[derive(Debug, thiserror::Error, Classifier)]
enum ApiError {
    #[error("reset")]
    #[classify(retryable)]
    Reset,
    #[error("not found")]
    #[classify(non_retryable)]
    NotFound,
    #[error("forbidden")]
    #[classify(abort, reason = "forbidden_403")]
    Forbidden,
    #[error("throttled")]
    #[classify(retryable, reason = "throttled", backoff = retry_after)]
    Throttled { retry_after: Duration },
    #[error("busy")]
    #[classify(retryable, backoff = 1)]
    Busy(u16, Duration),
    #[error("maybe")]
    #[classify(retryable, backoff = hint)]
    Maybe { hint: Option<Duration> },
    #[error("later")]
    #[classify(retryable, backoff = 0)]
    Later(Option<Duration>),
    #[error(transparent)]
    #[classify(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Db(#[from] DbError),
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

#[derive(Debug, thiserror::Error, Classifier)]
#[classify(default = retryable)]
enum DbError {
    #[error("deadlock")]
    Deadlock,
    #[error("constraint")]
    #[classify(non_retryable, reason = "constraint_violation")]
    Constraint,
    #[error(transparent)]
    Recourse(::recourse::Error),
}

fn check(error: &impl Classify, kind: OutcomeKind, reason: &str, backoff: Option<Duration>) {
    let outcome = error.classify().unwrap();
    assert_eq!(outcome.kind, kind);
    assert_eq!(outcome.reason, reason);
    assert_eq!(outcome.backoff, backoff);
}

fn main() {
    let second = Duration::from_secs(1);
    check(&ApiError::Reset, OutcomeKind::Retryable, "reset", None);
    check(&ApiError::NotFound, OutcomeKind::NonRetryable, "not_found", None);
    check(&ApiError::Forbidden, OutcomeKind::Abort, "forbidden_403", None);
    check(&ApiError::Throttled { retry_after: second }, OutcomeKind::Retryable, "throttled", Some(second));
    check(&ApiError::Busy(503, second), OutcomeKind::Retryable, "busy", Some(second));
    check(&ApiError::Maybe { hint: None }, OutcomeKind::Retryable, "maybe", None);
    check(&ApiError::Later(Some(second)), OutcomeKind::Retryable, "later", Some(second));
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    check(&ApiError::Io(reset), OutcomeKind::Retryable, "io_connection_reset", None);
    check(&ApiError::Db(DbError::Deadlock), OutcomeKind::Retryable, "deadlock", None);
    check(&DbError::Constraint, OutcomeKind::NonRetryable, "constraint_violation", None);
    let denied = recourse::Error::BudgetDenied { reason: "budget_denied".into() };
    check(&ApiError::Recourse(denied.clone()), OutcomeKind::Abort, "budget_denied", None);
    check(&DbError::Recourse(denied), OutcomeKind::Abort, "budget_denied", None);
    assert!(Classify::as_error(&ApiError::Reset).is_some());
}

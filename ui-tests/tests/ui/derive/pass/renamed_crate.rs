use recourse as rc;
use std::time::Duration;

#[derive(Debug, rc::Classifier)]
#[classify(crate = "rc", default = non_retryable)]
enum ApiError {
    #[classify(retryable, backoff = 0)]
    Throttled(Duration),
    #[classify(transparent)]
    Io(std::io::Error),
    Inner(rc::Error),
    Other,
}

#[derive(Debug, rc::Classifier)]
#[classify(crate = "crate::rc", abort)]
struct Stop;

fn main() {
    use rc::Classify as _;
    let throttled = ApiError::Throttled(Duration::from_secs(1)).classify().unwrap();
    assert_eq!(throttled.backoff, Some(Duration::from_secs(1)));
    let inner = ApiError::Inner(rc::Error::BudgetDenied { reason: "budget_denied".into() }).classify().unwrap();
    assert_eq!((inner.kind, &*inner.reason), (rc::OutcomeKind::Abort, "budget_denied"));
    assert_eq!(ApiError::Other.classify().unwrap().kind, rc::OutcomeKind::NonRetryable);
    assert_eq!(
        ApiError::Io(std::io::ErrorKind::ConnectionReset.into()).classify().unwrap().kind,
        rc::OutcomeKind::Retryable
    );
    assert_eq!(Stop.classify().unwrap().kind, rc::OutcomeKind::Abort);
}

use recourse::Classifier;
use std::time::Duration;

#[derive(Debug, Classifier)]
#[classify(retryable, reason = "api")]
enum ApiError {
    #[classify(default = abort)]
    Reset,
    #[classify(non_retryable, crate = "recourse")]
    NotFound,
    #[classify(reason = "locked")]
    Locked,
    #[classify(retryable)]
    Throttled {
        #[classify(backoff)]
        retry_after: Duration,
    },
}

#[derive(Debug, Classifier)]
#[classify(default = non_retryable)]
struct NoOutcome;

#[derive(Debug, Classifier)]
#[classify(crate = "recourse")]
struct AlsoNoOutcome {
    code: u16,
}

fn main() {}

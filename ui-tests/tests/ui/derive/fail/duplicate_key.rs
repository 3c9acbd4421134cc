use recourse::Classifier;
use std::time::Duration;

#[derive(Debug, Classifier)]
#[classify(default = non_retryable, default = abort)]
enum ApiError {
    #[classify(retryable, reason = "reset", reason = "connection_reset")]
    Reset,
    #[classify(abort, abort)]
    Stop,
    #[classify(retryable, backoff = retry_after)]
    #[classify(backoff = retry_after)]
    Throttled { retry_after: Duration },
}

fn main() {}

use recourse::Classifier;
use std::time::Duration;

#[derive(Debug, Classifier)]
enum ApiError {
    #[classify(retryable, backoff = retry_after_secs)]
    Throttled { retry_after_secs: u64 },
    #[classify(retryable, backoff = 0)]
    Busy(Option<u64>),
    #[classify(retryable, backoff = 0)]
    Fine(Duration),
}

fn main() {}

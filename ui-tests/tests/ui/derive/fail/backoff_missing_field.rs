use recourse::Classifier;
use std::time::Duration;

#[derive(Debug, Classifier)]
enum ApiError {
    #[classify(retryable, backoff = retry_afer)]
    Throttled { retry_after: Duration, code: u16 },
    #[classify(retryable, backoff = 2)]
    Busy(u16, Duration),
    #[classify(retryable, backoff = wait)]
    Unit,
}

fn main() {}

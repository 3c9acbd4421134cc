use recourse::Classifier;

#[derive(Debug, Classifier)]
enum ApiError {
    #[classify(retryable, reason = "Too Many Requests")]
    TooMany,
    #[classify(retryable, reason = "")]
    Empty,
    #[classify(retryable, reason = "http-503")]
    Unavailable,
    #[classify(retryable, reason = throttled)]
    Throttled,
}

fn main() {}

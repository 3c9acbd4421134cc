use recourse::Classifier;

#[derive(Debug, Classifier)]
#[classify(defualt = non_retryable)]
enum ApiError {
    #[classify(retryable, foo)]
    Reset,
    #[classify(non_retryable, retry_after = 5, reason = "gone")]
    Gone,
    #[classify(retriable)]
    Typo,
}

fn main() {}

use recourse::Classifier;

#[derive(Debug, Classifier)]
enum ApiError {
    #[classify(retryable)]
    Reset,
    NotFound,
    Conflict {
        id: u64,
    },
    // Holds `recourse::Error`: classifies itself, no annotation needed.
    Recourse(recourse::Error),
}

fn assert_classify<T: recourse::Classify>() {}

fn main() {
    assert_classify::<ApiError>();
}

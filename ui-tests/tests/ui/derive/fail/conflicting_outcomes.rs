use recourse::Classifier;

#[derive(Debug, Classifier)]
enum ApiError {
    #[classify(retryable, abort)]
    Reset,
    #[classify(non_retryable)]
    #[classify(transparent)]
    Io(std::io::Error),
    #[classify(transparent, delegate)]
    Other(std::io::Error),
}

fn main() {}

use recourse::Classifier;

#[derive(Debug, Classifier)]
enum ApiError {
    #[classify(transparent)]
    Both(std::io::Error, std::io::Error),
    #[classify(delegate)]
    Nothing,
    #[classify(transparent, reason = "io", backoff = 0)]
    Io(std::io::Error),
}

fn main() {}

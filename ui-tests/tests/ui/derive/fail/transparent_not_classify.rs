use recourse::Classifier;

#[derive(Debug, Classifier)]
enum ApiError {
    #[classify(transparent)]
    Code(u16),
}

fn main() {}

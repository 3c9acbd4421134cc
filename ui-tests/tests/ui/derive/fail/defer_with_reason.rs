use recourse::Classifier;

#[derive(Debug, Classifier)]
#[classify(defer, reason = "config")]
struct ConfigError;

#[derive(Debug, Classifier)]
#[classify(default = defer)]
enum StoreError {
    #[classify(backoff = 0)]
    Busy(std::time::Duration),
    #[classify(defer, abort)]
    Gone,
}

#[derive(Debug, Classifier)]
#[classify(defer)]
enum OnTheEnum {
    A,
}

fn main() {}

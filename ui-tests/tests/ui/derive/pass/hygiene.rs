//! The expansion names only absolute paths, so local items called `core`,
//! `Option`, `Result`, `Some`, `None`, `Classify`, `Outcome` and
//! `__private` change
//! nothing.
#![allow(dead_code, non_camel_case_types)]

use recourse::Classifier;
use std::time::Duration;

mod core {}
mod __private {}
type Option = ();
type Result = ();
struct Some;
struct None;
struct Classify;
struct Outcome;

#[derive(Debug, Classifier)]
#[classify(default = non_retryable)]
enum ApiError<T> {
    #[classify(retryable, backoff = retry_after)]
    Throttled {
        retry_after: Duration,
    },
    #[classify(retryable, backoff = 0)]
    Hinted(::core::option::Option<Duration>),
    #[classify(transparent)]
    Inner(T),
    Recourse(recourse::Error),
    Other,
}

#[derive(Debug, Classifier)]
enum Leaf {
    #[classify(abort)]
    Stop,
}

fn main() {
    use recourse::Classify as _;
    let throttled = ApiError::<Leaf>::Throttled { retry_after: Duration::from_secs(1) };
    assert_eq!(throttled.classify().unwrap().backoff, ::core::option::Option::Some(Duration::from_secs(1)));
    assert_eq!(ApiError::Inner(Leaf::Stop).classify().unwrap().reason, "stop");
}

use recourse::{Classifier, Classify, OutcomeKind};
use std::fmt::Debug;
use std::time::Duration;

#[derive(Debug, Classifier)]
enum Layered<E, B>
where
    E: Debug,
{
    #[classify(transparent)]
    Inner(E),
    #[classify(delegate)]
    Nested(Wrapped<E>),
    #[classify(retryable, backoff = hint)]
    Hinted { hint: B },
    #[classify(abort)]
    Stopped,
}

#[derive(Debug, thiserror::Error, Classifier)]
enum Sourced<E: std::error::Error + 'static> {
    #[error("wrapped")]
    #[classify(non_retryable)]
    Wrapped(#[source] E),
}

#[derive(Debug, Classifier)]
#[classify(default = non_retryable)]
enum Borrowed<'a> {
    Text(&'a str),
}

#[derive(Debug, Classifier)]
enum Leaf {
    #[classify(retryable)]
    Flaky,
}

#[derive(Debug, Classifier)]
#[classify(transparent)]
struct Wrapped<E>(E);

fn main() {
    let inner: Layered<Leaf, Duration> = Layered::Inner(Leaf::Flaky);
    assert_eq!(inner.classify().unwrap().reason, "flaky");
    let nested: Layered<std::io::Error, Option<Duration>> =
        Layered::Nested(Wrapped(std::io::ErrorKind::TimedOut.into()));
    assert_eq!(nested.classify().unwrap().kind, OutcomeKind::Retryable);
    let hinted: Layered<Leaf, Option<Duration>> = Layered::Hinted { hint: Some(Duration::from_secs(1)) };
    assert_eq!(hinted.classify().unwrap().backoff, Some(Duration::from_secs(1)));
    assert_eq!(Layered::<Leaf, Duration>::Stopped.classify().unwrap().kind, OutcomeKind::Abort);

    let sourced = Sourced::Wrapped(std::io::Error::other("disk"));
    let source = Classify::as_error(&sourced).and_then(std::error::Error::source).unwrap();
    assert_eq!(source.to_string(), "disk");

    let text = String::from("borrowed");
    assert_eq!(Borrowed::Text(&text).classify().unwrap().reason, "text");
}

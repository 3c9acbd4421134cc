//! The expansion is lint-clean in user code. trybuild runs rustc only; the
//! clippy half of this check lives in `recourse/tests/derive_classifier.rs`.
#![deny(warnings, clippy::pedantic)]
#![deny(unused_qualifications, unused_results, trivial_casts, rust_2018_idioms, unused_lifetimes)]
#![deny(single_use_lifetimes, elided_lifetimes_in_paths, unnameable_types)]

use recourse::{Classifier, Classify, Outcome, OutcomeKind};
// `Classify`, `Outcome` and `OutcomeKind` in scope: the expansion's absolute
// paths must not trip `unused_qualifications`.
use std::time::Duration;

#[derive(Debug, thiserror::Error, Classifier)]
#[classify(default = non_retryable)]
pub enum ApiError<E: std::error::Error + 'static> {
    #[error("reset")]
    #[classify(retryable)]
    Reset,
    #[error("throttled")]
    #[classify(retryable, reason = "throttled", backoff = retry_after)]
    Throttled { retry_after: Duration },
    #[error("busy")]
    #[classify(retryable, backoff = 0)]
    Busy(Option<Duration>),
    #[error(transparent)]
    #[classify(transparent)]
    Inner(E),
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
    #[error("other")]
    Other,
}

#[derive(Debug, Classifier)]
#[classify(abort)]
pub struct Stop;

#[derive(Debug, Classifier)]
pub enum Never {}

#[derive(Debug, Classifier)]
#[classify(default = retryable)]
pub enum Borrowed<'a> {
    Text(&'a str),
}

fn main() {
    let error: ApiError<std::io::Error> = ApiError::Reset;
    assert!(error.classify().is_some());
    let stop: Option<Outcome> = Stop.classify();
    assert_eq!(stop.map(|outcome| outcome.kind), Some(OutcomeKind::Abort));
    assert!(Borrowed::Text("x").classify().is_some());
}

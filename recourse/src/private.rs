//! /!\ Not public API. Support code for `recourse-macros`; may change in any
//! release. The macro crate is pinned with `=` to this crate's version, so
//! the two always agree. /!\
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

pub use core::option::Option;
pub use core::time::Duration;

pub use crate::classify::{Classify, Outcome, OutcomeKind};

/// The outcome of a variant that holds a `recourse::Error`: always an
/// abort, with the error's own reason (`budget_denied`, `circuit_open`, ...).
pub fn recourse_error_outcome(error: &crate::Error) -> Outcome {
    Outcome::abort().with_reason(error.outcome().reason)
}

/// A field usable as `#[classify(backoff = field)]`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be used as a backoff",
    label = "expected `Duration` or `Option<Duration>`",
    note = "`#[classify(backoff = field)]` names a `std::time::Duration` or `Option<std::time::Duration>` field"
)]
pub trait BackoffField {
    fn backoff(&self) -> Option<Duration>;
}

impl BackoffField for Duration {
    fn backoff(&self) -> Option<Duration> {
        Some(*self)
    }
}

impl BackoffField for Option<Duration> {
    fn backoff(&self) -> Option<Duration> {
        *self
    }
}

impl<T: BackoffField + ?Sized> BackoffField for &T {
    fn backoff(&self) -> Option<Duration> {
        (**self).backoff()
    }
}

/// Applies a backoff field to an outcome.
pub fn with_backoff(outcome: Outcome, field: &impl BackoffField) -> Outcome {
    match field.backoff() {
        Some(d) => outcome.with_backoff(d),
        None => outcome,
    }
}

/// Autoref specialization: `(&AsErrorProbe(self)).as_error()` is
/// `Some(self)` when the type implements `std::error::Error`, else `None`,
/// so derived classifiers expose the `source()` chain when there is one.
/// Bring both traits into scope with `use ... as _`.
pub struct AsErrorProbe<'a, T: ?Sized>(pub &'a T);

pub trait ViaStdError<'a> {
    fn as_error(self) -> Option<&'a (dyn std::error::Error + 'static)>;
}

impl<'a, T: std::error::Error + 'static> ViaStdError<'a> for &AsErrorProbe<'a, T> {
    fn as_error(self) -> Option<&'a (dyn std::error::Error + 'static)> {
        Some(self.0)
    }
}

pub trait ViaNothing<'a> {
    fn as_error(self) -> Option<&'a (dyn std::error::Error + 'static)>;
}

impl<'a, T: ?Sized> ViaNothing<'a> for AsErrorProbe<'a, T> {
    fn as_error(self) -> Option<&'a (dyn std::error::Error + 'static)> {
        None
    }
}

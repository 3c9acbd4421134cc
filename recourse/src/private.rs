//! /!\ Not public API. Support code for `recourse-macros`; may change in any
//! release. The macro crate is pinned with `=` to this crate's version, so
//! the two always agree. /!\
#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]

pub use core::option::Option;
pub use core::time::Duration;

pub use crate::classify::{Classify, ErrorView, Outcome, OutcomeKind};
// `#[recourse]` support: call sites, compiled catalog policies and the
// sequential (`&mut`) driver.
pub use crate::Error;
pub use crate::executor::catalog::{Catalog, CatalogEntry};
pub use crate::executor::drive::{Checked, ErrorOps, Sequential};
pub use crate::executor::site::{CallSite, CheckedKey};
pub use crate::executor::{Executor, global};
pub use crate::policy::spec::{BudgetDecl, BudgetRefSpec, CircuitSpec, HedgeSpec, PolicySpec, RedisUnavailable};
pub use crate::policy::{Jitter, PolicyKey};
#[cfg(feature = "macros")]
pub use recourse_macros::__builtin_names;
use std::marker::PhantomData;

/// The per-attempt copy of a by-value argument.
#[diagnostic::on_unimplemented(
    message = "`{Self}` must be `Clone` to be passed by value to a `#[recourse]` function",
    label = "every attempt gets its own copy of this argument",
    note = "`#[recourse]` re-runs the body for each attempt; take the argument by reference or make it `Clone`"
)]
pub trait AttemptArg: Clone {}

impl<T: Clone> AttemptArg for T {}

#[inline]
pub fn attempt_arg<T: AttemptArg>(value: &T) -> T {
    value.clone()
}

/// What a `#[recourse]` function may return: `Result<T, E>` whose error
/// type recourse can classify and convert its own errors into.
#[diagnostic::on_unimplemented(
    message = "`#[recourse]` functions must return `Result<T, E>`, not `{Self}`",
    label = "the error type decides whether an attempt is retried",
    note = "return `Result<T, E>` where `E: recourse::Classify + From<recourse::Error>`"
)]
pub trait RecourseResult {
    type Error;
}

impl<T, E> RecourseResult for Result<T, E> {
    type Error = E;
}

/// Compiles only for a valid `#[recourse]` return type; called in the
/// expansion with the return type's span so errors land on it. This is the
/// only check of the error type: the call site takes its [`ErrorOps`]
/// from [`OpsProbe`], which asks nothing, so each missing bound is
/// reported once. (Returning the ops from here as `impl ErrorOps` would
/// check the bounds a second time, for the opaque type.)
#[inline]
pub fn check_result<R>()
where
    R: RecourseResult,
    R::Error: Classify + FromRecourseError + 'static,
{
}

/// Autoref specialization: `(&OpsProbe::<R>::NEW).ops()` is the error
/// type's [`Checked`] ops when `R` is a `Result` whose error type meets
/// `check_result`'s bounds, and [`Unchecked`] otherwise: a stand-in chosen
/// only in a program that `check_result` has already failed to compile,
/// so it never runs. Bring both traits into scope with `use ... as _`.
pub struct OpsProbe<R>(PhantomData<fn() -> R>);

impl<R> OpsProbe<R> {
    pub const NEW: Self = Self(PhantomData);
}

// `Copy`, so the `ViaUnchecked` fallback (reached by auto-deref from
// `&OpsProbe`) can take the probe by value out of the reference.
impl<R> Clone for OpsProbe<R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for OpsProbe<R> {}

pub trait ViaChecked<E> {
    fn ops(self) -> Checked<E>;
}

impl<R> ViaChecked<R::Error> for &OpsProbe<R>
where
    R: RecourseResult,
    R::Error: Classify + FromRecourseError + 'static,
{
    #[inline]
    fn ops(self) -> Checked<R::Error> {
        Checked::new()
    }
}

pub trait ViaUnchecked {
    fn ops(self) -> Unchecked;
}

impl<R> ViaUnchecked for OpsProbe<R> {
    fn ops(self) -> Unchecked {
        Unchecked
    }
}

/// See [`OpsProbe`]: never used by a program that compiles.
pub struct Unchecked;

impl<E> ErrorOps<E> for Unchecked {
    fn view(_: &E) -> &dyn ErrorView {
        unreachable!("`check_result` rejected this error type at compile time")
    }

    fn from_recourse(_: Error) -> E {
        unreachable!("`check_result` rejected this error type at compile time")
    }
}

/// An error type that recourse's own errors convert into.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot hold a `recourse::Error`, which the call returns when recourse itself ends it (budget denied, circuit open, deadline)",
    label = "no `From<recourse::Error>` for this error type",
    note = "add a variant `Recourse(#[from] recourse::Error)` (thiserror), or `impl From<recourse::Error> for {Self}`"
)]
pub trait FromRecourseError {
    fn from_recourse(error: Error) -> Self;
}

// Not a supertrait: with `trait FromRecourseError: From<Error>`, rustc
// reports a missing `From` twice (once through this trait's message, once
// as the bare `From` bound) when compiling incrementally.
impl<E: From<Error>> FromRecourseError for E {
    #[inline]
    fn from_recourse(error: Error) -> Self {
        E::from(error)
    }
}

/// Autoref specialization for `Classify::transparent`:
/// `(&ViewProbe(field)).view()` is the field as classifiers see it when it
/// implements `Classify`, else `None`. A field that does not is already
/// reported once by `classify`'s own arm; this never reports it again.
/// Bring both traits into scope with `use ... as _`.
pub struct ViewProbe<'a, T: ?Sized>(pub &'a T);

impl<T: ?Sized> Clone for ViewProbe<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for ViewProbe<'_, T> {}

pub trait ViaClassify<'a> {
    fn view(self) -> Option<&'a dyn ErrorView>;
}

impl<'a, T: Classify + 'static> ViaClassify<'a> for &ViewProbe<'a, T> {
    fn view(self) -> Option<&'a dyn ErrorView> {
        Some(self.0)
    }
}

pub trait ViaNoView<'a> {
    fn view(self) -> Option<&'a dyn ErrorView>;
}

impl<'a, T: ?Sized> ViaNoView<'a> for ViewProbe<'a, T> {
    fn view(self) -> Option<&'a dyn ErrorView> {
        None
    }
}

/// The outcome of a variant that holds a `recourse::Error`: always an
/// abort, with the error's own reason (`budget_denied`, `circuit_open`, ...).
pub fn recourse_error_outcome(error: &Error) -> Outcome {
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

// `Copy`, so the `ViaNothing` fallback (reached by auto-deref from
// `&AsErrorProbe`) can take the probe by value out of the reference.
impl<T: ?Sized> Clone for AsErrorProbe<'_, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for AsErrorProbe<'_, T> {}

pub trait ViaStdError<'a> {
    #[allow(clippy::wrong_self_convention, reason = "autoref specialization needs a by-value receiver")]
    fn as_error(self) -> Option<&'a (dyn std::error::Error + 'static)>;
}

impl<'a, T: std::error::Error + 'static> ViaStdError<'a> for &AsErrorProbe<'a, T> {
    fn as_error(self) -> Option<&'a (dyn std::error::Error + 'static)> {
        Some(self.0)
    }
}

pub trait ViaNothing<'a> {
    #[allow(clippy::wrong_self_convention, reason = "autoref specialization needs a by-value receiver")]
    fn as_error(self) -> Option<&'a (dyn std::error::Error + 'static)>;
}

impl<'a, T: ?Sized> ViaNothing<'a> for AsErrorProbe<'a, T> {
    fn as_error(self) -> Option<&'a (dyn std::error::Error + 'static)> {
        None
    }
}

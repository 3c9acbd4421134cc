//! Procedural macros for [`recourse`](https://docs.rs/recourse).
//!
//! This crate is an implementation detail: depend on `recourse` and use the
//! re-exports there (`recourse::recourse`, `recourse::Classifier`,
//! `recourse::key!`). Generated code names only `::recourse::__private` and
//! `::core`, or the path given with `crate = "..."`.
#![forbid(unsafe_code)]

mod catalog;
mod classifier;
mod error;
mod key;
mod key_macro;
mod recourse_attr;
mod runtime_path;

use proc_macro::TokenStream;

/// Runs an `async fn` under the policy named by its key, checked at
/// compile time against the crate's `recourse.toml`.
///
/// See the `recourse` crate documentation for the arguments and for what
/// the attribute expands to.
#[proc_macro_attribute]
pub fn recourse(args: TokenStream, item: TokenStream) -> TokenStream {
    recourse_attr::expand(args.into(), item.into()).into()
}

/// A policy key checked at compile time against the crate's
/// `recourse.toml`, usable with `Executor::call`.
#[proc_macro]
pub fn key(input: TokenStream) -> TokenStream {
    key_macro::expand(input.into()).into()
}

/// Derives `recourse::Classify` for an error enum (or struct), so the
/// executor knows which of the type's errors are worth another attempt.
///
/// ```ignore
/// use recourse::Classifier;
/// use std::time::Duration;
///
/// #[derive(Debug, thiserror::Error, Classifier)]
/// enum ApiError {
///     #[error("connection reset")]
///     #[classify(retryable)]
///     Reset,
///     #[error("throttled")]
///     #[classify(retryable, reason = "throttled", backoff = retry_after)]
///     Throttled { retry_after: Duration },
///     #[error("not found")]
///     #[classify(non_retryable)]
///     NotFound,
///     #[error(transparent)]
///     #[classify(transparent)]
///     Io(#[from] std::io::Error),
///     #[error(transparent)]
///     Recourse(#[from] recourse::Error), // budget denied, circuit open, timeout, ...
/// }
/// ```
///
/// (The examples here are not doctests, because this crate cannot depend on
/// `recourse`; each one is compiled and run by the `ui-tests` crate, in
/// `tests/ui/derive/pass/`.)
///
/// # Variant attributes
///
/// Every variant needs one outcome, unless the enum has a `default` or the
/// variant holds a `recourse::Error`. Keys may be combined in one
/// `#[classify(...)]` or spread over several.
///
/// * `#[classify(retryable)]`, `#[classify(non_retryable)]`,
///   `#[classify(abort)]`: the outcome kind (`OutcomeKind::Retryable`,
///   `NonRetryable`, `Abort`).
/// * `reason = "code"`: the outcome's reason, a low-cardinality telemetry
///   code of lowercase ASCII letters, digits and `_`. The default is the
///   variant name in snake case (`TooManyRequests` → `too_many_requests`,
///   `HTTPError` → `http_error`).
/// * `backoff = field`: sleep this long before the next attempt instead of
///   the policy's computed backoff (a server's Retry-After). The field is a
///   `Duration` or an `Option<Duration>` (`None` and zero keep the computed
///   backoff); name it, or give a tuple variant's index:
///
///   ```ignore
///   #[classify(retryable, backoff = retry_after)]
///   Throttled { retry_after: Duration },
///   #[classify(retryable, backoff = 1)]
///   Busy(u16, Option<Duration>),
///   ```
/// * `#[classify(transparent)]`, or its alias `#[classify(delegate)]`: the
///   variant has exactly one field, and classifies as that field's own
///   `Classify::classify` (its `None`, "no opinion", included). `reason` and
///   `backoff` do not apply. In a generic enum the field type gets a
///   `Classify` bound:
///
///   ```ignore
///   #[derive(Debug, Classifier)]
///   enum Wrapped<E> {
///       #[classify(delegate)]
///       Inner(E), // impl<E> Classify for Wrapped<E> where E: Classify
///       #[classify(abort, reason = "shutting_down")]
///       ShuttingDown,
///   }
///   ```
/// * No attribute, and exactly one field of type `recourse::Error` (written
///   `recourse::Error`, `::recourse::Error`, or `<crate path>::Error` with
///   `crate = "..."`): an abort with that error's own reason
///   (`budget_denied`, `circuit_open`, `context_deadline_exceeded`, ...),
///   even when the enum has a `default`. Annotate the variant to override.
///
/// # Container attributes
///
/// * `#[classify(default = non_retryable)]` (or `retryable`, `abort`), on
///   an enum: the outcome of every variant without one of its own. A
///   variant with only `reason = "..."` and/or `backoff = ...` takes this
///   outcome. Without a `default`, an unannotated variant is an error: being
///   explicit about what is retried is the conservative choice.
///
///   ```ignore
///   #[derive(Debug, Classifier)]
///   #[classify(default = non_retryable)]
///   enum DbError {
///       #[classify(retryable)]
///       Deadlock,
///       Constraint, // non_retryable, reason `constraint`
///       #[classify(reason = "row_locked")]
///       Locked, // non_retryable, reason `row_locked`
///   }
///   ```
/// * `#[classify(crate = "path")]`: the path generated code uses for the
///   `recourse` crate, when it is renamed or re-exported (default
///   `::recourse`):
///
///   ```ignore
///   use recourse as rc;
///
///   #[derive(Debug, rc::Classifier)]
///   #[classify(crate = "rc", default = abort)]
///   enum Error { Fatal, Inner(rc::Error) }
///   ```
/// * On a struct, the outcome and its keys go on the struct itself (`default`
///   does not apply); the struct's name gives the default reason:
///
///   ```ignore
///   #[derive(Debug, Classifier)]
///   #[classify(retryable, reason = "busy", backoff = wait)]
///   struct Busy { wait: Duration }
///
///   #[derive(Debug, Classifier)]
///   #[classify(transparent)]
///   struct Io(std::io::Error);
///   ```
///
/// # What it generates
///
/// `Classify::classify` is one `match` that returns
/// `Some(Outcome::with_kind_and_reason(kind, "reason"))` (plus the backoff
/// field) per variant, so every classification is static and allocation
/// free. `Classify::as_error` returns `Some(self)` when the type implements
/// `std::error::Error` (e.g. through `thiserror`), so classifiers can walk
/// its `source()` chain, and `None` otherwise. For that check, the type
/// parameters of a generic type are bounded by `'static` (as the executor
/// requires of error types anyway); a type with lifetime parameters keeps
/// `as_error` at `None`.
///
/// Mistakes are reported together, each on the offending token: unknown,
/// duplicate, conflicting or misplaced keys, an invalid reason, a `backoff`
/// field that does not exist (naming the fields that do) or is not a
/// duration, a `transparent` variant without exactly one field, an
/// unannotated variant, a union. An empty `impl Classify` is still emitted
/// then, so code using the type reports nothing further.
#[proc_macro_derive(Classifier, attributes(classify))]
pub fn derive_classifier(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    classifier::derive(&input).into()
}

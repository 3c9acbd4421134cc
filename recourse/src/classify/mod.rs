//! Classification: deciding what an attempt's error means.
//!
//! Two traits meet here:
//!
//! * [`Classify`] is implemented by **error types** (usually through
//!   `#[derive(Classifier)]`): "this error is retryable, for this reason".
//!   Every error type an executor runs must implement it; `impl Classify
//!   for MyError {}` means "no opinion, ask the executor's default".
//! * [`Classifier`] is a **type-erased, named strategy** registered in a
//!   [`Registry`] and selected by a policy's `classifier` field. It sees the
//!   error through [`ErrorView`], which offers the error's own
//!   classification, downcasting and the `source()` chain.
//!
//! A successful attempt (`Ok`) is always [`OutcomeKind::Success`] and is
//! never handed to a classifier, so the success path costs nothing here.
//!
//! Precedence for a failed attempt: the policy's named classifier, else the
//! error's own [`Classify`] outcome, else the outcome of the outermost
//! error in its `source()` chain whose type was registered with
//! [`ExecutorBuilder::classify_wrapped`](crate::ExecutorBuilder::classify_wrapped),
//! else the executor's default classifier ([`Auto`] unless configured).

mod builtins;
mod inside;
mod outcome;
mod registry;

use std::any::Any;
use std::error::Error as StdError;

pub use builtins::{AlwaysRetry, Auto, NeverRetry, io_outcome};
pub(crate) use inside::Inside;
pub use outcome::{Attributes, Outcome, OutcomeKind};
pub use registry::Registry;

/// Typed classification, implemented by error types.
///
/// Derive it with `#[derive(recourse::Classifier)]`, or implement it by
/// hand. [`as_error`](Self::as_error) lets classifiers walk the error's
/// `source()` chain and gives timelines the error's message; the derive
/// fills it in for every `std::error::Error`. To have no opinion, derive
/// with `#[classify(defer)]`: the executor's default classifier then
/// decides. An empty `impl Classify for E {}` does the same for a type that
/// is not a `std::error::Error`; for one that is, it would hide the
/// message (timelines show the type's name) and the chain.
///
/// ```
/// use recourse::classify::{Classify, Outcome};
///
/// #[derive(Debug)]
/// enum DbError { Deadlock, Constraint }
///
/// impl Classify for DbError {
///     fn classify(&self) -> Option<Outcome> {
///         Some(match self {
///             DbError::Deadlock => Outcome::retryable().with_reason("deadlock"),
///             DbError::Constraint => Outcome::non_retryable().with_reason("constraint"),
///         })
///     }
/// }
/// # assert!(DbError::Deadlock.classify().is_some());
/// # let _ = DbError::Constraint;
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` does not implement `recourse::Classify`, so recourse cannot tell which errors to retry",
    label = "errors of this type cannot be classified",
    note = "derive it with `#[derive(recourse::Classifier)]`: `#[classify(...)]` on each variant says what is retried, and `#[classify(defer)]` (or `#[classify(default = defer)]` on an enum) lets the executor's default classifier decide while timelines keep the error's message"
)]
pub trait Classify {
    /// This error's own outcome, or `None` for "no opinion".
    fn classify(&self) -> Option<Outcome> {
        None
    }

    /// This error as a `std::error::Error`, so classifiers can walk its
    /// `source()` chain. `None` when the type is not one.
    fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
        None
    }

    /// The error this one forwards to, when it is a wrapper whose
    /// classification is its field's (a `#[classify(transparent)]`
    /// variant). thiserror's `#[error(transparent)]` leaves that field out
    /// of the `source()` chain, so `find` on a [`dyn ErrorView`](ErrorView) looks here too.
    fn transparent(&self) -> Option<&dyn ErrorView> {
        None
    }
}

/// A failed attempt's error as a type-erased classifier sees it.
///
/// Implemented for every `E: Classify + 'static`; classifiers receive
/// `&dyn ErrorView`.
pub trait ErrorView: Any {
    /// The error's own [`Classify`] outcome.
    fn own_outcome(&self) -> Option<Outcome>;
    /// The error as a `std::error::Error`, if it is one. (Named apart from
    /// [`Classify::as_error`] so both traits can be in scope.)
    fn std_error(&self) -> Option<&(dyn StdError + 'static)>;
    /// The error as `Any`, for downcasting to its concrete type.
    fn as_any(&self) -> &dyn Any;
    /// The concrete type's name (for `classifier_type_mismatch`).
    fn type_name(&self) -> &'static str;
    /// [`Classify::transparent`]: the error this one forwards to.
    fn transparent_view(&self) -> Option<&dyn ErrorView>;
}

impl<E: Classify + 'static> ErrorView for E {
    fn own_outcome(&self) -> Option<Outcome> {
        Classify::classify(self)
    }

    fn std_error(&self) -> Option<&(dyn StdError + 'static)> {
        Classify::as_error(self)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn type_name(&self) -> &'static str {
        std::any::type_name::<E>()
    }

    fn transparent_view(&self) -> Option<&dyn ErrorView> {
        Classify::transparent(self)
    }
}

impl dyn ErrorView + '_ {
    /// The error itself if it is a `T`.
    pub fn downcast_ref<T: Any>(&self) -> Option<&T> {
        self.as_any().downcast_ref()
    }

    /// The first `T` found in the error, in what it forwards to
    /// ([`Classify::transparent`]), or in its `source()` chain (DESIGN
    /// §6.6: a wrapped error is still that error).
    pub fn find<T: StdError + 'static>(&self) -> Option<&T> {
        self.downcast_ref::<T>()
            .or_else(|| self.transparent_view().and_then(|inner| inner.find::<T>()))
            .or_else(|| self.chain().find_map(|e| e.downcast_ref::<T>()))
    }

    /// The error and its sources, outermost first (empty when the error is
    /// not a `std::error::Error`). An [`std::io::Error`] made from another
    /// error (`io::Error::other(e)`) is followed by that error: its own
    /// `source()` skips it.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        std::iter::successors(self.std_error(), |e: &&(dyn StdError + 'static)| next_link(*e))
    }
}

fn next_link<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a (dyn StdError + 'static)> {
    match error.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
        Some(inner) => Some(inner),
        None => error.source(),
    }
}

/// A named, type-erased classification strategy.
///
/// Implement it for reusable policies ("HTTP semantics", "gRPC status"),
/// register it in a [`Registry`] and name it in a policy. Closures
/// `Fn(&dyn ErrorView) -> Outcome` implement it too. Classification must be
/// fast, pure and must not block.
///
/// ```
/// use recourse::classify::{Classifier, ErrorView, Outcome, Registry};
///
/// let registry = Registry::with_builtins();
/// registry.register("io_only", |error: &dyn ErrorView| match error.find::<std::io::Error>() {
///     Some(_) => Outcome::retryable(),
///     None => Outcome::type_mismatch("std::io::Error", error.type_name()),
/// });
/// assert!(registry.get("io_only").is_some());
/// ```
pub trait Classifier: Send + Sync + 'static {
    /// Classifies one failed attempt.
    fn classify(&self, error: &dyn ErrorView) -> Outcome;
}

impl<F> Classifier for F
where
    F: Fn(&dyn ErrorView) -> Outcome + Send + Sync + 'static,
{
    fn classify(&self, error: &dyn ErrorView) -> Outcome {
        self(error)
    }
}

macro_rules! classify_as_std_error {
    ($($ty:ty => |$e:ident| $as_error:expr),* $(,)?) => {$(
        /// No classification of its own; classifiers walk its `source()` chain.
        impl Classify for $ty {
            fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
                let $e = self;
                Some($as_error)
            }
        }
    )*};
}

classify_as_std_error!(
    Box<dyn StdError + Send + Sync> => |e| &**e,
    Box<dyn StdError + Send> => |e| &**e,
    Box<dyn StdError> => |e| &**e,
    std::fmt::Error => |e| e,
    tokio::time::error::Elapsed => |e| e,
);

#[cfg(feature = "anyhow")]
classify_as_std_error!(anyhow::Error => |e| &**e);

/// I/O errors classify by [`std::io::ErrorKind`] (see [`io_outcome`]),
/// except an error made from another one (`io::Error::other(e)`): its kind
/// says nothing, so it has no outcome of its own and the error inside
/// decides.
impl Classify for std::io::Error {
    fn classify(&self) -> Option<Outcome> {
        (!wraps_an_error(self)).then(|| io_outcome(self))
    }

    fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self)
    }
}

/// `io::Error::other(e)` and its like: kind `Other`, and an error inside.
pub(crate) fn wraps_an_error(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::Other && error.get_ref().is_some()
}

/// Plain-text errors carry no classification of their own.
impl Classify for String {}

/// Plain-text errors carry no classification of their own.
impl Classify for &'static str {}

/// Unit errors carry no classification of their own.
impl Classify for () {}

/// An error that cannot happen.
impl Classify for std::convert::Infallible {}

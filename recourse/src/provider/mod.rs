//! The control plane: where policies come from.
//!
//! A [`PolicyProvider`] answers "what is the policy for this key?" from
//! memory, synchronously. The executor caches its answers and asks again
//! only when [`PolicyProvider::generation`] changes. Providers that fetch
//! from elsewhere keep a cache, refresh it off the call path, and bump
//! their generation when an answer changes.
//!
//! Answers:
//! * `Ok(Some(policy))`: use it.
//! * `Ok(None)`: "not mine": the executor uses the policy compiled into the
//!   call site from `recourse.toml` if there is one, else
//!   [`Policy::default_for`].
//! * `Err(error)`: the provider failed; the executor's missing-policy
//!   [`FailureMode`](crate::FailureMode) decides (deny fails the call, allow
//!   runs one attempt, fallback uses [`ProviderError::fallback`], the call
//!   site's catalog policy or the default).

mod dynamic;
#[cfg(feature = "file")]
mod file;
mod layered;
#[cfg(feature = "remote")]
mod remote;
mod static_provider;

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::policy::{Policy, PolicyKey};

pub use dynamic::DynamicProvider;
#[cfg(feature = "file")]
pub use file::{FileError, FileProvider, FileProviderBuilder};
pub use layered::LayeredProvider;
#[cfg(feature = "remote")]
pub use remote::{RemoteError, RemoteProvider, RemoteProviderBuilder};
pub use static_provider::StaticProvider;

/// A source of policies, consulted once per call.
pub trait PolicyProvider: Send + Sync + 'static {
    /// The policy for `key`, `None` for "not configured here", or an error.
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError>;

    /// A counter that changes whenever any answer may have changed.
    ///
    /// The executor caches every resolved policy (per `#[recourse]` call
    /// site, and per key for the function form) and re-resolves only when
    /// this changes, so the steady-state call asks the provider nothing. A
    /// provider whose answers never change keeps the default (always 0);
    /// one that changes must bump it on every change, or calls keep the old
    /// policy ([`DynamicProvider`] does). Answers that were errors are
    /// never cached.
    fn generation(&self) -> u64 {
        0
    }
}

impl<P: PolicyProvider + ?Sized> PolicyProvider for Arc<P> {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        (**self).policy(key)
    }

    fn generation(&self) -> u64 {
        (**self).generation()
    }
}

/// What kind of failure a provider reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderErrorKind {
    /// The provider cannot answer right now (`recourse: policy provider unavailable`).
    Unavailable,
    /// The provider is authoritative and has no such key (`recourse: policy not found`).
    NotFound,
    /// Fetching the policy failed (`recourse: policy fetch failed`).
    FetchFailed,
    /// The provider returned a policy that cannot be used (`recourse: invalid policy`).
    Invalid,
    /// The provider panicked and panic recovery was on.
    Panicked,
}

impl ProviderErrorKind {
    const fn message(self) -> &'static str {
        match self {
            Self::Unavailable => "recourse: policy provider unavailable",
            Self::NotFound => "recourse: policy not found",
            Self::FetchFailed => "recourse: policy fetch failed",
            Self::Invalid => "recourse: invalid policy",
            Self::Panicked => "recourse: policy provider panicked",
        }
    }
}

/// A provider's failure, optionally with a degraded-but-usable policy that
/// the fallback mode prefers over the default.
///
/// ```
/// use recourse::provider::{ProviderError, ProviderErrorKind};
///
/// let err = ProviderError::new(ProviderErrorKind::Unavailable);
/// assert_eq!(err.to_string(), "recourse: policy provider unavailable");
/// ```
#[derive(Debug, Clone)]
pub struct ProviderError {
    kind: ProviderErrorKind,
    source: Option<Arc<dyn StdError + Send + Sync>>,
    fallback: Option<Arc<Policy>>,
}

impl ProviderError {
    /// An error of `kind` with no cause.
    pub fn new(kind: ProviderErrorKind) -> Self {
        Self { kind, source: None, fallback: None }
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Attaches a policy the fallback mode may use instead of the default.
    pub fn with_fallback(mut self, policy: Policy) -> Self {
        self.fallback = Some(Arc::new(policy));
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ProviderErrorKind {
        self.kind
    }

    /// The degraded-but-usable policy, if the provider offered one.
    pub fn fallback(&self) -> Option<&Arc<Policy>> {
        self.fallback.as_ref()
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind.message())
    }
}

impl StdError for ProviderError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn StdError + 'static))
    }
}

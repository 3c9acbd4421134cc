//! Call sites: what `#[recourse]` compiles into every annotated function.

use std::future::Future;
use std::sync::Arc;

use super::Executor;
use super::catalog::CatalogEntry;
use super::drive::{CallKeyRef, Checked, ErrorOps, Sequential, drive};
use super::resolve::{OwnedKey, SiteCache, Source};
use crate::classify::Classify;
use crate::error::Error;
use crate::policy::{Policy, PolicyKey};

/// One `#[recourse]` function's (or `key!`'s) static state: its key, its
/// compiled catalog policy, and a cache of its resolution (see
/// `SiteCache`).
#[doc(hidden)]
pub struct CallSite(SiteCache);

impl std::fmt::Debug for CallSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSite").field("key", self.0.key()).finish_non_exhaustive()
    }
}

impl CallSite {
    pub const fn new(key: PolicyKey, catalog: Option<CatalogEntry>, classifier: Option<&'static str>) -> Self {
        Self(SiteCache::new(key, catalog, classifier))
    }

    /// The call site's key.
    pub fn key(&self) -> &PolicyKey {
        self.0.key()
    }

    /// The compiled catalog policy, built on first use.
    pub fn catalog_policy(&self) -> Option<&Arc<Policy>> {
        self.0.catalog_policy()
    }

    /// Runs `op` under this call site's policy (the closure form).
    ///
    /// `ops` comes from the expansion's `check_result`, which checks the
    /// error type's bounds; this method asks nothing more of it, so a
    /// missing bound is reported once.
    pub fn call<F, Fut, T, E, O>(&self, executor: &Executor, ops: O, op: F) -> impl Future<Output = Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        O: ErrorOps<E>,
    {
        drive(&executor.inner, &self.0, ops, op)
    }

    /// Starts a call whose attempts the caller runs one at a time (the
    /// sequential form `#[recourse]` emits for `&mut` functions).
    pub fn sequential<'x, E, O: ErrorOps<E>>(&'x self, executor: &'x Executor, _: O) -> Sequential<'x, E, O> {
        Sequential::new(&executor.inner, &self.0)
    }
}

impl Executor {
    /// Runs `op` under the policy for `key`.
    ///
    /// `op` is called once per attempt and returns the attempt's future;
    /// shared state it captures is reused, so clone owned data inside it.
    /// The call returns the first success, or the operation's last error
    /// (unchanged) when attempts run out or an error is not retryable, or a
    /// [`recourse::Error`](crate::Error) converted into `E` when recourse
    /// itself ended the call (policy denied, overall timeout, recovered
    /// panic). Dropping the returned future cancels the call: the attempt in
    /// flight is dropped and nothing more happens.
    ///
    /// Classification of a failed attempt: the policy's named classifier,
    /// else the error's own [`Classify`] outcome, else the executor's
    /// default classifier.
    ///
    /// A key given as a string or a [`PolicyKey`] counts against the
    /// executor's cap on distinct keys
    /// ([`ExecutorBuilder::max_keys`](super::ExecutorBuilder::max_keys)):
    /// past it, a call with a new key runs under the fold key or fails,
    /// as [`ExecutorBuilder::key_overflow`](super::ExecutorBuilder::key_overflow)
    /// says. A `recourse::key!` is exempt. Keys name operations, never
    /// request data.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let executor = recourse::Executor::builder().build();
    /// let mut calls = 0;
    /// let result: Result<(), std::io::Error> = executor
    ///     .call("files.Read", || {
    ///         calls += 1;
    ///         async { Err(std::io::Error::from(std::io::ErrorKind::NotFound)) }
    ///     })
    ///     .await;
    /// assert!(result.is_err());
    /// assert_eq!(calls, 1, "NotFound is not retryable");
    /// # }
    /// ```
    pub fn call<K, F, Fut, T, E>(&self, key: K, op: F) -> impl Future<Output = Result<T, E>>
    where
        K: Into<CallKey>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error> + 'static,
    {
        let key = match key.into() {
            CallKey::Key(key) => FnKey::Owned(OwnedKey::new(key, &self.inner)),
            CallKey::Checked(checked) => FnKey::Site(checked.site()),
        };
        drive(&self.inner, key, Checked::<E>::new(), op)
    }
}

/// [`Executor::call`]'s key, owned by the call: a `key!`'s call site, or a
/// key behind the key-cardinality guard, which a fold may turn.
enum FnKey<'i> {
    Site(&'static SiteCache),
    Owned(OwnedKey<'i>),
}

impl CallKeyRef for FnKey<'_> {
    #[inline]
    fn source(&self) -> Source<'_> {
        match self {
            Self::Site(site) => Source::Site(site),
            Self::Owned(key) => Source::Owned(key),
        }
    }
}

/// A policy key checked at compile time by `recourse::key!`, carrying its
/// call site (compiled catalog policy and resolution cache).
///
/// Pass it to [`Executor::call`] like any key.
#[derive(Debug, Clone, Copy)]
pub struct CheckedKey(&'static CallSite);

impl CheckedKey {
    #[doc(hidden)]
    pub const fn new(site: &'static CallSite) -> Self {
        Self(site)
    }

    /// The key.
    pub fn key(&self) -> &'static PolicyKey {
        self.0.key()
    }

    pub(crate) fn site(self) -> &'static SiteCache {
        &self.0.0
    }
}

/// Anything [`Executor::call`] accepts as a key: a string, a
/// [`PolicyKey`], or a [`CheckedKey`] from `recourse::key!`.
#[derive(Debug, Clone)]
pub enum CallKey {
    /// A key resolved on every call.
    Key(PolicyKey),
    /// A compile-time checked key with its own call site.
    Checked(CheckedKey),
}

impl From<&'static str> for CallKey {
    fn from(key: &'static str) -> Self {
        Self::Key(PolicyKey::parse(key))
    }
}

impl From<String> for CallKey {
    fn from(key: String) -> Self {
        Self::Key(PolicyKey::from(key))
    }
}

impl From<PolicyKey> for CallKey {
    fn from(key: PolicyKey) -> Self {
        Self::Key(key)
    }
}

impl From<&PolicyKey> for CallKey {
    fn from(key: &PolicyKey) -> Self {
        Self::Key(key.clone())
    }
}

impl From<CheckedKey> for CallKey {
    fn from(key: CheckedKey) -> Self {
        Self::Checked(key)
    }
}

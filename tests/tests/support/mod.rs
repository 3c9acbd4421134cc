//! Shared helpers for the end-to-end conformance tests.
//!
//! Included by each test file with `mod support;`; every binary uses a
//! different subset, hence the `dead_code` allowance.
#![allow(dead_code, reason = "each test binary uses a different subset of the helpers")]

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use recourse::Executor;
use recourse::classify::{ErrorView, Outcome};
use recourse::executor::{SleepFuture, Sleeper};
use recourse::policy::{Policy, PolicyKey};
use recourse::provider::{PolicyProvider, ProviderError, ProviderErrorKind, StaticProvider};

/// Seed for every executor built here, so jittered sleeps are reproducible.
pub(crate) const SEED: u64 = 0x5EED_2024;

/// The checklist's "test executor" key: namespace empty, name `x`.
pub(crate) const KEY: &str = "x";

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A shared call counter that closures and async blocks can capture by clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counter(Arc<AtomicUsize>);

impl Counter {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Increments and returns the new count (1 for the first call).
    pub(crate) fn hit(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// The checklist's no-op sleeper: records every requested duration and
/// returns at once.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordingSleeper {
    sleeps: Arc<Mutex<Vec<Duration>>>,
}

impl RecordingSleeper {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

impl Sleeper for RecordingSleeper {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        self.sleeps.lock().unwrap_or_else(PoisonError::into_inner).push(duration);
        Box::pin(async {})
    }
}

/// A sleeper whose sleeps never complete. It records every entry and counts
/// how many of its sleep futures were dropped (cancelled).
#[derive(Debug, Clone, Default)]
pub(crate) struct PendingSleeper {
    entered: Arc<Mutex<Vec<Duration>>>,
    dropped: Counter,
}

impl PendingSleeper {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn entered(&self) -> Vec<Duration> {
        self.entered.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn dropped(&self) -> usize {
        self.dropped.get()
    }
}

/// Never ready; counts its own drop.
struct Forever(Counter);

impl Future for Forever {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Drop for Forever {
    fn drop(&mut self) {
        self.0.hit();
    }
}

impl Sleeper for PendingSleeper {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        self.entered.lock().unwrap_or_else(PoisonError::into_inner).push(duration);
        Box::pin(Forever(self.dropped.clone()))
    }
}

/// The checklist's "test executor": a static provider holding `policy`
/// (normally for key `x`), a recording no-op sleeper, seeded jitter.
pub(crate) fn test_executor(policy: Policy) -> (Executor, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder()
        .provider(StaticProvider::new().with(policy))
        .sleeper(sleeper.clone())
        .jitter_seed(SEED)
        .build();
    (executor, sleeper)
}

/// The error type of most tests: a hand-written `Classify` impl with no
/// classification of its own (so the executor's default classifier
/// decides), plus the conversion from `recourse::Error` every operation
/// error needs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TestError {
    /// The operation failed on its `n`-th call.
    #[error("call {0} failed")]
    Failed(usize),
    /// recourse ended the call itself (a real source link, not transparent,
    /// so source-chain walks see the `recourse::Error`).
    #[error("recourse ended the call")]
    Recourse(#[from] recourse::Error),
}

impl recourse::Classify for TestError {
    fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self)
    }
}

impl TestError {
    /// The `recourse::Error` inside, if recourse ended the call.
    pub(crate) fn recourse(&self) -> Option<&recourse::Error> {
        match self {
            Self::Recourse(e) => Some(e),
            Self::Failed(_) => None,
        }
    }
}

/// A boxed error, the other common operation error type (it implements
/// `Classify` through its `source()` chain and converts from `recourse::Error`).
pub(crate) type BoxError = Box<dyn StdError + Send + Sync>;

/// A test stand-in for an HTTP client error (the Go `HTTPError` contract).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status} on {method}")]
pub(crate) struct HttpError {
    pub(crate) status: u16,
    pub(crate) method: &'static str,
    pub(crate) retry_after: Option<Duration>,
}

impl HttpError {
    pub(crate) fn new(status: u16, method: &'static str) -> Self {
        Self { status, method, retry_after: None }
    }

    pub(crate) fn throttled(retry_after: Duration) -> Self {
        Self { status: 429, method: "GET", retry_after: Some(retry_after) }
    }
}

/// Wraps another error once (a `source()` link), like `.context(..)` would.
#[derive(Debug, thiserror::Error)]
#[error("{context}")]
pub(crate) struct Wrapped {
    pub(crate) context: &'static str,
    #[source]
    pub(crate) source: BoxError,
}

pub(crate) fn wrap(context: &'static str, source: impl Into<BoxError>) -> Wrapped {
    Wrapped { context, source: source.into() }
}

/// The type name the hand-written `http` classifier reports as expected.
pub(crate) const HTTP_ERROR_TYPE: &str = "HttpError";

/// The hand-written `http` classifier registered by name in these tests:
/// 5xx on GET retryable (`http_5xx`), 429 on GET retryable (`http_429`) with
/// the backoff override taken from Retry-After, anything else
/// non-retryable; an error that is not an `HttpError` (anywhere in its
/// source chain) is a `classifier_type_mismatch`.
pub(crate) fn http_classifier(error: &dyn ErrorView) -> Outcome {
    let Some(http) = error.find::<HttpError>() else {
        return Outcome::type_mismatch(HTTP_ERROR_TYPE, error.type_name());
    };
    let outcome = match (http.status, http.method) {
        (500..=599, "GET") => Outcome::retryable().with_reason("http_5xx"),
        (429, "GET") => {
            let outcome = Outcome::retryable().with_reason("http_429");
            match http.retry_after {
                Some(after) => outcome.with_backoff(after).with_attribute("retry_after", format!("{after:?}")),
                None => outcome,
            }
        }
        _ => Outcome::non_retryable().with_reason("http_non_retryable_status"),
    };
    outcome.with_attribute("status", http.status.to_string()).with_attribute("method", http.method)
}

/// An executor whose policy for `x` uses the `http` classifier above.
pub(crate) fn http_executor(policy: Policy) -> (Executor, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder()
        .provider(StaticProvider::new().with(policy))
        .classifier("http", http_classifier)
        .sleeper(sleeper.clone())
        .jitter_seed(SEED)
        .build();
    (executor, sleeper)
}

/// A provider that always fails with `Unavailable`, optionally offering a
/// degraded fallback policy, and counts its consultations.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailingProvider {
    pub(crate) fallback: Option<Policy>,
    pub(crate) calls: Counter,
}

impl PolicyProvider for FailingProvider {
    fn policy(&self, _key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        self.calls.hit();
        let error = ProviderError::new(ProviderErrorKind::Unavailable);
        Err(match &self.fallback {
            Some(policy) => error.with_fallback(policy.clone()),
            None => error,
        })
    }
}

/// A provider that returns exactly the policy it holds, as it is (no
/// normalization on the way in, unlike `StaticProvider`).
#[derive(Debug, Clone)]
pub(crate) struct RawProvider(pub(crate) Arc<Policy>);

impl PolicyProvider for RawProvider {
    fn policy(&self, _key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        Ok(Some(Arc::clone(&self.0)))
    }
}

/// The error and its `source()` chain, outermost first.
pub(crate) fn chain<'a>(error: &'a (dyn StdError + 'static)) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |e: &&'a (dyn StdError + 'static)| (*e).source())
}

/// The first link of `error`'s source chain that is a `T`.
pub(crate) fn find_in_chain<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    chain(error).find_map(|e| e.downcast_ref::<T>())
}

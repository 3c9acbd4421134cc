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

#[cfg(feature = "redis")]
pub(crate) mod redis;
#[cfg(feature = "remote")]
pub(crate) mod remote;

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

/// A budget that counts its consultations and the releases of the attempts
/// it allowed; `deny` decides (from the attempt index) which attempts it
/// refuses. Every allowed decision carries a counting release.
#[derive(Clone)]
pub(crate) struct CountingBudget {
    pub(crate) consulted: Counter,
    pub(crate) allowed: Counter,
    pub(crate) released: Counter,
    deny: Arc<dyn Fn(u32) -> bool + Send + Sync>,
}

impl std::fmt::Debug for CountingBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingBudget")
            .field("consulted", &self.consulted.get())
            .field("allowed", &self.allowed.get())
            .field("released", &self.released.get())
            .finish_non_exhaustive()
    }
}

impl CountingBudget {
    /// Allows every attempt.
    pub(crate) fn new() -> Self {
        Self::denying(|_| false)
    }

    /// Denies the attempts for which `deny(attempt_index)` is true.
    pub(crate) fn denying(deny: impl Fn(u32) -> bool + Send + Sync + 'static) -> Self {
        Self { consulted: Counter::new(), allowed: Counter::new(), released: Counter::new(), deny: Arc::new(deny) }
    }
}

impl recourse::budget::Budget for CountingBudget {
    fn allow_attempt(
        &self,
        _key: &PolicyKey,
        attempt: u32,
        _kind: recourse::budget::AttemptKind,
        _budget: &recourse::policy::BudgetRef,
    ) -> recourse::budget::Decision {
        self.consulted.hit();
        if (self.deny)(attempt) {
            return recourse::budget::Decision::deny();
        }
        self.allowed.hit();
        let released = self.released.clone();
        recourse::budget::Decision::allow_with_release(move || {
            released.hit();
        })
    }
}

/// An observer that writes every event, in order, as a short line, and
/// keeps the payloads: `start` / `start(none)`,
/// `budget(<attempt>,<kind>,allowed|denied)`, `attempt(<attempt>)` /
/// `attempt(<attempt>,denied)`, `hedge_spawn(<attempt>,h<index>)`,
/// `hedge_cancel(<attempt>,h<index>,<reason>)`, `success(<records>)`,
/// `failure(<records>)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RecordingObserver {
    log: Arc<Mutex<Vec<String>>>,
    starts: Arc<Mutex<Vec<Option<Policy>>>>,
    records: Arc<Mutex<Vec<recourse::AttemptRecord>>>,
    /// `recourse::attempt()` as seen inside each `on_attempt`.
    scopes: Arc<Mutex<Vec<Option<recourse::Attempt>>>>,
    budgets: Arc<Mutex<Vec<recourse::budget::BudgetDecisionEvent>>>,
    /// `(succeeded, timeline)` for each `on_success` / `on_failure`.
    ends: Arc<Mutex<Vec<(bool, recourse::Timeline)>>>,
    keys: Arc<Mutex<Vec<PolicyKey>>>,
    /// Every `on_circuit_change`, in order.
    transitions: Arc<Mutex<Vec<recourse::circuit::Transition>>>,
}

fn locked<T: Clone>(m: &Mutex<Vec<T>>) -> Vec<T> {
    m.lock().unwrap_or_else(PoisonError::into_inner).clone()
}

fn push<T>(m: &Mutex<Vec<T>>, value: T) {
    m.lock().unwrap_or_else(PoisonError::into_inner).push(value);
}

impl RecordingObserver {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Every event so far, as lines.
    pub(crate) fn log(&self) -> Vec<String> {
        locked(&self.log)
    }

    /// How many logged events start with `prefix`.
    pub(crate) fn count(&self, prefix: &str) -> usize {
        self.log().iter().filter(|e| e.starts_with(prefix)).count()
    }

    pub(crate) fn starts(&self) -> Vec<Option<Policy>> {
        locked(&self.starts)
    }

    pub(crate) fn records(&self) -> Vec<recourse::AttemptRecord> {
        locked(&self.records)
    }

    pub(crate) fn scopes(&self) -> Vec<Option<recourse::Attempt>> {
        locked(&self.scopes)
    }

    pub(crate) fn budget_events(&self) -> Vec<recourse::budget::BudgetDecisionEvent> {
        locked(&self.budgets)
    }

    pub(crate) fn ends(&self) -> Vec<(bool, recourse::Timeline)> {
        locked(&self.ends)
    }

    /// The key passed to every keyed callback, in order.
    pub(crate) fn keys(&self) -> Vec<PolicyKey> {
        locked(&self.keys)
    }

    /// Every circuit transition reported, in order.
    pub(crate) fn transitions(&self) -> Vec<recourse::circuit::Transition> {
        locked(&self.transitions)
    }
}

impl recourse::observe::Observer for RecordingObserver {
    fn on_start(&self, key: &PolicyKey, policy: Option<&Policy>) {
        push(&self.keys, key.clone());
        push(&self.log, if policy.is_some() { "start".to_owned() } else { "start(none)".to_owned() });
        push(&self.starts, policy.cloned());
    }

    fn on_attempt(&self, key: &PolicyKey, record: &recourse::AttemptRecord) {
        push(&self.keys, key.clone());
        let line = if record.budget_allowed {
            format!("attempt({})", record.attempt)
        } else {
            format!("attempt({},denied)", record.attempt)
        };
        push(&self.log, line);
        push(&self.records, record.clone());
        push(&self.scopes, recourse::attempt());
    }

    fn on_hedge_spawn(&self, key: &PolicyKey, record: &recourse::AttemptRecord) {
        push(&self.keys, key.clone());
        push(&self.log, format!("hedge_spawn({},h{})", record.attempt, record.hedge_index));
    }

    fn on_hedge_cancel(&self, key: &PolicyKey, record: &recourse::AttemptRecord, reason: &str) {
        push(&self.keys, key.clone());
        push(&self.log, format!("hedge_cancel({},h{},{reason})", record.attempt, record.hedge_index));
    }

    fn on_budget_decision(&self, event: &recourse::budget::BudgetDecisionEvent) {
        let verdict = if event.allowed { "allowed" } else { "denied" };
        push(&self.log, format!("budget({},{},{verdict})", event.attempt, event.kind));
        push(&self.budgets, event.clone());
    }

    fn on_success(&self, key: &PolicyKey, timeline: &recourse::Timeline) {
        push(&self.keys, key.clone());
        push(&self.log, format!("success({})", timeline.attempts.len()));
        push(&self.ends, (true, timeline.clone()));
    }

    fn on_failure(&self, key: &PolicyKey, timeline: &recourse::Timeline) {
        push(&self.keys, key.clone());
        push(&self.log, format!("failure({})", timeline.attempts.len()));
        push(&self.ends, (false, timeline.clone()));
    }

    /// Logged as `circuit(<from>-><to>)`, e.g. `circuit(closed->open)`.
    fn on_circuit_change(&self, key: &PolicyKey, transition: recourse::circuit::Transition) {
        push(&self.keys, key.clone());
        push(&self.log, format!("circuit({}->{})", transition.from, transition.to));
        push(&self.transitions, transition);
    }
}

/// A future that returns `Pending` (waking itself) `n` times, then
/// completes: an operation with `n` await points that need no timer.
pub(crate) async fn yield_times(n: usize) {
    for _ in 0..n {
        tokio::task::yield_now().await;
    }
}

/// A paused current-thread runtime with the timer enabled, for tests that
/// drive futures by hand.
pub(crate) fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a current-thread runtime")
}

// ---------------------------------------------------------------------------
// Hedging, circuit breaking and stress helpers.

/// An operation error that classifies itself (no classifier needed): the
/// tag says which attempt produced it.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum OpError {
    /// Retryable, reason `op_retryable`.
    #[error("{0}: retryable failure")]
    Retryable(&'static str),
    /// Non-retryable, reason `op_fatal`.
    #[error("{0}: non-retryable failure")]
    Fatal(&'static str),
    /// Abort, reason `op_aborted`.
    #[error("{0}: aborted")]
    Aborted(&'static str),
    /// recourse ended the call itself.
    #[error("recourse ended the call: {0}")]
    Recourse(#[from] recourse::Error),
}

impl OpError {
    /// The `recourse::Error` inside, if recourse ended the call.
    pub(crate) fn recourse(&self) -> Option<&recourse::Error> {
        match self {
            Self::Recourse(e) => Some(e),
            _ => None,
        }
    }

    /// The kind and tag of an operation error (`None` for recourse's own).
    pub(crate) fn op(&self) -> Option<(recourse::OutcomeKind, &'static str)> {
        match *self {
            Self::Retryable(tag) => Some((recourse::OutcomeKind::Retryable, tag)),
            Self::Fatal(tag) => Some((recourse::OutcomeKind::NonRetryable, tag)),
            Self::Aborted(tag) => Some((recourse::OutcomeKind::Abort, tag)),
            Self::Recourse(_) => None,
        }
    }
}

impl recourse::Classify for OpError {
    fn classify(&self) -> Option<Outcome> {
        Some(match self {
            Self::Retryable(_) => Outcome::retryable().with_reason("op_retryable"),
            Self::Fatal(_) => Outcome::non_retryable().with_reason("op_fatal"),
            Self::Aborted(_) => Outcome::abort().with_reason("op_aborted"),
            Self::Recourse(e) => e.outcome(),
        })
    }

    fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self)
    }
}

/// Tells whether a future was dropped before it finished: the future holds
/// a [`DropGuard`] and disarms it when it completes normally.
#[derive(Debug, Clone, Default)]
pub(crate) struct DropFlag {
    armed: Counter,
    dropped: Counter,
}

impl DropFlag {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A guard to hold across the awaits that may be cut short.
    pub(crate) fn guard(&self) -> DropGuard {
        self.armed.hit();
        DropGuard { dropped: Some(self.dropped.clone()) }
    }

    /// How many guards were handed out.
    pub(crate) fn armed(&self) -> usize {
        self.armed.get()
    }

    /// How many guards were dropped without being disarmed.
    pub(crate) fn dropped(&self) -> usize {
        self.dropped.get()
    }
}

/// See [`DropFlag`].
#[derive(Debug)]
pub(crate) struct DropGuard {
    dropped: Option<Counter>,
}

impl DropGuard {
    /// The future finished normally.
    pub(crate) fn disarm(mut self) {
        self.dropped = None;
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(dropped) = self.dropped.take() {
            dropped.hit();
        }
    }
}

/// A tiny seeded xorshift64 generator, for reproducible random scenarios.
#[derive(Debug, Clone)]
pub(crate) struct XorShift(u64);

impl XorShift {
    pub(crate) fn new(seed: u64) -> Self {
        // Spread small seeds and never start at zero (a fixed point).
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A hedge trigger that launches every hedge at once, as soon as the
/// primary is launched: all attempts of a group race from the start.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Immediate;

impl recourse::hedge::HedgeTrigger for Immediate {
    fn should_spawn(&self, state: &recourse::hedge::HedgeState<'_>) -> recourse::hedge::TriggerDecision {
        if state.limit_reached() {
            recourse::hedge::TriggerDecision::Stop
        } else {
            recourse::hedge::TriggerDecision::Spawn
        }
    }
}

/// The built-in classifier names (`always`, `auto`, `never`, and `http` or
/// `grpc` when their features are on) with `extra`, sorted.
pub(crate) fn builtin_classifiers_and(extra: &[&str]) -> Vec<String> {
    let (classifiers, _, _): (&[&str], &[&str], &[&str]) = recourse::__private::__builtin_names!();
    let mut names: Vec<String> = classifiers.iter().chain(extra).map(ToString::to_string).collect();
    names.sort();
    assert!(["always", "auto", "never"].iter().all(|name| names.iter().any(|n| n == name)));
    names
}

#[cfg(any(feature = "http", feature = "tower"))]
pub(crate) mod server;

#[cfg(feature = "tracing")]
pub(crate) mod trace;

/// Records every `on_policy_error`: `(key, source, error)`.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicyErrors(Arc<Mutex<Vec<(String, recourse::policy::PolicySource, String)>>>);

impl PolicyErrors {
    /// Everything heard so far.
    pub(crate) fn heard(&self) -> Vec<(String, recourse::policy::PolicySource, String)> {
        locked(&self.0)
    }

    /// `(key, error)` heard since the last call, forgetting them.
    pub(crate) fn take(&self) -> Vec<(String, String)> {
        let heard = std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner));
        heard.into_iter().map(|(key, _, error)| (key, error)).collect()
    }
}

impl recourse::observe::Observer for PolicyErrors {
    fn on_policy_error(&self, key: &PolicyKey, policy: &Policy, error: &str) {
        push(&self.0, (key.to_string(), policy.meta.source, error.to_owned()));
    }
}

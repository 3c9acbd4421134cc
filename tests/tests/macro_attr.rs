//! `#[recourse]`, `recourse::key!` and the compiled catalog, end to end.
//!
//! Keys are checked at compile time against `tests/recourse.toml`; every
//! test runs on paused tokio time with an executor of its own (passed with
//! `executor = ...`), so tests never share call-site state by accident.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use recourse::policy::{Policy, PolicyKey, PolicySource};
use recourse::provider::{DynamicProvider, PolicyProvider, ProviderError};
use recourse::{Classifier, Executor, OutcomeKind, recourse};
use support::{Counter, RecordingSleeper, ms};

#[derive(Debug, thiserror::Error, Classifier)]
enum ApiError {
    #[error("connection reset")]
    #[classify(retryable)]
    Reset,
    #[error("throttled")]
    #[classify(retryable, reason = "throttled", backoff = retry_after)]
    Throttled { retry_after: Duration },
    #[error("not found")]
    #[classify(non_retryable)]
    NotFound,
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

fn executor() -> (Executor, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    (Executor::builder().sleeper(sleeper.clone()).jitter_seed(support::SEED).build(), sleeper)
}

/// Fails with the given errors in turn, then succeeds with the attempt count.
struct Flaky {
    calls: Counter,
    script: Vec<fn() -> ApiError>,
}

impl Flaky {
    fn new(script: Vec<fn() -> ApiError>) -> Self {
        Self { calls: Counter::new(), script }
    }

    // `inventory.Reserve`: 4 attempts, 20 ms doubling, no jitter.
    #[recourse(policy = "inventory.Reserve", executor = executor)]
    async fn reserve(&self, executor: &Executor, item: u64) -> Result<u64, ApiError> {
        let call = self.calls.hit();
        match self.script.get(call - 1) {
            Some(error) => Err(error()),
            None => Ok(item * 10 + call as u64),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn retries_follow_the_catalog_policy() {
    let (executor, sleeper) = executor();
    let flaky = Flaky::new(vec![|| ApiError::Reset, || ApiError::Reset]);
    assert_eq!(flaky.reserve(&executor, 4).await.unwrap(), 43);
    assert_eq!(flaky.calls.get(), 3);
    assert_eq!(sleeper.sleeps(), [ms(20), ms(40)], "catalog: initial 20ms ×2");

    let exhausted = Flaky::new(vec![|| ApiError::Reset; 10]);
    assert!(matches!(exhausted.reserve(&executor, 1).await, Err(ApiError::Reset)));
    assert_eq!(exhausted.calls.get(), 4, "catalog: max_attempts = 4");
}

#[tokio::test(start_paused = true)]
async fn the_derived_classifier_decides_and_its_backoff_field_is_honoured() {
    let (executor, sleeper) = executor();
    let not_found = Flaky::new(vec![|| ApiError::NotFound]);
    assert!(matches!(not_found.reserve(&executor, 1).await, Err(ApiError::NotFound)));
    assert_eq!(not_found.calls.get(), 1, "non_retryable stops at once");

    let throttled = Flaky::new(vec![|| ApiError::Throttled { retry_after: Duration::from_millis(700) }]);
    assert_eq!(throttled.reserve(&executor, 1).await.unwrap(), 12);
    assert_eq!(sleeper.sleeps(), [ms(700)], "Retry-After replaces the 20ms backoff");
}

#[tokio::test(start_paused = true)]
async fn the_timeline_names_the_catalog_as_policy_source() {
    let (executor, _) = executor();
    let flaky = Flaky::new(vec![|| ApiError::Reset]);
    let (result, timeline) = recourse::capture(flaky.reserve(&executor, 2)).await;
    assert_eq!(result.unwrap(), 22);
    assert_eq!(timeline.policy_source, PolicySource::Catalog);
    assert_eq!(timeline.key, PolicyKey::parse("inventory.Reserve"));
    assert_eq!(timeline.attempts.len(), 2);
    assert_eq!(timeline.attempts[0].outcome.reason, "reset");
}

#[derive(Debug, Clone, PartialEq)]
struct Payload(Vec<u32>);

#[recourse(policy = "users.Get", executor = executor)]
async fn consume(
    executor: &Executor,
    mut payload: Payload,
    seen: &std::sync::Mutex<Vec<Payload>>,
) -> Result<usize, ApiError> {
    // Each attempt gets its own clone of the by-value argument: mutations
    // of one attempt never leak into the next.
    seen.lock().unwrap().push(payload.clone());
    payload.0.push(99);
    if seen.lock().unwrap().len() < 3 { Err(ApiError::Reset) } else { Ok(payload.0.len()) }
}

#[tokio::test(start_paused = true)]
async fn by_value_arguments_are_fresh_for_every_attempt() {
    let (executor, _) = executor();
    let seen = std::sync::Mutex::new(Vec::new());
    let len = consume(&executor, Payload(vec![1, 2]), &seen).await.unwrap();
    assert_eq!(len, 3);
    assert_eq!(*seen.lock().unwrap(), vec![Payload(vec![1, 2]); 3]);
}

struct Account {
    balance: u64,
    attempts: u32,
}

impl Account {
    // `&mut self`: attempts run one after another in the sequential form.
    #[recourse(policy = "users.Update", executor = executor)]
    async fn withdraw(&mut self, executor: &Executor, amount: u64) -> Result<u64, ApiError> {
        self.attempts += 1;
        if self.attempts < 3 {
            return Err(ApiError::Reset);
        }
        self.balance -= amount;
        Ok(self.balance)
    }
}

#[tokio::test(start_paused = true)]
async fn mut_self_methods_retry_sequentially() {
    let (executor, sleeper) = executor();
    let mut account = Account { balance: 100, attempts: 0 };
    assert_eq!(account.withdraw(&executor, 30).await.unwrap(), 70);
    assert_eq!(account.attempts, 3);
    assert_eq!(sleeper.sleeps(), [ms(5), ms(10)], "catalog users.Update: initial 5ms");
}

fn assert_send<T: Send>(_: &T) {}

#[test]
fn futures_of_annotated_functions_are_send() {
    let (executor, _) = executor();
    let flaky = Flaky::new(Vec::new());
    assert_send(&flaky.reserve(&executor, 1));
    let seen = std::sync::Mutex::new(Vec::new());
    assert_send(&consume(&executor, Payload(vec![]), &seen));
    let mut account = Account { balance: 1, attempts: 0 };
    assert_send(&account.withdraw(&executor, 1));
}

/// Counts lookups, to observe the call site's cache.
#[derive(Default)]
struct Counting {
    inner: DynamicProvider,
    lookups: AtomicUsize,
}

impl PolicyProvider for Counting {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.inner.policy(key)
    }

    fn generation(&self) -> u64 {
        self.inner.generation()
    }
}

#[recourse(policy = "catalog.Reloaded", executor = executor)]
async fn reloaded(executor: &Executor, calls: &Counter) -> Result<(), ApiError> {
    calls.hit();
    Err(ApiError::Reset)
}

#[tokio::test(start_paused = true)]
async fn call_sites_cache_resolution_and_pick_up_runtime_changes() {
    let provider = Arc::new(Counting::default());
    let executor = Executor::builder().provider(Arc::clone(&provider)).sleeper(RecordingSleeper::new()).build();

    let calls = Counter::new();
    for _ in 0..5 {
        assert!(reloaded(&executor, &calls).await.is_err());
    }
    assert_eq!(calls.get(), 5 * 2, "catalog: max_attempts = 2");
    assert_eq!(provider.lookups.load(Ordering::SeqCst), 1, "steady state: no provider lookup");

    // A run-time override is picked up on the next call.
    provider.inner.set(Policy::builder("catalog.Reloaded").max_attempts(5).build());
    let calls = Counter::new();
    assert!(reloaded(&executor, &calls).await.is_err());
    assert_eq!(calls.get(), 5);
    assert_eq!(provider.lookups.load(Ordering::SeqCst), 2);

    // Removing it falls back to the catalog policy again.
    provider.inner.remove(&PolicyKey::parse("catalog.Reloaded"));
    let calls = Counter::new();
    let (_, timeline) = recourse::capture(reloaded(&executor, &calls)).await;
    assert_eq!(calls.get(), 2);
    assert_eq!(timeline.policy_source, PolicySource::Catalog);
}

#[derive(Debug, thiserror::Error)]
#[error("opaque")]
struct Opaque;

impl recourse::Classify for Opaque {}
impl From<recourse::Error> for Opaque {
    fn from(_: recourse::Error) -> Self {
        Self
    }
}

// Precedence, highest first: the attribute's classifier, the policy's
// classifier, the error type's own classification, the executor default.
#[recourse(policy = "catalog.Classified", classifier = "always", executor = executor)]
async fn attribute_wins(executor: &Executor, calls: &Counter) -> Result<(), ApiError> {
    calls.hit();
    Err(ApiError::NotFound)
}

#[recourse(policy = "catalog.Classified", executor = executor)]
async fn policy_classifier_wins(executor: &Executor, calls: &Counter) -> Result<(), ApiError> {
    calls.hit();
    Err(ApiError::Reset)
}

#[recourse(policy = "users.Get", executor = executor)]
async fn own_classification_wins(executor: &Executor, calls: &Counter) -> Result<(), ApiError> {
    calls.hit();
    Err(ApiError::NotFound)
}

#[recourse(policy = "users.Get", executor = executor)]
async fn executor_default_decides(executor: &Executor, calls: &Counter) -> Result<(), Opaque> {
    calls.hit();
    Err(Opaque)
}

#[tokio::test(start_paused = true)]
async fn classifier_precedence() {
    let (executor, _) = executor();
    let calls = Counter::new();
    let _ = attribute_wins(&executor, &calls).await;
    assert_eq!(calls.get(), 5, "attribute `always` beats policy `never` and the error's non_retryable");

    let calls = Counter::new();
    let _ = policy_classifier_wins(&executor, &calls).await;
    assert_eq!(calls.get(), 1, "policy `never` beats the error's retryable");

    let calls = Counter::new();
    let _ = own_classification_wins(&executor, &calls).await;
    assert_eq!(calls.get(), 1, "the error's non_retryable beats the default `auto`");

    let never = Executor::builder().default_classifier(recourse::classify::NeverRetry).build();
    let calls = Counter::new();
    let _ = executor_default_decides(&never, &calls).await;
    assert_eq!(calls.get(), 1, "no other opinion: the executor default decides");
    let calls = Counter::new();
    let _ = executor_default_decides(&executor, &calls).await;
    assert_eq!(calls.get(), 3, "default `auto` retries an opaque error");
}

#[recourse(policy = "catalog.Timeout", executor = executor)]
async fn slow(executor: &Executor, calls: &Counter) -> Result<(), ApiError> {
    calls.hit();
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn catalog_timeouts_apply() {
    let (executor, _) = executor();
    let calls = Counter::new();
    let result = slow(&executor, &calls).await;
    assert!(matches!(result, Err(ApiError::Recourse(recourse::Error::AttemptTimeout { .. }))), "{result:?}");
    assert_eq!(calls.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn checked_keys_carry_their_catalog_policy() {
    let (executor, sleeper) = executor();
    let key = recourse::key!("inventory.Reserve");
    assert_eq!(key.key(), &PolicyKey::parse("inventory.Reserve"));
    let calls = Counter::new();
    let result: Result<(), std::io::Error> = executor
        .call(key, || {
            calls.hit();
            async { Err(std::io::ErrorKind::ConnectionReset.into()) }
        })
        .await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 4, "the catalog's 4 attempts, not the default 3");
    assert_eq!(sleeper.sleeps(), [ms(20), ms(40), ms(80)]);
}

#[tokio::test(start_paused = true)]
async fn the_global_executor_is_the_default() {
    #[recourse(policy = "users.Get")]
    async fn through_global(calls: &Counter) -> Result<u32, ApiError> {
        if calls.hit() < 2 { Err(ApiError::Reset) } else { Ok(7) }
    }
    let calls = Counter::new();
    assert_eq!(through_global(&calls).await.unwrap(), 7);
    assert_eq!(calls.get(), 2);
}

#[test]
fn outcome_kinds_of_the_derive_are_what_the_attribute_says() {
    use recourse::Classify;
    assert_eq!(ApiError::Reset.classify().unwrap().kind, OutcomeKind::Retryable);
    assert_eq!(ApiError::NotFound.classify().unwrap().kind, OutcomeKind::NonRetryable);
}

/// The rebuild mechanism: rustc lists every file read by `include_bytes!`
/// in this test binary's dep-info, and cargo reruns the build when one of
/// them changes. The catalog must be there.
#[test]
fn the_catalog_is_a_build_dependency() {
    let exe = std::env::current_exe().unwrap();
    let dep_info = exe.with_extension("d");
    let dep_info =
        std::fs::read_to_string(&dep_info).unwrap_or_else(|e| panic!("dep-info {} not found: {e}", dep_info.display()));
    let catalog = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("recourse.toml").canonicalize().unwrap();
    let target = format!("{}:", catalog.display());
    assert!(
        dep_info.lines().any(|line| line.starts_with(&target)),
        "{} is not a dependency of this test binary:\n{dep_info}",
        catalog.display()
    );
}

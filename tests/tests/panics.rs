//! Section R of the conformance checklist: panic recovery
//! (`retry/panic_test.go`), items 77–78, plus the spec §12.12 table.
//!
//! Go finds `NoPolicyError` / `PanicError` with `errors.As`; the Rust
//! equivalent walks `std::error::Error::source()` from the returned error.
#![allow(missing_docs)]

mod support;

use std::io;
use std::sync::Arc;

use recourse::circuit::{Breaker, ConsecutiveFailures, Decision, Registry, State, Transition};
use recourse::classify::{ErrorView, Outcome, OutcomeKind};
use recourse::policy::{Policy, PolicyKey};
use recourse::provider::{PolicyProvider, ProviderError, ProviderErrorKind};
use recourse::{Classify, Component, Executor, FailureMode, PanicError};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use support::{Counter, KEY, RecordingSleeper, TestError, chain, find_in_chain};

struct PanickingProvider;

impl PolicyProvider for PanickingProvider {
    fn policy(&self, _key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        panic!("provider exploded");
    }
}

fn panicking_classifier(_: &dyn ErrorView) -> Outcome {
    panic!("classifier exploded");
}

/// An error whose own `Classify` panics.
#[derive(Debug, thiserror::Error)]
enum GrumpyError {
    #[error("grumpy")]
    Grumpy,
    #[error("recourse ended the call")]
    Recourse(#[from] recourse::Error),
}

impl Classify for GrumpyError {
    fn classify(&self) -> Option<Outcome> {
        match self {
            Self::Grumpy => panic!("own classification exploded"),
            Self::Recourse(e) => Some(e.outcome()),
        }
    }

    fn as_error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self)
    }
}

/// A `PanicError` found the way a user would: a link of the source chain,
/// or the payload of a `recourse::Error::Panic` link.
fn find_panic<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a PanicError> {
    chain(error).find_map(|link| {
        link.downcast_ref::<PanicError>().or_else(|| match link.downcast_ref::<recourse::Error>() {
            Some(recourse::Error::Panic(p)) => Some(p),
            _ => None,
        })
    })
}

// R77
#[tokio::test(start_paused = true)]
async fn r77_provider_panic_is_recovered_into_no_policy_with_a_panic_error_in_the_chain() {
    let executor =
        Executor::builder().provider(PanickingProvider).recover_panics(true).missing_policy(FailureMode::Deny).build();
    let calls = Counter::new();
    let result: Result<(), TestError> = executor
        .call(KEY, || {
            calls.hit();
            async { Ok(()) }
        })
        .await;
    assert_eq!(calls.get(), 0);
    let error = result.unwrap_err();
    let root: &(dyn std::error::Error + 'static) = &error;

    let no_policy = find_in_chain::<recourse::Error>(root).expect("a recourse::Error in the chain");
    let recourse::Error::NoPolicy { key, source } = no_policy else { panic!("expected NoPolicy, got {no_policy:?}") };
    assert_eq!(*key, PolicyKey::parse(KEY));
    assert_eq!(source.kind(), ProviderErrorKind::Panicked);

    let panic = find_in_chain::<PanicError>(root).expect("a PanicError is a link of the source chain");
    assert_eq!(panic.component, Component::PolicyProvider);
    assert_eq!(panic.component.as_str(), "policy_provider");
    assert_eq!(panic.key, PolicyKey::parse(KEY));
    assert_eq!(panic.message, "provider exploded");
    assert_eq!(panic.to_string(), "recourse: panic in policy_provider for x: provider exploded");
}

// R77 (spec §12.12): allow / fallback swallow a recovered provider panic
// like any provider error; the timeline says what happened.
#[tokio::test(start_paused = true)]
async fn r77_provider_panic_with_fallback_runs_the_default_policy() {
    let executor = Executor::builder()
        .provider(PanickingProvider)
        .recover_panics(true)
        .missing_policy(FailureMode::Fallback)
        .sleeper(RecordingSleeper::new())
        .build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        let n = calls.hit();
        async move { Err::<(), _>(TestError::Failed(n)) }
    }))
    .await;
    assert!(matches!(result, Err(TestError::Failed(3))));
    assert_eq!(calls.get(), 3, "the default policy's 3 attempts");
    assert_eq!(timeline.attributes.get("policy_error"), Some("recourse: policy provider panicked"));
    assert_eq!(timeline.attributes.get("policy_fallback"), Some("fallback"));
}

// R77 (recovery off): the provider's panic propagates to the caller.
#[tokio::test(start_paused = true)]
#[should_panic(expected = "provider exploded")]
async fn r77_provider_panic_propagates_without_recovery() {
    let executor = Executor::builder().provider(PanickingProvider).build();
    let _: Result<(), io::Error> = executor.call(KEY, || async { Ok(()) }).await;
}

fn classifier_panic_executor(recover: bool) -> Executor {
    Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).classifier("boom").build())
        .classifier("boom", panicking_classifier)
        .recover_panics(recover)
        .sleeper(RecordingSleeper::new())
        .build()
}

// R78, adapted: Go classifies the successful value too, so its op
// succeeds; in Rust an `Ok` is never classified, so the op fails once and
// the panicking classifier ends the call with `Error::Panic` (component
// classifier), without retrying.
#[tokio::test(start_paused = true)]
async fn r78_classifier_panic_is_recovered_into_a_panic_error() {
    let executor = classifier_panic_executor(true);
    let calls = Counter::new();
    let result: Result<(), TestError> = executor
        .call(KEY, || {
            let n = calls.hit();
            async move { Err(TestError::Failed(n)) }
        })
        .await;
    assert_eq!(calls.get(), 1, "no retry after a classifier panic");
    let error = result.unwrap_err();
    let panic = find_panic(&error).expect("a PanicError is reachable from the returned error");
    assert_eq!(panic.component, Component::Classifier);
    assert_eq!(panic.key, PolicyKey::parse(KEY));
    assert_eq!(panic.message, "classifier exploded");
    assert_eq!(recourse::Error::Panic(panic.clone()).outcome().reason, "panic_in_classifier");
}

// R78, literally as the checklist states it for Rust: walking the
// `source()` chain (the `errors.As` analogue) finds the `PanicError`, as it
// does for the provider panic in R77.
#[tokio::test(start_paused = true)]
async fn r78_classifier_panic_error_is_a_link_of_the_source_chain() {
    let executor = classifier_panic_executor(true);
    let result: Result<(), TestError> = executor.call(KEY, || async { Err(TestError::Failed(1)) }).await;
    let error = result.unwrap_err();
    let panic = find_in_chain::<PanicError>(&error).expect("a PanicError link in the source chain");
    assert_eq!(panic.component, Component::Classifier);
}

// R78 (§6.1 one engine): with a capture the outcome is the same, and the
// timeline records the abort `panic_in_classifier`.
#[tokio::test(start_paused = true)]
async fn r78_classifier_panic_with_capture_records_the_abort() {
    let executor = classifier_panic_executor(true);
    let (result, timeline) =
        recourse::capture(executor.call(KEY, || async { Err::<(), _>(TestError::Failed(1)) })).await;
    let error = result.unwrap_err();
    assert!(matches!(error.recourse(), Some(recourse::Error::Panic(p)) if p.component == Component::Classifier));
    assert_eq!(timeline.attempts.len(), 1);
    assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::Abort);
    assert_eq!(timeline.attempts[0].outcome.reason, "panic_in_classifier");
    let final_error = timeline.final_error.expect("failed");
    assert_eq!(final_error.reason, "panic_in_classifier");
}

// R78: a successful attempt never reaches the panicking classifier.
#[tokio::test(start_paused = true)]
async fn r78_success_never_consults_the_panicking_classifier() {
    let executor = classifier_panic_executor(false);
    let value: Result<u8, TestError> = executor.call(KEY, || async { Ok(1) }).await;
    assert_eq!(value.unwrap(), 1);
}

// R78 (spec §12.12): an error type's own `Classify` counts as the
// classifier component.
#[tokio::test(start_paused = true)]
async fn r78_own_classify_panic_is_recovered_as_classifier() {
    let executor = Executor::builder().recover_panics(true).build();
    let calls = Counter::new();
    let result: Result<(), GrumpyError> = executor
        .call(KEY, || {
            calls.hit();
            async { Err(GrumpyError::Grumpy) }
        })
        .await;
    assert_eq!(calls.get(), 1);
    let error = result.unwrap_err();
    let panic = find_panic(&error).expect("recovered");
    assert_eq!(panic.component, Component::Classifier);
    assert_eq!(panic.message, "own classification exploded");
}

// R78 (recovery off): the classifier's panic propagates.
#[tokio::test(start_paused = true)]
#[should_panic(expected = "classifier exploded")]
async fn r78_classifier_panic_propagates_without_recovery() {
    let executor = classifier_panic_executor(false);
    let _: Result<(), TestError> = executor.call(KEY, || async { Err(TestError::Failed(1)) }).await;
}

// Spec §12.12: the operation's own panic is never recovered.
#[tokio::test(start_paused = true)]
#[should_panic(expected = "operation exploded")]
async fn operation_panic_always_propagates() {
    let executor = Executor::builder().recover_panics(true).build();
    let _: Result<(), io::Error> = executor.call(KEY, || async { panic!("operation exploded") }).await;
}

// The two breaker defects the chaos soak (tests/tests/soak.rs) found.
/// A consecutive-failures breaker whose verdicts panic (before reaching
/// it) while `panicky_verdicts`, and whose `release_probe` panics (after handing the
/// slot back) while `panicky_release`.
struct Grumpy {
    inner: ConsecutiveFailures,
    panicky_verdicts: AtomicBool,
    panicky_release: AtomicBool,
}

impl Grumpy {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: ConsecutiveFailures::new(1, Duration::from_millis(100)),
            panicky_verdicts: AtomicBool::new(false),
            panicky_release: AtomicBool::new(false),
        })
    }
}

impl Breaker for Grumpy {
    fn allow(&self) -> Decision {
        self.inner.allow()
    }
    fn record_success(&self) -> Option<Transition> {
        assert!(!self.panicky_verdicts.load(Ordering::Relaxed), "verdict exploded");
        self.inner.record_success()
    }
    fn record_failure(&self) -> Option<Transition> {
        assert!(!self.panicky_verdicts.load(Ordering::Relaxed), "verdict exploded");
        self.inner.record_failure()
    }
    fn release_probe(&self) {
        self.inner.release_probe();
        assert!(!self.panicky_release.load(Ordering::Relaxed), "release exploded");
    }
    fn state(&self) -> State {
        self.inner.state()
    }
}

/// An executor whose `svc.Op` breaker is `breaker`; the breaker is open
/// and cooled down (the next call is its half-open probe).
async fn probing(breaker: &Arc<Grumpy>) -> Executor {
    let circuits = Arc::new(Registry::new());
    circuits.insert("svc.Op", Arc::clone(breaker) as Arc<dyn Breaker>);
    let executor = Executor::builder()
        .policy(Policy::builder("svc.Op").max_attempts(1).circuit(1, Duration::from_millis(100)).build())
        .circuits(circuits)
        .recover_panics(true)
        .build();
    let failed: Result<(), io::Error> = executor.call("svc.Op", || async { Err(io::ErrorKind::Other.into()) }).await;
    assert!(failed.is_err());
    assert_eq!(breaker.state(), State::Open);
    tokio::time::advance(Duration::from_millis(100)).await;
    executor
}

// Found by the chaos soak: the probe's verdict panicked before reaching the
// breaker, so the breaker kept its probe slot and refused every later call
// with `circuit_half_open_probe_limit`, forever.
#[tokio::test(start_paused = true)]
async fn a_probe_whose_verdict_panics_hands_its_slot_back() {
    let breaker = Grumpy::new();
    let executor = probing(&breaker).await;
    breaker.panicky_verdicts.store(true, Ordering::Relaxed);
    let probe: Result<(), io::Error> = executor.call("svc.Op", || async { Ok(()) }).await;
    assert!(probe.is_ok(), "the probe's own result stands");
    breaker.panicky_verdicts.store(false, Ordering::Relaxed);
    let next: Result<(), io::Error> = executor.call("svc.Op", || async { Ok(()) }).await;
    assert!(next.is_ok(), "the next call probes again: {next:?}");
    assert_eq!(breaker.state(), State::Closed);
}

// Found by the chaos soak: a cancelled probe's `release_probe` ran in the
// call's `Drop` without panic recovery, so its panic reached whoever
// dropped the call.
#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_whose_release_panics_does_not_reach_the_caller() {
    let breaker = Grumpy::new();
    let executor = probing(&breaker).await;
    breaker.panicky_release.store(true, Ordering::Relaxed);
    let cancelled = tokio::time::timeout(
        Duration::from_millis(10),
        executor.call("svc.Op", || async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), io::Error>(())
        }),
    )
    .await;
    assert!(cancelled.is_err(), "the caller gave up on the probe");
    assert_eq!(breaker.state(), State::HalfOpen);
    breaker.panicky_release.store(false, Ordering::Relaxed);
    let next: Result<(), io::Error> = executor.call("svc.Op", || async { Ok(()) }).await;
    assert!(next.is_ok(), "the slot was handed back: {next:?}");
}

/// A provider whose generation panics: read on every call.
struct PanickingGeneration;

impl PolicyProvider for PanickingGeneration {
    fn policy(&self, _key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        Ok(Some(Arc::new(Policy::builder(KEY).max_attempts(2).initial_backoff(Duration::from_millis(1)).build())))
    }

    fn generation(&self) -> u64 {
        panic!("generation exploded");
    }
}

#[tokio::test(start_paused = true)]
async fn a_provider_whose_generation_panics_still_serves_its_policy() {
    let executor = Executor::builder().provider(PanickingGeneration).recover_panics(true).build();
    for _ in 0..3 {
        let calls = Counter::new();
        let result = executor.call(KEY, || std::future::ready(Err::<(), _>(TestError::Failed(calls.hit())))).await;
        assert!(result.is_err());
        assert_eq!(calls.get(), 2, "the provider's policy, resolved although its generation panicked");
    }
}

/// A trigger whose `uses_latency` panics.
struct LatencyQuestionPanics;

impl recourse::hedge::HedgeTrigger for LatencyQuestionPanics {
    fn should_spawn(&self, _state: &recourse::hedge::HedgeState<'_>) -> recourse::hedge::TriggerDecision {
        recourse::hedge::TriggerDecision::Spawn
    }

    fn uses_latency(&self) -> bool {
        panic!("uses_latency exploded");
    }
}

#[tokio::test(start_paused = true)]
async fn a_trigger_whose_latency_question_panics_stops_hedging_not_the_call() {
    let executor = Executor::builder()
        .policy(
            Policy::builder(KEY)
                .max_attempts(1)
                .max_hedges(1)
                .hedge_delay(Duration::from_millis(10))
                .hedge_trigger("asks")
                .build(),
        )
        .trigger("asks", LatencyQuestionPanics)
        .recover_panics(true)
        .build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok::<u32, TestError>(7)
        }
    }))
    .await;
    assert_eq!(result.unwrap(), 7);
    assert_eq!(calls.get(), 1, "no hedge was launched");
    assert!(
        timeline.attributes.get("trigger_panic").is_some_and(|p| p.contains("uses_latency exploded")),
        "{timeline}"
    );
}

/// A budget whose release callback panics.
struct ReleasePanics;

impl recourse::budget::Budget for ReleasePanics {
    fn allow_attempt(
        &self,
        _key: &PolicyKey,
        _attempt: u32,
        _kind: recourse::budget::AttemptKind,
        _budget: &recourse::policy::BudgetRef,
    ) -> recourse::budget::Decision {
        recourse::budget::Decision::allow_with_release(|| panic!("release exploded"))
    }
}

fn release_panics_executor() -> Executor {
    Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).initial_backoff(Duration::from_millis(1)).budget("rp").build())
        .budget("rp", ReleasePanics)
        .recover_panics(true)
        .build()
}

#[tokio::test(start_paused = true)]
async fn a_budget_release_that_panics_does_not_reach_the_caller() {
    let executor = release_panics_executor();
    let calls = Counter::new();
    let result = executor.call(KEY, || std::future::ready(Err::<(), _>(TestError::Failed(calls.hit())))).await;
    assert!(matches!(result, Err(TestError::Failed(3))), "{result:?}");
}

#[tokio::test(start_paused = true)]
async fn a_budget_release_that_panics_when_the_call_is_dropped_does_not_reach_the_dropper() {
    let executor = release_panics_executor();
    let call = executor.call(KEY, || async {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok::<(), TestError>(())
    });
    let dropped = tokio::time::timeout(Duration::from_millis(5), call).await;
    assert!(dropped.is_err(), "the call was cut by the timeout and dropped without a panic");
}

/// An observer whose scopes panic on enter and exit.
struct ScopesPanic;

struct Exploding;

impl recourse::observe::Enter for Exploding {
    fn enter(&self) {
        panic!("enter exploded");
    }

    fn exit(&self) {
        panic!("exit exploded");
    }
}

impl recourse::observe::Observer for ScopesPanic {
    fn call_scope(&self, _key: &PolicyKey) -> Option<Arc<dyn recourse::observe::Enter>> {
        Some(Arc::new(Exploding))
    }

    fn attempt_scope(
        &self,
        _key: &PolicyKey,
        _attempt: &recourse::Attempt,
    ) -> Option<Arc<dyn recourse::observe::Enter>> {
        Some(Arc::new(Exploding))
    }
}

#[tokio::test(start_paused = true)]
async fn observer_scopes_that_panic_are_recovered_and_counted() {
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).initial_backoff(Duration::from_millis(1)).build())
        .observer(ScopesPanic)
        .recover_panics(true)
        .build();
    let calls = Counter::new();
    let result = executor.call(KEY, || std::future::ready(Err::<(), _>(TestError::Failed(calls.hit())))).await;
    assert!(matches!(result, Err(TestError::Failed(2))), "{result:?}");
    assert!(executor.observer_panics() > 0, "the scopes' panics are counted");
}

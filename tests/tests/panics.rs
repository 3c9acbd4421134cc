//! Section R of the conformance checklist: panic recovery
//! (`retry/panic_test.go`), items 77–78, plus the spec §12.12 table.
//!
//! Go finds `NoPolicyError` / `PanicError` with `errors.As`; the Rust
//! equivalent walks `std::error::Error::source()` from the returned error.
#![allow(missing_docs)]

mod support;

use std::io;
use std::sync::Arc;

use recourse::classify::{ErrorView, Outcome, OutcomeKind};
use recourse::policy::{Policy, PolicyKey};
use recourse::provider::{PolicyProvider, ProviderError, ProviderErrorKind};
use recourse::{Classify, Component, Executor, FailureMode, PanicError};
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

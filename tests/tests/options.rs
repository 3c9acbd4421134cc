//! Section Q of the conformance checklist: executor options
//! (`retry/options_test.go`), items 74–76.
#![allow(missing_docs)]

mod support;

use std::io;
use std::sync::Arc;

use recourse::classify::{ErrorView, NeverRetry, Outcome, OutcomeKind, Registry};
use recourse::policy::{Policy, PolicyKey};
use recourse::provider::{PolicyProvider, StaticProvider};
use recourse::{Executor, FailureMode};
use support::{Counter, RecordingSleeper, ms};
use tokio::time::Instant;

// Q74
#[tokio::test(start_paused = true)]
async fn q74_options_are_stored() {
    let fixed = Instant::now();
    let executor =
        Executor::builder().missing_policy(FailureMode::Deny).recover_panics(true).clock(move || fixed).build();
    assert_eq!(executor.missing_policy_mode(), FailureMode::Deny);
    assert!(executor.recovers_panics());
    assert!(executor.has_custom_clock());
}

// Q74 (defaults): spec §12.1's defaults for a bare executor.
#[test]
fn q74_bare_executor_defaults() {
    let executor = Executor::builder().build();
    assert_eq!(executor.missing_policy_mode(), FailureMode::Deny);
    assert_eq!(executor.missing_classifier_mode(), FailureMode::Fallback);
    assert_eq!(executor.missing_budget_mode(), FailureMode::Deny);
    assert_eq!(executor.missing_trigger_mode(), FailureMode::Fallback);
    assert!(!executor.recovers_panics());
    assert!(!executor.has_custom_clock());
    assert_eq!(executor.classifiers().names(), support::builtin_classifiers_and(&[]));
    let policy = executor.policy_for(&PolicyKey::parse("any.Key")).unwrap();
    assert_eq!(policy.retry.max_attempts, 3);
    assert_eq!((policy.retry.initial_backoff, policy.retry.max_backoff), (ms(10), ms(250)));

    let modes = [FailureMode::Deny, FailureMode::Allow, FailureMode::Fallback, FailureMode::AllowUnsafe];
    let names: Vec<String> = modes.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["deny", "allow", "fallback", "allow_unsafe"]);

    let configured = Executor::builder()
        .missing_classifier(FailureMode::Deny)
        .missing_budget(FailureMode::AllowUnsafe)
        .missing_trigger(FailureMode::Deny)
        .build();
    assert_eq!(configured.missing_classifier_mode(), FailureMode::Deny);
    assert_eq!(configured.missing_budget_mode(), FailureMode::AllowUnsafe);
    assert_eq!(configured.missing_trigger_mode(), FailureMode::Deny);
}

// Q74 (clock): the custom clock stamps timelines (Go benchmarks use a fixed
// clock); a fixed clock makes every stamp equal even though time passes.
#[tokio::test(start_paused = true)]
async fn q74_custom_clock_stamps_the_timeline() {
    let fixed = Instant::now() - ms(500);
    let executor =
        Executor::builder().policy(Policy::builder("svc.Clock").max_attempts(2).build()).clock(move || fixed).build();
    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call("svc.Clock", || {
        calls += 1;
        let n = calls;
        async move { if n == 1 { Err(io::Error::other("once")) } else { Ok(n) } }
    }))
    .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(timeline.start, fixed);
    assert_eq!(timeline.end, Some(fixed));
    for record in &timeline.attempts {
        assert_eq!((record.start, record.end), (fixed, fixed));
    }
    assert_eq!(timeline.attempts[1].backoff, ms(10), "deadlines and sleeps still run on tokio time");
}

// Q75
#[tokio::test(start_paused = true)]
async fn q75_builder_policy_is_served_and_unknown_classifier_falls_back() {
    let executor = Executor::builder()
        .policy(Policy::builder("test.static").max_attempts(5).classifier("custom").build())
        .missing_policy(FailureMode::Deny)
        .sleeper(RecordingSleeper::new())
        .build();
    let value: Result<i32, io::Error> = executor.call("test.static", || async { Ok(1) }).await;
    assert_eq!(value.unwrap(), 1);

    let key = PolicyKey::parse("test.static");
    let served = executor.provider().policy(&key).unwrap().expect("the builder's policy is served");
    assert_eq!(served.retry.max_attempts, 5);
    assert_eq!(served.retry.classifier, "custom");
    assert_eq!(executor.policy_for(&key).unwrap().retry.max_attempts, 5);

    // The unknown classifier `custom` falls back to the default (auto),
    // which retries a connection reset up to the policy's 5 attempts.
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call("test.static", || {
        calls.hit();
        async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) }
    }))
    .await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 5);
    assert_eq!(timeline.attempts[0].outcome.attributes.get("classifier_name"), Some("custom"));
}

// Q75 (layering): builder policies take precedence over the provider for
// their keys; other keys still come from the provider (a documented
// difference from Go, which ignores WithPolicy once a provider is given).
#[test]
fn q75_builder_policies_layer_over_the_provider() {
    let provider = StaticProvider::new()
        .with(Policy::builder("test.static").max_attempts(2).build())
        .with(Policy::builder("test.other").max_attempts(4).build());
    let executor =
        Executor::builder().provider(provider).policy(Policy::builder("test.static").max_attempts(5).build()).build();
    assert_eq!(executor.policy_for(&PolicyKey::parse("test.static")).unwrap().retry.max_attempts, 5);
    assert_eq!(executor.policy_for(&PolicyKey::parse("test.other")).unwrap().retry.max_attempts, 4);
    assert_eq!(executor.policy_for(&PolicyKey::parse("test.none")).unwrap().retry.max_attempts, 3);
}

// Q76
#[tokio::test(start_paused = true)]
async fn q76_the_supplied_registry_instance_is_used() {
    let registry = Arc::new(Registry::new());
    registry.register("reg", NeverRetry);
    let executor = Executor::builder()
        .classifiers(Arc::clone(&registry))
        .policy(Policy::builder("test.reg").max_attempts(3).classifier("reg").build())
        .policy(Policy::builder("test.late").max_attempts(3).classifier("late").build())
        .missing_classifier(FailureMode::Deny)
        .build();
    assert!(Arc::ptr_eq(executor.classifiers(), &registry), "exactly the supplied instance");
    assert_eq!(executor.classifiers().names(), ["reg"], "no built-ins are added to a supplied registry");

    let calls = Counter::new();
    let _: Result<(), io::Error> = executor
        .call("test.reg", || {
            calls.hit();
            async { Err(io::Error::from(io::ErrorKind::ConnectionReset)) }
        })
        .await;
    assert_eq!(calls.get(), 1, "the registry's `reg` (never) classified the error");

    // Registered after build, through the caller's handle: visible at once.
    let calls = Counter::new();
    let before: Result<(), io::Error> = executor.call("test.late", || async { Ok(()) }).await;
    assert_eq!(before.unwrap_err().kind(), io::ErrorKind::InvalidInput, "`late` is not registered yet (deny)");
    registry.register("late", |_: &dyn ErrorView| Outcome::abort().with_reason("late_abort"));
    let (result, timeline) = recourse::capture(executor.call("test.late", || {
        calls.hit();
        async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) }
    }))
    .await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 1);
    assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::Abort);
    assert_eq!(timeline.attempts[0].outcome.reason, "late_abort");
}

// Q76 (named registration): `.classifier(name, c)` registers into the
// supplied registry, or into a fresh registry that keeps the built-ins
// (unlike Go's WithClassifier, which drops them).
#[test]
fn q76_named_classifier_registration() {
    let registry = Arc::new(Registry::new());
    let executor = Executor::builder().classifiers(Arc::clone(&registry)).classifier("mine", NeverRetry).build();
    assert!(registry.get("mine").is_some());
    assert!(Arc::ptr_eq(executor.classifiers(), &registry));

    let executor = Executor::builder().classifier("mine", NeverRetry).build();
    assert_eq!(executor.classifiers().names(), support::builtin_classifiers_and(&["mine"]));
}

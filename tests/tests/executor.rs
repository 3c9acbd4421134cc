//! Section I of the conformance checklist: the executor core
//! (`retry/executor_test.go`), items 35–49.
//!
//! Everything runs on paused tokio time with a recording (no-op) or
//! never-completing sleeper, so counts and durations are exact.
//! Rust adaptations: Go's "caller ctx cancelled" is dropping the call
//! future; Go's ctx deadline errors are `recourse::Error::Timeout` /
//! `recourse::Error::AttemptTimeout` converted into the operation's error
//! type.
#![allow(missing_docs)]

mod support;

use std::io;
use std::time::Duration;

use recourse::policy::{Jitter, Policy, PolicyKey};
use recourse::provider::ProviderErrorKind;
use recourse::{Executor, FailureMode, OutcomeKind};
use support::{Counter, FailingProvider, KEY, PendingSleeper, RecordingSleeper, SEED, TestError, ms, test_executor};
use tokio::time::Instant;

fn always_failing(calls: &Counter) -> impl FnMut() -> std::future::Ready<Result<(), TestError>> + '_ {
    move || std::future::ready(Err(TestError::Failed(calls.hit())))
}

// I35
#[tokio::test(start_paused = true)]
async fn i35_bare_executor_zero_key_success() {
    let executor = Executor::builder().build();
    let calls = Counter::new();
    let result: Result<&str, io::Error> = executor
        .call(PolicyKey::default(), || {
            calls.hit();
            async { Ok("done") }
        })
        .await;
    assert_eq!(result.unwrap(), "done");
    assert_eq!(calls.get(), 1);
}

// I36
#[tokio::test(start_paused = true)]
async fn i36_single_attempt_failure_is_returned_after_one_call() {
    let (executor, sleeper) = test_executor(Policy::builder(KEY).max_attempts(1).build());
    let calls = Counter::new();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert!(matches!(result, Err(TestError::Failed(1))), "the operation's own error, unchanged: {result:?}");
    assert_eq!(calls.get(), 1);
    assert!(sleeper.sleeps().is_empty());
}

// I37
#[tokio::test(start_paused = true)]
async fn i37_three_attempts_then_the_last_error() {
    let (executor, _) = test_executor(Policy::builder(KEY).max_attempts(3).build());
    let calls = Counter::new();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert!(matches!(result, Err(TestError::Failed(3))), "the last attempt's error: {result:?}");
    assert_eq!(calls.get(), 3);
}

// I38
#[tokio::test(start_paused = true)]
async fn i38_fails_twice_then_succeeds_unit() {
    let (executor, _) = test_executor(Policy::builder(KEY).max_attempts(5).build());
    let calls = Counter::new();
    let result: Result<(), TestError> = executor
        .call(KEY, || {
            let n = calls.hit();
            async move { if n < 3 { Err(TestError::Failed(n)) } else { Ok(()) } }
        })
        .await;
    assert!(result.is_ok());
    assert_eq!(calls.get(), 3);
}

// I39
#[tokio::test(start_paused = true)]
async fn i39_fails_twice_then_returns_42() {
    let (executor, _) = test_executor(Policy::builder(KEY).max_attempts(5).build());
    let calls = Counter::new();
    let result: Result<u32, TestError> = executor
        .call(KEY, || {
            let n = calls.hit();
            async move { if n < 3 { Err(TestError::Failed(n)) } else { Ok(42) } }
        })
        .await;
    assert_eq!(result.unwrap(), 42);
    assert_eq!(calls.get(), 3);
}

fn backoff_policy(jitter: Jitter) -> Policy {
    Policy::builder(KEY).max_attempts(3).backoff(ms(10), ms(250), 2.0).jitter(jitter).build()
}

// I40
#[tokio::test(start_paused = true)]
async fn i40_sleeps_are_exactly_10ms_then_20ms() {
    let (executor, sleeper) = test_executor(backoff_policy(Jitter::None));
    let calls = Counter::new();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert!(matches!(result, Err(TestError::Failed(3))));
    assert_eq!(calls.get(), 3);
    assert_eq!(sleeper.sleeps(), [ms(10), ms(20)], "no sleep before the first or after the last attempt");
}

// I40 with the default (tokio) sleeper: the same schedule in virtual time.
#[tokio::test(start_paused = true)]
async fn i40_default_sleeper_waits_exactly_30ms_of_virtual_time() {
    let executor = Executor::builder().policy(backoff_policy(Jitter::None)).build();
    let calls = Counter::new();
    let started = Instant::now();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 3);
    assert_eq!(started.elapsed(), ms(30));
}

// I41
#[tokio::test(start_paused = true)]
async fn i41_full_jitter_sleeps_within_zero_and_base() {
    let (executor, sleeper) = test_executor(backoff_policy(Jitter::Full));
    let calls = Counter::new();
    let _ = executor.call(KEY, always_failing(&calls)).await;
    assert_eq!(calls.get(), 3);
    let sleeps = sleeper.sleeps();
    assert_eq!(sleeps.len(), 2);
    assert!(sleeps[0] < ms(10), "first sleep {:?} not in [0, 10ms)", sleeps[0]);
    assert!(sleeps[1] < ms(20), "second sleep {:?} not in [0, 20ms)", sleeps[1]);

    // Seeded: a second executor with the same seed sleeps identically.
    let (again, again_sleeper) = test_executor(backoff_policy(Jitter::Full));
    let _ = again.call(KEY, always_failing(&Counter::new())).await;
    assert_eq!(again_sleeper.sleeps(), sleeps);
}

// I42
#[tokio::test(start_paused = true)]
async fn i42_equal_jitter_sleeps_within_half_base_and_base() {
    let (executor, sleeper) = test_executor(backoff_policy(Jitter::Equal));
    let calls = Counter::new();
    let _ = executor.call(KEY, always_failing(&calls)).await;
    assert_eq!(calls.get(), 3);
    let sleeps = sleeper.sleeps();
    assert_eq!(sleeps.len(), 2);
    assert!((ms(5)..ms(10)).contains(&sleeps[0]), "first sleep {:?} not in [5ms, 10ms)", sleeps[0]);
    assert!((ms(10)..ms(20)).contains(&sleeps[1]), "second sleep {:?} not in [10ms, 20ms)", sleeps[1]);
}

// I43: an operation that never completes is cut off by the per-attempt
// timeout; the timeout is retryable; after 3 attempts the call fails with
// `Error::AttemptTimeout` converted into the operation's error type.
#[tokio::test(start_paused = true)]
async fn i43_per_attempt_timeout_is_retryable_and_ends_with_attempt_timeout() {
    let (executor, sleeper) = test_executor(Policy::builder(KEY).max_attempts(3).timeout_per_attempt(ms(5)).build());
    let calls = Counter::new();
    let started = Instant::now();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        let remaining = recourse::attempt().and_then(|a| a.remaining());
        assert_eq!(remaining, Some(ms(5)), "the attempt sees its own deadline");
        std::future::pending::<Result<(), io::Error>>()
    }))
    .await;
    let error = result.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<recourse::Error>());
    assert!(matches!(inner, Some(recourse::Error::AttemptTimeout { timeout }) if *timeout == ms(5)), "{error:?}");
    assert_eq!(calls.get(), 3);
    assert_eq!(sleeper.sleeps(), [ms(10), ms(20)], "the default backoff runs between timed-out attempts");
    assert_eq!(started.elapsed(), ms(15), "3 attempts × 5 ms (the recording sleeper takes no time)");
    assert_eq!(timeline.attempts.len(), 3);
    for record in &timeline.attempts {
        assert_eq!(record.outcome.kind, OutcomeKind::Retryable);
        assert_eq!(record.outcome.reason, "context_deadline_exceeded");
        assert_eq!(record.duration(), ms(5));
    }
}

// I44, adapted to DESIGN §6.7 (deviation): Go's executor sleeps into the
// overall deadline and returns DeadlineExceeded from the interrupted sleep.
// Here, with overall 5 ms and a 100 ms backoff, the executor sees that the
// sleep would cross the deadline and ends at once with the operation's own
// error: exactly 1 call, the sleeper is never invoked, no time passes.
#[tokio::test(start_paused = true)]
async fn i44_deviation_6_7_backoff_past_overall_deadline_returns_op_error_without_sleeping() {
    let sleeper = PendingSleeper::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(10).overall_timeout(ms(5)).initial_backoff(ms(100)).build())
        .sleeper(sleeper.clone())
        .build();
    let calls = Counter::new();
    let started = Instant::now();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert!(matches!(result, Err(TestError::Failed(1))), "the op's own error: {result:?}");
    assert_eq!(calls.get(), 1);
    assert!(sleeper.entered().is_empty(), "the sleeper is never invoked");
    assert_eq!(started.elapsed(), Duration::ZERO, "returned at once");
}

// I44, Go's literal scenario: a backoff that fits inside the overall
// deadline, but the sleeper blocks until cancelled (as Go's test sleeper
// blocks until its ctx ends). The overall deadline bounds the whole call,
// sleeps included (spec §12.11), so the call must end at the deadline with
// the overall timeout, after exactly one operation call.
#[tokio::test(start_paused = true)]
async fn i44_overall_deadline_bounds_a_blocking_sleep() {
    let sleeper = PendingSleeper::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(10).overall_timeout(ms(50)).initial_backoff(ms(10)).build())
        .sleeper(sleeper.clone())
        .build();
    let calls = Counter::new();
    let started = Instant::now();
    let guarded = tokio::time::timeout(
        Duration::from_secs(10),
        executor.call(KEY, || {
            calls.hit();
            async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) }
        }),
    )
    .await;
    let result = guarded.expect("the call overran its 50 ms overall deadline by more than 10 s");
    let error = result.unwrap_err();
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<recourse::Error>());
    assert!(matches!(inner, Some(recourse::Error::Timeout { .. })), "{error:?}");
    assert_eq!(calls.get(), 1);
    assert_eq!(sleeper.entered(), [ms(10)], "the sleeper was invoked");
    assert_eq!(started.elapsed(), ms(50));
}

// I44 companion: the overall deadline cuts an attempt in progress.
#[tokio::test(start_paused = true)]
async fn i44_overall_deadline_cuts_a_running_attempt() {
    let (executor, sleeper) = test_executor(Policy::builder(KEY).max_attempts(3).overall_timeout(ms(5)).build());
    let calls = Counter::new();
    let started = Instant::now();
    let result: Result<(), io::Error> = executor
        .call(KEY, || {
            calls.hit();
            std::future::pending()
        })
        .await;
    let error = result.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    let inner = error.get_ref().and_then(|e| e.downcast_ref::<recourse::Error>());
    assert!(matches!(inner, Some(recourse::Error::Timeout { timeout }) if *timeout == ms(5)), "{error:?}");
    assert_eq!(calls.get(), 1, "the overall timeout is not retried");
    assert!(sleeper.sleeps().is_empty());
    assert_eq!(started.elapsed(), ms(5));
}

// I45: the caller gives up before the call starts: 0 operation calls.
#[tokio::test(start_paused = true)]
async fn i45_call_dropped_before_polling_never_runs_the_op() {
    let (executor, sleeper) = test_executor(Policy::builder(KEY).max_attempts(3).build());
    let calls = Counter::new();
    let call = executor.call(KEY, always_failing(&calls));
    drop(call);
    assert_eq!(calls.get(), 0);

    // The select! form: a cancellation that is already ready wins before the
    // call is first polled.
    let outcome = tokio::select! {
        biased;
        () = std::future::ready(()) => None,
        result = executor.call(KEY, always_failing(&calls)) => Some(result),
    };
    assert!(outcome.is_none());
    assert_eq!(calls.get(), 0);
    assert!(sleeper.sleeps().is_empty());
}

// I46: the caller cancels (drops the call) while the executor is sleeping:
// exactly 1 operation call, the sleep was entered once and is cancelled
// (its future dropped), and nothing runs afterwards.
#[tokio::test(start_paused = true)]
async fn i46_drop_while_sleeping_stops_after_one_call() {
    let sleeper = PendingSleeper::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).initial_backoff(ms(100)).build())
        .sleeper(sleeper.clone())
        .build();
    let calls = Counter::new();
    let cancelled = tokio::time::timeout(ms(1), executor.call(KEY, always_failing(&calls))).await;
    assert!(cancelled.is_err(), "the caller's timeout fired first");
    assert_eq!(calls.get(), 1);
    assert_eq!(sleeper.entered(), [ms(100)]);
    assert_eq!(sleeper.dropped(), 1, "dropping the call dropped the sleep");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(calls.get(), 1, "nothing runs after cancellation");
}

// I46 companion: cancelling while an attempt is in flight drops the attempt.
#[tokio::test(start_paused = true)]
async fn i46_drop_while_attempt_in_flight_drops_the_attempt() {
    struct Guard(Counter);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.hit();
        }
    }
    let (executor, sleeper) = test_executor(Policy::builder(KEY).max_attempts(3).build());
    let calls = Counter::new();
    let dropped = Counter::new();
    let cancelled = tokio::time::timeout(
        ms(1),
        executor.call(KEY, || {
            calls.hit();
            let guard = Guard(dropped.clone());
            async move {
                let _guard = guard;
                std::future::pending::<Result<(), io::Error>>().await
            }
        }),
    )
    .await;
    assert!(cancelled.is_err());
    assert_eq!(calls.get(), 1);
    assert_eq!(dropped.get(), 1, "the in-flight attempt was dropped");
    assert!(sleeper.sleeps().is_empty());
}

// I47: provider unavailable, missing-policy mode allow: one attempt.
#[tokio::test(start_paused = true)]
async fn i47_provider_error_with_allow_runs_exactly_one_attempt() {
    let provider = FailingProvider::default();
    let executor = Executor::builder().provider(provider.clone()).missing_policy(FailureMode::Allow).build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
    assert!(matches!(result, Err(TestError::Failed(1))));
    assert_eq!(calls.get(), 1);
    assert_eq!(provider.calls.get(), 1);
    assert_eq!(timeline.attributes.get("policy_error"), Some("recourse: policy provider unavailable"));
    assert_eq!(timeline.attributes.get("policy_fallback"), Some("allow"));
}

// I48: same provider, mode deny: no attempt, NoPolicy.
#[tokio::test(start_paused = true)]
async fn i48_provider_error_with_deny_fails_without_calling_the_op() {
    let executor = Executor::builder().provider(FailingProvider::default()).missing_policy(FailureMode::Deny).build();
    let calls = Counter::new();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert_eq!(calls.get(), 0);
    let error = result.unwrap_err();
    let Some(recourse::Error::NoPolicy { key, source }) = error.recourse() else {
        panic!("expected NoPolicy, got {error:?}");
    };
    assert_eq!(*key, PolicyKey::parse(KEY));
    assert_eq!(source.kind(), ProviderErrorKind::Unavailable);
    assert_eq!(
        error.recourse().unwrap().to_string(),
        "recourse: policy not found for x: recourse: policy provider unavailable"
    );
    // Deny is the default.
    let default_mode = Executor::builder().provider(FailingProvider::default()).build();
    assert_eq!(default_mode.missing_policy_mode(), FailureMode::Deny);
    let result = default_mode.call(KEY, always_failing(&calls)).await;
    assert!(matches!(result.unwrap_err().recourse(), Some(recourse::Error::NoPolicy { .. })));
    assert_eq!(calls.get(), 0);
}

// I49: the provider's degraded policy (5 attempts) is preferred over the
// default in fallback mode.
#[tokio::test(start_paused = true)]
async fn i49_fallback_prefers_the_providers_degraded_policy() {
    let provider =
        FailingProvider { fallback: Some(Policy::builder(KEY).max_attempts(5).build()), ..Default::default() };
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder()
        .provider(provider)
        .missing_policy(FailureMode::Fallback)
        .sleeper(sleeper.clone())
        .jitter_seed(SEED)
        .build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
    assert!(matches!(result, Err(TestError::Failed(5))));
    assert_eq!(calls.get(), 5);
    assert_eq!(sleeper.sleeps().len(), 4);
    assert_eq!(timeline.attributes.get("policy_fallback"), Some("fallback"));
}

// I49 variants: without a degraded policy fallback uses the default policy
// (3 attempts); allow_unsafe behaves like fallback (spec §12.3); an
// unnormalized degraded policy is normalized before use.
#[tokio::test(start_paused = true)]
async fn i49_fallback_without_degraded_policy_and_allow_unsafe() {
    let executor = Executor::builder()
        .provider(FailingProvider::default())
        .missing_policy(FailureMode::Fallback)
        .sleeper(RecordingSleeper::new())
        .build();
    let calls = Counter::new();
    let _ = executor.call(KEY, always_failing(&calls)).await;
    assert_eq!(calls.get(), 3, "the default policy");

    let provider =
        FailingProvider { fallback: Some(Policy::builder(KEY).max_attempts(4).build()), ..Default::default() };
    let executor = Executor::builder()
        .provider(provider)
        .missing_policy(FailureMode::AllowUnsafe)
        .sleeper(RecordingSleeper::new())
        .build();
    let calls = Counter::new();
    let _ = executor.call(KEY, always_failing(&calls)).await;
    assert_eq!(calls.get(), 4, "allow_unsafe uses the degraded policy like fallback");

    let mut raw = Policy::zero(PolicyKey::parse(KEY));
    raw.retry.max_attempts = 50;
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder()
        .provider(FailingProvider { fallback: Some(raw), ..Default::default() })
        .missing_policy(FailureMode::Fallback)
        .sleeper(sleeper.clone())
        .build();
    let calls = Counter::new();
    let _ = executor.call(KEY, always_failing(&calls)).await;
    assert_eq!(calls.get(), 10, "max_attempts 50 is clamped to 10");
    assert_eq!(sleeper.sleeps()[0], ms(10), "zero initial backoff becomes 10 ms");
}

// I48 variant: under deny, a provider error is a denial even when it offers
// a degraded policy.
#[tokio::test(start_paused = true)]
async fn i48_deny_ignores_a_degraded_policy() {
    let provider =
        FailingProvider { fallback: Some(Policy::builder(KEY).max_attempts(5).build()), ..Default::default() };
    let executor = Executor::builder().provider(provider).build();
    let calls = Counter::new();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert_eq!(calls.get(), 0);
    let error = result.unwrap_err();
    let Some(recourse::Error::NoPolicy { source, .. }) = error.recourse() else { panic!("{error:?}") };
    assert!(source.fallback().is_some());
}

//! One test (or a small group) per DESIGN §6 deviation from the Go original
//! that exists in this code base: §6.1 (one engine), §6.5 (NaN multiplier,
//! circuit normalized without hedging), §6.6 (classifiers look through the
//! source chain) and §6.7 (Retry-After beyond `max_backoff`, never past the
//! overall deadline). §6.2–§6.4 and §6.8–§6.9 concern budgets, hedging and
//! circuit breaking, which the executor does not run yet.
#![allow(missing_docs)]
#![allow(clippy::float_cmp, reason = "normalized multipliers are exact constants")]

mod support;

use std::io;
use std::sync::Arc;
use std::time::Duration;

use recourse::classify::ErrorView;
use recourse::policy::{Jitter, Policy, PolicyKey, limits};
use recourse::{Executor, OutcomeKind};
use support::{
    BoxError, Counter, HttpError, KEY, RawProvider, RecordingSleeper, SEED, TestError, http_executor, ms,
    test_executor, wrap,
};
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// §6.1: one engine. Go's fast and timeline paths can disagree; here
// watching a call (capture) changes no decision: same calls, same sleeps,
// same error.
#[tokio::test(start_paused = true)]
async fn d6_1_capture_changes_no_decision() {
    let policy = Policy::builder(KEY).max_attempts(4).backoff(ms(10), ms(250), 2.0).jitter(Jitter::Full).build();
    let run = |capture: bool| {
        let policy = policy.clone();
        async move {
            let (executor, sleeper) = test_executor(policy);
            let calls = Counter::new();
            let call = executor.call(KEY, || {
                let n = calls.hit();
                async move { if n < 3 { Err(TestError::Failed(n)) } else { Ok(n) } }
            });
            let result = if capture { recourse::capture(call).await.0 } else { call.await };
            (result.unwrap(), calls.get(), sleeper.sleeps())
        }
    };
    let plain = run(false).await;
    let watched = run(true).await;
    assert_eq!(plain, watched);
    assert_eq!(plain.0, 3);
    assert_eq!(plain.2.len(), 2);
}

// ---------------------------------------------------------------------------
// §6.5 (a): a NaN multiplier normalizes like 0, to 2 (Go keeps NaN, which
// then makes every later backoff 0).
#[test]
fn d6_5_nan_multiplier_normalizes_to_two() {
    let policy = Policy::builder("d.nan").backoff_multiplier(f64::NAN).build();
    assert_eq!(policy.retry.backoff_multiplier, limits::DEFAULT_MULTIPLIER);
    assert_eq!(policy.retry.backoff_multiplier, 2.0);
    assert_eq!(policy.meta.normalization.changed_fields(), ["retry.backoff_multiplier"]);
}

// §6.5 (a) in the executor: a provider answering with an unnormalized
// policy whose multiplier is NaN gets the doubling schedule 10, 20, 40 ms.
#[tokio::test(start_paused = true)]
async fn d6_5_nan_multiplier_backs_off_as_if_two() {
    let mut raw = Policy::zero(PolicyKey::parse(KEY));
    raw.retry.max_attempts = 4;
    raw.retry.initial_backoff = ms(10);
    raw.retry.max_backoff = ms(250);
    raw.retry.backoff_multiplier = f64::NAN;
    assert!(!raw.is_normalized());
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder().provider(RawProvider(Arc::new(raw))).sleeper(sleeper.clone()).build();
    let calls = Counter::new();
    let _ = executor
        .call(KEY, || {
            let n = calls.hit();
            async move { Err::<(), _>(TestError::Failed(n)) }
        })
        .await;
    assert_eq!(calls.get(), 4);
    assert_eq!(sleeper.sleeps(), [ms(10), ms(20), ms(40)]);
    assert_eq!(executor.policy_for(&PolicyKey::parse(KEY)).unwrap().retry.backoff_multiplier, 2.0);
}

// §6.5 (b): circuit settings are normalized whether or not hedging is
// enabled (Go only normalizes them when hedging is on, so a 5 ms cooldown
// survived there).
#[test]
fn d6_5_circuit_is_normalized_without_hedging() {
    let policy = Policy::builder("d.circuit").circuit(0, ms(5)).build();
    assert!(!policy.hedge.enabled);
    assert!(policy.circuit.enabled);
    assert_eq!(policy.circuit.threshold, limits::DEFAULT_CIRCUIT_THRESHOLD);
    assert_eq!(policy.circuit.cooldown, limits::MIN_CIRCUIT_COOLDOWN);
    assert_eq!(policy.circuit.cooldown, ms(100));
    assert_eq!(policy.meta.normalization.changed_fields(), ["circuit.threshold", "circuit.cooldown"]);
    // Hedge settings stay untouched while hedging is off.
    assert_eq!((policy.hedge.max_hedges, policy.hedge.delay), (0, Duration::ZERO));

    let policy = Policy::builder("d.circuit").circuit(3, Duration::ZERO).build();
    assert_eq!(policy.circuit.threshold, 3);
    assert_eq!(policy.circuit.cooldown, limits::DEFAULT_CIRCUIT_COOLDOWN);
    assert_eq!(policy.circuit.cooldown, Duration::from_secs(10));
    assert_eq!(policy.meta.normalization.changed_fields(), ["circuit.cooldown"]);
}

// ---------------------------------------------------------------------------
// §6.6: classifiers look through an error's source chain. Go's HTTP
// classifier only recognises an HTTPError that is the error itself; a
// wrapped one was a `classifier_type_mismatch` (1 call). Here the wrapped
// 503 is still an HTTP 5xx and is retried.
#[tokio::test(start_paused = true)]
async fn d6_6_wrapped_http_error_is_still_an_http_error() {
    let (executor, sleeper) = http_executor(Policy::builder(KEY).max_attempts(3).classifier("http").build());
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        async { Err::<(), BoxError>(Box::new(wrap("fetching user", HttpError::new(503, "GET")))) }
    }))
    .await;
    assert_eq!(result.unwrap_err().to_string(), "fetching user", "the op's own (wrapping) error is returned");
    assert_eq!(calls.get(), 3);
    assert_eq!(sleeper.sleeps(), [ms(10), ms(20)]);
    assert!(timeline.attempts.iter().all(|r| r.outcome.reason == "http_5xx"));

    // The ErrorView API the classifier uses.
    let error: BoxError = Box::new(wrap("outer", wrap("inner", HttpError::new(503, "GET"))));
    let view: &dyn ErrorView = &error;
    assert_eq!(view.find::<HttpError>(), Some(&HttpError::new(503, "GET")));
    assert_eq!(view.chain().count(), 3);
    assert!(view.downcast_ref::<HttpError>().is_none(), "the error itself is not one");
}

// §6.6 with the default `auto` classifier: an io::Error one link down decides.
#[tokio::test(start_paused = true)]
async fn d6_6_auto_classifies_a_wrapped_io_error_by_kind() {
    let (executor, _) = test_executor(Policy::builder(KEY).max_attempts(3).build());
    for (kind, expected_calls) in [(io::ErrorKind::ConnectionReset, 3), (io::ErrorKind::PermissionDenied, 1)] {
        let calls = Counter::new();
        let result: Result<(), BoxError> = executor
            .call(KEY, || {
                calls.hit();
                async move { Err(wrap("talking to the database", io::Error::from(kind)).into()) }
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.get(), expected_calls, "{kind:?}");
    }
}

// ---------------------------------------------------------------------------
// §6.7 (a): a server's Retry-After is honoured beyond max_backoff. Go caps
// the override at MaxBackoff (5 s → 100 ms); here the executor sleeps 5 s.
#[tokio::test(start_paused = true)]
async fn d6_7_retry_after_is_honoured_beyond_max_backoff() {
    let policy = Policy::builder(KEY).max_attempts(2).backoff(ms(10), ms(100), 2.0).classifier("http").build();
    let (executor, sleeper) = http_executor(policy);
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        async { Err::<(), BoxError>(Box::new(HttpError::throttled(Duration::from_secs(5)))) }
    }))
    .await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 2);
    assert_eq!(sleeper.sleeps(), [Duration::from_secs(5)]);
    assert_eq!(timeline.attempts[1].backoff, Duration::from_secs(5));
}

// §6.7 (a): ... up to the 30 s ceiling.
#[tokio::test(start_paused = true)]
async fn d6_7_retry_after_is_capped_at_the_30s_ceiling() {
    let policy = Policy::builder(KEY).max_attempts(2).backoff(ms(10), ms(100), 2.0).classifier("http").build();
    let (executor, sleeper) = http_executor(policy);
    let _: Result<(), BoxError> =
        executor.call(KEY, || async { Err(HttpError::throttled(Duration::from_secs(90)).into()) }).await;
    assert_eq!(sleeper.sleeps(), [limits::MAX_BACKOFF]);
    assert_eq!(limits::MAX_BACKOFF, Duration::from_secs(30));
}

// §6.7 (b): ... but never past the overall deadline: a 5 s Retry-After
// under a 2 s overall timeout ends the call at once with the op's error.
#[tokio::test(start_paused = true)]
async fn d6_7_retry_after_never_sleeps_past_the_overall_deadline() {
    let policy = Policy::builder(KEY)
        .max_attempts(3)
        .backoff(ms(10), ms(100), 2.0)
        .overall_timeout(Duration::from_secs(2))
        .classifier("http")
        .build();
    let (executor, sleeper) = http_executor(policy);
    let calls = Counter::new();
    let started = Instant::now();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        async { Err::<(), BoxError>(Box::new(HttpError::throttled(Duration::from_secs(5)))) }
    }))
    .await;
    let error = result.unwrap_err();
    assert_eq!(
        error.downcast_ref::<HttpError>(),
        Some(&HttpError::throttled(Duration::from_secs(5))),
        "the op's error, not a timeout"
    );
    assert_eq!(calls.get(), 1);
    assert!(sleeper.sleeps().is_empty());
    assert_eq!(started.elapsed(), Duration::ZERO);
    let final_error = timeline.final_error.expect("failed");
    assert_eq!((final_error.kind, &*final_error.reason), (OutcomeKind::Retryable, "http_429"));
}

// §6.7 (b): a Retry-After that fits inside the overall deadline is honoured.
#[tokio::test(start_paused = true)]
async fn d6_7_retry_after_within_the_deadline_is_honoured() {
    let policy = Policy::builder(KEY)
        .max_attempts(2)
        .backoff(ms(10), ms(100), 2.0)
        .overall_timeout(Duration::from_secs(10))
        .classifier("http")
        .build();
    let sleeper_free =
        Executor::builder().policy(policy).classifier("http", support::http_classifier).jitter_seed(SEED).build();
    let calls = Counter::new();
    let started = Instant::now();
    let result: Result<(), BoxError> = sleeper_free
        .call(KEY, || {
            calls.hit();
            async { Err(HttpError::throttled(Duration::from_secs(5)).into()) }
        })
        .await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 2);
    assert_eq!(started.elapsed(), Duration::from_secs(5), "slept exactly the Retry-After on tokio time");
}

// §6.7 (c): the same rule for ordinary backoff. Overall 25 ms, backoff
// 10 ms then 20 ms: attempt 0 at 0 ms, sleep 10 ms, attempt 1 at 10 ms; the
// next sleep would end at 30 ms > 25 ms, so the call ends at 10 ms with the
// op's own error instead of waking up to a timeout.
#[tokio::test(start_paused = true)]
async fn d6_7_ordinary_backoff_never_sleeps_past_the_overall_deadline() {
    let executor = Executor::builder()
        .policy(
            Policy::builder(KEY)
                .max_attempts(10)
                .backoff(ms(10), ms(250), 2.0)
                .jitter(Jitter::None)
                .overall_timeout(ms(25))
                .build(),
        )
        .build();
    let calls = Counter::new();
    let started = Instant::now();
    let result: Result<(), TestError> = executor
        .call(KEY, || {
            let n = calls.hit();
            async move { Err(TestError::Failed(n)) }
        })
        .await;
    assert!(matches!(result, Err(TestError::Failed(2))), "{result:?}");
    assert_eq!(calls.get(), 2);
    assert_eq!(started.elapsed(), ms(10));
}

//! Budget releases under cancellation, panics and timeouts (DESIGN §4:
//! "cancellation is dropping the future ... every budget release still
//! runs, nothing is recorded afterwards"; DESIGN §5: "no call ever ... loses
//! a budget release"; spec §8.1: a release runs once per allowed attempt,
//! never for a denied one).
//!
//! The call future is driven by hand (a no-op waker on a paused
//! current-thread runtime, advancing tokio time between polls) and dropped
//! after every possible number of polls, so every await point of the engine
//! (the operation's own yields, the backoff sleep) is a cancellation point
//! under test.
#![allow(missing_docs)]

mod support;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};
use std::time::Duration;

use recourse::Executor;
use recourse::policy::Policy;
use support::{
    Counter, CountingBudget, KEY, PendingSleeper, RecordingObserver, TestError, ms, paused_runtime, yield_times,
};

/// Operation await points per attempt.
const YIELDS: usize = 3;
/// Tokio time advanced between two polls (more than any backoff here).
const STEP: Duration = Duration::from_millis(50);

struct Setup {
    executor: Executor,
    budget: CountingBudget,
    observer: Option<RecordingObserver>,
    calls: Counter,
}

/// Three attempts, 10 ms then 20 ms backoff on the tokio sleeper, a counting
/// budget; the operation yields `YIELDS` times and then fails.
fn setup(observe: bool) -> Setup {
    let budget = CountingBudget::new();
    let observer = observe.then(RecordingObserver::new);
    let mut builder = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).backoff(ms(10), ms(100), 2.0).budget("b").build())
        .budget("b", budget.clone());
    if let Some(observer) = &observer {
        builder = builder.observer(observer.clone());
    }
    Setup { executor: builder.build(), budget, observer, calls: Counter::new() }
}

/// The call as a boxed future (plain, or inside `recourse::capture`).
fn start(s: &Setup, capture: bool) -> Pin<Box<dyn Future<Output = Result<(), TestError>> + '_>> {
    let call = s.executor.call(KEY, || {
        let n = s.calls.hit();
        async move {
            yield_times(YIELDS).await;
            Err(TestError::Failed(n))
        }
    });
    if capture { Box::pin(async move { recourse::capture(call).await.0 }) } else { Box::pin(call) }
}

/// The release invariant that must hold between any two polls: never more
/// releases than allowed decisions, and at most one attempt in flight.
fn check_in_flight(s: &Setup) {
    let (allowed, released) = (s.budget.allowed.get(), s.budget.released.get());
    assert!(released <= allowed, "released {released} > allowed {allowed}");
    assert!(allowed - released <= 1, "more than one unreleased attempt: {allowed} allowed, {released} released");
}

/// Polls `future` up to `limit` times, advancing paused time by `STEP`
/// between polls; returns how many polls it took to complete, if it did.
async fn poll_by_hand<F: Future + ?Sized>(mut future: Pin<&mut F>, limit: usize, s: &Setup) -> Option<usize> {
    let mut cx = Context::from_waker(Waker::noop());
    for polls in 1..=limit {
        if future.as_mut().poll(&mut cx).is_ready() {
            return Some(polls);
        }
        check_in_flight(s);
        tokio::time::advance(STEP).await;
    }
    None
}

/// How many polls a complete call takes.
fn polls_to_complete(observe: bool, capture: bool) -> usize {
    paused_runtime().block_on(async {
        let s = setup(observe);
        let mut call = start(&s, capture);
        let polls = poll_by_hand(call.as_mut(), 1000, &s).await.expect("the call completes");
        drop(call);
        assert_eq!(s.calls.get(), 3);
        assert_eq!((s.budget.allowed.get(), s.budget.released.get()), (3, 3));
        polls
    })
}

// DESIGN §4 / §8.1: drop the call after every possible number of polls; each
// time, releases == allowed decisions (never more), and an observer hears no
// end event for a call that was dropped.
#[test]
fn release_runs_exactly_once_when_the_call_is_dropped_at_every_await_point() {
    for (observe, capture) in [(false, false), (false, true), (true, false), (true, true)] {
        let total = polls_to_complete(observe, capture);
        // 3 attempts × (YIELDS pending polls) + 2 backoff sleeps + the last poll.
        assert!(total > 3 * YIELDS, "observe={observe} capture={capture}: only {total} polls");
        // Where each drop happened: inside an attempt (its release pending)
        // or between attempts (waiting out a backoff).
        let (mut in_attempt, mut in_backoff) = (0, 0);
        for k in 0..total {
            paused_runtime().block_on(async {
                let s = setup(observe);
                let mut call = start(&s, capture);
                assert_eq!(poll_by_hand(call.as_mut(), k, &s).await, None, "k={k}: finished early");
                let allowed_before_drop = s.budget.allowed.get();
                if allowed_before_drop > s.budget.released.get() {
                    in_attempt += 1;
                } else if k > 0 {
                    in_backoff += 1;
                }
                drop(call);
                let (allowed, released) = (s.budget.allowed.get(), s.budget.released.get());
                let ctx = format!("observe={observe} capture={capture} k={k}");
                assert_eq!(allowed, allowed_before_drop, "{ctx}: no decision after the drop");
                assert_eq!(released, allowed, "{ctx}: every allowed attempt released exactly once");
                assert_eq!(s.budget.consulted.get(), allowed, "{ctx}: this budget allows everything");
                assert_eq!(allowed, s.calls.get(), "{ctx}: every allowed attempt ran");
                assert_eq!(allowed == 0, k == 0, "{ctx}: the first poll asks the budget");
                if let Some(observer) = &s.observer {
                    let log = observer.log();
                    assert_eq!(observer.count("success") + observer.count("failure"), 0, "{ctx}: {log:?}");
                    // Nothing is recorded after the drop.
                    tokio::time::advance(Duration::from_secs(1)).await;
                    assert_eq!(observer.log(), log, "{ctx}");
                }
                tokio::time::advance(Duration::from_secs(1)).await;
                assert_eq!(s.budget.released.get(), released, "{ctx}: nothing runs later");
            });
        }
        assert_eq!(in_attempt, 3 * YIELDS, "observe={observe} capture={capture}: every operation await point");
        assert_eq!(in_backoff, 2, "observe={observe} capture={capture}: both backoff sleeps");
    }
}

// The same with tokio's own cancellation (`timeout` dropping the call while
// it waits out a backoff that never ends): the attempt that ran was released
// and the sleep was dropped.
#[tokio::test(start_paused = true)]
async fn release_ran_when_the_call_is_dropped_during_its_backoff() {
    let budget = CountingBudget::new();
    let sleeper = PendingSleeper::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).budget("b").build())
        .budget("b", budget.clone())
        .sleeper(sleeper.clone())
        .build();
    let calls = Counter::new();
    let call = executor.call(KEY, || {
        let n = calls.hit();
        async move { Err::<(), _>(TestError::Failed(n)) }
    });
    assert!(tokio::time::timeout(ms(5), call).await.is_err(), "the call was still sleeping");
    assert_eq!(sleeper.entered(), [ms(10)]);
    assert_eq!(sleeper.dropped(), 1);
    assert_eq!((calls.get(), budget.allowed.get(), budget.released.get()), (1, 1, 1));
}

// Dropped while the operation is in flight via `tokio::select!`-style
// cancellation (`timeout`): the in-flight attempt is released.
#[tokio::test(start_paused = true)]
async fn release_ran_when_the_call_is_dropped_during_an_attempt() {
    let budget = CountingBudget::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).budget("b").build())
        .budget("b", budget.clone())
        .build();
    let call = executor.call(KEY, std::future::pending::<Result<(), TestError>>);
    assert!(tokio::time::timeout(ms(5), call).await.is_err());
    assert_eq!((budget.allowed.get(), budget.released.get()), (1, 1));
}

// An operation that panics inside an attempt: the panic reaches the caller
// (panic recovery never covers the operation) and the attempt's release
// still runs; earlier attempts were released as usual.
#[tokio::test(start_paused = true)]
async fn release_runs_when_the_operation_panics() {
    for recover in [false, true] {
        let budget = CountingBudget::new();
        let executor = Executor::builder()
            .policy(Policy::builder(KEY).max_attempts(3).budget("b").build())
            .budget("b", budget.clone())
            .recover_panics(recover)
            .build();
        let calls = Counter::new();
        let task_calls = calls.clone();
        let joined = tokio::spawn(async move {
            executor
                .call(KEY, || {
                    let n = task_calls.hit();
                    async move {
                        yield_times(2).await;
                        assert!(n < 2, "operation exploded");
                        Err::<(), _>(TestError::Failed(n))
                    }
                })
                .await
        })
        .await;
        let error = joined.expect_err("the operation's panic propagates");
        assert!(error.is_panic(), "recover={recover}");
        assert_eq!(calls.get(), 2, "recover={recover}");
        assert_eq!((budget.allowed.get(), budget.released.get()), (2, 2), "recover={recover}");
    }
}

// A panic in the closure that creates the attempt's future (after the budget
// allowed it) also releases the attempt.
#[tokio::test(start_paused = true)]
async fn release_runs_when_the_operation_closure_panics() {
    let budget = CountingBudget::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).budget("b").build())
        .budget("b", budget.clone())
        .build();
    let joined = tokio::spawn(async move {
        executor.call(KEY, || -> std::future::Ready<Result<(), TestError>> { panic!("closure exploded") }).await
    })
    .await;
    assert!(joined.expect_err("the closure's panic propagates").is_panic());
    assert_eq!((budget.allowed.get(), budget.released.get()), (1, 1));
}

// An attempt cut by `timeout_per_attempt` is released when it is cut (before
// the next attempt starts), and the call returns the attempt timeout.
#[tokio::test(start_paused = true)]
async fn release_runs_when_an_attempt_times_out() {
    let budget = CountingBudget::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).timeout_per_attempt(ms(50)).budget("b").build())
        .budget("b", budget.clone())
        .build();
    let seen = std::sync::Mutex::new(Vec::new());
    let result = executor
        .call(KEY, || {
            seen.lock().unwrap().push(budget.released.get());
            std::future::pending::<Result<(), TestError>>()
        })
        .await;
    let error = result.unwrap_err();
    assert!(
        matches!(error.recourse(), Some(recourse::Error::AttemptTimeout { timeout }) if *timeout == ms(50)),
        "{error:?}"
    );
    assert_eq!(*seen.lock().unwrap(), [0, 1], "the first attempt was released when it was cut");
    assert_eq!((budget.allowed.get(), budget.released.get()), (2, 2));
}

// The overall timeout passing during an attempt releases it.
#[tokio::test(start_paused = true)]
async fn release_runs_when_the_overall_timeout_cuts_an_attempt() {
    let budget = CountingBudget::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).overall_timeout(ms(100)).budget("b").build())
        .budget("b", budget.clone())
        .build();
    let result = executor.call(KEY, std::future::pending::<Result<(), TestError>>).await;
    let error = result.unwrap_err();
    assert!(matches!(error.recourse(), Some(recourse::Error::Timeout { .. })), "{error:?}");
    assert_eq!((budget.allowed.get(), budget.released.get()), (1, 1));
}

// The overall timeout passing during a backoff (a sleeper that never wakes):
// the attempt that ran was released, no further attempt is asked for.
#[tokio::test(start_paused = true)]
async fn release_ran_when_the_overall_timeout_passes_during_a_backoff() {
    let budget = CountingBudget::new();
    let sleeper = PendingSleeper::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).overall_timeout(ms(100)).budget("b").build())
        .budget("b", budget.clone())
        .sleeper(sleeper.clone())
        .build();
    let calls = Counter::new();
    let result = executor
        .call(KEY, || {
            let n = calls.hit();
            async move { Err::<(), _>(TestError::Failed(n)) }
        })
        .await;
    let error = result.unwrap_err();
    assert!(matches!(error.recourse(), Some(recourse::Error::Timeout { .. })), "{error:?}");
    assert_eq!(sleeper.dropped(), 1);
    assert_eq!((calls.get(), budget.consulted.get(), budget.released.get()), (1, 1, 1));
}

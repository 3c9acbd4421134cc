//! Budgets: section D (`budget/builtins_test.go`, item 17) and section J
//! (`retry/budgets_test.go`, items 50–54) of the conformance checklist,
//! with spec §8 / §12.5 and DESIGN §6.2.
//!
//! Rust adaptations: Go's `errors.Is(err, E)` identity check becomes "the
//! returned error is the operation's own value" (a `TestError::Failed(n)`
//! carrying the call number); Go's direct call of the executor's budget gate
//! (J54) becomes direct use of `Decision` / `Release` plus calls through the
//! executor; a denial before any attempt ran is `recourse::Error::BudgetDenied`
//! (DESIGN §6.2).
#![allow(missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use recourse::budget::{AttemptKind, Budget, Decision, Registry, Release, TokenBucket, Unlimited, reason};
use recourse::policy::{BudgetRef, Policy, PolicyKey};
use recourse::provider::StaticProvider;
use recourse::{Executor, FailureMode, OutcomeKind};
use support::{Counter, CountingBudget, KEY, RecordingObserver, RecordingSleeper, SEED, TestError, ms};

/// A test executor (static provider for `policy`, recording sleeper, seeded
/// jitter) with `budget` registered as `name`.
fn budget_executor(policy: Policy, name: &str, budget: impl Budget) -> (Executor, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder()
        .provider(StaticProvider::new().with(policy))
        .budget(name, budget)
        .sleeper(sleeper.clone())
        .jitter_seed(SEED)
        .build();
    (executor, sleeper)
}

fn always_failing(calls: &Counter) -> impl FnMut() -> std::future::Ready<Result<u32, TestError>> + '_ {
    move || std::future::ready(Err(TestError::Failed(calls.hit())))
}

fn is_budget_denied(error: &TestError, expected: &str) -> bool {
    matches!(error.recourse(), Some(recourse::Error::BudgetDenied { reason }) if reason == expected)
}

// ---------------------------------------------------------------------------
// D17: the token bucket under contention and on paused time.

// D17: capacity 1000, refill 0, 10 threads × 200 calls → exactly 1000 allowed
// and 1000 denied.
#[test]
fn d17_token_bucket_admits_exactly_its_capacity_across_ten_threads() {
    const WORKERS: usize = 10;
    const CALLS: u32 = 200;
    let bucket = Arc::new(TokenBucket::new(1000, 0.0));
    let allowed = Arc::new(AtomicUsize::new(0));
    let denied = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(WORKERS));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (bucket, allowed, denied, barrier) =
                (Arc::clone(&bucket), Arc::clone(&allowed), Arc::clone(&denied), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let key = PolicyKey::from("svc.Op");
                let budget = BudgetRef::named("bucket");
                barrier.wait();
                for i in 0..CALLS {
                    let decision = bucket.allow_attempt(&key, i, AttemptKind::Retry, &budget);
                    let counter = if decision.allowed() { &allowed } else { &denied };
                    counter.fetch_add(1, Ordering::SeqCst);
                    // Go pauses 0–100 µs at random; yielding varies the
                    // interleaving without sleeping.
                    if (i as usize + worker).is_multiple_of(7) {
                        std::thread::yield_now();
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker finished");
    }
    assert_eq!(allowed.load(Ordering::SeqCst), 1000, "no over- or under-admission");
    assert_eq!(denied.load(Ordering::SeqCst), 1000);
    assert_eq!(bucket.available(), 0);
}

// D17 with a cost: capacity 1000, cost 3 → exactly 333 admitted across threads,
// and the 1 token left over is never handed out.
#[test]
fn d17_token_bucket_with_cost_admits_floor_of_capacity_over_cost() {
    let bucket = Arc::new(TokenBucket::new(1000, 0.0));
    let allowed = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (bucket, allowed) = (Arc::clone(&bucket), Arc::clone(&allowed));
            std::thread::spawn(move || {
                let key = PolicyKey::from("svc.Op");
                let budget = BudgetRef { cost: 3, ..BudgetRef::named("bucket") };
                for i in 0..200 {
                    if bucket.allow_attempt(&key, i, AttemptKind::Hedge, &budget).allowed() {
                        allowed.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker finished");
    }
    assert_eq!(allowed.load(Ordering::SeqCst), 333);
    assert_eq!(bucket.available(), 1);
}

// D17 through the executor: many tasks on a two-worker runtime share one
// bucket → exactly `capacity` operations run; every other call is refused
// before its first attempt with `recourse::Error::BudgetDenied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d17_executor_calls_on_two_workers_run_exactly_capacity_operations() {
    const CAPACITY: usize = 100;
    const TASKS: usize = 400;
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).budget("bucket").build())
        .budget("bucket", TokenBucket::new(CAPACITY as u64, 0.0))
        .build();
    let runs = Counter::new();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (executor, runs) = (executor.clone(), runs.clone());
            tokio::spawn(async move {
                executor
                    .call(KEY, || {
                        let runs = runs.clone();
                        async move {
                            tokio::task::yield_now().await;
                            runs.hit();
                            Ok::<_, TestError>(())
                        }
                    })
                    .await
            })
        })
        .collect();
    let (mut ok, mut denied) = (0, 0);
    for task in tasks {
        let result = tokio::time::timeout(Duration::from_secs(30), task).await.expect("bounded").expect("no panic");
        match result {
            Ok(()) => ok += 1,
            Err(error) => {
                assert!(is_budget_denied(&error, reason::BUDGET_DENIED), "{error:?}");
                denied += 1;
            }
        }
    }
    assert_eq!(runs.get(), CAPACITY);
    assert_eq!((ok, denied), (CAPACITY, TASKS - CAPACITY));
}

// D17 through the executor with retries: every attempt (first or retry) takes
// a token, so across all tasks exactly `capacity` attempts run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn d17_executor_retries_share_the_bucket_exactly() {
    const CAPACITY: usize = 60;
    const TASKS: usize = 50;
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).budget("bucket").build())
        .budget("bucket", TokenBucket::new(CAPACITY as u64, 0.0))
        .sleeper(sleeper.clone())
        .build();
    let runs = Counter::new();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (executor, runs) = (executor.clone(), runs.clone());
            tokio::spawn(async move {
                executor
                    .call(KEY, || {
                        let runs = runs.clone();
                        async move {
                            tokio::task::yield_now().await;
                            Err::<(), _>(TestError::Failed(runs.hit()))
                        }
                    })
                    .await
            })
        })
        .collect();
    let mut refused_before_running = 0;
    for task in tasks {
        let result = tokio::time::timeout(Duration::from_secs(30), task).await.expect("bounded").expect("no panic");
        match result.expect_err("the operation always fails") {
            TestError::Failed(_) => {}
            error @ TestError::Recourse(_) => {
                assert!(is_budget_denied(&error, reason::BUDGET_DENIED), "{error:?}");
                refused_before_running += 1;
            }
        }
    }
    assert_eq!(runs.get(), CAPACITY, "one token per attempt that ran");
    assert!(refused_before_running < TASKS);
}

// D17 refill: tokio's paused clock drives the refill.
#[tokio::test(start_paused = true)]
async fn d17_refill_follows_paused_tokio_time() {
    let bucket = TokenBucket::new(5, 10.0); // one token per 100 ms
    let key = PolicyKey::from("svc.Op");
    let one = BudgetRef::named("bucket");
    let take_all = || (0..20).filter(|i| bucket.allow_attempt(&key, *i, AttemptKind::Retry, &one).allowed()).count();
    assert_eq!(take_all(), 5, "starts full");
    assert_eq!(take_all(), 0);
    tokio::time::advance(ms(90)).await;
    assert_eq!(take_all(), 0, "0.9 tokens");
    tokio::time::advance(ms(60)).await;
    assert_eq!(take_all(), 1, "1.5 tokens");
    tokio::time::advance(ms(60)).await;
    assert_eq!(take_all(), 1, "the half token carried over: 0.5 + 0.6");
    tokio::time::advance(ms(250)).await;
    assert_eq!(take_all(), 2, "0.1 + 2.5 tokens");
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(take_all(), 5, "capped at capacity");
}

// D17 refill through the executor: a drained bucket refuses calls until paused
// time has refilled a token.
#[tokio::test(start_paused = true)]
async fn d17_refill_through_the_executor() {
    let (executor, _) = budget_executor(
        Policy::builder(KEY).max_attempts(1).budget("bucket").build(),
        "bucket",
        TokenBucket::new(1, 10.0),
    );
    let calls = Counter::new();
    let call = || {
        executor.call(KEY, || {
            calls.hit();
            async { Ok::<_, TestError>(()) }
        })
    };
    assert!(call().await.is_ok());
    let denied = call().await.unwrap_err();
    assert!(is_budget_denied(&denied, reason::BUDGET_DENIED), "{denied:?}");
    tokio::time::advance(ms(150)).await;
    assert!(call().await.is_ok(), "one token refilled");
    assert!(call().await.is_err());
    assert_eq!(calls.get(), 2);
}

// ---------------------------------------------------------------------------
// J50–J54: budgets in the executor.

// J50: the budget denies attempt index 1 → 1 operation call; the call returns
// the operation's own error; the denial is recorded as a second record.
#[tokio::test(start_paused = true)]
async fn j50_denial_of_the_second_attempt_returns_the_operations_own_error() {
    let budget = CountingBudget::denying(|attempt| attempt == 1);
    let (executor, sleeper) =
        budget_executor(Policy::builder(KEY).max_attempts(3).budget("b").build(), "b", budget.clone());
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
    assert_eq!(calls.get(), 1);
    assert!(matches!(result, Err(TestError::Failed(1))), "the operation's own error, not a budget error: {result:?}");
    assert_eq!(timeline.final_error.as_ref().expect("failed").message, "call 1 failed");
    assert_eq!(timeline.attempts.len(), 2);
    let (first, denied) = (&timeline.attempts[0], &timeline.attempts[1]);
    assert!(first.budget_allowed);
    assert_eq!(first.budget_reason, reason::ALLOWED);
    assert_eq!(first.error.as_deref(), Some("call 1 failed"));
    assert_eq!(denied.attempt, 1);
    assert!(!denied.budget_allowed);
    assert_eq!(denied.budget_reason, reason::BUDGET_DENIED);
    assert_eq!(denied.error, None);
    assert_eq!(denied.outcome.kind, OutcomeKind::Abort);
    assert_eq!(denied.outcome.reason, reason::BUDGET_DENIED);
    assert_eq!(denied.backoff, ms(10), "the backoff was slept before the denied attempt");
    assert_eq!(sleeper.sleeps(), [ms(10)]);
    assert_eq!((budget.consulted.get(), budget.allowed.get(), budget.released.get()), (2, 1, 1));
}

// J50 without capture: the same error comes back (recording changes nothing).
#[tokio::test(start_paused = true)]
async fn j50_denial_of_the_second_attempt_without_capture() {
    let budget = CountingBudget::denying(|attempt| attempt == 1);
    let (executor, _) = budget_executor(Policy::builder(KEY).max_attempts(3).budget("b").build(), "b", budget.clone());
    let calls = Counter::new();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert!(matches!(result, Err(TestError::Failed(1))), "{result:?}");
    assert_eq!(calls.get(), 1);
}

// J50 / DESIGN §6.2: a denial of attempt 0 → `recourse::Error::BudgetDenied`
// and the operation never runs.
#[tokio::test(start_paused = true)]
async fn j50_denial_of_the_first_attempt_is_budget_denied_and_nothing_runs() {
    let budget = CountingBudget::denying(|_| true);
    let (executor, sleeper) =
        budget_executor(Policy::builder(KEY).max_attempts(3).budget("b").build(), "b", budget.clone());
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
    let error = result.unwrap_err();
    assert!(is_budget_denied(&error, reason::BUDGET_DENIED), "{error:?}");
    assert_eq!(calls.get(), 0);
    assert!(sleeper.sleeps().is_empty());
    assert_eq!(timeline.attempts.len(), 1);
    assert!(!timeline.attempts[0].budget_allowed);
    let final_error = timeline.final_error.expect("failed");
    assert_eq!(
        final_error.message,
        format!("{error}: recourse: attempt denied by budget: budget_denied"),
        "the text of the error returned to the caller, with its source's"
    );
    assert_eq!(final_error.reason, reason::BUDGET_DENIED);
    assert_eq!(final_error.kind, OutcomeKind::Abort);
    assert_eq!((budget.consulted.get(), budget.released.get()), (1, 0));
}

/// Allows with an empty reason, allows with its own reason, denies with an
/// empty reason, then denies with its own reason.
struct Quota;
impl Budget for Quota {
    fn allow_attempt(&self, _: &PolicyKey, attempt: u32, _: AttemptKind, _: &BudgetRef) -> Decision {
        match attempt {
            0 => Decision::allow().with_reason(""),
            1 => Decision::allow().with_reason("warm_pool"),
            2 => Decision::deny().with_reason(""),
            _ => Decision::deny().with_reason("quota_exhausted"),
        }
    }
}

/// Always denies with its own reason.
struct Refuse;
impl Budget for Refuse {
    fn allow_attempt(&self, _: &PolicyKey, _: u32, _: AttemptKind, _: &BudgetRef) -> Decision {
        Decision::deny().with_reason("quota_exhausted")
    }
}

// J50 / §8.2: a budget's own reason code travels to the error and the record;
// an empty reason is filled in from the verdict.
#[tokio::test(start_paused = true)]
async fn j50_budget_reasons_are_kept_and_empty_ones_filled_in() {
    let (executor, _) = budget_executor(Policy::builder(KEY).max_attempts(3).budget("q").build(), "q", Quota);
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
    assert!(matches!(result, Err(TestError::Failed(2))), "{result:?}");
    let reasons: Vec<_> = timeline.attempts.iter().map(|r| (r.budget_allowed, r.budget_reason.to_string())).collect();
    assert_eq!(
        reasons,
        [(true, "allowed".to_owned()), (true, "warm_pool".to_owned()), (false, "budget_denied".to_owned())]
    );

    let (executor, _) = budget_executor(Policy::builder(KEY).budget("q").build(), "q", Refuse);
    let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
    assert!(is_budget_denied(&result.unwrap_err(), "quota_exhausted"));
    assert_eq!(timeline.attempts[0].budget_reason, "quota_exhausted");
    assert_eq!(timeline.attributes.get("budget_denied"), Some("quota_exhausted"));
}

fn missing_budget_executor(mode: Option<FailureMode>) -> Executor {
    let mut builder = Executor::builder()
        .provider(StaticProvider::new().with(Policy::builder(KEY).max_attempts(2).budget("missing").build()))
        .budgets(Arc::new(Registry::new()))
        .sleeper(RecordingSleeper::new())
        .jitter_seed(SEED);
    if let Some(mode) = mode {
        builder = builder.missing_budget(mode);
    }
    builder.build()
}

// J51: a missing budget with the default mode (deny) → error, 0 calls, 1 record
// with `budget_not_found`.
#[tokio::test(start_paused = true)]
async fn j51_missing_budget_denies_by_default() {
    let executor = missing_budget_executor(None);
    assert_eq!(executor.missing_budget_mode(), FailureMode::Deny);
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
    let error = result.unwrap_err();
    assert!(is_budget_denied(&error, reason::BUDGET_NOT_FOUND), "{error:?}");
    assert_eq!(calls.get(), 0);
    assert_eq!(timeline.attempts.len(), 1);
    assert!(!timeline.attempts[0].budget_allowed);
    assert_eq!(timeline.attempts[0].budget_reason, reason::BUDGET_NOT_FOUND);
}

// J51 with an explicit deny and with fallback: Go's fallback mode denies a
// missing budget too (§12.5 step 2).
#[tokio::test(start_paused = true)]
async fn j51_missing_budget_deny_and_fallback_modes_both_deny() {
    for mode in [FailureMode::Deny, FailureMode::Fallback] {
        let executor = missing_budget_executor(Some(mode));
        let calls = Counter::new();
        let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
        let error = result.unwrap_err();
        assert!(is_budget_denied(&error, reason::BUDGET_NOT_FOUND), "{mode}: {error:?}");
        assert_eq!(calls.get(), 0, "{mode}");
        assert_eq!(timeline.attempts.len(), 1, "{mode}");
        assert_eq!(timeline.attempts[0].budget_reason, reason::BUDGET_NOT_FOUND);
    }
}

// J52: allow_unsafe (and allow) → every attempt runs, each record allowed with
// reason `budget_not_found`.
#[tokio::test(start_paused = true)]
async fn j52_missing_budget_allow_modes_run_every_attempt() {
    for mode in [FailureMode::AllowUnsafe, FailureMode::Allow] {
        let executor = missing_budget_executor(Some(mode));
        let calls = Counter::new();
        let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
        assert!(matches!(result, Err(TestError::Failed(2))), "{mode}: {result:?}");
        assert_eq!(calls.get(), 2, "{mode}");
        assert_eq!(timeline.attempts.len(), 2, "{mode}");
        for record in &timeline.attempts {
            assert!(record.budget_allowed, "{mode}");
            assert_eq!(record.budget_reason, reason::BUDGET_NOT_FOUND, "{mode}");
        }
    }
}

// §12.5: the missing-budget modes are reported in the decision event.
#[tokio::test(start_paused = true)]
async fn j51_j52_missing_budget_event_mode_is_the_failure_mode() {
    for (mode, allowed) in [
        (FailureMode::Deny, false),
        (FailureMode::Fallback, false),
        (FailureMode::Allow, true),
        (FailureMode::AllowUnsafe, true),
    ] {
        let observer = RecordingObserver::new();
        let executor = Executor::builder()
            .policy(Policy::builder(KEY).max_attempts(1).budget("missing").build())
            .budgets(Arc::new(Registry::new()))
            .missing_budget(mode)
            .observer(observer.clone())
            .build();
        let _ = executor.call(KEY, || async { Ok::<_, TestError>(()) }).await;
        let events = observer.budget_events();
        assert_eq!(events.len(), 1, "{mode}");
        assert_eq!(events[0].mode, mode.as_str());
        assert_eq!(events[0].allowed, allowed, "{mode}");
        assert_eq!(events[0].reason, reason::BUDGET_NOT_FOUND);
        assert_eq!(events[0].budget, "missing");
    }
}

/// Notes how many releases had run whenever an attempt is reported and when
/// the call ends.
#[derive(Debug, Clone)]
struct ReleaseProbe {
    released: Counter,
    seen: Arc<std::sync::Mutex<Vec<usize>>>,
}

impl recourse::observe::Observer for ReleaseProbe {
    fn on_attempt(&self, _: &PolicyKey, _: &recourse::AttemptRecord) {
        self.seen.lock().unwrap().push(self.released.get());
    }

    fn on_success(&self, _: &PolicyKey, _: &recourse::Timeline) {
        self.seen.lock().unwrap().push(self.released.get());
    }
}

// J53 / §12.15: an attempt's release has run before the attempt is reported
// (so an observer or a caller that sees the result also sees the release).
#[tokio::test(start_paused = true)]
async fn j53_release_runs_before_the_attempt_is_reported() {
    let budget = CountingBudget::new();
    let probe = ReleaseProbe { released: budget.released.clone(), seen: Arc::default() };
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).budget("b").build())
        .budget("b", budget.clone())
        .observer(probe.clone())
        .sleeper(RecordingSleeper::new())
        .build();
    let calls = Counter::new();
    let result = executor
        .call(KEY, || {
            let n = calls.hit();
            async move { if n == 1 { Err(TestError::Failed(n)) } else { Ok(42) } }
        })
        .await;
    assert_eq!(result.unwrap(), 42);
    assert_eq!(*probe.seen.lock().unwrap(), [1, 2, 2]);
}

// J53: a budget with a counting release; op fails then returns 42 → 2
// consultations and exactly 2 releases by the time the call returns, whether
// or not anyone records the call.
#[tokio::test(start_paused = true)]
async fn j53_every_allowed_attempt_is_released_before_the_call_returns() {
    for (capture, observe) in [(false, false), (true, false), (false, true), (true, true)] {
        let budget = CountingBudget::new();
        let mut builder = Executor::builder()
            .policy(Policy::builder(KEY).max_attempts(2).budget("b").build())
            .budget("b", budget.clone())
            .sleeper(RecordingSleeper::new());
        if observe {
            builder = builder.observer(RecordingObserver::new());
        }
        let executor = builder.build();
        let calls = Counter::new();
        let seen_releases = Arc::new(std::sync::Mutex::new(Vec::new()));
        let call = executor.call(KEY, || {
            let n = calls.hit();
            // The previous attempt's release has run before the next one
            // starts; this attempt's own release has not.
            seen_releases.lock().unwrap().push(budget.released.get());
            async move { if n == 1 { Err(TestError::Failed(n)) } else { Ok(42) } }
        });
        let result = if capture { recourse::capture(call).await.0 } else { call.await };
        assert_eq!(result.unwrap(), 42, "capture={capture} observe={observe}");
        assert_eq!(calls.get(), 2);
        assert_eq!(budget.consulted.get(), 2);
        assert_eq!(budget.released.get(), 2, "capture={capture} observe={observe}");
        assert_eq!(*seen_releases.lock().unwrap(), [0, 1]);
    }
}

// J54: a release run three times counts once; dropping it unrun runs it once.
#[test]
fn j54_release_runs_exactly_once() {
    let count = Counter::new();
    let counted = |count: &Counter| {
        let count = count.clone();
        move || {
            count.hit();
        }
    };

    let decision = Decision::allow_with_release(counted(&count));
    assert!(decision.allowed());
    assert_eq!(decision.reason(), reason::ALLOWED);
    let mut release = decision.into_release();
    assert!(release.is_pending());
    release.run();
    release.run();
    release.run();
    assert!(!release.is_pending());
    drop(release);
    assert_eq!(count.get(), 1, "run three times, then dropped: counted once");

    let dropped = Counter::new();
    drop(Release::new(counted(&dropped)));
    assert_eq!(dropped.get(), 1, "dropped without running: runs once");

    let whole = Counter::new();
    drop(Decision::allow_with_release(counted(&whole)));
    assert_eq!(whole.get(), 1, "dropping the whole decision runs its release");

    let mut none = Release::none();
    assert!(!none.is_pending());
    none.run();
    let _ = Decision::deny().into_release();
    assert!(!Decision::deny().allowed());
    assert_eq!(Decision::deny().reason(), reason::BUDGET_DENIED);
}

// J54 through the executor: a budget that allows attempt 0 (with a release)
// and denies attempt 1 → exactly one release (denials are never released).
#[tokio::test(start_paused = true)]
async fn j54_denied_decisions_are_never_released() {
    let budget = CountingBudget::denying(|attempt| attempt >= 1);
    let (executor, _) = budget_executor(Policy::builder(KEY).max_attempts(3).budget("b").build(), "b", budget.clone());
    let calls = Counter::new();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert!(matches!(result, Err(TestError::Failed(1))));
    assert_eq!((budget.consulted.get(), budget.allowed.get(), budget.released.get()), (2, 1, 1));

    let refusing = CountingBudget::denying(|_| true);
    let (executor, _) = budget_executor(Policy::builder(KEY).budget("b").build(), "b", refusing.clone());
    let _ = executor.call(KEY, always_failing(&calls)).await;
    assert_eq!((refusing.consulted.get(), refusing.released.get()), (1, 0));
}

/// Panics when asked about attempt `at` or later; allows (with a counting
/// release) before that.
struct PanickingBudget {
    at: u32,
    released: Counter,
}

impl Budget for PanickingBudget {
    fn allow_attempt(&self, _: &PolicyKey, attempt: u32, _: AttemptKind, _: &BudgetRef) -> Decision {
        assert!(attempt < self.at, "budget exploded");
        let released = self.released.clone();
        Decision::allow_with_release(move || {
            released.hit();
        })
    }
}

// J54 / §12.5 step 3: with panic recovery a panicking budget is a denial with
// reason `panic_in_budget` (event mode `standard`).
#[tokio::test(start_paused = true)]
async fn j54_panicking_budget_with_recovery_is_a_panic_in_budget_denial() {
    let observer = RecordingObserver::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).budget("boom").build())
        .budget("boom", PanickingBudget { at: 0, released: Counter::new() })
        .recover_panics(true)
        .observer(observer.clone())
        .build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, always_failing(&calls))).await;
    let error = result.unwrap_err();
    assert!(is_budget_denied(&error, reason::PANIC_IN_BUDGET), "{error:?}");
    assert_eq!(calls.get(), 0);
    let events = observer.budget_events();
    assert_eq!(events.len(), 1);
    assert!(!events[0].allowed);
    assert_eq!(events[0].reason, reason::PANIC_IN_BUDGET);
    assert_eq!(events[0].mode, "standard");
    assert_eq!(timeline.attempts.len(), 1);
    assert_eq!(timeline.attempts[0].budget_reason, reason::PANIC_IN_BUDGET);
}

// J54: a budget panicking at the second attempt (recovery on) → the first
// attempt's error is returned and its release ran.
#[tokio::test(start_paused = true)]
async fn j54_panicking_budget_after_an_attempt_returns_that_attempts_error() {
    let released = Counter::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).budget("boom").build())
        .budget("boom", PanickingBudget { at: 1, released: released.clone() })
        .recover_panics(true)
        .sleeper(RecordingSleeper::new())
        .build();
    let calls = Counter::new();
    let result = executor.call(KEY, always_failing(&calls)).await;
    assert!(matches!(result, Err(TestError::Failed(1))), "{result:?}");
    assert_eq!((calls.get(), released.get()), (1, 1));
}

// J54: without panic recovery the budget's panic propagates to the caller
// (here: the task's JoinError), after the earlier attempt's release ran.
#[tokio::test(start_paused = true)]
async fn j54_panicking_budget_without_recovery_propagates() {
    let released = Counter::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).budget("boom").build())
        .budget("boom", PanickingBudget { at: 1, released: released.clone() })
        .sleeper(RecordingSleeper::new())
        .build();
    assert!(!executor.recovers_panics());
    let calls = Counter::new();
    let task_calls = calls.clone();
    let joined = tokio::spawn(async move {
        executor
            .call(KEY, || {
                let n = task_calls.hit();
                async move { Err::<(), _>(TestError::Failed(n)) }
            })
            .await
    })
    .await;
    let error = joined.expect_err("the budget's panic reached the task");
    assert!(error.is_panic());
    let payload = error.into_panic();
    let message =
        payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
    assert_eq!(message, Some("budget exploded"));
    assert_eq!((calls.get(), released.get()), (1, 1));
}

// §8.3 / §8.4: `unlimited` is built in; registry names are trimmed and later
// registrations replace earlier ones; an executor sees budgets registered
// after it was built.
#[tokio::test(start_paused = true)]
async fn j_registry_builtins_trimming_and_late_registration() {
    let registry = Registry::with_builtins();
    assert_eq!(registry.names(), ["unlimited"]);
    assert!(Unlimited.allow_attempt(&KEY.into(), 9, AttemptKind::Hedge, &BudgetRef::named("x")).allowed());
    assert!(registry.try_register("   ", Arc::new(Unlimited)).is_err());
    registry.register(" late ", CountingBudget::denying(|_| true));
    assert!(registry.get("late").is_some());
    assert!(registry.get("  late").is_some());

    let registry = Arc::new(Registry::new());
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(1).budget("later").build())
        .budgets(Arc::clone(&registry))
        .build();
    let calls = Counter::new();
    let first = executor.call(KEY, always_failing(&calls)).await.unwrap_err();
    assert!(is_budget_denied(&first, reason::BUDGET_NOT_FOUND), "{first:?}");
    let budget = CountingBudget::new();
    registry.register("later", budget.clone());
    let second = executor.call(KEY, always_failing(&calls)).await;
    assert!(matches!(second, Err(TestError::Failed(1))), "{second:?}");
    assert_eq!((budget.consulted.get(), budget.released.get()), (1, 1));
}

// A catalog budget of `kind = "custom"` is the one registered in code under
// its name; unregistered, the missing-budget mode applies (nothing is built
// from the declaration).
#[tokio::test(start_paused = true)]
async fn a_custom_catalog_budget_is_the_one_registered_in_code() {
    let key = recourse::key!("budgets.Custom");
    let quota = CountingBudget::new();
    let executor = Executor::builder().budget("tenant_quota", quota.clone()).build();
    let result: Result<u32, TestError> = executor.call(key, || async { Ok(7) }).await;
    assert_eq!(result.unwrap(), 7);
    assert_eq!((quota.consulted.get(), quota.released.get()), (1, 1), "the registered budget gated the attempt");

    let unregistered = Executor::builder().missing_budget(FailureMode::Deny).build();
    let denied: Result<u32, TestError> = unregistered.call(key, || async { Ok(7) }).await;
    assert!(
        matches!(&denied, Err(TestError::Recourse(recourse::Error::BudgetDenied { reason })) if reason == reason::BUDGET_NOT_FOUND),
        "{denied:?}"
    );
}

// The timeline says which missing-budget mode let the call through or
// stopped it, so `allow` and `allow_unsafe` (both admit) are told apart.
#[tokio::test(start_paused = true)]
async fn the_timeline_names_the_missing_budget_mode() {
    for (mode, expected) in [
        (FailureMode::Allow, "ghost not found; attempts allowed (allow)"),
        (FailureMode::AllowUnsafe, "ghost not found; attempts allowed (allow_unsafe)"),
        (FailureMode::Fallback, "ghost not found; attempts denied (fallback)"),
        (FailureMode::Deny, "ghost not found; attempts denied (deny)"),
    ] {
        let executor = Executor::builder()
            .policy(Policy::builder(KEY).max_attempts(1).budget("ghost").build())
            .missing_budget(mode)
            .build();
        let (_, timeline) = recourse::capture(executor.call(KEY, || async { Ok::<_, TestError>(1) })).await;
        assert_eq!(timeline.attributes.get("budget_missing"), Some(expected), "{mode:?}");
    }
}

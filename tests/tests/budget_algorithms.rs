//! The budget algorithms beyond the token bucket, each against the numbers
//! that define it: gRPC A6 retry throttling, Finagle's percentage budget
//! (and tower issue 857), the AWS retry quota, Google SRE adaptive
//! throttling and Envoy's concurrency budget; and, through an executor,
//! that each hears how its attempts ended.
#![allow(missing_docs)]

mod support;

use std::time::Duration;

use recourse::budget::{
    AdaptiveThrottling, AttemptEnd, AttemptKind, Budget, ConcurrencyBudget, Decision, PercentageBudget, Release,
    RetryQuota, RetryThrottling, reason,
};
use recourse::policy::{BudgetRef, Policy, PolicyKey};
use recourse::provider::StaticProvider;
use recourse::{Executor, OutcomeKind};
use support::{Counter, KEY, SEED, TestError};

fn key() -> PolicyKey {
    KEY.into()
}

fn one() -> BudgetRef {
    BudgetRef::named("b")
}

fn first(budget: &impl Budget) -> Release {
    let decision = budget.allow_attempt(&key(), 0, AttemptKind::Retry, &one());
    assert!(decision.allowed(), "a first attempt was refused: {}", decision.reason());
    decision.into_release()
}

fn retry(budget: &impl Budget) -> Option<Release> {
    let decision = budget.allow_attempt(&key(), 1, AttemptKind::Retry, &one());
    decision.allowed().then(|| decision.into_release())
}

const RETRYABLE: AttemptEnd = AttemptEnd::Failed(OutcomeKind::Retryable);

/// An executor with `budget` as the retry budget of `policy`, no sleeps.
fn executor(policy: Policy, budget: impl Budget) -> Executor {
    Executor::builder()
        .provider(StaticProvider::new().with(policy))
        .budget("b", budget)
        .sleeper(support::RecordingSleeper::new())
        .jitter_seed(SEED)
        .build()
}

// ---------------------------------------------------------------------------
// gRPC A6: max_tokens 10, token_ratio 0.1.

#[test]
fn a6_retries_stop_after_five_failures_and_resume_after_one_success() {
    let throttle = RetryThrottling::new(10, 0.1);
    for failure in 1..=5 {
        assert!(retry(&throttle).is_some(), "retries run while tokens > 5 (failure {failure})");
        first(&throttle).settle(RETRYABLE);
    }
    assert!((throttle.tokens() - 5.0).abs() < 1e-9);
    let denied = throttle.allow_attempt(&key(), 1, AttemptKind::Retry, &one());
    assert!(!denied.allowed());
    assert_eq!(denied.reason(), reason::BUDGET_THROTTLED);
    assert!(!throttle.allow_attempt(&key(), 0, AttemptKind::Hedge, &one()).allowed(), "hedges are throttled too");
    first(&throttle).settle(AttemptEnd::Succeeded);
    assert!((throttle.tokens() - 5.1).abs() < 1e-9);
    assert!(retry(&throttle).is_some(), "one success (5.1 > 5) resumes retries");
}

#[test]
fn a6_counts_only_retryable_failures_and_timeouts_and_caps_at_max_tokens() {
    let throttle = RetryThrottling::new(10, 0.1);
    for end in
        [AttemptEnd::Failed(OutcomeKind::NonRetryable), AttemptEnd::Failed(OutcomeKind::Abort), AttemptEnd::Cancelled]
    {
        first(&throttle).settle(end);
    }
    drop(first(&throttle)); // dropped: cancelled
    assert!((throttle.tokens() - 10.0).abs() < 1e-9, "malformed requests do not drain tokens");
    first(&throttle).settle(AttemptEnd::TimedOut);
    assert!((throttle.tokens() - 9.0).abs() < 1e-9);
    for _ in 0..20 {
        first(&throttle).settle(AttemptEnd::Succeeded);
    }
    assert!((throttle.tokens() - 10.0).abs() < 1e-9, "never above max_tokens");
    // Out-of-range settings are clamped, never a panic.
    assert!((RetryThrottling::new(0, f64::NAN).tokens() - 1.0).abs() < 1e-9);
    assert!((RetryThrottling::new(5000, -1.0).tokens() - 1000.0).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn a6_through_an_executor_the_call_stops_when_the_tokens_reach_half() {
    // Each failed attempt costs a token: attempts 1-5 run (10 → 5), the
    // sixth is throttled, and the call ends with the fifth's error.
    let policy = Policy::builder(KEY).max_attempts(10).budget("b").build();
    let executor = executor(policy, RetryThrottling::new(10, 0.1));
    let calls = Counter::new();
    let (result, timeline) =
        recourse::capture(executor.call(KEY, || async { Err::<(), _>(TestError::Failed(calls.hit())) })).await;
    assert!(matches!(result, Err(TestError::Failed(5))), "{result:?}");
    assert_eq!(calls.get(), 5);
    let last = timeline.attempts.last().expect("a denied attempt is recorded");
    assert!(!last.budget_allowed);
    assert_eq!(last.budget_reason, reason::BUDGET_THROTTLED);
}

// ---------------------------------------------------------------------------
// Finagle / tower percentage budget.

#[tokio::test(start_paused = true)]
async fn percentage_admits_exactly_its_ratio_of_requests_tower_857() {
    // tower's TpsBudget with retry_percent 0.6 retries every request
    // (integer deposits); 100 requests at 0.6 must give 60 retries.
    let budget = PercentageBudget::new(0.6, 0, Duration::from_secs(10));
    for _ in 0..100 {
        drop(first(&budget));
    }
    let admitted = (0..200).filter(|_| retry(&budget).is_some()).count();
    assert_eq!(admitted, 60);
    assert!(budget.available() < 1.0);
}

#[tokio::test(start_paused = true)]
async fn percentage_keeps_a_floor_and_forgets_requests_after_ttl() {
    // min_per_sec 10 over a 10 s ttl: 100 retries with no traffic at all.
    let budget = PercentageBudget::new(0.2, 10, Duration::from_secs(10));
    assert_eq!((0..500).filter(|_| retry(&budget).is_some()).count(), 100);
    // Ten seconds on, the retries have slid out of the window: the floor is back.
    tokio::time::advance(Duration::from_secs(10)).await;
    let budget2 = PercentageBudget::new(0.2, 0, Duration::from_secs(10));
    for _ in 0..50 {
        drop(first(&budget2));
    }
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!((0..50).filter(|_| retry(&budget2).is_some()).count(), 10, "50 requests × 0.2");
    tokio::time::advance(Duration::from_secs(6)).await;
    assert!(retry(&budget2).is_none(), "the requests are older than the ttl");
    assert_eq!((0..500).filter(|_| retry(&budget).is_some()).count(), 100, "the floor is back");
}

#[tokio::test(start_paused = true)]
async fn percentage_never_overadmits_under_racing_threads() {
    let budget = std::sync::Arc::new(PercentageBudget::new(0.5, 0, Duration::from_secs(10)));
    for _ in 0..1000 {
        drop(first(&*budget));
    }
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let budget = budget.clone();
            std::thread::spawn(move || (0..1000).filter(|_| retry(&*budget).is_some()).count())
        })
        .collect();
    let admitted: usize = workers.into_iter().map(|w| w.join().expect("no panic")).sum();
    assert!(admitted <= 500, "admitted {admitted} of 500");
    assert!(admitted >= 496, "a refused retry is taken back ({admitted})");
}

// ---------------------------------------------------------------------------
// AWS retry quota: 500 units, 5 per retry, 10 after a timeout, +1 on success.

#[test]
fn quota_prices_retries_by_what_they_retry_and_refunds_successes() {
    let quota = RetryQuota::standard();
    let after = |previous| quota.allow_attempt_after(&key(), 1, AttemptKind::Retry, &one(), Some(previous));
    let mut held = Vec::new();
    while let Some(release) = Some(after(RETRYABLE)).filter(Decision::allowed).map(Decision::into_release) {
        held.push(release);
    }
    assert_eq!(held.len(), 100, "500 / 5");
    assert_eq!(quota.available(), 0);
    // Failed retries give nothing back.
    for mut release in held.drain(..50) {
        release.settle(RETRYABLE);
    }
    assert_eq!(quota.available(), 0);
    // Successful ones refund their cost.
    for mut release in held.drain(..) {
        release.settle(AttemptEnd::Succeeded);
    }
    assert_eq!(quota.available(), 250);
    let quota = RetryQuota::standard();
    let timeouts = (0..100)
        .filter(|_| {
            quota.allow_attempt_after(&key(), 1, AttemptKind::Retry, &one(), Some(AttemptEnd::TimedOut)).allowed()
        })
        .count();
    assert_eq!(timeouts, 50, "500 / 10");
    // A first attempt that succeeds adds 1, up to the capacity.
    first(&quota).settle(AttemptEnd::Succeeded);
    assert_eq!(quota.available(), 1);
    let full = RetryQuota::new(3).with_costs(1, 2).with_success_increment(2);
    first(&full).settle(AttemptEnd::Succeeded);
    assert_eq!(full.available(), 3);
}

#[tokio::test(start_paused = true)]
async fn quota_through_an_executor_charges_a_timeout_twice_a_failure() {
    // A quota of 20: attempts cut by their own timeout make every retry
    // cost 10, so two retries run; plain failures cost 5, so four.
    let slow = Policy::builder(KEY).max_attempts(10).timeout_per_attempt(Duration::from_millis(10)).budget("b").build();
    let executor_slow = executor(slow, RetryQuota::new(20));
    let calls = Counter::new();
    let _ = executor_slow
        .call(KEY, || async {
            calls.hit();
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), TestError>(())
        })
        .await;
    assert_eq!(calls.get(), 3, "the first attempt and two retries at 10 each");
    let failing = Policy::builder(KEY).max_attempts(10).budget("b").build();
    let executor_failing = executor(failing, RetryQuota::new(20));
    let calls = Counter::new();
    let _ = executor_failing.call(KEY, || async { Err::<(), _>(TestError::Failed(calls.hit())) }).await;
    assert_eq!(calls.get(), 5, "the first attempt and four retries at 5 each");
}

// ---------------------------------------------------------------------------
// Google SRE adaptive throttling: max(0, (requests − K·accepts) / (requests + 1)).

#[tokio::test(start_paused = true)]
async fn adaptive_rejects_with_the_books_probability() {
    let throttle = AdaptiveThrottling::new(2.0, Duration::from_secs(120)).with_seed(SEED);
    // 100 requests, 40 accepted: p = (100 − 80) / 101. (Past the 80th
    // request the throttle may refuse some; a refusal is a request too.)
    for n in 0..100 {
        let decision = throttle.allow_attempt(&key(), 0, AttemptKind::Retry, &one());
        assert!(decision.allowed() || n >= 80, "p is 0 up to 2 × 40 requests");
        decision.into_release().settle(if n < 40 { AttemptEnd::Succeeded } else { RETRYABLE });
    }
    assert!((throttle.reject_probability() - 20.0 / 101.0).abs() < 1e-12);
    // Twice as many accepts as K needs: never refused.
    let healthy = AdaptiveThrottling::new(2.0, Duration::from_secs(120)).with_seed(SEED);
    for _ in 0..1000 {
        let decision = healthy.allow_attempt(&key(), 0, AttemptKind::Retry, &one());
        assert!(decision.allowed());
        decision.into_release().settle(AttemptEnd::Succeeded);
    }
    assert!(healthy.reject_probability().abs() < f64::EPSILON);
}

#[tokio::test(start_paused = true)]
async fn adaptive_sheds_almost_everything_when_nothing_is_accepted_and_forgets_after_the_window() {
    let throttle = AdaptiveThrottling::new(2.0, Duration::from_secs(120)).with_seed(SEED);
    let mut refused = 0;
    for _ in 0..2000 {
        let decision = throttle.allow_attempt(&key(), 0, AttemptKind::Retry, &one());
        if decision.allowed() {
            decision.into_release().settle(RETRYABLE);
        } else {
            assert_eq!(decision.reason(), reason::BUDGET_THROTTLED);
            refused += 1;
        }
    }
    // p after n requests is n / (n + 1): all but a handful are refused.
    assert!(refused >= 1980, "refused {refused} of 2000");
    tokio::time::advance(Duration::from_secs(121)).await;
    assert!(throttle.reject_probability().abs() < f64::EPSILON, "the window forgot them");
    // NaN and k below 1 are clamped, never a panic.
    let _ = AdaptiveThrottling::new(f64::NAN, Duration::ZERO).reject_probability();
}

// ---------------------------------------------------------------------------
// Envoy concurrency budget: ratio 0.2, min_concurrency 3.

#[test]
fn concurrency_caps_retries_in_flight_at_a_share_of_attempts_in_flight() {
    let budget = ConcurrencyBudget::new(0.2, 3);
    let firsts: Vec<_> = (0..20).map(|_| first(&budget)).collect();
    // With 20 first attempts in flight, 5 retries: 20 % of 25.
    let retries: Vec<_> = (0..10).filter_map(|_| retry(&budget)).collect();
    assert_eq!(retries.len(), 5);
    assert_eq!(budget.in_flight(), (25, 5));
    drop(retries);
    drop(firsts);
    assert_eq!(budget.in_flight(), (0, 0), "every attempt's end gave its slot back");
    // With nothing else in flight, the floor: 3.
    let floor: Vec<_> = (0..10).filter_map(|_| retry(&budget)).collect();
    assert_eq!(floor.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn concurrency_slots_come_back_when_a_call_is_dropped() {
    let policy = Policy::builder(KEY).max_attempts(3).budget("b").build();
    let budget = std::sync::Arc::new(ConcurrencyBudget::new(0.2, 1));
    let executor = executor(policy, budget.clone());
    let call = executor.call(KEY, || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<(), TestError>(())
    });
    let cut = tokio::time::timeout(Duration::from_secs(1), call).await;
    assert!(cut.is_err());
    assert_eq!(budget.in_flight(), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn every_call_form_tells_the_budget_how_its_attempts_ended() {
    // The lean path (nobody watching: the first attempt runs before the
    // engine exists), the recording path (a capture), and a hedged group
    // all settle their releases with the attempt's end.
    let throttle = std::sync::Arc::new(RetryThrottling::new(100, 0.5));
    let policy = Policy::builder(KEY).max_attempts(3).budget("b").build();
    let plain = executor(policy, throttle.clone());
    let tokens = || throttle.tokens();
    assert_eq!(plain.call(KEY, || async { Ok::<_, TestError>(()) }).await.ok(), Some(()));
    assert!((tokens() - 100.0).abs() < 1e-9);
    let calls = Counter::new();
    let _ = plain.call(KEY, || async { Err::<(), _>(TestError::Failed(calls.hit())) }).await;
    assert!((tokens() - 97.0).abs() < 1e-9, "three retryable failures: {}", tokens());
    let _ = recourse::capture(plain.call(KEY, || async { Ok::<_, TestError>(()) })).await;
    assert!((tokens() - 97.5).abs() < 1e-9, "a captured success: {}", tokens());

    let hedged = Policy::builder(KEY)
        .max_attempts(1)
        .enable_hedging()
        .max_hedges(1)
        .hedge_delay(Duration::from_millis(10))
        .hedge_budget("b")
        .build();
    let throttle = std::sync::Arc::new(RetryThrottling::new(100, 0.5));
    first(&*throttle).settle(RETRYABLE);
    let hedging = executor(hedged, throttle.clone());
    let calls = Counter::new();
    let result = hedging
        .call(KEY, || {
            let n = calls.hit();
            async move {
                if n == 1 {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Ok::<_, TestError>(n)
            }
        })
        .await;
    assert_eq!(result.ok(), Some(2), "the first hedge wins");
    // The winning hedge's success is heard (the primary is unbudgeted, and
    // a cancelled attempt would change nothing).
    assert!((throttle.tokens() - 99.5).abs() < 1e-9, "{}", throttle.tokens());
}

#[tokio::test(start_paused = true)]
async fn a_settle_that_panics_never_reaches_the_caller_with_recovery_on() {
    struct Explodes;
    impl recourse::budget::Settle for Explodes {
        fn settle(&self, _: u64, _: AttemptEnd) {
            panic!("settle exploded");
        }
    }
    struct Settling(std::sync::Arc<Explodes>);
    impl Budget for Settling {
        fn allow_attempt(&self, _: &PolicyKey, _: u32, _: AttemptKind, _: &BudgetRef) -> Decision {
            Decision::allow_settled(self.0.clone(), 0)
        }
    }
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).budget("b").build())
        .budget("b", Settling(std::sync::Arc::new(Explodes)))
        .sleeper(support::RecordingSleeper::new())
        .recover_panics(true)
        .build();
    assert_eq!(executor.call(KEY, || async { Ok::<_, TestError>(7) }).await.ok(), Some(7));
    let calls = Counter::new();
    let result = executor.call(KEY, || async { Err::<(), _>(TestError::Failed(calls.hit())) }).await;
    assert!(matches!(result, Err(TestError::Failed(2))), "{result:?}");
}

//! Budgets declared in `recourse.toml` (`[budgets.<name>]` with a kind
//! recourse implements), end to end: a `#[recourse]` function and a
//! `key!` call site carry the declaration, the executor creates the budget
//! on first use, and the budget behaves as its defining numbers say.
//!
//! `tests/recourse.toml` declares `a6` (gRPC retry throttling,
//! `max_tokens = 10`, `token_ratio = 0.1`) for `budgets.Throttled`, and
//! `quota` (the AWS retry quota, `capacity = 10`, costs 5 and 10) for
//! `budgets.Quota`.
#![allow(missing_docs)]

mod support;

use std::time::Duration;

use recourse::budget::reason;
use recourse::policy::spec::BudgetDecl;
use recourse::{Executor, recourse};
use support::{Counter, CountingBudget, RecordingSleeper, SEED, TestError};

/// An executor of the test's own (so the budgets it creates are fresh),
/// with no registration at all and no real sleeps.
fn executor() -> Executor {
    Executor::builder().sleeper(RecordingSleeper::new()).jitter_seed(SEED).build()
}

/// Fails every attempt retryably.
#[recourse(policy = "budgets.Throttled", executor = executor)]
async fn always_failing(executor: &Executor, calls: &Counter) -> Result<(), TestError> {
    Err(TestError::Failed(calls.hit()))
}

/// Succeeds on every attempt.
#[recourse(policy = "budgets.Throttled", executor = executor)]
async fn succeeding(executor: &Executor, calls: &Counter) -> Result<usize, TestError> {
    Ok(calls.hit())
}

/// Fails its first attempt retryably, then succeeds.
#[recourse(policy = "budgets.Throttled", executor = executor)]
async fn failing_once(executor: &Executor, calls: &Counter) -> Result<usize, TestError> {
    let call = calls.hit();
    if call == 1 { Err(TestError::Failed(call)) } else { Ok(call) }
}

#[test]
fn the_catalog_embeds_every_declaration() {
    let catalog = recourse::catalog!();
    let budgets = catalog.budgets();
    let a6 = budgets.iter().find(|(name, _)| *name == "a6").map(|(_, decl)| *decl);
    assert_eq!(a6, Some(BudgetDecl::RetryThrottling { max_tokens: 10, token_ratio: 0.1 }));
    let quota = budgets.iter().find(|(name, _)| *name == "quota").map(|(_, decl)| *decl);
    assert_eq!(
        quota,
        Some(BudgetDecl::RetryQuota { capacity: 10, retry_cost: 5, timeout_cost: 10, success_increment: 1 }),
        "the SDKs' costs fill in what the catalog leaves out"
    );
    let custom = budgets.iter().find(|(name, _)| *name == "tenant_quota").map(|(_, decl)| *decl);
    assert_eq!(custom, Some(BudgetDecl::Custom));
}

#[tokio::test(start_paused = true)]
async fn a6_declared_in_the_catalog_stops_retries_after_five_failures_and_resumes_after_successes() {
    let executor = executor();
    assert!(executor.budgets().get("a6").is_none(), "created on first use, not before");

    // 10 tokens; each failed attempt takes one. Attempts 1-5 run (10 → 5),
    // the sixth is throttled (5 is not above half of 10), and the call
    // ends with the fifth attempt's error.
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(always_failing(&executor, &calls)).await;
    assert!(matches!(result, Err(TestError::Failed(5))), "{result:?}");
    assert_eq!(calls.get(), 5);
    let last = timeline.attempts.last().expect("the throttled attempt is on the timeline");
    assert!(!last.budget_allowed);
    assert_eq!(last.budget_reason, reason::BUDGET_THROTTLED);
    assert!(executor.budgets().get("a6").is_some(), "the declaration became the executor's budget");

    // First attempts always run; at 5 tokens no retry does (5 → 4).
    let calls = Counter::new();
    let result = always_failing(&executor, &calls).await;
    assert!(matches!(result, Err(TestError::Failed(1))), "{result:?}");
    assert_eq!(calls.get(), 1, "throttled after the first attempt");

    // Each success gives back 0.1. After 20 (4 → 6), a failed first
    // attempt leaves exactly half (5), and its retry is throttled.
    for _ in 0..20 {
        assert_eq!(succeeding(&executor, &Counter::new()).await.unwrap(), 1);
    }
    let result = failing_once(&executor, &Counter::new()).await;
    assert!(matches!(result, Err(TestError::Failed(1))), "{result:?}");
    // Eleven more (5 → 6.1): the failed first attempt leaves 5.1, above
    // half, and the retry runs.
    for _ in 0..11 {
        assert_eq!(succeeding(&executor, &Counter::new()).await.unwrap(), 1);
    }
    assert_eq!(failing_once(&executor, &Counter::new()).await.unwrap(), 2, "the retry ran and succeeded");
}

#[tokio::test(start_paused = true)]
async fn call_sites_naming_a_declared_budget_share_one_instance() {
    let executor = executor();
    let calls = Counter::new();
    let _ = always_failing(&executor, &calls).await;
    assert_eq!(calls.get(), 5);

    // `key!` carries the same declaration; the executor already holds the
    // budget, so the retry is throttled here too.
    let key = recourse::key!("budgets.Throttled");
    let calls = Counter::new();
    let result: Result<(), TestError> = executor.call(key, || async { Err(TestError::Failed(calls.hit())) }).await;
    assert!(matches!(result, Err(TestError::Failed(1))), "{result:?}");
    assert_eq!(calls.get(), 1);

    // Another executor has budgets of its own.
    let fresh = self::executor();
    let calls = Counter::new();
    let _ = always_failing(&fresh, &calls).await;
    assert_eq!(calls.get(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_budget_registered_in_code_wins_over_the_declaration() {
    let counting = CountingBudget::new();
    let executor =
        Executor::builder().budget("a6", counting.clone()).sleeper(RecordingSleeper::new()).jitter_seed(SEED).build();
    let calls = Counter::new();
    let result = always_failing(&executor, &calls).await;
    assert!(matches!(result, Err(TestError::Failed(10))), "{result:?}");
    assert_eq!(counting.consulted.get(), 10, "the registered budget gated every attempt");
}

#[tokio::test(start_paused = true)]
async fn a_declared_retry_quota_prices_retries_by_what_failed_and_refunds_successes() {
    let executor = executor();
    let key = recourse::key!("budgets.Quota");
    let slow = Duration::from_secs(1);

    // A retry that succeeds is refunded: the pool stays full.
    for _ in 0..3 {
        let calls = Counter::new();
        let result: Result<usize, TestError> = executor
            .call(key, || async {
                let call = calls.hit();
                if call == 1 { Err(TestError::Failed(call)) } else { Ok(call) }
            })
            .await;
        assert_eq!(result.unwrap(), 2);
    }

    // After a timeout a retry costs 10: the first drains the pool, the
    // second is refused, and the call ends with the second timeout.
    let calls = Counter::new();
    let result: Result<(), TestError> = executor
        .call(key, || async {
            calls.hit();
            tokio::time::sleep(slow).await;
            Ok(())
        })
        .await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(calls.get(), 2);

    // Empty: not even a 5-unit retry runs.
    let calls = Counter::new();
    let result: Result<(), TestError> = executor.call(key, || async { Err(TestError::Failed(calls.hit())) }).await;
    assert!(matches!(result, Err(TestError::Failed(1))), "{result:?}");

    // Five first-attempt successes add 1 each: one 5-unit retry again.
    for _ in 0..5 {
        let result: Result<(), TestError> = executor.call(key, || async { Ok(()) }).await;
        result.unwrap();
    }
    let calls = Counter::new();
    let result: Result<(), TestError> = executor.call(key, || async { Err(TestError::Failed(calls.hit())) }).await;
    assert!(matches!(result, Err(TestError::Failed(2))), "{result:?}");
}

#[test]
fn try_build_creates_nothing_for_local_kinds_and_still_names_custom_ones() {
    let error = Executor::builder().catalog(recourse::catalog!()).try_build().expect_err("custom names are missing");
    assert!(error.missing().iter().all(|(_, name)| !["a6", "quota"].contains(name)), "{:?}", error.missing());
    assert!(error.unusable().is_empty(), "{:?}", error.unusable());
}

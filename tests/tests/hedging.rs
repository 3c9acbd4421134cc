//! Hedging through the executor: section N of the conformance checklist
//! (`retry/hedge_test.go`, `retry/latency_test.go`, items 66–69), spec §9 and
//! §12.8 / §12.13 / §12.15, and DESIGN §4, §6.3, §6.8, §6.9.
//!
//! Rust adaptations: Go runs these on real time with goroutines; here every
//! test runs on paused tokio time and the operations `tokio::time::sleep`
//! for their latency, so every instant is exact. "The loser observes
//! cancellation" becomes "the loser's future is dropped" (a `DropGuard`
//! held across its await records the drop). Hedges race inside the
//! caller's task, so "the primary was cancelled" can be checked the moment
//! the call returns.
#![allow(missing_docs)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use recourse::budget::reason as budget_reason;
use recourse::hedge::LatencyTracker;
use recourse::policy::{Policy, PolicyKey, PolicySource};
use recourse::provider::DynamicProvider;
use recourse::{Executor, FailureMode, OutcomeKind, recourse};
use support::{Counter, CountingBudget, DropFlag, Immediate, KEY, OpError, RecordingObserver, ms, yield_times};
use tokio::time::Instant;

/// One attempt and `max_hedges` hedges spaced `delay` apart.
fn hedged(max_hedges: u32, delay: Duration) -> recourse::policy::PolicyBuilder {
    Policy::builder(KEY).max_attempts(1).max_hedges(max_hedges).hedge_delay(delay)
}

fn executor_with(policy: Policy) -> Executor {
    Executor::builder().policy(policy).build()
}

/// `(retry index, is hedge, hedge index)` of the attempt in scope.
fn scope() -> (u32, bool, u32) {
    let attempt = recourse::attempt().expect("the operation runs inside an attempt scope");
    (attempt.retry_index(), attempt.is_hedge(), attempt.hedge_index())
}

/// `(retry index, is hedge, hedge index, outcome)` of every record.
fn shape(timeline: &recourse::Timeline) -> Vec<(u32, bool, u32, OutcomeKind)> {
    timeline.attempts.iter().map(|r| (r.attempt, r.is_hedge, r.hedge_index, r.outcome.kind)).collect()
}

// ---------------------------------------------------------------------------
// N66–N69.

// N66: {1 attempt, max 1 hedge, delay 10 ms}; the op sleeps 50 ms and
// returns "ok" for everyone → "ok", at least one record.
#[tokio::test(start_paused = true)]
async fn n66_a_hedged_call_returns_the_operations_value() {
    let executor = executor_with(hedged(1, ms(10)).build());
    let calls = Counter::new();
    let start = Instant::now();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        async {
            tokio::time::sleep(ms(50)).await;
            Ok::<_, OpError>("ok")
        }
    }))
    .await;
    assert_eq!(result.unwrap(), "ok");
    assert!(!timeline.attempts.is_empty(), "N66: at least one record");
    // Exact on paused time: the hedge launched at 10 ms, the primary won at
    // 50 ms and the hedge (due at 60 ms) was dropped, on the record as
    // cancelled (DESIGN §6.10).
    assert_eq!(calls.get(), 2, "primary + one hedge");
    assert_eq!(shape(&timeline), [(0, false, 0, OutcomeKind::Success), (0, true, 1, OutcomeKind::Abort)]);
    assert_eq!(timeline.attempts[1].outcome.reason, "hedge_cancelled");
    assert_eq!(timeline.attempts[1].duration(), ms(40), "it ran from its launch to the cancel");
    assert_eq!(start.elapsed(), ms(50));
    assert!(timeline.succeeded());
}

// N67: the primary waits 200 ms (or until dropped), the hedge returns at
// once → the hedge's value; the primary's future is dropped; a record has
// is_hedge; the call ends exactly when the hedge launched (10 ms).
#[tokio::test(start_paused = true)]
async fn n67_the_hedge_wins_and_the_primary_is_dropped() {
    let observer = RecordingObserver::new();
    let executor = Executor::builder().policy(hedged(1, ms(10)).build()).observer(observer.clone()).build();
    let primary = DropFlag::new();
    let start = Instant::now();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        let (_, is_hedge, _) = scope();
        let primary = primary.clone();
        async move {
            if is_hedge {
                return Ok::<_, OpError>("hedge");
            }
            let guard = primary.guard();
            tokio::time::sleep(ms(200)).await;
            guard.disarm();
            Ok("primary")
        }
    }))
    .await;
    assert_eq!(result.unwrap(), "hedge");
    assert_eq!((primary.armed(), primary.dropped()), (1, 1), "the losing primary's future was dropped mid-await");
    assert_eq!(start.elapsed(), ms(10), "the call ends the instant the hedge returns");
    assert!(timeline.attempts.iter().any(|r| r.is_hedge), "N67: a record with is_hedge");
    assert_eq!(
        shape(&timeline),
        [(0, true, 1, OutcomeKind::Success), (0, false, 0, OutcomeKind::Abort)],
        "the dropped primary is on the record as cancelled"
    );
    assert_eq!(timeline.attempts[0].start - timeline.start, ms(10));
    assert_eq!(timeline.attempts[1].outcome.reason, "hedge_cancelled");
    assert_eq!(timeline.attempts[1].duration(), ms(10), "the primary ran until the hedge won");
    assert_eq!(
        observer.log(),
        ["start", "hedge_spawn(0,h1)", "attempt(0)", "hedge_cancel(0,h0,another attempt succeeded)", "success(2)"]
    );
}

// N68: {2 attempts, initial 1 ms, max 1 hedge, delay 20 ms}; the op sleeps
// 50 ms and fails retryable → error, exactly 4 records (primary + hedge per
// group), in completion order.
#[tokio::test(start_paused = true)]
async fn n68_every_retry_group_hedges_and_records_both_attempts() {
    let policy = Policy::builder(KEY).max_attempts(2).initial_backoff(ms(1)).max_hedges(1).hedge_delay(ms(20)).build();
    let executor = executor_with(policy);
    let calls = Counter::new();
    let start = Instant::now();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        let (_, is_hedge, _) = scope();
        async move {
            tokio::time::sleep(ms(50)).await;
            Err::<(), _>(OpError::Retryable(if is_hedge { "hedge" } else { "primary" }))
        }
    }))
    .await;
    // Both failures of the last group are retryable; ties go to the latest
    // (the hedge, finishing at 70 ms into its group).
    assert!(matches!(result, Err(OpError::Retryable("hedge"))), "{result:?}");
    assert_eq!(calls.get(), 4);
    assert_eq!(
        shape(&timeline),
        [
            (0, false, 0, OutcomeKind::Retryable),
            (0, true, 1, OutcomeKind::Retryable),
            (1, false, 0, OutcomeKind::Retryable),
            (1, true, 1, OutcomeKind::Retryable),
        ],
        "N68: exactly 4 records, primary then hedge in each group"
    );
    let r = &timeline.attempts;
    assert_eq!(r[1].start - r[0].start, ms(20), "the hedge launches one delay after the primary");
    assert_eq!((r[0].backoff, r[1].backoff, r[2].backoff, r[3].backoff), (ms(0), ms(0), ms(1), ms(0)));
    assert_eq!(r[2].start - r[1].end, ms(1), "group 1 starts after the 1 ms backoff");
    assert_eq!(start.elapsed(), ms(70 + 1 + 70));
    let final_error = timeline.final_error.as_ref().expect("the call failed");
    assert_eq!(final_error.kind, OutcomeKind::Retryable);
}

// N69: trigger `p50` (a built-in latency trigger, 20 samples minimum); 20
// priming calls of 5 ms each; then the hedge fires just after ≈5 ms, long
// before the 200 ms the delay normalizes to. The op always sees its
// attempt scope.
#[tokio::test(start_paused = true)]
async fn n69_a_latency_trigger_hedges_at_the_keys_p50() {
    let executor = executor_with(Policy::builder(KEY).max_attempts(1).max_hedges(1).hedge_trigger("p50").build());
    let key = PolicyKey::from(KEY);
    assert_eq!(executor.policy_for(&key).unwrap().hedge.delay, ms(200), "no delay given: normalized to 200 ms");

    let seen = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..20 {
        let result = executor
            .call(KEY, || {
                let outer = scope();
                let seen = Arc::clone(&seen);
                async move {
                    tokio::time::sleep(ms(5)).await;
                    seen.lock().unwrap().push((outer, scope()));
                    Ok::<_, OpError>(())
                }
            })
            .await;
        assert!(result.is_ok());
    }
    let primed = seen.lock().unwrap().clone();
    assert_eq!(primed.len(), 20, "fewer than 20 samples: the trigger only polls, no hedge launched");
    assert!(primed.iter().all(|&(outer, inner)| outer == (0, false, 0) && inner == outer));

    let latency = executor.latency(&key).snapshot();
    assert_eq!(latency.samples, 20);
    let bound = ms(5).mul_f64(LatencyTracker::RELATIVE_ERROR);
    assert!(latency.p50.abs_diff(ms(5)) <= bound, "p50 {:?} within 1/32 of 5 ms", latency.p50);

    let launches = Arc::new(Mutex::new(Vec::new()));
    let primary = DropFlag::new();
    let start = Instant::now();
    let result = executor
        .call(KEY, || {
            let outer = scope();
            launches.lock().unwrap().push((outer, start.elapsed()));
            let primary = primary.clone();
            async move {
                assert_eq!(scope(), outer, "the future sees the same scope as the closure");
                if outer.1 {
                    return Ok::<_, OpError>(100);
                }
                let guard = primary.guard();
                tokio::time::sleep(ms(50)).await;
                guard.disarm();
                assert_eq!(scope(), outer, "and keeps seeing it after an await");
                Ok(1)
            }
        })
        .await;
    assert_eq!(result.unwrap(), 100);
    let launches = launches.lock().unwrap().clone();
    assert_eq!(launches.len(), 2, "primary once, hedge once");
    assert_eq!(launches[0], ((0, false, 0), ms(0)));
    let (hedge_scope, hedge_at) = launches[1];
    assert_eq!(hedge_scope, (0, true, 1));
    // Strictly past the p50, give or take tokio's 1 ms timer granularity.
    assert!(hedge_at > latency.p50 && hedge_at <= latency.p50 + ms(2), "hedge at {hedge_at:?}, p50 {:?}", latency.p50);
    assert!(hedge_at < ms(200));
    assert_eq!(start.elapsed(), hedge_at, "the hedge won at once");
    assert_eq!(primary.dropped(), 1);
}

// A latency trigger, once its threshold is crossed, keeps answering
// "spawn"; the group paces it (DESIGN §6.12, unlike Go's burst): one hedge
// per evaluation, the next evaluation a hedge delay after the launch.
// max_hedges is clamped to 3.
#[tokio::test(start_paused = true)]
async fn a_latency_trigger_paces_the_remaining_hedges_by_the_hedge_delay() {
    let executor = executor_with(
        Policy::builder(KEY).max_attempts(1).max_hedges(7).hedge_delay(ms(10)).hedge_trigger("p90").build(),
    );
    assert_eq!(executor.policy_for(&PolicyKey::from(KEY)).unwrap().hedge.max_hedges, 3, "clamped");
    for _ in 0..20 {
        let primed = executor
            .call(KEY, || async {
                tokio::time::sleep(ms(8)).await;
                Ok::<_, OpError>(())
            })
            .await;
        assert!(primed.is_ok());
    }
    let launches = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let result = executor
        .call(KEY, || {
            launches.lock().unwrap().push((scope().2, start.elapsed()));
            async {
                tokio::time::sleep(ms(60)).await;
                Ok::<_, OpError>(())
            }
        })
        .await;
    assert!(result.is_ok());
    let launches = launches.lock().unwrap().clone();
    let indices: Vec<u32> = launches.iter().map(|&(index, _)| index).collect();
    assert_eq!(indices, [0, 1, 2, 3], "the primary and 3 hedges, no more");
    let at = launches[1].1;
    assert!(at > ms(7) && at <= ms(10), "just past the p90 of 8 ms: {at:?}");
    assert_eq!((launches[2].1, launches[3].1), (at + ms(10), at + ms(20)), "paced: {launches:?}");
}

// Hedges launch only while an attempt of the group is in flight: a primary
// that fails before the first hedge is due ends its group at once (the
// schedule is abandoned); a hedge still running keeps the schedule alive
// after the primary failed.
#[tokio::test(start_paused = true)]
async fn hedges_launch_only_while_an_attempt_is_in_flight() {
    let policy = Policy::builder(KEY).max_attempts(2).initial_backoff(ms(1)).max_hedges(2).hedge_delay(ms(10)).build();
    let executor = executor_with(policy.clone());
    let calls = Counter::new();
    let start = Instant::now();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        async {
            tokio::time::sleep(ms(5)).await;
            Err::<(), _>(OpError::Retryable("fast"))
        }
    }))
    .await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 2, "one primary per group, no hedge");
    assert_eq!(shape(&timeline), [(0, false, 0, OutcomeKind::Retryable), (1, false, 0, OutcomeKind::Retryable)]);
    assert_eq!(start.elapsed(), ms(5 + 1 + 5), "no waiting for the abandoned hedge schedule");

    // Primary fails at 15 ms; hedge 1 (10 ms → 40 ms) is still in flight,
    // so hedge 2 launches at 20 ms and wins at 25 ms.
    let executor = executor_with(policy);
    let launches = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        let index = scope().2;
        launches.lock().unwrap().push((index, start.elapsed()));
        async move {
            match index {
                0 => {
                    tokio::time::sleep(ms(15)).await;
                    Err(OpError::Retryable("primary"))
                }
                1 => {
                    tokio::time::sleep(ms(30)).await;
                    Ok(index)
                }
                _ => {
                    tokio::time::sleep(ms(5)).await;
                    Ok(index)
                }
            }
        }
    }))
    .await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!(*launches.lock().unwrap(), [(0, ms(0)), (1, ms(10)), (2, ms(20))]);
    assert_eq!(
        shape(&timeline),
        [(0, false, 0, OutcomeKind::Retryable), (0, true, 2, OutcomeKind::Success), (0, true, 1, OutcomeKind::Abort)],
        "hedge 1, still running when hedge 2 won, is on the record as cancelled"
    );
    assert_eq!(start.elapsed(), ms(25));
}

// ---------------------------------------------------------------------------
// Losers: budget released, future dropped, observers told.

// Primary (100 ms) and hedge 2 (launched at 20 ms, 100 ms) lose to hedge 1
// (launched at 10 ms, done at 25 ms): both are dropped, both releases run
// by the time the call returns, and the observer hears, in the §12.15
// order, budget → hedge_spawn per hedge, the winner's attempt, a cancel per
// loser (with its hedge index), then success.
#[tokio::test(start_paused = true)]
async fn losers_release_their_budgets_are_dropped_and_reported() {
    let observer = RecordingObserver::new();
    let retries = CountingBudget::new();
    let hedges = CountingBudget::new();
    let policy = hedged(2, ms(10)).budget("retries").hedge_budget("hedges").build();
    let executor = Executor::builder()
        .policy(policy)
        .budget("retries", retries.clone())
        .budget("hedges", hedges.clone())
        .observer(observer.clone())
        .build();
    let losers = DropFlag::new();
    let start = Instant::now();
    let result = executor
        .call(KEY, || {
            let (_, _, index) = scope();
            let losers = losers.clone();
            async move {
                if index == 1 {
                    tokio::time::sleep(ms(15)).await;
                    return Ok::<_, OpError>(index);
                }
                let guard = losers.guard();
                tokio::time::sleep(ms(100)).await;
                guard.disarm();
                Ok(index)
            }
        })
        .await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(start.elapsed(), ms(25));
    assert_eq!((losers.armed(), losers.dropped()), (2, 2), "primary and hedge 2 dropped mid-flight");
    assert_eq!((retries.allowed.get(), retries.released.get()), (1, 1));
    assert_eq!((hedges.allowed.get(), hedges.released.get()), (2, 2), "the dropped hedge's release ran too");
    assert_eq!(
        observer.log(),
        [
            "start",
            "budget(0,retry,allowed)",
            "budget(0,hedge,allowed)",
            "hedge_spawn(0,h1)",
            "budget(0,hedge,allowed)",
            "hedge_spawn(0,h2)",
            "attempt(0)",
            "hedge_cancel(0,h0,another attempt succeeded)",
            "hedge_cancel(0,h2,another attempt succeeded)",
            "success(3)",
        ]
    );
    let records = observer.records();
    assert_eq!((records[0].is_hedge, records[0].hedge_index), (true, 1));
    assert_eq!(records[0].budget_reason, budget_reason::ALLOWED);
}

// Dropping the call while a hedge group is in flight drops every attempt
// and runs every release.
#[tokio::test(start_paused = true)]
async fn a_dropped_call_drops_every_attempt_of_its_group_and_releases_them() {
    let retries = CountingBudget::new();
    let hedges = CountingBudget::new();
    let policy = hedged(3, ms(10)).budget("retries").hedge_budget("hedges").build();
    let executor =
        Executor::builder().policy(policy).budget("retries", retries.clone()).budget("hedges", hedges.clone()).build();
    let running = DropFlag::new();
    let call = executor.call(KEY, || {
        let running = running.clone();
        async move {
            let guard = running.guard();
            tokio::time::sleep(ms(1000)).await;
            guard.disarm();
            Ok::<_, OpError>(())
        }
    });
    assert!(tokio::time::timeout(ms(25), call).await.is_err(), "still running at 25 ms");
    assert_eq!((running.armed(), running.dropped()), (3, 3), "primary + hedges at 10 and 20 ms, all dropped");
    assert_eq!((retries.allowed.get(), retries.released.get()), (1, 1));
    assert_eq!((hedges.allowed.get(), hedges.released.get()), (2, 2));
}

/// Primary + hedges at 10 and 20 ms, all sleeping 100 ms, under a 25 ms
/// overall deadline; counting budgets for both kinds.
async fn deadline_cuts_a_hedged_group()
-> (Result<(), OpError>, Duration, DropFlag, [CountingBudget; 2], RecordingObserver) {
    let observer = RecordingObserver::new();
    let retries = CountingBudget::new();
    let hedges = CountingBudget::new();
    let policy = hedged(3, ms(10)).overall_timeout(ms(25)).budget("retries").hedge_budget("hedges").build();
    let executor = Executor::builder()
        .policy(policy)
        .budget("retries", retries.clone())
        .budget("hedges", hedges.clone())
        .observer(observer.clone())
        .build();
    let running = DropFlag::new();
    let start = Instant::now();
    let result = executor
        .call(KEY, || {
            let running = running.clone();
            async move {
                let guard = running.guard();
                tokio::time::sleep(ms(100)).await;
                guard.disarm();
                Ok::<_, OpError>(())
            }
        })
        .await;
    (result, start.elapsed(), running, [retries, hedges], observer)
}

// The overall deadline passing mid-group ends the call with
// `Error::Timeout`, drops every attempt in flight and releases their
// budgets; observers hear a cancel for each hedge still running.
#[tokio::test(start_paused = true)]
async fn the_overall_deadline_ends_a_hedged_group_and_releases_everything() {
    let (result, elapsed, running, [retries, hedges], observer) = deadline_cuts_a_hedged_group().await;
    let error = result.unwrap_err();
    assert!(matches!(error.recourse(), Some(recourse::Error::Timeout { .. })), "{error:?}");
    assert_eq!(elapsed, ms(25));
    assert_eq!((running.armed(), running.dropped()), (3, 3), "primary + hedges at 10 and 20 ms, all dropped");
    assert_eq!((retries.allowed.get(), retries.released.get()), (1, 1));
    assert_eq!((hedges.allowed.get(), hedges.released.get()), (2, 2));
    let records = observer.records();
    assert_eq!(records.len(), 1, "the attempt the deadline cut is recorded, the others cancelled");
    assert_eq!((records[0].hedge_index, records[0].outcome.kind), (0, OutcomeKind::Abort));
    let cancels: Vec<String> = observer.log().into_iter().filter(|l| l.starts_with("hedge_cancel")).collect();
    assert_eq!(cancels, ["hedge_cancel(0,h1,the call ended)", "hedge_cancel(0,h2,the call ended)"]);
    assert_eq!(observer.count("failure"), 1);
}

// §12.15: a call's events end with exactly one on_success / on_failure;
// the losers' on_hedge_cancel comes before it on every path: a hedge won,
// cancel_on_first_terminal fired, or the overall deadline cut the group.
#[tokio::test(start_paused = true)]
async fn hedge_cancels_are_reported_before_the_call_ends_on_its_deadline() {
    let (_, _, _, _, observer) = deadline_cuts_a_hedged_group().await;
    assert_eq!(
        observer.log(),
        [
            "start",
            "budget(0,retry,allowed)",
            "budget(0,hedge,allowed)",
            "hedge_spawn(0,h1)",
            "budget(0,hedge,allowed)",
            "hedge_spawn(0,h2)",
            "attempt(0)",
            "hedge_cancel(0,h1,the call ended)",
            "hedge_cancel(0,h2,the call ended)",
            "failure(3)",
        ]
    );
}

// ---------------------------------------------------------------------------
// Budget-denied hedges (DESIGN deviation from Go §17.7).

// Go §17.7: with CancelOnFirstTerminal, a budget-denied hedge ends the
// whole call with the budget reason although the primary is still running.
// DESIGN deviation: a denied hedge is recorded (budget_allowed false,
// Abort, `budget_denied`) and simply not launched; the call goes on and the
// primary's success wins.
#[tokio::test(start_paused = true)]
async fn a_budget_denied_hedge_is_recorded_not_launched_and_does_not_end_the_call() {
    let observer = RecordingObserver::new();
    let hedges = CountingBudget::denying(|_| true);
    let policy = hedged(2, ms(10)).hedge_budget("hedges").hedge_cancel_on_first_terminal(true).build();
    let executor =
        Executor::builder().policy(policy).budget("hedges", hedges.clone()).observer(observer.clone()).build();
    let calls = Counter::new();
    let start = Instant::now();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        async {
            tokio::time::sleep(ms(50)).await;
            Ok::<_, OpError>(7)
        }
    }))
    .await;
    assert_eq!(result.unwrap(), 7, "Go would fail here with `budget_denied` (§17.7)");
    assert_eq!(start.elapsed(), ms(50));
    assert_eq!(calls.get(), 1, "denied hedges are not launched");
    assert_eq!((hedges.consulted.get(), hedges.allowed.get()), (2, 0));
    assert_eq!(
        shape(&timeline),
        [(0, true, 1, OutcomeKind::Abort), (0, true, 2, OutcomeKind::Abort), (0, false, 0, OutcomeKind::Success)]
    );
    for (record, at) in timeline.attempts[..2].iter().zip([ms(10), ms(20)]) {
        assert!(!record.budget_allowed);
        assert_eq!(record.budget_reason, budget_reason::BUDGET_DENIED);
        assert_eq!(record.outcome.reason, budget_reason::BUDGET_DENIED);
        assert_eq!(record.error, None);
        assert_eq!(record.start - timeline.start, at);
        assert_eq!(record.duration(), Duration::ZERO);
    }
    assert_eq!(
        observer.log(),
        [
            "start",
            "budget(0,hedge,denied)",
            "attempt(0,denied)",
            "budget(0,hedge,denied)",
            "attempt(0,denied)",
            "attempt(0)",
            "success(3)"
        ],
        "no hedge_spawn for a denied hedge"
    );
    // DESIGN §6.8: the denied records fed nothing to the tracker.
    assert_eq!(executor.latency(&PolicyKey::from(KEY)).snapshot().samples, 1);
}

// ---------------------------------------------------------------------------
// cancel_on_first_terminal.

/// Primary fails non-retryable at 30 ms; the hedge (launched at 10 ms)
/// succeeds after `hedge_latency`.
async fn primary_fails_fatally(
    cancel_on_first_terminal: bool,
    hedge_latency: Duration,
) -> (Result<&'static str, OpError>, recourse::Timeline, Duration, DropFlag, RecordingObserver) {
    let observer = RecordingObserver::new();
    let policy = Policy::builder(KEY)
        .max_attempts(3)
        .max_hedges(1)
        .hedge_delay(ms(10))
        .hedge_cancel_on_first_terminal(cancel_on_first_terminal)
        .build();
    let executor = Executor::builder().policy(policy).observer(observer.clone()).build();
    let hedge = DropFlag::new();
    let start = Instant::now();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        let (_, is_hedge, _) = scope();
        let hedge = hedge.clone();
        async move {
            if !is_hedge {
                tokio::time::sleep(ms(30)).await;
                return Err(OpError::Fatal("primary"));
            }
            let guard = hedge.guard();
            tokio::time::sleep(hedge_latency).await;
            guard.disarm();
            Ok("hedge")
        }
    }))
    .await;
    (result, timeline, start.elapsed(), hedge, observer)
}

// With cancel_on_first_terminal: the primary's non-retryable failure ends
// the call at once with that error; the hedge in flight is dropped.
#[tokio::test(start_paused = true)]
async fn cancel_on_first_terminal_ends_the_call_on_a_terminal_failure() {
    let (result, timeline, elapsed, hedge, observer) = primary_fails_fatally(true, ms(100)).await;
    assert!(matches!(result, Err(OpError::Fatal("primary"))), "{result:?}");
    assert_eq!(elapsed, ms(30));
    assert_eq!((hedge.armed(), hedge.dropped()), (1, 1), "the hedge was dropped");
    assert_eq!(shape(&timeline), [(0, false, 0, OutcomeKind::NonRetryable), (0, true, 1, OutcomeKind::Abort)]);
    assert_eq!(
        observer.log(),
        [
            "start",
            "hedge_spawn(0,h1)",
            "attempt(0)",
            "hedge_cancel(0,h1,another attempt failed terminally)",
            "failure(2)"
        ]
    );
}

// Without it (Go-verified): the primary's terminal failure does not end the
// group; the hedge's later success wins.
#[tokio::test(start_paused = true)]
async fn without_cancel_on_first_terminal_a_later_hedge_success_wins() {
    let (result, timeline, elapsed, hedge, _) = primary_fails_fatally(false, ms(30)).await;
    assert_eq!(result.unwrap(), "hedge");
    assert_eq!(elapsed, ms(40));
    assert_eq!(hedge.dropped(), 0);
    assert_eq!(shape(&timeline), [(0, false, 0, OutcomeKind::NonRetryable), (0, true, 1, OutcomeKind::Success)]);
    assert!(timeline.succeeded());
}

// ---------------------------------------------------------------------------
// The group's failure is the most severe one (the fix of Go §17.8).

/// `primary` fails at 30 ms, the hedge (launched at 10 ms) at 40 ms.
async fn group_failure(primary: OpError, hedge: OpError) -> (Result<(), OpError>, usize, recourse::Timeline) {
    let policy = Policy::builder(KEY).max_attempts(3).initial_backoff(ms(1)).max_hedges(1).hedge_delay(ms(10)).build();
    let executor = executor_with(policy);
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        let (_, is_hedge, _) = scope();
        let error = if is_hedge { hedge.clone() } else { primary.clone() };
        async move {
            tokio::time::sleep(ms(30)).await;
            Err(error)
        }
    }))
    .await;
    (result, calls.get(), timeline)
}

// Go §17.8: the group's outcome is the last-received failure, so a
// non-retryable primary followed by a retryable hedge retries. Fixed: the
// most severe failure (Abort > NonRetryable > Retryable) decides.
#[tokio::test(start_paused = true)]
async fn a_non_retryable_primary_and_a_retryable_hedge_do_not_retry() {
    let (result, calls, timeline) = group_failure(OpError::Fatal("primary"), OpError::Retryable("hedge")).await;
    assert!(matches!(result, Err(OpError::Fatal("primary"))), "{result:?}");
    assert_eq!(calls, 2, "one group, no retry (Go would retry: §17.8)");
    assert_eq!(shape(&timeline), [(0, false, 0, OutcomeKind::NonRetryable), (0, true, 1, OutcomeKind::Retryable)]);
    let final_error = timeline.final_error.unwrap();
    assert_eq!((final_error.kind, &*final_error.reason), (OutcomeKind::NonRetryable, "op_fatal"));
}

#[tokio::test(start_paused = true)]
async fn an_abort_outranks_a_non_retryable_failure() {
    let (result, calls, timeline) = group_failure(OpError::Aborted("primary"), OpError::Fatal("hedge")).await;
    assert!(matches!(result, Err(OpError::Aborted("primary"))), "{result:?}");
    assert_eq!(calls, 2);
    assert_eq!(timeline.final_error.unwrap().kind, OutcomeKind::Abort);
}

#[tokio::test(start_paused = true)]
async fn a_later_more_severe_failure_wins_and_ties_go_to_the_latest() {
    let (result, calls, _) = group_failure(OpError::Retryable("primary"), OpError::Fatal("hedge")).await;
    assert!(matches!(result, Err(OpError::Fatal("hedge"))), "{result:?}");
    assert_eq!(calls, 2);
    // Both retryable: the group retries; each group's error is the latest.
    let (result, calls, timeline) = group_failure(OpError::Retryable("primary"), OpError::Retryable("hedge")).await;
    assert!(matches!(result, Err(OpError::Retryable("hedge"))), "{result:?}");
    assert_eq!(calls, 6, "3 groups of primary + hedge");
    assert_eq!(timeline.attempts.len(), 6);
}

// ---------------------------------------------------------------------------
// DESIGN §6.8: budget-denied attempts do not feed the latency tracker.

#[tokio::test(start_paused = true)]
async fn budget_denied_attempts_do_not_feed_the_latency_tracker() {
    // A denied primary (attempt 1) after a real one: Go records both
    // (§12.13, §17.5); only the attempt that ran is a sample here.
    let retries = CountingBudget::denying(|attempt| attempt >= 1);
    let policy = Policy::builder(KEY)
        .max_attempts(3)
        .initial_backoff(ms(1))
        .budget("retries")
        .max_hedges(1)
        .hedge_delay(ms(10))
        .build();
    let executor = Executor::builder().policy(policy).budget("retries", retries.clone()).build();
    let (result, timeline) = recourse::capture(executor.call(KEY, || async {
        tokio::time::sleep(ms(4)).await;
        Err::<(), _>(OpError::Retryable("primary"))
    }))
    .await;
    assert!(matches!(result, Err(OpError::Retryable("primary"))), "DESIGN §6.2: the previous attempt's error");
    assert_eq!(timeline.attempts.len(), 2);
    assert!(!timeline.attempts[1].budget_allowed);
    let tracker = executor.latency(&PolicyKey::from(KEY));
    assert_eq!(tracker.recorded(), 1);
    let snapshot = tracker.snapshot();
    assert_eq!(snapshot.samples, 1);
    assert!(snapshot.p50.abs_diff(ms(4)) <= ms(4).mul_f64(LatencyTracker::RELATIVE_ERROR), "{snapshot:?}");
}

// ---------------------------------------------------------------------------
// DESIGN §6.9: missing hedge triggers honour the missing-trigger mode.

async fn call_with_missing_trigger(
    mode: Option<FailureMode>,
) -> (Result<u32, OpError>, usize, recourse::Timeline, Executor) {
    let mut builder = Executor::builder().policy(hedged(1, ms(10)).hedge_trigger("nope").build());
    if let Some(mode) = mode {
        builder = builder.missing_trigger(mode);
    }
    let executor = builder.build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls.hit();
        async {
            tokio::time::sleep(ms(50)).await;
            Ok::<_, OpError>(3)
        }
    }))
    .await;
    (result, calls.get(), timeline, executor)
}

#[tokio::test(start_paused = true)]
async fn missing_trigger_deny_fails_before_any_attempt() {
    let (result, calls, timeline, _) = call_with_missing_trigger(Some(FailureMode::Deny)).await;
    let error = result.unwrap_err();
    assert!(matches!(error.recourse(), Some(recourse::Error::NoTrigger { name }) if name == "nope"), "{error:?}");
    assert_eq!(calls, 0);
    assert!(timeline.attempts.is_empty());
    assert_eq!(timeline.attributes.get("trigger_error"), Some("nope not found"));
    assert!(timeline.final_error.is_some());
}

#[tokio::test(start_paused = true)]
async fn missing_trigger_allow_runs_without_hedges() {
    let (result, calls, timeline, _) = call_with_missing_trigger(Some(FailureMode::Allow)).await;
    assert_eq!(result.unwrap(), 3);
    assert_eq!(calls, 1, "no hedge, although the op outlives the 10 ms delay");
    assert_eq!(timeline.attributes.get("trigger_fallback"), Some("trigger nope not found; hedging off (allow)"));
    assert_eq!(shape(&timeline), [(0, false, 0, OutcomeKind::Success)]);
}

#[tokio::test(start_paused = true)]
async fn missing_trigger_fallback_hedges_on_the_fixed_delay() {
    for mode in [None, Some(FailureMode::Fallback), Some(FailureMode::AllowUnsafe)] {
        let (result, calls, timeline, executor) = call_with_missing_trigger(mode).await;
        assert_eq!(executor.missing_trigger_mode(), mode.unwrap_or(FailureMode::Fallback), "default: fallback");
        assert_eq!(result.unwrap(), 3);
        assert_eq!(calls, 2, "{mode:?}: a hedge launched at the 10 ms fixed delay");
        let mode_name = mode.unwrap_or(FailureMode::Fallback).as_str();
        assert_eq!(
            timeline.attributes.get("trigger_fallback"),
            Some(format!("trigger nope not found; fixed delay used ({mode_name})").as_str()),
            "{mode:?}: the timeline says which mode substituted the trigger"
        );
        assert_eq!(
            shape(&timeline),
            [(0, false, 0, OutcomeKind::Success), (0, true, 1, OutcomeKind::Abort)],
            "the primary won at 50 ms; the hedge is on the record as cancelled"
        );
    }
}

// ---------------------------------------------------------------------------
// Sequential `&mut self` functions never hedge.

#[derive(Debug, Default)]
struct Ledger {
    calls: u32,
    hedges_seen: u32,
}

impl Ledger {
    // `hedge.Sequential` (tests/recourse.toml) has no hedge section: a
    // catalog hedge on a `&mut` function is a compile error. Run-time
    // policies can still enable hedging for the key.
    #[recourse(policy = "hedge.Sequential", executor = executor)]
    async fn post(&mut self, executor: &Executor) -> Result<u32, OpError> {
        self.calls += 1;
        if recourse::attempt().is_some_and(|a| a.is_hedge()) {
            self.hedges_seen += 1;
        }
        tokio::time::sleep(ms(50)).await;
        Ok(self.calls)
    }
}

const SEQUENTIAL: &str = "hedge.Sequential";
const MUT_BORROW: &str = "the function borrows mutably; attempts run one at a time";

fn hedging_sequential_policy() -> Policy {
    Policy::builder(SEQUENTIAL).max_attempts(1).max_hedges(3).hedge_delay(ms(10)).build()
}

#[tokio::test(start_paused = true)]
async fn a_mut_self_function_never_hedges_under_an_executor_policy() {
    let executor = executor_with(hedging_sequential_policy());
    let mut ledger = Ledger::default();
    let start = Instant::now();
    let (result, timeline) = recourse::capture(ledger.post(&executor)).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!((ledger.calls, ledger.hedges_seen), (1, 0), "3 hedges were due at 10, 20 and 30 ms");
    assert_eq!(start.elapsed(), ms(50));
    assert_eq!(timeline.attributes.get("hedging_disabled"), Some(MUT_BORROW));
    assert_eq!(timeline.policy_source, PolicySource::Static);
    assert_eq!(shape(&timeline), [(0, false, 0, OutcomeKind::Success)]);
}

#[tokio::test(start_paused = true)]
async fn a_mut_self_function_never_hedges_under_a_dynamic_policy() {
    let provider = Arc::new(DynamicProvider::new());
    let executor = Executor::builder().provider(Arc::clone(&provider)).build();
    let mut ledger = Ledger::default();

    // The catalog policy: no hedging, nothing to disable.
    let (result, timeline) = recourse::capture(ledger.post(&executor)).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(timeline.policy_source, PolicySource::Catalog);
    assert_eq!(timeline.attributes.get("hedging_disabled"), None);

    // A run-time policy turns hedging on for the key: still one attempt at
    // a time, and the timeline says why.
    provider.set(hedging_sequential_policy());
    let (result, timeline) = recourse::capture(ledger.post(&executor)).await;
    assert_eq!(result.unwrap(), 2);
    assert_eq!((ledger.calls, ledger.hedges_seen), (2, 0));
    assert_eq!(timeline.attributes.get("hedging_disabled"), Some(MUT_BORROW));
    assert_eq!(timeline.attempts.len(), 1);

    // The closure form on the same key does hedge (the policy is live).
    let calls = Counter::new();
    let result = executor
        .call(SEQUENTIAL, || {
            calls.hit();
            async {
                tokio::time::sleep(ms(50)).await;
                Ok::<_, OpError>(())
            }
        })
        .await;
    assert!(result.is_ok());
    assert_eq!(calls.get(), 4, "primary + hedges at 10, 20, 30 ms");
}

// ---------------------------------------------------------------------------
// Go §12.8 / §17.1 regression: the group completion race hung 1 call in
// 20 000. Thousands of single-attempt hedged and non-hedged calls on a
// two-worker runtime, on real time, must all complete.

#[test]
fn go_race_regression_thousands_of_single_attempt_calls_all_complete() {
    const CALLS: usize = 5000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a multi-thread runtime");
    let executor = Executor::builder()
        // Every hedge launched at once: four attempts racing per group.
        .policy(Policy::builder("race.Burst").max_attempts(1).max_hedges(3).hedge_trigger("now").build())
        .policy(
            Policy::builder("race.Terminal")
                .max_attempts(1)
                .max_hedges(2)
                .hedge_trigger("now")
                .hedge_cancel_on_first_terminal(true)
                .build(),
        )
        .policy(Policy::builder("race.Delayed").max_attempts(1).max_hedges(1).hedge_delay(ms(10)).build())
        .policy(Policy::builder("race.Plain").max_attempts(1).build())
        .trigger("now", Immediate)
        .build();
    let keys = ["race.Burst", "race.Terminal", "race.Delayed", "race.Plain"];
    let ops = Counter::new();
    let completed = runtime.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        for i in 0..CALLS {
            let executor = executor.clone();
            let ops = ops.clone();
            set.spawn(async move {
                let mut rng = support::XorShift::new(support::SEED ^ i as u64);
                executor
                    .call(keys[i % keys.len()], move || {
                        ops.hit();
                        let yields = usize::try_from(rng.below(4)).unwrap_or(0);
                        let roll = rng.below(10);
                        async move {
                            yield_times(yields).await;
                            match roll {
                                0..=5 => Ok(i),
                                6..=7 => Err(OpError::Retryable("race")),
                                8 => Err(OpError::Fatal("race")),
                                _ => Err(OpError::Aborted("race")),
                            }
                        }
                    })
                    .await
            });
        }
        let batch = async {
            let mut completed = 0;
            while let Some(joined) = set.join_next().await {
                let _ = joined.expect("no call panics");
                completed += 1;
            }
            completed
        };
        tokio::time::timeout(Duration::from_secs(120), batch).await
    });
    assert_eq!(completed.expect("no call hangs (Go §12.8 race)"), CALLS);
    assert!(ops.get() >= CALLS);
}

// Every attempt of a hedged call sees the policy's id, the retries after a
// group included (the group takes the engine's plan for its primary, and
// the next group's plan must keep the id).
#[tokio::test(start_paused = true)]
async fn every_attempt_of_a_hedged_call_sees_the_policy_id() {
    let policy =
        Policy::builder(KEY).id("search-v2").max_attempts(3).initial_backoff(ms(1)).max_hedges(1).hedge_delay(ms(10));
    let executor = executor_with(policy.build());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let result = executor
        .call(KEY, || {
            let attempt = recourse::attempt().expect("inside an attempt");
            seen.lock().unwrap().push((
                attempt.retry_index(),
                attempt.hedge_index(),
                attempt.policy_id().map(str::to_owned),
            ));
            async move {
                tokio::time::sleep(ms(15)).await;
                if attempt.retry_index() < 2 { Err(OpError::Retryable("again")) } else { Ok(attempt.retry_index()) }
            }
        })
        .await;
    assert_eq!(result.unwrap(), 2);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3, "{seen:?}");
    assert!(seen.iter().all(|(_, _, id)| id.as_deref() == Some("search-v2")), "every attempt sees the id: {seen:?}");
}

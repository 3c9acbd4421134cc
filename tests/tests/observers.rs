//! Observers and the attempt in progress: section G (`observe/*_test.go`,
//! items 24 and 28–30) and section O (`retry/observability_test.go`, items
//! 70–73) of the conformance checklist, with spec §11 and §12.15.
//!
//! Rust adaptations: Go's `MultiObserver{A, nil, B}` has no nil entry in
//! Rust, so G24 checks fan-out and order over `[A, B]` and that `Noop` is
//! ignored by the builder; Go's `AttemptFromContext(ctx)` is
//! `recourse::attempt()`, which is `Some` only while an attempt (or the
//! closure creating it) is being polled.
#![allow(missing_docs)]

mod support;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use recourse::budget::{AttemptKind, BudgetDecisionEvent, Registry, Unlimited, reason};
use recourse::observe::{Multi, Noop, Observer};
use recourse::policy::{Policy, PolicyKey};
use recourse::provider::StaticProvider;
use recourse::{AttemptRecord, Executor, FailureMode, Timeline};
use support::{
    Counter, CountingBudget, FailingProvider, KEY, RecordingObserver, RecordingSleeper, SEED, TestError, ms,
    yield_times,
};
use tokio::time::Instant;

/// An executor for `policy` with `observer`, a recording sleeper and seeded
/// jitter; `budget` (if any) registered as `b`.
fn observed(policy: Policy, observer: &RecordingObserver, budget: Option<&CountingBudget>) -> Executor {
    let mut builder = Executor::builder()
        .provider(StaticProvider::new().with(policy))
        .observer(observer.clone())
        .sleeper(RecordingSleeper::new())
        .jitter_seed(SEED);
    if let Some(budget) = budget {
        builder = builder.budget("b", budget.clone());
    }
    builder.build()
}

/// Fails the first `failures` calls, then returns 42.
fn flaky(calls: &Counter, failures: usize) -> impl FnMut() -> std::future::Ready<Result<u32, TestError>> + '_ {
    move || {
        let n = calls.hit();
        std::future::ready(if n <= failures { Err(TestError::Failed(n)) } else { Ok(42) })
    }
}

fn lines(expected: &[&str]) -> Vec<String> {
    expected.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------
// G24: Multi fans out every callback to each observer once, in order.

/// Appends `<tag>:<callback>` to a shared log.
#[derive(Debug, Clone)]
struct Tagged {
    tag: &'static str,
    log: Arc<Mutex<Vec<String>>>,
}

impl Tagged {
    fn note(&self, what: &str) {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).push(format!("{}:{what}", self.tag));
    }
}

impl Observer for Tagged {
    fn on_start(&self, _: &PolicyKey, _: Option<&Policy>) {
        self.note("start");
    }
    fn on_attempt(&self, _: &PolicyKey, _: &AttemptRecord) {
        self.note("attempt");
    }
    fn on_hedge_spawn(&self, _: &PolicyKey, _: &AttemptRecord) {
        self.note("hedge_spawn");
    }
    fn on_hedge_cancel(&self, _: &PolicyKey, _: &AttemptRecord, _: &str) {
        self.note("hedge_cancel");
    }
    fn on_budget_decision(&self, _: &BudgetDecisionEvent) {
        self.note("budget");
    }
    fn on_success(&self, _: &PolicyKey, _: &Timeline) {
        self.note("success");
    }
    fn on_failure(&self, _: &PolicyKey, _: &Timeline) {
        self.note("failure");
    }
}

/// A real record, timeline and budget event (their types are
/// `#[non_exhaustive]`, so they come from a call).
async fn sample_payloads() -> (AttemptRecord, Timeline, BudgetDecisionEvent) {
    let recorder = RecordingObserver::new();
    let executor =
        observed(Policy::builder(KEY).max_attempts(1).budget("b").build(), &recorder, Some(&CountingBudget::new()));
    let (result, timeline) = recourse::capture(executor.call(KEY, || async { Ok::<_, TestError>(1) })).await;
    assert_eq!(result.unwrap(), 1);
    let event = recorder.budget_events().pop().expect("a budget event");
    (timeline.attempts[0].clone(), timeline, event)
}

// G24: each of the 7 callbacks invoked once on Multi[A, B] reaches A then B,
// exactly once each.
#[tokio::test(start_paused = true)]
async fn g24_multi_calls_every_observer_once_per_callback_in_order() {
    let (record, timeline, event) = sample_payloads().await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let multi =
        Multi::new().with(Tagged { tag: "A", log: Arc::clone(&log) }).with(Tagged { tag: "B", log: Arc::clone(&log) });
    assert_eq!(multi.len(), 2);
    assert!(!multi.is_empty());
    let key = PolicyKey::from(KEY);
    multi.on_start(&key, None);
    multi.on_attempt(&key, &record);
    multi.on_hedge_spawn(&key, &record);
    multi.on_hedge_cancel(&key, &record, "lost");
    multi.on_budget_decision(&event);
    multi.on_success(&key, &timeline);
    multi.on_failure(&key, &timeline);
    let expected: Vec<String> = ["start", "attempt", "hedge_spawn", "hedge_cancel", "budget", "success", "failure"]
        .iter()
        .flat_map(|cb| [format!("A:{cb}"), format!("B:{cb}")])
        .collect();
    assert_eq!(*log.lock().unwrap(), expected);
}

// G24: Multi can hold shared observers too (`push`), and an empty Multi is a
// valid observer.
#[test]
fn g24_multi_push_shared_and_empty() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let shared: Arc<dyn Observer> = Arc::new(Tagged { tag: "S", log: Arc::clone(&log) });
    let mut multi = Multi::new();
    assert!(multi.is_empty());
    multi.on_start(&PolicyKey::from(KEY), None);
    multi.push(Arc::clone(&shared));
    multi.push(shared);
    multi.on_start(&PolicyKey::from(KEY), None);
    assert_eq!(*log.lock().unwrap(), ["S:start", "S:start"]);
}

// G24 through the executor: observers added one after another hear every
// event of a call in the order they were added.
#[tokio::test(start_paused = true)]
async fn g24_builder_observers_hear_every_event_in_order() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).budget("b").build())
        .budget("b", Unlimited)
        .observer(Tagged { tag: "A", log: Arc::clone(&log) })
        .observer(Noop)
        .observer(Tagged { tag: "B", log: Arc::clone(&log) })
        .sleeper(RecordingSleeper::new())
        .build();
    assert!(executor.has_observer());
    let calls = Counter::new();
    assert_eq!(executor.call(KEY, flaky(&calls, 1)).await.unwrap(), 42);
    let expected: Vec<String> = ["start", "budget", "attempt", "budget", "attempt", "success"]
        .iter()
        .flat_map(|cb| [format!("A:{cb}"), format!("B:{cb}")])
        .collect();
    assert_eq!(*log.lock().unwrap(), expected);
}

// G24 (nil entry adapted): `Noop` is ignored by the builder; it is the same as
// installing no observer.
#[test]
fn g24_noop_observer_is_ignored_by_the_builder() {
    assert!(!Executor::builder().observer(Noop).build().has_observer());
    assert!(!Executor::builder().observer(Noop).observer(Noop).build().has_observer());
    assert!(!Executor::builder().build().has_observer());
    assert!(Executor::builder().observer(Noop).observer(RecordingObserver::new()).build().has_observer());
}

// G24 / §11.1: Go recognises the no-op observer by value *or by reference*;
// the Rust analogue of the reference is a shared `Arc<Noop>`, which should be
// just as ignored (it can never observe anything).
#[test]
fn g24_shared_noop_observer_is_ignored_too() {
    assert!(!Executor::builder().observer(Arc::new(Noop)).build().has_observer());
}

// ---------------------------------------------------------------------------
// G28–G30: the attempt in progress (`recourse::attempt()`).

// G28 / G30: inside the operation: retry index, primary (not a hedge), the
// policy id; O70: `attempt()` is also set in the closure that creates it.
#[tokio::test(start_paused = true)]
async fn g28_g30_attempt_inside_the_operation_describes_it() {
    let (executor, _) = support::test_executor(Policy::builder(KEY).max_attempts(3).id("policy-123").build());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = Counter::new();
    let result = executor
        .call(KEY, || {
            let in_closure = recourse::attempt().expect("the closure runs inside the attempt");
            let n = calls.hit();
            let seen = Arc::clone(&seen);
            async move {
                let before = recourse::attempt().expect("inside the attempt");
                yield_times(2).await;
                let after = recourse::attempt().expect("still inside after an await");
                assert_eq!(before, after);
                assert_eq!(in_closure, before);
                seen.lock().unwrap().push(before);
                if n < 3 { Err(TestError::Failed(n)) } else { Ok(n) }
            }
        })
        .await;
    assert_eq!(result.unwrap(), 3);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 3);
    for (i, attempt) in seen.iter().enumerate() {
        assert_eq!(attempt.retry_index() as usize, i);
        assert!(!attempt.is_hedge());
        assert_eq!(attempt.hedge_index(), 0);
        assert_eq!(attempt.policy_id(), Some("policy-123"));
        assert_eq!(attempt.deadline(), None, "no timeouts configured");
        assert_eq!(attempt.remaining(), None);
    }
}

// G29: outside any call there is no attempt: before, after, and in a task
// spawned from inside the operation (the scope is per poll, not inherited).
#[tokio::test(start_paused = true)]
async fn g29_no_attempt_outside_a_call() {
    assert!(recourse::attempt().is_none());
    let executor = Executor::builder().build();
    let result: Result<Option<recourse::Attempt>, TestError> = executor
        .call(KEY, || async {
            assert!(recourse::attempt().is_some());
            let spawned = tokio::spawn(async { recourse::attempt() }).await.expect("task ran");
            Ok(spawned)
        })
        .await;
    assert_eq!(result.unwrap(), None, "a spawned task is not inside the attempt");
    assert!(recourse::attempt().is_none());
}

// G28: nested calls see their own attempt; the outer attempt is restored
// after the inner call.
#[tokio::test(start_paused = true)]
async fn g28_nested_call_sees_its_own_attempt_then_the_outer_one_again() {
    let executor = Executor::builder()
        .policy(Policy::builder("outer").max_attempts(2).id("outer-id").build())
        .policy(Policy::builder("inner").max_attempts(3).id("inner-id").build())
        .sleeper(RecordingSleeper::new())
        .build();
    let inner_calls = Counter::new();
    let outer_calls = Counter::new();
    let result: Result<(), TestError> = executor
        .call("outer", || {
            let executor = &executor;
            let (inner_calls, outer_calls) = (&inner_calls, &outer_calls);
            async move {
                let n = outer_calls.hit();
                let inner: Result<u32, TestError> = executor
                    .call("inner", || async {
                        let attempt = recourse::attempt().expect("inner attempt");
                        assert_eq!(attempt.policy_id(), Some("inner-id"));
                        let m = inner_calls.hit();
                        if m % 2 == 1 { Err(TestError::Failed(m)) } else { Ok(attempt.retry_index()) }
                    })
                    .await;
                assert_eq!(inner.unwrap(), 1, "the inner call's own retry index");
                let outer = recourse::attempt().expect("outer attempt restored");
                assert_eq!(outer.policy_id(), Some("outer-id"));
                assert_eq!(outer.retry_index() as usize, n - 1);
                if n == 1 { Err(TestError::Failed(n)) } else { Ok(()) }
            }
        })
        .await;
    result.unwrap();
    assert_eq!(outer_calls.get(), 2);
}

// G28: the remaining deadline is the overall timeout left, or the per-attempt
// timeout when that is sooner.
#[tokio::test(start_paused = true)]
async fn g28_remaining_deadline_follows_the_policy_timeouts() {
    // The default tokio sleeper: backoffs (10 ms, then 20 ms) pass in paused time.
    let executor = Executor::builder()
        .policy(Policy::builder("overall").max_attempts(3).overall_timeout(Duration::from_secs(1)).build())
        .policy(
            Policy::builder("both")
                .max_attempts(2)
                .timeout_per_attempt(ms(100))
                .overall_timeout(Duration::from_secs(1))
                .build(),
        )
        .build();
    let start = Instant::now();
    let remaining = Arc::new(Mutex::new(Vec::new()));
    let calls = Counter::new();
    let _ = executor
        .call("overall", || {
            let attempt = recourse::attempt().expect("inside");
            assert_eq!(attempt.deadline(), Some(start + Duration::from_secs(1)));
            remaining.lock().unwrap().push(attempt.remaining().expect("a deadline"));
            std::future::ready(Err::<(), _>(TestError::Failed(calls.hit())))
        })
        .await;
    assert_eq!(*remaining.lock().unwrap(), [ms(1000), ms(990), ms(970)]);

    remaining.lock().unwrap().clear();
    let _ = executor
        .call("both", || {
            let attempt = recourse::attempt().expect("inside");
            remaining.lock().unwrap().push(attempt.remaining().expect("a deadline"));
            async move {
                tokio::time::sleep(ms(30)).await;
                let later = recourse::attempt().expect("inside").remaining().expect("a deadline");
                assert_eq!(later, ms(70), "the clock runs down during the attempt");
                Err::<(), _>(TestError::Failed(0))
            }
        })
        .await;
    assert_eq!(*remaining.lock().unwrap(), [ms(100), ms(100)], "the per-attempt timeout is sooner");
}

// ---------------------------------------------------------------------------
// O70–O73: observability through the executor (event order of §12.15).

// O70: success after two failures, with capture: start, attempt ×3, success;
// the observer's records equal the timeline's; `attempt()` inside
// `on_attempt` describes the attempt.
#[tokio::test(start_paused = true)]
async fn o70_success_after_two_failures_event_order_and_records() {
    let observer = RecordingObserver::new();
    let executor = observed(Policy::builder(KEY).max_attempts(3).build(), &observer, None);
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, flaky(&calls, 2))).await;
    assert_eq!(result.unwrap(), 42);
    assert_eq!(observer.log(), lines(&["start", "attempt(0)", "attempt(1)", "attempt(2)", "success(3)"]));
    assert_eq!((observer.count("start"), observer.count("success"), observer.count("failure")), (1, 1, 0));

    let records = observer.records();
    assert_eq!(records.iter().map(|r| r.attempt).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(records, timeline.attempts, "the observer heard exactly the timeline's records");
    assert_eq!(timeline.final_error, None);
    assert_eq!(timeline.key, PolicyKey::from(KEY));
    let ends = observer.ends();
    assert_eq!(ends.len(), 1);
    assert!(ends[0].0);
    assert_eq!(ends[0].1.key, PolicyKey::from(KEY));
    assert_eq!(ends[0].1, timeline, "on_success got the captured timeline");
    assert!(observer.keys().iter().all(|k| *k == PolicyKey::from(KEY)));

    for (i, scope) in observer.scopes().iter().enumerate() {
        let scope = scope.as_ref().expect("on_attempt runs inside the attempt's scope");
        assert_eq!(scope.retry_index() as usize, i);
        assert!(!scope.is_hedge());
    }
    let start = observer.starts().pop().flatten().expect("on_start got the effective policy");
    assert_eq!(start.retry.max_attempts, 3);
    assert_eq!(start.key, PolicyKey::from(KEY));
}

// O70 with a budget: start → budget(0) → attempt(0) → budget(1) → attempt(1) →
// success.
#[tokio::test(start_paused = true)]
async fn o70_budgeted_call_interleaves_budget_decisions() {
    let observer = RecordingObserver::new();
    let budget = CountingBudget::new();
    let executor = observed(Policy::builder(KEY).max_attempts(3).budget("b").build(), &observer, Some(&budget));
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, flaky(&calls, 1))).await;
    assert_eq!(result.unwrap(), 42);
    assert_eq!(
        observer.log(),
        lines(&[
            "start",
            "budget(0,retry,allowed)",
            "attempt(0)",
            "budget(1,retry,allowed)",
            "attempt(1)",
            "success(2)"
        ])
    );
    assert_eq!(observer.records(), timeline.attempts);
    assert_eq!(budget.released.get(), 2);
}

// O71: no capture, two attempts that fail: start, attempt ×2, failure; the
// failure timeline carries the final error.
#[tokio::test(start_paused = true)]
async fn o71_failure_without_capture() {
    let observer = RecordingObserver::new();
    let executor = observed(Policy::builder(KEY).max_attempts(2).build(), &observer, None);
    let calls = Counter::new();
    let result = executor.call(KEY, flaky(&calls, usize::MAX)).await;
    assert!(matches!(result, Err(TestError::Failed(2))));
    assert_eq!(calls.get(), 2);
    assert_eq!(observer.log(), lines(&["start", "attempt(0)", "attempt(1)", "failure(2)"]));
    let (succeeded, timeline) = observer.ends().pop().expect("an end event");
    assert!(!succeeded);
    let final_error = timeline.final_error.expect("the failure timeline has the final error");
    assert_eq!(final_error.message, "call 2 failed");
    assert_eq!(observer.records().len(), 2);
}

// O72: an explicit Noop (by value), one attempt: the operation still sees its
// attempt (retry index 0).
#[tokio::test(start_paused = true)]
async fn o72_noop_observer_operation_still_sees_its_attempt() {
    let executor = Executor::builder().policy(Policy::builder(KEY).max_attempts(1).build()).observer(Noop).build();
    assert!(!executor.has_observer());
    let result: Result<u32, TestError> = executor
        .call(KEY, || async { Ok(recourse::attempt().expect("attempt info on every path").retry_index()) })
        .await;
    assert_eq!(result.unwrap(), 0);
}

// §12.15: a provider failure (missing-policy mode deny) → start (no policy)
// then failure, with nothing in between.
#[tokio::test(start_paused = true)]
async fn o_pre_attempt_provider_failure_is_start_then_failure() {
    let observer = RecordingObserver::new();
    let executor = Executor::builder().provider(FailingProvider::default()).observer(observer.clone()).build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, flaky(&calls, 0))).await;
    let error = result.unwrap_err();
    assert!(matches!(error.recourse(), Some(recourse::Error::NoPolicy { .. })), "{error:?}");
    assert_eq!(calls.get(), 0);
    assert_eq!(observer.log(), lines(&["start(none)", "failure(0)"]));
    assert_eq!(observer.starts(), [None]);
    assert!(timeline.attempts.is_empty());
    assert!(timeline.final_error.is_some());
    assert_eq!(timeline.policy_id, None);
    assert_eq!(observer.ends()[0].1, timeline);
}

// §12.15 / §12.14: an unknown classifier with mode deny → start (no policy),
// failure; the timeline names the classifier and the error.
#[tokio::test(start_paused = true)]
async fn o_pre_attempt_unknown_classifier_is_start_then_failure_with_attributes() {
    let observer = RecordingObserver::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).classifier("nope").build())
        .missing_classifier(FailureMode::Deny)
        .observer(observer.clone())
        .build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, flaky(&calls, 0))).await;
    let error = result.unwrap_err();
    assert!(matches!(error.recourse(), Some(recourse::Error::NoClassifier { name }) if name == "nope"), "{error:?}");
    assert_eq!(calls.get(), 0);
    assert_eq!(observer.log(), lines(&["start(none)", "failure(0)"]));
    assert_eq!(timeline.attributes.get("classifier_name"), Some("nope"));
    assert_eq!(timeline.attributes.get("classifier_error"), Some("classifier_not_found"));
    let heard = &observer.ends()[0].1;
    assert_eq!(heard.attributes.get("classifier_name"), Some("nope"));
    assert_eq!(heard.attributes.get("classifier_error"), Some("classifier_not_found"));
}

// §12.15: a budget-denied first attempt → start, budget(0, denied),
// attempt(0, denied), failure; the denied attempt never ran, so
// `attempt()` is not set while it is reported.
#[tokio::test(start_paused = true)]
async fn o_budget_denied_first_attempt_event_order() {
    let observer = RecordingObserver::new();
    let budget = CountingBudget::denying(|_| true);
    let executor = observed(Policy::builder(KEY).max_attempts(3).budget("b").build(), &observer, Some(&budget));
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, flaky(&calls, 0))).await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 0);
    assert_eq!(observer.log(), lines(&["start", "budget(0,retry,denied)", "attempt(0,denied)", "failure(1)"]));
    assert_eq!(observer.records(), timeline.attempts);
    assert_eq!(observer.scopes(), [None]);
}

// §12.15 with J50: a denial of the second attempt.
#[tokio::test(start_paused = true)]
async fn o_budget_denied_second_attempt_event_order() {
    let observer = RecordingObserver::new();
    let budget = CountingBudget::denying(|attempt| attempt == 1);
    let executor = observed(Policy::builder(KEY).max_attempts(3).budget("b").build(), &observer, Some(&budget));
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, flaky(&calls, 5))).await;
    assert!(matches!(result, Err(TestError::Failed(1))));
    assert_eq!(
        observer.log(),
        lines(&[
            "start",
            "budget(0,retry,allowed)",
            "attempt(0)",
            "budget(1,retry,denied)",
            "attempt(1,denied)",
            "failure(2)"
        ])
    );
    assert_eq!(observer.records(), timeline.attempts);
    let scopes = observer.scopes();
    assert_eq!(scopes[0].as_ref().map(recourse::Attempt::retry_index), Some(0));
    assert_eq!(scopes[1], None);
}

// O73: registry {allow: Unlimited, deny: deny-second}; policy budget `allow`,
// success → exactly one decision event, allowed, reason `allowed`, mode
// `standard`.
#[tokio::test(start_paused = true)]
async fn o73_one_event_for_an_allowed_budget() {
    let registry = Registry::new();
    registry.register("allow", Unlimited);
    registry.register("deny", CountingBudget::denying(|attempt| attempt == 1));
    let observer = RecordingObserver::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).budget_with_cost("allow", 3).build())
        .budgets(Arc::new(registry))
        .observer(observer.clone())
        .build();
    let result: Result<u32, TestError> = executor.call(KEY, || async { Ok(1) }).await;
    assert_eq!(result.unwrap(), 1);
    let events = observer.budget_events();
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert!(event.allowed);
    assert_eq!(event.reason, reason::ALLOWED);
    assert_eq!(event.mode, "standard");
    assert_eq!(event.key, PolicyKey::from(KEY));
    assert_eq!(event.attempt, 0);
    assert_eq!(event.kind, AttemptKind::Retry);
    assert_eq!(event.budget, "allow");
    assert_eq!(event.cost, 3);
}

// O73: a missing budget (mode deny) → error and exactly one event: not allowed,
// `budget_not_found`, mode `deny`.
#[tokio::test(start_paused = true)]
async fn o73_one_event_for_a_missing_budget() {
    let registry = Registry::new();
    registry.register("allow", Unlimited);
    let observer = RecordingObserver::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).budget("missing_does_not_exist").build())
        .budgets(Arc::new(registry))
        .missing_budget(FailureMode::Deny)
        .observer(observer.clone())
        .build();
    let result: Result<u32, TestError> = executor.call(KEY, || async { Ok(1) }).await;
    assert!(result.is_err());
    let events = observer.budget_events();
    assert_eq!(events.len(), 1);
    assert!(!events[0].allowed);
    assert_eq!(events[0].reason, reason::BUDGET_NOT_FOUND);
    assert_eq!(events[0].mode, "deny");
    assert_eq!(events[0].budget, "missing_does_not_exist");
}

// O73 / §12.5 step 1: an unbudgeted policy produces no decision event at all,
// and its records say `no_budget`.
#[tokio::test(start_paused = true)]
async fn o73_no_event_for_an_unbudgeted_policy() {
    let observer = RecordingObserver::new();
    let executor = observed(Policy::builder(KEY).max_attempts(3).build(), &observer, None);
    let calls = Counter::new();
    assert_eq!(executor.call(KEY, flaky(&calls, 1)).await.unwrap(), 42);
    assert!(observer.budget_events().is_empty());
    assert_eq!(observer.count("budget"), 0);
    assert!(observer.records().iter().all(|r| r.budget_allowed && r.budget_reason == reason::NO_BUDGET));
}

/// Counts calls it hears about; listens only when `on` says so.
#[derive(Default)]
struct Switchable {
    on: std::sync::atomic::AtomicBool,
    starts: std::sync::atomic::AtomicUsize,
}

impl Observer for Switchable {
    fn enabled(&self) -> bool {
        self.on.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn on_start(&self, _: &PolicyKey, _: Option<&Policy>) {
        self.starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test(start_paused = true)]
async fn an_observer_that_is_not_listening_hears_nothing_and_a_capture_still_works() {
    let observer = Arc::new(Switchable::default());
    let executor = Executor::builder().observer(Arc::clone(&observer)).build();
    let ok = || async { Ok::<_, std::io::Error>(1) };
    executor.call("users.Get", ok).await.unwrap();
    assert_eq!(observer.starts.load(std::sync::atomic::Ordering::Relaxed), 0);
    let (_, timeline) = recourse::capture(executor.call("users.Get", ok)).await;
    assert_eq!(timeline.attempts.len(), 1, "a capture records regardless");
    observer.on.store(true, std::sync::atomic::Ordering::Relaxed);
    executor.call("users.Get", ok).await.unwrap();
    assert_eq!(observer.starts.load(std::sync::atomic::Ordering::Relaxed), 1, "only the call it listened to");
}

/// Panics when asked whether it listens.
struct UndecidedObserver;

impl Observer for UndecidedObserver {
    fn enabled(&self) -> bool {
        panic!("cannot decide")
    }
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_enabled_is_recovered_and_counted() {
    let executor = Executor::builder().observer(UndecidedObserver).recover_panics(true).build();
    let result = executor.call("users.Get", || async { Ok::<_, std::io::Error>(1) }).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(executor.observer_panics(), 1);
}

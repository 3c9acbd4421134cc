//! End-to-end tests for known engine defects, written against the public
//! API only. Each test fails on the engine as it stands and states the
//! intended behaviour (DESIGN §3.4, §5, §6):
//!
//! 1. a panicking observer wedges a circuit breaker half-open;
//! 2. a panic unwinding through an attempt or a capture leaves the
//!    thread-local scope set;
//! 3. with `recover_panics(true)`, hedge-trigger and observer panics reach
//!    the caller;
//! 4. cancelled hedges vanish from the `Timeline`;
//! 5. a trigger that keeps answering `Spawn` launches every hedge at once;
//! 6. a failing call builds its error text for nobody.
//!
//! "Work done for nobody" (defects 2b and 6) is observed without a counting
//! global allocator: the workspace forbids `unsafe_code`, which a
//! `GlobalAlloc` impl needs, and no dependency may be added. Instead the
//! operation's error counts its own `Display` calls (the error text the
//! engine builds is that `Display`), and a policy id's reference count shows
//! a timeline that was built and parked where nobody reads it.

mod support;

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use recourse::Executor;
use recourse::circuit::{self, State, Transition};
use recourse::hedge::{HedgeState, HedgeTrigger, TriggerDecision};
use recourse::observe::Observer;
use recourse::policy::{Policy, PolicyKey};
use support::{Counter, KEY, OpError, ms};
use tokio::time::Instant;

// ---------------------------------------------------------------------------
// Helpers.

/// Polls `future` once by hand on this thread (no runtime task around it),
/// catching a panic that unwinds out of the poll.
fn poll_once_catching<F: Future>(future: F) -> std::thread::Result<Poll<F::Output>> {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(&mut cx)))
}

/// Runs `future` as a task and returns its output, or the panic that ended
/// it (as the task's `JoinError`).
async fn run_task<F>(future: F) -> Result<F::Output, tokio::task::JoinError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(future).await
}

/// An operation that panics when polled.
async fn exploding() -> Result<u32, OpError> {
    panic!("operation exploded")
}

/// The key's breaker, created by the executor on its first call.
fn breaker_state(executor: &Executor) -> State {
    executor.circuits().get(&PolicyKey::from(KEY)).expect("the executor created the key's breaker").state()
}

/// Whether `result` is the circuit refusal `(state, why)`.
fn is_circuit_open(result: &Result<u32, OpError>, state: State, why: &str) -> bool {
    matches!(
        result.as_ref().map_err(OpError::recourse),
        Err(Some(recourse::Error::CircuitOpen { state: s, reason: r })) if *s == state && *r == why
    )
}

thread_local! {
    /// How often a [`Quiet`] error was formatted on this thread.
    static DISPLAYED: Cell<usize> = const { Cell::new(0) };
}

/// How often a [`Quiet`] error has been formatted on this thread.
fn displayed() -> usize {
    DISPLAYED.with(Cell::get)
}

/// An operation error that allocates nothing and counts every time it is
/// formatted (per thread): the engine's error text is its `Display`.
#[derive(Debug, thiserror::Error, recourse::Classifier)]
enum Quiet {
    /// The operation's own failure.
    #[classify(non_retryable)]
    Refused,
    /// recourse ended the call itself.
    Recourse(#[from] recourse::Error),
}

impl fmt::Display for Quiet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        DISPLAYED.with(|c| c.set(c.get() + 1));
        match self {
            Self::Refused => f.write_str("refused"),
            Self::Recourse(e) => write!(f, "recourse ended the call: {e}"),
        }
    }
}

/// One call of `executor` whose operation fails with [`Quiet::Refused`].
async fn refused(executor: &Executor) -> Result<u32, Quiet> {
    executor.call(KEY, || async { Err(Quiet::Refused) }).await
}

// ---------------------------------------------------------------------------
// Defect 1: a panicking observer wedges a circuit breaker half-open.

/// An observer that panics in `on_circuit_change` once, after being armed.
#[derive(Debug, Clone, Default)]
struct PanicOnceOnCircuitChange {
    armed: Arc<AtomicBool>,
}

impl Observer for PanicOnceOnCircuitChange {
    fn on_circuit_change(&self, _key: &PolicyKey, transition: Transition) {
        let armed = self.armed.swap(false, Ordering::SeqCst);
        assert!(!armed, "observer exploded on {} -> {}", transition.from, transition.to);
    }
}

/// An executor with a breaker (threshold 1, cooldown 100 ms) whose circuit
/// has been opened and has cooled down, so the next call is the half-open
/// probe; the returned flag arms the observer's single panic.
async fn cooled_down_breaker(recover_panics: bool) -> (Executor, Arc<AtomicBool>) {
    let observer = PanicOnceOnCircuitChange::default();
    let armed = Arc::clone(&observer.armed);
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(1).circuit(1, ms(100)).build())
        .circuits(Arc::new(circuit::Registry::new()))
        .observer(observer)
        .recover_panics(recover_panics)
        .build();
    let opened: Result<u32, OpError> = executor.call(KEY, || async { Err(OpError::Fatal("down")) }).await;
    assert!(matches!(opened, Err(OpError::Fatal("down"))), "{opened:?}");
    assert_eq!(breaker_state(&executor), State::Open, "one failed call opens the circuit");
    tokio::time::sleep(ms(150)).await;
    (executor, armed)
}

/// The half-open probe call (operation: `Ok(1)`), run as its own task so
/// a panic that reaches the caller is caught.
async fn probe_in_a_task(executor: &Executor, calls: &Counter) -> Result<Result<u32, OpError>, tokio::task::JoinError> {
    let (executor, calls) = (executor.clone(), calls.clone());
    run_task(async move {
        executor
            .call(KEY, move || {
                calls.hit();
                async { Ok::<u32, OpError>(1) }
            })
            .await
    })
    .await
}

/// Defect 1 (DESIGN §5, §6.4): with panic recovery off, an observer that
/// panics in `on_circuit_change` while the breaker hands out its half-open
/// probe slot must not leak that slot: the panic reaches the caller, and
/// the next call is admitted as the probe.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn observer_panic_does_not_wedge_half_open_breaker() {
    let (executor, armed) = cooled_down_breaker(false).await;
    armed.store(true, Ordering::SeqCst);
    let calls = Counter::new();

    let probe = probe_in_a_task(&executor, &calls).await;
    let panic = probe.expect_err("with recovery off the observer's panic reaches the caller");
    assert!(panic.is_panic(), "{panic:?}");
    assert_eq!(calls.get(), 0, "the probe call panicked before its operation ran");

    let next: Result<u32, OpError> = executor
        .call(KEY, || {
            calls.hit();
            async { Ok(2) }
        })
        .await;
    assert!(
        !is_circuit_open(&next, State::HalfOpen, circuit::reason::HALF_OPEN_PROBE_LIMIT),
        "the panicked probe leaked the half-open probe slot: the next call was refused with \
         circuit_half_open_probe_limit ({next:?})"
    );
    assert!(matches!(next, Ok(2)), "the next call is admitted as the probe: {next:?}");
    assert_eq!(calls.get(), 1, "the probe's operation ran");
    assert_eq!(breaker_state(&executor), State::Closed, "the successful probe closes the circuit");
}

/// Defect 1, recovery on (DESIGN §5, §6.11): the observer's panic in
/// `on_circuit_change` during the half-open probe never reaches the caller
/// and does not change the call: its operation runs and its result is
/// returned.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn recovered_observer_panic_on_half_open_does_not_affect_the_probe() {
    let (executor, armed) = cooled_down_breaker(true).await;
    armed.store(true, Ordering::SeqCst);
    let calls = Counter::new();

    let probe = probe_in_a_task(&executor, &calls).await;
    let result = probe.expect("with recover_panics(true) the observer's panic must not reach the caller");
    assert!(matches!(result, Ok(1)), "the probe's own result: {result:?}");
    assert_eq!(calls.get(), 1, "the probe's operation ran");
    assert_eq!(breaker_state(&executor), State::Closed, "the successful probe closes the circuit");
}

// ---------------------------------------------------------------------------
// Defect 2: a panic unwinding through an attempt or a capture leaves the
// thread-local scope set.

/// Defect 2a (DESIGN §5: the operation's panics leave no state behind): an
/// operation that panics while its attempt is polled must not leave
/// `recourse::attempt()` set on the polling thread, whichever path the
/// call takes (lean, deadline, hedged).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn operation_panic_does_not_leave_the_attempt_scope_set() {
    let policies = [
        ("plain", Policy::builder(KEY).build()),
        ("overall deadline", Policy::builder(KEY).overall_timeout(ms(1_000)).build()),
        ("hedged", Policy::builder(KEY).max_attempts(1).max_hedges(1).hedge_delay(ms(10)).build()),
    ];
    for (name, policy) in policies {
        let executor = Executor::builder().policy(policy).build();
        assert_eq!(recourse::attempt(), None, "{name}: no attempt in scope before the call");
        let polled = poll_once_catching(executor.call(KEY, exploding));
        assert!(polled.is_err(), "{name}: the operation's panic propagates out of the poll");
        assert_eq!(
            recourse::attempt(),
            None,
            "{name}: the panicked attempt's scope leaked into the thread after the unwind"
        );
    }
}

/// Defect 2b (DESIGN §5): a panic inside `recourse::capture(..)` must not
/// leave the capture flag set on the thread; otherwise every later plain
/// call on that thread records a timeline (error text included) and parks
/// it where nobody reads it. Checked first without the panic, so the
/// measurement is known to read 0 on a clean thread.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn capture_panic_does_not_leave_capture_requested() {
    let executor = Executor::builder().policy(Policy::builder(KEY).id("rev-1").max_attempts(1).build()).build();
    let policy = executor.policy_for(&PolicyKey::from(KEY)).expect("a static policy");
    let id = policy.id.clone().expect("the policy has an id");

    // Warm up: the first call resolves and caches.
    let ok: Result<u32, Quiet> = executor.call(KEY, || async { Ok(1) }).await;
    assert!(matches!(ok, Ok(1)));
    let (ids, formatted) = (Arc::strong_count(&id), displayed());

    // Clean thread: a plain call keeps nothing and formats nothing.
    let ok: Result<u32, Quiet> = executor.call(KEY, || async { Ok(1) }).await;
    assert!(matches!(ok, Ok(1)));
    assert!(matches!(refused(&executor).await, Err(Quiet::Refused)));
    assert_eq!(Arc::strong_count(&id), ids, "control: a plain call keeps no reference to the policy id");
    assert_eq!(displayed(), formatted, "control: a plain failing call formats no error text");

    // A panic unwinds out of a capture's poll.
    let polled = poll_once_catching(recourse::capture(async {
        panic!("captured future exploded");
    }));
    assert!(polled.is_err(), "the captured future's panic propagates out of the poll");

    let ok: Result<u32, Quiet> = executor.call(KEY, || async { Ok(1) }).await;
    assert!(matches!(ok, Ok(1)));
    assert_eq!(
        Arc::strong_count(&id),
        ids,
        "after the capture's panic a plain successful call built a timeline (holding the policy id) \
         and published it to nobody: the capture flag leaked"
    );
    assert!(matches!(refused(&executor).await, Err(Quiet::Refused)));
    assert_eq!(
        displayed(),
        formatted,
        "after the capture's panic a plain failing call recorded its error text for nobody: the capture \
         flag leaked"
    );
}

// ---------------------------------------------------------------------------
// Defect 3: with `recover_panics(true)`, hedge-trigger and observer panics
// reach the caller.

/// A hedge trigger that panics whenever it is asked.
#[derive(Debug, Clone, Copy)]
struct ExplodingTrigger;

impl HedgeTrigger for ExplodingTrigger {
    fn should_spawn(&self, _state: &HedgeState<'_>) -> TriggerDecision {
        panic!("hedge trigger exploded");
    }
}

/// Defect 3a (DESIGN §5, §6.11): with panic recovery on, a registered hedge
/// trigger that panics never reaches the caller; the call returns the
/// operation's result.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn recovered_hedge_trigger_panic_does_not_reach_the_caller() {
    let executor = Executor::builder()
        .policy(
            Policy::builder(KEY).max_attempts(1).max_hedges(1).hedge_delay(ms(10)).hedge_trigger("exploding").build(),
        )
        .trigger("exploding", ExplodingTrigger)
        .recover_panics(true)
        .build();
    let call = run_task(async move {
        executor
            .call(KEY, || async {
                tokio::time::sleep(ms(20)).await;
                Ok::<u32, OpError>(7)
            })
            .await
    })
    .await;
    let result = call.expect("with recover_panics(true) the hedge trigger's panic must not reach the caller");
    assert!(matches!(result, Ok(7)), "the operation's result: {result:?}");
}

/// An observer that panics in every callback.
#[derive(Debug, Clone, Copy)]
struct ExplodingObserver;

impl Observer for ExplodingObserver {
    fn on_start(&self, _key: &PolicyKey, _policy: Option<&Policy>) {
        panic!("observer exploded in on_start");
    }

    fn on_attempt(&self, _key: &PolicyKey, _record: &recourse::AttemptRecord) {
        panic!("observer exploded in on_attempt");
    }

    fn on_hedge_spawn(&self, _key: &PolicyKey, _record: &recourse::AttemptRecord) {
        panic!("observer exploded in on_hedge_spawn");
    }

    fn on_hedge_cancel(&self, _key: &PolicyKey, _record: &recourse::AttemptRecord, _reason: &str) {
        panic!("observer exploded in on_hedge_cancel");
    }

    fn on_budget_decision(&self, _event: &recourse::budget::BudgetDecisionEvent) {
        panic!("observer exploded in on_budget_decision");
    }

    fn on_success(&self, _key: &PolicyKey, _timeline: &recourse::Timeline) {
        panic!("observer exploded in on_success");
    }

    fn on_failure(&self, _key: &PolicyKey, _timeline: &recourse::Timeline) {
        panic!("observer exploded in on_failure");
    }

    fn on_circuit_change(&self, _key: &PolicyKey, _transition: Transition) {
        panic!("observer exploded in on_circuit_change");
    }
}

/// A call whose attempt `n` (1-based) returns `script(n)`, run as its own
/// task so a panic that reaches the caller is caught.
async fn call_in_a_task(
    executor: Executor,
    calls: &Counter,
    script: fn(usize) -> Result<usize, OpError>,
) -> Result<Result<usize, OpError>, tokio::task::JoinError> {
    let calls = calls.clone();
    run_task(async move {
        executor
            .call(KEY, move || {
                let n = calls.hit();
                async move { script(n) }
            })
            .await
    })
    .await
}

fn exploding_observer_executor() -> Executor {
    Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).build())
        .observer(ExplodingObserver)
        .recover_panics(true)
        .build()
}

/// Defect 3b (DESIGN §5, §6.11): with panic recovery on, an observer that
/// panics in every callback changes nothing: a call that fails twice
/// (retryable) and then succeeds returns `Ok` after 3 attempts.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn recovered_observer_panics_do_not_change_a_retried_success() {
    let executor = exploding_observer_executor();
    let calls = Counter::new();
    let call = call_in_a_task(executor, &calls, |n| if n < 3 { Err(OpError::Retryable("flaky")) } else { Ok(n) }).await;
    let result = call.expect("with recover_panics(true) the observer's panics must not reach the caller");
    assert!(matches!(result, Ok(3)), "the third attempt's value: {result:?}");
    assert_eq!(calls.get(), 3, "two retryable failures, then a success");
}

/// Defect 3b (DESIGN §5, §6.11): with panic recovery on, an observer that
/// panics in every callback changes nothing: a non-retryable failure is
/// returned unchanged after one attempt.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn recovered_observer_panics_do_not_change_a_non_retryable_failure() {
    let executor = exploding_observer_executor();
    let calls = Counter::new();
    let call = call_in_a_task(executor, &calls, |_| Err(OpError::Fatal("nope"))).await;
    let result = call.expect("with recover_panics(true) the observer's panics must not reach the caller");
    assert!(matches!(result, Err(OpError::Fatal("nope"))), "the operation's error, unchanged: {result:?}");
    assert_eq!(calls.get(), 1, "a non-retryable error is not retried");
}

// ---------------------------------------------------------------------------
// Defect 4: cancelled hedges vanish from the timeline.

/// Defect 4 (DESIGN §3.4, §6.10): every launched attempt is on the record.
/// The primary, cancelled when its hedge wins, appears in the timeline with
/// reason `hedge_cancelled` and its run time up to the cancel, and the chart
/// shows it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn cancelled_hedge_loser_is_in_the_timeline() {
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(1).max_hedges(1).hedge_delay(ms(10)).build())
        .build();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        let is_hedge = recourse::attempt().expect("inside an attempt").is_hedge();
        async move {
            if is_hedge {
                return Ok::<_, OpError>("hedge");
            }
            tokio::time::sleep(ms(100)).await;
            Ok("primary")
        }
    }))
    .await;
    assert_eq!(result.unwrap(), "hedge");
    assert_eq!(
        timeline.attempts.len(),
        2,
        "both launched attempts are on the record, the cancelled primary included:\n{timeline}"
    );
    let hedge = timeline.attempts.iter().find(|r| r.hedge_index == 1).expect("the hedge's record");
    assert!(hedge.is_hedge);
    assert_eq!(hedge.outcome.kind, recourse::OutcomeKind::Success);
    let primary = timeline.attempts.iter().find(|r| r.hedge_index == 0).expect("the cancelled primary's record");
    assert!(!primary.is_hedge);
    assert_eq!(primary.outcome.reason, "hedge_cancelled");
    assert_eq!(primary.end - primary.start, ms(10), "the primary ran until the hedge won at 10 ms");
    let chart = timeline.to_string();
    assert!(chart.contains("hedge_cancelled"), "the chart shows the cancelled primary:\n{chart}");
}

// ---------------------------------------------------------------------------
// Defect 5: a trigger that keeps answering `Spawn` launches every hedge at
// once.

/// A trigger that always wants another hedge.
#[derive(Debug, Clone, Copy)]
struct AlwaysSpawn;

impl HedgeTrigger for AlwaysSpawn {
    fn should_spawn(&self, _state: &HedgeState<'_>) -> TriggerDecision {
        TriggerDecision::Spawn
    }
}

/// Defect 5 (DESIGN §6.12): at most one hedge per trigger evaluation, and
/// the next evaluation no sooner than the hedge delay after a launch: with
/// a trigger that always answers `Spawn`, a 10 ms delay and 3 hedges, the
/// hedges start 0, 10 and 20 ms after the primary.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn always_spawn_trigger_paces_hedges_by_the_hedge_delay() {
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(1).max_hedges(3).hedge_delay(ms(10)).hedge_trigger("always").build())
        .trigger("always", AlwaysSpawn)
        .build();
    let starts = Arc::new(Mutex::new(Vec::new()));
    let result = executor
        .call(KEY, || {
            let hedge_index = recourse::attempt().expect("inside an attempt").hedge_index();
            starts.lock().unwrap_or_else(PoisonError::into_inner).push((hedge_index, Instant::now()));
            async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Ok::<u32, OpError>(1)
            }
        })
        .await;
    assert!(matches!(result, Ok(1)), "{result:?}");
    let mut starts = starts.lock().unwrap_or_else(PoisonError::into_inner).clone();
    starts.sort_by_key(|&(index, _)| index);
    let primary = starts.first().map(|&(_, at)| at).expect("the primary started");
    let offsets: Vec<(u32, Duration)> = starts.iter().skip(1).map(|&(index, at)| (index, at - primary)).collect();
    assert_eq!(
        offsets,
        [(1, ms(0)), (2, ms(10)), (3, ms(20))],
        "hedge starts after the primary: one per evaluation, paced by the hedge delay"
    );
}

// ---------------------------------------------------------------------------
// Defect 6: a failing call builds its error text for nobody.

/// Checks that, once warmed up, a failing call of `executor` (no capture,
/// no observer) formats its error 0 times, then that the counter does
/// count when a capture listens.
async fn assert_failure_formats_nothing(executor: &Executor, what: &str) {
    // Warm up: the first call resolves and caches.
    assert!(matches!(refused(executor).await, Err(Quiet::Refused)));
    let before = displayed();
    assert!(matches!(refused(executor).await, Err(Quiet::Refused)));
    assert!(matches!(refused(executor).await, Err(Quiet::Refused)));
    assert_eq!(
        displayed() - before,
        0,
        "{what}: a failing call with no capture and no observer formatted its error (built the error \
         text for nobody)"
    );
    // The counter works: a capture does want the error text.
    let (result, timeline) = recourse::capture(refused(executor)).await;
    assert!(matches!(result, Err(Quiet::Refused)));
    assert!(timeline.final_error.is_some());
    assert!(displayed() > before, "{what}: a captured failure records its error text");
}

/// Defect 6 (DESIGN §5, §6.1: the cheap path is the same engine with
/// nothing to record): a failing call under a policy with an overall
/// deadline builds no error text when nobody listens. The lean policy is
/// the control.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failing_call_with_deadline_builds_no_error_text_for_nobody() {
    let lean = Executor::builder().policy(Policy::builder(KEY).max_attempts(1).build()).build();
    assert_failure_formats_nothing(&lean, "control (lean policy)").await;
    let executor =
        Executor::builder().policy(Policy::builder(KEY).max_attempts(1).overall_timeout(ms(1_000)).build()).build();
    assert_failure_formats_nothing(&executor, "overall deadline").await;
}

/// Defect 6 (DESIGN §5, §6.1): a failing call under a policy with a circuit
/// breaker (threshold high enough never to open) builds no error text when
/// nobody listens.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failing_call_with_circuit_breaker_builds_no_error_text_for_nobody() {
    let executor =
        Executor::builder().policy(Policy::builder(KEY).max_attempts(1).circuit(1_000, ms(100)).build()).build();
    assert_failure_formats_nothing(&executor, "circuit breaker").await;
    assert_eq!(breaker_state(&executor), State::Closed, "the breaker never opened");
}

/// Defect 6 (DESIGN §5, §6.1): a failing hedged call builds no error text
/// when nobody listens (beyond what a succeeding hedged call costs).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn failing_hedged_call_builds_no_error_text_for_nobody() {
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(1).max_hedges(1).hedge_delay(ms(10)).build())
        .build();
    assert_failure_formats_nothing(&executor, "hedged").await;
}

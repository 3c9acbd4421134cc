//! Circuit breaking through the executor: section L of the conformance
//! checklist (`retry/circuit_test.go`, items 58–59), spec §10 / §12.7, and
//! DESIGN §6.4 (a half-open probe that ends without a verdict hands its
//! slot back; Go wedges half-open forever, §17.2).
//!
//! Rust adaptations: Go's breaker runs on the wall clock and its tests
//! sleep; the breakers here run on tokio time, so every test is on paused
//! time and "wait 150 ms" is an exact `tokio::time::sleep`. A Go
//! `CircuitOpenError` is `recourse::Error::CircuitOpen { state, reason }`.
//! Section F (the breaker alone) is covered by the unit tests in
//! `recourse/src/circuit/`; here the breaker is driven by calls.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use recourse::circuit::{self, Breaker, State, Transition, reason};
use recourse::policy::{Policy, PolicyKey};
use recourse::{Executor, OutcomeKind};
use support::{Counter, CountingBudget, DropFlag, KEY, OpError, RecordingObserver, ms};
use tokio::time::Instant;

/// An executor with `policy` for `x`, the shared breaker `registry`, and
/// `observer`.
fn circuit_executor(policy: Policy, registry: &Arc<circuit::Registry>, observer: &RecordingObserver) -> Executor {
    Executor::builder().policy(policy).circuits(Arc::clone(registry)).observer(observer.clone()).build()
}

fn breaker(registry: &circuit::Registry) -> Arc<dyn Breaker> {
    registry.get(&PolicyKey::from(KEY)).expect("the executor created the key's breaker")
}

/// One call whose op counts itself in `calls` and, after `latency`,
/// returns `outcome`.
async fn call(
    executor: &Executor,
    calls: &Counter,
    latency: Duration,
    outcome: Result<u32, OpError>,
) -> (Result<u32, OpError>, recourse::Timeline) {
    recourse::capture(executor.call(KEY, || {
        calls.hit();
        let outcome = outcome.clone();
        async move {
            tokio::time::sleep(latency).await;
            outcome
        }
    }))
    .await
}

fn is_circuit_open(result: &Result<u32, OpError>, state: State, why: &str) -> bool {
    matches!(
        result.as_ref().map_err(OpError::recourse),
        Err(Some(recourse::Error::CircuitOpen { state: s, reason: r })) if *s == state && *r == why
    )
}

const FAIL: Result<u32, OpError> = Err(OpError::Retryable("down"));
const OK: Result<u32, OpError> = Ok(1);

fn transition(from: State, to: State) -> Transition {
    Transition::new(from, to)
}

// ---------------------------------------------------------------------------
// L58, L59.

// L58: {1 attempt, threshold 2, cooldown 100 ms}, shared registry.
#[tokio::test(start_paused = true)]
async fn l58_the_breaker_opens_refuses_probes_and_closes() {
    let registry = Arc::new(circuit::Registry::new());
    let observer = RecordingObserver::new();
    let executor =
        circuit_executor(Policy::builder(KEY).max_attempts(1).circuit(2, ms(100)).build(), &registry, &observer);
    let calls = Counter::new();

    let (result, timeline) = call(&executor, &calls, ms(0), FAIL).await;
    assert!(result.is_err());
    assert_eq!(breaker(&registry).state(), State::Closed, "call 1: one failure of two");
    assert_eq!(timeline.attributes.get("circuit_state"), Some("closed"));
    assert_eq!(timeline.attributes.get("circuit_transition"), None);

    let (result, timeline) = call(&executor, &calls, ms(0), FAIL).await;
    assert!(result.is_err());
    assert_eq!(breaker(&registry).state(), State::Open, "call 2 opens it");
    assert_eq!(timeline.attributes.get("circuit_transition"), Some("closed -> open"));

    let start = Instant::now();
    let (result, timeline) = call(&executor, &calls, ms(0), OK).await;
    assert!(is_circuit_open(&result, State::Open, reason::CIRCUIT_OPEN), "{result:?}");
    assert_eq!(calls.get(), 2, "call 3: the op is never invoked");
    assert_eq!(start.elapsed(), Duration::ZERO, "refused at once");
    assert_eq!(timeline.attributes.get("circuit_state"), Some("open"));
    assert!(timeline.attempts.is_empty(), "a refused call has no attempt records");
    let final_error = timeline.final_error.expect("refused");
    assert_eq!((final_error.kind, &*final_error.reason), (OutcomeKind::Abort, reason::CIRCUIT_OPEN));

    tokio::time::sleep(ms(150)).await;
    let (result, timeline) = call(&executor, &calls, ms(0), OK).await;
    assert_eq!(result.unwrap(), 1, "call 4: the probe succeeds");
    assert_eq!(calls.get(), 3);
    assert_eq!(breaker(&registry).state(), State::Closed);
    assert_eq!(timeline.attributes.get("circuit_state"), Some("half-open"));
    assert_eq!(timeline.attributes.get("circuit_transition"), Some("half-open -> closed"));

    let (result, _) = call(&executor, &calls, ms(0), OK).await;
    assert_eq!(result.unwrap(), 1, "call 5: closed again");
    assert_eq!(calls.get(), 4);

    assert_eq!(
        observer.transitions(),
        [
            transition(State::Closed, State::Open),
            transition(State::Open, State::HalfOpen),
            transition(State::HalfOpen, State::Closed)
        ]
    );
}

// L59: {1 attempt, 2 hedges at 1 ms (normalized to 10 ms), threshold 1,
// cooldown 100 ms}: the probe's op (20 ms, fails) runs exactly once:
// hedging is suppressed while half-open.
#[tokio::test(start_paused = true)]
async fn l59_hedging_is_suppressed_while_half_open() {
    let registry = Arc::new(circuit::Registry::new());
    let observer = RecordingObserver::new();
    let policy = Policy::builder(KEY).max_attempts(1).max_hedges(2).hedge_delay(ms(1)).circuit(1, ms(100)).build();
    assert_eq!(policy.hedge.delay, ms(10));
    let executor = circuit_executor(policy, &registry, &observer);
    let calls = Counter::new();

    // Closed: the 15 ms op is hedged at 10 and 20 ms (the first hedge is
    // still running at 20 ms); all fail; one failed call opens the circuit.
    let (result, timeline) = call(&executor, &calls, ms(15), FAIL).await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 3, "closed: primary + two hedges");
    assert_eq!(timeline.attributes.get("hedging_disabled"), None);
    assert_eq!(breaker(&registry).state(), State::Open);

    tokio::time::sleep(ms(150)).await;
    let start = Instant::now();
    let (result, timeline) = call(&executor, &calls, ms(20), FAIL).await;
    assert!(matches!(result, Err(OpError::Retryable("down"))), "{result:?}");
    assert_eq!(calls.get(), 4, "the probe's op ran exactly once");
    assert_eq!(start.elapsed(), ms(20));
    assert_eq!(timeline.attempts.len(), 1);
    assert!(!timeline.attempts[0].is_hedge);
    assert_eq!(timeline.attributes.get("hedging_disabled"), Some("circuit half-open: one probe attempt at a time"));
    assert_eq!(timeline.attributes.get("circuit_state"), Some("half-open"));
    assert_eq!(timeline.attributes.get("circuit_transition"), Some("half-open -> open"));
    assert_eq!(breaker(&registry).state(), State::Open, "the failed probe reopens the circuit");
    assert_eq!(observer.count("hedge_spawn"), 2, "only the closed call hedged");
    assert_eq!(
        observer.transitions(),
        [
            transition(State::Closed, State::Open),
            transition(State::Open, State::HalfOpen),
            transition(State::HalfOpen, State::Open)
        ]
    );
}

// One verdict per call, not per attempt: a call that exhausts 3 attempts
// counts as one failure.
#[tokio::test(start_paused = true)]
async fn the_breaker_counts_calls_not_attempts() {
    let registry = Arc::new(circuit::Registry::new());
    let observer = RecordingObserver::new();
    let policy = Policy::builder(KEY).max_attempts(3).initial_backoff(ms(1)).circuit(2, ms(100)).build();
    let executor = circuit_executor(policy, &registry, &observer);
    let calls = Counter::new();
    let (result, _) = call(&executor, &calls, ms(0), FAIL).await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 3);
    assert_eq!(breaker(&registry).state(), State::Closed, "3 failed attempts, 1 failed call");
    let (result, _) = call(&executor, &calls, ms(0), FAIL).await;
    assert!(result.is_err());
    assert_eq!(breaker(&registry).state(), State::Open);
    // A non-retryable failure is a failed call too; an abort is not a
    // verdict (closed breaker: nothing counted).
    let registry = Arc::new(circuit::Registry::new());
    let executor =
        circuit_executor(Policy::builder(KEY).max_attempts(3).circuit(1, ms(100)).build(), &registry, &observer);
    let (result, _) = call(&executor, &calls, ms(0), Err(OpError::Aborted("cut"))).await;
    assert!(result.is_err());
    assert_eq!(breaker(&registry).state(), State::Closed, "an abort says nothing about the dependency");
    let (result, _) = call(&executor, &calls, ms(0), Err(OpError::Fatal("bad"))).await;
    assert!(result.is_err());
    assert_eq!(breaker(&registry).state(), State::Open);
}

// ---------------------------------------------------------------------------
// DESIGN §6.4: a probe that ends without a verdict lets the next call
// probe (Go §17.2: the breaker stays half-open and refuses every later call
// with `circuit_half_open_probe_limit`, forever).

/// An executor with threshold 1 and cooldown 100 ms (and a retry budget
/// `retries` that denies while `deny` is set), whose circuit has been
/// opened and has cooled down: the next call is the probe.
async fn cooled_down(deny: &Arc<AtomicBool>) -> (Executor, Arc<circuit::Registry>, RecordingObserver, Counter) {
    let registry = Arc::new(circuit::Registry::new());
    let observer = RecordingObserver::new();
    let deny = Arc::clone(deny);
    let budget = CountingBudget::denying(move |_| deny.load(Ordering::SeqCst));
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(1).budget("retries").circuit(1, ms(100)).build())
        .budget("retries", budget)
        .circuits(Arc::clone(&registry))
        .observer(observer.clone())
        .build();
    let calls = Counter::new();
    let (result, _) = call(&executor, &calls, ms(0), FAIL).await;
    assert!(result.is_err());
    assert_eq!(breaker(&registry).state(), State::Open);
    tokio::time::sleep(ms(150)).await;
    (executor, registry, observer, calls)
}

/// After a probe ended without a verdict: the breaker is half-open with its
/// probe slot free, so the next call probes, succeeds and closes it.
async fn next_call_probes(executor: &Executor, registry: &circuit::Registry, calls: &Counter) {
    assert_eq!(breaker(registry).state(), State::HalfOpen, "no verdict: neither reopened nor closed");
    let before = calls.get();
    let (result, timeline) = call(executor, calls, ms(0), OK).await;
    assert_eq!(result.unwrap(), 1, "the next call is admitted as the probe (Go §17.2 would refuse it)");
    assert_eq!(calls.get(), before + 1);
    assert_eq!(timeline.attributes.get("circuit_state"), Some("half-open"));
    assert_eq!(breaker(registry).state(), State::Closed);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_lets_the_next_call_probe() {
    let deny = Arc::new(AtomicBool::new(false));
    let (executor, registry, observer, calls) = cooled_down(&deny).await;
    let running = DropFlag::new();
    let probe = executor.call(KEY, || {
        calls.hit();
        let running = running.clone();
        async move {
            let guard = running.guard();
            std::future::pending::<()>().await;
            guard.disarm();
            Ok::<u32, OpError>(0)
        }
    });
    // Boxed, so that dropping it drops the future itself.
    let mut probe = Box::pin(probe);
    assert!(tokio::time::timeout(ms(5), probe.as_mut()).await.is_err(), "the probe is in flight");
    assert_eq!(calls.get(), 2);

    // While the probe is out, other calls are refused.
    let (result, _) = call(&executor, &Counter::new(), ms(0), OK).await;
    assert!(is_circuit_open(&result, State::HalfOpen, reason::HALF_OPEN_PROBE_LIMIT), "{result:?}");

    // The caller gives up on the probe: its future is dropped mid-attempt.
    drop(probe);
    assert_eq!(running.dropped(), 1);
    next_call_probes(&executor, &registry, &calls).await;
    assert_eq!(
        observer.transitions(),
        [
            transition(State::Closed, State::Open),
            transition(State::Open, State::HalfOpen),
            transition(State::HalfOpen, State::Closed)
        ],
        "a released probe is not a transition"
    );
}

#[tokio::test(start_paused = true)]
async fn a_probe_denied_by_its_budget_lets_the_next_call_probe() {
    let deny = Arc::new(AtomicBool::new(false));
    let (executor, registry, _, calls) = cooled_down(&deny).await;
    deny.store(true, Ordering::SeqCst);
    let (result, timeline) = call(&executor, &calls, ms(0), OK).await;
    let error = result.unwrap_err();
    assert!(
        matches!(error.recourse(), Some(recourse::Error::BudgetDenied { reason }) if reason == "budget_denied"),
        "{error:?}"
    );
    assert_eq!(calls.get(), 1, "the probe's op never ran");
    assert_eq!(timeline.attributes.get("circuit_state"), Some("half-open"));
    deny.store(false, Ordering::SeqCst);
    next_call_probes(&executor, &registry, &calls).await;
}

#[tokio::test(start_paused = true)]
async fn a_probe_aborted_by_its_classification_lets_the_next_call_probe() {
    let deny = Arc::new(AtomicBool::new(false));
    let (executor, registry, _, calls) = cooled_down(&deny).await;
    let (result, timeline) = call(&executor, &calls, ms(3), Err(OpError::Aborted("probe"))).await;
    assert!(matches!(result, Err(OpError::Aborted("probe"))), "{result:?}");
    assert_eq!(calls.get(), 2);
    assert_eq!(timeline.attributes.get("circuit_state"), Some("half-open"));
    next_call_probes(&executor, &registry, &calls).await;
}

// ---------------------------------------------------------------------------
// The failure-rate breaker through the executor.

fn failure_rate_executor(observer: &RecordingObserver) -> (Executor, Arc<circuit::Registry>) {
    let registry = Arc::new(circuit::Registry::new());
    // Open at ≥ 50 % failed calls in a 10 s window, once it holds 4 calls.
    let policy = Policy::builder(KEY).max_attempts(1).circuit_failure_rate(0.5, Duration::from_secs(10), 4, ms(100));
    let executor = circuit_executor(policy.build(), &registry, observer);
    (executor, registry)
}

#[tokio::test(start_paused = true)]
async fn the_failure_rate_breaker_waits_for_min_throughput() {
    let observer = RecordingObserver::new();
    let (executor, registry) = failure_rate_executor(&observer);
    let calls = Counter::new();
    for n in 1..=3 {
        let (result, _) = call(&executor, &calls, ms(1), FAIL).await;
        assert!(result.is_err());
        assert_eq!(breaker(&registry).state(), State::Closed, "{n} failed call(s): below min_throughput 4");
    }
    let (result, timeline) = call(&executor, &calls, ms(1), FAIL).await;
    assert!(result.is_err());
    assert_eq!(breaker(&registry).state(), State::Open, "4 calls, all failed");
    assert_eq!(timeline.attributes.get("circuit_state"), Some("closed"));
    assert_eq!(timeline.attributes.get("circuit_transition"), Some("closed -> open"));
    let (result, _) = call(&executor, &calls, ms(1), OK).await;
    assert!(is_circuit_open(&result, State::Open, reason::CIRCUIT_OPEN), "{result:?}");
    assert_eq!(calls.get(), 4);
}

#[tokio::test(start_paused = true)]
async fn the_failure_rate_breaker_opens_at_its_ratio_and_reports_every_transition() {
    let observer = RecordingObserver::new();
    let (executor, registry) = failure_rate_executor(&observer);
    let calls = Counter::new();
    // failures / calls after each: 0/1, 0/2, 1/3 (< 4 calls), 1/4, 2/5 = 40 %.
    for (n, outcome) in [OK, OK, FAIL, OK, FAIL].into_iter().enumerate() {
        let _ = call(&executor, &calls, ms(1), outcome).await;
        assert_eq!(breaker(&registry).state(), State::Closed, "after call {}", n + 1);
    }
    assert!(observer.transitions().is_empty());
    // 3/6 = 50 %: at the ratio.
    let (result, _) = call(&executor, &calls, ms(1), FAIL).await;
    assert!(result.is_err());
    assert_eq!(breaker(&registry).state(), State::Open);

    tokio::time::sleep(ms(100)).await;
    assert_eq!(breaker(&registry).state(), State::HalfOpen, "cooled down");
    let log_before = observer.log().len();
    let (result, timeline) = call(&executor, &calls, ms(1), OK).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(breaker(&registry).state(), State::Closed);
    assert_eq!(timeline.attributes.get("circuit_state"), Some("half-open"));
    assert_eq!(timeline.attributes.get("circuit_transition"), Some("half-open -> closed"));
    assert_eq!(
        observer.log()[log_before..],
        ["start", "circuit(open->half-open)", "attempt(0)", "circuit(half-open->closed)", "success(1)"],
        "the probe's events: admission transition before the attempt, verdict transition before success"
    );
    assert_eq!(
        observer.transitions(),
        [
            transition(State::Closed, State::Open),
            transition(State::Open, State::HalfOpen),
            transition(State::HalfOpen, State::Closed)
        ]
    );
    // The window starts empty again: one failure does not reopen it.
    let (result, _) = call(&executor, &calls, ms(1), FAIL).await;
    assert!(result.is_err());
    assert_eq!(breaker(&registry).state(), State::Closed);
}

// The breaker contract (`Breaker::release_probe`): only a call admitted
// half-open may hand a probe slot back; "a stray release while a later
// probe is out lets one more probe through". A call admitted while the
// circuit was closed, which ends without a verdict (an abort) after the
// circuit has opened and a new probe is out, must not free that probe's
// slot: the next call is still refused.
#[tokio::test(start_paused = true)]
async fn an_aborting_call_admitted_while_closed_does_not_free_a_later_probe_slot() {
    let registry = Arc::new(circuit::Registry::new());
    let observer = RecordingObserver::new();
    let executor =
        circuit_executor(Policy::builder(KEY).max_attempts(1).circuit(1, ms(100)).build(), &registry, &observer);
    let calls = Counter::new();

    // A: admitted closed, aborts at 200 ms.
    let a = call(&executor, &calls, ms(200), Err(OpError::Aborted("a")));
    // B: admitted closed, fails at once and opens the circuit.
    // C: at 150 ms, the half-open probe, fails at 300 ms.
    let b_then_c = async {
        let (b, _) = call(&executor, &calls, ms(0), FAIL).await;
        assert!(b.is_err());
        assert_eq!(breaker(&registry).state(), State::Open);
        tokio::time::sleep(ms(150)).await;
        call(&executor, &calls, ms(150), FAIL).await
    };
    // D: at 250 ms, after A aborted and while C's probe is out.
    let d = async {
        tokio::time::sleep(ms(250)).await;
        let before = calls.get();
        let (d, _) = call(&executor, &calls, ms(0), OK).await;
        (d, calls.get() - before)
    };
    let ((a, _), (c, c_timeline), (d, d_ran)) = tokio::join!(a, b_then_c, d);
    assert!(matches!(a, Err(OpError::Aborted("a"))), "{a:?}");
    assert_eq!(c_timeline.attributes.get("circuit_state"), Some("half-open"), "C was the probe");
    assert!(c.is_err());
    assert!(
        is_circuit_open(&d, State::HalfOpen, reason::HALF_OPEN_PROBE_LIMIT),
        "D must be refused while C's probe is out, but it ran ({d_ran} op call(s)): {d:?}"
    );
    assert_eq!(d_ran, 0);
}

// `FinalError::message` is documented as "the error returned to the
// caller, as text": a call refused by its circuit returns `E::from(
// Error::CircuitOpen ..)`, and its timeline records that error's text, as
// on every other path (budget denial, overall timeout, resolution errors).
#[tokio::test(start_paused = true)]
async fn a_refused_calls_final_error_message_is_the_callers_error() {
    let registry = Arc::new(circuit::Registry::new());
    let observer = RecordingObserver::new();
    let executor =
        circuit_executor(Policy::builder(KEY).max_attempts(1).circuit(1, ms(100)).build(), &registry, &observer);
    let calls = Counter::new();
    let (result, _) = call(&executor, &calls, ms(0), FAIL).await;
    assert!(result.is_err());
    let (result, timeline) = call(&executor, &calls, ms(0), OK).await;
    let error = result.unwrap_err();
    assert!(is_circuit_open(&Err(error.clone()), State::Open, reason::CIRCUIT_OPEN));
    assert_eq!(timeline.final_error.unwrap().message, error.to_string());
}

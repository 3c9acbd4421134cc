//! Stress: thousands of concurrent hedged calls with seeded random
//! latencies, failures and budget denials, checked call by call.
//!
//! Two runs share one checker: 2 000 calls as tasks on a paused
//! current-thread runtime (latencies are `tokio::time::sleep`s, so the run
//! is exact and reproducible), and 2 000 calls on a two-worker
//! multi-thread runtime in real time (latencies are a few `yield_now`s and,
//! now and then, a sleep of a few milliseconds), bounded by a timeout.
//!
//! Every call gets a key of its own (`stress.c<i>`, its policy chosen by
//! `i`), so an observer shared by all calls can attribute every event to
//! its call. Per call: it finishes; its events start with `on_start` and end
//! with exactly one `on_success` / `on_failure` (nothing after it); the
//! observer's attempt records are the captured timeline's; retry indices
//! start at 0 and grow by at most one; a group holds at most
//! `1 + max_hedges` records with distinct hedge indices; a success is the
//! single success record and the last one; `final_error` is `None` iff the
//! call succeeded; every launched attempt (budget-allowed record or
//! cancelled loser) was one invocation of the operation, and every spawned
//! hedge either reported or was cancelled. Overall: every allowed budget
//! decision was released exactly once.
#![allow(missing_docs)]

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use recourse::budget::BudgetDecisionEvent;
use recourse::hedge::{LatencyTrigger, Percentile};
use recourse::observe::Observer;
use recourse::policy::{Policy, PolicyKey};
use recourse::provider::{PolicyProvider, ProviderError};
use recourse::{AttemptRecord, Executor, OutcomeKind, Timeline};
use support::{Counter, CountingBudget, Immediate, OpError, SEED, XorShift, ms, yield_times};

const CALLS: usize = 2000;

/// What the shared observer heard, per call.
#[derive(Debug, Clone)]
enum Event {
    Start,
    Budget { allowed: bool },
    Spawn { attempt: u32, index: u32 },
    Cancel { attempt: u32, index: u32 },
    Attempt(AttemptRecord),
    End { success: bool, timeline: Box<Timeline> },
}

/// Events by call key.
#[derive(Debug, Clone, Default)]
struct PerCall(Arc<Mutex<HashMap<String, Vec<Event>>>>);

impl PerCall {
    fn push(&self, key: &PolicyKey, event: Event) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).entry(key.to_string()).or_default().push(event);
    }

    fn take(&self, key: &str) -> Vec<Event> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(key).unwrap_or_default()
    }

    fn budget_decisions(&self) -> (usize, usize) {
        let calls = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = (0, 0);
        for event in calls.values().flatten() {
            if let Event::Budget { allowed } = event {
                total.0 += 1;
                total.1 += usize::from(*allowed);
            }
        }
        total
    }
}

impl Observer for PerCall {
    fn on_start(&self, key: &PolicyKey, _policy: Option<&Policy>) {
        self.push(key, Event::Start);
    }

    fn on_attempt(&self, key: &PolicyKey, record: &AttemptRecord) {
        self.push(key, Event::Attempt(record.clone()));
    }

    fn on_hedge_spawn(&self, key: &PolicyKey, record: &AttemptRecord) {
        self.push(key, Event::Spawn { attempt: record.attempt, index: record.hedge_index });
    }

    fn on_hedge_cancel(&self, key: &PolicyKey, record: &AttemptRecord, _reason: &str) {
        self.push(key, Event::Cancel { attempt: record.attempt, index: record.hedge_index });
    }

    fn on_budget_decision(&self, event: &BudgetDecisionEvent) {
        self.push(&event.key, Event::Budget { allowed: event.allowed });
    }

    fn on_success(&self, key: &PolicyKey, timeline: &Timeline) {
        self.push(key, Event::End { success: true, timeline: Box::new(timeline.clone()) });
    }

    fn on_failure(&self, key: &PolicyKey, timeline: &Timeline) {
        self.push(key, Event::End { success: false, timeline: Box::new(timeline.clone()) });
    }
}

fn call_key(i: usize) -> String {
    format!("stress.c{i}")
}

/// The policy mix. Every call `i` uses `variants()[i % len]`.
fn variants() -> Vec<Policy> {
    vec![
        Policy::builder("stress.v0")
            .max_attempts(3)
            .initial_backoff(ms(1))
            .budget("retries")
            .max_hedges(2)
            .hedge_delay(ms(10))
            .hedge_budget("hedges")
            .build(),
        Policy::builder("stress.v1")
            .max_attempts(2)
            .initial_backoff(ms(2))
            .budget("retries")
            .max_hedges(3)
            .hedge_delay(ms(10))
            .hedge_budget("hedges")
            .hedge_cancel_on_first_terminal(true)
            .build(),
        Policy::builder("stress.v2").max_attempts(1).max_hedges(1).hedge_delay(ms(15)).hedge_budget("hedges").build(),
        // No hedging at all.
        Policy::builder("stress.v3").max_attempts(3).initial_backoff(ms(1)).budget("retries").build(),
        Policy::builder("stress.v4")
            .max_attempts(2)
            .budget("retries")
            .max_hedges(2)
            .hedge_delay(ms(10))
            .hedge_budget("hedges")
            .timeout_per_attempt(ms(30))
            .build(),
        // Every hedge at once.
        Policy::builder("stress.v5")
            .max_attempts(4)
            .initial_backoff(ms(1))
            .max_hedges(3)
            .hedge_trigger("now")
            .hedge_budget("hedges")
            .hedge_cancel_on_first_terminal(true)
            .build(),
        // A latency trigger fed by the call's own earlier attempts.
        Policy::builder("stress.v6")
            .max_attempts(3)
            .initial_backoff(ms(1))
            .budget("retries")
            .max_hedges(2)
            .hedge_trigger("eager_p50")
            .build(),
    ]
}

/// The mix plus overall deadlines short enough to cut retry groups with
/// hedges in flight.
fn deadline_variants() -> Vec<Policy> {
    let mut variants = variants();
    variants.push(
        Policy::builder("stress.v7")
            .max_attempts(3)
            .initial_backoff(ms(1))
            .max_hedges(2)
            .hedge_delay(ms(10))
            .hedge_budget("hedges")
            .overall_timeout(ms(30))
            .build(),
    );
    variants.push(
        Policy::builder("stress.v8")
            .max_attempts(4)
            .initial_backoff(ms(1))
            .budget("retries")
            .max_hedges(3)
            .hedge_trigger("now")
            .hedge_budget("hedges")
            .overall_timeout(ms(60))
            .build(),
    );
    variants
}

/// Serves `variants()[i % len]` for key `stress.c<i>`.
#[derive(Debug)]
struct Variants(Vec<Arc<Policy>>);

impl Variants {
    fn of(&self, i: usize) -> &Arc<Policy> {
        &self.0[i % self.0.len()]
    }
}

impl PolicyProvider for Variants {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        let i = key.name().strip_prefix('c').and_then(|n| n.parse().ok()).expect("a stress.c<i> key");
        Ok(Some(Arc::clone(self.of(i))))
    }
}

/// How operations spend their time.
#[derive(Debug, Clone, Copy)]
enum Latency {
    /// `tokio::time::sleep` of 0–39 ms (paused time).
    Paused,
    /// A few `yield_now`s; one in twenty sleeps 0–11 ms (real time).
    Real,
}

struct Harness {
    executor: Executor,
    variants: Arc<Variants>,
    observer: PerCall,
    retries: CountingBudget,
    hedges: CountingBudget,
    ops: Counter,
}

fn harness(variants: Vec<Policy>) -> Harness {
    let variants = Arc::new(Variants(variants.into_iter().map(Arc::new).collect()));
    let observer = PerCall::default();
    // Budgets deny about one attempt in ten (retries) and one hedge in five,
    // from a seeded stream.
    let rng = Arc::new(Mutex::new(XorShift::new(SEED)));
    let retries = {
        let rng = Arc::clone(&rng);
        CountingBudget::denying(move |_| rng.lock().unwrap_or_else(PoisonError::into_inner).chance(10))
    };
    let hedges = CountingBudget::denying(move |_| rng.lock().unwrap_or_else(PoisonError::into_inner).chance(20));
    let executor = Executor::builder()
        .provider(Arc::clone(&variants))
        .budget("retries", retries.clone())
        .budget("hedges", hedges.clone())
        .trigger("now", Immediate)
        .trigger("eager_p50", LatencyTrigger::new(Percentile::P50).with_min_samples(1))
        .observer(observer.clone())
        .jitter_seed(SEED)
        // Every call has a key of its own, on purpose.
        .max_keys(CALLS)
        .build();
    Harness { executor, variants, observer, retries, hedges, ops: Counter::new() }
}

/// One finished call.
struct Finished {
    i: usize,
    result: Result<usize, OpError>,
    timeline: Timeline,
    invocations: usize,
}

/// Runs `CALLS` calls as concurrent tasks and returns them as they finish.
async fn run_batch(h: &Harness, latency: Latency) -> Vec<Finished> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let executor = h.executor.clone();
        let ops = h.ops.clone();
        set.spawn(async move {
            let mut rng = XorShift::new(SEED ^ (i as u64).wrapping_mul(0x0100_0000_01B3));
            let invocations = Counter::new();
            let counted = invocations.clone();
            let (result, timeline) = recourse::capture(executor.call(call_key(i), move || {
                ops.hit();
                counted.hit();
                let wait = match latency {
                    Latency::Paused => Some(ms(rng.below(40))),
                    Latency::Real => rng.chance(5).then(|| ms(rng.below(12))),
                };
                let yields = usize::try_from(rng.below(4)).unwrap_or(0);
                let roll = rng.below(100);
                async move {
                    match wait {
                        Some(wait) => tokio::time::sleep(wait).await,
                        None => yield_times(yields).await,
                    }
                    match roll {
                        0..60 => Ok(i),
                        60..85 => Err(OpError::Retryable("stress")),
                        85..95 => Err(OpError::Fatal("stress")),
                        _ => Err(OpError::Aborted("stress")),
                    }
                }
            }))
            .await;
            Finished { i, result, timeline, invocations: invocations.get() }
        });
    }
    let mut finished = Vec::with_capacity(CALLS);
    while let Some(joined) = set.join_next().await {
        finished.push(joined.expect("no call panics"));
    }
    finished
}

/// The classification of the error a call returned.
fn kind_of(error: &OpError) -> OutcomeKind {
    match (error.op(), error.recourse()) {
        (Some((kind, _)), _) => kind,
        (None, Some(recourse)) => recourse.outcome().kind,
        (None, None) => unreachable!("an OpError is an op error or recourse's"),
    }
}

/// Checks one call; returns how many attempts it launched.
#[allow(clippy::too_many_lines, reason = "one checklist, read top to bottom")]
fn check_call(f: &Finished, policy: &Policy, events: &[Event]) -> usize {
    let i = f.i;
    let timeline = &f.timeline;
    let ok = f.result.is_ok();
    if let Ok(value) = &f.result {
        assert_eq!(*value, i, "call {i}: its own value");
    }
    assert!(!timeline.is_empty(), "call {i}: captured");
    assert_eq!(timeline.key.to_string(), call_key(i));
    assert_eq!(timeline.final_error.is_none(), ok, "call {i}: final_error None iff success");
    assert_eq!(timeline.succeeded(), ok);

    // Events: start first, one end last, nothing after it.
    assert!(matches!(events.first(), Some(Event::Start)), "call {i}: {events:?}");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Start)).count(), 1, "call {i}");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::End { .. })).count(), 1, "call {i}");
    let Some(Event::End { success, timeline: ended }) = events.last() else {
        panic!("call {i}: the end is the last event: {events:?}");
    };
    assert_eq!(*success, ok, "call {i}");
    assert_eq!(**ended, *timeline, "call {i}: observer and capture saw the same timeline");
    let heard: Vec<&AttemptRecord> =
        events.iter().filter_map(|e| if let Event::Attempt(r) = e { Some(r) } else { None }).collect();
    // Cancelled hedge-group losers are on the record (DESIGN §6.10) and
    // heard through `on_hedge_cancel`; every other record through
    // `on_attempt`, in the same order.
    let (cancelled, finished): (Vec<&AttemptRecord>, Vec<&AttemptRecord>) =
        timeline.attempts.iter().partition(|r| r.outcome.reason == "hedge_cancelled");
    assert_eq!(heard.len(), finished.len(), "call {i}");
    assert!(heard.iter().zip(&finished).all(|(a, b)| a == b), "call {i}: same records, same order");
    let cancels = events.iter().filter(|e| matches!(e, Event::Cancel { .. })).count();
    assert_eq!(cancels, cancelled.len(), "call {i}: every cancelled attempt is on the record");

    // Records.
    let records = &timeline.attempts;
    let max_hedges = if policy.hedge.enabled { policy.hedge.max_hedges } else { 0 };
    let max_attempts = policy.retry.max_attempts.max(1);
    assert!(!records.is_empty(), "call {i}: every call that started records something");
    assert_eq!(records[0].attempt, 0, "call {i}");
    assert!(
        records.windows(2).all(|w| w[1].attempt == w[0].attempt || w[1].attempt == w[0].attempt + 1),
        "call {i}: {records:#?}"
    );
    let mut seen = BTreeSet::new();
    let mut per_group = HashMap::<u32, u32>::new();
    for r in records {
        assert!(r.attempt < max_attempts, "call {i}: {r:?}");
        assert!(r.hedge_index <= max_hedges, "call {i}: {r:?}");
        assert_eq!(r.is_hedge, r.hedge_index > 0, "call {i}: {r:?}");
        assert!(seen.insert((r.attempt, r.hedge_index)), "call {i}: one record per (group, hedge index): {records:#?}");
        *per_group.entry(r.attempt).or_default() += 1;
        assert!(r.end >= r.start);
        if !r.budget_allowed {
            assert_eq!(r.outcome.kind, OutcomeKind::Abort, "call {i}: a denied attempt is an abort");
            assert_eq!(r.error, None);
        }
    }
    assert!(per_group.values().all(|&n| n <= 1 + max_hedges), "call {i}: {per_group:?}");
    let successes = records.iter().filter(|r| r.outcome.kind == OutcomeKind::Success).count();
    if ok {
        assert_eq!(successes, 1, "call {i}: exactly one success record");
        // The losers it cancelled are recorded after it.
        assert_eq!(finished.last().unwrap().outcome.kind, OutcomeKind::Success, "call {i}: the success is last");
    } else {
        assert_eq!(successes, 0, "call {i}");
    }
    if let Err(error) = &f.result {
        let final_error = timeline.final_error.as_ref().unwrap();
        // The text of the error the caller got; when recourse ended the call
        // some paths record the `recourse::Error`'s own text instead (see
        // circuit.rs, `a_refused_calls_final_error_message_is_the_callers_error`).
        let own = error.recourse().map(ToString::to_string);
        assert!(
            final_error.message == error.to_string() || Some(&final_error.message) == own.as_ref(),
            "call {i}: {final_error:?} vs {error:?}"
        );
        let last = finished.last().unwrap();
        // A primary denied by its budget after an attempt ran returns that
        // attempt's error (DESIGN §6.2) but ends as a budget abort.
        if last.budget_allowed || last.is_hedge {
            assert_eq!(final_error.kind, kind_of(error), "call {i}: {error:?} {final_error:?}");
        } else {
            assert_eq!(final_error.kind, OutcomeKind::Abort, "call {i}");
        }
    }

    // Hedges: each spawned once, after its budget; each spawned hedge
    // reported or was cancelled; cancelled attempts are distinct.
    let position = |wanted: &dyn Fn(&Event) -> bool| events.iter().position(wanted);
    let mut spawns = BTreeSet::new();
    let mut cancels = BTreeSet::new();
    for event in events {
        match *event {
            Event::Spawn { attempt, index } => {
                assert!(index >= 1 && index <= max_hedges, "call {i}: {event:?}");
                assert!(spawns.insert((attempt, index)), "call {i}: spawned twice: {event:?}");
            }
            Event::Cancel { attempt, index } => {
                assert!(cancels.insert((attempt, index)), "call {i}: cancelled twice: {event:?}");
            }
            _ => {}
        }
    }
    let allowed: BTreeSet<(u32, u32)> =
        finished.iter().filter(|r| r.budget_allowed).map(|r| (r.attempt, r.hedge_index)).collect();
    assert!(allowed.is_disjoint(&cancels), "call {i}: a cancelled attempt reports nothing else");
    let recorded_cancels: BTreeSet<(u32, u32)> = cancelled.iter().map(|r| (r.attempt, r.hedge_index)).collect();
    assert_eq!(recorded_cancels, cancels, "call {i}: the cancelled attempts are the ones on the record as such");
    for &(attempt, index) in &spawns {
        assert!(
            allowed.contains(&(attempt, index)) || cancels.contains(&(attempt, index)),
            "call {i}: hedge {attempt}/h{index} neither reported nor cancelled"
        );
        let spawned = position(&|e| matches!(e, Event::Spawn { attempt: a, index: x } if *a == attempt && *x == index));
        let settled = position(&|e| match e {
            Event::Attempt(r) => r.attempt == attempt && r.hedge_index == index,
            Event::Cancel { attempt: a, index: x } => *a == attempt && *x == index,
            _ => false,
        });
        assert!(spawned < settled, "call {i}: spawned before it settled");
    }
    for r in finished.iter().filter(|r| r.budget_allowed && r.is_hedge) {
        assert!(spawns.contains(&(r.attempt, r.hedge_index)), "call {i}: a launched hedge was announced: {r:?}");
    }
    let launched = allowed.len() + cancels.len();
    assert_eq!(f.invocations, launched, "call {i}: one invocation per launched attempt");
    launched
}

fn check_all(h: &Harness, finished: &[Finished]) {
    assert_eq!(finished.len(), CALLS, "every call finished");
    let mut launched = 0;
    let mut invocations = 0;
    let (mut hedged, mut succeeded) = (0, 0);
    for f in finished {
        let events = h.observer.take(&call_key(f.i));
        launched += check_call(f, h.variants.of(f.i), &events);
        invocations += f.invocations;
        hedged += usize::from(f.timeline.attempts.iter().any(|r| r.is_hedge && r.budget_allowed));
        succeeded += usize::from(f.result.is_ok());
    }
    assert_eq!(h.ops.get(), invocations);
    assert_eq!(h.ops.get(), launched, "total op invocations == launched attempts");
    // Every allowed decision released exactly once, losers included.
    assert_eq!(h.retries.released.get(), h.retries.allowed.get());
    assert_eq!(h.hedges.released.get(), h.hedges.allowed.get());
    // (Events were taken per call above; what is left is nothing.)
    assert_eq!(h.observer.budget_decisions(), (0, 0), "no event for an unknown call");
    // The mix really exercised the interesting paths.
    assert!(h.retries.allowed.get() < h.retries.consulted.get(), "some retries denied");
    assert!(h.hedges.allowed.get() < h.hedges.consulted.get(), "some hedges denied");
    assert!(hedged > CALLS / 10, "{hedged} calls with a launched hedge");
    assert!(succeeded > CALLS / 2 && succeeded < CALLS, "{succeeded} successes");
}

fn budget_totals(h: &Harness) -> (usize, usize) {
    (h.retries.consulted.get() + h.hedges.consulted.get(), h.retries.allowed.get() + h.hedges.allowed.get())
}

async fn paused_run(variants: Vec<Policy>) {
    let h = harness(variants);
    let finished = tokio::time::timeout(Duration::from_secs(3600), run_batch(&h, Latency::Paused))
        .await
        .expect("every call finishes (a hung call would let paused time run to the timeout)");
    let decisions = h.observer.budget_decisions();
    assert_eq!(decisions, budget_totals(&h), "one budget event per consultation, allowed as counted");
    check_all(&h, &finished);
}

// 2 000 concurrent calls as tasks on paused time: exact and reproducible.
#[tokio::test(start_paused = true)]
async fn thousands_of_concurrent_hedged_calls_on_paused_time_stay_consistent() {
    paused_run(variants()).await;
}

// The same with overall deadlines that cut groups with hedges in flight.
// Fails only on "the end is the last event": see hedging.rs,
// `hedge_cancels_are_reported_before_the_call_ends_on_its_deadline`.
#[tokio::test(start_paused = true)]
async fn thousands_of_hedged_calls_cut_by_overall_deadlines_stay_consistent() {
    paused_run(deadline_variants()).await;
}

// 2 000 concurrent calls on two worker threads, real time.
#[test]
fn thousands_of_concurrent_hedged_calls_on_two_threads_stay_consistent() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("a multi-thread runtime");
    let h = harness(variants());
    let finished = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(120), run_batch(&h, Latency::Real)).await })
        .expect("every call finishes");
    assert_eq!(h.observer.budget_decisions(), budget_totals(&h));
    check_all(&h, &finished);
}

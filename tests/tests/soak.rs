//! Chaos soak (issue 15, item 1): a long run of calls against an in-process
//! dependency with injected latency, errors of every classification and
//! panics in every plug-in, callers cancelled at random, on a two-worker
//! multi-thread runtime in real time. Checked at the end, figures printed.
//!
//! Run it as CI does (release, 1 000 000 calls, figures on stdout):
//!
//! ```text
//! cargo test --release -p recourse-tests --test soak -- --nocapture
//! ```
//!
//! In a debug build (`cargo test --workspace`) it makes 20 000 calls;
//! `RECOURSE_SOAK_CALLS=<n>` overrides either count.
//!
//! # The run
//!
//! 64 keys, 8 policy variants (retries with budgets, per-attempt and overall
//! deadlines, hedging on a fixed delay, all at once or on observed latency,
//! consecutive-failure and failure-rate breakers). 256 caller tasks take call
//! numbers from a shared counter; call `i` draws everything it does from a
//! generator seeded with `i`: its key, whether it is captured (1 in 8) and
//! observed (7 in 10), whether and how its caller cancels it (4 % under a
//! `tokio::time::timeout` of 1–30 ms, 3 % dropped after 1–8 polls, 1 %
//! dropped unpolled), and the dependency's behaviour on each attempt:
//!
//! * latency: 60 % immediate, 25 % a few `yield_now`s, 10 % 1–5 ms, 4 %
//!   10–40 ms, 1 % 100–300 ms (tokio sleeps);
//! * result: 70 % success, 12 % retryable, 4 % retryable with a Retry-After
//!   backoff override (2–20 ms, one in ten 50–150 ms), 6 % non-retryable,
//!   3 % abort, 5 % success; while its key is out (1.2 s in every 4.8 s,
//!   staggered by key) 90 % of attempts fail, which opens the breakers.
//!
//! Every plug-in is a chaos wrapper that panics now and then, decided by
//! the current call's seeded stream (a thread-local set around every poll
//! and the drop of the call): the policy provider (a call asks for it by
//! bumping the provider's generation; `missing_policy(Allow)` then runs
//! the call on one attempt), a named classifier, the retry and hedge
//! budgets (before granting), the hedge triggers, the observer (every
//! callback and `enabled`, after counting the event), and the breakers
//! (`allow`; a verdict before it reaches the real breaker, losing it, or
//! after; `release_probe` after handing the slot back: a breaker that
//! loses its own slot cannot be helped). Panic recovery is on. The run is
//! cut in two equal halves; a recovery phase with no faults follows.
//!
//! # Checked
//!
//! * No call outlived its overall deadline by more than a scheduling tick.
//!   Under this load a timer fires milliseconds late and a woken task
//!   waits tens of milliseconds for a worker, so wall-clock overruns (the
//!   histogram printed) measure the runtime, not the engine. The check
//!   separates the two: after a call's first poll a *witness* timer is set
//!   2 ms past its deadline (past the engine's own deadline timer, whatever
//!   their rounding to 1 ms ticks), with a waker that wakes nobody and
//!   notes when it fired. Tokio's timer wheel fires timers in tick order,
//!   so once the witness has fired, the engine's deadline timer has fired
//!   too: no poll of the call that starts after that may leave it running,
//!   and its task must have been woken by then (within [`WAKE_SLACK`],
//!   50 ms: the runtime wakes fired timers in batches, releasing its lock
//!   in between, and the thread doing so can be preempted there; a task
//!   polled through a waker that notes its first wake since the last poll
//!   tells when). A call that ends before its witness fires outlived its
//!   deadline by less than 2 ms of the runtime's time. A deadline that is
//!   not enforced shows at once: the call is polled after it and goes on,
//!   or ends on whatever wakes it next (a slow attempt, a Retry-After
//!   backoff: 50–300 ms later).
//! * Attempts per call (invocations of the dependency) ≤ `max_attempts ×
//!   (1 + max_hedges)`.
//! * Every budget grant released exactly once: each grant carries a token
//!   whose release is an `FnOnce` that consumes it (it cannot run twice)
//!   and whose drop without release is counted; after each half, grants =
//!   releases, no token was dropped unreleased and none is alive.
//! * No plug-in panic reached a caller: every poll and the drop of every
//!   call run inside `catch_unwind`, callers are tasks whose `JoinError`s
//!   are counted; results are `Ok`, the dependency's own error or a
//!   `recourse::Error`. Injected panics are counted per plug-in and by the
//!   panic hook; the observer's equal `Executor::observer_panics`, the
//!   breaker's `allow` panics equal the calls that returned `Error::Panic`
//!   (breaker).
//! * Every breaker can close again: after the chaos, with no faults, calls
//!   to each breaker key close its breaker.
//! * No growth between the two halves: no task alive after either half
//!   (and never more than the callers and the monitor during one), no
//!   dependency future, call future or grant alive, and the heap bytes in
//!   use after half 2 at most [`HEAP_SLACK`] above those after half 1
//!   (`stats_alloc`'s counting allocator).
//! * Observers: one `on_start` and one end per observed completed call,
//!   matching its result; no end for a cancelled call; no event once a
//!   call's future is being dropped, nor outside any call.
//! * Captured timelines: one launched record per invocation, the final
//!   error iff the call failed, `policy_fallback = allow` iff the provider
//!   panicked for the call, records within the policy's attempts and
//!   hedges.
#![allow(missing_docs)]

mod support;

use std::alloc::System;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use recourse::budget::{AttemptKind, Budget, TokenBucket};
use recourse::circuit::{Breaker, State, Transition};
use recourse::classify::{ErrorView, Outcome};
use recourse::hedge::{HedgeState, HedgeTrigger, TriggerDecision};
use recourse::observe::Observer;
use recourse::policy::{BudgetRef, Policy, PolicyKey};
use recourse::provider::{PolicyProvider, ProviderError};
use recourse::{AttemptRecord, Classify, Component, Executor, FailureMode, Timeline};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use support::{SEED, XorShift, ms, yield_times};
use tokio::time::Instant;

#[global_allocator]
static HEAP: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: usize = 64;
const CALLERS: usize = 256;
const WORKERS: usize = 2;
/// Outages: every key is out for `OUTAGE` once per `OUTAGE_PERIOD` of the
/// run, keys `8g..8g+8` starting `(g % 4) × OUTAGE` in (longer than a
/// failure-rate breaker's 1 s window, so those open too).
const OUTAGE: Duration = Duration::from_millis(1200);
const OUTAGE_PERIOD: u32 = 4;

fn in_outage(k: usize, since_start: Duration) -> bool {
    let slot = since_start.as_millis() / OUTAGE.as_millis();
    (slot + (k / 8) as u128).is_multiple_of(u128::from(OUTAGE_PERIOD))
}

/// A call's witness timer is due this long after its overall deadline:
/// past the tick the engine's own deadline timer rounds up to.
const WITNESS_AFTER: Duration = Duration::from_millis(2);
/// How long after the runtime fired a call's witness the call's task may
/// first be woken: the runtime's timer pass fires the engine's deadline
/// timer before the witness (in tick order) but wakes what it fired in
/// batches of 32 with its lock released in between, and the thread doing
/// it can be preempted by the OS there (seen: 25 ms on a loaded 2-core
/// machine). An engine that sets no timer for the deadline is woken by
/// whatever comes next (a slow attempt, a Retry-After backoff: 50–300 ms).
const WAKE_SLACK: Duration = Duration::from_millis(50);
/// How much more heap half 2 may leave in use than half 1 (bytes).
const HEAP_SLACK: i64 = 64 * 1024;

/// Injected panic rates, per invocation, in parts per million.
const PPM_CLASSIFIER: u64 = 5_000;
const PPM_BUDGET: u64 = 3_000;
const PPM_BREAKER_ALLOW: u64 = 3_000;
const PPM_BREAKER_VERDICT: u64 = 5_000;
const PPM_BREAKER_RELEASE: u64 = 250_000;
const PPM_TRIGGER: u64 = 5_000;
const PPM_OBSERVER: u64 = 1_000;
/// One call in this many asks the provider to panic for it.
const PROVIDER_ONE_IN: u64 = 500;

fn soak_calls() -> u64 {
    match std::env::var("RECOURSE_SOAK_CALLS") {
        Ok(text) => text.trim().parse().expect("RECOURSE_SOAK_CALLS is a number of calls"),
        Err(_) if cfg!(debug_assertions) => 20_000,
        Err(_) => 1_000_000,
    }
}

// ---------------------------------------------------------------------------
// Counters. One soak test per binary, so they are process-wide.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plugin {
    Provider,
    Classifier,
    Budget,
    Breaker,
    Trigger,
    Observer,
}

const PLUGINS: [Plugin; 6] =
    [Plugin::Provider, Plugin::Classifier, Plugin::Budget, Plugin::Breaker, Plugin::Trigger, Plugin::Observer];

const INJECTED: &str = "soak: injected panic";

impl Plugin {
    fn name(self) -> &'static str {
        match self {
            Self::Provider => "provider",
            Self::Classifier => "classifier",
            Self::Budget => "budget",
            Self::Breaker => "breaker",
            Self::Trigger => "trigger",
            Self::Observer => "observer",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Provider => "soak: injected panic in the provider",
            Self::Classifier => "soak: injected panic in the classifier",
            Self::Budget => "soak: injected panic in the budget",
            Self::Breaker => "soak: injected panic in the breaker",
            Self::Trigger => "soak: injected panic in the trigger",
            Self::Observer => "soak: injected panic in the observer",
        }
    }

    fn of(component: Component) -> Option<Self> {
        Some(match component {
            Component::PolicyProvider => Self::Provider,
            Component::Classifier => Self::Classifier,
            Component::Budget => Self::Budget,
            Component::CircuitBreaker => Self::Breaker,
            Component::HedgeTrigger => Self::Trigger,
            Component::Observer => Self::Observer,
            _ => return None,
        })
    }
}

/// Dependency faults, per attempt.
#[derive(Debug, Clone, Copy)]
enum Fault {
    Retryable,
    RetryAfter,
    Fatal,
    Abort,
    Slow,
    VerySlow,
    Outage,
}

const FAULTS: [Fault; 7] =
    [Fault::Retryable, Fault::RetryAfter, Fault::Fatal, Fault::Abort, Fault::Slow, Fault::VerySlow, Fault::Outage];

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::RetryAfter => "retry-after",
            Self::Fatal => "non-retryable",
            Self::Abort => "abort",
            Self::Slow => "slow (10-40 ms)",
            Self::VerySlow => "very slow (100-300 ms)",
            Self::Outage => "attempts in an outage",
        }
    }
}

/// Breaker panics by method.
#[derive(Debug, Clone, Copy)]
enum BreakerPanic {
    Allow,
    /// Before the verdict reached the real breaker (the verdict is lost).
    VerdictBefore,
    /// After the real breaker took it (only the report is lost).
    VerdictAfter,
    Release,
}

struct Stats {
    /// Panics off (the recovery phase) when false.
    chaos: AtomicBool,
    injected: [AtomicU64; 6],
    breaker_panics: [AtomicU64; 4],
    /// Injected panics the panic hook saw.
    hook_injected: AtomicU64,
    /// Panics the hook saw that were not injected.
    hook_other: AtomicU64,
    attempts: AtomicU64,
    faults: [AtomicU64; 7],
    dep_live: AtomicU64,
    call_live: AtomicU64,
    /// The classifier got an error that was not the dependency's.
    classifier_foreign: AtomicU64,
    // Observer events.
    starts: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    attempt_events: AtomicU64,
    hedge_spawns: AtomicU64,
    hedge_cancels: AtomicU64,
    budget_events: AtomicU64,
    circuit_events: AtomicU64,
    /// Events heard while a call's future was being dropped.
    late_events: AtomicU64,
    /// Events heard with no call current on the thread.
    stray_events: AtomicU64,
    /// The first panic that reached a caller, or another surprise.
    first_escape: Mutex<Option<String>>,
}

#[allow(clippy::declare_interior_mutable_const, reason = "array initializer of statics")]
const ZERO: AtomicU64 = AtomicU64::new(0);

static STATS: Stats = Stats {
    chaos: AtomicBool::new(true),
    injected: [ZERO; 6],
    breaker_panics: [ZERO; 4],
    hook_injected: ZERO,
    hook_other: ZERO,
    attempts: ZERO,
    faults: [ZERO; 7],
    dep_live: ZERO,
    call_live: ZERO,
    classifier_foreign: ZERO,
    starts: ZERO,
    successes: ZERO,
    failures: ZERO,
    attempt_events: ZERO,
    hedge_spawns: ZERO,
    hedge_cancels: ZERO,
    budget_events: ZERO,
    circuit_events: ZERO,
    late_events: ZERO,
    stray_events: ZERO,
    first_escape: Mutex::new(None),
};

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Relaxed)
}

fn hit(counter: &AtomicU64) {
    counter.fetch_add(1, Relaxed);
}

fn note_escape(text: String) {
    STATS.first_escape.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(text);
}

/// Counts a live object of ours (a dependency future, a call future).
struct Live(&'static AtomicU64);

impl Live {
    fn new(counter: &'static AtomicU64) -> Self {
        hit(counter);
        Self(counter)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

// ---------------------------------------------------------------------------
// The current call, seen by the plug-ins through a thread-local.

/// One caller's call in progress (reused from call to call by its caller).
#[derive(Debug, Default)]
struct CallCtx {
    /// The call's seeded stream for plug-in decisions.
    rng: AtomicU64,
    /// What the observer's `enabled` answers for this call.
    observe: AtomicBool,
    /// The call asked the provider to panic for it (taken by the provider).
    provider_panic: AtomicBool,
    /// The provider panicked for this call.
    provider_panicked: AtomicBool,
    invocations: AtomicU32,
    starts: AtomicU32,
    ends: AtomicU32,
    succeeded: AtomicBool,
    /// The call's future is being (or was) dropped unfinished.
    dropping: AtomicBool,
    /// A panic came out of the drop of the call's future.
    drop_panic: AtomicBool,
    /// Deadline bookkeeping of the call (see [`Guarded`]).
    deadline: DeadlineCtx,
}

/// What [`Guarded`] saw of a call with an overall timeout, in nanoseconds.
#[derive(Debug, Default)]
struct DeadlineCtx {
    /// How long the completing poll's task had been runnable before it
    /// ran (since the first wake after the previous poll).
    queued: AtomicU64,
    /// How long the completing poll took.
    last_poll: AtomicU64,
    /// How late the runtime fired the witness timer (1 at least when it
    /// fired before the call ended, 0 when it did not).
    witness_late: AtomicU64,
    /// How long after the witness fired the call's task was first woken
    /// (0 when it was woken no later).
    woken_after: AtomicU64,
    /// Polls that began more than a timer pass after the witness fired and
    /// left the call running.
    polls_after: AtomicU32,
}

impl DeadlineCtx {
    fn reset(&self) {
        self.queued.store(0, Relaxed);
        self.last_poll.store(0, Relaxed);
        self.witness_late.store(0, Relaxed);
        self.woken_after.store(0, Relaxed);
        self.polls_after.store(0, Relaxed);
    }
}

impl CallCtx {
    fn reset(&self, seed: u64, observe: bool, provider_panic: bool) {
        self.rng.store(seed | 1, Relaxed);
        self.observe.store(observe, Relaxed);
        self.provider_panic.store(provider_panic, Relaxed);
        self.provider_panicked.store(false, Relaxed);
        self.invocations.store(0, Relaxed);
        self.starts.store(0, Relaxed);
        self.ends.store(0, Relaxed);
        self.succeeded.store(false, Relaxed);
        self.dropping.store(false, Relaxed);
        self.drop_panic.store(false, Relaxed);
        self.deadline.reset();
    }

    /// True with probability `ppm` / 1 000 000, from the call's stream
    /// (only the thread polling the call touches it).
    fn chance_ppm(&self, ppm: u64) -> bool {
        let mut x = self.rng.load(Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng.store(x, Relaxed);
        x % 1_000_000 < ppm
    }
}

/// Nanoseconds since the first call of this function: the one time base of
/// wakes, polls and witness timers.
fn nanos() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = ORIGIN.get_or_init(std::time::Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// A waker that notes when it was first woken since `take`, and wakes the
/// task it stands in front of (if any). One per call, so no wake of an
/// earlier call's timers can land on a later call.
#[derive(Debug, Default)]
struct WakeClock {
    task: Mutex<Option<Waker>>,
    /// [`nanos`] at the first wake since `take`; 0 for none.
    woken: AtomicU64,
}

impl WakeClock {
    /// The waker to poll with: ours, forwarding to `cx`'s.
    fn waker(self: &Arc<Self>, cx: &Context<'_>) -> Waker {
        let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if !task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            *task = Some(cx.waker().clone());
        }
        Waker::from(Arc::clone(self))
    }

    /// When the first wake since the last `take` came, and forget it.
    fn take(&self) -> Option<u64> {
        Some(self.woken.swap(0, Relaxed)).filter(|&at| at != 0)
    }

    fn woken(&self) -> Option<u64> {
        Some(self.woken.load(Relaxed)).filter(|&at| at != 0)
    }
}

impl Wake for WakeClock {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.woken.compare_exchange(0, nanos(), Relaxed, Relaxed);
        if let Some(task) = self.task.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            task.wake_by_ref();
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<CallCtx>>> = const { RefCell::new(None) };
}

/// Makes `ctx` the thread's current call until dropped.
struct Entered(Option<Arc<CallCtx>>);

fn enter(ctx: &Arc<CallCtx>) -> Entered {
    Entered(CURRENT.with(|c| c.replace(Some(Arc::clone(ctx)))))
}

impl Drop for Entered {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

fn with_current<R>(f: impl FnOnce(Option<&CallCtx>) -> R) -> R {
    CURRENT.with(|c| f(c.borrow().as_deref()))
}

/// Panics (as `plugin`) with probability `ppm` per million, decided by the
/// current call's stream; never outside a call or with chaos off.
fn maybe_panic(plugin: Plugin, ppm: u64) {
    if roll(ppm) {
        hit(&STATS.injected[plugin as usize]);
        std::panic::panic_any(plugin.message());
    }
}

fn roll(ppm: u64) -> bool {
    STATS.chaos.load(Relaxed) && with_current(|ctx| ctx.is_some_and(|c| c.chance_ppm(ppm)))
}

// ---------------------------------------------------------------------------
// The dependency and its error.

#[derive(Debug, Clone, thiserror::Error)]
enum SoakError {
    #[error("dependency: retryable")]
    Retryable,
    #[error("dependency: retry after {0:?}")]
    RetryAfter(Duration),
    #[error("dependency: non-retryable")]
    Fatal,
    #[error("dependency: abort")]
    Abort,
    #[error("recourse ended the call: {0}")]
    Recourse(#[from] recourse::Error),
}

impl SoakError {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Retryable => Outcome::retryable().with_reason("soak_retryable"),
            Self::RetryAfter(after) => Outcome::retryable().with_reason("soak_retry_after").with_backoff(*after),
            Self::Fatal => Outcome::non_retryable().with_reason("soak_fatal"),
            Self::Abort => Outcome::abort().with_reason("soak_abort"),
            Self::Recourse(e) => e.outcome(),
        }
    }
}

impl Classify for SoakError {
    fn classify(&self) -> Option<Outcome> {
        Some(self.outcome())
    }

    fn as_error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self)
    }
}

enum Wait {
    Now,
    Yield(usize),
    Sleep(Duration),
}

/// The operation of one call: each invocation is one attempt, its latency
/// and result drawn from the call's stream.
fn dependency(
    ctx: Arc<CallCtx>,
    mut rng: XorShift,
    outage: bool,
) -> impl FnMut() -> Pin<Box<dyn Future<Output = Result<u64, SoakError>> + Send>> {
    move || {
        ctx.invocations.fetch_add(1, Relaxed);
        hit(&STATS.attempts);
        let wait = match rng.below(1000) {
            0..600 => Wait::Now,
            600..850 => Wait::Yield(usize::try_from(1 + rng.below(3)).unwrap_or(1)),
            850..950 => Wait::Sleep(ms(1 + rng.below(5))),
            950..990 => {
                hit(&STATS.faults[Fault::Slow as usize]);
                Wait::Sleep(ms(10 + rng.below(31)))
            }
            _ => {
                hit(&STATS.faults[Fault::VerySlow as usize]);
                Wait::Sleep(ms(100 + rng.below(201)))
            }
        };
        let roll = rng.below(1000);
        let result = if outage {
            hit(&STATS.faults[Fault::Outage as usize]);
            match roll {
                0..100 => Ok(roll),
                100..800 => Err(SoakError::Retryable),
                800..900 => Err(SoakError::RetryAfter(ms(2 + rng.below(19)))),
                _ => Err(SoakError::Fatal),
            }
        } else {
            match roll {
                0..700 | 950.. => Ok(roll),
                700..820 => Err(SoakError::Retryable),
                820..860 => {
                    let after = if rng.below(10) == 0 { ms(50 + rng.below(101)) } else { ms(2 + rng.below(19)) };
                    Err(SoakError::RetryAfter(after))
                }
                860..920 => Err(SoakError::Fatal),
                _ => Err(SoakError::Abort),
            }
        };
        match &result {
            Ok(_) | Err(SoakError::Recourse(_)) => {}
            Err(SoakError::Retryable) => hit(&STATS.faults[Fault::Retryable as usize]),
            Err(SoakError::RetryAfter(_)) => hit(&STATS.faults[Fault::RetryAfter as usize]),
            Err(SoakError::Fatal) => hit(&STATS.faults[Fault::Fatal as usize]),
            Err(SoakError::Abort) => hit(&STATS.faults[Fault::Abort as usize]),
        }
        let live = Live::new(&STATS.dep_live);
        Box::pin(async move {
            let _live = live;
            match wait {
                Wait::Now => {}
                Wait::Yield(n) => yield_times(n).await,
                Wait::Sleep(d) => tokio::time::sleep(d).await,
            }
            result
        })
    }
}

// ---------------------------------------------------------------------------
// Chaos plug-ins.

/// Serves each key's policy; panics for a call that asked it to.
#[derive(Debug)]
struct ChaosProvider {
    policies: Vec<Arc<Policy>>,
    generation: AtomicU64,
}

impl ChaosProvider {
    /// Makes every key resolve again (so the provider is asked).
    fn bump(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

impl PolicyProvider for ChaosProvider {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        let panic = STATS.chaos.load(Relaxed)
            && with_current(|ctx| {
                ctx.is_some_and(|c| {
                    let wanted = c.provider_panic.swap(false, Relaxed);
                    if wanted {
                        c.provider_panicked.store(true, Relaxed);
                    }
                    wanted
                })
            });
        if panic {
            hit(&STATS.injected[Plugin::Provider as usize]);
            std::panic::panic_any(Plugin::Provider.message());
        }
        let index = key.name().strip_prefix('k').and_then(|n| n.parse::<usize>().ok());
        Ok(index.and_then(|i| self.policies.get(i)).cloned())
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// The dependency's own outcomes, by name; panics now and then.
#[derive(Debug)]
struct ChaosClassifier;

impl recourse::Classifier for ChaosClassifier {
    fn classify(&self, error: &dyn ErrorView) -> Outcome {
        maybe_panic(Plugin::Classifier, PPM_CLASSIFIER);
        if let Some(error) = error.downcast_ref::<SoakError>() {
            error.outcome()
        } else {
            hit(&STATS.classifier_foreign);
            Outcome::abort().with_reason("soak_foreign")
        }
    }
}

/// Grants and releases of one budget.
#[derive(Debug, Default)]
struct Grants {
    consulted: AtomicU64,
    granted: AtomicU64,
    released: AtomicU64,
    denied: AtomicU64,
    /// Grant tokens alive (granted, not yet released or dropped).
    live: AtomicU64,
    /// Tokens dropped without their release running.
    unreleased: AtomicU64,
}

/// One grant: released by running its `FnOnce` release, which consumes it.
struct Grant {
    grants: Arc<Grants>,
    released: bool,
}

impl Grant {
    fn new(grants: &Arc<Grants>) -> Self {
        grants.granted.fetch_add(1, Relaxed);
        grants.live.fetch_add(1, Relaxed);
        Self { grants: Arc::clone(grants), released: false }
    }

    fn release(mut self) {
        self.released = true;
        self.grants.released.fetch_add(1, Relaxed);
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        self.grants.live.fetch_sub(1, Relaxed);
        if !self.released {
            self.grants.unreleased.fetch_add(1, Relaxed);
        }
    }
}

/// A counting budget: optionally a real token bucket behind it, denies a
/// seeded share of attempts, panics now and then (before granting).
struct ChaosBudget {
    bucket: Option<TokenBucket>,
    deny_ppm: u64,
    grants: Arc<Grants>,
}

impl std::fmt::Debug for ChaosBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosBudget").field("grants", &self.grants).finish_non_exhaustive()
    }
}

impl Budget for ChaosBudget {
    fn allow_attempt(
        &self,
        key: &PolicyKey,
        attempt: u32,
        kind: AttemptKind,
        budget: &BudgetRef,
    ) -> recourse::budget::Decision {
        maybe_panic(Plugin::Budget, PPM_BUDGET);
        self.grants.consulted.fetch_add(1, Relaxed);
        if with_current(|ctx| ctx.is_some_and(|c| c.chance_ppm(self.deny_ppm))) {
            self.grants.denied.fetch_add(1, Relaxed);
            return recourse::budget::Decision::deny();
        }
        let inner = match &self.bucket {
            Some(bucket) => bucket.allow_attempt(key, attempt, kind, budget),
            None => recourse::budget::Decision::allow(),
        };
        if !inner.allowed() {
            self.grants.denied.fetch_add(1, Relaxed);
            return inner;
        }
        let mut inner = inner.into_release();
        let grant = Grant::new(&self.grants);
        recourse::budget::Decision::allow_with_release(move || {
            inner.run();
            grant.release();
        })
    }
}

/// A real breaker behind a panicking front; counts the transitions the
/// real breaker made.
struct ChaosBreaker {
    inner: Arc<dyn Breaker>,
    failure_rate: bool,
    opened: AtomicU64,
    closed: AtomicU64,
    half_opened: AtomicU64,
    /// Verdicts lost (panic before the real breaker took them) while it
    /// was half-open: a probe's, maybe.
    lost_half_open: AtomicU64,
    /// `release_probe` calls.
    releases: AtomicU64,
}

impl std::fmt::Debug for ChaosBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaosBreaker").field("state", &self.inner.state()).finish_non_exhaustive()
    }
}

impl ChaosBreaker {
    fn new(policy: &Policy) -> Self {
        Self {
            inner: recourse::circuit::breaker_for(&policy.circuit).expect("a breaker key enables its circuit"),
            failure_rate: policy.circuit.failure_ratio > 0.0,
            opened: AtomicU64::new(0),
            closed: AtomicU64::new(0),
            half_opened: AtomicU64::new(0),
            lost_half_open: AtomicU64::new(0),
            releases: AtomicU64::new(0),
        }
    }

    fn seen(&self, transition: Option<Transition>) -> Option<Transition> {
        if let Some(t) = transition {
            match t.to {
                State::Open => hit(&self.opened),
                State::Closed => hit(&self.closed),
                State::HalfOpen => hit(&self.half_opened),
            }
        }
        transition
    }

    fn panic(which: BreakerPanic) -> ! {
        hit(&STATS.injected[Plugin::Breaker as usize]);
        hit(&STATS.breaker_panics[which as usize]);
        std::panic::panic_any(Plugin::Breaker.message())
    }

    fn verdict(&self, record: impl FnOnce(&dyn Breaker) -> Option<Transition>) -> Option<Transition> {
        if roll(PPM_BREAKER_VERDICT) {
            // Half the verdict panics lose the verdict, half only its report.
            if roll(500_000) {
                if self.inner.state() == State::HalfOpen {
                    hit(&self.lost_half_open);
                }
                Self::panic(BreakerPanic::VerdictBefore);
            }
            self.seen(record(&*self.inner));
            Self::panic(BreakerPanic::VerdictAfter);
        }
        self.seen(record(&*self.inner))
    }
}

impl Breaker for ChaosBreaker {
    fn allow(&self) -> recourse::circuit::Decision {
        if roll(PPM_BREAKER_ALLOW) {
            Self::panic(BreakerPanic::Allow);
        }
        let decision = self.inner.allow();
        self.seen(decision.transition);
        decision
    }

    fn record_success(&self) -> Option<Transition> {
        self.verdict(Breaker::record_success)
    }

    fn record_failure(&self) -> Option<Transition> {
        self.verdict(Breaker::record_failure)
    }

    /// Panics after handing the slot back: a breaker that loses its own
    /// probe slot cannot be helped by its caller.
    fn release_probe(&self) {
        hit(&self.releases);
        self.inner.release_probe();
        if roll(PPM_BREAKER_RELEASE) {
            Self::panic(BreakerPanic::Release);
        }
    }

    fn state(&self) -> State {
        self.inner.state()
    }
}

/// Hedges every `hedge_delay` (or all at once); panics now and then.
#[derive(Debug)]
struct ChaosTrigger {
    all_at_once: bool,
}

impl HedgeTrigger for ChaosTrigger {
    fn should_spawn(&self, state: &HedgeState<'_>) -> TriggerDecision {
        maybe_panic(Plugin::Trigger, PPM_TRIGGER);
        if state.limit_reached() {
            return TriggerDecision::Stop;
        }
        if self.all_at_once {
            return TriggerDecision::Spawn;
        }
        let due = state.hedge_delay * state.attempts_launched;
        match due.checked_sub(state.elapsed) {
            Some(wait) if !wait.is_zero() => TriggerDecision::CheckIn(wait),
            _ => TriggerDecision::Spawn,
        }
    }

    fn uses_latency(&self) -> bool {
        false
    }
}

/// Counts every event and attributes it to the current call; panics now
/// and then (after counting).
#[derive(Debug)]
struct ChaosObserver;

impl ChaosObserver {
    fn heard(counter: &AtomicU64, per_call: impl FnOnce(&CallCtx)) {
        hit(counter);
        with_current(|ctx| match ctx {
            None => hit(&STATS.stray_events),
            Some(c) if c.dropping.load(Relaxed) => hit(&STATS.late_events),
            Some(c) => per_call(c),
        });
        maybe_panic(Plugin::Observer, PPM_OBSERVER);
    }
}

impl Observer for ChaosObserver {
    fn enabled(&self) -> bool {
        let yes = with_current(|ctx| ctx.is_none_or(|c| c.observe.load(Relaxed)));
        maybe_panic(Plugin::Observer, PPM_OBSERVER);
        yes
    }

    fn on_start(&self, _key: &PolicyKey, _policy: Option<&Policy>) {
        Self::heard(&STATS.starts, |c| {
            c.starts.fetch_add(1, Relaxed);
        });
    }

    fn on_attempt(&self, _key: &PolicyKey, _record: &AttemptRecord) {
        Self::heard(&STATS.attempt_events, |_| {});
    }

    fn on_hedge_spawn(&self, _key: &PolicyKey, _record: &AttemptRecord) {
        Self::heard(&STATS.hedge_spawns, |_| {});
    }

    fn on_hedge_cancel(&self, _key: &PolicyKey, _record: &AttemptRecord, _reason: &str) {
        Self::heard(&STATS.hedge_cancels, |_| {});
    }

    fn on_budget_decision(&self, _event: &recourse::budget::BudgetDecisionEvent) {
        Self::heard(&STATS.budget_events, |_| {});
    }

    fn on_success(&self, _key: &PolicyKey, _timeline: &Timeline) {
        Self::heard(&STATS.successes, |c| {
            c.ends.fetch_add(1, Relaxed);
            c.succeeded.store(true, Relaxed);
        });
    }

    fn on_failure(&self, _key: &PolicyKey, _timeline: &Timeline) {
        Self::heard(&STATS.failures, |c| {
            c.ends.fetch_add(1, Relaxed);
        });
    }

    fn on_circuit_change(&self, _key: &PolicyKey, _transition: Transition) {
        Self::heard(&STATS.circuit_events, |_| {});
    }
}

// ---------------------------------------------------------------------------
// Policies.

/// The policy of key `k`: variant `k % 8`.
fn policy_for(k: usize) -> Policy {
    let b = Policy::builder(PolicyKey::parse_owned(&format!("soak.k{k:02}")));
    match k % 8 {
        // Retries under a budget, the error's own classification.
        0 => b.max_attempts(4).backoff(ms(1), ms(8), 2.0).budget("retries"),
        // Per-attempt and overall deadlines, the named classifier.
        1 => b
            .max_attempts(5)
            .backoff(ms(2), ms(20), 2.0)
            .timeout_per_attempt(ms(15))
            .overall_timeout(ms(40))
            .classifier("chaos")
            .budget("retries"),
        // Hedges on a fixed delay, both budgets, a deadline.
        2 => b
            .max_attempts(3)
            .backoff(ms(1), ms(5), 2.0)
            .budget("retries")
            .max_hedges(2)
            .hedge_delay(ms(10))
            .hedge_trigger("chaos_delay")
            .hedge_budget("hedges")
            .overall_timeout(ms(60)),
        // Every hedge at once, first terminal outcome ends the group.
        3 => b
            .max_attempts(2)
            .backoff(ms(1), ms(5), 2.0)
            .max_hedges(3)
            .hedge_delay(ms(10))
            .hedge_trigger("chaos_now")
            .hedge_budget("hedges")
            .hedge_cancel_on_first_terminal(true)
            .classifier("chaos"),
        // A consecutive-failures breaker with a deadline.
        4 => b.max_attempts(3).backoff(ms(1), ms(4), 2.0).budget("retries").circuit(5, ms(100)).overall_timeout(ms(50)),
        // A failure-rate breaker.
        5 => b.max_attempts(2).backoff(ms(1), ms(4), 2.0).classifier("chaos").budget("retries").circuit_failure_rate(
            0.5,
            Duration::from_secs(1),
            20,
            ms(150),
        ),
        // A breaker in front of hedged groups, with a deadline.
        6 => b
            .max_attempts(3)
            .backoff(ms(1), ms(4), 2.0)
            .classifier("chaos")
            .circuit(3, ms(100))
            .max_hedges(1)
            .hedge_delay(ms(10))
            .hedge_trigger("chaos_delay")
            .hedge_budget("hedges")
            .overall_timeout(ms(80)),
        // Hedges on the key's observed latency (built-in trigger, tracker).
        _ => b
            .max_attempts(3)
            .backoff(ms(1), ms(4), 2.0)
            .budget("retries")
            .max_hedges(2)
            .hedge_delay(ms(10))
            .hedge_trigger("p90")
            .timeout_per_attempt(ms(30)),
    }
    .build()
}

/// The most attempts a call under `policy` may launch.
fn attempt_bound(policy: &Policy) -> u32 {
    let hedges = if policy.hedge.enabled { policy.hedge.max_hedges } else { 0 };
    policy.retry.max_attempts.max(1) * (1 + hedges)
}

// ---------------------------------------------------------------------------
// Driving one call: a thread-local context around every poll and the drop,
// `catch_unwind` around both, and the caller's cancellation.

enum Driven<R> {
    Completed(R),
    Cancelled,
    /// A panic came out of a poll of the call.
    Escaped(String),
}

#[derive(Debug, Clone, Copy)]
enum Cancel {
    Never,
    /// `tokio::time::timeout` around the call.
    After(Duration),
    /// Dropped when woken after this many polls (0: never polled).
    Polls(u32),
}

/// A timer due [`WITNESS_AFTER`] past a call's overall deadline, armed
/// right after the call's first poll (when the engine has read the clock
/// for its deadline) with a waker that wakes nobody and notes when it
/// fired: when the runtime had fired every timer due at the deadline, the
/// engine's own included.
struct Witness {
    timeout: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    clock: Arc<WakeClock>,
    /// [`nanos`] at which it is due.
    due: u64,
}

impl Witness {
    fn new(timeout: Duration) -> Self {
        Self { timeout, sleep: None, clock: Arc::default(), due: 0 }
    }

    fn arm(&mut self) {
        let after = self.timeout + WITNESS_AFTER;
        let sleep = self.sleep.get_or_insert_with(|| {
            self.due = nanos() + u64::try_from(after.as_nanos()).unwrap_or(u64::MAX);
            Box::pin(tokio::time::sleep(after))
        });
        let _ = sleep.as_mut().poll(&mut Context::from_waker(&Waker::from(Arc::clone(&self.clock))));
    }

    /// When it fired, if it has.
    fn fired(&self) -> Option<u64> {
        self.clock.woken()
    }
}

/// One call's future, driven by its caller: the call's context is current
/// around every poll and around the drop, both inside `catch_unwind`; the
/// task is polled through a [`WakeClock`]; a call with an overall timeout
/// has a [`Witness`].
///
/// The deadline check: once the runtime has fired the timers due at a
/// call's deadline (the witness fired; a timer pass fires in tick order,
/// so the engine's own deadline timer had fired), the engine must need
/// nothing more than one poll to end the call: no poll that starts later
/// may leave the call running, and the task must have been woken by then
/// (within [`WAKE_SLACK`]). How long the runtime then takes to poll the
/// task, and the poll itself, are the scheduler's and the OS's (printed,
/// not bounded).
struct Guarded<F: Future> {
    inner: Option<Pin<Box<F>>>,
    ctx: Arc<CallCtx>,
    clock: Arc<WakeClock>,
    witness: Option<Witness>,
    polls: u32,
    limit: Option<u32>,
    _live: Live,
}

impl<F: Future> Guarded<F> {
    fn new(future: F, ctx: &Arc<CallCtx>, timeout: Option<Duration>, limit: Option<u32>) -> Self {
        Self {
            inner: Some(Box::pin(future)),
            ctx: Arc::clone(ctx),
            clock: Arc::default(),
            witness: timeout.map(Witness::new),
            polls: 0,
            limit,
            _live: Live::new(&STATS.call_live),
        }
    }

    /// Drops the unfinished call with its context current, catching what
    /// comes out.
    fn cancel(&mut self) {
        let Some(inner) = self.inner.take() else { return };
        self.ctx.dropping.store(true, Relaxed);
        let _entered = enter(&self.ctx);
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(inner))) {
            self.ctx.drop_panic.store(true, Relaxed);
            note_escape(format!("a panic came out of dropping a call: {}", text(&*payload)));
        }
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Driven<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.limit.is_some_and(|limit| this.polls >= limit) {
            this.cancel();
            return Poll::Ready(Driven::Cancelled);
        }
        this.polls += 1;
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(Driven::Cancelled) };
        let start = nanos();
        let woken = this.clock.take();
        let fired = this.witness.as_ref().and_then(Witness::fired);
        let waker = this.clock.waker(cx);
        let polled = {
            let _entered = enter(&this.ctx);
            catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(&mut Context::from_waker(&waker))))
        };
        let d = &this.ctx.deadline;
        match polled {
            Ok(Poll::Pending) => {
                if let Some(witness) = &mut this.witness {
                    witness.arm();
                }
                if fired.is_some_and(|fired| start > fired) {
                    d.polls_after.fetch_add(1, Relaxed);
                }
                Poll::Pending
            }
            Ok(Poll::Ready(output)) => {
                d.last_poll.store(nanos() - start, Relaxed);
                d.queued.store(woken.map_or(0, |woken| start.saturating_sub(woken)), Relaxed);
                if let Some(witness) = &this.witness
                    && let Some(fired) = witness.fired()
                {
                    d.witness_late.store(fired.saturating_sub(witness.due).max(1), Relaxed);
                    d.woken_after.store(woken.unwrap_or(start).saturating_sub(fired), Relaxed);
                }
                let _entered = enter(&this.ctx);
                this.inner = None;
                Poll::Ready(Driven::Completed(output))
            }
            Err(payload) => {
                let message = text(&*payload);
                this.cancel();
                Poll::Ready(Driven::Escaped(message))
            }
        }
    }
}

impl<F: Future> Drop for Guarded<F> {
    fn drop(&mut self) {
        self.cancel();
    }
}

fn text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

async fn drive<F: Future>(
    future: F,
    ctx: &Arc<CallCtx>,
    timeout: Option<Duration>,
    cancel: Cancel,
) -> Driven<F::Output> {
    match cancel {
        Cancel::Never => Guarded::new(future, ctx, timeout, None).await,
        Cancel::Polls(n) => Guarded::new(future, ctx, timeout, Some(n)).await,
        Cancel::After(after) => {
            tokio::time::timeout(after, Guarded::new(future, ctx, timeout, None)).await.unwrap_or(Driven::Cancelled)
        }
    }
}

// ---------------------------------------------------------------------------
// Per-caller tallies, merged per half.

/// Overrun histogram bucket upper bounds (ms); the last bucket is open.
const OVERRUN_BUCKETS: [u64; 6] = [1, 2, 5, 10, 20, 50];

#[derive(Debug, Default, Clone)]
struct Tally {
    calls: u64,
    completed: u64,
    cancelled_timeout: u64,
    cancelled_polls: u64,
    cancelled_unpolled: u64,
    escaped: u64,
    drop_panics: u64,
    captured: u64,
    observed: u64,
    provider_fallbacks: u64,
    ok: u64,
    dep: [u64; 4],
    timeouts: u64,
    attempt_timeouts: u64,
    circuit_open: u64,
    budget_denied: u64,
    budget_panic_denied: u64,
    panics: [u64; 6],
    other_errors: u64,
    attempts: u64,
    max_attempts_seen: u32,
    over_bound: u64,
    deadline_calls: u64,
    deadline_overran: u64,
    max_overrun: Duration,
    /// Calls whose witness fired before they ended.
    witnessed: u64,
    max_timer_late: Duration,
    max_queued: Duration,
    max_last_poll: Duration,
    max_woken_after: Duration,
    /// Calls the engine did not end at the first poll after their deadline
    /// timers fired.
    deadline_misses: u64,
    first_miss: Option<String>,
    overrun_hist: [u64; 7],
    observer_mismatch: u64,
    timeline_mismatch: u64,
    first_problem: Option<String>,
}

impl Tally {
    fn problem(&mut self, text: impl FnOnce() -> String) {
        if self.first_problem.is_none() {
            self.first_problem = Some(text());
        }
    }

    fn cancelled(&self) -> u64 {
        self.cancelled_timeout + self.cancelled_polls + self.cancelled_unpolled
    }

    fn merge(&mut self, o: &Self) {
        self.calls += o.calls;
        self.completed += o.completed;
        self.cancelled_timeout += o.cancelled_timeout;
        self.cancelled_polls += o.cancelled_polls;
        self.cancelled_unpolled += o.cancelled_unpolled;
        self.escaped += o.escaped;
        self.drop_panics += o.drop_panics;
        self.captured += o.captured;
        self.observed += o.observed;
        self.provider_fallbacks += o.provider_fallbacks;
        self.ok += o.ok;
        for (a, b) in self.dep.iter_mut().zip(o.dep) {
            *a += b;
        }
        self.timeouts += o.timeouts;
        self.attempt_timeouts += o.attempt_timeouts;
        self.circuit_open += o.circuit_open;
        self.budget_denied += o.budget_denied;
        self.budget_panic_denied += o.budget_panic_denied;
        for (a, b) in self.panics.iter_mut().zip(o.panics) {
            *a += b;
        }
        self.other_errors += o.other_errors;
        self.attempts += o.attempts;
        self.max_attempts_seen = self.max_attempts_seen.max(o.max_attempts_seen);
        self.over_bound += o.over_bound;
        self.deadline_calls += o.deadline_calls;
        self.deadline_overran += o.deadline_overran;
        self.max_overrun = self.max_overrun.max(o.max_overrun);
        self.witnessed += o.witnessed;
        self.max_timer_late = self.max_timer_late.max(o.max_timer_late);
        self.max_queued = self.max_queued.max(o.max_queued);
        self.max_last_poll = self.max_last_poll.max(o.max_last_poll);
        self.max_woken_after = self.max_woken_after.max(o.max_woken_after);
        self.deadline_misses += o.deadline_misses;
        if self.first_miss.is_none() {
            self.first_miss.clone_from(&o.first_miss);
        }
        for (a, b) in self.overrun_hist.iter_mut().zip(o.overrun_hist) {
            *a += b;
        }
        self.observer_mismatch += o.observer_mismatch;
        self.timeline_mismatch += o.timeline_mismatch;
        if self.first_problem.is_none() {
            self.first_problem.clone_from(&o.first_problem);
        }
    }
}

// ---------------------------------------------------------------------------
// The run.

struct Shared {
    executor: Executor,
    keys: Vec<PolicyKey>,
    policies: Vec<Arc<Policy>>,
    provider: Arc<ChaosProvider>,
    breakers: Vec<Option<Arc<ChaosBreaker>>>,
    retries: Arc<Grants>,
    hedges: Arc<Grants>,
    next: AtomicU64,
    /// The start of the run (outages are scheduled from it).
    origin: Instant,
}

fn shared() -> Arc<Shared> {
    let policies: Vec<Arc<Policy>> = (0..KEYS).map(|k| Arc::new(policy_for(k))).collect();
    let keys = policies.iter().map(|p| p.key.clone()).collect();
    let provider = Arc::new(ChaosProvider { policies: policies.clone(), generation: AtomicU64::new(0) });
    let circuits = Arc::new(recourse::circuit::Registry::new());
    let breakers: Vec<Option<Arc<ChaosBreaker>>> = policies
        .iter()
        .map(|p| {
            p.circuit.enabled.then(|| {
                let breaker = Arc::new(ChaosBreaker::new(p));
                circuits.insert(p.key.clone(), Arc::clone(&breaker) as Arc<dyn Breaker>);
                breaker
            })
        })
        .collect();
    let retries = Arc::new(Grants::default());
    let hedges = Arc::new(Grants::default());
    let executor = Executor::builder()
        .provider(Arc::clone(&provider))
        .missing_policy(FailureMode::Allow)
        .circuits(circuits)
        .classifier("chaos", ChaosClassifier)
        .budget(
            "retries",
            ChaosBudget {
                bucket: Some(TokenBucket::new(10_000, 1_000_000.0)),
                deny_ppm: 20_000,
                grants: Arc::clone(&retries),
            },
        )
        .budget("hedges", ChaosBudget { bucket: None, deny_ppm: 100_000, grants: Arc::clone(&hedges) })
        .trigger("chaos_delay", ChaosTrigger { all_at_once: false })
        .trigger("chaos_now", ChaosTrigger { all_at_once: true })
        .observer(ChaosObserver)
        .recover_panics(true)
        .jitter_seed(SEED)
        .build();
    Arc::new(Shared {
        executor,
        keys,
        policies,
        provider,
        breakers,
        retries,
        hedges,
        next: AtomicU64::new(0),
        origin: Instant::now(),
    })
}

/// What one call returned, folded into the caller's tally.
fn settle(
    t: &mut Tally,
    ctx: &CallCtx,
    k: usize,
    policy: &Policy,
    driven: Driven<Result<u64, SoakError>>,
    cancel: Cancel,
    elapsed: Duration,
) -> Option<bool> {
    t.calls += 1;
    if ctx.drop_panic.load(Relaxed) {
        t.drop_panics += 1;
    }
    let provider_panicked = ctx.provider_panicked.load(Relaxed);
    t.provider_fallbacks += u64::from(provider_panicked);
    let invocations = ctx.invocations.load(Relaxed);
    t.attempts += u64::from(invocations);
    t.max_attempts_seen = t.max_attempts_seen.max(invocations);
    if invocations > attempt_bound(policy) {
        t.over_bound += 1;
        t.problem(|| format!("key {k}: {invocations} attempts, bound {}", attempt_bound(policy)));
    }
    let (starts, ends) = (ctx.starts.load(Relaxed), ctx.ends.load(Relaxed));
    t.observed += u64::from(starts > 0);
    let result = match driven {
        Driven::Escaped(message) => {
            t.escaped += 1;
            note_escape(format!("a panic reached the caller of key {k}: {message}"));
            return None;
        }
        Driven::Cancelled => {
            match cancel {
                Cancel::After(_) => t.cancelled_timeout += 1,
                Cancel::Polls(0) => t.cancelled_unpolled += 1,
                _ => t.cancelled_polls += 1,
            }
            if ends != 0 || starts > 1 {
                t.observer_mismatch += 1;
                t.problem(|| format!("key {k}: cancelled call heard {starts} starts, {ends} ends"));
            }
            return None;
        }
        Driven::Completed(result) => result,
    };
    t.completed += 1;
    if starts > 1 || ends != starts || (ends == 1 && ctx.succeeded.load(Relaxed) != result.is_ok()) {
        t.observer_mismatch += 1;
        t.problem(|| format!("key {k}: completed call heard {starts} starts, {ends} ends, result {result:?}"));
    }
    match &result {
        Ok(_) => t.ok += 1,
        Err(SoakError::Retryable) => t.dep[0] += 1,
        Err(SoakError::RetryAfter(_)) => t.dep[1] += 1,
        Err(SoakError::Fatal) => t.dep[2] += 1,
        Err(SoakError::Abort) => t.dep[3] += 1,
        Err(SoakError::Recourse(e)) => match e {
            recourse::Error::Timeout { .. } => t.timeouts += 1,
            recourse::Error::AttemptTimeout { .. } => t.attempt_timeouts += 1,
            recourse::Error::CircuitOpen { .. } => t.circuit_open += 1,
            recourse::Error::BudgetDenied { reason } if reason == recourse::budget::reason::PANIC_IN_BUDGET => {
                t.budget_panic_denied += 1;
            }
            recourse::Error::BudgetDenied { .. } => t.budget_denied += 1,
            recourse::Error::Panic(p) => match Plugin::of(p.component) {
                Some(plugin) if p.message.starts_with(INJECTED) => t.panics[plugin as usize] += 1,
                _ => {
                    t.other_errors += 1;
                    t.problem(|| format!("key {k}: unexpected panic error {p}"));
                }
            },
            other => {
                t.other_errors += 1;
                t.problem(|| format!("key {k}: unexpected recourse error {other}"));
            }
        },
    }
    let timeout = policy.retry.overall_timeout;
    if !timeout.is_zero() && !provider_panicked {
        check_deadline(t, ctx, k, timeout, elapsed, &result);
    }
    Some(result.is_ok())
}

/// The deadline check of one completed call with an overall timeout (see
/// [`Guarded`]).
fn check_deadline(
    t: &mut Tally,
    ctx: &CallCtx,
    k: usize,
    timeout: Duration,
    elapsed: Duration,
    result: &Result<u64, SoakError>,
) {
    t.deadline_calls += 1;
    let overrun = elapsed.saturating_sub(timeout);
    if !overrun.is_zero() {
        t.deadline_overran += 1;
    }
    let bucket = OVERRUN_BUCKETS.iter().position(|&b| overrun < ms(b)).unwrap_or(OVERRUN_BUCKETS.len());
    t.overrun_hist[bucket] += 1;
    t.max_overrun = t.max_overrun.max(overrun);
    let d = &ctx.deadline;
    let load = |x: &AtomicU64| Duration::from_nanos(x.load(Relaxed));
    let (late, queued, last_poll) = (load(&d.witness_late), load(&d.queued), load(&d.last_poll));
    t.max_queued = t.max_queued.max(queued);
    t.max_last_poll = t.max_last_poll.max(last_poll);
    if !late.is_zero() {
        t.witnessed += 1;
        t.max_timer_late = t.max_timer_late.max(late);
        let woken_after = load(&d.woken_after);
        let polls_after = d.polls_after.load(Relaxed);
        t.max_woken_after = t.max_woken_after.max(woken_after);
        if woken_after > WAKE_SLACK || polls_after > 0 {
            t.deadline_misses += 1;
            if t.first_miss.is_none() {
                t.first_miss = Some(format!(
                    "key {k}: {elapsed:?} under an overall timeout of {timeout:?}: the runtime fired its \
                     deadline's timers {late:?} late, its task was first woken {woken_after:?} after that, \
                     {polls_after} polls after that left it running; result {result:?}"
                ));
            }
        }
    }
}

/// Checks a captured timeline against what the call did.
fn check_timeline(t: &mut Tally, ctx: &CallCtx, k: usize, policy: &Policy, ok: bool, timeline: &Timeline) {
    t.captured += 1;
    let invocations = ctx.invocations.load(Relaxed) as usize;
    let launched = timeline.attempts.iter().filter(|r| r.budget_allowed).count();
    let fallback = timeline.attributes.get("policy_fallback") == Some("allow");
    let max_hedges = if policy.hedge.enabled { policy.hedge.max_hedges } else { 0 };
    let records_fit =
        timeline.attempts.iter().all(|r| r.attempt < policy.retry.max_attempts.max(1) && r.hedge_index <= max_hedges);
    let consistent = launched == invocations
        && timeline.final_error.is_none() == ok
        && fallback == ctx.provider_panicked.load(Relaxed)
        && records_fit;
    if !consistent {
        t.timeline_mismatch += 1;
        t.problem(|| {
            format!(
                "key {k}: timeline of {launched} launched attempts for {invocations} invocations, ok {ok}, \
                 fallback {fallback}: {timeline:#?}"
            )
        });
    }
}

async fn one_call(shared: &Shared, ctx: &Arc<CallCtx>, i: u64, t: &mut Tally) {
    let mut rng = XorShift::new(SEED ^ i.wrapping_mul(0x0100_0000_01B3));
    let k = usize::try_from(rng.below(KEYS as u64)).expect("a key index");
    let policy = &shared.policies[k];
    let provider_panic = STATS.chaos.load(Relaxed) && rng.below(PROVIDER_ONE_IN) == 0;
    ctx.reset(rng.next_u64(), rng.chance(70), provider_panic);
    if provider_panic {
        shared.provider.bump();
    }
    let capture = rng.below(8) == 0;
    let cancel = match rng.below(100) {
        0..4 => Cancel::After(ms(1 + rng.below(30))),
        4..7 => Cancel::Polls(u32::try_from(1 + rng.below(8)).expect("small")),
        7 => Cancel::Polls(0),
        _ => Cancel::Never,
    };
    let outage = in_outage(k, shared.origin.elapsed());
    let op = dependency(Arc::clone(ctx), XorShift::new(rng.next_u64()), outage);
    let key = &shared.keys[k];
    let start = Instant::now();
    let timeout = Some(policy.retry.overall_timeout).filter(|t| !t.is_zero());
    if capture {
        let driven = drive(recourse::capture(shared.executor.call(key, op)), ctx, timeout, cancel).await;
        let elapsed = start.elapsed();
        let (driven, timeline) = match driven {
            Driven::Completed((result, timeline)) => (Driven::Completed(result), Some(timeline)),
            Driven::Cancelled => (Driven::Cancelled, None),
            Driven::Escaped(message) => (Driven::Escaped(message), None),
        };
        if let Some(ok) = settle(t, ctx, k, policy, driven, cancel, elapsed)
            && let Some(timeline) = &timeline
        {
            check_timeline(t, ctx, k, policy, ok, timeline);
        }
    } else {
        let driven = drive(shared.executor.call(key, op), ctx, timeout, cancel).await;
        let elapsed = start.elapsed();
        settle(t, ctx, k, policy, driven, cancel, elapsed);
    }
}

async fn caller(shared: Arc<Shared>, end: u64) -> Tally {
    let ctx = Arc::new(CallCtx::default());
    let mut tally = Tally::default();
    loop {
        let i = shared.next.fetch_add(1, Relaxed);
        if i >= end {
            return tally;
        }
        one_call(&shared, &ctx, i, &mut tally).await;
    }
}

/// Samples what is alive while a half runs.
#[derive(Debug, Default, Clone, Copy)]
struct Peaks {
    tasks: usize,
    heap: i64,
    dep_live: u64,
    grants_live: u64,
}

async fn monitor(shared: Arc<Shared>, stop: Arc<AtomicBool>) -> Peaks {
    let handle = tokio::runtime::Handle::current();
    let mut peaks = Peaks::default();
    while !stop.load(Relaxed) {
        peaks.tasks = peaks.tasks.max(handle.metrics().num_alive_tasks());
        peaks.heap = peaks.heap.max(heap_in_use());
        peaks.dep_live = peaks.dep_live.max(get(&STATS.dep_live));
        peaks.grants_live = peaks.grants_live.max(get(&shared.retries.live) + get(&shared.hedges.live));
        tokio::time::sleep(ms(10)).await;
    }
    peaks
}

fn heap_in_use() -> i64 {
    let stats = HEAP.stats();
    i64::try_from(stats.bytes_allocated).unwrap_or(i64::MAX) - i64::try_from(stats.bytes_deallocated).unwrap_or(0)
}

fn live_allocations() -> i64 {
    let stats = HEAP.stats();
    i64::try_from(stats.allocations).unwrap_or(i64::MAX) - i64::try_from(stats.deallocations).unwrap_or(0)
}

/// One half of the run, and what was alive once it ended.
#[derive(Debug, Default)]
struct Half {
    tally: Tally,
    join_errors: u64,
    peaks: Peaks,
    tasks_after: usize,
    dep_after: u64,
    calls_after: u64,
    grants_after: u64,
    heap_after: i64,
    allocations_after: i64,
    wall: Duration,
}

async fn run_half(shared: &Arc<Shared>, from: u64, to: u64) -> Half {
    let begun = Instant::now();
    shared.next.store(from, Relaxed);
    let stop = Arc::new(AtomicBool::new(false));
    let monitor = tokio::spawn(monitor(Arc::clone(shared), Arc::clone(&stop)));
    let callers: Vec<_> = (0..CALLERS).map(|_| tokio::spawn(caller(Arc::clone(shared), to))).collect();
    let mut half = Half::default();
    for joined in callers {
        match joined.await {
            Ok(tally) => half.tally.merge(&tally),
            Err(error) => {
                half.join_errors += 1;
                note_escape(format!("a caller task ended with {error}"));
            }
        }
    }
    stop.store(true, Relaxed);
    half.peaks = monitor.await.expect("the monitor");
    half.wall = begun.elapsed();
    // Finished tasks leave the runtime's lists as their last reference goes.
    let handle = tokio::runtime::Handle::current();
    for _ in 0..100 {
        if handle.metrics().num_alive_tasks() == 0 {
            break;
        }
        tokio::time::sleep(ms(10)).await;
    }
    half.tasks_after = handle.metrics().num_alive_tasks();
    half.dep_after = get(&STATS.dep_live);
    half.calls_after = get(&STATS.call_live);
    half.grants_after = get(&shared.retries.live) + get(&shared.hedges.live);
    half.heap_after = heap_in_use();
    half.allocations_after = live_allocations();
    half
}

/// After the chaos: no faults, no panics; each breaker key is called until
/// its breaker is closed. Returns, per breaker key, whether it closed and
/// the calls it took.
async fn recover_breakers(shared: &Shared) -> Vec<Recovery> {
    STATS.chaos.store(false, Relaxed);
    let cooldown = shared.policies.iter().map(|p| p.circuit.cooldown).max().unwrap_or_default();
    tokio::time::sleep(cooldown + ms(20)).await;
    let ctx = Arc::new(CallCtx::default());
    let mut recovered = Vec::new();
    for (k, breaker) in shared.breakers.iter().enumerate() {
        let Some(breaker) = breaker else { continue };
        let before = breaker.state();
        let mut calls = 0;
        let mut last = None;
        while calls < 40 {
            calls += 1;
            ctx.reset(1, true, false);
            let call = shared.executor.call(&shared.keys[k], || async { Ok::<u64, SoakError>(7) });
            let result = match drive(call, &ctx, None, Cancel::Never).await {
                Driven::Completed(result) => result.map_err(|e| e.to_string()),
                Driven::Cancelled => Err("cancelled".to_owned()),
                Driven::Escaped(message) => Err(message),
            };
            let closed = result.is_ok() && breaker.state() == State::Closed;
            last = Some(result);
            if closed {
                break;
            }
            tokio::time::sleep(ms(25)).await;
        }
        recovered.push(Recovery {
            key: k,
            before,
            after: breaker.state(),
            calls,
            last,
            verdicts_lost_half_open: get(&breaker.lost_half_open),
        });
    }
    recovered
}

/// One breaker key after the chaos.
#[derive(Debug)]
#[allow(dead_code, reason = "read through Debug, in the report")]
struct Recovery {
    key: usize,
    before: State,
    after: State,
    calls: u32,
    last: Option<Result<u64, String>>,
    verdicts_lost_half_open: u64,
}

impl Recovery {
    fn closed(&self) -> bool {
        self.after == State::Closed && matches!(self.last, Some(Ok(_)))
    }
}

fn install_quiet_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let injected = info.payload().downcast_ref::<&str>().is_some_and(|m| m.starts_with(INJECTED));
        if injected {
            hit(&STATS.hook_injected);
        } else {
            hit(&STATS.hook_other);
            default(info);
        }
    }));
}

fn per_million(part: u64, whole: u64) -> f64 {
    #[allow(clippy::cast_precision_loss, reason = "a printed ratio")]
    let ratio = part as f64 * 1e6 / (whole.max(1) as f64);
    ratio
}

#[allow(clippy::too_many_lines, reason = "the report, figure by figure")]
fn report(shared: &Shared, calls: u64, halves: &[Half; 2], recovery: &[Recovery], wall: Duration) -> String {
    let mut all = Tally::default();
    for half in halves {
        all.merge(&half.tally);
    }
    let mut r = String::new();
    let build = if cfg!(debug_assertions) { "debug" } else { "release" };
    let _ = writeln!(
        r,
        "soak: {calls} calls ({build}), {KEYS} keys, {CALLERS} callers, {WORKERS} workers, wall {:.1} s \
         (halves {:.1} s + {:.1} s)",
        wall.as_secs_f64(),
        halves[0].wall.as_secs_f64(),
        halves[1].wall.as_secs_f64()
    );
    let _ = writeln!(
        r,
        "calls: completed {}, cancelled {} (timeout {}, after polls {}, unpolled {}); captured {}, observed {}",
        all.completed,
        all.cancelled(),
        all.cancelled_timeout,
        all.cancelled_polls,
        all.cancelled_unpolled,
        all.captured,
        all.observed
    );
    let _ = writeln!(
        r,
        "results: ok {}; dependency errors: retryable {}, retry-after {}, non-retryable {}, abort {}; \
         recourse errors: overall timeout {}, attempt timeout {}, circuit open {}, budget denied {} \
         (of which budget panic {}), panic(classifier) {}, panic(breaker) {}, other {}",
        all.ok,
        all.dep[0],
        all.dep[1],
        all.dep[2],
        all.dep[3],
        all.timeouts,
        all.attempt_timeouts,
        all.circuit_open,
        all.budget_denied + all.budget_panic_denied,
        all.budget_panic_denied,
        all.panics[Plugin::Classifier as usize],
        all.panics[Plugin::Breaker as usize],
        all.other_errors
    );
    let attempts = get(&STATS.attempts);
    let _ = write!(r, "faults injected: {attempts} attempts;");
    for fault in FAULTS {
        let _ = write!(r, " {} {},", fault.name(), get(&STATS.faults[fault as usize]));
    }
    let _ = writeln!(
        r,
        " provider fallbacks {}; errors the named classifier saw that were not the dependency's {}",
        all.provider_fallbacks,
        get(&STATS.classifier_foreign)
    );
    let _ = write!(r, "panics injected (all recovered unless escaped below):");
    for plugin in PLUGINS {
        let _ = write!(r, " {} {},", plugin.name(), get(&STATS.injected[plugin as usize]));
    }
    let b = &STATS.breaker_panics;
    let _ = writeln!(
        r,
        " breaker by method: allow {}, verdict lost {}, verdict reported-lost {}, release_probe {}; \
         executor's observer_panics {}; hook saw {} injected, {} other",
        get(&b[BreakerPanic::Allow as usize]),
        get(&b[BreakerPanic::VerdictBefore as usize]),
        get(&b[BreakerPanic::VerdictAfter as usize]),
        get(&b[BreakerPanic::Release as usize]),
        shared.executor.observer_panics(),
        get(&STATS.hook_injected),
        get(&STATS.hook_other)
    );
    let _ = writeln!(
        r,
        "escaped to callers: {} from polls, {} from drops, {} caller task join errors",
        all.escaped,
        all.drop_panics,
        halves[0].join_errors + halves[1].join_errors
    );
    for (name, g) in [("retries", &shared.retries), ("hedges", &shared.hedges)] {
        let _ = writeln!(
            r,
            "budget {name}: consulted {}, granted {}, released {}, denied {}, dropped unreleased {}, alive {}",
            get(&g.consulted),
            get(&g.granted),
            get(&g.released),
            get(&g.denied),
            get(&g.unreleased),
            get(&g.live)
        );
    }
    let (mut opened, mut opened_rate, mut closed_total, mut releases, mut lost) = (0, 0, 0, 0, 0);
    for breaker in shared.breakers.iter().flatten() {
        let o = get(&breaker.opened);
        opened += o;
        if breaker.failure_rate {
            opened_rate += o;
        }
        closed_total += get(&breaker.closed);
        releases += get(&breaker.releases);
        lost += get(&breaker.lost_half_open);
    }
    let recovered = recovery.iter().filter(|r| r.closed()).count();
    let most = recovery.iter().map(|r| r.calls).max().unwrap_or(0);
    let open_after_chaos = recovery.iter().filter(|r| r.before != State::Closed).count();
    let _ = writeln!(
        r,
        "breakers: {} keys; opened {opened} times (failure-rate {opened_rate}), closed {closed_total} times; \
         {releases} probes handed back; {lost} verdicts lost to a panic while half-open; after the chaos {open_after_chaos} not closed, then {recovered}/{} closed again with \
         no faults (at most {most} calls each)",
        recovery.len(),
        recovery.len()
    );
    for failed in recovery.iter().filter(|r| !r.closed()) {
        let _ = writeln!(r, "  not closed again: {failed:?}");
    }
    let _ = writeln!(
        r,
        "attempts per call: mean {:.2}, max {}; over max_attempts x (1 + max_hedges): {}",
        {
            #[allow(clippy::cast_precision_loss, reason = "a printed mean")]
            let mean = all.attempts as f64 / all.calls.max(1) as f64;
            mean
        },
        all.max_attempts_seen,
        all.over_bound
    );
    for (n, half) in halves.iter().enumerate() {
        let t = &half.tally;
        let _ = write!(
            r,
            "deadlines, half {}: {} calls under an overall timeout, {} ended after it (by at most {:.2} ms); \
             {} were still running when the runtime fired their deadline's timers (up to {:.2} ms late; \
             their tasks woken at most {:.2} ms after that, allowed {} ms), and {} of those were not ended by \
             the next poll of their task; completing polls waited up to {:.2} ms in the run queue and took up \
             to {:.2} ms; overrun histogram (ms):",
            n + 1,
            t.deadline_calls,
            t.deadline_overran,
            t.max_overrun.as_secs_f64() * 1e3,
            t.witnessed,
            t.max_timer_late.as_secs_f64() * 1e3,
            t.max_woken_after.as_secs_f64() * 1e3,
            WAKE_SLACK.as_millis(),
            t.deadline_misses,
            t.max_queued.as_secs_f64() * 1e3,
            t.max_last_poll.as_secs_f64() * 1e3,
        );
        let mut low = 0;
        for (i, count) in t.overrun_hist.iter().enumerate() {
            match OVERRUN_BUCKETS.get(i) {
                Some(high) => {
                    let _ = write!(r, " [{low},{high}) {count}");
                    low = *high;
                }
                None => {
                    let _ = write!(r, " [{low},inf) {count}");
                }
            }
        }
        let _ = writeln!(r);
        if let Some(miss) = &t.first_miss {
            let _ = writeln!(r, "  first miss: {miss}");
        }
    }
    let _ = writeln!(
        r,
        "observer: starts {}, successes {}, failures {}, attempts {}, hedge spawns {}, hedge cancels {}, \
         budget decisions {}, circuit changes {}; late events {}, stray events {}, per-call mismatches {}; \
         timeline mismatches {}",
        get(&STATS.starts),
        get(&STATS.successes),
        get(&STATS.failures),
        get(&STATS.attempt_events),
        get(&STATS.hedge_spawns),
        get(&STATS.hedge_cancels),
        get(&STATS.budget_events),
        get(&STATS.circuit_events),
        get(&STATS.late_events),
        get(&STATS.stray_events),
        all.observer_mismatch,
        all.timeline_mismatch
    );
    for (n, half) in halves.iter().enumerate() {
        let _ = writeln!(
            r,
            "growth, half {}: tasks alive after {} (peak {}: {CALLERS} callers and the monitor at most); \
             alive after: dependency futures {}, call futures {}, grants {} (during: at most {} and {} grants); \
             heap in use after {} B in {} allocations (peak {} B)",
            n + 1,
            half.tasks_after,
            half.peaks.tasks,
            half.dep_after,
            half.calls_after,
            half.grants_after,
            half.peaks.dep_live,
            half.peaks.grants_live,
            half.heap_after,
            half.allocations_after,
            half.peaks.heap
        );
    }
    let _ = writeln!(
        r,
        "growth between halves: heap {:+} B ({:+.3} B per call; allowed {HEAP_SLACK} B), allocations {:+}",
        halves[1].heap_after - halves[0].heap_after,
        {
            #[allow(clippy::cast_precision_loss, reason = "a printed ratio")]
            let per_call = (halves[1].heap_after - halves[0].heap_after) as f64 / (calls / 2).max(1) as f64;
            per_call
        },
        halves[1].allocations_after - halves[0].allocations_after
    );
    let _ = writeln!(
        r,
        "rates: {:.0} injected panics per million calls, {:.0} cancellations per million calls",
        per_million(PLUGINS.iter().map(|p| get(&STATS.injected[*p as usize])).sum(), calls),
        per_million(all.cancelled(), calls)
    );
    r
}

#[allow(clippy::too_many_lines, reason = "the checklist, read top to bottom")]
#[test]
fn chaos_soak() {
    let calls = soak_calls();
    install_quiet_hook();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_time()
        .build()
        .expect("a multi-thread runtime");
    let shared = shared();
    let wall = std::time::Instant::now();
    let (halves, recovery) = runtime.block_on(async {
        let first = run_half(&shared, 0, calls / 2).await;
        let second = run_half(&shared, calls / 2, calls / 2 * 2).await;
        let recovery = recover_breakers(&shared).await;
        ([first, second], recovery)
    });
    let wall = wall.elapsed();
    let report = report(&shared, calls / 2 * 2, &halves, &recovery, wall);
    println!("{report}");

    let mut all = Tally::default();
    for half in &halves {
        all.merge(&half.tally);
    }
    let escape = STATS.first_escape.lock().unwrap_or_else(PoisonError::into_inner).clone();
    let problem = all.first_problem.clone().unwrap_or_default();
    assert_eq!(all.calls, calls / 2 * 2, "every call was made");
    assert_eq!(all.completed + all.cancelled(), all.calls - all.escaped, "every call completed or was cancelled");

    // No plug-in panic reached a caller.
    assert_eq!(all.escaped + all.drop_panics, 0, "{escape:?}");
    assert_eq!(halves[0].join_errors + halves[1].join_errors, 0, "{escape:?}");
    assert_eq!(get(&STATS.hook_other), 0, "only injected panics");
    let injected: u64 = PLUGINS.iter().map(|p| get(&STATS.injected[*p as usize])).sum();
    assert_eq!(get(&STATS.hook_injected), injected, "every injected panic was counted where it was raised");
    assert_eq!(shared.executor.observer_panics(), get(&STATS.injected[Plugin::Observer as usize]));
    assert_eq!(
        all.panics[Plugin::Breaker as usize],
        get(&STATS.breaker_panics[BreakerPanic::Allow as usize]),
        "every breaker `allow` panic ended its call with Error::Panic"
    );
    assert!(all.panics[Plugin::Classifier as usize] <= get(&STATS.injected[Plugin::Classifier as usize]));
    assert_eq!(all.other_errors, 0, "{problem}");
    for plugin in PLUGINS {
        assert!(get(&STATS.injected[plugin as usize]) > 0, "panics were injected in the {}", plugin.name());
    }
    let breaker_panics = |which: BreakerPanic| get(&STATS.breaker_panics[which as usize]);
    assert!(breaker_panics(BreakerPanic::Allow) > 0, "breaker panics in allow");
    assert!(
        breaker_panics(BreakerPanic::VerdictBefore) + breaker_panics(BreakerPanic::VerdictAfter) > 0,
        "breaker panics in verdicts"
    );

    // Attempts per call within max_attempts × (1 + max_hedges).
    assert_eq!(all.over_bound, 0, "{problem}");

    // Deadlines: no call outlived its overall timeout by more than a tick.
    for (n, half) in halves.iter().enumerate() {
        assert_eq!(half.tally.deadline_misses, 0, "half {}: {:?}", n + 1, half.tally.first_miss);
        assert!(half.tally.timeouts > 0, "half {}: some calls were ended by their overall deadline", n + 1);
    }

    // Every budget grant released exactly once.
    for (name, g) in [("retries", &shared.retries), ("hedges", &shared.hedges)] {
        assert!(get(&g.granted) > 0 && get(&g.denied) > 0, "{name}: grants and denials");
        assert_eq!(get(&g.granted), get(&g.released), "{name}: every grant released");
        assert_eq!(get(&g.unreleased), 0, "{name}: no grant dropped unreleased");
        assert_eq!(get(&g.live), 0, "{name}: no grant outstanding");
    }

    // Every breaker able to close again.
    for r in &recovery {
        assert!(r.closed(), "a breaker did not close again with no faults: {r:?}");
    }
    let opened = |rate: bool| {
        shared.breakers.iter().flatten().filter(|b| b.failure_rate == rate).map(|b| get(&b.opened)).sum::<u64>()
    };
    assert!(opened(false) > 0, "consecutive-failure breakers opened");
    assert!(opened(true) > 0, "failure-rate breakers opened");

    // Observers: per call, and nothing late or stray.
    assert_eq!(all.observer_mismatch, 0, "{problem}");
    assert_eq!(get(&STATS.late_events), 0, "no event after a call's future started dropping");
    assert_eq!(get(&STATS.stray_events), 0, "no event outside a call");
    assert_eq!(all.timeline_mismatch, 0, "{problem}");

    // No growth: tasks, futures, grants, heap.
    for (n, half) in halves.iter().enumerate() {
        assert_eq!(half.tasks_after, 0, "half {}: no task left", n + 1);
        assert!(half.peaks.tasks <= CALLERS + 1, "half {}: no task of recourse's own", n + 1);
        assert_eq!(half.dep_after, 0, "half {}: every attempt's future dropped", n + 1);
        assert_eq!(half.calls_after, 0, "half {}: every call's future dropped", n + 1);
        assert_eq!(half.grants_after, 0, "half {}: every grant released", n + 1);
    }
    let growth = halves[1].heap_after - halves[0].heap_after;
    assert!(growth <= HEAP_SLACK, "heap in use grew by {growth} B between equal halves");
}

//! Cancellation at every await point (issue 15, item 2), across call
//! configurations, call forms and watchers.
//!
//! The harness runs a call to completion once, counting its polls `P`, and
//! then, for every `N` in `0..P`, starts the same call afresh, polls it `N`
//! times and drops it. Every poll after the first waits for the wake-up the
//! previous one registered (on a paused current-thread runtime, so tokio
//! time jumps straight to the next timer when nothing else can run: the
//! operation's sleeps, backoffs, attempt deadlines and hedge delays all fire
//! in order); a pending poll that registers no wake-up fails the test
//! instead of hanging it. Each `N` is thus one suspension of the call at one
//! of its await points, and dropping it there is one cancellation point.
//!
//! Between two polls and after each drop the harness checks (DESIGN §4,
//! ARCHITECTURE "Cancellation"):
//!
//! * grants: every counting budget's releases never exceed its grants, a
//!   grant is outstanding exactly while its attempt's future exists, and
//!   after the drop grants == releases (released once, never twice); a
//!   token bucket holds exactly `capacity - grants`;
//! * the breaker: a dropped call gives no verdict (a threshold-1 breaker
//!   stays closed), a dropped half-open probe hands its slot back (the next
//!   call is admitted as the probe and closes the circuit), and while the
//!   probe call is alive a second call is refused;
//! * thread scope: `recourse::attempt()` is `None` on the test thread, the
//!   observer's call and attempt scopes are exited (depth 0) and all
//!   dropped, no attempt future outlives the call, and a fresh
//!   `recourse::capture` captures its own call (an empty one nothing);
//! * observers: the dropped call's observer hears no end event, and
//!   nothing at all after the drop (its log, snapshotted at the drop, is
//!   unchanged once time has moved on by ten seconds).
//!
//! Configurations: plain retry, backoff (with a policy id), attempt and
//! overall timeouts, a custom sleeper racing the overall deadline, hedging
//! with a fixed delay and with a trigger, retry and hedge budgets
//! (counting; the hedge budget runs out), a token bucket (runs out), a
//! closed breaker, and a half-open probe (consecutive-failures and
//! failure-rate breakers). Each runs in four call forms (`executor.call`,
//! `recourse::key!`, `#[recourse]` on a function, `#[recourse]` on a
//! `&mut self` method: the sequential form), under four watchers (none, an
//! observer with call and attempt scopes, `recourse::capture`, both), and
//! with the key's resolution cold or cached (a warm-up call through the
//! same call site first: only a cached resolution takes the plain and lean
//! starts, whose first attempt runs before the engine exists). Run with
//! `-- --nocapture` to see the number of cancellation points per
//! configuration.
#![allow(missing_docs)]

mod support;

use std::cell::Cell;
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::Duration;

use recourse::budget::{AttemptKind, Budget, Decision, TokenBucket, Unlimited};
use recourse::circuit::{Breaker, State, Transition, reason as circuit_reason};
use recourse::executor::{SleepFuture, Sleeper};
use recourse::observe::{Enter, Observer};
use recourse::policy::{BudgetRef, Jitter, Policy, PolicyBuilder, PolicyKey};
use recourse::{Attempt, AttemptRecord, Executor, Timeline, recourse};
use support::{Counter, Immediate, OpError, RecordingObserver, SEED, ms, paused_runtime};

// ---------------------------------------------------------------------------
// The operation: a script of attempts.

/// One attempt: it yields once, sleeps `ms` (if any), then succeeds or
/// fails retryably.
#[derive(Debug, Clone, Copy)]
struct Step {
    ms: u64,
    ok: bool,
}

const fn fail(ms: u64) -> Step {
    Step { ms, ok: false }
}

const fn pass(ms: u64) -> Step {
    Step { ms, ok: true }
}

/// The attempts of one call, in the order they are created (hedges
/// included), and which of their futures exist right now.
#[derive(Clone)]
struct Script {
    steps: &'static [Step],
    calls: Counter,
    live: Arc<Mutex<BTreeSet<usize>>>,
}

/// Marks attempt `n`'s future as existing until it is dropped.
struct Live(Arc<Mutex<BTreeSet<usize>>>, usize);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.1);
    }
}

impl Script {
    fn new(steps: &'static [Step]) -> Self {
        Self { steps, calls: Counter::new(), live: Arc::default() }
    }

    /// The next attempt's future.
    fn attempt(&self) -> impl Future<Output = Result<u32, OpError>> + Send + 'static {
        let n = self.calls.hit();
        let step = *self.steps.get(n - 1).unwrap_or_else(|| panic!("the script has no attempt {n}"));
        self.live.lock().unwrap_or_else(PoisonError::into_inner).insert(n);
        let live = Live(Arc::clone(&self.live), n);
        async move {
            let _live = live;
            tokio::task::yield_now().await;
            if step.ms > 0 {
                tokio::time::sleep(ms(step.ms)).await;
            }
            if step.ok { Ok(u32::try_from(n).unwrap()) } else { Err(OpError::Retryable("scripted")) }
        }
    }

    /// The attempts whose futures exist.
    fn live(&self) -> BTreeSet<usize> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

// ---------------------------------------------------------------------------
// Budgets that count their grants and releases.

/// Wraps a budget: counts its grants and the releases of the attempts it
/// granted (the inner budget's own release runs first), and denies once
/// `limit` grants were made.
#[derive(Clone)]
struct Tally {
    name: &'static str,
    inner: Arc<dyn Budget>,
    limit: usize,
    allowed: Counter,
    released: Counter,
}

impl Tally {
    fn new(name: &'static str, inner: impl Budget, limit: usize) -> Self {
        Self { name, inner: Arc::new(inner), limit, allowed: Counter::new(), released: Counter::new() }
    }

    /// Grants not yet released.
    fn outstanding(&self) -> usize {
        let (allowed, released) = (self.allowed.get(), self.released.get());
        assert!(released <= allowed, "{}: released {released} > granted {allowed}", self.name);
        allowed - released
    }
}

impl Budget for Tally {
    fn allow_attempt(&self, key: &PolicyKey, attempt: u32, kind: AttemptKind, budget: &BudgetRef) -> Decision {
        if self.allowed.get() >= self.limit {
            return Decision::deny();
        }
        let decision = self.inner.allow_attempt(key, attempt, kind, budget);
        if !decision.allowed() {
            // The inner budgets here attach no release to a denial.
            return decision;
        }
        self.allowed.hit();
        let mut inner = decision.into_release();
        let released = self.released.clone();
        Decision::allow_with_release(move || {
            inner.run();
            released.hit();
        })
    }
}

// ---------------------------------------------------------------------------
// A custom sleeper whose sleeps are counted.

/// Sleeps on tokio's timer; counts the sleeps it made and those dropped
/// (finished or cancelled).
#[derive(Clone, Default)]
struct CountingSleeper {
    made: Counter,
    dropped: Counter,
}

/// Counts a sleep's drop.
struct Dropped(Counter);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.hit();
    }
}

impl Sleeper for CountingSleeper {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        self.made.hit();
        let dropped = Dropped(self.dropped.clone());
        Box::pin(async move {
            let _dropped = dropped;
            tokio::time::sleep(duration).await;
        })
    }
}

impl CountingSleeper {
    /// Sleeps not dropped yet.
    fn pending(&self) -> usize {
        self.made.get() - self.dropped.get()
    }
}

// ---------------------------------------------------------------------------
// An observer that logs everything and hands out scopes.

thread_local! {
    /// How many observer scopes are entered on this thread.
    static DEPTH: Cell<i64> = const { Cell::new(0) };
}

fn depth() -> i64 {
    DEPTH.with(Cell::get)
}

/// An observer scope: counts its entries on the thread and its own drop.
struct Scope(Counter);

impl Enter for Scope {
    fn enter(&self) {
        DEPTH.with(|d| d.set(d.get() + 1));
    }

    fn exit(&self) {
        DEPTH.with(|d| d.set(d.get() - 1));
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.0.hit();
    }
}

/// `RecordingObserver` plus a count of every callback (`on_attempt_start`
/// included) and call and attempt scopes.
#[derive(Clone, Default)]
struct Watch {
    log: RecordingObserver,
    events: Counter,
    made: Counter,
    dropped: Counter,
}

impl Watch {
    fn scope(&self) -> Arc<dyn Enter> {
        self.made.hit();
        Arc::new(Scope(self.dropped.clone()))
    }

    /// Every callback so far: how many, and the log's lines.
    fn heard(&self) -> (usize, Vec<String>) {
        (self.events.get(), self.log.log())
    }

    fn ends(&self) -> usize {
        self.log.count("success") + self.log.count("failure")
    }
}

impl Observer for Watch {
    fn on_start(&self, key: &PolicyKey, policy: Option<&Policy>) {
        self.events.hit();
        self.log.on_start(key, policy);
    }

    fn on_attempt_start(&self, key: &PolicyKey, attempt: &Attempt) {
        self.events.hit();
        self.log.on_attempt_start(key, attempt);
    }

    fn on_attempt(&self, key: &PolicyKey, record: &AttemptRecord) {
        self.events.hit();
        self.log.on_attempt(key, record);
    }

    fn on_hedge_spawn(&self, key: &PolicyKey, record: &AttemptRecord) {
        self.events.hit();
        self.log.on_hedge_spawn(key, record);
    }

    fn on_hedge_cancel(&self, key: &PolicyKey, record: &AttemptRecord, reason: &str) {
        self.events.hit();
        self.log.on_hedge_cancel(key, record, reason);
    }

    fn on_budget_decision(&self, event: &recourse::budget::BudgetDecisionEvent) {
        self.events.hit();
        self.log.on_budget_decision(event);
    }

    fn on_success(&self, key: &PolicyKey, timeline: &Timeline) {
        self.events.hit();
        self.log.on_success(key, timeline);
    }

    fn on_failure(&self, key: &PolicyKey, timeline: &Timeline) {
        self.events.hit();
        self.log.on_failure(key, timeline);
    }

    fn on_circuit_change(&self, key: &PolicyKey, transition: Transition) {
        self.events.hit();
        self.log.on_circuit_change(key, transition);
    }

    fn on_policy_error(&self, key: &PolicyKey, policy: &Policy, error: &str) {
        self.events.hit();
        self.log.on_policy_error(key, policy, error);
    }

    fn call_scope(&self, _: &PolicyKey) -> Option<Arc<dyn Enter>> {
        Some(self.scope())
    }

    fn attempt_scope(&self, _: &PolicyKey, _: &Attempt) -> Option<Arc<dyn Enter>> {
        Some(self.scope())
    }
}

// ---------------------------------------------------------------------------
// Call forms.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    Call,
    Key,
    Fn,
    Mut,
}

impl Form {
    const ALL: [Self; 4] = [Self::Call, Self::Key, Self::Fn, Self::Mut];

    /// The policy key the form calls (the macro forms' keys are declared in
    /// tests/recourse.toml; each configuration's policy replaces the
    /// catalog's at run time).
    fn key(self) -> &'static str {
        match self {
            Self::Call => "svc.Cancel",
            Self::Key => "users.Update",
            Self::Fn => "users.Get",
            Self::Mut => "hedge.Sequential",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Call => "executor.call",
            Self::Key => "key!",
            Self::Fn => "#[recourse] fn",
            Self::Mut => "#[recourse] &mut self",
        }
    }
}

#[recourse(policy = "users.Get", executor = executor)]
async fn annotated(executor: &Executor, script: &Script) -> Result<u32, OpError> {
    script.attempt().await
}

/// The `&mut self` form: attempts run one at a time (never hedged).
struct Runner {
    script: Script,
}

impl Runner {
    #[recourse(policy = "hedge.Sequential", executor = executor)]
    async fn run(&mut self, executor: &Executor) -> Result<u32, OpError> {
        self.script.attempt().await
    }
}

/// The call in `form`, boxed: every call of a form goes through this one
/// function, so a warm-up and the call under test share the call site (and
/// its resolution cache).
fn call_in<'a>(
    form: Form,
    executor: &'a Executor,
    script: &'a Script,
    runner: &'a mut Runner,
) -> Pin<Box<dyn Future<Output = Result<u32, OpError>> + 'a>> {
    match form {
        Form::Call => Box::pin(executor.call(Form::Call.key(), || script.attempt())),
        Form::Key => Box::pin(executor.call(recourse::key!("users.Update"), || script.attempt())),
        Form::Fn => Box::pin(annotated(executor, script)),
        Form::Mut => Box::pin(runner.run(executor)),
    }
}

/// Who watches the call, and whether the key's resolution is cached.
#[derive(Debug, Clone, Copy)]
struct Mode {
    observe: bool,
    capture: bool,
    /// One call of the same form ran first: the call under test starts from
    /// the cached resolution (the plain and lean starts need it).
    warm: bool,
}

const MODES: [Mode; 8] = {
    let mut modes = [Mode { observe: false, capture: false, warm: false }; 8];
    let mut i = 0;
    while i < 8 {
        modes[i] = Mode { observe: i & 1 != 0, capture: i & 2 != 0, warm: i & 4 != 0 };
        i += 1;
    }
    modes
};

impl Mode {
    fn name(self) -> String {
        let watch = match (self.observe, self.capture) {
            (false, false) => "quiet",
            (true, false) => "observer",
            (false, true) => "capture",
            (true, true) => "observer+capture",
        };
        format!("{watch}, {}", if self.warm { "warm" } else { "cold" })
    }
}

// ---------------------------------------------------------------------------
// Configurations.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breakers {
    None,
    /// Threshold 1: a verdict from a dropped call would open it.
    Closed,
    /// Tripped and cooled before the call: the call is the half-open probe.
    HalfOpen,
}

struct Config {
    name: &'static str,
    policy: fn(&'static str) -> Policy,
    steps: &'static [Step],
    /// A counting retry budget `rb`.
    retry_budget: bool,
    /// A counting hedge budget `hb` granting at most this many hedges.
    hedge_budget: Option<usize>,
    /// A token bucket `tb` of this capacity (no refill) as the retry budget.
    bucket: Option<u64>,
    breaker: Breakers,
    /// A custom sleeper (tokio's sleep, counted) instead of the default.
    sleeper: bool,
    /// Whether the closure forms race attempts (the sequential form never does).
    hedged: bool,
    /// Attempts a complete call runs: in the closure forms, in the
    /// sequential form.
    ran: [usize; 2],
}

const BASE: Config = Config {
    name: "",
    policy: |key| Policy::builder(key).build(),
    steps: &[],
    retry_budget: false,
    hedge_budget: None,
    bucket: None,
    breaker: Breakers::None,
    sleeper: false,
    hedged: false,
    ran: [0, 0],
};

/// The breaker's cooldown in the half-open configuration.
const COOLDOWN: Duration = Duration::from_millis(100);

const RETRY: Config = Config {
    name: "retry",
    // Defaults apart from the attempts: jittered default backoff (seeded).
    policy: |key| Policy::builder(key).max_attempts(3).build(),
    steps: &[fail(5), fail(5), pass(5)],
    ran: [3, 3],
    ..BASE
};

const BACKOFF: Config = Config {
    name: "retry with backoff",
    policy: |key| {
        Policy::builder(key).max_attempts(4).backoff(ms(10), ms(100), 2.0).jitter(Jitter::None).id("cancel.v1").build()
    },
    steps: &[fail(5), fail(5), fail(5), pass(5)],
    ran: [4, 4],
    ..BASE
};

const TIMEOUTS: Config = Config {
    name: "attempt and overall timeouts",
    policy: |key| {
        Policy::builder(key)
            .max_attempts(3)
            .timeout_per_attempt(ms(20))
            .overall_timeout(ms(500))
            .backoff(ms(10), ms(100), 2.0)
            .jitter(Jitter::None)
            .build()
    },
    // The first attempt is cut at 20 ms.
    steps: &[pass(50), fail(5), pass(5)],
    ran: [3, 3],
    ..BASE
};

/// Two groups: every attempt of the first fails (the last at 120 ms); the
/// second's primary wins at 30 ms and its two hedges are cancelled.
const HEDGE_STEPS: &[Step] = &[fail(50), fail(15), fail(100), pass(30), fail(100), fail(100)];

fn hedged_policy(key: &'static str) -> Policy {
    Policy::builder(key)
        .max_attempts(2)
        .max_hedges(2)
        .hedge_delay(ms(10))
        .backoff(ms(10), ms(100), 2.0)
        .jitter(Jitter::None)
        .build()
}

const HEDGE_DELAY: Config = Config {
    name: "hedging, fixed delay",
    policy: hedged_policy,
    steps: HEDGE_STEPS,
    hedged: true,
    ran: [6, 2],
    ..BASE
};

const HEDGE_TRIGGER: Config = Config {
    name: "hedging, trigger",
    policy: |key| {
        Policy::builder(key)
            .max_attempts(2)
            .max_hedges(1)
            .hedge_delay(ms(10))
            .hedge_trigger("immediate")
            .backoff(ms(10), ms(100), 2.0)
            .jitter(Jitter::None)
            .build()
    },
    // Group 1: both fail (10 ms, 40 ms); group 2: the primary wins at 20 ms.
    steps: &[fail(40), fail(10), pass(20), fail(60)],
    hedged: true,
    ran: [4, 2],
    ..BASE
};

const BUDGETS: Config = Config {
    name: "retry and hedge budgets",
    policy: |key| PolicyBuilder::from_policy(hedged_policy(key)).budget("rb").hedge_budget("hb").build(),
    steps: HEDGE_STEPS,
    retry_budget: true,
    // Group 1's two hedges are granted, group 2's are denied.
    hedge_budget: Some(2),
    hedged: true,
    ran: [4, 2],
    ..BASE
};

const BUCKET: Config = Config {
    name: "token bucket",
    policy: |key| {
        Policy::builder(key).max_attempts(5).budget("tb").backoff(ms(10), ms(100), 2.0).jitter(Jitter::None).build()
    },
    // Three tokens: the fourth attempt is denied and the call ends with the
    // third's error.
    steps: &[fail(5), fail(5), fail(5)],
    bucket: Some(3),
    ran: [3, 3],
    ..BASE
};

const BREAKER_CLOSED: Config = Config {
    name: "breaker, closed",
    policy: |key| {
        Policy::builder(key)
            .max_attempts(3)
            .circuit(1, COOLDOWN)
            .backoff(ms(10), ms(100), 2.0)
            .jitter(Jitter::None)
            .build()
    },
    steps: &[fail(5), fail(5), pass(5)],
    breaker: Breakers::Closed,
    ran: [3, 3],
    ..BASE
};

const BREAKER_HALF_OPEN: Config =
    Config { name: "breaker, half-open probe", breaker: Breakers::HalfOpen, ..BREAKER_CLOSED };

const FAILURE_RATE_HALF_OPEN: Config = Config {
    name: "failure-rate breaker, half-open probe",
    // One failed call in the window is enough to open it.
    policy: |key| {
        Policy::builder(key)
            .max_attempts(3)
            .circuit_failure_rate(0.5, Duration::from_secs(10), 1, COOLDOWN)
            .backoff(ms(10), ms(100), 2.0)
            .jitter(Jitter::None)
            .build()
    },
    ..BREAKER_HALF_OPEN
};

const CUSTOM_SLEEPER: Config = Config {
    name: "custom sleeper, overall timeout",
    policy: |key| {
        Policy::builder(key)
            .max_attempts(3)
            .overall_timeout(ms(500))
            .backoff(ms(10), ms(100), 2.0)
            .jitter(Jitter::None)
            .build()
    },
    steps: &[fail(5), fail(5), pass(5)],
    sleeper: true,
    ran: [3, 3],
    ..BASE
};

// ---------------------------------------------------------------------------
// One run of one configuration.

struct Fixture {
    config: &'static Config,
    form: Form,
    executor: Executor,
    script: Script,
    tallies: Vec<Tally>,
    bucket: Option<(Arc<TokenBucket>, u64)>,
    watch: Option<Watch>,
    sleeper: Option<CountingSleeper>,
    capture: bool,
    captured: Arc<Mutex<Option<Timeline>>>,
}

impl Fixture {
    /// Builds the executor (inside the runtime: breakers and buckets read
    /// tokio's clock) and, for the half-open configuration, trips the
    /// breaker and waits out its cooldown.
    async fn new(config: &'static Config, form: Form, mode: Mode) -> Self {
        let mut builder =
            Executor::builder().policy((config.policy)(form.key())).jitter_seed(SEED).trigger("immediate", Immediate);
        let mut tallies = Vec::new();
        if config.retry_budget {
            tallies.push(Tally::new("rb", Unlimited, usize::MAX));
        }
        if let Some(limit) = config.hedge_budget {
            tallies.push(Tally::new("hb", Unlimited, limit));
        }
        // The warm-up takes a token of its own.
        let bucket = config.bucket.map(|tokens| tokens + u64::from(mode.warm));
        let bucket = bucket.map(|capacity| (Arc::new(TokenBucket::new(capacity, 0.0)), capacity));
        if let Some((bucket, _)) = &bucket {
            tallies.push(Tally::new("tb", Arc::clone(bucket), usize::MAX));
        }
        for tally in &tallies {
            builder = builder.budget(tally.name, tally.clone());
        }
        let watch = mode.observe.then(Watch::default);
        if let Some(watch) = &watch {
            builder = builder.observer(watch.clone());
        }
        let sleeper = config.sleeper.then(CountingSleeper::default);
        if let Some(sleeper) = &sleeper {
            builder = builder.sleeper(sleeper.clone());
        }
        let fixture = Self {
            config,
            form,
            executor: builder.build(),
            script: Script::new(config.steps),
            tallies,
            bucket,
            watch,
            sleeper,
            capture: mode.capture,
            captured: Arc::default(),
        };
        if mode.warm {
            const WARM: &[Step] = &[pass(0), pass(0)];
            let warm = Script::new(WARM);
            let mut runner = Runner { script: warm.clone() };
            let warmed = call_in(form, &fixture.executor, &warm, &mut runner).await;
            assert!(warmed.is_ok(), "{warmed:?}");
        }
        if config.breaker == Breakers::HalfOpen {
            let tripped = fixture.executor.call(form.key(), || async { Err::<u32, _>(OpError::Fatal("trip")) }).await;
            assert!(matches!(tripped, Err(OpError::Fatal("trip"))), "{tripped:?}");
            assert_eq!(fixture.breaker().state(), State::Open);
            tokio::time::sleep(COOLDOWN).await;
            assert_eq!(fixture.breaker().state(), State::HalfOpen, "cooled down: the next call probes");
        }
        fixture
    }

    fn breaker(&self) -> Arc<dyn Breaker> {
        self.executor.circuits().get(&self.form.key().into()).expect("the key has a breaker")
    }

    /// The call under test, boxed (inside `recourse::capture` when the mode
    /// captures).
    fn start<'a>(&'a self, runner: &'a mut Runner) -> Pin<Box<dyn Future<Output = Result<u32, OpError>> + 'a>> {
        let call = call_in(self.form, &self.executor, &self.script, runner);
        if !self.capture {
            return call;
        }
        let slot = Arc::clone(&self.captured);
        Box::pin(async move {
            let (result, timeline) = recourse::capture(call).await;
            *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(timeline);
            result
        })
    }

    /// Whether the closure form races attempts here.
    fn hedged(&self) -> bool {
        self.config.hedged && self.form != Form::Mut
    }

    /// Whether every attempt that runs holds a grant of one of the tallies.
    fn every_attempt_budgeted(&self) -> bool {
        (self.config.retry_budget || self.config.bucket.is_some())
            && (!self.hedged() || self.config.hedge_budget.is_some())
    }

    /// Grants not yet released, over every tally.
    fn outstanding(&self) -> usize {
        self.tallies.iter().map(Tally::outstanding).sum()
    }

    fn grants(&self) -> Vec<(usize, usize)> {
        self.tallies.iter().map(|t| (t.allowed.get(), t.released.get())).collect()
    }

    /// What must hold between any two polls of the call.
    fn check_between_polls(&self, ctx: &str) {
        assert_eq!(recourse::attempt(), None, "{ctx}: an attempt scope was left set between polls");
        assert_eq!(depth(), 0, "{ctx}: an observer scope was left entered between polls");
        let live = self.script.live().len();
        let most = if self.hedged() { 1 + 2 } else { 1 };
        assert!(live <= most, "{ctx}: {live} attempts in flight");
        let outstanding = self.outstanding();
        if self.every_attempt_budgeted() {
            assert_eq!(outstanding, live, "{ctx}: a grant is outstanding exactly while its attempt runs");
        } else {
            assert!(outstanding <= live, "{ctx}: {outstanding} grants outstanding, {live} attempts running");
        }
        if let Some(watch) = &self.watch {
            let held = watch.made.get() - watch.dropped.get();
            assert!(held <= 1 + most, "{ctx}: {held} observer scopes held");
        }
        if let Some(sleeper) = &self.sleeper {
            let sleeping = sleeper.pending();
            assert!(sleeping <= 1, "{ctx}: {sleeping} backoff sleeps at once");
            assert!(sleeping == 0 || live == 0, "{ctx}: sleeping while an attempt runs");
        }
    }

    /// What must hold once nothing of the call is left, dropped or done.
    fn check_settled(&self, ctx: &str) {
        assert_eq!(self.script.live(), BTreeSet::new(), "{ctx}: an attempt's future outlived the call");
        for tally in &self.tallies {
            assert_eq!(tally.outstanding(), 0, "{ctx}: {}: every grant released exactly once", tally.name);
        }
        if let Some((bucket, capacity)) = &self.bucket {
            let granted = self.tallies.iter().find(|t| t.name == "tb").expect("tb").allowed.get();
            let granted = u64::try_from(granted).expect("a small count");
            assert_eq!(bucket.available(), capacity - granted, "{ctx}: the bucket holds capacity - grants");
        }
        assert_eq!(recourse::attempt(), None, "{ctx}: an attempt scope was left set");
        assert_eq!(depth(), 0, "{ctx}: an observer scope was left entered");
        if let Some(watch) = &self.watch {
            assert_eq!(watch.made.get(), watch.dropped.get(), "{ctx}: an observer scope outlived the call");
        }
        if let Some(sleeper) = &self.sleeper {
            assert_eq!(sleeper.pending(), 0, "{ctx}: a backoff sleep outlived the call");
        }
    }

    /// The breaker admits the next call (as its probe when half-open), which
    /// runs and, succeeding, leaves the circuit closed.
    async fn check_breaker_admits(&self, ctx: &str) {
        if self.config.breaker == Breakers::None {
            return;
        }
        let expected = if self.config.breaker == Breakers::Closed { State::Closed } else { State::HalfOpen };
        // A call dropped before its first poll made no breaker yet.
        if let Some(breaker) = self.executor.circuits().get(&self.form.key().into()) {
            assert_eq!(breaker.state(), expected, "{ctx}: the dropped call gave the breaker no verdict");
        }
        let ran = Counter::new();
        let next = self
            .executor
            .call(self.form.key(), || {
                ran.hit();
                async { Ok::<u32, OpError>(7) }
            })
            .await;
        assert_eq!((next.ok(), ran.get()), (Some(7), 1), "{ctx}: the breaker admits the next call");
        assert_eq!(self.breaker().state(), State::Closed, "{ctx}: its success closes the circuit");
    }

    /// While the probe call is alive, the breaker refuses a second call.
    async fn check_probe_held(&self, ctx: &str) {
        let second = self.executor.call(self.form.key(), || async { Ok::<u32, OpError>(0) }).await;
        let refused = second.as_ref().err().and_then(OpError::recourse);
        assert!(
            matches!(
                refused,
                Some(recourse::Error::CircuitOpen { reason, .. }) if *reason == circuit_reason::HALF_OPEN_PROBE_LIMIT
            ),
            "{ctx}: the live probe holds the slot: {second:?}"
        );
    }
}

/// A fresh call inside a fresh `recourse::capture` is the one captured, and
/// a capture around no call captures nothing: no stale capture state on the
/// thread.
async fn check_fresh_capture(ctx: &str) {
    let fresh = Executor::builder()
        .policy(Policy::builder("fresh.Call").max_attempts(2).constant_backoff(ms(1)).jitter(Jitter::None).build())
        .build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(fresh.call("fresh.Call", || {
        let n = calls.hit();
        async move { if n < 2 { Err(OpError::Retryable("fresh")) } else { Ok(n) } }
    }))
    .await;
    assert_eq!(result.ok(), Some(2), "{ctx}");
    assert_eq!(timeline.key, PolicyKey::parse("fresh.Call"), "{ctx}: a fresh capture captures its own call");
    assert_eq!(timeline.attempts.len(), 2, "{ctx}");
    let ((), empty) = recourse::capture(async {}).await;
    assert!(empty.is_empty(), "{ctx}: a capture around no call captured {empty:?}");
    assert_eq!(recourse::attempt(), None, "{ctx}");
}

// ---------------------------------------------------------------------------
// The harness.

/// Waits for the wake-up the last poll registered: with nothing else to
/// run, paused time jumps to the next timer. A pending poll that registered
/// no wake-up would wait forever; the watchdog reports it.
async fn woken(ctx: &str) {
    /// Far beyond any timer of the configurations.
    const WATCHDOG: Duration = Duration::from_secs(3600);
    let mut first = true;
    let wait = poll_fn(|_| if std::mem::take(&mut first) { Poll::Pending } else { Poll::Ready(()) });
    // Polled first, so the watchdog's own wake-up is not taken for the call's.
    let watchdog = tokio::time::sleep(WATCHDOG);
    tokio::select! {
        biased;
        () = watchdog => panic!("{ctx}: a pending poll registered no wake-up"),
        () = wait => {}
    }
}

/// Polls `call` up to `limit` times, each poll after the previous one's
/// wake-up, running `between` after every pending poll; `Some((polls,
/// output))` when it completed.
async fn poll_times<F: Future + ?Sized>(
    mut call: Pin<&mut F>,
    limit: usize,
    ctx: &str,
    mut between: impl FnMut(),
) -> Option<(usize, F::Output)> {
    for polls in 1..=limit {
        if polls > 1 {
            woken(ctx).await;
        }
        if let Poll::Ready(output) = poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
            return Some((polls, output));
        }
        between();
    }
    None
}

/// Where the drops happened.
#[derive(Debug, Default)]
struct Coverage {
    /// Cancellation points exercised (`N` = 0 included).
    points: usize,
    /// Attempts (by creation order) whose future was alive at some drop.
    live: BTreeSet<usize>,
    /// The most attempts alive at one drop.
    most_live: usize,
    /// Drops after an attempt had run, with none running (a backoff).
    between_attempts: usize,
}

/// Runs the call to completion, counting its polls.
fn complete(config: &'static Config, form: Form, mode: Mode) -> (usize, usize) {
    let ctx = format!("{} / {} / {} / complete", config.name, form.name(), mode.name());
    paused_runtime().block_on(async {
        let fx = Fixture::new(config, form, mode).await;
        let mut runner = Runner { script: fx.script.clone() };
        let ends_before = fx.watch.as_ref().map_or(0, Watch::ends);
        let mut call = fx.start(&mut runner);
        let (polls, _result) =
            poll_times(call.as_mut(), 100_000, &ctx, || fx.check_between_polls(&ctx)).await.expect("completes");
        drop(call);
        fx.check_settled(&ctx);
        let attempts = fx.script.calls.get();
        assert_eq!(attempts, config.ran[usize::from(form == Form::Mut)], "{ctx}: attempts of a complete call");
        if let Some(watch) = &fx.watch {
            assert_eq!(watch.ends() - ends_before, 1, "{ctx}: one end event: {:?}", watch.log.log());
        }
        if fx.capture {
            let timeline = fx.captured.lock().unwrap().take().expect("captured");
            assert_eq!(timeline.key, PolicyKey::parse(form.key()), "{ctx}");
            assert!(!timeline.attempts.is_empty(), "{ctx}");
        }
        if config.breaker != Breakers::None {
            assert_eq!(fx.breaker().state(), State::Closed, "{ctx}: the call succeeded");
        }
        (polls, attempts)
    })
}

/// Polls the call `n` times, drops it and checks that nothing of it is
/// left or arrives later.
fn drop_after(config: &'static Config, form: Form, mode: Mode, n: usize, coverage: &mut Coverage) {
    let ctx = format!("{} / {} / {} / dropped after {n} polls", config.name, form.name(), mode.name());
    paused_runtime().block_on(async {
        let fx = Fixture::new(config, form, mode).await;
        let mut runner = Runner { script: fx.script.clone() };
        let ends_before = fx.watch.as_ref().map_or(0, Watch::ends);
        let mut call = fx.start(&mut runner);
        let done = poll_times(call.as_mut(), n, &ctx, || fx.check_between_polls(&ctx)).await;
        assert!(done.is_none(), "{ctx}: completed early");

        let live = fx.script.live();
        coverage.points += 1;
        coverage.most_live = coverage.most_live.max(live.len());
        if live.is_empty() && fx.script.calls.get() > 0 {
            coverage.between_attempts += 1;
        }
        coverage.live.extend(live);

        let mut ends_expected = ends_before;
        if config.breaker == Breakers::HalfOpen && n > 0 {
            fx.check_probe_held(&ctx).await;
            ends_expected += 1;
        }
        // The drop, with everything heard so far.
        let heard = fx.watch.as_ref().map(Watch::heard);
        let grants = fx.grants();
        drop(call);

        fx.check_settled(&ctx);
        if let Some(watch) = &fx.watch {
            assert_eq!(watch.heard(), heard.clone().unwrap(), "{ctx}: an event during the drop");
            assert_eq!(watch.ends(), ends_expected, "{ctx}: a dropped call has no end event");
        }
        // Time moves on: no timer of the call fires, nothing is heard, no
        // grant moves.
        tokio::time::sleep(Duration::from_secs(10)).await;
        if let Some(watch) = &fx.watch {
            assert_eq!(watch.heard(), heard.unwrap(), "{ctx}: an event arrived after the drop");
        }
        let released: Vec<_> = grants.iter().map(|&(allowed, _)| (allowed, allowed)).collect();
        assert_eq!(fx.grants(), released, "{ctx}: grants after the drop");
        fx.check_settled(&ctx);
        check_fresh_capture(&ctx).await;
        fx.check_breaker_admits(&ctx).await;
    });
}

/// Every cancellation point of `config`, in every form and mode; prints and
/// returns the count.
fn every_cancellation_point(config: &'static Config) -> usize {
    let mut total = 0;
    let mut report = String::new();
    for form in Form::ALL {
        let _ = write!(report, "\n  {:<22}", form.name());
        for mode in MODES {
            let (polls, attempts) = complete(config, form, mode);
            let mut coverage = Coverage::default();
            for n in 0..polls {
                drop_after(config, form, mode, n, &mut coverage);
            }
            let ctx = format!("{} / {} / {}", config.name, form.name(), mode.name());
            assert_eq!(coverage.points, polls, "{ctx}");
            let ran: BTreeSet<usize> = (1..=attempts).collect();
            assert_eq!(coverage.live, ran, "{ctx}: the call was dropped inside every attempt that ran");
            assert!(coverage.between_attempts > 0, "{ctx}: the call was dropped between attempts");
            if config.hedged && form != Form::Mut {
                assert!(coverage.most_live >= 2, "{ctx}: the call was dropped with attempts racing");
            }
            if !mode.observe && !mode.capture {
                let _ = write!(report, "  {}:", if mode.warm { "warm" } else { "cold" });
            }
            let _ = write!(report, " {:>2}", coverage.points);
            total += coverage.points;
        }
    }
    println!(
        "cancellation points, {}: {total} (per form, cold and warm cache: quiet, observer, capture, both){report}",
        config.name
    );
    total
}

#[test]
fn retry() {
    every_cancellation_point(&RETRY);
}

#[test]
fn retry_with_backoff() {
    every_cancellation_point(&BACKOFF);
}

#[test]
fn attempt_and_overall_timeouts() {
    every_cancellation_point(&TIMEOUTS);
}

#[test]
fn hedging_with_a_fixed_delay() {
    every_cancellation_point(&HEDGE_DELAY);
}

#[test]
fn hedging_with_a_trigger() {
    every_cancellation_point(&HEDGE_TRIGGER);
}

#[test]
fn retry_and_hedge_budgets() {
    every_cancellation_point(&BUDGETS);
}

#[test]
fn token_bucket() {
    every_cancellation_point(&BUCKET);
}

#[test]
fn breaker_closed() {
    every_cancellation_point(&BREAKER_CLOSED);
}

#[test]
fn breaker_half_open_probe() {
    every_cancellation_point(&BREAKER_HALF_OPEN);
}

#[test]
fn failure_rate_breaker_half_open_probe() {
    every_cancellation_point(&FAILURE_RATE_HALF_OPEN);
}

#[test]
fn custom_sleeper_with_an_overall_timeout() {
    every_cancellation_point(&CUSTOM_SLEEPER);
}

//! The engine: every decision a call makes, in one order, for every call
//! form (DESIGN §6.1). It is not generic over the operation: the driver
//! (`drive.rs`) polls the operation's futures and hands each attempt's
//! result to the engine as an erased error (`&dyn ErrorView`), so the
//! decisions are compiled once, not once per annotated function.
//!
//! A call's steps: [`Engine::begin`] (resolution, breaker admission, the
//! first attempt's budget gate), then per attempt [`Engine::next`] (the
//! budget gate and the attempt's plan), the attempt itself, and
//! [`Engine::succeeded`] or [`Engine::failed`] (release, classify, record,
//! decide: end, or back off and go on). A hedged retry group (`group.rs`)
//! plans, concludes and cancels its attempts through the same functions.
//!
//! The engine is generic over its [`Watcher`] only: [`Quiet`] when nobody
//! listens, [`Recording`] when a capture or an observer does. A call whose
//! resolution is *lean* (nothing to time, break, hedge or record) starts
//! without taking a reference to its resolution, and resolves only if its
//! first attempt fails; that is state (`res` is `None`), not another loop.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::attempt::{Gate, Plan, arm};
use super::backoff::next_backoff;
use super::record::{Quiet, Recording, Watcher};
use super::resolve::{BudgetSlot, PolicyNote, Res, Source};
use super::{Inner, SleepFuture};
use crate::budget::{AttemptKind, BudgetDecisionEvent, Release, reason};
use crate::circuit::{self, Breaker};
use crate::classify::{ErrorView, Outcome, OutcomeKind};
use crate::error::{Component, Error, PanicError};
use crate::observe::{self, Attempt, AttemptRecord};
use crate::policy::{Policy, PolicyKey};

/// The reason of an attempt cut by a deadline.
const DEADLINE_REASON: &str = "context_deadline_exceeded";

/// A backoff in progress (see [`Engine::pause`]): `Err` when a custom
/// sleeper overran the overall deadline.
pub(crate) struct Pause<'t> {
    wait: Wait,
    /// The default sleep, or the deadline a custom sleep races.
    timer: Pin<&'t mut Option<Sleep>>,
}

enum Wait {
    /// A zero backoff.
    Nothing,
    /// The default sleeper: the timer.
    Timer,
    /// A custom sleeper's sleep, raced against the deadline on the timer
    /// (reporting this overall timeout) when the call has one.
    Custom(SleepFuture, Option<Duration>),
}

impl Future for Pause<'_> {
    type Output = Result<(), Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let timer = this.timer.as_mut().as_pin_mut();
        match &mut this.wait {
            Wait::Nothing => Poll::Ready(Ok(())),
            Wait::Timer => timer.map_or(Poll::Ready(Ok(())), |timer| timer.poll(cx).map(Ok)),
            Wait::Custom(sleep, overall) => {
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(()));
                }
                match (timer, *overall) {
                    (Some(timer), Some(timeout)) => timer.poll(cx).map(|()| Err(Error::Timeout { timeout })),
                    _ => Poll::Pending,
                }
            }
        }
    }
}

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Run the planned attempt ([`Engine::scope`]).
    Attempt,
    /// Run a hedged retry group whose primary is the planned attempt.
    Group,
    /// Wait this long, then ask [`Engine::next`].
    Sleep(Duration),
    /// The call is over (recorded and told): return the operation's last
    /// error.
    Last,
    /// The budget denied the first attempt, for this reason: the call ends
    /// with [`Error::BudgetDenied`] (convert it and end the call with
    /// [`Engine::fail`]).
    Denied(Cow<'static, str>),
    /// The call is over with recourse's own error: convert it and end the
    /// call with [`Engine::fail`]. Boxed, so that `Next` stays small on
    /// the retry path: only a mid-call resolution failure or a classifier
    /// panic ends a call this way.
    Fail(Box<Error>),
}

/// A finished attempt, as the driver hands it over.
#[derive(Clone, Copy)]
pub(crate) enum Attempted<'e> {
    /// It returned this error.
    Err(&'e dyn ErrorView),
    /// Its deadline passed; this is [`Engine::cut_error`] converted into
    /// the operation's error type.
    Cut(&'e dyn ErrorView),
}

/// One attempt, concluded (released, classified, recorded).
#[derive(Debug)]
pub(crate) enum Concluded {
    /// It succeeded.
    Success,
    /// It failed with this classification; the call may go on.
    Failure(Outcome),
    /// It ended the call: with the attempt's own (converted) error when
    /// `None` (the overall deadline), else with this error.
    Over(Option<Error>),
}

/// What a finished call tells its breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The call succeeded.
    Success,
    /// It failed: a non-retryable error, or out of attempts or time for them.
    Failure,
    /// It ended without saying anything about the dependency (abort,
    /// budget denial, overall deadline, recovered panic).
    None,
}

impl Verdict {
    fn of(kind: OutcomeKind) -> Self {
        match kind {
            OutcomeKind::Success => Self::Success,
            OutcomeKind::Retryable | OutcomeKind::NonRetryable => Self::Failure,
            OutcomeKind::Abort | OutcomeKind::Unknown => Self::None,
        }
    }
}

/// One call in progress, watched by `W`.
pub(crate) struct Core<'x, W> {
    inner: &'x Inner,
    source: Source<'x>,
    /// `None` while a lean call's first attempt runs (see the module docs).
    res: Option<Res>,
    /// The attempt in progress, updated in place for each retry (a plan
    /// rebuilt and moved per attempt costs more than the attempt's
    /// bookkeeping); `planned` while it is between [`Engine::next`] and its
    /// conclusion.
    plan: Plan,
    planned: bool,
    deadline: Option<Instant>,
    index: u32,
    /// The backoff base before jitter, in nanoseconds (a `Duration` would
    /// take twice the room in every call's future).
    base: u64,
    /// The breaker that admitted the call, until its verdict is given.
    /// Taken the moment the breaker admits the call: exactly one verdict
    /// (success, failure, or a released probe) reaches the breaker, and a
    /// call dropped (or unwound) before its verdict hands a half-open probe
    /// back (DESIGN §6.4, see the `Drop` impl).
    circuit: Option<Arc<dyn Breaker>>,
    /// Whether the call is the breaker's half-open probe.
    probe: bool,
    hedging: bool,
    watch: W,
}

/// A call's engine: quiet inline, recording boxed (a recorded call
/// allocates its timeline anyway, and the call's future stays small).
#[allow(clippy::large_enum_variant, reason = "the quiet engine is the common case; boxing it would allocate per call")]
pub(crate) enum Engine<'x> {
    Quiet(Core<'x, Quiet>),
    Recording(Box<Core<'x, Recording<'x>>>),
}

impl std::fmt::Debug for Engine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let recording = matches!(self, Self::Recording(_));
        f.debug_struct("Engine").field("recording", &recording).finish_non_exhaustive()
    }
}

/// Runs `$body` with `$core` bound to the engine's core, whichever its
/// watcher.
macro_rules! each {
    ($engine:expr, $core:ident => $body:expr) => {
        match $engine {
            Engine::Quiet($core) => $body,
            Engine::Recording($core) => $body,
        }
    };
}

impl<'x> Engine<'x> {
    /// A quiet engine for a call that has not begun (see [`begin`](Self::begin)).
    #[inline]
    pub(crate) fn new(inner: &'x Inner, source: Source<'x>) -> Self {
        Self::Quiet(Core::new(inner, source, Quiet))
    }

    /// Starts the call, in place: its first attempt planned straight from
    /// the cache when the key is lean and nobody listens, else the full
    /// start (resolution, breaker, the first gate), recording when a
    /// capture or an observer listens. `Some(error)`: the call ends at
    /// once; hand the error to [`fail`](Self::fail). `sequential` calls
    /// (the `&mut` form) never hedge.
    #[inline]
    pub(crate) fn begin(&mut self, sequential: bool) -> Option<Error> {
        let Self::Quiet(core) = self else { unreachable!("a call begins once, quiet") };
        let (inner, source) = (core.inner, core.source);
        let capture = observe::capture_requested();
        if !capture {
            if source.is_plain(inner) {
                core.planned = true;
                return None;
            }
            // The first gate is taken while the cache entry is borrowed, so
            // the call holds no reference count (which every thread calling
            // the key would write).
            // The plan is written in place (moving a whole plan into the
            // engine costs more than writing its two fields).
            let lean = source.peek(inner, |res| {
                let res = res.filter(|res| res.lean)?;
                let retry = &res.policy.retry;
                let gate = inner.gate(source.key(), 0, AttemptKind::Retry, &retry.budget, &res.retry_budget).0;
                if !gate.allowed {
                    return Some(Err(gate.reason));
                }
                core.plan.release = gate.release;
                core.plan.attempt.policy_id.clone_from(&res.policy.id);
                core.planned = true;
                Some(Ok(()))
            });
            match lean {
                Some(Ok(())) => return None,
                Some(Err(reason)) => return Some(Error::BudgetDenied { reason }),
                None => {}
            }
        }
        self.start(capture, sequential)
    }

    /// Stands for a plain first attempt that ran before the engine existed
    /// (see `drive`): its failure is handed over next, as a lean call's.
    #[inline]
    pub(crate) fn ran_plain(&mut self) {
        each!(self, c => c.planned = true);
    }

    /// The full start, off the lean path.
    #[inline(never)]
    fn start(&mut self, capture: bool, sequential: bool) -> Option<Error> {
        let Self::Quiet(core) = self else { unreachable!("a call begins once, quiet") };
        let (inner, source) = (core.inner, core.source);
        let res = source.resolve(inner);
        if capture || inner.observer.is_some() {
            let watch = Recording::new(inner, source.key(), capture);
            let mut core = Box::new(Core::new(inner, source, watch));
            let failed = core.start(res, sequential);
            *self = Self::Recording(core);
            failed
        } else {
            core.start(res, sequential)
        }
    }

    /// The planned attempt's scope.
    #[inline]
    pub(crate) fn scope(&self) -> &Attempt {
        each!(self, c => &c.plan.attempt)
    }

    /// Plans the next attempt (after a backoff): its budget gate, then its
    /// scope and deadline. `last` is the previous attempt's error, which a
    /// budget denial ends the call with (DESIGN §6.2).
    #[inline]
    pub(crate) fn next(&mut self, last: Option<&dyn ErrorView>) -> Next {
        each!(self, c => c.next(last))
    }

    /// The planned attempt succeeded: the call is over.
    #[inline]
    pub(crate) fn succeeded(&mut self) {
        each!(self, c => c.succeeded());
    }

    /// The planned attempt failed: what now.
    #[inline]
    pub(crate) fn failed(&mut self, attempted: Attempted<'_>) -> Next {
        each!(self, c => c.failed(attempted))
    }

    /// The error for the planned attempt's passed deadline.
    pub(crate) fn cut_error(&self) -> Error {
        each!(self, c => c.cut_error(&c.plan))
    }

    /// Ends the call with recourse's own `error`, converted into `E` (the
    /// breaker hears nothing: DESIGN §6.4).
    pub(crate) fn fail<E: From<Error> + ErrorView>(&mut self, error: Error) -> E {
        let outcome = error.outcome();
        let error = E::from(error);
        each!(self, c => c.finish(Verdict::None, Some((&error, &outcome))));
        error
    }

    /// Whether the call keeps a failed attempt's error across the backoff
    /// (only a retry budget can end the call before the next attempt runs).
    #[inline]
    pub(crate) fn keeps_last(&self) -> bool {
        each!(self, c => c.res.as_ref().is_some_and(|res| !matches!(res.retry_budget, BudgetSlot::Unbudgeted)))
    }

    /// Waits out a backoff with the executor's sleeper, on `timer` unless a
    /// custom sleeper is installed. A custom sleeper may overrun the
    /// overall deadline: the call then ends with [`Error::Timeout`] (the
    /// default sleeper never does: no sleep that would cross the deadline
    /// is started).
    #[inline]
    pub(crate) fn pause<'t>(&self, duration: Duration, mut timer: Pin<&'t mut Option<Sleep>>) -> Pause<'t> {
        let (inner, deadline, overall) = each!(self, c => (c.inner, c.deadline, c.overall_timeout()));
        let wait = if duration.is_zero() {
            Wait::Nothing
        } else if let Some(sleeper) = inner.time.custom_sleeper() {
            if let Some(deadline) = deadline {
                arm(timer.as_mut(), deadline);
            }
            Wait::Custom(sleeper.sleep(duration), deadline.map(|_| overall))
        } else {
            arm(timer.as_mut(), Instant::now() + duration);
            Wait::Timer
        };
        Pause { wait, timer }
    }

    /// Whether the planned attempt runs as a hedged group.
    #[inline]
    pub(crate) fn hedged(&self) -> bool {
        each!(self, c => c.hedging)
    }

    // The hedge group's steps.

    /// Whether the planned attempt runs as a hedged group.
    pub(crate) fn res(&self) -> &Res {
        each!(self, c => c.res.as_ref().expect("a hedged call is resolved"))
    }

    pub(crate) fn take_plan(&mut self) -> Plan {
        each!(self, c => {
            c.planned = false;
            std::mem::replace(&mut c.plan, Plan::first(Gate::open(), None))
        })
    }

    pub(crate) fn plan_hedge(&mut self, hedge_index: u32) -> Option<Plan> {
        each!(self, c => c.plan_hedge(hedge_index))
    }

    pub(crate) fn conclude(&mut self, plan: Plan, attempted: Option<Attempted<'_>>, ran: Duration) -> Concluded {
        each!(self, c => c.conclude(plan, attempted, ran))
    }

    pub(crate) fn group_cut_error(&self, plan: &Plan) -> Error {
        each!(self, c => c.cut_error(plan))
    }

    pub(crate) fn cancelled(&mut self, plan: Plan, reason: &str) {
        each!(self, c => c.cancelled(plan, reason));
    }

    /// The group succeeded.
    pub(crate) fn group_succeeded(&mut self) {
        each!(self, c => c.finish(Verdict::Success, None));
    }

    /// The overall deadline cut an attempt: the call ends with `error`
    /// (the cut error, converted), and the breaker hears nothing.
    pub(crate) fn end_cut(&mut self, error: &dyn ErrorView) {
        each!(self, c => c.end_cut(error));
    }

    pub(crate) fn inner(&self) -> &'x Inner {
        each!(self, c => c.inner)
    }

    pub(crate) fn key(&self) -> &'x PolicyKey {
        each!(self, c => c.key())
    }

    /// After a failed group: end the call, or back off and go on.
    pub(crate) fn decide(&mut self, error: &dyn ErrorView, outcome: &Outcome) -> Next {
        each!(self, c => c.decide(error, outcome))
    }

    /// A hedge trigger panicked (recovered): no more hedges for the group.
    pub(crate) fn trigger_panicked(&mut self, message: String) {
        each!(self, c => c.watch.attribute("trigger_panic", || message.into()));
    }
}

impl<'x, W: Watcher> Core<'x, W> {
    #[inline]
    fn new(inner: &'x Inner, source: Source<'x>, watch: W) -> Self {
        Self {
            inner,
            source,
            res: None,
            plan: Plan::first(Gate::open(), None),
            planned: false,
            deadline: None,
            index: 0,
            base: 0,
            circuit: None,
            probe: false,
            hedging: false,
            watch,
        }
    }

    #[inline]
    fn key(&self) -> &'x PolicyKey {
        self.source.key()
    }

    fn policy(&self) -> &Policy {
        &self.res.as_ref().expect("resolved").policy
    }

    fn overall_timeout(&self) -> Duration {
        self.res.as_ref().map_or(Duration::ZERO, |res| res.policy.retry.overall_timeout)
    }

    /// The full start: records the resolution, asks the breaker, fixes the
    /// deadline and plans the first attempt. `Some(error)`: the call ends
    /// at once.
    fn start(&mut self, res: Result<Res, Error>, sequential: bool) -> Option<Error> {
        let key = self.key();
        let res = match res {
            Ok(res) => res,
            Err(error) => {
                self.watch.start(key, None, |_| {});
                match &error {
                    Error::NoClassifier { name } => {
                        self.watch.attribute("classifier_name", || name.clone().into());
                        self.watch.attribute("classifier_error", || "classifier_not_found".into());
                    }
                    Error::NoTrigger { name } => {
                        self.watch.attribute("trigger_error", || format!("{name} not found").into());
                    }
                    _ => {}
                }
                return Some(error);
            }
        };
        self.watch.start(key, Some(&res.policy), |t| {
            if let Some(PolicyNote::ProviderFailed(error, mode)) = &res.note {
                t.attributes.insert("policy_error", error.to_string());
                t.attributes.insert("policy_fallback", mode.as_str());
            }
            if let Some(name) = &res.fallback_from {
                t.attributes.insert("classifier_fallback", format!("{name} not found; default classifier used"));
            }
        });
        let mut hedging = res.policy.hedge.enabled && res.policy.hedge.max_hedges > 0 && res.trigger.is_some();
        if let Some(note) = &res.trigger_note {
            self.watch.attribute("trigger_fallback", || note.clone().into());
        }
        if hedging && sequential {
            hedging = false;
            self.watch
                .attribute("hedging_disabled", || "the function borrows mutably; attempts run one at a time".into());
        }
        if let Some(breaker) = &res.breaker {
            let decision = match self.inner.recover(Component::CircuitBreaker, key, || breaker.allow()) {
                Ok(decision) => decision,
                Err(panic) => return Some(Error::Panic(panic)),
            };
            // Guarded before anyone else runs: an observer that panics
            // below must not keep the probe slot (DESIGN §6.4).
            let probe = decision.allowed && decision.state == circuit::State::HalfOpen;
            if decision.allowed {
                self.circuit = Some(Arc::clone(breaker));
                self.probe = probe;
            }
            self.watch.circuit(key, decision.transition);
            self.watch.attribute("circuit_state", || decision.state.as_str().into());
            if !decision.allowed {
                return Some(Error::CircuitOpen { state: decision.state, reason: decision.reason });
            }
            if probe && hedging {
                hedging = false;
                self.watch.attribute("hedging_disabled", || "circuit half-open: one probe attempt at a time".into());
            }
        }
        let retry = &res.policy.retry;
        self.deadline = (!retry.overall_timeout.is_zero()).then(|| Instant::now() + retry.overall_timeout);
        self.base = nanos(retry.initial_backoff);
        self.hedging = hedging;
        self.plan.attempt.policy_id.clone_from(&res.policy.id);
        self.res = Some(res);
        match self.plan_attempt(None) {
            Next::Fail(error) => Some(*error),
            Next::Denied(reason) => Some(Error::BudgetDenied { reason }),
            _ => None,
        }
    }

    #[inline]
    fn next(&mut self, last: Option<&dyn ErrorView>) -> Next {
        if self.planned {
            return if self.hedging { Next::Group } else { Next::Attempt };
        }
        self.plan_attempt(last)
    }

    /// Asks the attempt's budget (every attempt, the first included).
    #[inline]
    fn gate(&mut self, kind: AttemptKind) -> Gate {
        let res = self.res.as_ref().expect("resolved");
        let (budget, slot) = match kind {
            AttemptKind::Retry => (&res.policy.retry.budget, &res.retry_budget),
            AttemptKind::Hedge => (&res.policy.hedge.budget, &res.hedge_budget),
        };
        let key = self.source.key();
        let (gate, mode) = self.inner.gate(key, self.index, kind, budget, slot);
        if let Some(mode) = mode {
            let index = self.index;
            self.watch.budget(|| BudgetDecisionEvent {
                key: key.clone(),
                attempt: index,
                kind,
                budget: budget.name.trim().to_owned(),
                cost: budget.cost,
                mode,
                allowed: gate.allowed,
                reason: gate.reason.clone(),
            });
        }
        gate
    }

    /// When the next attempt is cut off: its own timeout or the call's
    /// deadline, whichever comes first.
    #[inline]
    fn cutoff(&self) -> Option<Instant> {
        let retry = &self.res.as_ref().expect("resolved").policy.retry;
        // The clock is read only for a per-attempt deadline.
        let own = (!retry.timeout_per_attempt.is_zero()).then(|| Instant::now() + retry.timeout_per_attempt);
        match (own, self.deadline) {
            (Some(a), Some(d)) => Some(a.min(d)),
            (a, d) => a.or(d),
        }
    }

    /// Plans the next (primary) attempt in place.
    #[inline]
    fn replan(&mut self, release: Release) {
        let deadline = self.cutoff();
        let attempt = &mut self.plan.attempt;
        attempt.retry_index = self.index;
        attempt.hedge_index = 0;
        attempt.deadline = deadline;
        self.plan.release = release;
        self.planned = true;
    }

    /// A plan for an allowed hedge.
    fn make_plan(&self, hedge_index: u32, release: Release) -> Plan {
        let attempt = Attempt {
            retry_index: self.index,
            hedge_index,
            policy_id: self.plan.attempt.policy_id.clone(),
            deadline: self.cutoff(),
        };
        Plan { attempt, release }
    }

    /// Gates and plans the next attempt. A denial ends the call: with the
    /// previous attempt's error when there was one (DESIGN §6.2), else with
    /// [`Error::BudgetDenied`].
    #[inline]
    fn plan_attempt(&mut self, last: Option<&dyn ErrorView>) -> Next {
        let res = self.res.as_ref().expect("resolved");
        if matches!(res.retry_budget, BudgetSlot::Unbudgeted) {
            // Nothing to ask, nothing to release: no gate is built (moving
            // one through memory costs more than the rest of the plan).
            self.replan(Release::none());
            return self.planned(Cow::Borrowed(reason::NO_BUDGET));
        }
        let gate = self.gate(AttemptKind::Retry);
        if gate.allowed {
            self.replan(gate.release);
            return self.planned(gate.reason);
        }
        self.denied(gate.reason, last)
    }

    /// The watcher hears that the planned attempt starts.
    #[inline]
    fn planned(&mut self, reason: Cow<'static, str>) -> Next {
        self.watch.attempt_start(self.source.key(), &self.plan.attempt, reason);
        if self.hedging { Next::Group } else { Next::Attempt }
    }

    /// The budget denied the next attempt: the call ends (DESIGN §6.2).
    #[cold]
    fn denied(&mut self, reason: Cow<'static, str>, last: Option<&dyn ErrorView>) -> Next {
        let gate = Gate { allowed: false, reason, release: Release::none() };
        let inner = self.inner;
        let index = self.index;
        let outcome = Outcome::abort().with_reason(gate.reason.clone());
        let key = self.key();
        self.watch.attempt(key, None, || {
            let now = inner.now();
            AttemptRecord {
                budget_allowed: false,
                budget_reason: gate.reason.clone(),
                ..record(index, now, outcome.clone(), None)
            }
        });
        self.watch.attribute("budget_denied", || gate.reason.clone());
        match last {
            Some(error) => {
                self.finish(Verdict::None, Some((error, &outcome)));
                Next::Last
            }
            None => Next::Denied(gate.reason),
        }
    }

    /// Plans hedge `hedge_index` of the current group: asks the hedge
    /// budget (a denied hedge is recorded and simply not launched) and
    /// tells observers it is about to run.
    fn plan_hedge(&mut self, hedge_index: u32) -> Option<Plan> {
        let gate = self.gate(AttemptKind::Hedge);
        let (inner, index, key) = (self.inner, self.index, self.key());
        if !gate.allowed {
            self.watch.attempt(key, None, || {
                let now = inner.now();
                AttemptRecord {
                    is_hedge: true,
                    hedge_index,
                    budget_allowed: false,
                    budget_reason: gate.reason.clone(),
                    ..record(index, now, Outcome::abort().with_reason(gate.reason.clone()), None)
                }
            });
            return None;
        }
        let plan = self.make_plan(hedge_index, gate.release);
        self.watch.hedge_spawn(key, &plan.attempt, || AttemptRecord {
            is_hedge: true,
            hedge_index,
            ..record(index, inner.now(), Outcome::new(OutcomeKind::Unknown), None)
        });
        self.watch.attempt_start(key, &plan.attempt, gate.reason);
        Some(plan)
    }

    fn cut_error(&self, plan: &Plan) -> Error {
        let retry = &self.policy().retry;
        if self.cut_by_call(plan) {
            Error::Timeout { timeout: retry.overall_timeout }
        } else {
            Error::AttemptTimeout { timeout: retry.timeout_per_attempt }
        }
    }

    /// Whether the call's deadline (not the attempt's own) cuts `plan`.
    #[inline]
    fn cut_by_call(&self, plan: &Plan) -> bool {
        self.deadline.is_some() && plan.attempt.deadline == self.deadline
    }

    #[inline]
    fn succeeded(&mut self) {
        self.planned = false;
        // Before anything is published, so a caller that sees the result
        // also sees the release.
        self.plan.release.run();
        if self.res.is_none() {
            // A lean first attempt: nothing to record or tell.
            return;
        }
        record_attempt(&mut self.watch, self.inner, self.index, self.source.key(), &self.plan, None, Outcome::success);
        self.finish(Verdict::Success, None);
    }

    /// The planned attempt failed: release, classify, record, decide.
    #[inline]
    fn failed(&mut self, attempted: Attempted<'_>) -> Next {
        self.planned = false;
        self.plan.release.run();
        if self.res.is_none()
            && let Err(error) = self.resolve_after_lean()
        {
            return Next::Fail(Box::new(error));
        }
        let (inner, index, key) = (self.inner, self.index, self.source.key());
        if !W::RECORDS
            && let Attempted::Err(error) = attempted
        {
            // Nobody keeps the outcome: only its kind and backoff leave the
            // classifier's frame (a whole outcome moved through memory
            // costs more than the classification).
            let res = self.res.as_ref().expect("resolved");
            return match inner.classify_with(key, res.classifier.as_ref(), error, |o| (o.kind, o.backoff)) {
                Ok((kind, backoff)) => self.decide_with(kind, backoff, error, None),
                Err(panic) => Next::Fail(Box::new(Error::Panic(*panic))),
            };
        }
        // The outcome stays in this frame and is lent out.
        let outcome = match self.judge(&self.plan, attempted) {
            Ok(outcome) => outcome,
            Err(over) => {
                let (Attempted::Err(error) | Attempted::Cut(error)) = attempted;
                let outcome = over.outcome();
                record_attempt(&mut self.watch, inner, index, key, &self.plan, Some(error), || outcome.clone());
                return match over {
                    Over::Deadline => {
                        self.finish(Verdict::None, Some((error, &outcome)));
                        Next::Last
                    }
                    Over::Panic(panic) => Next::Fail(Box::new(Error::Panic(*panic))),
                };
            }
        };
        let (Attempted::Err(error) | Attempted::Cut(error)) = attempted;
        record_attempt(&mut self.watch, inner, index, key, &self.plan, Some(error), || outcome.clone());
        self.decide(error, &outcome)
    }

    /// A lean first attempt failed: now the call needs its resolution. If
    /// it stopped being lean meanwhile, the full start takes over from the
    /// attempt that ran.
    #[cold]
    fn resolve_after_lean(&mut self) -> Result<(), Error> {
        let res = self.source.resolve(self.inner)?;
        if res.lean {
            self.base = nanos(res.policy.retry.initial_backoff);
            self.res = Some(res);
            return Ok(());
        }
        if let Some(error) = self.start(Ok(res), false) {
            return Err(error);
        }
        // `start` planned a first attempt; the lean one stands for it.
        self.planned = false;
        self.plan.release.run();
        Ok(())
    }

    /// What a failed attempt's result means: its outcome, or why it ends
    /// the call.
    #[inline]
    fn judge(&self, plan: &Plan, attempted: Attempted<'_>) -> Result<Outcome, Over> {
        let res = self.res.as_ref().expect("resolved");
        match attempted {
            Attempted::Err(error) => {
                let outcome = self.inner.classify(self.key(), res.classifier.as_ref(), error).map_err(Over::Panic)?;
                Ok(match &res.fallback_from {
                    None => outcome,
                    Some(name) => with_fallback_note(outcome, name),
                })
            }
            Attempted::Cut(_) if self.cut_by_call(plan) => Err(Over::Deadline),
            Attempted::Cut(_) => Ok(Outcome::retryable().with_reason(DEADLINE_REASON)),
        }
    }

    /// Records a group's attempt that ran.
    fn record(&mut self, plan: &Plan, error: Option<&dyn ErrorView>, outcome: impl FnOnce() -> Outcome) {
        record_attempt(&mut self.watch, self.inner, self.index, self.source.key(), plan, error, outcome);
    }

    /// A group's attempt has reported: release, feed the latency tracker
    /// with how long it ran, classify, record.
    fn conclude(&mut self, mut plan: Plan, attempted: Option<Attempted<'_>>, ran: Duration) -> Concluded {
        plan.release.run();
        let res = self.res.as_ref().expect("resolved");
        if let Some(tracker) = &res.tracker {
            tracker.record(ran);
        }
        let Some(attempted) = attempted else {
            self.record(&plan, None, Outcome::success);
            return Concluded::Success;
        };
        let (Attempted::Err(error) | Attempted::Cut(error)) = attempted;
        match self.judge(&plan, attempted) {
            Ok(outcome) => {
                self.record(&plan, Some(error), || outcome.clone());
                Concluded::Failure(outcome)
            }
            Err(over) => {
                self.record(&plan, Some(error), || over.outcome());
                match over {
                    Over::Deadline => Concluded::Over(None),
                    Over::Panic(panic) => Concluded::Over(Some(Error::Panic(*panic))),
                }
            }
        }
    }

    /// Records an attempt still running that was dropped because another
    /// attempt of its group decided the call; dropping its plan releases
    /// its budget.
    fn cancelled(&mut self, plan: Plan, reason: &str) {
        let inner = self.inner;
        let key = self.key();
        self.watch.cancelled(
            key,
            || {
                let now = inner.now();
                AttemptRecord {
                    is_hedge: plan.attempt.is_hedge(),
                    hedge_index: plan.attempt.hedge_index,
                    ..record(plan.attempt.retry_index, now, Outcome::abort().with_reason("hedge_cancelled"), None)
                }
            },
            reason,
        );
        drop(plan);
    }

    /// After a failed attempt (or group): end the call, or back off and go
    /// on.
    #[inline]
    fn decide(&mut self, error: &dyn ErrorView, outcome: &Outcome) -> Next {
        self.decide_with(outcome.kind, outcome.backoff, error, Some(outcome))
    }

    /// [`decide`](Self::decide) from the outcome's kind and backoff; the
    /// whole outcome only when a watcher records it.
    #[inline]
    fn decide_with(
        &mut self,
        kind: OutcomeKind,
        backoff: Option<Duration>,
        error: &dyn ErrorView,
        outcome: Option<&Outcome>,
    ) -> Next {
        let res = self.res.as_ref().expect("resolved");
        let retry = &res.policy.retry;
        let Some(sleep) = self.inner.backoff(retry, self.index, kind, backoff, Duration::from_nanos(self.base)) else {
            self.end_failed(Verdict::of(kind), error, kind, outcome);
            return Next::Last;
        };
        // DESIGN §6.7: never sleep into the deadline; end now with the error
        // we have instead of waking up to a timeout.
        if let Some(deadline) = self.deadline
            && Instant::now() + sleep >= deadline
        {
            self.watch.attribute("deadline_stop", || "backoff would pass the overall deadline".into());
            self.end_failed(Verdict::Failure, error, kind, outcome);
            return Next::Last;
        }
        self.base = nanos(next_backoff(Duration::from_nanos(self.base), retry));
        self.watch.backoff(sleep);
        self.index += 1;
        Next::Sleep(sleep)
    }

    /// Ends a failed call (the quiet engine has no outcome to hand over).
    #[cold]
    fn end_failed(&mut self, verdict: Verdict, error: &dyn ErrorView, kind: OutcomeKind, outcome: Option<&Outcome>) {
        let stub;
        let outcome = match outcome {
            Some(outcome) => outcome,
            None => {
                stub = Outcome::new(kind);
                &stub
            }
        };
        self.finish(verdict, Some((error, outcome)));
    }

    fn end_cut(&mut self, error: &dyn ErrorView) {
        self.finish(Verdict::None, Some((error, &Outcome::abort().with_reason(DEADLINE_REASON))));
    }

    /// Gives the breaker its verdict (once) and ends the recording.
    #[inline]
    fn finish(&mut self, verdict: Verdict, error: Option<(&dyn ErrorView, &Outcome)>) {
        let key = self.key();
        if let Some(breaker) = self.circuit.take() {
            let probe = std::mem::take(&mut self.probe);
            // A breaker that panics here has admitted the call already; with
            // recovery on the panic is dropped, as the call's result stands.
            let transition = self
                .inner
                .recover(Component::CircuitBreaker, key, || match verdict {
                    Verdict::Success => breaker.record_success(),
                    Verdict::Failure => breaker.record_failure(),
                    Verdict::None => {
                        // Only a half-open probe holds a slot to hand back;
                        // a stray release would let an extra probe through.
                        if probe {
                            breaker.release_probe();
                        }
                        None
                    }
                })
                .unwrap_or(None);
            self.watch.circuit(key, transition);
        }
        let inner = self.inner;
        self.watch.finish(key, || inner.now(), error);
    }
}

impl<W> Drop for Core<'_, W> {
    #[inline]
    fn drop(&mut self) {
        if self.probe
            && let Some(breaker) = self.circuit.take()
        {
            breaker.release_probe();
        }
    }
}

/// `d` in nanoseconds, saturating (backoffs are capped far below that).
#[inline]
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Records an attempt that ran (the watcher builds the record only if it
/// keeps one). A function of the fields it needs, so the engine can lend
/// its own plan.
#[inline]
fn record_attempt<W: Watcher>(
    watch: &mut W,
    inner: &Inner,
    index: u32,
    key: &PolicyKey,
    plan: &Plan,
    error: Option<&dyn ErrorView>,
    outcome: impl FnOnce() -> Outcome,
) {
    watch.attempt(key, Some(&plan.attempt), || AttemptRecord {
        is_hedge: plan.attempt.is_hedge(),
        hedge_index: plan.attempt.hedge_index,
        ..record(index, inner.now(), outcome(), error.map(super::record::error_text))
    });
}

/// Why an attempt ends its call.
enum Over {
    /// The call's deadline cut it.
    Deadline,
    /// Its classifier panicked (recovered).
    Panic(Box<PanicError>),
}

impl Over {
    fn outcome(&self) -> Outcome {
        match self {
            Self::Deadline => Outcome::abort().with_reason(DEADLINE_REASON),
            Self::Panic(_) => Outcome::abort().with_reason(Component::Classifier.reason()),
        }
    }
}

#[cold]
fn with_fallback_note(outcome: Outcome, name: &str) -> Outcome {
    outcome
        .with_attribute("classifier_not_found", "true")
        .with_attribute("classifier_name", name.to_owned())
        .with_attribute("classifier_fallback", "default")
}

/// A record ending at `end`; the watcher fills in its start and backoff.
fn record(index: u32, end: Instant, outcome: Outcome, error: Option<String>) -> AttemptRecord {
    AttemptRecord {
        attempt: index,
        start: end,
        end,
        is_hedge: false,
        hedge_index: 0,
        outcome,
        error,
        backoff: Duration::ZERO,
        budget_allowed: true,
        budget_reason: Cow::Borrowed(reason::NO_BUDGET),
    }
}

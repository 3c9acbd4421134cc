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
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::attempt::{Plan, arm};
use super::call::{Attempted, Call, Concluded, Next, Verdict};
use super::drive::ErrorOps;
use super::record::{Quiet, Recording, Watcher};
use super::resolve::{BudgetSlot, Look, Res, Resolved, Source};
use super::{Inner, SleepFuture};
use crate::budget::Release;
use crate::classify::{ErrorView, Outcome};
use crate::error::Error;
use crate::observe::{Attempt, Scopes};
use crate::policy::PolicyKey;

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

/// A call's engine: quiet inline, recording boxed (a recorded call
/// allocates its timeline anyway, and the call's future stays small).
#[allow(clippy::large_enum_variant, reason = "the quiet engine is the common case; boxing it would allocate per call")]
pub(crate) enum Engine<'x> {
    Quiet(Call<'x, Quiet>),
    Recording(Box<Call<'x, Recording<'x>>>),
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

/// The first attempt's gate of a lean call (`None`: the cached resolution is
/// not lean, or `admit` refuses it), taken while the cache entry is
/// borrowed, so the call holds no reference count (which every thread
/// calling the key would write); an allowed attempt's release, if it has
/// one, is written to `release`, and `then` runs.
#[inline]
fn lean_gate<R>(
    inner: &Inner,
    source: Source<'_>,
    generation: u64,
    release: &mut Option<Release>,
    admit: impl FnOnce(&Resolved) -> bool,
    then: impl FnOnce(&Resolved) -> R,
) -> Option<Result<R, Cow<'static, str>>> {
    source.peek(inner, generation, |res| {
        let res = res.filter(|res| res.lean && admit(res))?;
        Some(inner.gate_first(source.key(), &res.policy.retry.budget, &res.retry_budget, release).map(|()| then(res)))
    })
}

impl<'x> Engine<'x> {
    /// A quiet engine for a call that has not begun (see [`begin`](Self::begin)).
    #[inline]
    pub(crate) fn new(inner: &'x Inner, source: Source<'x>) -> Self {
        Self::Quiet(Call::new(inner, source, Quiet))
    }

    /// Whether a lean call without a policy id, with nobody listening, runs
    /// its first attempt before the engine exists, like a plain call, its
    /// budget's release written to `release` (the engine built for that
    /// attempt measured 26 ns a call against 22, S3 in BENCHMARKS.md);
    /// `Err`: the budget denied the first attempt.
    #[inline]
    pub(crate) fn lean_first(
        inner: &Inner,
        source: Source<'_>,
        look: Look,
        release: &mut Option<Release>,
    ) -> Result<bool, Cow<'static, str>> {
        if look.capture || look.listening {
            return Ok(false);
        }
        match lean_gate(inner, source, look.generation, release, |res| res.policy.id.is_none(), |_| ()) {
            None => Ok(false),
            Some(gated) => gated.map(|()| true),
        }
    }

    /// Starts the call, in place: its first attempt planned straight from
    /// the cache when the key is lean and nobody listens, else the full
    /// start (resolution, breaker, the first gate), recording when a
    /// capture or an observer listens. `Some(error)`: the call ends at
    /// once; hand the error to [`fail`](Self::fail). `sequential` calls
    /// (the `&mut` form) never hedge.
    #[inline]
    pub(crate) fn begin(&mut self, sequential: bool, look: Look) -> Option<Error> {
        let Self::Quiet(core) = self else { unreachable!("a call begins once, quiet") };
        let (inner, source) = (core.inner, core.source);
        if !look.capture && !look.listening {
            if look.plain {
                core.planned = true;
                return None;
            }
            // The plan is written in place (moving a whole plan into the
            // engine costs more than writing its two fields).
            let mut release = None;
            let lean = lean_gate(
                inner,
                source,
                look.generation,
                &mut release,
                |_| true,
                |res| {
                    if res.policy.id.is_some() {
                        core.plan.attempt.policy_id.clone_from(&res.policy.id);
                    }
                    core.planned = true;
                },
            );
            match lean {
                Some(Ok(())) => {
                    // Most budgets release nothing: then the plan's own empty
                    // release stays (no drop, no store).
                    if let Some(release) = release {
                        core.plan.release = release;
                    }
                    return None;
                }
                Some(Err(reason)) => return Some(Error::BudgetDenied { reason }),
                None => {}
            }
        }
        self.start(look.capture, look.listening, sequential)
    }

    /// Holds the release of a lean first attempt that ran before the
    /// engine existed, for its failure to settle.
    #[inline]
    pub(crate) fn hold(&mut self, release: Option<Release>) {
        if let (Self::Quiet(core), Some(release)) = (self, release) {
            core.plan.release = release;
        }
    }

    /// Stands for a plain first attempt that ran before the engine existed
    /// (see `drive`): its failure is handed over next, as a lean call's.
    #[inline]
    pub(crate) fn ran_plain(&mut self) {
        each!(self, c => c.planned = true);
    }

    /// The full start, for calls that are not lean or are watched.
    #[inline(never)]
    fn start(&mut self, capture: bool, listening: bool, sequential: bool) -> Option<Error> {
        let Self::Quiet(core) = self else { unreachable!("a call begins once, quiet") };
        let (inner, source) = (core.inner, core.source);
        let res = source.resolve(inner);
        let observer = inner.observer.as_deref().filter(|_| listening);
        if capture || observer.is_some() {
            let watch = Recording::new(inner, source.key(), source.overflowed_from(), capture, observer);
            let mut core = Box::new(Call::new(inner, source, watch));
            let failed = core.start(res, sequential);
            *self = Self::Recording(core);
            failed
        } else {
            core.start(res, sequential)
        }
    }

    /// The planned attempt's scope, and the observer's scopes to enter
    /// around its polls.
    #[inline]
    pub(crate) fn scope(&self) -> (&Attempt, Scopes<'_>) {
        each!(self, c => (&c.plan.attempt, c.watch.scopes(c.plan.attempt.hedge_index)))
    }

    /// The observer's scopes for a group's attempt.
    #[inline]
    pub(crate) fn scopes_for(&self, hedge_index: u32) -> Scopes<'_> {
        each!(self, c => c.watch.scopes(hedge_index))
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
    pub(crate) fn fail<E, O: ErrorOps<E>>(&mut self, error: Error) -> E {
        let outcome = error.outcome();
        let error = O::from_recourse(error);
        each!(self, c => c.finish(Verdict::None, Some((O::view(&error), &outcome))));
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

    /// The planned primary, handed to a hedged group; the engine keeps a
    /// plan with the same policy id for the attempts after the group.
    pub(crate) fn take_plan(&mut self) -> Plan {
        each!(self, c => {
            c.planned = false;
            let mut next = Plan::idle();
            next.attempt.policy_id.clone_from(&c.plan.attempt.policy_id);
            std::mem::replace(&mut c.plan, next)
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

    pub(crate) fn source(&self) -> Source<'x> {
        each!(self, c => c.source)
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

/// Whether `observer` wants this call. A panic there, recovered when
/// recovery is on, is counted like any observer panic and counts as yes.
pub(crate) fn listening(inner: &Inner, observer: &dyn crate::observe::Observer) -> bool {
    if !inner.recover_panics {
        return observer.enabled();
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| observer.enabled())).unwrap_or_else(|_| {
        inner.observer_panics.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        true
    })
}

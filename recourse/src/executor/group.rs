//! A retry group: the primary attempt plus up to three hedges, raced inside
//! the caller's task (no spawn, no `'static` bound on the operation).
//!
//! Every launched attempt is a pinned slot polled in its own attempt scope
//! with its own deadline timer; a hedge timer asks the trigger when to
//! launch the next one, at most one hedge per evaluation and the next
//! evaluation no sooner than the hedge delay after a launch (DESIGN
//! §6.12). The group ends on the first success (the others are dropped at
//! once: cancelled, budget released, recorded as `hedge_cancelled`), on the
//! first terminal outcome with `cancel_on_first_terminal`, or when every
//! launched attempt has reported. In-flight attempts are counted in this
//! one task, so "every launched attempt has reported" cannot race (Go
//! §12.8's hang cannot happen).
//!
//! The bookkeeping ([`Hedger`]) is not generic over the operation; only
//! the slots holding the operation's futures are.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::attempt::{Plan, arm};
use super::call::{Attempted, Call, Concluded, Next, Over, record, record_attempt};
use super::drive::ErrorOps;
use super::engine::Engine;
use super::record::Watcher;
use super::resolve::Res;
use crate::budget::{AttemptEnd, AttemptKind};
use crate::classify::{ErrorView, Outcome, OutcomeKind};
use crate::error::{Component, Error};
use crate::hedge::{HedgeState, LatencySnapshot, TriggerDecision};
use crate::observe::AttemptRecord;
use crate::observe::{self, AttemptScope, Saved};
use crate::policy::limits;

/// Slots: the primary and at most `limits::MAX_HEDGES` hedges.
const SLOTS: usize = 1 + limits::MAX_HEDGES as usize;

/// The shortest wait between two trigger evaluations.
const MIN_CHECK_IN: Duration = Duration::from_millis(1);

/// The group's state apart from the operation's futures.
struct Hedger<'g> {
    /// The call's resolution; hedging implies a trigger.
    res: Res,
    timers: [Pin<&'g mut Option<Sleep>>; SLOTS],
    plans: [Option<Plan>; SLOTS],
    /// When each running attempt was launched, for the latency tracker.
    launches: [Instant; SLOTS],
    hedge_timer: Pin<&'g mut Option<Sleep>>,
    /// When the trigger is asked next; the timer for it is only armed once
    /// the attempts are found pending, so a primary that is ready at once
    /// never touches the timer wheel.
    next_check: Option<Instant>,
    started: Instant,
    max_hedges: u32,
    /// 1 + hedges the trigger asked for (launched or denied by their budget).
    launched: u32,
    in_flight: usize,
    stopped: bool,
}

fn severity(kind: OutcomeKind) -> u8 {
    match kind {
        OutcomeKind::Success => 0,
        OutcomeKind::Retryable => 1,
        OutcomeKind::NonRetryable => 2,
        OutcomeKind::Abort | OutcomeKind::Unknown => 3,
    }
}

impl Hedger<'_> {
    fn launched(&mut self, slot: usize, plan: Plan, at: Instant) {
        self.launches[slot] = at;
        match plan.attempt.deadline {
            Some(cutoff) => arm(self.timers[slot].as_mut(), cutoff),
            None => self.timers[slot].set(None),
        }
        self.plans[slot] = Some(plan);
        self.in_flight += 1;
    }

    /// Asks the trigger once: the hedge to launch now, if any. After a
    /// launch the next evaluation waits at least the hedge delay.
    fn evaluate(&mut self, engine: &mut Engine<'_>, elapsed: Option<Duration>) -> Option<(usize, Plan)> {
        self.next_check = None;
        if self.stopped || self.launched > self.max_hedges {
            return None;
        }
        let trigger = self.res.trigger.as_deref()?;
        let uses_latency =
            match engine.inner().recover(Component::HedgeTrigger, engine.key(), || trigger.uses_latency()) {
                Ok(uses) => uses,
                Err(panic) => {
                    self.stopped = true;
                    engine.trigger_panicked(panic.message);
                    return None;
                }
            };
        let latency = match &self.res.tracker {
            Some(tracker) if uses_latency => tracker.snapshot(),
            _ => LatencySnapshot::default(),
        };
        let since_start = elapsed.unwrap_or_else(|| self.started.elapsed());
        let delay = self.res.policy.hedge.delay;
        let state = HedgeState {
            attempts_launched: self.launched,
            max_hedges: self.max_hedges,
            elapsed: since_start,
            hedge_delay: delay,
            latency: &latency,
        };
        let decision =
            match engine.inner().recover(Component::HedgeTrigger, engine.key(), || trigger.should_spawn(&state)) {
                Ok(decision) => decision,
                Err(panic) => {
                    self.stopped = true;
                    engine.trigger_panicked(panic.message);
                    return None;
                }
            };
        match decision {
            TriggerDecision::Spawn => {
                let hedge_index = self.launched;
                self.launched += 1;
                if self.launched <= self.max_hedges {
                    self.next_check = Some(self.started + since_start + delay.max(MIN_CHECK_IN));
                }
                engine.plan_hedge(hedge_index).map(|plan| (hedge_index as usize, plan))
            }
            TriggerDecision::CheckIn(wait) => {
                self.next_check = Some(self.started + since_start + wait.max(MIN_CHECK_IN));
                None
            }
            TriggerDecision::Stop => {
                self.stopped = true;
                None
            }
        }
    }

    /// Whether the trigger is due now (arming its timer when it is not).
    fn hedge_due(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(at) = self.next_check.take() {
            arm(self.hedge_timer.as_mut(), at);
        } else if self.hedge_timer.is_none() {
            return false;
        }
        let due = self.hedge_timer.as_mut().as_pin_mut().is_some_and(|timer| timer.poll(cx).is_ready());
        if due {
            self.hedge_timer.set(None);
        }
        due
    }

    /// Whether slot `slot`'s deadline has passed.
    fn cut(&mut self, slot: usize, cx: &mut Context<'_>) -> bool {
        self.timers[slot].as_mut().as_pin_mut().is_some_and(|timer| timer.poll(cx).is_ready())
    }

    /// Slot `slot`'s attempt has reported: its plan, and how long it ran.
    fn reported(&mut self, slot: usize) -> (Plan, Duration) {
        self.timers[slot].set(None);
        self.in_flight -= 1;
        (self.plans[slot].take().expect("a running slot has a plan"), self.launches[slot].elapsed())
    }

    /// Records every attempt still running as cancelled and drops its plan
    /// (releasing its budget); their futures are already dropped.
    fn cancel_all(&mut self, engine: &mut Engine<'_>, reason: &str) {
        for slot in 0..SLOTS {
            if let Some(plan) = self.plans[slot].take() {
                self.timers[slot].set(None);
                engine.cancelled(plan, reason);
            }
        }
        self.in_flight = 0;
        self.stop();
    }

    fn stop(&mut self) {
        self.hedge_timer.set(None);
        self.next_check = None;
    }
}

struct Group<'g, 'x, F, Fut, E, O> {
    ops: PhantomData<O>,
    engine: &'g mut Engine<'x>,
    last: &'g mut Option<E>,
    op: &'g mut F,
    slots: [Pin<&'g mut Option<Fut>>; SLOTS],
    hedger: Hedger<'g>,
    /// The most severe failure so far (ties: the latest).
    failure: Option<(E, Outcome)>,
}

impl<F, Fut, T, E, O> Group<'_, '_, F, Fut, E, O>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    O: ErrorOps<E>,
{
    fn launch(&mut self, slot: usize, plan: Plan, at: Instant) {
        let future = {
            let _entered = self.engine.scopes_for(plan.attempt.hedge_index).enter();
            observe::enter_attempt(&plan.attempt, &mut *self.op)
        };
        self.slots[slot].set(Some(future));
        self.hedger.launched(slot, plan, at);
    }

    /// Drops every attempt still running, then records them.
    fn cancel_all(&mut self, reason: &str) {
        for slot in &mut self.slots {
            slot.set(None);
        }
        self.hedger.cancel_all(self.engine, reason);
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Result<Next, Result<T, E>>> {
        // Attempts first: a primary that is ready at once never registers
        // the hedge timer with the runtime.
        if let Poll::Ready(end) = self.poll_attempts(cx) {
            return Poll::Ready(end);
        }
        let mut launched = false;
        while self.hedger.hedge_due(cx) {
            if let Some((slot, plan)) = self.hedger.evaluate(self.engine, None) {
                self.launch(slot, plan, Instant::now());
                launched = true;
            }
        }
        if launched {
            // New hedges must be polled once to be woken later.
            return self.poll_attempts(cx);
        }
        Poll::Pending
    }

    fn poll_attempts(&mut self, cx: &mut Context<'_>) -> Poll<Result<Next, Result<T, E>>> {
        for slot in 0..SLOTS {
            let Some(future) = self.slots[slot].as_mut().as_pin_mut() else { continue };
            let Some(plan) = self.hedger.plans[slot].as_ref() else { continue };
            let polled = {
                let _entered = self.engine.scopes_for(plan.attempt.hedge_index).enter();
                let mut saved = Saved::enter(&plan.attempt);
                let scope = AttemptScope::new(&mut saved);
                let polled = future.poll(cx);
                scope.exit();
                polled
            };
            let result = match polled {
                Poll::Ready(result) => Some(result),
                Poll::Pending if self.hedger.cut(slot, cx) => None,
                Poll::Pending => continue,
            };
            self.slots[slot].set(None);
            let (plan, ran) = self.hedger.reported(slot);
            let (error, concluded) = match result {
                Some(Ok(value)) => {
                    self.engine.conclude(plan, None, ran);
                    self.cancel_all("another attempt succeeded");
                    self.engine.group_succeeded();
                    return Poll::Ready(Err(Ok(value)));
                }
                Some(Err(error)) => {
                    let concluded = self.engine.conclude(plan, Some(Attempted::Err(O::view(&error))), ran);
                    (error, concluded)
                }
                None => {
                    let error = O::from_recourse(self.engine.group_cut_error(&plan));
                    let concluded = self.engine.conclude(plan, Some(Attempted::Cut(O::view(&error))), ran);
                    (error, concluded)
                }
            };
            match concluded {
                Concluded::Success => unreachable!("a failed attempt"),
                Concluded::Over(None) => {
                    // Losers are cancelled (and their budgets released)
                    // before the call's end is published.
                    self.cancel_all("the call ended");
                    self.engine.end_cut(O::view(&error));
                    return Poll::Ready(Err(Err(error)));
                }
                Concluded::Over(Some(ended)) => {
                    self.cancel_all("the call ended");
                    return Poll::Ready(Err(Err(self.engine.fail::<E, O>(ended))));
                }
                Concluded::Failure(outcome) => {
                    if self.res().policy.hedge.cancel_on_first_terminal && outcome.kind.is_terminal() {
                        self.cancel_all("another attempt failed terminally");
                        return Poll::Ready(Ok(self.decide(error, &outcome)));
                    }
                    let worse =
                        self.failure.as_ref().is_none_or(|(_, kept)| severity(outcome.kind) >= severity(kept.kind));
                    if worse {
                        self.failure = Some((error, outcome));
                    }
                    if self.hedger.in_flight == 0 {
                        self.hedger.stop();
                        let (error, outcome) = self.failure.take().expect("a failure was just kept");
                        return Poll::Ready(Ok(self.decide(error, &outcome)));
                    }
                }
            }
        }
        Poll::Pending
    }

    fn res(&self) -> &Res {
        &self.hedger.res
    }

    /// The group failed with `error`: the engine decides, the driver keeps
    /// the error as the call's last.
    fn decide(&mut self, error: E, outcome: &Outcome) -> Next {
        let next = self.engine.decide(O::view(&error), outcome);
        *self.last = Some(error);
        next
    }
}

/// Runs one retry group whose primary the engine has planned: what next,
/// or the call's result.
pub(crate) async fn run<F, Fut, T, E, O>(
    engine: &mut Engine<'_>,
    last: &mut Option<E>,
    op: &mut F,
) -> Result<Next, Result<T, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    O: ErrorOps<E>,
{
    let res = std::sync::Arc::clone(engine.res());
    let max_hedges = res.policy.hedge.max_hedges.min(limits::MAX_HEDGES);
    let primary = engine.take_plan();
    let (mut s0, mut s1, mut s2, mut s3) = (pin!(None::<Fut>), pin!(None::<Fut>), pin!(None::<Fut>), pin!(None::<Fut>));
    let (mut t0, mut t1, mut t2, mut t3) =
        (pin!(None::<Sleep>), pin!(None::<Sleep>), pin!(None::<Sleep>), pin!(None::<Sleep>));
    let hedge_timer = pin!(None::<Sleep>);
    let started = Instant::now();
    let mut group = Group::<_, _, _, O> {
        ops: PhantomData,
        engine,
        last,
        op,
        slots: [s0.as_mut(), s1.as_mut(), s2.as_mut(), s3.as_mut()],
        hedger: Hedger {
            res,
            timers: [t0.as_mut(), t1.as_mut(), t2.as_mut(), t3.as_mut()],
            plans: [None, None, None, None],
            launches: [started; SLOTS],
            hedge_timer,
            next_check: None,
            started,
            max_hedges,
            launched: 1,
            in_flight: 0,
            stopped: false,
        },
        failure: None,
    };
    group.launch(0, primary, started);
    // The group has just started: no need to read the clock for it.
    if let Some((slot, plan)) = group.hedger.evaluate(group.engine, Some(Duration::ZERO)) {
        group.launch(slot, plan, started);
    }
    std::future::poll_fn(|cx| group.poll(cx)).await
}

/// The engine's steps for a group's hedges: planning, concluding and
/// cancelling attempts that run side by side.
impl<W: Watcher> Call<'_, W> {
    /// Plans hedge `hedge_index` of the current group: asks the hedge
    /// budget (a denied hedge is recorded and simply not launched) and
    /// tells observers it is about to run.
    pub(super) fn plan_hedge(&mut self, hedge_index: u32) -> Option<Plan> {
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

    /// Records a group's attempt that ran.
    fn record(&mut self, plan: &Plan, error: Option<&dyn ErrorView>, outcome: impl FnOnce() -> Outcome) {
        record_attempt(&mut self.watch, self.inner, self.index, self.source.key(), plan, error, outcome);
    }

    /// A group's attempt has reported: feed the latency tracker with how
    /// long it ran, classify, release (telling the budget how it ended),
    /// record.
    pub(super) fn conclude(&mut self, mut plan: Plan, attempted: Option<Attempted<'_>>, ran: Duration) -> Concluded {
        let res = self.res.as_ref().expect("resolved");
        if let Some(tracker) = &res.tracker {
            tracker.record(ran);
        }
        let Some(attempted) = attempted else {
            plan.release.settle(AttemptEnd::Succeeded);
            self.record(&plan, None, Outcome::success);
            return Concluded::Success;
        };
        let (Attempted::Err(error) | Attempted::Cut(error)) = attempted;
        match self.judge(&plan, attempted) {
            Ok(outcome) => {
                plan.release.settle(match attempted {
                    Attempted::Cut(_) => AttemptEnd::TimedOut,
                    Attempted::Err(_) => AttemptEnd::of(outcome.kind),
                });
                self.record(&plan, Some(error), || outcome.clone());
                Concluded::Failure(outcome)
            }
            Err(over) => {
                plan.release.run();
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
    pub(super) fn cancelled(&mut self, plan: Plan, reason: &str) {
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
}

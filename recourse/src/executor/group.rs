//! A retry group: the primary attempt plus up to three hedges, raced inside
//! the caller's task (no spawn, no `'static` bound on the operation).
//!
//! Every launched attempt is a pinned slot polled in its own attempt scope
//! with its own deadline timer; a hedge timer asks the trigger when to
//! launch the next one. The group ends on the first success (the others
//! are dropped at once: cancelled, budget released, `on_hedge_cancel`), on
//! the first terminal outcome with `cancel_on_first_terminal`, or when
//! every launched attempt has reported. In-flight attempts are counted in
//! this one task, so "every launched attempt has reported" cannot race
//! (Go §12.8's hang cannot happen).

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::call::{Call, Concluded, Plan, Res, Step};
use crate::classify::{Classify, Outcome, OutcomeKind};
use crate::error::Error;
use crate::hedge::{HedgeState, LatencySnapshot, TriggerDecision};
use crate::observe;
use crate::policy::limits;

/// Slots: the primary and at most `limits::MAX_HEDGES` hedges.
const SLOTS: usize = 1 + limits::MAX_HEDGES as usize;

/// The shortest wait between two trigger evaluations.
const MIN_CHECK_IN: Duration = Duration::from_millis(1);

struct Group<'g, 'x, F, Fut, E> {
    call: &'g mut Call<'x, E>,
    op: &'g mut F,
    /// The call's resolution (one reference count for the policy, the
    /// trigger and the tracker); its trigger is `Some` (checked by `run`).
    res: Res,
    slots: [Pin<&'g mut Option<Fut>>; SLOTS],
    timers: [Pin<&'g mut Option<Sleep>>; SLOTS],
    plans: [Option<Plan>; SLOTS],
    hedge_timer: Pin<&'g mut Option<Sleep>>,
    /// When the trigger wants to be asked again; the timer for it is only
    /// created once the attempts are found pending, so a primary that is
    /// ready at once never touches the timer wheel.
    next_check: Option<Instant>,
    started: Instant,
    max_hedges: u32,
    /// 1 + hedges the trigger asked for (launched or denied by their budget).
    launched: u32,
    in_flight: usize,
    stopped: bool,
    /// The most severe failure so far (ties: the latest).
    failure: Option<(E, Outcome)>,
}

fn severity(kind: OutcomeKind) -> u8 {
    match kind {
        OutcomeKind::Success => 0,
        OutcomeKind::Retryable => 1,
        OutcomeKind::NonRetryable => 2,
        OutcomeKind::Abort | OutcomeKind::Unknown => 3,
    }
}

impl<F, Fut, T, E> Group<'_, '_, F, Fut, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error> + 'static,
{
    fn launch(&mut self, slot: usize, plan: Plan) {
        let future = observe::enter_attempt(&plan.attempt, &mut *self.op);
        self.slots[slot].set(Some(future));
        self.timers[slot].set(plan.cutoff().map(tokio::time::sleep_until));
        self.plans[slot] = Some(plan);
        self.in_flight += 1;
    }

    /// Asks the trigger until it says wait or stop, launching every hedge it
    /// asks for (each gated by the hedge budget).
    fn evaluate(&mut self, mut elapsed: Option<Duration>) {
        loop {
            if self.stopped || self.launched > self.max_hedges {
                self.hedge_timer.set(None);
                self.next_check = None;
                return;
            }
            let Some(trigger) = self.res.trigger.as_deref() else { return };
            let latency = match &self.res.tracker {
                Some(tracker) if trigger.uses_latency() => tracker.snapshot(),
                _ => LatencySnapshot::default(),
            };
            let since_start = elapsed.take().unwrap_or_else(|| self.started.elapsed());
            let state = HedgeState {
                attempts_launched: self.launched,
                max_hedges: self.max_hedges,
                elapsed: since_start,
                hedge_delay: self.res.policy.hedge.delay,
                latency: &latency,
            };
            match trigger.should_spawn(&state) {
                TriggerDecision::Spawn => {
                    let hedge_index = self.launched;
                    self.launched += 1;
                    if let Some(plan) = self.call.plan_hedge(hedge_index) {
                        self.launch(hedge_index as usize, plan);
                    }
                }
                TriggerDecision::CheckIn(wait) => {
                    self.hedge_timer.set(None);
                    // From the time the trigger was shown rather than a
                    // fresh clock read (~20 ns here, on every hedged call).
                    self.next_check = Some(self.started + since_start + wait.max(MIN_CHECK_IN));
                    return;
                }
                TriggerDecision::Stop => {
                    self.stopped = true;
                    self.hedge_timer.set(None);
                    self.next_check = None;
                    return;
                }
            }
        }
    }

    /// Drops every attempt still running (cancelling it and releasing its
    /// budget) and tells observers.
    fn cancel_all(&mut self, reason: &str) {
        for slot in 0..SLOTS {
            if let Some(plan) = self.plans[slot].take() {
                self.call.cancelled(&plan, reason);
                self.slots[slot].set(None);
                self.timers[slot].set(None);
                drop(plan);
            }
        }
        self.in_flight = 0;
        self.hedge_timer.set(None);
        self.next_check = None;
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Step<T, E>> {
        // Attempts first: a primary that is ready at once never registers
        // the hedge timer with the runtime.
        if let Poll::Ready(step) = self.poll_attempts(cx) {
            return Poll::Ready(step);
        }
        // Hedges only launch while an attempt of the group is in flight.
        let mut launched = false;
        loop {
            if let Some(at) = self.next_check.take() {
                self.hedge_timer.set(Some(tokio::time::sleep_until(at)));
            }
            let Some(timer) = self.hedge_timer.as_mut().as_pin_mut() else { break };
            if timer.poll(cx).is_pending() {
                break;
            }
            self.hedge_timer.set(None);
            let before = self.in_flight;
            self.evaluate(None);
            launched |= self.in_flight > before;
        }
        if launched {
            // New hedges must be polled once to be woken later.
            return self.poll_attempts(cx);
        }
        Poll::Pending
    }

    fn poll_attempts(&mut self, cx: &mut Context<'_>) -> Poll<Step<T, E>> {
        for slot in 0..SLOTS {
            let Some(future) = self.slots[slot].as_mut().as_pin_mut() else { continue };
            let Some(plan) = self.plans[slot].as_ref() else { continue };
            let result = match observe::enter_attempt(&plan.attempt, || future.poll(cx)) {
                Poll::Ready(result) => Some(result),
                Poll::Pending => {
                    let cut = self.timers[slot].as_mut().as_pin_mut().is_some_and(|timer| timer.poll(cx).is_ready());
                    if !cut {
                        continue;
                    }
                    None
                }
            };
            self.slots[slot].set(None);
            self.timers[slot].set(None);
            let plan = self.plans[slot].take().expect("a running slot has a plan");
            self.in_flight -= 1;
            match self.call.conclude(plan, result) {
                Concluded::Success(value) => {
                    self.cancel_all("another attempt succeeded");
                    return Poll::Ready(self.call.succeed(value));
                }
                Concluded::Over(error, outcome) => {
                    // Losers are cancelled (and their budgets released)
                    // before the call's end is published.
                    self.cancel_all("the call ended");
                    return Poll::Ready(self.call.end(error, &outcome));
                }
                Concluded::Failure(error, outcome) => {
                    if self.res.policy.hedge.cancel_on_first_terminal && outcome.kind.is_terminal() {
                        self.cancel_all("another attempt failed terminally");
                        return Poll::Ready(self.call.decide(error, outcome));
                    }
                    let worse =
                        self.failure.as_ref().is_none_or(|(_, kept)| severity(outcome.kind) >= severity(kept.kind));
                    if worse {
                        self.failure = Some((error, outcome));
                    }
                    if self.in_flight == 0 {
                        self.hedge_timer.set(None);
                        self.next_check = None;
                        let (error, outcome) = self.failure.take().expect("a failure was just kept");
                        return Poll::Ready(self.call.decide(error, outcome));
                    }
                }
            }
        }
        Poll::Pending
    }
}

/// Runs one retry group whose primary was planned (and budget-gated) by the
/// caller.
pub(crate) async fn run<F, Fut, T, E>(call: &mut Call<'_, E>, primary: Plan, op: &mut F) -> Step<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error> + 'static,
{
    if call.res.trigger.is_none() {
        // Hedging is only enabled with a trigger; run the primary alone.
        let future = observe::enter_attempt(&primary.attempt, &mut *op);
        let result = primary.run(future).await;
        return call.settle(primary, result);
    }
    let res = Arc::clone(&call.res);
    let max_hedges = res.policy.hedge.max_hedges.min(limits::MAX_HEDGES);

    let (mut s0, mut s1, mut s2, mut s3) = (pin!(None::<Fut>), pin!(None::<Fut>), pin!(None::<Fut>), pin!(None::<Fut>));
    let (mut t0, mut t1, mut t2, mut t3) =
        (pin!(None::<Sleep>), pin!(None::<Sleep>), pin!(None::<Sleep>), pin!(None::<Sleep>));
    let hedge_timer = pin!(None::<Sleep>);
    let mut group = Group {
        call,
        op,
        res,
        slots: [s0.as_mut(), s1.as_mut(), s2.as_mut(), s3.as_mut()],
        timers: [t0.as_mut(), t1.as_mut(), t2.as_mut(), t3.as_mut()],
        plans: [None, None, None, None],
        hedge_timer,
        next_check: None,
        started: primary.launched().unwrap_or_else(Instant::now),
        max_hedges,
        launched: 1,
        in_flight: 0,
        stopped: false,
        failure: None,
    };
    group.launch(0, primary);
    // The group has just started: no need to read the clock for it.
    group.evaluate(Some(Duration::ZERO));
    std::future::poll_fn(|cx| group.poll(cx)).await
}

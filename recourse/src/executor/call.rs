//! One call in progress: the engine's steps for a call watched by `W`
//! (see `engine.rs` for the order they run in). Every decision lives here,
//! compiled once per watcher, not once per operation.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::attempt::{Gate, Plan};
use super::backoff::next_backoff;
use super::record::Watcher;
use super::resolve::{BudgetSlot, PolicyNote, Res, Source};
use super::{FailureMode, Inner};
use crate::budget::{AttemptEnd, AttemptKind, BudgetDecisionEvent, Release, reason};
use crate::circuit::{self, Breaker};
use crate::classify::{ErrorView, Outcome, OutcomeKind};
use crate::error::{Component, Error, PanicError};
use crate::observe::{Attempt, AttemptRecord};
use crate::policy::{Policy, PolicyKey};

/// The reason of an attempt cut by a deadline.
pub(super) const DEADLINE_REASON: &str = "context_deadline_exceeded";

/// What the driver does next.
#[derive(Debug)]
pub(crate) enum Next {
    /// Run the planned attempt (`Engine::scope`).
    Attempt,
    /// Run a hedged retry group whose primary is the planned attempt.
    Group,
    /// Wait this long, then ask `Engine::next`.
    Sleep(Duration),
    /// The call is over (recorded and told): return the operation's last
    /// error.
    Last,
    /// The budget denied the first attempt, for this reason: the call ends
    /// with [`Error::BudgetDenied`] (convert it and end the call with
    /// `Engine::fail`).
    Denied(Cow<'static, str>),
    /// The call is over with recourse's own error: convert it and end the
    /// call with `Engine::fail`. Boxed, so that `Next` stays small on
    /// the retry path: only a mid-call resolution failure or a classifier
    /// panic ends a call this way.
    Fail(Box<Error>),
}

/// A finished attempt, as the driver hands it over.
#[derive(Clone, Copy)]
pub(crate) enum Attempted<'e> {
    /// It returned this error.
    Err(&'e dyn ErrorView),
    /// Its deadline passed; this is `Engine::cut_error` converted into
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
pub(super) enum Verdict {
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
pub(crate) struct Call<'x, W> {
    pub(super) inner: &'x Inner,
    pub(super) source: Source<'x>,
    /// `None` while a lean call's first attempt runs (see `engine.rs`).
    pub(super) res: Option<Res>,
    /// The attempt in progress, updated in place for each retry (a plan
    /// rebuilt and moved per attempt costs more than the attempt's
    /// bookkeeping); `planned` while it is between `Engine::next` and its
    /// conclusion.
    pub(super) plan: Plan,
    pub(super) planned: bool,
    pub(super) deadline: Option<Instant>,
    pub(super) index: u32,
    /// The backoff base before jitter, in nanoseconds (a `Duration` would
    /// take twice the room in every call's future).
    pub(super) base: u64,
    /// The breaker that admitted the call, until its verdict is given.
    /// Taken the moment the breaker admits the call: exactly one verdict
    /// (success, failure, or a released probe) reaches the breaker, and a
    /// call dropped (or unwound) before its verdict hands a half-open probe
    /// back (DESIGN §6.4, see the `Drop` impl).
    pub(super) circuit: Option<Arc<dyn Breaker>>,
    /// Whether the call is the breaker's half-open probe.
    pub(super) probe: bool,
    pub(super) hedging: bool,
    /// How the call's last attempt (or group) ended, for the next gate.
    pub(super) previous: Option<AttemptEnd>,
    pub(super) watch: W,
}

impl<'x, W: Watcher> Call<'x, W> {
    #[inline]
    pub(super) fn new(inner: &'x Inner, source: Source<'x>, watch: W) -> Self {
        Self {
            inner,
            source,
            res: None,
            plan: Plan::idle(),
            planned: false,
            deadline: None,
            index: 0,
            base: 0,
            circuit: None,
            probe: false,
            hedging: false,
            previous: None,
            watch,
        }
    }

    #[inline]
    pub(super) fn key(&self) -> &'x PolicyKey {
        self.source.key()
    }

    fn policy(&self) -> &Policy {
        &self.res.as_ref().expect("resolved").policy
    }

    pub(super) fn overall_timeout(&self) -> Duration {
        self.res.as_ref().map_or(Duration::ZERO, |res| res.policy.retry.overall_timeout)
    }

    /// The full start: records the resolution, asks the breaker, fixes the
    /// deadline and plans the first attempt. `Some(error)`: the call ends
    /// at once.
    pub(super) fn start(&mut self, res: Result<Res, Error>, sequential: bool) -> Option<Error> {
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
        let inner = self.inner;
        self.watch.start(key, Some(&res.policy), |t| {
            if let Some(PolicyNote::ProviderFailed(error, mode)) = &res.note {
                t.attributes.insert("policy_error", error.to_string());
                t.attributes.insert("policy_fallback", mode.as_str());
            }
            if let Some(name) = &res.fallback_from {
                let mode = inner.missing_classifier;
                t.attributes
                    .insert("classifier_fallback", format!("{name} not found; default classifier used ({mode})"));
            }
            if matches!(res.retry_budget, BudgetSlot::Missing) {
                let (name, mode) = (res.policy.retry.budget.name.trim(), inner.missing_budget);
                let what =
                    if matches!(mode, FailureMode::Allow | FailureMode::AllowUnsafe) { "allowed" } else { "denied" };
                t.attributes.insert("budget_missing", format!("{name} not found; attempts {what} ({mode})"));
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
                Err(panic) => return Some(Error::Panic(*panic)),
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
    pub(super) fn next(&mut self, last: Option<&dyn ErrorView>) -> Next {
        if self.planned {
            return if self.hedging { Next::Group } else { Next::Attempt };
        }
        self.plan_attempt(last)
    }

    /// Asks the attempt's budget (every attempt, the first included).
    #[inline]
    pub(super) fn gate(&mut self, kind: AttemptKind) -> Gate {
        let res = self.res.as_ref().expect("resolved");
        let (budget, slot) = match kind {
            AttemptKind::Retry => (&res.policy.retry.budget, &res.retry_budget),
            AttemptKind::Hedge => (&res.policy.hedge.budget, &res.hedge_budget),
        };
        let key = self.source.key();
        let previous = if kind == AttemptKind::Retry { self.previous } else { None };
        let (gate, mode) = self.inner.gate(key, self.index, kind, budget, slot, previous);
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
    pub(super) fn make_plan(&self, hedge_index: u32, release: Release) -> Plan {
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

    pub(super) fn cut_error(&self, plan: &Plan) -> Error {
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
    pub(super) fn succeeded(&mut self) {
        self.planned = false;
        // Before anything is published, so a caller that sees the result
        // also sees the release.
        self.plan.release.settle(AttemptEnd::Succeeded);
        if self.res.is_none() {
            // A lean first attempt: nothing to record or tell.
            return;
        }
        record_attempt(&mut self.watch, self.inner, self.index, self.source.key(), &self.plan, None, Outcome::success);
        self.finish(Verdict::Success, None);
    }

    /// The planned attempt failed: classify, release (telling the budget
    /// how it ended), record, decide.
    #[inline]
    pub(super) fn failed(&mut self, attempted: Attempted<'_>) -> Next {
        self.planned = false;
        // Settled once the outcome is known, before anything is published;
        // dropped (as cancelled) on every other way out.
        let mut release = std::mem::replace(&mut self.plan.release, Release::none());
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
                Ok((kind, backoff)) => {
                    let end = AttemptEnd::of(kind);
                    release.settle(end);
                    self.previous = Some(end);
                    self.decide_with(kind, backoff, error, None)
                }
                Err(panic) => Next::Fail(Box::new(Error::Panic(*panic))),
            };
        }
        // The outcome stays in this frame and is lent out.
        let outcome = match self.judge(&self.plan, attempted) {
            Ok(outcome) => outcome,
            Err(over) => {
                release.run();
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
        let end = match attempted {
            Attempted::Cut(_) => AttemptEnd::TimedOut,
            Attempted::Err(_) => AttemptEnd::of(outcome.kind),
        };
        release.settle(end);
        self.previous = Some(end);
        let (Attempted::Err(error) | Attempted::Cut(error)) = attempted;
        record_attempt(&mut self.watch, inner, index, key, &self.plan, Some(error), || outcome.clone());
        self.decide_with(outcome.kind, outcome.backoff, error, Some(&outcome))
    }

    /// A lean first attempt failed: now the call needs its resolution. If
    /// it stopped being lean meanwhile, the full start takes over from the
    /// attempt that ran.
    #[cold]
    fn resolve_after_lean(&mut self) -> Result<(), Error> {
        let res = self.source.resolve(self.inner)?;
        if res.lean {
            self.base = nanos(res.policy.retry.initial_backoff);
            self.plan.attempt.policy_id.clone_from(&res.policy.id);
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
    pub(super) fn judge(&self, plan: &Plan, attempted: Attempted<'_>) -> Result<Outcome, Over> {
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

    /// After a failed group: end the call, or back off and go on.
    #[inline]
    pub(super) fn decide(&mut self, error: &dyn ErrorView, outcome: &Outcome) -> Next {
        self.previous = Some(AttemptEnd::of(outcome.kind));
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

    pub(super) fn end_cut(&mut self, error: &dyn ErrorView) {
        self.finish(Verdict::None, Some((error, &Outcome::abort().with_reason(DEADLINE_REASON))));
    }

    /// Gives the breaker its verdict (once) and ends the recording.
    #[inline]
    pub(super) fn finish(&mut self, verdict: Verdict, error: Option<(&dyn ErrorView, &Outcome)>) {
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
                .unwrap_or_else(|_| {
                    // The verdict may never have reached the breaker: hand
                    // a probe's slot back, as a call without a verdict
                    // does, or a breaker that panics once while half-open
                    // would refuse every later call (DESIGN §6.4).
                    if probe {
                        let _ = self.inner.recover(Component::CircuitBreaker, key, || breaker.release_probe());
                    }
                    None
                });
            self.watch.circuit(key, transition);
        }
        let inner = self.inner;
        self.watch.finish(key, || inner.now(), error);
    }
}

impl<W> Drop for Call<'_, W> {
    #[inline]
    fn drop(&mut self) {
        if self.probe
            && let Some(breaker) = self.circuit.take()
        {
            // Recovered like every other breaker call: a panic here would
            // unwind into whoever dropped the call.
            let _ = self.inner.recover(Component::CircuitBreaker, self.source.key(), || breaker.release_probe());
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
pub(super) fn record_attempt<W: Watcher>(
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
pub(super) enum Over {
    /// The call's deadline cut it.
    Deadline,
    /// Its classifier panicked (recovered).
    Panic(Box<PanicError>),
}

impl Over {
    pub(super) fn outcome(&self) -> Outcome {
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
pub(super) fn record(index: u32, end: Instant, outcome: Outcome, error: Option<String>) -> AttemptRecord {
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

//! What watches a call: nobody ([`Quiet`]), or a timeline and the
//! executor's observer ([`Recording`]). The engine is generic over it, so
//! the quiet engine is the recording engine with every hook compiled away:
//! recording changes no decision (DESIGN §6.1), and nothing is built when
//! nobody listens (no record, no error text, no clock read).

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::Inner;
use crate::budget::BudgetDecisionEvent;
use crate::circuit::Transition;
use crate::classify::{ErrorView, Outcome};
use crate::error::{Component, PanicError};
use crate::observe::{self, Attempt, AttemptRecord, Enter, FinalError, Observer, Scopes, Timeline};
use crate::policy::{Policy, PolicyKey, limits};

/// Attempts of one group: the primary and at most `limits::MAX_HEDGES`.
const SLOTS: usize = 1 + limits::MAX_HEDGES as usize;

/// The hooks the engine calls at each step. Every argument that costs
/// something to build is a closure, called only by a watcher that records.
pub(crate) trait Watcher {
    /// Whether anything is recorded (the quiet engine keeps only what
    /// decides the call).
    const RECORDS: bool;

    fn attribute(&mut self, key: &'static str, value: impl FnOnce() -> Cow<'static, str>);
    fn start(&mut self, key: &PolicyKey, policy: Option<&Policy>, notes: impl FnOnce(&mut Timeline));
    fn circuit(&mut self, key: &PolicyKey, transition: Option<Transition>);
    fn budget(&mut self, event: impl FnOnce() -> BudgetDecisionEvent);
    /// An attempt allowed by its budget (for `reason`) is about to run.
    fn attempt_start(&mut self, key: &PolicyKey, scope: &Attempt, reason: Cow<'static, str>);
    /// The backoff before the next attempt.
    fn backoff(&mut self, sleep: Duration);
    fn hedge_spawn(&mut self, key: &PolicyKey, scope: &Attempt, record: impl FnOnce() -> AttemptRecord);
    /// A finished (or budget-denied, `scope: None`) attempt; the watcher
    /// fills in its start (when it started) and backoff (when a primary).
    fn attempt(&mut self, key: &PolicyKey, scope: Option<&Attempt>, record: impl FnOnce() -> AttemptRecord);
    /// An attempt dropped because another one decided its group.
    fn cancelled(&mut self, key: &PolicyKey, record: impl FnOnce() -> AttemptRecord, reason: &str);
    /// Ends the call: `error` is `None` on success.
    fn finish(&mut self, key: &PolicyKey, now: impl FnOnce() -> Instant, error: Option<(&dyn ErrorView, &Outcome)>);
    /// The observer's scopes to enter around a poll of the attempt with
    /// this hedge index.
    fn scopes(&self, hedge_index: u32) -> Scopes<'_>;
}

/// Nobody listens: every hook is empty and the type has no size.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Quiet;

impl Watcher for Quiet {
    const RECORDS: bool = false;

    #[inline(always)]
    fn attribute(&mut self, _: &'static str, _: impl FnOnce() -> Cow<'static, str>) {}
    #[inline(always)]
    fn start(&mut self, _: &PolicyKey, _: Option<&Policy>, _: impl FnOnce(&mut Timeline)) {}
    #[inline(always)]
    fn circuit(&mut self, _: &PolicyKey, _: Option<Transition>) {}
    #[inline(always)]
    fn budget(&mut self, _: impl FnOnce() -> BudgetDecisionEvent) {}
    #[inline(always)]
    fn attempt_start(&mut self, _: &PolicyKey, _: &Attempt, _: Cow<'static, str>) {}
    #[inline(always)]
    fn backoff(&mut self, _: Duration) {}
    #[inline(always)]
    fn hedge_spawn(&mut self, _: &PolicyKey, _: &Attempt, _: impl FnOnce() -> AttemptRecord) {}
    #[inline(always)]
    fn attempt(&mut self, _: &PolicyKey, _: Option<&Attempt>, _: impl FnOnce() -> AttemptRecord) {}
    #[inline(always)]
    fn cancelled(&mut self, _: &PolicyKey, _: impl FnOnce() -> AttemptRecord, _: &str) {}
    #[inline(always)]
    fn finish(&mut self, _: &PolicyKey, _: impl FnOnce() -> Instant, _: Option<(&dyn ErrorView, &Outcome)>) {}
    #[inline]
    fn scopes(&self, _: u32) -> Scopes<'_> {
        Scopes::NONE
    }
}

/// A capture is listening or an observer is installed: builds the call's
/// timeline, tells the observer, and publishes the timeline to the
/// enclosing capture when the call ends.
pub(crate) struct Recording<'x> {
    inner: &'x Inner,
    /// Taken when the call ends.
    timeline: Option<Timeline>,
    /// When each attempt of the current group (by hedge index) started,
    /// and its budget's reason.
    starts: [Option<(Instant, Cow<'static, str>)>; SLOTS],
    /// The backoff before the current attempt.
    backoff: Duration,
    /// Whether a capture is listening (the timeline is then published).
    capture: bool,
    observer: Option<&'x dyn Observer>,
    /// With panic recovery on, observer panics are caught (DESIGN §5),
    /// counted on the executor and the first one noted on the timeline;
    /// they never change the call.
    recover: Option<&'x AtomicU64>,
    /// The observer's scope for the call, and for each attempt of the
    /// current group (by hedge index) until its last callback.
    call_scope: Option<Arc<dyn Enter>>,
    attempt_scopes: [Option<Arc<dyn Enter>>; SLOTS],
}

impl<'x> Recording<'x> {
    /// `observer` is the executor's, when it listens to this call;
    /// `overflowed_from` the key the call was made with when the
    /// key-cardinality guard refused it (`key` is then the fold key, or
    /// that same key when rejected).
    pub(crate) fn new(
        inner: &'x Inner,
        key: &PolicyKey,
        overflowed_from: Option<&PolicyKey>,
        capture: bool,
        observer: Option<&'x dyn Observer>,
    ) -> Self {
        let mut timeline = Timeline::new(key.clone(), inner.now());
        if let Some(called) = overflowed_from {
            timeline.attributes.insert("key_overflow", called.to_string());
        }
        let mut this = Self {
            inner,
            timeline: Some(timeline),
            starts: std::array::from_fn(|_| None),
            backoff: Duration::ZERO,
            capture,
            observer,
            recover: inner.recover_panics.then_some(&inner.observer_panics),
            call_scope: None,
            attempt_scopes: std::array::from_fn(|_| None),
        };
        this.call_scope = this.ask(key, None, |o| o.call_scope(key)).flatten();
        this
    }

    /// An attempt that ran: when it started, and its backoff (primaries).
    fn fill(&mut self, record: &mut AttemptRecord) {
        if let Some((start, reason)) = self.starts.get_mut(record.hedge_index as usize).and_then(Option::take) {
            record.start = start;
            record.budget_reason = reason;
        }
        if !record.is_hedge {
            record.backoff = self.backoff;
        }
    }

    /// Tells the observer, catching its panic when recovery is on.
    fn tell(&mut self, key: &PolicyKey, event: impl FnOnce(&dyn Observer)) {
        self.ask(key, None, |o| event(o));
    }

    /// Asks the observer, inside the call's scope and, with `slot`, that
    /// attempt's; `None` when there is no observer or it panicked (caught
    /// when recovery is on).
    fn ask<R>(&mut self, key: &PolicyKey, slot: Option<usize>, event: impl FnOnce(&dyn Observer) -> R) -> Option<R> {
        let observer = self.observer?;
        let scopes = Scopes {
            call: self.call_scope.as_deref(),
            attempt: slot.and_then(|i| self.attempt_scopes.get(i)).and_then(Option::as_deref),
            recover: self.recover,
        };
        let _entered = scopes.enter();
        let Some(count) = self.recover else {
            return Some(event(observer));
        };
        match catch_unwind(AssertUnwindSafe(|| event(observer))) {
            Ok(answer) => Some(answer),
            Err(payload) => {
                count.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = &mut self.timeline
                    && t.attributes.get("observer_panic").is_none()
                {
                    let panic = PanicError::new(Component::Observer, key, &*payload);
                    t.attributes.insert("observer_panic", panic.message);
                }
                None
            }
        }
    }
}

impl std::fmt::Debug for Recording<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recording").field("capture", &self.capture).finish_non_exhaustive()
    }
}

impl Watcher for Recording<'_> {
    const RECORDS: bool = true;

    fn attribute(&mut self, key: &'static str, value: impl FnOnce() -> Cow<'static, str>) {
        if let Some(t) = &mut self.timeline {
            t.attributes.insert(key, value());
        }
    }

    fn start(&mut self, key: &PolicyKey, policy: Option<&Policy>, notes: impl FnOnce(&mut Timeline)) {
        self.tell(key, |o| o.on_start(key, policy));
        let (Some(policy), Some(t)) = (policy, &mut self.timeline) else { return };
        t.policy_id.clone_from(&policy.id);
        t.policy_source = policy.meta.source;
        t.attributes.insert("policy_source", policy.meta.source.as_str());
        if policy.meta.normalization.changed() {
            t.attributes.insert("policy_normalized", policy.meta.normalization.changed_fields().join(","));
        }
        if let Some(error) = &policy.meta.error {
            t.attributes.insert("policy_error", error.to_string());
        }
        notes(t);
        if policy.retry.budget.is_set() {
            t.attributes.insert("budget", policy.retry.budget.name.trim().to_owned());
        }
    }

    fn circuit(&mut self, key: &PolicyKey, transition: Option<Transition>) {
        let Some(transition) = transition else { return };
        self.tell(key, |o| o.on_circuit_change(key, transition));
        self.attribute("circuit_transition", || format!("{} -> {}", transition.from, transition.to).into());
    }

    fn budget(&mut self, event: impl FnOnce() -> BudgetDecisionEvent) {
        if self.observer.is_some() {
            let event = event();
            let key = event.key.clone();
            self.tell(&key, |o| o.on_budget_decision(&event));
        }
    }

    fn attempt_start(&mut self, key: &PolicyKey, scope: &Attempt, reason: Cow<'static, str>) {
        if let Some(start) = self.starts.get_mut(scope.hedge_index as usize) {
            *start = Some((self.inner.now(), reason));
        }
        if self.observer.is_some() {
            let slot = scope.hedge_index as usize;
            let made = observe::enter_attempt(scope, || {
                self.tell(key, |o| o.on_attempt_start(key, scope));
                self.ask(key, None, |o| o.attempt_scope(key, scope)).flatten()
            });
            if let Some(kept) = self.attempt_scopes.get_mut(slot) {
                *kept = made;
            }
        }
    }

    fn backoff(&mut self, sleep: Duration) {
        self.backoff = sleep;
    }

    fn hedge_spawn(&mut self, key: &PolicyKey, scope: &Attempt, record: impl FnOnce() -> AttemptRecord) {
        if self.observer.is_some() {
            let record = record();
            observe::enter_attempt(scope, || self.tell(key, |o| o.on_hedge_spawn(key, &record)));
        }
    }

    fn attempt(&mut self, key: &PolicyKey, scope: Option<&Attempt>, record: impl FnOnce() -> AttemptRecord) {
        let mut record = record();
        if scope.is_some() {
            self.fill(&mut record);
        } else if !record.is_hedge {
            record.backoff = self.backoff;
        }
        if self.observer.is_some() {
            match scope {
                Some(scope) => {
                    let slot = scope.hedge_index as usize;
                    observe::enter_attempt(scope, || self.ask(key, Some(slot), |o| o.on_attempt(key, &record)));
                    // The attempt's last callback: its scope ends here.
                    self.attempt_scopes.get_mut(slot).map(Option::take);
                }
                None => self.tell(key, |o| o.on_attempt(key, &record)),
            }
        }
        if let Some(t) = &mut self.timeline {
            t.attempts.push(record);
        }
    }

    fn cancelled(&mut self, key: &PolicyKey, record: impl FnOnce() -> AttemptRecord, reason: &str) {
        let mut record = record();
        self.fill(&mut record);
        let slot = record.hedge_index as usize;
        self.ask(key, Some(slot), |o| o.on_hedge_cancel(key, &record, reason));
        self.attempt_scopes.get_mut(slot).map(Option::take);
        if let Some(t) = &mut self.timeline {
            t.attempts.push(record);
        }
    }

    fn finish(&mut self, key: &PolicyKey, now: impl FnOnce() -> Instant, error: Option<(&dyn ErrorView, &Outcome)>) {
        let Some(mut t) = self.timeline.take() else { return };
        t.end = Some(now());
        t.final_error = error.map(|(error, outcome)| FinalError {
            message: error_text(error),
            kind: outcome.kind,
            reason: outcome.reason.clone(),
        });
        if t.final_error.is_none() {
            self.tell(key, |o| o.on_success(key, &t));
        } else {
            self.tell(key, |o| o.on_failure(key, &t));
        }
        if self.capture {
            observe::publish(t);
        }
    }

    fn scopes(&self, hedge_index: u32) -> Scopes<'_> {
        Scopes {
            call: self.call_scope.as_deref(),
            attempt: self.attempt_scopes.get(hedge_index as usize).and_then(Option::as_deref),
            recover: self.recover,
        }
    }
}

/// An error as the timeline shows it: its message followed by those of its
/// sources (`outer: inner: root`, as anyhow's `{:#}`), skipping a source
/// whose message the text already holds (an error that prints its source
/// and also returns it); or its type's name when it is not a
/// `std::error::Error`.
pub(crate) fn error_text(error: &dyn ErrorView) -> String {
    crate::error::chain_text(error.chain()).unwrap_or_else(|| error.type_name().to_owned())
}

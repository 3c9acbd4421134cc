//! One attempt: its budget gate, its plan (scope, deadline, release), its
//! classification, the retry decision after it, and the future that polls
//! it inside its scope. The only generic code per operation is [`Run`].

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::FailureMode;
use super::Inner;
use super::backoff::compute_sleep;
use super::resolve::BudgetSlot;
use crate::budget::{AttemptEnd, AttemptKind, Release, reason};
use crate::classify::{Classifier, ErrorView, Outcome, OutcomeKind};
use crate::error::{Component, PanicError};
use crate::observe::{Attempt, AttemptScope, Saved, Scopes};
use crate::policy::{BudgetRef, Jitter, PolicyKey, RetryPolicy};

/// The budget gate's answer for one attempt.
pub(crate) struct Gate {
    pub(crate) allowed: bool,
    pub(crate) reason: Cow<'static, str>,
    pub(crate) release: Release,
}

impl Gate {
    /// The gate of an unbudgeted attempt.
    pub(crate) const fn open() -> Self {
        Self { allowed: true, reason: Cow::Borrowed(reason::NO_BUDGET), release: Release::none() }
    }
}

impl Inner {
    /// The retry decision after failed attempt `index` (0-based): `None`
    /// when the call ends (the outcome is not retryable, or the attempts
    /// are used up), else the backoff before the next attempt. Jitter is
    /// drawn only when the call goes on.
    #[inline]
    pub(crate) fn backoff(
        &self,
        retry: &RetryPolicy,
        index: u32,
        kind: OutcomeKind,
        backoff: Option<Duration>,
        base: Duration,
    ) -> Option<Duration> {
        if kind != OutcomeKind::Retryable || index + 1 >= retry.max_attempts.max(1) {
            return None;
        }
        let unit = if retry.jitter == Jitter::None { 0.0 } else { self.rng.next_unit() };
        Some(compute_sleep(base, retry, backoff, unit))
    }

    /// Asks an attempt's budget: the gate, and the mode to report (`None`:
    /// the policy has no budget, nothing to report). A budget that panics
    /// denies (with panic recovery on).
    #[inline]
    pub(crate) fn gate(
        &self,
        key: &PolicyKey,
        index: u32,
        kind: AttemptKind,
        budget: &BudgetRef,
        slot: &BudgetSlot,
        previous: Option<AttemptEnd>,
    ) -> (Gate, Option<&'static str>) {
        match slot {
            BudgetSlot::Unbudgeted => (Gate::open(), None),
            BudgetSlot::Missing => {
                let mode = self.missing_budget;
                let allowed = matches!(mode, FailureMode::Allow | FailureMode::AllowUnsafe);
                let reason = Cow::Borrowed(reason::BUDGET_NOT_FOUND);
                (Gate { allowed, reason, release: Release::none() }, Some(mode.as_str()))
            }
            BudgetSlot::Bucket(bucket) => {
                let allowed = bucket.try_take(u64::from(budget.cost));
                let reason = Cow::Borrowed(if allowed { reason::ALLOWED } else { reason::BUDGET_DENIED });
                (Gate { allowed, reason, release: Release::none() }, Some("standard"))
            }
            BudgetSlot::Found(found) => {
                let decision = self
                    .recover(Component::Budget, key, || found.allow_attempt_after(key, index, kind, budget, previous));
                let gate = match decision {
                    Ok(decision) => {
                        let (allowed, reason, release) = decision.into_parts();
                        Gate { allowed, reason, release: release.recovering(self.recover_panics) }
                    }
                    Err(_) => Gate {
                        allowed: false,
                        reason: Cow::Borrowed(reason::PANIC_IN_BUDGET),
                        release: Release::none(),
                    },
                };
                (gate, Some("standard"))
            }
        }
    }

    /// [`gate`](Self::gate) for a call's first attempt when nobody
    /// listens (no mode to report, and a reason only for a denial): `Err`
    /// with the reason when denied, else the release written to `release`
    /// if the budget gave one to run (most give none, and the call then
    /// carries no release to settle and drop). A second form of the gate
    /// for the lean path only: benchmark S3 (the budgeted call path) is
    /// what justifies it; every other gate goes through `gate`.
    #[inline]
    pub(crate) fn gate_first(
        &self,
        key: &PolicyKey,
        budget: &BudgetRef,
        slot: &BudgetSlot,
        release: &mut Option<Release>,
    ) -> Result<(), Cow<'static, str>> {
        if let BudgetSlot::Bucket(bucket) = slot {
            return if bucket.try_take(u64::from(budget.cost)) {
                Ok(())
            } else {
                Err(Cow::Borrowed(reason::BUDGET_DENIED))
            };
        }
        let BudgetSlot::Found(found) = slot else {
            let gate = self.gate(key, 0, AttemptKind::Retry, budget, slot, None).0;
            return if gate.allowed { Ok(()) } else { Err(gate.reason) };
        };
        let decision = self
            .recover(Component::Budget, key, || found.allow_attempt_after(key, 0, AttemptKind::Retry, budget, None));
        let Ok(decision) = decision else {
            return Err(Cow::Borrowed(reason::PANIC_IN_BUDGET));
        };
        if !decision.allowed() {
            return Err(decision.into_parts().1);
        }
        // An allowed attempt's reason is not reported: only the release is
        // taken out.
        let mut allowed = decision.into_release();
        if allowed.is_pending() {
            *release = Some(allowed.recovering(self.recover_panics));
        } else {
            // Dropping a release with nothing to run does nothing but look
            // again; forgetting it skips that (it owns nothing).
            std::mem::forget(allowed);
        }
        Ok(())
    }

    /// Classifies a failed attempt: the policy's named classifier, else the
    /// error's own outcome, else the default classifier (which looks for
    /// `classify_wrapped` types inside the error first). `Err` when one of
    /// them panicked and panic recovery is on.
    #[inline]
    pub(crate) fn classify(
        &self,
        key: &PolicyKey,
        named: Option<&Arc<dyn Classifier>>,
        error: &dyn ErrorView,
    ) -> Result<Outcome, Box<PanicError>> {
        self.classify_with(key, named, error, |outcome| std::mem::replace(outcome, Outcome::new(OutcomeKind::Unknown)))
    }

    /// [`classify`](Self::classify), lending the finished outcome to `then`
    /// where the classifier left it, so a caller that needs only part of it
    /// never moves the whole.
    #[inline]
    pub(crate) fn classify_with<R>(
        &self,
        key: &PolicyKey,
        named: Option<&Arc<dyn Classifier>>,
        error: &dyn ErrorView,
        then: impl FnOnce(&mut Outcome) -> R,
    ) -> Result<R, Box<PanicError>> {
        self.recover(Component::Classifier, key, || {
            // Finished and read where the classifier left it.
            let mut outcome = match named {
                Some(classifier) => Some(classifier.classify(error)),
                None => error.own_outcome(),
            };
            let outcome = match &mut outcome {
                Some(outcome) => outcome,
                None => outcome.insert(self.default_classifier.classify(error)),
            };
            outcome.finish_in_place();
            then(outcome)
        })
    }
}

/// The attempt about to run. Holds the budget's release: settling the
/// attempt runs it, and so does dropping the plan (the call was cancelled,
/// the operation panicked, a hedge lost).
#[derive(Debug)]
pub(crate) struct Plan {
    /// What `recourse::attempt()` reports; its `deadline` is the cutoff
    /// (the call's deadline when that comes first).
    pub(crate) attempt: Attempt,
    pub(crate) release: Release,
}

impl Plan {
    /// A first attempt with no deadline, no policy id and nothing to
    /// release.
    #[inline]
    pub(crate) const fn idle() -> Self {
        Self { attempt: Attempt::first(None), release: Release::none() }
    }
}

/// Polls one attempt inside its scope until it completes or its cutoff
/// passes (`None`; the attempt is then dropped, which cancels it). The
/// operation's future is created at the first poll, inside the scope, so
/// `recourse::attempt()` works in the operation's closure as well as in its
/// future. The scope is a guard: a panic unwinding through the poll
/// restores the thread's scope too.
pub(crate) struct Run<'a, M, Fut> {
    pub(crate) attempt: &'a Attempt,
    /// The observer's scopes, entered around every poll.
    pub(crate) scopes: Scopes<'a>,
    pub(crate) make: Option<M>,
    pub(crate) future: Pin<&'a mut Option<Fut>>,
    pub(crate) timer: Pin<&'a mut Option<Sleep>>,
}

impl<'a, M, Fut> Run<'a, M, Fut> {
    pub(crate) fn new(
        (attempt, scopes): (&'a Attempt, Scopes<'a>),
        make: M,
        future: Pin<&'a mut Option<Fut>>,
        mut timer: Pin<&'a mut Option<Sleep>>,
    ) -> Self {
        if let Some(cutoff) = attempt.deadline {
            arm(timer.as_mut(), cutoff);
        }
        Self { attempt, scopes, make: Some(make), future, timer }
    }
}

/// Sets `timer` to fire at `at`, reusing its registration when it has one.
#[inline]
pub(crate) fn arm(mut timer: Pin<&mut Option<Sleep>>, at: Instant) {
    match timer.as_mut().as_pin_mut() {
        Some(sleep) => sleep.reset(at),
        None => timer.set(Some(tokio::time::sleep_until(at))),
    }
}

// `make` is never pinned (only moved out), and the rest are pinned
// references.
impl<M, Fut> Unpin for Run<'_, M, Fut> {}

impl<M: FnOnce() -> Fut, Fut: Future> Future for Run<'_, M, Fut> {
    type Output = Option<Fut::Output>;

    // Out of line, the attempt's result crosses a call boundary through
    // memory on every attempt (S1 in BENCHMARKS.md).
    #[allow(clippy::inline_always, reason = "see the comment above")]
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _entered = this.scopes.enter();
        let mut saved = Saved::enter(this.attempt);
        let scope = AttemptScope::new(&mut saved);
        if let Some(make) = this.make.take() {
            this.future.set(Some(make()));
        }
        if let Some(future) = this.future.as_mut().as_pin_mut()
            && let Poll::Ready(output) = future.poll(cx)
        {
            this.future.set(None);
            scope.exit();
            return Poll::Ready(Some(output));
        }
        scope.exit();
        if this.attempt.deadline.is_none() {
            return Poll::Pending;
        }
        let cut = this.timer.as_mut().as_pin_mut().is_some_and(|timer| timer.poll(cx).is_ready());
        if cut {
            this.future.set(None);
            return Poll::Ready(None);
        }
        Poll::Pending
    }
}

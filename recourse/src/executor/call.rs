//! The engine: one attempt loop for every call (DESIGN §6.1). Recording a
//! timeline and telling observers are the only things that differ when
//! someone is watching, and they change no decision.

use std::borrow::Cow;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{compute_sleep, next_backoff};
use super::site::{BudgetDecl, CallKey};
use super::{Executor, FailureMode, Inner};
use crate::budget::{AttemptKind, Budget, BudgetDecisionEvent, Release, reason};
use crate::classify::{Classifier, Classify, ErrorView, Outcome, OutcomeKind};
use crate::error::{Component, Error, PanicError};
use crate::observe::{self, Attempt, AttemptRecord, FinalError, Observer, Timeline};
use crate::policy::{BudgetRef, Jitter, Policy, PolicyKey};
use crate::provider::{PolicyProvider, ProviderError, ProviderErrorKind, StaticProvider};

/// Static policies given to the builder, consulted before the provider.
pub(crate) struct Layered {
    pub(crate) first: StaticProvider,
    pub(crate) then: Arc<dyn PolicyProvider>,
}

impl PolicyProvider for Layered {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        match self.first.policy(key)? {
            Some(policy) => Ok(Some(policy)),
            None => self.then.policy(key),
        }
    }

    fn generation(&self) -> u64 {
        self.then.generation()
    }
}

/// What a call site knows beyond the key (filled in by `#[recourse]`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Site<'a> {
    /// The policy compiled from `recourse.toml`, used when no provider
    /// configures the key.
    pub(crate) catalog: Option<&'a Arc<Policy>>,
    /// A classifier named on the attribute; overrides the policy's.
    pub(crate) classifier: Option<&'a str>,
    /// Budgets the catalog declares for this policy.
    pub(crate) budgets: &'a [(&'static str, BudgetDecl)],
}

/// Why the policy in use is not the one the provider would normally give.
#[derive(Debug)]
pub(crate) enum PolicyNote {
    /// The provider failed and the missing-policy mode let the call go on.
    ProviderFailed(ProviderError, FailureMode),
}

/// A policy's budget, looked up once per resolution.
pub(crate) enum BudgetSlot {
    /// The policy names no budget.
    Unbudgeted,
    /// The named budget.
    Found(Arc<dyn Budget>),
    /// The policy names a budget nobody registered.
    Missing,
}

/// Everything a call needs before its first attempt: the effective policy,
/// classifier and budgets. Call sites cache it (see `CallSite`).
pub(crate) struct Resolved {
    pub(crate) policy: Arc<Policy>,
    pub(crate) classifier: Option<Arc<dyn Classifier>>,
    /// The classifier name the policy asked for when it was missing and
    /// the default classifier stands in.
    pub(crate) fallback_from: Option<Box<str>>,
    pub(crate) note: Option<PolicyNote>,
    pub(crate) retry_budget: BudgetSlot,
    pub(crate) hedge_budget: BudgetSlot,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved").field("policy", &self.policy.key).finish_non_exhaustive()
    }
}

impl Resolved {
    /// Whether a call site may reuse this for later calls (provider errors
    /// are re-asked every call).
    pub(crate) fn cacheable(&self) -> bool {
        self.note.is_none()
    }
}

/// A resolution owned by one call, or shared from a call site's cache.
#[derive(Debug)]
pub(crate) enum Res {
    Owned(Resolved),
    Shared(Arc<Resolved>),
}

impl std::ops::Deref for Res {
    type Target = Resolved;

    fn deref(&self) -> &Resolved {
        match self {
            Self::Owned(r) => r,
            Self::Shared(r) => r,
        }
    }
}

fn error_text<E: Classify + 'static>(error: &E) -> String {
    match Classify::as_error(error) {
        Some(e) => e.to_string(),
        None => std::any::type_name::<E>().to_owned(),
    }
}

impl Inner {
    pub(crate) fn now(&self) -> Instant {
        self.time.now()
    }

    /// Changes whenever the provider or the classifier registry may answer
    /// differently (both counters only grow, so their sum does too).
    pub(crate) fn generation(&self) -> u64 {
        self.provider.generation().wrapping_add(self.classifiers.generation()).wrapping_add(self.budgets.generation())
    }

    /// Looks a policy's budget up once per resolution; a budget declared in
    /// the call site's catalog is created on first use unless registered in
    /// code.
    fn budget_slot(&self, budget: &BudgetRef, declared: &[(&'static str, BudgetDecl)]) -> BudgetSlot {
        let name = budget.name.trim();
        if name.is_empty() {
            return BudgetSlot::Unbudgeted;
        }
        let found = match declared.iter().find(|(declared, _)| *declared == name) {
            Some((_, decl)) => self.budgets.get_or_register(name, || decl.build()),
            None => self.budgets.get(name),
        };
        found.map_or(BudgetSlot::Missing, BudgetSlot::Found)
    }

    fn recover<R>(&self, component: Component, key: &PolicyKey, f: impl FnOnce() -> R) -> Result<R, PanicError> {
        if self.recover_panics {
            catch_unwind(AssertUnwindSafe(f)).map_err(|payload| PanicError::new(component, key, &*payload))
        } else {
            Ok(f())
        }
    }

    pub(crate) fn resolve_policy(
        &self,
        key: &PolicyKey,
        catalog: Option<&Arc<Policy>>,
    ) -> Result<(Arc<Policy>, Option<PolicyNote>), Error> {
        let answer = self
            .recover(Component::PolicyProvider, key, || self.provider.policy(key))
            .unwrap_or_else(|panic| Err(ProviderError::new(ProviderErrorKind::Panicked).with_source(panic)));
        let fallback = || catalog.cloned().unwrap_or_else(|| Arc::clone(&self.default_policy));
        let (policy, note) = match answer {
            Ok(Some(policy)) => (policy, None),
            Ok(None) => (fallback(), None),
            Err(error) => match self.missing_policy {
                FailureMode::Deny => return Err(Error::NoPolicy { key: key.clone(), source: error }),
                FailureMode::Allow => (
                    Arc::clone(&self.single_attempt_policy),
                    Some(PolicyNote::ProviderFailed(error, FailureMode::Allow)),
                ),
                mode @ (FailureMode::Fallback | FailureMode::AllowUnsafe) => {
                    let policy = error.fallback().cloned().unwrap_or_else(fallback);
                    (policy, Some(PolicyNote::ProviderFailed(error, mode)))
                }
            },
        };
        if policy.is_normalized() {
            Ok((policy, note))
        } else {
            Ok((Arc::new(Policy::clone(&policy).normalized()), note))
        }
    }

    /// Resolves the policy and the classifier for a call.
    pub(crate) fn resolve(&self, key: &PolicyKey, site: Site<'_>) -> Result<Resolved, Error> {
        let (policy, note) = self.resolve_policy(key, site.catalog)?;
        let requested = site.classifier.unwrap_or(&policy.retry.classifier).trim();
        let (classifier, fallback_from) = if requested.is_empty() {
            (None, None)
        } else if let Some(classifier) = self.classifiers.get(requested) {
            (Some(classifier), None)
        } else if self.missing_classifier == FailureMode::Deny {
            return Err(Error::NoClassifier { name: requested.to_owned() });
        } else {
            (None, Some(Box::from(requested)))
        };
        let retry_budget = self.budget_slot(&policy.retry.budget, site.budgets);
        let hedge_budget = self.budget_slot(&policy.hedge.budget, site.budgets);
        Ok(Resolved { policy, classifier, fallback_from, note, retry_budget, hedge_budget })
    }

    /// Classifies a failed attempt; `Err` when a classifier panicked and
    /// panic recovery is on.
    fn classify<E: Classify + 'static>(
        &self,
        key: &PolicyKey,
        named: Option<&Arc<dyn Classifier>>,
        error: &E,
    ) -> Result<Outcome, PanicError> {
        self.recover(Component::Classifier, key, || {
            let view: &dyn ErrorView = error;
            match named {
                Some(classifier) => classifier.classify(view),
                None => match view.own_outcome() {
                    Some(outcome) => outcome,
                    None => self.default_classifier.classify(view),
                },
            }
        })
        .map(Outcome::finish)
    }
}

/// Records a call's timeline when a capture is listening or an observer is
/// installed, and tells the observer; otherwise every method is a no-op
/// and nothing allocates.
struct Recorder<'x> {
    timeline: Option<Timeline>,
    /// Whether a capture is listening (the timeline is then published).
    capture: bool,
    observer: Option<&'x dyn Observer>,
    key: &'x PolicyKey,
}

impl<'x> Recorder<'x> {
    fn new(inner: &'x Inner, key: &'x PolicyKey) -> Self {
        let capture = observe::capture_requested();
        let observer = inner.observer.as_deref();
        let timeline = (capture || observer.is_some()).then(|| Timeline::new(key.clone(), inner.now()));
        Self { timeline, capture, observer, key }
    }

    fn active(&self) -> bool {
        self.timeline.is_some()
    }

    fn attribute(&mut self, key: &'static str, value: impl Into<Cow<'static, str>>) {
        if let Some(t) = &mut self.timeline {
            t.attributes.insert(key, value);
        }
    }

    fn start(&mut self, policy: Option<&Policy>, note: Option<&PolicyNote>, fallback_from: Option<&str>) {
        if let Some(observer) = self.observer {
            observer.on_start(self.key, policy);
        }
        let (Some(t), Some(policy)) = (&mut self.timeline, policy) else { return };
        t.policy_id.clone_from(&policy.id);
        t.policy_source = policy.meta.source;
        t.attributes.insert("policy_source", policy.meta.source.as_str());
        if policy.meta.normalization.changed() {
            t.attributes.insert("policy_normalized", policy.meta.normalization.changed_fields().join(","));
        }
        if let Some(PolicyNote::ProviderFailed(error, mode)) = note {
            t.attributes.insert("policy_error", error.to_string());
            t.attributes.insert("policy_fallback", mode.as_str());
        }
        if let Some(name) = fallback_from {
            t.attributes.insert("classifier_fallback", format!("{name} not found; default classifier used"));
        }
        if policy.retry.budget.is_set() {
            t.attributes.insert("budget", policy.retry.budget.name.to_string());
        }
    }

    fn budget(&self, event: impl FnOnce() -> BudgetDecisionEvent) {
        if let Some(observer) = self.observer {
            observer.on_budget_decision(&event());
        }
    }

    /// Records an attempt; the observer hears it inside the attempt's scope
    /// (when it ran), so `recourse::attempt()` describes it.
    fn attempt(&mut self, scope: Option<&Attempt>, record: impl FnOnce() -> AttemptRecord) {
        if !self.active() {
            return;
        }
        let record = record();
        if let Some(observer) = self.observer {
            match scope {
                Some(attempt) => observe::enter_attempt(attempt, || observer.on_attempt(self.key, &record)),
                None => observer.on_attempt(self.key, &record),
            }
        }
        if let Some(t) = &mut self.timeline {
            t.attempts.push(record);
        }
    }

    /// Ends the call: tells the observer and publishes the timeline to the
    /// enclosing capture. Later calls do nothing.
    fn finish(&mut self, end: Instant, error: Option<FinalError>) {
        let Some(mut t) = self.timeline.take() else { return };
        t.end = Some(end);
        t.final_error = error;
        if let Some(observer) = self.observer {
            if t.final_error.is_none() {
                observer.on_success(self.key, &t);
            } else {
                observer.on_failure(self.key, &t);
            }
        }
        if self.capture {
            observe::publish(t);
        }
    }
}

/// Which deadline cuts an attempt short.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Attempt,
    Overall,
}

/// Polls `future` with `attempt` in scope, until it completes or `cutoff`
/// passes (then it is dropped, which cancels it).
async fn run_attempt<F: Future>(attempt: &Attempt, future: F, cutoff: Option<Instant>) -> Option<F::Output> {
    let mut future = pin!(future);
    match cutoff {
        None => Some(observe::scoped(attempt, future).await),
        Some(at) => {
            let mut timer = pin!(tokio::time::sleep_until(at));
            std::future::poll_fn(|cx| {
                if let Poll::Ready(output) = observe::enter_attempt(attempt, || future.as_mut().poll(cx)) {
                    return Poll::Ready(Some(output));
                }
                timer.as_mut().poll(cx).map(|()| None)
            })
            .await
        }
    }
}

/// One call in progress: the state the attempt loop carries between
/// attempts. The closure form ([`Executor::call`]) and the sequential form
/// that `#[recourse]` expands to for `&mut` functions drive the same state
/// with the same steps: [`plan`](Self::plan) (the budget gate), run the
/// attempt, [`settle`](Self::settle) (classify, decide), [`sleep`](Self::sleep).
#[doc(hidden)]
pub struct Call<'x, E> {
    inner: &'x Inner,
    key: &'x PolicyKey,
    res: Res,
    rec: Recorder<'x>,
    deadline: Option<Instant>,
    index: u32,
    base: Duration,
    backoff: Duration,
    /// The previous attempt's error, kept across the backoff so that a
    /// budget denial of the next attempt can return it (DESIGN §6.2).
    last_error: Option<E>,
}

impl<E> std::fmt::Debug for Call<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("key", self.key).field("index", &self.index).finish_non_exhaustive()
    }
}

/// The attempt about to run. Holds the budget's release: dropping the plan
/// (the call was cancelled, or the operation panicked) runs it, as does
/// [`Call::settle`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Plan {
    attempt: Attempt,
    cutoff: Option<Instant>,
    cut: Cut,
    started: Option<Instant>,
    budget_reason: Cow<'static, str>,
    release: Release,
}

impl Plan {
    /// The attempt's scope, as `recourse::attempt()` reports it.
    pub fn attempt(&self) -> &Attempt {
        &self.attempt
    }

    /// Runs one attempt's future under this plan's scope and deadline.
    pub async fn run<F: Future>(&self, future: F) -> Option<F::Output> {
        run_attempt(&self.attempt, future, self.cutoff).await
    }
}

/// What to do after an attempt.
#[doc(hidden)]
#[derive(Debug)]
pub enum Step<T, E> {
    /// The call is over.
    Done(Result<T, E>),
    /// Sleep this long, then plan the next attempt.
    Sleep(Duration),
}

/// The budget gate's answer for one attempt.
struct Gate {
    allowed: bool,
    reason: Cow<'static, str>,
    release: Release,
}

impl<'x, E> Call<'x, E>
where
    E: Classify + From<Error> + 'static,
{
    /// Starts a call: stamps the start, records the resolution, or ends the
    /// call at once (with the error converted into `E`) when resolution
    /// failed.
    pub(crate) fn begin(inner: &'x Inner, key: &'x PolicyKey, res: Result<Res, Error>) -> Result<Self, E> {
        let mut rec = Recorder::new(inner, key);
        let res = match res {
            Ok(res) => res,
            Err(error) => {
                rec.start(None, None, None);
                if let Error::NoClassifier { name } = &error {
                    rec.attribute("classifier_name", name.clone());
                    rec.attribute("classifier_error", "classifier_not_found");
                }
                rec.finish(inner.now(), Some(final_error(error.to_string(), &error.outcome())));
                return Err(E::from(error));
            }
        };
        rec.start(Some(&res.policy), res.note.as_ref(), res.fallback_from.as_deref());
        let retry = &res.policy.retry;
        let deadline = (!retry.overall_timeout.is_zero()).then(|| Instant::now() + retry.overall_timeout);
        let base = retry.initial_backoff;
        Ok(Self { inner, key, res, rec, deadline, index: 0, base, backoff: Duration::ZERO, last_error: None })
    }

    /// Asks the attempt's budget (every attempt, the first included).
    fn gate(&mut self, kind: AttemptKind) -> Gate {
        let inner = self.inner;
        let (budget, slot) = match kind {
            AttemptKind::Retry => (&self.res.policy.retry.budget, &self.res.retry_budget),
            AttemptKind::Hedge => (&self.res.policy.hedge.budget, &self.res.hedge_budget),
        };
        let (gate, mode) = match slot {
            BudgetSlot::Unbudgeted => {
                return Gate { allowed: true, reason: Cow::Borrowed(reason::NO_BUDGET), release: Release::none() };
            }
            BudgetSlot::Missing => {
                let mode = inner.missing_budget;
                let allowed = matches!(mode, FailureMode::Allow | FailureMode::AllowUnsafe);
                let reason = Cow::Borrowed(reason::BUDGET_NOT_FOUND);
                (Gate { allowed, reason, release: Release::none() }, mode.as_str())
            }
            BudgetSlot::Found(found) => {
                let decision = inner
                    .recover(Component::Budget, self.key, || found.allow_attempt(self.key, self.index, kind, budget));
                let gate = match decision {
                    Ok(decision) => {
                        let (allowed, reason, release) = decision.into_parts();
                        Gate { allowed, reason, release }
                    }
                    Err(_) => Gate {
                        allowed: false,
                        reason: Cow::Borrowed(reason::PANIC_IN_BUDGET),
                        release: Release::none(),
                    },
                };
                (gate, "standard")
            }
        };
        self.rec.budget(|| BudgetDecisionEvent {
            key: self.key.clone(),
            attempt: self.index,
            kind,
            budget: budget.name.trim().to_owned(),
            cost: budget.cost,
            mode,
            allowed: gate.allowed,
            reason: gate.reason.clone(),
        });
        gate
    }

    /// Plans the next attempt: asks its budget, then fixes its index, scope
    /// and deadline. A denial ends the call: with the previous attempt's
    /// error when there was one (DESIGN §6.2), else with
    /// [`Error::BudgetDenied`].
    pub fn plan(&mut self) -> Result<Plan, E> {
        let gate = self.gate(AttemptKind::Retry);
        let inner = self.inner;
        let started = self.rec.active().then(|| inner.now());
        let (index, backoff) = (self.index, self.backoff);
        if !gate.allowed {
            let outcome = Outcome::abort().with_reason(gate.reason.clone());
            self.rec.attempt(None, || AttemptRecord {
                budget_allowed: false,
                budget_reason: gate.reason.clone(),
                ..record(index, started, inner.now(), outcome.clone(), None, backoff)
            });
            let error = match self.last_error.take() {
                Some(error) => error,
                None => E::from(Error::BudgetDenied { reason: gate.reason.clone() }),
            };
            self.rec.attribute("budget_denied", gate.reason);
            self.rec.finish(inner.now(), Some(final_error(error_text(&error), &outcome)));
            return Err(error);
        }
        let retry = &self.res.policy.retry;
        let attempt_cutoff = (!retry.timeout_per_attempt.is_zero()).then(|| Instant::now() + retry.timeout_per_attempt);
        let (cutoff, cut) = match (attempt_cutoff, self.deadline) {
            (Some(a), Some(d)) if a < d => (Some(a), Cut::Attempt),
            (Some(a), None) => (Some(a), Cut::Attempt),
            (_, d) => (d, Cut::Overall),
        };
        let attempt =
            Attempt { retry_index: index, hedge_index: 0, policy_id: self.res.policy.id.clone(), deadline: cutoff };
        Ok(Plan { attempt, cutoff, cut, started, budget_reason: gate.reason, release: gate.release })
    }

    /// Releases the attempt's budget, classifies its result (`None`: its
    /// deadline passed) and decides: done, or sleep and retry.
    #[allow(clippy::needless_pass_by_value, reason = "a plan is settled exactly once")]
    pub fn settle<T>(&mut self, mut plan: Plan, result: Option<Result<T, E>>) -> Step<T, E> {
        // Before anything is published, so a caller that sees the result
        // also sees the release.
        plan.release.run();
        let inner = self.inner;
        let (index, backoff, started) = (self.index, self.backoff, plan.started);
        let scope = Some(&plan.attempt);
        let budget_reason = &plan.budget_reason;
        let attempt_record = |outcome: Outcome, error: Option<String>| AttemptRecord {
            budget_reason: budget_reason.clone(),
            ..record(index, started, inner.now(), outcome, error, backoff)
        };
        let retry = &self.res.policy.retry;
        let (error, outcome) = match result {
            Some(Ok(value)) => {
                self.rec.attempt(scope, || attempt_record(Outcome::success(), None));
                self.rec.finish(inner.now(), None);
                return Step::Done(Ok(value));
            }
            Some(Err(error)) => match inner.classify(self.key, self.res.classifier.as_ref(), &error) {
                Ok(outcome) => (error, with_fallback_note(outcome, self.res.fallback_from.as_deref())),
                Err(panic) => {
                    let outcome = Outcome::abort().with_reason(Component::Classifier.reason());
                    self.rec.attempt(scope, || attempt_record(outcome.clone(), Some(error_text(&error))));
                    let error = Error::Panic(panic);
                    self.rec.finish(inner.now(), Some(final_error(error.to_string(), &outcome)));
                    return Step::Done(Err(E::from(error)));
                }
            },
            None => match plan.cut {
                Cut::Attempt => (
                    E::from(Error::AttemptTimeout { timeout: retry.timeout_per_attempt }),
                    Outcome::retryable().with_reason("context_deadline_exceeded"),
                ),
                Cut::Overall => {
                    let error = Error::Timeout { timeout: retry.overall_timeout };
                    let outcome = Outcome::abort().with_reason("context_deadline_exceeded");
                    self.rec.attempt(scope, || attempt_record(outcome.clone(), Some(error.to_string())));
                    self.rec.finish(inner.now(), Some(final_error(error.to_string(), &outcome)));
                    return Step::Done(Err(E::from(error)));
                }
            },
        };
        self.rec.attempt(scope, || attempt_record(outcome.clone(), Some(error_text(&error))));

        if outcome.kind != OutcomeKind::Retryable || index + 1 >= retry.max_attempts.max(1) {
            self.rec.finish(inner.now(), Some(final_error(error_text(&error), &outcome)));
            return Step::Done(Err(error));
        }

        let unit = if retry.jitter == Jitter::None { 0.0 } else { inner.rng.next_unit() };
        let sleep = compute_sleep(self.base, retry, outcome.backoff, unit);
        // DESIGN §6.7: never sleep into the deadline; end now with the error
        // we have instead of waking up to a timeout.
        if let Some(deadline) = self.deadline
            && Instant::now() + sleep >= deadline
        {
            self.rec.attribute("deadline_stop", "backoff would pass the overall deadline");
            self.rec.finish(inner.now(), Some(final_error(error_text(&error), &outcome)));
            return Step::Done(Err(error));
        }
        // Only a budget can end the call before the next attempt runs.
        if !matches!(self.res.retry_budget, BudgetSlot::Unbudgeted) {
            self.last_error = Some(error);
        }
        self.backoff = sleep;
        self.base = next_backoff(self.base, retry);
        self.index += 1;
        Step::Sleep(sleep)
    }

    /// Waits out a backoff with the executor's sleeper, bounded by the
    /// overall deadline: a sleeper that overruns it (a custom one can) ends
    /// the call with [`Error::Timeout`].
    pub async fn sleep(&mut self, duration: Duration) -> Result<(), E> {
        if duration.is_zero() {
            return Ok(());
        }
        let Some(deadline) = self.deadline else {
            self.inner.time.sleep(duration).await;
            return Ok(());
        };
        let mut sleep = pin!(self.inner.time.sleep(duration));
        let mut timer = pin!(tokio::time::sleep_until(deadline));
        let woke = std::future::poll_fn(|cx| {
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(true);
            }
            timer.as_mut().poll(cx).map(|()| false)
        })
        .await;
        if woke {
            return Ok(());
        }
        let error = Error::Timeout { timeout: self.res.policy.retry.overall_timeout };
        let outcome = Outcome::abort().with_reason("context_deadline_exceeded");
        self.rec.finish(self.inner.now(), Some(final_error(error.to_string(), &outcome)));
        self.last_error = None;
        Err(E::from(error))
    }
}

/// The closure form's attempt loop.
pub(crate) async fn drive<F, Fut, T, E>(mut call: Call<'_, E>, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error> + 'static,
{
    loop {
        let plan = call.plan()?;
        // The operation is created inside the attempt's scope too, so
        // `recourse::attempt()` works in the closure as well as the future.
        let future = observe::enter_attempt(&plan.attempt, &mut op);
        let result = plan.run(future).await;
        match call.settle(plan, result) {
            Step::Done(result) => return result,
            Step::Sleep(duration) => call.sleep(duration).await?,
        }
    }
}

impl Executor {
    /// Runs `op` under the policy for `key`.
    ///
    /// `op` is called once per attempt and returns the attempt's future;
    /// shared state it captures is reused, so clone owned data inside it.
    /// The call returns the first success, or the operation's last error
    /// (unchanged) when attempts run out or an error is not retryable, or a
    /// [`recourse::Error`](crate::Error) converted into `E` when recourse
    /// itself ended the call (policy denied, overall timeout, recovered
    /// panic). Dropping the returned future cancels the call: the attempt in
    /// flight is dropped and nothing more happens.
    ///
    /// Classification of a failed attempt: the policy's named classifier,
    /// else the error's own [`Classify`] outcome, else the executor's
    /// default classifier.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let executor = recourse::Executor::builder().build();
    /// let mut calls = 0;
    /// let result: Result<(), std::io::Error> = executor
    ///     .call("files.Read", || {
    ///         calls += 1;
    ///         async { Err(std::io::Error::from(std::io::ErrorKind::NotFound)) }
    ///     })
    ///     .await;
    /// assert!(result.is_err());
    /// assert_eq!(calls, 1, "NotFound is not retryable");
    /// # }
    /// ```
    pub async fn call<K, F, Fut, T, E>(&self, key: K, op: F) -> Result<T, E>
    where
        K: Into<CallKey>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error> + 'static,
    {
        let key = match key.into() {
            CallKey::Key(key) => key,
            CallKey::Checked(checked) => return checked.site().call(self, op).await,
        };
        let inner = &*self.inner;
        let res = inner.resolve(&key, Site::default()).map(Res::Owned);
        match Call::begin(inner, &key, res) {
            Ok(call) => drive(call, op).await,
            Err(error) => Err(error),
        }
    }
}

fn with_fallback_note(outcome: Outcome, fallback_from: Option<&str>) -> Outcome {
    match fallback_from {
        None => outcome,
        Some(name) => outcome
            .with_attribute("classifier_not_found", "true")
            .with_attribute("classifier_name", name.to_owned())
            .with_attribute("classifier_fallback", "default"),
    }
}

fn final_error(message: String, outcome: &Outcome) -> FinalError {
    FinalError { message, kind: outcome.kind, reason: outcome.reason.clone() }
}

fn record(
    index: u32,
    started: Option<Instant>,
    end: Instant,
    outcome: Outcome,
    error: Option<String>,
    backoff: Duration,
) -> AttemptRecord {
    AttemptRecord {
        attempt: index,
        start: started.unwrap_or(end),
        end,
        is_hedge: false,
        hedge_index: 0,
        outcome,
        error,
        backoff,
        budget_allowed: true,
        budget_reason: Cow::Borrowed(reason::NO_BUDGET),
    }
}

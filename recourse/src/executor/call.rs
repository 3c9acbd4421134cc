//! The engine: one attempt loop for every call (DESIGN §6.1). Recording a
//! timeline is the only thing that differs when someone is watching, and it
//! changes no decision.

use std::borrow::Cow;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{compute_sleep, next_backoff};
use super::site::CallKey;
use super::{Executor, FailureMode, Inner};
use crate::classify::{Classifier, Classify, ErrorView, Outcome, OutcomeKind};
use crate::error::{Component, Error, PanicError};
use crate::observe::{self, Attempt, AttemptRecord, FinalError, Timeline};
use crate::policy::{Jitter, Policy, PolicyKey};
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
}

/// What a call site knows beyond the key (filled in by `#[recourse]`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Site<'a> {
    /// The policy compiled from `recourse.toml`, used when no provider
    /// configures the key.
    pub(crate) catalog: Option<&'a Arc<Policy>>,
    /// A classifier named on the attribute; overrides the policy's.
    pub(crate) classifier: Option<&'a str>,
}

/// Why the policy in use is not the one the provider would normally give.
#[derive(Debug)]
pub(crate) enum PolicyNote {
    /// The provider failed and the missing-policy mode let the call go on.
    ProviderFailed(ProviderError, FailureMode),
}

/// Everything a call needs before its first attempt: the effective policy
/// and classifier. Call sites cache it (see `CallSite`).
pub(crate) struct Resolved {
    pub(crate) policy: Arc<Policy>,
    pub(crate) classifier: Option<Arc<dyn Classifier>>,
    /// The classifier name the policy asked for when it was missing and
    /// the default classifier stands in.
    pub(crate) fallback_from: Option<Box<str>>,
    pub(crate) note: Option<PolicyNote>,
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
        self.provider.generation().wrapping_add(self.classifiers.generation())
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
        Ok(Resolved { policy, classifier, fallback_from, note })
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

/// Records a call's timeline when a capture is listening; otherwise every
/// method is a no-op and nothing allocates.
struct Recorder {
    timeline: Option<Timeline>,
}

impl Recorder {
    fn active(&self) -> bool {
        self.timeline.is_some()
    }

    fn attribute(&mut self, key: &'static str, value: impl Into<Cow<'static, str>>) {
        if let Some(t) = &mut self.timeline {
            t.attributes.insert(key, value);
        }
    }

    fn policy(&mut self, policy: &Policy, note: Option<&PolicyNote>) {
        let Some(t) = &mut self.timeline else { return };
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
    }

    fn attempt(&mut self, record: impl FnOnce() -> AttemptRecord) {
        if let Some(t) = &mut self.timeline {
            t.attempts.push(record());
        }
    }

    /// Publishes the timeline to the enclosing capture.
    fn finish(&mut self, end: Instant, error: Option<FinalError>) {
        if let Some(mut t) = self.timeline.take() {
            t.end = Some(end);
            t.final_error = error;
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
/// with the same three steps: [`plan`](Self::plan), run the attempt,
/// [`settle`](Self::settle).
#[doc(hidden)]
pub struct Call<'x> {
    inner: &'x Inner,
    key: &'x PolicyKey,
    res: Res,
    rec: Recorder,
    deadline: Option<Instant>,
    index: u32,
    base: Duration,
    backoff: Duration,
}

impl std::fmt::Debug for Call<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("key", self.key).field("index", &self.index).finish_non_exhaustive()
    }
}

/// The attempt about to run.
#[doc(hidden)]
#[derive(Debug)]
pub struct Plan {
    attempt: Attempt,
    cutoff: Option<Instant>,
    cut: Cut,
    started: Option<Instant>,
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

impl<'x> Call<'x> {
    /// Starts a call: stamps the start, records the resolution, or ends the
    /// call at once when resolution failed.
    pub(crate) fn begin(inner: &'x Inner, key: &'x PolicyKey, res: Result<Res, Error>) -> Result<Self, Error> {
        let mut rec =
            Recorder { timeline: observe::capture_requested().then(|| Timeline::new(key.clone(), inner.now())) };
        let res = match res {
            Ok(res) => res,
            Err(error) => {
                if let Error::NoClassifier { name } = &error {
                    rec.attribute("classifier_name", name.clone());
                    rec.attribute("classifier_error", "classifier_not_found");
                }
                rec.finish(inner.now(), Some(final_error(error.to_string(), &error.outcome())));
                return Err(error);
            }
        };
        rec.policy(&res.policy, res.note.as_ref());
        let retry = &res.policy.retry;
        let deadline = (!retry.overall_timeout.is_zero()).then(|| Instant::now() + retry.overall_timeout);
        let base = retry.initial_backoff;
        Ok(Self { inner, key, res, rec, deadline, index: 0, base, backoff: Duration::ZERO })
    }

    /// Plans the next attempt: its index, scope and deadline.
    pub fn plan(&mut self) -> Plan {
        // Seam: the budget gate (budgets issue) decides here, before the
        // attempt; hedges launch beside the primary (hedging issue).
        let retry = &self.res.policy.retry;
        let started = self.rec.active().then(|| self.inner.now());
        let attempt_cutoff = (!retry.timeout_per_attempt.is_zero()).then(|| Instant::now() + retry.timeout_per_attempt);
        let (cutoff, cut) = match (attempt_cutoff, self.deadline) {
            (Some(a), Some(d)) if a < d => (Some(a), Cut::Attempt),
            (Some(a), None) => (Some(a), Cut::Attempt),
            (_, d) => (d, Cut::Overall),
        };
        let attempt = Attempt {
            retry_index: self.index,
            hedge_index: 0,
            policy_id: self.res.policy.id.clone(),
            deadline: cutoff,
        };
        Plan { attempt, cutoff, cut, started }
    }

    /// Classifies an attempt's result (`None`: its deadline passed) and
    /// decides: done, or sleep and retry.
    #[allow(clippy::needless_pass_by_value, reason = "a plan is settled exactly once")]
    pub fn settle<T, E>(&mut self, plan: Plan, result: Option<Result<T, E>>) -> Step<T, E>
    where
        E: Classify + From<Error> + 'static,
    {
        let inner = self.inner;
        let index = self.index;
        let backoff = self.backoff;
        let started = plan.started;
        let retry = &self.res.policy.retry;
        let (error, outcome) = match result {
            Some(Ok(value)) => {
                self.rec.attempt(|| record(index, started, inner.now(), Outcome::success(), None, backoff));
                self.rec.finish(inner.now(), None);
                return Step::Done(Ok(value));
            }
            Some(Err(error)) => match inner.classify(self.key, self.res.classifier.as_ref(), &error) {
                Ok(outcome) => (error, with_fallback_note(outcome, self.res.fallback_from.as_deref())),
                Err(panic) => {
                    let outcome = Outcome::abort().with_reason(Component::Classifier.reason());
                    self.rec.attempt(|| {
                        record(index, started, inner.now(), outcome.clone(), Some(error_text(&error)), backoff)
                    });
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
                    self.rec.attempt(|| {
                        record(index, started, inner.now(), outcome.clone(), Some(error.to_string()), backoff)
                    });
                    self.rec.finish(inner.now(), Some(final_error(error.to_string(), &outcome)));
                    return Step::Done(Err(E::from(error)));
                }
            },
        };
        self.rec.attempt(|| record(index, started, inner.now(), outcome.clone(), Some(error_text(&error)), backoff));

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
        self.backoff = sleep;
        self.base = next_backoff(self.base, retry);
        self.index += 1;
        Step::Sleep(sleep)
    }

    /// Waits out a backoff with the executor's sleeper, bounded by the
    /// overall deadline: a sleeper that overruns it (a custom one can) ends
    /// the call with [`Error::Timeout`].
    pub async fn sleep(&mut self, duration: Duration) -> Result<(), Error> {
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
        Err(error)
    }
}

/// The closure form's attempt loop.
pub(crate) async fn drive<F, Fut, T, E>(mut call: Call<'_>, mut op: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error> + 'static,
{
    loop {
        let plan = call.plan();
        // The operation is created inside the attempt's scope too, so
        // `recourse::attempt()` works in the closure as well as the future.
        let future = observe::enter_attempt(&plan.attempt, &mut op);
        let result = plan.run(future).await;
        match call.settle(plan, result) {
            Step::Done(result) => return result,
            Step::Sleep(duration) => call.sleep(duration).await.map_err(E::from)?,
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
            Err(error) => Err(E::from(error)),
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
        budget_reason: Cow::Borrowed("no_budget"),
    }
}

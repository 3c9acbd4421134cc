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
    fn finish(self, end: impl FnOnce() -> Instant, error: Option<FinalError>) {
        if let Some(mut t) = self.timeline {
            t.end = Some(end());
            t.final_error = error;
            observe::publish(t);
        }
    }
}

/// Which deadline cut an attempt short.
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
        K: Into<PolicyKey>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error> + 'static,
    {
        self.run(&key.into(), Site::default(), op).await
    }

    #[allow(clippy::too_many_lines, reason = "the attempt loop reads best as one piece; its steps are commented")]
    pub(crate) async fn run<F, Fut, T, E>(&self, key: &PolicyKey, site: Site<'_>, mut op: F) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error> + 'static,
    {
        let inner = &*self.inner;
        let mut rec =
            Recorder { timeline: observe::capture_requested().then(|| Timeline::new(key.clone(), inner.now())) };
        let end = || inner.now();

        // Policy. A failure here ends the call before any attempt.
        let policy = match inner.resolve_policy(key, site.catalog) {
            Ok((policy, note)) => {
                rec.policy(&policy, note.as_ref());
                policy
            }
            Err(error) => {
                rec.finish(end, Some(final_error(error.to_string(), &error.outcome())));
                return Err(E::from(error));
            }
        };
        let retry = &policy.retry;

        // Classifier: the attribute's, else the policy's; missing → mode.
        let requested = site.classifier.unwrap_or(&retry.classifier).trim();
        let mut fallback_from: Option<&str> = None;
        let named = if requested.is_empty() {
            None
        } else if let Some(classifier) = inner.classifiers.get(requested) {
            Some(classifier)
        } else if inner.missing_classifier == FailureMode::Deny {
            rec.attribute("classifier_name", requested.to_owned());
            rec.attribute("classifier_error", "classifier_not_found");
            let error = Error::NoClassifier { name: requested.to_owned() };
            rec.finish(end, Some(final_error(error.to_string(), &error.outcome())));
            return Err(E::from(error));
        } else {
            fallback_from = Some(requested);
            None
        };

        let deadline = (!retry.overall_timeout.is_zero()).then(|| Instant::now() + retry.overall_timeout);
        let max_attempts = retry.max_attempts.max(1);
        let mut base = retry.initial_backoff;
        let mut backoff = Duration::ZERO;
        let mut index = 0;
        loop {
            // Seam: the budget gate (budgets issue) runs here, before the
            // attempt, and hedges are launched beside it (hedging issue).
            let started = rec.active().then(|| inner.now());
            let attempt_cutoff =
                (!retry.timeout_per_attempt.is_zero()).then(|| Instant::now() + retry.timeout_per_attempt);
            let (cutoff, cut) = match (attempt_cutoff, deadline) {
                (Some(a), Some(d)) if a < d => (Some(a), Cut::Attempt),
                (Some(a), None) => (Some(a), Cut::Attempt),
                (_, d) => (d, Cut::Overall),
            };
            let attempt =
                Attempt { retry_index: index, hedge_index: 0, policy_id: policy.id.clone(), deadline: cutoff };
            // The operation is created inside the attempt's scope too, so
            // `recourse::attempt()` works in the closure as well as the future.
            let future = observe::enter_attempt(&attempt, &mut op);
            let result = run_attempt(&attempt, future, cutoff).await;

            let (error, outcome) = match result {
                Some(Ok(value)) => {
                    rec.attempt(|| record(index, started, inner.now(), Outcome::success(), None, backoff));
                    rec.finish(end, None);
                    return Ok(value);
                }
                Some(Err(error)) => match inner.classify(key, named.as_ref(), &error) {
                    Ok(outcome) => (error, with_fallback_note(outcome, fallback_from)),
                    Err(panic) => {
                        let outcome = Outcome::abort().with_reason(Component::Classifier.reason());
                        rec.attempt(|| {
                            record(index, started, inner.now(), outcome.clone(), Some(error_text(&error)), backoff)
                        });
                        let error = Error::Panic(panic);
                        rec.finish(end, Some(final_error(error.to_string(), &outcome)));
                        return Err(E::from(error));
                    }
                },
                None => {
                    let outcome = Outcome::retryable().with_reason("context_deadline_exceeded");
                    match cut {
                        Cut::Attempt => {
                            (E::from(Error::AttemptTimeout { timeout: retry.timeout_per_attempt }), outcome)
                        }
                        Cut::Overall => {
                            let error = Error::Timeout { timeout: retry.overall_timeout };
                            let outcome = Outcome::abort().with_reason("context_deadline_exceeded");
                            rec.attempt(|| {
                                record(index, started, inner.now(), outcome.clone(), Some(error.to_string()), backoff)
                            });
                            rec.finish(end, Some(final_error(error.to_string(), &outcome)));
                            return Err(E::from(error));
                        }
                    }
                }
            };
            rec.attempt(|| record(index, started, inner.now(), outcome.clone(), Some(error_text(&error)), backoff));

            if outcome.kind != OutcomeKind::Retryable || index + 1 >= max_attempts {
                rec.finish(end, Some(final_error(error_text(&error), &outcome)));
                return Err(error);
            }

            let unit = if retry.jitter == Jitter::None { 0.0 } else { inner.rng.next_unit() };
            let sleep = compute_sleep(base, retry, outcome.backoff, unit);
            // DESIGN §6.7: never sleep into the deadline; end now with the
            // error we have instead of waking up to a timeout.
            if let Some(deadline) = deadline
                && Instant::now() + sleep >= deadline
            {
                rec.attribute("deadline_stop", "backoff would pass the overall deadline");
                rec.finish(end, Some(final_error(error_text(&error), &outcome)));
                return Err(error);
            }
            drop(error);
            if !sleep.is_zero() {
                inner.time.sleep(sleep).await;
            }
            backoff = sleep;
            base = next_backoff(base, retry);
            index += 1;
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

//! The engine: one set of decisions for every call (DESIGN §6.1). Recording
//! a timeline and telling observers are the only things that differ when
//! someone is watching, and they change no decision. Calls with nothing to
//! time, break, hedge or record take the lean path (`drive`,
//! `lean_retries`), which makes the same decisions through the same
//! functions without building the engine's `Call`.

// The call path's futures (`drive`, `lean_retries`, `engine`) are
// functions returning `async move` blocks rather than `async fn`s: a block
// uses its captures in place, while an `async fn` copies its parameters
// into its body at the first poll, a store-forwarding stall per call.
#![allow(clippy::manual_async_fn, reason = "see the comment above")]

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::backoff::{compute_sleep, next_backoff};
use super::site::{BudgetDecl, CallKey, CallSite};
use super::{Executor, FailureMode, Inner};
use crate::budget::{AttemptKind, Budget, BudgetDecisionEvent, Release, reason};
use crate::circuit::{self, Breaker, Transition};
use crate::classify::{Classifier, Classify, Outcome, OutcomeKind};
use crate::error::{Component, Error, PanicError};
use crate::hedge::{HedgeTrigger, LatencyTracker};
use crate::observe::{self, Attempt, AttemptRecord, FinalError, Observer, Timeline};
use crate::policy::{BudgetRef, Jitter, Policy, PolicyKey, RetryPolicy};
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
    /// The key's breaker, when the policy enables one.
    pub(crate) breaker: Option<Arc<dyn Breaker>>,
    /// The hedge trigger, when the policy enables hedging (`None` when the
    /// trigger is missing and the mode says to run without hedges).
    pub(crate) trigger: Option<Arc<dyn HedgeTrigger>>,
    /// Why the trigger is not the one the policy named.
    pub(crate) trigger_note: Option<String>,
    /// The key's latency tracker, fed while hedging is enabled.
    pub(crate) tracker: Option<Arc<LatencyTracker>>,
    /// Nothing to time, break, hedge or observe: the call only counts,
    /// gates (when the policy has a retry budget), classifies and backs
    /// off, which `drive` and `lean_retries` do without the engine.
    pub(crate) lean: bool,
    /// Lean with no budget either: a first attempt that succeeds needs no
    /// bookkeeping at all, not even the resolution (see `CallSite::is_plain`).
    pub(crate) plain: bool,
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

/// What a call does first, from its look at the cache.
pub(crate) enum First {
    /// Current and lean (see `Resolved::lean`), nobody watching: the lean
    /// first attempt, with its scope, its budget's reason and its release
    /// (`None` without a budget: then the call's future holds no release
    /// at all, whose drop would cost the plain path). The gate is taken
    /// while the cache is borrowed, so the call holds no reference count
    /// (which every thread calling the key would write).
    Lean(Attempt, Cow<'static, str>, Option<Release>),
    /// The budget denied the first attempt.
    Denied(Cow<'static, str>),
    /// The engine, with the current resolution (`None`: missing or out of
    /// date, resolve).
    Engine(Option<Res>),
}

impl First {
    /// From a current resolution. `capturing`: a capture is listening, so
    /// the call must be recorded (the engine's path).
    pub(crate) fn current(resolved: &Arc<Resolved>, inner: &Inner, key: &PolicyKey, capturing: bool) -> Self {
        if !resolved.lean || capturing {
            return Self::Engine(Some(Arc::clone(resolved)));
        }
        let retry = &resolved.policy.retry;
        let (gate, _) = inner.gate(key, 0, AttemptKind::Retry, &retry.budget, &resolved.retry_budget);
        let Gate { allowed, reason, mut release } = gate;
        if !allowed {
            return Self::Denied(reason);
        }
        let release = release.is_pending().then_some(release);
        Self::Lean(Attempt::first(resolved.policy.id.clone()), reason, release)
    }
}

/// A call's resolution: shared with a call site's (or the executor's)
/// cache, so a call carries a pointer, not the whole resolution.
pub(crate) type Res = Arc<Resolved>;

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
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        let provider = if self.provider_changes { self.provider.generation() } else { 0 };
        provider
            .wrapping_add(self.classifiers.generation())
            .wrapping_add(self.budgets.generation())
            .wrapping_add(self.triggers.generation())
            .wrapping_add(self.circuits.generation())
    }

    /// One word naming this executor at `generation`, for call sites to
    /// remember "my resolution here is plain" without a cache load (see
    /// `CallSite::lookup`). `None` (never remembered) once the executor id
    /// or the generation outgrows its bits, so two different pairs never
    /// share a stamp.
    #[inline]
    pub(crate) fn stamp(&self, generation: u64) -> Option<u64> {
        const GENERATION_BITS: u32 = 40;
        if self.id >= 1 << (64 - GENERATION_BITS - 1) || generation >= 1 << GENERATION_BITS {
            return None;
        }
        Some(((self.id + 1) << GENERATION_BITS) | generation)
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

    /// The resolution for a key called without a call site (the function
    /// form with a string or `PolicyKey`), from the executor's own cache:
    /// one lock-free map lookup, re-resolved when the generation changes.
    /// Degraded resolutions (a provider error) are not cached.
    pub(crate) fn resolve_cached(&self, key: &PolicyKey) -> Result<Res, Error> {
        let generation = self.generation();
        if let Some((cached_generation, resolved)) = self.resolved.load().get(key)
            && *cached_generation == generation
        {
            return Ok(Arc::clone(resolved));
        }
        let resolved = Arc::new(self.resolve(key, Site::default())?);
        if resolved.cacheable() {
            self.resolved.rcu(|map| {
                let mut map = HashMap::clone(map);
                map.insert(key.clone(), (generation, Arc::clone(&resolved)));
                map
            });
        }
        Ok(resolved)
    }

    /// `key`'s cached resolution for a call (see `CallSite::lookup`).
    pub(crate) fn lookup(&self, key: &PolicyKey, capturing: bool) -> First {
        let generation = self.generation();
        match self.resolved.load().get(key) {
            Some((cached_generation, resolved)) if *cached_generation == generation => {
                First::current(resolved, self, key, capturing)
            }
            _ => First::Engine(None),
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
        let breaker = if policy.circuit.enabled { self.circuits.get_or_create(key, &policy.circuit) } else { None };
        let (trigger, trigger_note, tracker) = if policy.hedge.enabled {
            let (trigger, note) = self.resolve_trigger(&policy.hedge.trigger)?;
            (trigger, note, Some(self.trackers.get_or_create(key)))
        } else {
            (None, None, None)
        };
        let lean = breaker.is_none()
            && !policy.hedge.enabled
            && policy.retry.timeout_per_attempt.is_zero()
            && policy.retry.overall_timeout.is_zero()
            && note.is_none()
            && fallback_from.is_none()
            && self.observer.is_none();
        let plain = lean && matches!(retry_budget, BudgetSlot::Unbudgeted);
        Ok(Resolved {
            policy,
            classifier,
            fallback_from,
            note,
            retry_budget,
            hedge_budget,
            breaker,
            trigger,
            trigger_note,
            tracker,
            lean,
            plain,
        })
    }

    /// The hedge trigger a policy names (exact name; empty means fixed
    /// delay). A missing one follows the missing-trigger mode (DESIGN §6.9):
    /// deny fails the call, allow runs it without hedges, fallback and
    /// allow-unsafe hedge on the fixed delay.
    #[allow(clippy::type_complexity, reason = "a private helper returning the trigger and a note about it")]
    fn resolve_trigger(&self, name: &str) -> Result<(Option<Arc<dyn HedgeTrigger>>, Option<String>), Error> {
        if name.is_empty() {
            return Ok((Some(Arc::clone(&self.fixed_delay)), None));
        }
        if let Some(trigger) = self.triggers.get(name) {
            return Ok((Some(trigger), None));
        }
        match self.missing_trigger {
            FailureMode::Deny => Err(Error::NoTrigger { name: name.to_owned() }),
            FailureMode::Allow => Ok((None, Some(format!("trigger {name} not found; hedging off")))),
            FailureMode::Fallback | FailureMode::AllowUnsafe => {
                Ok((Some(Arc::clone(&self.fixed_delay)), Some(format!("trigger {name} not found; fixed delay used"))))
            }
        }
    }

    /// The retry decision after failed attempt `index` (0-based), shared by
    /// the engine and the lean path: `None` when the call ends (the outcome
    /// is not retryable, or the attempts are used up), else the backoff
    /// before the next attempt. Jitter is drawn only when the call goes on.
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
    ) -> (Gate, Option<&'static str>) {
        match slot {
            BudgetSlot::Unbudgeted => (Gate::open(), None),
            BudgetSlot::Missing => {
                let mode = self.missing_budget;
                let allowed = matches!(mode, FailureMode::Allow | FailureMode::AllowUnsafe);
                let reason = Cow::Borrowed(reason::BUDGET_NOT_FOUND);
                (Gate { allowed, reason, release: Release::none() }, Some(mode.as_str()))
            }
            BudgetSlot::Found(found) => {
                let decision = self.recover(Component::Budget, key, || found.allow_attempt(key, index, kind, budget));
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
                (gate, Some("standard"))
            }
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
        self.classify_with(key, named, error, Outcome::finish)
    }

    /// What the lean loop needs of a classification: the finished kind and
    /// the backoff override. Taken inside the classifier's frame, so the
    /// whole outcome never has to be handed back through memory.
    #[inline]
    fn classify_brief<E: Classify + 'static>(
        &self,
        key: &PolicyKey,
        named: Option<&Arc<dyn Classifier>>,
        error: &E,
    ) -> Result<(OutcomeKind, Option<Duration>), PanicError> {
        self.classify_with(key, named, error, |outcome| {
            let outcome = outcome.finish();
            (outcome.kind, outcome.backoff)
        })
    }

    #[inline]
    fn classify_with<E: Classify + 'static, R>(
        &self,
        key: &PolicyKey,
        named: Option<&Arc<dyn Classifier>>,
        error: &E,
        then: impl FnOnce(Outcome) -> R,
    ) -> Result<R, PanicError> {
        self.recover(Component::Classifier, key, || {
            // The error's own outcome through `Classify` directly (what
            // `ErrorView::own_outcome` forwards to), so it can be inlined.
            then(match named {
                Some(classifier) => classifier.classify(error),
                None => match Classify::classify(error) {
                    Some(outcome) => outcome,
                    None => self.default_classifier.classify(error),
                },
            })
        })
    }
}

/// Records a call's timeline when a capture is listening or an observer is
/// installed, and tells the observer; otherwise every method is a no-op
/// and nothing allocates.
struct Recorder<'x> {
    /// Boxed: the recorder lives in every call's future, recording or not.
    timeline: Option<Box<Timeline>>,
    /// Whether a capture is listening (the timeline is then published).
    capture: bool,
    observer: Option<&'x dyn Observer>,
    key: &'x PolicyKey,
}

impl<'x> Recorder<'x> {
    fn new(inner: &'x Inner, key: &'x PolicyKey) -> Self {
        let capture = observe::capture_requested();
        let observer = inner.observer.as_deref();
        let timeline = (capture || observer.is_some()).then(|| Box::new(Timeline::new(key.clone(), inner.now())));
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
            t.attributes.insert("budget", policy.retry.budget.name.trim().to_owned());
        }
    }

    fn circuit(&mut self, transition: Option<Transition>) {
        let Some(transition) = transition else { return };
        if let Some(observer) = self.observer {
            observer.on_circuit_change(self.key, transition);
        }
        self.attribute("circuit_transition", format!("{} -> {}", transition.from, transition.to));
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
    fn finish(&mut self, end: impl FnOnce() -> Instant, error: Option<FinalError>) {
        let Some(mut t) = self.timeline.take() else { return };
        t.end = Some(end());
        t.final_error = error;
        if let Some(observer) = self.observer {
            if t.final_error.is_none() {
                observer.on_success(self.key, &t);
            } else {
                observer.on_failure(self.key, &t);
            }
        }
        if self.capture {
            observe::publish(*t);
        }
    }
}

/// Which deadline cuts an attempt short.
#[derive(Debug, Clone, Copy)]
enum Cut {
    Attempt,
    Overall,
}

/// Polls one attempt inside its scope, creating its future with `make` at
/// the first poll, so `recourse::attempt()` works in the operation's
/// closure as well as its future. Every attempt of every form is polled
/// through here.
#[allow(
    clippy::inline_always,
    reason = "measured: out of line, the attempt's result crosses a call boundary through memory, a store-forwarding stall per attempt"
)]
#[inline(always)]
fn poll_attempt<Fut: Future>(
    cx: &mut Context<'_>,
    attempt: &Attempt,
    make: &mut Option<impl FnOnce() -> Fut>,
    mut future: Pin<&mut Option<Fut>>,
) -> Poll<Fut::Output> {
    observe::enter_attempt(attempt, || {
        if let Some(make) = make.take() {
            future.set(Some(make()));
        }
        future.as_mut().as_pin_mut().map_or(Poll::Pending, |future| future.poll(cx))
    })
}

/// One attempt without a deadline, polled through [`poll_attempt`]. A
/// named future rather than `poll_fn`, so its poll is inlined into the
/// call's: an out-of-line poll hands the attempt's result back through
/// memory, which costs a store-forwarding stall on every call.
struct Scoped<'a, M, Fut> {
    attempt: &'a Attempt,
    make: &'a mut Option<M>,
    future: Pin<&'a mut Option<Fut>>,
}

impl<M: FnOnce() -> Fut, Fut: Future> Future for Scoped<'_, M, Fut> {
    type Output = Fut::Output;

    #[allow(
        clippy::inline_always,
        reason = "measured: out of line, the attempt's result crosses a call boundary through memory, a store-forwarding stall per attempt"
    )]
    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Fut::Output> {
        let this = &mut *self;
        poll_attempt(cx, this.attempt, this.make, this.future.as_mut())
    }
}

/// Runs one attempt until it completes or `cutoff` passes (then it is
/// dropped, which cancels it).
async fn run_attempt<Fut: Future>(
    attempt: &Attempt,
    make: impl FnOnce() -> Fut,
    cutoff: Option<Instant>,
) -> Option<Fut::Output> {
    let mut make = Some(make);
    let mut future = pin!(None::<Fut>);
    let mut timer = pin!(cutoff.map(tokio::time::sleep_until));
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = poll_attempt(cx, attempt, &mut make, future.as_mut()) {
            return Poll::Ready(Some(output));
        }
        match timer.as_mut().as_pin_mut() {
            Some(timer) => timer.poll(cx).map(|()| None),
            None => Poll::Pending,
        }
    })
    .await
}

/// One call in progress: the state the attempt loop carries between
/// attempts. The closure form ([`Executor::call`]) and the sequential form
/// that `#[recourse]` expands to for `&mut` functions drive the same state
/// with the same steps: [`plan`](Self::plan) (the budget gate), run the
/// attempt, [`settle`](Self::settle) (classify, decide), [`sleep`](Self::sleep).
/// The closure form may run a retry group of hedged attempts instead of a
/// single attempt (`group.rs`).
#[doc(hidden)]
pub struct Call<'x, E> {
    pub(crate) inner: &'x Inner,
    pub(crate) key: &'x PolicyKey,
    pub(crate) res: Res,
    rec: Recorder<'x>,
    deadline: Option<Instant>,
    pub(crate) index: u32,
    base: Duration,
    backoff: Duration,
    /// The previous attempt's error, kept across the backoff so that a
    /// budget denial of the next attempt can return it (DESIGN §6.2).
    last_error: Option<E>,
    /// The breaker's admission, until the call's verdict is given.
    circuit: Option<CircuitGuard>,
    /// Whether this call may launch hedges.
    pub(crate) hedging: bool,
}

impl<E> std::fmt::Debug for Call<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call").field("key", self.key).field("index", &self.index).finish_non_exhaustive()
    }
}

/// A breaker's admission of one call: exactly one verdict (success,
/// failure, or a released probe) reaches the breaker, and a call dropped
/// before its verdict hands a half-open probe back (DESIGN §6.4).
struct CircuitGuard {
    breaker: Arc<dyn Breaker>,
    probe: bool,
    done: bool,
}

impl CircuitGuard {
    fn verdict(&mut self, verdict: Verdict) -> Option<Transition> {
        if std::mem::replace(&mut self.done, true) {
            return None;
        }
        match verdict {
            Verdict::Success => self.breaker.record_success(),
            Verdict::Failure => self.breaker.record_failure(),
            Verdict::None => {
                // Only a half-open probe holds a slot to hand back; a stray
                // release would let an extra probe through.
                if self.probe {
                    self.breaker.release_probe();
                }
                None
            }
        }
    }
}

impl Drop for CircuitGuard {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.release_probe();
        }
    }
}

/// What a finished call tells its breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The call succeeded.
    Success,
    /// It failed: a non-retryable error, or out of attempts or time for them.
    Failure,
    /// It ended without saying anything about the dependency (abort,
    /// budget denial, overall deadline, recovered panic).
    None,
}

impl Verdict {
    fn of(outcome: &Outcome) -> Self {
        match outcome.kind {
            OutcomeKind::Success => Self::Success,
            OutcomeKind::Retryable | OutcomeKind::NonRetryable => Self::Failure,
            OutcomeKind::Abort | OutcomeKind::Unknown => Self::None,
        }
    }
}

/// The attempt about to run. Holds the budget's release: dropping the plan
/// (the call was cancelled, the operation panicked, a hedge lost) runs it,
/// as does [`Call::settle`].
#[doc(hidden)]
#[derive(Debug)]
pub struct Plan {
    /// Its `deadline` is the attempt's cutoff (kept once: a plan is moved
    /// several times per attempt, and at 128 bytes a move is inline
    /// stores, at 144 a `memcpy` call).
    pub(crate) attempt: Attempt,
    cut: Cut,
    pub(crate) started: Option<Instant>,
    /// Monotonic start, for the latency tracker (only when hedging).
    launched: Option<Instant>,
    budget_reason: Cow<'static, str>,
    release: Release,
}

impl Plan {
    /// The attempt's scope, as `recourse::attempt()` reports it.
    pub fn attempt(&self) -> &Attempt {
        &self.attempt
    }

    /// When the attempt's own deadline (or the call's) passes.
    pub(crate) fn cutoff(&self) -> Option<Instant> {
        self.attempt.deadline
    }

    /// When the attempt was launched (read only while hedging).
    pub(crate) fn launched(&self) -> Option<Instant> {
        self.launched
    }

    /// Runs one attempt's future under this plan's scope and deadline.
    pub async fn run<F: Future>(&self, future: F) -> Option<F::Output> {
        run_attempt(&self.attempt, || future, self.attempt.deadline).await
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

/// One attempt's result, classified and recorded.
pub(crate) enum Concluded<T, E> {
    /// It succeeded (the call is not finished yet).
    Success(T),
    /// It failed with this classification.
    Failure(E, Outcome),
    /// The call must end with this error (overall deadline, recovered
    /// classifier panic); [`Call::end`] finishes it once whatever else was
    /// running has been cancelled.
    Over(E, Outcome),
}

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

impl<'x, E> Call<'x, E>
where
    E: Classify + From<Error> + 'static,
{
    /// Starts a call: stamps the start, records the resolution, asks the
    /// breaker, or ends the call at once (with the error converted into
    /// `E`) when resolution failed or the circuit is open. `sequential`
    /// calls (the `&mut` form) never hedge.
    #[inline]
    pub(crate) fn begin(
        inner: &'x Inner,
        key: &'x PolicyKey,
        res: Result<Res, Error>,
        sequential: bool,
    ) -> Result<Self, E> {
        let mut rec = Recorder::new(inner, key);
        let res = match res {
            Ok(res) => res,
            Err(error) => {
                rec.start(None, None, None);
                match &error {
                    Error::NoClassifier { name } => {
                        rec.attribute("classifier_name", name.clone());
                        rec.attribute("classifier_error", "classifier_not_found");
                    }
                    Error::NoTrigger { name } => rec.attribute("trigger_error", format!("{name} not found")),
                    _ => {}
                }
                let outcome = error.outcome();
                let error = E::from(error);
                rec.finish(|| inner.now(), Some(final_error(error_text(&error), &outcome)));
                return Err(error);
            }
        };
        rec.start(Some(&res.policy), res.note.as_ref(), res.fallback_from.as_deref());
        let mut hedging = res.policy.hedge.enabled && res.policy.hedge.max_hedges > 0 && res.trigger.is_some();
        if let Some(note) = &res.trigger_note {
            rec.attribute("trigger_fallback", note.clone());
        }
        if hedging && sequential {
            hedging = false;
            rec.attribute("hedging_disabled", "the function borrows mutably; attempts run one at a time");
        }
        let mut circuit = None;
        if let Some(breaker) = &res.breaker {
            let decision = breaker.allow();
            rec.circuit(decision.transition);
            rec.attribute("circuit_state", decision.state.as_str());
            if !decision.allowed {
                let error = Error::CircuitOpen { state: decision.state, reason: decision.reason };
                let outcome = error.outcome();
                let error = E::from(error);
                rec.finish(|| inner.now(), Some(final_error(error_text(&error), &outcome)));
                return Err(error);
            }
            let probe = decision.state == circuit::State::HalfOpen;
            if probe && hedging {
                hedging = false;
                rec.attribute("hedging_disabled", "circuit half-open: one probe attempt at a time");
            }
            circuit = Some(CircuitGuard { breaker: Arc::clone(breaker), probe, done: false });
        }
        let retry = &res.policy.retry;
        let deadline = (!retry.overall_timeout.is_zero()).then(|| Instant::now() + retry.overall_timeout);
        let base = retry.initial_backoff;
        Ok(Self {
            inner,
            key,
            res,
            rec,
            deadline,
            index: 0,
            base,
            backoff: Duration::ZERO,
            last_error: None,
            circuit,
            hedging,
        })
    }

    /// Gives the breaker its verdict (once) and ends the recording.
    fn finish(&mut self, verdict: Verdict, error: Option<FinalError>) {
        if let Some(guard) = &mut self.circuit {
            let transition = guard.verdict(verdict);
            self.rec.circuit(transition);
        }
        let inner = self.inner;
        self.rec.finish(|| inner.now(), error);
    }

    /// Asks the attempt's budget (every attempt, the first included).
    fn gate(&mut self, kind: AttemptKind) -> Gate {
        let (budget, slot) = match kind {
            AttemptKind::Retry => (&self.res.policy.retry.budget, &self.res.retry_budget),
            AttemptKind::Hedge => (&self.res.policy.hedge.budget, &self.res.hedge_budget),
        };
        let (gate, mode) = self.inner.gate(self.key, self.index, kind, budget, slot);
        if let Some(mode) = mode {
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
        }
        gate
    }

    /// A plan for an allowed attempt: scope and deadline.
    fn make_plan(&self, hedge_index: u32, gate: Gate) -> Plan {
        let retry = &self.res.policy.retry;
        // The clock is read only for what needs it: a per-attempt deadline
        // or the latency tracker (hedging).
        let now = (!retry.timeout_per_attempt.is_zero() || self.res.tracker.is_some()).then(Instant::now);
        let attempt_cutoff =
            now.filter(|_| !retry.timeout_per_attempt.is_zero()).map(|now| now + retry.timeout_per_attempt);
        let (cutoff, cut) = match (attempt_cutoff, self.deadline) {
            (Some(a), Some(d)) if a < d => (Some(a), Cut::Attempt),
            (Some(a), None) => (Some(a), Cut::Attempt),
            (_, d) => (d, Cut::Overall),
        };
        let attempt =
            Attempt { retry_index: self.index, hedge_index, policy_id: self.res.policy.id.clone(), deadline: cutoff };
        let started = self.rec.active().then(|| self.inner.now());
        let launched = now.filter(|_| self.res.tracker.is_some());
        Plan { attempt, cut, started, launched, budget_reason: gate.reason, release: gate.release }
    }

    /// Plans the next attempt: asks its budget, then fixes its index, scope
    /// and deadline. A denial ends the call: with the previous attempt's
    /// error when there was one (DESIGN §6.2), else with
    /// [`Error::BudgetDenied`].
    pub fn plan(&mut self) -> Result<Plan, E> {
        let gate = self.gate(AttemptKind::Retry);
        if gate.allowed {
            return Ok(self.make_plan(0, gate));
        }
        let inner = self.inner;
        let (index, backoff) = (self.index, self.backoff);
        let started = self.rec.active().then(|| inner.now());
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
        self.finish(Verdict::None, Some(final_error(error_text(&error), &outcome)));
        Err(error)
    }

    /// The plan of a first attempt that already ran on the lean path (its
    /// budget asked with `reason`, its release run).
    fn ran(&self, reason: Cow<'static, str>) -> Plan {
        self.make_plan(0, Gate { allowed: true, reason, release: Release::none() })
    }

    /// Plans hedge `hedge_index` of the current retry group: asks the hedge
    /// budget (a denied hedge is recorded and simply not launched) and tells
    /// observers it is about to run.
    pub(crate) fn plan_hedge(&mut self, hedge_index: u32) -> Option<Plan> {
        let gate = self.gate(AttemptKind::Hedge);
        let inner = self.inner;
        let index = self.index;
        if !gate.allowed {
            let started = self.rec.active().then(|| inner.now());
            let outcome = Outcome::abort().with_reason(gate.reason.clone());
            self.rec.attempt(None, || AttemptRecord {
                is_hedge: true,
                hedge_index,
                budget_allowed: false,
                budget_reason: gate.reason.clone(),
                ..record(index, started, inner.now(), outcome.clone(), None, Duration::ZERO)
            });
            return None;
        }
        let plan = self.make_plan(hedge_index, gate);
        if let Some(observer) = self.rec.observer {
            let spawn = AttemptRecord {
                is_hedge: true,
                hedge_index,
                ..record(index, plan.started, inner.now(), Outcome::new(OutcomeKind::Unknown), None, Duration::ZERO)
            };
            observe::enter_attempt(&plan.attempt, || observer.on_hedge_spawn(self.key, &spawn));
        }
        Some(plan)
    }

    /// Tells observers that an attempt still running was dropped because
    /// another attempt of its group decided the call (its plan, dropped by
    /// the caller, releases its budget).
    pub(crate) fn cancelled(&self, plan: &Plan, reason: &str) {
        if let Some(observer) = self.rec.observer {
            let inner = self.inner;
            let record = AttemptRecord {
                is_hedge: plan.attempt.is_hedge(),
                hedge_index: plan.attempt.hedge_index,
                budget_reason: plan.budget_reason.clone(),
                ..record(
                    plan.attempt.retry_index,
                    plan.started,
                    inner.now(),
                    Outcome::abort().with_reason("hedge_cancelled"),
                    None,
                    Duration::ZERO,
                )
            };
            observer.on_hedge_cancel(self.key, &record, reason);
        }
    }

    /// Releases the attempt's budget, feeds the latency tracker, classifies
    /// the result (`None`: its deadline passed) and records the attempt.
    pub(crate) fn conclude<T>(&mut self, mut plan: Plan, result: Option<Result<T, E>>) -> Concluded<T, E> {
        // Before anything is published, so a caller that sees the result
        // also sees the release.
        plan.release.run();
        if let (Some(tracker), Some(launched)) = (&self.res.tracker, plan.launched) {
            tracker.record(launched.elapsed());
        }
        let inner = self.inner;
        let index = self.index;
        let backoff = if plan.attempt.is_hedge() { Duration::ZERO } else { self.backoff };
        let started = plan.started;
        let scope = Some(&plan.attempt);
        let budget_reason = &plan.budget_reason;
        let (is_hedge, hedge_index) = (plan.attempt.is_hedge(), plan.attempt.hedge_index);
        let attempt_record = |outcome: Outcome, error: Option<String>| AttemptRecord {
            budget_reason: budget_reason.clone(),
            is_hedge,
            hedge_index,
            ..record(index, started, inner.now(), outcome, error, backoff)
        };
        let retry = &self.res.policy.retry;
        match result {
            Some(Ok(value)) => {
                self.rec.attempt(scope, || attempt_record(Outcome::success(), None));
                Concluded::Success(value)
            }
            Some(Err(error)) => match inner.classify(self.key, self.res.classifier.as_ref(), &error) {
                Ok(outcome) => {
                    let outcome = with_fallback_note(outcome, self.res.fallback_from.as_deref());
                    self.rec.attempt(scope, || attempt_record(outcome.clone(), Some(error_text(&error))));
                    Concluded::Failure(error, outcome)
                }
                Err(panic) => {
                    let outcome = Outcome::abort().with_reason(Component::Classifier.reason());
                    self.rec.attempt(scope, || attempt_record(outcome.clone(), Some(error_text(&error))));
                    Concluded::Over(E::from(Error::Panic(panic)), outcome)
                }
            },
            None => match plan.cut {
                Cut::Attempt => {
                    let error = E::from(Error::AttemptTimeout { timeout: retry.timeout_per_attempt });
                    let outcome = Outcome::retryable().with_reason("context_deadline_exceeded");
                    self.rec.attempt(scope, || attempt_record(outcome.clone(), Some(error_text(&error))));
                    Concluded::Failure(error, outcome)
                }
                Cut::Overall => {
                    let error = E::from(Error::Timeout { timeout: retry.overall_timeout });
                    let outcome = Outcome::abort().with_reason("context_deadline_exceeded");
                    self.rec.attempt(scope, || attempt_record(outcome.clone(), Some(error_text(&error))));
                    Concluded::Over(error, outcome)
                }
            },
        }
    }

    /// Ends the call with an error that gives the breaker no verdict.
    pub(crate) fn end<T>(&mut self, error: E, outcome: &Outcome) -> Step<T, E> {
        self.finish(Verdict::None, Some(final_error(error_text(&error), outcome)));
        Step::Done(Err(error))
    }

    /// Ends the call with a success.
    pub(crate) fn succeed<T>(&mut self, value: T) -> Step<T, E> {
        self.finish(Verdict::Success, None);
        Step::Done(Ok(value))
    }

    /// After a failed attempt (or retry group): end the call, or sleep and
    /// retry.
    #[allow(clippy::needless_pass_by_value, reason = "the outcome is the failure's; it ends here")]
    pub(crate) fn decide<T>(&mut self, error: E, outcome: Outcome) -> Step<T, E> {
        let retry = &self.res.policy.retry;
        let Some(sleep) = self.inner.backoff(retry, self.index, outcome.kind, outcome.backoff, self.base) else {
            self.finish(Verdict::of(&outcome), Some(final_error(error_text(&error), &outcome)));
            return Step::Done(Err(error));
        };
        // DESIGN §6.7: never sleep into the deadline; end now with the error
        // we have instead of waking up to a timeout.
        if let Some(deadline) = self.deadline
            && Instant::now() + sleep >= deadline
        {
            self.rec.attribute("deadline_stop", "backoff would pass the overall deadline");
            self.finish(Verdict::Failure, Some(final_error(error_text(&error), &outcome)));
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

    /// Releases the attempt's budget, classifies its result (`None`: its
    /// deadline passed) and decides: done, or sleep and retry.
    #[allow(clippy::needless_pass_by_value, reason = "a plan is settled exactly once")]
    pub fn settle<T>(&mut self, plan: Plan, result: Option<Result<T, E>>) -> Step<T, E> {
        match self.conclude(plan, result) {
            Concluded::Success(value) => self.succeed(value),
            Concluded::Failure(error, outcome) => self.decide(error, outcome),
            Concluded::Over(error, outcome) => self.end(error, &outcome),
        }
    }

    /// Waits out a backoff with the executor's sleeper, bounded by the
    /// overall deadline: a sleeper that overruns it (a custom one can) ends
    /// the call with [`Error::Timeout`].
    pub async fn sleep(&mut self, duration: Duration) -> Result<(), E> {
        if duration.is_zero() {
            return Ok(());
        }
        // The default sleeper never needs the race: `decide` starts no sleep
        // that would cross the deadline. Only a custom sleeper can overrun.
        let (Some(sleeper), Some(deadline)) = (self.inner.time.custom_sleeper(), self.deadline) else {
            self.inner.time.sleep(duration).await;
            return Ok(());
        };
        let mut sleep = sleeper.sleep(duration);
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
        let error = E::from(Error::Timeout { timeout: self.res.policy.retry.overall_timeout });
        let outcome = Outcome::abort().with_reason("context_deadline_exceeded");
        self.finish(Verdict::None, Some(final_error(error_text(&error), &outcome)));
        self.last_error = None;
        Err(error)
    }
}

/// Where a call's resolution comes from.
pub(crate) enum Source<'x> {
    /// A `#[recourse]` function's or `key!`'s call site (with its cache).
    Site(&'x CallSite),
    /// A key called without a call site (the executor's own cache).
    Key(PolicyKey),
}

/// The retries of a lean policy's call after its first attempt failed.
/// For a lean policy the engine's plan, settle and sleep reduce to gate
/// (when there is a retry budget), classify, count, back off and sleep
/// (nothing to time, break, hedge or record), so that is all this does;
/// `tests/tests/lean.rs` checks that it decides exactly as the engine
/// does. Its own future, so its state overlaps the engine's in `drive`'s
/// future instead of adding to it.
fn lean_retries<F, Fut, T, E>(
    inner: &Inner,
    key: &PolicyKey,
    resolved: Res,
    error: E,
    mut op: F,
) -> impl Future<Output = Result<T, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error> + 'static,
{
    async move {
        let retry = &resolved.policy.retry;
        let mut attempt = Attempt::first(resolved.policy.id.clone());
        let mut base = retry.initial_backoff;
        let budgeted = !matches!(resolved.retry_budget, BudgetSlot::Unbudgeted);
        // The attempt's result stays where the attempt left it and is
        // classified by reference: every move of an error is a copy.
        let mut last = Err(error);
        loop {
            let Err(error) = &last else { return last };
            let (kind, backoff) = match inner.classify_brief(key, resolved.classifier.as_ref(), error) {
                Ok(brief) => brief,
                Err(panic) => return Err(E::from(Error::Panic(panic))),
            };
            let Some(sleep) = inner.backoff(retry, attempt.retry_index, kind, backoff, base) else {
                return last;
            };
            base = next_backoff(base, retry);
            attempt.retry_index += 1;
            // `last` is kept through the backoff: a budget that denies the
            // next attempt ends the call with it (DESIGN §6.2).
            if !sleep.is_zero() {
                inner.time.sleep(sleep).await;
            }
            // No gate (and no release to carry) without a budget.
            let mut release = None;
            if budgeted {
                let (gate, _) =
                    inner.gate(key, attempt.retry_index, AttemptKind::Retry, &retry.budget, &resolved.retry_budget);
                if !gate.allowed {
                    return last;
                }
                release = Some(gate.release);
            }
            let mut make = Some(&mut op);
            let mut future = pin!(None::<Fut>);
            last = (Scoped { attempt: &attempt, make: &mut make, future: future.as_mut() }).await;
            if let Some(release) = &mut release {
                release.run();
            }
        }
    }
}

/// `make()` in a fresh box: allocated first, so the value can be built in
/// place. `Box::pin(make())` builds it on the stack and then copies it into
/// the allocation (for a hedged group's future, 1.9 KB per call).
#[inline]
fn boxed<T>(make: impl FnOnce() -> T) -> Pin<Box<T>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// The closure form: the cache is consulted at the first poll (so a
/// capture around the future is seen); a lean call runs its first attempt
/// here and its retries in [`lean_retries`], anything else runs in
/// [`engine`]. The two are separate futures so their states share bytes in
/// this one; the first attempt is inline, so the common call nests no
/// future of ours inside another.
pub(crate) fn drive<F, Fut, T, E>(inner: &Inner, source: Source<'_>, mut op: F) -> impl Future<Output = Result<T, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error> + 'static,
{
    async move {
        // A lean policy (no breaker, hedging, deadline or observer; a retry
        // budget allowed) and no capture listening: the first attempt runs
        // without the engine's bookkeeping, because on success there is
        // nothing to decide or record beyond its budget's release. The
        // cached resolution is only peeked at (no reference count is taken,
        // so concurrent calls share nothing they write). A failure goes on
        // in `lean_retries` while the policy is still lean, else it enters
        // the engine exactly where a planned first attempt would have.
        let key = match &source {
            Source::Site(site) => site.key(),
            Source::Key(key) => key,
        };
        let resolve = || match &source {
            Source::Site(site) => site.resolve(inner),
            Source::Key(key) => inner.resolve_cached(key),
        };
        // The lookup is taken apart before anything is awaited, so it is
        // not kept in the call's future; the fast path builds its attempt
        // from constants.
        let capturing = observe::capture_requested();
        // Everything but the lean first attempt is settled before anything
        // is awaited, so the call's future keeps only that attempt's scope,
        // budget reason and release (each dropped inline; an enum of all
        // the cases had an out-of-line drop on every call).
        let (attempt, mut reason, mut release) = match &source {
            Source::Site(site) if !capturing && site.is_plain(inner) => {
                (Attempt::first(None), Cow::Borrowed(reason::NO_BUDGET), None)
            }
            _ => {
                let first = match &source {
                    Source::Site(site) => site.lookup(inner, capturing),
                    Source::Key(key) => inner.lookup(key, capturing),
                };
                match first {
                    First::Lean(attempt, reason, release) => (attempt, reason, release),
                    First::Denied(reason) => {
                        // What the engine ends a call denied its first
                        // attempt with (DESIGN §6.2: no earlier error).
                        return Err(E::from(Error::BudgetDenied { reason }));
                    }
                    First::Engine(current) => {
                        return engine(inner, key, current.map_or_else(resolve, Ok), None, op).await;
                    }
                }
            }
        };
        // No deadline, so no timer: the attempt is polled directly, which
        // keeps the lean call's future small. Its own block, so its state is
        // dead (and its bytes reused) once it is over. The release stays in
        // the future until it runs, so a call dropped mid-attempt still
        // releases (on drop).
        let error = {
            let mut make = Some(&mut op);
            let mut future = pin!(None::<Fut>);
            let result = (Scoped { attempt: &attempt, make: &mut make, future: future.as_mut() }).await;
            // Before the result is published (as the engine does).
            if let Some(release) = &mut release {
                release.run();
            }
            match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            }
        };
        // A lean policy's retries run in the lean loop, unless the
        // resolution stopped being lean: then the engine takes over from
        // the attempt that ran (its budget already asked).
        match resolve() {
            Ok(resolved) if resolved.lean => lean_retries(inner, key, resolved, error, op).await,
            res => engine(inner, key, res, Some((error, std::mem::take(&mut reason))), op).await,
        }
    }
}

/// The engine's attempt loop, from the resolution on; `first` is the error
/// (and budget reason) of a lean first attempt that already ran. Its own future, like
/// `lean_retries`, so the two share bytes in `drive`'s future.
fn engine<F, Fut, T, E>(
    inner: &Inner,
    key: &PolicyKey,
    res: Result<Res, Error>,
    first: Option<(E, Cow<'static, str>)>,
    mut op: F,
) -> impl Future<Output = Result<T, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error> + 'static,
{
    async move {
        let mut call = Call::<'_, E>::begin(inner, key, res, false)?;
        if let Some((error, reason)) = first {
            let plan = call.ran(reason);
            match call.settle(plan, Some(Err(error))) {
                Step::Done(result) => return result,
                Step::Sleep(duration) => call.sleep(duration).await?,
            }
        }
        loop {
            let plan = call.plan()?;
            let step = if call.hedging {
                // Boxed: a group holds up to four attempt futures and their
                // timers, which would otherwise make every call's future four
                // times larger, hedged or not. One allocation per hedged group.
                boxed(|| super::group::run(&mut call, plan, &mut op)).await
            } else {
                let result = run_attempt(&plan.attempt, &mut op, plan.attempt.deadline).await;
                call.settle(plan, result)
            };
            match step {
                Step::Done(result) => return result,
                Step::Sleep(duration) => call.sleep(duration).await?,
            }
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
    pub fn call<K, F, Fut, T, E>(&self, key: K, op: F) -> impl Future<Output = Result<T, E>>
    where
        K: Into<CallKey>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error> + 'static,
    {
        let source = match key.into() {
            CallKey::Key(key) => Source::Key(key),
            CallKey::Checked(checked) => Source::Site(checked.site()),
        };
        drive(&self.inner, source, op)
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

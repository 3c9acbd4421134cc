//! Observers: structured events from every call.

use std::fmt;
use std::sync::Arc;

use super::{Attempt, AttemptRecord, Timeline};
use crate::budget::BudgetDecisionEvent;
use crate::circuit::Transition;
use crate::policy::{Policy, PolicyKey};

/// Receives structured events from every call an executor runs.
///
/// All methods default to doing nothing; implement the ones you need.
/// Callbacks run synchronously on the calling task, in this order per call:
/// `on_start`, then per attempt `on_budget_decision` (budgeted attempts
/// only), `on_hedge_spawn` (hedges only), `on_attempt_start` as it begins
/// (attempts that run), `on_attempt` when it finishes (or
/// is denied), `on_hedge_cancel` for hedges dropped when another attempt
/// won, and finally exactly one of `on_success` / `on_failure`. Inside
/// `on_attempt` for an attempt that ran, [`recourse::attempt()`](crate::attempt)
/// describes that attempt. Observers must be fast and must not block; they
/// never change outcomes. An executor without observers records nothing and
/// allocates nothing for them.
///
/// ```
/// use recourse::observe::{AttemptRecord, Observer};
/// use recourse::PolicyKey;
/// use std::sync::atomic::{AtomicUsize, Ordering};
///
/// #[derive(Default)]
/// struct CountRetries(AtomicUsize);
///
/// impl Observer for CountRetries {
///     fn on_attempt(&self, _key: &PolicyKey, record: &AttemptRecord) {
///         if record.attempt > 0 {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// let executor = recourse::Executor::builder().observer(CountRetries::default()).build();
/// # let _ = executor;
/// ```
#[allow(unused_variables, reason = "default methods ignore their arguments")]
pub trait Observer: Send + Sync + 'static {
    /// A call started; `policy` is the effective policy, `None` when
    /// resolution failed.
    fn on_start(&self, key: &PolicyKey, policy: Option<&Policy>) {}
    /// An attempt is about to run (its budget allowed it). Called inside the
    /// attempt's scope, before its future is created, so an integration can
    /// open a span for it; `attempt` is what [`recourse::attempt()`](crate::attempt)
    /// reports inside the operation.
    fn on_attempt_start(&self, key: &PolicyKey, attempt: &Attempt) {}
    /// An attempt finished (or was denied by its budget).
    fn on_attempt(&self, key: &PolicyKey, record: &AttemptRecord) {}
    /// A hedge is about to run (its budget allowed it); the record carries
    /// only the attempt, hedge flag and index.
    fn on_hedge_spawn(&self, key: &PolicyKey, record: &AttemptRecord) {}
    /// A hedge (or primary) still running was dropped because another
    /// attempt of its group decided the call.
    fn on_hedge_cancel(&self, key: &PolicyKey, record: &AttemptRecord, reason: &str) {}
    /// A budget was consulted.
    fn on_budget_decision(&self, event: &BudgetDecisionEvent) {}
    /// The call succeeded.
    fn on_success(&self, key: &PolicyKey, timeline: &Timeline) {}
    /// The call failed, for any reason (including before any attempt).
    fn on_failure(&self, key: &PolicyKey, timeline: &Timeline) {}
    /// The key's circuit breaker changed state (an addition to the Go
    /// original's seven callbacks).
    fn on_circuit_change(&self, key: &PolicyKey, transition: Transition) {}
}

impl<O: Observer + ?Sized> Observer for Arc<O> {
    fn on_start(&self, key: &PolicyKey, policy: Option<&Policy>) {
        (**self).on_start(key, policy);
    }
    fn on_attempt_start(&self, key: &PolicyKey, attempt: &Attempt) {
        (**self).on_attempt_start(key, attempt);
    }
    fn on_attempt(&self, key: &PolicyKey, record: &AttemptRecord) {
        (**self).on_attempt(key, record);
    }
    fn on_hedge_spawn(&self, key: &PolicyKey, record: &AttemptRecord) {
        (**self).on_hedge_spawn(key, record);
    }
    fn on_hedge_cancel(&self, key: &PolicyKey, record: &AttemptRecord, reason: &str) {
        (**self).on_hedge_cancel(key, record, reason);
    }
    fn on_budget_decision(&self, event: &BudgetDecisionEvent) {
        (**self).on_budget_decision(event);
    }
    fn on_success(&self, key: &PolicyKey, timeline: &Timeline) {
        (**self).on_success(key, timeline);
    }
    fn on_failure(&self, key: &PolicyKey, timeline: &Timeline) {
        (**self).on_failure(key, timeline);
    }
    fn on_circuit_change(&self, key: &PolicyKey, transition: Transition) {
        (**self).on_circuit_change(key, transition);
    }
}

/// Ignores every event. Installing it is the same as installing none: the
/// executor recognises it and records nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Noop;

impl Observer for Noop {}

/// Forwards every event to each observer in order.
///
/// ```
/// use recourse::observe::{Multi, Noop};
///
/// let both = Multi::new().with(Noop).with(Noop);
/// assert_eq!(both.len(), 2);
/// ```
#[derive(Clone, Default)]
pub struct Multi {
    observers: Vec<Arc<dyn Observer>>,
}

impl Multi {
    /// No observers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an observer.
    pub fn with(mut self, observer: impl Observer) -> Self {
        self.push(Arc::new(observer));
        self
    }

    /// Adds a shared observer.
    pub fn push(&mut self, observer: Arc<dyn Observer>) {
        self.observers.push(observer);
    }

    /// How many observers there are.
    pub fn len(&self) -> usize {
        self.observers.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.observers.is_empty()
    }
}

impl fmt::Debug for Multi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Multi").field("observers", &self.observers.len()).finish()
    }
}

impl Observer for Multi {
    fn on_start(&self, key: &PolicyKey, policy: Option<&Policy>) {
        self.observers.iter().for_each(|o| o.on_start(key, policy));
    }
    fn on_attempt_start(&self, key: &PolicyKey, attempt: &Attempt) {
        self.observers.iter().for_each(|o| o.on_attempt_start(key, attempt));
    }
    fn on_attempt(&self, key: &PolicyKey, record: &AttemptRecord) {
        self.observers.iter().for_each(|o| o.on_attempt(key, record));
    }
    fn on_hedge_spawn(&self, key: &PolicyKey, record: &AttemptRecord) {
        self.observers.iter().for_each(|o| o.on_hedge_spawn(key, record));
    }
    fn on_hedge_cancel(&self, key: &PolicyKey, record: &AttemptRecord, reason: &str) {
        self.observers.iter().for_each(|o| o.on_hedge_cancel(key, record, reason));
    }
    fn on_budget_decision(&self, event: &BudgetDecisionEvent) {
        self.observers.iter().for_each(|o| o.on_budget_decision(event));
    }
    fn on_success(&self, key: &PolicyKey, timeline: &Timeline) {
        self.observers.iter().for_each(|o| o.on_success(key, timeline));
    }
    fn on_failure(&self, key: &PolicyKey, timeline: &Timeline) {
        self.observers.iter().for_each(|o| o.on_failure(key, timeline));
    }
    fn on_circuit_change(&self, key: &PolicyKey, transition: Transition) {
        self.observers.iter().for_each(|o| o.on_circuit_change(key, transition));
    }
}

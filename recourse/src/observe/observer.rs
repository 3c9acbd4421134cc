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
    /// The policy resolved for `key` carries a problem
    /// ([`Metadata::error`](crate::policy::Metadata::error)): a reload or
    /// fetch failed and the last good policy is in use, or a layer's policy
    /// was rejected. Called once per resolution (when the provider's
    /// generation changes), not once per call; timelines carry the same
    /// text as `policy_error`.
    fn on_policy_error(&self, key: &PolicyKey, policy: &Policy, error: &str) {}
    /// Whether this observer wants to hear about calls now. Asked once per
    /// call; when no observer does (and no capture listens), the call runs
    /// as if none were installed: nothing recorded, nothing allocated. The
    /// default is `true`; a `tracing` bridge answers whether any subscriber
    /// is interested.
    fn enabled(&self) -> bool {
        true
    }
    /// What to make current for this call (a `tracing` span, say): it is
    /// entered around this observer's callbacks for the call and around
    /// every poll of its attempts. Asked once, as the call starts, before
    /// `on_start`, where the caller's own context is current. `None` (the
    /// default) enters nothing and costs nothing.
    fn call_scope(&self, key: &PolicyKey) -> Option<Arc<dyn Enter>> {
        None
    }
    /// What to make current for this attempt, inside the call's scope: it
    /// is entered around every poll of the attempt's future (so the
    /// operation's own events happen inside it) and around the callbacks
    /// about this attempt (`on_attempt`, `on_hedge_cancel`). Asked right
    /// after `on_attempt_start`; dropped after the attempt's last callback.
    fn attempt_scope(&self, key: &PolicyKey, attempt: &Attempt) -> Option<Arc<dyn Enter>> {
        None
    }
}

/// Something made current while part of a call runs, on the thread that
/// runs it: entered before and exited after each poll or callback, never
/// held across an `.await`. It is how a span follows a call from thread to
/// thread.
///
/// ```
/// use recourse::observe::Enter;
/// use std::cell::Cell;
///
/// thread_local!(static DEPTH: Cell<u32> = const { Cell::new(0) });
///
/// struct Depth;
///
/// impl Enter for Depth {
///     fn enter(&self) {
///         DEPTH.with(|d| d.set(d.get() + 1));
///     }
///     fn exit(&self) {
///         DEPTH.with(|d| d.set(d.get() - 1));
///     }
/// }
/// # Depth.enter(); assert_eq!(DEPTH.with(Cell::get), 1); Depth.exit();
/// ```
pub trait Enter: Send + Sync + 'static {
    /// Makes this current on the calling thread.
    fn enter(&self);
    /// Undoes the matching [`enter`](Self::enter), on the same thread.
    fn exit(&self);
}

/// Several scopes entered in order and exited in reverse (several
/// observers each with their own).
struct Scopes(Vec<Arc<dyn Enter>>);

impl Enter for Scopes {
    fn enter(&self) {
        self.0.iter().for_each(|s| s.enter());
    }
    fn exit(&self) {
        self.0.iter().rev().for_each(|s| s.exit());
    }
}

/// One scope, or all of them together.
fn combine(mut scopes: Vec<Arc<dyn Enter>>) -> Option<Arc<dyn Enter>> {
    match scopes.len() {
        0 => None,
        1 => scopes.pop(),
        _ => Some(Arc::new(Scopes(scopes))),
    }
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
    fn on_policy_error(&self, key: &PolicyKey, policy: &Policy, error: &str) {
        (**self).on_policy_error(key, policy, error);
    }
    fn enabled(&self) -> bool {
        (**self).enabled()
    }
    fn call_scope(&self, key: &PolicyKey) -> Option<Arc<dyn Enter>> {
        (**self).call_scope(key)
    }
    fn attempt_scope(&self, key: &PolicyKey, attempt: &Attempt) -> Option<Arc<dyn Enter>> {
        (**self).attempt_scope(key, attempt)
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
    fn on_policy_error(&self, key: &PolicyKey, policy: &Policy, error: &str) {
        self.observers.iter().for_each(|o| o.on_policy_error(key, policy, error));
    }
    fn enabled(&self) -> bool {
        self.observers.iter().any(Observer::enabled)
    }
    fn call_scope(&self, key: &PolicyKey) -> Option<Arc<dyn Enter>> {
        combine(self.observers.iter().filter_map(|o| o.call_scope(key)).collect())
    }
    fn attempt_scope(&self, key: &PolicyKey, attempt: &Attempt) -> Option<Arc<dyn Enter>> {
        combine(self.observers.iter().filter_map(|o| o.attempt_scope(key, attempt)).collect())
    }
}

//! Budgets: backpressure for attempts.
//!
//! Retries multiply load exactly when a dependency is struggling. A budget
//! gates **every** attempt, the first included, so a call can be refused
//! before it adds load, and a retry storm is capped by a shared allowance
//! instead of by each caller's `max_attempts`. Primary attempts are gated by
//! the policy's `retry.budget`, hedges by `hedge.budget`; both name a budget
//! registered in the executor's [`Registry`] and give a cost per attempt.
//!
//! ```
//! use recourse::budget::{Registry, TokenBucket};
//! use recourse::policy::Policy;
//!
//! let budgets = Registry::with_builtins();
//! budgets.register("inventory", TokenBucket::new(100, 50.0)); // 100 attempts, refilled at 50/s
//! let executor = recourse::Executor::builder()
//!     .budgets(budgets.into())
//!     .policy(Policy::builder("inventory.Reserve").budget("inventory").build())
//!     .build();
//! # let _ = executor;
//! ```

mod adaptive;
mod concurrency;
mod percentage;
mod quota;
#[cfg(feature = "redis")]
mod redis;
mod registry;
mod throttling;
mod token_bucket;
mod window;

use std::borrow::Cow;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use crate::classify::OutcomeKind;
use crate::policy::{BudgetRef, PolicyKey};

pub use adaptive::AdaptiveThrottling;
pub use concurrency::ConcurrencyBudget;
pub use percentage::PercentageBudget;
pub use quota::RetryQuota;
#[cfg(feature = "redis")]
pub use redis::{OnUnavailable, RedisBudgetError, RedisStatus, RedisTokenBucket, RedisTokenBucketBuilder};
pub use registry::Registry;
pub use throttling::RetryThrottling;
pub use token_bucket::TokenBucket;

/// Which kind of attempt a budget is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptKind {
    /// A primary attempt (the first attempt or a retry).
    Retry,
    /// A hedged attempt racing a primary.
    Hedge,
}

impl AttemptKind {
    /// `retry` or `hedge`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Retry => "retry",
            Self::Hedge => "hedge",
        }
    }
}

impl fmt::Display for AttemptKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Standard reason codes of budget decisions (part of the telemetry
/// contract).
pub mod reason {
    /// The budget allowed the attempt.
    pub const ALLOWED: &str = "allowed";
    /// The policy names no budget.
    pub const NO_BUDGET: &str = "no_budget";
    /// The policy names a budget that is not registered.
    pub const BUDGET_NOT_FOUND: &str = "budget_not_found";
    /// The budget denied the attempt.
    pub const BUDGET_DENIED: &str = "budget_denied";
    /// The budget panicked and panic recovery turned it into a denial.
    pub const PANIC_IN_BUDGET: &str = "panic_in_budget";
    /// A shared budget's store (Redis) is unreachable or too slow, and the
    /// budget's own failure mode decided (deny or allow).
    pub const BUDGET_UNAVAILABLE: &str = "budget_unavailable";
    /// A shared budget's store is unreachable or too slow, and its local
    /// fallback bucket decided.
    pub const BUDGET_FALLBACK: &str = "budget_fallback";
    /// A throttling budget (adaptive throttling, retry throttling) refused
    /// the attempt to protect a dependency that is failing.
    pub const BUDGET_THROTTLED: &str = "budget_throttled";
}

/// A gate on attempts.
///
/// Implementations must be fast and thread-safe: the executor asks before
/// every attempt. Key, attempt index and kind are for budgets that care
/// (most, like [`TokenBucket`], are shared by every key that names them).
/// A budget that learns from results hands out a [`Release`] that hears how
/// each attempt it allowed ended ([`AttemptEnd`]), and one that prices a
/// retry by what it retries overrides
/// [`allow_attempt_after`](Self::allow_attempt_after).
pub trait Budget: std::any::Any + Send + Sync + 'static {
    /// Whether the attempt may run.
    fn allow_attempt(&self, key: &PolicyKey, attempt: u32, kind: AttemptKind, budget: &BudgetRef) -> Decision;

    /// Whether the attempt may run, knowing how the call's previous attempt
    /// ended (`None` for a call's first attempt and for hedges). This is
    /// what the executor asks; the default asks
    /// [`allow_attempt`](Self::allow_attempt).
    ///
    /// ```
    /// use recourse::budget::{AttemptEnd, AttemptKind, Budget, Decision};
    /// use recourse::policy::{BudgetRef, PolicyKey};
    ///
    /// /// Retries nothing after a timeout.
    /// struct NoRetryAfterTimeout;
    ///
    /// impl Budget for NoRetryAfterTimeout {
    ///     fn allow_attempt(&self, _: &PolicyKey, _: u32, _: AttemptKind, _: &BudgetRef) -> Decision {
    ///         Decision::allow()
    ///     }
    ///
    ///     fn allow_attempt_after(
    ///         &self,
    ///         key: &PolicyKey,
    ///         attempt: u32,
    ///         kind: AttemptKind,
    ///         budget: &BudgetRef,
    ///         previous: Option<AttemptEnd>,
    ///     ) -> Decision {
    ///         match previous {
    ///             Some(AttemptEnd::TimedOut) => Decision::deny(),
    ///             _ => self.allow_attempt(key, attempt, kind, budget),
    ///         }
    ///     }
    /// }
    /// ```
    #[inline]
    fn allow_attempt_after(
        &self,
        key: &PolicyKey,
        attempt: u32,
        kind: AttemptKind,
        budget: &BudgetRef,
        previous: Option<AttemptEnd>,
    ) -> Decision {
        let _ = previous;
        self.allow_attempt(key, attempt, kind, budget)
    }
}

impl<B: Budget + ?Sized> Budget for Arc<B> {
    fn allow_attempt(&self, key: &PolicyKey, attempt: u32, kind: AttemptKind, budget: &BudgetRef) -> Decision {
        (**self).allow_attempt(key, attempt, kind, budget)
    }

    fn allow_attempt_after(
        &self,
        key: &PolicyKey,
        attempt: u32,
        kind: AttemptKind,
        budget: &BudgetRef,
        previous: Option<AttemptEnd>,
    ) -> Decision {
        (**self).allow_attempt_after(key, attempt, kind, budget, previous)
    }
}

/// How an attempt a budget allowed ended, as its [`Release`] hears it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttemptEnd {
    /// The operation succeeded.
    Succeeded,
    /// The operation failed and its classifier said how
    /// ([`Retryable`](OutcomeKind::Retryable),
    /// [`NonRetryable`](OutcomeKind::NonRetryable),
    /// [`Abort`](OutcomeKind::Abort)).
    Failed(OutcomeKind),
    /// The attempt's own timeout (`timeout_per_attempt`) cut it.
    TimedOut,
    /// It did not finish: the call was dropped, another attempt of its
    /// hedge group won, the call's overall deadline cut it, it panicked, or
    /// it was planned and never ran.
    Cancelled,
}

impl AttemptEnd {
    /// Whether the dependency did its job: a success, or a failure it
    /// decided (non-retryable). A retryable failure or a timeout is the
    /// dependency struggling; a cancelled attempt says nothing.
    pub const fn accepted(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed(OutcomeKind::NonRetryable))
    }

    /// A finished attempt's end from its classification (an `Unknown`
    /// outcome is handled as an abort, as the executor does).
    #[inline]
    pub(crate) const fn of(kind: OutcomeKind) -> Self {
        match kind {
            OutcomeKind::Success => Self::Succeeded,
            OutcomeKind::Unknown => Self::Failed(OutcomeKind::Abort),
            kind => Self::Failed(kind),
        }
    }

    /// Whether the dependency struggled: a retryable failure or a timeout.
    pub const fn struggled(self) -> bool {
        matches!(self, Self::TimedOut | Self::Failed(OutcomeKind::Retryable))
    }
}

/// A budget's shared state that hears how the attempts it allowed ended,
/// through [`Release::shared`]: one `Arc` for every grant, so a budget
/// that learns from results allocates nothing per attempt.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
///
/// use recourse::budget::{AttemptEnd, AttemptKind, Budget, Decision, Settle};
/// use recourse::policy::{BudgetRef, PolicyKey};
///
/// /// Counts the successes of the attempts it allows.
/// #[derive(Default)]
/// struct Successes(AtomicU64);
///
/// impl Settle for Successes {
///     fn settle(&self, _grant: u64, end: AttemptEnd) {
///         if end == AttemptEnd::Succeeded {
///             self.0.fetch_add(1, Ordering::Relaxed);
///         }
///     }
/// }
///
/// struct Counting(Arc<Successes>);
///
/// impl Budget for Counting {
///     fn allow_attempt(&self, _: &PolicyKey, _: u32, _: AttemptKind, _: &BudgetRef) -> Decision {
///         Decision::allow_settled(self.0.clone(), 0)
///     }
/// }
///
/// let state = Arc::new(Successes::default());
/// let budget = Counting(state.clone());
/// let mut release = budget.allow_attempt(&"svc.Op".into(), 0, AttemptKind::Retry, &BudgetRef::named("b")).into_release();
/// release.settle(AttemptEnd::Succeeded);
/// assert_eq!(state.0.load(Ordering::Relaxed), 1);
/// ```
pub trait Settle: Send + Sync + 'static {
    /// The attempt granted with `grant` (whatever the budget put there:
    /// a cost, a kind) ended as `end`. Called exactly once per grant.
    fn settle(&self, grant: u64, end: AttemptEnd);
}

/// A budget's answer, with an optional [`Release`] that runs exactly once
/// when the attempt is over, however it ends.
#[derive(Debug)]
#[must_use = "an allowed decision may carry a release that must run"]
pub struct Decision {
    allowed: bool,
    reason: Cow<'static, str>,
    release: Release,
}

impl Decision {
    /// Allowed, reason `allowed`.
    pub const fn allow() -> Self {
        Self { allowed: true, reason: Cow::Borrowed(reason::ALLOWED), release: Release::none() }
    }

    /// Denied, reason `budget_denied`.
    pub const fn deny() -> Self {
        Self { allowed: false, reason: Cow::Borrowed(reason::BUDGET_DENIED), release: Release::none() }
    }

    /// Allowed, with `release` run exactly once when the attempt is over
    /// (success, error, timeout, cancellation, panic).
    pub fn allow_with_release(release: impl FnOnce() + Send + 'static) -> Self {
        Self { allowed: true, reason: Cow::Borrowed(reason::ALLOWED), release: Release::new(release) }
    }

    /// Allowed, with `settle` told how the attempt ended, exactly once
    /// (see [`Settle`]); no allocation.
    pub fn allow_settled(settle: Arc<dyn Settle>, grant: u64) -> Self {
        Self { allowed: true, reason: Cow::Borrowed(reason::ALLOWED), release: Release::shared(settle, grant) }
    }

    /// Replaces the reason (an empty reason is filled from `allowed`).
    pub fn with_reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = reason.into();
        self
    }

    /// Whether the attempt may run.
    pub fn allowed(&self) -> bool {
        self.allowed
    }

    /// The reason code.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Takes the release out of the decision.
    pub fn into_release(self) -> Release {
        self.release
    }

    #[inline]
    pub(crate) fn into_parts(self) -> (bool, Cow<'static, str>, Release) {
        let reason = if self.reason.is_empty() {
            Cow::Borrowed(if self.allowed { reason::ALLOWED } else { reason::BUDGET_DENIED })
        } else {
            self.reason
        };
        // A denied attempt never runs, so there is nothing to release (Go
        // §8.1); dropping it here would run it, so it is forgotten instead.
        let release = if self.allowed { self.release } else { self.release.disarm() };
        (self.allowed, reason, release)
    }
}

/// What a release still has to do.
enum Hook {
    Done,
    Once(Box<dyn FnOnce(AttemptEnd) + Send>),
    Shared(Arc<dyn Settle>, u64),
}

/// Runs a budget's release exactly once: when the executor settles the
/// attempt ([`settle`](Self::settle), with how it ended) or on drop
/// (as [`AttemptEnd::Cancelled`]), whichever comes first. Extra calls do
/// nothing.
#[must_use = "dropping a release runs it at once"]
pub struct Release {
    // Never locked: every access goes through `&mut self` (`get_mut`). It
    // is there so a `Release` is `Sync` without asking the callback to be,
    // which keeps futures holding an attempt's plan `Send`.
    hook: Mutex<Hook>,
    /// The executor recovers plug-in panics: a panicking callback is
    /// caught (the grant counts as released) instead of unwinding into the
    /// call, or into whoever drops it.
    recover: bool,
}

impl Release {
    /// Nothing to release.
    pub const fn none() -> Self {
        Self { hook: Mutex::new(Hook::Done), recover: false }
    }

    /// Wraps a callback that does not care how the attempt ended.
    pub fn new(release: impl FnOnce() + Send + 'static) -> Self {
        Self::with_end(move |_| release())
    }

    /// Wraps a callback told how the attempt ended.
    pub fn with_end(release: impl FnOnce(AttemptEnd) + Send + 'static) -> Self {
        Self { hook: Mutex::new(Hook::Once(Box::new(release))), recover: false }
    }

    /// Tells `settle` how the attempt granted with `grant` ended.
    pub fn shared(settle: Arc<dyn Settle>, grant: u64) -> Self {
        Self { hook: Mutex::new(Hook::Shared(settle, grant)), recover: false }
    }

    /// The same release, catching a panic of its callback when `recover`.
    pub(crate) fn recovering(mut self, recover: bool) -> Self {
        self.recover = recover;
        self
    }

    #[inline]
    fn hook(&mut self) -> &mut Hook {
        self.hook.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the release if it has not run yet, as a cancelled attempt's.
    #[inline]
    pub fn run(&mut self) {
        self.settle(AttemptEnd::Cancelled);
    }

    /// Runs the release, if it has not run yet, with how the attempt ended.
    #[inline]
    pub fn settle(&mut self, end: AttemptEnd) {
        let recover = self.recover;
        // Read before writing: most attempts have nothing to release.
        let hook = self.hook();
        if matches!(hook, Hook::Done) {
            return;
        }
        let hook = std::mem::replace(hook, Hook::Done);
        let run = move || match hook {
            Hook::Done => {}
            Hook::Once(release) => release(end),
            Hook::Shared(settle, grant) => settle.settle(grant, end),
        };
        if recover {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run));
        } else {
            run();
        }
    }

    /// Whether there is a callback still to run.
    pub fn is_pending(&mut self) -> bool {
        !matches!(self.hook(), Hook::Done)
    }

    #[inline]
    fn disarm(mut self) -> Self {
        *self.hook() = Hook::Done;
        self
    }
}

impl Drop for Release {
    #[inline]
    fn drop(&mut self) {
        self.run();
    }
}

impl fmt::Debug for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Release").finish_non_exhaustive()
    }
}

/// Never denies (registry name `unlimited`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unlimited;

impl Budget for Unlimited {
    fn allow_attempt(&self, _: &PolicyKey, _: u32, _: AttemptKind, _: &BudgetRef) -> Decision {
        Decision::allow()
    }
}

/// What an observer hears about each consulted budget.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BudgetDecisionEvent {
    /// The call's key.
    pub key: PolicyKey,
    /// The retry index (hedges share their group's).
    pub attempt: u32,
    /// Primary or hedge.
    pub kind: AttemptKind,
    /// The budget name (trimmed).
    pub budget: String,
    /// The cost asked for.
    pub cost: u32,
    /// `standard` when a budget answered, else the missing-budget mode
    /// (`deny`, `allow`, `fallback`, `allow_unsafe`).
    pub mode: &'static str,
    /// Whether the attempt may run.
    pub allowed: bool,
    /// The reason code.
    pub reason: Cow<'static, str>,
}

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

mod registry;
mod token_bucket;

use std::borrow::Cow;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use crate::policy::{BudgetRef, PolicyKey};

pub use registry::Registry;
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
}

/// A gate on attempts.
///
/// Implementations must be fast and thread-safe: the executor asks before
/// every attempt. Key, attempt index and kind are for budgets that care
/// (most, like [`TokenBucket`], are shared by every key that names them).
pub trait Budget: Send + Sync + 'static {
    /// Whether the attempt may run.
    fn allow_attempt(&self, key: &PolicyKey, attempt: u32, kind: AttemptKind, budget: &BudgetRef) -> Decision;
}

impl<B: Budget + ?Sized> Budget for std::sync::Arc<B> {
    fn allow_attempt(&self, key: &PolicyKey, attempt: u32, kind: AttemptKind, budget: &BudgetRef) -> Decision {
        (**self).allow_attempt(key, attempt, kind, budget)
    }
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

/// Runs a budget's release callback exactly once: on [`run`](Self::run) or
/// on drop, whichever comes first. Extra calls do nothing.
#[must_use = "dropping a release runs it at once"]
pub struct Release {
    // Never locked: every access goes through `&mut self` (`get_mut`). It
    // is there so a `Release` is `Sync` without asking the callback to be,
    // which keeps futures holding an attempt's plan `Send`.
    slot: Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// The executor recovers plug-in panics: a panicking callback is
    /// caught (the grant counts as released) instead of unwinding into the
    /// call, or into whoever drops it.
    recover: bool,
}

impl Release {
    /// Nothing to release.
    pub const fn none() -> Self {
        Self { slot: Mutex::new(None), recover: false }
    }

    /// Wraps a callback.
    pub fn new(release: impl FnOnce() + Send + 'static) -> Self {
        Self { slot: Mutex::new(Some(Box::new(release))), recover: false }
    }

    /// The same release, catching a panic of its callback when `recover`.
    pub(crate) fn recovering(mut self, recover: bool) -> Self {
        self.recover = recover;
        self
    }

    #[inline]
    fn slot(&mut self) -> &mut Option<Box<dyn FnOnce() + Send>> {
        self.slot.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs the callback if it has not run yet.
    #[inline]
    pub fn run(&mut self) {
        let recover = self.recover;
        // Read before writing: most attempts have nothing to release.
        let slot = self.slot();
        if slot.is_some()
            && let Some(release) = slot.take()
        {
            if recover {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(release));
            } else {
                release();
            }
        }
    }

    /// Whether there is a callback still to run.
    pub fn is_pending(&mut self) -> bool {
        self.slot().is_some()
    }

    #[inline]
    fn disarm(mut self) -> Self {
        *self.slot() = None;
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

//! Finagle's retry budget (tower's `TpsBudget`): retries as a fraction of
//! recent requests, plus a floor.

use std::time::Duration;

use super::window::Window;
use super::{AttemptKind, Budget, Decision};
use crate::policy::{BudgetRef, PolicyKey};

/// Retries limited to a fraction of the requests of the last `ttl`, plus
/// `min_per_sec` retries per second whatever the traffic (Finagle's
/// `RetryBudget`, tower's `TpsBudget`; catalog `kind = "percentage"`).
///
/// **Why and when.** A retry storm is retries outnumbering requests. This
/// budget ties retries to traffic: with `ratio = 0.2`, at most one retry
/// for every five requests, so a dependency that fails everything sees at
/// most 1.2× its normal load, while a quiet service can still retry
/// (`min_per_sec`). Use it as the default retry budget of a client with
/// steady traffic; prefer [`RetryThrottling`](super::RetryThrottling) when
/// retries should stop outright while a dependency fails.
///
/// A call's first attempt deposits one request and always runs; a retry or
/// hedge withdraws its cost and runs when `requests × ratio + min_per_sec ×
/// ttl − retries ≥ cost` over the last `ttl`. The arithmetic is exact for
/// any ratio (tower's integer deposits let a ratio of 0.6 retry every
/// request, tower issue 857), and a withdrawal is counted before it is
/// checked and taken back when refused, so racing threads never admit
/// more than the budget holds.
///
/// ```
/// use std::time::Duration;
///
/// use recourse::budget::{AttemptKind, Budget, PercentageBudget};
/// use recourse::policy::BudgetRef;
///
/// let budget = PercentageBudget::new(0.5, 0, Duration::from_secs(10));
/// let (key, one) = ("svc.Op".into(), BudgetRef::named("b"));
/// for _ in 0..4 {
///     assert!(budget.allow_attempt(&key, 0, AttemptKind::Retry, &one).allowed()); // 4 requests
/// }
/// assert!(budget.allow_attempt(&key, 1, AttemptKind::Retry, &one).allowed()); // 2 retries
/// assert!(budget.allow_attempt(&key, 1, AttemptKind::Retry, &one).allowed());
/// assert!(!budget.allow_attempt(&key, 1, AttemptKind::Retry, &one).allowed());
/// ```
#[derive(Debug)]
pub struct PercentageBudget {
    ratio: f64,
    reserve: f64,
    requests: Window,
    retries: Window,
}

impl PercentageBudget {
    /// The shortest and longest `ttl` (tower's bounds).
    pub const TTL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

    /// Up to `ratio` retries per request (NaN or negative: 0; at most
    /// 1000) plus `min_per_sec` per second, over the last `ttl` (clamped
    /// to 1–60 s).
    pub fn new(ratio: f64, min_per_sec: u32, ttl: Duration) -> Self {
        let ratio = if ratio.is_nan() { 0.0 } else { ratio.clamp(0.0, 1000.0) };
        let ttl = ttl.clamp(Self::TTL_RANGE.0, Self::TTL_RANGE.1);
        Self {
            ratio,
            reserve: f64::from(min_per_sec) * ttl.as_secs_f64(),
            requests: Window::new(ttl),
            retries: Window::new(ttl),
        }
    }

    /// Retries the budget would admit now.
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    pub fn available(&self) -> f64 {
        let step = self.requests.step();
        (self.requests.sum(step) as f64 * self.ratio + self.reserve - self.retries.sum(step) as f64).max(0.0)
    }
}

impl Budget for PercentageBudget {
    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn allow_attempt(&self, _: &PolicyKey, attempt: u32, kind: AttemptKind, budget: &BudgetRef) -> Decision {
        let step = self.requests.step();
        if attempt == 0 && kind == AttemptKind::Retry {
            self.requests.add(step, 1);
            return Decision::allow();
        }
        let cost = budget.cost.max(1);
        // Counted first, so two racing retries cannot both fit in one.
        self.retries.add(step, cost);
        let balance = self.requests.sum(step) as f64 * self.ratio + self.reserve - self.retries.sum(step) as f64;
        if balance >= 0.0 {
            Decision::allow()
        } else {
            self.retries.undo(step, cost);
            Decision::deny()
        }
    }
}

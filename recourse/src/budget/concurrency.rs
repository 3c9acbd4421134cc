//! Envoy's retry budget: concurrent retries as a share of active requests.

use std::sync::Arc;

use super::{AttemptEnd, AttemptKind, Budget, Decision, Settle};
use crate::policy::{BudgetRef, PolicyKey};
use crate::sync::{AtomicU64, Ordering};

/// What a grant records: a first attempt, or a retry or hedge.
const FIRST: u64 = 0;
const RETRY: u64 = 1;

/// Concurrent retries limited to a share of the attempts in flight (Envoy's
/// `retry_budget`; catalog `kind = "concurrency"`): a retry or hedge runs
/// when the retries in flight, itself included, are at most
/// `max(min_concurrency, ratio × attempts in flight)`. First attempts
/// always run.
///
/// **Why and when.** Rate-based budgets look at the past; this one looks
/// at now. It caps how much of the load a dependency is carrying at this
/// moment is retries and hedges, which suits hedging-heavy clients and
/// dependencies whose trouble shows as latency (slow attempts stay in
/// flight and hold the budget). Envoy's example: `ratio = 0.2` with
/// `min_concurrency = 3`.
///
/// ```
/// use recourse::budget::{AttemptKind, Budget, ConcurrencyBudget};
/// use recourse::policy::BudgetRef;
///
/// let budget = ConcurrencyBudget::new(0.2, 1);
/// let (key, one) = ("svc.Op".into(), BudgetRef::named("b"));
/// let first = budget.allow_attempt(&key, 0, AttemptKind::Retry, &one);
/// let retry = budget.allow_attempt(&key, 1, AttemptKind::Retry, &one);
/// assert!(retry.allowed()); // the floor: 1 retry in flight
/// assert!(!budget.allow_attempt(&key, 1, AttemptKind::Retry, &one).allowed());
/// drop(retry); // the retry ended
/// assert!(budget.allow_attempt(&key, 1, AttemptKind::Hedge, &one).allowed());
/// # drop(first);
/// ```
#[derive(Debug)]
pub struct ConcurrencyBudget {
    state: Arc<InFlight>,
    ratio: f64,
    min: u64,
}

#[derive(Debug, Default)]
struct InFlight {
    /// Every attempt in flight, first attempts and retries.
    attempts: AtomicU64,
    retries: AtomicU64,
}

impl ConcurrencyBudget {
    /// Retries in flight up to `ratio` (NaN or negative: 0; at most 1000)
    /// of the attempts in flight, and never fewer than `min_concurrency`.
    pub fn new(ratio: f64, min_concurrency: u32) -> Self {
        let ratio = if ratio.is_nan() { 0.0 } else { ratio.clamp(0.0, 1000.0) };
        Self { state: Arc::default(), ratio, min: u64::from(min_concurrency) }
    }

    /// Attempts in flight, and the retries and hedges among them.
    pub fn in_flight(&self) -> (u64, u64) {
        (self.state.attempts.load(Ordering::Acquire), self.state.retries.load(Ordering::Acquire))
    }
}

impl Budget for ConcurrencyBudget {
    fn allow_attempt(&self, _: &PolicyKey, attempt: u32, kind: AttemptKind, _: &BudgetRef) -> Decision {
        let state = &self.state;
        if attempt == 0 && kind == AttemptKind::Retry {
            state.attempts.fetch_add(1, Ordering::AcqRel);
            return Decision::allow_settled(state.clone(), FIRST);
        }
        // Counted first, so racing retries cannot both take the last slot.
        let retries = state.retries.fetch_add(1, Ordering::AcqRel) + 1;
        let attempts = state.attempts.fetch_add(1, Ordering::AcqRel) + 1;
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "a count of attempts in flight"
        )]
        let limit = ((attempts as f64 * self.ratio) as u64).max(self.min);
        if retries <= limit {
            return Decision::allow_settled(state.clone(), RETRY);
        }
        state.settle(RETRY, AttemptEnd::Cancelled);
        Decision::deny()
    }
}

impl Settle for InFlight {
    fn settle(&self, grant: u64, _: AttemptEnd) {
        self.attempts.fetch_sub(1, Ordering::AcqRel);
        if grant == RETRY {
            self.retries.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

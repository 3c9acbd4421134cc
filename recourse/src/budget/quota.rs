//! The AWS SDKs' retry quota (standard retry mode).

use std::sync::Arc;

use super::{AttemptEnd, AttemptKind, Budget, Decision, Settle};
use crate::policy::{BudgetRef, PolicyKey};
use crate::sync::{AtomicU64, Ordering};

/// The AWS SDKs' retry quota (standard mode; catalog
/// `kind = "retry_quota"`): a pool of `capacity` units; a retry takes
/// `retry_cost` (`timeout_cost` when the attempt it retries timed out) and
/// gives it back if it succeeds; a call that succeeds on its first attempt
/// adds `success_increment`. First attempts always run.
///
/// **Why and when.** It lets a healthy client retry freely (every retry
/// that works is refunded) while a dependency that keeps failing drains
/// the pool and retries stop, with timeouts, the costliest failures to
/// retry, draining it twice as fast. Defaults are the SDKs': 500, 5, 10, 1.
/// Use it where a retry's price depends on what went wrong; hedges pay
/// `retry_cost`.
///
/// ```
/// use recourse::budget::{AttemptEnd, AttemptKind, Budget, RetryQuota};
/// use recourse::policy::BudgetRef;
///
/// let quota = RetryQuota::new(10); // costs 5 and 10
/// let (key, one) = ("svc.Op".into(), BudgetRef::named("b"));
/// let after_timeout = Some(AttemptEnd::TimedOut);
/// let mut retry = quota.allow_attempt_after(&key, 1, AttemptKind::Retry, &one, after_timeout).into_release();
/// assert_eq!(quota.available(), 0);
/// retry.settle(AttemptEnd::Succeeded); // refunded
/// assert_eq!(quota.available(), 10);
/// ```
#[derive(Debug)]
pub struct RetryQuota {
    state: Arc<Pool>,
    retry_cost: u64,
    timeout_cost: u64,
}

#[derive(Debug)]
struct Pool {
    units: AtomicU64,
    capacity: u64,
    success_increment: u64,
}

/// What a grant records: the cost taken, or this for a first attempt.
const FIRST: u64 = u64::MAX;

impl RetryQuota {
    /// A pool of `capacity` units with the SDKs' costs: 5 per retry, 10
    /// after a timeout, 1 back per first-attempt success.
    pub fn new(capacity: u32) -> Self {
        let capacity = u64::from(capacity);
        Self {
            state: Arc::new(Pool { units: AtomicU64::new(capacity), capacity, success_increment: 1 }),
            retry_cost: 5,
            timeout_cost: 10,
        }
    }

    /// The SDKs' standard quota: 500 units.
    pub fn standard() -> Self {
        Self::new(500)
    }

    /// What a retry costs, and what one after a timeout costs.
    #[must_use]
    pub fn with_costs(mut self, retry: u32, timeout: u32) -> Self {
        self.retry_cost = u64::from(retry);
        self.timeout_cost = u64::from(timeout);
        self
    }

    /// What a call that succeeds on its first attempt adds back.
    #[must_use]
    pub fn with_success_increment(self, units: u32) -> Self {
        let pool = Pool {
            units: AtomicU64::new(self.available()),
            capacity: self.state.capacity,
            success_increment: u64::from(units),
        };
        Self { state: Arc::new(pool), ..self }
    }

    /// Units in the pool now.
    pub fn available(&self) -> u64 {
        self.state.units.load(Ordering::Acquire)
    }
}

impl Budget for RetryQuota {
    fn allow_attempt(&self, key: &PolicyKey, attempt: u32, kind: AttemptKind, budget: &BudgetRef) -> Decision {
        self.allow_attempt_after(key, attempt, kind, budget, None)
    }

    fn allow_attempt_after(
        &self,
        _: &PolicyKey,
        attempt: u32,
        kind: AttemptKind,
        _: &BudgetRef,
        previous: Option<AttemptEnd>,
    ) -> Decision {
        if attempt == 0 && kind == AttemptKind::Retry {
            return Decision::allow_settled(self.state.clone(), FIRST);
        }
        let cost = if previous == Some(AttemptEnd::TimedOut) { self.timeout_cost } else { self.retry_cost };
        match self.state.units.fetch_update(Ordering::AcqRel, Ordering::Acquire, |units| units.checked_sub(cost)) {
            Ok(_) => Decision::allow_settled(self.state.clone(), cost),
            Err(_) => Decision::deny(),
        }
    }
}

impl Settle for Pool {
    fn settle(&self, grant: u64, end: AttemptEnd) {
        if end != AttemptEnd::Succeeded {
            return;
        }
        let back = if grant == FIRST { self.success_increment } else { grant };
        let _ = self.units.fetch_update(Ordering::AcqRel, Ordering::Acquire, |units| {
            Some(units.saturating_add(back).min(self.capacity))
        });
    }
}

//! A lock-free token bucket.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::{AttemptKind, Budget, Decision};
use crate::policy::{BudgetRef, PolicyKey};

/// Fixed-point scale: one token is 2^20 units, so fractional refills
/// accumulate exactly enough (a refill of 1 token/s adds a unit every
/// microsecond).
const SCALE: u64 = 1 << 20;

/// The shortest interval between two refills.
const MIN_REFILL_NANOS: u64 = 1_000;

/// `capacity` tokens, refilled continuously at `refill_per_sec`; each
/// attempt takes its budget reference's `cost` (at least 1).
///
/// Starts full. Takes no lock: a take is one compare-and-swap loop on the
/// token count, and a refill is claimed by one compare-and-swap on the
/// last-refill time, so under contention it admits exactly what its tokens
/// allow, never more (with no refill, exactly `capacity` attempts in all).
/// Time is tokio's, so `tokio::time::pause()` and `advance()` drive the
/// refill in tests. A bucket is shared by every key and kind that names it.
///
/// ```
/// use recourse::budget::{AttemptKind, Budget, TokenBucket};
/// use recourse::policy::BudgetRef;
///
/// let bucket = TokenBucket::new(2, 0.0);
/// let key = "svc.Op".into();
/// let one = BudgetRef::named("b");
/// assert!(bucket.allow_attempt(&key, 0, AttemptKind::Retry, &one).allowed());
/// assert!(bucket.allow_attempt(&key, 1, AttemptKind::Retry, &one).allowed());
/// assert!(!bucket.allow_attempt(&key, 2, AttemptKind::Retry, &one).allowed());
/// ```
#[derive(Debug)]
pub struct TokenBucket {
    capacity: u64,
    /// Units added per nanosecond (0 when there is no refill).
    units_per_nano: f64,
    tokens: AtomicU64,
    /// Nanoseconds since `origin` at the last refill.
    last: AtomicU64,
    origin: Instant,
}

impl TokenBucket {
    /// A full bucket. A NaN, infinite or negative refill means no refill.
    #[allow(clippy::cast_precision_loss, reason = "the scale is a power of two")]
    pub fn new(capacity: u64, refill_per_sec: f64) -> Self {
        let refill = if refill_per_sec.is_finite() && refill_per_sec > 0.0 { refill_per_sec } else { 0.0 };
        let capacity = capacity.min(u64::MAX / SCALE);
        Self {
            capacity,
            units_per_nano: refill * SCALE as f64 / 1e9,
            tokens: AtomicU64::new(capacity * SCALE),
            last: AtomicU64::new(0),
            origin: Instant::now(),
        }
    }

    /// The capacity in tokens.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whole tokens available now (after refilling).
    pub fn available(&self) -> u64 {
        self.refill();
        self.tokens.load(Ordering::Acquire) / SCALE
    }

    /// Takes `cost` tokens if there are that many.
    pub fn try_take(&self, cost: u64) -> bool {
        self.refill();
        let need = cost.max(1).saturating_mul(SCALE);
        self.tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |tokens| tokens.checked_sub(need)).is_ok()
    }

    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "elapsed nanoseconds fit f64 well beyond a bucket's lifetime; the product is clamped before the cast"
    )]
    fn refill(&self) {
        if self.units_per_nano == 0.0 {
            return;
        }
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let last = self.last.load(Ordering::Acquire);
        // Refill at most once per microsecond: the credit accumulates in
        // `now - last` meanwhile, so nothing is lost, and contended callers
        // rarely race on `last`.
        if now < last.saturating_add(MIN_REFILL_NANOS) {
            return;
        }
        let units = ((now - last) as f64 * self.units_per_nano).min((self.capacity * SCALE) as f64) as u64;
        if units == 0 {
            // Too little time for a unit: leave `last` so time accumulates.
            return;
        }
        // Whoever moves `last` owns the interval; everyone else sees the
        // tokens it adds.
        if self.last.compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return;
        }
        let full = self.capacity * SCALE;
        let _ =
            self.tokens.fetch_update(Ordering::AcqRel, Ordering::Acquire, |t| Some(t.saturating_add(units).min(full)));
    }
}

impl Budget for TokenBucket {
    fn allow_attempt(&self, _: &PolicyKey, _: u32, _: AttemptKind, budget: &BudgetRef) -> Decision {
        if self.try_take(u64::from(budget.cost)) { Decision::allow() } else { Decision::deny() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn refills_at_its_rate_up_to_capacity() {
        let bucket = TokenBucket::new(10, 100.0);
        for _ in 0..10 {
            assert!(bucket.try_take(1));
        }
        assert!(!bucket.try_take(1));
        tokio::time::advance(Duration::from_millis(25)).await;
        assert_eq!(bucket.available(), 2, "100/s for 25 ms");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(bucket.available(), 10, "capped at capacity");
    }

    #[test]
    fn hostile_settings_mean_no_refill() {
        for refill in [f64::NAN, f64::INFINITY, -5.0] {
            let bucket = TokenBucket::new(1, refill);
            assert!(bucket.try_take(1));
            assert!(!bucket.try_take(1));
        }
        assert!(!TokenBucket::new(0, 1.0).try_take(1), "a zero bucket denies at once");
        assert!(!TokenBucket::new(3, 0.0).try_take(4), "cost above the balance leaves it untouched");
        assert_eq!(TokenBucket::new(3, 0.0).available(), 3);
    }
}

//! gRPC's retry throttling (proposal A6).

use std::sync::Arc;

use super::{AttemptEnd, AttemptKind, Budget, Decision, Settle, reason};
use crate::policy::{BudgetRef, PolicyKey};
use crate::sync::{AtomicU64, Ordering};

/// Tokens are kept in thousandths: A6 gives `token_ratio` three decimals.
const MILLI: u64 = 1000;

/// gRPC's retry throttling (proposal A6; catalog
/// `kind = "retry_throttling"`): a token count that starts at
/// `max_tokens`, loses 1 for every failed attempt and gains `token_ratio`
/// for every success; retries and hedges run only while the count is above
/// half of `max_tokens`.
///
/// **Why and when.** When a dependency fails most calls, retrying them is
/// pure extra load. This budget stops retries (not first attempts) soon
/// after failures start to dominate and resumes them as successes return,
/// with no clock and no tuning beyond two numbers. Use it per dependency,
/// as gRPC clients do per server; `token_ratio` sets how many successes
/// make up for a failure (0.1: ten).
///
/// A failure is an attempt classified retryable or cut by its own timeout
/// (as A6 counts retryable and non-fatal codes and pushback); a
/// non-retryable failure, an abort or a cancelled attempt changes nothing,
/// so malformed requests do not drain the tokens. With `max_tokens = 10`
/// and `token_ratio = 0.1`, retries stop after 5 failures (the count is 5,
/// not above 5) and resume after 1 success (5.1).
///
/// ```
/// use recourse::budget::{AttemptEnd, AttemptKind, Budget, RetryThrottling};
/// use recourse::classify::OutcomeKind;
/// use recourse::policy::BudgetRef;
///
/// let throttle = RetryThrottling::new(10, 0.1);
/// let (key, one) = ("svc.Op".into(), BudgetRef::named("b"));
/// for _ in 0..5 {
///     let mut release = throttle.allow_attempt(&key, 0, AttemptKind::Retry, &one).into_release();
///     release.settle(AttemptEnd::Failed(OutcomeKind::Retryable));
/// }
/// assert!(!throttle.allow_attempt(&key, 1, AttemptKind::Retry, &one).allowed());
/// assert!(throttle.allow_attempt(&key, 0, AttemptKind::Retry, &one).allowed()); // first attempts always run
/// ```
#[derive(Debug)]
pub struct RetryThrottling {
    state: Arc<Tokens>,
}

#[derive(Debug)]
struct Tokens {
    /// Thousandths of a token.
    count: AtomicU64,
    max: u64,
    ratio: u64,
}

impl RetryThrottling {
    /// `max_tokens` (1 to 1000, as A6 allows) and `token_ratio` (above 0,
    /// rounded to thousandths; NaN, negative or zero: 0.001).
    pub fn new(max_tokens: u32, token_ratio: f64) -> Self {
        let max = u64::from(max_tokens.clamp(1, 1000)) * MILLI;
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "clamped to 1..=1000000 first")]
        let ratio =
            if token_ratio.is_nan() { 1 } else { (token_ratio * 1000.0).round().clamp(1.0, 1_000_000.0) as u64 };
        Self { state: Arc::new(Tokens { count: AtomicU64::new(max), max, ratio }) }
    }

    /// The token count now.
    #[allow(clippy::cast_precision_loss, reason = "at most a million thousandths")]
    pub fn tokens(&self) -> f64 {
        self.state.count.load(Ordering::Acquire) as f64 / MILLI as f64
    }
}

impl Budget for RetryThrottling {
    fn allow_attempt(&self, _: &PolicyKey, attempt: u32, kind: AttemptKind, _: &BudgetRef) -> Decision {
        let retry = attempt > 0 || kind == AttemptKind::Hedge;
        if retry && self.state.count.load(Ordering::Acquire) * 2 <= self.state.max {
            return Decision::deny().with_reason(reason::BUDGET_THROTTLED);
        }
        Decision::allow_settled(self.state.clone(), 0)
    }
}

impl Settle for Tokens {
    fn settle(&self, _: u64, end: AttemptEnd) {
        let update = |count: u64| {
            if end.struggled() {
                Some(count.saturating_sub(MILLI))
            } else if end == AttemptEnd::Succeeded {
                Some((count + self.ratio).min(self.max))
            } else {
                None
            }
        };
        let _ = self.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, update);
    }
}

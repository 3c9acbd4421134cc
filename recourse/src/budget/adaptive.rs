//! Client-side adaptive throttling (Google SRE book, "Handling Overload").

use std::sync::Arc;
use std::time::Duration;

use super::window::Window;
use super::{AttemptEnd, AttemptKind, Budget, Decision, Settle, reason};
use crate::executor::Rng;
use crate::policy::{BudgetRef, PolicyKey};

/// Client-side adaptive throttling (Google SRE; catalog
/// `kind = "adaptive_throttling"`): over the last `window`, every attempt
/// counts as a request and every attempt the dependency accepted as an
/// accept; a new attempt is refused locally with probability
/// `max(0, (requests − k × accepts) / (requests + 1))`.
///
/// **Why and when.** An overloaded backend spends effort even on the
/// requests it rejects. This budget makes each client shed, on its own
/// side, about the share the backend would reject anyway, so the backend's
/// load falls to what it can serve (times `k`), and recovers smoothly as
/// accepts return. It gates first attempts too: use it in front of a
/// dependency that can be overloaded by its clients, with `k = 2` (the
/// book's choice: up to twice the accepted rate is still sent), a lower
/// `k` to shed more aggressively. Refusals count as requests, so a
/// dependency that accepts nothing is refused almost everything.
///
/// An attempt is accepted when it succeeds or fails non-retryably (the
/// dependency did its job); a retryable failure or a timeout is a
/// rejection; a cancelled attempt counts as a request only.
///
/// ```
/// use std::time::Duration;
///
/// use recourse::budget::AdaptiveThrottling;
///
/// let throttle = AdaptiveThrottling::new(2.0, Duration::from_secs(120));
/// assert_eq!(throttle.reject_probability(), 0.0);
/// ```
#[derive(Debug)]
pub struct AdaptiveThrottling {
    k: f64,
    state: Arc<Counts>,
    rng: Rng,
}

#[derive(Debug)]
struct Counts {
    requests: Window,
    accepts: Window,
}

impl AdaptiveThrottling {
    /// `k` (NaN or below 1: 1; the book uses 2) over the last `window`
    /// (at least a second; the book uses two minutes).
    pub fn new(k: f64, window: Duration) -> Self {
        let k = if k.is_nan() { 1.0 } else { k.max(1.0) };
        let window = window.max(Duration::from_secs(1));
        let state = Arc::new(Counts { requests: Window::new(window), accepts: Window::new(window) });
        Self { k, state, rng: Rng::from_entropy() }
    }

    /// The same throttle drawing from a seeded generator, so a test
    /// replays.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Rng::new(seed);
        self
    }

    /// The probability that an attempt is refused now.
    pub fn reject_probability(&self) -> f64 {
        self.probability_at(self.state.requests.step())
    }

    #[allow(clippy::cast_precision_loss, reason = "counts far below 2^52")]
    fn probability_at(&self, step: u32) -> f64 {
        let requests = self.state.requests.sum(step) as f64;
        let accepts = self.state.accepts.sum(step) as f64;
        ((requests - self.k * accepts) / (requests + 1.0)).max(0.0)
    }
}

impl Budget for AdaptiveThrottling {
    fn allow_attempt(&self, _: &PolicyKey, _: u32, _: AttemptKind, _: &BudgetRef) -> Decision {
        // One clock read per decision.
        let step = self.state.requests.step();
        let refuse = self.probability_at(step);
        self.state.requests.add(step, 1);
        if refuse > 0.0 && self.rng.next_unit() < refuse {
            return Decision::deny().with_reason(reason::BUDGET_THROTTLED);
        }
        Decision::allow_settled(self.state.clone(), 0)
    }
}

impl Settle for Counts {
    fn settle(&self, _: u64, end: AttemptEnd) {
        if end.accepted() {
            // Steps are always the requests window's, so both count alike.
            self.accepts.add(self.requests.step(), 1);
        }
    }
}

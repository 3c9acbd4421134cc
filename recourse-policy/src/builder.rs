//! The policy builder and presets (Go's functional options).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::{BudgetRef, Jitter, NormalizeError, Policy, PolicyKey};

/// Builds a [`Policy`] from the default policy for a key; later settings win.
///
/// [`build`](Self::build) normalizes the result. A setting that cannot be
/// used at all (an unknown [`jitter_name`](Self::jitter_name)) makes
/// `build` discard **every** setting and return the normalized default
/// policy, as the Go original does; [`try_build`](Self::try_build) reports
/// the error instead.
///
/// ```
/// use recourse::policy::Policy;
/// use std::time::Duration;
///
/// let policy = Policy::builder("test.key")
///     .max_attempts(5)
///     .initial_backoff(Duration::from_millis(100))
///     .classifier("custom")
///     .build();
/// assert_eq!(policy.retry.max_attempts, 5);
/// assert_eq!(policy.retry.classifier, "custom");
///
/// let broken = Policy::builder("test.broken").max_attempts(7).jitter_name("invalid-jitter");
/// assert!(broken.clone().try_build().is_err());
/// assert_eq!(broken.build().retry.max_attempts, 3);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct PolicyBuilder {
    policy: Policy,
    error: Option<NormalizeError>,
}

impl PolicyBuilder {
    pub(crate) fn new(key: PolicyKey) -> Self {
        let mut policy = Policy::default_for(key);
        // A built policy is configured, not a default: its source is
        // filled in by whoever serves it (static, catalog, remote).
        policy.meta.source = crate::PolicySource::Unknown;
        Self { policy, error: None }
    }

    /// Starts from an existing policy instead of the default one.
    pub fn from_policy(policy: Policy) -> Self {
        Self { policy, error: None }
    }

    /// Normalizes and returns the policy, or the normalized default policy
    /// for the key if a setting was unusable.
    pub fn build(self) -> Policy {
        match self.try_build_inner() {
            Ok(policy) => policy,
            Err((key, _)) => Policy::default_for(key).normalized(),
        }
    }

    /// Normalizes and returns the policy, or the first unusable setting.
    #[allow(clippy::result_large_err, reason = "the key is handed back so `build` need not clone it")]
    fn try_build_inner(self) -> Result<Policy, (PolicyKey, NormalizeError)> {
        match self.error {
            Some(error) => Err((self.policy.key, error)),
            None => Ok(self.policy.normalized()),
        }
    }

    /// Normalizes and returns the policy, or the first unusable setting.
    pub fn try_build(self) -> Result<Policy, NormalizeError> {
        self.try_build_inner().map_err(|(_, error)| error)
    }

    /// Attempts per call (0 means the default 3; clamped to 10).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.policy.retry.max_attempts = n;
        self
    }

    /// Base delay before the second attempt.
    pub fn initial_backoff(mut self, d: Duration) -> Self {
        self.policy.retry.initial_backoff = d;
        self
    }

    /// Cap for computed backoff sleeps.
    pub fn max_backoff(mut self, d: Duration) -> Self {
        self.policy.retry.max_backoff = d;
        self
    }

    /// Exponential growth factor of the backoff.
    pub fn backoff_multiplier(mut self, m: f64) -> Self {
        self.policy.retry.backoff_multiplier = m;
        self
    }

    /// Initial backoff, cap and multiplier at once.
    pub fn backoff(self, initial: Duration, max: Duration, multiplier: f64) -> Self {
        self.initial_backoff(initial).max_backoff(max).backoff_multiplier(multiplier)
    }

    /// Jitter of each sleep.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.policy.retry.jitter = jitter;
        self
    }

    /// Jitter by configuration name (`none`, `full`, `equal`); an unknown
    /// name makes the whole builder fall back to the default policy.
    pub fn jitter_name(mut self, name: &str) -> Self {
        match name.parse() {
            Ok(jitter) => self.policy.retry.jitter = jitter,
            Err(error) => self.error = self.error.or(Some(error)),
        }
        self
    }

    /// Deadline for each attempt (zero disables).
    pub fn timeout_per_attempt(mut self, d: Duration) -> Self {
        self.policy.retry.timeout_per_attempt = d;
        self
    }

    /// Deadline for the whole call, sleeps included (zero disables).
    pub fn overall_timeout(mut self, d: Duration) -> Self {
        self.policy.retry.overall_timeout = d;
        self
    }

    /// Registered classifier to use for this key.
    pub fn classifier(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.policy.retry.classifier = name.into();
        self
    }

    /// Budget gating primary attempts, cost 1.
    pub fn budget(self, name: impl Into<Cow<'static, str>>) -> Self {
        self.budget_with_cost(name, 1)
    }

    /// Budget gating primary attempts, with a cost per attempt.
    pub fn budget_with_cost(mut self, name: impl Into<Cow<'static, str>>, cost: u32) -> Self {
        self.policy.retry.budget = BudgetRef { name: name.into(), cost };
        self
    }

    /// Policy identifier surfaced to attempts and timelines.
    pub fn id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.policy.id = Some(id.into());
        self
    }

    /// Enables hedging, filling in 2 hedges and a 200 ms delay where unset.
    pub fn enable_hedging(mut self) -> Self {
        let h = &mut self.policy.hedge;
        h.enabled = true;
        if h.max_hedges == 0 {
            h.max_hedges = 2;
        }
        if h.delay.is_zero() {
            h.delay = Duration::from_millis(200);
        }
        self
    }

    /// Enables hedging with up to `n` hedges per retry group.
    pub fn max_hedges(mut self, n: u32) -> Self {
        self.policy.hedge.enabled = true;
        self.policy.hedge.max_hedges = n;
        self
    }

    /// Enables hedging with fixed spacing `d` between hedges.
    pub fn hedge_delay(mut self, d: Duration) -> Self {
        self.policy.hedge.enabled = true;
        self.policy.hedge.delay = d;
        self
    }

    /// Enables hedging driven by a registered trigger.
    pub fn hedge_trigger(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.policy.hedge.enabled = true;
        self.policy.hedge.trigger = name.into();
        self
    }

    /// Budget gating hedge attempts (does not enable hedging).
    pub fn hedge_budget(mut self, name: impl Into<Cow<'static, str>>) -> Self {
        self.policy.hedge.budget = BudgetRef::named(name);
        self
    }

    /// End a hedge group on its first terminal outcome (does not enable hedging).
    pub fn hedge_cancel_on_first_terminal(mut self, cancel: bool) -> Self {
        self.policy.hedge.cancel_on_first_terminal = cancel;
        self
    }

    /// Enables the circuit breaker: open after `threshold` consecutive failed
    /// calls, probe again after `cooldown`.
    pub fn circuit(mut self, threshold: u32, cooldown: Duration) -> Self {
        self.policy.circuit.enabled = true;
        self.policy.circuit.threshold = threshold;
        self.policy.circuit.cooldown = cooldown;
        self
    }

    /// Enables the failure-rate breaker: open when at least `ratio` of the
    /// calls in the last `window` failed, once it holds `min_throughput`
    /// calls; probe again after `cooldown`.
    pub fn circuit_failure_rate(
        mut self,
        ratio: f64,
        window: Duration,
        min_throughput: u32,
        cooldown: Duration,
    ) -> Self {
        let c = &mut self.policy.circuit;
        c.enabled = true;
        c.failure_ratio = ratio;
        c.window = window;
        c.min_throughput = min_throughput;
        c.cooldown = cooldown;
        self
    }

    /// Exponential backoff from `initial` up to `max`, ×2, equal jitter.
    pub fn exponential_backoff(self, initial: Duration, max: Duration) -> Self {
        self.backoff(initial, max, 2.0).jitter(Jitter::Equal)
    }

    /// The same sleep `d` between every attempt, no jitter.
    pub fn constant_backoff(self, d: Duration) -> Self {
        self.backoff(d, d, 1.0).jitter(Jitter::None)
    }

    /// HTTP clients: 3 attempts, 100 ms → 2 s ×2 full jitter, 10 s per
    /// attempt, 30 s overall, classifier `http`.
    pub fn http_defaults(self) -> Self {
        self.max_attempts(3)
            .backoff(Duration::from_millis(100), Duration::from_secs(2), 2.0)
            .jitter(Jitter::Full)
            .timeout_per_attempt(Duration::from_secs(10))
            .overall_timeout(Duration::from_secs(30))
            .classifier("http")
    }

    /// Databases: 3 attempts, 100 ms → 5 s ×2 equal jitter, 30 s per attempt,
    /// 60 s overall.
    pub fn database_defaults(self) -> Self {
        self.max_attempts(3)
            .backoff(Duration::from_millis(100), Duration::from_secs(5), 2.0)
            .jitter(Jitter::Equal)
            .timeout_per_attempt(Duration::from_secs(30))
            .overall_timeout(Duration::from_secs(60))
    }

    /// Background jobs: 5 attempts, 1 s → 30 s ×2 full jitter, 5 min overall.
    pub fn background_job_defaults(self) -> Self {
        self.max_attempts(5)
            .backoff(Duration::from_secs(1), Duration::from_secs(30), 2.0)
            .jitter(Jitter::Full)
            .overall_timeout(Duration::from_secs(300))
    }

    /// Latency-sensitive reads: 2 attempts, 10 → 50 ms ×2 equal jitter,
    /// 500 ms per attempt, 1 s overall, 2 hedges 100 ms apart.
    pub fn low_latency_defaults(self) -> Self {
        self.max_attempts(2)
            .backoff(Duration::from_millis(10), Duration::from_millis(50), 2.0)
            .jitter(Jitter::Equal)
            .timeout_per_attempt(Duration::from_millis(500))
            .overall_timeout(Duration::from_secs(1))
            .max_hedges(2)
            .hedge_delay(Duration::from_millis(100))
    }
}

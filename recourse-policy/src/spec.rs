//! What a catalog or a policy document says about one key: every setting
//! optional, an absent one keeping the default policy's value.
//!
//! One schema for every source. The macros decode `recourse.toml` into a
//! `PolicySpec<String>` at compile time and embed it as a
//! `PolicySpec<&'static str>`; the file and remote providers decode the
//! same formats into `PolicySpec<String>` at run time; both become a
//! [`Policy`] through [`PolicySpec::to_policy`], so the two paths cannot
//! disagree about what a setting means.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::{BudgetRef, Jitter, Policy, PolicyKey, PolicySource, limits};

/// Text in a spec: owned when decoded at run time, `&'static str` when
/// embedded by the macros (so a compiled policy borrows its strings).
pub trait Text: AsRef<str> {
    /// The text as a policy field holds it.
    fn to_cow(&self) -> Cow<'static, str>;
}

impl Text for &'static str {
    fn to_cow(&self) -> Cow<'static, str> {
        Cow::Borrowed(self)
    }
}

impl Text for String {
    fn to_cow(&self) -> Cow<'static, str> {
        Cow::Owned(self.clone())
    }
}

/// A budget reference: `budget = "name"` or `{ name, cost }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetRefSpec<S = String> {
    /// The budget's registry name.
    pub name: S,
    /// Units per attempt.
    pub cost: u32,
}

/// A `.hedge` table (its presence enables hedging unless `enabled = false`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HedgeSpec<S = String> {
    /// Whether hedging is on.
    pub enabled: bool,
    /// Extra attempts per retry group.
    pub max_hedges: Option<u32>,
    /// Spacing of fixed-delay hedges.
    pub delay: Option<Duration>,
    /// Registered hedge trigger name.
    pub trigger: Option<S>,
    /// Budget for hedge attempts.
    pub budget: Option<BudgetRefSpec<S>>,
    /// End the group on the first non-retryable or abort outcome.
    pub cancel_on_first_terminal: Option<bool>,
}

impl<S> HedgeSpec<S> {
    /// `enabled` with every other setting absent.
    pub const fn enabled() -> Self {
        Self {
            enabled: true,
            max_hedges: None,
            delay: None,
            trigger: None,
            budget: None,
            cancel_on_first_terminal: None,
        }
    }
}

/// A `.circuit` table (its presence enables the breaker unless
/// `enabled = false`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitSpec {
    /// Whether calls go through a breaker.
    pub enabled: bool,
    /// Consecutive failed calls that open the circuit.
    pub threshold: Option<u32>,
    /// How long the circuit stays open before a probe.
    pub cooldown: Option<Duration>,
    /// Failure-rate mode's ratio.
    pub failure_ratio: Option<f64>,
    /// Failure-rate mode's window.
    pub window: Option<Duration>,
    /// Calls the window must hold before the rate can open the circuit.
    pub min_throughput: Option<u32>,
}

impl CircuitSpec {
    /// `enabled` with every other setting absent.
    pub const fn enabled() -> Self {
        Self { enabled: true, threshold: None, cooldown: None, failure_ratio: None, window: None, min_throughput: None }
    }
}

/// One policy's settings; `None` keeps the default policy's value.
///
/// ```
/// use recourse::policy::{PolicySource, spec::PolicySpec};
///
/// let spec = PolicySpec::<String> { max_attempts: Some(5), ..PolicySpec::EMPTY };
/// let policy = spec.to_policy("svc.Op".into(), PolicySource::File);
/// assert_eq!(policy.retry.max_attempts, 5);
/// assert_eq!(policy.retry.initial_backoff, std::time::Duration::from_millis(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicySpec<S = String> {
    /// Policy identifier (a revision), surfaced to attempts and timelines.
    pub id: Option<S>,
    /// Attempts per call.
    pub max_attempts: Option<u32>,
    /// Base delay before the second attempt.
    pub initial_backoff: Option<Duration>,
    /// Cap for computed backoff sleeps.
    pub max_backoff: Option<Duration>,
    /// Exponential growth factor.
    pub backoff_multiplier: Option<f64>,
    /// Randomisation of each sleep.
    pub jitter: Option<Jitter>,
    /// Deadline for each attempt (zero disables it).
    pub timeout_per_attempt: Option<Duration>,
    /// Deadline for the whole call (zero disables it).
    pub overall_timeout: Option<Duration>,
    /// Registered classifier name.
    pub classifier: Option<S>,
    /// Budget for primary attempts.
    pub budget: Option<BudgetRefSpec<S>>,
    /// Hedging.
    pub hedge: Option<HedgeSpec<S>>,
    /// Circuit breaking.
    pub circuit: Option<CircuitSpec>,
}

impl<S> PolicySpec<S> {
    /// Every setting absent: the default policy.
    pub const EMPTY: Self = Self {
        id: None,
        max_attempts: None,
        initial_backoff: None,
        max_backoff: None,
        backoff_multiplier: None,
        jitter: None,
        timeout_per_attempt: None,
        overall_timeout: None,
        classifier: None,
        budget: None,
        hedge: None,
        circuit: None,
    };

    /// Whether hedging is on.
    pub fn hedging(&self) -> bool {
        self.hedge.as_ref().is_some_and(|h| h.enabled)
    }

    /// The budget names this policy references (retry, then hedge).
    pub fn budget_names(&self) -> impl Iterator<Item = &S> {
        let hedge = self.hedge.as_ref().and_then(|h| h.budget.as_ref());
        self.budget.as_ref().into_iter().chain(hedge).map(|b| &b.name)
    }
}

impl<S> Default for PolicySpec<S> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<S: Text> PolicySpec<S> {
    /// The policy this spec describes for `key`: the default policy with
    /// every given setting applied, normalized, from `source`.
    pub fn to_policy(&self, key: PolicyKey, source: PolicySource) -> Policy {
        self.apply(key, source).normalized()
    }

    /// The default policy with every given setting applied, before
    /// normalization.
    fn apply(&self, key: PolicyKey, source: PolicySource) -> Policy {
        let mut p = Policy::default_for(key);
        p.meta.source = source;
        p.id = self.id.as_ref().map(|id| Arc::from(id.as_ref()));
        let r = &mut p.retry;
        set(&mut r.max_attempts, self.max_attempts);
        set(&mut r.initial_backoff, self.initial_backoff);
        set(&mut r.max_backoff, self.max_backoff);
        set(&mut r.backoff_multiplier, self.backoff_multiplier);
        set(&mut r.jitter, self.jitter);
        set(&mut r.timeout_per_attempt, self.timeout_per_attempt);
        set(&mut r.overall_timeout, self.overall_timeout);
        set(&mut r.classifier, self.classifier.as_ref().map(Text::to_cow));
        set(&mut r.budget, self.budget.as_ref().map(budget_ref));
        // An omitted setting of an enabled table takes its default here, so
        // normalization has nothing to fill in and reports nothing.
        if let Some(h) = &self.hedge {
            let hedge = &mut p.hedge;
            hedge.enabled = h.enabled;
            if h.enabled {
                hedge.max_hedges = limits::DEFAULT_MAX_HEDGES;
                hedge.delay = limits::DEFAULT_HEDGE_DELAY;
            }
            set(&mut hedge.max_hedges, h.max_hedges);
            set(&mut hedge.delay, h.delay);
            set(&mut hedge.trigger, h.trigger.as_ref().map(Text::to_cow));
            set(&mut hedge.budget, h.budget.as_ref().map(budget_ref));
            set(&mut hedge.cancel_on_first_terminal, h.cancel_on_first_terminal);
        }
        if let Some(c) = &self.circuit {
            let circuit = &mut p.circuit;
            circuit.enabled = c.enabled;
            if c.enabled {
                circuit.threshold = limits::DEFAULT_CIRCUIT_THRESHOLD;
                circuit.cooldown = limits::DEFAULT_CIRCUIT_COOLDOWN;
            }
            if c.failure_ratio.is_some_and(|ratio| ratio > 0.0) {
                circuit.window = limits::DEFAULT_CIRCUIT_WINDOW;
                circuit.min_throughput = limits::DEFAULT_MIN_THROUGHPUT;
            }
            set(&mut circuit.threshold, c.threshold);
            set(&mut circuit.cooldown, c.cooldown);
            set(&mut circuit.failure_ratio, c.failure_ratio);
            set(&mut circuit.window, c.window);
            set(&mut circuit.min_throughput, c.min_throughput);
        }
        p
    }
}

fn budget_ref<S: Text>(b: &BudgetRefSpec<S>) -> BudgetRef {
    BudgetRef { name: b.name.to_cow(), cost: b.cost }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// A `[budgets.<name>]` declaration: a budget the catalog describes, which
/// the executor creates on first use unless one is registered in code
/// under that name.
///
/// Like [`PolicySpec`], generic over its text: `String` when decoded at
/// run time, `&'static str` when embedded by the macros. Every value is
/// checked by the reader and every default filled in, so the fields are
/// exactly what the budget is built with.
///
/// ```
/// use recourse::policy::spec::BudgetDecl;
///
/// let decl = BudgetDecl::<String>::RetryThrottling { max_tokens: 10, token_ratio: 0.1 };
/// assert_eq!(decl.kind(), "retry_throttling");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetDecl<S = String> {
    /// `kind = "unlimited"`: every attempt allowed.
    Unlimited,
    /// `kind = "token_bucket"`.
    TokenBucket {
        /// Tokens the bucket holds when full.
        capacity: u32,
        /// Tokens added per second.
        refill_per_sec: f64,
    },
    /// `kind = "percentage"`: retries as a share of recent requests, plus a
    /// floor (`recourse::budget::PercentageBudget`).
    Percentage {
        /// Retries allowed per request (0 to 1000; default 0.2).
        ratio: f64,
        /// Retries allowed per second whatever the traffic (default 10).
        min_per_sec: u32,
        /// How long a request counts (1 s to 60 s; default 10 s).
        ttl: Duration,
    },
    /// `kind = "retry_throttling"`: gRPC's retry throttling
    /// (`recourse::budget::RetryThrottling`).
    RetryThrottling {
        /// Tokens at the start and at most (1 to 1000).
        max_tokens: u32,
        /// Tokens a success gives back (above 0, at most 1000).
        token_ratio: f64,
    },
    /// `kind = "retry_quota"`: the AWS SDKs' retry quota
    /// (`recourse::budget::RetryQuota`).
    RetryQuota {
        /// Units in the pool when full (default 500).
        capacity: u32,
        /// Units a retry takes (default 5).
        retry_cost: u32,
        /// Units a retry after a timeout takes (default 10).
        timeout_cost: u32,
        /// Units a first-attempt success gives back (default 1).
        success_increment: u32,
    },
    /// `kind = "adaptive_throttling"`: client-side adaptive throttling
    /// (`recourse::budget::AdaptiveThrottling`).
    AdaptiveThrottling {
        /// Requests sent per accepted request before shedding starts (at
        /// least 1; default 2).
        k: f64,
        /// How long a request counts (at least 1 s; default 2 min).
        window: Duration,
    },
    /// `kind = "concurrency"`: retries in flight as a share of attempts in
    /// flight (`recourse::budget::ConcurrencyBudget`).
    Concurrency {
        /// Retries in flight per attempt in flight (0 to 1000; default 0.2).
        ratio: f64,
        /// Retries in flight allowed whatever the load (default 3).
        min_concurrency: u32,
    },
    /// `kind = "redis_token_bucket"`: a token bucket shared by every
    /// process through Redis (`recourse::budget::RedisTokenBucket`, cargo
    /// feature `redis`).
    RedisTokenBucket {
        /// The environment variable that holds the Redis URL (the URL,
        /// which may carry a password, stays out of the catalog).
        url_env: S,
        /// The Redis key of the bucket (default `recourse:budget:<name>`).
        key: S,
        /// Tokens the bucket holds when full.
        capacity: u32,
        /// Tokens added per second.
        refill_per_sec: f64,
        /// Tokens a process takes per round trip (at least 1; default 10).
        lease: u32,
        /// How long a process may hold leased tokens (default 1 s).
        lease_ttl: Duration,
        /// How long a round trip may take before Redis counts as
        /// unavailable (default 100 ms).
        timeout: Duration,
        /// What decides while Redis is unavailable (default fallback).
        on_unavailable: RedisUnavailable,
        /// The local fallback bucket's capacity (default `capacity`).
        fallback_capacity: u32,
        /// The local fallback bucket's refill (default `refill_per_sec`).
        fallback_refill_per_sec: f64,
    },
    /// `kind = "custom"`: registered in code under this name.
    Custom,
}

impl<S> BudgetDecl<S> {
    /// The `kind` the catalog writes for it.
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Unlimited => "unlimited",
            Self::TokenBucket { .. } => "token_bucket",
            Self::Percentage { .. } => "percentage",
            Self::RetryThrottling { .. } => "retry_throttling",
            Self::RetryQuota { .. } => "retry_quota",
            Self::AdaptiveThrottling { .. } => "adaptive_throttling",
            Self::Concurrency { .. } => "concurrency",
            Self::RedisTokenBucket { .. } => "redis_token_bucket",
            Self::Custom => "custom",
        }
    }
}

/// What a `redis_token_bucket` does while Redis is unreachable or slower
/// than its `timeout` (`on_unavailable`).
///
/// ```
/// use recourse::policy::spec::RedisUnavailable;
///
/// assert_eq!(RedisUnavailable::Fallback.as_str(), "fallback");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RedisUnavailable {
    /// `"deny"`: every attempt the bucket gates is refused.
    Deny,
    /// `"allow"`: every attempt the bucket gates is admitted.
    Allow,
    /// `"fallback"`: a local token bucket decides until Redis answers.
    Fallback,
}

impl RedisUnavailable {
    /// The value the catalog writes for it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Allow => "allow",
            Self::Fallback => "fallback",
        }
    }
}

//! The policy model: [`Policy`] and its parts, defaults and sources.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::builder::PolicyBuilder;
use crate::key::PolicyKey;
use crate::normalize::{Normalization, NormalizeError};

/// The complete resilience envelope for one policy key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Policy {
    /// The key this policy applies to.
    pub key: PolicyKey,
    /// Optional identifier (for example a config revision), surfaced to
    /// attempts and timelines.
    pub id: Option<Arc<str>>,
    /// Attempts, backoff, timeouts, classifier and budget.
    pub retry: RetryPolicy,
    /// Hedged attempts inside a retry group.
    pub hedge: HedgePolicy,
    /// Circuit breaking for the key.
    pub circuit: CircuitPolicy,
    /// Where the policy came from and what normalization changed.
    pub meta: Metadata,
}

/// The retry envelope of a [`Policy`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Attempts per call (retry groups; hedges are not counted). 1..=10.
    pub max_attempts: u32,
    /// Base delay before the second attempt. At least 1 ms.
    pub initial_backoff: Duration,
    /// Cap for computed backoff sleeps. At most 30 s, at least `initial_backoff`.
    pub max_backoff: Duration,
    /// Exponential growth factor. 1.0..=10.0.
    pub backoff_multiplier: f64,
    /// Randomisation of each sleep.
    pub jitter: Jitter,
    /// Deadline for each attempt; zero disables it.
    pub timeout_per_attempt: Duration,
    /// Deadline for the whole call, sleeps included; zero disables it.
    pub overall_timeout: Duration,
    /// Registered classifier name; empty means "the error type's own
    /// classification, else the executor's default classifier".
    pub classifier: Cow<'static, str>,
    /// Budget that gates primary attempts.
    pub budget: BudgetRef,
}

/// Hedging: extra concurrent attempts inside one retry group.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HedgePolicy {
    /// Whether hedges may be launched at all.
    pub enabled: bool,
    /// Extra attempts per retry group (1..=3 when enabled).
    pub max_hedges: u32,
    /// Spacing of fixed-delay hedges (at least 10 ms when enabled).
    pub delay: Duration,
    /// Registered hedge trigger name; empty means fixed delay.
    pub trigger: Cow<'static, str>,
    /// End the group on the first non-retryable or abort outcome.
    pub cancel_on_first_terminal: bool,
    /// Budget that gates hedge attempts (independent of the retry budget).
    pub budget: BudgetRef,
}

/// Circuit breaking for a key.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CircuitPolicy {
    /// Whether calls go through a breaker.
    pub enabled: bool,
    /// Consecutive failed calls that open the circuit (at least 1).
    pub threshold: u32,
    /// How long the circuit stays open before a probe (at least 100 ms).
    pub cooldown: Duration,
    /// Failure-rate mode when above zero: open when at least this share
    /// (0 < ratio ≤ 1) of the calls in [`window`](Self::window) failed, once
    /// the window holds [`min_throughput`](Self::min_throughput) calls.
    /// Zero selects the consecutive-failures breaker (`threshold`).
    pub failure_ratio: f64,
    /// The failure-rate breaker's sliding window (at least 1 s; 10 s when
    /// zero).
    pub window: Duration,
    /// Calls the window must hold before the failure rate can open the
    /// circuit (at least 1; 10 when zero).
    pub min_throughput: u32,
}

/// A reference to a registered budget and the cost of one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetRef {
    /// Registry name; empty means "unbudgeted".
    pub name: Cow<'static, str>,
    /// Units taken per attempt (at least 1).
    pub cost: u32,
}

impl BudgetRef {
    /// A reference to `name` with cost 1.
    pub fn named(name: impl Into<Cow<'static, str>>) -> Self {
        Self { name: name.into(), cost: 1 }
    }

    /// No budget: every attempt is allowed with reason `no_budget`.
    pub const fn none() -> Self {
        Self { name: Cow::Borrowed(""), cost: 1 }
    }

    /// Whether a budget is named (after trimming).
    pub fn is_set(&self) -> bool {
        !self.name.trim().is_empty()
    }
}

impl Default for BudgetRef {
    fn default() -> Self {
        Self::none()
    }
}

/// How each backoff sleep is randomised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Jitter {
    /// Sleep exactly the computed backoff.
    #[default]
    None,
    /// Sleep a uniform random duration in `[0, backoff)`.
    Full,
    /// Sleep a uniform random duration in `[backoff/2, backoff)`.
    Equal,
}

impl Jitter {
    /// The configuration name: `none`, `full` or `equal`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Full => "full",
            Self::Equal => "equal",
        }
    }
}

impl fmt::Display for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Jitter {
    type Err = NormalizeError;

    /// Parses `none`, `full` or `equal`; the empty string means `none`, as
    /// normalization does in the Go original.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "" | "none" => Ok(Self::None),
            "full" => Ok(Self::Full),
            "equal" => Ok(Self::Equal),
            other => Err(NormalizeError::new("retry.jitter", other)),
        }
    }
}

/// Where a policy came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum PolicySource {
    /// Not known (hand-built and never served).
    #[default]
    Unknown,
    /// [`Policy::default_for`]: no one configured the key.
    Default,
    /// A `StaticProvider` entry (`recourse::provider`).
    Static,
    /// The `recourse.toml` catalog compiled into the call site.
    Catalog,
    /// A remote provider.
    Remote,
    /// A remote provider's last known good copy, served while the control
    /// plane fails or answers garbage.
    LastKnownGood,
    /// A policy file read at run time (`FileProvider`).
    File,
}

impl PolicySource {
    /// The telemetry string: `unknown`, `default`, `static`, `catalog`,
    /// `remote`, `lkg` or `file`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Default => "default",
            Self::Static => "static",
            Self::Catalog => "catalog",
            Self::Remote => "remote",
            Self::LastKnownGood => "lkg",
            Self::File => "file",
        }
    }
}

impl fmt::Display for PolicySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Where a policy came from and what normalization changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Metadata {
    /// The policy's origin.
    pub source: PolicySource,
    /// Fields that normalization clamped or filled in.
    pub normalization: Normalization,
    /// Why the source serves this policy rather than a newer one (a
    /// reload or fetch that failed, a policy rejected by a catalog guard);
    /// recorded on timelines as `policy_error`.
    pub error: Option<Arc<str>>,
}

impl Policy {
    /// The default policy for `key`: 3 attempts, 10 ms initial backoff
    /// doubling up to 250 ms, no jitter, no timeouts, no budget, no hedging,
    /// no circuit; source [`PolicySource::Default`]. Already normalized.
    ///
    /// ```
    /// use recourse::policy::Policy;
    /// use std::time::Duration;
    ///
    /// let policy = Policy::default_for("svc.Op".into());
    /// assert_eq!(policy.retry.max_attempts, 3);
    /// assert_eq!(policy.retry.initial_backoff, Duration::from_millis(10));
    /// ```
    pub fn default_for(key: PolicyKey) -> Self {
        Self {
            key,
            id: None,
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(250),
                backoff_multiplier: 2.0,
                jitter: Jitter::None,
                timeout_per_attempt: Duration::ZERO,
                overall_timeout: Duration::ZERO,
                classifier: Cow::Borrowed(""),
                budget: BudgetRef::none(),
            },
            hedge: HedgePolicy {
                enabled: false,
                max_hedges: 0,
                delay: Duration::ZERO,
                trigger: Cow::Borrowed(""),
                cancel_on_first_terminal: false,
                budget: BudgetRef::none(),
            },
            circuit: CircuitPolicy {
                enabled: false,
                threshold: 0,
                cooldown: Duration::ZERO,
                failure_ratio: 0.0,
                window: Duration::ZERO,
                min_throughput: 0,
            },
            meta: Metadata { source: PolicySource::Default, ..Metadata::default() },
        }
    }

    /// An all-zero policy for `key` (Go's zero value): every numeric field 0,
    /// source unknown. Normalizing it gives the default envelope and lists
    /// every field it filled in.
    pub fn zero(key: PolicyKey) -> Self {
        Self {
            key,
            id: None,
            retry: RetryPolicy {
                max_attempts: 0,
                initial_backoff: Duration::ZERO,
                max_backoff: Duration::ZERO,
                backoff_multiplier: 0.0,
                jitter: Jitter::None,
                timeout_per_attempt: Duration::ZERO,
                overall_timeout: Duration::ZERO,
                classifier: Cow::Borrowed(""),
                budget: BudgetRef { name: Cow::Borrowed(""), cost: 0 },
            },
            hedge: HedgePolicy {
                enabled: false,
                max_hedges: 0,
                delay: Duration::ZERO,
                trigger: Cow::Borrowed(""),
                cancel_on_first_terminal: false,
                budget: BudgetRef { name: Cow::Borrowed(""), cost: 0 },
            },
            circuit: CircuitPolicy {
                enabled: false,
                threshold: 0,
                cooldown: Duration::ZERO,
                failure_ratio: 0.0,
                window: Duration::ZERO,
                min_throughput: 0,
            },
            meta: Metadata::default(),
        }
    }

    /// Starts a builder from the default policy for `key`.
    pub fn builder(key: impl Into<PolicyKey>) -> PolicyBuilder {
        PolicyBuilder::new(key.into())
    }
}

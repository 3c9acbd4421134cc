//! Normalization: every floor and ceiling of the Go original, applied in its
//! order, with the list of fields it changed.

use std::fmt;
use std::time::Duration;

use crate::schema::Policy;

use crate::limits;

/// What normalization changed, in the order it changed it.
///
/// Field paths are the Go original's: `retry.max_attempts`,
/// `retry.initial_backoff`, `retry.max_backoff`, `retry.backoff_multiplier`,
/// `retry.timeout_per_attempt`, `retry.overall_timeout`, `retry.budget.cost`,
/// `hedge.budget.cost`, `hedge.max_hedges`, `hedge.hedge_delay`,
/// `circuit.threshold`, `circuit.cooldown`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Normalization {
    changed_fields: Vec<&'static str>,
}

impl Normalization {
    /// Whether any field was changed.
    pub fn changed(&self) -> bool {
        !self.changed_fields.is_empty()
    }

    /// The changed field paths, de-duplicated, in order of first change.
    pub fn changed_fields(&self) -> &[&'static str] {
        &self.changed_fields
    }

    fn mark(&mut self, field: &'static str) {
        if !self.changed_fields.contains(&field) {
            self.changed_fields.push(field);
        }
    }
}

/// A policy setting that cannot be used, such as an unknown jitter name.
///
/// ```
/// use recourse::policy::Jitter;
///
/// let err = "weird".parse::<Jitter>().unwrap_err();
/// assert_eq!(err.to_string(), r#"recourse: invalid policy config: retry.jitter="weird""#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recourse: invalid policy config: {field}={value:?}")]
pub struct NormalizeError {
    /// The dotted field path, e.g. `retry.jitter`.
    pub field: &'static str,
    /// The rejected value as written.
    pub value: String,
}

impl NormalizeError {
    pub(crate) fn new(field: &'static str, value: impl fmt::Display) -> Self {
        Self { field, value: value.to_string() }
    }
}

fn clamp_duration_floor(value: &mut Duration, zero: Duration, floor: Duration) -> bool {
    if value.is_zero() {
        *value = zero;
        true
    } else if *value < floor {
        *value = floor;
        true
    } else {
        false
    }
}

/// The fields normalization touches, copied out of a policy so the rules
/// can run on them without touching (or allocating for) the rest.
#[derive(Clone, Copy, PartialEq)]
struct Numbers {
    max_attempts: u32,
    initial_backoff: Duration,
    max_backoff: Duration,
    multiplier: f64,
    timeout_per_attempt: Duration,
    overall_timeout: Duration,
    retry_cost: u32,
    hedge_cost: u32,
    hedge_enabled: bool,
    max_hedges: u32,
    hedge_delay: Duration,
    circuit_enabled: bool,
    threshold: u32,
    cooldown: Duration,
    failure_ratio: f64,
    window: Duration,
    min_throughput: u32,
}

impl Numbers {
    fn of(p: &Policy) -> Self {
        Self {
            max_attempts: p.retry.max_attempts,
            initial_backoff: p.retry.initial_backoff,
            max_backoff: p.retry.max_backoff,
            multiplier: p.retry.backoff_multiplier,
            timeout_per_attempt: p.retry.timeout_per_attempt,
            overall_timeout: p.retry.overall_timeout,
            retry_cost: p.retry.budget.cost,
            hedge_cost: p.hedge.budget.cost,
            hedge_enabled: p.hedge.enabled,
            max_hedges: p.hedge.max_hedges,
            hedge_delay: p.hedge.delay,
            circuit_enabled: p.circuit.enabled,
            threshold: p.circuit.threshold,
            cooldown: p.circuit.cooldown,
            failure_ratio: p.circuit.failure_ratio,
            window: p.circuit.window,
            min_throughput: p.circuit.min_throughput,
        }
    }

    fn write(self, p: &mut Policy) {
        p.retry.max_attempts = self.max_attempts;
        p.retry.initial_backoff = self.initial_backoff;
        p.retry.max_backoff = self.max_backoff;
        p.retry.backoff_multiplier = self.multiplier;
        p.retry.timeout_per_attempt = self.timeout_per_attempt;
        p.retry.overall_timeout = self.overall_timeout;
        p.retry.budget.cost = self.retry_cost;
        p.hedge.budget.cost = self.hedge_cost;
        p.hedge.max_hedges = self.max_hedges;
        p.hedge.delay = self.hedge_delay;
        p.circuit.threshold = self.threshold;
        p.circuit.cooldown = self.cooldown;
        p.circuit.failure_ratio = self.failure_ratio;
        p.circuit.window = self.window;
        p.circuit.min_throughput = self.min_throughput;
    }

    /// The rules, in the Go original's order; `mark` hears every changed
    /// field.
    #[allow(clippy::wildcard_imports, reason = "the rules read like the specification's table")]
    fn apply(&mut self, mark: &mut impl FnMut(&'static str)) {
        use limits::*;
        if self.max_attempts == 0 {
            self.max_attempts = DEFAULT_MAX_ATTEMPTS;
            mark("retry.max_attempts");
        } else if self.max_attempts > MAX_ATTEMPTS {
            self.max_attempts = MAX_ATTEMPTS;
            mark("retry.max_attempts");
        }
        if clamp_duration_floor(&mut self.initial_backoff, DEFAULT_INITIAL_BACKOFF, MIN_INITIAL_BACKOFF) {
            mark("retry.initial_backoff");
        }
        if self.max_backoff.is_zero() {
            self.max_backoff = DEFAULT_MAX_BACKOFF;
            mark("retry.max_backoff");
        }
        if self.max_backoff > MAX_BACKOFF {
            self.max_backoff = MAX_BACKOFF;
            mark("retry.max_backoff");
        }
        if self.max_backoff < self.initial_backoff {
            self.max_backoff = self.initial_backoff;
            mark("retry.max_backoff");
        }
        let m = self.multiplier;
        if m == 0.0 || m.is_nan() {
            self.multiplier = DEFAULT_MULTIPLIER;
            mark("retry.backoff_multiplier");
        } else if m < MIN_MULTIPLIER {
            self.multiplier = MIN_MULTIPLIER;
            mark("retry.backoff_multiplier");
        } else if m > MAX_MULTIPLIER {
            self.multiplier = MAX_MULTIPLIER;
            mark("retry.backoff_multiplier");
        }
        if !self.timeout_per_attempt.is_zero() && self.timeout_per_attempt < MIN_TIMEOUT {
            self.timeout_per_attempt = MIN_TIMEOUT;
            mark("retry.timeout_per_attempt");
        }
        if !self.overall_timeout.is_zero() && self.overall_timeout < MIN_TIMEOUT {
            self.overall_timeout = MIN_TIMEOUT;
            mark("retry.overall_timeout");
        }
        if self.retry_cost == 0 {
            self.retry_cost = 1;
            mark("retry.budget.cost");
        }
        if self.hedge_cost == 0 {
            self.hedge_cost = 1;
            mark("hedge.budget.cost");
        }
        if self.hedge_enabled {
            if self.max_hedges == 0 {
                self.max_hedges = DEFAULT_MAX_HEDGES;
                mark("hedge.max_hedges");
            } else if self.max_hedges > MAX_HEDGES {
                self.max_hedges = MAX_HEDGES;
                mark("hedge.max_hedges");
            }
            if clamp_duration_floor(&mut self.hedge_delay, DEFAULT_HEDGE_DELAY, MIN_HEDGE_DELAY) {
                mark("hedge.hedge_delay");
            }
        }
        if self.circuit_enabled {
            if self.threshold == 0 {
                self.threshold = DEFAULT_CIRCUIT_THRESHOLD;
                mark("circuit.threshold");
            }
            if clamp_duration_floor(&mut self.cooldown, DEFAULT_CIRCUIT_COOLDOWN, MIN_CIRCUIT_COOLDOWN) {
                mark("circuit.cooldown");
            }
            // Failure-rate mode (a deliberate extension; Go has only the
            // consecutive-failures breaker). NaN or negative ratios select
            // the consecutive mode; ratios above 1 mean "every call failed".
            if self.failure_ratio.is_nan() || self.failure_ratio < 0.0 {
                self.failure_ratio = 0.0;
                mark("circuit.failure_ratio");
            } else if self.failure_ratio > 1.0 {
                self.failure_ratio = 1.0;
                mark("circuit.failure_ratio");
            }
            if self.failure_ratio > 0.0 {
                if clamp_duration_floor(&mut self.window, DEFAULT_CIRCUIT_WINDOW, MIN_CIRCUIT_WINDOW) {
                    mark("circuit.window");
                }
                if self.min_throughput == 0 {
                    self.min_throughput = DEFAULT_MIN_THROUGHPUT;
                    mark("circuit.min_throughput");
                }
            }
        }
    }
}

impl Policy {
    /// Clamps every field into its allowed range, in the Go original's
    /// order, appending each changed field to
    /// [`meta.normalization`](crate::Metadata::normalization). Idempotent:
    /// normalizing twice changes nothing more and un-marks nothing.
    ///
    /// Deviations from Go (DESIGN §6.5): a NaN multiplier is treated like 0
    /// (becomes 2), and circuit settings are normalized whenever the circuit
    /// is enabled, whether or not hedging is.
    ///
    /// ```
    /// use recourse::policy::Policy;
    ///
    /// let mut policy = Policy::default_for("svc.Op".into());
    /// policy.retry.max_attempts = 50;
    /// policy.retry.backoff_multiplier = f64::NAN;
    /// assert!(!policy.is_normalized());
    /// policy.normalize();
    /// assert!(policy.is_normalized());
    /// assert_eq!(policy.retry.max_attempts, 10);
    /// assert_eq!(policy.retry.backoff_multiplier, 2.0);
    /// assert_eq!(
    ///     policy.meta.normalization.changed_fields(),
    ///     ["retry.max_attempts", "retry.backoff_multiplier"]
    /// );
    /// ```
    pub fn normalize(&mut self) {
        let mut numbers = Numbers::of(self);
        let normalization = &mut self.meta.normalization;
        numbers.apply(&mut |field| normalization.mark(field));
        numbers.write(self);
    }

    /// Whether [`normalize`](Self::normalize) would leave every field as it
    /// is. Allocation-free; the executor checks every policy a provider
    /// hands it and normalizes a copy when this is false.
    pub fn is_normalized(&self) -> bool {
        // Compare values, not marks: some rule pairs fire without a net
        // change (an initial backoff above 30 s caps `max_backoff` to 30 s,
        // then raises it back to the initial backoff).
        let before = Numbers::of(self);
        let mut after = before;
        after.apply(&mut |_| ());
        after == before
    }

    /// [`normalize`](Self::normalize), by value.
    pub fn normalized(mut self) -> Self {
        self.normalize();
        self
    }
}

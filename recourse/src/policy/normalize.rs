//! Normalization: every floor and ceiling of the Go original, applied in its
//! order, with the list of fields it changed.

use std::fmt;
use std::time::Duration;

use super::Policy;

/// The floors, ceilings and fill-in values normalization applies.
///
/// The `recourse.toml` catalog is checked against the same numbers at
/// compile time, so a value the catalog accepts is never clamped later.
pub mod limits {
    use std::time::Duration;

    /// Attempts used when `max_attempts` is 0.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
    /// Ceiling for `max_attempts`.
    pub const MAX_ATTEMPTS: u32 = 10;
    /// Initial backoff used when it is zero.
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(10);
    /// Floor for a non-zero initial backoff.
    pub const MIN_INITIAL_BACKOFF: Duration = Duration::from_millis(1);
    /// Max backoff used when it is zero.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_millis(250);
    /// Ceiling for `max_backoff`, and for server-provided backoff overrides.
    pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
    /// Multiplier used when it is 0 or NaN.
    pub const DEFAULT_MULTIPLIER: f64 = 2.0;
    /// Floor for the multiplier.
    pub const MIN_MULTIPLIER: f64 = 1.0;
    /// Ceiling for the multiplier.
    pub const MAX_MULTIPLIER: f64 = 10.0;
    /// Floor for a non-zero per-attempt or overall timeout.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(1);
    /// Hedges used when hedging is enabled with `max_hedges` 0.
    pub const DEFAULT_MAX_HEDGES: u32 = 2;
    /// Ceiling for `max_hedges`.
    pub const MAX_HEDGES: u32 = 3;
    /// Hedge delay used when it is zero.
    pub const DEFAULT_HEDGE_DELAY: Duration = Duration::from_millis(200);
    /// Floor for the hedge delay.
    pub const MIN_HEDGE_DELAY: Duration = Duration::from_millis(10);
    /// Breaker threshold used when it is 0.
    pub const DEFAULT_CIRCUIT_THRESHOLD: u32 = 5;
    /// Breaker cooldown used when it is zero.
    pub const DEFAULT_CIRCUIT_COOLDOWN: Duration = Duration::from_secs(10);
    /// Floor for the breaker cooldown.
    pub const MIN_CIRCUIT_COOLDOWN: Duration = Duration::from_millis(100);
}

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

impl Policy {
    /// Clamps every field into its allowed range, in the Go original's
    /// order, appending each changed field to
    /// [`meta.normalization`](super::Metadata::normalization). Idempotent:
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
    /// policy.normalize();
    /// assert_eq!(policy.retry.max_attempts, 10);
    /// assert_eq!(policy.retry.backoff_multiplier, 2.0);
    /// assert_eq!(
    ///     policy.meta.normalization.changed_fields(),
    ///     ["retry.max_attempts", "retry.backoff_multiplier"]
    /// );
    /// ```
    #[allow(
        clippy::many_single_char_names,
        clippy::wildcard_imports,
        reason = "the rules read like the specification's table"
    )]
    pub fn normalize(&mut self) {
        use limits::*;
        let n = &mut self.meta.normalization;
        let r = &mut self.retry;

        if r.max_attempts == 0 {
            r.max_attempts = DEFAULT_MAX_ATTEMPTS;
            n.mark("retry.max_attempts");
        } else if r.max_attempts > MAX_ATTEMPTS {
            r.max_attempts = MAX_ATTEMPTS;
            n.mark("retry.max_attempts");
        }
        if clamp_duration_floor(&mut r.initial_backoff, DEFAULT_INITIAL_BACKOFF, MIN_INITIAL_BACKOFF) {
            n.mark("retry.initial_backoff");
        }
        if r.max_backoff.is_zero() {
            r.max_backoff = DEFAULT_MAX_BACKOFF;
            n.mark("retry.max_backoff");
        }
        if r.max_backoff > MAX_BACKOFF {
            r.max_backoff = MAX_BACKOFF;
            n.mark("retry.max_backoff");
        }
        if r.max_backoff < r.initial_backoff {
            r.max_backoff = r.initial_backoff;
            n.mark("retry.max_backoff");
        }
        let m = r.backoff_multiplier;
        if m == 0.0 || m.is_nan() {
            r.backoff_multiplier = DEFAULT_MULTIPLIER;
            n.mark("retry.backoff_multiplier");
        } else if m < MIN_MULTIPLIER {
            r.backoff_multiplier = MIN_MULTIPLIER;
            n.mark("retry.backoff_multiplier");
        } else if m > MAX_MULTIPLIER {
            r.backoff_multiplier = MAX_MULTIPLIER;
            n.mark("retry.backoff_multiplier");
        }
        if !r.timeout_per_attempt.is_zero() && r.timeout_per_attempt < MIN_TIMEOUT {
            r.timeout_per_attempt = MIN_TIMEOUT;
            n.mark("retry.timeout_per_attempt");
        }
        if !r.overall_timeout.is_zero() && r.overall_timeout < MIN_TIMEOUT {
            r.overall_timeout = MIN_TIMEOUT;
            n.mark("retry.overall_timeout");
        }
        if r.budget.cost == 0 {
            r.budget.cost = 1;
            n.mark("retry.budget.cost");
        }
        let h = &mut self.hedge;
        if h.budget.cost == 0 {
            h.budget.cost = 1;
            n.mark("hedge.budget.cost");
        }
        if h.enabled {
            if h.max_hedges == 0 {
                h.max_hedges = DEFAULT_MAX_HEDGES;
                n.mark("hedge.max_hedges");
            } else if h.max_hedges > MAX_HEDGES {
                h.max_hedges = MAX_HEDGES;
                n.mark("hedge.max_hedges");
            }
            if clamp_duration_floor(&mut h.delay, DEFAULT_HEDGE_DELAY, MIN_HEDGE_DELAY) {
                n.mark("hedge.hedge_delay");
            }
        }
        let c = &mut self.circuit;
        if c.enabled {
            if c.threshold == 0 {
                c.threshold = DEFAULT_CIRCUIT_THRESHOLD;
                n.mark("circuit.threshold");
            }
            if clamp_duration_floor(&mut c.cooldown, DEFAULT_CIRCUIT_COOLDOWN, MIN_CIRCUIT_COOLDOWN) {
                n.mark("circuit.cooldown");
            }
        }
        self.meta.normalized = true;
    }

    /// [`normalize`](Self::normalize), by value.
    pub fn normalized(mut self) -> Self {
        self.normalize();
        self
    }
}

//! The floors, ceilings and fill-in values normalization applies.
//!
//! The `recourse.toml` catalog is checked against the same numbers at
//! compile time, so a value the catalog accepts is never clamped later.

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
/// Failure-rate window used when it is zero.
pub const DEFAULT_CIRCUIT_WINDOW: Duration = Duration::from_secs(10);
/// Floor for the failure-rate window.
pub const MIN_CIRCUIT_WINDOW: Duration = Duration::from_secs(1);
/// Minimum throughput used when it is zero.
pub const DEFAULT_MIN_THROUGHPUT: u32 = 10;

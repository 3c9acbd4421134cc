//! Hedging: extra attempts racing a slow primary.
//!
//! A hedge is a second (third, …) copy of an attempt launched while the
//! first is still running; whichever finishes first wins and the others are
//! dropped. A [`HedgeTrigger`] decides **when** the next hedge of a retry
//! group is launched: [`FixedDelay`] spaces them evenly, [`LatencyTrigger`]
//! launches once the attempt has run longer than a recent latency
//! percentile of its key. The percentiles come from a per-key
//! [`LatencyTracker`], a lock-free ring of recent samples with a histogram
//! beside it so a percentile costs one scan of the buckets (no sort).
//! Triggers are registered by name in a [`Registry`] and named by a policy's
//! `hedge.trigger`.
//!
//! ```
//! use recourse::hedge::{HedgeState, HedgeTrigger, LatencyTracker, Registry, TriggerDecision};
//! use std::time::Duration;
//!
//! let tracker = LatencyTracker::new(128);
//! for ms in 1..=100 {
//!     tracker.record(Duration::from_millis(ms));
//! }
//! let latency = tracker.snapshot();
//!
//! let triggers = Registry::with_builtins();
//! let p90 = triggers.get("p90").unwrap();
//! // 30 ms into the primary is well below the p90 (≈ 90 ms): wait.
//! let state = HedgeState::new(1, 1, Duration::from_millis(30), Duration::ZERO, &latency);
//! assert!(matches!(p90.should_spawn(&state), TriggerDecision::CheckIn(_)));
//! // 120 ms in, the primary is slower than 90 % of recent attempts: hedge.
//! let state = HedgeState::new(1, 1, Duration::from_millis(120), Duration::ZERO, &latency);
//! assert_eq!(p90.should_spawn(&state), TriggerDecision::Spawn);
//! ```

mod registry;
mod tracker;
mod triggers;

use std::sync::Arc;
use std::time::Duration;

pub use registry::{RegisterError, Registry};
pub use tracker::{LatencyTracker, Trackers};
pub use triggers::{FixedDelay, LatencyTrigger, ParsePercentileError, Percentile};

/// How long the executor waits before asking a trigger again when it gave
/// no better hint: the poll interval of the Go original (25 ms).
///
/// [`LatencyTrigger`] answers `CheckIn(POLL_INTERVAL)` while it has no
/// usable percentile (too few samples, or a zero percentile). Built-in
/// triggers never answer `CheckIn(Duration::ZERO)`.
///
/// ```
/// use recourse::hedge::POLL_INTERVAL;
/// use std::time::Duration;
///
/// assert_eq!(POLL_INTERVAL, Duration::from_millis(25));
/// ```
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Latency percentiles of a key's recent attempts.
///
/// Produced by [`LatencyTracker::snapshot`]; all zero when nothing has been
/// recorded. Each percentile is within [`LatencyTracker::RELATIVE_ERROR`]
/// of the exact order statistic of the window (see [`LatencyTracker`]).
///
/// ```
/// use recourse::hedge::{LatencySnapshot, Percentile};
/// use std::time::Duration;
///
/// let snapshot = LatencySnapshot { p50: Duration::from_millis(10), samples: 40, ..LatencySnapshot::default() };
/// assert_eq!(Percentile::P50.of(&snapshot), Duration::from_millis(10));
/// assert_eq!(snapshot.p99, Duration::ZERO);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LatencySnapshot {
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 95th percentile.
    pub p95: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// How many samples the percentiles describe.
    pub samples: u64,
}

/// What a trigger is told when asked whether to launch the next hedge.
///
/// The executor fills it in; triggers tested outside the crate build one
/// with [`HedgeState::new`].
///
/// ```
/// use recourse::hedge::{HedgeState, LatencySnapshot};
/// use std::time::Duration;
///
/// let latency = LatencySnapshot::default();
/// let state = HedgeState::new(1, 2, Duration::from_millis(15), Duration::from_millis(20), &latency);
/// assert_eq!(state.attempts_launched, 1, "the primary alone");
/// assert_eq!(state.max_hedges, 2);
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HedgeState<'a> {
    /// 1 + hedges launched so far in this retry group.
    pub attempts_launched: u32,
    /// The group's maximum number of hedges.
    pub max_hedges: u32,
    /// Time since the group's primary was launched.
    pub elapsed: Duration,
    /// The policy's hedge delay.
    pub hedge_delay: Duration,
    /// The key's recent latencies.
    pub latency: &'a LatencySnapshot,
}

impl<'a> HedgeState<'a> {
    /// A state from its parts, in field order.
    ///
    /// ```
    /// use recourse::hedge::{HedgeState, LatencySnapshot};
    /// use std::time::Duration;
    ///
    /// let latency = LatencySnapshot::default();
    /// let state = HedgeState::new(2, 3, Duration::from_millis(45), Duration::from_millis(20), &latency);
    /// assert_eq!(state.elapsed, Duration::from_millis(45));
    /// assert_eq!(state.hedge_delay, Duration::from_millis(20));
    /// ```
    pub const fn new(
        attempts_launched: u32,
        max_hedges: u32,
        elapsed: Duration,
        hedge_delay: Duration,
        latency: &'a LatencySnapshot,
    ) -> Self {
        Self { attempts_launched, max_hedges, elapsed, hedge_delay, latency }
    }

    /// Whether the group has launched its primary and every hedge it may
    /// (`attempts_launched ≥ 1 + max_hedges`).
    ///
    /// ```
    /// use recourse::hedge::{HedgeState, LatencySnapshot};
    /// use std::time::Duration;
    ///
    /// let latency = LatencySnapshot::default();
    /// assert!(!HedgeState::new(1, 1, Duration::ZERO, Duration::ZERO, &latency).limit_reached());
    /// assert!(HedgeState::new(2, 1, Duration::ZERO, Duration::ZERO, &latency).limit_reached());
    /// ```
    pub const fn limit_reached(&self) -> bool {
        self.attempts_launched >= self.max_hedges.saturating_add(1)
    }
}

/// A trigger's answer.
///
/// ```
/// use recourse::hedge::TriggerDecision;
/// use std::time::Duration;
///
/// let wait = TriggerDecision::CheckIn(Duration::from_millis(5));
/// assert_ne!(wait, TriggerDecision::Spawn);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerDecision {
    /// Launch the next hedge now.
    Spawn,
    /// Ask again after this long.
    CheckIn(Duration),
    /// Launch no more hedges in this group.
    Stop,
}

/// Decides when to launch hedges.
///
/// The executor asks after launching the primary and again whenever the
/// previous answer's check-in time has passed. Each
/// [`Spawn`](TriggerDecision::Spawn) launches one hedge, and the next
/// question comes no sooner than the policy's hedge delay after it (DESIGN
/// §6.12), so a trigger that keeps answering `Spawn` paces its hedges
/// instead of launching them all at once (the Go original bursts). A trigger
/// that wants a longer spacing answers `CheckIn`, as [`FixedDelay`] does.
/// Triggers are called on the executor's hot path: keep them cheap and
/// non-blocking. With panic recovery on, a trigger that panics stops the
/// group's hedging (timeline attribute `trigger_panic`).
///
/// ```
/// use recourse::hedge::{HedgeState, HedgeTrigger, LatencySnapshot, TriggerDecision};
/// use std::time::Duration;
///
/// /// One hedge, exactly 50 ms in.
/// struct AtFifty;
///
/// impl HedgeTrigger for AtFifty {
///     fn should_spawn(&self, state: &HedgeState<'_>) -> TriggerDecision {
///         let at = Duration::from_millis(50);
///         if state.attempts_launched > 1 {
///             TriggerDecision::Stop
///         } else if state.elapsed < at {
///             TriggerDecision::CheckIn(at - state.elapsed)
///         } else {
///             TriggerDecision::Spawn
///         }
///     }
/// }
///
/// let latency = LatencySnapshot::default();
/// let state = HedgeState::new(1, 1, Duration::from_millis(20), Duration::ZERO, &latency);
/// assert_eq!(AtFifty.should_spawn(&state), TriggerDecision::CheckIn(Duration::from_millis(30)));
/// ```
pub trait HedgeTrigger: Send + Sync + 'static {
    /// Whether to launch the next hedge now.
    fn should_spawn(&self, state: &HedgeState<'_>) -> TriggerDecision;

    /// Whether [`HedgeState::latency`] is read. A trigger that never looks
    /// at latencies returns `false`, and the executor then skips computing
    /// the snapshot for it (it is handed an empty one).
    fn uses_latency(&self) -> bool {
        true
    }
}

/// A shared trigger is a trigger.
///
/// ```
/// use recourse::hedge::{FixedDelay, HedgeState, HedgeTrigger, LatencySnapshot, TriggerDecision};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let shared = Arc::new(FixedDelay { delay: Duration::from_millis(10) });
/// let latency = LatencySnapshot::default();
/// let state = HedgeState::new(1, 1, Duration::from_millis(10), Duration::ZERO, &latency);
/// assert_eq!(shared.should_spawn(&state), TriggerDecision::Spawn);
/// ```
impl<T: HedgeTrigger + ?Sized> HedgeTrigger for Arc<T> {
    fn should_spawn(&self, state: &HedgeState<'_>) -> TriggerDecision {
        (**self).should_spawn(state)
    }

    fn uses_latency(&self) -> bool {
        (**self).uses_latency()
    }
}

//! Hedging: extra attempts racing a slow primary.
//!
//! INTERFACE FILE — implementation in progress (see the helper brief).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::policy::PolicyKey;

/// Latency percentiles of a key's recent attempts.
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

/// A trigger's answer.
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
pub trait HedgeTrigger: Send + Sync + 'static {
    /// Whether to launch the next hedge now.
    fn should_spawn(&self, state: &HedgeState<'_>) -> TriggerDecision;
}

/// Recent attempt latencies of one key.
#[derive(Debug, Default)]
pub struct LatencyTracker {
    _private: (),
}

impl LatencyTracker {
    /// Records one attempt's latency.
    pub fn record(&self, latency: Duration) {
        let _ = latency;
    }

    /// The current percentiles.
    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot::default()
    }
}

/// Per-key latency trackers of one executor.
#[derive(Debug, Default)]
pub struct Trackers {
    _private: (),
}

impl Trackers {
    /// The tracker for `key`, created on first use.
    pub fn get_or_create(&self, key: &PolicyKey) -> Arc<LatencyTracker> {
        let _ = key;
        Arc::new(LatencyTracker::default())
    }
}

/// Launches hedge k at k × delay after the group started.
#[derive(Debug, Clone, Copy, Default)]
pub struct FixedDelay {
    /// The spacing; zero uses the policy's hedge delay.
    pub delay: Duration,
}

impl HedgeTrigger for FixedDelay {
    fn should_spawn(&self, state: &HedgeState<'_>) -> TriggerDecision {
        let _ = state;
        TriggerDecision::Stop
    }
}

/// A thread-safe map from a name to a [`HedgeTrigger`].
#[derive(Default)]
pub struct Registry {
    _private: (),
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding `fixed_delay`, `p50`, `p90`, `p95` and `p99`.
    pub fn with_builtins() -> Self {
        Self::new()
    }

    /// Registers `trigger` under `name`.
    pub fn register(&self, name: &str, trigger: impl HedgeTrigger) {
        let _ = (name, trigger);
    }

    /// The trigger registered under `name` (exact match).
    pub fn get(&self, name: &str) -> Option<Arc<dyn HedgeTrigger>> {
        let _ = name;
        None
    }

    /// A counter that changes whenever a trigger is registered.
    pub fn generation(&self) -> u64 {
        0
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

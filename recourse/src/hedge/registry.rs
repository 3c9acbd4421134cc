//! The trigger registry.

use std::fmt;
use std::sync::Arc;

use super::{FixedDelay, HedgeTrigger, LatencyTrigger, Percentile};

/// A thread-safe map from a name to a [`HedgeTrigger`].
///
/// A policy's `hedge.trigger` names one (an empty name means fixed delay).
/// Names are matched exactly, **not** trimmed or case-folded (as in Go);
/// registering an existing name replaces it. An empty name is ignored by
/// [`register`](Self::register) (Go panics; a registry never panics here)
/// and refused by [`try_register`](Self::try_register). Call sites cache
/// their lookups and re-resolve when [`generation`](Self::generation)
/// changes.
///
/// ```
/// use recourse::hedge::{FixedDelay, Registry};
/// use std::time::Duration;
///
/// let triggers = Registry::with_builtins();
/// triggers.register("slow-path", FixedDelay::new(Duration::from_millis(300)));
/// assert!(triggers.get("slow-path").is_some());
/// assert!(triggers.get("p99").is_some());
/// assert!(triggers.get(" p99").is_none(), "names are exact");
/// ```
#[derive(Default)]
pub struct Registry {
    entries: crate::named::Named<dyn HedgeTrigger>,
}

/// Why a trigger could not be registered.
///
/// ```
/// use recourse::hedge::{FixedDelay, RegisterError, Registry};
/// use std::sync::Arc;
///
/// let error = Registry::new().try_register("", Arc::new(FixedDelay::default())).unwrap_err();
/// assert_eq!(error, RegisterError::EmptyName);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegisterError {
    /// The name is empty.
    #[error("hedge trigger name cannot be empty")]
    EmptyName,
}

impl Registry {
    /// An empty registry.
    ///
    /// ```
    /// use recourse::hedge::Registry;
    ///
    /// assert!(Registry::new().names().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry holding `fixed_delay`, `p50`, `p90`, `p95` and `p99`.
    ///
    /// `fixed_delay` is a [`FixedDelay`] with no delay of its own (it spaces
    /// hedges by the policy's hedge delay); the others are
    /// [`LatencyTrigger`]s on that percentile with the default
    /// `min_samples` (20).
    ///
    /// ```
    /// use recourse::hedge::Registry;
    ///
    /// assert_eq!(Registry::with_builtins().names(), ["fixed_delay", "p50", "p90", "p95", "p99"]);
    /// ```
    pub fn with_builtins() -> Self {
        let registry = Self::new();
        registry.register("fixed_delay", FixedDelay::default());
        for percentile in Percentile::ALL {
            registry.register(percentile.as_str(), LatencyTrigger::new(percentile));
        }
        registry
    }

    /// Registers `trigger` under `name`, replacing any earlier one. An empty
    /// name is ignored (use [`try_register`](Self::try_register) to be told).
    ///
    /// ```
    /// use recourse::hedge::{LatencyTrigger, Percentile, Registry};
    ///
    /// let triggers = Registry::new();
    /// triggers.register("tail", LatencyTrigger::new(Percentile::P99).with_min_samples(100));
    /// assert!(triggers.get("tail").is_some());
    /// ```
    pub fn register(&self, name: &str, trigger: impl HedgeTrigger) {
        let _ = self.try_register(name, Arc::new(trigger));
    }

    /// Registers a shared trigger under `name`, replacing any earlier one.
    ///
    /// ```
    /// use recourse::hedge::{FixedDelay, HedgeTrigger, Registry};
    /// use std::sync::Arc;
    ///
    /// let triggers = Registry::new();
    /// let shared: Arc<dyn HedgeTrigger> = Arc::new(FixedDelay::default());
    /// triggers.try_register("a", Arc::clone(&shared)).unwrap();
    /// triggers.try_register("b", shared).unwrap();
    /// assert_eq!(triggers.names(), ["a", "b"]);
    /// ```
    pub fn try_register(&self, name: &str, trigger: Arc<dyn HedgeTrigger>) -> Result<(), RegisterError> {
        if name.is_empty() {
            return Err(RegisterError::EmptyName);
        }
        self.entries.insert(name, trigger);
        Ok(())
    }

    /// The trigger registered under `name` (exact match).
    ///
    /// ```
    /// use recourse::hedge::Registry;
    ///
    /// let triggers = Registry::with_builtins();
    /// assert!(triggers.get("p95").is_some());
    /// assert!(triggers.get("P95").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<Arc<dyn HedgeTrigger>> {
        self.entries.get(name)
    }

    /// A counter that changes whenever a trigger is registered.
    ///
    /// ```
    /// use recourse::hedge::{FixedDelay, Registry};
    ///
    /// let triggers = Registry::new();
    /// let before = triggers.generation();
    /// triggers.register("x", FixedDelay::default());
    /// assert_ne!(triggers.generation(), before);
    /// ```
    #[inline]
    pub fn generation(&self) -> u64 {
        self.entries.generation()
    }

    /// The registered names, sorted.
    ///
    /// ```
    /// use recourse::hedge::{FixedDelay, Registry};
    ///
    /// let triggers = Registry::new();
    /// triggers.register("b", FixedDelay::default());
    /// triggers.register("a", FixedDelay::default());
    /// assert_eq!(triggers.names(), ["a", "b"]);
    /// ```
    pub fn names(&self) -> Vec<String> {
        self.entries.names()
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("names", &self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hedge::{HedgeState, LatencySnapshot, TriggerDecision};
    use std::time::Duration;

    fn decide(registry: &Registry, name: &str, elapsed: Duration, latency: &LatencySnapshot) -> TriggerDecision {
        let trigger = registry.get(name).unwrap();
        trigger.should_spawn(&HedgeState::new(1, 1, elapsed, Duration::from_millis(20), latency))
    }

    #[test]
    fn builtins_are_registered_and_behave() {
        let registry = Registry::with_builtins();
        assert_eq!(registry.names(), ["fixed_delay", "p50", "p90", "p95", "p99"]);
        let ms = Duration::from_millis;
        let latency = LatencySnapshot { p50: ms(10), p90: ms(50), p95: ms(70), p99: ms(100), samples: 20 };
        // fixed_delay follows the policy's 20 ms.
        assert_eq!(decide(&registry, "fixed_delay", ms(5), &latency), TriggerDecision::CheckIn(ms(15)));
        assert_eq!(decide(&registry, "fixed_delay", ms(20), &latency), TriggerDecision::Spawn);
        for (name, threshold) in [("p50", ms(10)), ("p90", ms(50)), ("p95", ms(70)), ("p99", ms(100))] {
            assert_eq!(decide(&registry, name, threshold + ms(1), &latency), TriggerDecision::Spawn, "{name}");
            assert_eq!(
                decide(&registry, name, threshold.saturating_sub(ms(1)), &latency),
                TriggerDecision::CheckIn(ms(1)),
                "{name}"
            );
        }
        // The built-in latency triggers wait for 20 samples.
        let thin = LatencySnapshot { samples: 19, ..latency };
        assert_eq!(decide(&registry, "p50", ms(500), &thin), TriggerDecision::CheckIn(crate::hedge::POLL_INTERVAL));
    }

    #[test]
    fn register_replaces_and_bumps_the_generation() {
        let registry = Registry::with_builtins();
        let before = registry.generation();
        registry.register("p50", FixedDelay::new(Duration::from_secs(1)));
        assert!(registry.generation() > before);
        let latency = LatencySnapshot::default();
        let state = HedgeState::new(1, 1, Duration::ZERO, Duration::ZERO, &latency);
        assert_eq!(
            registry.get("p50").unwrap().should_spawn(&state),
            TriggerDecision::CheckIn(Duration::from_secs(1)),
            "the replacement answers"
        );
        assert_eq!(registry.names().len(), 5);
    }

    #[test]
    fn empty_names_are_ignored_and_names_are_exact() {
        let registry = Registry::new();
        let before = registry.generation();
        registry.register("", FixedDelay::default());
        assert_eq!(registry.generation(), before, "nothing registered");
        assert!(registry.names().is_empty());
        assert_eq!(registry.try_register("", Arc::new(FixedDelay::default())), Err(RegisterError::EmptyName));
        registry.register(" padded ", FixedDelay::default());
        assert!(registry.get(" padded ").is_some());
        assert!(registry.get("padded").is_none(), "not trimmed");
        assert!(registry.get("").is_none());
        assert!(format!("{registry:?}").contains(" padded "));
    }

    #[test]
    fn shared_registry_across_threads() {
        let registry = Arc::new(Registry::with_builtins());
        std::thread::scope(|scope| {
            for i in 0..4 {
                let registry = &registry;
                scope.spawn(move || {
                    for j in 0..100 {
                        registry.register(&format!("t{i}-{j}"), FixedDelay::default());
                        assert!(registry.get("p99").is_some());
                    }
                });
            }
        });
        assert_eq!(registry.names().len(), 5 + 400);
        assert_eq!(registry.generation(), 5 + 400);
    }
}

//! The per-key breaker registry.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::{Breaker, breaker_for};
use crate::policy::{CircuitPolicy, PolicyKey};

/// Per-key breakers of one executor.
///
/// A breaker is created from a key's circuit policy the first time the key
/// is called ([`get_or_create`](Self::get_or_create)), and that first
/// configuration wins: later policy changes for the key do not rebuild or
/// reconfigure it (its counts and state would be lost), as in the Go
/// original. [`insert`](Self::insert) puts a breaker of your own in front of
/// a key, or replaces one.
///
/// Lookups take a read lock; the executor resolves a key's breaker once per
/// call site and keeps the `Arc`, so calls themselves take no lock. It
/// re-resolves when [`generation`](Self::generation) changes (every
/// creation, insertion and removal bumps it), which is how an inserted
/// breaker reaches call sites that already hold another one.
///
/// ```
/// use recourse::circuit::{Registry, State};
/// use recourse::policy::Policy;
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let registry = Registry::new();
/// let policy = Policy::builder("inventory.Reserve").circuit(5, Duration::from_secs(10)).build();
/// let breaker = registry.get_or_create(&policy.key, &policy.circuit).unwrap();
/// assert_eq!(breaker.state(), State::Closed);
///
/// // The same breaker for every later call, whatever the policy says then.
/// let changed = Policy::builder("inventory.Reserve").circuit(1, Duration::from_secs(1)).build();
/// let again = registry.get_or_create(&changed.key, &changed.circuit).unwrap();
/// assert!(Arc::ptr_eq(&breaker, &again));
/// ```
#[derive(Default)]
pub struct Registry {
    breakers: RwLock<HashMap<PolicyKey, Arc<dyn Breaker>>>,
    generation: AtomicU64,
}

impl Registry {
    /// An empty registry.
    ///
    /// ```
    /// use recourse::circuit::Registry;
    ///
    /// let registry = Registry::new();
    /// assert!(registry.is_empty());
    /// assert_eq!(registry.generation(), 0);
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// The breaker for `key`, created from `policy` on first use (the first
    /// configuration seen for a key wins); `None` when the policy's circuit
    /// is disabled.
    ///
    /// The breaker is [`breaker_for`]`(policy)`: a
    /// [`FailureRate`](super::FailureRate) breaker when the policy's
    /// `failure_ratio` is above zero, a
    /// [`ConsecutiveFailures`](super::ConsecutiveFailures) one otherwise. A
    /// disabled policy returns `None` even when the key has a breaker (the
    /// policy turned circuit breaking off for it); the breaker is kept.
    ///
    /// ```
    /// use recourse::circuit::Registry;
    /// use recourse::policy::Policy;
    ///
    /// let registry = Registry::new();
    /// let off = Policy::builder("svc.Op").build();
    /// assert!(registry.get_or_create(&off.key, &off.circuit).is_none());
    /// assert!(registry.get(&off.key).is_none(), "nothing was created");
    /// ```
    pub fn get_or_create(&self, key: &PolicyKey, policy: &CircuitPolicy) -> Option<Arc<dyn Breaker>> {
        if !policy.enabled {
            return None;
        }
        if let Some(found) = self.get(key) {
            return Some(found);
        }
        let mut breakers = self.breakers.write().unwrap_or_else(PoisonError::into_inner);
        // Checked again under the write lock: another caller may have
        // created it meanwhile, and the first one wins.
        if let Some(found) = breakers.get(key) {
            return Some(Arc::clone(found));
        }
        let breaker = breaker_for(policy)?;
        breakers.insert(key.clone(), Arc::clone(&breaker));
        drop(breakers);
        self.generation.fetch_add(1, Ordering::Release);
        Some(breaker)
    }

    /// The breaker for `key`, if one exists.
    ///
    /// ```
    /// use recourse::circuit::{ConsecutiveFailures, Registry};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let registry = Registry::new();
    /// assert!(registry.get(&"svc.Op".into()).is_none());
    /// registry.insert("svc.Op", Arc::new(ConsecutiveFailures::new(3, Duration::from_secs(1))));
    /// assert!(registry.get(&"svc.Op".into()).is_some());
    /// ```
    pub fn get(&self, key: &PolicyKey) -> Option<Arc<dyn Breaker>> {
        self.breakers.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// Puts `breaker` in front of `key` (manual control, a breaker of your
    /// own, or different settings than the policy's), replacing and
    /// returning the key's previous breaker. Later
    /// [`get_or_create`](Self::get_or_create) calls return it whatever the
    /// policy says, as long as the policy enables circuit breaking.
    ///
    /// ```
    /// use recourse::circuit::{Breaker, ConsecutiveFailures, Registry, State};
    /// use recourse::policy::Policy;
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let registry = Registry::new();
    /// let mine = Arc::new(ConsecutiveFailures::new(1, Duration::from_secs(60)));
    /// assert!(registry.insert("payments.Charge", mine.clone()).is_none());
    ///
    /// let policy = Policy::builder("payments.Charge").circuit(5, Duration::from_secs(10)).build();
    /// let breaker = registry.get_or_create(&policy.key, &policy.circuit).unwrap();
    /// mine.record_failure(); // threshold 1: ours, not the policy's 5
    /// assert_eq!(breaker.state(), State::Open);
    /// ```
    pub fn insert(&self, key: impl Into<PolicyKey>, breaker: Arc<dyn Breaker>) -> Option<Arc<dyn Breaker>> {
        let previous = self.breakers.write().unwrap_or_else(PoisonError::into_inner).insert(key.into(), breaker);
        self.generation.fetch_add(1, Ordering::Release);
        previous
    }

    /// Removes and returns the breaker for `key`; the next
    /// [`get_or_create`](Self::get_or_create) builds a fresh one from the
    /// policy it is given.
    ///
    /// ```
    /// use recourse::circuit::Registry;
    /// use recourse::policy::Policy;
    /// use std::time::Duration;
    ///
    /// let registry = Registry::new();
    /// let policy = Policy::builder("svc.Op").circuit(5, Duration::from_secs(10)).build();
    /// registry.get_or_create(&policy.key, &policy.circuit);
    /// assert!(registry.remove(&policy.key).is_some());
    /// assert!(registry.is_empty());
    /// ```
    pub fn remove(&self, key: &PolicyKey) -> Option<Arc<dyn Breaker>> {
        let removed = self.breakers.write().unwrap_or_else(PoisonError::into_inner).remove(key);
        if removed.is_some() {
            self.generation.fetch_add(1, Ordering::Release);
        }
        removed
    }

    /// A counter that changes whenever a breaker is created, inserted or
    /// removed (not on lookups that find one).
    ///
    /// ```
    /// use recourse::circuit::Registry;
    /// use recourse::policy::Policy;
    /// use std::time::Duration;
    ///
    /// let registry = Registry::new();
    /// let policy = Policy::builder("svc.Op").circuit(5, Duration::from_secs(10)).build();
    /// let before = registry.generation();
    /// registry.get_or_create(&policy.key, &policy.circuit);
    /// let created = registry.generation();
    /// assert_ne!(before, created);
    /// registry.get_or_create(&policy.key, &policy.circuit);
    /// assert_eq!(registry.generation(), created);
    /// ```
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// How many keys have a breaker.
    ///
    /// ```
    /// use recourse::circuit::{ConsecutiveFailures, Registry};
    /// use std::sync::Arc;
    /// use std::time::Duration;
    ///
    /// let registry = Registry::new();
    /// registry.insert("a.Op", Arc::new(ConsecutiveFailures::new(3, Duration::from_secs(1))));
    /// registry.insert("b.Op", Arc::new(ConsecutiveFailures::new(3, Duration::from_secs(1))));
    /// assert_eq!(registry.len(), 2);
    /// ```
    pub fn len(&self) -> usize {
        self.breakers.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no key has a breaker.
    ///
    /// ```
    /// assert!(recourse::circuit::Registry::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Debug for Registry {
    /// Each key with its breaker's state, in key order.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let breakers = self.breakers.read().unwrap_or_else(PoisonError::into_inner);
        let mut states: Vec<_> = breakers.iter().map(|(key, breaker)| (key.clone(), breaker.state())).collect();
        drop(breakers);
        states.sort_by(|a, b| a.0.cmp(&b.0));
        f.debug_struct("Registry")
            .field("breakers", &DebugStates(&states))
            .field("generation", &self.generation())
            .finish()
    }
}

struct DebugStates<'a>(&'a [(PolicyKey, super::State)]);

impl fmt::Debug for DebugStates<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.0.iter().map(|(k, s)| (k, s))).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::{Decision, State, Transition, reason};
    use crate::policy::Policy;
    use std::time::Duration;

    fn consecutive(threshold: u32) -> CircuitPolicy {
        Policy::builder("svc.Op").circuit(threshold, Duration::from_secs(10)).build().circuit
    }

    fn failure_rate(min_throughput: u32) -> CircuitPolicy {
        Policy::builder("svc.Op")
            .circuit_failure_rate(0.5, Duration::from_secs(10), min_throughput, Duration::from_secs(10))
            .build()
            .circuit
    }

    fn opens_after(breaker: &dyn Breaker) -> usize {
        (1..=100).find(|_| breaker.record_failure().is_some()).unwrap_or(0)
    }

    #[test]
    fn disabled_policies_get_no_breaker() {
        let registry = Registry::new();
        let key = PolicyKey::parse("svc.Op");
        assert!(registry.get_or_create(&key, &Policy::default_for(key.clone()).circuit).is_none());
        assert!(registry.is_empty());
        assert_eq!(registry.generation(), 0);
    }

    #[test]
    fn the_first_configuration_wins() {
        let registry = Registry::new();
        let key = PolicyKey::parse("svc.Op");
        let first = registry.get_or_create(&key, &consecutive(3)).unwrap();
        let generation = registry.generation();
        let second = registry.get_or_create(&key, &consecutive(7)).unwrap();
        assert!(Arc::ptr_eq(&first, &second));
        assert!(Arc::ptr_eq(&first, &registry.get(&key).unwrap()));
        assert_eq!(registry.generation(), generation, "a hit bumps nothing");
        assert!(registry.get_or_create(&key, &failure_rate(10)).is_some_and(|b| Arc::ptr_eq(&b, &first)));
        assert_eq!(opens_after(&*first), 3);

        // Other keys get their own.
        let other = registry.get_or_create(&"svc.Other".into(), &consecutive(2)).unwrap();
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(other.state(), State::Closed);
        assert_eq!(registry.len(), 2);
    }

    #[test]
    fn the_failure_ratio_chooses_the_breaker() {
        let registry = Registry::new();
        let rate = registry.get_or_create(&"a.Rate".into(), &failure_rate(4)).unwrap();
        assert_eq!(opens_after(&*rate), 4, "failure rate: waits for the minimum throughput");
        let mut hostile = consecutive(2);
        hostile.failure_ratio = f64::NAN; // un-normalized: NaN is not above zero
        let count = registry.get_or_create(&"a.Count".into(), &hostile).unwrap();
        assert_eq!(opens_after(&*count), 2, "consecutive");
    }

    #[test]
    fn inserted_breakers_take_over() {
        struct AlwaysOpen;
        impl Breaker for AlwaysOpen {
            fn allow(&self) -> Decision {
                Decision::deny(State::Open, reason::CIRCUIT_OPEN)
            }
            fn record_success(&self) -> Option<Transition> {
                None
            }
            fn record_failure(&self) -> Option<Transition> {
                None
            }
            fn release_probe(&self) {}
            fn state(&self) -> State {
                State::Open
            }
        }

        let registry = Registry::new();
        let key = PolicyKey::parse("svc.Op");
        let created = registry.get_or_create(&key, &consecutive(3)).unwrap();
        let generation = registry.generation();
        let previous = registry.insert(key.clone(), Arc::new(AlwaysOpen)).unwrap();
        assert!(Arc::ptr_eq(&previous, &created));
        assert_ne!(registry.generation(), generation, "call sites re-resolve");
        let now = registry.get_or_create(&key, &consecutive(3)).unwrap();
        assert!(!now.allow().allowed);
        assert!(registry.get_or_create(&key, &Policy::default_for(key.clone()).circuit).is_none(), "disabled");

        let generation = registry.generation();
        assert!(registry.remove(&key).is_some());
        assert!(registry.remove(&key).is_none());
        assert_eq!(registry.generation(), generation + 1, "only a removal that removed bumps");
        assert!(registry.get_or_create(&key, &consecutive(3)).unwrap().allow().allowed, "fresh from the policy");
    }

    #[test]
    fn concurrent_creation_yields_one_breaker() {
        let registry = Registry::new();
        let key = PolicyKey::parse("svc.Op");
        let breakers: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..8).map(|_| scope.spawn(|| registry.get_or_create(&key, &consecutive(3)).unwrap())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(breakers.iter().all(|b| Arc::ptr_eq(b, &breakers[0])));
        assert_eq!(registry.generation(), 1);
    }

    #[test]
    fn debug_lists_keys_and_states() {
        let registry = Registry::new();
        registry.get_or_create(&"b.Op".into(), &consecutive(1)).unwrap().record_failure();
        registry.get_or_create(&"a.Op".into(), &consecutive(1));
        let text = format!("{registry:?}");
        assert!(text.contains("a.Op") && text.contains("Closed") && text.contains("Open"), "{text}");
        assert!(text.find("a.Op") < text.find("b.Op"), "{text}");
    }
}

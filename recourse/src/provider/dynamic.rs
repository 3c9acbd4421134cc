//! Policies that change at run time, read without a lock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;

use super::{PolicyProvider, ProviderError, StaticProvider};
use crate::policy::{Policy, PolicyKey};

/// A set of policies that can be replaced while calls are running.
///
/// Reads are lock-free (an `ArcSwap` load); a change copies the map and
/// swaps it in, then bumps [`generation`](PolicyProvider::generation) so
/// every `#[recourse]` call site re-resolves on its next call. Use it for
/// configuration reloads and tests; a remote provider builds on it.
///
/// ```
/// use recourse::policy::Policy;
/// use recourse::provider::{DynamicProvider, PolicyProvider};
///
/// let provider = DynamicProvider::new();
/// assert!(provider.policy(&"svc.Op".into()).unwrap().is_none());
/// provider.set(Policy::builder("svc.Op").max_attempts(7).build());
/// assert_eq!(provider.policy(&"svc.Op".into()).unwrap().unwrap().retry.max_attempts, 7);
/// assert_eq!(provider.generation(), 1);
/// ```
pub struct DynamicProvider {
    current: ArcSwap<StaticProvider>,
    generation: AtomicU64,
}

impl DynamicProvider {
    /// An empty provider (every key "not configured here").
    pub fn new() -> Self {
        Self::from_static(StaticProvider::new())
    }

    /// A provider starting from `policies`.
    pub fn from_static(policies: StaticProvider) -> Self {
        Self { current: ArcSwap::from_pointee(policies), generation: AtomicU64::new(0) }
    }

    /// Adds or replaces the policy for its key.
    pub fn set(&self, policy: Policy) {
        let policy = Arc::new(super::static_provider::prepare(policy));
        self.update(|policies| policies.insert_shared(Arc::clone(&policy)));
    }

    /// Removes the policy for `key` (the key falls back to the call site's
    /// catalog policy or the default).
    pub fn remove(&self, key: &PolicyKey) {
        self.update(|policies| policies.remove(key));
    }

    /// Replaces every policy at once.
    pub fn replace(&self, policies: StaticProvider) {
        self.current.store(Arc::new(policies));
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn update(&self, change: impl Fn(&mut StaticProvider)) {
        self.current.rcu(|current| {
            let mut next = StaticProvider::clone(current);
            change(&mut next);
            next
        });
        self.generation.fetch_add(1, Ordering::Release);
    }
}

impl Default for DynamicProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl PolicyProvider for DynamicProvider {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        self.current.load().policy(key)
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

impl fmt::Debug for DynamicProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamicProvider").field("generation", &self.generation()).finish_non_exhaustive()
    }
}

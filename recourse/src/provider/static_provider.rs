//! A fixed map of policies.

use std::collections::HashMap;
use std::sync::Arc;

use super::{PolicyProvider, ProviderError};
use crate::policy::{Policy, PolicyKey, PolicySource};

/// Policies held in memory, fixed at construction.
///
/// Each policy is stored under its own key, normalized once on insertion
/// (source set to `static` unless it already names one). Unknown keys get
/// the optional default policy, else `None` (the executor then uses the
/// call site's catalog policy or [`Policy::default_for`]).
///
/// ```
/// use recourse::policy::Policy;
/// use recourse::provider::{PolicyProvider, StaticProvider};
///
/// let provider = StaticProvider::new().with(Policy::builder("svc.Op").max_attempts(5).build());
/// let policy = provider.policy(&"svc.Op".into()).unwrap().unwrap();
/// assert_eq!(policy.retry.max_attempts, 5);
/// assert!(provider.policy(&"svc.Other".into()).unwrap().is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct StaticProvider {
    policies: HashMap<PolicyKey, Arc<Policy>>,
    default: Option<Arc<Policy>>,
}

impl StaticProvider {
    /// An empty provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) the policy for its key.
    pub fn with(mut self, policy: Policy) -> Self {
        self.insert(policy);
        self
    }

    /// Adds (or replaces) the policy for its key.
    pub fn insert(&mut self, policy: Policy) {
        self.insert_shared(Arc::new(prepare(policy)));
    }

    /// Inserts a policy already [`prepare`]d.
    pub(crate) fn insert_shared(&mut self, policy: Arc<Policy>) {
        self.policies.insert(policy.key.clone(), policy);
    }

    /// Removes the policy for `key`.
    pub fn remove(&mut self, key: &PolicyKey) {
        self.policies.remove(key);
    }

    /// The policy for keys that have none of their own (its key is replaced
    /// by the call's key in timelines).
    pub fn with_default(mut self, policy: Policy) -> Self {
        self.default = Some(Arc::new(prepare(policy)));
        self
    }

    /// Whether no policy and no default is held.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty() && self.default.is_none()
    }
}

/// Marks a policy `static` (unless it names a source) and normalizes it.
pub(crate) fn prepare(mut policy: Policy) -> Policy {
    if policy.meta.source == PolicySource::Unknown {
        policy.meta.source = PolicySource::Static;
    }
    policy.normalized()
}

impl PolicyProvider for StaticProvider {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        Ok(self.policies.get(key).or(self.default.as_ref()).cloned())
    }
}

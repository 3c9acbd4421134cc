//! Policies compiled from `recourse.toml`: the constant data `#[recourse]`
//! and `key!` embed in a call site.

use std::sync::Arc;

use crate::budget::{Budget, TokenBucket, Unlimited};
use crate::policy::spec::{BudgetDecl, PolicySpec};
use crate::policy::{Policy, PolicyKey, PolicySource};

/// A policy from `recourse.toml`, checked at compile time and embedded in
/// the call site as constant data, with the declarations of the budgets it
/// names (created on first use unless registered in code).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    pub spec: PolicySpec<&'static str>,
    pub budgets: &'static [(&'static str, BudgetDecl)],
}

impl CatalogEntry {
    /// The policy it describes for `key`, normalized, source `catalog`.
    pub fn to_policy(&self, key: PolicyKey) -> Policy {
        self.spec.to_policy(key, PolicySource::Catalog)
    }
}

/// The budget a catalog declaration describes; `None` for one registered
/// in code (`kind = "custom"`).
pub(crate) fn declared_budget(decl: &BudgetDecl) -> Option<Arc<dyn Budget>> {
    match *decl {
        BudgetDecl::Unlimited => Some(Arc::new(Unlimited)),
        BudgetDecl::TokenBucket { capacity, refill_per_sec } => {
            Some(Arc::new(TokenBucket::new(u64::from(capacity), refill_per_sec)))
        }
        BudgetDecl::Custom => None,
    }
}

/// A crate's policy catalog (`recourse.toml`), checked at compile time and
/// embedded by [`recourse::catalog!()`](crate::catalog!).
///
/// Hand it to [`ExecutorBuilder::catalog`](super::ExecutorBuilder::catalog):
/// its policies become the executor's base layer, and
/// [`try_build`](super::ExecutorBuilder::try_build) names every name it
/// declares that the builder did not register.
#[derive(Debug)]
pub struct Catalog {
    path: &'static str,
    policies: &'static [(PolicyKey, CatalogEntry)],
    classifiers: &'static [&'static str],
    custom_budgets: &'static [&'static str],
    triggers: &'static [&'static str],
}

impl Catalog {
    #[doc(hidden)]
    pub const fn new(
        path: &'static str,
        policies: &'static [(PolicyKey, CatalogEntry)],
        classifiers: &'static [&'static str],
        custom_budgets: &'static [&'static str],
        triggers: &'static [&'static str],
    ) -> Self {
        Self { path, policies, classifiers, custom_budgets, triggers }
    }

    /// The catalog file, as the build found it.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The keys it declares a policy for.
    pub fn keys(&self) -> impl Iterator<Item = &PolicyKey> {
        self.policies.iter().map(|(key, _)| key)
    }

    /// Whether it declares a policy for `key`.
    pub fn declares(&self, key: &PolicyKey) -> bool {
        self.policies.iter().any(|(k, _)| k == key)
    }

    /// The policy it declares for `key`, normalized, source `catalog`.
    pub fn policy(&self, key: &PolicyKey) -> Option<Policy> {
        self.policies.iter().find(|(k, _)| k == key).map(|(key, spec)| spec.to_policy(key.clone()))
    }

    /// Every policy it declares, normalized, source `catalog`.
    pub fn policies(&self) -> impl Iterator<Item = Policy> {
        self.policies.iter().map(|(key, spec)| spec.to_policy(key.clone()))
    }

    /// Classifiers it declares (`[classifiers] names`), registered in code.
    pub fn classifiers(&self) -> &'static [&'static str] {
        self.classifiers
    }

    /// Budgets it declares with `kind = "custom"`, registered in code.
    pub fn custom_budgets(&self) -> &'static [&'static str] {
        self.custom_budgets
    }

    /// Hedge triggers it declares (`[triggers] names`), registered in code.
    pub fn triggers(&self) -> &'static [&'static str] {
        self.triggers
    }
}

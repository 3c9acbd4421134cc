//! Policies compiled from `recourse.toml`: the constant data `#[recourse]`
//! and `key!` embed in a call site.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::budget::{Budget, TokenBucket, Unlimited};
use crate::policy::{BudgetRef, Jitter, Policy, PolicyKey, PolicySource};

/// A policy from `recourse.toml`, checked at compile time and embedded in
/// the call site as constant data. Absent fields keep the default policy's
/// values.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct CatalogSpec {
    pub id: Option<&'static str>,
    pub max_attempts: Option<u32>,
    pub initial_backoff: Option<Duration>,
    pub max_backoff: Option<Duration>,
    pub backoff_multiplier: Option<f64>,
    pub jitter: Option<Jitter>,
    pub timeout_per_attempt: Option<Duration>,
    pub overall_timeout: Option<Duration>,
    pub classifier: Option<&'static str>,
    pub budget: Option<(&'static str, u32)>,
    pub hedge: Option<HedgeSpec>,
    pub circuit: Option<CircuitSpec>,
    /// `[budgets.<name>]` declarations for the budgets this policy names,
    /// created on first use unless registered in code.
    pub budgets: &'static [(&'static str, BudgetDecl)],
}

/// A `[budgets.<name>]` declaration from the catalog.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub enum BudgetDecl {
    Unlimited,
    TokenBucket { capacity: u64, refill_per_sec: f64 },
}

impl BudgetDecl {
    pub(crate) fn build(&self) -> Arc<dyn Budget> {
        match *self {
            Self::Unlimited => Arc::new(Unlimited),
            Self::TokenBucket { capacity, refill_per_sec } => Arc::new(TokenBucket::new(capacity, refill_per_sec)),
        }
    }
}

/// A catalog policy's `.hedge` table (its presence enables hedging).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct HedgeSpec {
    pub enabled: bool,
    pub max_hedges: Option<u32>,
    pub delay: Option<Duration>,
    pub trigger: Option<&'static str>,
    pub budget: Option<(&'static str, u32)>,
    pub cancel_on_first_terminal: Option<bool>,
}

/// A catalog policy's `.circuit` table (its presence enables the breaker).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct CircuitSpec {
    pub enabled: bool,
    pub threshold: Option<u32>,
    pub cooldown: Option<Duration>,
    pub failure_ratio: Option<f64>,
    pub window: Option<Duration>,
    pub min_throughput: Option<u32>,
}

impl CatalogSpec {
    /// Every field absent: the default policy.
    pub const EMPTY: Self = Self {
        id: None,
        max_attempts: None,
        initial_backoff: None,
        max_backoff: None,
        backoff_multiplier: None,
        jitter: None,
        timeout_per_attempt: None,
        overall_timeout: None,
        classifier: None,
        budget: None,
        hedge: None,
        circuit: None,
        budgets: &[],
    };

    /// The policy this spec describes for `key`, normalized, source
    /// `catalog`.
    pub fn to_policy(&self, key: PolicyKey) -> Policy {
        let mut p = Policy::default_for(key);
        p.meta.source = PolicySource::Catalog;
        p.id = self.id.map(Arc::from);
        let r = &mut p.retry;
        set(&mut r.max_attempts, self.max_attempts);
        set(&mut r.initial_backoff, self.initial_backoff);
        set(&mut r.max_backoff, self.max_backoff);
        set(&mut r.backoff_multiplier, self.backoff_multiplier);
        set(&mut r.jitter, self.jitter);
        set(&mut r.timeout_per_attempt, self.timeout_per_attempt);
        set(&mut r.overall_timeout, self.overall_timeout);
        set(&mut r.classifier, self.classifier.map(Cow::Borrowed));
        set(&mut r.budget, self.budget.map(|(name, cost)| BudgetRef { name: Cow::Borrowed(name), cost }));
        if let Some(h) = &self.hedge {
            let hedge = &mut p.hedge;
            hedge.enabled = h.enabled;
            set(&mut hedge.max_hedges, h.max_hedges);
            set(&mut hedge.delay, h.delay);
            set(&mut hedge.trigger, h.trigger.map(Cow::Borrowed));
            set(&mut hedge.budget, h.budget.map(|(name, cost)| BudgetRef { name: Cow::Borrowed(name), cost }));
            set(&mut hedge.cancel_on_first_terminal, h.cancel_on_first_terminal);
        }
        if let Some(c) = &self.circuit {
            p.circuit.enabled = c.enabled;
            set(&mut p.circuit.threshold, c.threshold);
            set(&mut p.circuit.cooldown, c.cooldown);
            set(&mut p.circuit.failure_ratio, c.failure_ratio);
            set(&mut p.circuit.window, c.window);
            set(&mut p.circuit.min_throughput, c.min_throughput);
        }
        p.normalized()
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
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
    policies: &'static [(PolicyKey, CatalogSpec)],
    classifiers: &'static [&'static str],
    custom_budgets: &'static [&'static str],
    triggers: &'static [&'static str],
}

impl Catalog {
    #[doc(hidden)]
    pub const fn new(
        path: &'static str,
        policies: &'static [(PolicyKey, CatalogSpec)],
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

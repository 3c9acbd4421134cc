//! Call sites: what `#[recourse]` compiles into every annotated function.

use std::borrow::Cow;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::call::{Call, First, Res, Resolved, Site, Source, drive};
use super::{Executor, Inner};
use crate::budget::{Budget, TokenBucket, Unlimited};
use crate::classify::Classify;
use crate::error::Error;
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

struct Cached {
    executor: u64,
    generation: u64,
    resolved: Arc<Resolved>,
}

/// One `#[recourse]` function's static state: its key, its compiled
/// catalog policy, and a cache of its resolved policy and classifier.
///
/// The cache is keyed by the executor and by the executor's generation
/// (provider and classifier registry change counters), so the steady-state
/// call does no map lookup and no allocation, and a policy changed at run
/// time is picked up on the next call.
#[doc(hidden)]
pub struct CallSite {
    key: PolicyKey,
    catalog: Option<CatalogSpec>,
    classifier: Option<&'static str>,
    catalog_policy: OnceLock<Arc<Policy>>,
    cache: ArcSwapOption<Cached>,
    /// `Inner::stamp` of the executor and generation for which this site's
    /// resolution is plain with no policy id, else 0: the plain first
    /// attempt then needs one atomic load, not a cache load. Independent of
    /// `cache` (a fact about that executor and generation, whatever the
    /// cache holds now), so the two need no common lock.
    plain: AtomicU64,
}

impl std::fmt::Debug for CallSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallSite").field("key", &self.key).finish_non_exhaustive()
    }
}

impl CallSite {
    pub const fn new(key: PolicyKey, catalog: Option<CatalogSpec>, classifier: Option<&'static str>) -> Self {
        Self {
            key,
            catalog,
            classifier,
            catalog_policy: OnceLock::new(),
            cache: ArcSwapOption::const_empty(),
            plain: AtomicU64::new(0),
        }
    }

    /// The call site's key.
    pub fn key(&self) -> &PolicyKey {
        &self.key
    }

    /// The compiled catalog policy, built on first use.
    pub fn catalog_policy(&self) -> Option<&Arc<Policy>> {
        let spec = self.catalog.as_ref()?;
        Some(self.catalog_policy.get_or_init(|| Arc::new(spec.to_policy(self.key.clone()))))
    }

    /// Whether this site's resolution for `inner`, as of now, is plain
    /// with no policy id: one atomic load besides the generation, and the
    /// answer in a register (the call's fast path).
    #[inline]
    pub(crate) fn is_plain(&self, inner: &Inner) -> bool {
        inner.stamp(inner.generation()).is_some_and(|stamp| self.plain.load(Ordering::Acquire) == stamp)
    }

    /// The cached resolution for a call: when it is current and lean, only
    /// what the lean first attempt needs (no reference count is taken);
    /// when current, a shared copy; otherwise `Stale`.
    pub(crate) fn lookup(&self, inner: &Inner, capturing: bool) -> First {
        let generation = inner.generation();
        let cached = self.cache.load();
        match cached.as_ref() {
            Some(cached) if cached.executor == inner.id && cached.generation == generation => {
                First::current(&cached.resolved, inner, &self.key, capturing)
            }
            _ => First::Engine(None),
        }
    }

    pub(crate) fn resolve(&self, inner: &Inner) -> Result<Res, Error> {
        let generation = inner.generation();
        if let Some(cached) = &*self.cache.load()
            && cached.executor == inner.id
            && cached.generation == generation
        {
            return Ok(Arc::clone(&cached.resolved));
        }
        let budgets = self.catalog.as_ref().map_or(&[][..], |spec| spec.budgets);
        let resolved =
            inner.resolve(&self.key, Site { catalog: self.catalog_policy(), classifier: self.classifier, budgets })?;
        let resolved = Arc::new(resolved);
        if !resolved.cacheable() {
            return Ok(resolved);
        }
        let plain = if resolved.plain && resolved.policy.id.is_none() { inner.stamp(generation) } else { None };
        self.cache.store(Some(Arc::new(Cached { executor: inner.id, generation, resolved: Arc::clone(&resolved) })));
        self.plain.store(plain.unwrap_or(0), Ordering::Release);
        Ok(resolved)
    }

    /// Starts a call for the sequential (`&mut`) form.
    pub fn begin<'x, E>(&'x self, executor: &'x Executor) -> Result<Call<'x, E>, E>
    where
        E: Classify + From<Error> + 'static,
    {
        Call::begin(&executor.inner, &self.key, self.resolve(&executor.inner), true)
    }

    /// Runs `op` under this call site's policy (the closure form).
    pub fn call<F, Fut, T, E>(&self, executor: &Executor, op: F) -> impl Future<Output = Result<T, E>>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error> + 'static,
    {
        drive(&executor.inner, Source::Site(self), op)
    }
}

/// A policy key checked at compile time by `recourse::key!`, carrying its
/// call site (compiled catalog policy and resolution cache).
///
/// Pass it to [`Executor::call`] like any key.
#[derive(Debug, Clone, Copy)]
pub struct CheckedKey(&'static CallSite);

impl CheckedKey {
    #[doc(hidden)]
    pub const fn new(site: &'static CallSite) -> Self {
        Self(site)
    }

    /// The key.
    pub fn key(&self) -> &'static PolicyKey {
        &self.0.key
    }

    pub(crate) fn site(self) -> &'static CallSite {
        self.0
    }
}

/// Anything [`Executor::call`] accepts as a key: a string, a
/// [`PolicyKey`], or a [`CheckedKey`] from `recourse::key!`.
#[derive(Debug, Clone)]
pub enum CallKey {
    /// A key resolved on every call.
    Key(PolicyKey),
    /// A compile-time checked key with its own call site.
    Checked(CheckedKey),
}

impl From<&'static str> for CallKey {
    fn from(key: &'static str) -> Self {
        Self::Key(PolicyKey::parse(key))
    }
}

impl From<String> for CallKey {
    fn from(key: String) -> Self {
        Self::Key(PolicyKey::from(key))
    }
}

impl From<PolicyKey> for CallKey {
    fn from(key: PolicyKey) -> Self {
        Self::Key(key)
    }
}

impl From<&PolicyKey> for CallKey {
    fn from(key: &PolicyKey) -> Self {
        Self::Key(key.clone())
    }
}

impl From<CheckedKey> for CallKey {
    fn from(key: CheckedKey) -> Self {
        Self::Checked(key)
    }
}

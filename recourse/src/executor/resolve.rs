//! Resolution: from a key (and what its call site knows) to everything a
//! call needs before its first attempt: the effective policy, classifier,
//! budgets, breaker, hedge trigger and latency tracker. Call sites and the
//! executor cache the result per executor generation.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::time::Instant;

use super::catalog::{CatalogEntry, declared_budget};
use super::{FailureMode, Inner, KeyOverflow};
use crate::budget::Budget;
use crate::circuit::Breaker;
use crate::classify::Classifier;
use crate::error::{Component, Error, PanicError};
use crate::hedge::{HedgeTrigger, LatencyTracker};
use crate::policy::{BudgetRef, Policy, PolicyKey};
use crate::provider::{PolicyProvider, ProviderError, ProviderErrorKind};

/// What a call site knows beyond the key (filled in by `#[recourse]`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Site<'a> {
    /// The policy compiled from `recourse.toml`, used when no provider
    /// configures the key.
    pub(crate) catalog: Option<&'a Arc<Policy>>,
    /// A classifier named on the attribute; overrides the policy's.
    pub(crate) classifier: Option<&'a str>,
    /// Budgets the catalog declares for this policy.
    pub(crate) budgets: &'a [(&'static str, crate::policy::spec::BudgetDecl<&'static str>)],
}

/// Why the policy in use is not the one the provider would normally give.
#[derive(Debug)]
pub(crate) enum PolicyNote {
    /// The provider failed and the missing-policy mode let the call go on.
    ProviderFailed(ProviderError, FailureMode),
}

/// A policy's budget, looked up once per resolution.
pub(crate) enum BudgetSlot {
    /// The policy names no budget.
    Unbudgeted,
    /// The named budget.
    Found(Arc<dyn Budget>),
    /// The named budget, a token bucket: asked directly, with no
    /// `Decision` to build and take apart. The one special case of the
    /// gate, for the built-in budget most policies name; benchmark S3
    /// (the budgeted call path) is what justifies it.
    Bucket(Arc<crate::budget::TokenBucket>),
    /// The policy names a budget nobody registered.
    Missing,
}

/// Everything a call needs before its first attempt: the effective policy,
/// classifier and budgets. Call sites cache it (see `CallSite`).
pub(crate) struct Resolved {
    pub(crate) policy: Arc<Policy>,
    pub(crate) classifier: Option<Arc<dyn Classifier>>,
    /// The classifier name the policy asked for when it was missing and
    /// the default classifier stands in.
    pub(crate) fallback_from: Option<Box<str>>,
    pub(crate) note: Option<PolicyNote>,
    pub(crate) retry_budget: BudgetSlot,
    pub(crate) hedge_budget: BudgetSlot,
    /// The key's breaker, when the policy enables one.
    pub(crate) breaker: Option<Arc<dyn Breaker>>,
    /// The hedge trigger, when the policy enables hedging (`None` when the
    /// trigger is missing and the mode says to run without hedges).
    pub(crate) trigger: Option<Arc<dyn HedgeTrigger>>,
    /// Why the trigger is not the one the policy named.
    pub(crate) trigger_note: Option<String>,
    /// The key's latency tracker, fed while hedging is enabled.
    pub(crate) tracker: Option<Arc<LatencyTracker>>,
    /// Nothing to time, break, hedge or observe: a call's first attempt
    /// needs nothing of the resolution but its retry budget's gate, so the
    /// engine starts it from a borrowed cache entry and resolves (takes a
    /// reference count) only if the attempt fails.
    pub(crate) lean: bool,
    /// Lean with no budget either: a first attempt needs nothing at all,
    /// not even a look at the cache (see `CallSite::is_plain`).
    pub(crate) plain: bool,
}

impl std::fmt::Debug for Resolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolved").field("policy", &self.policy.key).finish_non_exhaustive()
    }
}

impl Resolved {
    /// Whether a call site may reuse this for later calls (provider errors
    /// are re-asked every call).
    pub(crate) fn cacheable(&self) -> bool {
        self.note.is_none()
    }
}

/// A call's resolution: shared with a call site's (or the executor's)
/// cache, so a call carries a pointer, not the whole resolution.
pub(crate) type Res = Arc<Resolved>;

impl Inner {
    pub(crate) fn now(&self) -> Instant {
        self.time.now()
    }

    /// Changes whenever the provider or the classifier registry may answer
    /// differently (both counters only grow, so their sum does too).
    #[inline]
    pub(crate) fn generation(&self) -> u64 {
        let provider = if self.provider_changes { self.provider_generation() } else { 0 };
        provider
            .wrapping_add(self.classifiers.generation())
            .wrapping_add(self.budgets.generation())
            .wrapping_add(self.triggers.generation())
            .wrapping_add(self.circuits.generation())
    }

    /// The provider's generation; with recovery on, a panic in it reads as
    /// `u64::MAX` (one more generation, resolved through the provider,
    /// whose own panics the missing-policy mode handles).
    #[inline]
    fn provider_generation(&self) -> u64 {
        if self.recover_panics {
            catch_unwind(AssertUnwindSafe(|| self.provider.generation())).unwrap_or(u64::MAX)
        } else {
            self.provider.generation()
        }
    }

    /// One word naming this executor at `generation`, for call sites to
    /// remember "my resolution here is plain" without a cache load (see
    /// `CallSite::is_plain`). `None` (never remembered) once the executor id
    /// or the generation outgrows its bits, so two different pairs never
    /// share a stamp.
    #[inline]
    pub(crate) fn stamp(&self, generation: u64) -> Option<u64> {
        const GENERATION_BITS: u32 = 40;
        if self.id >= 1 << (64 - GENERATION_BITS - 1) || generation >= 1 << GENERATION_BITS {
            return None;
        }
        Some(((self.id + 1) << GENERATION_BITS) | generation)
    }

    /// Looks a policy's budget up once per resolution; a budget declared in
    /// the call site's catalog is created on first use unless registered in
    /// code.
    fn budget_slot(
        &self,
        budget: &BudgetRef,
        declared: &[(&'static str, crate::policy::spec::BudgetDecl<&'static str>)],
    ) -> BudgetSlot {
        let name = budget.name.trim();
        if name.is_empty() {
            return BudgetSlot::Unbudgeted;
        }
        let declared = declared.iter().find(|(declared, _)| *declared == name).map(|(_, decl)| decl);
        let found = self.budgets.get(name).or_else(|| {
            let budget = declared_budget(declared?)?;
            self.budgets.get_or_register(name, || budget)
        });
        found.map_or(BudgetSlot::Missing, |found| {
            let any: Arc<dyn std::any::Any + Send + Sync> = found.clone();
            any.downcast().map_or(BudgetSlot::Found(found), BudgetSlot::Bucket)
        })
    }

    #[inline]
    pub(crate) fn recover<R>(
        &self,
        component: Component,
        key: &PolicyKey,
        f: impl FnOnce() -> R,
    ) -> Result<R, Box<PanicError>> {
        if self.recover_panics {
            // Boxed: the error is rare, and a large `Err` would make every
            // plug-in's answer travel through memory.
            catch_unwind(AssertUnwindSafe(f)).map_err(|payload| Box::new(PanicError::new(component, key, &*payload)))
        } else {
            Ok(f())
        }
    }

    pub(crate) fn resolve_policy(
        &self,
        key: &PolicyKey,
        catalog: Option<&Arc<Policy>>,
    ) -> Result<(Arc<Policy>, Option<PolicyNote>), Error> {
        let answer = self
            .recover(Component::PolicyProvider, key, || self.provider.policy(key))
            .unwrap_or_else(|panic| Err(ProviderError::new(ProviderErrorKind::Panicked).with_source(*panic)));
        let fallback = || catalog.cloned().unwrap_or_else(|| Arc::clone(&self.default_policy));
        let (policy, note) = match answer {
            Ok(Some(policy)) => (policy, None),
            Ok(None) => (fallback(), None),
            Err(error) => match self.missing_policy {
                FailureMode::Deny => return Err(Error::NoPolicy { key: key.clone(), source: error }),
                FailureMode::Allow => (
                    Arc::clone(&self.single_attempt_policy),
                    Some(PolicyNote::ProviderFailed(error, FailureMode::Allow)),
                ),
                mode @ (FailureMode::Fallback | FailureMode::AllowUnsafe) => {
                    let policy = error.fallback().cloned().unwrap_or_else(fallback);
                    (policy, Some(PolicyNote::ProviderFailed(error, mode)))
                }
            },
        };
        if policy.is_normalized() {
            Ok((policy, note))
        } else {
            Ok((Arc::new(Policy::clone(&policy).normalized()), note))
        }
    }

    /// The resolution for a key called without a call site (the function
    /// form with a string or `PolicyKey`), from the executor's own cache:
    /// one lock-free map lookup, re-resolved when the generation changes.
    /// Degraded resolutions (a provider error) are not cached.
    ///
    /// A key not in the cache yet passes the key-cardinality guard first
    /// (`Keys::admit`), before the provider is asked or any breaker or
    /// tracker is made for it; past the cap, the call overflows
    /// (`overflowed`). `call` is the call's own key, which a fold turns to
    /// the fold key (`None`: nothing to turn).
    pub(crate) fn resolve_cached(&self, key: &PolicyKey, call: Option<&OwnedKey<'_>>) -> Result<Res, Error> {
        let generation = self.generation();
        let known = match self.keys.map.load().get(key) {
            Some(entry) => match entry.cached.get() {
                Some((cached, resolved)) if *cached == generation => return Ok(Arc::clone(resolved)),
                _ => true,
            },
            None => false,
        };
        if !known && !self.keys.admit(key) {
            return self.overflowed(key, call);
        }
        let resolved = Arc::new(self.resolve(key, Site::default())?);
        if resolved.cacheable() {
            self.keys.store(key, generation, &resolved);
        }
        Ok(resolved)
    }

    /// A key the guard refused: counted, then rejected or folded, and
    /// marked on the call's key for its timeline.
    #[cold]
    #[inline(never)]
    fn overflowed(&self, key: &PolicyKey, call: Option<&OwnedKey<'_>>) -> Result<Res, Error> {
        self.keys.overflows.fetch_add(1, Ordering::Relaxed);
        let resolved = match &self.keys.overflow {
            KeyOverflow::Reject => Err(Error::KeyOverflow { key: key.clone(), max_keys: self.keys.max }),
            KeyOverflow::Fold(fold) => {
                if let Some(call) = call {
                    call.fold();
                }
                // The fold key is always admitted: this does not come back here.
                self.resolve_cached(fold, None)
            }
        };
        if let Some(call) = call {
            call.set(OVERFLOWED);
        }
        resolved
    }

    /// Resolves the policy and the classifier for a call.
    pub(crate) fn resolve(&self, key: &PolicyKey, site: Site<'_>) -> Result<Resolved, Error> {
        let (policy, note) = self.resolve_policy(key, site.catalog)?;
        if let (Some(error), Some(observer)) = (&policy.meta.error, &self.observer)
            && self.recover(Component::Observer, key, || observer.on_policy_error(key, &policy, error)).is_err()
        {
            self.observer_panics.fetch_add(1, Ordering::Relaxed);
        }
        let requested = site.classifier.unwrap_or(&policy.retry.classifier).trim();
        let (classifier, fallback_from) = if requested.is_empty() {
            (None, None)
        } else if let Some(classifier) = self.classifiers.get(requested) {
            (Some(classifier), None)
        } else if self.missing_classifier == FailureMode::Deny {
            return Err(Error::NoClassifier { name: requested.to_owned() });
        } else {
            (None, Some(Box::from(requested)))
        };
        let retry_budget = self.budget_slot(&policy.retry.budget, site.budgets);
        let hedge_budget = self.budget_slot(&policy.hedge.budget, site.budgets);
        let breaker = if policy.circuit.enabled { self.circuits.get_or_create(key, &policy.circuit) } else { None };
        let (trigger, trigger_note, tracker) = if policy.hedge.enabled {
            let (trigger, note) = self.resolve_trigger(&policy.hedge.trigger)?;
            (trigger, note, Some(self.trackers.get_or_create(key)))
        } else {
            (None, None, None)
        };
        let lean = breaker.is_none()
            && !policy.hedge.enabled
            && policy.retry.timeout_per_attempt.is_zero()
            && policy.retry.overall_timeout.is_zero()
            && note.is_none()
            && fallback_from.is_none();
        let plain = lean && matches!(retry_budget, BudgetSlot::Unbudgeted);
        Ok(Resolved {
            policy,
            classifier,
            fallback_from,
            note,
            retry_budget,
            hedge_budget,
            breaker,
            trigger,
            trigger_note,
            tracker,
            lean,
            plain,
        })
    }

    /// The hedge trigger a policy names (exact name; empty means fixed
    /// delay). A missing one follows the missing-trigger mode (DESIGN §6.9):
    /// deny fails the call, allow runs it without hedges, fallback and
    /// allow-unsafe hedge on the fixed delay.
    #[allow(clippy::type_complexity, reason = "a private helper returning the trigger and a note about it")]
    fn resolve_trigger(&self, name: &str) -> Result<(Option<Arc<dyn HedgeTrigger>>, Option<String>), Error> {
        if name.is_empty() {
            return Ok((Some(Arc::clone(&self.fixed_delay)), None));
        }
        if let Some(trigger) = self.triggers.get(name) {
            return Ok((Some(trigger), None));
        }
        match self.missing_trigger {
            FailureMode::Deny => Err(Error::NoTrigger { name: name.to_owned() }),
            FailureMode::Allow => Ok((None, Some(format!("trigger {name} not found; hedging off (allow)")))),
            mode @ (FailureMode::Fallback | FailureMode::AllowUnsafe) => Ok((
                Some(Arc::clone(&self.fixed_delay)),
                Some(format!("trigger {name} not found; fixed delay used ({mode})")),
            )),
        }
    }
}

/// An admitted key's cached resolution and the generation it is current
/// at; empty while the key has none (being resolved, or its last
/// resolution failed or was degraded). A key's first resolution is filled
/// in place, so admitting a key copies the map once, not twice.
#[derive(Clone, Default)]
struct Entry {
    cached: OnceLock<(u64, Res)>,
}

/// Keys behind an `Arc`, so copying the map copies no key text.
type Map = HashMap<Arc<PolicyKey>, Entry>;

/// The executor's resolutions of keys called without a call site, and the
/// key-cardinality guard in front of them (`ExecutorBuilder::max_keys`).
///
/// The map is every admitted key: a key gets per-key state (the provider's
/// answer, a breaker, a latency tracker) only once it is in the map, and at
/// most `max` keys other than the fold key ever are. Reads are one pointer
/// load; a change copies the map (copy-on-write), which admissions and
/// re-resolutions do, never a call of a known key. Keys are never evicted:
/// per-key state is long-lived (a breaker's state, a tracker's window), so
/// a key admitted once stays.
pub(crate) struct Keys {
    map: ArcSwap<Map>,
    max: usize,
    overflow: KeyOverflow,
    overflows: AtomicU64,
}

impl Keys {
    pub(crate) fn new(max: usize, overflow: KeyOverflow) -> Self {
        Self { map: ArcSwap::default(), max, overflow, overflows: AtomicU64::new(0) }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    pub(crate) fn overflow(&self) -> &KeyOverflow {
        &self.overflow
    }

    pub(crate) fn overflows(&self) -> u64 {
        self.overflows.load(Ordering::Relaxed)
    }

    /// The fold key, when overflowing keys fold.
    pub(crate) fn fold(&self) -> Option<&PolicyKey> {
        match &self.overflow {
            KeyOverflow::Fold(fold) => Some(fold),
            KeyOverflow::Reject => None,
        }
    }

    /// Admitted keys that count against the cap (all but the fold key).
    fn count(&self, map: &Map) -> usize {
        map.len() - usize::from(self.fold().is_some_and(|fold| map.contains_key(fold)))
    }

    /// How many keys are admitted, the fold key excepted.
    pub(crate) fn len(&self) -> usize {
        self.count(&self.map.load())
    }

    /// Caches `resolved` as `key`'s resolution at `generation`: in place
    /// when its entry holds none yet (a first resolution), else in a copy
    /// of the map (a re-resolution, after the generation moved). A fill
    /// that races a copy lands in the map being replaced: the key is then
    /// resolved once more, never lost.
    fn store(&self, key: &PolicyKey, generation: u64, resolved: &Res) {
        if let Some(entry) = self.map.load().get(key)
            && entry.cached.set((generation, Arc::clone(resolved))).is_ok()
        {
            return;
        }
        self.map.rcu(|map| {
            let key = map.get_key_value(key).map_or_else(|| Arc::new(key.clone()), |(key, _)| Arc::clone(key));
            let mut map = HashMap::clone(map);
            map.insert(key, Entry { cached: OnceLock::from((generation, Arc::clone(resolved))) });
            map
        });
    }

    /// Whether `key` may have per-key state: it is admitted already, or it
    /// is the fold key, or there is room, and then it is admitted here (an
    /// entry with nothing cached). Exact under concurrency: an admission is
    /// one compare-and-swap of the whole map, checked against the cap it
    /// replaces. A full map refuses without writing (the map never
    /// shrinks).
    #[cold]
    fn admit(&self, key: &PolicyKey) -> bool {
        let exempt = self.fold() == Some(key);
        let current = self.map.load();
        if current.contains_key(key) {
            return true;
        }
        if !exempt && self.count(&current) >= self.max {
            return false;
        }
        drop(current);
        let mut admitted = false;
        self.map.rcu(|map| {
            admitted = map.contains_key(key) || exempt || self.count(map) < self.max;
            if !admitted || map.contains_key(key) {
                return Arc::clone(map);
            }
            let mut map = HashMap::clone(map);
            map.insert(Arc::new(key.clone()), Entry::default());
            Arc::new(map)
        });
        admitted
    }
}

/// A key called without a call site, owned by its call (`Executor::call`
/// with a string or a `PolicyKey`), and what the key-cardinality guard
/// made of it: once folded (`Inner::overflowed`), the call runs under the
/// executor's fold key, which `Source::key` then answers for the rest of
/// the call (its breaker, budgets, tracker, observer events and timeline).
pub(crate) struct OwnedKey<'i> {
    key: PolicyKey,
    /// The executor's fold key, if it folds.
    fold: Option<&'i PolicyKey>,
    /// `FOLDED`, `OVERFLOWED`. Atomic only so the call's future is
    /// `Send`: one task at a time touches it.
    state: AtomicU8,
}

const FOLDED: u8 = 1;
/// The guard refused the key (folded or rejected): the timeline says so.
const OVERFLOWED: u8 = 2;

impl<'i> OwnedKey<'i> {
    #[inline]
    pub(crate) fn new(key: PolicyKey, inner: &'i Inner) -> Self {
        Self { key, fold: inner.keys.fold(), state: AtomicU8::new(0) }
    }

    /// The key the call runs under: its own, or the fold key once folded.
    #[inline]
    fn current(&self) -> &PolicyKey {
        match self.fold {
            Some(fold) if self.state.load(Ordering::Relaxed) & FOLDED != 0 => fold,
            _ => &self.key,
        }
    }

    fn set(&self, bit: u8) {
        self.state.store(self.state.load(Ordering::Relaxed) | bit, Ordering::Relaxed);
    }

    fn fold(&self) {
        if self.fold.is_some() {
            self.set(FOLDED);
        }
    }

    /// The key the call was made with, when the guard refused it.
    fn overflowed_from(&self) -> Option<&PolicyKey> {
        (self.state.load(Ordering::Relaxed) & OVERFLOWED != 0).then_some(&self.key)
    }
}

struct Cached {
    executor: u64,
    generation: u64,
    resolved: Arc<Resolved>,
}

/// How many resolutions a call site pins (see `SiteCache::pinned`).
const PINS: usize = 4;

/// A call site's static state: its key, its compiled catalog policy, and a
/// cache of its resolution, keyed by the executor and its generation, so
/// the steady-state call does no map lookup and no allocation, and a
/// policy changed at run time is picked up on the next call.
pub(crate) struct SiteCache {
    key: PolicyKey,
    catalog: Option<CatalogEntry>,
    classifier: Option<&'static str>,
    catalog_policy: OnceLock<Arc<Policy>>,
    cache: ArcSwapOption<Cached>,
    /// The site's first few resolutions, each with the `Inner::stamp` it
    /// is current at, kept for the site's lifetime: a call borrows the
    /// current one with two plain loads, where the `cache` costs a
    /// hazard-pointer write and a fence per load (which every thread
    /// calling the site pays). Set once each, never replaced, so no
    /// borrow needs guarding; bounded, so a provider that changes often
    /// pins its first resolutions and then reads through `cache`.
    pinned: [OnceLock<(u64, Res)>; PINS],
    /// 1 + the index in `pinned` of the latest resolution pinned, 0 for
    /// none; `next_pin` is the next free slot.
    pin: AtomicUsize,
    next_pin: AtomicUsize,
    /// `Inner::stamp` of the executor and generation for which this site's
    /// resolution is plain with no policy id, else 0: the plain first
    /// attempt then needs one atomic load, not a cache load. Independent of
    /// `cache` (a fact about that executor and generation, whatever the
    /// cache holds now), so the two need no common lock.
    plain: AtomicU64,
}

impl SiteCache {
    #[allow(
        clippy::large_types_passed_by_value,
        reason = "a const constructor of a `static`, evaluated at compile time"
    )]
    pub(crate) const fn new(key: PolicyKey, catalog: Option<CatalogEntry>, classifier: Option<&'static str>) -> Self {
        Self {
            key,
            catalog,
            classifier,
            catalog_policy: OnceLock::new(),
            cache: ArcSwapOption::const_empty(),
            pinned: [const { OnceLock::new() }; PINS],
            pin: AtomicUsize::new(0),
            next_pin: AtomicUsize::new(0),
            plain: AtomicU64::new(0),
        }
    }

    pub(crate) fn key(&self) -> &PolicyKey {
        &self.key
    }

    /// The compiled catalog policy, built on first use.
    pub(crate) fn catalog_policy(&self) -> Option<&Arc<Policy>> {
        let spec = self.catalog.as_ref()?;
        Some(self.catalog_policy.get_or_init(|| Arc::new(spec.to_policy(self.key.clone()))))
    }

    /// Whether this site's resolution for `inner` at `generation` is plain
    /// with no policy id: one atomic load.
    #[inline]
    fn is_plain(&self, inner: &Inner, generation: u64) -> bool {
        inner.stamp(generation).is_some_and(|stamp| self.plain.load(Ordering::Acquire) == stamp)
    }

    /// The pinned resolution current for `inner` at `generation`, if the
    /// latest one pinned is.
    #[inline]
    fn pinned(&self, inner: &Inner, generation: u64) -> Option<&Res> {
        let stamp = inner.stamp(generation)?;
        let index = self.pin.load(Ordering::Acquire).checked_sub(1)?;
        let (pinned, resolved) = self.pinned.get(index)?.get()?;
        (*pinned == stamp).then_some(resolved)
    }

    /// Pins `resolved`, current at `stamp`, while a slot is free. Racing
    /// resolutions may pin out of order, leaving `pin` on an older one:
    /// calls then read through `cache`, which is as current.
    #[cold]
    fn pin(&self, stamp: u64, resolved: &Res) {
        if self.next_pin.load(Ordering::Relaxed) >= PINS {
            return;
        }
        let index = self.next_pin.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = self.pinned.get(index)
            && slot.set((stamp, Arc::clone(resolved))).is_ok()
        {
            self.pin.store(index + 1, Ordering::Release);
        }
    }

    /// `f` of the cached resolution when it is current at `generation`,
    /// borrowed (no reference count is taken).
    #[inline]
    fn peek<R>(&self, inner: &Inner, generation: u64, f: impl FnOnce(Option<&Res>) -> R) -> R {
        if let Some(resolved) = self.pinned(inner, generation) {
            return f(Some(resolved));
        }
        let cached = self.cache.load();
        match cached.as_ref() {
            Some(cached) if cached.executor == inner.id && cached.generation == generation => f(Some(&cached.resolved)),
            _ => f(None),
        }
    }

    #[inline]
    fn resolve(&self, inner: &Inner) -> Result<Res, Error> {
        let generation = inner.generation();
        if let Some(resolved) = self.pinned(inner, generation) {
            return Ok(Arc::clone(resolved));
        }
        if let Some(cached) = &*self.cache.load()
            && cached.executor == inner.id
            && cached.generation == generation
        {
            return Ok(Arc::clone(&cached.resolved));
        }
        self.resolve_again(inner, generation)
    }

    #[cold]
    fn resolve_again(&self, inner: &Inner, generation: u64) -> Result<Res, Error> {
        let budgets = self.catalog.as_ref().map_or(&[][..], |spec| spec.budgets);
        let resolved =
            inner.resolve(&self.key, Site { catalog: self.catalog_policy(), classifier: self.classifier, budgets })?;
        let resolved = Arc::new(resolved);
        if !resolved.cacheable() {
            return Ok(resolved);
        }
        let plain = if resolved.plain && resolved.policy.id.is_none() { inner.stamp(generation) } else { None };
        self.cache.store(Some(Arc::new(Cached { executor: inner.id, generation, resolved: Arc::clone(&resolved) })));
        if let Some(stamp) = inner.stamp(generation) {
            self.pin(stamp, &resolved);
        }
        self.plain.store(plain.unwrap_or(0), Ordering::Release);
        Ok(resolved)
    }
}

/// A call's first look at its executor: whether a capture listens, the
/// executor's generation, and whether the call is plain (nothing to gate,
/// time, break, hedge or record; no capture).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Look {
    pub(crate) capture: bool,
    /// Whether the executor's observer listens to this call
    /// (`Observer::enabled`): it is asked here, once, so that an observer
    /// that does not listen leaves the call as lean as with none.
    pub(crate) listening: bool,
    pub(crate) generation: u64,
    pub(crate) plain: bool,
}

impl Look {
    #[inline]
    pub(crate) fn now(inner: &Inner, source: Source<'_>) -> Self {
        let capture = crate::observe::capture_requested();
        let listening = inner.observer.as_deref().is_some_and(|o| super::engine::listening(inner, o));
        let generation = inner.generation();
        Self { capture, listening, generation, plain: !capture && !listening && source.is_plain(inner, generation) }
    }
}

/// Where a call's resolution comes from.
#[derive(Clone, Copy)]
pub(crate) enum Source<'x> {
    /// A `#[recourse]` function's or `key!`'s call site (with its cache).
    Site(&'x SiteCache),
    /// A key called without a call site, owned by the call
    /// (`Executor::call`): the executor's own cache, behind the
    /// key-cardinality guard.
    Owned(&'x OwnedKey<'x>),
}

impl<'x> Source<'x> {
    #[inline]
    pub(crate) fn key(self) -> &'x PolicyKey {
        match self {
            Self::Site(site) => &site.key,
            Self::Owned(key) => key.current(),
        }
    }

    /// The key the call was made with, when the key-cardinality guard
    /// refused it (its timeline's `key_overflow`).
    pub(crate) fn overflowed_from(self) -> Option<&'x PolicyKey> {
        match self {
            Self::Owned(key) => key.overflowed_from(),
            Self::Site(_) => None,
        }
    }

    /// Whether a first attempt needs nothing at all (see `SiteCache::is_plain`).
    #[inline]
    pub(crate) fn is_plain(self, inner: &Inner, generation: u64) -> bool {
        match self {
            Self::Site(site) => site.is_plain(inner, generation),
            Self::Owned(_) => false,
        }
    }

    /// `f` of the cached resolution current at `generation`, borrowed.
    #[inline]
    pub(crate) fn peek<R>(self, inner: &Inner, generation: u64, f: impl FnOnce(Option<&Res>) -> R) -> R {
        match self {
            Self::Site(site) => site.peek(inner, generation, f),
            Self::Owned(_) => match inner.keys.map.load().get(self.key()).and_then(|e| e.cached.get()) {
                Some((cached, resolved)) if *cached == generation => f(Some(resolved)),
                _ => f(None),
            },
        }
    }

    /// The current resolution, resolving and caching it when needed.
    #[inline]
    pub(crate) fn resolve(self, inner: &Inner) -> Result<Res, Error> {
        match self {
            Self::Site(site) => site.resolve(inner),
            Self::Owned(key) => inner.resolve_cached(key.current(), Some(key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::PINS;
    use crate::budget::TokenBucket;
    use crate::executor::Executor;
    use crate::executor::site::{CallSite, CheckedKey};
    use crate::policy::{Policy, PolicyKey};
    use crate::provider::DynamicProvider;

    static SITE: CallSite = CallSite::new(PolicyKey::from_static("pins", "Op"), None, None);

    /// Calls `SITE` with an operation that always fails retryably: how many
    /// attempts ran.
    async fn attempts(executor: &Executor) -> u32 {
        let calls = AtomicU32::new(0);
        let result: Result<(), io::Error> = executor
            .call(CheckedKey::new(&SITE), || {
                calls.fetch_add(1, Ordering::Relaxed);
                async { Err(io::Error::from(io::ErrorKind::ConnectionReset)) }
            })
            .await;
        assert!(result.is_err());
        calls.into_inner()
    }

    // A call site pins its first resolutions; every later change of the
    // provider must still reach the next call, pinned or not, budgeted
    // (the lean first attempt) or not, and on another executor too.
    #[tokio::test(start_paused = true)]
    async fn a_call_site_sees_every_change_past_its_pins() {
        let provider = Arc::new(DynamicProvider::new());
        let executor =
            Executor::builder().provider(Arc::clone(&provider)).budget("pins", TokenBucket::new(1 << 20, 0.0)).build();
        let rounds = u32::try_from(2 * PINS + 1).expect("a few rounds");
        for round in 1..=rounds {
            let budget = if round % 3 == 0 { "" } else { "pins" };
            provider.set(Policy::builder("pins.Op").max_attempts(round).budget(budget).build());
            assert_eq!(attempts(&executor).await, round, "round {round}");
            assert_eq!(attempts(&executor).await, round, "round {round}, again");
        }
        let other = Executor::builder().policy(Policy::builder("pins.Op").max_attempts(2).build()).build();
        assert_eq!(attempts(&other).await, 2, "another executor's policy");
        assert_eq!(attempts(&executor).await, rounds, "back to the first executor");
    }
}

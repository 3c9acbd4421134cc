//! The executor: the one place that awaits, sleeps and races futures.
//!
//! An [`Executor`] resolves a key's policy, picks a classifier, and runs the
//! operation under the policy's envelope: bounded attempts, backoff with
//! jitter, per-attempt and overall deadlines, and classification of every
//! failure. Build one with [`Executor::builder`], or use the process-wide
//! [`global`] executor.

mod attempt;
mod backoff;
mod call;
pub(crate) mod catalog;
pub(crate) mod drive;
mod engine;
mod group;
mod record;
mod resolve;
pub(crate) mod site;
mod time;

use std::fmt;
use std::sync::{Arc, OnceLock};

use crate::budget::{self, Budget};
use crate::circuit;
use crate::classify::{Auto, Classifier, Classify, Inside, Registry};
use crate::hedge::{self, HedgeTrigger};
use crate::observe::{Multi, Noop, Observer};
use crate::policy::spec::BudgetDecl;
use crate::policy::{Policy, PolicyKey};
use crate::provider::{LayeredProvider, PolicyProvider, StaticProvider};

pub(crate) use backoff::Rng;
pub use catalog::Catalog;
pub use site::{CallKey, CheckedKey};
pub use time::{Clock, SleepFuture, Sleeper};

/// What [`ExecutorBuilder::try_build`] reports: the names a catalog
/// declares that the builder did not register, and the budgets it
/// declares that cannot be created here (a `redis_token_bucket` without
/// the `redis` feature, without its URL, or with a URL that does not
/// parse).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BuildError {
    catalog: &'static str,
    missing: Vec<(&'static str, &'static str)>,
    unusable: Vec<(&'static str, String)>,
}

impl BuildError {
    /// Each missing registration: its kind (`classifier`, `budget`,
    /// `hedge trigger`) and name.
    pub fn missing(&self) -> &[(&'static str, &'static str)] {
        &self.missing
    }

    /// Each declared budget that cannot be created in this build or this
    /// environment: its name and why.
    ///
    /// ```ignore
    /// // recourse.toml: [budgets.fleet] kind = "redis_token_bucket", url_env = "REDIS_URL", ...
    /// let error = recourse::Executor::builder().catalog(recourse::catalog!()).try_build().unwrap_err();
    /// assert_eq!(error.unusable()[0].0, "fleet");
    /// ```
    pub fn unusable(&self) -> &[(&'static str, String)] {
        &self.unusable
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let catalog = self.catalog;
        let mut lines = Vec::new();
        if !self.missing.is_empty() {
            let names: Vec<String> = self.missing.iter().map(|(kind, name)| format!("{kind} \"{name}\"")).collect();
            lines.push(format!(
                "{catalog} declares {} that the executor does not register: {}; register each with `ExecutorBuilder::classifier`, `::budget` or `::trigger`",
                if self.missing.len() == 1 { "a name" } else { "names" },
                names.join(", ")
            ));
        }
        for (name, why) in &self.unusable {
            lines.push(format!("{catalog} declares budget \"{name}\", which cannot be created: {why}"));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// What to do when a plug-in a policy needs is missing or failed.
///
/// Each component has its own mode on the builder, and each mode means,
/// per component (the timeline attribute that says so in brackets):
///
/// | mode | provider fails (`missing_policy`) | classifier not registered (`missing_classifier`) | budget not registered (`missing_budget`) | hedge trigger not registered (`missing_trigger`) |
/// |---|---|---|---|---|
/// | `Deny` (default for policies and budgets) | the call fails with [`Error::NoPolicy`](crate::Error::NoPolicy) | the call fails with [`Error::NoClassifier`](crate::Error::NoClassifier) | every attempt is denied: [`Error::BudgetDenied`](crate::Error::BudgetDenied) `budget_not_found` at the first | the call fails with [`Error::NoTrigger`](crate::Error::NoTrigger) |
/// | `Allow` | one attempt (`policy_fallback = allow`) | the default classifier (`classifier_fallback … (allow)`) | every attempt is admitted (`budget_missing … allowed (allow)`) | no hedges (`trigger_fallback … hedging off (allow)`) |
/// | `Fallback` (default for classifiers and triggers) | the provider's fallback policy, else the call site's catalog policy, else the default (`policy_fallback = fallback`) | the default classifier (`… (fallback)`) | every attempt is denied, as with `Deny` (`budget_missing … denied (fallback)`): a budget has no safe substitute | hedges on the fixed delay (`… fixed delay used (fallback)`) |
/// | `AllowUnsafe` | as `Fallback`, marked fail-open (`policy_fallback = allow_unsafe`) | the default classifier (`… (allow_unsafe)`) | every attempt is admitted (`… allowed (allow_unsafe)`) | hedges on the fixed delay (`… (allow_unsafe)`) |
///
/// Missing names are better found at start-up: see
/// [`ExecutorBuilder::try_build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FailureMode {
    /// Fail the call (a budget: deny every attempt).
    Deny,
    /// Proceed minimally: one attempt for a failed provider, no hedges for
    /// a missing trigger, the default classifier, admitted attempts for a
    /// missing budget.
    Allow,
    /// Proceed with a safe substitute: the provider's fallback policy, the
    /// call site's catalog policy or the default policy; the default
    /// classifier; the fixed-delay trigger. A missing budget has none and
    /// denies.
    Fallback,
    /// Proceed as if nothing were missing (fail-open), and say so in the
    /// timeline.
    AllowUnsafe,
}

impl FailureMode {
    /// `deny`, `allow`, `fallback` or `allow_unsafe`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Allow => "allow",
            Self::Fallback => "fallback",
            Self::AllowUnsafe => "allow_unsafe",
        }
    }
}

impl fmt::Display for FailureMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What a call does when its key would be one distinct key too many (see
/// [`ExecutorBuilder::max_keys`]).
///
/// Either way the call is counted in [`Executor::key_overflows`], no
/// per-key state is made for its key, and its timeline (when a capture or
/// an observer records it) carries the attribute `key_overflow` = the key it
/// was called with.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyOverflow {
    /// The call fails at once with [`Error::KeyOverflow`](crate::Error::KeyOverflow)
    /// (naming the key and the cap); the operation never runs. Its timeline
    /// and observer events carry the key it was called with.
    Reject,
    /// The call runs under this key: its policy, budgets, breaker and
    /// latency tracker, as if it had been called with it. Its timeline's
    /// `key` and every observer event name the fold key, so telemetry
    /// labelled by key stays bounded too; only the `key_overflow` attribute
    /// names the key it was called with. The fold key is always admitted
    /// and not counted against the cap.
    Fold(PolicyKey),
}

impl KeyOverflow {
    /// The fold key of the default: `recourse.overflow`. Give it a policy
    /// (in the catalog, a provider or [`ExecutorBuilder::policy`]) to choose
    /// what folded calls run under; without one they get the default policy
    /// (3 attempts, no breaker, no hedging).
    pub const DEFAULT_FOLD_KEY: PolicyKey = PolicyKey::from_static("recourse", "overflow");

    /// The fold key, when overflowing calls fold.
    pub fn fold_key(&self) -> Option<&PolicyKey> {
        match self {
            Self::Fold(key) => Some(key),
            Self::Reject => None,
        }
    }
}

/// Folds into [`KeyOverflow::DEFAULT_FOLD_KEY`].
impl Default for KeyOverflow {
    fn default() -> Self {
        Self::Fold(Self::DEFAULT_FOLD_KEY)
    }
}

/// Runs operations under their key's policy.
///
/// Cheap to clone (the state is shared). See [`Executor::call`].
///
/// ```
/// use recourse::{Executor, policy::Policy};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let executor = Executor::builder()
///     .policy(Policy::builder("inventory.Reserve").max_attempts(4).build())
///     .build();
///
/// let mut tries = 0;
/// let reserved: Result<u32, std::io::Error> = executor
///     .call("inventory.Reserve", || {
///         tries += 1;
///         let attempt = tries;
///         async move {
///             if attempt < 3 {
///                 Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
///             } else {
///                 Ok(attempt)
///             }
///         }
///     })
///     .await;
/// assert_eq!(reserved.unwrap(), 3);
/// # }
/// ```
#[derive(Clone)]
pub struct Executor {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) budgets: Arc<budget::Registry>,
    pub(crate) circuits: Arc<circuit::Registry>,
    pub(crate) triggers: Arc<hedge::Registry>,
    pub(crate) trackers: hedge::Trackers,
    /// The trigger used when a hedging policy names none.
    pub(crate) fixed_delay: Arc<dyn HedgeTrigger>,
    /// `None` when no observer (or only `Noop`) is installed: the engine
    /// then records nothing.
    pub(crate) observer: Option<Arc<dyn Observer>>,
    /// Process-unique, so a call site's cache knows which executor filled it.
    pub(crate) id: u64,
    pub(crate) provider: Arc<dyn PolicyProvider>,
    /// Whether `provider` can change its answers: false for the builder's
    /// own static policies, whose generation is always 0, so the call's
    /// fast path skips the `dyn` call.
    pub(crate) provider_changes: bool,
    pub(crate) classifiers: Arc<Registry>,
    pub(crate) default_classifier: Arc<dyn Classifier>,
    pub(crate) missing_policy: FailureMode,
    pub(crate) missing_classifier: FailureMode,
    pub(crate) missing_budget: FailureMode,
    pub(crate) missing_trigger: FailureMode,
    pub(crate) recover_panics: bool,
    pub(crate) time: time::Time,
    pub(crate) rng: Rng,
    /// Resolutions of keys called without a call site, by key, behind the
    /// key-cardinality guard (see `Inner::resolve_cached`).
    pub(crate) keys: resolve::Keys,
    /// Observer panics recovered so far (see `Executor::observer_panics`).
    pub(crate) observer_panics: std::sync::atomic::AtomicU64,
    /// Shared so unknown keys cost an `Arc` clone, not a policy build.
    pub(crate) default_policy: Arc<Policy>,
    /// The missing-policy `allow` policy: one attempt.
    pub(crate) single_attempt_policy: Arc<Policy>,
}

impl Executor {
    /// Starts building an executor.
    pub fn builder() -> ExecutorBuilder {
        ExecutorBuilder::default()
    }

    /// The policy provider.
    pub fn provider(&self) -> &Arc<dyn PolicyProvider> {
        &self.inner.provider
    }

    /// The classifier registry.
    pub fn classifiers(&self) -> &Arc<Registry> {
        &self.inner.classifiers
    }

    /// The budget registry.
    pub fn budgets(&self) -> &Arc<budget::Registry> {
        &self.inner.budgets
    }

    /// The per-key circuit breakers.
    pub fn circuits(&self) -> &Arc<circuit::Registry> {
        &self.inner.circuits
    }

    /// The hedge trigger registry.
    pub fn triggers(&self) -> &Arc<hedge::Registry> {
        &self.inner.triggers
    }

    /// The latency tracker hedging uses for `key` (created on first use).
    pub fn latency(&self, key: &PolicyKey) -> Arc<hedge::LatencyTracker> {
        self.inner.trackers.get_or_create(key)
    }

    /// Whether an observer (other than [`Noop`]) is installed.
    pub fn has_observer(&self) -> bool {
        self.inner.observer.is_some()
    }

    /// What happens when the provider fails.
    pub fn missing_policy_mode(&self) -> FailureMode {
        self.inner.missing_policy
    }

    /// What happens when a policy names an unregistered classifier.
    pub fn missing_classifier_mode(&self) -> FailureMode {
        self.inner.missing_classifier
    }

    /// What happens when a policy names an unregistered budget.
    pub fn missing_budget_mode(&self) -> FailureMode {
        self.inner.missing_budget
    }

    /// What happens when a policy names an unregistered hedge trigger.
    pub fn missing_trigger_mode(&self) -> FailureMode {
        self.inner.missing_trigger
    }

    /// Whether panics in plug-ins are turned into errors.
    pub fn recovers_panics(&self) -> bool {
        self.inner.recover_panics
    }

    /// How many observer panics panic recovery has caught so far. A
    /// recovered observer panic never changes a call's outcome; the first
    /// one of a call is also noted on its timeline (`observer_panic`).
    pub fn observer_panics(&self) -> u64 {
        self.inner.observer_panics.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The most distinct keys called without a call site that get per-key
    /// state (see [`ExecutorBuilder::max_keys`]).
    pub fn max_keys(&self) -> usize {
        self.inner.keys.max()
    }

    /// What a call does when its key is one too many (see
    /// [`ExecutorBuilder::key_overflow`]).
    pub fn key_overflow_mode(&self) -> &KeyOverflow {
        self.inner.keys.overflow()
    }

    /// How many distinct keys called without a call site have per-key state
    /// so far (the fold key excepted): at most [`max_keys`](Self::max_keys).
    pub fn key_count(&self) -> usize {
        self.inner.keys.len()
    }

    /// How many calls the key-cardinality guard has refused so far (folded
    /// or rejected; see [`ExecutorBuilder::max_keys`]). Each refused call
    /// counts, not each refused key. A number that grows means keys are
    /// being built from request data.
    pub fn key_overflows(&self) -> u64 {
        self.inner.keys.overflows()
    }

    /// Whether a custom clock was installed.
    pub fn has_custom_clock(&self) -> bool {
        self.inner.time.has_custom_clock()
    }

    /// The policy the executor would use for `key` right now, as a call
    /// would resolve it (without a call site's catalog policy).
    pub fn policy_for(&self, key: &PolicyKey) -> Result<Arc<Policy>, crate::Error> {
        self.inner.resolve_policy(key, None).map(|(policy, _)| policy)
    }
}

impl fmt::Debug for Executor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("classifiers", &self.inner.classifiers)
            .field("missing_policy", &self.inner.missing_policy)
            .field("missing_classifier", &self.inner.missing_classifier)
            .field("missing_budget", &self.inner.missing_budget)
            .field("recover_panics", &self.inner.recover_panics)
            .field("max_keys", &self.inner.keys.max())
            .field("key_overflow", self.inner.keys.overflow())
            .field("time", &self.inner.time)
            .finish_non_exhaustive()
    }
}

/// Configures an [`Executor`].
///
/// Defaults: no provider (every key gets its call site's catalog policy or
/// the default policy), the built-in classifiers with `auto` as the
/// default, a budget registry holding `unlimited`, the built-in hedge
/// triggers (`fixed_delay`, `p50`, `p90`, `p95`, `p99`), no observer, missing policy → deny, missing classifier → fallback, missing
/// budget → deny, missing trigger → fallback, no panic recovery, tokio
/// time, at most [`DEFAULT_MAX_KEYS`](Self::DEFAULT_MAX_KEYS) distinct
/// keys called without a call site, the rest folded into
/// `recourse.overflow`.
#[must_use = "a builder does nothing until `build` is called"]
pub struct ExecutorBuilder {
    provider: Option<Arc<dyn PolicyProvider>>,
    policies: StaticProvider,
    classifiers: Option<Arc<Registry>>,
    extra_classifiers: Vec<(String, Arc<dyn Classifier>)>,
    budgets: Option<Arc<budget::Registry>>,
    extra_budgets: Vec<(String, Arc<dyn Budget>)>,
    circuits: Option<Arc<circuit::Registry>>,
    triggers: Option<Arc<hedge::Registry>>,
    extra_triggers: Vec<(String, Arc<dyn HedgeTrigger>)>,
    observers: Multi,
    default_classifier: Arc<dyn Classifier>,
    inside: Inside,
    missing_policy: FailureMode,
    missing_classifier: FailureMode,
    missing_budget: FailureMode,
    missing_trigger: FailureMode,
    recover_panics: bool,
    time: time::Time,
    seed: Option<u64>,
    catalog: Option<&'static Catalog>,
    max_keys: usize,
    key_overflow: KeyOverflow,
}

impl Default for ExecutorBuilder {
    fn default() -> Self {
        Self {
            provider: None,
            policies: StaticProvider::new(),
            classifiers: None,
            extra_classifiers: Vec::new(),
            budgets: None,
            extra_budgets: Vec::new(),
            circuits: None,
            triggers: None,
            extra_triggers: Vec::new(),
            observers: Multi::new(),
            default_classifier: Arc::new(Auto),
            inside: Inside::default(),
            missing_policy: FailureMode::Deny,
            missing_classifier: FailureMode::Fallback,
            missing_budget: FailureMode::Deny,
            missing_trigger: FailureMode::Fallback,
            recover_panics: false,
            time: time::Time::default(),
            seed: None,
            catalog: None,
            max_keys: Self::DEFAULT_MAX_KEYS,
            key_overflow: KeyOverflow::default(),
        }
    }
}

impl ExecutorBuilder {
    /// The default of [`max_keys`](Self::max_keys): 1 024 distinct keys,
    /// as many as the metrics observer keeps label text for.
    ///
    /// Far above what keys written in code add up to (one per operation an
    /// application calls: tens to hundreds), far below what request data
    /// reaches (ids, paths, tenants: unbounded). Each admitted key holds
    /// about 0.5 KiB (its cached resolution), up to 1 KiB more with a
    /// failure-rate breaker and 7 KiB more with hedging (a latency
    /// tracker): at most about 9 MiB for 1 024 keys. And the executor's key
    /// cache is copied on write, so admitting `n` keys copies about `n²/2`
    /// entries: measured on two shared cores, about 0.1 s of CPU in all for
    /// 1 024 keys, 1 s for 4 096 and 5 s for 10 000; each policy change
    /// (a provider's generation moving) then costs about twice that again,
    /// as the admitted keys re-resolve. Raise it for an application that
    /// really calls more operations by string key.
    pub const DEFAULT_MAX_KEYS: usize = 1024;

    /// Where policies come from.
    pub fn provider(mut self, provider: impl PolicyProvider) -> Self {
        self.provider = Some(Arc::new(provider));
        self
    }

    /// A fixed policy for its key. These take precedence over the
    /// [`provider`](Self::provider), if one is set too.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policies.insert(policy);
        self
    }

    /// Uses exactly this classifier registry (shared, so classifiers can be
    /// registered after the executor is built).
    pub fn classifiers(mut self, registry: Arc<Registry>) -> Self {
        self.classifiers = Some(registry);
        self
    }

    /// Registers a classifier under `name` (into the registry given to
    /// [`classifiers`](Self::classifiers), or a fresh one with the built-ins).
    pub fn classifier(mut self, name: &str, classifier: impl Classifier) -> Self {
        self.extra_classifiers.push((name.to_owned(), Arc::new(classifier)));
        self
    }

    /// Uses exactly this budget registry (shared, so budgets can be
    /// registered after the executor is built).
    pub fn budgets(mut self, registry: Arc<budget::Registry>) -> Self {
        self.budgets = Some(registry);
        self
    }

    /// Registers a budget under `name` (into the registry given to
    /// [`budgets`](Self::budgets), or a fresh one holding `unlimited`).
    pub fn budget(mut self, name: &str, budget: impl Budget) -> Self {
        self.extra_budgets.push((name.to_owned(), Arc::new(budget)));
        self
    }

    /// Uses exactly this circuit-breaker registry (share one between
    /// executors to share breakers, or keep it to inspect them).
    pub fn circuits(mut self, registry: Arc<circuit::Registry>) -> Self {
        self.circuits = Some(registry);
        self
    }

    /// Uses exactly this hedge trigger registry.
    pub fn triggers(mut self, registry: Arc<hedge::Registry>) -> Self {
        self.triggers = Some(registry);
        self
    }

    /// Registers a hedge trigger under `name` (into the registry given to
    /// [`triggers`](Self::triggers), or a fresh one with the built-ins).
    pub fn trigger(mut self, name: &str, trigger: impl HedgeTrigger) -> Self {
        self.extra_triggers.push((name.to_owned(), Arc::new(trigger)));
        self
    }

    /// Adds an observer; several observers hear every event in the order
    /// they were added. [`Noop`] is ignored.
    pub fn observer(mut self, observer: impl Observer) -> Self {
        let any: &dyn std::any::Any = &observer;
        if !(any.is::<Noop>() || any.is::<Arc<Noop>>()) {
            self.observers.push(Arc::new(observer));
        }
        self
    }

    /// The classifier for errors that have no classification of their own
    /// when the policy names none (default: [`Auto`]).
    pub fn default_classifier(mut self, classifier: impl Classifier) -> Self {
        self.default_classifier = Arc::new(classifier);
        self
    }

    /// Errors of type `E` keep their own [`Classify`] outcome when they
    /// arrive wrapped: inside an `anyhow::Error`, a `Box<dyn Error>`, an
    /// `io::Error::other(e)`, or anywhere in a `source()` chain.
    ///
    /// Consulted when a failed attempt's error has no outcome of its own
    /// and the policy names no classifier; the outermost registered error
    /// in the chain decides, and the default classifier is asked only when
    /// none is found. Registration is needed because stable Rust cannot ask
    /// a `dyn Error` for an implementation of a trait it does not name.
    ///
    /// ```
    /// use recourse::{Classifier, Executor, PolicyKey};
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// # runtime.block_on(async {
    ///
    /// #[derive(Debug, thiserror::Error, Classifier)]
    /// enum DbError {
    ///     #[error("constraint violated")]
    ///     #[classify(non_retryable)]
    ///     Constraint,
    /// }
    ///
    /// let executor = Executor::builder().classify_wrapped::<DbError>().build();
    /// let key = PolicyKey::parse("db.Insert");
    /// let (result, timeline) = recourse::capture(executor.call(&key, || async {
    ///     Err::<(), _>(Box::<dyn std::error::Error + Send + Sync>::from(DbError::Constraint))
    /// }))
    /// .await;
    /// assert!(result.is_err());
    /// assert_eq!(timeline.attempts.len(), 1);
    /// assert_eq!(timeline.attempts[0].outcome.reason, "constraint");
    /// # });
    /// ```
    pub fn classify_wrapped<E: Classify + std::error::Error + 'static>(mut self) -> Self {
        self.inside.add::<E>();
        self
    }

    /// What happens when the provider fails (default: deny).
    pub fn missing_policy(mut self, mode: FailureMode) -> Self {
        self.missing_policy = mode;
        self
    }

    /// What happens when a policy names an unregistered classifier
    /// (default: fallback to the default classifier).
    pub fn missing_classifier(mut self, mode: FailureMode) -> Self {
        self.missing_classifier = mode;
        self
    }

    /// What happens when a policy names an unregistered budget (default: deny).
    pub fn missing_budget(mut self, mode: FailureMode) -> Self {
        self.missing_budget = mode;
        self
    }

    /// What happens when a policy names an unregistered hedge trigger
    /// (default: fallback to fixed-delay hedging).
    pub fn missing_trigger(mut self, mode: FailureMode) -> Self {
        self.missing_trigger = mode;
        self
    }

    /// Turn panics in the policy provider, classifiers and budgets into
    /// errors instead of unwinding into the caller. The operation's own
    /// panics always propagate.
    pub fn recover_panics(mut self, recover: bool) -> Self {
        self.recover_panics = recover;
        self
    }

    /// The clock that stamps timelines (default: tokio time).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.time.set_clock(Arc::new(clock));
        self
    }

    /// The sleeper that waits out backoffs (default: `tokio::time::sleep`).
    pub fn sleeper(mut self, sleeper: impl Sleeper) -> Self {
        self.time.set_sleeper(Arc::new(sleeper));
        self
    }

    /// Seeds the jitter random stream, for reproducible tests.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The most distinct keys called without a call site (a string or a
    /// [`PolicyKey`] passed to [`Executor::call`]) that get per-key state:
    /// a cached resolution, the provider's answer (and a remote provider's
    /// fetch), a circuit breaker, a latency tracker. Default:
    /// [`DEFAULT_MAX_KEYS`](Self::DEFAULT_MAX_KEYS); `usize::MAX` turns
    /// the guard off.
    ///
    /// Keys select policies and index long-lived state, so they must have
    /// low cardinality; a key built from request data
    /// (`executor.call(format!("users.{id}"), ..)`) would grow that state
    /// without bound. Once `max` keys are admitted, a call with any other
    /// key does what [`key_overflow`](Self::key_overflow) says (default: it
    /// runs under `recourse.overflow`), is counted in
    /// [`Executor::key_overflows`] and says so on its timeline
    /// (`key_overflow` = the key it was called with); [`KeyOverflow`] says
    /// which key its timeline and observer events name. Admitted keys are
    /// never evicted and keep working. A key counts once admitted, before
    /// the provider is asked about it, whatever its resolution gives
    /// (a provider error included).
    ///
    /// The check runs only when a key is not in the executor's cache yet
    /// (no lock, no allocation), so a call of a known key costs what it
    /// did; keys of `#[recourse]`
    /// functions and `recourse::key!` are written in the code, bounded by
    /// it, and cached by their call site: they are exempt (neither counted
    /// nor refused). So are [`Executor::latency`] and
    /// [`Executor::policy_for`], which the application calls itself. The cap
    /// is per executor: registries shared between executors
    /// ([`circuits`](Self::circuits)) hold the keys of all of them.
    ///
    /// ```
    /// use recourse::Executor;
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let executor = Executor::builder().max_keys(2).build();
    /// for user in ["users.1", "users.2", "users.3"] {
    ///     let (result, timeline) =
    ///         recourse::capture(executor.call(user.to_owned(), || async { Ok::<_, std::io::Error>(()) })).await;
    ///     assert!(result.is_ok());
    ///     if user == "users.3" {
    ///         // One key too many: it ran under the fold key.
    ///         assert_eq!(timeline.key.to_string(), "recourse.overflow");
    ///         assert_eq!(timeline.attributes.get("key_overflow"), Some("users.3"));
    ///     }
    /// }
    /// assert_eq!((executor.key_count(), executor.key_overflows()), (2, 1));
    /// # }
    /// ```
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// What a call does when its key would be one distinct key too many
    /// (see [`max_keys`](Self::max_keys)). Default: fold into
    /// [`KeyOverflow::DEFAULT_FOLD_KEY`] (`recourse.overflow`).
    ///
    /// Folding is the default because the guard exists to keep a process
    /// healthy: a call refused for its key's name would turn a naming
    /// mistake into an outage, while a folded call still runs, under a
    /// policy you choose for the fold key (by default the default policy,
    /// which has no breaker or hedging, so folded keys share no state that
    /// could fail one of them for another's sake), and is counted and
    /// marked. Reject where a wrong key is better found by failing calls
    /// (tests, strict services). With a fold key whose policy enables a
    /// breaker, every folded key shares that breaker.
    ///
    /// ```
    /// use recourse::executor::KeyOverflow;
    /// use recourse::{Error, Executor};
    ///
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let executor = Executor::builder().max_keys(1).key_overflow(KeyOverflow::Reject).build();
    /// let first: Result<(), Error> = executor.call("users.1".to_owned(), || async { Ok(()) }).await;
    /// assert!(first.is_ok());
    /// let second: Result<(), Error> = executor.call("users.2".to_owned(), || async { Ok(()) }).await;
    /// assert!(matches!(second, Err(Error::KeyOverflow { max_keys: 1, .. })));
    /// assert_eq!(executor.key_overflows(), 1);
    /// # }
    /// ```
    pub fn key_overflow(mut self, overflow: KeyOverflow) -> Self {
        self.key_overflow = overflow;
        self
    }

    /// The crate's checked catalog (`recourse::catalog!()`): its policies
    /// become the executor's base layer (below the builder's policies and
    /// the provider), and [`try_build`](Self::try_build) checks that every
    /// classifier, custom budget and hedge trigger it declares is
    /// registered.
    ///
    /// ```ignore
    /// let executor = recourse::Executor::builder().catalog(recourse::catalog!()).try_build()?;
    /// ```
    pub fn catalog(mut self, catalog: &'static Catalog) -> Self {
        self.catalog = Some(catalog);
        self
    }

    /// Builds the executor, or names every classifier, custom budget and
    /// hedge trigger the catalog (see [`catalog`](Self::catalog)) declares
    /// and the builder did not register, and every budget it declares
    /// that cannot be created here: a forgotten registration or a missing
    /// Redis URL is found at start-up, not in an incident.
    ///
    /// A `redis_token_bucket` the builder does not register itself is
    /// created here: it needs recourse's `redis` feature, and the
    /// environment variable its `url_env` names must hold a Redis URL.
    pub fn try_build(self) -> Result<Executor, BuildError> {
        self.try_build_with(|var| std::env::var(var))
    }

    /// [`try_build`](Self::try_build), reading environment variables
    /// through `var`.
    fn try_build_with(self, var: impl Fn(&str) -> Result<String, std::env::VarError>) -> Result<Executor, BuildError> {
        let catalog = self.catalog;
        let executor = self.build_unchecked();
        let Some(catalog) = catalog else { return Ok(executor) };
        let inner = &executor.inner;
        let mut missing = Vec::new();
        missing.extend(
            catalog.classifiers().iter().filter(|n| inner.classifiers.get(n).is_none()).map(|n| ("classifier", *n)),
        );
        missing
            .extend(catalog.custom_budgets().iter().filter(|n| inner.budgets.get(n).is_none()).map(|n| ("budget", *n)));
        missing.extend(
            catalog.triggers().iter().filter(|n| inner.triggers.get(n).is_none()).map(|n| ("hedge trigger", *n)),
        );
        // Created now rather than on first use: this is where a missing
        // feature or URL can still be reported, and the bucket starts
        // leasing before the first call needs a token.
        let (mut unusable, mut shared) = (Vec::new(), Vec::new());
        let redis = catalog.budgets().iter().filter(|(_, decl)| matches!(decl, BudgetDecl::RedisTokenBucket { .. }));
        for (name, decl) in redis.filter(|(name, _)| inner.budgets.get(name).is_none()) {
            match catalog::redis_bucket(decl, &var) {
                Ok(bucket) => shared.push((*name, bucket)),
                Err(why) => unusable.push((*name, why)),
            }
        }
        if !missing.is_empty() || !unusable.is_empty() {
            return Err(BuildError { catalog: catalog.path(), missing, unusable });
        }
        for (name, bucket) in shared {
            inner.budgets.get_or_register(name, || bucket);
        }
        Ok(executor)
    }

    /// Builds the executor.
    ///
    /// # Panics
    ///
    /// With a [`catalog`](Self::catalog) that declares names the builder
    /// did not register, with [`try_build`](Self::try_build)'s message.
    pub fn build(self) -> Executor {
        self.try_build().unwrap_or_else(|error| panic!("{error}"))
    }

    fn build_unchecked(self) -> Executor {
        let classifiers = self.classifiers.unwrap_or_else(|| Arc::new(Registry::with_builtins()));
        for (name, classifier) in self.extra_classifiers {
            classifiers.register_arc(&name, classifier);
        }
        let budgets = self.budgets.unwrap_or_else(|| Arc::new(budget::Registry::with_builtins()));
        for (name, budget) in self.extra_budgets {
            let _ = budgets.try_register(&name, budget);
        }
        let triggers = self.triggers.unwrap_or_else(|| Arc::new(hedge::Registry::with_builtins()));
        for (name, trigger) in self.extra_triggers {
            triggers.register(&name, SharedTrigger(trigger));
        }
        let observer: Option<Arc<dyn Observer>> = match self.observers.len() {
            0 => None,
            _ => Some(Arc::new(self.observers)),
        };
        let provider_changes = self.provider.is_some();
        // The catalog, when given, is the bottom layer and guards the
        // others: file or remote policies for keys it does not declare are
        // rejected.
        let provider: Arc<dyn PolicyProvider> = match (self.provider, self.catalog) {
            (None, None) => Arc::new(self.policies),
            // Asked for its generation on every call: no layer around it.
            (Some(provider), None) if self.policies.is_empty() => provider,
            (provider, catalog) => {
                let mut layered = LayeredProvider::new();
                if !self.policies.is_empty() {
                    layered = layered.layer(self.policies);
                }
                if let Some(provider) = provider {
                    layered = layered.layer_arc(provider);
                }
                if let Some(catalog) = catalog {
                    layered = layered.catalog(catalog);
                }
                Arc::new(layered)
            }
        };
        let mut single = Policy::zero(PolicyKey::default());
        single.retry.max_attempts = 1;
        Executor {
            inner: Arc::new(Inner {
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                budgets,
                circuits: self.circuits.unwrap_or_default(),
                triggers,
                trackers: hedge::Trackers::default(),
                fixed_delay: Arc::new(hedge::FixedDelay::default()),
                observer,
                provider,
                provider_changes,
                classifiers,
                default_classifier: if self.inside.is_empty() {
                    self.default_classifier
                } else {
                    self.inside.before(self.default_classifier)
                },
                missing_policy: self.missing_policy,
                missing_classifier: self.missing_classifier,
                missing_budget: self.missing_budget,
                missing_trigger: self.missing_trigger,
                recover_panics: self.recover_panics,
                time: self.time,
                rng: self.seed.map_or_else(Rng::from_entropy, Rng::new),
                keys: resolve::Keys::new(self.max_keys, self.key_overflow),
                observer_panics: std::sync::atomic::AtomicU64::new(0),
                default_policy: Arc::new(Policy::default_for(PolicyKey::default())),
                single_attempt_policy: Arc::new(single.normalized()),
            }),
        }
    }
}

impl fmt::Debug for ExecutorBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecutorBuilder").finish_non_exhaustive()
    }
}

/// A trigger handed to the builder, registered by value.
struct SharedTrigger(Arc<dyn HedgeTrigger>);

impl HedgeTrigger for SharedTrigger {
    fn should_spawn(&self, state: &hedge::HedgeState<'_>) -> hedge::TriggerDecision {
        self.0.should_spawn(state)
    }

    fn uses_latency(&self) -> bool {
        self.0.uses_latency()
    }
}

static GLOBAL: OnceLock<Executor> = OnceLock::new();

/// Executor ids, so a call site's cache never confuses two executors.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Installs the process-wide executor used by [`call`](crate::call) and
/// `#[recourse]` functions without an `executor = ...` argument.
///
/// Succeeds once, before the global executor is first used; afterwards it
/// hands the executor back.
///
/// ```
/// let executor = recourse::Executor::builder().recover_panics(true).build();
/// assert!(recourse::install(executor).is_ok());
/// assert!(recourse::global().recovers_panics());
/// assert!(recourse::install(recourse::Executor::builder().build()).is_err());
/// ```
pub fn install(executor: Executor) -> Result<(), Executor> {
    let mut slot = Some(executor);
    GLOBAL.get_or_init(|| slot.take().unwrap_or_else(|| Executor::builder().build()));
    slot.map_or(Ok(()), Err)
}

/// The process-wide executor: the one [`install`]ed, else a default
/// executor (built-in classifiers, `auto` as default classifier, every key
/// on its catalog or default policy), created on first use.
pub fn global() -> &'static Executor {
    GLOBAL.get_or_init(|| Executor::builder().build())
}

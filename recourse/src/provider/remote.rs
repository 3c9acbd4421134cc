//! [`RemoteProvider`]: policies fetched from a control plane over HTTP
//! (the user-facing documentation is on the type).
//!
//! How it works. Answers live in one [`State`] behind an `ArcSwap`: the
//! common path of [`PolicyProvider::policy`] is one load and a map lookup.
//! Everything else goes through the book (a `Mutex<HashMap<Target,
//! Slot>>`, never taken on the common path and never held across an
//! await): per target (a key, or the whole set) the fetch in flight (a
//! [`Flight`] that misses and refreshes join: request coalescing) and the
//! target's one task, which fetches, lands the result ([`Shared::land`]:
//! new state, generation bumped only when what callers see changed), sleeps
//! out the TTL and fetches again. Tasks hold the provider weakly, so they
//! end when it is dropped (its `Drop` also aborts them); a task superseded
//! by a refresh (its `epoch` is old) stops at its next step; a fetch whose
//! task is dropped before it lands ([`InFlight`]'s `Drop`) releases its
//! waiters with an error, so a refresh never hangs.

use std::collections::{HashMap, HashSet};
use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::task::{Poll, Waker};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use super::{PolicyProvider, ProviderError, ProviderErrorKind};
use crate::policy::json;
use crate::policy::{Policy, PolicyKey, PolicySource, validate_key};

/// The placeholder a per-key URL contains.
const KEY_PLACEHOLDER: &str = "{key}";
/// The longest failure text kept (a hostile body's messages are cut).
const MAX_ERROR_CHARS: usize = 1024;
/// The most decoding problems listed in one failure.
const MAX_PROBLEMS: usize = 5;

/// Policies fetched as JSON from a control plane over HTTP, with time to
/// live, request coalescing and last-known-good.
///
/// The control plane serves JSON documents in the Go original's layout
/// ([`json`](crate::policy::json)): one per key when the URL contains
/// `{key}` (`GET` with the key substituted), else one holding the whole
/// policy set (one policy, an array, or `{"policies": [...]}`), where a key
/// the set does not hold is not found.
///
/// Asking is synchronous and never waits for the network:
///
/// * a key already fetched is answered from memory, lock-free, whether its
///   answer is a policy or "not found";
/// * a key never fetched starts one background fetch (concurrent misses
///   share it) and is answered at once, as "not configured here", so the
///   next layer (a file, the compiled catalog, the default) serves the
///   call; when the fetch lands, the provider's
///   [`generation`](PolicyProvider::generation) moves and running call
///   sites pick the new policy up on their next call;
/// * every known key (or the set) is fetched again in the background when
///   its time to live runs out (`ttl` after a policy, `negative_ttl` after
///   a 404 or a failure), and the current answer is served meanwhile;
/// * when a fetch fails (timeout, connection refused, a status other than
///   2xx and 404, a body that is not UTF-8 JSON, not a valid policy, the
///   policy of another key, or larger than `max_body_bytes`) the last
///   policy fetched keeps being served, marked
///   [`PolicySource::LastKnownGood`] (`lkg`) with the failure as its
///   [`Metadata::error`](crate::policy::Metadata::error) (`policy_error` on
///   timelines,
///   [`Observer::on_policy_error`](crate::observe::Observer::on_policy_error)),
///   until a fetch succeeds again.
///
/// Fetched policies are [normalized](crate::policy::Policy::normalize) like
/// any other: out-of-range values are clamped and listed in
/// `meta.normalization`.
///
/// | the key's state | answer | with `authoritative(true)` |
/// |---|---|---|
/// | a policy fetched (or last known good) | `Ok(Some(policy))` | the same |
/// | 404 (a set: not in the set) | `Ok(None)` | `Err`, [`NotFound`](ProviderErrorKind::NotFound) |
/// | never fetched (the fetch is started) | `Ok(None)` | `Err`, [`Unavailable`](ProviderErrorKind::Unavailable) |
/// | every fetch failed so far | `Ok(None)` | `Err`, [`FetchFailed`](ProviderErrorKind::FetchFailed) |
///
/// A service that wants the control plane's answer from its first call
/// warms the provider up with [`refresh`](Self::refresh) (or
/// [`refresh_all`](Self::refresh_all) for a policy set) before serving.
/// Background fetches run on the tokio runtime the provider was built in
/// (or the one given to the builder's `runtime`) and stop when the provider
/// is dropped. It is not [`Clone`]: share it as an `Arc<RemoteProvider>`
/// (itself a [`PolicyProvider`]) to keep a handle for refreshing.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// use recourse::Executor;
/// use recourse::policy::Policy;
/// use recourse::provider::{LayeredProvider, RemoteProvider, StaticProvider};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let remote = Arc::new(
///     RemoteProvider::builder("http://control-plane.internal/policies/{key}")
///         .ttl(Duration::from_secs(30))
///         .timeout(Duration::from_secs(1))
///         .build()?,
/// );
/// // Warm up: the first calls run with the control plane's policy.
/// remote.refresh("users.Get").await?;
///
/// // The control plane over the policies the service ships with.
/// let shipped = StaticProvider::new().with(Policy::builder("users.Get").max_attempts(2).build());
/// let executor = Executor::builder()
///     .provider(LayeredProvider::new().layer(Arc::clone(&remote)).layer(shipped))
///     .build();
/// let user: Result<&str, std::io::Error> = executor.call("users.Get", || async { Ok("ada") }).await;
/// # let _ = user;
/// # Ok(())
/// # }
/// ```
pub struct RemoteProvider {
    shared: Arc<Shared>,
}

/// Settings of a [`RemoteProvider`]; made by [`RemoteProvider::builder`].
pub struct RemoteProviderBuilder {
    url: String,
    ttl: Duration,
    negative_ttl: Duration,
    timeout: Duration,
    max_body_bytes: usize,
    client: Option<reqwest::Client>,
    authoritative: bool,
    runtime: Option<Handle>,
}

/// Why a [`RemoteProvider`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RemoteError {
    /// No tokio runtime to run the fetches on.
    #[error(
        "recourse: RemoteProvider needs a tokio runtime for its background fetches: build it inside one, or pass `.runtime(handle)`"
    )]
    NoRuntime,
    /// The URL is not an absolute `http` or `https` URL.
    #[error("recourse: RemoteProvider URL {url:?} is invalid: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting is out of range.
    #[error("recourse: RemoteProvider setting `{setting}` must be above zero")]
    Setting {
        /// The builder method's name.
        setting: &'static str,
    },
    /// The default HTTP client could not be built.
    #[error("recourse: RemoteProvider could not build its HTTP client")]
    Client(#[source] reqwest::Error),
}

impl RemoteProvider {
    /// Starts a provider fetching from `url`: with `{key}` in it, one
    /// document per key (`GET` with the key substituted, e.g.
    /// `http://cp/policies/{key}`); without, one document holding every
    /// policy (one policy, an array, or `{"policies": [...]}`), where a key
    /// the set does not hold is not found.
    pub fn builder(url: impl Into<String>) -> RemoteProviderBuilder {
        RemoteProviderBuilder {
            url: url.into(),
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            max_body_bytes: 1 << 20,
            client: None,
            authoritative: false,
            runtime: None,
        }
    }

    /// Fetches `key`'s policy now (or waits for the fetch already in
    /// flight) and returns what was fetched: the policy, `None` when the
    /// control plane does not know the key, or the failure
    /// ([`ProviderErrorKind::FetchFailed`], with the cause as its source)
    /// even when a last known good policy keeps being served.
    ///
    /// The answer is stored as a background fetch's would be; the next
    /// background refresh is scheduled from it.
    pub async fn refresh(&self, key: impl Into<PolicyKey>) -> Result<Option<Arc<Policy>>, ProviderError> {
        let key = &key.into();
        let target = self.shared.target(key).map_err(invalid_key)?;
        let flight = self.shared.fetch_now(&target);
        flight.wait().await.map_err(fetch_failed)?;
        match self.shared.state.load().view(key, self.shared.config.per_key) {
            View::Policy(policy) => Ok(Some(Arc::clone(policy))),
            View::Failed(why) => Err(fetch_failed(Arc::clone(why))),
            View::Absent | View::Miss => Ok(None),
        }
    }

    /// Fetches the policy set now (or every key fetched so far, with a
    /// per-key URL), waiting for the fetches in flight; the first failure
    /// is returned.
    pub async fn refresh_all(&self) -> Result<(), ProviderError> {
        let targets: Vec<Target> = if self.shared.config.per_key {
            let mut keys: HashSet<PolicyKey> = self.shared.state.load().keys.keys().cloned().collect();
            keys.extend(self.shared.book().keys().filter_map(|target| match target {
                Target::Key(key) => Some(key.clone()),
                Target::Set => None,
            }));
            keys.into_iter().map(Target::Key).collect()
        } else {
            vec![Target::Set]
        };
        // Start every fetch, then wait: they run concurrently.
        let flights: Vec<Arc<Flight>> = targets.iter().map(|target| self.shared.fetch_now(target)).collect();
        let mut first = Ok(());
        for flight in flights {
            if let (Err(why), Ok(())) = (flight.wait().await, &first) {
                first = Err(fetch_failed(why));
            }
        }
        first
    }
}

impl RemoteProviderBuilder {
    /// How long a fetched policy is served before it is fetched again in
    /// the background (default 60 s, as the Go original).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long a 404 (or a failure) stands before the key is fetched
    /// again (default 10 s, as the Go original).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// The limit on one fetch, connection and body included (default 2 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The largest response body accepted, announced or streamed
    /// (default 1 MiB); a larger one is a failed fetch.
    pub fn max_body_bytes(mut self, limit: usize) -> Self {
        self.max_body_bytes = limit;
        self
    }

    /// The HTTP client to fetch with (default: a new `reqwest::Client`,
    /// which honours the `HTTP_PROXY` family of variables).
    ///
    /// An `https` URL needs TLS in reqwest: the `remote-tls` feature brings
    /// rustls, and the default client trusts Mozilla's roots. For a control
    /// plane whose certificate comes from a private authority, pass a client
    /// that trusts it (`reqwest::ClientBuilder::add_root_certificate`, and
    /// `tls_built_in_root_certs(false)` to trust nothing else).
    pub fn client(mut self, client: reqwest::Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Whether the control plane has the last word (default `false`).
    ///
    /// Not authoritative, a key the control plane does not know (or has not
    /// answered yet, or cannot serve) is "not configured here" (`Ok(None)`)
    /// and the next layer answers. Authoritative, it is an error (not
    /// found, unavailable, fetch failed) and the executor's missing-policy
    /// mode decides, as with the Go original's `RemoteProvider`.
    pub fn authoritative(mut self, authoritative: bool) -> Self {
        self.authoritative = authoritative;
        self
    }

    /// The tokio runtime the background fetches run on (default: the
    /// runtime `build` is called in).
    pub fn runtime(mut self, runtime: Handle) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// The provider. Nothing is fetched until a key is asked for or
    /// refreshed.
    pub fn build(self) -> Result<RemoteProvider, RemoteError> {
        for (setting, zero) in [
            ("ttl", self.ttl.is_zero()),
            ("negative_ttl", self.negative_ttl.is_zero()),
            ("timeout", self.timeout.is_zero()),
            ("max_body_bytes", self.max_body_bytes == 0),
        ] {
            if zero {
                return Err(RemoteError::Setting { setting });
            }
        }
        let per_key = self.url.contains(KEY_PLACEHOLDER);
        check_url(&self.url)?;
        let runtime = match self.runtime {
            Some(runtime) => runtime,
            None => Handle::try_current().map_err(|_| RemoteError::NoRuntime)?,
        };
        let client = match self.client {
            Some(client) => client,
            None => default_client().build().map_err(RemoteError::Client)?,
        };
        let config = Config {
            url: self.url,
            per_key,
            ttl: self.ttl,
            negative_ttl: self.negative_ttl,
            timeout: self.timeout,
            max_body_bytes: self.max_body_bytes,
            client,
            authoritative: self.authoritative,
        };
        let shared = Shared {
            config: Arc::new(config),
            state: ArcSwap::from_pointee(State::default()),
            generation: AtomicU64::new(0),
            book: Mutex::new(HashMap::new()),
            runtime,
        };
        Ok(RemoteProvider { shared: Arc::new(shared) })
    }
}

/// The client a provider makes when given none: with `remote-tls`, HTTPS
/// on rustls even when another crate turns on reqwest's native TLS.
fn default_client() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder();
    #[cfg(feature = "remote-tls")]
    let builder = builder.use_rustls_tls();
    builder
}

/// The URL with a sample key substituted must be an absolute HTTP URL.
fn check_url(url: &str) -> Result<(), RemoteError> {
    let invalid = |reason: String| RemoteError::Url { url: url.to_owned(), reason };
    let parsed = reqwest::Url::parse(&url.replace(KEY_PLACEHOLDER, "svc.Op")).map_err(|e| invalid(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" => Ok(()),
        other => Err(invalid(format!("the scheme is {other:?}, not \"http\" or \"https\""))),
    }
}

impl PolicyProvider for RemoteProvider {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        let shared = &self.shared;
        // The common path: one lock-free load, no allocation.
        let answer = match shared.state.load().view(key, shared.config.per_key) {
            View::Miss => None,
            view => Some(shared.respond(&view)),
        };
        if let Some(answer) = answer {
            return answer;
        }
        match shared.target(key) {
            Ok(target) => shared.miss(key, &target),
            Err(problem) if shared.config.authoritative => Err(invalid_key(problem)),
            Err(_) => Ok(None),
        }
    }

    fn generation(&self) -> u64 {
        self.shared.generation.load(Ordering::Acquire)
    }
}

impl fmt::Debug for RemoteProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.shared.config;
        f.debug_struct("RemoteProvider")
            .field("url", &config.url)
            .field("per_key", &config.per_key)
            .field("authoritative", &config.authoritative)
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for RemoteProviderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteProviderBuilder")
            .field("url", &self.url)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("authoritative", &self.authoritative)
            .finish_non_exhaustive()
    }
}

/// What the provider was built with.
struct Config {
    url: String,
    per_key: bool,
    ttl: Duration,
    negative_ttl: Duration,
    timeout: Duration,
    max_body_bytes: usize,
    client: reqwest::Client,
    authoritative: bool,
}

/// The provider's state; background tasks hold it weakly.
struct Shared {
    config: Arc<Config>,
    /// Every answer, read without a lock.
    state: ArcSwap<State>,
    /// Bumped when an answer changes.
    generation: AtomicU64,
    /// Fetches in flight and background tasks, per target; taken on a
    /// miss, a refresh and a landing, never on the common path.
    book: Mutex<HashMap<Target, Slot>>,
    runtime: Handle,
}

/// What one fetch gets: one key's document, or the whole set.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Target {
    Key(PolicyKey),
    Set,
}

/// A target's fetch in flight and its task.
#[derive(Default)]
struct Slot {
    /// The fetch in flight: misses and refreshes join it.
    flight: Option<Arc<Flight>>,
    /// The target's task (fetching, or waiting for the next refresh),
    /// aborted when the provider is dropped or a refresh comes first.
    task: Option<AbortHandle>,
    /// Which task is the target's: a superseded one stops.
    epoch: u64,
}

/// Every answer the control plane gave.
#[derive(Default)]
struct State {
    /// Per key: what was fetched. With a policy set, the set's policies.
    keys: HashMap<PolicyKey, Answer>,
    /// With a policy set: how keys it does not hold are answered.
    set: SetStatus,
}

#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// A policy (source `remote`, or `lkg` with the failure as its error).
    Found(Arc<Policy>),
    /// 404: the control plane does not know the key.
    Missing,
    /// Every fetch so far failed.
    Failed(Arc<str>),
}

#[derive(Debug, Clone, PartialEq, Default)]
enum SetStatus {
    /// Never fetched.
    #[default]
    Unknown,
    /// Fetched: keys it does not hold are not found.
    Loaded,
    /// Every fetch so far failed.
    Failing(Arc<str>),
}

/// What a key's answer is, borrowed from the state.
enum View<'a> {
    Policy(&'a Arc<Policy>),
    Absent,
    Miss,
    Failed(&'a Arc<str>),
}

/// What callers see of a [`View`], for deciding whether an answer changed.
#[derive(PartialEq)]
enum Seen<'a> {
    Policy(&'a Policy),
    NotConfigured,
    Error(ProviderErrorKind),
}

impl State {
    fn view(&self, key: &PolicyKey, per_key: bool) -> View<'_> {
        match self.keys.get(key) {
            Some(answer) => answer_view(answer),
            None if per_key => View::Miss,
            None => match &self.set {
                SetStatus::Unknown => View::Miss,
                SetStatus::Loaded => View::Absent,
                SetStatus::Failing(why) => View::Failed(why),
            },
        }
    }

    /// The state after `fetched` landed for `target`.
    fn with(&self, target: &Target, fetched: Fetched) -> State {
        let mut keys = self.keys.clone();
        let mut set = self.set.clone();
        match (target, fetched) {
            (Target::Key(key), Fetched::Policy(policy)) => {
                keys.insert(key.clone(), Answer::Found(policy));
            }
            (Target::Key(key), Fetched::NotFound) => {
                keys.insert(key.clone(), Answer::Missing);
            }
            (Target::Key(key), Fetched::Failed(why)) => {
                let answer = match keys.get(key) {
                    Some(Answer::Found(good)) => Answer::Found(last_known_good(good, &why)),
                    _ => Answer::Failed(why),
                };
                keys.insert(key.clone(), answer);
            }
            (_, Fetched::Set(policies)) => {
                keys = policies;
                set = SetStatus::Loaded;
            }
            (Target::Set, Fetched::Failed(why)) => {
                for answer in keys.values_mut() {
                    if let Answer::Found(good) = answer {
                        *good = last_known_good(good, &why);
                    }
                }
                if set != SetStatus::Loaded {
                    set = SetStatus::Failing(why);
                }
            }
            // A set fetch never yields these (see `fetch`).
            (Target::Set, Fetched::Policy(_) | Fetched::NotFound) => {}
        }
        State { keys, set }
    }
}

fn answer_view(answer: &Answer) -> View<'_> {
    match answer {
        Answer::Found(policy) => View::Policy(policy),
        Answer::Missing => View::Absent,
        Answer::Failed(why) => View::Failed(why),
    }
}

/// `good`, served while fetches fail with `why`.
fn last_known_good(good: &Arc<Policy>, why: &Arc<str>) -> Arc<Policy> {
    let mut policy = Policy::clone(good);
    policy.meta.source = PolicySource::LastKnownGood;
    policy.meta.error = Some(Arc::clone(why));
    Arc::new(policy)
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, HashMap<Target, Slot>> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What fetches `key`'s answer (per-key keys must be valid: they go
    /// into the URL).
    fn target(&self, key: &PolicyKey) -> Result<Target, KeyProblem> {
        if !self.config.per_key {
            return Ok(Target::Set);
        }
        let text = key.to_string();
        match validate_key(&text) {
            Ok(()) => Ok(Target::Key(key.clone())),
            Err(error) => Err(KeyProblem(format!("\"{text}\" is not fetched from the control plane: {error}"))),
        }
    }

    fn respond(&self, view: &View<'_>) -> Result<Option<Arc<Policy>>, ProviderError> {
        let authoritative = self.config.authoritative;
        match view {
            View::Policy(policy) => Ok(Some(Arc::clone(policy))),
            View::Absent if authoritative => Err(ProviderError::new(ProviderErrorKind::NotFound)),
            View::Miss if authoritative => Err(ProviderError::new(ProviderErrorKind::Unavailable).with_source(
                FetchError(format!("no answer from {} yet; the first fetch is in flight", self.config.url).into()),
            )),
            View::Failed(why) if authoritative => Err(fetch_failed(Arc::clone(why))),
            View::Absent | View::Miss | View::Failed(_) => Ok(None),
        }
    }

    /// What callers see of `view`.
    fn seen<'a>(&self, view: &View<'a>) -> Seen<'a> {
        match (view, self.config.authoritative) {
            (View::Policy(policy), _) => Seen::Policy(policy),
            (_, false) => Seen::NotConfigured,
            (View::Absent, true) => Seen::Error(ProviderErrorKind::NotFound),
            (View::Miss, true) => Seen::Error(ProviderErrorKind::Unavailable),
            (View::Failed(_), true) => Seen::Error(ProviderErrorKind::FetchFailed),
        }
    }

    /// A key with no answer yet: start (or join) its fetch and answer for
    /// now.
    #[cold]
    fn miss(self: &Arc<Self>, key: &PolicyKey, target: &Target) -> Result<Option<Arc<Policy>>, ProviderError> {
        let started = {
            let mut book = self.book();
            // The fetch may have landed since the lock-free look.
            let state = self.state.load();
            match state.view(key, self.config.per_key) {
                View::Miss => self.start(&mut book, target).0,
                view => return self.respond(&view),
            }
        };
        if let Some(fetch) = started {
            self.spawn(fetch);
        }
        self.respond(&View::Miss)
    }

    /// The fetch of `target` in flight, or a new one started now (a task
    /// waiting to refresh it later is superseded).
    fn fetch_now(self: &Arc<Self>, target: &Target) -> Arc<Flight> {
        let (started, flight) = self.start(&mut self.book(), target);
        if let Some(fetch) = started {
            self.spawn(fetch);
        }
        flight
    }

    /// The fetch of `target` in flight, or a new one registered (returned
    /// as well, for the caller to spawn once the lock is released: a task
    /// dropped at once, on a runtime shutting down, takes the lock to clean
    /// up).
    fn start(self: &Arc<Self>, book: &mut HashMap<Target, Slot>, target: &Target) -> (Option<InFlight>, Arc<Flight>) {
        let slot = book.entry(target.clone()).or_default();
        if let Some(flight) = &slot.flight {
            return (None, Arc::clone(flight));
        }
        if let Some(task) = slot.task.take() {
            task.abort();
        }
        slot.epoch += 1;
        let flight = Arc::new(Flight::default());
        slot.flight = Some(Arc::clone(&flight));
        let fetch = InFlight {
            shared: Arc::downgrade(self),
            target: target.clone(),
            epoch: slot.epoch,
            flight: Arc::clone(&flight),
            landed: false,
        };
        (Some(fetch), flight)
    }

    fn spawn(&self, fetch: InFlight) {
        let target = fetch.target.clone();
        let epoch = fetch.epoch;
        let task = self.runtime.spawn(run(Arc::clone(&self.config), fetch));
        let mut book = self.book();
        if let Some(slot) = book.get_mut(&target)
            && slot.epoch == epoch
        {
            slot.task = Some(task.abort_handle());
        }
    }

    /// The next fetch of `target` for the task of `epoch`, unless that
    /// task was superseded or a fetch is already in flight.
    fn claim(self: &Arc<Self>, target: &Target, epoch: u64) -> Option<InFlight> {
        let mut book = self.book();
        let slot = book.get_mut(target)?;
        if slot.epoch != epoch || slot.flight.is_some() {
            return None;
        }
        let flight = Arc::new(Flight::default());
        slot.flight = Some(Arc::clone(&flight));
        Some(InFlight { shared: Arc::downgrade(self), target: target.clone(), epoch, flight, landed: false })
    }

    /// Stores what a fetch brought, bumps the generation if an answer
    /// changed, and tells the waiters. Returns how long until the next
    /// fetch of the target.
    fn land(&self, guard: &mut InFlight, fetched: Fetched) -> Duration {
        let config = &self.config;
        let (wait, outcome) = match &fetched {
            Fetched::Policy(_) | Fetched::Set(_) => (config.ttl, Ok(())),
            Fetched::NotFound => (config.negative_ttl, Ok(())),
            Fetched::Failed(why) => (config.negative_ttl, Err(Arc::clone(why))),
        };
        {
            let mut book = self.book();
            let old = self.state.load_full();
            let new = old.with(&guard.target, fetched);
            let changed = match &guard.target {
                Target::Key(key) => self.changed(&old, &new, [key]),
                Target::Set => {
                    let keys = old.keys.keys().chain(new.keys.keys());
                    self.seen(&set_view(&old.set)) != self.seen(&set_view(&new.set)) || self.changed(&old, &new, keys)
                }
            };
            self.state.store(Arc::new(new));
            if changed {
                self.generation.fetch_add(1, Ordering::Release);
            }
            if let Some(slot) = book.get_mut(&guard.target)
                && slot.flight.as_ref().is_some_and(|flight| Arc::ptr_eq(flight, &guard.flight))
            {
                slot.flight = None;
            }
        }
        guard.landed = true;
        guard.flight.complete(outcome);
        wait
    }

    /// Whether callers would see a different answer for any of `keys`.
    fn changed<'k>(&self, old: &State, new: &State, keys: impl IntoIterator<Item = &'k PolicyKey>) -> bool {
        let per_key = self.config.per_key;
        keys.into_iter().any(|key| self.seen(&old.view(key, per_key)) != self.seen(&new.view(key, per_key)))
    }

    /// A fetch that ended without landing (its task was dropped).
    fn abandon(&self, target: &Target, epoch: u64) {
        let mut book = self.book();
        if let Some(slot) = book.get_mut(target)
            && slot.epoch == epoch
        {
            slot.flight = None;
            slot.task = None;
        }
    }
}

fn set_view(set: &SetStatus) -> View<'_> {
    match set {
        SetStatus::Unknown => View::Miss,
        SetStatus::Loaded => View::Absent,
        SetStatus::Failing(why) => View::Failed(why),
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let book = self.book.get_mut().unwrap_or_else(PoisonError::into_inner);
        for slot in book.values_mut() {
            if let Some(task) = slot.task.take() {
                task.abort();
            }
        }
    }
}

/// A fetch in flight. Dropped before it landed (task aborted, runtime shut
/// down), it clears its slot and releases its waiters with an error.
struct InFlight {
    shared: Weak<Shared>,
    target: Target,
    epoch: u64,
    flight: Arc<Flight>,
    landed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.landed {
            return;
        }
        if let Some(shared) = self.shared.upgrade() {
            shared.abandon(&self.target, self.epoch);
        }
        self.flight.complete(Err("the fetch was cancelled (the provider was dropped or its runtime shut down)".into()));
    }
}

/// A target's task: fetch, land, wait out the time to live, fetch again;
/// until the provider is dropped or the task is superseded.
async fn run(config: Arc<Config>, first: InFlight) {
    let weak = Weak::clone(&first.shared);
    let target = first.target.clone();
    let epoch = first.epoch;
    let mut next = Some(first);
    loop {
        let Some(mut guard) = next.take() else { return };
        let fetched = fetch(&config, &guard.target).await;
        // Held only while storing: a dropped provider stops its tasks.
        let Some(shared) = weak.upgrade() else { return };
        let wait = shared.land(&mut guard, fetched);
        drop(shared);
        drop(guard);
        tokio::time::sleep(wait).await;
        next = weak.upgrade().and_then(|shared| shared.claim(&target, epoch));
    }
}

/// One fetch's completion, awaited by refreshes.
#[derive(Default)]
struct Flight {
    inner: Mutex<FlightInner>,
}

#[derive(Default)]
struct FlightInner {
    outcome: Option<Result<(), Arc<str>>>,
    waiters: Vec<Waker>,
}

impl Flight {
    fn lock(&self) -> MutexGuard<'_, FlightInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn complete(&self, outcome: Result<(), Arc<str>>) {
        let waiters = {
            let mut inner = self.lock();
            if inner.outcome.is_some() {
                return;
            }
            inner.outcome = Some(outcome);
            std::mem::take(&mut inner.waiters)
        };
        waiters.into_iter().for_each(Waker::wake);
    }

    fn wait(&self) -> impl Future<Output = Result<(), Arc<str>>> + '_ {
        std::future::poll_fn(move |cx| {
            let mut inner = self.lock();
            if let Some(outcome) = &inner.outcome {
                return Poll::Ready(outcome.clone());
            }
            if !inner.waiters.iter().any(|waiter| waiter.will_wake(cx.waker())) {
                inner.waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

/// What one fetch brought.
enum Fetched {
    Policy(Arc<Policy>),
    Set(HashMap<PolicyKey, Answer>),
    NotFound,
    Failed(Arc<str>),
}

/// Fetches `target` within the timeout; never panics on what the network
/// sends.
async fn fetch(config: &Config, target: &Target) -> Fetched {
    let url = match target {
        Target::Key(key) => config.url.replace(KEY_PLACEHOLDER, &key.to_string()),
        Target::Set => config.url.clone(),
    };
    let body = tokio::time::timeout(config.timeout, get(config, &url))
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {:?}", config.timeout)));
    let fetched = match (body, target) {
        (Ok(Some(text)), Target::Key(key)) => one_policy(key, &text).map(Fetched::Policy),
        (Ok(Some(text)), Target::Set) => policy_set(&text).map(Fetched::Set),
        (Ok(None), Target::Key(_)) => Ok(Fetched::NotFound),
        (Ok(None), Target::Set) => Err("HTTP 404 Not Found: the policy set does not exist".to_owned()),
        (Err(why), _) => Err(why),
    };
    fetched.unwrap_or_else(|why| Fetched::Failed(clip(format!("policy fetch failed: GET {url}: {why}")).into()))
}

/// The body of a 2xx answer, `None` for a 404.
async fn get(config: &Config, url: &str) -> Result<Option<String>, String> {
    let limit = config.max_body_bytes;
    let mut response = config
        .client
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|error| crate::error::sources_text(&error))?;
    let status = response.status();
    if status == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    if let Some(length) = response.content_length()
        && !usize::try_from(length).is_ok_and(|length| length <= limit)
    {
        return Err(format!("the body of {length} bytes is over the limit of {limit} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|error| crate::error::sources_text(&error))? {
        if chunk.len() > limit - body.len() {
            return Err(format!("the body is over the limit of {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map(Some).map_err(|_| "the body is not UTF-8 text".to_owned())
}

/// A per-key document: exactly one policy, for `key`.
fn one_policy(key: &PolicyKey, text: &str) -> Result<Arc<Policy>, String> {
    let decoded = json::decode(text, "body").map_err(problems)?;
    let [one] = decoded.as_slice() else {
        return Err(format!("expected one policy for \"{key}\", got {}", decoded.len()));
    };
    if let Some(named) = &one.key
        && PolicyKey::parse_owned(named) != *key
    {
        return Err(format!("asked for the policy of \"{key}\", got the policy of \"{named}\""));
    }
    Ok(Arc::new(one.spec.to_policy(key.clone(), PolicySource::Remote)))
}

/// A policy set: every policy names its key, once.
fn policy_set(text: &str) -> Result<HashMap<PolicyKey, Answer>, String> {
    let decoded = json::decode_keyed(text, "body").map_err(problems)?;
    Ok(decoded
        .into_iter()
        .map(|(key, spec)| {
            let policy = Arc::new(spec.to_policy(key.clone(), PolicySource::Remote));
            (key, Answer::Found(policy))
        })
        .collect())
}

/// The decoder's problems, the first few of them.
fn problems(problems: Vec<String>) -> String {
    let count = problems.len();
    let shown: Vec<String> = problems.into_iter().take(MAX_PROBLEMS).collect();
    let mut text = format!("invalid policy JSON: {}", shown.join("; "));
    if count > MAX_PROBLEMS {
        text = format!("{text} (and {} more)", count - MAX_PROBLEMS);
    }
    text
}

/// `text`, cut to [`MAX_ERROR_CHARS`] characters.
fn clip(mut text: String) -> String {
    if let Some((cut, _)) = text.char_indices().nth(MAX_ERROR_CHARS) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// A failed fetch, as a provider error's cause.
#[derive(Debug)]
struct FetchError(Arc<str>);

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The provider error already says "policy fetch failed".
        f.write_str(self.0.strip_prefix("policy fetch failed: ").unwrap_or(&self.0))
    }
}

impl StdError for FetchError {}

fn fetch_failed(why: Arc<str>) -> ProviderError {
    ProviderError::new(ProviderErrorKind::FetchFailed).with_source(FetchError(why))
}

/// A key that cannot go into a per-key URL.
#[derive(Debug)]
struct KeyProblem(String);

fn invalid_key(problem: KeyProblem) -> ProviderError {
    ProviderError::new(ProviderErrorKind::NotFound).with_source(FetchError(problem.0.into()))
}

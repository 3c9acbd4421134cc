//! Metrics of every call through the [`metrics`] facade (feature
//! `metrics`): install a [`MetricsObserver`] on an executor and whichever
//! recorder the application installed (a Prometheus or OpenTelemetry
//! exporter, ...) receives counters and histograms of calls, attempts,
//! budget decisions, hedges and circuit breakers.
//!
//! ```
//! use recourse::metrics::MetricsObserver;
//! use recourse::policy::Policy;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // Install the application's recorder first (for example
//! // `metrics_exporter_prometheus::PrometheusBuilder::new().install()`), so
//! // that it also receives the metrics' descriptions.
//! let executor = recourse::Executor::builder()
//!     .policy(Policy::builder("inventory.Reserve").max_attempts(3).build())
//!     .observer(MetricsObserver::new())
//!     .build();
//!
//! let reserved: Result<u32, std::io::Error> = executor.call("inventory.Reserve", || async { Ok(7) }).await;
//! assert_eq!(reserved.unwrap(), 7);
//! // recourse_calls{key="inventory.Reserve",outcome="success",reason="success"} += 1
//! // recourse_attempts{key="inventory.Reserve",outcome="success",reason="success",hedge="false"} += 1
//! // and one sample in each of the two duration histograms.
//! # }
//! ```
//!
//! # Metrics
//!
//! Names are shown with the default prefix `recourse`
//! ([`MetricsObserver::with_prefix`] changes it). Counters are named
//! without `_total`: the Prometheus exporter appends it (with
//! `PrometheusBuilder::with_recommended_naming(true)`), and OpenTelemetry
//! exporters do not use it. Durations are in seconds, from the
//! [`Timeline`]'s and [`AttemptRecord`]'s instants.
//!
//! | name | type | unit | labels | recorded |
//! |---|---|---|---|---|
//! | `recourse_calls` | counter | calls | `key`, `outcome`, `reason` | once per call, as it ends |
//! | `recourse_call_duration_seconds` | histogram | seconds | `key`, `outcome` | once per call, as it ends |
//! | `recourse_attempts` | counter | attempts | `key`, `outcome`, `reason`, `hedge` | once per attempt on the call's timeline: finished, denied by its budget, or cancelled |
//! | `recourse_attempt_duration_seconds` | histogram | seconds | `key`, `outcome` | once per attempt that ran (not for budget-denied ones) |
//! | `recourse_budget_decisions` | counter | decisions | `key`, `budget`, `outcome`, `reason` | once per budget consulted |
//! | `recourse_hedge_spawns` | counter | hedges | `key` | once per hedge launched |
//! | `recourse_hedge_cancels` | counter | attempts | `key` | once per attempt dropped because another attempt of its group decided the call |
//! | `recourse_circuit_transitions` | counter | transitions | `key`, `from`, `to` | once per state change of the key's breaker |
//!
//! | label | values |
//! |---|---|
//! | `key` | the policy key as text (`"inventory.Reserve"`) |
//! | `outcome` | calls: `success`, `failure`; attempts: `success`, `retryable`, `non_retryable`, `abort`; budget decisions: `allowed`, `denied` |
//! | `reason` | the reason code: of the attempt's classification (`op_retryable`, `http_5xx`, `hedge_cancelled`, `budget_denied`, ...), of the call's end (`success` when it succeeded, else the [`FinalError`](crate::observe::FinalError)'s reason, such as `circuit_open`), or of the budget's answer (`allowed`, `budget_denied`, `budget_not_found`, ...) |
//! | `hedge` | `true` for a hedge, `false` for a primary attempt |
//! | `budget` | the budget's name in the policy |
//! | `from`, `to` | `closed`, `open`, `half-open` |
//!
//! Labels come only from this fixed set, and their values from policy keys,
//! budget names and reason codes, all low-cardinality by contract: never an
//! error message, a policy id or anything per request. Every attempt on a
//! call's [`Timeline`] is counted once in `recourse_attempts`, so a hedge
//! that lost appears there (reason `hedge_cancelled`, outcome `abort`) as
//! well as in `recourse_hedge_cancels`.
//!
//! A scrape of the Prometheus exporter after one call that failed twice
//! and then succeeded (histogram buckets cut):
//!
//! ```text
//! recourse_calls_total{key="inventory.Reserve",outcome="success",reason="success"} 1
//! recourse_attempts_total{key="inventory.Reserve",outcome="retryable",reason="op_retryable",hedge="false"} 2
//! recourse_attempts_total{key="inventory.Reserve",outcome="success",reason="success",hedge="false"} 1
//! recourse_call_duration_seconds_count{key="inventory.Reserve",outcome="success"} 1
//! recourse_attempt_duration_seconds_count{key="inventory.Reserve",outcome="retryable"} 2
//! recourse_attempt_duration_seconds_count{key="inventory.Reserve",outcome="success"} 1
//! ```
//!
//! The runnable `prometheus` example of the workspace's examples crate
//! (`cargo run -p recourse-examples --features metrics --example
//! prometheus`) installs `metrics-exporter-prometheus` with its HTTP
//! listener, runs calls that retry, run out of budget, hedge and open a
//! breaker, and prints its own scrape.
//!
//! # Cost
//!
//! Metric names are built once, with the observer. Label values are shared
//! strings: the static ones (outcomes, `hedge`, states, reasons that are
//! `&'static str`) cost nothing, and the text of each policy key, budget
//! name and owned reason is made once and then shared by every event that
//! carries it, up to a bound on how many are kept. What remains per metric
//! recorded is the label list the `metrics` macros build, and whatever the
//! installed recorder does with it.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arc_swap::ArcSwap;
use metrics::{SharedString, Unit, counter, describe_counter, describe_histogram, histogram};

use crate::budget::BudgetDecisionEvent;
use crate::circuit::Transition;
use crate::observe::{AttemptRecord, Observer, Timeline};
use crate::policy::PolicyKey;

/// The prefix of every metric name unless [`MetricsObserver::with_prefix`]
/// says otherwise.
///
/// ```
/// use recourse::metrics::{DEFAULT_PREFIX, MetricsObserver};
///
/// assert_eq!(MetricsObserver::default().prefix(), DEFAULT_PREFIX);
/// ```
pub const DEFAULT_PREFIX: &str = "recourse";

/// How many distinct policy keys, and separately budget names and owned
/// reasons, keep their label text. Past it, each event makes its own copy:
/// label values are low-cardinality by contract, so only a misuse gets
/// there, and it then costs allocations rather than unbounded memory.
const INTERNED: usize = 1024;

/// An [`Observer`] that records every call's metrics through the
/// [`metrics`] macros, to the recorder installed when each event happens
/// (the global one, or a thread's local one).
///
/// The metrics, their labels and units are listed in the
/// [module documentation](self).
///
/// ```
/// use recourse::metrics::MetricsObserver;
///
/// let executor = recourse::Executor::builder().observer(MetricsObserver::new()).build();
/// assert!(executor.has_observer());
/// ```
pub struct MetricsObserver {
    names: Names,
    keys: Interner<PolicyKey>,
    /// Budget names and reasons that are not `&'static str`.
    texts: Interner<Box<str>>,
}

impl MetricsObserver {
    /// Metrics named `recourse_*`, described to the recorder installed now.
    ///
    /// ```
    /// use recourse::metrics::MetricsObserver;
    ///
    /// assert_eq!(MetricsObserver::new().prefix(), "recourse");
    /// ```
    pub fn new() -> Self {
        Self::from_names(Names::DEFAULT)
    }

    /// Metrics named `<prefix>_*` (`myapp_recourse_calls`, ...), described
    /// to the recorder installed now; an empty prefix gives the bare names
    /// (`calls`, ...). The prefix is used as it is: Prometheus names allow
    /// ASCII letters, digits, `_` and `:`, and its exporter replaces any
    /// other character.
    ///
    /// ```
    /// use recourse::metrics::MetricsObserver;
    ///
    /// let observer = MetricsObserver::with_prefix("checkout_recourse");
    /// assert_eq!(observer.prefix(), "checkout_recourse");
    /// # let _ = recourse::Executor::builder().observer(observer).build();
    /// ```
    pub fn with_prefix(prefix: &str) -> Self {
        if prefix == DEFAULT_PREFIX {
            return Self::new();
        }
        Self::from_names(Names::prefixed(prefix))
    }

    fn from_names(names: Names) -> Self {
        let observer = Self { names, keys: Interner::new(), texts: Interner::new() };
        observer.describe();
        observer
    }

    /// The prefix of the metric names.
    pub fn prefix(&self) -> &str {
        &self.names.prefix
    }

    /// Describes every metric (its unit and a one-line help text) to the
    /// recorder installed now. The constructors already do; call it again
    /// when the recorder is installed after the observer is built, so that
    /// an exporter can print `# HELP` lines.
    ///
    /// ```
    /// use recourse::metrics::MetricsObserver;
    ///
    /// let observer = MetricsObserver::new();
    /// // ... the application installs its recorder ...
    /// observer.describe();
    /// ```
    pub fn describe(&self) {
        let n = &self.names;
        describe_counter!(n.calls.clone(), Unit::Count, "Calls run by recourse, by how they ended.");
        describe_histogram!(
            n.call_duration.clone(),
            Unit::Seconds,
            "How long calls took, from start to end, every attempt and backoff included."
        );
        describe_counter!(n.attempts.clone(), Unit::Count, "Attempts of calls, by their classification.");
        describe_histogram!(n.attempt_duration.clone(), Unit::Seconds, "How long attempts ran.");
        describe_counter!(n.budget_decisions.clone(), Unit::Count, "Budget decisions on attempts.");
        describe_counter!(n.hedge_spawns.clone(), Unit::Count, "Hedges launched.");
        describe_counter!(
            n.hedge_cancels.clone(),
            Unit::Count,
            "Attempts dropped because another attempt of their group decided the call."
        );
        describe_counter!(n.circuit_transitions.clone(), Unit::Count, "Circuit breaker state changes.");
    }

    /// The key's label value, shared with every other event of that key.
    fn key(&self, key: &PolicyKey) -> SharedString {
        self.keys.get(key, || (key.clone(), key.to_string()))
    }

    /// A reason code as a label value: borrowed when it is static.
    #[allow(clippy::ptr_arg, reason = "whether the text is borrowed decides whether it is copied")]
    fn reason(&self, reason: &Cow<'static, str>) -> SharedString {
        match *reason {
            Cow::Borrowed(text) => SharedString::const_str(text),
            Cow::Owned(ref text) => self.text(text),
        }
    }

    fn text(&self, text: &str) -> SharedString {
        self.texts.get(text, || (text.into(), text.to_owned()))
    }

    /// Counts one attempt on the call's timeline and, when it ran, its
    /// duration.
    fn attempt(&self, key: &SharedString, record: &AttemptRecord) {
        let kind = record.outcome.kind.as_str();
        counter!(
            self.names.attempts.clone(),
            "key" => key.clone(),
            "outcome" => kind,
            "reason" => self.reason(&record.outcome.reason),
            "hedge" => if record.is_hedge { "true" } else { "false" },
        )
        .increment(1);
        // A denied attempt never ran: a zero here would drag the
        // distribution of real attempts down (DESIGN §6.8 keeps such
        // samples out of the latency tracker too).
        if record.budget_allowed {
            histogram!(self.names.attempt_duration.clone(), "key" => key.clone(), "outcome" => kind)
                .record(record.duration().as_secs_f64());
        }
    }

    fn call(&self, key: &PolicyKey, timeline: &Timeline, outcome: &'static str, reason: SharedString) {
        let key = self.key(key);
        counter!(self.names.calls.clone(), "key" => key.clone(), "outcome" => outcome, "reason" => reason).increment(1);
        if timeline.end.is_some() {
            histogram!(self.names.call_duration.clone(), "key" => key, "outcome" => outcome)
                .record(timeline.duration().as_secs_f64());
        }
    }
}

impl Default for MetricsObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MetricsObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsObserver")
            .field("prefix", &self.prefix())
            .field("keys", &self.keys.len())
            .field("texts", &self.texts.len())
            .finish_non_exhaustive()
    }
}

impl Observer for MetricsObserver {
    fn on_attempt(&self, key: &PolicyKey, record: &AttemptRecord) {
        self.attempt(&self.key(key), record);
    }

    fn on_hedge_spawn(&self, key: &PolicyKey, _record: &AttemptRecord) {
        counter!(self.names.hedge_spawns.clone(), "key" => self.key(key)).increment(1);
    }

    fn on_hedge_cancel(&self, key: &PolicyKey, record: &AttemptRecord, _reason: &str) {
        let key = self.key(key);
        counter!(self.names.hedge_cancels.clone(), "key" => key.clone()).increment(1);
        self.attempt(&key, record);
    }

    fn on_budget_decision(&self, event: &BudgetDecisionEvent) {
        counter!(
            self.names.budget_decisions.clone(),
            "key" => self.key(&event.key),
            "budget" => self.text(&event.budget),
            "outcome" => if event.allowed { "allowed" } else { "denied" },
            "reason" => self.reason(&event.reason),
        )
        .increment(1);
    }

    fn on_success(&self, key: &PolicyKey, timeline: &Timeline) {
        self.call(key, timeline, "success", SharedString::const_str("success"));
    }

    fn on_failure(&self, key: &PolicyKey, timeline: &Timeline) {
        let reason = match &timeline.final_error {
            Some(error) => self.reason(&error.reason),
            None => SharedString::const_str("unknown"),
        };
        self.call(key, timeline, "failure", reason);
    }

    fn on_circuit_change(&self, key: &PolicyKey, transition: Transition) {
        counter!(
            self.names.circuit_transitions.clone(),
            "key" => self.key(key),
            "from" => transition.from.as_str(),
            "to" => transition.to.as_str(),
        )
        .increment(1);
    }
}

/// The metric names, made once: cloning a static or shared name for each
/// event copies no text.
struct Names {
    prefix: SharedString,
    calls: SharedString,
    call_duration: SharedString,
    attempts: SharedString,
    attempt_duration: SharedString,
    budget_decisions: SharedString,
    hedge_spawns: SharedString,
    hedge_cancels: SharedString,
    circuit_transitions: SharedString,
}

impl Names {
    const DEFAULT: Self = Self {
        prefix: SharedString::const_str(DEFAULT_PREFIX),
        calls: SharedString::const_str("recourse_calls"),
        call_duration: SharedString::const_str("recourse_call_duration_seconds"),
        attempts: SharedString::const_str("recourse_attempts"),
        attempt_duration: SharedString::const_str("recourse_attempt_duration_seconds"),
        budget_decisions: SharedString::const_str("recourse_budget_decisions"),
        hedge_spawns: SharedString::const_str("recourse_hedge_spawns"),
        hedge_cancels: SharedString::const_str("recourse_hedge_cancels"),
        circuit_transitions: SharedString::const_str("recourse_circuit_transitions"),
    };

    /// The default names with `prefix` in place of [`DEFAULT_PREFIX`].
    fn prefixed(prefix: &str) -> Self {
        let rename = |default: &SharedString| {
            let suffix = &default[DEFAULT_PREFIX.len()..];
            let name =
                if prefix.is_empty() { suffix.trim_start_matches('_').to_owned() } else { format!("{prefix}{suffix}") };
            SharedString::from_shared(Arc::from(name))
        };
        let d = Self::DEFAULT;
        Self {
            prefix: SharedString::from_shared(Arc::from(prefix)),
            calls: rename(&d.calls),
            call_duration: rename(&d.call_duration),
            attempts: rename(&d.attempts),
            attempt_duration: rename(&d.attempt_duration),
            budget_decisions: rename(&d.budget_decisions),
            hedge_spawns: rename(&d.hedge_spawns),
            hedge_cancels: rename(&d.hedge_cancels),
            circuit_transitions: rename(&d.circuit_transitions),
        }
    }
}

/// Label text made once per distinct value and shared afterwards. Reads
/// take no lock: every event of a known value finds it in the current map;
/// a new value copies the map (rare, and bounded by [`INTERNED`]).
struct Interner<K> {
    map: ArcSwap<HashMap<K, SharedString>>,
}

impl<K: Hash + Eq + Clone> Interner<K> {
    fn new() -> Self {
        Self { map: ArcSwap::from_pointee(HashMap::new()) }
    }

    /// The shared text for `value`; `make` gives the map's key and the text
    /// when it is not there yet.
    fn get<Q>(&self, value: &Q, make: impl FnOnce() -> (K, String)) -> SharedString
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(text) = self.map.load().get(value) {
            return text.clone();
        }
        let (key, text) = make();
        let text = SharedString::from_shared(Arc::from(text));
        if self.len() < INTERNED {
            self.map.rcu(|map| {
                let mut map = HashMap::clone(map);
                map.entry(key.clone()).or_insert_with(|| text.clone());
                map
            });
        }
        text
    }

    fn len(&self) -> usize {
        self.map.load().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let default = MetricsObserver::new();
        assert_eq!(&*default.names.calls, "recourse_calls");
        assert_eq!(&*default.names.call_duration, "recourse_call_duration_seconds");
        assert_eq!(&*MetricsObserver::with_prefix(DEFAULT_PREFIX).names.attempts, "recourse_attempts");

        let shop = MetricsObserver::with_prefix("shop");
        assert_eq!(shop.prefix(), "shop");
        let n = &shop.names;
        let all = [
            &n.calls,
            &n.call_duration,
            &n.attempts,
            &n.attempt_duration,
            &n.budget_decisions,
            &n.hedge_spawns,
            &n.hedge_cancels,
            &n.circuit_transitions,
        ]
        .map(ToString::to_string);
        assert_eq!(
            all,
            [
                "shop_calls",
                "shop_call_duration_seconds",
                "shop_attempts",
                "shop_attempt_duration_seconds",
                "shop_budget_decisions",
                "shop_hedge_spawns",
                "shop_hedge_cancels",
                "shop_circuit_transitions",
            ]
        );

        let bare = MetricsObserver::with_prefix("");
        assert_eq!((&*bare.names.calls, &*bare.names.hedge_cancels), ("calls", "hedge_cancels"));
    }

    #[test]
    fn a_key_label_is_made_once_and_shared() {
        let observer = MetricsObserver::new();
        let first = observer.key(&PolicyKey::from("inventory.Reserve"));
        let again = observer.key(&PolicyKey::parse_owned("inventory.Reserve"));
        assert_eq!(&*first, "inventory.Reserve");
        assert_eq!(first.as_ptr(), again.as_ptr(), "the second event reuses the first one's text");
        assert_eq!(&*observer.key(&PolicyKey::from("x")), "x");
        assert_eq!(observer.keys.len(), 2);
    }

    #[test]
    fn static_reasons_are_borrowed_and_owned_ones_shared() {
        let observer = MetricsObserver::new();
        let text: &'static str = "op_retryable";
        let borrowed = observer.reason(&Cow::Borrowed(text));
        assert_eq!(borrowed.as_ptr(), text.as_ptr(), "no copy of a static reason");
        assert_eq!(observer.texts.len(), 0);

        let owned = observer.reason(&Cow::Owned("http_503".to_owned()));
        let again = observer.reason(&Cow::Owned("http_503".to_owned()));
        assert_eq!(owned.as_ptr(), again.as_ptr());
        assert_eq!(observer.texts.len(), 1);
    }

    #[test]
    fn the_interner_stops_growing_at_its_bound_and_still_answers() {
        let interner = Interner::<Box<str>>::new();
        for n in 0..INTERNED + 10 {
            let text = n.to_string();
            assert_eq!(&*interner.get(text.as_str(), || (text.as_str().into(), text.clone())), text);
        }
        assert_eq!(interner.len(), INTERNED);
        let past = (INTERNED + 5).to_string();
        assert_eq!(&*interner.get(past.as_str(), || (past.as_str().into(), past.clone())), past);
        assert_eq!(interner.len(), INTERNED);
    }

    #[test]
    fn the_observer_is_debug() {
        let observer = MetricsObserver::with_prefix("shop");
        observer.key(&PolicyKey::from("a.b"));
        assert_eq!(format!("{observer:?}"), r#"MetricsObserver { prefix: "shop", keys: 1, texts: 0, .. }"#);
    }
}

//! Errors that come from the executor rather than from the operation.

use std::fmt;
use std::time::Duration;

use crate::classify::{Classify, Outcome};
use crate::policy::PolicyKey;
use crate::provider::ProviderError;

/// An error produced by recourse itself: no attempt ran, or the executor
/// stopped the call.
///
/// When the operation ran and failed, the call returns the operation's own
/// last error unchanged; this type only appears when recourse had to end
/// the call itself. Operations' error types convert from it
/// (`E: From<recourse::Error>`), usually with a `#[from]` variant:
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// enum ApiError {
///     #[error("not found")]
///     NotFound,
///     #[error(transparent)]
///     Recourse(#[from] recourse::Error),
/// }
/// # let _ = ApiError::NotFound;
/// ```
///
/// `std::io::Error`, `Box<dyn Error + Send + Sync>` and, with the `anyhow`
/// feature, `anyhow::Error` convert from it and implement
/// [`Classify`](crate::Classify), so they work as a call's error type as
/// they are; the default classifier looks through them to an io error or a
/// `recourse::Error` in their `source()` chain.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The policy could not be resolved and the missing-policy mode is deny.
    #[error("recourse: policy not found for {key}: {source}")]
    NoPolicy {
        /// The key of the call.
        key: PolicyKey,
        /// What the provider reported.
        #[source]
        source: ProviderError,
    },
    /// The policy names a classifier that is not registered and the
    /// missing-classifier mode is deny.
    #[error("recourse: classifier not found: {name}")]
    NoClassifier {
        /// The name the policy asked for.
        name: String,
    },
    /// A budget denied the first attempt, so the operation never ran.
    #[error("recourse: attempt denied by budget: {reason}")]
    BudgetDenied {
        /// The budget's reason code, e.g. `budget_denied`, `budget_not_found`.
        reason: std::borrow::Cow<'static, str>,
    },
    /// The key's circuit breaker refused the call; the operation never ran.
    #[error("recourse: circuit {state}: {reason}")]
    CircuitOpen {
        /// The breaker's state (`open`, or `half-open` when its probe is
        /// already out).
        state: crate::circuit::State,
        /// `circuit_open` or `circuit_half_open_probe_limit`.
        reason: &'static str,
    },
    /// The policy names a hedge trigger that is not registered and the
    /// missing-trigger mode is deny.
    #[error("recourse: hedge trigger not found: {name}")]
    NoTrigger {
        /// The name the policy asked for.
        name: String,
    },
    /// The key-cardinality guard refused the call's key: the executor
    /// already holds per-key state for `max_keys` distinct keys called
    /// without a call site, and its overflow mode is
    /// [`KeyOverflow::Reject`](crate::executor::KeyOverflow::Reject). The
    /// operation never ran and nothing was made for the key (see
    /// [`ExecutorBuilder::max_keys`](crate::ExecutorBuilder::max_keys)).
    #[error(
        "recourse: key {key} refused: the executor already holds state for {max_keys} distinct keys (ExecutorBuilder::max_keys); keys must not be built from request data"
    )]
    KeyOverflow {
        /// The key the call was made with.
        key: PolicyKey,
        /// The executor's cap.
        max_keys: usize,
    },
    /// The overall deadline passed while an attempt was running.
    #[error("recourse: overall timeout of {timeout:?} elapsed")]
    Timeout {
        /// The policy's `overall_timeout`.
        timeout: Duration,
    },
    /// One attempt exceeded the policy's `timeout_per_attempt` (and it was
    /// the last attempt the call could make).
    #[error("recourse: attempt timed out after {timeout:?}")]
    AttemptTimeout {
        /// The policy's `timeout_per_attempt`.
        timeout: Duration,
    },
    /// A plug-in panicked and panic recovery turned the panic into an error
    /// (the [`PanicError`] is also this error's `source()`).
    #[error("{0}")]
    Panic(#[from] PanicError),
}

impl Error {
    /// Whether this is an overall or per-attempt timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::AttemptTimeout { .. })
    }

    /// How recourse classifies its own errors when they surface inside
    /// another call's operation: per-attempt timeouts are retryable,
    /// configuration errors non-retryable, everything else an abort.
    pub fn outcome(&self) -> Outcome {
        match self {
            Self::NoPolicy { .. } => Outcome::non_retryable().with_reason("no_policy"),
            Self::NoClassifier { .. } => Outcome::non_retryable().with_reason("classifier_not_found"),
            Self::NoTrigger { .. } => Outcome::non_retryable().with_reason("trigger_not_found"),
            Self::KeyOverflow { .. } => Outcome::non_retryable().with_reason("key_overflow"),
            Self::CircuitOpen { reason, .. } => Outcome::abort().with_reason(*reason),
            Self::BudgetDenied { reason } => Outcome::abort().with_reason(reason.clone()),
            Self::Timeout { .. } => Outcome::abort().with_reason("context_deadline_exceeded"),
            Self::AttemptTimeout { .. } => Outcome::retryable().with_reason("context_deadline_exceeded"),
            Self::Panic(p) => Outcome::abort().with_reason(p.component.reason()),
        }
    }
}

impl Classify for Error {
    fn classify(&self) -> Option<Outcome> {
        Some(self.outcome())
    }

    fn as_error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self)
    }
}

impl From<Error> for std::io::Error {
    fn from(error: Error) -> Self {
        let kind = match &error {
            Error::Timeout { .. } | Error::AttemptTimeout { .. } => std::io::ErrorKind::TimedOut,
            Error::NoPolicy { .. }
            | Error::NoClassifier { .. }
            | Error::NoTrigger { .. }
            | Error::KeyOverflow { .. } => std::io::ErrorKind::InvalidInput,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, error)
    }
}

/// A plug-in that panicked while panic recovery was on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recourse: panic in {component} for {key}: {message}")]
pub struct PanicError {
    /// Which plug-in panicked.
    pub component: Component,
    /// The key of the call.
    pub key: PolicyKey,
    /// The panic payload, if it was a string.
    pub message: String,
}

impl PanicError {
    pub(crate) fn new(component: Component, key: &PolicyKey, payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        Self { component, key: key.clone(), message }
    }
}

/// The plug-ins whose panics recourse can recover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Component {
    /// A [`PolicyProvider`](crate::provider::PolicyProvider).
    PolicyProvider,
    /// A classifier (or an error type's own `Classify`).
    Classifier,
    /// A budget.
    Budget,
    /// A circuit breaker.
    CircuitBreaker,
    /// A hedge trigger.
    HedgeTrigger,
    /// An observer.
    Observer,
}

impl Component {
    /// `policy_provider`, `classifier`, `budget`, `circuit_breaker`,
    /// `hedge_trigger` or `observer`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PolicyProvider => "policy_provider",
            Self::Classifier => "classifier",
            Self::Budget => "budget",
            Self::CircuitBreaker => "circuit_breaker",
            Self::HedgeTrigger => "hedge_trigger",
            Self::Observer => "observer",
        }
    }

    /// The outcome reason for a recovered panic, e.g. `panic_in_classifier`.
    pub const fn reason(self) -> &'static str {
        match self {
            Self::PolicyProvider => "panic_in_policy_provider",
            Self::Classifier => "panic_in_classifier",
            Self::Budget => "panic_in_budget",
            Self::CircuitBreaker => "panic_in_circuit_breaker",
            Self::HedgeTrigger => "panic_in_hedge_trigger",
            Self::Observer => "panic_in_observer",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Messages of an error chain as one line, `outer: inner: root` (as
/// anyhow's `{:#}`), skipping a message the text already holds (an error
/// that prints its source and also returns it). `None` for an empty chain.
pub(crate) fn chain_text<'a>(mut chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> Option<String> {
    let mut text = chain.next()?.to_string();
    for link in chain {
        let message = link.to_string();
        if !message.is_empty() && !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
    }
    Some(text)
}

/// [`chain_text`] of `error` and its `source()` chain.
pub(crate) fn sources_text(error: &(dyn std::error::Error + 'static)) -> String {
    chain_text(std::iter::successors(Some(error), |e| e.source())).unwrap_or_default()
}

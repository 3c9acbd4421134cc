//! The result of classifying one attempt.

use std::borrow::Cow;
use std::fmt;
use std::time::Duration;

/// What an attempt's result means for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OutcomeKind {
    /// The classifier could not decide; the executor treats it as
    /// [`Abort`](Self::Abort) with reason `unknown_outcome`.
    #[default]
    Unknown,
    /// The call succeeded.
    Success,
    /// The attempt failed and another attempt may help.
    Retryable,
    /// The attempt failed and retrying would not help (or is unsafe).
    NonRetryable,
    /// Stop now: retrying is pointless or forbidden (cancellation, denial).
    Abort,
}

impl OutcomeKind {
    /// `unknown`, `success`, `retryable`, `non_retryable` or `abort`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Success => "success",
            Self::Retryable => "retryable",
            Self::NonRetryable => "non_retryable",
            Self::Abort => "abort",
        }
    }

    /// The reason used when a classifier gives none.
    pub const fn default_reason(self) -> &'static str {
        match self {
            Self::Unknown => "unknown_outcome",
            Self::Success => "success",
            Self::Retryable => "retryable_error",
            Self::NonRetryable => "non_retryable_error",
            Self::Abort => "abort",
        }
    }

    /// Non-retryable or abort: the call ends with this attempt.
    pub const fn is_terminal(self) -> bool {
        matches!(self, Self::NonRetryable | Self::Abort | Self::Unknown)
    }
}

impl fmt::Display for OutcomeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Low-cardinality `key = value` notes attached to an outcome.
///
/// Empty sets do not allocate; keys are unique (inserting replaces).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes(Vec<(Cow<'static, str>, Cow<'static, str>)>);

impl Attributes {
    /// An empty set.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| &**v)
    }

    /// Whether there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// How many attributes there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The attributes in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

/// The classification of one attempt: its kind, a low-cardinality reason
/// (part of the telemetry contract), optional attributes and an optional
/// backoff override (e.g. from a server's Retry-After).
///
/// ```
/// use recourse::classify::{Outcome, OutcomeKind};
/// use std::time::Duration;
///
/// let outcome = Outcome::retryable()
///     .with_reason("throttled")
///     .with_backoff(Duration::from_secs(2))
///     .with_attribute("status", "429");
/// assert_eq!(outcome.kind, OutcomeKind::Retryable);
/// assert_eq!(outcome.attributes.get("status"), Some("429"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Outcome {
    /// What the result means.
    pub kind: OutcomeKind,
    /// Why, as a low-cardinality code such as `http_5xx`.
    pub reason: Cow<'static, str>,
    /// Extra low-cardinality notes.
    pub attributes: Attributes,
    /// Sleep this long before the next attempt instead of the computed
    /// backoff (honoured up to 30 s, never past the overall deadline).
    pub backoff: Option<Duration>,
}

impl Outcome {
    /// An outcome of `kind` with no reason (filled in by the executor).
    pub const fn new(kind: OutcomeKind) -> Self {
        Self { kind, reason: Cow::Borrowed(""), attributes: Attributes::new(), backoff: None }
    }

    /// Success, reason `success`.
    pub const fn success() -> Self {
        Self::with_kind_and_reason(OutcomeKind::Success, "success")
    }

    /// Retryable, reason `retryable_error` unless set.
    pub const fn retryable() -> Self {
        Self::new(OutcomeKind::Retryable)
    }

    /// Non-retryable, reason `non_retryable_error` unless set.
    pub const fn non_retryable() -> Self {
        Self::new(OutcomeKind::NonRetryable)
    }

    /// Abort, reason `abort` unless set.
    pub const fn abort() -> Self {
        Self::new(OutcomeKind::Abort)
    }

    /// The outcome of a classifier that was handed an error it does not
    /// understand: non-retryable `classifier_type_mismatch`, with attributes
    /// `expected_type` and `got_type`.
    pub fn type_mismatch(expected: &'static str, got: &'static str) -> Self {
        Self::non_retryable()
            .with_reason("classifier_type_mismatch")
            .with_attribute("expected_type", expected)
            .with_attribute("got_type", got)
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: impl Into<Cow<'static, str>>) -> Self {
        self.reason = reason.into();
        self
    }

    /// An outcome with a static reason (usable in `const` contexts, as the
    /// derived classifiers do).
    pub const fn with_kind_and_reason(kind: OutcomeKind, reason: &'static str) -> Self {
        Self { kind, reason: Cow::Borrowed(reason), attributes: Attributes::new(), backoff: None }
    }

    /// Adds an attribute.
    pub fn with_attribute(mut self, key: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) -> Self {
        self.attributes.insert(key, value);
        self
    }

    /// Overrides the next backoff sleep (a zero duration is ignored).
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = (!backoff.is_zero()).then_some(backoff);
        self
    }

    /// The executor's post-processing of every classification: an unknown
    /// kind becomes an abort with reason `unknown_outcome`, and an empty
    /// reason is filled from the kind.
    #[inline]
    pub fn finish(mut self) -> Self {
        self.finish_in_place();
        self
    }

    /// [`finish`](Self::finish) without moving the outcome.
    #[inline]
    pub(crate) fn finish_in_place(&mut self) {
        if self.kind == OutcomeKind::Unknown {
            if self.reason.is_empty() {
                self.reason = Cow::Borrowed("unknown_outcome");
            }
            self.kind = OutcomeKind::Abort;
        }
        if self.reason.is_empty() {
            self.reason = Cow::Borrowed(self.kind.default_reason());
        }
    }
}

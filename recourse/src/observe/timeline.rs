//! Per-call timelines: what happened, attempt by attempt.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::classify::{Attributes, Outcome, OutcomeKind};
use crate::policy::{PolicyKey, PolicySource};

/// The record of one call: its key and policy, when it ran, every attempt,
/// and how it ended. Obtained with [`capture`](crate::capture).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Timeline {
    /// The key the call ran under: the key it was made with, or the fold
    /// key when the key-cardinality guard folded it (the `key_overflow`
    /// attribute then names the key it was made with).
    pub key: PolicyKey,
    /// The effective policy's id, if any.
    pub policy_id: Option<Arc<str>>,
    /// Where the effective policy came from.
    pub policy_source: PolicySource,
    /// When the call started (before policy resolution).
    pub start: Instant,
    /// When the call ended; `None` only for an empty timeline.
    pub end: Option<Instant>,
    /// Call-level notes: `policy_source`, `policy_normalized`,
    /// `policy_error`, `classifier_name`, `classifier_error`, ...
    pub attributes: Attributes,
    /// Attempts in completion order.
    pub attempts: Vec<AttemptRecord>,
    /// How the call failed; `None` on success.
    pub final_error: Option<FinalError>,
}

/// One attempt (or budget-denied attempt) of a call.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// Retry index (0-based), shared by a group's primary and hedges.
    pub attempt: u32,
    /// When the attempt started.
    pub start: Instant,
    /// When it finished.
    pub end: Instant,
    /// Whether it was a hedge.
    pub is_hedge: bool,
    /// 0 for the primary, 1..=3 for hedges in launch order.
    pub hedge_index: u32,
    /// The classification after post-processing.
    pub outcome: Outcome,
    /// The operation's error as text, its sources' messages after its own
    /// (`outer: inner: root`); `None` on success and for budget-denied
    /// attempts.
    pub error: Option<String>,
    /// The sleep before this attempt (0 for the first attempt and hedges).
    pub backoff: Duration,
    /// Whether the budget gate allowed the attempt.
    pub budget_allowed: bool,
    /// The budget gate's reason: `no_budget`, `allowed`, `budget_denied`, ...
    pub budget_reason: Cow<'static, str>,
}

impl AttemptRecord {
    /// How long the attempt ran.
    pub fn duration(&self) -> Duration {
        self.end.saturating_duration_since(self.start)
    }
}

/// How a call ended when it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FinalError {
    /// The error returned to the caller, as text, its sources' messages
    /// after its own (`outer: inner: root`).
    pub message: String,
    /// The classification that ended the call (`retryable` when attempts
    /// ran out, `abort` for deadlines and denials).
    pub kind: OutcomeKind,
    /// The reason code that ended the call.
    pub reason: Cow<'static, str>,
}

impl Timeline {
    pub(crate) fn new(key: PolicyKey, start: Instant) -> Self {
        Self {
            key,
            policy_id: None,
            policy_source: PolicySource::Unknown,
            start,
            end: None,
            attributes: Attributes::new(),
            attempts: Vec::new(),
            final_error: None,
        }
    }

    pub(crate) fn empty(start: Instant) -> Self {
        Self::new(PolicyKey::default(), start)
    }

    /// Whether no call was captured.
    pub fn is_empty(&self) -> bool {
        self.end.is_none()
    }

    /// Whether the call succeeded.
    pub fn succeeded(&self) -> bool {
        self.end.is_some() && self.final_error.is_none()
    }

    /// How long the call took.
    pub fn duration(&self) -> Duration {
        self.end.map_or(Duration::ZERO, |end| end.saturating_duration_since(self.start))
    }
}

const BAR_WIDTH: u128 = 40;

fn fmt_duration(d: Duration) -> String {
    if d >= Duration::from_secs(1) {
        format!("{:.2}s", d.as_secs_f64())
    } else if d >= Duration::from_millis(1) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}µs", d.as_micros())
    }
}

/// A compact chart: a header line, one line per attempt with a time bar
/// relative to the call's start, outcome, reason, backoff and budget
/// decision, then the final result.
///
/// ```text
/// svc.GetUser  policy=default  3 attempts  32ms  FAILED: connection reset
///   #0        |█                                       |  0ms+1ms   retryable     io_connection_reset
///   #1        |   ██                                   | 11ms+1ms   retryable     io_connection_reset  backoff=10ms
///   #2        |          ██                            | 32ms+1ms   success       success  backoff=20ms
/// ```
impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "(no recourse call captured)");
        }
        let total = self.duration().as_nanos().max(1);
        write!(f, "{}  policy={}", self.key, self.policy_source)?;
        if let Some(id) = &self.policy_id {
            write!(f, " id={id}")?;
        }
        let n = self.attempts.len();
        write!(f, "  {n} attempt{}  {}", if n == 1 { "" } else { "s" }, fmt_duration(self.duration()))?;
        match &self.final_error {
            None => writeln!(f, "  OK")?,
            Some(e) => writeln!(f, "  FAILED ({}): {}", e.reason, e.message)?,
        }
        for (k, v) in self.attributes.iter() {
            writeln!(f, "  @{k}={v}")?;
        }
        for r in &self.attempts {
            let from = r.start.saturating_duration_since(self.start).as_nanos();
            let to = r.end.saturating_duration_since(self.start).as_nanos();
            let width = usize::try_from(BAR_WIDTH).unwrap_or(40);
            // Every attempt gets at least one cell, even an instant one at
            // the very end of the call.
            let a = usize::try_from(from * BAR_WIDTH / total).unwrap_or(0).min(width - 1);
            let b = usize::try_from((to * BAR_WIDTH).div_ceil(total)).unwrap_or(0).clamp(a + 1, width);
            let bar: String = (0..width).map(|i| if (a..b).contains(&i) { '█' } else { ' ' }).collect();
            let label =
                if r.is_hedge { format!("#{} h{}", r.attempt, r.hedge_index) } else { format!("#{}", r.attempt) };
            write!(
                f,
                "  {label:<8}|{bar}| {:>6}+{:<6} {:<13} {}",
                fmt_duration(r.start.saturating_duration_since(self.start)),
                fmt_duration(r.duration()),
                r.outcome.kind,
                r.outcome.reason,
            )?;
            if !r.backoff.is_zero() {
                write!(f, "  backoff={}", fmt_duration(r.backoff))?;
            }
            if r.budget_reason != "no_budget" {
                write!(f, "  budget={}{}", if r.budget_allowed { "" } else { "DENIED:" }, r.budget_reason)?;
            }
            if let Some(e) = &r.error {
                write!(f, "  error={e}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

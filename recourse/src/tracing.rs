//! `tracing` spans and events for every call (feature `tracing`).
//!
//! [`TracingObserver`] opens a span per call and one per attempt, the
//! attempt's span a child of the call's and current while the attempt's
//! body runs, so the operation's own events and spans nest under it:
//!
//! ```text
//! recourse.call{recourse.key=users.Get recourse.attempts=3 recourse.outcome=success}
//! ├─ recourse.attempt{recourse.attempt=0 recourse.outcome=retryable recourse.reason=io_connection_reset}
//! │   └─ (the operation's events)
//! ├─ recourse.attempt{recourse.attempt=1 recourse.backoff_ms=10 ...}
//! └─ recourse.attempt{recourse.attempt=2 recourse.outcome=success}
//! ```
//!
//! Everything is at level `INFO` under target `recourse`, except the
//! events for budget denials and breaker transitions (`WARN`). With no
//! subscriber interested, no span is made and nothing is allocated.
//!
//! # Fields (stable)
//!
//! | span | field | value |
//! |---|---|---|
//! | `recourse.call` | `recourse.key` | the policy key |
//! | | `recourse.policy.id` | the policy's id, when it has one |
//! | | `recourse.policy.source` | `catalog`, `provider`, `default`, ... |
//! | | `recourse.attempts` | attempts on the call's timeline |
//! | | `recourse.outcome` | `success` or the final outcome kind |
//! | | `recourse.reason` | the final reason code |
//! | `recourse.attempt` | `recourse.attempt` | retry index (0 for the first) |
//! | | `recourse.hedge` | hedge index (0 for the primary) |
//! | | `recourse.outcome` | `success`, `retryable`, `non_retryable`, `abort` |
//! | | `recourse.reason` | the reason code |
//! | | `recourse.backoff_ms` | the sleep before this attempt |
//! | | `recourse.budget` | the budget gate's reason (`allowed`, `no_budget`, ...) |
//! | | `http.request.resend_count` | OpenTelemetry's: set by `recourse::reqwest::RecourseMiddleware` on every request sent after the first |
//!
//! Events: `budget denied` (`recourse.budget`, `recourse.reason`),
//! `hedge spawned` (`recourse.hedge`), `attempt cancelled` (inside the
//! cancelled attempt's span, `recourse.reason`), `circuit breaker changed`
//! (`recourse.circuit.from`, `recourse.circuit.to`), `policy problem`
//! (`recourse.policy.source`, `recourse.policy.error`: a reload or fetch
//! failed and the last good policy is in use, or a policy was rejected;
//! once per resolution), and `recovered panic`
//! (`recourse.panic`: the panic's message) for each plug-in panic the
//! executor recovered during the call, at its end.
//!
//! # With `#[tracing::instrument]`
//!
//! Attribute macros expand from the top down, each on what the one above
//! produced. `#[tracing::instrument]` written *above* `#[recourse]`
//! instruments the body, which `#[recourse]` then runs once per attempt:
//! one span per attempt, inside `recourse.attempt`. Written *below* it, it
//! instruments the function `#[recourse]` wrote, whose body is the whole
//! call: one span per call, around `recourse.call` (both pinned by
//! `tests/tests/tracing.rs`):
//!
//! ```ignore
//! #[tracing::instrument(skip(client))] // one span per attempt
//! #[recourse::recourse(policy = "users.Get")]
//! async fn get_user(client: &Client, id: u64) -> Result<User, ApiError> { ... }
//!
//! #[recourse::recourse(policy = "users.Get")]
//! #[tracing::instrument(skip(client))] // one span per call
//! async fn get_user(client: &Client, id: u64) -> Result<User, ApiError> { ... }
//! ```

use std::sync::Arc;

use tracing::field::Empty;
use tracing::{Level, Span};

use crate::budget::BudgetDecisionEvent;
use crate::circuit::Transition;
use crate::observe::{Attempt, AttemptRecord, Enter, Observer, Timeline};
use crate::policy::{Policy, PolicyKey};

/// Spans and events for every call, through the `tracing` facade.
///
/// ```
/// let executor = recourse::Executor::builder().observer(recourse::tracing::TracingObserver::new()).build();
/// # let _ = executor;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingObserver;

impl TracingObserver {
    /// The observer; install it with `ExecutorBuilder::observer`.
    pub fn new() -> Self {
        Self
    }
}

/// A span made current on the polling thread for one poll or callback.
struct SpanScope(Span);

impl Enter for SpanScope {
    fn enter(&self) {
        self.0.with_subscriber(|(id, dispatch)| dispatch.enter(id));
    }

    fn exit(&self) {
        self.0.with_subscriber(|(id, dispatch)| dispatch.exit(id));
    }
}

/// Records how an attempt ended on its span, the current one.
fn finish(record: &AttemptRecord) {
    let span = Span::current();
    span.record("recourse.outcome", record.outcome.kind.as_str());
    span.record("recourse.reason", &*record.outcome.reason);
    span.record("recourse.budget", &*record.budget_reason);
    span.record("recourse.backoff_ms", count(record.backoff.as_millis()));
}

/// The panics recovered during the call (`recover_panics(true)`), as the
/// timeline notes them: a plug-in's panic that ended the call (its final
/// reason is `panic_in_<component>`), and a hedge trigger's or an
/// observer's, which did not.
fn recovered_panics(timeline: &Timeline) {
    for attribute in ["trigger_panic", "observer_panic"] {
        if let Some(message) = timeline.attributes.get(attribute) {
            tracing::event!(target: "recourse", Level::WARN, recourse.panic = message, "recovered panic");
        }
    }
    if let Some(error) = timeline.final_error.as_ref().filter(|e| e.reason.starts_with("panic_in_")) {
        tracing::event!(target: "recourse", Level::WARN, recourse.panic = %error.message, "recovered panic");
    }
}

/// Numbers are recorded as `i64`, OpenTelemetry's integer type (an
/// exporter may turn other integer types into text).
fn count(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

fn scope(span: Span) -> Option<Arc<dyn Enter>> {
    if span.is_disabled() { None } else { Some(Arc::new(SpanScope(span))) }
}

impl Observer for TracingObserver {
    fn enabled(&self) -> bool {
        tracing::enabled!(target: "recourse", Level::INFO)
    }

    fn call_scope(&self, key: &PolicyKey) -> Option<Arc<dyn Enter>> {
        scope(tracing::span!(
            target: "recourse",
            Level::INFO,
            "recourse.call",
            recourse.key = %key,
            recourse.policy.id = Empty,
            recourse.policy.source = Empty,
            recourse.attempts = Empty,
            recourse.outcome = Empty,
            recourse.reason = Empty,
        ))
    }

    fn attempt_scope(&self, _: &PolicyKey, attempt: &Attempt) -> Option<Arc<dyn Enter>> {
        scope(tracing::span!(
            target: "recourse",
            Level::INFO,
            "recourse.attempt",
            recourse.attempt = i64::from(attempt.retry_index),
            recourse.hedge = i64::from(attempt.hedge_index),
            recourse.outcome = Empty,
            recourse.reason = Empty,
            recourse.backoff_ms = Empty,
            recourse.budget = Empty,
            http.request.resend_count = Empty,
        ))
    }

    // The callbacks run inside the call's span (and the attempt's, for
    // `on_attempt` and `on_hedge_cancel`), so they record on the current
    // span; without a subscriber that is a no-op.
    fn on_start(&self, _: &PolicyKey, policy: Option<&Policy>) {
        if let Some(policy) = policy {
            let span = Span::current();
            if let Some(id) = &policy.id {
                span.record("recourse.policy.id", &**id);
            }
            span.record("recourse.policy.source", policy.meta.source.as_str());
        }
    }

    fn on_attempt(&self, _: &PolicyKey, record: &AttemptRecord) {
        if record.budget_allowed {
            finish(record);
        }
        // Denied before it ran: there is no attempt span; `budget denied`
        // says so under the call's.
    }

    fn on_hedge_spawn(&self, _: &PolicyKey, record: &AttemptRecord) {
        tracing::event!(target: "recourse", Level::INFO, recourse.hedge = i64::from(record.hedge_index), "hedge spawned");
    }

    fn on_hedge_cancel(&self, _: &PolicyKey, record: &AttemptRecord, reason: &str) {
        finish(record);
        tracing::event!(target: "recourse", Level::INFO, recourse.reason = reason, "attempt cancelled");
    }

    fn on_budget_decision(&self, event: &BudgetDecisionEvent) {
        if !event.allowed {
            tracing::event!(
                target: "recourse",
                Level::WARN,
                recourse.budget = %event.budget,
                recourse.reason = %event.reason,
                recourse.attempt = i64::from(event.attempt),
                "budget denied"
            );
        }
    }

    fn on_success(&self, _: &PolicyKey, timeline: &Timeline) {
        recovered_panics(timeline);
        let span = Span::current();
        span.record("recourse.attempts", count(timeline.attempts.len()));
        span.record("recourse.outcome", "success");
        span.record("recourse.reason", "success");
    }

    fn on_failure(&self, _: &PolicyKey, timeline: &Timeline) {
        recovered_panics(timeline);
        let span = Span::current();
        span.record("recourse.attempts", count(timeline.attempts.len()));
        if let Some(error) = &timeline.final_error {
            span.record("recourse.outcome", error.kind.as_str());
            span.record("recourse.reason", &*error.reason);
        }
    }

    fn on_circuit_change(&self, key: &PolicyKey, transition: Transition) {
        tracing::event!(
            target: "recourse",
            Level::WARN,
            recourse.key = %key,
            recourse.circuit.from = %transition.from,
            recourse.circuit.to = %transition.to,
            "circuit breaker changed"
        );
    }

    fn on_policy_error(&self, key: &PolicyKey, policy: &Policy, error: &str) {
        tracing::event!(
            target: "recourse",
            Level::WARN,
            recourse.key = %key,
            recourse.policy.source = policy.meta.source.as_str(),
            recourse.policy.error = error,
            "policy problem"
        );
    }
}

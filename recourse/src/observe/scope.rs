//! Per-thread scope for the future being polled: which attempt is running
//! and whether a timeline capture is listening.
//!
//! Set around every poll of an attempt or a capture and restored after it,
//! so concurrent attempts and tasks sharing a thread never see each other's
//! values. Only `Copy`-cheap data lives here; nothing allocates.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Timeline;

/// The attempt in progress, as seen from inside the operation.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let executor = recourse::Executor::builder().build();
/// let hedge: Result<bool, std::io::Error> = executor
///     .call("svc.Op", || async {
///         let attempt = recourse::attempt().expect("inside an attempt");
///         Ok(attempt.is_hedge())
///     })
///     .await;
/// assert_eq!(hedge.unwrap(), false);
/// assert!(recourse::attempt().is_none());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub(crate) retry_index: u32,
    pub(crate) hedge_index: u32,
    pub(crate) policy_id: Option<Arc<str>>,
    pub(crate) deadline: Option<Instant>,
}

impl Attempt {
    /// 0 for the first attempt, 1 for the first retry, … (hedges share
    /// their group's index).
    pub fn retry_index(&self) -> u32 {
        self.retry_index
    }

    /// Whether this attempt is a hedge.
    pub fn is_hedge(&self) -> bool {
        self.hedge_index > 0
    }

    /// 0 for the primary, 1..=3 for hedges in launch order.
    pub fn hedge_index(&self) -> u32 {
        self.hedge_index
    }

    /// The effective policy's id, if it has one.
    pub fn policy_id(&self) -> Option<&str> {
        self.policy_id.as_deref()
    }

    /// When this attempt will be cut off (the earlier of its own timeout
    /// and the call's overall deadline).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Time left before [`deadline`](Self::deadline), e.g. to send as a
    /// `grpc-timeout`.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(Instant::now()))
    }
}

/// The attempt in scope, without its policy id: `Copy`, so entering and
/// leaving a scope is two `Cell` swaps.
#[derive(Clone, Copy)]
struct Core {
    retry_index: u32,
    hedge_index: u32,
    deadline: Option<Instant>,
    /// Whether `POLICY_ID` holds this attempt's policy id.
    has_id: bool,
}

#[derive(Clone, Copy)]
struct Scope {
    attempt: Option<Core>,
    capture_requested: bool,
}

thread_local! {
    static SCOPE: Cell<Scope> = const { Cell::new(Scope { attempt: None, capture_requested: false }) };
    /// Touched only for policies that have an id.
    static POLICY_ID: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
    static PUBLISHED: RefCell<Option<Timeline>> = const { RefCell::new(None) };
}

/// The attempt being polled on this thread, if the caller is inside a
/// recourse operation.
pub fn attempt() -> Option<Attempt> {
    let core = SCOPE.with(Cell::get).attempt?;
    let policy_id = if core.has_id { POLICY_ID.with(|id| id.borrow().clone()) } else { None };
    Some(Attempt { retry_index: core.retry_index, hedge_index: core.hedge_index, policy_id, deadline: core.deadline })
}

/// Whether a capture is listening for the call starting now.
pub(crate) fn capture_requested() -> bool {
    SCOPE.with(Cell::get).capture_requested
}

/// Hands a finished call's timeline to the enclosing capture.
pub(crate) fn publish(timeline: Timeline) {
    PUBLISHED.with(|p| *p.borrow_mut() = Some(timeline));
}

/// Runs `poll` with `attempt` visible and capture suppressed (a nested call
/// inside the operation neither sees nor overwrites the outer capture).
pub(crate) fn enter_attempt<R>(attempt: &Attempt, poll: impl FnOnce() -> R) -> R {
    let core = Core {
        retry_index: attempt.retry_index,
        hedge_index: attempt.hedge_index,
        deadline: attempt.deadline,
        has_id: attempt.policy_id.is_some(),
    };
    let saved = SCOPE.with(|s| s.replace(Scope { attempt: Some(core), capture_requested: false }));
    let saved_id = attempt.policy_id.as_ref().map(|id| POLICY_ID.with(|p| p.replace(Some(Arc::clone(id)))));
    let result = poll();
    if let Some(previous) = saved_id {
        POLICY_ID.with(|p| *p.borrow_mut() = previous);
    }
    SCOPE.with(|s| s.set(saved));
    result
}

/// Runs `future` and returns its output together with the [`Timeline`] of
/// the outermost recourse call it made.
///
/// Calls nested inside an operation are not captured (they cannot
/// overwrite the outer timeline) unless they are wrapped in `capture`
/// themselves. When the future makes several calls one after another, the
/// timeline is the last one's. When it makes none, the timeline
/// [is empty](Timeline::is_empty).
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let executor = recourse::Executor::builder().build();
/// let mut calls = 0;
/// let (result, timeline) = recourse::capture(executor.call("svc.Op", || {
///     calls += 1;
///     let n = calls;
///     async move { if n < 2 { Err(std::io::Error::other("flaky")) } else { Ok(n) } }
/// }))
/// .await;
/// assert_eq!(result.unwrap(), 2);
/// assert_eq!(timeline.attempts.len(), 2);
/// println!("{timeline}");
/// # }
/// ```
pub async fn capture<F: Future>(future: F) -> (F::Output, Timeline) {
    let start = Instant::now();
    let mut future = pin!(future);
    let mut captured = None;
    let output = std::future::poll_fn(|cx| {
        let saved_scope = SCOPE.with(|s| {
            let mut scope = s.get();
            let saved = scope;
            scope.capture_requested = true;
            s.set(scope);
            saved
        });
        let saved_published = PUBLISHED.with(|p| p.borrow_mut().take());
        let poll = future.as_mut().poll(cx);
        if let Some(timeline) = PUBLISHED.with(|p| p.borrow_mut().take()) {
            captured = Some(timeline);
        }
        PUBLISHED.with(|p| *p.borrow_mut() = saved_published);
        SCOPE.with(|s| s.set(saved_scope));
        poll
    })
    .await;
    (output, captured.unwrap_or_else(|| Timeline::empty(start)))
}

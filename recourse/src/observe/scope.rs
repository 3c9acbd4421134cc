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
    /// The first attempt of a call without a deadline.
    #[inline]
    pub(crate) const fn first(policy_id: Option<Arc<str>>) -> Self {
        Self { retry_index: 0, hedge_index: 0, policy_id, deadline: None }
    }

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

// The attempt in scope lives in three thread-locals, each always read and
// written whole: its indexes (retry index in the low half, hedge index in
// the high half), flags, and deadline. One packed struct read and written
// field by field made the processor's store-to-load forwarding fail on
// every scope entry, which cost more than the rest of the entry.

/// Inside an attempt.
const IN_ATTEMPT: u8 = 1;
/// `POLICY_ID` holds the attempt's policy id.
const HAS_ID: u8 = 2;
/// A capture is listening for the call starting now.
const CAPTURE: u8 = 4;

thread_local! {
    static INDEXES: Cell<u64> = const { Cell::new(0) };
    static FLAGS: Cell<u8> = const { Cell::new(0) };
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Touched only for policies that have an id.
    static POLICY_ID: RefCell<Option<Arc<str>>> = const { RefCell::new(None) };
    static PUBLISHED: RefCell<Option<Timeline>> = const { RefCell::new(None) };
}

/// The attempt being polled on this thread, if the caller is inside a
/// recourse operation.
pub fn attempt() -> Option<Attempt> {
    let flags = FLAGS.with(Cell::get);
    if flags & IN_ATTEMPT == 0 {
        return None;
    }
    let indexes = INDEXES.with(Cell::get);
    let policy_id = if flags & HAS_ID == 0 { None } else { POLICY_ID.with(|id| id.borrow().clone()) };
    #[allow(clippy::cast_possible_truncation, reason = "two u32 halves")]
    Some(Attempt {
        retry_index: indexes as u32,
        hedge_index: (indexes >> 32) as u32,
        policy_id,
        deadline: DEADLINE.with(Cell::get),
    })
}

/// Whether a capture is listening for the call starting now.
#[inline]
pub(crate) fn capture_requested() -> bool {
    FLAGS.with(Cell::get) & CAPTURE != 0
}

/// Hands a finished call's timeline to the enclosing capture.
pub(crate) fn publish(timeline: Timeline) {
    PUBLISHED.with(|p| *p.borrow_mut() = Some(timeline));
}

/// What an attempt's scope replaced on this thread, restored when the
/// scope ends. Kept in the caller's frame and restored through
/// [`AttemptScope`], which holds only a pointer to it: a guard that held
/// these values itself would be moved as a whole, a memory round trip that
/// costs more than the scope.
pub(crate) struct Saved {
    indexes: u64,
    flags: u8,
    deadline: Option<Instant>,
    /// Whether this attempt set a policy id, and the previous one.
    set_id: bool,
    id: Option<Arc<str>>,
}

impl Saved {
    /// Enters `attempt`'s scope: `attempt` visible and capture suppressed
    /// (a nested call inside the operation neither sees nor overwrites the
    /// outer capture).
    #[inline]
    pub(crate) fn enter(attempt: &Attempt) -> Self {
        let indexes = u64::from(attempt.retry_index) | (u64::from(attempt.hedge_index) << 32);
        let flags = if attempt.policy_id.is_some() { IN_ATTEMPT | HAS_ID } else { IN_ATTEMPT };
        Self {
            indexes: INDEXES.with(|c| c.replace(indexes)),
            flags: FLAGS.with(|c| c.replace(flags)),
            deadline: DEADLINE.with(|c| c.replace(attempt.deadline)),
            set_id: attempt.policy_id.is_some(),
            id: attempt.policy_id.as_ref().and_then(|id| POLICY_ID.with(|p| p.replace(Some(Arc::clone(id))))),
        }
    }

    #[inline]
    fn restore(&mut self) {
        if self.set_id {
            let previous = self.id.take();
            POLICY_ID.with(|p| *p.borrow_mut() = previous);
        }
        DEADLINE.with(|c| c.set(self.deadline));
        FLAGS.with(|c| c.set(self.flags));
        INDEXES.with(|c| c.set(self.indexes));
    }
}

/// The attempt scope of one poll: ends with [`exit`](Self::exit), or when
/// dropped, so a panic unwinding through the poll leaves the thread as it
/// found it (tokio keeps the worker thread after a task panics).
#[must_use = "the scope ends when the guard is dropped"]
pub(crate) struct AttemptScope<'a>(&'a mut Saved);

impl<'a> AttemptScope<'a> {
    #[inline]
    pub(crate) fn new(saved: &'a mut Saved) -> Self {
        Self(saved)
    }

    /// Ends the scope on the normal path.
    #[inline]
    pub(crate) fn exit(self) {
        let mut this = std::mem::ManuallyDrop::new(self);
        this.0.restore();
    }
}

impl Drop for AttemptScope<'_> {
    fn drop(&mut self) {
        self.0.restore();
    }
}

/// An observer's call and attempt scopes, borrowed for one poll.
#[derive(Clone, Copy, Default)]
pub(crate) struct Scopes<'a> {
    pub(crate) call: Option<&'a dyn super::Enter>,
    pub(crate) attempt: Option<&'a dyn super::Enter>,
    /// With panic recovery on: where a panicking `enter`/`exit` is counted
    /// (the executor's observer panics) instead of unwinding into the poll,
    /// or aborting the process when it happens during another unwind.
    pub(crate) recover: Option<&'a std::sync::atomic::AtomicU64>,
}

impl<'a> Scopes<'a> {
    pub(crate) const NONE: Scopes<'static> = Scopes { call: None, attempt: None, recover: None };

    /// Enters the call's scope, then the attempt's; the guard exits them in
    /// reverse, also when a panic unwinds through the poll.
    #[inline]
    pub(crate) fn enter(self) -> Entered<'a> {
        if let Some(call) = self.call {
            self.run(|| call.enter());
        }
        if let Some(attempt) = self.attempt {
            self.run(|| attempt.enter());
        }
        Entered(self)
    }

    /// `step`, caught and counted when recovery is on.
    #[inline]
    fn run(&self, step: impl FnOnce()) {
        match self.recover {
            None => step(),
            Some(count) => {
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).is_err() {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }
}

/// Exits [`Scopes`] when dropped.
#[must_use = "the scopes are exited when the guard is dropped"]
pub(crate) struct Entered<'a>(Scopes<'a>);

impl Drop for Entered<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(attempt) = self.0.attempt {
            self.0.run(|| attempt.exit());
        }
        if let Some(call) = self.0.call {
            self.0.run(|| call.exit());
        }
    }
}

/// Runs `f` inside `attempt`'s scope.
#[inline]
pub(crate) fn enter_attempt<R>(attempt: &Attempt, f: impl FnOnce() -> R) -> R {
    let mut saved = Saved::enter(attempt);
    let scope = AttemptScope::new(&mut saved);
    let result = f();
    scope.exit();
    result
}

/// A capture's scope around one poll of its future: the capture flag set
/// and the published slot cleared, both restored on drop (also when the
/// poll unwinds).
struct CaptureScope {
    flags: u8,
    published: Option<Timeline>,
}

impl CaptureScope {
    fn enter() -> Self {
        Self {
            flags: FLAGS.with(|c| c.replace(c.get() | CAPTURE)),
            published: PUBLISHED.with(|p| p.borrow_mut().take()),
        }
    }

    /// The timeline published during the poll, if any.
    fn take_published() -> Option<Timeline> {
        PUBLISHED.with(|p| p.borrow_mut().take())
    }
}

impl Drop for CaptureScope {
    fn drop(&mut self) {
        let published = self.published.take();
        PUBLISHED.with(|p| *p.borrow_mut() = published);
        FLAGS.with(|c| c.set(self.flags));
    }
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
        let _scope = CaptureScope::enter();
        let poll = future.as_mut().poll(cx);
        if let Some(timeline) = CaptureScope::take_published() {
            captured = Some(timeline);
        }
        poll
    })
    .await;
    (output, captured.unwrap_or_else(|| Timeline::empty(start)))
}

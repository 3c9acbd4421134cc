//! What the lock-free parts (the token bucket, the latency tracker, the
//! breaker's state machine) are built on: atomics, spinning and the clock.
//!
//! A normal build re-exports `std`'s atomics and hints and tokio's
//! `Instant`, so the code is exactly what it would be without this module.
//! Under `--cfg loom` they are `loom`'s, so a model checker sees every
//! atomic access and every spin (`tests/loom.rs`, `.ci/loom`), and the clock
//! is a model's own: it stands still unless the model moves it (between its
//! phases, never while threads run), so a model explores interleavings,
//! not timings.

#[cfg(not(loom))]
pub(crate) use std::hint::spin_loop;
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::thread::yield_now;
#[cfg(not(loom))]
pub(crate) use tokio::time::Instant;

#[cfg(loom)]
pub(crate) use loom::hint::spin_loop;
#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::thread::yield_now;

#[cfg(loom)]
pub use clock::{Instant, advance_clock};

#[cfg(loom)]
mod clock {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    loom::lazy_static! {
        /// Nanoseconds on the model's clock: a fresh zero in every
        /// execution (loom drops its lazy statics after each), and not a
        /// loom atomic, so reading the time adds no interleavings.
        static ref NOW: AtomicU64 = AtomicU64::new(0);
    }

    /// A point on the model's clock (stands in for tokio's `Instant`).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    pub struct Instant(u64);

    impl Instant {
        /// The model's time now.
        pub fn now() -> Self {
            Self(NOW.load(Ordering::Relaxed))
        }

        /// Time since `self` on the model's clock.
        pub fn elapsed(&self) -> Duration {
            Self::now().saturating_duration_since(*self)
        }

        /// Time from `earlier` to `self`, zero if `earlier` is later.
        pub fn saturating_duration_since(&self, earlier: Self) -> Duration {
            Duration::from_nanos(self.0.saturating_sub(earlier.0))
        }
    }

    /// Moves the model's clock forward. Call it from the model's own thread
    /// between phases (before spawning, after joining): loom does not see
    /// the clock, so it cannot order a move against other threads.
    pub fn advance_clock(by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        NOW.fetch_add(nanos, Ordering::Relaxed);
    }
}

//! Injectable time: the clock that stamps timelines and the sleeper that
//! waits between attempts.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A boxed sleep future, as returned by custom [`Sleeper`]s.
pub type SleepFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The time source for timeline timestamps.
///
/// The default reads `tokio::time::Instant::now()`, which follows
/// `tokio::time::pause()` and `advance()` in tests. Deadlines always run on
/// tokio time.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> Instant;
}

impl<F: Fn() -> Instant + Send + Sync + 'static> Clock for F {
    fn now(&self) -> Instant {
        self()
    }
}

/// Waits out a backoff.
///
/// The default is `tokio::time::sleep` (no allocation). A custom sleeper is
/// how tests observe or skip sleeps; its future is boxed. A sleep is
/// cancelled by dropping it, when the caller drops the call.
///
/// ```
/// use recourse::executor::{Sleeper, SleepFuture};
/// use std::sync::{Arc, Mutex};
/// use std::time::Duration;
///
/// /// Records every sleep and returns at once.
/// #[derive(Default)]
/// struct Recording(Mutex<Vec<Duration>>);
///
/// impl Sleeper for Recording {
///     fn sleep(&self, duration: Duration) -> SleepFuture {
///         self.0.lock().unwrap().push(duration);
///         Box::pin(async {})
///     }
/// }
///
/// let sleeper = Arc::new(Recording::default());
/// let executor = recourse::Executor::builder().sleeper(Arc::clone(&sleeper)).build();
/// # let _ = executor;
/// ```
pub trait Sleeper: Send + Sync + 'static {
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> SleepFuture;
}

impl<S: Sleeper + ?Sized> Sleeper for Arc<S> {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        (**self).sleep(duration)
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> Instant {
        (**self).now()
    }
}

#[derive(Clone, Default)]
pub(crate) struct Time {
    clock: Option<Arc<dyn Clock>>,
    sleeper: Option<Arc<dyn Sleeper>>,
}

impl Time {
    pub(crate) fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = Some(clock);
    }

    pub(crate) fn set_sleeper(&mut self, sleeper: Arc<dyn Sleeper>) {
        self.sleeper = Some(sleeper);
    }

    pub(crate) fn has_custom_clock(&self) -> bool {
        self.clock.is_some()
    }

    pub(crate) fn now(&self) -> Instant {
        match &self.clock {
            None => Instant::now(),
            Some(clock) => clock.now(),
        }
    }

    /// The custom sleeper, if one is installed.
    pub(crate) fn custom_sleeper(&self) -> Option<&Arc<dyn Sleeper>> {
        self.sleeper.as_ref()
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Time")
            .field("clock", &if self.clock.is_some() { "custom" } else { "tokio" })
            .field("sleeper", &if self.sleeper.is_some() { "custom" } else { "tokio" })
            .finish()
    }
}

//! The drivers: the only code generic over the operation. They create and
//! poll each attempt's future (through [`Run`]) and hand its result to the
//! engine, which makes every decision. One attempt loop serves every call
//! form: [`drive`] for the closure form (`Executor::call`, `key!`,
//! `#[recourse]` on `&self` and free functions; a hedged retry group runs
//! through `group.rs`), and [`Sequential`] for the `&mut` form that
//! `#[recourse]` expands to, one attempt per call of
//! [`Sequential::attempt`].

// `drive` returns an `async move` block rather than being an `async fn`: a
// block uses its captures in place, while an `async fn` copies its
// parameters into its body at the first poll.
#![allow(clippy::manual_async_fn, reason = "see the comment above")]

use std::future::Future;
use std::marker::PhantomData;
use std::pin::{Pin, pin};
use std::time::Duration;

use tokio::time::Sleep;

use super::Inner;
use super::attempt::Run;
use super::call::{Attempted, Next};
use super::engine::Engine;
use super::group;
use super::resolve::{Look, SiteCache, Source};
use crate::__private::FromRecourseError;
use crate::budget::AttemptEnd;
use crate::classify::{Classify, ErrorView};
use crate::error::Error;
use crate::observe::{Attempt, Scopes};

/// How the drivers see an operation's error (as `&dyn ErrorView`) and
/// make one from recourse's own [`Error`].
///
/// The drivers ask for this instead of `E: Classify + From<Error>` so that
/// the bounds are checked in one place per call form: `Executor::call`'s
/// signature, or the `check_result` of a `#[recourse]` expansion, whose
/// opaque return type implements this trait whether or not those bounds
/// held. A missing `Classify` or `From` is then reported once, on the
/// user's return type, and not again by the call it feeds.
pub trait ErrorOps<E> {
    /// The error as classifiers and observers see it.
    fn view(error: &E) -> &dyn ErrorView;
    /// Recourse's own error, converted into the operation's.
    fn from_recourse(error: Error) -> E;
}

/// The [`ErrorOps`] of an error type that meets the bounds.
pub struct Checked<E>(PhantomData<fn() -> E>);

impl<E: Classify + FromRecourseError + 'static> Checked<E> {
    /// Checks `E`'s bounds.
    #[inline]
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

impl<E: Classify + FromRecourseError + 'static> Default for Checked<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> std::fmt::Debug for Checked<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checked")
    }
}

impl<E: Classify + FromRecourseError + 'static> ErrorOps<E> for Checked<E> {
    #[inline]
    fn view(error: &E) -> &dyn ErrorView {
        error
    }

    #[inline]
    fn from_recourse(error: Error) -> E {
        E::from_recourse(error)
    }
}

/// A call's engine and the operation's last error (kept across a backoff
/// so that a budget denial of the next attempt can return it), both owned
/// by the call's future: the driver only borrows them, so a plain call's
/// first attempt can fail into `last` before the engine exists.
struct Driver<'d, 'x, E, O> {
    engine: &'d mut Engine<'x>,
    last: &'d mut Option<E>,
    ops: PhantomData<O>,
}

impl<E, O: ErrorOps<E>> Driver<'_, '_, E, O> {
    /// Starts the call (see [`Engine::begin`]); `Err`: it ended at once.
    #[inline]
    fn begin(&mut self, sequential: bool, look: Look) -> Result<(), E> {
        match self.engine.begin(sequential, look) {
            None => Ok(()),
            Some(error) => Err(self.engine.fail::<E, O>(error)),
        }
    }

    /// Hands the planned attempt's failure to the engine (`None`: its
    /// deadline passed) and keeps the error as the call's last: what next.
    /// (A success is handed over where it happens, so the value never
    /// travels through the failure path's types.)
    #[inline]
    fn failed(&mut self, error: Option<E>) -> Next {
        match error {
            Some(error) => {
                let next = self.engine.failed(Attempted::Err(O::view(&error)));
                *self.last = Some(error);
                next
            }
            None => {
                let error = O::from_recourse(self.engine.cut_error());
                let next = self.engine.failed(Attempted::Cut(O::view(&error)));
                *self.last = Some(error);
                next
            }
        }
    }

    /// Hands the failure of a plain first attempt (kept as `last`) to the
    /// engine: what next.
    #[inline]
    fn failed_plain(&mut self) -> Next {
        let error = self.last.take();
        self.engine.ran_plain();
        self.failed(error)
    }

    /// After a failed attempt: the backoff before the next one, or the
    /// call's result.
    #[inline]
    fn backoff<T>(&mut self, next: Next) -> Result<Duration, Result<T, E>> {
        match next {
            Next::Sleep(duration) => {
                if !self.engine.keeps_last() {
                    *self.last = None;
                }
                Ok(duration)
            }
            other => Err(self.ended(other)),
        }
    }

    /// After the backoff (`Err`: a custom sleeper overran the deadline),
    /// plans the next attempt: whether it runs as a hedged group, or the
    /// call's result.
    #[inline]
    fn resume<T>(&mut self, paused: Result<(), Error>) -> Result<bool, Result<T, E>> {
        if let Err(error) = paused {
            return Err(self.ended(Next::Fail(Box::new(error))));
        }
        match self.engine.next(self.last.as_ref().map(O::view)) {
            Next::Attempt => Ok(false),
            Next::Group => Ok(true),
            other => Err(self.ended(other)),
        }
    }

    /// The call's result, when the engine ended the call.
    fn ended<T>(&mut self, next: Next) -> Result<T, E> {
        let error = match next {
            Next::Last => return Err(self.last.take().expect("the engine ends with the last error only after one")),
            Next::Fail(error) => *error,
            Next::Denied(reason) => Error::BudgetDenied { reason },
            Next::Attempt | Next::Group | Next::Sleep(_) => unreachable!("{next:?} does not end the call"),
        };
        *self.last = None;
        Err(self.engine.fail::<E, O>(error))
    }
}

/// A call's key: a call site's, or one without a call site, owned by the
/// call (so the common forms keep a pointer, not a key, in their future).
pub(crate) trait CallKeyRef {
    fn source(&self) -> Source<'_>;
}

impl CallKeyRef for &SiteCache {
    #[inline]
    fn source(&self) -> Source<'_> {
        Source::Site(self)
    }
}

/// A plain call's first attempt: no deadline, no policy id.
static PLAIN: Attempt = Attempt::first(None);

/// `make()` in a fresh box: allocated first, so the value can be built in
/// place. `Box::pin(make())` builds it on the stack and then copies it into
/// the allocation (for a hedged group's future, kilobytes per call).
#[inline]
fn boxed<T>(make: impl FnOnce() -> T) -> Pin<Box<T>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// The closure form: `op` makes one attempt's future per call.
pub(crate) fn drive<K, F, Fut, T, E, O>(inner: &Inner, key: K, _: O, mut op: F) -> impl Future<Output = Result<T, E>>
where
    K: CallKeyRef,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    O: ErrorOps<E>,
{
    async move {
        // One timer per call: the attempt's deadline, then the backoff.
        let mut timer = pin!(None::<Sleep>);
        // A plain call's first attempt runs before the engine exists: with
        // nothing to gate, time, break, hedge or record, a success has
        // nothing to decide, and building and dropping the engine for it
        // measured 14 ns against 9 (S1 in BENCHMARKS.md). A failure hands
        // its error to the engine, which goes on from there.
        let mut last = None;
        let mut engine;
        // A view of the engine and the last error, made where it is used
        // (a stored one would be two more pointers in the call's future).
        macro_rules! driver {
            () => {
                Driver::<E, O> { engine: &mut engine, last: &mut last, ops: PhantomData }
            };
        }
        let look = Look::now(inner, key.source());
        let mut ran_plain = look.plain;
        if ran_plain {
            match Run::new((&PLAIN, Scopes::NONE), &mut op, pin!(None::<Fut>), timer.as_mut()).await {
                Some(Ok(value)) => return Ok(value),
                Some(Err(error)) => last = Some(error),
                None => unreachable!("a plain attempt has no deadline"),
            }
            engine = Engine::new(inner, key.source());
        } else {
            // A lean call without a policy id runs its first attempt the
            // same way, with its budget's release (see `Engine::lean_first`).
            // Everything here is scoped to this block, so the call's future
            // keeps room for the release only while that attempt runs.
            let mut release = None;
            let go = match Engine::lean_first(inner, key.source(), look, &mut release) {
                Ok(go) => go,
                Err(reason) => return Err(O::from_recourse(Error::BudgetDenied { reason })),
            };
            if go {
                match Run::new((&PLAIN, Scopes::NONE), &mut op, pin!(None::<Fut>), timer.as_mut()).await {
                    Some(Ok(value)) => {
                        // Before the result is published.
                        if let Some(mut release) = release {
                            release.settle(AttemptEnd::Succeeded);
                        }
                        return Ok(value);
                    }
                    Some(Err(error)) => last = Some(error),
                    None => unreachable!("a lean attempt has no deadline"),
                }
                ran_plain = true;
                engine = Engine::new(inner, key.source());
                // The engine settles it once the failure is classified.
                engine.hold(release);
            } else {
                // Used only here, before anything is awaited: the look is
                // not kept in the call's future.
                engine = Engine::new(inner, key.source());
                driver!().begin(false, look)?;
            }
        }
        let mut hedged = engine.hedged();
        loop {
            let next = if std::mem::take(&mut ran_plain) {
                driver!().failed_plain()
            } else if hedged {
                // Boxed: a group holds up to four attempt futures and their
                // timers, which would otherwise make every call's future
                // several times larger, hedged or not.
                match boxed(|| group::run::<_, _, _, _, O>(&mut engine, &mut last, &mut op)).await {
                    Ok(next) => next,
                    Err(done) => return done,
                }
            } else {
                match Run::new(engine.scope(), &mut op, pin!(None::<Fut>), timer.as_mut()).await {
                    Some(Ok(value)) => {
                        engine.succeeded();
                        return Ok(value);
                    }
                    Some(Err(error)) => driver!().failed(Some(error)),
                    None => driver!().failed(None),
                }
            };
            let backoff = match driver!().backoff(next) {
                Ok(backoff) => backoff,
                Err(done) => return done,
            };
            let paused = engine.pause(backoff, timer.as_mut()).await;
            hedged = match driver!().resume(paused) {
                Ok(hedged) => hedged,
                Err(done) => return done,
            };
        }
    }
}

/// A call whose attempts the caller runs one at a time: what `#[recourse]`
/// expands to for functions that borrow mutably (each attempt reborrows,
/// so no closure can make the attempts, and the future stays `Send`).
///
/// ```ignore
/// let mut call = SITE.sequential(executor);
/// loop {
///     // per-attempt copies of by-value arguments
///     if let Some(done) = call.attempt(async { BODY }).await {
///         return done;
///     }
/// }
/// ```
#[doc(hidden)]
pub struct Sequential<'x, E, O> {
    engine: Engine<'x>,
    last: Option<E>,
    /// Whether the call has begun (at its first attempt).
    begun: bool,
    ops: PhantomData<O>,
}

impl<E, O> std::fmt::Debug for Sequential<'_, E, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequential").finish_non_exhaustive()
    }
}

impl<'x, E, O: ErrorOps<E>> Sequential<'x, E, O> {
    pub(crate) fn new(inner: &'x Inner, site: &'x SiteCache) -> Self {
        Self { engine: Engine::new(inner, Source::Site(site)), last: None, begun: false, ops: PhantomData }
    }

    /// Runs the next attempt with `future` as its body: `Some` with the
    /// call's result once the call is over, `None` when another attempt
    /// follows (after its backoff).
    pub async fn attempt<T, Fut>(&mut self, future: Fut) -> Option<Result<T, E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let mut driver = Driver::<E, O> { engine: &mut self.engine, last: &mut self.last, ops: PhantomData };
        if !std::mem::replace(&mut self.begun, true)
            && let Err(error) = driver.begin(true, Look::now(driver.engine.inner(), driver.engine.source()))
        {
            return Some(Err(error));
        }
        let mut timer = pin!(None::<Sleep>);
        let next = match Run::new(driver.engine.scope(), || future, pin!(None::<Fut>), timer.as_mut()).await {
            Some(Ok(value)) => {
                driver.engine.succeeded();
                return Some(Ok(value));
            }
            Some(Err(error)) => driver.failed(Some(error)),
            None => driver.failed(None),
        };
        let backoff = match driver.backoff(next) {
            Ok(backoff) => backoff,
            Err(done) => return Some(done),
        };
        let paused = driver.engine.pause(backoff, timer.as_mut()).await;
        driver.resume::<T>(paused).err()
    }
}

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
use std::pin::{Pin, pin};

use tokio::time::Sleep;

use super::attempt::Run;
use super::engine::{Attempted, Engine, Next};
use super::group;
use super::resolve::{SiteCache, Source};
use super::site::CallKey;
use super::{Executor, Inner};
use crate::classify::{Classify, ErrorView};
use crate::error::Error;
use crate::policy::PolicyKey;

/// A call's engine and the operation's last error (kept across a backoff
/// so that a budget denial of the next attempt can return it).
struct Driver<'x, E> {
    engine: Engine<'x>,
    last: Option<E>,
}

impl<'x, E> Driver<'x, E>
where
    E: Classify + From<Error> + 'static,
{
    #[inline]
    fn begin(inner: &'x Inner, source: Source<'x>, sequential: bool) -> Result<Self, E> {
        let (mut engine, failed) = Engine::begin(inner, source, sequential);
        match failed {
            None => Ok(Self { engine, last: None }),
            Some(error) => Err(engine.fail(error)),
        }
    }

    /// Hands the planned attempt's result to the engine: what next, or the
    /// call's result.
    #[inline]
    fn settle<T>(&mut self, result: Option<Result<T, E>>) -> Result<Next, Result<T, E>> {
        match result {
            Some(Ok(value)) => {
                self.engine.succeeded();
                Err(Ok(value))
            }
            Some(Err(error)) => {
                let next = self.engine.failed(Attempted::Err(&error));
                self.last = Some(error);
                Ok(next)
            }
            None => {
                let error = E::from(self.engine.cut_error());
                let next = self.engine.failed(Attempted::Cut(&error));
                self.last = Some(error);
                Ok(next)
            }
        }
    }

    /// Follows the engine past backoffs to the next attempt to run
    /// ([`Next::Attempt`] or [`Next::Group`]), or to the call's end.
    async fn advance<T>(&mut self, mut next: Next, mut timer: Pin<&mut Option<Sleep>>) -> Result<Next, Result<T, E>> {
        loop {
            match next {
                Next::Attempt | Next::Group => return Ok(next),
                Next::Sleep(duration) => {
                    if !self.engine.keeps_last() {
                        self.last = None;
                    }
                    if let Err(error) = self.engine.sleep(duration, timer.as_mut()).await {
                        self.last = None;
                        return Err(Err(self.engine.fail(error)));
                    }
                    next = self.engine.next(self.last.as_ref().map(|e| e as &dyn ErrorView));
                }
                Next::Last => {
                    return Err(Err(self.last.take().expect("the engine ends with the last error only after one")));
                }
                Next::Fail(error) => {
                    self.last = None;
                    return Err(Err(self.engine.fail(error)));
                }
            }
        }
    }
}

/// `make()` in a fresh box: allocated first, so the value can be built in
/// place. `Box::pin(make())` builds it on the stack and then copies it into
/// the allocation (for a hedged group's future, kilobytes per call).
#[inline]
fn boxed<T>(make: impl FnOnce() -> T) -> Pin<Box<T>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}

/// The closure form: `op` makes one attempt's future per call. The key is
/// a call site's, or (`Err`) one without a call site, owned by the call.
pub(crate) fn drive<F, Fut, T, E>(
    inner: &Inner,
    site: Result<&SiteCache, PolicyKey>,
    mut op: F,
) -> impl Future<Output = Result<T, E>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error> + 'static,
{
    async move {
        let source = match &site {
            Ok(site) => Source::Site(site),
            Err(key) => Source::Key(key),
        };
        let mut driver = Driver::begin(inner, source, false)?;
        // One timer per call: the attempt's deadline, then the backoff.
        let mut timer = pin!(None::<Sleep>);
        let mut next = driver.engine.next(None);
        loop {
            let step = match next {
                Next::Attempt => {
                    let result = {
                        let mut future = pin!(None::<Fut>);
                        Run::new(driver.engine.scope(), &mut op, future.as_mut(), timer.as_mut()).await
                    };
                    driver.settle(result)
                }
                // Boxed: a group holds up to four attempt futures and their
                // timers, which would otherwise make every call's future
                // several times larger, hedged or not.
                Next::Group => boxed(|| group::run(&mut driver.engine, &mut driver.last, &mut op)).await,
                other => Ok(other),
            };
            next = match step {
                Ok(next) => match driver.advance(next, timer.as_mut()).await {
                    Ok(next) => next,
                    Err(done) => return done,
                },
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
pub struct Sequential<'x, E> {
    driver: Result<Driver<'x, E>, Option<E>>,
}

impl<E> std::fmt::Debug for Sequential<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sequential").finish_non_exhaustive()
    }
}

impl<'x, E> Sequential<'x, E>
where
    E: Classify + From<Error> + 'static,
{
    pub(crate) fn new(inner: &'x Inner, site: &'x SiteCache) -> Self {
        Self { driver: Driver::begin(inner, Source::Site(site), true).map_err(Some) }
    }

    /// Runs the next attempt with `future` as its body: `Some` with the
    /// call's result once the call is over, `None` when another attempt
    /// follows (after its backoff).
    pub async fn attempt<T, Fut>(&mut self, future: Fut) -> Option<Result<T, E>>
    where
        Fut: Future<Output = Result<T, E>>,
    {
        let driver = match &mut self.driver {
            Ok(driver) => driver,
            Err(failed) => return failed.take().map(Err),
        };
        let mut timer = pin!(None::<Sleep>);
        let result = {
            let mut slot = pin!(None::<Fut>);
            Run::new(driver.engine.scope(), || future, slot.as_mut(), timer.as_mut()).await
        };
        match driver.settle(result) {
            Err(done) => Some(done),
            Ok(next) => driver.advance::<T>(next, timer.as_mut()).await.err(),
        }
    }
}

impl Executor {
    /// Runs `op` under the policy for `key`.
    ///
    /// `op` is called once per attempt and returns the attempt's future;
    /// shared state it captures is reused, so clone owned data inside it.
    /// The call returns the first success, or the operation's last error
    /// (unchanged) when attempts run out or an error is not retryable, or a
    /// [`recourse::Error`](crate::Error) converted into `E` when recourse
    /// itself ended the call (policy denied, overall timeout, recovered
    /// panic). Dropping the returned future cancels the call: the attempt in
    /// flight is dropped and nothing more happens.
    ///
    /// Classification of a failed attempt: the policy's named classifier,
    /// else the error's own [`Classify`] outcome, else the executor's
    /// default classifier.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
    /// let executor = recourse::Executor::builder().build();
    /// let mut calls = 0;
    /// let result: Result<(), std::io::Error> = executor
    ///     .call("files.Read", || {
    ///         calls += 1;
    ///         async { Err(std::io::Error::from(std::io::ErrorKind::NotFound)) }
    ///     })
    ///     .await;
    /// assert!(result.is_err());
    /// assert_eq!(calls, 1, "NotFound is not retryable");
    /// # }
    /// ```
    pub fn call<K, F, Fut, T, E>(&self, key: K, op: F) -> impl Future<Output = Result<T, E>>
    where
        K: Into<CallKey>,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
        E: Classify + From<Error> + 'static,
    {
        let site = match key.into() {
            CallKey::Key(key) => Err(key),
            CallKey::Checked(checked) => Ok(checked.site()),
        };
        drive(&self.inner, site, op)
    }
}

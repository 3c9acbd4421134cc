//! The error types services already use work as a `#[recourse]` function's
//! error type with no code from the user (DESIGN §3.4): `std::io::Error`,
//! `Box<dyn Error + Send + Sync>` and, with the `anyhow` feature,
//! `anyhow::Error`. Classification looks through the wrapper to the io
//! error inside.
#![allow(missing_docs)]

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use recourse::{Executor, recourse};

fn executor() -> Executor {
    Executor::builder().build()
}

/// Fails with `kind` until the `fail_times`-th call has failed.
struct Script {
    calls: AtomicU32,
    fail_times: u32,
    kind: io::ErrorKind,
}

impl Script {
    fn new(fail_times: u32, kind: io::ErrorKind) -> Self {
        Script { calls: AtomicU32::new(0), fail_times, kind }
    }

    fn next(&self) -> Result<u32, io::Error> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if call <= self.fail_times { Err(io::Error::new(self.kind, "scripted")) } else { Ok(call) }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }
}

// `users.Get`: 3 attempts.
#[recourse(policy = "users.Get", executor = executor)]
async fn io_result(executor: &Executor, script: &Script) -> io::Result<u32> {
    script.next()
}

#[recourse(policy = "users.Get", executor = executor)]
async fn boxed(executor: &Executor, script: &Script) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    Ok(script.next()?)
}

#[tokio::test(start_paused = true)]
async fn an_io_result_retries_a_reset_and_stops_on_not_found() {
    let executor = executor();
    let reset = Script::new(2, io::ErrorKind::ConnectionReset);
    assert_eq!(io_result(&executor, &reset).await.unwrap(), 3);

    let missing = Script::new(5, io::ErrorKind::NotFound);
    let error = io_result(&executor, &missing).await.unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    assert_eq!(missing.calls(), 1, "a missing file is not retried");
}

#[tokio::test(start_paused = true)]
async fn a_boxed_error_is_classified_by_the_io_error_inside() {
    let executor = executor();
    let reset = Script::new(2, io::ErrorKind::ConnectionReset);
    assert_eq!(boxed(&executor, &reset).await.unwrap(), 3);

    let missing = Script::new(5, io::ErrorKind::NotFound);
    let error = boxed(&executor, &missing).await.unwrap_err();
    assert_eq!(error.downcast_ref::<io::Error>().map(io::Error::kind), Some(io::ErrorKind::NotFound));
    assert_eq!(missing.calls(), 1, "a missing file is not retried");
}

#[cfg(feature = "anyhow")]
mod with_anyhow {
    use anyhow::Context as _;

    use super::*;

    #[recourse(policy = "users.Get", executor = executor)]
    async fn fetch(executor: &Executor, script: &Script) -> anyhow::Result<u32> {
        script.next().context("fetching the user")
    }

    #[tokio::test(start_paused = true)]
    async fn an_anyhow_result_is_classified_by_the_io_error_under_its_context() {
        let executor = executor();
        let reset = Script::new(2, io::ErrorKind::ConnectionReset);
        assert_eq!(fetch(&executor, &reset).await.unwrap(), 3);
        assert_eq!(reset.calls(), 3);

        let missing = Script::new(5, io::ErrorKind::NotFound);
        let error = fetch(&executor, &missing).await.unwrap_err();
        assert_eq!(error.to_string(), "fetching the user");
        assert_eq!(error.root_cause().downcast_ref::<io::Error>().map(io::Error::kind), Some(io::ErrorKind::NotFound));
        assert_eq!(missing.calls(), 1, "a missing file is not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn an_anyhow_result_gives_up_after_the_policys_attempts() {
        let executor = executor();
        let reset = Script::new(10, io::ErrorKind::ConnectionReset);
        let error = fetch(&executor, &reset).await.unwrap_err();
        assert!(error.root_cause().downcast_ref::<io::Error>().is_some(), "{error:#}");
        assert_eq!(reset.calls(), 3, "users.Get allows 3 attempts");
    }
}

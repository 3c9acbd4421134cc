//! The error types services already use work as a `#[recourse]` function's
//! error type with no code from the user (DESIGN §3.4): `std::io::Error`,
//! `Box<dyn Error + Send + Sync>` and, with the `anyhow` feature,
//! `anyhow::Error`. Classification looks through the wrapper to the io
//! error inside, and a `#[derive(Classifier)]` error inside keeps its own
//! outcome once the executor is told to look for it.
#![allow(missing_docs)]

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};

use recourse::classify::ErrorView;
use recourse::{Classifier, Executor, OutcomeKind, Timeline, recourse};

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

/// A store's own error, classified by its derive.
#[derive(Debug, thiserror::Error, Classifier)]
enum DbError {
    #[error("deadlock detected")]
    #[classify(retryable)]
    Deadlock,
    #[error("constraint violated")]
    #[classify(non_retryable)]
    Constraint,
}

/// Fails with `error` the first `fail_times` times.
struct DbScript {
    calls: AtomicU32,
    fail_times: u32,
    error: fn() -> DbError,
}

impl DbScript {
    fn new(fail_times: u32, error: fn() -> DbError) -> Self {
        DbScript { calls: AtomicU32::new(0), fail_times, error }
    }

    fn next(&self) -> Result<u32, DbError> {
        let call = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        if call <= self.fail_times { Err((self.error)()) } else { Ok(call) }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::Relaxed)
    }
}

fn looking_inside() -> Executor {
    Executor::builder().classify_wrapped::<DbError>().build()
}

#[recourse(policy = "users.Get", executor = executor)]
async fn io_db(executor: &Executor, script: &DbScript) -> io::Result<u32> {
    script.next().map_err(io::Error::other)
}

#[recourse(policy = "users.Get", executor = executor)]
async fn boxed_db(executor: &Executor, script: &DbScript) -> Result<u32, Box<dyn std::error::Error + Send + Sync>> {
    Ok(script.next()?)
}

fn reasons(timeline: &Timeline) -> Vec<(OutcomeKind, &str)> {
    timeline.attempts.iter().map(|a| (a.outcome.kind, &*a.outcome.reason)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_derived_error_inside_an_io_error_keeps_its_outcome() {
    let executor = looking_inside();
    let deadlock = DbScript::new(2, || DbError::Deadlock);
    let (value, timeline) = recourse::capture(io_db(&executor, &deadlock)).await;
    assert_eq!(value.unwrap(), 3);
    assert_eq!(reasons(&timeline)[..2], [(OutcomeKind::Retryable, "deadlock"); 2]);
    assert_eq!(timeline.attempts[0].error.as_deref(), Some("deadlock detected"));

    let constraint = DbScript::new(5, || DbError::Constraint);
    let (error, timeline) = recourse::capture(io_db(&executor, &constraint)).await;
    let error = error.unwrap_err();
    assert!(matches!(error.get_ref().and_then(|e| e.downcast_ref()), Some(DbError::Constraint)));
    assert_eq!(constraint.calls(), 1, "a constraint violation is not retried");
    assert_eq!(reasons(&timeline), [(OutcomeKind::NonRetryable, "constraint")]);
}

#[tokio::test(start_paused = true)]
async fn a_derived_error_inside_a_box_keeps_its_outcome() {
    let executor = looking_inside();
    let deadlock = DbScript::new(2, || DbError::Deadlock);
    assert_eq!(boxed_db(&executor, &deadlock).await.unwrap(), 3);

    let constraint = DbScript::new(5, || DbError::Constraint);
    let (error, timeline) = recourse::capture(boxed_db(&executor, &constraint)).await;
    assert!(matches!(error.unwrap_err().downcast_ref(), Some(DbError::Constraint)));
    assert_eq!(constraint.calls(), 1);
    assert_eq!(reasons(&timeline), [(OutcomeKind::NonRetryable, "constraint")]);
}

#[tokio::test(start_paused = true)]
async fn without_registration_the_default_classifier_decides() {
    // Nothing tells the executor to look for `DbError`: `auto` retries it
    // as an unknown error, and says so.
    let executor = executor();
    let constraint = DbScript::new(5, || DbError::Constraint);
    let (error, timeline) = recourse::capture(boxed_db(&executor, &constraint)).await;
    assert!(error.is_err());
    assert_eq!(constraint.calls(), 3);
    assert_eq!(reasons(&timeline)[0], (OutcomeKind::Retryable, "retryable_error"));
}

#[tokio::test(start_paused = true)]
async fn a_named_classifier_still_decides_alone() {
    let key = recourse::PolicyKey::parse("users.Get");
    let mut policy = recourse::Policy::default_for(key.clone());
    policy.retry.classifier = "always".into();
    let executor = Executor::builder().classify_wrapped::<DbError>().policy(policy).build();
    let constraint = DbScript::new(5, || DbError::Constraint);
    let (error, timeline) = recourse::capture(
        executor.call(&key, || async { constraint.next().map_err(Box::<dyn std::error::Error + Send + Sync>::from) }),
    )
    .await;
    assert!(error.is_err());
    assert_eq!(reasons(&timeline)[0], (OutcomeKind::Retryable, "retryable_error"));
}

/// An application error with nothing to say about retries: `defer`.
#[derive(Debug, thiserror::Error, Classifier)]
#[classify(default = defer)]
enum ProfileError {
    #[error("loading the profile")]
    Load(#[source] io::Error),
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

#[recourse(policy = "users.Get", executor = executor)]
async fn profile(executor: &Executor, script: &Script) -> Result<u32, ProfileError> {
    script.next().map_err(ProfileError::Load)
}

#[tokio::test(start_paused = true)]
async fn a_deferring_error_shows_its_message_and_is_classified_by_its_source() {
    let executor = executor();
    let reset = Script::new(1, io::ErrorKind::ConnectionReset);
    let (value, timeline) = recourse::capture(profile(&executor, &reset)).await;
    assert_eq!(value.unwrap(), 2);
    let first = &timeline.attempts[0];
    // Its message, then its source's.
    assert_eq!(first.error.as_deref(), Some("loading the profile: scripted"));
    assert_eq!((first.outcome.kind, &*first.outcome.reason), (OutcomeKind::Retryable, "io_connection_reset"));

    let missing = Script::new(5, io::ErrorKind::NotFound);
    let error = profile(&executor, &missing).await.unwrap_err();
    let view: &dyn ErrorView = &error;
    assert_eq!(view.find::<io::Error>().map(io::Error::kind), Some(io::ErrorKind::NotFound));
    assert_eq!(missing.calls(), 1);
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

    #[recourse(policy = "users.Get", executor = executor)]
    async fn insert(executor: &Executor, script: &DbScript) -> anyhow::Result<u32> {
        script.next().context("inserting the user")
    }

    #[tokio::test(start_paused = true)]
    async fn a_derived_error_under_an_anyhow_context_keeps_its_outcome() {
        let executor = looking_inside();
        let deadlock = DbScript::new(2, || DbError::Deadlock);
        let (value, timeline) = recourse::capture(insert(&executor, &deadlock)).await;
        assert_eq!(value.unwrap(), 3);
        assert_eq!(reasons(&timeline)[..2], [(OutcomeKind::Retryable, "deadlock"); 2]);

        let constraint = DbScript::new(5, || DbError::Constraint);
        let (error, timeline) = recourse::capture(insert(&executor, &constraint)).await;
        let error = error.unwrap_err();
        assert!(matches!(error.downcast_ref(), Some(DbError::Constraint)), "{error:#}");
        assert_eq!(constraint.calls(), 1);
        assert_eq!(reasons(&timeline), [(OutcomeKind::NonRetryable, "constraint")]);
        // Every context, as anyhow's `{:#}` shows them.
        assert_eq!(timeline.attempts[0].error.as_deref(), Some("inserting the user: constraint violated"));
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

/// thiserror's `#[error(transparent)]` leaves the wrapped error out of the
/// `source()` chain; `#[classify(transparent)]` keeps it findable.
#[derive(Debug, thiserror::Error, Classifier)]
enum StoreError {
    #[error(transparent)]
    #[classify(transparent)]
    Io(#[from] io::Error),
    #[error("corrupt row {0}")]
    #[classify(non_retryable)]
    Corrupt(u64),
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

#[test]
fn a_transparent_variants_field_is_found_by_type() {
    let error = StoreError::from(io::Error::from(io::ErrorKind::ConnectionReset));
    let view: &dyn ErrorView = &error;
    assert!(std::error::Error::source(&error).is_none(), "thiserror forwards source() past the io error");
    assert_eq!(view.find::<io::Error>().map(io::Error::kind), Some(io::ErrorKind::ConnectionReset));
    let corrupt: &dyn ErrorView = &StoreError::Corrupt(7);
    assert!(corrupt.find::<io::Error>().is_none());
}

//! `#[derive(Classifier)]`: every `#[classify(...)]` form yields the right
//! `Outcome`, transparent variants forward, `recourse::Error` variants abort
//! with the inner reason, `as_error` exposes the source chain, and the
//! executor honours derived outcomes end to end.
//!
//! The whole file compiles under `#![deny(warnings, clippy::pedantic)]`, so
//! `cargo clippy --all-targets -- -D warnings` also proves the expansion is
//! lint-clean in user code (thiserror's `test_lints.rs`).
#![deny(warnings, clippy::pedantic)]

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use recourse::classify::ErrorView;
use recourse::executor::{SleepFuture, Sleeper};
use recourse::policy::{Jitter, Policy};
use recourse::{Classifier, Classify, Executor, Outcome, OutcomeKind};

#[derive(Debug, thiserror::Error, Classifier)]
enum ApiError {
    #[error("connection reset")]
    #[classify(retryable)]
    Reset,
    #[error("throttled")]
    #[classify(retryable, reason = "throttled", backoff = retry_after)]
    Throttled { retry_after: Duration },
    #[error("too many requests")]
    #[classify(retryable, backoff = 0)]
    TooManyRequests(Duration, u16),
    #[error("maybe later")]
    #[classify(retryable, backoff = hint)]
    MaybeLater { hint: Option<Duration> },
    #[error("not found")]
    #[classify(non_retryable)]
    NotFound,
    #[error("forbidden")]
    #[classify(abort, reason = "forbidden_403")]
    Forbidden,
    #[error("bad gateway")]
    #[classify(non_retryable, reason = "upstream")]
    #[classify(backoff = 0)]
    BadGateway(Option<Duration>),
    #[error("wrapped")]
    #[classify(non_retryable)]
    Wrapped {
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    #[classify(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    #[classify(delegate)]
    Db(#[from] DbError),
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

#[derive(Debug, thiserror::Error, Classifier)]
#[classify(default = non_retryable)]
enum DbError {
    #[error("deadlock")]
    #[classify(retryable)]
    Deadlock,
    #[error("constraint")]
    Constraint,
    #[error("locked")]
    #[classify(reason = "row_locked")]
    Locked,
    #[error("HTTPError")]
    HTTPError,
    #[error(transparent)]
    Recourse(::recourse::Error),
}

#[derive(Debug, Classifier)]
#[classify(retryable, reason = "busy", backoff = wait)]
struct Busy {
    wait: Duration,
}

#[derive(Debug, Classifier)]
#[classify(abort)]
struct Shutdown;

/// Not a `std::error::Error`: `as_error` must be `None`.
#[derive(Debug, Classifier)]
enum Plain {
    #[classify(retryable)]
    Again,
}

#[derive(Debug, Classifier)]
enum Wrapper<E> {
    #[classify(transparent)]
    Inner(E),
    #[classify(abort, reason = "stopped")]
    Stopped,
}

#[derive(Debug, Classifier)]
enum Empty {}

fn outcome(error: &impl Classify) -> Outcome {
    error.classify().expect("derived classifiers always have an opinion")
}

fn assert_outcome(error: &impl Classify, kind: OutcomeKind, reason: &str, backoff: Option<Duration>) {
    let outcome = outcome(error);
    assert_eq!((outcome.kind, &*outcome.reason, outcome.backoff), (kind, reason, backoff));
}

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn kinds_and_default_reasons() {
    assert_outcome(&ApiError::Reset, OutcomeKind::Retryable, "reset", None);
    assert_outcome(&ApiError::NotFound, OutcomeKind::NonRetryable, "not_found", None);
    assert_outcome(&ApiError::Forbidden, OutcomeKind::Abort, "forbidden_403", None);
    assert_outcome(&ApiError::TooManyRequests(SECOND, 429), OutcomeKind::Retryable, "too_many_requests", Some(SECOND));
}

#[test]
fn backoff_fields() {
    let throttled = ApiError::Throttled { retry_after: 2 * SECOND };
    assert_outcome(&throttled, OutcomeKind::Retryable, "throttled", Some(2 * SECOND));
    assert_outcome(&ApiError::MaybeLater { hint: Some(SECOND) }, OutcomeKind::Retryable, "maybe_later", Some(SECOND));
    assert_outcome(&ApiError::MaybeLater { hint: None }, OutcomeKind::Retryable, "maybe_later", None);
    // A zero duration is no override (`Outcome::with_backoff`).
    assert_outcome(&ApiError::TooManyRequests(Duration::ZERO, 429), OutcomeKind::Retryable, "too_many_requests", None);
    // Keys may be spread over several attributes.
    assert_outcome(&ApiError::BadGateway(Some(SECOND)), OutcomeKind::NonRetryable, "upstream", Some(SECOND));
    assert_outcome(&Busy { wait: 3 * SECOND }, OutcomeKind::Retryable, "busy", Some(3 * SECOND));
}

#[test]
fn container_default() {
    assert_outcome(&DbError::Deadlock, OutcomeKind::Retryable, "deadlock", None);
    assert_outcome(&DbError::Constraint, OutcomeKind::NonRetryable, "constraint", None);
    // `reason` alone takes the default outcome.
    assert_outcome(&DbError::Locked, OutcomeKind::NonRetryable, "row_locked", None);
    assert_outcome(&DbError::HTTPError, OutcomeKind::NonRetryable, "http_error", None);
    assert_outcome(&Shutdown, OutcomeKind::Abort, "shutdown", None);
}

#[test]
fn transparent_forwards_to_the_field() {
    let reset = ApiError::from(io::Error::from(io::ErrorKind::ConnectionReset));
    assert_eq!(reset.classify(), io::Error::from(io::ErrorKind::ConnectionReset).classify());
    assert_outcome(&reset, OutcomeKind::Retryable, "io_connection_reset", None);

    assert_outcome(&ApiError::Db(DbError::Deadlock), OutcomeKind::Retryable, "deadlock", None);
    assert_outcome(&ApiError::Db(DbError::Constraint), OutcomeKind::NonRetryable, "constraint", None);

    assert_outcome(&Wrapper::Inner(ApiError::NotFound), OutcomeKind::NonRetryable, "not_found", None);
    assert_outcome(&Wrapper::<ApiError>::Stopped, OutcomeKind::Abort, "stopped", None);
    // `None` ("no opinion") is forwarded as is.
    assert_eq!(Wrapper::Inner(String::from("opaque")).classify(), None);
}

#[test]
fn recourse_errors_abort_with_their_own_reason() {
    let denied = recourse::Error::BudgetDenied { reason: "budget_denied".into() };
    assert_outcome(&ApiError::from(denied), OutcomeKind::Abort, "budget_denied", None);
    // An attempt timeout is retryable on its own, but a variant holding it
    // always aborts.
    let timeout = recourse::Error::AttemptTimeout { timeout: SECOND };
    assert_outcome(&ApiError::Recourse(timeout), OutcomeKind::Abort, "context_deadline_exceeded", None);
    // The enum's default does not apply to a `recourse::Error` variant.
    let timeout = recourse::Error::Timeout { timeout: SECOND };
    assert_outcome(&DbError::Recourse(timeout), OutcomeKind::Abort, "context_deadline_exceeded", None);
}

#[test]
fn as_error_exposes_the_source_chain() {
    let wrapped = ApiError::Wrapped { source: io::Error::from(io::ErrorKind::TimedOut) };
    let error = Classify::as_error(&wrapped).expect("a thiserror type is a std error");
    assert_eq!(error.to_string(), "wrapped");
    let source = error.source().and_then(|source| source.downcast_ref::<io::Error>());
    assert_eq!(source.map(io::Error::kind), Some(io::ErrorKind::TimedOut));

    let view: &dyn ErrorView = &wrapped;
    assert_eq!(view.find::<io::Error>().map(io::Error::kind), Some(io::ErrorKind::TimedOut));

    assert!(Classify::as_error(&Plain::Again).is_none());
    assert!(Classify::as_error(&Busy { wait: SECOND }).is_none());
    assert!(Classify::as_error(&Wrapper::Inner(ApiError::Reset)).is_none());
    assert_outcome(&Plain::Again, OutcomeKind::Retryable, "again", None);
}

#[test]
fn empty_enums_classify() {
    fn assert_classify<T: Classify>() {}
    assert_classify::<Empty>();
}

/// Records every backoff and sleeps it on (paused) tokio time.
#[derive(Default)]
struct Recording(Mutex<Vec<Duration>>);

impl Sleeper for Recording {
    fn sleep(&self, duration: Duration) -> SleepFuture {
        self.0.lock().unwrap().push(duration);
        Box::pin(tokio::time::sleep(duration))
    }
}

fn executor(key: &'static str, sleeper: &Arc<Recording>) -> Executor {
    let millisecond = Duration::from_millis(1);
    Executor::builder()
        .policy(
            Policy::builder(key).max_attempts(3).backoff(millisecond, millisecond, 1.0).jitter(Jitter::None).build(),
        )
        .sleeper(Arc::clone(sleeper))
        .build()
}

#[tokio::test(start_paused = true)]
async fn executor_sleeps_exactly_the_derived_backoff() {
    let retry_after = Duration::from_millis(750);
    let sleeper = Arc::new(Recording::default());
    let executor = executor("derive.Throttled", &sleeper);

    let start = tokio::time::Instant::now();
    let mut attempts = 0_u32;
    let result: Result<u32, ApiError> = executor
        .call("derive.Throttled", || {
            attempts += 1;
            let attempt = attempts;
            async move { if attempt == 1 { Err(ApiError::Throttled { retry_after }) } else { Ok(attempt) } }
        })
        .await;

    assert_eq!(result.unwrap(), 2);
    assert_eq!(*sleeper.0.lock().unwrap(), [retry_after]);
    assert_eq!(start.elapsed(), retry_after);
}

#[tokio::test(start_paused = true)]
async fn executor_stops_at_a_non_retryable_variant() {
    let sleeper = Arc::new(Recording::default());
    let executor = executor("derive.NotFound", &sleeper);

    let mut attempts = 0_u32;
    let result: Result<(), ApiError> = executor
        .call("derive.NotFound", || {
            attempts += 1;
            async { Err(ApiError::NotFound) }
        })
        .await;

    assert!(matches!(result, Err(ApiError::NotFound)));
    assert_eq!(attempts, 1);
    assert!(sleeper.0.lock().unwrap().is_empty());
}

#[tokio::test(start_paused = true)]
async fn executor_retries_a_transparent_io_error() {
    let sleeper = Arc::new(Recording::default());
    let executor = executor("derive.Io", &sleeper);

    let mut attempts = 0_u32;
    let result: Result<u32, ApiError> = executor
        .call("derive.Io", || {
            attempts += 1;
            let attempt = attempts;
            async move {
                if attempt < 3 { Err(io::Error::from(io::ErrorKind::ConnectionReset).into()) } else { Ok(attempt) }
            }
        })
        .await;

    assert_eq!(result.unwrap(), 3);
    assert_eq!(*sleeper.0.lock().unwrap(), [Duration::from_millis(1); 2]);
}

/// Lint and hygiene check: the expansion next to shadowed prelude and
/// `core` names, under the file's `deny(warnings, clippy::pedantic)`.
#[allow(dead_code, reason = "the shadows only need to exist")]
mod hygiene {
    use recourse::Classifier;
    use std::time::Duration;

    mod core {}
    mod __private {}
    type Option = ();
    type Result = ();

    #[derive(Debug, Classifier)]
    #[classify(default = non_retryable)]
    pub(super) enum Shadowed<T> {
        #[classify(retryable, backoff = retry_after)]
        Throttled {
            retry_after: Duration,
        },
        #[classify(retryable, backoff = 0)]
        Hinted(::core::option::Option<Duration>),
        #[classify(transparent)]
        Inner(T),
        Recourse(recourse::Error),
        Other,
    }
}

#[test]
fn hygiene_expansion_works() {
    let shadowed = hygiene::Shadowed::<DbError>::Throttled { retry_after: SECOND };
    assert_outcome(&shadowed, OutcomeKind::Retryable, "throttled", Some(SECOND));
    assert_outcome(&hygiene::Shadowed::Hinted::<DbError>(None), OutcomeKind::Retryable, "hinted", None);
    assert_outcome(&hygiene::Shadowed::Inner(DbError::Deadlock), OutcomeKind::Retryable, "deadlock", None);
    assert_outcome(&hygiene::Shadowed::<DbError>::Other, OutcomeKind::NonRetryable, "other", None);
}

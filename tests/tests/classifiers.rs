//! Section C (built-in classifiers, adapted) and section M (classifier
//! wiring in the executor) of the conformance checklist, plus the `auto`
//! classifier on `io::ErrorKind` and through source chains (DESIGN §6.6).
//!
//! The Go `http` classifier is not part of this crate; the tests register a
//! hand-written stand-in (`support::http_classifier`) under the name `http`
//! that recognises `support::HttpError`.
#![allow(missing_docs)]

mod support;

use std::io;
use std::sync::Arc;

use recourse::classify::{
    AlwaysRetry, Auto, Classifier, ErrorView, NeverRetry, Outcome, OutcomeKind, Registry, io_outcome,
};
use recourse::policy::{Jitter, Policy};
use recourse::{Classify, Executor, FailureMode};
use support::{
    BoxError, Counter, HTTP_ERROR_TYPE, HttpError, KEY, RecordingSleeper, SEED, TestError, http_classifier,
    http_executor, ms, test_executor, wrap,
};

fn classify_with(classifier: &dyn Classifier, error: &dyn ErrorView) -> Outcome {
    classifier.classify(error)
}

// ---------------------------------------------------------------------------
// C10, adapted: Go's AlwaysRetryOnError maps nil → Success, Canceled →
// Abort, DeadlineExceeded → Retryable, other → Retryable. In Rust an `Ok`
// is never classified (see the executor test below) and cancellation is
// dropping the future, so no error value means "cancelled"; what remains
// is timeout-ish errors → `context_deadline_exceeded`, others →
// `retryable_error`, all retryable.

#[tokio::test(start_paused = true)]
async fn c10_always_retries_timeouts_with_the_deadline_reason() {
    let elapsed = tokio::time::timeout(ms(1), std::future::pending::<()>()).await.unwrap_err();
    let io_timeout = io::Error::from(io::ErrorKind::TimedOut);
    let overall = recourse::Error::Timeout { timeout: ms(5) };
    let per_attempt = recourse::Error::AttemptTimeout { timeout: ms(5) };
    let wrapped: BoxError = Box::new(wrap("while fetching", io::Error::from(io::ErrorKind::TimedOut)));
    let views: [&dyn ErrorView; 5] = [&elapsed, &io_timeout, &overall, &per_attempt, &wrapped];
    for view in views {
        let outcome = classify_with(&AlwaysRetry, view);
        assert_eq!(outcome.kind, OutcomeKind::Retryable, "{}", view.type_name());
        assert_eq!(outcome.reason, "context_deadline_exceeded", "{}", view.type_name());
    }
}

#[test]
fn c10_always_retries_every_other_error_as_retryable_error() {
    let nope = io::Error::other("nope");
    let not_found = io::Error::from(io::ErrorKind::NotFound);
    let text = String::from("nope");
    let boxed: BoxError = "nope".into();
    let http: BoxError = Box::new(HttpError::new(404, "GET"));
    let no_classifier = recourse::Error::NoClassifier { name: "x".into() };
    let views: [&dyn ErrorView; 6] = [&nope, &not_found, &text, &boxed, &http, &no_classifier];
    for view in views {
        let outcome = classify_with(&AlwaysRetry, view);
        assert_eq!(outcome.kind, OutcomeKind::Retryable, "{}", view.type_name());
        assert_eq!(outcome.reason, "retryable_error", "{}", view.type_name());
        assert!(outcome.backoff.is_none());
    }
}

// C10 through the executor: a policy naming `always` retries an error that
// `auto` would not (NotFound), up to max_attempts.
#[tokio::test(start_paused = true)]
async fn c10_always_by_name_retries_what_auto_would_not() {
    let (executor, sleeper) = test_executor(Policy::builder(KEY).max_attempts(4).classifier("always").build());
    let mut calls = 0;
    let result: Result<(), io::Error> = executor
        .call(KEY, || {
            calls += 1;
            async { Err(io::Error::from(io::ErrorKind::NotFound)) }
        })
        .await;
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(calls, 4);
    assert_eq!(sleeper.sleeps(), [ms(10), ms(20), ms(40)]);
}

// C10/C11, adapted: "nil error → Success". An `Ok` never reaches a
// classifier: a counting classifier named by the policy is never invoked on
// success, and the record says success.
#[tokio::test(start_paused = true)]
async fn c11_ok_is_success_without_consulting_any_classifier() {
    let consulted = Counter::new();
    let seen = consulted.clone();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).classifier("counting").build())
        .classifier("counting", move |_: &dyn ErrorView| {
            seen.hit();
            Outcome::abort()
        })
        .build();
    let (result, timeline) = recourse::capture(executor.call(KEY, || async { Ok::<_, io::Error>(5) })).await;
    assert_eq!(result.unwrap(), 5);
    assert_eq!(consulted.get(), 0);
    assert_eq!(timeline.attempts.len(), 1);
    assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::Success);
    assert_eq!(timeline.attempts[0].outcome.reason, "success");
}

#[test]
fn never_classifies_everything_as_non_retryable() {
    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    let outcome = classify_with(&NeverRetry, &reset);
    assert_eq!((outcome.kind, &*outcome.reason), (OutcomeKind::NonRetryable, "non_retryable_error"));
    let names = Registry::with_builtins().names();
    assert_eq!(names, support::builtin_classifiers_and(&[]));
}

// ---------------------------------------------------------------------------
// C16: a classifier handed an error it does not understand reports a type
// mismatch (non-retryable, `classifier_type_mismatch`, both type attributes).

#[test]
fn c16_http_classifier_on_a_plain_error_is_a_type_mismatch() {
    let plain = io::Error::other("plain");
    let outcome = http_classifier(&plain);
    assert_eq!(outcome.kind, OutcomeKind::NonRetryable);
    assert_eq!(outcome.reason, "classifier_type_mismatch");
    let expected = outcome.attributes.get("expected_type").unwrap();
    let got = outcome.attributes.get("got_type").unwrap();
    assert_eq!(expected, HTTP_ERROR_TYPE);
    assert!(!got.is_empty());
    assert_eq!(got, std::any::type_name::<io::Error>(), "got_type names the concrete error type");

    // The library constructor itself.
    let direct = Outcome::type_mismatch("a::Expected", "b::Got");
    assert_eq!((direct.kind, &*direct.reason), (OutcomeKind::NonRetryable, "classifier_type_mismatch"));
    assert_eq!(direct.attributes.get("expected_type"), Some("a::Expected"));
    assert_eq!(direct.attributes.get("got_type"), Some("b::Got"));
    assert_eq!(direct.attributes.len(), 2);
}

// C16 through the executor: the mismatch is terminal, so an error `auto`
// would retry is tried once, and the record carries the mismatch.
#[tokio::test(start_paused = true)]
async fn c16_type_mismatch_stops_the_call_after_one_attempt() {
    let (executor, sleeper) = http_executor(Policy::builder(KEY).max_attempts(3).classifier("http").build());
    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls += 1;
        async { Err::<(), BoxError>(Box::new(io::Error::from(io::ErrorKind::ConnectionReset))) }
    }))
    .await;
    assert!(result.unwrap_err().downcast_ref::<io::Error>().is_some());
    assert_eq!(calls, 1);
    assert!(sleeper.sleeps().is_empty());
    let outcome = &timeline.attempts[0].outcome;
    assert_eq!((outcome.kind, &*outcome.reason), (OutcomeKind::NonRetryable, "classifier_type_mismatch"));
    assert_eq!(outcome.attributes.get("expected_type"), Some(HTTP_ERROR_TYPE));
    assert!(!outcome.attributes.get("got_type").unwrap_or_default().is_empty());
}

// ---------------------------------------------------------------------------
// `auto` (the default classifier) on io::ErrorKind.

#[test]
fn auto_classifies_io_errors_by_kind() {
    use io::ErrorKind as K;
    let table = [
        (K::ConnectionRefused, OutcomeKind::Retryable, "io_connection_refused"),
        (K::ConnectionReset, OutcomeKind::Retryable, "io_connection_reset"),
        (K::ConnectionAborted, OutcomeKind::Retryable, "io_connection_aborted"),
        (K::BrokenPipe, OutcomeKind::Retryable, "io_broken_pipe"),
        (K::TimedOut, OutcomeKind::Retryable, "context_deadline_exceeded"),
        (K::Interrupted, OutcomeKind::Retryable, "io_interrupted"),
        (K::UnexpectedEof, OutcomeKind::Retryable, "io_unexpected_eof"),
        (K::NotFound, OutcomeKind::NonRetryable, "io_not_found"),
        (K::PermissionDenied, OutcomeKind::NonRetryable, "io_permission_denied"),
        (K::InvalidInput, OutcomeKind::NonRetryable, "io_invalid_input"),
        (K::InvalidData, OutcomeKind::NonRetryable, "io_invalid_data"),
        (K::Unsupported, OutcomeKind::NonRetryable, "io_unsupported"),
        (K::Other, OutcomeKind::Retryable, "retryable_error"),
    ];
    for (kind, expected_kind, reason) in table {
        let error = io::Error::from(kind);
        for outcome in [io_outcome(&error), classify_with(&Auto, &error), error.classify().unwrap()] {
            assert_eq!((outcome.kind, &*outcome.reason), (expected_kind, reason), "{kind:?}");
        }
    }
}

#[tokio::test(start_paused = true)]
async fn auto_retries_transient_io_errors_and_stops_on_permanent_ones() {
    let (executor, sleeper) = test_executor(Policy::builder(KEY).max_attempts(3).build());
    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls += 1;
        async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) }
    }))
    .await;
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(calls, 3);
    assert_eq!(sleeper.sleeps(), [ms(10), ms(20)]);
    assert!(timeline.attempts.iter().all(|r| r.outcome.reason == "io_connection_reset"));

    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls += 1;
        async { Err::<(), _>(io::Error::from(io::ErrorKind::PermissionDenied)) }
    }))
    .await;
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(calls, 1);
    assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::NonRetryable);
    assert_eq!(timeline.attempts[0].outcome.reason, "io_permission_denied");
}

// `auto` through a source chain (DESIGN §6.6): an io::Error one or two
// links down still decides.
#[test]
fn auto_looks_through_the_source_chain() {
    let once: BoxError = Box::new(wrap("reading config", io::Error::from(io::ErrorKind::PermissionDenied)));
    let outcome = classify_with(&Auto, &once);
    assert_eq!((outcome.kind, &*outcome.reason), (OutcomeKind::NonRetryable, "io_permission_denied"));

    let twice: BoxError = Box::new(wrap("outer", wrap("inner", io::Error::from(io::ErrorKind::ConnectionRefused))));
    let outcome = classify_with(&Auto, &twice);
    assert_eq!((outcome.kind, &*outcome.reason), (OutcomeKind::Retryable, "io_connection_refused"));

    // A recourse::Error in the chain classifies by its own outcome.
    let recourse_inside: BoxError =
        Box::new(wrap("nested call", recourse::Error::NoClassifier { name: "gone".into() }));
    let outcome = classify_with(&Auto, &recourse_inside);
    assert_eq!((outcome.kind, &*outcome.reason), (OutcomeKind::NonRetryable, "classifier_not_found"));

    // Nothing recognisable anywhere: retryable, as `always`.
    let opaque: BoxError = Box::new(wrap("outer", "just text"));
    let outcome = classify_with(&Auto, &opaque);
    assert_eq!((outcome.kind, &*outcome.reason), (OutcomeKind::Retryable, "retryable_error"));
}

#[tokio::test(start_paused = true)]
async fn auto_through_the_source_chain_in_the_executor() {
    let (executor, _) = test_executor(Policy::builder(KEY).max_attempts(5).build());
    let mut calls = 0;
    let result: Result<(), BoxError> = executor
        .call(KEY, || {
            calls += 1;
            async { Err(wrap("loading", io::Error::from(io::ErrorKind::NotFound)).into()) }
        })
        .await;
    let error = result.unwrap_err();
    assert_eq!(error.to_string(), "loading");
    assert_eq!(calls, 1, "the wrapped NotFound is non-retryable");
}

// Precedence: the policy's named classifier, else the error's own
// `Classify`, else the executor's default classifier.
#[tokio::test(start_paused = true)]
async fn classifier_precedence_named_then_own_then_default() {
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder()
        .policy(Policy::builder("p.named").max_attempts(3).classifier("never").build())
        .policy(Policy::builder("p.plain").max_attempts(3).build())
        .default_classifier(NeverRetry)
        .sleeper(sleeper.clone())
        .jitter_seed(SEED)
        .build();

    // Named classifier beats io::Error's own (retryable) classification.
    let mut calls = 0;
    let _: Result<(), io::Error> = executor
        .call("p.named", || {
            calls += 1;
            async { Err(io::Error::from(io::ErrorKind::ConnectionReset)) }
        })
        .await;
    assert_eq!(calls, 1);

    // Own classification beats the default classifier (NeverRetry).
    let mut calls = 0;
    let _: Result<(), io::Error> = executor
        .call("p.plain", || {
            calls += 1;
            async { Err(io::Error::from(io::ErrorKind::ConnectionReset)) }
        })
        .await;
    assert_eq!(calls, 3);

    // No own classification: the default classifier decides.
    let mut calls = 0;
    let result: Result<(), TestError> = executor
        .call("p.plain", || {
            calls += 1;
            let n = calls;
            async move { Err(TestError::Failed(n)) }
        })
        .await;
    assert!(matches!(result, Err(TestError::Failed(1))));
    assert_eq!(calls, 1);
}

// ---------------------------------------------------------------------------
// M60: unknown classifier name, missing-classifier mode fallback (the
// default): the default classifier runs and every record says so.
#[tokio::test(start_paused = true)]
async fn m60_missing_classifier_falls_back_and_marks_every_attempt() {
    let policy = Policy::builder(KEY)
        .max_attempts(2)
        .backoff(ms(1), ms(10), 2.0)
        .jitter(Jitter::None)
        .classifier("does_not_exist")
        .build();
    let (executor, sleeper) = test_executor(policy);
    assert_eq!(executor.missing_classifier_mode(), FailureMode::Fallback);
    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls += 1;
        let n = calls;
        async move { Err::<(), _>(TestError::Failed(n)) }
    }))
    .await;
    assert!(matches!(result, Err(TestError::Failed(2))));
    assert_eq!(calls, 2);
    assert_eq!(sleeper.sleeps(), [ms(1)]);
    assert_eq!(timeline.attempts.len(), 2);
    for (i, record) in timeline.attempts.iter().enumerate() {
        assert_eq!(record.attempt as usize, i);
        let attributes = &record.outcome.attributes;
        assert_eq!(attributes.get("classifier_not_found"), Some("true"), "record {i}");
        assert_eq!(attributes.get("classifier_name"), Some("does_not_exist"), "record {i}");
        assert_eq!(attributes.get("classifier_fallback"), Some("default"), "record {i}");
        assert_eq!(record.outcome.kind, OutcomeKind::Retryable);
    }
}

// M61: same name, mode deny: no attempt, NoClassifier, call-level attributes.
#[tokio::test(start_paused = true)]
async fn m61_missing_classifier_deny_fails_before_any_attempt() {
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).classifier("does_not_exist").build())
        .missing_classifier(FailureMode::Deny)
        .sleeper(sleeper.clone())
        .build();
    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls += 1;
        async { Ok::<(), TestError>(()) }
    }))
    .await;
    let error = result.unwrap_err();
    assert!(
        matches!(error.recourse(), Some(recourse::Error::NoClassifier { name }) if name == "does_not_exist"),
        "{error:?}"
    );
    assert_eq!(calls, 0);
    assert!(sleeper.sleeps().is_empty());
    assert!(timeline.attempts.is_empty());
    assert_eq!(timeline.attributes.get("classifier_error"), Some("classifier_not_found"));
    assert_eq!(timeline.attributes.get("classifier_name"), Some("does_not_exist"));
    let final_error = timeline.final_error.expect("the call failed");
    // The timeline holds the error the caller got, as text, with its source's.
    assert_eq!(final_error.message, format!("{error}: recourse: classifier not found: does_not_exist"));
    assert_eq!(final_error.reason, "classifier_not_found");
}

// M62: `http` on 500 GET is retryable until attempts run out.
#[tokio::test(start_paused = true)]
async fn m62_http_5xx_get_is_retried_until_exhaustion() {
    let (executor, sleeper) =
        http_executor(Policy::builder(KEY).max_attempts(3).jitter(Jitter::None).classifier("http").build());
    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls += 1;
        async { Err::<(), BoxError>(Box::new(HttpError::new(500, "GET"))) }
    }))
    .await;
    assert_eq!(result.unwrap_err().downcast_ref::<HttpError>(), Some(&HttpError::new(500, "GET")));
    assert_eq!(calls, 3);
    assert_eq!(sleeper.sleeps(), [ms(10), ms(20)]);
    assert_eq!(timeline.attempts.len(), 3);
    assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::Retryable);
    assert_eq!(timeline.attempts[0].outcome.reason, "http_5xx");
    assert_eq!(timeline.attempts[0].outcome.attributes.get("status"), Some("500"));
}

// M63: `http` on 404 GET is terminal.
#[tokio::test(start_paused = true)]
async fn m63_http_404_is_not_retried() {
    let (executor, sleeper) = http_executor(Policy::builder(KEY).max_attempts(5).classifier("http").build());
    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls += 1;
        async { Err::<(), BoxError>(HttpError::new(404, "GET").into()) }
    }))
    .await;
    assert_eq!(result.unwrap_err().downcast_ref::<HttpError>(), Some(&HttpError::new(404, "GET")));
    assert_eq!(calls, 1);
    assert!(sleeper.sleeps().is_empty());
    let outcome = &timeline.attempts[0].outcome;
    assert_eq!((outcome.kind, &*outcome.reason), (OutcomeKind::NonRetryable, "http_non_retryable_status"));
}

// M64: a custom classifier that always aborts: one call, no sleep.
#[tokio::test(start_paused = true)]
async fn m64_abort_classifier_stops_after_one_call_without_sleeping() {
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).initial_backoff(ms(10)).classifier("abort_all").build())
        .classifier("abort_all", |_: &dyn ErrorView| Outcome::abort().with_reason("stop_now"))
        .sleeper(sleeper.clone())
        .build();
    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls += 1;
        async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) }
    }))
    .await;
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(calls, 1);
    assert!(sleeper.sleeps().is_empty(), "the sleeper is never called");
    let final_error = timeline.final_error.expect("failed");
    assert_eq!((final_error.kind, &*final_error.reason), (OutcomeKind::Abort, "stop_now"));
}

// M65: a 429 with Retry-After 200 ms replaces the (full-jittered) backoff:
// exactly one sleep of exactly 200 ms.
#[tokio::test(start_paused = true)]
async fn m65_retry_after_overrides_the_jittered_backoff_exactly() {
    let policy = Policy::builder(KEY)
        .max_attempts(2)
        .backoff(ms(10), ms(250), 2.0)
        .jitter(Jitter::Full)
        .classifier("http")
        .build();
    let (executor, sleeper) = http_executor(policy);
    let mut calls = 0;
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        calls += 1;
        async { Err::<(), BoxError>(Box::new(HttpError::throttled(ms(200)))) }
    }))
    .await;
    assert!(result.is_err());
    assert_eq!(calls, 2);
    assert_eq!(sleeper.sleeps(), [ms(200)]);
    assert_eq!(timeline.attempts[0].outcome.backoff, Some(ms(200)));
    assert_eq!(timeline.attempts[0].outcome.attributes.get("retry_after"), Some("200ms"));
    assert_eq!(timeline.attempts[1].backoff, ms(200), "the record shows the sleep actually taken");
}

// Registry semantics (spec §7.3): trimmed names, empty names ignored,
// re-registration replaces.
#[test]
fn registry_trims_ignores_empty_and_replaces() {
    let registry = Arc::new(Registry::new());
    registry.register("  mine ", NeverRetry);
    registry.register("   ", AlwaysRetry);
    assert_eq!(registry.names(), ["mine"]);
    assert!(registry.get(" mine").is_some());
    assert!(registry.get("").is_none());
    registry.register("mine", AlwaysRetry);
    let reset = io::Error::from(io::ErrorKind::ConnectionReset);
    assert_eq!(registry.get("mine").unwrap().classify(&reset).kind, OutcomeKind::Retryable, "replaced");
}

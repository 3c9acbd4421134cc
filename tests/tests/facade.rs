//! Section B of the conformance checklist: the string-key facade
//! (`recourse::call`, `recourse::install`, `recourse::global`).
//!
//! Go's `TestMain` installs the global executor once; here every test calls
//! [`setup`], which installs it exactly once per test binary (this file is
//! its own binary, so no other test can have touched the global first).
#![allow(missing_docs)]

use std::io;
use std::sync::{Arc, Once};
use std::time::Duration;

use recourse::PolicyKey;
use recourse::policy::{Jitter, Policy};
use recourse::provider::{PolicyProvider, StaticProvider};

const SUCCESS: &str = "recourse.success";
const RETRY: &str = "recourse.retry";
const TIMELINE: &str = "recourse.timeline";

fn facade_policy(key: &'static str) -> Policy {
    let one_ms = Duration::from_millis(1);
    Policy::builder(key).max_attempts(2).backoff(one_ms, one_ms, 1.0).jitter(Jitter::None).build()
}

/// Go's `TestMain`: `Init` with a static provider holding the three keys,
/// each {2 attempts, 1 ms / 1 ms / ×1 / none}.
fn setup() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let provider =
            StaticProvider::new().with(facade_policy(SUCCESS)).with(facade_policy(RETRY)).with(facade_policy(TIMELINE));
        let executor = recourse::Executor::builder().provider(provider).jitter_seed(7).build();
        assert!(recourse::install(executor).is_ok(), "the global executor must not exist before setup");
    });
}

// Setup check: `Init` happened once and later installs are ignored.
#[test]
fn b_setup_installs_the_global_executor_once() {
    setup();
    let second = recourse::Executor::builder().recover_panics(true).build();
    assert!(recourse::install(second).is_err(), "a second install is refused");
    assert!(!recourse::global().recovers_panics(), "the first executor stays installed");
    for key in [SUCCESS, RETRY, TIMELINE] {
        let policy = recourse::global().provider().policy(&PolicyKey::parse(key)).unwrap().expect("configured key");
        assert_eq!(policy.retry.max_attempts, 2, "{key}");
        assert_eq!(
            (policy.retry.initial_backoff, policy.retry.max_backoff),
            (Duration::from_millis(1), Duration::from_millis(1))
        );
        assert_eq!(policy.retry.backoff_multiplier.to_bits(), 1.0_f64.to_bits());
        assert_eq!(policy.retry.jitter, Jitter::None);
    }
}

// B6
#[tokio::test(start_paused = true)]
async fn b6_call_returns_the_value() {
    setup();
    let mut calls = 0;
    let value: Result<i32, io::Error> = recourse::call(SUCCESS, || {
        calls += 1;
        async { Ok(7) }
    })
    .await;
    assert_eq!(value.unwrap(), 7);
    assert_eq!(calls, 1);
}

// B7
#[tokio::test(start_paused = true)]
async fn b7_call_retries_once_then_returns_the_value() {
    setup();
    let mut calls = 0;
    let value: Result<i32, io::Error> = recourse::call(RETRY, || {
        calls += 1;
        let n = calls;
        async move { if n == 1 { Err(io::Error::other("temporary")) } else { Ok(99) } }
    })
    .await;
    assert_eq!(value.unwrap(), 99);
    assert_eq!(calls, 2);
}

// B7 (exhaustion): the facade honours the key's 2 attempts and returns the
// operation's own last error.
#[tokio::test(start_paused = true)]
async fn b7_call_gives_up_after_the_keys_two_attempts() {
    setup();
    let mut calls = 0;
    let started = tokio::time::Instant::now();
    let value: Result<i32, io::Error> = recourse::call(RETRY, || {
        calls += 1;
        let n = calls;
        async move { Err(io::Error::other(format!("failure {n}"))) }
    })
    .await;
    assert_eq!(value.unwrap_err().to_string(), "failure 2");
    assert_eq!(calls, 2);
    assert_eq!(started.elapsed(), Duration::from_millis(1), "exactly one 1 ms backoff");
}

// B8
#[tokio::test(start_paused = true)]
async fn b8_capture_records_the_facade_call() {
    setup();
    let mut calls = 0;
    let (value, timeline) = recourse::capture(recourse::call(TIMELINE, || {
        calls += 1;
        let n = calls;
        async move { if n == 1 { Err(io::Error::other("once")) } else { Ok::<_, io::Error>(42) } }
    }))
    .await;
    assert_eq!(value.unwrap(), 42);
    assert_eq!(calls, 2);
    assert!(!timeline.is_empty(), "a timeline was captured");
    assert!(timeline.succeeded());
    assert_eq!(timeline.key, PolicyKey::parse(TIMELINE));
    assert_eq!(timeline.attempts.len(), 2);
    assert_eq!(timeline.attempts[0].attempt, 0);
    assert_eq!(timeline.attempts[1].attempt, 1);
    assert_eq!(timeline.attempts[1].backoff, Duration::from_millis(1));
}

// B9: ParseKey table through the facade's re-exported `recourse::PolicyKey`.
#[test]
fn b9_parse_key_table() {
    let table = [
        ("service.method", "service", "method"),
        ("method", "", "method"),
        (" service.method ", "service", "method"),
        ("service.", "", "service."),
        ("", "", ""),
    ];
    for (input, namespace, name) in table {
        let key = PolicyKey::parse(input);
        assert_eq!((key.namespace(), key.name()), (namespace, name), "parsing {input:?}");
    }
}

// The facade uses the global executor's provider: an unconfigured key gets
// the default 3-attempt policy, which `recourse::call` obeys.
#[tokio::test(start_paused = true)]
async fn b_unconfigured_key_uses_the_default_policy() {
    setup();
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let result: Result<(), io::Error> = recourse::call("recourse.unknown", move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async { Err(io::Error::from(io::ErrorKind::ConnectionReset)) }
    })
    .await;
    assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
}

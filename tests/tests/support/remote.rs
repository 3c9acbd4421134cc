//! Helpers of the remote provider's tests, over HTTP and over TLS.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use recourse::policy::{Policy, PolicyKey};
use recourse::provider::{PolicyProvider, ProviderError, RemoteProvider};
use recourse::{Executor, Timeline};

/// The key the control planes of these tests serve.
pub(crate) const KEY: &str = "users.Get";
/// The bound on waiting for a background fetch.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A policy document with `max_attempts` and a short backoff.
pub(crate) fn policy_json(max_attempts: u32) -> String {
    format!(r#"{{"retry": {{"max_attempts": {max_attempts}, "initial_backoff": "1ms", "max_backoff": "2ms"}}}}"#)
}

/// A valid policy document of at least `size` bytes (a long `id`).
pub(crate) fn padded_policy(size: usize) -> String {
    format!(r#"{{"id": "{}", "retry": {{"max_attempts": 4}}}}"#, "x".repeat(size))
}

pub(crate) fn key() -> PolicyKey {
    PolicyKey::parse(KEY)
}

/// Polls `check` until it gives a value; fails after [`WAIT`].
pub(crate) async fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The provider's answer for `key`, expecting a policy.
pub(crate) fn served(provider: &RemoteProvider, key: &PolicyKey) -> Option<Arc<Policy>> {
    provider.policy(key).expect("no error")
}

/// The cause text of a provider error.
pub(crate) fn cause(error: &ProviderError) -> String {
    std::error::Error::source(error).map(ToString::to_string).unwrap_or_default()
}

/// One call of `KEY` whose operation always fails (retryable): how many
/// attempts ran, and the timeline.
pub(crate) async fn failing_call(executor: &Executor) -> (usize, Timeline) {
    let attempts = AtomicUsize::new(0);
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        attempts.fetch_add(1, Ordering::SeqCst);
        async { Err::<(), _>(io::Error::from(io::ErrorKind::ConnectionReset)) }
    }))
    .await;
    assert!(result.is_err());
    (attempts.load(Ordering::SeqCst), timeline)
}

/// Hostile payloads the normalization clamps, and the field it names.
pub(crate) fn clamped_payloads() -> Vec<(&'static str, &'static str)> {
    vec![
        (r#"{"retry": {"max_attempts": 1000000}}"#, "retry.max_attempts"),
        (r#"{"retry": {"max_backoff": "9000h", "backoff_multiplier": 1e300}}"#, "retry.max_backoff"),
        (r#"{"hedge": {"enabled": true, "max_hedges": 1000, "hedge_delay": "0ms"}}"#, "hedge.max_hedges"),
        (r#"{"circuit": {"enabled": true, "threshold": 0, "cooldown": 0}}"#, "circuit.threshold"),
    ]
}

/// Hostile payloads the decoder refuses, and what its message names.
pub(crate) fn refused_payloads() -> Vec<(String, &'static str)> {
    vec![
        (r#"{"retry": {"initial_backoff": "-5ms"}}"#.into(), "initial_backoff"),
        (r#"{"retry": {"initial_backoff": -5}}"#.into(), "is negative"),
        (r#"{"retry": {"max_attempts": -1}}"#.into(), "max_attempts"),
        (r#"{"retry": {"max_attempts": 99999999999999999999}}"#.into(), "max_attempts"),
        (r#"{"retry": {"backoff_multiplier": "NaN"}}"#.into(), "backoff_multiplier"),
        (r#"{"retry": {"backoff_multiplier": 1e999}}"#.into(), "number out of range"),
        (r#"{"retry": {"jitter": "NaN"}}"#.into(), "jitter"),
        (r#"{"retry": {"overall_timeout": "NaNs"}}"#.into(), "overall_timeout"),
        (format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)), "recursion limit exceeded"),
        (format!("{}1{}", r#"{"retry": "#.repeat(50_000), "}".repeat(50_000)), "recursion limit exceeded"),
        (format!(r#"{{"{}": 1}}"#, "k".repeat(100_000)), "unknown field"),
        ("\u{feff}{}".into(), "invalid policy JSON"),
    ]
}

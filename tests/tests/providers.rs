//! Layered providers and the catalog guard (DESIGN §3.5): the first answer
//! wins, a failing layer is reported on the answer a lower layer gives, and
//! a file or remote policy for a key the compiled catalog does not declare
//! is rejected and reported, never run.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;

use recourse::policy::{Policy, PolicyKey, PolicySource};
use recourse::provider::{
    DynamicProvider, LayeredProvider, PolicyProvider, ProviderError, ProviderErrorKind, StaticProvider,
};
use recourse::{Executor, FailureMode};
use support::{Counter, PolicyErrors, TestError};

/// A policy as a file or control plane would serve it.
fn served(key: &'static str, attempts: u32, source: PolicySource) -> Policy {
    let mut policy = Policy::builder(key).max_attempts(attempts).initial_backoff(support::ms(1)).build();
    policy.meta.source = source;
    policy
}

/// A layer that always fails.
struct Down;

impl PolicyProvider for Down {
    fn policy(&self, _: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        Err(ProviderError::new(ProviderErrorKind::Unavailable).with_source(std::io::Error::other("connection refused")))
    }
}

async fn attempts(executor: &Executor, key: &'static str) -> (usize, recourse::Timeline) {
    let calls = Counter::new();
    let (_, timeline) =
        recourse::capture(executor.call(key, || std::future::ready(Err::<(), _>(TestError::Failed(calls.hit())))))
            .await;
    (calls.get(), timeline)
}

#[test]
fn the_first_answer_wins_and_generations_add_up() {
    let top = DynamicProvider::new();
    top.set(served("users.Get", 5, PolicySource::Remote));
    let layered = LayeredProvider::new().layer(Arc::new(top)).layer(
        StaticProvider::new().with(served("users.Get", 2, PolicySource::File)).with(served(
            "users.Update",
            1,
            PolicySource::File,
        )),
    );
    let get = layered.policy(&"users.Get".into()).unwrap().unwrap();
    assert_eq!((get.retry.max_attempts, get.meta.source), (5, PolicySource::Remote));
    let update = layered.policy(&"users.Update".into()).unwrap().unwrap();
    assert_eq!((update.retry.max_attempts, update.meta.source), (1, PolicySource::File));
    assert!(layered.policy(&"users.Delete".into()).unwrap().is_none());
    assert_eq!(layered.generation(), 1, "the dynamic layer's change shows");
}

#[test]
fn a_failing_layer_is_reported_on_the_answer_below_it() {
    let layered = LayeredProvider::new().layer(Down).layer(StaticProvider::new().with(served(
        "users.Get",
        2,
        PolicySource::File,
    )));
    let policy = layered.policy(&"users.Get".into()).unwrap().unwrap();
    assert_eq!(policy.retry.max_attempts, 2);
    assert_eq!(
        policy.meta.error.as_deref(),
        Some("recourse: policy provider unavailable: connection refused"),
        "the lower layer's answer says why the upper one was not used"
    );
    let error = layered.policy(&"users.Other".into()).unwrap_err();
    assert_eq!(error.kind(), ProviderErrorKind::Unavailable, "no layer answered: the failure is the answer");
}

#[tokio::test(start_paused = true)]
async fn a_configured_policy_for_an_undeclared_key_is_rejected_and_reported() {
    let file = DynamicProvider::new();
    // Declared in tests/recourse.toml: the file's policy applies.
    file.set(served("users.Get", 5, PolicySource::File));
    // Not declared: configuration must not create behaviour for it.
    file.set(served("undeclared.Key", 7, PolicySource::File));
    // A remote copy kept as last-known-good is configuration too.
    file.set(served("undeclared.Lkg", 6, PolicySource::LastKnownGood));
    // Static policies are code, not configuration: never guarded.
    let errors = PolicyErrors::default();
    let executor = Executor::builder()
        .policy(served("undeclared.Static", 4, PolicySource::Static))
        .provider(file)
        .catalog(recourse::catalog!())
        // The names tests/recourse.toml declares.
        .classifier("test_never", |_: &dyn recourse::classify::ErrorView| recourse::classify::Outcome::non_retryable())
        .budget("tenant_quota", recourse::budget::Unlimited)
        .trigger("tests_tail", recourse::hedge::FixedDelay::default())
        .observer(errors.clone())
        .build();

    let (calls, timeline) = attempts(&executor, "users.Get").await;
    assert_eq!(calls, 5);
    assert_eq!(timeline.policy_source, PolicySource::File);
    assert_eq!(timeline.attributes.get("policy_error"), None);

    let (calls, timeline) = attempts(&executor, "undeclared.Key").await;
    assert_eq!(calls, 3, "the default policy, not the file's 7 attempts");
    assert_eq!(timeline.policy_source, PolicySource::Default);
    let why = timeline.attributes.get("policy_error").expect("the rejection is on the timeline");
    assert!(why.contains("a file policy for \"undeclared.Key\" was rejected"), "{why}");
    assert!(why.contains("recourse.toml declares no such key"), "{why}");

    let (calls, _) = attempts(&executor, "undeclared.Lkg").await;
    assert_eq!(calls, 3);
    let (calls, timeline) = attempts(&executor, "undeclared.Static").await;
    assert_eq!(calls, 4);
    assert_eq!(timeline.attributes.get("policy_error"), None);

    // A second call reuses the resolution: the observer heard once per key.
    let _ = attempts(&executor, "undeclared.Key").await;
    let heard = errors.heard();
    let keys: Vec<&str> = heard.iter().map(|(key, _, _)| key.as_str()).collect();
    assert_eq!(keys, ["undeclared.Key", "undeclared.Lkg"], "{heard:?}");
    assert!(heard[0].2.contains("rejected"));
}

#[tokio::test(start_paused = true)]
async fn a_policy_served_with_a_problem_shows_it_and_runs() {
    let provider = DynamicProvider::new();
    let mut policy = served("users.Get", 2, PolicySource::LastKnownGood);
    policy.meta.error = Some("control plane: HTTP 503".into());
    provider.set(policy);
    let errors = PolicyErrors::default();
    let executor = Executor::builder().provider(provider).observer(errors.clone()).build();
    let (calls, timeline) = attempts(&executor, "users.Get").await;
    assert_eq!(calls, 2, "the last good policy runs");
    assert_eq!(timeline.policy_source, PolicySource::LastKnownGood);
    assert_eq!(timeline.attributes.get("policy_source"), Some("lkg"));
    assert_eq!(timeline.attributes.get("policy_error"), Some("control plane: HTTP 503"));
    assert_eq!(
        errors.heard(),
        [("users.Get".to_owned(), PolicySource::LastKnownGood, "control plane: HTTP 503".to_owned())]
    );
}

#[tokio::test(start_paused = true)]
async fn with_every_layer_down_the_missing_policy_mode_decides() {
    let executor =
        Executor::builder().provider(LayeredProvider::new().layer(Down)).missing_policy(FailureMode::Deny).build();
    let (calls, timeline) = attempts(&executor, "users.Get").await;
    assert_eq!(calls, 0, "deny: no attempt ran");
    assert!(!timeline.succeeded());
}

//! Policies from a control plane: an operator changes a live service's
//! retries over HTTP, no deploy, no restart.
//!
//! Run with `cargo run -p recourse-examples --features control-plane --example control_plane`.
//!
//! One process, three roles, talking real HTTP on 127.0.0.1:
//!
//! * a control plane serving `GET /policies/{key}` (the policy as JSON, in
//!   the Go original's layout) from a map the operator changes with
//!   `PUT /policies/{key}`;
//! * a users service that fails its next few requests with 503 whenever it
//!   is told to (an outage of 3 requests at each stage below);
//! * the client: an executor whose policies come from a `RemoteProvider`
//!   (one document per key, fetched again every 200 ms) layered over the
//!   crate's catalog (`recourse.toml`), which is both the policies the
//!   service ships with and a guard on the keys configuration may set.
//!
//! Then, with a captured timeline each time:
//!
//! 1. the control plane serves `users.GetProfile` as `rev-1`, 2 attempts:
//!    the call gives up inside the outage;
//! 2. the operator `PUT`s `rev-2`, 5 attempts; the client picks it up within
//!    its time to live, and the same call now rides the outage out;
//! 3. the operator serves a policy for `users.Delete`, a key `recourse.toml`
//!    does not declare: the control plane serves it, the catalog guard
//!    rejects it (`policy_error`) and the call runs on the default policy;
//! 4. the control plane goes down: the fetch fails, and the last policy
//!    fetched keeps running, marked `lkg` with the failure as its
//!    `policy_error`.
//!
//! Every stage is checked: the example panics if the behaviour changes
//! (`cargo test -p recourse-examples --features control-plane --example control_plane`).
#![allow(missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use recourse::policy::PolicySource;
use recourse::provider::{LayeredProvider, PolicyProvider, RemoteProvider};
use recourse::{Classifier, Executor, Timeline, recourse};

/// How often the client fetches a policy again.
const TTL: Duration = Duration::from_millis(200);
/// How many requests the users service fails at each stage.
const OUTAGE: u32 = 3;

const REV_1: &str = r#"{"key": "users.GetProfile", "id": "rev-1",
  "retry": {"max_attempts": 2, "initial_backoff": "10ms", "max_backoff": "40ms", "jitter": "none"}}"#;
const REV_2: &str = r#"{"key": "users.GetProfile", "id": "rev-2",
  "retry": {"max_attempts": 5, "initial_backoff": "10ms", "max_backoff": "40ms", "jitter": "none"}}"#;
const UNDECLARED: &str = r#"{"key": "users.Delete", "id": "rev-1", "retry": {"max_attempts": 5}}"#;

// ---- The control plane: policies by key, changed by the operator. ----

type Policies = Arc<RwLock<HashMap<String, String>>>;

async fn get_policy(State(policies): State<Policies>, Path(key): Path<String>) -> Response {
    let policy = policies.read().expect("not poisoned").get(&key).cloned();
    match policy {
        Some(json) => ([(CONTENT_TYPE, "application/json")], json).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn put_policy(State(policies): State<Policies>, Path(key): Path<String>, json: String) -> StatusCode {
    policies.write().expect("not poisoned").insert(key, json);
    StatusCode::NO_CONTENT
}

/// The operator's side: one `PUT` per change.
async fn publish(operator: &reqwest::Client, control_plane: &str, key: &str, json: &str) {
    let response = operator.put(format!("{control_plane}/policies/{key}")).body(json.to_owned()).send().await;
    let status = response.expect("the control plane answers").status();
    assert!(status.is_success(), "PUT /policies/{key}: {status}");
    println!("operator: PUT /policies/{key} -> {status}");
}

// ---- The users service: fails its next `outage` requests with 503. ----

async fn user(State(outage): State<Arc<AtomicU32>>, Path(id): Path<u64>) -> Response {
    if outage.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    format!("{{\"id\":{id},\"name\":\"ada\"}}").into_response()
}

// ---- The client service. ----

/// What a call to the users service can end with.
#[derive(Debug, thiserror::Error, Classifier)]
enum UsersError {
    #[error("HTTP 503 Service Unavailable")]
    #[classify(retryable, reason = "unavailable")]
    Unavailable,
    #[error("HTTP {0}")]
    #[classify(non_retryable)]
    Status(u16),
    #[error(transparent)]
    #[classify(retryable)]
    Transport(#[from] reqwest::Error),
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

struct Users {
    executor: Executor,
    http: reqwest::Client,
    base: String,
}

impl Users {
    /// Under whatever policy the control plane serves for the key now.
    #[recourse(policy = "users.GetProfile", executor = &self.executor)]
    async fn get_profile(&self, id: u64) -> Result<String, UsersError> {
        send(self.http.get(format!("{}/users/{id}", self.base))).await
    }

    /// `users.Delete` is not in `recourse.toml`, so `#[recourse]` (and
    /// `key!`) would not compile with it; the function form takes any key.
    async fn delete(&self, id: u64) -> Result<String, UsersError> {
        self.executor.call("users.Delete", || send(self.http.delete(format!("{}/users/{id}", self.base)))).await
    }
}

async fn send(request: reqwest::RequestBuilder) -> Result<String, UsersError> {
    let response = request.send().await?;
    match response.status().as_u16() {
        200..=299 => Ok(response.text().await?),
        503 => Err(UsersError::Unavailable),
        status => Err(UsersError::Status(status)),
    }
}

/// Serves `app` on a free port of 127.0.0.1 until `stop` is sent (or
/// forever); returns its base URL and the server's task.
async fn serve(app: Router, stop: Option<tokio::sync::oneshot::Receiver<()>>) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let server = tokio::spawn(async move {
        let stop = async move {
            match stop {
                Some(stop) => drop(stop.await),
                None => std::future::pending().await,
            }
        };
        axum::serve(listener, app).with_graceful_shutdown(stop).await.expect("the server runs");
    });
    (base, server)
}

fn print_call(what: &str, result: &Result<String, UsersError>, timeline: &Timeline) {
    match result {
        Ok(value) => println!("client:   {what} -> Ok({value:?})"),
        Err(error) => println!("client:   {what} -> Err({error})"),
    }
    println!("\n{timeline}");
}

/// The whole scenario; panics if any stage behaves otherwise.
async fn run() {
    let policies = Policies::default();
    let (stop_control_plane, stopped) = tokio::sync::oneshot::channel();
    let control_plane_app =
        Router::new().route("/policies/{key}", get(get_policy).put(put_policy)).with_state(Arc::clone(&policies));
    let (control_plane, control_plane_server) = serve(control_plane_app, Some(stopped)).await;
    let outage = Arc::new(AtomicU32::new(0));
    let users_app = Router::new().route("/users/{id}", get(user).delete(user)).with_state(Arc::clone(&outage));
    let (users_base, _users_server) = serve(users_app, None).await;
    println!("control plane: {control_plane}/policies/{{key}}\nusers service: {users_base}\n");

    let operator = reqwest::Client::new();
    publish(&operator, &control_plane, "users.GetProfile", REV_1).await;

    // The client: the control plane over the catalog (`recourse.toml`),
    // which also guards the keys the control plane may configure.
    let remote = Arc::new(
        RemoteProvider::builder(format!("{control_plane}/policies/{{key}}"))
            .ttl(TTL)
            .negative_ttl(TTL)
            .build()
            .expect("a valid URL"),
    );
    let key = recourse::key!("users.GetProfile").key();
    let warmed = remote.refresh(key).await.expect("the control plane answers").expect("it knows the key");
    println!(
        "client:   warmed up: {key} = {} ({} attempts)",
        warmed.id.as_deref().unwrap_or("-"),
        warmed.retry.max_attempts
    );
    let provider = LayeredProvider::new().layer(Arc::clone(&remote)).catalog(recourse::catalog!());
    let users = Users {
        executor: Executor::builder().provider(provider).build(),
        http: reqwest::Client::new(),
        base: users_base,
    };

    println!("\n== 1. rev-1 (2 attempts); the users service fails its next {OUTAGE} requests");
    outage.store(OUTAGE, Ordering::SeqCst);
    let (result, timeline) = recourse::capture(users.get_profile(7)).await;
    print_call("get_profile(7)", &result, &timeline);
    assert!(matches!(result, Err(UsersError::Unavailable)), "{result:?}");
    assert_eq!((timeline.attempts.len(), timeline.policy_source), (2, PolicySource::Remote), "{timeline}");
    assert_eq!(timeline.policy_id.as_deref(), Some("rev-1"), "{timeline}");

    println!("== 2. the operator raises it to 5 attempts (rev-2); nothing changes on the client's side");
    let before = remote.generation();
    let published = Instant::now();
    publish(&operator, &control_plane, "users.GetProfile", REV_2).await;
    // The background fetch brings it within the TTL; the provider's
    // generation moves, and call sites re-resolve their policy.
    while remote.generation() == before {
        assert!(published.elapsed() < 10 * TTL, "rev-2 did not arrive within {:?}", 10 * TTL);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!("client:   rev-2 arrived {}ms after the PUT (TTL {}ms)", published.elapsed().as_millis(), TTL.as_millis());
    outage.store(OUTAGE, Ordering::SeqCst);
    let (result, timeline) = recourse::capture(users.get_profile(7)).await;
    print_call("get_profile(7)", &result, &timeline);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!((timeline.attempts.len(), timeline.policy_source), (4, PolicySource::Remote), "{timeline}");
    assert_eq!(timeline.policy_id.as_deref(), Some("rev-2"), "{timeline}");

    println!("== 3. the operator serves a policy for users.Delete, a key recourse.toml does not declare");
    publish(&operator, &control_plane, "users.Delete", UNDECLARED).await;
    let served = remote.refresh("users.Delete").await.expect("the control plane answers");
    let served = served.expect("it knows the key");
    println!(
        "client:   the control plane serves users.Delete ({} attempts); the catalog guard rejects it",
        served.retry.max_attempts
    );
    outage.store(OUTAGE, Ordering::SeqCst);
    let (result, timeline) = recourse::capture(users.delete(7)).await;
    print_call("delete(7)", &result, &timeline);
    assert_eq!((timeline.attempts.len(), timeline.policy_source), (3, PolicySource::Default), "{timeline}");
    let rejection = timeline.attributes.get("policy_error").unwrap_or_default();
    assert!(rejection.contains("declares no such key"), "{timeline}");

    println!("== 4. the control plane goes down");
    stop_control_plane.send(()).expect("the control plane is up");
    control_plane_server.await.expect("the control plane stops");
    // A background fetch answered just before the shutdown may still be
    // landing (a refresh joins it): the next one finds nobody listening.
    let mut failed = None;
    for _ in 0..3 {
        if let Err(error) = remote.refresh(key).await {
            failed = Some(error);
            break;
        }
    }
    let failed = failed.expect("a fetch fails once the control plane is down");
    let cause = std::error::Error::source(&failed).map(ToString::to_string).unwrap_or_default();
    println!("client:   refresh failed: {cause}");
    outage.store(OUTAGE, Ordering::SeqCst);
    let (result, timeline) = recourse::capture(users.get_profile(7)).await;
    print_call("get_profile(7)", &result, &timeline);
    assert!(result.is_ok(), "{result:?}");
    assert_eq!((timeline.attempts.len(), timeline.policy_source), (4, PolicySource::LastKnownGood), "{timeline}");
    assert_eq!(timeline.policy_id.as_deref(), Some("rev-2"), "{timeline}");
    assert!(timeline.attributes.get("policy_error").is_some_and(|e| e.contains("policy fetch failed")), "{timeline}");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    run().await;
}

#[cfg(test)]
mod tests {
    /// The scenario, every stage checked, over real HTTP.
    #[tokio::test(flavor = "current_thread")]
    async fn an_operator_changes_a_live_policy() {
        super::run().await;
    }
}

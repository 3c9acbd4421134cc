//! HTTP with reqwest: status- and Retry-After-aware retries from one line.
//!
//! Run with `cargo run -p recourse-examples --features http --example http`.
//!
//! A user service on 127.0.0.1 answers `503`, then `429` with
//! `Retry-After: 1`, then the profile. `get_profile` is a plain reqwest
//! call; `recourse::http::check` turns the failures into an `HttpError`
//! that keeps the status and the server's wait, and the policy
//! `users.GetProfile` (recourse.toml) retries it: the 503 after the
//! computed backoff, the 429 after the server's second (beyond the
//! policy's `max_backoff`). A `POST` that gets a 503 is not retried: the
//! server may have acted on it.
//!
//! Then the same through `reqwest-middleware`: `RecourseMiddleware` puts
//! every request of a client under a key, and the response says how many
//! times it was sent again (`ResendCount`).
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::Method;
use recourse::http::{HttpError, check};
use recourse::recourse;
use recourse::reqwest::{RecourseMiddleware, ResendCount};

#[recourse(policy = "users.GetProfile")]
async fn get_profile(client: &reqwest::Client, base: &str, id: u64) -> Result<String, HttpError> {
    let response = check(Method::GET, client.get(format!("{base}/users/{id}")).send().await).await?;
    Ok(response.text().await?)
}

#[recourse(policy = "users.Rename")]
async fn rename(client: &reqwest::Client, base: &str, id: u64, name: &str) -> Result<String, HttpError> {
    let request = client.post(format!("{base}/users/{id}/name")).body(name.to_owned());
    let response = check(Method::POST, request.send().await).await?;
    Ok(response.text().await?)
}

/// The user service: busy, then throttling, then fine; renames always 503.
async fn profile(State(requests): State<Arc<AtomicUsize>>) -> Response {
    match requests.fetch_add(1, Ordering::SeqCst) {
        0 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        1 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response(),
        _ => "{\"id\":7,\"name\":\"ada\"}".into_response(),
    }
}

async fn rename_user() -> StatusCode {
    StatusCode::SERVICE_UNAVAILABLE
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    let app = Router::new()
        .route("/users/{id}", get(profile))
        .route("/users/{id}/name", post(rename_user))
        .with_state(Arc::new(AtomicUsize::new(0)));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the server runs") });

    let client = reqwest::Client::new();
    let (fetched, timeline) = recourse::capture(get_profile(&client, &base, 7)).await;
    println!("GET  -> {fetched:?}\n{timeline}");

    let (renamed, timeline) = recourse::capture(rename(&client, &base, 7, "grace")).await;
    println!("POST -> {}\n{timeline}", renamed.map_err(|e| e.to_string()).unwrap_err());

    // The whole client under `users.GetProfile`, through the middleware.
    let state = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route("/users/{id}", get(profile)).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a local port");
    let base = format!("http://{}", listener.local_addr().expect("bound"));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("the server runs") });
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(RecourseMiddleware::new(recourse::key!("users.GetProfile")))
        .build();
    let (response, timeline) = recourse::capture(client.get(format!("{base}/users/7")).send()).await;
    let response = response.expect("answered");
    let resends = response.extensions().get::<ResendCount>().map_or(0, |count| count.0);
    println!("GET (middleware) -> {} after {resends} resends\n{timeline}", response.status());
}

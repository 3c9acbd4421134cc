//! A hyper client behind `recourse::tower::RecourseLayer`: the layer every
//! tower-based client (hyper, axum's, tonic's channel) can take.
//!
//! Run with `cargo run -p recourse-examples --features tower --example tower`.
//!
//! A user service on 127.0.0.1 answers `503`, then `429` with
//! `Retry-After: 1`, then the profile. The client is a plain
//! `hyper_util` client; the layer runs each request under a key picked
//! from its method (`users.GetProfile` or `users.Rename`, checked against
//! recourse.toml at compile time), and `HttpResponses` tells it which
//! responses failed: the 503 is retried after the computed backoff, the
//! 429 after the server's second. A `POST` that gets a 503 is not retried
//! (the server may have acted on it): the caller gets the 503 response.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use recourse::CheckedKey;
use recourse::tower::{HttpResponses, RecourseLayer};
use tower::{Service, ServiceBuilder, ServiceExt};

/// The user service: busy, then throttling, then fine; renames always 503.
async fn profile(State(requests): State<Arc<AtomicUsize>>) -> Response {
    match requests.fetch_add(1, Ordering::SeqCst) {
        0 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        1 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response(),
        _ => "{\"id\":7,\"name\":\"ada\"}".into_response(),
    }
}

async fn rename_user() -> (StatusCode, &'static str) {
    (StatusCode::SERVICE_UNAVAILABLE, "try again later")
}

/// Static keys: nothing is allocated per request.
fn key_for(request: &Request<Full<Bytes>>) -> CheckedKey {
    if request.method() == Method::POST { recourse::key!("users.Rename") } else { recourse::key!("users.GetProfile") }
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

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut users = ServiceBuilder::new()
        .layer(RecourseLayer::with_key_fn(key_for).classify_responses(HttpResponses::new()))
        .service(client);

    let get_profile = Request::get(format!("{base}/users/7")).body(Full::default()).expect("a request");
    let call = users.ready().await.expect("always ready").call(get_profile);
    let (response, timeline) = recourse::capture(call).await;
    let response = response.expect("the profile");
    let status = response.status();
    let body = response.into_body().collect().await.expect("the body").to_bytes();
    println!("GET  -> {status} {}\n{timeline}", String::from_utf8_lossy(&body));

    let rename = Request::post(format!("{base}/users/7/name")).body(Full::from("grace")).expect("a request");
    let call = users.ready().await.expect("always ready").call(rename);
    let (response, timeline) = recourse::capture(call).await;
    let response = response.expect("the 503 comes back as a response");
    let status = response.status();
    let body = response.into_body().collect().await.expect("the body").to_bytes();
    println!("POST -> {status} {}\n{timeline}", String::from_utf8_lossy(&body));
}

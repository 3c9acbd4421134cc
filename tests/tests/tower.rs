//! `recourse::tower::RecourseLayer` around a hyper client talking to a real
//! axum server on 127.0.0.1, and around in-process tower services where the
//! test must control readiness or watch a response body.
#![cfg(feature = "tower")]
#![allow(missing_docs)]

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use recourse::policy::{Policy, PolicyKey};
use recourse::provider::StaticProvider;
use recourse::tower::{BoxError, HttpResponses, RecourseLayer};
use recourse::{Executor, OutcomeKind, Timeline};
use support::server::{Reply, serve};
use support::{Counter, FailingProvider, RecordingSleeper, SEED};
use tower::{Layer, Service, ServiceExt};

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// An executor with `policies`, whose backoffs are recorded instead of
/// slept.
fn executor(policies: impl IntoIterator<Item = Policy>) -> (Executor, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let provider = policies.into_iter().fold(StaticProvider::new(), StaticProvider::with);
    let executor = Executor::builder().provider(provider).sleeper(sleeper.clone()).jitter_seed(SEED).build();
    (executor, sleeper)
}

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

fn request(method: Method, url: &str) -> http::Request<Full<Bytes>> {
    http::Request::builder().method(method).uri(url).body(Full::new(Bytes::from_static(b"order=7"))).unwrap()
}

/// `api.Get`, the policy most tests run under: it retries.
fn api_get() -> Policy {
    Policy::builder("api.Get").max_attempts(3).build()
}

/// The hyper client behind the layer, running under `api.Get` on `executor`.
fn http_layer(executor: Executor) -> RecourseLayer<recourse::tower::FixedKey, HttpResponses> {
    RecourseLayer::new("api.Get").classify_responses(HttpResponses::new()).executor(executor)
}

fn reasons(timeline: &Timeline) -> Vec<(OutcomeKind, String)> {
    timeline.attempts.iter().map(|a| (a.outcome.kind, a.outcome.reason.to_string())).collect()
}

async fn body_text<B>(response: http::Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test]
async fn get_503_503_200_is_retried_and_succeeds() {
    let (executor, sleeper) = executor([api_get()]);
    let (base, script) = serve(vec![Reply::status(503), Reply::status(503), Reply::ok("ada")]).await;
    let service = http_layer(executor).layer(client());
    let (response, timeline) =
        recourse::capture(service.oneshot(request(Method::GET, &format!("{base}/users/7")))).await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "ada");
    assert_eq!(script.requests(), 3);
    let retryable = (OutcomeKind::Retryable, "http_5xx".to_owned());
    assert_eq!(reasons(&timeline), [retryable.clone(), retryable, (OutcomeKind::Success, "success".to_owned())]);
    assert_eq!(timeline.attempts[0].outcome.attributes.get("status"), Some("503"));
    assert_eq!(sleeper.sleeps().len(), 2);
}

#[tokio::test]
async fn post_503_is_returned_at_once_as_the_response() {
    let (executor, sleeper) = executor([api_get()]);
    let (base, script) = serve(vec![Reply::status(503).body("try again later")]).await;
    let service = http_layer(executor).layer(client());
    let (response, timeline) =
        recourse::capture(service.oneshot(request(Method::POST, &format!("{base}/orders")))).await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_text(response).await, "try again later");
    let seen: Vec<(Method, String)> = script.seen().into_iter().map(|seen| (seen.method, seen.path)).collect();
    assert_eq!(seen, [(Method::POST, "/orders".to_owned())]);
    assert_eq!(reasons(&timeline), [(OutcomeKind::NonRetryable, "http_non_idempotent".to_owned())]);
    let attributes = &timeline.attempts[0].outcome.attributes;
    assert_eq!((attributes.get("method"), attributes.get("status")), (Some("POST"), Some("503")));
    assert!(sleeper.sleeps().is_empty());
}

#[tokio::test]
async fn a_404_is_returned_at_once() {
    let (executor, _) = executor([api_get()]);
    let (base, script) = serve(vec![Reply::status(404).body("no such user")]).await;
    let service = http_layer(executor).layer(client());
    let (response, timeline) =
        recourse::capture(service.oneshot(request(Method::GET, &format!("{base}/users/8")))).await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(body_text(response).await, "no such user");
    assert_eq!(script.requests(), 1);
    assert_eq!(reasons(&timeline), [(OutcomeKind::NonRetryable, "http_non_retryable_status".to_owned())]);
}

#[tokio::test]
async fn when_attempts_run_out_the_last_response_comes_back_whole() {
    let (executor, _) = executor([api_get()]);
    let (base, script) = serve(vec![
        Reply::status(502).body("bad gateway"),
        Reply::status(503).body("unavailable"),
        Reply::status(504).body("gateway timeout"),
    ])
    .await;
    let service = http_layer(executor).layer(client());
    let (response, timeline) =
        recourse::capture(service.oneshot(request(Method::GET, &format!("{base}/users/7")))).await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body_text(response).await, "gateway timeout");
    assert_eq!(script.requests(), 3);
    assert_eq!(timeline.attempts.len(), 3);
    assert!(!timeline.succeeded());
}

#[tokio::test]
async fn a_refused_port_is_retried_as_a_transport_error() {
    let (executor, sleeper) = executor([api_get()]);
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/users/7", listener.local_addr().unwrap())
    };
    let service = http_layer(executor).layer(client());
    let (result, timeline) = recourse::capture(service.oneshot(request(Method::GET, &url))).await;
    let error = result.unwrap_err();
    // The caller gets the client's own error back, not a wrapper.
    let client_error = error.downcast_ref::<hyper_util::client::legacy::Error>();
    assert!(client_error.is_some_and(hyper_util::client::legacy::Error::is_connect), "{error:?}");
    let transport = (OutcomeKind::Retryable, "http_transport_error".to_owned());
    assert_eq!(reasons(&timeline), [transport.clone(), transport.clone(), transport]);
    assert_eq!(timeline.attempts[0].outcome.attributes.get("status"), Some("0"));
    assert!(timeline.attempts[0].error.as_deref().is_some_and(|text| text.contains("refused")), "{timeline}");
    assert_eq!(sleeper.sleeps().len(), 2);
}

#[tokio::test]
async fn a_post_that_gets_no_response_is_not_retried() {
    let (executor, _) = executor([api_get()]);
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/orders", listener.local_addr().unwrap())
    };
    let service = http_layer(executor).layer(client());
    let (result, timeline) = recourse::capture(service.oneshot(request(Method::POST, &url))).await;
    assert!(result.unwrap_err().downcast_ref::<hyper_util::client::legacy::Error>().is_some());
    assert_eq!(reasons(&timeline), [(OutcomeKind::NonRetryable, "http_non_idempotent".to_owned())]);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (executor, sleeper) = executor([api_get()]);
    let (base, script) = serve(vec![Reply::status(429).retry_after("2"), Reply::ok("ada")]).await;
    let service = http_layer(executor).layer(client());
    let (response, timeline) =
        recourse::capture(service.oneshot(request(Method::GET, &format!("{base}/users/7")))).await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);
    assert_eq!(script.requests(), 2);
    assert_eq!(sleeper.sleeps(), [Duration::from_secs(2)]);
    assert_eq!(timeline.attempts[1].backoff, Duration::from_secs(2));
    let first = &timeline.attempts[0].outcome;
    assert_eq!((first.reason.as_ref(), first.attributes.get("retry_after")), ("http_429", Some("2s")));
}

#[tokio::test]
async fn a_retried_failure_is_drained_so_the_connection_is_reused() {
    let (executor, _) = executor([api_get()]);
    let (base, script) = serve(vec![Reply::status(500).body("internal error, details follow"), Reply::ok("ada")]).await;
    let service = http_layer(executor).layer(client());
    let response = service.oneshot(request(Method::GET, &format!("{base}/users/7"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let peers = script.peers();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0], peers[1], "the retry went over the first attempt's connection");
}

#[tokio::test]
async fn each_request_runs_under_the_key_its_path_names() {
    let (executor, _) = executor([
        Policy::builder("billing.Invoice").max_attempts(2).build(),
        Policy::builder("search.Query").max_attempts(4).build(),
    ]);
    let (base, script) = serve(vec![Reply::status(503); 6]).await;
    // `/billing/Invoice` runs under `billing.Invoice`.
    let layer = RecourseLayer::with_key_fn(|request: &http::Request<Full<Bytes>>| {
        let path = request.uri().path().trim_start_matches('/');
        let (namespace, name) = path.split_once('/').unwrap_or(("", path));
        PolicyKey::new(namespace.to_owned(), name.to_owned())
    })
    .classify_responses(HttpResponses::new())
    .executor(executor);
    let mut service = layer.layer(client());

    for (path, key, attempts) in [("/billing/Invoice", "billing.Invoice", 2), ("/search/Query", "search.Query", 4)] {
        let call = service.ready().await.unwrap().call(request(Method::GET, &format!("{base}{path}")));
        let (response, timeline) = recourse::capture(call).await;
        assert_eq!(response.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(timeline.key, PolicyKey::from(key));
        assert_eq!(timeline.attempts.len(), attempts);
        assert_eq!(script.requests_to(path), attempts);
    }
}

#[tokio::test]
async fn without_response_classification_a_503_is_a_success() {
    let (executor, _) = executor([api_get()]);
    let (base, script) = serve(vec![Reply::status(503)]).await;
    let service = RecourseLayer::new("api.Get").executor(executor).layer(client());
    let (response, timeline) =
        recourse::capture(service.oneshot(request(Method::GET, &format!("{base}/users/7")))).await;
    assert_eq!(response.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(script.requests(), 1);
    assert!(timeline.succeeded());
}

#[tokio::test]
async fn recourse_errors_come_back_boxed() {
    let executor = Executor::builder().provider(FailingProvider::default()).build();
    let (base, script) = serve(vec![]).await;
    let service = http_layer(executor).layer(client());
    let error = service.oneshot(request(Method::GET, &format!("{base}/users/7"))).await.unwrap_err();
    assert!(matches!(error.downcast_ref::<recourse::Error>(), Some(recourse::Error::NoPolicy { .. })), "{error:?}");
    assert_eq!(script.requests(), 0);
}

// ---------------------------------------------------------------------------
// In-process services: readiness under the test's control, and a response
// body the test can watch.

/// Readiness permits shared by every clone of a [`Gated`] service.
#[derive(Default)]
struct Gate {
    permits: usize,
    /// The next readiness poll fails instead (once).
    fail_next: bool,
    waker: Option<Waker>,
}

/// A service that is ready only when the test hands it a permit, and that
/// records any call made without readiness.
#[derive(Default)]
struct Gated {
    gate: Arc<Mutex<Gate>>,
    /// This clone reported ready and has not been called since.
    ready: bool,
    calls: Counter,
    unready_calls: Counter,
}

/// A clone has its own readiness, as tower services' clones do.
impl Clone for Gated {
    fn clone(&self) -> Self {
        Gated {
            gate: Arc::clone(&self.gate),
            ready: false,
            calls: self.calls.clone(),
            unready_calls: self.unready_calls.clone(),
        }
    }
}

impl Gated {
    fn open(&self, permits: usize) {
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        gate.permits += permits;
        if let Some(waker) = gate.waker.take() {
            waker.wake();
        }
    }

    fn fail_next_poll(&self) {
        self.gate.lock().unwrap_or_else(PoisonError::into_inner).fail_next = true;
    }
}

impl Service<u32> for Gated {
    type Response = u32;
    type Error = BoxError;
    type Future = std::future::Ready<Result<u32, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if self.ready {
            return Poll::Ready(Ok(()));
        }
        let mut gate = self.gate.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut gate.fail_next) {
            return Poll::Ready(Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into()));
        }
        if gate.permits == 0 {
            gate.waker = Some(cx.waker().clone());
            return Poll::Pending;
        }
        gate.permits -= 1;
        self.ready = true;
        Poll::Ready(Ok(()))
    }

    /// The first call fails with a retryable error; later ones echo.
    fn call(&mut self, n: u32) -> Self::Future {
        if !std::mem::take(&mut self.ready) {
            self.unready_calls.hit();
        }
        let result = if self.calls.hit() == 1 {
            Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into())
        } else {
            Ok(n)
        };
        std::future::ready(result)
    }
}

fn poll<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn every_attempt_waits_for_its_service_to_be_ready() {
    let (executor, _) = executor([Policy::builder("gated.Echo").max_attempts(3).build()]);
    let inner = Gated::default();
    let mut service = RecourseLayer::new("gated.Echo").executor(executor).layer(inner.clone());
    let mut cx = Context::from_waker(Waker::noop());

    // The inner service's backpressure reaches the caller.
    assert!(service.poll_ready(&mut cx).is_pending());
    inner.open(1);
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))));

    let mut call = Box::pin(recourse::capture(service.call(5)));
    // The first attempt ran on the ready service and failed; the retry's
    // clone is not ready, so it is not called.
    assert!(poll(&mut call).is_pending());
    assert_eq!(inner.calls.get(), 1);
    assert!(poll(&mut call).is_pending());
    assert_eq!(inner.calls.get(), 1);

    inner.open(1);
    let Poll::Ready((result, timeline)) = poll(&mut call) else { panic!("the retry was ready") };
    assert_eq!(result.unwrap(), 5);
    assert_eq!(inner.calls.get(), 2);
    assert_eq!(inner.unready_calls.get(), 0, "a service was called before it was ready");
    assert_eq!(reasons(&timeline)[0], (OutcomeKind::Retryable, "io_connection_reset".to_owned()));
}

#[tokio::test]
async fn a_call_without_poll_ready_still_waits_for_readiness() {
    let (executor, _) = executor([Policy::builder("gated.Echo").max_attempts(3).build()]);
    let inner = Gated::default();
    let mut service = RecourseLayer::new("gated.Echo").executor(executor).layer(inner.clone());
    inner.open(2);
    assert_eq!(service.call(9).await.unwrap(), 9);
    assert_eq!((inner.calls.get(), inner.unready_calls.get()), (2, 0));
}

#[tokio::test]
async fn a_readiness_error_is_the_attempts_error() {
    let (executor, sleeper) = executor([Policy::builder("gated.Echo").max_attempts(3).build()]);
    let inner = Gated::default();
    // Past its failure, the inner service only echoes.
    inner.calls.hit();
    let mut service = RecourseLayer::new("gated.Echo").executor(executor).layer(inner.clone());
    inner.fail_next_poll();
    inner.open(1);

    let (result, timeline) = recourse::capture(async {
        service.ready().await?;
        service.call(4).await
    })
    .await;
    assert_eq!(result.unwrap(), 4);
    assert_eq!(inner.calls.get(), 2, "the unready service was never called");
    assert_eq!(inner.unready_calls.get(), 0);
    assert_eq!(
        reasons(&timeline),
        [(OutcomeKind::Retryable, "io_connection_refused".to_owned()), (OutcomeKind::Success, "success".to_owned())]
    );
    assert_eq!(sleeper.sleeps().len(), 1);
}

/// A one-chunk body that records whether it was read to its end.
struct WatchedBody {
    chunk: Option<Bytes>,
    finished: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        match self.chunk.take() {
            Some(chunk) => Poll::Ready(Some(Ok(http_body::Frame::data(chunk)))),
            None => {
                self.finished.store(true, Ordering::SeqCst);
                Poll::Ready(None)
            }
        }
    }
}

#[tokio::test]
async fn a_retried_response_is_discarded_and_the_returned_one_is_untouched() {
    let (executor, _) = executor([Policy::builder("busy.Get").max_attempts(2).build()]);
    let bodies: Arc<Mutex<Vec<Arc<AtomicBool>>>> = Arc::default();
    let busy = tower::service_fn({
        let bodies = Arc::clone(&bodies);
        move |_: http::Request<String>| {
            let finished = Arc::new(AtomicBool::new(false));
            bodies.lock().unwrap().push(Arc::clone(&finished));
            let body = WatchedBody { chunk: Some(Bytes::from_static(b"busy")), finished };
            async move { http::Response::builder().status(503).body(body) }
        }
    });
    let service =
        RecourseLayer::new("busy.Get").classify_responses(HttpResponses::new()).executor(executor).layer(busy);

    let response = service.oneshot(http::Request::new(String::new())).await.unwrap();
    let finished: Vec<bool> = bodies.lock().unwrap().iter().map(|f| f.load(Ordering::SeqCst)).collect();
    assert_eq!(finished, [true, false], "the retried body was drained, the returned one was not touched");
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.into_body().collect().await.unwrap().to_bytes(), "busy");
}

#[tokio::test(start_paused = true)]
async fn a_hedge_wins_over_a_stuck_primary() {
    let (executor, _) = executor([Policy::builder("slow.Get")
        .max_attempts(1)
        .max_hedges(1)
        .hedge_delay(Duration::from_millis(20))
        .build()]);
    let calls = Counter::new();
    let slow_then_fast = tower::service_fn({
        let calls = calls.clone();
        move |n: u32| {
            let call = calls.hit();
            async move {
                if call == 1 {
                    std::future::pending::<()>().await;
                }
                Ok::<_, BoxError>(n * 2)
            }
        }
    });
    let service = RecourseLayer::new("slow.Get").executor(executor).layer(slow_then_fast);
    let (result, timeline) = recourse::capture(service.oneshot(21)).await;
    assert_eq!(result.unwrap(), 42);
    assert_eq!(calls.get(), 2);
    let cancelled = timeline.attempts.iter().find(|a| a.outcome.reason == "hedge_cancelled");
    assert!(cancelled.is_some_and(|a| !a.is_hedge), "the primary lost: {timeline}");
}

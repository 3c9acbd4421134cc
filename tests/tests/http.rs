//! HTTP against a real server on 127.0.0.1 (checklist section U): a
//! `#[recourse]` function whose body is `reqwest` plus
//! `recourse::http::check` gets status- and Retry-After-aware retries.
#![cfg(feature = "http")]
#![allow(missing_docs)]

mod support;

use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use recourse::http::{HttpError, check};
use recourse::{Executor, OutcomeKind, Timeline, recourse};
use support::RecordingSleeper;
use support::server::{self, Reply, Script};

/// A server on 127.0.0.1 answering `replies`; the URL of a user on it.
async fn serve(replies: Vec<Reply>) -> (String, Script) {
    let (base, script) = server::serve(replies).await;
    (format!("{base}/users/7"), script)
}

/// An executor whose backoffs are recorded instead of slept.
fn executor() -> (Executor, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    (Executor::builder().sleeper(sleeper.clone()).build(), sleeper)
}

// `http.Get`: 3 attempts, 10 ms backoff, at most 100 ms (recourse.toml).
#[recourse(policy = "http.Get", executor = executor)]
async fn get(executor: &Executor, client: &reqwest::Client, url: &str) -> Result<String, HttpError> {
    let response = check(Method::GET, client.get(url).send().await).await?;
    Ok(response.text().await?)
}

#[recourse(policy = "http.Get", executor = executor)]
async fn post(executor: &Executor, client: &reqwest::Client, url: &str) -> Result<String, HttpError> {
    let response = check(Method::POST, client.post(url).body("order=7").send().await).await?;
    Ok(response.text().await?)
}

#[recourse(policy = "http.Get", executor = executor)]
async fn put(executor: &Executor, client: &reqwest::Client, url: &str, body: &[u8]) -> Result<String, HttpError> {
    let response = check(Method::PUT, client.put(url).body(body.to_vec()).send().await).await?;
    Ok(response.text().await?)
}

// `http.Hedged`: one attempt, a hedge after 20 ms.
#[recourse(policy = "http.Hedged", executor = executor)]
async fn hedged(executor: &Executor, client: &reqwest::Client, url: &str) -> Result<String, HttpError> {
    let response = check(Method::GET, client.get(url).send().await).await?;
    Ok(response.text().await?)
}

fn reasons(timeline: &Timeline) -> Vec<(OutcomeKind, String)> {
    timeline.attempts.iter().map(|a| (a.outcome.kind, a.outcome.reason.to_string())).collect()
}

#[tokio::test]
async fn u82_a_200_is_returned_with_its_body() {
    let (executor, _) = executor();
    let (url, script) = serve(vec![Reply::ok("Hello")]).await;
    assert_eq!(get(&executor, &reqwest::Client::new(), &url).await.unwrap(), "Hello");
    assert_eq!(script.requests(), 1);
}

#[tokio::test]
async fn u83_get_503_503_200_is_retried_and_succeeds() {
    let (executor, sleeper) = executor();
    let (url, script) = serve(vec![Reply::status(503), Reply::status(503), Reply::ok("ada")]).await;
    let (body, timeline) = recourse::capture(get(&executor, &reqwest::Client::new(), &url)).await;
    assert_eq!(body.unwrap(), "ada");
    assert_eq!(script.requests(), 3);
    let retryable = (OutcomeKind::Retryable, "http_5xx".to_owned());
    assert_eq!(reasons(&timeline), [retryable.clone(), retryable, (OutcomeKind::Success, "success".to_owned())]);
    assert_eq!(timeline.attempts[0].outcome.attributes.get("status"), Some("503"));
    assert_eq!(sleeper.sleeps().len(), 2);
}

#[tokio::test]
async fn u85_a_failed_body_is_drained_so_the_connection_is_reused() {
    let (executor, _) = executor();
    let (url, script) =
        serve(vec![Reply::status(500).trickling("internal error, details follow"), Reply::ok("ada")]).await;
    let (body, timeline) = recourse::capture(get(&executor, &reqwest::Client::new(), &url)).await;
    assert_eq!(body.unwrap(), "ada");
    assert_eq!(timeline.attempts.len(), 2);
    let peers = script.peers();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0], peers[1], "the retry went over the first attempt's connection");
}

#[tokio::test]
async fn post_503_is_returned_at_once() {
    let (executor, sleeper) = executor();
    let (url, script) = serve(vec![Reply::status(503)]).await;
    let (error, timeline) = recourse::capture(post(&executor, &reqwest::Client::new(), &url)).await;
    let error = error.unwrap_err();
    assert_eq!(error.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(error.method(), Some(&Method::POST));
    assert_eq!(script.requests(), 1);
    assert_eq!(reasons(&timeline), [(OutcomeKind::NonRetryable, "http_non_idempotent".to_owned())]);
    let attributes = &timeline.attempts[0].outcome.attributes;
    assert_eq!((attributes.get("method"), attributes.get("status")), (Some("POST"), Some("503")));
    assert!(sleeper.sleeps().is_empty());
}

#[tokio::test]
async fn u86_a_404_is_returned_at_once() {
    let (executor, _) = executor();
    let (url, script) = serve(vec![Reply::status(404)]).await;
    let (error, timeline) = recourse::capture(get(&executor, &reqwest::Client::new(), &url)).await;
    assert_eq!(error.unwrap_err().status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(script.requests(), 1);
    assert_eq!(reasons(&timeline), [(OutcomeKind::NonRetryable, "http_non_retryable_status".to_owned())]);
}

#[tokio::test]
async fn u84_retry_after_in_seconds_is_honoured_beyond_max_backoff() {
    let (executor, sleeper) = executor();
    let (url, script) = serve(vec![Reply::status(429).retry_after("2"), Reply::ok("ada")]).await;
    let (body, timeline) = recourse::capture(get(&executor, &reqwest::Client::new(), &url)).await;
    assert_eq!(body.unwrap(), "ada");
    assert_eq!(script.requests(), 2);
    // `http.Get` caps computed backoffs at 100 ms; the server's wait wins.
    assert_eq!(sleeper.sleeps(), [Duration::from_secs(2)]);
    let first = &timeline.attempts[0].outcome;
    assert_eq!((first.reason.as_ref(), first.attributes.get("retry_after")), ("http_429", Some("2s")));
}

#[tokio::test]
async fn retry_after_as_an_http_date_is_honoured() {
    let (executor, sleeper) = executor();
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    let (url, script) = serve(vec![Reply::status(503).retry_after(date), Reply::ok("ada")]).await;
    assert_eq!(get(&executor, &reqwest::Client::new(), &url).await.unwrap(), "ada");
    assert_eq!(script.requests(), 2);
    // The date has whole seconds and the clock moved on since it was made.
    let sleeps = sleeper.sleeps();
    assert_eq!(sleeps.len(), 1);
    assert!(sleeps[0] > Duration::from_secs(1) && sleeps[0] <= Duration::from_secs(3), "{sleeps:?}");
}

#[tokio::test]
async fn a_refused_port_is_retried_as_a_transport_error() {
    let (executor, _) = executor();
    let url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/", listener.local_addr().unwrap())
    };
    let (error, timeline) = recourse::capture(get(&executor, &reqwest::Client::new(), &url)).await;
    let error = error.unwrap_err();
    assert!(error.is_transport(), "{error:?}");
    assert!(error.status().is_none());
    let transport = (OutcomeKind::Retryable, "http_transport_error".to_owned());
    assert_eq!(reasons(&timeline), [transport.clone(), transport.clone(), transport]);
    assert_eq!(timeline.attempts[0].outcome.attributes.get("status"), Some("0"));
    // The chain reaches the client's own error and the io error under it.
    let view: &dyn recourse::classify::ErrorView = &error;
    assert!(view.find::<reqwest::Error>().is_some());
}

#[tokio::test]
async fn a_replayed_body_arrives_intact_on_every_attempt() {
    let (executor, _) = executor();
    let (url, script) = serve(vec![Reply::status(503), Reply::status(502), Reply::ok("stored")]).await;
    let body = b"{\"name\":\"ada\",\"bytes\":[0,1,2,255]}";
    assert_eq!(put(&executor, &reqwest::Client::new(), &url, body).await.unwrap(), "stored");
    let seen = script.seen();
    assert_eq!(seen.len(), 3);
    for request in seen {
        assert_eq!((request.method, request.body.as_ref()), (Method::PUT, &body[..]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hedged_get_returns_the_fast_answer_and_drops_the_slow_request() {
    let (executor, _) = executor();
    let (url, script) = serve(vec![Reply::ok("slow").after(Duration::from_secs(60)), Reply::ok("fast")]).await;
    let (body, timeline) = recourse::capture(hedged(&executor, &reqwest::Client::new(), &url)).await;
    assert_eq!(body.unwrap(), "fast");
    assert_eq!(script.requests(), 2);
    let cancelled = timeline.attempts.iter().find(|a| a.outcome.reason == "hedge_cancelled");
    assert!(cancelled.is_some_and(|a| !a.is_hedge), "the primary lost: {timeline}");
    // The client closed the loser's connection, so the server dropped its
    // handler long before its minute was up.
    tokio::time::timeout(Duration::from_secs(30), script.abandoned())
        .await
        .expect("the slow request's connection was dropped");
}

#[tokio::test]
async fn check_passes_a_success_through_and_keeps_a_failures_headers() {
    let (url, _) = serve(vec![Reply::status(503).retry_after("1"), Reply::ok("ada")]).await;
    let client = reqwest::Client::new();
    let error = check(Method::GET, client.get(&url).send().await).await.unwrap_err();
    assert_eq!(error.headers().and_then(|h| h.get("retry-after")).map(|v| v.to_str().unwrap()), Some("1"));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(error.to_string(), "http status 503 Service Unavailable");
    let response = check(Method::GET, client.get(&url).send().await).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ada");
}

/// A service's own error wrapping `HttpError` the usual thiserror way.
#[derive(Debug, thiserror::Error, recourse::Classifier)]
enum ProfileError {
    #[error(transparent)]
    #[classify(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

#[tokio::test]
async fn the_http_classifier_by_name_finds_an_http_error_inside_the_users_enum() {
    let sleeper = RecordingSleeper::new();
    let policy = recourse::policy::Policy::builder("http.Named").max_attempts(3).classifier("http").build();
    let executor = Executor::builder().policy(policy).sleeper(sleeper).build();
    let (url, script) = serve(vec![Reply::status(503), Reply::ok("ada")]).await;
    let client = reqwest::Client::new();
    let (body, timeline) = recourse::capture(executor.call("http.Named", || async {
        let response = check(Method::GET, client.get(&url).send().await).await?;
        Ok::<_, ProfileError>(response.text().await.map_err(HttpError::from)?)
    }))
    .await;
    assert_eq!(body.unwrap(), "ada");
    assert_eq!(script.requests(), 2);
    assert_eq!(timeline.attempts[0].outcome.reason, "http_5xx", "not a classifier_type_mismatch");
}

mod middleware {
    //! The same exchanges through `recourse::reqwest::RecourseMiddleware`.

    use recourse::policy::Policy;
    use recourse::reqwest::{BodyNotReplayable, Key, RecourseMiddleware, ResendCount};
    use reqwest_middleware::ClientWithMiddleware;

    use super::*;

    /// A client whose requests run under `mw.Get` (3 attempts) unless they
    /// name another key; `mw.Once` allows one attempt.
    fn client() -> (ClientWithMiddleware, RecordingSleeper) {
        let sleeper = RecordingSleeper::new();
        let executor = Executor::builder()
            .policy(Policy::builder("mw.Get").max_attempts(3).build())
            .policy(Policy::builder("mw.Once").max_attempts(1).build())
            .sleeper(sleeper.clone())
            .build();
        let middleware = RecourseMiddleware::new("mw.Get").executor(executor);
        (reqwest_middleware::ClientBuilder::new(reqwest::Client::new()).with(middleware).build(), sleeper)
    }

    fn resends(response: &reqwest::Response) -> Option<u32> {
        response.extensions().get::<ResendCount>().map(|count| count.0)
    }

    #[tokio::test]
    async fn a_get_is_retried_and_the_resend_count_is_on_the_response() {
        let (client, sleeper) = client();
        let (url, script) = serve(vec![Reply::status(503), Reply::status(503), Reply::ok("ada")]).await;
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(resends(&response), Some(2));
        assert_eq!(response.text().await.unwrap(), "ada");
        assert_eq!((script.requests(), sleeper.sleeps().len()), (3, 2));
    }

    #[tokio::test]
    async fn a_post_503_comes_back_at_once_as_the_response_with_its_body() {
        let (client, _) = client();
        let (url, script) = serve(vec![Reply::status(503).trickling("try again later")]).await;
        let response = client.post(&url).body("order=7").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resends(&response), Some(0));
        assert_eq!(response.text().await.unwrap(), "try again later");
        assert_eq!(script.requests(), 1);
    }

    #[tokio::test]
    async fn when_attempts_run_out_the_last_response_is_returned() {
        let (client, _) = client();
        let (url, script) =
            serve(vec![Reply::status(502), Reply::status(503), Reply::status(504).trickling("gateway")]).await;
        let response = client.get(&url).send().await.unwrap();
        assert_eq!((response.status(), resends(&response)), (StatusCode::GATEWAY_TIMEOUT, Some(2)));
        assert_eq!(response.text().await.unwrap(), "gateway");
        assert_eq!(script.requests(), 3);
    }

    #[tokio::test]
    async fn a_streaming_body_is_refused_before_anything_is_sent() {
        let (client, _) = client();
        let (url, script) = serve(vec![]).await;
        let error = client.put(&url).body(reqwest::Body::wrap(String::from("streamed"))).send().await.unwrap_err();
        let reqwest_middleware::Error::Middleware(error) = error else { panic!("{error:?}") };
        assert!(error.downcast_ref::<BodyNotReplayable>().is_some(), "{error:?}");
        assert_eq!(script.requests(), 0);
    }

    #[tokio::test]
    async fn a_replayed_body_arrives_intact_on_every_attempt() {
        let (client, _) = client();
        let (url, script) = serve(vec![Reply::status(503), Reply::ok("stored")]).await;
        let body = b"{\"name\":\"ada\"}".to_vec();
        let response = client.put(&url).body(body.clone()).send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "stored");
        let seen = script.seen();
        assert_eq!(seen.len(), 2);
        assert!(seen.iter().all(|request| request.method == Method::PUT && request.body.as_ref() == body.as_slice()));
    }

    #[tokio::test]
    async fn a_request_can_name_its_own_key() {
        let (client, _) = client();
        let (url, script) = serve(vec![Reply::status(503), Reply::ok("late")]).await;
        let response = client.get(&url).with_extension(Key::from("mw.Once")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(script.requests(), 1, "mw.Once allows one attempt");
    }

    #[tokio::test]
    async fn retry_after_is_honoured() {
        let (client, sleeper) = client();
        let (url, _) = serve(vec![Reply::status(429).retry_after("2"), Reply::ok("ada")]).await;
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(sleeper.sleeps(), [Duration::from_secs(2)]);
    }

    #[tokio::test]
    async fn a_failed_body_is_read_so_the_connection_is_reused() {
        let (client, _) = client();
        let (url, script) =
            serve(vec![Reply::status(500).trickling("internal error, details follow"), Reply::ok("ada")]).await;
        assert_eq!(client.get(&url).send().await.unwrap().status(), StatusCode::OK);
        let peers = script.peers();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0], peers[1], "the retry went over the first attempt's connection");
    }

    #[tokio::test]
    async fn a_refused_port_is_retried_and_returns_the_transport_error() {
        let (client, sleeper) = client();
        let url = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/", listener.local_addr().unwrap())
        };
        let (result, timeline) = recourse::capture(client.get(&url).send()).await;
        assert!(matches!(result, Err(reqwest_middleware::Error::Reqwest(ref e)) if e.is_connect()), "{result:?}");
        assert_eq!(timeline.attempts.len(), 3);
        assert_eq!(timeline.attempts[0].outcome.reason, "http_transport_error");
        assert_eq!(sleeper.sleeps().len(), 2);
    }
}

#[cfg(feature = "tracing")]
mod traced {
    //! The middleware's requests seen through `recourse::tracing`.

    use recourse::reqwest::RecourseMiddleware;
    use recourse::tracing::TracingObserver;
    use support::trace::{Capture, captured};

    use super::*;

    #[tokio::test]
    async fn every_resent_request_carries_its_resend_count_on_its_attempt_span() {
        let executor = Executor::builder()
            .policy(recourse::policy::Policy::builder("mw.Traced").max_attempts(3).build())
            .sleeper(RecordingSleeper::new())
            .observer(TracingObserver::new())
            .build();
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(RecourseMiddleware::new("mw.Traced").executor(executor))
            .build();
        let (url, _) = serve(vec![Reply::status(503), Reply::status(503), Reply::ok("ada")]).await;
        let capture = Capture::default();
        let response = captured(&capture, client.get(&url).send()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let tree = capture.tree();
        let attempts: Vec<&str> =
            tree.lines().filter(|line| line.trim_start().starts_with("recourse.attempt{")).collect();
        assert_eq!(attempts.len(), 3, "{tree}");
        assert!(!attempts[0].contains("http.request.resend_count"), "the first send is not a resend: {tree}");
        assert!(attempts[1].contains("http.request.resend_count=1"), "{tree}");
        assert!(attempts[2].contains("http.request.resend_count=2"), "{tree}");
    }
}

//! gRPC against a real tonic server on 127.0.0.1 (checklist section V,
//! items 88–91, and Go §14): calls through a hand-written tonic client
//! under a policy keyed by the method path, classified by status code, with
//! the server's `grpc-retry-pushback-ms` honoured.
//!
//! Rust adaptations: Go's unary interceptor (V88–V90) is
//! `Executor::call(method_key(path), ..)` (the tower layer is
//! `recourse::tower`); V91's "caller's context cancelled beforehand" has no
//! Rust counterpart (cancelling is dropping the call's future, which never
//! runs an attempt), so a server-side `Cancelled` stands in for it. Backoff
//! sleeps go to a recording sleeper; only the two timeout tests wait on the
//! clock, for an attempt that never ends by itself.
#![cfg(feature = "tonic")]
#![allow(missing_docs)]

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use recourse::policy::{Policy, PolicyKey};
use recourse::tonic::{GrpcClassifier, call_method, method_key};
use recourse::{Executor, OutcomeKind, Timeline, recourse};
use support::{BoxError, Counter, RecordingSleeper, SEED, ms, wrap};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;

/// The one method of the test service.
const SAY_HELLO: &str = "/demo.Greeter/SayHello";
/// Its policy key, as a catalog would declare it.
const KEY: &str = "demo.Greeter.SayHello";

#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

// ---------------------------------------------------------------------------
// The server: `demo.Greeter` answering from a script.

/// One scripted answer.
enum Reply {
    Fail(Status),
    /// Never answer.
    Hang,
}

/// What the server answers, in order; once the script runs out it greets.
#[derive(Clone, Default)]
struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    invocations: Counter,
}

impl Script {
    fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        Self { replies: Arc::new(Mutex::new(replies.into_iter().collect())), invocations: Counter::new() }
    }

    fn failing(statuses: impl IntoIterator<Item = Status>) -> Self {
        Self::new(statuses.into_iter().map(Reply::Fail))
    }

    /// The answer to one request; `None` never to answer.
    fn answer(&self, request: &HelloRequest) -> Option<Result<HelloReply, Status>> {
        self.invocations.hit();
        match self.replies.lock().unwrap_or_else(PoisonError::into_inner).pop_front() {
            Some(Reply::Fail(status)) => Some(Err(status)),
            Some(Reply::Hang) => None,
            None => Some(Ok(HelloReply { message: format!("hello, {}", request.name) })),
        }
    }
}

/// The service as tonic-build would generate it: routes by path, decodes
/// with the prost codec, answers `Unimplemented` to any other method.
#[derive(Clone)]
struct GreeterServer(Script);

impl Service<http::Request<tonic::body::Body>> for GreeterServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let script = self.0.clone();
        Box::pin(async move {
            if request.uri().path() != SAY_HELLO {
                return Ok(Status::unimplemented(request.uri().path().to_owned()).into_http());
            }
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
            Ok(grpc.unary(SayHello(script), request).await)
        })
    }
}

/// The unary handler.
struct SayHello(Script);

impl Service<tonic::Request<HelloRequest>> for SayHello {
    type Response = tonic::Response<HelloReply>;
    type Error = Status;
    type Future = BoxFuture<Self::Response, Status>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: tonic::Request<HelloRequest>) -> Self::Future {
        match self.0.answer(request.get_ref()) {
            Some(answer) => Box::pin(std::future::ready(answer.map(tonic::Response::new))),
            None => Box::pin(std::future::pending()),
        }
    }
}

/// Starts the server on an ephemeral port of 127.0.0.1; it runs until the
/// test's runtime shuts down.
fn serve(script: &Script) -> SocketAddr {
    let incoming = TcpIncoming::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0");
    let addr = incoming.local_addr().expect("local address");
    tokio::spawn(Server::builder().serve_with_incoming(GreeterServer(script.clone()), incoming));
    addr
}

// ---------------------------------------------------------------------------
// The client, as tonic-build would generate it.

#[derive(Clone)]
struct GreeterClient(tonic::client::Grpc<Channel>);

impl GreeterClient {
    async fn connect(addr: SocketAddr) -> Self {
        Self::connect_to(Endpoint::from_shared(format!("http://{addr}")).unwrap()).await
    }

    async fn connect_to(endpoint: Endpoint) -> Self {
        Self(tonic::client::Grpc::new(endpoint.connect().await.expect("connect")))
    }

    async fn say_hello(&mut self, request: HelloRequest) -> Result<tonic::Response<HelloReply>, Status> {
        self.0.ready().await.map_err(|e| Status::unknown(format!("service was not ready: {e}")))?;
        let path = PathAndQuery::from_static(SAY_HELLO);
        self.0.unary(tonic::Request::new(request), path, ProstCodec::default()).await
    }

    /// One attempt's call, made by a clone of the client: the per-attempt
    /// closure cannot lend out its own `&mut`.
    fn greet(&self, name: &str) -> impl Future<Output = Result<String, Status>> + use<> {
        let mut client = self.clone();
        let request = HelloRequest { name: name.to_owned() };
        async move { Ok(client.say_hello(request).await?.into_inner().message) }
    }
}

/// A server running `script` and a client connected to it.
async fn greeter(script: &Script) -> GreeterClient {
    GreeterClient::connect(serve(script)).await
}

/// An executor holding `policy`, sleeping on a recording sleeper.
fn executor(policy: Policy) -> (Executor, RecordingSleeper) {
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder().policy(policy).sleeper(sleeper.clone()).jitter_seed(SEED).build();
    (executor, sleeper)
}

/// The policy of most tests: a few attempts, exponential backoff without
/// jitter, so the recorded sleeps are exact.
fn three_attempts() -> Policy {
    Policy::builder(KEY).max_attempts(3).backoff(ms(10), ms(500), 2.0).build()
}

fn pushback(code: Code, value: &'static str) -> Status {
    let mut metadata = MetadataMap::new();
    metadata.insert(recourse::tonic::PUSHBACK_KEY, MetadataValue::from_static(value));
    Status::with_metadata(code, "busy", metadata)
}

fn reasons(timeline: &Timeline) -> Vec<&str> {
    timeline.attempts.iter().map(|a| &*a.outcome.reason).collect()
}

// ---------------------------------------------------------------------------
// V88–V91.

// V88: the call succeeds at once → one invocation, one success.
#[tokio::test]
async fn v88_a_successful_call_runs_once() {
    let script = Script::default();
    let client = greeter(&script).await;
    let (executor, sleeper) = executor(three_attempts());

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || client.greet("ada"))).await;

    assert_eq!(reply.unwrap(), "hello, ada");
    assert_eq!(script.invocations.get(), 1);
    assert_eq!(reasons(&timeline), ["success"]);
    assert!(sleeper.sleeps().is_empty());
}

// V89: Unavailable twice, then success → three invocations, and the caller
// sees only the greeting.
#[tokio::test]
async fn v89_unavailable_twice_then_success_is_retried_to_success() {
    let script = Script::failing([Status::unavailable("warming up"), Status::unavailable("warming up")]);
    let client = greeter(&script).await;
    let (executor, sleeper) = executor(three_attempts());
    let attempts = Counter::new();

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || {
        attempts.hit();
        client.greet("ada")
    }))
    .await;

    assert_eq!(reply.unwrap(), "hello, ada");
    assert_eq!(script.invocations.get(), 3);
    assert_eq!(attempts.get(), 3);
    assert_eq!(timeline.key, PolicyKey::parse(KEY), "the policy was found by the method's key");
    assert_eq!(reasons(&timeline), ["grpc_Unavailable", "grpc_Unavailable", "success"]);
    assert_eq!(timeline.attempts[0].outcome.attributes.get("grpc_code"), Some("Unavailable"));
    assert_eq!(sleeper.sleeps(), [ms(10), ms(20)]);
}

// V90: InvalidArgument → one invocation; the caller gets the server's
// status, code and message intact.
#[tokio::test]
async fn v90_invalid_argument_is_returned_at_once_with_its_code() {
    let script = Script::failing([Status::invalid_argument("name must not be empty")]);
    let client = greeter(&script).await;
    let (executor, sleeper) = executor(three_attempts());

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || client.greet(""))).await;

    let status = reply.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(status.message(), "name must not be empty");
    assert_eq!(script.invocations.get(), 1);
    assert_eq!(reasons(&timeline), ["grpc_InvalidArgument"]);
    assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::NonRetryable);
    assert!(sleeper.sleeps().is_empty());
}

// V91 (adapted): a call the server reports as cancelled is not retried.
#[tokio::test]
async fn v91_a_cancelled_call_aborts() {
    let script = Script::failing([Status::cancelled("client went away")]);
    let client = greeter(&script).await;
    let (executor, _) = executor(three_attempts());

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || client.greet("ada"))).await;

    assert_eq!(reply.unwrap_err().code(), Code::Cancelled);
    assert_eq!(script.invocations.get(), 1);
    assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::Abort);
    assert_eq!(reasons(&timeline), ["context_canceled"]);
}

// Every retryable code of the table, over the wire.
#[tokio::test]
async fn resource_exhausted_aborted_and_deadline_exceeded_are_retried() {
    let script = Script::failing([
        Status::resource_exhausted("quota"),
        Status::aborted("conflict"),
        Status::deadline_exceeded("slow backend"),
    ]);
    let client = greeter(&script).await;
    let (executor, _) = executor(Policy::builder(KEY).max_attempts(4).build());

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || client.greet("ada"))).await;

    assert_eq!(reply.unwrap(), "hello, ada");
    assert_eq!(script.invocations.get(), 4);
    assert_eq!(reasons(&timeline), ["grpc_ResourceExhausted", "grpc_Aborted", "context_deadline_exceeded", "success"]);
}

// Attempts run out on a server that stays down: the last status is returned.
#[tokio::test]
async fn the_last_status_is_returned_when_attempts_run_out() {
    let script = Script::failing((1..=5).map(|n| Status::unavailable(format!("down {n}"))));
    let client = greeter(&script).await;
    let (executor, _) = executor(three_attempts());

    let reply = executor.call(method_key(SAY_HELLO), || client.greet("ada")).await;

    let status = reply.unwrap_err();
    assert_eq!((status.code(), status.message()), (Code::Unavailable, "down 3"));
    assert_eq!(script.invocations.get(), 3);
}

// ---------------------------------------------------------------------------
// Pushback (`grpc-retry-pushback-ms`).

// The server asks for 250 ms: the next backoff is 250 ms instead of the
// policy's 10 ms, and the timeline says so.
#[tokio::test]
async fn pushback_replaces_the_backoff() {
    let script = Script::failing([pushback(Code::Unavailable, "250")]);
    let client = greeter(&script).await;
    let (executor, sleeper) = executor(three_attempts());

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || client.greet("ada"))).await;

    assert_eq!(reply.unwrap(), "hello, ada");
    assert_eq!(script.invocations.get(), 2);
    assert_eq!(timeline.attempts[0].outcome.backoff, Some(ms(250)));
    assert_eq!(timeline.attempts[1].backoff, ms(250));
    assert_eq!(sleeper.sleeps(), [ms(250)]);
}

// A negative pushback is the server asking not to retry.
#[tokio::test]
async fn negative_pushback_stops_retries() {
    let script = Script::failing([pushback(Code::Unavailable, "-1")]);
    let client = greeter(&script).await;
    let (executor, sleeper) = executor(three_attempts());

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || client.greet("ada"))).await;

    assert_eq!(reply.unwrap_err().code(), Code::Unavailable);
    assert_eq!(script.invocations.get(), 1);
    assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::NonRetryable);
    assert_eq!(reasons(&timeline), ["grpc_pushback_stop"]);
    assert!(sleeper.sleeps().is_empty());
}

// tonic's own client timeout surfaces as `Cancelled` with the timer's error
// as its source: a deadline, retried like `DeadlineExceeded`. The server
// never answers the first request, so only the retry's round trip has to
// beat the generous timeout.
#[tokio::test]
async fn tonics_client_timeout_is_a_retryable_deadline() {
    let script = Script::new([Reply::Hang]);
    let addr = serve(&script);
    let endpoint = Endpoint::from_shared(format!("http://{addr}")).unwrap().timeout(ms(500));
    let client = GreeterClient::connect_to(endpoint).await;
    let (executor, _) = executor(three_attempts());

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || client.greet("ada"))).await;

    assert_eq!(reply.unwrap(), "hello, ada");
    assert_eq!(script.invocations.get(), 2);
    assert_eq!(reasons(&timeline), ["context_deadline_exceeded", "success"]);
    assert_eq!(timeline.attempts[0].outcome.attributes.get("grpc_code"), Some("Canceled"));
}

// ---------------------------------------------------------------------------
// Keys, classifiers and error types.

// `call_method` keys the call by its path; the policy declared for
// `demo.Greeter.SayHello` decides the attempts.
#[tokio::test]
async fn call_method_runs_under_the_methods_policy() {
    let script = Script::failing((0..10).map(|_| Status::unavailable("down")));
    let client = greeter(&script).await;
    let (executor, _) = executor(Policy::builder(KEY).max_attempts(5).build());

    let (reply, timeline) = recourse::capture(call_method(&executor, SAY_HELLO, || client.greet("ada"))).await;

    assert_eq!(reply.unwrap_err().code(), Code::Unavailable);
    assert_eq!(script.invocations.get(), 5);
    assert_eq!(timeline.key.to_string(), KEY);
}

fn wrapped(client: &GreeterClient) -> impl Future<Output = Result<String, BoxError>> + use<> {
    let call = client.greet("ada");
    async move { call.await.map_err(|status| BoxError::from(wrap("greeting ada", status))) }
}

// A status wrapped in another error: the `grpc` classifier looks through
// the source chain, so InvalidArgument still stops the call.
#[tokio::test]
async fn the_grpc_classifier_finds_a_wrapped_status() {
    let script = Script::failing((0..3).map(|_| Status::invalid_argument("bad name")));
    let client = greeter(&script).await;
    let (executor, _) = executor(Policy::builder(KEY).max_attempts(3).classifier("grpc").build());

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || wrapped(&client))).await;

    let error = reply.unwrap_err();
    let status = support::find_in_chain::<Status>(&*error).expect("the status is in the chain");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(script.invocations.get(), 1);
    assert_eq!(reasons(&timeline), ["grpc_InvalidArgument"]);
}

// Without the `grpc` classifier the default (`auto`) does not know the
// wrapped status and retries it; `classify_wrapped::<Status>()` or
// `default_classifier(GrpcClassifier)` teach it.
#[tokio::test]
async fn a_wrapped_status_needs_the_grpc_classifier_or_classify_wrapped() {
    let script = Script::failing((0..9).map(|_| Status::invalid_argument("bad name")));
    let client = greeter(&script).await;

    let (auto, _) = executor(three_attempts());
    let result = auto.call(method_key(SAY_HELLO), || wrapped(&client)).await;
    assert!(result.is_err());
    assert_eq!(script.invocations.get(), 3, "auto retries an error it does not understand");

    for builder in
        [Executor::builder().classify_wrapped::<Status>(), Executor::builder().default_classifier(GrpcClassifier)]
    {
        let before = script.invocations.get();
        let executor = builder.policy(three_attempts()).sleeper(RecordingSleeper::new()).build();
        let (result, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || wrapped(&client))).await;
        assert!(result.is_err());
        assert_eq!(script.invocations.get() - before, 1);
        assert_eq!(reasons(&timeline), ["grpc_InvalidArgument"]);
    }
}

/// A user's service error: the status keeps its own outcome through
/// `#[classify(transparent)]`.
#[derive(Debug, thiserror::Error, recourse::Classifier)]
enum GreeterError {
    #[error(transparent)]
    #[classify(transparent)]
    Grpc(#[from] Status),
    #[error("empty greeting")]
    #[classify(non_retryable)]
    Empty,
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

#[tokio::test]
async fn a_service_error_enum_keeps_the_status_outcome() {
    let script = Script::failing([Status::unavailable("warming up"), Status::not_found("no such greeter")]);
    let client = greeter(&script).await;
    let (executor, _) = executor(three_attempts());

    let (reply, timeline) = recourse::capture(executor.call(method_key(SAY_HELLO), || {
        let call = client.greet("ada");
        async move {
            let message = call.await?;
            if message.is_empty() { Err(GreeterError::Empty) } else { Ok(message) }
        }
    }))
    .await;

    assert!(matches!(reply, Err(GreeterError::Grpc(status)) if status.code() == Code::NotFound));
    assert_eq!(script.invocations.get(), 2);
    assert_eq!(reasons(&timeline), ["grpc_Unavailable", "grpc_NotFound"]);
}

/// `Result<T, tonic::Status>` is a `#[recourse]` function's error type as
/// it is (`recourse::Error` converts into a status). `users.Get` is a
/// catalog key of this crate: three attempts.
#[recourse(policy = "users.Get", executor = executor)]
async fn get_user(executor: &Executor, client: &GreeterClient, name: &str) -> Result<String, Status> {
    client.greet(name).await
}

#[tokio::test]
async fn a_recourse_function_returns_tonic_status() {
    let script = Script::failing([Status::unavailable("warming up")]);
    let client = greeter(&script).await;
    let executor = Executor::builder().sleeper(RecordingSleeper::new()).build();

    let (reply, timeline) = recourse::capture(get_user(&executor, &client, "ada")).await;

    assert_eq!(reply.unwrap(), "hello, ada");
    assert_eq!(script.invocations.get(), 2);
    assert_eq!(reasons(&timeline), ["grpc_Unavailable", "success"]);
}

/// With the `tonic` feature on, the macro knows the `grpc` classifier.
#[recourse(policy = "users.Get", classifier = "grpc", executor = executor)]
async fn get_user_wrapped(executor: &Executor, client: &GreeterClient) -> Result<String, BoxError> {
    wrapped(client).await
}

#[tokio::test]
async fn a_recourse_function_names_the_grpc_classifier() {
    let script = Script::failing((0..3).map(|_| Status::invalid_argument("bad name")));
    let client = greeter(&script).await;
    let executor = Executor::builder().sleeper(RecordingSleeper::new()).build();

    let (reply, timeline) = recourse::capture(get_user_wrapped(&executor, &client)).await;

    assert!(reply.is_err());
    assert_eq!(script.invocations.get(), 1, "`auto` would have retried the wrapped status");
    assert_eq!(reasons(&timeline), ["grpc_InvalidArgument"]);
}

// When recourse itself ends the call, the caller gets a status too: here
// the last attempt's deadline passed, so `DeadlineExceeded`, with the
// `recourse::Error` as its source.
#[tokio::test]
async fn recourse_errors_reach_the_caller_as_statuses() {
    let script = Script::default();
    let client = greeter(&script).await;
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(2).timeout_per_attempt(ms(10)).build())
        .sleeper(RecordingSleeper::new())
        .build();

    let reply: Result<String, Status> = executor
        .call(method_key(SAY_HELLO), || {
            let call = client.greet("ada");
            async move {
                // An attempt that never answers: its per-attempt deadline ends it.
                std::future::pending::<()>().await;
                call.await
            }
        })
        .await;

    let status = reply.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded);
    let source = std::error::Error::source(&status).and_then(|e| e.downcast_ref::<recourse::Error>());
    assert!(matches!(source, Some(recourse::Error::AttemptTimeout { .. })), "{status:?}");
    assert_eq!(script.invocations.get(), 0);
}

// ---------------------------------------------------------------------------
// The channel itself retried: `RetryChannel` under a generated-style client.

#[cfg(feature = "tower")]
mod retry_channel {
    use recourse::tonic::RetryChannel;

    use super::*;

    /// The client as tonic-build generates it, over a retrying channel.
    struct RetryingClient(tonic::client::Grpc<RetryChannel<Channel>>);

    impl RetryingClient {
        async fn connect(addr: SocketAddr, executor: Executor) -> Self {
            let channel = Endpoint::from_shared(format!("http://{addr}")).unwrap().connect().await.expect("connect");
            Self(tonic::client::Grpc::new(RetryChannel::with_executor(channel, executor)))
        }

        async fn say_hello(&mut self, name: &str) -> Result<String, Status> {
            self.0.ready().await.map_err(|e| Status::unknown(format!("service was not ready: {e}")))?;
            let request = tonic::Request::new(HelloRequest { name: name.to_owned() });
            let path = PathAndQuery::from_static(SAY_HELLO);
            let reply: tonic::Response<HelloReply> = self.0.unary(request, path, ProstCodec::default()).await?;
            Ok(reply.into_inner().message)
        }
    }

    #[tokio::test]
    async fn unavailable_twice_then_success_through_the_channel() {
        let script = Script::failing([Status::unavailable("warming up"), Status::unavailable("warming up")]);
        let (executor, sleeper) = executor(three_attempts());
        let mut client = RetryingClient::connect(serve(&script), executor).await;
        let (reply, timeline) = recourse::capture(client.say_hello("ada")).await;
        assert_eq!(reply.unwrap(), "hello, ada");
        assert_eq!(script.invocations.get(), 3, "the same request body was sent three times");
        assert_eq!(reasons(&timeline), ["grpc_Unavailable", "grpc_Unavailable", "success"]);
        assert_eq!(timeline.key.to_string(), KEY, "the method path is the key");
        assert_eq!(sleeper.sleeps(), [ms(10), ms(20)]);
    }

    #[tokio::test]
    async fn invalid_argument_comes_back_at_once_with_its_status() {
        let script = Script::failing([Status::invalid_argument("no name")]);
        let (executor, sleeper) = executor(three_attempts());
        let mut client = RetryingClient::connect(serve(&script), executor).await;
        let (reply, timeline) = recourse::capture(client.say_hello("")).await;
        let status = reply.unwrap_err();
        assert_eq!((status.code(), status.message()), (Code::InvalidArgument, "no name"));
        assert_eq!(script.invocations.get(), 1);
        assert_eq!(reasons(&timeline), ["grpc_InvalidArgument"]);
        assert!(sleeper.sleeps().is_empty());
    }

    #[tokio::test]
    async fn pushback_is_honoured_through_the_channel() {
        let script = Script::failing([pushback(Code::Unavailable, "250")]);
        let (executor, sleeper) = executor(three_attempts());
        let mut client = RetryingClient::connect(serve(&script), executor).await;
        assert_eq!(client.say_hello("ada").await.unwrap(), "hello, ada");
        assert_eq!(sleeper.sleeps(), [ms(250)]);
    }

    #[tokio::test]
    async fn when_attempts_run_out_the_client_gets_the_last_status() {
        let script = Script::failing([
            Status::unavailable("one"),
            Status::unavailable("two"),
            Status::resource_exhausted("three"),
        ]);
        let (executor, _) = executor(three_attempts());
        let mut client = RetryingClient::connect(serve(&script), executor).await;
        let status = client.say_hello("ada").await.unwrap_err();
        assert_eq!((status.code(), status.message()), (Code::ResourceExhausted, "three"));
        assert_eq!(script.invocations.get(), 3);
    }
}

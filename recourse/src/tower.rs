//! recourse as a tower middleware (feature `tower`): [`RecourseLayer`]
//! wraps a [`tower_service::Service`] and runs every request as one
//! [`Executor::call`] under a policy key.
//!
//! Everything the policy says applies to the wrapped service as it does to
//! a `#[recourse]` function: attempts, backoff, per-attempt and overall
//! deadlines, budgets, hedging, the circuit breaker, observers and
//! [`capture`](crate::capture)d timelines. The layer only turns a tower
//! request into attempts, and an attempt's result into what the engine
//! classifies.
//!
//! ```
//! use recourse::policy::Policy;
//! use recourse::tower::RecourseLayer;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let executor = recourse::Executor::builder()
//!     .policy(Policy::builder("inventory.Stock").max_attempts(3).build())
//!     .build();
//!
//! let calls = Arc::new(AtomicU32::new(0));
//! let inventory = service_fn({
//!     let calls = Arc::clone(&calls);
//!     move |sku: u32| {
//!         let call = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if call < 2 {
//!                 Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
//!             } else {
//!                 Ok(sku * 10)
//!             }
//!         }
//!     }
//! });
//!
//! let mut stock = RecourseLayer::new("inventory.Stock").executor(executor).layer(inventory);
//! let units = stock.ready().await.unwrap().call(7).await.unwrap();
//! assert_eq!(units, 70);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! # }
//! ```
//!
//! # What is retried, and what the caller gets
//!
//! * An `Err` from the service, out of `call` or out of `poll_ready`, is
//!   the attempt's error. The policy's classifier decides, else the
//!   [`ResponseClassifier`]'s [`classify_error`](ResponseClassifier::classify_error),
//!   else the executor's default classifier, which looks through the
//!   error's `source()` chain (an `io::Error` inside a client's error is
//!   still an `io::Error`). When the call ends on it, the caller gets that
//!   error, boxed as tower's middleware box theirs: downcast the
//!   [`BoxError`] to the service's error type.
//! * An `Ok` response is a success unless the layer's
//!   [`ResponseClassifier`] calls it a failure. The default,
//!   [`OkIsSuccess`], never does; [`HttpResponses`] (features `tower` and
//!   `http`) applies the rules of [`recourse::http`](crate::http): an
//!   HTTP client answers a 503 with `Ok(response)`, and that response must
//!   be retried. When the call ends on a failed response (not retryable,
//!   or attempts ran out), the caller gets **that response**, as
//!   `Ok(response)` and with its body untouched: tower users expect the
//!   503, not an error. A failed response that is retried instead is
//!   handed to [`discard`](ResponseClassifier::discard) before the next
//!   attempt starts (an HTTP body is drained, so its connection goes back
//!   to the pool).
//! * When recourse itself ends the call (budget denied, circuit open,
//!   overall deadline), the caller gets a [`BoxError`] holding the
//!   [`recourse::Error`](crate::Error).
//!
//! # Readiness
//!
//! The layer honours `poll_ready`: [`RecourseService::poll_ready`] polls
//! the inner service, so its backpressure reaches the caller, and the first
//! attempt runs on the service that reported ready. Every later attempt
//! (retry or hedge) runs on its own clone of the inner service and waits
//! for that clone's `poll_ready` before calling it; the wait counts against
//! the attempt's deadline. A readiness error is the attempt's error, like
//! an error from `call`, and is classified and retried the same way (a
//! service that connects in `poll_ready` reports a refused connection
//! there).
//!
//! # Keys
//!
//! [`RecourseLayer::new`] runs every request under one key;
//! [`RecourseLayer::with_key_fn`] computes it per request (from the path,
//! a header, the gRPC method). Keys are low-cardinality names, not URLs:
//! a key built from a `&'static str` or a `recourse::key!` costs nothing
//! per request, one built from a `String` costs that string.
//!
//! # Costs
//!
//! Per request, on the success path: one clone of the inner service (the
//! ready one goes into the call, as tower's guidance on cloning services
//! asks), one clone of the request (kept for the attempts after the
//! first), and one heap allocation, the boxed [`ResponseFuture`]. The box
//! is the only way to name the engine's future in `Service::Future` on
//! stable Rust (its type is an `impl Future`); tower's own `Buffer` and
//! `BoxService` make the same trade. A failed attempt costs what its error
//! needs: the service's error boxed and shared with its classification, a
//! failed response's [`HttpError`](crate::http::HttpError).
//!
//! # Requests that are not `Clone`: tonic
//!
//! Every attempt sends its own copy of the request, so the request type must
//! be `Clone`. A tonic `Channel` is a `Service<http::Request<tonic::body::Body>>`,
//! and that body is a stream, not `Clone` (tower issue #790). With the
//! `tonic` feature too, `recourse::tonic::RetryChannel` wraps a channel:
//! it buffers each unary request's body outside this layer, turns it back
//! into a tonic body for each attempt, keys calls by their method path and
//! classifies responses by `grpc-status` (`recourse::tonic::GrpcResponses`).
//! Leave [`HttpResponses`] out of a gRPC stack: every gRPC call is a
//! `POST`, so it would retry none of them.
// Without `http`, the links to its items have nothing to point at.
#![cfg_attr(not(feature = "http"), allow(rustdoc::broken_intra_doc_links))]

use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};

use tower_layer::Layer;
use tower_service::Service;

use crate::classify::{Classify, Outcome};
use crate::executor::{CallKey, Executor};

/// A boxed error, as tower's middleware returns them (the same type as
/// `tower::BoxError`).
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// How [`RecourseService`] reads a request's key: implemented by
/// [`FixedKey`] and [`KeyFn`].
///
/// ```
/// use recourse::tower::{FixedKey, RequestKey};
///
/// let key = FixedKey::new("users.Get");
/// assert!(matches!(RequestKey::<u32>::key_for(&key, &7), recourse::CallKey::Key(_)));
/// ```
pub trait RequestKey<Req> {
    /// The key to run `request` under.
    fn key_for(&self, request: &Req) -> CallKey;
}

/// One key for every request (see [`RecourseLayer::new`]).
///
/// ```
/// use recourse::tower::FixedKey;
///
/// let key = FixedKey::new("users.Get");
/// assert!(format!("{key:?}").contains("Get"));
/// ```
#[derive(Debug, Clone)]
pub struct FixedKey(CallKey);

impl FixedKey {
    /// Runs every request under `key`.
    pub fn new(key: impl Into<CallKey>) -> Self {
        Self(key.into())
    }
}

impl<Req> RequestKey<Req> for FixedKey {
    #[inline]
    fn key_for(&self, _request: &Req) -> CallKey {
        self.0.clone()
    }
}

/// A key computed from each request (see [`RecourseLayer::with_key_fn`]).
///
/// ```
/// use recourse::tower::{KeyFn, RequestKey};
///
/// let key = KeyFn::new(|id: &u64| if *id == 0 { "users.Root" } else { "users.Get" });
/// assert!(matches!(key.key_for(&0), recourse::CallKey::Key(k) if k.name() == "Root"));
/// ```
#[derive(Clone)]
pub struct KeyFn<F>(F);

impl<F> KeyFn<F> {
    /// Runs each request under `key(&request)`.
    pub fn new(key: F) -> Self {
        Self(key)
    }
}

impl<F> fmt::Debug for KeyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyFn")
    }
}

impl<Req, F, K> RequestKey<Req> for KeyFn<F>
where
    F: Fn(&Req) -> K,
    K: Into<CallKey>,
{
    #[inline]
    fn key_for(&self, request: &Req) -> CallKey {
        (self.0)(request).into()
    }
}

/// Decides which `Ok` responses are failures, and what a failure means.
///
/// The engine classifies errors; a response that is a failure reaches it
/// as [`Failure`](Self::Failure), an error describing the response (a
/// policy's named classifier finds it in the error's `source()` chain,
/// through [`Classify::as_error`]). The layer keeps the response itself,
/// and hands it back to the caller if the call ends on it.
///
/// ```
/// use recourse::classify::{Classify, Outcome};
/// use recourse::tower::ResponseClassifier;
///
/// /// A cache answer that says "try again".
/// #[derive(Debug, PartialEq)]
/// enum Lookup { Hit(String), Busy }
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("cache busy")]
/// struct Busy;
///
/// impl Classify for Busy {
///     fn classify(&self) -> Option<Outcome> {
///         Some(Outcome::retryable().with_reason("cache_busy"))
///     }
///     fn as_error(&self) -> Option<&(dyn std::error::Error + 'static)> {
///         Some(self)
///     }
/// }
///
/// #[derive(Clone)]
/// struct BusyIsFailure;
///
/// impl ResponseClassifier<String, Lookup> for BusyIsFailure {
///     type Context = ();
///     type Failure = Busy;
///     fn context(&self, _request: &String) {}
///     fn classify_response(&self, _: &(), response: &Lookup) -> Option<Busy> {
///         (*response == Lookup::Busy).then_some(Busy)
///     }
/// }
/// # assert!(BusyIsFailure.classify_response(&(), &Lookup::Busy).is_some());
/// # assert!(BusyIsFailure.classify_response(&(), &Lookup::Hit(String::new())).is_none());
/// ```
pub trait ResponseClassifier<Req, Resp> {
    /// What classification needs from the request (an HTTP method, say),
    /// taken once per call, before the first attempt sends it.
    type Context: Send + Sync + 'static;
    /// Why a response or an error failed, as the engine classifies it.
    type Failure: Classify + Send + 'static;

    /// Takes the [`Context`](Self::Context) from the request.
    fn context(&self, request: &Req) -> Self::Context;

    /// `None` for a success, else why `response` is a failure.
    fn classify_response(&self, context: &Self::Context, response: &Resp) -> Option<Self::Failure>;

    /// Why an error from the service (no response) failed, when the
    /// protocol has rules for it; `None` (the default) lets the policy's or
    /// the executor's classifier read the error as it is. `error` is a
    /// cheap handle to keep in the failure's `source()` chain.
    fn classify_error(&self, context: &Self::Context, error: &ServiceError) -> Option<Self::Failure> {
        let _ = (context, error);
        None
    }

    /// Disposes of a failed response that is being retried. The default
    /// drops it.
    fn discard(&self, response: Resp) -> impl Future<Output = ()> + Send {
        drop(response);
        std::future::ready(())
    }
}

/// Every `Ok` response is a success: only the service's errors are
/// retried. The default [`ResponseClassifier`].
///
/// ```
/// use recourse::tower::{OkIsSuccess, ResponseClassifier};
///
/// assert!(ResponseClassifier::<(), u16>::classify_response(&OkIsSuccess, &(), &503).is_none());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct OkIsSuccess;

impl<Req, Resp> ResponseClassifier<Req, Resp> for OkIsSuccess {
    type Context = ();
    type Failure = std::convert::Infallible;

    #[inline]
    fn context(&self, _request: &Req) {}

    #[inline]
    fn classify_response(&self, _context: &(), _response: &Resp) -> Option<std::convert::Infallible> {
        None
    }
}

/// HTTP responses classified by the rules of [`recourse::http`](crate::http)
/// (features `tower` and `http`), for `http::Request` / `http::Response`
/// services such as a hyper client.
///
/// A status outside 2xx is a failure, described by an
/// [`HttpError`](crate::http::HttpError) with the request's method, the
/// status, the headers and the `Retry-After`: 5xx, 408 and 429 are retried
/// for idempotent methods, the `Retry-After` replacing the backoff; a
/// non-idempotent method is never retried (`http_non_idempotent`); any
/// other status is final (`http_non_retryable_status`). An error from the
/// service (no response) is an `HttpError` transport error of the
/// request's method: retried for idempotent methods
/// (`http_transport_error`), not for others; the service's own error stays
/// in its `source()` chain. A policy naming the `http` classifier (for
/// instance one registered with extra statuses) finds that `HttpError`.
///
/// A retried response's body is drained (up to
/// [`DRAIN_LIMIT`](crate::http::DRAIN_LIMIT) bytes) before the next attempt,
/// so the connection is reused; the response the caller gets back is never
/// drained.
///
/// ```
/// use recourse::policy::Policy;
/// use recourse::tower::{HttpResponses, RecourseLayer};
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU32, Ordering};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let executor = recourse::Executor::builder()
///     .policy(Policy::builder("pages.Get").max_attempts(3).build())
///     .build();
/// let calls = Arc::new(AtomicU32::new(0));
/// let server = service_fn({
///     let calls = Arc::clone(&calls);
///     move |_: http::Request<String>| {
///         let status = if calls.fetch_add(1, Ordering::SeqCst) == 0 { 503 } else { 200 };
///         async move { http::Response::builder().status(status).body(String::from("hi")) }
///     }
/// });
///
/// let client = RecourseLayer::new("pages.Get")
///     .classify_responses(HttpResponses::new())
///     .executor(executor)
///     .layer(server);
/// let response = client.oneshot(http::Request::new(String::new())).await.unwrap();
/// assert_eq!(response.status(), 200);
/// assert_eq!(calls.load(Ordering::SeqCst), 2);
/// # }
/// ```
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct HttpResponses;

#[cfg(feature = "http")]
impl HttpResponses {
    /// The HTTP rules of [`recourse::http`](crate::http).
    ///
    /// ```
    /// let classifier = recourse::tower::HttpResponses::new();
    /// # let _ = classifier;
    /// ```
    pub const fn new() -> Self {
        Self
    }
}

#[cfg(feature = "http")]
impl<ReqBody, B> ResponseClassifier<::http::Request<ReqBody>, ::http::Response<B>> for HttpResponses
where
    B: http_body::Body + Send + 'static,
    B::Data: Send,
{
    type Context = ::http::Method;
    type Failure = crate::http::HttpError;

    fn context(&self, request: &::http::Request<ReqBody>) -> ::http::Method {
        request.method().clone()
    }

    fn classify_response(&self, method: &::http::Method, response: &::http::Response<B>) -> Option<Self::Failure> {
        let status = response.status();
        (!status.is_success())
            .then(|| crate::http::HttpError::from_status(method.clone(), status, response.headers().clone()))
    }

    fn classify_error(&self, method: &::http::Method, error: &ServiceError) -> Option<Self::Failure> {
        Some(crate::http::HttpError::transport(Some(method.clone()), error.clone()))
    }

    fn discard(&self, response: ::http::Response<B>) -> impl Future<Output = ()> + Send {
        crate::http::HttpResponse::drain(response, crate::http::DRAIN_LIMIT)
    }
}

/// An error from the inner service (out of `call` or `poll_ready`),
/// shared between the layer, which returns it to the caller, and a
/// [`ResponseClassifier::classify_error`] failure, which keeps it in its
/// `source()` chain.
///
/// It displays as the service's error, and its `source()` is that error,
/// so classifiers that walk the chain reach the service's error type.
///
/// ```
/// use recourse::tower::ServiceError;
///
/// let error = ServiceError::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
/// assert!(error.get().downcast_ref::<std::io::Error>().is_some());
/// assert_eq!(error.to_string(), error.get().to_string());
/// ```
#[derive(Clone)]
pub struct ServiceError(Arc<BoxError>);

impl ServiceError {
    /// Shares `error`.
    pub fn new(error: impl Into<BoxError>) -> Self {
        Self(Arc::new(error.into()))
    }

    /// The service's error.
    pub fn get(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &**self.0
    }

    /// The service's error back, when this is the last handle to it (else
    /// this handle, boxed, which still shows it).
    fn into_inner(self) -> BoxError {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| Box::new(Self(shared)))
    }
}

impl fmt::Debug for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.get(), f)
    }
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.get(), f)
    }
}

impl StdError for ServiceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self.get())
    }
}

/// Where the layer's calls run: the process-wide executor, looked up per
/// call so that one [`install`](crate::install)ed after the layer was
/// built is still the one used, or a given one.
#[derive(Debug, Clone)]
enum Runner {
    Global,
    Given(Executor),
}

impl Runner {
    #[inline]
    fn get(&self) -> &Executor {
        match self {
            Self::Global => crate::global(),
            Self::Given(executor) => executor,
        }
    }
}

/// A [`tower_layer::Layer`] that runs each request through recourse: see
/// the [module documentation](self).
///
/// `K` reads each request's key ([`FixedKey`] or [`KeyFn`]); `C` tells
/// failed responses from good ones ([`OkIsSuccess`] unless
/// [`classify_responses`](Self::classify_responses) says otherwise).
///
/// ```
/// use recourse::tower::RecourseLayer;
/// use tower::ServiceBuilder;
///
/// let service = ServiceBuilder::new()
///     .layer(RecourseLayer::new("search.Query"))
///     .service(tower::service_fn(|q: String| async move { Ok::<_, std::io::Error>(q.len()) }));
/// # let _ = service;
/// ```
#[derive(Debug, Clone)]
pub struct RecourseLayer<K = FixedKey, C = OkIsSuccess> {
    key: K,
    classifier: C,
    runner: Runner,
}

impl RecourseLayer {
    /// Runs every request under `key` (a string, a
    /// [`PolicyKey`](crate::PolicyKey), or a `recourse::key!`, whose checked
    /// call site resolves fastest), on [`recourse::global()`](crate::global)
    /// (looked up at each call, so a later [`install`](crate::install)
    /// counts).
    ///
    /// ```
    /// use recourse::tower::RecourseLayer;
    ///
    /// let layer = RecourseLayer::new("users.Get");
    /// let typed = RecourseLayer::new(recourse::policy::PolicyKey::new("users", "List"));
    /// # let _ = (layer, typed);
    /// ```
    pub fn new(key: impl Into<CallKey>) -> Self {
        Self { key: FixedKey::new(key), classifier: OkIsSuccess, runner: Runner::Global }
    }
}

impl<F> RecourseLayer<KeyFn<F>> {
    /// Runs each request under the key `key(&request)` returns: anything
    /// that converts into a [`CallKey`] (`&'static str`, `String`,
    /// [`PolicyKey`](crate::PolicyKey), a `recourse::key!`).
    ///
    /// ```
    /// use recourse::policy::PolicyKey;
    /// use recourse::tower::RecourseLayer;
    ///
    /// // `/users/get` runs under `users.get`.
    /// let layer = RecourseLayer::with_key_fn(|path: &String| {
    ///     let mut parts = path.trim_start_matches('/').splitn(2, '/');
    ///     let service = parts.next().unwrap_or_default().to_owned();
    ///     PolicyKey::new(service, parts.next().unwrap_or_default().to_owned())
    /// });
    /// # let _ = layer;
    /// ```
    pub fn with_key_fn(key: F) -> Self {
        Self { key: KeyFn::new(key), classifier: OkIsSuccess, runner: Runner::Global }
    }
}

impl<K, C> RecourseLayer<K, C> {
    /// Runs the calls on `executor` instead of the global one.
    ///
    /// ```
    /// use recourse::tower::RecourseLayer;
    ///
    /// let executor = recourse::Executor::builder().build();
    /// let layer = RecourseLayer::new("users.Get").executor(executor);
    /// # let _ = layer;
    /// ```
    pub fn executor(mut self, executor: Executor) -> Self {
        self.runner = Runner::Given(executor);
        self
    }

    /// Tells failed responses from good ones with `classifier`, such as
    /// [`HttpResponses`] for an HTTP client.
    ///
    /// ```
    /// use recourse::tower::{OkIsSuccess, RecourseLayer};
    ///
    /// let layer = RecourseLayer::new("users.Get").classify_responses(OkIsSuccess);
    /// # let _ = layer;
    /// ```
    pub fn classify_responses<C2>(self, classifier: C2) -> RecourseLayer<K, C2> {
        RecourseLayer { key: self.key, classifier, runner: self.runner }
    }
}

impl<S, K: Clone, C: Clone> Layer<S> for RecourseLayer<K, C> {
    type Service = RecourseService<S, K, C>;

    fn layer(&self, inner: S) -> Self::Service {
        RecourseService {
            inner,
            readiness: Readiness::Unknown,
            key: self.key.clone(),
            classifier: self.classifier.clone(),
            runner: self.runner.clone(),
        }
    }
}

/// What the inner service said to the last `poll_ready`, for the next
/// call's first attempt.
#[derive(Default)]
enum Readiness {
    /// Not polled since the last call (or not at all): the first attempt
    /// polls a clone itself.
    #[default]
    Unknown,
    Ready,
    /// Its readiness error, which becomes the first attempt's error.
    Failed(BoxError),
}

/// The service [`RecourseLayer`] makes: each request is one recourse call
/// whose attempts call the inner service.
///
/// ```
/// use recourse::tower::RecourseLayer;
/// use tower::{Layer, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let echo = tower::service_fn(|s: String| async move { Ok::<_, std::io::Error>(s) });
/// let service = RecourseLayer::new("echo.Say").layer(echo);
/// assert_eq!(service.oneshot("hello".to_owned()).await.unwrap(), "hello");
/// # }
/// ```
pub struct RecourseService<S, K = FixedKey, C = OkIsSuccess> {
    inner: S,
    readiness: Readiness,
    key: K,
    classifier: C,
    runner: Runner,
}

impl<S, K, C> RecourseService<S, K, C> {
    /// The wrapped service.
    ///
    /// ```
    /// use recourse::tower::RecourseLayer;
    /// use tower::Layer;
    ///
    /// let service = RecourseLayer::new("k").layer(7_u8);
    /// assert_eq!(*service.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, unwrapped.
    ///
    /// ```
    /// use recourse::tower::RecourseLayer;
    /// use tower::Layer;
    ///
    /// assert_eq!(RecourseLayer::new("k").layer(7_u8).into_inner(), 7);
    /// ```
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// A clone has not been polled ready: its first `call` without a
/// `poll_ready` polls the inner service's clone in the attempt.
impl<S: Clone, K: Clone, C: Clone> Clone for RecourseService<S, K, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            readiness: Readiness::Unknown,
            key: self.key.clone(),
            classifier: self.classifier.clone(),
            runner: self.runner.clone(),
        }
    }
}

impl<S, K: fmt::Debug, C: fmt::Debug> fmt::Debug for RecourseService<S, K, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecourseService")
            .field("key", &self.key)
            .field("classifier", &self.classifier)
            .field("executor", &self.runner)
            .finish_non_exhaustive()
    }
}

impl<S, Req, K, C> Service<Req> for RecourseService<S, K, C>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    Req: Clone + Send + 'static,
    K: RequestKey<Req>,
    C: ResponseClassifier<Req, S::Response> + Clone + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Response>;

    /// Polls the inner service. Never fails: a readiness error becomes the
    /// next call's first attempt's error, so the policy decides about it.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        if matches!(self.readiness, Readiness::Unknown) {
            self.readiness = match self.inner.poll_ready(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => Readiness::Ready,
                Poll::Ready(Err(error)) => Readiness::Failed(error.into()),
            };
        }
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let key = self.key.key_for(&request);
        // The ready service goes into the call, and this one keeps a fresh
        // clone, which has to be polled ready again.
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        let readiness = std::mem::take(&mut self.readiness);
        let call = run(service, Some(readiness), request, self.classifier.clone(), self.runner.clone(), key);
        ResponseFuture { inner: boxed(call) }
    }
}

/// The future of a [`RecourseService`] call: the inner service's response
/// or a [`BoxError`] (see [What is retried, and what the caller
/// gets](self#what-is-retried-and-what-the-caller-gets)).
///
/// ```
/// use recourse::tower::{RecourseLayer, ResponseFuture};
/// use tower::{Layer, Service, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let double = tower::service_fn(|n: u8| async move { Ok::<_, std::io::Error>(n * 2) });
/// let mut service = RecourseLayer::new("math.Double").layer(double);
/// let future: ResponseFuture<u8> = service.ready().await.unwrap().call(3);
/// assert_eq!(future.await.unwrap(), 6);
/// # }
/// ```
pub struct ResponseFuture<T> {
    inner: Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>,
}

impl<T> fmt::Debug for ResponseFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<T> Future for ResponseFuture<T> {
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

/// `value` in a fresh box, allocated first so that the value can be
/// written in place.
#[inline]
fn boxed<T>(value: T) -> Pin<Box<T>> {
    Box::into_pin(Box::write(Box::new_uninit(), value))
}

/// Failed responses the engine dropped, waiting to be discarded by the
/// next attempt (a drop cannot await a body drain).
type Graveyard<R> = Mutex<Vec<R>>;

/// An attempt's error as the engine sees it.
enum Failure<R, F> {
    /// The inner service failed (no response).
    Service { error: ServiceError, failure: Option<F> },
    /// The inner service answered with a failure.
    Response(FailedResponse<R, F>),
    /// recourse ended the call.
    Recourse(crate::Error),
}

/// A failed response, kept whole for the caller until the engine drops it
/// (a retry): then it goes to the graveyard to be discarded.
struct FailedResponse<R, F> {
    response: Option<R>,
    failure: F,
    graveyard: Arc<Graveyard<R>>,
}

impl<R, F> Drop for FailedResponse<R, F> {
    fn drop(&mut self) {
        if let Some(response) = self.response.take() {
            self.graveyard.lock().unwrap_or_else(PoisonError::into_inner).push(response);
        }
    }
}

impl<R, F> From<crate::Error> for Failure<R, F> {
    fn from(error: crate::Error) -> Self {
        Self::Recourse(error)
    }
}

impl<R, F: Classify> Classify for Failure<R, F> {
    fn classify(&self) -> Option<Outcome> {
        match self {
            Self::Service { failure: Some(failure), .. } | Self::Response(FailedResponse { failure, .. }) => {
                failure.classify()
            }
            Self::Service { failure: None, .. } => None,
            Self::Recourse(error) => Some(crate::__private::recourse_error_outcome(error)),
        }
    }

    fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Service { error, failure: Some(failure) } => failure.as_error().or(Some(error.get())),
            Self::Service { error, failure: None } => Some(error.get()),
            Self::Response(FailedResponse { failure, .. }) => failure.as_error(),
            Self::Recourse(error) => Some(error),
        }
    }
}

/// One request's call, from the service that goes into it.
///
/// A function returning an `async move` block rather than an `async fn`:
/// a block uses its captures in place, while an `async fn` copies its
/// parameters into its body at the first poll, and this future is boxed
/// on every request.
#[allow(clippy::manual_async_fn, reason = "see above")]
fn run<S, Req, C>(
    mut service: S,
    mut first: Option<Readiness>,
    mut request: Req,
    classifier: C,
    runner: Runner,
    key: CallKey,
) -> impl Future<Output = Result<S::Response, BoxError>> + Send + 'static
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Into<BoxError>,
    Req: Clone + Send + 'static,
    C: ResponseClassifier<Req, S::Response> + Send + Sync + 'static,
{
    async move {
        let context = classifier.context(&request);
        let graveyard = OnceLock::<Arc<Graveyard<S::Response>>>::new();
        // Mutable borrows: the closure lives across the engine's awaits, and
        // `&mut T` is `Send` where `&T` would need `T: Sync`.
        let (service, request, first) = (&mut service, &mut request, &mut first);
        let (classifier, context, graveyard) = (&classifier, &context, &graveyard);
        let result = runner
            .get()
            .call(key, move || {
                let start = match first.take() {
                    Some(Readiness::Ready) => Start::Called(service.call(request.clone())),
                    Some(Readiness::Failed(error)) => Start::Failed(error),
                    Some(Readiness::Unknown) | None => Start::Fresh(service.clone(), request.clone()),
                };
                attempt(start, classifier, context, graveyard)
            })
            .await;
        match result {
            Ok(response) => Ok(response),
            Err(Failure::Response(mut failed)) => {
                Ok(failed.response.take().expect("a failed response leaves its holder only here or when dropped"))
            }
            Err(Failure::Service { error, failure }) => {
                // Drops the classification's handle first, so the caller
                // gets the service's error itself.
                drop(failure);
                Err(error.into_inner())
            }
            Err(Failure::Recourse(error)) => Err(error.into()),
        }
    }
}

/// How an attempt reaches its response.
enum Start<S, Fut, Req> {
    /// The ready service was called.
    Called(Fut),
    /// The ready service's readiness error.
    Failed(BoxError),
    /// A clone, to poll ready and call.
    Fresh(S, Req),
}

/// One attempt: discard what earlier attempts left, reach a response,
/// classify it. (An `async move` block for the reason given at [`run`]:
/// the engine keeps this future inside the boxed one.)
#[allow(clippy::manual_async_fn, reason = "see above")]
fn attempt<'a, S, Req, C>(
    start: Start<S, S::Future, Req>,
    classifier: &'a C,
    context: &'a C::Context,
    graveyard: &'a OnceLock<Arc<Graveyard<S::Response>>>,
) -> impl Future<Output = Result<S::Response, Failure<S::Response, C::Failure>>> + 'a
where
    S: Service<Req> + 'a,
    S::Future: 'a,
    S::Error: Into<BoxError>,
    Req: 'a,
    C: ResponseClassifier<Req, S::Response>,
{
    async move {
        let sent = match start {
            Start::Called(future) => future.await.map_err(Into::into),
            Start::Failed(error) => Err(error),
            Start::Fresh(mut service, request) => {
                // Before sending: a drained connection can carry this attempt.
                if let Some(graveyard) = graveyard.get() {
                    let dead = std::mem::take(&mut *graveyard.lock().unwrap_or_else(PoisonError::into_inner));
                    for response in dead {
                        classifier.discard(response).await;
                    }
                }
                // Boxed before the next await: the service's error need not be `Send`.
                let ready: Result<(), BoxError> = poll_fn(|cx| service.poll_ready(cx)).await.map_err(Into::into);
                match ready {
                    Ok(()) => service.call(request).await.map_err(Into::into),
                    Err(error) => Err(error),
                }
            }
        };
        match sent {
            Ok(response) => match classifier.classify_response(context, &response) {
                None => Ok(response),
                Some(failure) => Err(Failure::Response(FailedResponse {
                    response: Some(response),
                    failure,
                    graveyard: Arc::clone(graveyard.get_or_init(Arc::default)),
                })),
            },
            Err(error) => {
                let error = ServiceError(Arc::new(error));
                let failure = classifier.classify_error(context, &error);
                Err(Failure::Service { error, failure })
            }
        }
    }
}

//! A tonic channel with retries (features `tonic` and `tower`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use ::http::{Request, Response};
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use tonic::Status;
use tower_layer::Layer;
use tower_service::Service;

use super::method_key;
use crate::Executor;
use crate::policy::PolicyKey;
use crate::tower::{BoxError, KeyFn, RecourseLayer, RecourseService, ResponseClassifier};

/// gRPC responses for [`RecourseLayer::classify_responses`]: a response
/// whose `grpc-status` header is not `OK` (a "trailers-only" answer, which
/// is how a server reports a failed unary call) is the failure of that
/// [`tonic::Status`], classified by [`status_outcome`](super::status_outcome).
///
/// A status sent in trailers, after a body, is not seen here: the response
/// is a success for the layer and the generated client reports the status.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcResponses;

impl<ReqBody, ResBody> ResponseClassifier<Request<ReqBody>, Response<ResBody>> for GrpcResponses {
    type Context = ();
    type Failure = Status;

    fn context(&self, _: &Request<ReqBody>) {}

    fn classify_response(&self, (): &(), response: &Response<ResBody>) -> Option<Status> {
        Status::from_header_map(response.headers()).filter(|status| status.code() != tonic::Code::Ok)
    }
}

type PathKey = fn(&Request<Bytes>) -> PolicyKey;

/// The policy key of a request: its method path (`/pkg.Service/Method` →
/// `pkg.Service.Method`, see [`method_key`]).
fn path_key(request: &Request<Bytes>) -> PolicyKey {
    method_key(request.uri().path())
}

/// A tonic `Channel` (or any gRPC service) whose unary calls are retried
/// under the policy of their method, `pkg.Service.Method`.
///
/// Each request's body is read into memory once, so every attempt sends
/// the same bytes; responses are classified with [`GrpcResponses`].
/// Streaming calls buffer until their request stream ends, so use it for
/// unary methods. Hand it to a generated client like the channel itself:
///
/// ```
/// use recourse::tonic::RetryChannel;
///
/// // With tonic's transport:
/// //     let channel = Channel::from_static("http://127.0.0.1:50051").connect().await?;
/// //     let client = GreeterClient::new(retrying(channel));
/// fn retrying<S>(channel: S) -> RetryChannel<S> {
///     RetryChannel::new(channel) // on `recourse::global()`
/// }
/// # let _ = retrying::<()>;
/// ```
pub struct RetryChannel<S> {
    inner: RecourseService<Bytes2Body<S>, KeyFn<PathKey>, GrpcResponses>,
}

impl<S> RetryChannel<S> {
    /// Retries `channel`'s calls on [`recourse::global()`](crate::global).
    pub fn new(channel: S) -> Self {
        Self { inner: Self::layer().layer(Bytes2Body(channel)) }
    }

    /// Retries `channel`'s calls on `executor`.
    pub fn with_executor(channel: S, executor: Executor) -> Self {
        Self { inner: Self::layer().executor(executor).layer(Bytes2Body(channel)) }
    }

    fn layer() -> RecourseLayer<KeyFn<PathKey>, GrpcResponses> {
        RecourseLayer::with_key_fn(path_key as PathKey).classify_responses(GrpcResponses)
    }
}

impl<S: Clone> Clone for RetryChannel<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone() }
    }
}

impl<S> fmt::Debug for RetryChannel<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryChannel").finish_non_exhaustive()
    }
}

impl<S> Service<Request<tonic::body::Body>> for RetryChannel<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
{
    type Response = Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<tonic::body::Body>) -> Self::Future {
        // The ready service answers this request; the clone waits for the
        // next `poll_ready` (tower's usual swap).
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.map_err(BoxError::from)?.to_bytes();
            ready.call(Request::from_parts(parts, body)).await
        })
    }
}

/// The channel seen from the layer: a buffered request becomes a tonic
/// body again for each attempt.
#[derive(Clone)]
pub(crate) struct Bytes2Body<S>(S);

impl<S> fmt::Debug for Bytes2Body<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bytes2Body")
    }
}

impl<S> Service<Request<Bytes>> for Bytes2Body<S>
where
    S: Service<Request<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Bytes>) -> S::Future {
        self.0.call(request.map(|bytes| tonic::body::Body::new(Full::new(bytes))))
    }
}

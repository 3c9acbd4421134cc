//! reqwest: every request of a client run under a policy key (feature
//! `reqwest`, on [`reqwest-middleware`](reqwest_middleware)).
//!
//! [`RecourseMiddleware`] runs each request as one recourse call: attempts,
//! backoff, deadlines, budgets, hedging and breakers come from the key's
//! policy, and responses are classified by the rules of
//! [`recourse::http`](crate::http) (a `503` to a `GET` is retried, one to a
//! `POST` is not; a `429`'s `Retry-After` is honoured).
//!
//! ```no_run
//! use recourse::reqwest::{Key, RecourseMiddleware, ResendCount};
//!
//! # async fn run() -> Result<(), reqwest_middleware::Error> {
//! let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
//!     .with(RecourseMiddleware::new("users.Get"))
//!     .build();
//! let response = client.get("http://127.0.0.1:8080/users/7").send().await?;
//! // Another key for one request:
//! let renamed = client
//!     .post("http://127.0.0.1:8080/users/7/name")
//!     .body("ada")
//!     .with_extension(Key::from("users.Rename"))
//!     .send()
//!     .await?;
//! println!("{} after {:?} resends", response.status(), response.extensions().get::<ResendCount>());
//! # Ok(()) }
//! ```
//!
//! What happens to a request:
//!
//! * Its body must be replayable: a streaming body is refused before
//!   anything is sent ([`BodyNotReplayable`]).
//! * Every attempt sends a fresh copy through the rest of the middleware
//!   stack.
//! * A failed response's body is read (up to [`BUFFER_LIMIT`]) so the
//!   connection goes back to the pool; when attempts run out the caller gets
//!   that last response, status and body intact, as `Ok`, like any
//!   response. A transport error comes back as `Err`.
//! * The response carries a [`ResendCount`] extension: how many requests
//!   were sent beyond the first (OpenTelemetry's `http.request.resend_count`).
//! * When recourse itself ends the call (budget denied, circuit open,
//!   deadline) the error is a `reqwest_middleware::Error::Middleware`
//!   holding the [`recourse::Error`](crate::Error).

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};

use ::http::{Extensions, Method};
use bytes::Bytes;
use reqwest::{Request, Response};
use reqwest_middleware::{Middleware, Next};

use crate::classify::{Classify, Outcome};
use crate::executor::CallKey;
use crate::http::Http;
use crate::{Executor, global};

/// How much of a failed response's body is kept, read whole so the
/// connection can be reused; a longer body is cut there (and its
/// connection closed).
pub const BUFFER_LIMIT: usize = 64 * 1024;

/// Runs every request of a `reqwest_middleware` client as one recourse call
/// under a policy key: the client's, or a request's own [`Key`].
#[derive(Debug, Clone)]
pub struct RecourseMiddleware {
    key: CallKey,
    executor: Option<Executor>,
    http: Http,
}

impl RecourseMiddleware {
    /// Requests run under `key` (a string, a `PolicyKey`, or a
    /// `recourse::key!`, checked at compile time) on the global executor.
    pub fn new(key: impl Into<CallKey>) -> Self {
        Self { key: key.into(), executor: None, http: Http::default() }
    }

    /// Runs requests on `executor` instead of [`recourse::global()`](global).
    pub fn executor(mut self, executor: Executor) -> Self {
        self.executor = Some(executor);
        self
    }

    /// Classifies responses with `http` (for instance with extra retryable
    /// statuses) instead of the default rules.
    pub fn classifier(mut self, http: Http) -> Self {
        self.http = http;
        self
    }
}

/// A request's own policy key, overriding the client's: put it in the
/// request's extensions with `RequestBuilder::with_extension`.
#[derive(Debug, Clone)]
pub struct Key(pub CallKey);

impl<K: Into<CallKey>> From<K> for Key {
    fn from(key: K) -> Self {
        Self(key.into())
    }
}

/// How many times a request was sent beyond the first (retries and hedges):
/// OpenTelemetry's `http.request.resend_count`. In the response's
/// extensions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResendCount(pub u32);

/// The request's body is a stream, which cannot be sent twice: the
/// request was refused before anything was sent.
#[derive(Debug, thiserror::Error)]
#[error("recourse: the request body is a stream and cannot be replayed; send a buffered body")]
pub struct BodyNotReplayable;

/// One attempt's failure, as the engine sees it.
enum Failure {
    /// A failure status; the response, its body read.
    Status {
        method: Method,
        response: ::http::Response<Bytes>,
        outcome: Outcome,
    },
    /// No response (or another middleware's error).
    Transport {
        method: Method,
        error: reqwest_middleware::Error,
        outcome: Outcome,
    },
    Recourse(crate::Error),
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { method, response, .. } => {
                f.debug_struct("Status").field("method", method).field("status", &response.status()).finish()
            }
            Self::Transport { method, error, .. } => {
                f.debug_struct("Transport").field("method", method).field("error", error).finish()
            }
            Self::Recourse(error) => f.debug_tuple("Recourse").field(error).finish(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { response, .. } => write!(f, "http status {}", response.status()),
            Self::Transport { error, .. } => fmt::Display::fmt(error, f),
            Self::Recourse(error) => fmt::Display::fmt(error, f),
        }
    }
}

impl StdError for Failure {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            Self::Status { .. } => None,
            Self::Transport { error, .. } => Some(error),
            Self::Recourse(error) => Some(error),
        }
    }
}

impl From<crate::Error> for Failure {
    fn from(error: crate::Error) -> Self {
        Self::Recourse(error)
    }
}

impl Classify for Failure {
    fn classify(&self) -> Option<Outcome> {
        Some(match self {
            Self::Status { outcome, .. } | Self::Transport { outcome, .. } => outcome.clone(),
            Self::Recourse(error) => crate::__private::recourse_error_outcome(error),
        })
    }

    fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self)
    }
}

impl RecourseMiddleware {
    /// One attempt: sends a copy of the request and sorts the answer.
    async fn attempt(
        &self,
        request: Request,
        mut extensions: Extensions,
        next: Next<'_>,
        sent: &AtomicU32,
    ) -> Result<Response, Failure> {
        let method = request.method().clone();
        let resends = sent.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "tracing")]
        if resends > 0 {
            // The attempt's span (`recourse::tracing`) is current here.
            tracing::Span::current().record("http.request.resend_count", i64::from(resends));
        }
        #[cfg(not(feature = "tracing"))]
        let _ = resends;
        let response = match next.run(request, &mut extensions).await {
            Ok(response) => response,
            Err(error) => {
                let outcome = self.http.exchange(Some(&method), None, None);
                return Err(Failure::Transport { method, error, outcome });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let wait = crate::http::retry_after(response.headers(), std::time::SystemTime::now());
        let outcome = self.http.exchange(Some(&method), Some(status), wait);
        Err(Failure::Status { response: buffered(response).await, method, outcome })
    }
}

/// The response with its body read (up to [`BUFFER_LIMIT`]), so its
/// connection is free and the caller can still read the body.
async fn buffered(mut response: Response) -> ::http::Response<Bytes> {
    let mut parts = ::http::Response::new(());
    *parts.status_mut() = response.status();
    *parts.version_mut() = response.version();
    *parts.headers_mut() = std::mem::take(response.headers_mut());
    *parts.extensions_mut() = std::mem::take(response.extensions_mut());
    let mut body = Vec::new();
    while body.len() < BUFFER_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    parts.map(|()| Bytes::from(body))
}

#[async_trait::async_trait]
impl Middleware for RecourseMiddleware {
    async fn handle(
        &self,
        request: Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<Response> {
        if request.try_clone().is_none() {
            return Err(reqwest_middleware::Error::middleware(BodyNotReplayable));
        }
        let key = extensions.get::<Key>().map_or_else(|| self.key.clone(), |key| key.0.clone());
        let executor = self.executor.as_ref().unwrap_or_else(|| global());
        let sent = AtomicU32::new(0);
        let result = executor
            .call(key, || {
                let request = request.try_clone().expect("checked replayable above");
                self.attempt(request, extensions.clone(), next.clone(), &sent)
            })
            .await;
        let resends = ResendCount(sent.load(Ordering::Relaxed).saturating_sub(1));
        let mut response = match result {
            Ok(response) => response,
            Err(Failure::Status { response, .. }) => Response::from(response),
            Err(Failure::Transport { error, .. }) => return Err(error),
            Err(Failure::Recourse(error)) => return Err(reqwest_middleware::Error::middleware(error)),
        };
        response.extensions_mut().insert(resends);
        Ok(response)
    }
}

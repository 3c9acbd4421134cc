//! A scripted HTTP server on 127.0.0.1 (axum), for the HTTP and tower
//! tests: it answers each request with the next scripted [`Reply`] (then
//! `200 done`) and records what it saw.

use std::collections::VecDeque;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode, Uri};

/// What the server answers to one request.
#[derive(Clone)]
pub(crate) struct Reply {
    status: u16,
    retry_after: Option<String>,
    body: &'static str,
    /// Send the body in two halves, the second a moment later, so that it
    /// is still in flight when the client reads the headers.
    trickle: bool,
    /// Answer only after this long (a slow primary).
    delay: Option<Duration>,
}

impl Reply {
    pub(crate) fn status(status: u16) -> Self {
        Reply { status, retry_after: None, body: "", trickle: false, delay: None }
    }

    pub(crate) fn ok(body: &'static str) -> Self {
        Reply { body, ..Reply::status(200) }
    }

    pub(crate) fn body(mut self, body: &'static str) -> Self {
        self.body = body;
        self
    }

    pub(crate) fn trickling(mut self, body: &'static str) -> Self {
        self.body = body;
        self.trickle = true;
        self
    }

    pub(crate) fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    pub(crate) fn after(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Bytes,
    /// The client's address: the same one means the same connection.
    pub(crate) peer: SocketAddr,
}

/// The server's script and what it saw.
#[derive(Clone, Default)]
pub(crate) struct Script {
    replies: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Handlers dropped before they answered: the client went away.
    abandoned: Arc<AtomicUsize>,
    abandoned_signal: Arc<tokio::sync::Notify>,
}

impl Script {
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn requests(&self) -> usize {
        self.seen().len()
    }

    pub(crate) fn requests_to(&self, path: &str) -> usize {
        self.seen().iter().filter(|seen| seen.path == path).count()
    }

    pub(crate) fn peers(&self) -> Vec<SocketAddr> {
        self.seen().iter().map(|seen| seen.peer).collect()
    }

    /// Waits until a handler was dropped before answering.
    pub(crate) async fn abandoned(&self) {
        while self.abandoned.load(Ordering::SeqCst) == 0 {
            self.abandoned_signal.notified().await;
        }
    }
}

/// Counts a handler dropped before it answered.
struct Abandoned(Option<Script>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(script) = self.0.take() {
            script.abandoned.fetch_add(1, Ordering::SeqCst);
            script.abandoned_signal.notify_one();
        }
    }
}

async fn handle(
    State(script): State<Script>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    body: Bytes,
) -> Response {
    let seen = Seen { method, path: uri.path().to_owned(), body, peer };
    script.seen.lock().unwrap_or_else(PoisonError::into_inner).push(seen);
    let reply = script.replies.lock().unwrap_or_else(PoisonError::into_inner).pop_front();
    let reply = reply.unwrap_or_else(|| Reply::ok("done"));
    if let Some(delay) = reply.delay {
        let mut guard = Abandoned(Some(script.clone()));
        tokio::time::sleep(delay).await;
        guard.0 = None;
    }
    let status = StatusCode::from_u16(reply.status).unwrap();
    let mut response = if reply.trickle {
        (status, axum::body::Body::new(Trickle::new(reply.body))).into_response()
    } else {
        (status, reply.body).into_response()
    };
    if let Some(value) = reply.retry_after {
        response.headers_mut().insert(http::header::RETRY_AFTER, value.parse().unwrap());
    }
    response
}

/// A body sent in two halves, the second after a pause.
struct Trickle {
    halves: VecDeque<Bytes>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Trickle {
    fn new(body: &'static str) -> Self {
        let (first, second) = body.split_at(body.len() / 2);
        Trickle { halves: VecDeque::from([Bytes::from(first), Bytes::from(second)]), pause: None }
    }
}

impl http_body::Body for Trickle {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Some(pause) = &mut self.pause {
            std::task::ready!(pause.as_mut().poll(cx));
        }
        self.pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(20))));
        Poll::Ready(self.halves.pop_front().map(|half| Ok(http_body::Frame::data(half))))
    }
}

/// Starts a server on 127.0.0.1 that answers with `replies`, in order;
/// returns its base URL (`http://127.0.0.1:<port>`).
pub(crate) async fn serve(replies: Vec<Reply>) -> (String, Script) {
    let script = Script::default();
    script.replies.lock().unwrap_or_else(PoisonError::into_inner).extend(replies);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().fallback(handle).with_state(script.clone());
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, script)
}

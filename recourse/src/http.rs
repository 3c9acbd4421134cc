//! HTTP: what a status code means for a retry, and the server's
//! `Retry-After` (feature `http`, on the [`http`] crate).
//!
//! A response is not an error, and classifiers only see errors, so the one
//! step between a client and recourse is [`check`]: it passes a success
//! through and turns anything else (a failure status, or a transport error)
//! into an [`HttpError`] that keeps the status, the headers and the
//! `Retry-After`. `HttpError` classifies itself, so a `#[recourse]` function
//! returning it needs nothing else:
//!
//! ```ignore
//! use recourse::http::{HttpError, check};
//!
//! #[recourse::recourse(policy = "users.Get")]
//! async fn get_user(client: &reqwest::Client, url: &str) -> Result<String, HttpError> {
//!     let response = check(http::Method::GET, client.get(url).send().await).await?;
//!     Ok(response.text().await?)
//! }
//! ```
//!
//! The rules (Go §13 of the original, [`Http`]): idempotent methods (GET,
//! HEAD, PUT, DELETE, OPTIONS, TRACE) are retried on 5xx and transport
//! errors; 408, 429 and the classifier's extra statuses are retryable;
//! a non-idempotent method is never retried (`http_non_idempotent`); any
//! other status is final (`http_non_retryable_status`). A retryable
//! response's `Retry-After` replaces the computed backoff, even beyond the
//! policy's `max_backoff` (up to 30 s, never past the call's deadline).

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::time::{Duration, SystemTime};

use ::http::header::RETRY_AFTER;
use ::http::{HeaderMap, Method, StatusCode};

use crate::classify::{Classifier, Classify, ErrorView, Outcome, OutcomeKind};

/// A boxed transport error.
type BoxError = Box<dyn StdError + Send + Sync>;

/// How much of a failed response's body [`check`] reads before dropping it,
/// so the connection can go back to the pool (Go reads 4096 bytes).
pub const DRAIN_LIMIT: usize = 4096;

/// What an HTTP exchange returned: a status and headers.
///
/// Implemented for [`http::Response<B>`](::http::Response) with any
/// [`http_body::Body`], and, with the `reqwest` feature, for
/// `reqwest::Response`.
pub trait HttpResponse: Sized {
    /// The response's status.
    fn status(&self) -> StatusCode;
    /// The response's headers.
    fn headers(&self) -> &HeaderMap;
    /// Reads and discards up to `limit` bytes of the body, so a client that
    /// pools connections can reuse this one.
    fn drain(self, limit: usize) -> impl Future<Output = ()> + Send;
}

impl<B> HttpResponse for ::http::Response<B>
where
    B: http_body::Body + Send,
    B::Data: Send,
{
    fn status(&self) -> StatusCode {
        ::http::Response::status(self)
    }

    fn headers(&self) -> &HeaderMap {
        ::http::Response::headers(self)
    }

    async fn drain(self, limit: usize) {
        let mut body = std::pin::pin!(self.into_body());
        let mut read = 0;
        while read < limit {
            match std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
                Some(Ok(frame)) => read += frame.data_ref().map_or(0, bytes::Buf::remaining),
                Some(Err(_)) | None => break,
            }
        }
    }
}

#[cfg(feature = "reqwest")]
impl HttpResponse for reqwest::Response {
    fn status(&self) -> StatusCode {
        reqwest::Response::status(self)
    }

    fn headers(&self) -> &HeaderMap {
        reqwest::Response::headers(self)
    }

    async fn drain(mut self, limit: usize) {
        let mut read = 0;
        while read < limit {
            match self.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// Passes a successful (2xx) response through; turns a failure status or a
/// transport error into an [`HttpError`].
///
/// `method` is the request's: whether a failure is retried depends on it.
/// A failed response's body is drained (up to [`DRAIN_LIMIT`] bytes) and
/// dropped; its status, headers and `Retry-After` stay in the error.
///
/// ```
/// use recourse::http::check;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let busy = http::Response::builder()
///     .status(503)
///     .header("retry-after", "2")
///     .body(String::new())
///     .unwrap();
/// let error = check(http::Method::GET, Ok::<_, std::io::Error>(busy)).await.unwrap_err();
/// assert_eq!(error.status(), Some(http::StatusCode::SERVICE_UNAVAILABLE));
/// assert_eq!(error.retry_after(), Some(std::time::Duration::from_secs(2)));
/// # });
/// ```
pub async fn check<R, E>(method: Method, sent: Result<R, E>) -> Result<R, HttpError>
where
    R: HttpResponse,
    E: Into<BoxError>,
{
    let response = sent.map_err(|error| HttpError::transport(Some(method.clone()), error))?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let headers = response.headers().clone();
    response.drain(DRAIN_LIMIT).await;
    Err(HttpError::from_status(method, status, headers))
}

/// A failed HTTP exchange: a failure status (with its headers and
/// `Retry-After`), a transport error (no response), or recourse's own
/// [`Error`](crate::Error) when it ended the call.
///
/// It classifies itself by the rules of [`Http`] with no extra statuses,
/// so it works as a `#[recourse]` function's error type as it is, or as
/// one `#[classify(transparent)]` variant of your own error enum.
pub struct HttpError(Box<Repr>);

struct Repr {
    method: Option<Method>,
    kind: Kind,
}

enum Kind {
    Status { status: StatusCode, headers: HeaderMap, retry_after: Option<Duration> },
    Transport(BoxError),
    Recourse(crate::Error),
}

impl HttpError {
    /// A response with a failure status. `Retry-After` is read from
    /// `headers` now (an HTTP-date becomes the time left until it).
    pub fn from_status(method: Method, status: StatusCode, headers: HeaderMap) -> Self {
        let retry_after = retry_after(&headers, SystemTime::now());
        Self(Box::new(Repr { method: Some(method), kind: Kind::Status { status, headers, retry_after } }))
    }

    /// A request that got no response (connection refused, reset, timed
    /// out, ...). Without a method it is treated as non-idempotent.
    pub fn transport(method: Option<Method>, error: impl Into<BoxError>) -> Self {
        Self(Box::new(Repr { method, kind: Kind::Transport(error.into()) }))
    }

    /// The response's status; `None` when there was no response.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.0.kind {
            Kind::Status { status, .. } => Some(*status),
            Kind::Transport(_) | Kind::Recourse(_) => None,
        }
    }

    /// The request's method, when known.
    pub fn method(&self) -> Option<&Method> {
        self.0.method.as_ref()
    }

    /// The failed response's headers.
    pub fn headers(&self) -> Option<&HeaderMap> {
        match &self.0.kind {
            Kind::Status { headers, .. } => Some(headers),
            Kind::Transport(_) | Kind::Recourse(_) => None,
        }
    }

    /// How long the server asked the client to wait (`Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.0.kind {
            Kind::Status { retry_after, .. } => *retry_after,
            Kind::Transport(_) | Kind::Recourse(_) => None,
        }
    }

    /// Whether the request got no response.
    pub fn is_transport(&self) -> bool {
        matches!(self.0.kind, Kind::Transport(_))
    }

    /// Recourse's own error, when recourse ended the call (budget denied,
    /// circuit open, deadline passed).
    pub fn recourse_error(&self) -> Option<&crate::Error> {
        match &self.0.kind {
            Kind::Recourse(error) => Some(error),
            Kind::Status { .. } | Kind::Transport(_) => None,
        }
    }
}

impl fmt::Debug for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("HttpError");
        s.field("method", &self.0.method);
        match &self.0.kind {
            Kind::Status { status, headers, retry_after } => {
                s.field("status", status).field("headers", headers).field("retry_after", retry_after)
            }
            Kind::Transport(error) => s.field("transport", error),
            Kind::Recourse(error) => s.field("recourse", error),
        };
        s.finish()
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0.kind {
            Kind::Status { status, .. } => write!(f, "http status {status}"),
            Kind::Transport(error) => fmt::Display::fmt(error, f),
            Kind::Recourse(error) => fmt::Display::fmt(error, f),
        }
    }
}

/// A transport error or recourse's own is the source (as Go unwraps to
/// it), so `ErrorView::find` reaches the client's error and what it wraps.
impl StdError for HttpError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.0.kind {
            Kind::Status { .. } => None,
            Kind::Transport(error) => Some(&**error),
            Kind::Recourse(error) => Some(error),
        }
    }
}

/// A reqwest error met after [`check`] (reading or decoding the body, or
/// `error_for_status`): its status when it has one, else a transport error.
/// The request's method is unknown here, so it is not retried; send through
/// [`check`] to classify the exchange itself.
#[cfg(feature = "reqwest")]
impl From<reqwest::Error> for HttpError {
    fn from(error: reqwest::Error) -> Self {
        match error.status() {
            Some(status) => Self(Box::new(Repr {
                method: None,
                kind: Kind::Status { status, headers: HeaderMap::new(), retry_after: None },
            })),
            None => Self::transport(None, error),
        }
    }
}

impl From<crate::Error> for HttpError {
    fn from(error: crate::Error) -> Self {
        Self(Box::new(Repr { method: None, kind: Kind::Recourse(error) }))
    }
}

impl Classify for HttpError {
    fn classify(&self) -> Option<Outcome> {
        Some(Http::default().outcome(self))
    }

    fn as_error(&self) -> Option<&(dyn StdError + 'static)> {
        Some(self)
    }
}

/// The HTTP classifier (registry name `http`): HTTP semantics for an
/// [`HttpError`] anywhere in the error's `source()` chain.
///
/// | status | idempotent method | other method |
/// |---|---|---|
/// | none (transport error) | retryable `http_transport_error` | non-retryable `http_non_idempotent` |
/// | 500–599 | retryable `http_5xx` | non-retryable `http_non_idempotent` |
/// | 408, 429, extra | retryable `http_<status>` | non-retryable `http_non_idempotent` |
/// | anything else | non-retryable `http_non_retryable_status` | same |
///
/// Outcomes carry the attributes `status` (`0` without a response) and
/// `method`; a retryable one with a `Retry-After` also `retry_after`, and
/// the wait as its backoff. An error with no `HttpError` inside is a
/// `classifier_type_mismatch`.
///
/// ```
/// use recourse::classify::{Classifier, OutcomeKind};
/// use recourse::http::{Http, HttpError};
///
/// let http = Http::default().retryable_status(http::StatusCode::CONFLICT);
/// let conflict = HttpError::from_status(http::Method::PUT, http::StatusCode::CONFLICT, Default::default());
/// assert_eq!(http.outcome(&conflict).kind, OutcomeKind::Retryable);
/// assert_eq!(http.outcome(&conflict).reason, "http_409");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Http {
    extra: Vec<StatusCode>,
}

impl Http {
    /// Also retries `status` for idempotent methods (408 and 429 always are).
    pub fn retryable_status(mut self, status: StatusCode) -> Self {
        if !self.extra.contains(&status) {
            self.extra.push(status);
        }
        self
    }

    /// The outcome of one failed exchange.
    pub fn outcome(&self, error: &HttpError) -> Outcome {
        match &error.0.kind {
            Kind::Recourse(error) => crate::__private::recourse_error_outcome(error),
            Kind::Status { status, retry_after, .. } => self.exchange(error.method(), Some(*status), *retry_after),
            Kind::Transport(_) => self.exchange(error.method(), None, None),
        }
    }

    /// The outcome of an exchange: `status` is `None` when there was no
    /// response. The one place the rules live.
    pub(crate) fn exchange(
        &self,
        method: Option<&Method>,
        status: Option<StatusCode>,
        wait: Option<Duration>,
    ) -> Outcome {
        let idempotent = method.is_some_and(is_idempotent);
        let code = status.map_or(0, |s| s.as_u16());
        let retryable_status =
            |s: StatusCode| s.is_server_error() || code == 408 || code == 429 || self.extra.contains(&s);
        let mut outcome = match status {
            Some(status) if status.is_success() => return Outcome::success(),
            None if idempotent => Outcome::retryable().with_reason("http_transport_error"),
            Some(status) if status.is_server_error() && idempotent => Outcome::retryable().with_reason("http_5xx"),
            Some(status) if retryable_status(status) && idempotent => {
                Outcome::retryable().with_reason(format!("http_{code}"))
            }
            None => Outcome::non_retryable().with_reason("http_non_idempotent"),
            Some(status) if retryable_status(status) => Outcome::non_retryable().with_reason("http_non_idempotent"),
            Some(_) => Outcome::non_retryable().with_reason("http_non_retryable_status"),
        };
        outcome = outcome
            .with_attribute("status", code.to_string())
            .with_attribute("method", method.map_or_else(String::new, |m| m.as_str().to_owned()));
        if outcome.kind == OutcomeKind::Retryable
            && let Some(wait) = wait.filter(|d| !d.is_zero())
        {
            outcome = outcome.with_attribute("retry_after", go_duration(wait)).with_backoff(wait);
        }
        outcome
    }
}

impl Classifier for Http {
    fn classify(&self, error: &dyn ErrorView) -> Outcome {
        match error.find::<HttpError>() {
            Some(http) => self.outcome(http),
            None => Outcome::type_mismatch("recourse::http::HttpError", error.type_name()),
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    [Method::GET, Method::HEAD, Method::PUT, Method::DELETE, Method::OPTIONS, Method::TRACE].contains(method)
}

/// The wait a `Retry-After` header asks for, as of `now`: delay-seconds
/// (a non-negative integer), or an HTTP-date (the time left until it; a
/// past date gives zero). `None` when the header is absent, negative or
/// malformed.
///
/// ```
/// use recourse::http::retry_after;
/// use std::time::{Duration, SystemTime};
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("retry-after", "120".parse().unwrap());
/// assert_eq!(retry_after(&headers, SystemTime::now()), Some(Duration::from_secs(120)));
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_775); // Sun, 06 Nov 1994 08:49:35 GMT
/// headers.insert("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
/// assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(2)));
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if value.starts_with('-') || value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A duration as Go prints it (`2s`, `1.5s`, `200ms`, `1m30s`, `1h0m0s`):
/// the attribute's format in the original.
fn go_duration(d: Duration) -> String {
    fn trimmed(whole: u128, frac: u128, digits: usize, unit: &str) -> String {
        let frac = format!("{frac:0digits$}");
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() { format!("{whole}{unit}") } else { format!("{whole}.{frac}{unit}") }
    }
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return trimmed(nanos / 1_000, nanos % 1_000, 3, "µs");
    }
    if nanos < 1_000_000_000 {
        return trimmed(nanos / 1_000_000, nanos % 1_000_000, 6, "ms");
    }
    let secs = nanos / 1_000_000_000;
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    let seconds = trimmed(seconds, nanos % 1_000_000_000, 9, "s");
    match (hours, minutes) {
        (0, 0) => seconds,
        (0, m) => format!("{m}m{seconds}"),
        (h, m) => format!("{h}h{m}m{seconds}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(method: Method, code: u16) -> HttpError {
        HttpError::from_status(method, StatusCode::from_u16(code).unwrap(), HeaderMap::new())
    }

    fn kind_reason(outcome: &Outcome) -> (OutcomeKind, &str) {
        (outcome.kind, &outcome.reason)
    }

    #[test]
    fn the_go_table() {
        let http = Http::default();
        let cases = [
            (Method::GET, 500, OutcomeKind::Retryable, "http_5xx"),
            (Method::GET, 503, OutcomeKind::Retryable, "http_5xx"),
            (Method::POST, 500, OutcomeKind::NonRetryable, "http_non_idempotent"),
            (Method::GET, 404, OutcomeKind::NonRetryable, "http_non_retryable_status"),
            (Method::POST, 404, OutcomeKind::NonRetryable, "http_non_retryable_status"),
            (Method::GET, 408, OutcomeKind::Retryable, "http_408"),
            (Method::PUT, 429, OutcomeKind::Retryable, "http_429"),
            (Method::PATCH, 429, OutcomeKind::NonRetryable, "http_non_idempotent"),
            (Method::DELETE, 302, OutcomeKind::NonRetryable, "http_non_retryable_status"),
            (Method::GET, 200, OutcomeKind::Success, "success"),
        ];
        for (method, code, kind, reason) in cases {
            let outcome = http.outcome(&status(method.clone(), code));
            assert_eq!(kind_reason(&outcome), (kind, reason), "{method} {code}");
            if kind != OutcomeKind::Success {
                assert_eq!(outcome.attributes.get("status"), Some(code.to_string().as_str()));
                assert_eq!(outcome.attributes.get("method"), Some(method.as_str()));
            }
        }
    }

    #[test]
    fn transport_errors_retry_only_idempotent_methods() {
        let http = Http::default();
        let get = HttpError::transport(Some(Method::GET), "connection refused");
        let post = HttpError::transport(Some(Method::POST), "connection refused");
        let unknown = HttpError::transport(None, "connection refused");
        assert_eq!(kind_reason(&http.outcome(&get)), (OutcomeKind::Retryable, "http_transport_error"));
        assert_eq!(http.outcome(&get).attributes.get("status"), Some("0"));
        assert_eq!(kind_reason(&http.outcome(&post)), (OutcomeKind::NonRetryable, "http_non_idempotent"));
        assert_eq!(kind_reason(&http.outcome(&unknown)), (OutcomeKind::NonRetryable, "http_non_idempotent"));
    }

    #[test]
    fn extra_statuses_add_to_408_and_429() {
        let http = Http::default().retryable_status(StatusCode::CONFLICT);
        assert_eq!(http.outcome(&status(Method::GET, 409)).kind, OutcomeKind::Retryable);
        assert_eq!(Http::default().outcome(&status(Method::GET, 409)).kind, OutcomeKind::NonRetryable);
    }

    #[test]
    fn retry_after_becomes_the_backoff_of_a_retryable_outcome() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "2".parse().unwrap());
        let busy = HttpError::from_status(Method::GET, StatusCode::TOO_MANY_REQUESTS, headers.clone());
        let outcome = Http::default().outcome(&busy);
        assert_eq!(outcome.backoff, Some(Duration::from_secs(2)));
        assert_eq!(outcome.attributes.get("retry_after"), Some("2s"));
        // Not retried, so nothing to wait for.
        let post = HttpError::from_status(Method::POST, StatusCode::TOO_MANY_REQUESTS, headers);
        assert_eq!(Http::default().outcome(&post).backoff, None);
    }

    #[test]
    fn retry_after_parsing() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_775);
        let parse = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, value.parse().unwrap());
            retry_after(&headers, now)
        };
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
        assert_eq!(parse("0"), Some(Duration::ZERO));
        assert_eq!(parse(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse("-1"), None);
        assert_eq!(parse("soon"), None);
        assert_eq!(parse("1.5"), None);
        assert_eq!(parse("99999999999999999999999"), None);
        assert_eq!(parse("Sun, 06 Nov 1994 08:49:45 GMT"), Some(Duration::from_secs(10)));
        assert_eq!(parse("Sunday, 06-Nov-94 08:49:45 GMT"), Some(Duration::from_secs(10)));
        assert_eq!(parse("Sun Nov  6 08:49:45 1994"), Some(Duration::from_secs(10)));
        assert_eq!(parse("Sun, 06 Nov 1994 08:00:00 GMT"), Some(Duration::ZERO), "a past date");
    }

    #[test]
    fn non_http_errors_are_a_type_mismatch_and_wrapped_ones_are_found() {
        let io = std::io::Error::other("boom");
        let outcome = Classifier::classify(&Http::default(), &io);
        assert_eq!(outcome.reason, "classifier_type_mismatch");
        let wrapped = std::io::Error::other(status(Method::GET, 503));
        assert_eq!(Classifier::classify(&Http::default(), &wrapped).reason, "http_5xx");
    }

    #[test]
    fn recourse_errors_abort_with_their_reason() {
        let error = HttpError::from(crate::Error::Timeout { timeout: Duration::from_secs(1) });
        let outcome = error.classify().unwrap();
        assert_eq!(kind_reason(&outcome), (OutcomeKind::Abort, "context_deadline_exceeded"));
    }

    #[test]
    fn go_durations() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(200), "200ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_nanos(7), "7ns"),
        ];
        for (d, text) in cases {
            assert_eq!(go_duration(d), text);
        }
    }
}

#[cfg(test)]
mod retry_after_properties {
    //! `retry_after` on any header value and any clock.

    use super::*;
    use ::http::HeaderValue;
    use proptest::prelude::*;

    /// 9999-12-31 23:59:59 UTC: the last second an HTTP-date can name.
    const LAST_DATE: u64 = 253_402_300_799;
    /// 2069-12-31 23:59:59 UTC: the last second an RFC 850 date (two-digit
    /// year, 70 to 99 in the 1900s) can name.
    const LAST_RFC850_DATE: u64 = 3_155_759_999;
    const DAY: u64 = 86_400;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::new(secs, nanos)
    }

    /// The wait `value` asks for, if it is a header value at all.
    fn wait(value: &[u8], now: SystemTime) -> Result<Option<Duration>, ::http::header::InvalidHeaderValue> {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_bytes(value)?);
        Ok(retry_after(&headers, now))
    }

    /// `secs` after the epoch as an HTTP-date in one of its three forms: 0
    /// IMF-fixdate, 1 RFC 850, 2 asctime (RFC 9110 §5.6.7), computed here
    /// with the civil-from-days algorithm, not with httpdate.
    fn http_date(secs: u64, form: u8) -> String {
        const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
        const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let days = secs / DAY;
        let (hour, minute, second) = (secs % DAY / 3600, secs % 3600 / 60, secs % 60);
        // 1970-01-01 was a Thursday.
        let weekday = DAYS[usize::try_from((days + 4) % 7).unwrap()];
        let shifted = days + 719_468;
        let era = shifted / 146_097;
        let day_of_era = shifted - era * 146_097;
        let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let march_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * march_month + 2) / 5 + 1;
        let month = if march_month < 10 { march_month + 3 } else { march_month - 9 };
        let year = year_of_era + era * 400 + u64::from(month <= 2);
        let month = MONTHS[usize::try_from(month - 1).unwrap()];
        let time = format!("{hour:02}:{minute:02}:{second:02}");
        match form {
            0 => format!("{}, {day:02} {month} {year} {time} GMT", &weekday[..3]),
            1 => format!("{weekday}, {day:02}-{month}-{:02} {time} GMT", year % 100),
            _ => format!("{} {month} {day:2} {time} {year}", &weekday[..3]),
        }
    }

    /// Header values of every shape: raw bytes, printable text, numbers,
    /// signed numbers and dates.
    fn any_value() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..40),
            "[ -~]{0,40}".prop_map(String::into_bytes),
            "[ \t]{0,2}[-+]?[0-9]{1,22}[ \t]{0,2}".prop_map(String::into_bytes),
            (0..=LAST_DATE, 0u8..3).prop_map(|(secs, form)| http_date(secs.min(LAST_RFC850_DATE), form).into_bytes()),
        ]
    }

    /// A date at least as late as a clock, in a form that can name it.
    fn date_and_clock() -> impl Strategy<Value = (u64, u8, u64, u32)> {
        (0u8..3)
            .prop_flat_map(|form| (Just(form), 0..=if form == 1 { LAST_RFC850_DATE } else { LAST_DATE }))
            .prop_flat_map(|(form, date)| (Just(date), Just(form), 0..=date, 0..1_000_000_000u32))
    }

    /// Any value and any clock, or a date and a clock up to 20 years
    /// before it (so that moving on often passes the date).
    fn value_and_clock() -> impl Strategy<Value = (Vec<u8>, u64)> {
        prop_oneof![
            (any_value(), 0..=LAST_DATE),
            (date_and_clock(), 0..=20 * 365 * DAY)
                .prop_map(|((date, form, _, _), back)| (http_date(date, form).into_bytes(), date.saturating_sub(back))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // Any value, any clock: no panic, and the answer is delay-seconds
        // (a u64), else the time left until an HTTP-date, else nothing.
        #[test]
        fn any_value_is_judged_without_panicking(value in any_value(), secs in 0..=LAST_DATE + 400 * DAY, nanos in 0..1_000_000_000u32) {
            let now = at(secs, nanos);
            let Ok(wait) = wait(&value, now) else { return Ok(()) };
            let Ok(text) = std::str::from_utf8(&value) else {
                prop_assert_eq!(wait, None);
                return Ok(());
            };
            let text = text.trim();
            let expected = text
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
                .or_else(|| httpdate::parse_http_date(text).ok().map(|date| date.duration_since(now).unwrap_or_default()));
            prop_assert_eq!(wait, expected, "{:?}", text);
        }

        // Delay-seconds round-trip, whatever the clock and the whitespace
        // around them.
        #[test]
        fn delay_seconds_round_trip(seconds in any::<u64>(), left in "[ \t]{0,3}", right in "[ \t]{0,3}", now in 0..=LAST_DATE) {
            let value = format!("{left}{seconds}{right}");
            prop_assert_eq!(wait(value.as_bytes(), at(now, 0)).unwrap(), Some(Duration::from_secs(seconds)));
        }

        // Negative, fractional, suffixed, hexadecimal or out-of-range
        // numbers are no wait at all.
        #[test]
        fn other_numbers_are_no_wait(n in 1..=u64::MAX, fraction in 0u32..1000, over in 1..=u64::MAX) {
            let beyond = u128::from(u64::MAX) + u128::from(over);
            for value in [format!("-{n}"), format!("{n}.{fraction}"), format!("{n}s"), format!("0x{n:x}"), beyond.to_string()] {
                prop_assert_eq!(wait(value.as_bytes(), SystemTime::UNIX_EPOCH).unwrap(), None, "{:?}", value);
            }
        }

        // An HTTP-date in the future gives the time left until it, which is
        // at most the difference in whole seconds, in every form.
        #[test]
        fn a_future_http_date_waits_the_time_left((date, form, now, nanos) in date_and_clock()) {
            let text = http_date(date, form);
            if form == 0 {
                prop_assert_eq!(&text, &httpdate::fmt_http_date(at(date, 0)), "the helper writes IMF-fixdate as httpdate does");
            }
            let clock = at(now, nanos);
            let left = Duration::from_secs(date - now).saturating_sub(Duration::from_nanos(u64::from(nanos)));
            let waited = wait(text.as_bytes(), clock).unwrap();
            prop_assert_eq!(waited, Some(left), "{} at {:?}", text, clock);
            prop_assert!(waited <= Some(Duration::from_secs(date - now)));
        }

        // A date in the past asks for no wait: zero, not nothing.
        #[test]
        fn a_past_http_date_is_zero((date, form, _, _) in date_and_clock(), behind in 1..=100 * 365 * DAY) {
            let text = http_date(date, form);
            prop_assert_eq!(wait(text.as_bytes(), at(date + behind, 0)).unwrap(), Some(Duration::ZERO), "{}", text);
        }

        // As the clock moves on, a wait never grows and never appears or
        // disappears.
        #[test]
        fn the_wait_never_grows((value, now) in value_and_clock(), later in 0..=10 * 365 * DAY) {
            let (Ok(before), Ok(after)) = (wait(&value, at(now, 0)), wait(&value, at(now + later, 0))) else {
                return Ok(());
            };
            prop_assert_eq!(before.is_some(), after.is_some());
            prop_assert!(after <= before, "{:?} later, {:?} instead of {:?}", later, after, before);
        }

        // The wait becomes the backoff of every retryable exchange, and of
        // no other.
        #[test]
        fn the_wait_is_the_backoff_of_a_retryable_outcome(seconds in 1..=u64::MAX, code in prop::sample::select(vec![408u16, 429, 500, 502, 503, 504])) {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, seconds.into());
            let status = StatusCode::from_u16(code).unwrap();
            let retried = Http::default().outcome(&HttpError::from_status(Method::GET, status, headers.clone()));
            prop_assert_eq!(retried.kind, OutcomeKind::Retryable);
            prop_assert_eq!(retried.backoff, Some(Duration::from_secs(seconds)));
            let not_retried = Http::default().outcome(&HttpError::from_status(Method::POST, status, headers));
            prop_assert_eq!((not_retried.kind, not_retried.backoff), (OutcomeKind::NonRetryable, None));
        }
    }
}

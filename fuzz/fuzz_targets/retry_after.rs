//! `Retry-After` on any header value and any clock: `retry_after` never
//! panics; delay-seconds give exactly that many seconds, a negative value
//! nothing; every HTTP-date httpdate reads gives the time left until it
//! (zero once past), and nothing else does; the wait never grows as the
//! clock moves on. The classifier reading the same header through
//! `HttpError` never panics and never waits longer.
//!
//! The input: 5 bytes of seconds and 1 byte of a fraction for the clock,
//! then the header's value.
#![no_main]

use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use libfuzzer_sys::fuzz_target;
use recourse::OutcomeKind;
use recourse::http::{Http, HttpError, retry_after};

fuzz_target!(|data: &[u8]| {
    let Some((clock, value)) = data.split_first_chunk::<6>() else { return };
    let seconds = clock[..5].iter().fold(0u64, |n, b| n << 8 | u64::from(*b));
    let now = SystemTime::UNIX_EPOCH + Duration::new(seconds, u32::from(clock[5]) * 3_906_250);
    assert_eq!(retry_after(&HeaderMap::new(), now), None);
    let Ok(value) = HeaderValue::from_bytes(value) else { return };
    let mut headers = HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, value.clone());
    let wait = retry_after(&headers, now);

    let Ok(text) = value.to_str() else {
        assert_eq!(wait, None, "an opaque value is no wait");
        return;
    };
    let text = text.trim();
    let digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if digits {
        assert_eq!(wait, text.parse::<u64>().ok().map(Duration::from_secs), "{text:?}");
    }
    if text.starts_with('-') {
        assert_eq!(wait, None, "{text:?}");
    }
    match httpdate::parse_http_date(text) {
        Ok(date) => assert_eq!(wait, Some(date.duration_since(now).unwrap_or_default()), "{text:?}"),
        Err(_) if !digits && !text.starts_with('+') => assert_eq!(wait, None, "{text:?}"),
        Err(_) => {}
    }
    // Later, the wait is never longer, and never gone.
    for later in [Duration::from_nanos(1), Duration::from_secs(1), Duration::from_secs(86_400 * 365)] {
        let then = retry_after(&headers, now + later);
        assert_eq!(then.is_some(), wait.is_some(), "{text:?}");
        assert!(then <= wait, "{text:?}: {then:?} after {later:?}, {wait:?} before");
    }

    let before = SystemTime::now();
    let error = HttpError::from_status(Method::GET, StatusCode::SERVICE_UNAVAILABLE, headers.clone());
    let outcome = Http::default().outcome(&error);
    assert_eq!(outcome.kind, OutcomeKind::Retryable);
    if let Some(backoff) = outcome.backoff {
        assert!(Some(backoff) <= retry_after(&headers, before), "{text:?}");
    }
});

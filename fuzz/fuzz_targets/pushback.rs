//! `grpc-retry-pushback-ms` on any metadata, through the public reader
//! (`status_outcome`, which the `grpc` classifier and `tonic::Status`'s
//! `Classify` use): it never panics; a retryable status with one value
//! waits exactly that many milliseconds when the value is a non-negative
//! integer (zero keeps the policy's backoff) and stops retrying otherwise;
//! several values are ignored; any other status is untouched.
//!
//! The input: one byte for the code (its top bit set: no header at all),
//! then the values, split at `\n` (a byte no metadata value holds).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use recourse::OutcomeKind;
use recourse::tonic::{PUSHBACK_KEY, status_outcome};
use tonic::metadata::{Ascii, MetadataMap, MetadataValue};
use tonic::{Code, Status};

/// What gRFC A6 (as grpc-go reads it) asks for: `Some(ms)` to wait,
/// `None` to stop. Written out here without `str::parse`.
fn asked(value: &[u8]) -> Option<u64> {
    let text = value.trim_ascii();
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let magnitude = digits.iter().try_fold(0u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
    match (negative, i64::try_from(magnitude)) {
        (false, Ok(_)) => Some(magnitude),
        (true, _) if magnitude == 0 => Some(0),
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&code, rest)) = data.split_first() else { return };
    let values: Vec<&[u8]> = if code & 0x80 == 0 { rest.split(|b| *b == b'\n').take(4).collect() } else { Vec::new() };
    let code = Code::from(i32::from(code & 0x7f) % 20);
    let mut metadata = MetadataMap::new();
    for value in &values {
        let Ok(value) = MetadataValue::<Ascii>::try_from(*value) else { return };
        metadata.append(PUSHBACK_KEY, value);
    }
    let plain = status_outcome(&Status::new(code, "fuzz"));
    let outcome = status_outcome(&Status::with_metadata(code, "fuzz", metadata));
    assert_eq!(plain.backoff, None);

    if plain.kind != OutcomeKind::Retryable || values.len() != 1 {
        assert_eq!((outcome.kind, &outcome.reason, outcome.backoff), (plain.kind, &plain.reason, None), "{values:?}");
        return;
    }
    match asked(values[0]) {
        Some(ms) => {
            assert_eq!((outcome.kind, &outcome.reason), (OutcomeKind::Retryable, &plain.reason), "{values:?}");
            assert_eq!(outcome.backoff, (ms > 0).then(|| Duration::from_millis(ms)), "{values:?}");
        }
        None => {
            assert_eq!(
                (outcome.kind, &*outcome.reason),
                (OutcomeKind::NonRetryable, "grpc_pushback_stop"),
                "{values:?}"
            );
            assert_eq!(outcome.backoff, None);
        }
    }
    assert_eq!(outcome.attributes.get("grpc_code"), plain.attributes.get("grpc_code"));
});

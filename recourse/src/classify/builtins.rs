//! The built-in classifiers: `always`, `never` and `auto`.

use std::io;

use super::{Classifier, ErrorView, Outcome};

/// Retries every error (registry name `always`). Timeouts get reason
/// `context_deadline_exceeded`, everything else `retryable_error`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysRetry;

/// Retries nothing (registry name `never`): every error is non-retryable
/// with reason `non_retryable_error`.
#[derive(Debug, Clone, Copy, Default)]
pub struct NeverRetry;

/// The default classifier (registry name `auto`).
///
/// 1. The error's own [`Classify`](super::Classify) outcome, if it has one.
/// 2. Otherwise the first link of its `source()` chain that recourse
///    understands: a [`std::io::Error`] (by kind, see [`io_outcome`]; one
///    made with `io::Error::other(e)` is looked through), a
///    [`recourse::Error`](crate::Error), or a tokio timeout.
/// 3. Otherwise retryable `retryable_error`, as [`AlwaysRetry`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Auto;

impl Classifier for AlwaysRetry {
    fn classify(&self, error: &dyn ErrorView) -> Outcome {
        if is_timeout(error) {
            Outcome::retryable().with_reason("context_deadline_exceeded")
        } else {
            Outcome::retryable().with_reason("retryable_error")
        }
    }
}

impl Classifier for NeverRetry {
    fn classify(&self, _error: &dyn ErrorView) -> Outcome {
        Outcome::non_retryable().with_reason("non_retryable_error")
    }
}

impl Classifier for Auto {
    fn classify(&self, error: &dyn ErrorView) -> Outcome {
        if let Some(outcome) = error.own_outcome() {
            return outcome;
        }
        for link in error.chain() {
            if let Some(e) = link.downcast_ref::<io::Error>()
                && !super::wraps_an_error(e)
            {
                return io_outcome(e);
            }
            if let Some(e) = link.downcast_ref::<crate::Error>() {
                return e.outcome();
            }
            if link.is::<tokio::time::error::Elapsed>() {
                return Outcome::retryable().with_reason("context_deadline_exceeded");
            }
        }
        AlwaysRetry.classify(error)
    }
}

fn is_timeout(error: &dyn ErrorView) -> bool {
    error.chain().any(|e| {
        e.is::<tokio::time::error::Elapsed>()
            || e.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
            || e.downcast_ref::<crate::Error>().is_some_and(crate::Error::is_timeout)
    })
}

/// How `auto` classifies an [`io::Error`]: transient network and
/// interruption kinds are retryable, kinds that describe the request
/// itself are non-retryable, anything else is retryable
/// (`retryable_error`). Reasons are `io_<kind>`, e.g. `io_connection_reset`.
///
/// ```
/// use recourse::classify::{io_outcome, OutcomeKind};
/// use std::io;
///
/// let reset = io_outcome(&io::Error::from(io::ErrorKind::ConnectionReset));
/// assert_eq!(reset.kind, OutcomeKind::Retryable);
/// assert_eq!(reset.reason, "io_connection_reset");
/// let denied = io_outcome(&io::Error::from(io::ErrorKind::PermissionDenied));
/// assert_eq!(denied.kind, OutcomeKind::NonRetryable);
/// ```
pub fn io_outcome(error: &io::Error) -> Outcome {
    use io::ErrorKind as K;
    let retryable = |reason: &'static str| Outcome::retryable().with_reason(reason);
    let permanent = |reason: &'static str| Outcome::non_retryable().with_reason(reason);
    match error.kind() {
        K::ConnectionRefused => retryable("io_connection_refused"),
        K::ConnectionReset => retryable("io_connection_reset"),
        K::ConnectionAborted => retryable("io_connection_aborted"),
        K::NotConnected => retryable("io_not_connected"),
        K::BrokenPipe => retryable("io_broken_pipe"),
        K::TimedOut => retryable("context_deadline_exceeded"),
        K::Interrupted => retryable("io_interrupted"),
        K::WouldBlock => retryable("io_would_block"),
        K::UnexpectedEof => retryable("io_unexpected_eof"),
        K::AddrNotAvailable => retryable("io_addr_not_available"),
        K::HostUnreachable => retryable("io_host_unreachable"),
        K::NetworkUnreachable => retryable("io_network_unreachable"),
        K::NetworkDown => retryable("io_network_down"),
        K::ResourceBusy => retryable("io_resource_busy"),
        K::NotFound => permanent("io_not_found"),
        K::PermissionDenied => permanent("io_permission_denied"),
        K::AlreadyExists => permanent("io_already_exists"),
        K::InvalidInput => permanent("io_invalid_input"),
        K::InvalidData => permanent("io_invalid_data"),
        K::Unsupported => permanent("io_unsupported"),
        K::AddrInUse => permanent("io_addr_in_use"),
        K::OutOfMemory => permanent("io_out_of_memory"),
        K::WriteZero => permanent("io_write_zero"),
        _ => retryable("retryable_error"),
    }
}

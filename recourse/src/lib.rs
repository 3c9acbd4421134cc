//! Policy-driven resilience for async Rust.
//!
//! A call site names a low-cardinality **policy key** such as
//! `"user-service.GetUser"`; the policy for that key decides the whole
//! envelope: how many attempts, how long to back off, which errors are
//! worth retrying, how long the call may take. Operators change behaviour by
//! changing policy, never call sites.
//!
//! ```
//! use recourse::policy::Policy;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let executor = recourse::Executor::builder()
//!     .policy(
//!         Policy::builder("user-service.GetUser")
//!             .max_attempts(4)
//!             .backoff(Duration::from_millis(20), Duration::from_secs(1), 2.0)
//!             .overall_timeout(Duration::from_secs(2))
//!             .build(),
//!     )
//!     .build();
//!
//! let mut attempts = 0;
//! let user: Result<&str, std::io::Error> = executor
//!     .call("user-service.GetUser", || {
//!         attempts += 1;
//!         let flaky = attempts < 3;
//!         async move {
//!             if flaky { Err(std::io::ErrorKind::ConnectionReset.into()) } else { Ok("ada") }
//!         }
//!     })
//!     .await;
//! assert_eq!(user.unwrap(), "ada");
//! assert_eq!(attempts, 3);
//! # }
//! ```
//!
//! # Concepts
//!
//! * [`policy`]: keys, the policy schema, defaults and normalization.
//! * [`classify`]: what an error means (retryable, non-retryable, abort).
//! * [`budget`]: backpressure that gates every attempt.
//! * [`hedge`]: extra attempts racing a slow primary.
//! * [`circuit`]: failing fast while a dependency is down.
//! * [`provider`]: where policies come from.
//! * [`executor`]: the engine that runs attempts.
//! * [`observe`]: observers, timelines of calls and the attempt in progress.
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod budget;
pub mod circuit;
pub mod classify;
mod error;
pub mod executor;
pub mod hedge;
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
mod named;
pub mod observe;
pub mod policy;
pub mod provider;
#[cfg(feature = "reqwest")]
#[cfg_attr(docsrs, doc(cfg(feature = "reqwest")))]
pub mod reqwest;
#[cfg(feature = "tonic")]
#[cfg_attr(docsrs, doc(cfg(feature = "tonic")))]
pub mod tonic;
#[cfg(feature = "tower")]
#[cfg_attr(docsrs, doc(cfg(feature = "tower")))]
pub mod tower;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod tracing;

// Atomics, spinning and the clock of the lock-free parts: std's, or
// loom's under `--cfg loom` (public then, for `tests/loom.rs`).
#[cfg(not(loom))]
mod sync;
#[cfg(loom)]
#[doc(hidden)]
pub mod sync;

#[doc(hidden)]
#[path = "private.rs"]
pub mod __private;

#[cfg(feature = "macros")]
#[cfg_attr(docsrs, doc(cfg(feature = "macros")))]
#[doc(inline)]
pub use recourse_macros::{Classifier, catalog, key, recourse};

use std::future::Future;

pub use classify::{Classifier, Classify, Outcome, OutcomeKind};
pub use error::{Component, Error, PanicError};
pub use executor::{
    BuildError, CallKey, Catalog, CheckedKey, Executor, ExecutorBuilder, FailureMode, KeyOverflow, global, install,
};
pub use observe::{Attempt, AttemptRecord, Timeline, attempt, capture};
pub use policy::{Policy, PolicyKey};

/// Runs `op` under the policy for `key` on the [`global`] executor.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let answer: Result<u32, std::io::Error> = recourse::call("demo.Answer", || async { Ok(42) }).await;
/// assert_eq!(answer.unwrap(), 42);
/// # }
/// ```
pub fn call<K, F, Fut, T, E>(key: K, op: F) -> impl Future<Output = Result<T, E>>
where
    K: Into<CallKey>,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Classify + From<Error> + 'static,
{
    global().call(key, op)
}

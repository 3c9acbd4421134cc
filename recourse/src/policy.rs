//! Policies: what a key's calls are allowed to do.
//!
//! A [`Policy`] is plain data: the retry envelope ([`RetryPolicy`]),
//! hedging ([`HedgePolicy`]) and circuit breaking ([`CircuitPolicy`]) for one
//! [`PolicyKey`], plus [`Metadata`] saying where it came from and what
//! [normalization](Policy::normalize) had to change. Policies are built with
//! [`Policy::builder`] (or [`Policy::default_for`] and field assignment),
//! served by a [`PolicyProvider`](crate::provider::PolicyProvider), and never
//! mutated by the executor.
//!
//! Everything here is the `recourse-policy` crate, which the macros share:
//! the catalog check at compile time and the providers at run time decode
//! with the same code (`catalog` and `json`, present with the `file` or
//! `remote` feature) into the same [`spec::PolicySpec`], and clamp with the
//! same [`limits`].
//!
//! ```
//! use recourse::policy::{Jitter, Policy};
//! use std::time::Duration;
//!
//! let policy = Policy::builder("user-service.GetUser")
//!     .max_attempts(4)
//!     .backoff(Duration::from_millis(20), Duration::from_secs(1), 2.0)
//!     .jitter(Jitter::Full)
//!     .overall_timeout(Duration::from_secs(2))
//!     .build();
//! assert_eq!(policy.retry.max_attempts, 4);
//! assert!(!policy.meta.normalization.changed());
//! ```

#[doc(inline)]
pub use recourse_policy::*;

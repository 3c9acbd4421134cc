//! Policies: what a key's calls are allowed to do, and the one schema
//! `recourse`, its macros and its providers share.
//!
//! A [`Policy`] is plain data: the retry envelope ([`RetryPolicy`]),
//! hedging ([`HedgePolicy`]) and circuit breaking ([`CircuitPolicy`]) for one
//! [`PolicyKey`], plus [`Metadata`] saying where it came from and what
//! [normalization](Policy::normalize) had to change. Policies are built with
//! [`Policy::builder`] (or [`Policy::default_for`] and field assignment),
//! served by a `PolicyProvider` (`recourse::provider`), and never mutated by
//! the executor.
//!
//! What a document says about a policy is a [`spec::PolicySpec`]; the
//! catalog (`recourse.toml`, [`catalog`]) and JSON policy documents
//! ([`json`]) decode into it, at compile time and at run time alike, and it
//! becomes a policy through [`spec::PolicySpec::to_policy`]. The limits
//! normalization applies are the ones the catalog enforces ([`limits`]).
//!
//! This crate is re-exported by `recourse` as `recourse::policy`.
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
#![forbid(unsafe_code)]

mod builder;
#[cfg(feature = "toml")]
pub mod catalog;
#[cfg(any(feature = "toml", feature = "json"))]
mod decode;
pub mod duration;
#[cfg(feature = "json")]
pub mod json;
pub mod key;
pub mod limits;
mod normalize;
mod schema;
pub mod spec;

pub use builder::PolicyBuilder;
pub use key::{KeyError, PolicyKey, validate_key};
pub use normalize::{Normalization, NormalizeError};
pub use schema::{BudgetRef, CircuitPolicy, HedgePolicy, Jitter, Metadata, Policy, PolicySource, RetryPolicy};

//! The policy schema that `recourse` and its macros share, so that the
//! compile-time catalog check and the run-time normalization cannot drift
//! apart: the limits normalization applies and the catalog enforces, the
//! text format of durations (`"250ms"`), and the rule for policy keys.
//! Re-exported by `recourse` under `recourse::policy`.
#![forbid(unsafe_code)]

pub mod duration;
pub mod key;
pub mod limits;

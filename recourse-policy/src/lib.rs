//! The policy schema that `recourse` and its macros share, so that the
//! compile-time catalog check and the run-time normalization cannot drift
//! apart: the limits normalization applies and the catalog enforces, and
//! the text format of durations (`"250ms"`). Re-exported by `recourse` as
//! `recourse::policy::limits` and `recourse::policy::duration`.
#![forbid(unsafe_code)]

pub mod duration;
pub mod limits;

//! Procedural macros for [`recourse`](https://docs.rs/recourse).
//!
//! This crate is an implementation detail: depend on `recourse` and use the
//! re-exports there. The macros arrive with the macros issue; until then the
//! crate is empty so the workspace layout is final from day one.
#![forbid(unsafe_code)]

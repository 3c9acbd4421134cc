//! Runnable examples for `recourse` live in `examples/`; run one with
//! `cargo run -p recourse-examples --example flaky`.

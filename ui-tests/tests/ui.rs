//! Compile-pass and compile-fail cases for the macros.
//!
//! The expected `.stderr` files are pinned to the toolchain CI uses; after a
//! toolchain bump regenerate them with `TRYBUILD=overwrite cargo test -p
//! recourse-ui-tests` and review the diff line by line.
#![allow(missing_docs)]

#[test]
fn derive_classifier() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/derive/fail/*.rs");
    t.pass("tests/ui/derive/pass/*.rs");
}

#[test]
fn recourse_attribute() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/recourse/fail/*.rs");
    // A crate root of its own without a `recourse.toml`.
    t.compile_fail("tests/ui/no-catalog/*.rs");
    t.pass("tests/ui/recourse/pass/*.rs");
}

#[test]
fn catalog_budgets() {
    let t = trybuild::TestCases::new();
    // Each case is a crate root of its own, with its own `recourse.toml`.
    t.compile_fail("tests/ui/budgets/fail/*/*.rs");
    t.pass("tests/ui/budgets/pass/*/*.rs");
}

//! The catalog reader on any text: it never panics, every problem names
//! the file and a position, and an accepted catalog's policies are
//! already normalized (the catalog never accepts a value the runtime would
//! clamp).
#![no_main]

use libfuzzer_sys::fuzz_target;
use recourse_policy::PolicySource;
use recourse_policy::catalog::{Builtins, decode};

const BUILTINS: Builtins<'static> = Builtins {
    classifiers: &["always", "never", "auto", "http", "grpc"],
    budgets: &["unlimited"],
    triggers: &["fixed_delay", "p50", "p90", "p95", "p99"],
};

fuzz_target!(|text: &str| {
    let doc = decode(text, "recourse.toml", &BUILTINS);
    for problem in doc.problems() {
        assert!(problem.starts_with("recourse.toml:"), "{problem}");
    }
    if doc.is_valid() {
        for policy in doc.policies(PolicySource::Catalog) {
            assert!(!policy.meta.normalization.changed(), "an accepted catalog was clamped: {policy:?}");
        }
    }
});

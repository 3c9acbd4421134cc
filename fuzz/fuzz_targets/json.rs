//! The JSON policy reader on any text: it never panics, and every policy
//! it accepts normalizes into the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recourse_policy::PolicySource;
use recourse_policy::json::decode;
use recourse_policy::limits;

fuzz_target!(|text: &str| {
    match decode(text, "policy.json") {
        Ok(policies) => {
            for decoded in policies {
                let policy = decoded.spec.to_policy("svc.Op".into(), PolicySource::Remote);
                assert!(policy.is_normalized());
                assert!((1..=limits::MAX_ATTEMPTS).contains(&policy.retry.max_attempts));
                assert!(policy.retry.max_backoff >= policy.retry.initial_backoff);
                assert!(policy.retry.backoff_multiplier.is_finite());
            }
        }
        Err(problems) => assert!(problems.iter().all(|p| p.starts_with("policy.json"))),
    }
});

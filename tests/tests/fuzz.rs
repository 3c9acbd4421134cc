//! Section T of the conformance checklist: the fuzz target
//! (`retry/fuzz_test.go`), item 81, as property tests.
#![allow(missing_docs)]

mod support;

use std::io;

use proptest::prelude::*;
use recourse::policy::{Policy, PolicyKey, limits, validate_key};
use recourse::{Executor, OutcomeKind};
use support::{Counter, RecordingSleeper, SEED};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime")
}

/// Keys: arbitrary text, plus the shapes the parser cares about.
fn any_key() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ .a-zA-Z0-9_-]{0,12}",
        Just("retry-policy".to_owned()),
        Just("no-retry".to_owned()),
        Just(String::new()),
        Just(".".to_owned()),
        Just(" . ".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // T81: for any key and attempts (unused, as upstream), a bare executor
    // with a successful op never panics and returns the op's value after
    // exactly one call.
    #[test]
    fn t81_bare_executor_success_never_panics(attempts in 0u32..=100, key in any_key()) {
        let _ = attempts;
        let executor = Executor::builder().build();
        let calls = Counter::new();
        let (result, timeline) = runtime().block_on(recourse::capture(executor.call(key.clone(), || {
            calls.hit();
            async { Ok::<_, io::Error>(7) }
        })));
        prop_assert_eq!(result.unwrap(), 7);
        prop_assert_eq!(calls.get(), 1);
        prop_assert_eq!(&timeline.key, &PolicyKey::from(key));
        prop_assert_eq!(timeline.attempts.len(), 1);
        prop_assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::Success);
        let _ = timeline.to_string();
    }

    // T81, using the attempts: any key with a policy of `attempts` attempts
    // and an always-failing op makes exactly the normalized number of calls
    // (0 → 3, above 10 → 10) and never panics.
    #[test]
    fn t81_failing_op_makes_exactly_the_normalized_attempts(attempts in 0u32..=100, key in any_key()) {
        let sleeper = RecordingSleeper::new();
        let executor = Executor::builder()
            .policy(Policy::builder(key.clone()).max_attempts(attempts).build())
            .sleeper(sleeper.clone())
            .jitter_seed(SEED)
            .build();
        let calls = Counter::new();
        let result: Result<(), io::Error> = runtime().block_on(executor.call(key, || {
            calls.hit();
            async { Err(io::Error::from(io::ErrorKind::ConnectionReset)) }
        }));
        let expected = usize::try_from(match attempts {
            0 => limits::DEFAULT_MAX_ATTEMPTS,
            n => n.min(limits::MAX_ATTEMPTS),
        })
        .unwrap();
        prop_assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
        prop_assert_eq!(calls.get(), expected);
        prop_assert_eq!(sleeper.sleeps().len(), expected - 1);
    }

    // Parsing and rendering never panic, and any key `validate_key`
    // accepts parses into its two non-empty parts and renders back exactly.
    #[test]
    fn keys_parse_render_and_validate_without_panicking(key in any_key()) {
        let parsed = PolicyKey::parse_owned(&key);
        let rendered = parsed.to_string();
        prop_assert_eq!(parsed.is_empty(), key.trim().is_empty());
        if validate_key(&key).is_ok() {
            prop_assert!(!parsed.namespace().is_empty());
            prop_assert!(!parsed.name().is_empty());
            prop_assert_eq!(rendered, key);
        }
    }
}

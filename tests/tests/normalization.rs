//! Normalization (behaviour spec §4): the Go table examples, every clamp
//! from `recourse::policy::limits`, and idempotence, as exact tests and
//! property tests.
#![allow(missing_docs)]
#![allow(clippy::float_cmp, reason = "normalized multipliers are exact constants")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use recourse::Executor;
use recourse::policy::{Jitter, Policy, PolicyKey, PolicySource, limits};
use support::{Counter, KEY, RawProvider, RecordingSleeper, TestError, ms};

fn key() -> PolicyKey {
    PolicyKey::parse("norm.Test")
}

// Spec §4: "A fully zero policy normalizes to: 3 attempts, 10 ms, 250 ms,
// ×2, none, costs 1" with the changed fields in rule order. Go also lists
// `retry.jitter` (its jitter is a string whose zero value "" is filled in);
// in Rust `Jitter` is a typed enum whose zero value already is `None`, so
// there is nothing to fill in and the field is not recorded.
#[test]
fn zero_policy_normalizes_to_the_default_envelope() {
    let policy = Policy::zero(key()).normalized();
    assert_eq!(
        policy.meta.normalization.changed_fields(),
        [
            "retry.max_attempts",
            "retry.initial_backoff",
            "retry.max_backoff",
            "retry.backoff_multiplier",
            "retry.budget.cost",
            "hedge.budget.cost",
        ]
    );
    assert!(policy.meta.normalization.changed());
    let default = Policy::default_for(key());
    assert_eq!(policy.retry, default.retry, "the default envelope");
    assert_eq!(policy.hedge, default.hedge);
    assert_eq!(policy.circuit, default.circuit);
    assert_eq!(policy.retry.max_attempts, 3);
    assert_eq!((policy.retry.initial_backoff, policy.retry.max_backoff), (ms(10), ms(250)));
    assert_eq!(policy.retry.backoff_multiplier, 2.0);
    assert_eq!(policy.retry.jitter, Jitter::None);
    assert_eq!((policy.retry.budget.cost, policy.hedge.budget.cost), (1, 1));
    assert_eq!(policy.meta.source, PolicySource::Unknown, "normalization never touches the source");
    assert!(policy.is_normalized());
}

// Spec §3.1: normalizing the default policy changes nothing.
#[test]
fn default_policy_is_a_fixed_point() {
    let default = Policy::default_for(key());
    let normalized = default.clone().normalized();
    assert!(!normalized.meta.normalization.changed());
    assert_eq!(normalized, default);
}

// Spec §4: "Initial 60 s + max 90 s → max clamped to 30 s by rule 6, then
// raised back to 60 s by rule 7 (only `retry.max_backoff` recorded)".
#[test]
fn initial_60s_max_90s_gives_max_60s_recording_only_max_backoff() {
    let mut policy = Policy::default_for(key());
    policy.retry.initial_backoff = Duration::from_secs(60);
    policy.retry.max_backoff = Duration::from_secs(90);
    policy.normalize();
    assert_eq!(policy.retry.initial_backoff, Duration::from_secs(60), "initial backoff has no ceiling");
    assert_eq!(policy.retry.max_backoff, Duration::from_secs(60));
    assert_eq!(policy.meta.normalization.changed_fields(), ["retry.max_backoff"]);
}

// Spec §4's rule table, one policy breaking every rule, fields recorded in
// rule order.
#[test]
fn every_rule_in_order() {
    let mut policy = Policy::zero(key());
    policy.retry.max_attempts = 50;
    policy.retry.initial_backoff = Duration::from_micros(500);
    policy.retry.max_backoff = Duration::from_secs(31);
    policy.retry.backoff_multiplier = 0.5;
    policy.retry.timeout_per_attempt = Duration::from_micros(10);
    policy.retry.overall_timeout = Duration::from_nanos(1);
    policy.hedge.enabled = true;
    policy.hedge.max_hedges = 5;
    policy.hedge.delay = ms(1);
    policy.circuit.enabled = true;
    policy.circuit.threshold = 0;
    policy.circuit.cooldown = ms(5);
    policy.normalize();
    let r = &policy.retry;
    assert_eq!(r.max_attempts, 10);
    assert_eq!(r.initial_backoff, ms(1));
    assert_eq!(r.max_backoff, Duration::from_secs(30));
    assert_eq!(r.backoff_multiplier, 1.0);
    assert_eq!(r.timeout_per_attempt, ms(1));
    assert_eq!(r.overall_timeout, ms(1));
    assert_eq!((r.budget.cost, policy.hedge.budget.cost), (1, 1));
    assert_eq!((policy.hedge.max_hedges, policy.hedge.delay), (3, ms(10)));
    assert_eq!((policy.circuit.threshold, policy.circuit.cooldown), (5, ms(100)));
    assert_eq!(
        policy.meta.normalization.changed_fields(),
        [
            "retry.max_attempts",
            "retry.initial_backoff",
            "retry.max_backoff",
            "retry.backoff_multiplier",
            "retry.timeout_per_attempt",
            "retry.overall_timeout",
            "retry.budget.cost",
            "hedge.budget.cost",
            "hedge.max_hedges",
            "hedge.hedge_delay",
            "circuit.threshold",
            "circuit.cooldown",
        ]
    );

    // The remaining fill-in branches.
    let mut policy = Policy::default_for(key());
    policy.retry.backoff_multiplier = 11.0;
    policy.retry.max_backoff = ms(5);
    policy.hedge.enabled = true;
    policy.normalize();
    assert_eq!(policy.retry.backoff_multiplier, 10.0);
    assert_eq!(policy.retry.max_backoff, ms(10), "raised to the initial backoff");
    assert_eq!((policy.hedge.max_hedges, policy.hedge.delay), (2, ms(200)));
    assert_eq!(
        policy.meta.normalization.changed_fields(),
        ["retry.max_backoff", "retry.backoff_multiplier", "hedge.max_hedges", "hedge.hedge_delay"]
    );
}

// Spec §12.3 step 5: the executor normalizes whatever a provider returns.
// A provider that starts from `Policy::default_for` (or a built policy) and
// then sets a field out of range must still be clamped: max_attempts 50
// runs 10 attempts, a zero initial backoff sleeps 10 ms.
#[tokio::test(start_paused = true)]
async fn executor_normalizes_a_modified_default_policy_from_a_provider() {
    let mut policy = Policy::default_for(PolicyKey::parse(KEY));
    policy.retry.max_attempts = 50;
    policy.retry.initial_backoff = Duration::ZERO;
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder().provider(RawProvider(Arc::new(policy))).sleeper(sleeper.clone()).build();
    let calls = Counter::new();
    let _ = executor
        .call(KEY, || {
            let n = calls.hit();
            async move { Err::<(), _>(TestError::Failed(n)) }
        })
        .await;
    assert_eq!(calls.get(), 10, "max_attempts is clamped to {}", limits::MAX_ATTEMPTS);
    assert_eq!(sleeper.sleeps().first(), Some(&ms(10)), "a zero initial backoff becomes 10 ms");
}

// The same provider path with an unnormalized (`Policy::zero`-based)
// policy is clamped.
#[tokio::test(start_paused = true)]
async fn executor_normalizes_an_unnormalized_policy_from_a_provider() {
    let mut policy = Policy::zero(PolicyKey::parse(KEY));
    policy.retry.max_attempts = 50;
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder().provider(RawProvider(Arc::new(policy))).sleeper(sleeper.clone()).build();
    let calls = Counter::new();
    let _ = executor
        .call(KEY, || {
            let n = calls.hit();
            async move { Err::<(), _>(TestError::Failed(n)) }
        })
        .await;
    assert_eq!(calls.get(), 10);
    assert_eq!(sleeper.sleeps().first(), Some(&ms(10)));
}

// ---------------------------------------------------------------------------
// Property tests.

fn any_duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::MAX),
        (0u64..2_000_000).prop_map(Duration::from_nanos),
        (0u64..120_000).prop_map(Duration::from_millis),
        any::<u64>().prop_map(Duration::from_nanos),
        any::<u64>().prop_map(Duration::from_secs),
    ]
}

fn any_multiplier() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        -20.0..20.0f64,
        any::<f64>(),
    ]
}

fn any_jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
}

prop_compose! {
    fn any_retry()(
        attempts in prop_oneof![Just(0u32), 0u32..20, any::<u32>()],
        initial in any_duration(),
        max in any_duration(),
        multiplier in any_multiplier(),
        jitter in any_jitter(),
        per_attempt in any_duration(),
        overall in any_duration(),
        cost in prop_oneof![Just(0u32), any::<u32>()],
    ) -> (u32, Duration, Duration, f64, Jitter, Duration, Duration, u32) {
        (attempts, initial, max, multiplier, jitter, per_attempt, overall, cost)
    }
}

prop_compose! {
    fn any_policy()(
        retry in any_retry(),
        hedge in (any::<bool>(), prop_oneof![Just(0u32), 0u32..6, any::<u32>()], any_duration(), any::<bool>(), prop_oneof![Just(0u32), any::<u32>()]),
        circuit in (any::<bool>(), prop_oneof![Just(0u32), any::<u32>()], any_duration()),
        id in proptest::option::of("[a-z0-9-]{0,8}"),
        classifier in "[a-z ]{0,6}",
    ) -> Policy {
        let mut p = Policy::zero(PolicyKey::parse_owned("prop.Key"));
        p.id = id.map(Arc::from);
        let (attempts, initial, max, multiplier, jitter, per_attempt, overall, cost) = retry;
        p.retry.max_attempts = attempts;
        p.retry.initial_backoff = initial;
        p.retry.max_backoff = max;
        p.retry.backoff_multiplier = multiplier;
        p.retry.jitter = jitter;
        p.retry.timeout_per_attempt = per_attempt;
        p.retry.overall_timeout = overall;
        p.retry.classifier = classifier.into();
        p.retry.budget.name = "rb".into();
        p.retry.budget.cost = cost;
        let (enabled, max_hedges, delay, cancel, hedge_cost) = hedge;
        p.hedge.enabled = enabled;
        p.hedge.max_hedges = max_hedges;
        p.hedge.delay = delay;
        p.hedge.trigger = "p90".into();
        p.hedge.cancel_on_first_terminal = cancel;
        p.hedge.budget.cost = hedge_cost;
        let (enabled, threshold, cooldown) = circuit;
        p.circuit.enabled = enabled;
        p.circuit.threshold = threshold;
        p.circuit.cooldown = cooldown;
        p
    }
}

const KNOWN_FIELDS: [&str; 12] = [
    "retry.max_attempts",
    "retry.initial_backoff",
    "retry.max_backoff",
    "retry.backoff_multiplier",
    "retry.timeout_per_attempt",
    "retry.overall_timeout",
    "retry.budget.cost",
    "hedge.budget.cost",
    "hedge.max_hedges",
    "hedge.hedge_delay",
    "circuit.threshold",
    "circuit.cooldown",
];

fn timeout_in_range(d: Duration) -> bool {
    d.is_zero() || d >= limits::MIN_TIMEOUT
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    // Every field lands inside its clamp.
    #[test]
    fn every_field_lands_inside_its_clamp(input in any_policy()) {
        let p = input.clone().normalized();
        let r = &p.retry;
        prop_assert!((1..=limits::MAX_ATTEMPTS).contains(&r.max_attempts));
        prop_assert!(r.initial_backoff >= limits::MIN_INITIAL_BACKOFF);
        prop_assert!(r.max_backoff >= r.initial_backoff);
        prop_assert!(r.max_backoff <= limits::MAX_BACKOFF.max(r.initial_backoff));
        prop_assert!(r.backoff_multiplier.is_finite());
        prop_assert!((limits::MIN_MULTIPLIER..=limits::MAX_MULTIPLIER).contains(&r.backoff_multiplier));
        prop_assert!(timeout_in_range(r.timeout_per_attempt));
        prop_assert!(timeout_in_range(r.overall_timeout));
        prop_assert!(r.budget.cost >= 1);
        prop_assert!(p.hedge.budget.cost >= 1);
        if p.hedge.enabled {
            prop_assert!((1..=limits::MAX_HEDGES).contains(&p.hedge.max_hedges));
            prop_assert!(p.hedge.delay >= limits::MIN_HEDGE_DELAY);
        } else {
            prop_assert_eq!((p.hedge.max_hedges, p.hedge.delay), (input.hedge.max_hedges, input.hedge.delay));
        }
        if p.circuit.enabled {
            prop_assert!(p.circuit.threshold >= 1);
            prop_assert!(p.circuit.cooldown >= limits::MIN_CIRCUIT_COOLDOWN);
        } else {
            prop_assert_eq!(&p.circuit, &input.circuit);
        }
        // Never touched (spec §4).
        prop_assert_eq!(&p.key, &input.key);
        prop_assert_eq!(&p.id, &input.id);
        prop_assert_eq!(&r.classifier, &input.retry.classifier);
        prop_assert_eq!(&r.budget.name, &input.retry.budget.name);
        prop_assert_eq!(r.jitter, input.retry.jitter);
        prop_assert_eq!(&p.hedge.trigger, &input.hedge.trigger);
        prop_assert_eq!(p.hedge.cancel_on_first_terminal, input.hedge.cancel_on_first_terminal);
        prop_assert_eq!((p.hedge.enabled, p.circuit.enabled), (input.hedge.enabled, input.circuit.enabled));
        prop_assert_eq!(p.meta.source, input.meta.source);
        prop_assert!(p.is_normalized());
    }

    // Every value that changed is recorded, fields are known and listed once.
    #[test]
    fn changed_fields_cover_every_change(input in any_policy()) {
        let p = input.clone().normalized();
        let fields = p.meta.normalization.changed_fields();
        for field in fields {
            prop_assert!(KNOWN_FIELDS.contains(field), "unknown field {}", field);
        }
        for (i, field) in fields.iter().enumerate() {
            prop_assert!(!fields[i + 1..].contains(field), "{} listed twice", field);
        }
        let (r, q) = (&p.retry, &input.retry);
        let changes = [
            (r.max_attempts != q.max_attempts, "retry.max_attempts"),
            (r.initial_backoff != q.initial_backoff, "retry.initial_backoff"),
            (r.max_backoff != q.max_backoff, "retry.max_backoff"),
            (r.backoff_multiplier.to_bits() != q.backoff_multiplier.to_bits(), "retry.backoff_multiplier"),
            (r.timeout_per_attempt != q.timeout_per_attempt, "retry.timeout_per_attempt"),
            (r.overall_timeout != q.overall_timeout, "retry.overall_timeout"),
            (r.budget.cost != q.budget.cost, "retry.budget.cost"),
            (p.hedge.budget.cost != input.hedge.budget.cost, "hedge.budget.cost"),
            (p.hedge.max_hedges != input.hedge.max_hedges, "hedge.max_hedges"),
            (p.hedge.delay != input.hedge.delay, "hedge.hedge_delay"),
            (p.circuit.threshold != input.circuit.threshold, "circuit.threshold"),
            (p.circuit.cooldown != input.circuit.cooldown, "circuit.cooldown"),
        ];
        for (changed, field) in changes {
            if changed {
                prop_assert!(fields.contains(&field), "{} changed but was not recorded: {:?}", field, fields);
            }
        }
        prop_assert_eq!(p.meta.normalization.changed(), !fields.is_empty());
    }

    // Idempotence: normalizing a normalized policy changes no field and no
    // changed_fields.
    #[test]
    fn normalize_is_idempotent(input in any_policy()) {
        let once = input.normalized();
        let twice = once.clone().normalized();
        prop_assert_eq!(&twice, &once);
        prop_assert_eq!(twice.meta.normalization.changed_fields(), once.meta.normalization.changed_fields());
    }

    // A policy already inside every clamp is left alone and nothing is recorded.
    #[test]
    fn in_range_policies_are_untouched(
        attempts in 1u32..=limits::MAX_ATTEMPTS,
        initial_ms in 1u64..=30_000,
        extra_ms in 0u64..=30_000,
        multiplier in limits::MIN_MULTIPLIER..=limits::MAX_MULTIPLIER,
        per_attempt_ms in prop_oneof![Just(0u64), 1u64..100_000],
        hedges in 1u32..=limits::MAX_HEDGES,
        delay_ms in 10u64..10_000,
        threshold in 1u32..100,
        cooldown_ms in 100u64..100_000,
    ) {
        let mut p = Policy::default_for(key());
        p.retry.max_attempts = attempts;
        p.retry.initial_backoff = ms(initial_ms);
        p.retry.max_backoff = ms((initial_ms + extra_ms).min(30_000));
        p.retry.backoff_multiplier = multiplier;
        p.retry.timeout_per_attempt = ms(per_attempt_ms);
        p.hedge.enabled = true;
        p.hedge.max_hedges = hedges;
        p.hedge.delay = ms(delay_ms);
        p.circuit.enabled = true;
        p.circuit.threshold = threshold;
        p.circuit.cooldown = ms(cooldown_ms);
        let normalized = p.clone().normalized();
        prop_assert_eq!(normalized.meta.normalization.changed_fields(), &[] as &[&str]);
        prop_assert_eq!(normalized, p);
    }
}

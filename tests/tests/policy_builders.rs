//! Section A of the conformance checklist (policy builders and presets),
//! the key parsing table of the behaviour spec §2.1/§2.2, and
//! `policy::validate_key`.
#![allow(missing_docs)]
#![allow(clippy::float_cmp, reason = "multipliers are set and compared exactly")]

use std::time::Duration;

use recourse::PolicyKey;
use recourse::policy::{Jitter, KeyError, Policy, validate_key};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// A1
#[test]
fn a1_builder_sets_attempts_backoff_classifier_and_key() {
    let policy = Policy::builder("test.key").max_attempts(5).initial_backoff(ms(100)).classifier("custom").build();
    assert_eq!(policy.retry.max_attempts, 5);
    assert_eq!(policy.retry.initial_backoff, ms(100));
    assert_eq!(policy.retry.classifier, "custom");
    assert_eq!(policy.key.to_string(), "test.key");
    assert_eq!(policy.key, PolicyKey::new("test", "key"));
    // Untouched fields keep the defaults; a built policy is normalized.
    assert_eq!(policy.retry.max_backoff, ms(250));
    assert_eq!(policy.retry.backoff_multiplier, 2.0);
    assert_eq!(policy.retry.jitter, Jitter::None);
    assert!(policy.is_normalized());
    assert!(!policy.meta.normalization.changed());
}

// A2
#[test]
fn a2_unusable_jitter_discards_every_setting_and_falls_back_to_default() {
    let broken = Policy::builder("test.broken").max_attempts(7).initial_backoff(ms(40)).jitter_name("invalid-jitter");

    let error = broken.clone().try_build().unwrap_err();
    assert_eq!(error.field, "retry.jitter");
    assert_eq!(error.value, "invalid-jitter");
    assert_eq!(error.to_string(), r#"recourse: invalid policy config: retry.jitter="invalid-jitter""#);

    let policy = broken.build();
    assert_eq!(policy.retry.max_attempts, 3);
    assert_eq!(policy.retry.jitter, Jitter::None);
    assert_eq!(policy.retry.initial_backoff, ms(10), "all options are discarded, not only the jitter");
    let default = Policy::default_for(PolicyKey::parse("test.broken"));
    assert_eq!(
        (&policy.key, &policy.retry, &policy.hedge, &policy.circuit),
        (&default.key, &default.retry, &default.hedge, &default.circuit)
    );
    assert!(policy.is_normalized());
}

#[test]
fn a2_jitter_names_parse_and_setting_order_does_not_rescue_a_bad_name() {
    assert_eq!("none".parse::<Jitter>().unwrap(), Jitter::None);
    assert_eq!("".parse::<Jitter>().unwrap(), Jitter::None, "empty means none, as Go normalizes it");
    assert_eq!("full".parse::<Jitter>().unwrap(), Jitter::Full);
    assert_eq!("equal".parse::<Jitter>().unwrap(), Jitter::Equal);
    assert_eq!(
        "weird".parse::<Jitter>().unwrap_err().to_string(),
        r#"recourse: invalid policy config: retry.jitter="weird""#
    );
    // A later valid jitter does not clear the earlier unusable setting.
    let policy = Policy::builder("test.broken").jitter_name("bogus").jitter_name("full").max_attempts(9).build();
    assert_eq!(policy.retry.max_attempts, 3);
    assert_eq!(policy.retry.jitter, Jitter::None);
    // Valid names are applied.
    assert_eq!(Policy::builder("t.j").jitter_name("equal").build().retry.jitter, Jitter::Equal);
}

// A3
#[test]
fn a3_http_defaults_preset() {
    let policy = Policy::builder("test.http").http_defaults().build();
    assert_eq!(policy.retry.classifier, "http");
    assert_eq!(policy.retry.backoff_multiplier, 2.0);
    assert_eq!(policy.retry.max_attempts, 3);
    // The rest of the preset table (spec §5).
    assert_eq!(policy.retry.initial_backoff, ms(100));
    assert_eq!(policy.retry.max_backoff, Duration::from_secs(2));
    assert_eq!(policy.retry.jitter, Jitter::Full);
    assert_eq!(policy.retry.timeout_per_attempt, Duration::from_secs(10));
    assert_eq!(policy.retry.overall_timeout, Duration::from_secs(30));
    assert!(!policy.hedge.enabled);
}

// A4
#[test]
fn a4_low_latency_defaults_enable_hedging() {
    let policy = Policy::builder("test.fast").low_latency_defaults().build();
    assert!(policy.hedge.enabled);
    assert_eq!(policy.retry.max_attempts, 2);
    assert_eq!(policy.hedge.max_hedges, 2);
    assert_eq!(policy.hedge.delay, ms(100));
    assert_eq!(policy.retry.initial_backoff, ms(10));
    assert_eq!(policy.retry.max_backoff, ms(50));
    assert_eq!(policy.retry.jitter, Jitter::Equal);
    assert_eq!(policy.retry.timeout_per_attempt, ms(500));
    assert_eq!(policy.retry.overall_timeout, Duration::from_secs(1));
    assert!(!policy.meta.normalization.changed(), "presets are already inside every clamp");
}

// A5
#[test]
fn a5_exponential_backoff_preset() {
    let policy = Policy::builder("test.exp").exponential_backoff(ms(50), Duration::from_secs(5)).build();
    assert_eq!(policy.retry.initial_backoff, ms(50));
    assert_eq!(policy.retry.max_backoff, Duration::from_secs(5));
    assert_eq!(policy.retry.jitter, Jitter::Equal);
    assert_eq!(policy.retry.backoff_multiplier, 2.0);
}

// Spec §5: the remaining presets, and "fields not listed keep their prior value".
#[test]
fn a5_other_presets_match_the_table_and_keep_unlisted_fields() {
    let db = Policy::builder("t.db").database_defaults().build();
    assert_eq!(
        (db.retry.max_attempts, db.retry.initial_backoff, db.retry.max_backoff, db.retry.jitter),
        (3, ms(100), Duration::from_secs(5), Jitter::Equal)
    );
    assert_eq!(
        (db.retry.timeout_per_attempt, db.retry.overall_timeout),
        (Duration::from_secs(30), Duration::from_secs(60))
    );

    let job = Policy::builder("t.job").timeout_per_attempt(Duration::from_secs(7)).background_job_defaults().build();
    assert_eq!(
        (job.retry.max_attempts, job.retry.initial_backoff, job.retry.max_backoff, job.retry.jitter),
        (5, Duration::from_secs(1), Duration::from_secs(30), Jitter::Full)
    );
    assert_eq!(job.retry.overall_timeout, Duration::from_secs(300));
    assert_eq!(job.retry.timeout_per_attempt, Duration::from_secs(7), "background preset leaves it unchanged");

    let constant = Policy::builder("t.c").jitter(Jitter::Full).constant_backoff(ms(30)).build();
    assert_eq!((constant.retry.initial_backoff, constant.retry.max_backoff), (ms(30), ms(30)));
    assert_eq!(constant.retry.backoff_multiplier, 1.0);
    assert_eq!(constant.retry.jitter, Jitter::None);

    // Later settings win over a preset.
    let tuned = Policy::builder("t.h").http_defaults().max_attempts(6).classifier("mine").build();
    assert_eq!(tuned.retry.max_attempts, 6);
    assert_eq!(tuned.retry.classifier, "mine");
}

// Spec §5 hedge options.
#[test]
fn a4_hedge_options_enable_hedging_and_fill_in_defaults() {
    let policy = Policy::builder("t.h").enable_hedging().build();
    assert!(policy.hedge.enabled);
    assert_eq!((policy.hedge.max_hedges, policy.hedge.delay), (2, ms(200)));

    let policy = Policy::builder("t.h").max_hedges(3).build();
    assert!(policy.hedge.enabled, "max_hedges enables hedging");
    assert_eq!(policy.hedge.max_hedges, 3);

    let policy = Policy::builder("t.h").hedge_delay(ms(50)).enable_hedging().build();
    assert_eq!(policy.hedge.delay, ms(50), "enable_hedging only fills a zero delay");

    let policy = Policy::builder("t.h").hedge_trigger("p90").build();
    assert!(policy.hedge.enabled);
    assert_eq!(policy.hedge.trigger, "p90");

    let policy = Policy::builder("t.h").hedge_budget("hb").hedge_cancel_on_first_terminal(true).build();
    assert!(!policy.hedge.enabled, "hedge budget / cancel flag do not enable hedging");
    assert_eq!(policy.hedge.budget.name, "hb");
    assert_eq!(policy.hedge.budget.cost, 1);
    assert!(policy.hedge.cancel_on_first_terminal);

    let policy = Policy::builder("t.b").budget_with_cost("rb", 4).id("rev-7").build();
    assert_eq!((&*policy.retry.budget.name, policy.retry.budget.cost), ("rb", 4));
    assert_eq!(policy.id.as_deref(), Some("rev-7"));
}

// Spec §2.1: the verified ParseKey table (also checklist B9).
#[test]
fn key_parsing_table() {
    let table: &[(&'static str, &str, &str)] = &[
        ("service.method", "service", "method"),
        (" service.method ", "service", "method"),
        (" a . b ", "a", "b"),
        ("a.b.c", "a", "b.c"),
        ("method", "", "method"),
        ("service.", "", "service."),
        ("a. ", "", "a."),
        (".", "", "."),
        (".name", "", "name"),
        ("", "", ""),
        ("   ", "", ""),
    ];
    for &(input, namespace, name) in table {
        for key in [PolicyKey::parse(input), PolicyKey::parse_owned(input), PolicyKey::from(input.to_owned())] {
            assert_eq!((key.namespace(), key.name()), (namespace, name), "parsing {input:?}");
        }
        assert_eq!(PolicyKey::from(input), PolicyKey::new(namespace, name));
    }
}

// Spec §2.2: rendering.
#[test]
fn key_rendering() {
    assert_eq!(PolicyKey::new("svc", "Op").to_string(), "svc.Op");
    assert_eq!(PolicyKey::new("", "Op").to_string(), "Op");
    assert_eq!(PolicyKey::new("svc", "").to_string(), "svc");
    assert_eq!(PolicyKey::default().to_string(), "");
    assert!(PolicyKey::default().is_empty());
    assert!(!PolicyKey::new("svc", "").is_empty());
    assert_eq!(PolicyKey::parse(".name").to_string(), "name", "`.name` round-trips to `name`");
    assert_eq!(PolicyKey::from_static("a", "b.c").to_string(), "a.b.c");
    assert_eq!(format!("{:?}", PolicyKey::parse("svc.Op")), r#"PolicyKey("svc.Op")"#);
}

#[test]
fn validate_key_accepts_well_formed_keys() {
    let long_ok = format!("svc.{}", "a".repeat(124));
    assert_eq!(long_ok.len(), 128);
    for key in ["user-service.GetUser", "queue.orders.Publish", "a.b", "svc_1.Op-2", "http.GetUser", long_ok.as_str()] {
        assert_eq!(validate_key(key), Ok(()), "{key:?} should be valid");
        // A valid key parses into exactly its two parts and renders back unchanged.
        let parsed = PolicyKey::parse_owned(key);
        assert!(!parsed.namespace().is_empty() && !parsed.name().is_empty());
        assert_eq!(parsed.to_string(), key);
    }
}

#[test]
fn validate_key_rejects_malformed_keys_with_the_right_error() {
    let too_long = format!("svc.{}", "a".repeat(125));
    assert_eq!(too_long.len(), 129);
    let cases: Vec<(&str, KeyError)> = vec![
        ("", KeyError::Empty),
        ("   ", KeyError::Empty),
        ("GetUser", KeyError::MissingDot("GetUser".into())),
        (".GetUser", KeyError::EmptyPart(".GetUser".into())),
        ("svc.", KeyError::EmptyPart("svc.".into())),
        ("a.b.", KeyError::EmptyPart("a.b.".into())),
        ("users.get/42", KeyError::BadChar { key: "users.get/42".into(), found: '/' }),
        (" svc.Op", KeyError::BadChar { key: " svc.Op".into(), found: ' ' }),
        ("svc.Op ", KeyError::BadChar { key: "svc.Op ".into(), found: ' ' }),
        ("svc.Get?id=1", KeyError::BadChar { key: "svc.Get?id=1".into(), found: '?' }),
        ("svc.Gét", KeyError::BadChar { key: "svc.Gét".into(), found: 'é' }),
        (too_long.as_str(), KeyError::TooLong(too_long.clone())),
    ];
    for (key, expected) in cases {
        assert_eq!(validate_key(key), Err(expected), "validating {key:?}");
    }
    assert_eq!(
        validate_key("GetUser").unwrap_err().to_string(),
        r#"policy key `GetUser` has no `.`; expected "service.Operation""#
    );
}

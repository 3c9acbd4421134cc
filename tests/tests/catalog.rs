//! `recourse::catalog!()` at start-up: the crate's checked catalog is the
//! executor's base layer, and `try_build()` names every classifier, custom
//! budget and hedge trigger it declares that the builder did not register.
#![allow(missing_docs)]

mod support;

use recourse::classify::Outcome;
use recourse::hedge::FixedDelay;
use recourse::policy::{Policy, PolicyKey, PolicySource};
use recourse::{Executor, classify::ErrorView};
use support::CountingBudget;

fn never(_: &dyn ErrorView) -> Outcome {
    Outcome::non_retryable()
}

#[test]
fn try_build_names_every_unregistered_declared_name() {
    let catalog = recourse::catalog!();
    assert_eq!(catalog.classifiers(), ["test_never"]);
    assert_eq!(catalog.custom_budgets(), ["tenant_quota"]);
    assert_eq!(catalog.triggers(), ["tests_tail"]);

    let error = Executor::builder().catalog(catalog).try_build().expect_err("nothing is registered");
    assert_eq!(
        error.missing(),
        [("classifier", "test_never"), ("budget", "tenant_quota"), ("hedge trigger", "tests_tail")]
    );
    let message = error.to_string();
    assert!(message.starts_with("recourse.toml declares names that the executor does not register"), "{message}");
    assert!(
        message.contains("classifier \"test_never\", budget \"tenant_quota\", hedge trigger \"tests_tail\""),
        "{message}"
    );

    // One registered, two still missing.
    let error = Executor::builder().catalog(catalog).classifier("test_never", never).try_build().unwrap_err();
    assert_eq!(error.missing(), [("budget", "tenant_quota"), ("hedge trigger", "tests_tail")]);

    let executor = Executor::builder()
        .catalog(catalog)
        .classifier("test_never", never)
        .budget("tenant_quota", CountingBudget::new())
        .trigger("tests_tail", FixedDelay::default())
        .try_build();
    assert!(executor.is_ok(), "every declared name is registered");
}

#[test]
fn build_panics_with_the_same_message() {
    let panic = std::panic::catch_unwind(|| Executor::builder().catalog(recourse::catalog!()).build())
        .expect_err("build() panics on a missing registration");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("classifier \"test_never\""), "{message}");
}

#[test]
fn the_catalog_is_the_executors_base_layer() {
    let full = || {
        Executor::builder()
            .catalog(recourse::catalog!())
            .classifier("test_never", never)
            .budget("tenant_quota", CountingBudget::new())
            .trigger("tests_tail", FixedDelay::default())
    };
    let key = PolicyKey::parse("budgets.Custom");
    let policy = full().build().policy_for(&key).unwrap();
    assert_eq!(policy.meta.source, PolicySource::Catalog, "a string key finds the catalog's policy");
    assert_eq!(policy.retry.max_attempts, 2);
    let policy =
        full().policy(Policy::builder("budgets.Custom").max_attempts(5).build()).build().policy_for(&key).unwrap();
    assert_eq!(policy.retry.max_attempts, 5, "the builder's policies come first");
    let unknown = full().build().policy_for(&PolicyKey::parse("not.Declared")).unwrap();
    assert_eq!(unknown.meta.source, PolicySource::Default);
}

#[test]
fn the_catalog_check_knows_exactly_the_built_ins_an_executor_registers() {
    let (classifiers, budgets, triggers): (&[&str], &[&str], &[&str]) = recourse::__private::__builtin_names!();
    let sorted = |names: &[&str]| {
        let mut names: Vec<String> = names.iter().map(ToString::to_string).collect();
        names.sort();
        names
    };
    assert_eq!(sorted(classifiers), recourse::classify::Registry::with_builtins().names());
    assert_eq!(sorted(budgets), recourse::budget::Registry::with_builtins().names());
    assert_eq!(sorted(triggers), recourse::hedge::Registry::with_builtins().names());
}

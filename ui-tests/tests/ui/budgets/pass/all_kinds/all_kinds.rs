//! Every budget kind, declared in the catalog beside this file: each
//! `#[recourse]` function embeds the declarations of the budgets its
//! policy names, `catalog!()` lists them all, and the executor creates the
//! local kinds on first use with nothing registered.
use std::time::Duration;

use recourse::policy::spec::{BudgetDecl, RedisUnavailable};
use recourse::{Executor, recourse};

#[recourse(policy = "kinds.Percentage")]
async fn percentage() -> Result<u8, std::io::Error> {
    Ok(1)
}

#[recourse(policy = "kinds.Throttled")]
async fn throttled() -> Result<u8, std::io::Error> {
    Ok(2)
}

#[recourse(policy = "kinds.Quota")]
async fn quota() -> Result<u8, std::io::Error> {
    Ok(3)
}

#[recourse(policy = "kinds.Adaptive")]
async fn adaptive() -> Result<u8, std::io::Error> {
    Ok(4)
}

#[recourse(policy = "kinds.Fleet")]
async fn fleet() -> Result<u8, std::io::Error> {
    Ok(5)
}

fn main() {
    let catalog = recourse::catalog!();
    let decl = |name: &str| catalog.budgets().iter().find(|(n, _)| *n == name).map(|(_, decl)| *decl);
    let kinds: Vec<(&str, &str)> = catalog.budgets().iter().map(|(name, decl)| (*name, decl.kind())).collect();
    assert_eq!(
        kinds,
        [
            ("a6", "retry_throttling"),
            ("aws", "retry_quota"),
            ("aws_defaults", "retry_quota"),
            ("closed", "redis_token_bucket"),
            ("envoy", "concurrency"),
            ("envoy_defaults", "concurrency"),
            ("fleet", "redis_token_bucket"),
            ("fleet_defaults", "redis_token_bucket"),
            ("local", "token_bucket"),
            ("open", "unlimited"),
            ("pct", "percentage"),
            ("pct_defaults", "percentage"),
            ("sre", "adaptive_throttling"),
            ("sre_defaults", "adaptive_throttling"),
        ]
    );
    assert_eq!(
        decl("pct_defaults"),
        Some(BudgetDecl::Percentage { ratio: 0.2, min_per_sec: 10, ttl: Duration::from_secs(10) })
    );
    assert_eq!(
        decl("aws_defaults"),
        Some(BudgetDecl::RetryQuota { capacity: 500, retry_cost: 5, timeout_cost: 10, success_increment: 1 })
    );
    assert_eq!(decl("sre_defaults"), Some(BudgetDecl::AdaptiveThrottling { k: 2.0, window: Duration::from_secs(120) }));
    assert_eq!(decl("envoy_defaults"), Some(BudgetDecl::Concurrency { ratio: 0.2, min_concurrency: 3 }));
    assert_eq!(
        decl("fleet_defaults"),
        Some(BudgetDecl::RedisTokenBucket {
            url_env: "RECOURSE_UI_FLEET_REDIS_URL",
            key: "recourse:budget:fleet_defaults",
            capacity: 10,
            refill_per_sec: 1.5,
            lease: 10,
            lease_ttl: Duration::from_secs(1),
            timeout: Duration::from_millis(100),
            on_unavailable: RedisUnavailable::Fallback,
            fallback_capacity: 10,
            fallback_refill_per_sec: 1.5,
        })
    );

    // Handed to an executor, the Redis buckets are checked at start-up:
    // this build has no `redis` feature.
    let error = Executor::builder().catalog(catalog).try_build().expect_err("no Redis support in this build");
    assert!(error.missing().is_empty(), "{error}");
    let unusable: Vec<&str> = error.unusable().iter().map(|(name, _)| *name).collect();
    assert_eq!(unusable, ["closed", "fleet", "fleet_defaults"], "{error}");
    assert!(error.to_string().contains("enable recourse's `redis` feature"), "{error}");

    // The local kinds need nothing registered; the Redis one, unusable
    // here, leaves the call to the missing-budget mode (deny), not a panic.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
    runtime.block_on(async {
        assert_eq!(percentage().await.unwrap(), 1);
        assert_eq!(throttled().await.unwrap(), 2);
        assert_eq!(quota().await.unwrap(), 3);
        assert_eq!(adaptive().await.unwrap(), 4);
        let denied = fleet().await.unwrap_err();
        assert!(denied.to_string().contains("budget"), "{denied}");
    });
}

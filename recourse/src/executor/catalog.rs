//! Policies compiled from `recourse.toml`: the constant data `#[recourse]`
//! and `key!` embed in a call site, and the budgets its declarations
//! describe.

use std::sync::Arc;

use crate::budget::{
    AdaptiveThrottling, Budget, ConcurrencyBudget, PercentageBudget, RetryQuota, RetryThrottling, TokenBucket,
    Unlimited,
};
use crate::policy::spec::{BudgetDecl, PolicySpec};
use crate::policy::{Policy, PolicyKey, PolicySource};

/// A policy from `recourse.toml`, checked at compile time and embedded in
/// the call site as constant data, with the declarations of the budgets it
/// names (created on first use unless registered in code).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    pub spec: PolicySpec<&'static str>,
    pub budgets: &'static [(&'static str, BudgetDecl<&'static str>)],
}

impl CatalogEntry {
    /// The policy it describes for `key`, normalized, source `catalog`.
    pub fn to_policy(&self, key: PolicyKey) -> Policy {
        self.spec.to_policy(key, PolicySource::Catalog)
    }
}

/// The budget a catalog declaration describes; `None` for one registered
/// in code (`kind = "custom"`), and for a `redis_token_bucket` this build
/// or this environment cannot create (no `redis` feature, no URL in the
/// variable it names, a URL that does not parse): the missing-budget
/// failure mode then decides, and
/// [`try_build`](super::ExecutorBuilder::try_build) reports why at
/// start-up. Never panics.
pub(crate) fn declared_budget(decl: &BudgetDecl<&'static str>) -> Option<Arc<dyn Budget>> {
    Some(match *decl {
        BudgetDecl::Unlimited => Arc::new(Unlimited),
        BudgetDecl::TokenBucket { capacity, refill_per_sec } => {
            Arc::new(TokenBucket::new(u64::from(capacity), refill_per_sec))
        }
        BudgetDecl::Percentage { ratio, min_per_sec, ttl } => Arc::new(PercentageBudget::new(ratio, min_per_sec, ttl)),
        BudgetDecl::RetryThrottling { max_tokens, token_ratio } => {
            Arc::new(RetryThrottling::new(max_tokens, token_ratio))
        }
        BudgetDecl::RetryQuota { capacity, retry_cost, timeout_cost, success_increment } => Arc::new(
            RetryQuota::new(capacity).with_costs(retry_cost, timeout_cost).with_success_increment(success_increment),
        ),
        BudgetDecl::AdaptiveThrottling { k, window } => Arc::new(AdaptiveThrottling::new(k, window)),
        BudgetDecl::Concurrency { ratio, min_concurrency } => Arc::new(ConcurrencyBudget::new(ratio, min_concurrency)),
        BudgetDecl::RedisTokenBucket { .. } => return redis_bucket(decl, |name| std::env::var(name)).ok(),
        BudgetDecl::Custom => return None,
    })
}

/// A `redis_token_bucket` declaration's bucket, its URL read from the
/// variable it names through `var`; or why it cannot be created here.
#[cfg(feature = "redis")]
pub(crate) fn redis_bucket(
    decl: &BudgetDecl<&'static str>,
    var: impl FnOnce(&str) -> Result<String, std::env::VarError>,
) -> Result<Arc<dyn Budget>, String> {
    use crate::budget::{OnUnavailable, RedisTokenBucket};
    use crate::policy::spec::RedisUnavailable;

    let BudgetDecl::RedisTokenBucket {
        url_env,
        key,
        capacity,
        refill_per_sec,
        lease,
        lease_ttl,
        timeout,
        on_unavailable,
        fallback_capacity,
        fallback_refill_per_sec,
    } = *decl
    else {
        return Err(format!("kind \"{}\" is not a Redis token bucket", decl.kind()));
    };
    let url = match var(url_env) {
        Ok(url) if !url.trim().is_empty() => url,
        Ok(_) => return Err(format!("its Redis URL comes from the environment variable {url_env}, which is empty")),
        Err(std::env::VarError::NotPresent) => {
            return Err(format!("its Redis URL comes from the environment variable {url_env}, which is not set"));
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!(
                "its Redis URL comes from the environment variable {url_env}, which is not valid UTF-8"
            ));
        }
    };
    let on_unavailable = match on_unavailable {
        RedisUnavailable::Deny => OnUnavailable::Deny,
        RedisUnavailable::Allow => OnUnavailable::Allow,
        RedisUnavailable::Fallback => OnUnavailable::Fallback,
    };
    let bucket = RedisTokenBucket::builder(url.trim(), key)
        .capacity(u64::from(capacity))
        .refill_per_sec(refill_per_sec)
        .lease(lease)
        .lease_ttl(lease_ttl)
        .timeout(timeout)
        .on_unavailable(on_unavailable)
        .fallback(u64::from(fallback_capacity), fallback_refill_per_sec)
        .build()
        // Not the URL itself: it may carry a password.
        .map_err(|error| format!("the environment variable {url_env} does not hold a usable Redis URL: {error}"))?;
    Ok(Arc::new(bucket))
}

/// Without the `redis` feature no Redis bucket can be created.
#[cfg(not(feature = "redis"))]
pub(crate) fn redis_bucket(
    decl: &BudgetDecl<&'static str>,
    _var: impl FnOnce(&str) -> Result<String, std::env::VarError>,
) -> Result<Arc<dyn Budget>, String> {
    Err(format!("kind \"{}\" needs Redis support: enable recourse's `redis` feature", decl.kind()))
}

/// A crate's policy catalog (`recourse.toml`), checked at compile time and
/// embedded by [`recourse::catalog!()`](crate::catalog!).
///
/// Hand it to [`ExecutorBuilder::catalog`](super::ExecutorBuilder::catalog):
/// its policies become the executor's base layer, and
/// [`try_build`](super::ExecutorBuilder::try_build) names every name it
/// declares that the builder did not register.
#[derive(Debug)]
pub struct Catalog {
    path: &'static str,
    policies: &'static [(PolicyKey, CatalogEntry)],
    classifiers: &'static [&'static str],
    budgets: &'static [(&'static str, BudgetDecl<&'static str>)],
    custom_budgets: &'static [&'static str],
    triggers: &'static [&'static str],
}

impl Catalog {
    #[doc(hidden)]
    pub const fn new(
        path: &'static str,
        policies: &'static [(PolicyKey, CatalogEntry)],
        classifiers: &'static [&'static str],
        budgets: &'static [(&'static str, BudgetDecl<&'static str>)],
        custom_budgets: &'static [&'static str],
        triggers: &'static [&'static str],
    ) -> Self {
        Self { path, policies, classifiers, budgets, custom_budgets, triggers }
    }

    /// The catalog file, as the build found it.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// The keys it declares a policy for.
    pub fn keys(&self) -> impl Iterator<Item = &PolicyKey> {
        self.policies.iter().map(|(key, _)| key)
    }

    /// Whether it declares a policy for `key`.
    pub fn declares(&self, key: &PolicyKey) -> bool {
        self.policies.iter().any(|(k, _)| k == key)
    }

    /// The policy it declares for `key`, normalized, source `catalog`.
    pub fn policy(&self, key: &PolicyKey) -> Option<Policy> {
        self.policies.iter().find(|(k, _)| k == key).map(|(key, spec)| spec.to_policy(key.clone()))
    }

    /// Every policy it declares, normalized, source `catalog`.
    pub fn policies(&self) -> impl Iterator<Item = Policy> {
        self.policies.iter().map(|(key, spec)| spec.to_policy(key.clone()))
    }

    /// Classifiers it declares (`[classifiers] names`), registered in code.
    pub fn classifiers(&self) -> &'static [&'static str] {
        self.classifiers
    }

    /// Every budget it declares (`[budgets.<name>]`), by name, with what
    /// the declaration says.
    ///
    /// ```ignore
    /// for (name, decl) in recourse::catalog!().budgets() {
    ///     println!("{name}: {}", decl.kind());
    /// }
    /// ```
    pub fn budgets(&self) -> &'static [(&'static str, BudgetDecl<&'static str>)] {
        self.budgets
    }

    /// Budgets it declares with `kind = "custom"`, registered in code.
    pub fn custom_budgets(&self) -> &'static [&'static str] {
        self.custom_budgets
    }

    /// Hedge triggers it declares (`[triggers] names`), registered in code.
    pub fn triggers(&self) -> &'static [&'static str] {
        self.triggers
    }
}

#[cfg(test)]
mod tests {
    use std::env::VarError;
    use std::time::Duration;

    use super::*;
    use crate::Executor;
    use crate::policy::spec::RedisUnavailable;

    const FLEET: BudgetDecl<&'static str> = BudgetDecl::RedisTokenBucket {
        url_env: "FLEET_REDIS_URL",
        key: "recourse:budget:fleet",
        capacity: 100,
        refill_per_sec: 10.0,
        lease: 10,
        lease_ttl: Duration::from_secs(1),
        timeout: Duration::from_millis(100),
        on_unavailable: RedisUnavailable::Fallback,
        fallback_capacity: 100,
        fallback_refill_per_sec: 10.0,
    };

    static CATALOG: Catalog = Catalog::new(
        "recourse.toml",
        &[],
        &[],
        &[("fleet", FLEET), ("local", BudgetDecl::RetryThrottling { max_tokens: 10, token_ratio: 0.1 })],
        &[],
        &[],
    );

    /// An environment holding only `FLEET_REDIS_URL = url`.
    fn env(url: Option<&'static str>) -> impl Fn(&str) -> Result<String, VarError> {
        move |name| match (name, url) {
            ("FLEET_REDIS_URL", Some(url)) => Ok(url.to_owned()),
            _ => Err(VarError::NotPresent),
        }
    }

    fn why(url: Option<&'static str>) -> String {
        let error = Executor::builder().catalog(&CATALOG).try_build_with(env(url)).expect_err("the bucket is unusable");
        assert!(error.missing().is_empty(), "{error}");
        let [(name, why)] = error.unusable() else { panic!("{error}") };
        assert_eq!(*name, "fleet");
        assert_eq!(
            error.to_string(),
            format!("recourse.toml declares budget \"fleet\", which cannot be created: {why}")
        );
        why.clone()
    }

    #[test]
    fn every_local_kind_is_created_from_its_declaration() {
        let kinds = [
            BudgetDecl::Unlimited,
            BudgetDecl::TokenBucket { capacity: 1, refill_per_sec: 0.0 },
            BudgetDecl::Percentage { ratio: 0.2, min_per_sec: 10, ttl: Duration::from_secs(10) },
            BudgetDecl::RetryThrottling { max_tokens: 10, token_ratio: 0.1 },
            BudgetDecl::RetryQuota { capacity: 500, retry_cost: 5, timeout_cost: 10, success_increment: 1 },
            BudgetDecl::AdaptiveThrottling { k: 2.0, window: Duration::from_secs(120) },
            BudgetDecl::Concurrency { ratio: 0.2, min_concurrency: 3 },
        ];
        for decl in kinds {
            assert!(declared_budget(&decl).is_some(), "{decl:?}");
        }
        assert!(declared_budget(&BudgetDecl::Custom).is_none(), "registered in code, never built");
    }

    #[test]
    fn a_redis_bucket_registered_in_code_is_not_checked() {
        let executor = Executor::builder().catalog(&CATALOG).budget("fleet", Unlimited).try_build_with(env(None));
        assert!(executor.is_ok(), "the registration stands in for the declaration");
    }

    #[cfg(not(feature = "redis"))]
    #[test]
    fn without_the_feature_a_redis_bucket_fails_the_build() {
        let why = why(Some("redis://127.0.0.1:6379"));
        assert_eq!(why, "kind \"redis_token_bucket\" needs Redis support: enable recourse's `redis` feature");
        assert!(declared_budget(&FLEET).is_none(), "never a panic: the missing-budget mode decides");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_bucket_needs_a_url_in_the_variable_it_names() {
        assert_eq!(why(None), "its Redis URL comes from the environment variable FLEET_REDIS_URL, which is not set");
        assert_eq!(
            why(Some("  ")),
            "its Redis URL comes from the environment variable FLEET_REDIS_URL, which is empty"
        );
        let bad = why(Some("http://user:hunter2@cache:6379"));
        assert!(
            bad.starts_with(
                "the environment variable FLEET_REDIS_URL does not hold a usable Redis URL: invalid Redis URL"
            ),
            "{bad}"
        );
        assert!(!bad.contains("hunter2"), "the URL's password stays out of the message: {bad}");
    }

    #[cfg(feature = "redis")]
    #[test]
    fn a_redis_bucket_with_its_url_is_created_at_build_time() {
        let executor = Executor::builder()
            .catalog(&CATALOG)
            .try_build_with(env(Some("redis://127.0.0.1:6379")))
            .expect("the URL parses; nothing is dialled yet");
        assert!(executor.budgets().get("fleet").is_some(), "registered by try_build");
        assert!(executor.budgets().get("local").is_none(), "local kinds wait for their first use");
    }
}

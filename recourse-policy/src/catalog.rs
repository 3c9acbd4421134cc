//! Decoding `recourse.toml`, the policy catalog: the one reader the
//! compile-time check (`#[recourse]`, `catalog!`) and the run-time file
//! provider share.
//!
//! Every problem is reported, not only the first, each with
//! `file:line:column`, the dotted path of the setting, and a did-you-mean
//! for misspelled fields and names. Values are checked against
//! [`limits`](crate::limits), so a value the catalog accepts is never clamped at run time.
//!
//! ```
//! use recourse::policy::catalog::{Builtins, decode};
//!
//! let doc = decode("[policies.\"users.Get\"]\nmax_atempts = 4\n", "recourse.toml", &Builtins::NONE);
//! let problems: Vec<&str> = doc.problems().collect();
//! assert_eq!(problems, ["recourse.toml:2:1: unknown field `max_atempts` in policies.\"users.Get\"; did you mean `max_attempts`?"]);
//! ```
//!
//! # Budgets
//!
//! A `[budgets.<name>]` table declares a budget policies may name; its
//! `kind` says which, and the rest of the table is that kind's settings
//! (any other field is an error naming it). Every default is filled in at
//! decoding, so a [`BudgetDecl`] holds exactly what the budget is built
//! with. Durations are strings in the policies' format (`"250ms"`, `"2m"`).
//!
//! | `kind` | settings (default; range) |
//! |---|---|
//! | `token_bucket` | `capacity` (required), `refill_per_sec` (0; at least 0) |
//! | `percentage` | `ratio` (0.2; 0 to 1000), `min_per_sec` (10), `ttl` ("10s"; 1 s to 60 s) |
//! | `retry_throttling` | `max_tokens` (required; 1 to 1000), `token_ratio` (required; above 0, at most 1000) |
//! | `retry_quota` | `capacity` (500), `retry_cost` (5), `timeout_cost` (10), `success_increment` (1) |
//! | `adaptive_throttling` | `k` (2; at least 1), `window` ("2m"; at least 1 s) |
//! | `concurrency` | `ratio` (0.2; 0 to 1000), `min_concurrency` (3) |
//! | `redis_token_bucket` | `url_env` (required), `key` (`"recourse:budget:<name>"`), `capacity` (required), `refill_per_sec` (required), `lease` (10; at least 1), `lease_ttl` ("1s"), `timeout` ("100ms"; both at least 1 ms), `on_unavailable` ("fallback"; or "deny", "allow"), `fallback_capacity` and `fallback_refill_per_sec` (the bucket's own; only with "fallback") |
//! | `unlimited` | none |
//! | `custom` | none: registered in code under the table's name |
//!
//! Counts are integers from 0 unless a range says otherwise; numbers are
//! finite (NaN and infinities are refused). `url_env` is the *name* of the
//! environment variable that holds the Redis URL, never the URL: a URL
//! there is refused, so no address or password is written in the catalog.
//!
//! ```
//! use recourse::policy::catalog::{Builtins, decode};
//! use recourse::policy::spec::BudgetDecl;
//!
//! let text = "[budgets.api]\nkind = \"retry_throttling\"\nmax_tokens = 10\ntoken_ratio = 0.1\n";
//! let doc = decode(text, "recourse.toml", &Builtins::NONE);
//! assert_eq!(doc.budgets["api"], BudgetDecl::RetryThrottling { max_tokens: 10, token_ratio: 0.1 });
//!
//! let doc = decode("[budgets.api]\nkind = \"retry_throttling\"\nmax_tokens = 10\ntoken_ratio = 0\n", "recourse.toml", &Builtins::NONE);
//! let problems: Vec<&str> = doc.problems().collect();
//! assert_eq!(problems, ["recourse.toml:4:15: budgets.api.token_ratio = 0 must be above 0 and at most 1000"]);
//! ```

use std::borrow::Cow;
use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::decode::{self, Ctx, Dialect, Field, Node, unknown_field};
use crate::key::{suggest, validate_key};
use crate::spec::{BudgetDecl, PolicySpec};
use crate::{Policy, PolicyKey, PolicySource};

/// Names every executor registers, which a catalog may reference without
/// declaring them.
#[derive(Debug, Clone, Copy)]
pub struct Builtins<'a> {
    /// Classifier names.
    pub classifiers: &'a [&'a str],
    /// Budget names.
    pub budgets: &'a [&'a str],
    /// Hedge trigger names.
    pub triggers: &'a [&'a str],
}

impl Builtins<'_> {
    /// No built-in names: every referenced name must be declared.
    pub const NONE: Builtins<'static> = Builtins { classifiers: &[], budgets: &[], triggers: &[] };
}

/// A decoded catalog: what it declares and every problem found.
#[derive(Debug, Clone, Default)]
pub struct CatalogDoc {
    /// `[policies."<key>"]` tables by key.
    pub policies: BTreeMap<String, Entry>,
    /// `[classifiers] names`: classifiers registered in code.
    pub classifiers: Vec<String>,
    /// `[triggers] names`: hedge triggers registered in code.
    pub triggers: Vec<String>,
    /// `[budgets.<name>]` declarations.
    pub budgets: BTreeMap<String, BudgetDecl>,
    /// Problems that concern the whole file (syntax, unknown tables,
    /// malformed budgets).
    pub errors: Vec<String>,
}

/// One `[policies."<key>"]` table.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Line of the table's key (1-based).
    pub line: usize,
    /// Column of the table's key (1-based, in characters).
    pub column: usize,
    /// The settings it gives.
    pub spec: PolicySpec,
    /// Invalid values in this table.
    pub errors: Vec<String>,
}

impl CatalogDoc {
    /// Every problem: the file's, then each policy's in key order.
    pub fn problems(&self) -> impl Iterator<Item = &str> {
        let entries = self.policies.values().flat_map(|e| &e.errors);
        self.errors.iter().chain(entries).map(String::as_str)
    }

    /// Whether the catalog has no problem at all.
    pub fn is_valid(&self) -> bool {
        self.problems().next().is_none()
    }

    /// Every policy it declares, normalized, from `source`.
    pub fn policies(&self, source: PolicySource) -> impl Iterator<Item = Policy> + '_ {
        self.policies.iter().map(move |(key, entry)| entry.spec.to_policy(PolicyKey::parse_owned(key), source))
    }

    /// Whether `name` is a classifier a policy may name.
    pub fn knows_classifier(&self, builtins: &Builtins<'_>, name: &str) -> bool {
        builtins.classifiers.contains(&name) || self.classifiers.iter().any(|c| c == name)
    }
}

const TOP_LEVEL: &[&str] = &["policies", "budgets", "classifiers", "triggers"];

impl Node for Spanned<DeValue<'_>> {
    fn type_str(&self) -> &'static str {
        self.get_ref().type_str()
    }

    fn as_str(&self) -> Option<&str> {
        self.get_ref().as_str()
    }

    fn as_bool(&self) -> Option<bool> {
        self.get_ref().as_bool()
    }

    fn as_integer(&self) -> Option<Result<i64, String>> {
        let int = self.get_ref().as_integer()?;
        let digits = int.as_str().replace('_', "");
        Some(i64::from_str_radix(digits.trim_start_matches('+'), int.radix()).map_err(|_| int.as_str().to_owned()))
    }

    fn as_number(&self) -> Option<f64> {
        match self.get_ref() {
            DeValue::Float(f) => Some(f.as_str().replace('_', "").parse::<f64>().unwrap_or(f64::NAN)),
            DeValue::Integer(i) => Some(i.as_str().replace('_', "").parse::<f64>().unwrap_or(f64::NAN)),
            _ => None,
        }
    }

    fn entries(&self) -> Option<Vec<(Field<'_>, &Self)>> {
        let table = self.get_ref().as_table()?;
        Some(table.iter().map(|(k, v)| (field(k), v)).collect())
    }

    fn items(&self) -> Option<Vec<&Self>> {
        Some(self.get_ref().as_array()?.iter().collect())
    }

    fn offset(&self) -> Option<usize> {
        Some(self.span().start)
    }
}

fn field<'a>(key: &'a Spanned<Cow<'_, str>>) -> Field<'a> {
    Field { name: key.get_ref(), offset: Some(key.span().start) }
}

/// Decodes catalog `text`; `shown` names the file in messages, and
/// `builtins` are the names policies may reference without declaring them.
/// Never panics: every problem is in the result.
pub fn decode(text: &str, shown: &str, builtins: &Builtins<'_>) -> CatalogDoc {
    let ctx = Ctx { text, shown, dialect: Dialect::Catalog };
    let mut catalog = CatalogDoc::default();
    // Every `[budgets.<name>]` table, valid or not: a policy naming a
    // budget whose table has a problem is told about that problem only.
    let mut declared_budgets = Vec::new();
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(error) => {
            let (line, column) = error.span().map_or((1, 1), |s| ctx.position(s.start));
            catalog.errors.push(format!("{shown}:{line}:{column}: {}", error.message().trim()));
            return catalog;
        }
    };
    for (key, value) in root.get_ref() {
        match &**key.get_ref() {
            "policies" => parse_policies(&ctx, value, &mut catalog),
            "budgets" => parse_budgets(&ctx, value, &mut catalog, &mut declared_budgets),
            "classifiers" => decode::names(&ctx, value, "classifiers", &mut catalog.errors, &mut catalog.classifiers),
            "triggers" => decode::names(&ctx, value, "triggers", &mut catalog.errors, &mut catalog.triggers),
            _ => catalog.errors.push(unknown_field(
                &ctx,
                &field(key),
                "the catalog (expected `[policies.\"svc.Op\"]`, `[budgets.name]`, `[classifiers]` or `[triggers]`)",
                TOP_LEVEL,
            )),
        }
    }
    // Names are checked once every table is read (the tables that declare
    // them may come after the policies that use them).
    let classifiers: Vec<&str> = catalog.classifiers.iter().map(String::as_str).collect();
    let budgets: Vec<&str> = declared_budgets.iter().map(String::as_str).collect();
    let triggers: Vec<&str> = catalog.triggers.iter().map(String::as_str).collect();
    let kinds = [
        Names {
            what: "classifier",
            builtins: builtins.classifiers,
            declared: &classifiers,
            declare: "`[classifiers] names = [...]`",
        },
        Names {
            what: "budget",
            builtins: builtins.budgets,
            declared: &budgets,
            declare: "`[budgets.<name>]` (`kind = \"custom\"` for one registered in code)",
        },
        Names {
            what: "hedge trigger",
            builtins: builtins.triggers,
            declared: &triggers,
            declare: "`[triggers] names = [...]`",
        },
    ];
    let [classifier_names, budget_names, trigger_names] = &kinds;
    let mut problems = Vec::new();
    for (key, entry) in &catalog.policies {
        let spec = &entry.spec;
        let hedge = spec.hedge.as_ref();
        let references = [
            ("classifier", spec.classifier.as_deref(), classifier_names),
            ("budget", spec.budget.as_ref().map(|b| b.name.as_str()), budget_names),
            ("hedge.budget", hedge.and_then(|h| h.budget.as_ref()).map(|b| b.name.as_str()), budget_names),
            ("hedge.trigger", hedge.and_then(|h| h.trigger.as_deref()), trigger_names),
        ];
        for (field, name, names) in references {
            if let Some(name) = name.filter(|name| !name.trim().is_empty())
                && let Some(problem) = names.problem(shown, (entry.line, entry.column), key, field, name.trim())
            {
                problems.push((key.clone(), problem));
            }
        }
    }
    for (key, problem) in problems {
        if let Some(entry) = catalog.policies.get_mut(&key) {
            entry.errors.push(problem);
        }
    }
    catalog
}

/// The names of one kind a policy may reference: built in, or declared.
struct Names<'a> {
    what: &'static str,
    builtins: &'a [&'a str],
    declared: &'a [&'a str],
    declare: &'static str,
}

impl Names<'_> {
    /// Why `name`, referenced by `policies."<key>".<field>`, is unknown.
    fn problem(&self, shown: &str, at: (usize, usize), key: &str, field: &str, name: &str) -> Option<String> {
        if self.builtins.contains(&name) || self.declared.contains(&name) {
            return None;
        }
        let candidates = self.builtins.iter().chain(self.declared).copied();
        let hint = suggest(name, candidates).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
        let (what, (line, column)) = (self.what, at);
        let builtins = if self.builtins.is_empty() {
            String::new()
        } else {
            format!("built-ins are {}; ", self.builtins.join(", "))
        };
        Some(format!(
            "{shown}:{line}:{column}: policies.\"{key}\".{field} = \"{name}\" is not a known {what}; {hint}{builtins}declare others in {}",
            self.declare
        ))
    }
}

fn parse_policies(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, catalog: &mut CatalogDoc) {
    let Some(table) = value.get_ref().as_table() else {
        catalog.errors.push(ctx.at(value.offset(), "`policies` must be a table of `[policies.\"svc.Op\"]` tables"));
        return;
    };
    for (key, value) in table {
        let name = key.get_ref().to_string();
        if let Err(problem) = validate_key(&name) {
            catalog.errors.push(ctx.at(Some(key.span().start), problem));
            continue;
        }
        let mut errors = Vec::new();
        let spec = if value.get_ref().as_table().is_some() {
            decode::policy(ctx, &format!("policies.\"{name}\""), value, &mut errors)
        } else {
            errors.push(ctx.at(value.offset(), format!("policies.\"{name}\" must be a table")));
            PolicySpec::default()
        };
        let (line, column) = ctx.position(key.span().start);
        catalog.policies.insert(name, Entry { line, column, spec, errors });
    }
}

fn parse_budgets(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, catalog: &mut CatalogDoc, declared: &mut Vec<String>) {
    let Some(table) = value.get_ref().as_table() else {
        catalog.errors.push(ctx.at(value.offset(), "`budgets` must be a table of `[budgets.name]` tables"));
        return;
    };
    for (name, value) in table {
        let trimmed = name.get_ref().trim().to_owned();
        if let Some(decl) = decode::budget_decl(ctx, &field(name), value, &mut catalog.errors) {
            catalog.budgets.insert(trimmed.clone(), decl);
        }
        declared.push(trimmed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUILTINS: Builtins<'static> = Builtins {
        classifiers: &["always", "never", "auto"],
        budgets: &["unlimited"],
        triggers: &["fixed_delay", "p50", "p90", "p95", "p99"],
    };

    fn catalog(text: &str) -> CatalogDoc {
        decode(text, "recourse.toml", &BUILTINS)
    }

    // Found by `an_accepted_policy_is_never_clamped`: a cap below the
    // default initial backoff was accepted and then raised at run time.
    #[test]
    fn a_max_backoff_below_the_default_initial_backoff_is_refused() {
        let doc = catalog("[policies.\"svc.Op\"]\nmax_backoff = \"1ms\"\n");
        assert_eq!(
            doc.problems().collect::<Vec<_>>(),
            ["recourse.toml: policies.\"svc.Op\".max_backoff = 1ms is below initial_backoff = 10ms (the default)"]
        );
        assert!(catalog("[policies.\"svc.Op\"]\nmax_backoff = \"10ms\"\n").is_valid());
        assert!(catalog("[policies.\"svc.Op\"]\ninitial_backoff = \"1ms\"\nmax_backoff = \"1ms\"\n").is_valid());
    }

    #[test]
    fn a_full_policy_parses() {
        let c = catalog(
            r#"
[policies."user-service.GetUser"]
max_attempts = 4
initial_backoff = "20ms"
max_backoff = "1s"
backoff_multiplier = 2
jitter = "full"
overall_timeout = "2s"
budget = { name = "tb", cost = 2 }

[policies."user-service.GetUser".hedge]
max_hedges = 2
delay = "50ms"

[policies."svc.Empty"]

[budgets.tb]
kind = "token_bucket"
capacity = 100
refill_per_sec = 50.0

[classifiers]
names = ["mine"]
"#,
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        let p = &c.policies["user-service.GetUser"];
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        assert_eq!(p.spec.max_attempts, Some(4));
        assert_eq!(p.spec.initial_backoff, Some(std::time::Duration::from_millis(20)));
        assert_eq!(p.spec.backoff_multiplier, Some(2.0));
        assert_eq!(p.spec.budget.as_ref().map(|b| b.cost), Some(2));
        assert!(p.spec.hedging());
        assert_eq!((p.line, p.column), (2, 11));
        assert!(c.policies["svc.Empty"].errors.is_empty());
        assert_eq!(c.classifiers, ["mine"]);
    }

    #[test]
    fn bad_values_are_reported_with_lines() {
        let c = catalog(
            "[policies.\"a.b\"]\nmax_attempts = 50\njitter = \"ful\"\nmax_backoff = \"45s\"\nbackoff_multiplier = nan\ntimeout_per_attempt = \"500us\"\nretries = 3\nclassifier = \"htp\"\n",
        );
        let errors = &c.policies["a.b"].errors;
        let all = errors.join("\n");
        assert!(
            all.contains("recourse.toml:2:16: policies.\"a.b\".max_attempts = 50 is out of range (1..=10)"),
            "{all}"
        );
        assert!(all.contains("recourse.toml:3:10:") && all.contains("did you mean \"full\"?"), "{all}");
        assert!(all.contains("above the maximum of 30s"), "{all}");
        assert!(all.contains("NaN"), "{all}");
        assert!(all.contains("below 1ms"), "{all}");
        assert!(all.contains("unknown field `retries`"), "{all}");
        assert!(all.contains("\"htp\" is not a known classifier"), "{all}");
    }

    #[test]
    fn every_referenced_name_is_built_in_or_declared() {
        let c = catalog(
            "[policies.\"a.b\"]\nbudget = \"payment\"\n[policies.\"a.b\".hedge]\nbudget = \"hedges\"\ntrigger = \"p9\"\n\
             [policies.\"a.ok\"]\nbudget = { name = \"payments\", cost = 2 }\n[policies.\"a.ok\".hedge]\nbudget = \"unlimited\"\ntrigger = \"slow_tail\"\n\
             [budgets.payments]\nkind = \"custom\"\n[triggers]\nnames = [\"slow_tail\"]\n",
        );
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        assert!(c.policies["a.ok"].errors.is_empty(), "{:?}", c.policies["a.ok"].errors);
        assert!(matches!(c.budgets.get("payments"), Some(BudgetDecl::Custom)));
        assert_eq!(c.triggers, ["slow_tail"]);
        let all = c.policies["a.b"].errors.join("\n");
        assert!(
            all.contains("policies.\"a.b\".budget = \"payment\" is not a known budget; did you mean \"payments\"?"),
            "{all}"
        );
        assert!(all.contains("policies.\"a.b\".hedge.budget = \"hedges\" is not a known budget"), "{all}");
        assert!(
            all.contains("policies.\"a.b\".hedge.trigger = \"p9\" is not a known hedge trigger; did you mean \"p90\"?"),
            "{all}"
        );
        assert_eq!(c.policies["a.b"].errors.len(), 3, "{all}");
        let c = catalog("[budgets.x]\nkind = \"custom\"\ncapacity = 3\n[triggers]\nname = [\"t\"]\n");
        assert_eq!(c.errors.len(), 2, "{:?}", c.errors);
    }

    #[test]
    fn syntax_errors_and_unknown_tables_are_global() {
        let c = catalog("[policies.\"a.b\"\nmax_attempts = 1\n");
        assert_eq!(c.errors.len(), 1, "{:?}", c.errors);
        assert!(c.errors[0].starts_with("recourse.toml:1:"), "{:?}", c.errors);
        let c = catalog("[polices.\"a.b\"]\n");
        assert!(c.errors[0].contains("did you mean `policies`?"), "{:?}", c.errors);
        let c = catalog("[policies.\"nodot\"]\n[budgets.x]\nkind = \"leaky\"\n");
        assert_eq!(c.errors.len(), 2, "{:?}", c.errors);
    }

    /// The one declaration of a catalog that must be valid.
    fn declared(text: &str) -> BudgetDecl {
        let c = catalog(text);
        assert!(c.is_valid(), "{text}\n{:?}", c.errors);
        assert_eq!(c.budgets.len(), 1, "{text}");
        c.budgets.into_values().next().expect("one declaration")
    }

    /// The problems of a catalog that must be refused.
    fn refused(text: &str) -> Vec<String> {
        let c = catalog(text);
        let problems: Vec<String> = c.problems().map(str::to_owned).collect();
        assert!(!problems.is_empty(), "{text} was accepted: {:?}", c.budgets);
        problems
    }

    #[test]
    fn every_budget_kind_takes_its_defaults() {
        use crate::spec::RedisUnavailable;
        use std::time::Duration;

        let table = |kind: &str, rest: &str| format!("[budgets.b]\nkind = \"{kind}\"\n{rest}");
        assert_eq!(
            declared(&table("percentage", "")),
            BudgetDecl::Percentage { ratio: 0.2, min_per_sec: 10, ttl: Duration::from_secs(10) }
        );
        assert_eq!(
            declared(&table("retry_throttling", "max_tokens = 10\ntoken_ratio = 0.1\n")),
            BudgetDecl::RetryThrottling { max_tokens: 10, token_ratio: 0.1 }
        );
        assert_eq!(
            declared(&table("retry_quota", "")),
            BudgetDecl::RetryQuota { capacity: 500, retry_cost: 5, timeout_cost: 10, success_increment: 1 }
        );
        assert_eq!(
            declared(&table("adaptive_throttling", "")),
            BudgetDecl::AdaptiveThrottling { k: 2.0, window: Duration::from_secs(120) }
        );
        assert_eq!(declared(&table("concurrency", "")), BudgetDecl::Concurrency { ratio: 0.2, min_concurrency: 3 });
        assert_eq!(
            declared(&table("redis_token_bucket", "url_env = \"REDIS_URL\"\ncapacity = 100\nrefill_per_sec = 2.5\n")),
            BudgetDecl::RedisTokenBucket {
                url_env: "REDIS_URL".to_owned(),
                key: "recourse:budget:b".to_owned(),
                capacity: 100,
                refill_per_sec: 2.5,
                lease: 10,
                lease_ttl: Duration::from_secs(1),
                timeout: Duration::from_millis(100),
                on_unavailable: RedisUnavailable::Fallback,
                fallback_capacity: 100,
                fallback_refill_per_sec: 2.5,
            }
        );
        assert_eq!(
            declared(&table("token_bucket", "capacity = 3\n")),
            BudgetDecl::TokenBucket { capacity: 3, refill_per_sec: 0.0 }
        );
    }

    #[test]
    fn every_budget_setting_is_read() {
        use crate::spec::RedisUnavailable;
        use std::time::Duration;

        let c = catalog(
            r#"
[budgets.pct]
kind = "percentage"
ratio = 1000
min_per_sec = 0
ttl = "60s"

[budgets.a6]
kind = "retry_throttling"
max_tokens = 1000
token_ratio = 0.001

[budgets.aws]
kind = "retry_quota"
capacity = 0
retry_cost = 1
timeout_cost = 2
success_increment = 0

[budgets.sre]
kind = "adaptive_throttling"
k = 1
window = "1s"

[budgets.envoy]
kind = "concurrency"
ratio = 0.0
min_concurrency = 0

[budgets.fleet]
kind = "redis_token_bucket"
url_env = "_FLEET_REDIS_2"
key = "svc:fleet"
capacity = 0
refill_per_sec = 0
lease = 1
lease_ttl = "250ms"
timeout = "1ms"
on_unavailable = "fallback"
fallback_capacity = 7
fallback_refill_per_sec = 0.5

[budgets.closed]
kind = "redis_token_bucket"
url_env = "REDIS_URL"
capacity = 4294967295
refill_per_sec = 1e9
on_unavailable = "deny"

[budgets.open]
kind = "redis_token_bucket"
url_env = "REDIS_URL"
capacity = 1
refill_per_sec = 1
on_unavailable = "allow"
"#,
        );
        assert!(c.is_valid(), "{:?}", c.errors);
        let b = &c.budgets;
        assert_eq!(b["pct"], BudgetDecl::Percentage { ratio: 1000.0, min_per_sec: 0, ttl: Duration::from_secs(60) });
        assert_eq!(b["a6"], BudgetDecl::RetryThrottling { max_tokens: 1000, token_ratio: 0.001 });
        assert_eq!(
            b["aws"],
            BudgetDecl::RetryQuota { capacity: 0, retry_cost: 1, timeout_cost: 2, success_increment: 0 }
        );
        assert_eq!(b["sre"], BudgetDecl::AdaptiveThrottling { k: 1.0, window: Duration::from_secs(1) });
        assert_eq!(b["envoy"], BudgetDecl::Concurrency { ratio: 0.0, min_concurrency: 0 });
        assert_eq!(
            b["fleet"],
            BudgetDecl::RedisTokenBucket {
                url_env: "_FLEET_REDIS_2".to_owned(),
                key: "svc:fleet".to_owned(),
                capacity: 0,
                refill_per_sec: 0.0,
                lease: 1,
                lease_ttl: Duration::from_millis(250),
                timeout: Duration::from_millis(1),
                on_unavailable: RedisUnavailable::Fallback,
                fallback_capacity: 7,
                fallback_refill_per_sec: 0.5,
            }
        );
        let BudgetDecl::RedisTokenBucket { capacity, on_unavailable, fallback_capacity, .. } = &b["closed"] else {
            panic!("{:?}", b["closed"]);
        };
        assert_eq!((*capacity, *on_unavailable, *fallback_capacity), (u32::MAX, RedisUnavailable::Deny, u32::MAX));
        assert!(matches!(b["open"], BudgetDecl::RedisTokenBucket { on_unavailable: RedisUnavailable::Allow, .. }));
        assert_eq!(b["open"].kind(), "redis_token_bucket");
    }

    /// Budget mistakes: the kind, the rest of the table, and the one message.
    const BUDGET_MISTAKES: &[(&str, &str, &str)] = &[
        // percentage
        ("percentage", "ratio = -0.5", "recourse.toml:3:9: budgets.b.ratio = -0.5 must be in 0.0..=1000.0"),
        ("percentage", "ratio = 1000.5", "recourse.toml:3:9: budgets.b.ratio = 1000.5 must be in 0.0..=1000.0"),
        ("percentage", "ratio = nan", "recourse.toml:3:9: budgets.b.ratio is not a number (NaN)"),
        ("percentage", "ratio = inf", "recourse.toml:3:9: budgets.b.ratio = inf must be in 0.0..=1000.0"),
        ("percentage", "ratio = \"0.2\"", "recourse.toml:3:9: budgets.b.ratio must be a number, found string"),
        ("percentage", "min_per_sec = -1", "recourse.toml:3:15: budgets.b.min_per_sec = -1 must be at least 0"),
        (
            "percentage",
            "min_per_sec = 1.5",
            "recourse.toml:3:15: budgets.b.min_per_sec must be an integer, found float",
        ),
        ("percentage", "ttl = \"500ms\"", "recourse.toml:3:7: budgets.b.ttl = \"500ms\" is below the minimum of 1s"),
        ("percentage", "ttl = \"61s\"", "recourse.toml:3:7: budgets.b.ttl = \"61s\" is above the maximum of 60s"),
        (
            "percentage",
            "ttl = 10",
            "recourse.toml:3:7: budgets.b.ttl must be a duration string such as \"250ms\", \"2s\" or \"1m\", found integer",
        ),
        (
            "percentage",
            "min_per_second = 5",
            "recourse.toml:3:1: unknown field `min_per_second` in budgets.b (kind \"percentage\" takes `ratio`, `min_per_sec`, `ttl`); did you mean `min_per_sec`?",
        ),
        // retry_throttling
        (
            "retry_throttling",
            "max_tokens = 10\ntoken_ratio = 0",
            "recourse.toml:4:15: budgets.b.token_ratio = 0 must be above 0 and at most 1000",
        ),
        (
            "retry_throttling",
            "max_tokens = 10\ntoken_ratio = -0.1",
            "recourse.toml:4:15: budgets.b.token_ratio = -0.1 must be above 0 and at most 1000",
        ),
        (
            "retry_throttling",
            "max_tokens = 10\ntoken_ratio = 1001",
            "recourse.toml:4:15: budgets.b.token_ratio = 1001 must be above 0 and at most 1000",
        ),
        (
            "retry_throttling",
            "max_tokens = 10\ntoken_ratio = -inf",
            "recourse.toml:4:15: budgets.b.token_ratio = -inf must be above 0 and at most 1000",
        ),
        (
            "retry_throttling",
            "max_tokens = 0\ntoken_ratio = 0.1",
            "recourse.toml:3:14: budgets.b.max_tokens = 0 is out of range (1..=1000)",
        ),
        (
            "retry_throttling",
            "max_tokens = 1001\ntoken_ratio = 0.1",
            "recourse.toml:3:14: budgets.b.max_tokens = 1001 is out of range (1..=1000)",
        ),
        (
            "retry_throttling",
            "token_ratio = 0.1",
            "recourse.toml:1:10: budgets.b (retry throttling) needs `max_tokens`",
        ),
        ("retry_throttling", "max_tokens = 10", "recourse.toml:1:10: budgets.b (retry throttling) needs `token_ratio`"),
        // retry_quota
        ("retry_quota", "capacity = -1", "recourse.toml:3:12: budgets.b.capacity = -1 must be at least 0"),
        (
            "retry_quota",
            "retry_cost = 4294967296",
            "recourse.toml:3:14: budgets.b.retry_cost = 4294967296 must be at least 0",
        ),
        (
            "retry_quota",
            "timeout_cost = 99999999999999999999",
            "recourse.toml:3:16: budgets.b.timeout_cost = 99999999999999999999 is not a valid integer",
        ),
        (
            "retry_quota",
            "success_increment = \"1\"",
            "recourse.toml:3:21: budgets.b.success_increment must be an integer, found string",
        ),
        (
            "retry_quota",
            "cost = 5",
            "recourse.toml:3:1: unknown field `cost` in budgets.b (kind \"retry_quota\" takes `capacity`, `retry_cost`, `timeout_cost`, `success_increment`)",
        ),
        // adaptive_throttling
        ("adaptive_throttling", "k = 0.5", "recourse.toml:3:5: budgets.b.k = 0.5 must be at least 1"),
        ("adaptive_throttling", "k = nan", "recourse.toml:3:5: budgets.b.k is not a number (NaN)"),
        ("adaptive_throttling", "k = inf", "recourse.toml:3:5: budgets.b.k = inf must be at least 1"),
        (
            "adaptive_throttling",
            "window = \"999ms\"",
            "recourse.toml:3:10: budgets.b.window = \"999ms\" is below the minimum of 1s",
        ),
        (
            "adaptive_throttling",
            "window = \"-2m\"",
            "recourse.toml:3:10: budgets.b.window = \"-2m\" is not a duration; write a number and a unit: ns, us, ms, s, m or h (e.g. \"250ms\")",
        ),
        // concurrency
        ("concurrency", "ratio = -1", "recourse.toml:3:9: budgets.b.ratio = -1 must be in 0.0..=1000.0"),
        (
            "concurrency",
            "min_concurrency = -3",
            "recourse.toml:3:19: budgets.b.min_concurrency = -3 must be at least 0",
        ),
        (
            "concurrency",
            "max_concurrency = 3",
            "recourse.toml:3:1: unknown field `max_concurrency` in budgets.b (kind \"concurrency\" takes `ratio`, `min_concurrency`); did you mean `min_concurrency`?",
        ),
        // redis_token_bucket
        (
            "redis_token_bucket",
            "url_env = \"redis://:hunter2@cache:6379\"\ncapacity = 10\nrefill_per_sec = 1",
            "recourse.toml:3:11: budgets.b.url_env holds a URL, but it names the environment variable that holds the URL (e.g. url_env = \"REDIS_URL\"), so no address or password is written in the catalog",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS URL\"\ncapacity = 10\nrefill_per_sec = 1",
            "recourse.toml:3:11: budgets.b.url_env = \"REDIS URL\" is not an environment variable name (letters, digits and `_`, not starting with a digit)",
        ),
        (
            "redis_token_bucket",
            "url_env = \"1REDIS\"\ncapacity = 10\nrefill_per_sec = 1",
            "recourse.toml:3:11: budgets.b.url_env = \"1REDIS\" is not an environment variable name (letters, digits and `_`, not starting with a digit)",
        ),
        (
            "redis_token_bucket",
            "url_env = \"\"\ncapacity = 10\nrefill_per_sec = 1",
            "recourse.toml:3:11: budgets.b.url_env cannot be empty",
        ),
        (
            "redis_token_bucket",
            "capacity = 10\nrefill_per_sec = 1",
            "recourse.toml:1:10: budgets.b (a Redis token bucket) needs `url_env`: the name of the environment variable that holds the Redis URL (e.g. url_env = \"REDIS_URL\")",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\nrefill_per_sec = 1",
            "recourse.toml:1:10: budgets.b (a Redis token bucket) needs `capacity`",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10",
            "recourse.toml:1:10: budgets.b (a Redis token bucket) needs `refill_per_sec`",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1\non_unavailable = \"maybe\"",
            "recourse.toml:6:18: budgets.b.on_unavailable = \"maybe\" must be \"deny\", \"allow\" or \"fallback\"",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1\non_unavailable = \"alow\"",
            "recourse.toml:6:18: budgets.b.on_unavailable = \"alow\" must be \"deny\", \"allow\" or \"fallback\"; did you mean \"allow\"?",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1\nlease = 0",
            "recourse.toml:6:9: budgets.b.lease = 0 must be at least 1",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1\nlease_ttl = \"0s\"",
            "recourse.toml:6:13: budgets.b.lease_ttl = \"0s\" is below the minimum of 1ms",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1\ntimeout = \"100\"",
            "recourse.toml:6:11: budgets.b.timeout = \"100\" is not a duration; write a number and a unit: ns, us, ms, s, m or h (e.g. \"250ms\")",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = nan",
            "recourse.toml:5:18: budgets.b.refill_per_sec is not a number (NaN)",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1\nkey = \" \"",
            "recourse.toml:6:7: budgets.b.key cannot be empty",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1\non_unavailable = \"deny\"\nfallback_capacity = 5",
            "recourse.toml:7:21: budgets.b.fallback_capacity applies only with on_unavailable = \"fallback\", and this bucket's is \"deny\"",
        ),
        (
            "redis_token_bucket",
            "url_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1\nfallback_refill_per_sec = -1",
            "recourse.toml:6:27: budgets.b.fallback_refill_per_sec = -1 must be at least 0",
        ),
        (
            "redis_token_bucket",
            "url = \"REDIS_URL\"\nurl_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1",
            "recourse.toml:3:1: budgets.b.url: the Redis URL is not written in the catalog; put it in an environment variable and name the variable with `url_env` (e.g. url_env = \"REDIS_URL\")",
        ),
        (
            "redis_token_bucket",
            "url_envs = \"REDIS_URL\"\nurl_env = \"REDIS_URL\"\ncapacity = 10\nrefill_per_sec = 1",
            "recourse.toml:3:1: unknown field `url_envs` in budgets.b (kind \"redis_token_bucket\" takes `url_env`, `key`, `capacity`, `refill_per_sec`, `lease`, `lease_ttl`, `timeout`, `on_unavailable`, `fallback_capacity`, `fallback_refill_per_sec`); did you mean `url_env`?",
        ),
        // the kind itself
        (
            "retry_throtling",
            "",
            "recourse.toml:2:8: budgets.b.kind = \"retry_throtling\" must be \"token_bucket\", \"percentage\", \"retry_throttling\", \"retry_quota\", \"adaptive_throttling\", \"concurrency\", \"redis_token_bucket\", \"unlimited\" or \"custom\"; did you mean \"retry_throttling\"?",
        ),
    ];

    /// Each mistake, alone in its table, gives exactly this message.
    #[test]
    fn every_budget_mistake_is_reported_once_where_it_is() {
        for (kind, rest, expected) in BUDGET_MISTAKES {
            let text = format!("[budgets.b]\nkind = \"{kind}\"\n{rest}\n");
            let problems = refused(&text);
            assert_eq!(problems, [*expected], "{text}");
        }
    }

    #[test]
    fn budget_tables_without_a_usable_kind_are_refused() {
        let kinds = "\"token_bucket\", \"percentage\", \"retry_throttling\", \"retry_quota\", \"adaptive_throttling\", \"concurrency\", \"redis_token_bucket\", \"unlimited\" or \"custom\"";
        assert_eq!(
            refused("[budgets.b]\nratio = 0.2\n"),
            [format!("recourse.toml:1:10: budgets.b needs a `kind`: {kinds}")]
        );
        assert_eq!(
            refused("[budgets.b]\nkind = 3\n"),
            [format!("recourse.toml:2:8: budgets.b.kind must be {kinds}, found integer")]
        );
        assert_eq!(
            refused("[budgets.b]\nkind = \"unlimited\"\nratio = 1\n"),
            ["recourse.toml:3:1: unknown field `ratio` in budgets.b (kind \"unlimited\" takes no settings)"]
        );
        assert_eq!(refused("budgets.b = 3\n"), ["recourse.toml:1:13: budgets.b must be a table"]);
    }

    #[test]
    fn problems_in_one_table_come_in_line_order() {
        let problems = refused(
            "[budgets.b]\nkind = \"redis_token_bucket\"\nlease = 0\nurl_env = \"redis://cache\"\nbogus = 1\ncapacity = -1\n",
        );
        let lines: Vec<&str> = problems.iter().map(|p| p.split(':').nth(1).unwrap_or_default()).collect();
        assert_eq!(lines, ["1", "3", "4", "5", "6"], "{problems:#?}");
        assert!(problems[0].ends_with("needs `refill_per_sec`"), "{problems:#?}");
    }

    /// A policy naming a budget whose table is wrong hears about the table
    /// only, not that the budget is unknown.
    #[test]
    fn a_broken_budget_is_still_declared() {
        let c = catalog(
            "[policies.\"a.b\"]\nbudget = \"api\"\n[policies.\"a.c\"]\nbudget = \"quota\"\n\
             [budgets.api]\nkind = \"retry_throttling\"\ntoken_ratio = 0\n[budgets.quota]\nkind = \"leaky\"\n",
        );
        let problems: Vec<&str> = c.problems().collect();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems.iter().all(|p| !p.contains("is not a known budget")), "{problems:#?}");
        assert!(c.budgets.is_empty(), "{:?}", c.budgets);
    }

    /// Fields a catalog policy may hold, some misspelled, with values of
    /// every shape, valid and not.
    fn policy_line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let field = prop::sample::select(vec![
            "max_attempts",
            "initial_backoff",
            "max_backoff",
            "backoff_multiplier",
            "jitter",
            "timeout_per_attempt",
            "overall_timeout",
            "classifier",
            "budget",
            "id",
            "max_atempts",
            "hedge.max_hedges",
            "hedge.delay",
            "hedge.trigger",
            "hedge.enabled",
            "hedge.budget",
            "circuit.threshold",
            "circuit.cooldown",
            "circuit.failure_ratio",
            "circuit.window",
            "circuit.min_throughput",
            "circuit.enabled",
        ]);
        let value = prop::sample::select(vec![
            "0",
            "1",
            "3",
            "10",
            "11",
            "-1",
            "4294967296",
            "99999999999999999999",
            "0.5",
            "1.0",
            "2.5",
            "10.0",
            "10.5",
            "nan",
            "inf",
            "-0.0",
            "true",
            "false",
            "\"\"",
            "\"0s\"",
            "\"500us\"",
            "\"1ms\"",
            "\"10ms\"",
            "\"250ms\"",
            "\"2s\"",
            "\"31s\"",
            "\"45s\"",
            "\"1m\"",
            "\"1.5s\"",
            "\"-1s\"",
            "\"fast\"",
            "\"full\"",
            "\"equal\"",
            "\"none\"",
            "\"auto\"",
            "\"p99\"",
            "\"unlimited\"",
            "\"tb\"",
            "{ name = \"tb\", cost = 2 }",
            "{ name = \"tb\", cost = 0 }",
            "{ cost = 1 }",
            "[1, 2]",
            "{}",
        ]);
        (field, value).prop_map(|(field, value)| format!("{field} = {value}"))
    }

    /// A budget setting, some misspelled, with values of every shape.
    fn budget_line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let field = prop::sample::select(vec![
            "capacity",
            "refill_per_sec",
            "ratio",
            "min_per_sec",
            "ttl",
            "max_tokens",
            "token_ratio",
            "retry_cost",
            "timeout_cost",
            "success_increment",
            "k",
            "window",
            "min_concurrency",
            "url_env",
            "key",
            "lease",
            "lease_ttl",
            "timeout",
            "on_unavailable",
            "fallback_capacity",
            "fallback_refill_per_sec",
            "max_token",
        ]);
        let value = prop::sample::select(vec![
            "0",
            "1",
            "10",
            "1000",
            "1001",
            "-1",
            "4294967296",
            "0.0",
            "0.001",
            "0.2",
            "-0.0",
            "1000.0",
            "1e308",
            "nan",
            "inf",
            "-inf",
            "true",
            "\"\"",
            "\"0s\"",
            "\"1ms\"",
            "\"999ms\"",
            "\"1s\"",
            "\"10s\"",
            "\"61s\"",
            "\"2m\"",
            "\"REDIS_URL\"",
            "\"redis://127.0.0.1\"",
            "\"deny\"",
            "\"allow\"",
            "\"fallback\"",
            "\"maybe\"",
            "[1]",
            "{}",
        ]);
        (field, value).prop_map(|(field, value)| format!("{field} = {value}"))
    }

    /// Whether an accepted declaration holds only values its budget takes
    /// as they are.
    fn budget_in_range(decl: &BudgetDecl) -> bool {
        use std::time::Duration;
        let ratio = |r: f64| (0.0..=1000.0).contains(&r);
        match decl {
            BudgetDecl::Unlimited | BudgetDecl::Custom | BudgetDecl::RetryQuota { .. } => true,
            BudgetDecl::TokenBucket { refill_per_sec, .. } => refill_per_sec.is_finite() && *refill_per_sec >= 0.0,
            BudgetDecl::Percentage { ratio: r, ttl, .. } => {
                ratio(*r) && (Duration::from_secs(1)..=Duration::from_secs(60)).contains(ttl)
            }
            BudgetDecl::RetryThrottling { max_tokens, token_ratio } => {
                (1..=1000).contains(max_tokens) && *token_ratio > 0.0 && *token_ratio <= 1000.0
            }
            BudgetDecl::AdaptiveThrottling { k, window } => {
                k.is_finite() && *k >= 1.0 && *window >= Duration::from_secs(1)
            }
            BudgetDecl::Concurrency { ratio: r, .. } => ratio(*r),
            BudgetDecl::RedisTokenBucket {
                url_env,
                key,
                refill_per_sec,
                lease,
                lease_ttl,
                timeout,
                fallback_refill_per_sec,
                ..
            } => {
                !url_env.is_empty()
                    && !url_env.contains(':')
                    && !key.trim().is_empty()
                    && refill_per_sec.is_finite()
                    && *refill_per_sec >= 0.0
                    && fallback_refill_per_sec.is_finite()
                    && *fallback_refill_per_sec >= 0.0
                    && *lease >= 1
                    && *lease_ttl >= Duration::from_millis(1)
                    && *timeout >= Duration::from_millis(1)
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_is_judged_without_panicking(text in "\\PC{0,200}") {
            let doc = catalog(&text);
            for problem in doc.problems() {
                proptest::prop_assert!(problem.starts_with("recourse.toml:"), "{problem}");
            }
        }

        /// Any budget table is judged without panicking, and one the reader
        /// accepts holds values within the documented ranges.
        #[test]
        fn any_budget_table_is_judged_and_accepted_values_are_in_range(
            kind in proptest::sample::select(vec![
                "token_bucket", "percentage", "retry_throttling", "retry_quota", "adaptive_throttling",
                "concurrency", "redis_token_bucket", "unlimited", "custom", "leaky",
            ]),
            lines in proptest::collection::vec(budget_line(), 0..8),
        ) {
            let mut seen = std::collections::HashSet::new();
            let lines: Vec<String> = lines.into_iter().filter(|l| seen.insert(l.split(' ').next().map(str::to_owned))).collect();
            let text = format!("[budgets.b]\nkind = \"{kind}\"\n{}\n", lines.join("\n"));
            let doc = catalog(&text);
            for problem in doc.problems() {
                proptest::prop_assert!(problem.starts_with("recourse.toml:"), "{problem}");
            }
            if doc.is_valid() {
                proptest::prop_assert!(budget_in_range(&doc.budgets["b"]), "{text}\n{:?}", doc.budgets);
            }
        }
        /// A catalog the reader accepts is never clamped at run time: the
        /// policy it describes is already normalized.
        #[test]
        fn an_accepted_policy_is_never_clamped(lines in proptest::collection::vec(policy_line(), 0..8)) {
            let text = format!("[budgets.tb]\nkind = \"token_bucket\"\ncapacity = 5\n[policies.\"svc.Op\"]\n{}\n", lines.join("\n"));
            let doc = catalog(&text);
            for problem in doc.problems() {
                proptest::prop_assert!(problem.starts_with("recourse.toml:"), "{problem}");
            }
            if doc.is_valid() {
                let policy = doc.policies["svc.Op"].spec.to_policy(PolicyKey::parse("svc.Op"), PolicySource::Catalog);
                proptest::prop_assert!(!policy.meta.normalization.changed(), "{text}\n{policy:?}");
            }
        }
    }
}

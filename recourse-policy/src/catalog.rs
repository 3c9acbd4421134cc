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
            "budgets" => parse_budgets(&ctx, value, &mut catalog),
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
    let budgets: Vec<&str> = catalog.budgets.keys().map(String::as_str).collect();
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

fn parse_budgets(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, catalog: &mut CatalogDoc) {
    let Some(table) = value.get_ref().as_table() else {
        catalog.errors.push(ctx.at(value.offset(), "`budgets` must be a table of `[budgets.name]` tables"));
        return;
    };
    for (name, value) in table {
        if let Some(decl) = decode::budget_decl(ctx, &field(name), value, &mut catalog.errors) {
            catalog.budgets.insert(name.get_ref().trim().to_owned(), decl);
        }
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_is_judged_without_panicking(text in "\\PC{0,200}") {
            let doc = catalog(&text);
            for problem in doc.problems() {
                proptest::prop_assert!(problem.starts_with("recourse.toml:"), "{problem}");
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

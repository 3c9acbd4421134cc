//! Parsing and validating `recourse.toml` with the floors and ceilings of
//! the runtime's normalization, read from the crate both share
//! (`recourse_policy::limits`), so a value the catalog accepts is never
//! clamped at run time.

use std::collections::BTreeMap;
use std::path::PathBuf;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::{Catalog, PolicyEntry};
use crate::key::{key_problem, suggest};

use recourse_policy::duration::{nanos, parse as parse_duration, show as show_duration};
use recourse_policy::limits;

/// A catalog budget reference: `budget = "name"` or `{ name, cost }`.
#[derive(Debug, Clone)]
pub(crate) struct BudgetRefSpec {
    pub(crate) name: String,
    pub(crate) cost: u32,
}

/// A `[budgets.<name>]` declaration.
#[derive(Debug, Clone, Copy)]
pub(crate) enum BudgetDeclSpec {
    Unlimited,
    TokenBucket {
        capacity: u32,
        refill_per_sec: f64,
    },
    /// Registered in code under this name (`kind = "custom"`).
    Custom,
}

/// A `.hedge` sub-table.
#[derive(Debug, Clone, Default)]
pub(crate) struct HedgeSpec {
    pub(crate) enabled: bool,
    pub(crate) max_hedges: Option<u32>,
    pub(crate) delay: Option<u64>,
    pub(crate) trigger: Option<String>,
    pub(crate) budget: Option<BudgetRefSpec>,
    pub(crate) cancel_on_first_terminal: Option<bool>,
}

/// A `.circuit` sub-table.
#[derive(Debug, Clone, Default)]
pub(crate) struct CircuitSpec {
    pub(crate) enabled: bool,
    pub(crate) threshold: Option<u32>,
    pub(crate) cooldown: Option<u64>,
    pub(crate) failure_ratio: Option<f64>,
    pub(crate) window: Option<u64>,
    pub(crate) min_throughput: Option<u32>,
}

/// One policy's settings; `None` keeps the runtime default. Durations are
/// in nanoseconds.
#[derive(Debug, Clone, Default)]
pub(crate) struct PolicySpec {
    pub(crate) id: Option<String>,
    pub(crate) max_attempts: Option<u32>,
    pub(crate) initial_backoff: Option<u64>,
    pub(crate) max_backoff: Option<u64>,
    pub(crate) backoff_multiplier: Option<f64>,
    pub(crate) jitter: Option<String>,
    pub(crate) timeout_per_attempt: Option<u64>,
    pub(crate) overall_timeout: Option<u64>,
    pub(crate) classifier: Option<String>,
    pub(crate) budget: Option<BudgetRefSpec>,
    pub(crate) hedge: Option<HedgeSpec>,
    pub(crate) circuit: Option<CircuitSpec>,
}

impl PolicySpec {
    /// Whether hedging is on for this policy.
    pub(crate) fn hedging(&self) -> bool {
        self.hedge.as_ref().is_some_and(|h| h.enabled)
    }
}

const POLICY_FIELDS: &[&str] = &[
    "id",
    "max_attempts",
    "initial_backoff",
    "max_backoff",
    "backoff_multiplier",
    "jitter",
    "timeout_per_attempt",
    "overall_timeout",
    "classifier",
    "budget",
    "hedge",
    "circuit",
];
const HEDGE_FIELDS: &[&str] = &["enabled", "max_hedges", "delay", "trigger", "budget", "cancel_on_first_terminal"];
const CIRCUIT_FIELDS: &[&str] = &["enabled", "threshold", "cooldown", "failure_ratio", "window", "min_throughput"];
const TOP_LEVEL: &[&str] = &["policies", "budgets", "classifiers", "triggers"];

/// Reads `[package.metadata.recourse] catalog` from a Cargo manifest.
pub(super) fn metadata_catalog(manifest: &str) -> Option<String> {
    let table = DeTable::parse(manifest).ok()?;
    let value = table.get_ref().get("package")?.get_ref().get("metadata")?.get_ref().get("recourse")?;
    value.get_ref().get("catalog")?.get_ref().as_str().map(str::to_owned)
}

struct Ctx<'a> {
    text: &'a str,
    shown: &'a str,
}

impl Ctx<'_> {
    fn line(&self, offset: usize) -> usize {
        self.text[..offset.min(self.text.len())].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn at<T>(&self, item: &Spanned<T>, message: impl std::fmt::Display) -> String {
        format!("{}:{}: {message}", self.shown, self.line(item.span().start))
    }
}

fn unknown_field(ctx: &Ctx<'_>, key: &Spanned<std::borrow::Cow<'_, str>>, table: &str, known: &[&str]) -> String {
    let hint =
        suggest(key.get_ref(), known.iter().copied()).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
    ctx.at(key, format!("unknown field `{}` in {table}{hint}", key.get_ref()))
}

pub(super) fn parse(text: &str, path: PathBuf, shown: &str) -> Catalog {
    let ctx = Ctx { text, shown };
    let mut catalog = Catalog {
        path,
        shown: shown.to_owned(),
        policies: BTreeMap::new(),
        classifiers: Vec::new(),
        triggers: Vec::new(),
        budgets: BTreeMap::new(),
        errors: Vec::new(),
    };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(error) => {
            let line = error.span().map_or(1, |s| ctx.line(s.start));
            catalog.errors.push(format!("{shown}:{line}: {}", error.message().trim()));
            return catalog;
        }
    };
    for (key, value) in root.get_ref() {
        match &**key.get_ref() {
            "policies" => parse_policies(&ctx, value, &mut catalog),
            "budgets" => parse_budgets(&ctx, value, &mut catalog.errors, &mut catalog.budgets),
            "classifiers" => parse_names(&ctx, value, "classifiers", &mut catalog.errors, &mut catalog.classifiers),
            "triggers" => parse_names(&ctx, value, "triggers", &mut catalog.errors, &mut catalog.triggers),
            _ => catalog.errors.push(unknown_field(
                &ctx,
                key,
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
            builtins: super::BUILTIN_CLASSIFIERS,
            declared: &classifiers,
            declare: "`[classifiers] names = [...]`",
        },
        Names {
            what: "budget",
            builtins: super::BUILTIN_BUDGETS,
            declared: &budgets,
            declare: "`[budgets.<name>]` (`kind = \"custom\"` for one registered in code)",
        },
        Names {
            what: "hedge trigger",
            builtins: super::BUILTIN_TRIGGERS,
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
                && let Some(problem) = names.problem(shown, entry.line, key, field, name.trim())
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
    builtins: &'static [&'static str],
    declared: &'a [&'a str],
    declare: &'static str,
}

impl Names<'_> {
    /// Why `name`, referenced by `policies."<key>".<field>`, is unknown.
    fn problem(&self, shown: &str, line: usize, key: &str, field: &str, name: &str) -> Option<String> {
        if self.builtins.contains(&name) || self.declared.contains(&name) {
            return None;
        }
        let candidates = self.builtins.iter().chain(self.declared).copied();
        let hint = suggest(name, candidates).map(|s| format!("did you mean \"{s}\"? ")).unwrap_or_default();
        let what = self.what;
        Some(format!(
            "{shown}:{line}: policies.\"{key}\".{field} = \"{name}\" is not a known {what}; {hint}built-ins are {}; declare others in {}",
            self.builtins.join(", "),
            self.declare
        ))
    }
}

fn parse_policies(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, catalog: &mut Catalog) {
    let Some(table) = value.get_ref().as_table() else {
        catalog.errors.push(ctx.at(value, "`policies` must be a table of `[policies.\"svc.Op\"]` tables"));
        return;
    };
    for (key, value) in table {
        let name = key.get_ref().to_string();
        if let Some(problem) = key_problem(&name) {
            catalog.errors.push(ctx.at(key, problem));
            continue;
        }
        let mut errors = Vec::new();
        let spec = match value.get_ref().as_table() {
            Some(fields) => parse_policy(ctx, &name, fields, &mut errors),
            None => {
                errors.push(ctx.at(value, format!("policies.\"{name}\" must be a table")));
                PolicySpec::default()
            }
        };
        catalog.policies.insert(name, PolicyEntry { line: ctx.line(key.span().start), spec, errors });
    }
}

#[allow(clippy::too_many_lines, reason = "one arm per field, like the schema table")]
fn parse_policy(ctx: &Ctx<'_>, name: &str, fields: &DeTable<'_>, errors: &mut Vec<String>) -> PolicySpec {
    let mut spec = PolicySpec::default();
    let field = |f: &str| format!("policies.\"{name}\".{f}");
    for (key, value) in fields {
        let k = key.get_ref();
        let path = field(k);
        let result = match &**k {
            "id" => string(ctx, value, &path).map(|v| spec.id = Some(v)),
            "max_attempts" => integer(ctx, value, &path, 1, limits::MAX_ATTEMPTS).map(|v| spec.max_attempts = Some(v)),
            "initial_backoff" => duration(ctx, value, &path, nanos(limits::MIN_INITIAL_BACKOFF), None)
                .map(|v| spec.initial_backoff = Some(v)),
            "max_backoff" => {
                duration(ctx, value, &path, nanos(limits::MIN_INITIAL_BACKOFF), Some(nanos(limits::MAX_BACKOFF)))
                    .map(|v| spec.max_backoff = Some(v))
            }
            "backoff_multiplier" => float(ctx, value, &path, limits::MIN_MULTIPLIER, limits::MAX_MULTIPLIER)
                .map(|v| spec.backoff_multiplier = Some(v)),
            "jitter" => jitter(ctx, value, &path).map(|v| spec.jitter = Some(v)),
            "timeout_per_attempt" => timeout(ctx, value, &path).map(|v| spec.timeout_per_attempt = Some(v)),
            "overall_timeout" => timeout(ctx, value, &path).map(|v| spec.overall_timeout = Some(v)),
            "classifier" => string(ctx, value, &path).map(|v| spec.classifier = Some(v)),
            "budget" => budget_ref(ctx, value, &path).map(|v| spec.budget = Some(v)),
            "hedge" => hedge(ctx, value, &path, errors).map(|v| spec.hedge = Some(v)),
            "circuit" => circuit(ctx, value, &path, errors).map(|v| spec.circuit = Some(v)),
            _ => Err(unknown_field(ctx, key, &format!("policies.\"{name}\""), POLICY_FIELDS)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if let (Some(initial), Some(max)) = (spec.initial_backoff, spec.max_backoff)
        && max < initial
    {
        errors.push(format!(
            "{}: {} = {} is below initial_backoff = {}",
            ctx.shown,
            field("max_backoff"),
            show_duration(max),
            show_duration(initial)
        ));
    }
    // A long initial backoff with no cap raises the cap to it, exactly as
    // normalization would; writing it here keeps the run-time policy
    // unclamped.
    if let (Some(initial), None) = (spec.initial_backoff, spec.max_backoff)
        && initial > nanos(limits::DEFAULT_MAX_BACKOFF)
    {
        spec.max_backoff = Some(initial.min(nanos(limits::MAX_BACKOFF)).max(initial));
    }
    spec
}

fn hedge(
    ctx: &Ctx<'_>,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<String>,
) -> Result<HedgeSpec, String> {
    let table = value.get_ref().as_table().ok_or_else(|| ctx.at(value, format!("{path} must be a table")))?;
    let mut spec = HedgeSpec { enabled: true, ..HedgeSpec::default() };
    for (key, value) in table {
        let path = format!("{path}.{}", key.get_ref());
        let result = match &**key.get_ref() {
            "enabled" => boolean(ctx, value, &path).map(|v| spec.enabled = v),
            "max_hedges" => integer(ctx, value, &path, 1, limits::MAX_HEDGES).map(|v| spec.max_hedges = Some(v)),
            "delay" => duration(ctx, value, &path, nanos(limits::MIN_HEDGE_DELAY), None).map(|v| spec.delay = Some(v)),
            "trigger" => string(ctx, value, &path).map(|v| spec.trigger = Some(v)),
            "budget" => budget_ref(ctx, value, &path).map(|v| spec.budget = Some(v)),
            "cancel_on_first_terminal" => boolean(ctx, value, &path).map(|v| spec.cancel_on_first_terminal = Some(v)),
            _ => Err(unknown_field(ctx, key, path.rsplit_once('.').map_or("", |p| p.0), HEDGE_FIELDS)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    Ok(spec)
}

fn circuit(
    ctx: &Ctx<'_>,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    errors: &mut Vec<String>,
) -> Result<CircuitSpec, String> {
    let table = value.get_ref().as_table().ok_or_else(|| ctx.at(value, format!("{path} must be a table")))?;
    let mut spec = CircuitSpec { enabled: true, ..CircuitSpec::default() };
    for (key, value) in table {
        let path = format!("{path}.{}", key.get_ref());
        let result = match &**key.get_ref() {
            "enabled" => boolean(ctx, value, &path).map(|v| spec.enabled = v),
            "threshold" => integer(ctx, value, &path, 1, u32::MAX).map(|v| spec.threshold = Some(v)),
            "failure_ratio" => float(ctx, value, &path, f64::MIN_POSITIVE, 1.0).map(|v| spec.failure_ratio = Some(v)),
            "window" => {
                duration(ctx, value, &path, nanos(limits::MIN_CIRCUIT_WINDOW), None).map(|v| spec.window = Some(v))
            }
            "min_throughput" => integer(ctx, value, &path, 1, u32::MAX).map(|v| spec.min_throughput = Some(v)),
            "cooldown" => {
                duration(ctx, value, &path, nanos(limits::MIN_CIRCUIT_COOLDOWN), None).map(|v| spec.cooldown = Some(v))
            }
            _ => Err(unknown_field(ctx, key, path.rsplit_once('.').map_or("", |p| p.0), CIRCUIT_FIELDS)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    Ok(spec)
}

fn parse_budgets(
    ctx: &Ctx<'_>,
    value: &Spanned<DeValue<'_>>,
    errors: &mut Vec<String>,
    budgets: &mut BTreeMap<String, BudgetDeclSpec>,
) {
    let Some(table) = value.get_ref().as_table() else {
        errors.push(ctx.at(value, "`budgets` must be a table of `[budgets.name]` tables"));
        return;
    };
    for (name, value) in table {
        let path = format!("budgets.{}", name.get_ref());
        if name.get_ref().trim().is_empty() {
            errors.push(ctx.at(name, "budget names cannot be empty"));
        }
        let Some(fields) = value.get_ref().as_table() else {
            errors.push(ctx.at(value, format!("{path} must be a table")));
            continue;
        };
        let kind = fields.get("kind").map(|k| (k, k.get_ref().as_str()));
        match kind {
            None => {
                errors.push(ctx.at(
                    name,
                    format!("{path} needs `kind = \"token_bucket\"`, `kind = \"unlimited\"` or `kind = \"custom\"`"),
                ));
            }
            Some((_, Some(kind @ ("custom" | "unlimited")))) => {
                let (decl, why) = if kind == "custom" {
                    (BudgetDeclSpec::Custom, "is configured in code")
                } else {
                    (BudgetDeclSpec::Unlimited, "takes no settings")
                };
                budgets.insert(name.get_ref().trim().to_owned(), decl);
                for (key, _) in fields.iter().filter(|(k, _)| k.get_ref() != "kind") {
                    errors.push(unknown_field(ctx, key, &format!("{path} (kind \"{kind}\" {why})"), &["kind"]));
                }
            }
            Some((_, Some("token_bucket"))) => {
                let (mut capacity, mut refill_per_sec) = (0, 0.0);
                for (key, value) in fields {
                    let field = format!("{path}.{}", key.get_ref());
                    let result = match &**key.get_ref() {
                        "kind" => Ok(()),
                        "capacity" => integer(ctx, value, &field, 0, u32::MAX).map(|v| capacity = v),
                        "refill_per_sec" => float(ctx, value, &field, 0.0, f64::MAX).map(|v| refill_per_sec = v),
                        _ => Err(unknown_field(ctx, key, &path, &["kind", "capacity", "refill_per_sec"])),
                    };
                    if let Err(e) = result {
                        errors.push(e);
                    }
                }
                if fields.contains_key("capacity") {
                    budgets.insert(
                        name.get_ref().trim().to_owned(),
                        BudgetDeclSpec::TokenBucket { capacity, refill_per_sec },
                    );
                } else {
                    errors.push(ctx.at(name, format!("{path} (a token bucket) needs `capacity`")));
                }
            }
            Some((k, _)) => {
                errors.push(ctx.at(k, format!("{path}.kind must be \"token_bucket\", \"unlimited\" or \"custom\"")));
            }
        }
    }
}

/// `[classifiers] names = [...]` or `[triggers] names = [...]`: names
/// registered in code.
fn parse_names(
    ctx: &Ctx<'_>,
    value: &Spanned<DeValue<'_>>,
    table: &str,
    errors: &mut Vec<String>,
    names: &mut Vec<String>,
) {
    let Some(fields) = value.get_ref().as_table() else {
        errors.push(ctx.at(value, format!("`{table}` must be a table: `[{table}] names = [\"my_name\"]`")));
        return;
    };
    for (key, value) in fields {
        if key.get_ref() != "names" {
            errors.push(unknown_field(ctx, key, &format!("[{table}]"), &["names"]));
            continue;
        }
        let Some(items) = value.get_ref().as_array() else {
            errors.push(ctx.at(value, format!("{table}.names must be an array of strings")));
            continue;
        };
        for item in items {
            match item.get_ref().as_str() {
                Some(name) if !name.trim().is_empty() => names.push(name.trim().to_owned()),
                _ => errors.push(ctx.at(item, format!("{table}.names must hold non-empty strings"))),
            }
        }
    }
}

fn type_error(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, path: &str, expected: &str) -> String {
    ctx.at(value, format!("{path} must be {expected}, found {}", value.get_ref().type_str()))
}

fn string(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, path: &str) -> Result<String, String> {
    match value.get_ref().as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(_) => Err(ctx.at(value, format!("{path} cannot be empty"))),
        None => Err(type_error(ctx, value, path, "a string")),
    }
}

fn boolean(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, path: &str) -> Result<bool, String> {
    value.get_ref().as_bool().ok_or_else(|| type_error(ctx, value, path, "`true` or `false`"))
}

fn integer(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, path: &str, min: u32, max: u32) -> Result<u32, String> {
    let int = value.get_ref().as_integer().ok_or_else(|| type_error(ctx, value, path, "an integer"))?;
    let digits = int.as_str().replace('_', "");
    let parsed = i64::from_str_radix(digits.trim_start_matches(['+']), int.radix())
        .map_err(|_| ctx.at(value, format!("{path} = {} is not a valid integer", int.as_str())))?;
    match u32::try_from(parsed) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ if max == u32::MAX => Err(ctx.at(value, format!("{path} = {parsed} must be at least {min}"))),
        _ => Err(ctx.at(value, format!("{path} = {parsed} is out of range ({min}..={max})"))),
    }
}

fn float(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, path: &str, min: f64, max: f64) -> Result<f64, String> {
    let v = match value.get_ref() {
        DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().unwrap_or(f64::NAN),
        DeValue::Integer(i) => i.as_str().replace('_', "").parse::<f64>().unwrap_or(f64::NAN),
        _ => return Err(type_error(ctx, value, path, "a number")),
    };
    if v.is_nan() {
        return Err(ctx.at(value, format!("{path} is not a number (NaN)")));
    }
    if v < min || v > max {
        let range = if max >= f64::MAX { format!("at least {min}") } else { format!("in {min:?}..={max:?}") };
        return Err(ctx.at(value, format!("{path} = {v} must be {range}")));
    }
    Ok(v)
}

fn jitter(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, path: &str) -> Result<String, String> {
    let s = string(ctx, value, path)?;
    match s.as_str() {
        "none" | "full" | "equal" => Ok(s),
        other => {
            let hint = suggest(other, ["none", "full", "equal"])
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            Err(ctx.at(value, format!("{path} = \"{other}\" must be \"none\", \"full\" or \"equal\"{hint}")))
        }
    }
}

/// A timeout: `"0s"` disables it, otherwise at least 1 ms.
fn timeout(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, path: &str) -> Result<u64, String> {
    let given = duration(ctx, value, path, 0, None)?;
    let min = nanos(limits::MIN_TIMEOUT);
    if given != 0 && given < min {
        return Err(ctx.at(
            value,
            format!("{path} = {} is below {} (use \"0s\" to disable it)", show_duration(given), show_duration(min)),
        ));
    }
    Ok(given)
}

fn duration(
    ctx: &Ctx<'_>,
    value: &Spanned<DeValue<'_>>,
    path: &str,
    min: u64,
    max: Option<u64>,
) -> Result<u64, String> {
    let Some(text) = value.get_ref().as_str() else {
        return Err(type_error(ctx, value, path, "a duration string such as \"250ms\", \"2s\" or \"1m\""));
    };
    let nanos = parse_duration(text).ok_or_else(|| {
        ctx.at(value, format!("{path} = \"{text}\" is not a duration; write a number and a unit: ns, us, ms, s, m or h (e.g. \"250ms\")"))
    })?;
    if nanos < min {
        return Err(ctx.at(value, format!("{path} = \"{text}\" is below the minimum of {}", show_duration(min))));
    }
    if let Some(max) = max
        && nanos > max
    {
        return Err(ctx.at(value, format!("{path} = \"{text}\" is above the maximum of {}", show_duration(max))));
    }
    Ok(nanos)
}

fn budget_ref(ctx: &Ctx<'_>, value: &Spanned<DeValue<'_>>, path: &str) -> Result<BudgetRefSpec, String> {
    match value.get_ref() {
        DeValue::String(_) => Ok(BudgetRefSpec { name: string(ctx, value, path)?, cost: 1 }),
        DeValue::Table(table) => {
            let mut name = None;
            let mut cost = 1;
            for (key, value) in table {
                match &**key.get_ref() {
                    "name" => name = Some(string(ctx, value, &format!("{path}.name"))?),
                    "cost" => cost = integer(ctx, value, &format!("{path}.cost"), 1, u32::MAX)?,
                    _ => return Err(unknown_field(ctx, key, path, &["name", "cost"])),
                }
            }
            let name = name.ok_or_else(|| ctx.at(value, format!("{path} needs a `name`")))?;
            Ok(BudgetRefSpec { name, cost })
        }
        _ => Err(type_error(ctx, value, path, "a budget name or `{ name = \"...\", cost = N }`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recourse_policy::duration::{MS, S};

    fn catalog(text: &str) -> Catalog {
        parse(text, PathBuf::from("/x/recourse.toml"), "recourse.toml")
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(250 * MS));
        assert_eq!(parse_duration("1.5s"), Some(1_500 * MS));
        assert_eq!(parse_duration("2m"), Some(120 * S));
        assert_eq!(parse_duration("100us"), Some(100_000));
        assert_eq!(parse_duration("-1s"), None);
        assert_eq!(parse_duration("1"), None);
        assert_eq!(parse_duration("ms"), None);
        assert_eq!(parse_duration("1.s"), None);
        assert_eq!(parse_duration("99999999999999999h"), None);
        assert_eq!(show_duration(30 * S), "30s");
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
        assert_eq!(p.spec.initial_backoff, Some(20 * MS));
        assert_eq!(p.spec.backoff_multiplier, Some(2.0));
        assert_eq!(p.spec.budget.as_ref().map(|b| b.cost), Some(2));
        assert!(p.spec.hedging());
        assert_eq!(p.line, 2);
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
        assert!(all.contains("recourse.toml:2: policies.\"a.b\".max_attempts = 50 is out of range (1..=10)"), "{all}");
        assert!(all.contains("recourse.toml:3:") && all.contains("did you mean \"full\"?"), "{all}");
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
        assert!(matches!(c.budgets.get("payments"), Some(BudgetDeclSpec::Custom)));
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

    #[test]
    fn metadata_catalog_path() {
        let manifest = "[package]\nname = \"x\"\n[package.metadata.recourse]\ncatalog = \"../recourse.toml\"\n";
        assert_eq!(metadata_catalog(manifest).as_deref(), Some("../recourse.toml"));
        assert_eq!(metadata_catalog("[package]\nname = \"x\"\n"), None);
    }
}

//! The one walker from a document tree to [`PolicySpec`]s, shared by the
//! TOML catalog and JSON policy documents: each format adapts its values to
//! [`Node`], and every field, range, message and did-you-mean lives here.
//!
//! Two dialects:
//! * [`Dialect::Catalog`] (`recourse.toml`): flat fields, durations as
//!   strings, and every value checked against [`limits`], so a value the
//!   catalog accepts is never clamped at run time.
//! * [`Dialect::Go`] (JSON from a control plane): the Go original's nested
//!   `retry`/`hedge`/`circuit` objects and field names, durations as
//!   strings or integer nanoseconds, zero values accepted; out-of-range
//!   numbers are left to normalization, which clamps them and records it.

use std::fmt::{self, Display};
use std::time::Duration;

use crate::duration::{nanos, parse as parse_duration, show as show_nanos};
use crate::key::suggest;
use crate::spec::{BudgetRefSpec, CircuitSpec, HedgeSpec, PolicySpec};
use crate::{Jitter, limits};

/// A value in a decoded document, as the walker needs to see it.
pub(crate) trait Node {
    /// The value's type, for messages ("string", "integer", ...).
    fn type_str(&self) -> &'static str;
    fn as_str(&self) -> Option<&str>;
    fn as_bool(&self) -> Option<bool>;
    /// `Some(Ok(n))` for an integer, `Some(Err(text))` for an integer
    /// literal that does not fit in 64 bits, `None` for anything else.
    fn as_integer(&self) -> Option<Result<i64, String>>;
    /// Any number (integers too).
    fn as_number(&self) -> Option<f64>;
    /// A table's entries in document order.
    fn entries(&self) -> Option<Vec<(Field<'_>, &Self)>>;
    /// An array's items.
    #[cfg_attr(not(feature = "toml"), allow(dead_code, reason = "only the catalog has arrays of names"))]
    fn items(&self) -> Option<Vec<&Self>>;
    /// Byte offset in the text, when the format keeps positions.
    fn offset(&self) -> Option<usize>;
}

/// A table key and where it is.
pub(crate) struct Field<'a> {
    pub(crate) name: &'a str,
    pub(crate) offset: Option<usize>,
}

/// Which document layout is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "json"), allow(dead_code, reason = "the Go dialect is JSON's"))]
pub(crate) enum Dialect {
    Catalog,
    Go,
}

/// The text being decoded and how to name it in messages.
pub(crate) struct Ctx<'a> {
    pub(crate) text: &'a str,
    pub(crate) shown: &'a str,
    pub(crate) dialect: Dialect,
}

impl Ctx<'_> {
    /// Line and column (1-based, columns in characters) of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.text[..offset];
        let line = before.bytes().filter(|b| *b == b'\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    /// `message` prefixed with the file and, when known, the position.
    pub(crate) fn at(&self, offset: Option<usize>, message: impl Display) -> String {
        match offset {
            Some(offset) => {
                let (line, column) = self.position(offset);
                format!("{}:{line}:{column}: {message}", self.shown)
            }
            None => format!("{}: {message}", self.shown),
        }
    }

    fn strict(&self) -> bool {
        self.dialect == Dialect::Catalog
    }
}

/// `path.name`, or `name` at the top of a document.
pub(crate) fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_owned() } else { format!("{path}.{name}") }
}

pub(crate) fn unknown_field(ctx: &Ctx<'_>, key: &Field<'_>, table: &str, known: &[&str]) -> String {
    let hint = suggest(key.name, known.iter().copied()).map(|s| format!("; did you mean `{s}`?")).unwrap_or_default();
    ctx.at(key.offset, format!("unknown field `{}` in {table}{hint}", key.name))
}

/// Field names of each table, per dialect (for unknown-field messages).
const CATALOG_POLICY: &[&str] = &[
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
const GO_POLICY: &[&str] = &["key", "id", "retry", "hedge", "circuit"];
const GO_RETRY: &[&str] = &[
    "max_attempts",
    "initial_backoff",
    "max_backoff",
    "backoff_multiplier",
    "jitter",
    "timeout_per_attempt",
    "overall_timeout",
    "classifier_name",
    "budget",
];
const CATALOG_HEDGE: &[&str] = &["enabled", "max_hedges", "delay", "trigger", "budget", "cancel_on_first_terminal"];
const GO_HEDGE: &[&str] =
    &["enabled", "max_hedges", "hedge_delay", "trigger_name", "budget", "cancel_on_first_terminal"];
const CIRCUIT: &[&str] = &["enabled", "threshold", "cooldown", "failure_ratio", "window", "min_throughput"];

/// The settings of one policy table. In the catalog dialect that is the
/// `[policies."<key>"]` table; in the Go dialect, a policy object without
/// its `key` (the caller reads that).
pub(crate) fn policy<V: Node>(ctx: &Ctx<'_>, path: &str, fields: &V, errors: &mut Vec<String>) -> PolicySpec {
    let mut spec = PolicySpec::default();
    let Some(entries) = fields.entries() else {
        errors.push(type_error(ctx, fields, path, "a table"));
        return spec;
    };
    for (key, value) in entries {
        let field = join(path, key.name);
        let result = match (ctx.dialect, key.name) {
            (_, "hedge") => hedge(ctx, value, &field, errors).map(|v| spec.hedge = v),
            (_, "circuit") => circuit(ctx, value, &field, errors).map(|v| spec.circuit = v),
            (_, "id") => optional_string(ctx, value, &field).map(|v| spec.id = v),
            (Dialect::Go, "key") => Ok(()),
            (Dialect::Go, "retry") => match value.entries() {
                Some(retry) => {
                    for (key, value) in retry {
                        let field = join(&field, key.name);
                        if let Err(e) = retry_field(ctx, &key, value, &field, &mut spec) {
                            errors.push(e);
                        }
                    }
                    Ok(())
                }
                None => Err(type_error(ctx, value, &field, "an object")),
            },
            (Dialect::Catalog, _) => retry_field(ctx, &key, value, &field, &mut spec),
            (Dialect::Go, _) => Err(unknown_field(ctx, &key, path, GO_POLICY)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if ctx.strict() {
        // Against the default initial backoff too: a lower cap alone would
        // be raised by normalization, which a catalog never relies on.
        if let Some(max) = spec.max_backoff
            && max < spec.initial_backoff.unwrap_or(limits::DEFAULT_INITIAL_BACKOFF)
        {
            let initial = match spec.initial_backoff {
                Some(initial) => show(initial),
                None => format!("{} (the default)", show(limits::DEFAULT_INITIAL_BACKOFF)),
            };
            errors.push(ctx.at(
                None,
                format!("{} = {} is below initial_backoff = {initial}", join(path, "max_backoff"), show(max)),
            ));
        }
        // A long initial backoff with no cap raises the cap to it, exactly
        // as normalization would; writing it here keeps the run-time
        // policy unclamped.
        if let (Some(initial), None) = (spec.initial_backoff, spec.max_backoff)
            && initial > limits::DEFAULT_MAX_BACKOFF
        {
            spec.max_backoff = Some(initial);
        }
    }
    spec
}

/// One retry setting: a catalog policy's own fields, or the Go `retry`
/// object's.
fn retry_field<V: Node>(
    ctx: &Ctx<'_>,
    key: &Field<'_>,
    value: &V,
    path: &str,
    spec: &mut PolicySpec,
) -> Result<(), String> {
    match (ctx.dialect, key.name) {
        (_, "max_attempts") => integer(ctx, value, path, 1, limits::MAX_ATTEMPTS).map(|v| spec.max_attempts = Some(v)),
        (_, "initial_backoff") => duration(ctx, value, path, limits::MIN_INITIAL_BACKOFF, Some(limits::MAX_BACKOFF))
            .map(|v| spec.initial_backoff = Some(v)),
        (_, "max_backoff") => duration(ctx, value, path, limits::MIN_INITIAL_BACKOFF, Some(limits::MAX_BACKOFF))
            .map(|v| spec.max_backoff = Some(v)),
        (_, "backoff_multiplier") => float(ctx, value, path, limits::MIN_MULTIPLIER, limits::MAX_MULTIPLIER)
            .map(|v| spec.backoff_multiplier = Some(v)),
        (_, "jitter") => jitter(ctx, value, path).map(|v| spec.jitter = Some(v)),
        (_, "timeout_per_attempt") => timeout(ctx, value, path).map(|v| spec.timeout_per_attempt = Some(v)),
        (_, "overall_timeout") => timeout(ctx, value, path).map(|v| spec.overall_timeout = Some(v)),
        (Dialect::Catalog, "classifier") | (Dialect::Go, "classifier_name") => {
            optional_string(ctx, value, path).map(|v| spec.classifier = v)
        }
        (_, "budget") => budget_ref(ctx, value, path).map(|v| spec.budget = v),
        (Dialect::Catalog, _) => {
            Err(unknown_field(ctx, key, path.rsplit_once('.').map_or("", |p| p.0), CATALOG_POLICY))
        }
        (Dialect::Go, _) => Err(unknown_field(ctx, key, path.rsplit_once('.').map_or("", |p| p.0), GO_RETRY)),
    }
}

fn hedge<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str, errors: &mut Vec<String>) -> Result<Option<HedgeSpec>, String> {
    let table = value.entries().ok_or_else(|| type_error(ctx, value, path, "a table"))?;
    // In the catalog a `.hedge` table turns hedging on; Go's object says
    // so with `enabled`.
    let mut spec = HedgeSpec { enabled: ctx.strict(), ..HedgeSpec::enabled() };
    let (delay, trigger, known) = match ctx.dialect {
        Dialect::Catalog => ("delay", "trigger", CATALOG_HEDGE),
        Dialect::Go => ("hedge_delay", "trigger_name", GO_HEDGE),
    };
    for (key, value) in table {
        let field = join(path, key.name);
        let result = match key.name {
            "enabled" => boolean(ctx, value, &field).map(|v| spec.enabled = v),
            "max_hedges" => integer(ctx, value, &field, 1, limits::MAX_HEDGES).map(|v| spec.max_hedges = Some(v)),
            name if name == delay => {
                duration(ctx, value, &field, limits::MIN_HEDGE_DELAY, None).map(|v| spec.delay = Some(v))
            }
            name if name == trigger => optional_string(ctx, value, &field).map(|v| spec.trigger = v),
            "budget" => budget_ref(ctx, value, &field).map(|v| spec.budget = v),
            "cancel_on_first_terminal" => boolean(ctx, value, &field).map(|v| spec.cancel_on_first_terminal = Some(v)),
            _ => Err(unknown_field(ctx, &key, path, known)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    Ok(Some(spec))
}

fn circuit<V: Node>(
    ctx: &Ctx<'_>,
    value: &V,
    path: &str,
    errors: &mut Vec<String>,
) -> Result<Option<CircuitSpec>, String> {
    let table = value.entries().ok_or_else(|| type_error(ctx, value, path, "a table"))?;
    let mut spec = CircuitSpec { enabled: ctx.strict(), ..CircuitSpec::enabled() };
    for (key, value) in table {
        let field = join(path, key.name);
        let result = match key.name {
            "enabled" => boolean(ctx, value, &field).map(|v| spec.enabled = v),
            "threshold" => integer(ctx, value, &field, 1, u32::MAX).map(|v| spec.threshold = Some(v)),
            "failure_ratio" => above_zero(ctx, value, &field, 1.0).map(|v| spec.failure_ratio = Some(v)),
            "window" => duration(ctx, value, &field, limits::MIN_CIRCUIT_WINDOW, None).map(|v| spec.window = Some(v)),
            "min_throughput" => integer(ctx, value, &field, 1, u32::MAX).map(|v| spec.min_throughput = Some(v)),
            "cooldown" => {
                duration(ctx, value, &field, limits::MIN_CIRCUIT_COOLDOWN, None).map(|v| spec.cooldown = Some(v))
            }
            _ => Err(unknown_field(ctx, &key, path, CIRCUIT)),
        };
        if let Err(e) = result {
            errors.push(e);
        }
    }
    Ok(Some(spec))
}

/// The kinds a `[budgets.<name>]` table may declare.
#[cfg(feature = "toml")]
const BUDGET_KINDS: &[&str] = &[
    "token_bucket",
    "percentage",
    "retry_throttling",
    "retry_quota",
    "adaptive_throttling",
    "concurrency",
    "redis_token_bucket",
    "unlimited",
    "custom",
];

/// The defaults of the budget kinds' optional settings: the budgets' own
/// (Finagle's, the AWS SDKs', the SRE book's, Envoy's).
#[cfg(feature = "toml")]
mod budget_defaults {
    use std::time::Duration;

    pub(super) const PERCENTAGE_RATIO: f64 = 0.2;
    pub(super) const PERCENTAGE_MIN_PER_SEC: u32 = 10;
    pub(super) const PERCENTAGE_TTL: Duration = Duration::from_secs(10);
    pub(super) const PERCENTAGE_TTL_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
    /// gRPC's bounds (proposal A6).
    pub(super) const MAX_TOKENS: u32 = 1000;
    pub(super) const MAX_TOKEN_RATIO: f64 = 1000.0;
    pub(super) const MAX_RATIO: f64 = 1000.0;
    pub(super) const QUOTA_CAPACITY: u32 = 500;
    pub(super) const QUOTA_RETRY_COST: u32 = 5;
    pub(super) const QUOTA_TIMEOUT_COST: u32 = 10;
    pub(super) const QUOTA_SUCCESS_INCREMENT: u32 = 1;
    pub(super) const ADAPTIVE_K: f64 = 2.0;
    pub(super) const ADAPTIVE_WINDOW: Duration = Duration::from_secs(120);
    pub(super) const MIN_ADAPTIVE_WINDOW: Duration = Duration::from_secs(1);
    pub(super) const CONCURRENCY_RATIO: f64 = 0.2;
    pub(super) const CONCURRENCY_MIN: u32 = 3;
    pub(super) const REDIS_LEASE: u32 = 10;
    pub(super) const REDIS_LEASE_TTL: Duration = Duration::from_secs(1);
    pub(super) const REDIS_TIMEOUT: Duration = Duration::from_millis(100);
    /// A round trip or a lease shorter than this is a typo, not a setting.
    pub(super) const MIN_REDIS_DURATION: Duration = Duration::from_millis(1);
    pub(super) const REDIS_KEY_PREFIX: &str = "recourse:budget:";
}

/// A `[budgets.<name>]` table: its kind and that kind's settings, each
/// checked, every default filled in. `None` when the table cannot describe
/// a budget (every reason is in `errors`).
#[cfg(feature = "toml")]
pub(crate) fn budget_decl<V: Node>(
    ctx: &Ctx<'_>,
    name: &Field<'_>,
    value: &V,
    errors: &mut Vec<String>,
) -> Option<crate::spec::BudgetDecl> {
    use crate::spec::BudgetDecl;
    use budget_defaults as d;

    let path = format!("budgets.{}", name.name);
    if name.name.trim().is_empty() {
        errors.push(ctx.at(name.offset, "budget names cannot be empty"));
    }
    let Some(fields) = value.entries() else {
        errors.push(ctx.at(value.offset(), format!("{path} must be a table")));
        return None;
    };
    let kinds = one_of(BUDGET_KINDS);
    let Some(kind) = fields.iter().find(|(k, _)| k.name == "kind").map(|(_, v)| *v) else {
        errors.push(ctx.at(name.offset, format!("{path} needs a `kind`: {kinds}")));
        return None;
    };
    let kind = match kind.as_str() {
        Some(text) if BUDGET_KINDS.contains(&text) => text,
        Some(text) => {
            let hint = suggest(text, BUDGET_KINDS.iter().copied())
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            errors.push(ctx.at(kind.offset(), format!("{path}.kind = \"{text}\" must be {kinds}{hint}")));
            return None;
        }
        None => {
            errors.push(type_error(ctx, kind, &join(&path, "kind"), &kinds));
            return None;
        }
    };
    let mut t = BudgetTable { ctx, path: &path, name: name.offset, fields: &fields, kind, found: Vec::new() };
    let decl = match kind {
        "unlimited" => {
            t.only(&[], "takes no settings");
            Some(BudgetDecl::Unlimited)
        }
        "custom" => {
            t.only(&[], "is configured in code");
            Some(BudgetDecl::Custom)
        }
        "token_bucket" => {
            t.takes(&["capacity", "refill_per_sec"]);
            let capacity = t.required("a token bucket", "capacity", |c, v, p| integer(c, v, p, 0, u32::MAX));
            let refill_per_sec = t.optional("refill_per_sec", |c, v, p| float(c, v, p, 0.0, f64::MAX));
            capacity.map(|capacity| BudgetDecl::TokenBucket { capacity, refill_per_sec: refill_per_sec.unwrap_or(0.0) })
        }
        "percentage" => {
            t.takes(&["ratio", "min_per_sec", "ttl"]);
            let ratio = t.optional("ratio", |c, v, p| float(c, v, p, 0.0, d::MAX_RATIO));
            let min_per_sec = t.optional("min_per_sec", |c, v, p| integer(c, v, p, 0, u32::MAX));
            let (min, max) = d::PERCENTAGE_TTL_RANGE;
            let ttl = t.optional("ttl", |c, v, p| duration(c, v, p, min, Some(max)));
            Some(BudgetDecl::Percentage {
                ratio: ratio.unwrap_or(d::PERCENTAGE_RATIO),
                min_per_sec: min_per_sec.unwrap_or(d::PERCENTAGE_MIN_PER_SEC),
                ttl: ttl.unwrap_or(d::PERCENTAGE_TTL),
            })
        }
        "retry_throttling" => {
            t.takes(&["max_tokens", "token_ratio"]);
            let what = "retry throttling";
            let max_tokens = t.required(what, "max_tokens", |c, v, p| integer(c, v, p, 1, d::MAX_TOKENS));
            let token_ratio = t.required(what, "token_ratio", |c, v, p| above_zero(c, v, p, d::MAX_TOKEN_RATIO));
            max_tokens
                .zip(token_ratio)
                .map(|(max_tokens, token_ratio)| BudgetDecl::RetryThrottling { max_tokens, token_ratio })
        }
        "retry_quota" => {
            t.takes(&["capacity", "retry_cost", "timeout_cost", "success_increment"]);
            let mut units =
                |field, default| t.optional(field, |c, v, p| integer(c, v, p, 0, u32::MAX)).unwrap_or(default);
            Some(BudgetDecl::RetryQuota {
                capacity: units("capacity", d::QUOTA_CAPACITY),
                retry_cost: units("retry_cost", d::QUOTA_RETRY_COST),
                timeout_cost: units("timeout_cost", d::QUOTA_TIMEOUT_COST),
                success_increment: units("success_increment", d::QUOTA_SUCCESS_INCREMENT),
            })
        }
        "adaptive_throttling" => {
            t.takes(&["k", "window"]);
            let k = t.optional("k", |c, v, p| float(c, v, p, 1.0, f64::MAX));
            let window = t.optional("window", |c, v, p| duration(c, v, p, d::MIN_ADAPTIVE_WINDOW, None));
            Some(BudgetDecl::AdaptiveThrottling {
                k: k.unwrap_or(d::ADAPTIVE_K),
                window: window.unwrap_or(d::ADAPTIVE_WINDOW),
            })
        }
        "concurrency" => {
            t.takes(&["ratio", "min_concurrency"]);
            let ratio = t.optional("ratio", |c, v, p| float(c, v, p, 0.0, d::MAX_RATIO));
            let min_concurrency = t.optional("min_concurrency", |c, v, p| integer(c, v, p, 0, u32::MAX));
            Some(BudgetDecl::Concurrency {
                ratio: ratio.unwrap_or(d::CONCURRENCY_RATIO),
                min_concurrency: min_concurrency.unwrap_or(d::CONCURRENCY_MIN),
            })
        }
        _ => redis_bucket(&mut t, name.name.trim()),
    };
    t.finish(errors);
    decl
}

/// A `redis_token_bucket` table's settings.
#[cfg(feature = "toml")]
fn redis_bucket<V: Node>(t: &mut BudgetTable<'_, '_, V>, name: &str) -> Option<crate::spec::BudgetDecl> {
    use crate::spec::{BudgetDecl, RedisUnavailable};
    use budget_defaults as d;

    t.takes(&[
        "url_env",
        "key",
        "capacity",
        "refill_per_sec",
        "lease",
        "lease_ttl",
        "timeout",
        "on_unavailable",
        "fallback_capacity",
        "fallback_refill_per_sec",
    ]);
    let what = "a Redis token bucket";
    if t.get("url_env").is_none() {
        let message = format!(
            "{} ({what}) needs `url_env`: the name of the environment variable that holds the Redis URL (e.g. url_env = \"REDIS_URL\")",
            t.path
        );
        t.found.push((t.name, t.ctx.at(t.name, message)));
    }
    let url_env = t.optional("url_env", env_name);
    let key = t.optional("key", string).unwrap_or_else(|| format!("{}{name}", d::REDIS_KEY_PREFIX));
    let capacity = t.required(what, "capacity", |c, v, p| integer(c, v, p, 0, u32::MAX));
    let refill_per_sec = t.required(what, "refill_per_sec", |c, v, p| float(c, v, p, 0.0, f64::MAX));
    let lease = t.optional("lease", |c, v, p| integer(c, v, p, 1, u32::MAX));
    let min = d::MIN_REDIS_DURATION;
    let lease_ttl = t.optional("lease_ttl", |c, v, p| duration(c, v, p, min, None));
    let timeout = t.optional("timeout", |c, v, p| duration(c, v, p, min, None));
    let on_unavailable = t.optional("on_unavailable", unavailable).unwrap_or(RedisUnavailable::Fallback);
    let fallback_capacity = t.optional("fallback_capacity", |c, v, p| integer(c, v, p, 0, u32::MAX));
    let fallback_refill = t.optional("fallback_refill_per_sec", |c, v, p| float(c, v, p, 0.0, f64::MAX));
    if on_unavailable != RedisUnavailable::Fallback {
        for field in ["fallback_capacity", "fallback_refill_per_sec"] {
            if let Some(value) = t.get(field) {
                let message = format!(
                    "{} applies only with on_unavailable = \"fallback\", and this bucket's is \"{}\"",
                    join(t.path, field),
                    on_unavailable.as_str()
                );
                t.found.push((value.offset(), t.ctx.at(value.offset(), message)));
            }
        }
    }
    let (capacity, refill_per_sec) = (capacity?, refill_per_sec?);
    Some(BudgetDecl::RedisTokenBucket {
        url_env: url_env?,
        key,
        capacity,
        refill_per_sec,
        lease: lease.unwrap_or(d::REDIS_LEASE),
        lease_ttl: lease_ttl.unwrap_or(d::REDIS_LEASE_TTL),
        timeout: timeout.unwrap_or(d::REDIS_TIMEOUT),
        on_unavailable,
        fallback_capacity: fallback_capacity.unwrap_or(capacity),
        fallback_refill_per_sec: fallback_refill.unwrap_or(refill_per_sec),
    })
}

/// One `[budgets.<name>]` table being read: its settings, and the problems
/// found so far, reported in document order.
#[cfg(feature = "toml")]
struct BudgetTable<'t, 'c, V> {
    ctx: &'t Ctx<'c>,
    path: &'t str,
    /// Where the table's name is: a missing setting is reported there.
    name: Option<usize>,
    fields: &'t [(Field<'t>, &'t V)],
    kind: &'t str,
    found: Vec<(Option<usize>, String)>,
}

#[cfg(feature = "toml")]
impl<V: Node> BudgetTable<'_, '_, V> {
    /// Reports every setting but `kind` as unknown, saying why.
    fn only(&mut self, known: &[&str], why: &str) {
        let table = format!("{} (kind \"{}\" {why})", self.path, self.kind);
        let known: Vec<&str> = ["kind"].into_iter().chain(known.iter().copied()).collect();
        for (key, _) in self.fields.iter().filter(|(k, _)| !known.contains(&k.name)) {
            let message = if self.kind == "redis_token_bucket" && key.name == "url" {
                self.ctx.at(
                    key.offset,
                    format!(
                        "{}: the Redis URL is not written in the catalog; put it in an environment variable and name the variable with `url_env` (e.g. url_env = \"REDIS_URL\")",
                        join(self.path, key.name)
                    ),
                )
            } else {
                unknown_field(self.ctx, key, &table, &known)
            };
            self.found.push((key.offset, message));
        }
    }

    /// Reports every setting outside `known` (and `kind`), naming those the
    /// kind takes.
    fn takes(&mut self, known: &[&str]) {
        let names: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
        self.only(known, &format!("takes {}", names.join(", ")));
    }

    fn get(&self, field: &str) -> Option<&V> {
        self.fields.iter().find(|(k, _)| k.name == field).map(|(_, v)| *v)
    }

    /// The setting read by `read`; `None` when it is absent or invalid
    /// (then the reason is recorded).
    fn optional<T>(&mut self, field: &str, read: impl FnOnce(&Ctx<'_>, &V, &str) -> Result<T, String>) -> Option<T> {
        let value = self.get(field)?;
        match read(self.ctx, value, &join(self.path, field)) {
            Ok(v) => Some(v),
            Err(e) => {
                self.found.push((value.offset(), e));
                None
            }
        }
    }

    /// As [`optional`](Self::optional), and an absent setting is a problem
    /// too: `what` (the kind, in words) needs it.
    fn required<T>(
        &mut self,
        what: &str,
        field: &str,
        read: impl FnOnce(&Ctx<'_>, &V, &str) -> Result<T, String>,
    ) -> Option<T> {
        if self.get(field).is_none() {
            let message = format!("{} ({what}) needs `{field}`", self.path);
            self.found.push((self.name, self.ctx.at(self.name, message)));
            return None;
        }
        self.optional(field, read)
    }

    /// Hands the problems over, in the order their lines come.
    fn finish(self, errors: &mut Vec<String>) {
        let mut found = self.found;
        found.sort_by_key(|(offset, _)| *offset);
        errors.extend(found.into_iter().map(|(_, e)| e));
    }
}

/// `"a", "b" or "c"`.
#[cfg(feature = "toml")]
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

/// The name of an environment variable: letters, digits and `_`, not
/// starting with a digit. A URL here is refused without repeating it (it
/// may hold a password).
#[cfg(feature = "toml")]
fn env_name<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str) -> Result<String, String> {
    let name = string(ctx, value, path)?;
    if name.contains("://") || name.contains('@') {
        return Err(ctx.at(
            value.offset(),
            format!(
                "{path} holds a URL, but it names the environment variable that holds the URL (e.g. url_env = \"REDIS_URL\"), so no address or password is written in the catalog"
            ),
        ));
    }
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(ctx.at(
            value.offset(),
            format!(
                "{path} = \"{name}\" is not an environment variable name (letters, digits and `_`, not starting with a digit)"
            ),
        ));
    }
    Ok(name)
}

/// `on_unavailable`: `"deny"`, `"allow"` or `"fallback"`.
#[cfg(feature = "toml")]
fn unavailable<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str) -> Result<crate::spec::RedisUnavailable, String> {
    use crate::spec::RedisUnavailable;
    const MODES: [&str; 3] = ["deny", "allow", "fallback"];
    match string(ctx, value, path)?.as_str() {
        "deny" => Ok(RedisUnavailable::Deny),
        "allow" => Ok(RedisUnavailable::Allow),
        "fallback" => Ok(RedisUnavailable::Fallback),
        other => {
            let hint = suggest(other, MODES).map(|s| format!("; did you mean \"{s}\"?")).unwrap_or_default();
            Err(ctx.at(value.offset(), format!("{path} = \"{other}\" must be {}{hint}", one_of(&MODES))))
        }
    }
}

/// `names = [...]` of `[classifiers]` or `[triggers]`.
#[cfg(feature = "toml")]
pub(crate) fn names<V: Node>(ctx: &Ctx<'_>, value: &V, table: &str, errors: &mut Vec<String>, names: &mut Vec<String>) {
    let Some(fields) = value.entries() else {
        errors.push(ctx.at(value.offset(), format!("`{table}` must be a table: `[{table}] names = [\"my_name\"]`")));
        return;
    };
    for (key, value) in fields {
        if key.name != "names" {
            errors.push(unknown_field(ctx, &key, &format!("[{table}]"), &["names"]));
            continue;
        }
        let Some(items) = value.items() else {
            errors.push(ctx.at(value.offset(), format!("{table}.names must be an array of strings")));
            continue;
        };
        for item in items {
            match item.as_str() {
                Some(name) if !name.trim().is_empty() => names.push(name.trim().to_owned()),
                _ => errors.push(ctx.at(item.offset(), format!("{table}.names must hold non-empty strings"))),
            }
        }
    }
}

pub(crate) fn type_error<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str, expected: &str) -> String {
    ctx.at(value.offset(), format!("{path} must be {expected}, found {}", value.type_str()))
}

/// A non-empty, trimmed string.
pub(crate) fn string<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str) -> Result<String, String> {
    match value.as_str() {
        Some(s) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(_) => Err(ctx.at(value.offset(), format!("{path} cannot be empty"))),
        None => Err(type_error(ctx, value, path, "a string")),
    }
}

/// A name; in the Go dialect an empty string means "none" (Go writes
/// every field, empty ones included).
fn optional_string<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str) -> Result<Option<String>, String> {
    match value.as_str() {
        Some(s) if s.trim().is_empty() && !ctx.strict() => Ok(None),
        _ => string(ctx, value, path).map(Some),
    }
}

fn boolean<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str) -> Result<bool, String> {
    value.as_bool().ok_or_else(|| type_error(ctx, value, path, "`true` or `false`"))
}

/// A count: within `min..=max` in the catalog; in the Go dialect any
/// non-negative 32-bit value (normalization clamps it).
fn integer<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str, min: u32, max: u32) -> Result<u32, String> {
    let parsed = match value.as_integer() {
        Some(Ok(parsed)) => parsed,
        Some(Err(text)) => return Err(ctx.at(value.offset(), format!("{path} = {text} is not a valid integer"))),
        None => return Err(type_error(ctx, value, path, "an integer")),
    };
    let (min, max) = if ctx.strict() { (min, max) } else { (0, u32::MAX) };
    match u32::try_from(parsed) {
        Ok(v) if (min..=max).contains(&v) => Ok(v),
        _ if max == u32::MAX => Err(ctx.at(value.offset(), format!("{path} = {parsed} must be at least {min}"))),
        _ => Err(ctx.at(value.offset(), format!("{path} = {parsed} is out of range ({min}..={max})"))),
    }
}

fn float<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str, min: f64, max: f64) -> Result<f64, String> {
    let v = value.as_number().ok_or_else(|| type_error(ctx, value, path, "a number"))?;
    if v.is_nan() {
        return Err(ctx.at(value.offset(), format!("{path} is not a number (NaN)")));
    }
    if !v.is_finite() || (ctx.strict() && (v < min || v > max)) {
        let range = if max >= f64::MAX { format!("at least {min}") } else { format!("in {min:?}..={max:?}") };
        return Err(ctx.at(value.offset(), format!("{path} = {v} must be {range}")));
    }
    Ok(v)
}

/// A number above 0 and at most `max` (in the catalog; in the Go dialect
/// any finite number, normalization clamps it).
fn above_zero<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str, max: f64) -> Result<f64, String> {
    let v = value.as_number().ok_or_else(|| type_error(ctx, value, path, "a number"))?;
    if v.is_nan() {
        return Err(ctx.at(value.offset(), format!("{path} is not a number (NaN)")));
    }
    if !v.is_finite() || (ctx.strict() && (v <= 0.0 || v > max)) {
        return Err(ctx.at(value.offset(), format!("{path} = {v} must be above 0 and at most {max}")));
    }
    Ok(v)
}

fn jitter<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str) -> Result<Jitter, String> {
    let text = match value.as_str() {
        Some(s) if s.trim().is_empty() && !ctx.strict() => return Ok(Jitter::None),
        _ => string(ctx, value, path)?,
    };
    match text.as_str() {
        "none" => Ok(Jitter::None),
        "full" => Ok(Jitter::Full),
        "equal" => Ok(Jitter::Equal),
        other => {
            let hint = suggest(other, ["none", "full", "equal"])
                .map(|s| format!("; did you mean \"{s}\"?"))
                .unwrap_or_default();
            Err(ctx.at(value.offset(), format!("{path} = \"{other}\" must be \"none\", \"full\" or \"equal\"{hint}")))
        }
    }
}

/// A timeout: zero disables it, otherwise at least 1 ms (in the catalog).
fn timeout<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str) -> Result<Duration, String> {
    let given = duration(ctx, value, path, Duration::ZERO, None)?;
    let min = limits::MIN_TIMEOUT;
    if ctx.strict() && !given.is_zero() && given < min {
        return Err(ctx.at(
            value.offset(),
            format!("{path} = {} is below {} (use \"0s\" to disable it)", show(given), show(min)),
        ));
    }
    Ok(given)
}

fn show(duration: Duration) -> String {
    show_nanos(nanos(duration))
}

/// A duration: a string such as `"250ms"`; in the Go dialect also an
/// integer of nanoseconds, and no floor (normalization applies it).
fn duration<V: Node>(
    ctx: &Ctx<'_>,
    value: &V,
    path: &str,
    min: Duration,
    max: Option<Duration>,
) -> Result<Duration, String> {
    let given = match (value.as_str(), value.as_integer()) {
        (Some(text), _) => parse_duration(text).map(Duration::from_nanos).ok_or_else(|| {
            ctx.at(
                value.offset(),
                format!("{path} = \"{text}\" is not a duration; write a number and a unit: ns, us, ms, s, m or h (e.g. \"250ms\")"),
            )
        })?,
        (None, Some(Ok(n))) if !ctx.strict() => match u64::try_from(n) {
            Ok(n) => Duration::from_nanos(n),
            Err(_) => return Err(ctx.at(value.offset(), format!("{path} = {n} is negative"))),
        },
        _ => {
            let expected = if ctx.strict() {
                "a duration string such as \"250ms\", \"2s\" or \"1m\""
            } else {
                "a duration string such as \"250ms\" or an integer of nanoseconds"
            };
            return Err(type_error(ctx, value, path, expected));
        }
    };
    if !ctx.strict() {
        return Ok(given);
    }
    let text = Quoted(value.as_str().unwrap_or_default());
    if given < min {
        return Err(ctx.at(value.offset(), format!("{path} = {text} is below the minimum of {}", show(min))));
    }
    if let Some(max) = max
        && given > max
    {
        return Err(ctx.at(value.offset(), format!("{path} = {text} is above the maximum of {}", show(max))));
    }
    Ok(given)
}

struct Quoted<'a>(&'a str);

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// `budget = "name"` or `{ name, cost }`; in the Go dialect an empty name
/// means unbudgeted.
fn budget_ref<V: Node>(ctx: &Ctx<'_>, value: &V, path: &str) -> Result<Option<BudgetRefSpec>, String> {
    if value.as_str().is_some() {
        return Ok(optional_string(ctx, value, path)?.map(|name| BudgetRefSpec { name, cost: 1 }));
    }
    let Some(table) = value.entries() else {
        return Err(type_error(ctx, value, path, "a budget name or `{ name = \"...\", cost = N }`"));
    };
    let mut name = None;
    let mut cost = 1;
    for (key, value) in table {
        match key.name {
            "name" => name = Some(optional_string(ctx, value, &join(path, "name"))?),
            "cost" => cost = integer(ctx, value, &join(path, "cost"), 1, u32::MAX)?,
            _ => return Err(unknown_field(ctx, &key, path, &["name", "cost"])),
        }
    }
    match name {
        Some(Some(name)) => Ok(Some(BudgetRefSpec { name, cost })),
        None if ctx.strict() => Err(ctx.at(value.offset(), format!("{path} needs a `name`"))),
        Some(None) | None => Ok(None),
    }
}

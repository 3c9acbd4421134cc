//! Decoding policies as JSON, the format a control plane serves: the Go
//! original's layout and field names (`retry.max_attempts`,
//! `hedge.hedge_delay`, `retry.classifier_name`, ...), durations as strings
//! (`"250ms"`) or integers of nanoseconds (what Go's encoder writes).
//!
//! A document is one policy object, an array of them, or
//! `{"policies": [...]}`. Unknown fields are rejected by name with a
//! did-you-mean; values out of range are left to normalization, which
//! clamps them and records what it changed, as for any other source.
//!
//! ```
//! use recourse::policy::json::decode;
//!
//! let text = r#"{"key": "users.Get", "retry": {"max_attempts": 4, "initial_backoff": "20ms", "max_backoff": 1000000000}}"#;
//! let policies = decode(text, "policy.json").unwrap();
//! assert_eq!(policies[0].key.as_deref(), Some("users.Get"));
//! assert_eq!(policies[0].spec.max_attempts, Some(4));
//!
//! let problems = decode(r#"{"retry": {"max_atempts": 4}}"#, "policy.json").unwrap_err();
//! assert_eq!(problems, ["policy.json: unknown field `max_atempts` in retry; did you mean `max_attempts`?"]);
//! ```

use serde_json::Value;

use crate::decode::{self, Ctx, Dialect, Field, Node, type_error};
use crate::key::{PolicyKey, validate_key};
use crate::spec::PolicySpec;

/// One policy of a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The key it names (`"key": "svc.Op"` or Go's
    /// `{"namespace": "svc", "name": "Op"}`), if it names one.
    pub key: Option<String>,
    /// Its settings.
    pub spec: PolicySpec,
}

/// Decodes a JSON policy document; `shown` names it in messages. Every
/// problem is reported; a document with any problem yields none of its
/// policies. Never panics.
pub fn decode(text: &str, shown: &str) -> Result<Vec<Decoded>, Vec<String>> {
    let root: Value = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; put the position first,
        // as every other message does.
        let message = message.split(" at line ").next().unwrap_or(&message);
        vec![format!("{shown}:{}:{}: {message}", e.line(), e.column())]
    })?;
    let ctx = Ctx { text, shown, dialect: Dialect::Go };
    let mut errors = Vec::new();
    let items: Vec<(String, &Value)> = match &root {
        Value::Array(items) => items.iter().enumerate().map(|(i, v)| (format!("[{i}]"), v)).collect(),
        Value::Object(map) if map.contains_key("policies") => {
            if let Some((key, _)) = map.iter().find(|(k, _)| *k != "policies") {
                let field = Field { name: key, offset: None };
                errors.push(decode::unknown_field(&ctx, &field, "the policy set", &["policies"]));
            }
            match &map["policies"] {
                Value::Array(items) => items.iter().enumerate().map(|(i, v)| (format!("policies[{i}]"), v)).collect(),
                other => {
                    errors.push(type_error(&ctx, other, "policies", "an array of policies"));
                    Vec::new()
                }
            }
        }
        Value::Object(_) => vec![(String::new(), &root)],
        other => {
            errors.push(type_error(&ctx, other, "the document", "a policy object or an array of policies"));
            Vec::new()
        }
    };
    let mut policies = Vec::with_capacity(items.len());
    for (path, item) in items {
        let key = item.get("key").and_then(|key| policy_key(&ctx, &path, key, &mut errors));
        let spec = decode::policy(&ctx, &path, item, &mut errors);
        policies.push(Decoded { key, spec });
    }
    if errors.is_empty() { Ok(policies) } else { Err(errors) }
}

/// Decodes a policy set whose every policy names its key, once: what a
/// policy file or a control plane's set endpoint holds.
///
/// ```
/// use recourse::policy::json::decode_keyed;
///
/// let set = decode_keyed(r#"[{"key": "a.B"}, {"retry": {}}]"#, "set.json").unwrap_err();
/// assert_eq!(set, ["set.json: policy #2 has no key; every policy in a set names its key (\"key\": \"svc.Op\")"]);
/// ```
pub fn decode_keyed(text: &str, shown: &str) -> Result<Vec<(PolicyKey, PolicySpec)>, Vec<String>> {
    let decoded = decode(text, shown)?;
    let mut problems = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut policies = Vec::with_capacity(decoded.len());
    for (index, policy) in decoded.into_iter().enumerate() {
        match policy.key {
            None => problems.push(format!(
                "{shown}: policy #{} has no key; every policy in a set names its key (\"key\": \"svc.Op\")",
                index + 1
            )),
            Some(key) if !seen.insert(key.clone()) => {
                problems.push(format!("{shown}: key \"{key}\" is given more than once"));
            }
            Some(key) => policies.push((PolicyKey::parse_owned(&key), policy.spec)),
        }
    }
    if problems.is_empty() { Ok(policies) } else { Err(problems) }
}

/// `"svc.Op"` or `{"namespace": "svc", "name": "Op"}`, checked by the key
/// rule.
fn policy_key(ctx: &Ctx<'_>, path: &str, key: &Value, errors: &mut Vec<String>) -> Option<String> {
    let path = if path.is_empty() { "key".to_owned() } else { format!("{path}.key") };
    let text = match key {
        Value::String(text) => text.clone(),
        Value::Object(parts) => {
            if let Some((name, _)) = parts.iter().find(|(k, _)| !matches!(k.as_str(), "namespace" | "name")) {
                let field = Field { name, offset: None };
                errors.push(decode::unknown_field(ctx, &field, &path, &["namespace", "name"]));
                return None;
            }
            let part = |name: &str| parts.get(name).and_then(Value::as_str).unwrap_or_default();
            format!("{}.{}", part("namespace"), part("name"))
        }
        other => {
            errors.push(type_error(ctx, other, &path, "a key such as \"svc.Op\""));
            return None;
        }
    };
    match validate_key(&text) {
        Ok(()) => Some(text),
        Err(problem) => {
            errors.push(ctx.at(None, format!("{path}: {problem}")));
            None
        }
    }
}

impl Node for Value {
    fn type_str(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "float",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    fn as_str(&self) -> Option<&str> {
        self.as_str()
    }

    fn as_bool(&self) -> Option<bool> {
        self.as_bool()
    }

    fn as_integer(&self) -> Option<Result<i64, String>> {
        let Value::Number(n) = self else { return None };
        if let Some(n) = n.as_i64() {
            Some(Ok(n))
        } else if n.is_u64() {
            Some(Err(n.to_string()))
        } else {
            None
        }
    }

    fn as_number(&self) -> Option<f64> {
        self.as_f64()
    }

    fn entries(&self) -> Option<Vec<(Field<'_>, &Self)>> {
        Some(self.as_object()?.iter().map(|(k, v)| (Field { name: k, offset: None }, v)).collect())
    }

    fn items(&self) -> Option<Vec<&Self>> {
        Some(self.as_array()?.iter().collect())
    }

    fn offset(&self) -> Option<usize> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;
    use serde_json::{Map, json};

    use super::*;
    use crate::Jitter;
    use crate::spec::{BudgetRefSpec, CircuitSpec, HedgeSpec};

    fn name() -> impl Strategy<Value = String> {
        "[a-z_]{1,8}"
    }

    fn duration() -> impl Strategy<Value = Duration> {
        (0u64..=90_000_000_000).prop_map(Duration::from_nanos)
    }

    fn budget() -> impl Strategy<Value = Option<BudgetRefSpec>> {
        proptest::option::of((name(), any::<u32>()).prop_map(|(name, cost)| BudgetRefSpec { name, cost }))
    }

    fn spec() -> impl Strategy<Value = PolicySpec> {
        let retry = (
            proptest::option::of(name()),
            proptest::option::of(any::<u32>()),
            proptest::option::of(duration()),
            proptest::option::of(duration()),
            proptest::option::of(-1e6f64..1e6),
            proptest::option::of(prop::sample::select(vec![Jitter::None, Jitter::Full, Jitter::Equal])),
            proptest::option::of(duration()),
            proptest::option::of(duration()),
            proptest::option::of(name()),
            budget(),
        );
        let hedge = proptest::option::of(
            (
                any::<bool>(),
                proptest::option::of(any::<u32>()),
                proptest::option::of(duration()),
                proptest::option::of(name()),
                budget(),
                proptest::option::of(any::<bool>()),
            )
                .prop_map(|(enabled, max_hedges, delay, trigger, budget, cancel_on_first_terminal)| {
                    HedgeSpec { enabled, max_hedges, delay, trigger, budget, cancel_on_first_terminal }
                }),
        );
        let circuit = proptest::option::of(
            (
                any::<bool>(),
                proptest::option::of(any::<u32>()),
                proptest::option::of(duration()),
                proptest::option::of(0.0f64..2.0),
                proptest::option::of(duration()),
                proptest::option::of(any::<u32>()),
            )
                .prop_map(|(enabled, threshold, cooldown, failure_ratio, window, min_throughput)| {
                    CircuitSpec { enabled, threshold, cooldown, failure_ratio, window, min_throughput }
                }),
        );
        (retry, hedge, circuit).prop_map(|(r, hedge, circuit)| PolicySpec {
            id: r.0,
            max_attempts: r.1,
            initial_backoff: r.2,
            max_backoff: r.3,
            backoff_multiplier: r.4,
            jitter: r.5,
            timeout_per_attempt: r.6,
            overall_timeout: r.7,
            classifier: r.8,
            budget: r.9,
            hedge,
            circuit,
        })
    }

    /// `spec` as the Go original would write it, durations alternating
    /// between integers of nanoseconds and text.
    fn go_json(spec: &PolicySpec, text_durations: bool) -> Value {
        let d = |d: Duration| {
            let nanos = crate::duration::nanos(d);
            if text_durations { json!(crate::duration::show(nanos)) } else { json!(nanos) }
        };
        let budget = |b: &BudgetRefSpec| json!({"name": b.name, "cost": b.cost});
        let mut retry = Map::new();
        let put = |map: &mut Map<String, Value>, key: &str, value: Option<Value>| {
            if let Some(value) = value {
                map.insert(key.to_owned(), value);
            }
        };
        put(&mut retry, "max_attempts", spec.max_attempts.map(|v| json!(v)));
        put(&mut retry, "initial_backoff", spec.initial_backoff.map(d));
        put(&mut retry, "max_backoff", spec.max_backoff.map(d));
        put(&mut retry, "backoff_multiplier", spec.backoff_multiplier.map(|v| json!(v)));
        put(&mut retry, "jitter", spec.jitter.map(|j| json!(j.as_str())));
        put(&mut retry, "timeout_per_attempt", spec.timeout_per_attempt.map(d));
        put(&mut retry, "overall_timeout", spec.overall_timeout.map(d));
        put(&mut retry, "classifier_name", spec.classifier.as_ref().map(|v| json!(v)));
        put(&mut retry, "budget", spec.budget.as_ref().map(budget));
        let mut policy = Map::new();
        policy.insert("key".to_owned(), json!({"namespace": "svc", "name": "Op"}));
        put(&mut policy, "id", spec.id.as_ref().map(|v| json!(v)));
        policy.insert("retry".to_owned(), Value::Object(retry));
        if let Some(h) = &spec.hedge {
            let mut hedge = Map::new();
            hedge.insert("enabled".to_owned(), json!(h.enabled));
            put(&mut hedge, "max_hedges", h.max_hedges.map(|v| json!(v)));
            put(&mut hedge, "hedge_delay", h.delay.map(d));
            put(&mut hedge, "trigger_name", h.trigger.as_ref().map(|v| json!(v)));
            put(&mut hedge, "budget", h.budget.as_ref().map(budget));
            put(&mut hedge, "cancel_on_first_terminal", h.cancel_on_first_terminal.map(|v| json!(v)));
            policy.insert("hedge".to_owned(), Value::Object(hedge));
        }
        if let Some(c) = &spec.circuit {
            let mut circuit = Map::new();
            circuit.insert("enabled".to_owned(), json!(c.enabled));
            put(&mut circuit, "threshold", c.threshold.map(|v| json!(v)));
            put(&mut circuit, "cooldown", c.cooldown.map(d));
            put(&mut circuit, "failure_ratio", c.failure_ratio.map(|v| json!(v)));
            put(&mut circuit, "window", c.window.map(d));
            put(&mut circuit, "min_throughput", c.min_throughput.map(|v| json!(v)));
            policy.insert("circuit".to_owned(), Value::Object(circuit));
        }
        Value::Object(policy)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_is_judged_without_panicking(text in "\\PC{0,200}") {
            if let Err(problems) = decode(&text, "policy.json") {
                prop_assert!(!problems.is_empty());
                for problem in problems {
                    prop_assert!(problem.starts_with("policy.json"), "{problem}");
                }
            }
        }

        /// What the Go original writes decodes to the spec it came from,
        /// and every decoded policy normalizes without a panic.
        #[test]
        fn go_documents_decode_to_their_spec(spec in spec(), text_durations in any::<bool>()) {
            let text = go_json(&spec, text_durations).to_string();
            let decoded = decode(&text, "policy.json").map_err(|e| TestCaseError::fail(format!("{e:?}\n{text}")))?;
            prop_assert_eq!(decoded.len(), 1);
            prop_assert_eq!(decoded[0].key.as_deref(), Some("svc.Op"));
            prop_assert_eq!(&decoded[0].spec, &spec);
            let policy = decoded[0].spec.to_policy("svc.Op".into(), crate::PolicySource::Remote);
            prop_assert!(policy.is_normalized());
        }
    }

    #[test]
    fn hostile_documents_are_refused_by_name() {
        let problems = |text: &str| decode(text, "p.json").unwrap_err().join("\n");
        assert!(problems(r#"{"retry": {"max_attempts": -1}}"#).contains("retry.max_attempts = -1 must be at least 0"));
        assert!(problems(r#"{"retry": {"initial_backoff": -5}}"#).contains("retry.initial_backoff = -5 is negative"));
        assert!(
            problems(r#"{"retry": {"max_attempts": 99999999999999999999}}"#)
                .contains("must be an integer, found float")
        );
        assert!(problems(r#"{"retry": {"jitter": "ful"}}"#).contains("did you mean \"full\"?"));
        assert!(problems(r#"{"hedge": {"hedge_dealy": 5}}"#).contains("did you mean `hedge_delay`?"));
        assert!(problems(r#"{"key": "not a key"}"#).contains("key: policy key `not a key` contains ' '"));
        assert!(problems("[1, 2]").contains("[0] must be a table, found integer"));
        assert!(problems(&format!("{}1{}", "[".repeat(1000), "]".repeat(1000))).contains("recursion limit"));
        assert!(problems("{\"retry\": ").starts_with("p.json:1:"));
        let clamped = decode(r#"{"retry": {"max_attempts": 1000000, "backoff_multiplier": 1e300}}"#, "p.json").unwrap();
        let policy = clamped[0].spec.to_policy("svc.Op".into(), crate::PolicySource::Remote);
        assert_eq!(policy.retry.max_attempts, 10);
        assert!((policy.retry.backoff_multiplier - 10.0).abs() < f64::EPSILON);
        assert_eq!(policy.meta.normalization.changed_fields(), ["retry.max_attempts", "retry.backoff_multiplier"]);
    }
}

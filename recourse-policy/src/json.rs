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
use crate::key::validate_key;
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

//! Policy keys: the low-cardinality names that select a policy.

use std::borrow::Cow;
use std::fmt;

/// The name of a logical call site, such as `"user-service.GetUser"`.
///
/// A key is a pair `(namespace, name)`; both parts may be empty. It selects
/// the policy for a call and indexes long-lived per-key state (breakers,
/// latency trackers, caches) and telemetry labels, so it must have **low
/// cardinality**: never put ids, URLs, hosts or tenants in a key. Bucket
/// dynamic dimensions instead (`"plan.free"`, `"region.eu"`).
///
/// Parsing follows the Go original exactly: surrounding whitespace is
/// trimmed, the text is split at the **first** `.`, and both halves are
/// trimmed; an empty name keeps the whole text as the name.
///
/// ```
/// use recourse::PolicyKey;
///
/// let key = PolicyKey::parse("user-service.GetUser");
/// assert_eq!(key.namespace(), "user-service");
/// assert_eq!(key.name(), "GetUser");
/// assert_eq!(key.to_string(), "user-service.GetUser");
///
/// assert_eq!(PolicyKey::parse("a.b.c").name(), "b.c");
/// assert_eq!(PolicyKey::parse("service.").name(), "service.");
/// ```
///
/// Keys built from `&'static str` borrow their text, so making one per call
/// costs no allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct PolicyKey {
    namespace: Cow<'static, str>,
    name: Cow<'static, str>,
}

impl PolicyKey {
    /// A key from its two parts, taken as they are (no trimming).
    pub fn new(namespace: impl Into<Cow<'static, str>>, name: impl Into<Cow<'static, str>>) -> Self {
        Self { namespace: namespace.into(), name: name.into() }
    }

    /// A key from two static parts, usable in `const` and `static` items.
    pub const fn from_static(namespace: &'static str, name: &'static str) -> Self {
        Self { namespace: Cow::Borrowed(namespace), name: Cow::Borrowed(name) }
    }

    /// Parses `"namespace.name"` by the rules above, borrowing the text.
    pub fn parse(text: &'static str) -> Self {
        let (namespace, name) = split(text);
        Self::from_static(namespace, name)
    }

    /// Parses an owned or borrowed string by the same rules, copying only
    /// when the text is not `'static`.
    pub fn parse_owned(text: &str) -> Self {
        let (namespace, name) = split(text);
        Self::new(namespace.to_owned(), name.to_owned())
    }

    /// The namespace (the part before the first dot); may be empty.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The name (the part after the first dot); may be empty.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether both parts are empty.
    pub fn is_empty(&self) -> bool {
        self.namespace.is_empty() && self.name.is_empty()
    }
}

fn split(text: &str) -> (&str, &str) {
    let trimmed = text.trim();
    match trimmed.split_once('.') {
        None => ("", trimmed),
        Some((namespace, name)) => {
            let name = name.trim();
            if name.is_empty() { ("", trimmed) } else { (namespace.trim(), name) }
        }
    }
}

impl fmt::Display for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (true, _) => f.write_str(&self.name),
            (false, true) => f.write_str(&self.namespace),
            (false, false) => write!(f, "{}.{}", self.namespace, self.name),
        }
    }
}

impl fmt::Debug for PolicyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyKey({:?})", self.to_string())
    }
}

impl From<&'static str> for PolicyKey {
    fn from(text: &'static str) -> Self {
        Self::parse(text)
    }
}

impl From<String> for PolicyKey {
    fn from(text: String) -> Self {
        Self::parse_owned(&text)
    }
}

impl From<&PolicyKey> for PolicyKey {
    fn from(key: &PolicyKey) -> Self {
        key.clone()
    }
}

pub use recourse_policy::key::{KeyError, validate_key};

//! Policy keys: the low-cardinality names that select a policy, the rule
//! for a well-formed `service.Operation` key as source code and catalogs
//! write it, and the did-you-mean suggestion for a misspelled name.

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

/// Why a key is not a well-formed, low-cardinality `service.Operation` name.
///
/// Returned by [`validate_key`]; the `#[recourse]` macro reports the same
/// message at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The key is empty or only whitespace.
    Empty,
    /// The key has no `.` separating service and operation.
    MissingDot(String),
    /// The part before or after the first dot is empty.
    EmptyPart(String),
    /// The key contains a character outside `[A-Za-z0-9_.-]`.
    BadChar {
        /// The key as written.
        key: String,
        /// The first offending character.
        found: char,
    },
    /// The key is longer than 128 bytes.
    TooLong(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Empty => f.write_str("policy key is empty; expected \"service.Operation\""),
            Self::MissingDot(key) => write!(f, "policy key `{key}` has no `.`; expected \"service.Operation\""),
            Self::EmptyPart(key) => {
                write!(f, "policy key `{key}` has an empty service or operation part; expected \"service.Operation\"")
            }
            Self::BadChar { key, found } => write!(
                f,
                "policy key `{key}` contains {found:?}; keys are low-cardinality names made of letters, digits, `_`, `-` and `.`"
            ),
            Self::TooLong(key) => {
                write!(f, "policy key `{key}` is longer than 128 bytes; keys name call sites, not requests")
            }
        }
    }
}

impl std::error::Error for KeyError {}

/// Checks that `text` is a well-formed, low-cardinality key:
/// `service.Operation`, made of ASCII letters, digits, `_`, `-` and `.`
/// (further dots belong to the operation), no empty part between dots, at
/// most 128 bytes, no surrounding whitespace.
///
/// `recourse::PolicyKey::parse` accepts anything (as the Go original does); this is
/// the stricter rule for keys written in source code and catalogs.
///
/// ```
/// use recourse_policy::key::validate_key;
///
/// assert!(validate_key("user-service.GetUser").is_ok());
/// assert!(validate_key("queue.orders.Publish").is_ok());
/// assert!(validate_key("GetUser").is_err());
/// assert!(validate_key("users.get/42").is_err());
/// ```
pub fn validate_key(text: &str) -> Result<(), KeyError> {
    if text.trim().is_empty() {
        return Err(KeyError::Empty);
    }
    if text.len() > 128 {
        return Err(KeyError::TooLong(text.to_owned()));
    }
    if let Some(found) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return Err(KeyError::BadChar { key: text.to_owned(), found });
    }
    match text.split_once('.') {
        None => Err(KeyError::MissingDot(text.to_owned())),
        Some((service, operation)) if service.is_empty() || operation.split('.').any(str::is_empty) => {
            Err(KeyError::EmptyPart(text.to_owned()))
        }
        Some(_) => Ok(()),
    }
}

/// Levenshtein distance, for "did you mean" suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(row[j]).min(cur) };
            prev = cur;
        }
    }
    row[b.len()]
}

/// The closest candidate within a third of the word's length (at least 2
/// edits), case-insensitive: the one did-you-mean of recourse's messages.
///
/// ```
/// use recourse_policy::key::suggest;
///
/// assert_eq!(suggest("users.GetUsr", ["users.GetUser", "billing.Charge"]), Some("users.GetUser"));
/// ```
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, c)| (*d, *c))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn any_text_is_judged_without_panicking(text in "\\PC{0,40}") {
            match validate_key(&text) {
                Ok(()) => proptest::prop_assert!(text.contains('.') && text.len() <= 128),
                Err(error) => proptest::prop_assert!(!error.to_string().is_empty()),
            }
            let _ = suggest(&text, ["users.Get", "billing.Charge", ""]);
        }
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("user-service.GetUsr", ["user-service.GetUser", "billing.Charge"]),
            Some("user-service.GetUser")
        );
        assert_eq!(suggest("totally.Different", ["user-service.GetUser"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}

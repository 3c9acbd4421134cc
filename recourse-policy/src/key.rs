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
    use proptest::prelude::*;

    fn key_char(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
    }

    /// The rule, stated once more: a dot, no empty part, key characters
    /// only, at most 128 bytes.
    fn well_formed(text: &str) -> bool {
        text.len() <= 128
            && text.contains('.')
            && text.chars().all(key_char)
            && text.split('.').all(|part| !part.is_empty())
    }

    /// Text of every shape the rule cares about: any printable text, key
    /// characters with spaces, dots and the odd bad character, and long
    /// well-formed keys around the 128-byte limit.
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof!["\\PC{0,40}", any::<String>(), "[ .a-zA-Z0-9_/-]{0,16}", "[a-z]{1,64}\\.[a-zA-Z.]{1,80}"]
    }

    /// A well-formed key: a service and one to three dotted operation parts.
    fn valid_key() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,20}(\\.[A-Za-z0-9_-]{1,20}){1,3}"
    }

    /// A word and candidates: random words, and the word after a few
    /// random edits (insert, delete, replace), so that distances fall on
    /// both sides of the limit.
    fn word_and_candidates() -> impl Strategy<Value = (String, Vec<String>)> {
        "[a-zA-Z.]{0,16}".prop_flat_map(|word| {
            let edited = word.clone();
            let near = prop::collection::vec((0u8..3, any::<prop::sample::Index>(), "[a-zA-Z.]"), 0..9).prop_map(
                move |edits| {
                    let mut text: Vec<char> = edited.chars().collect();
                    for (op, at, letter) in edits {
                        let letter = letter.chars().next().unwrap();
                        let len = text.len();
                        match op {
                            0 => text.insert(at.index(len + 1), letter),
                            _ if len == 0 => {}
                            1 => {
                                text.remove(at.index(len));
                            }
                            _ => text[at.index(len)] = letter,
                        }
                    }
                    text.into_iter().collect::<String>()
                },
            );
            (Just(word), prop::collection::vec(prop_oneof![near, "[a-zA-Z.]{0,16}"], 0..6))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        // `validate_key` accepts exactly the well-formed keys, and every
        // refusal names a reason that holds of the text.
        #[test]
        fn any_text_is_judged_without_panicking(text in any_text()) {
            match validate_key(&text) {
                Ok(()) => prop_assert!(well_formed(&text), "accepted {text:?}"),
                Err(error) => {
                    prop_assert!(!well_formed(&text), "refused {text:?}: {error}");
                    prop_assert!(!error.to_string().is_empty());
                    let holds = match &error {
                        KeyError::Empty => text.trim().is_empty(),
                        KeyError::TooLong(key) => *key == text && text.len() > 128,
                        KeyError::BadChar { key, found } => *key == text && text.contains(*found) && !key_char(*found),
                        KeyError::MissingDot(key) => *key == text && !text.contains('.'),
                        KeyError::EmptyPart(key) => *key == text && text.split('.').any(str::is_empty),
                    };
                    prop_assert!(holds, "{text:?}: {error:?}");
                }
            }
            let _ = suggest(&text, ["users.Get", "billing.Charge", ""]);
        }

        // A valid key parses into its first part and the rest, prints back
        // as written, and the borrowing and copying parsers agree.
        #[test]
        fn a_valid_key_round_trips(text in valid_key()) {
            prop_assert_eq!(validate_key(&text), Ok(()));
            let key = PolicyKey::parse_owned(&text);
            let (service, operation) = text.split_once('.').unwrap();
            prop_assert_eq!((key.namespace(), key.name()), (service, operation));
            prop_assert_eq!(key.to_string(), text.clone());
            prop_assert_eq!(PolicyKey::parse(String::leak(text.clone())), key.clone());
            prop_assert_eq!(PolicyKey::from(text), key);
        }

        // Damaging a valid key in one way gives that refusal.
        #[test]
        fn a_damaged_key_names_the_damage(text in valid_key(), at in any::<prop::sample::Index>(), bad in "[ /?#%@:\u{e9}\u{1F600}]") {
            let cut = at.index(text.len() + 1);
            let bad = bad.chars().next().unwrap();
            let inserted = format!("{}{bad}{}", &text[..cut], &text[cut..]);
            // Whitespace around the key is a bad character too.
            let expected = KeyError::BadChar { key: inserted.clone(), found: bad };
            prop_assert_eq!(validate_key(&inserted), Err(expected));
            let doubled = format!("{}.{}", &text[..text.find('.').unwrap()], &text[text.find('.').unwrap()..]);
            prop_assert_eq!(validate_key(&doubled), Err(KeyError::EmptyPart(doubled.clone())));
            for empty in [format!(".{text}"), format!("{text}.")] {
                prop_assert_eq!(validate_key(&empty), Err(KeyError::EmptyPart(empty.clone())));
            }
            let undotted = text.replace('.', "_");
            prop_assert_eq!(validate_key(&undotted), Err(KeyError::MissingDot(undotted.clone())));
            let long = format!("{text}{}", "x".repeat(129 - text.len().min(129)));
            prop_assert_eq!(validate_key(&long), Err(KeyError::TooLong(long.clone())));
        }

        // Any text parses (as the Go original: split at the first dot, both
        // parts trimmed); printing and parsing again gives the same key,
        // except for an empty namespace and a dotted name (".a.b" is
        // ("", "a.b"), printed "a.b").
        #[test]
        fn any_text_parses_and_prints_back(text in any_text()) {
            let key = PolicyKey::parse_owned(&text);
            prop_assert_eq!(PolicyKey::parse(String::leak(text.clone())), key.clone());
            for part in [key.namespace(), key.name()] {
                prop_assert_eq!(part.trim(), part);
            }
            prop_assert!(!key.namespace().contains('.'));
            prop_assert_eq!(key.is_empty(), text.trim().is_empty());
            if !key.namespace().is_empty() || !key.name().contains('.') {
                prop_assert_eq!(PolicyKey::parse_owned(&key.to_string()), key);
            }
        }

        // `suggest` picks the closest candidate within its limit (ties: the
        // smallest), case-insensitively, whatever the candidates' order.
        #[test]
        fn suggest_picks_the_closest_candidate((word, candidates) in word_and_candidates()) {
            let limit = (word.chars().count() / 3).max(2);
            let far = |c: &str| distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase());
            let best = candidates.iter().map(|c| (far(c), c.as_str())).filter(|(d, _)| *d <= limit).min();
            prop_assert_eq!(suggest(&word, candidates.iter().map(String::as_str)), best.map(|(_, c)| c));
            prop_assert_eq!(suggest(&word, candidates.iter().rev().map(String::as_str)), best.map(|(_, c)| c));
            let shouted = word.to_ascii_uppercase();
            prop_assert_eq!(suggest(&shouted, [word.as_str()]), Some(word.as_str()), "case does not count");
        }

        // The edit distance is a metric: zero only between equal words,
        // symmetric, at most the longer length, and one edit is one.
        #[test]
        fn the_distance_is_an_edit_distance(a in "\\PC{0,12}", b in "\\PC{0,12}", c in "[a-z]") {
            prop_assert_eq!(distance(&a, &b) == 0, a == b);
            prop_assert_eq!(distance(&a, &b), distance(&b, &a));
            prop_assert!(distance(&a, &b) <= a.chars().count().max(b.chars().count()));
            prop_assert_eq!(distance(&a, &format!("{a}{c}")), 1);
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

    #[test]
    fn an_empty_namespace_with_a_dotted_name_prints_as_another_key() {
        let key = PolicyKey::parse(".a.b");
        assert_eq!((key.namespace(), key.name()), ("", "a.b"));
        assert_eq!(PolicyKey::parse_owned(&key.to_string()), PolicyKey::new("a", "b"));
    }
}

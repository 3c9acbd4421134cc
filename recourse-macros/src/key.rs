//! Policy key rules, shared with `recourse::policy::validate_key` (the two
//! implementations are checked against one fixture list in the test suite).

/// Why a key literal is not a well-formed `service.Operation` key.
pub(crate) fn key_problem(text: &str) -> Option<String> {
    if text.trim().is_empty() {
        return Some("policy key is empty; expected \"service.Operation\"".to_owned());
    }
    if text.len() > 128 {
        return Some(format!("policy key `{text}` is longer than 128 bytes; keys name call sites, not requests"));
    }
    if let Some(found) = text.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))) {
        return Some(format!(
            "policy key `{text}` contains {found:?}; keys are low-cardinality names made of letters, digits, `_`, `-` and `.`"
        ));
    }
    match text.split_once('.') {
        None => Some(format!("policy key `{text}` has no `.`; expected \"service.Operation\"")),
        Some((service, operation)) if service.is_empty() || operation.split('.').any(str::is_empty) => {
            Some(format!("policy key `{text}` has an empty service or operation part; expected \"service.Operation\""))
        }
        Some(_) => None,
    }
}

/// Splits a valid key at its first dot.
pub(crate) fn split(text: &str) -> (&str, &str) {
    text.split_once('.').unwrap_or(("", text))
}

/// Levenshtein distance, for "did you mean" suggestions.
pub(crate) fn distance(a: &str, b: &str) -> usize {
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
/// edits), case-insensitive.
pub(crate) fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
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

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("user-service.GetUsr", ["user-service.GetUser", "billing.Charge"]),
            Some("user-service.GetUser")
        );
        assert_eq!(suggest("totally.Different", ["user-service.GetUser"]), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    /// The same fixture `recourse::policy::validate_key` is tested against.
    #[test]
    fn shared_fixture() {
        let fixture = include_str!("../../tests/fixtures/keys.txt");
        for line in fixture.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
            let (verdict, key) = line.split_once(' ').expect("`ok KEY` or `bad KEY`");
            let key = key.trim_matches('"');
            assert_eq!(key_problem(key).is_none(), verdict == "ok", "{line}");
        }
    }
}

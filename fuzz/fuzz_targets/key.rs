//! Policy keys on any text: `validate_key` accepts exactly the
//! well-formed `service.Operation` names and says why it refuses the
//! rest; `PolicyKey::parse_owned` never panics, trims its parts and prints
//! back to a key it parses to again; `suggest` picks the closest
//! candidate within its limit (checked against a Levenshtein distance
//! written here, independently).
//!
//! The input is lines: each is judged as a key, the first is also the
//! word `suggest` looks up among the others.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recourse_policy::PolicyKey;
use recourse_policy::key::{KeyError, suggest, validate_key};

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

/// The rule, stated once more: a dot, no empty part, key characters only,
/// 1 to 128 bytes.
fn well_formed(text: &str) -> bool {
    text.len() <= 128
        && text.contains('.')
        && text.chars().all(key_char)
        && text.split('.').all(|part| !part.is_empty())
}

/// Edit distance over chars, the textbook full table.
fn levenshtein(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut table = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in table.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        table[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = table[i - 1][j - 1] + usize::from(a[i - 1] != b[j - 1]);
            table[i][j] = substitution.min(table[i - 1][j] + 1).min(table[i][j - 1] + 1);
        }
    }
    table[a.len()][b.len()]
}

fn judge(text: &str) {
    match validate_key(text) {
        Ok(()) => {
            assert!(well_formed(text), "accepted {text:?}");
            let key = PolicyKey::parse_owned(text);
            assert_eq!(key.to_string(), text, "a valid key prints as written");
            assert_eq!(Some(key.namespace()), text.split('.').next());
        }
        Err(error) => {
            assert!(!well_formed(text), "refused {text:?}: {error}");
            assert!(!error.to_string().is_empty());
            match &error {
                KeyError::Empty => assert!(text.trim().is_empty()),
                KeyError::TooLong(key) => assert!(key == text && text.len() > 128),
                KeyError::BadChar { key, found } => assert!(key == text && text.contains(*found) && !key_char(*found)),
                KeyError::MissingDot(key) => assert!(key == text && !text.contains('.')),
                KeyError::EmptyPart(key) => assert!(key == text && text.split('.').any(str::is_empty)),
                _ => {}
            }
        }
    }

    let key = PolicyKey::parse_owned(text);
    for part in [key.namespace(), key.name()] {
        assert_eq!(part.trim(), part, "parts are trimmed: {text:?}");
    }
    assert!(!key.namespace().contains('.'), "{text:?}");
    assert_eq!(key.is_empty(), text.trim().is_empty());
    // Printing and parsing again gives the same key, except for an empty
    // namespace and a dotted name (".a.b" is ("", "a.b"), printed "a.b").
    if !key.namespace().is_empty() || !key.name().contains('.') {
        assert_eq!(PolicyKey::parse_owned(&key.to_string()), key, "{text:?}");
    }
}

fuzz_target!(|text: &str| {
    let lines: Vec<&str> = text.split('\n').take(9).collect();
    for line in &lines {
        judge(line);
    }
    let (word, candidates) = (lines[0], &lines[1..]);
    let limit = (word.chars().count() / 3).max(2);
    let far = |c: &str| levenshtein(&word.to_ascii_lowercase(), &c.to_ascii_lowercase());
    let best = candidates.iter().map(|c| (far(c), *c)).filter(|(d, _)| *d <= limit).min();
    assert_eq!(suggest(word, candidates.iter().copied()), best.map(|(_, c)| c), "{word:?} among {candidates:?}");
    let reversed = suggest(word, candidates.iter().rev().copied());
    assert_eq!(reversed, best.map(|(_, c)| c), "the order of candidates does not matter");
});

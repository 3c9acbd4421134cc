//! `recourse::policy::validate_key` against the fixture the macro crate's
//! compile-time key check is tested with: the two must agree on every key.
#![allow(missing_docs)]

use recourse::policy::validate_key;

#[test]
fn runtime_and_compile_time_key_rules_agree() {
    let fixture = include_str!("../fixtures/keys.txt");
    let mut checked = 0;
    for line in fixture.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let (verdict, key) = line.split_once(' ').expect("`ok KEY` or `bad KEY`");
        let key = key.trim_matches('"');
        assert_eq!(validate_key(key).is_ok(), verdict == "ok", "{line}");
        checked += 1;
    }
    assert!(checked >= 20, "the fixture lost its cases");
}

//! `recourse::policy::validate_key` (the rule the macros' compile-time key
//! check runs too, from `recourse-policy`) against the key fixture.
#![allow(missing_docs)]

use recourse::policy::validate_key;

#[test]
fn the_key_rule_gives_every_fixture_its_verdict() {
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

//! Durations as policies write them: a non-negative decimal and a unit
//! (`"250ms"`, `"1.5s"`, `"2m"`, `"100us"`), in whole nanoseconds.
//!
//! ```
//! use recourse_policy::duration::{parse, show};
//!
//! assert_eq!(parse("1.5s"), Some(1_500_000_000));
//! assert_eq!(parse("250ms"), Some(250_000_000));
//! assert_eq!(parse("-1s"), None);
//! assert_eq!(show(250_000_000), "250ms");
//! ```

/// Nanoseconds in a millisecond.
pub const MS: u64 = 1_000_000;
/// Nanoseconds in a second.
pub const S: u64 = 1_000 * MS;

/// The nanoseconds `text` stands for: a non-negative decimal (no sign, no
/// exponent, digits on both sides of a point) and one of `ns`, `us` (or
/// `µs`), `ms`, `s`, `m`, `h`. `None` for anything else, or when it does
/// not fit in 64 bits. Digits below a nanosecond are dropped.
pub fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => MS,
        "s" => S,
        "m" => 60 * S,
        "h" => 3_600 * S,
        _ => return None,
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = whole.parse().ok()?;
    let mut nanos = whole.checked_mul(scale)?;
    let mut place = scale;
    for digit in frac.chars() {
        place /= 10;
        nanos = nanos.checked_add(u64::from(digit.to_digit(10)?) * place)?;
    }
    Some(nanos)
}

/// `nanos` in the largest unit that shows it exactly (`"30s"`, `"250ms"`,
/// `"100us"`, `"7ns"`).
pub fn show(nanos: u64) -> String {
    match nanos {
        0 => "0s".to_owned(),
        n if n % S == 0 => format!("{}s", n / S),
        n if n % MS == 0 => format!("{}ms", n / MS),
        n if n % 1_000 == 0 => format!("{}us", n / 1_000),
        n => format!("{n}ns"),
    }
}

/// A [`Duration`](std::time::Duration)'s whole nanoseconds, saturating
/// (the limits are far inside `u64`).
pub fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_fractions() {
        assert_eq!(parse("10ns"), Some(10));
        assert_eq!(parse("100us"), Some(100_000));
        assert_eq!(parse("100µs"), Some(100_000));
        assert_eq!(parse(" 2m "), Some(120 * S));
        assert_eq!(parse("1h"), Some(3_600 * S));
        assert_eq!(parse("0.25s"), Some(250 * MS));
        assert_eq!(parse("1.0000000001s"), Some(S), "below a nanosecond is dropped");
    }

    #[test]
    fn malformed_and_overflowing_text_is_none() {
        for text in
            ["", "ms", "5", "5 ms", "-5ms", ".5s", "5.s", "5x", "1e3ms", "99999999999999999999h", "20000000000h"]
        {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_text_parses_or_is_refused(text in ".{0,24}") {
            let _ = parse(&text);
        }

        #[test]
        fn shown_durations_parse_back(nanos in 0u64..=u64::MAX / 3_600) {
            proptest::prop_assert_eq!(parse(&show(nanos)), Some(nanos));
        }

        #[test]
        fn decimals_in_any_unit_are_exact(whole in 0u64..100_000, millis in 0u64..1_000) {
            let text = format!("{whole}.{millis:03}s");
            proptest::prop_assert_eq!(parse(&text), Some(whole * S + millis * MS));
        }
    }

    #[test]
    fn show_round_trips_through_parse() {
        for nanos in [0, 7, 100_000, 250 * MS, 30 * S, 90 * S] {
            assert_eq!(parse(&show(nanos)), Some(nanos), "{}", show(nanos));
        }
    }
}

//! The built-in triggers.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::{HedgeState, HedgeTrigger, LatencySnapshot, POLL_INTERVAL, TriggerDecision};

/// What [`LatencyTrigger`] answers when the attempt has run exactly as long
/// as the threshold: it needs to have run strictly longer, so it asks again
/// shortly (Go answers a zero wait here, which its executor turns into a
/// 25 ms poll).
const AT_THRESHOLD_CHECK_IN: Duration = Duration::from_millis(1);

/// Launches hedge k at k × delay after the group started.
///
/// Go's `FixedDelayTrigger`, answering [`TriggerDecision`]:
///
/// 1. once the primary and all `max_hedges` hedges are launched →
///    [`Stop`](TriggerDecision::Stop);
/// 2. the spacing is the policy's hedge delay when it is positive, else
///    this trigger's `delay` (so the registered `fixed_delay`, whose own
///    delay is zero, follows the policy);
/// 3. the next hedge is due at `delay × attempts_launched`: before that →
///    [`CheckIn`](TriggerDecision::CheckIn) for the rest of the wait, from
///    then on → [`Spawn`](TriggerDecision::Spawn).
///
/// With both delays zero every hedge is due at once.
///
/// ```
/// use recourse::hedge::{FixedDelay, HedgeState, HedgeTrigger, LatencySnapshot, TriggerDecision};
/// use std::time::Duration;
///
/// let every_20ms = FixedDelay::new(Duration::from_millis(20));
/// let latency = LatencySnapshot::default();
/// let ms = Duration::from_millis;
/// let ask = |launched, elapsed| every_20ms.should_spawn(&HedgeState::new(launched, 2, elapsed, Duration::ZERO, &latency));
/// assert_eq!(ask(1, ms(0)), TriggerDecision::CheckIn(ms(20)));
/// assert_eq!(ask(1, ms(20)), TriggerDecision::Spawn); // hedge 1 at 20 ms
/// assert_eq!(ask(2, ms(20)), TriggerDecision::CheckIn(ms(20))); // hedge 2 due at 40 ms
/// assert_eq!(ask(3, ms(40)), TriggerDecision::Stop); // 1 + 2 hedges launched
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedDelay {
    /// The spacing; zero uses the policy's hedge delay.
    pub delay: Duration,
}

impl FixedDelay {
    /// Hedges spaced by `delay` when the policy gives no hedge delay.
    ///
    /// ```
    /// use recourse::hedge::FixedDelay;
    /// use std::time::Duration;
    ///
    /// assert_eq!(FixedDelay::new(Duration::from_millis(5)).delay, Duration::from_millis(5));
    /// ```
    pub const fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

impl HedgeTrigger for FixedDelay {
    fn should_spawn(&self, state: &HedgeState<'_>) -> TriggerDecision {
        if state.limit_reached() {
            return TriggerDecision::Stop;
        }
        let delay = if state.hedge_delay > Duration::ZERO { state.hedge_delay } else { self.delay };
        let target = delay.saturating_mul(state.attempts_launched);
        // Due once elapsed ≥ target, i.e. when no wait is left.
        let wait = target.saturating_sub(state.elapsed);
        if wait.is_zero() { TriggerDecision::Spawn } else { TriggerDecision::CheckIn(wait) }
    }

    fn uses_latency(&self) -> bool {
        false
    }
}

/// A latency percentile of a [`LatencySnapshot`].
///
/// Parses case-insensitively from `p50`, `p90`, `p95`, `p99` (not trimmed).
///
/// ```
/// use recourse::hedge::Percentile;
///
/// assert_eq!("P99".parse::<Percentile>(), Ok(Percentile::P99));
/// assert_eq!(Percentile::P95.as_str(), "p95");
/// assert!("pXX".parse::<Percentile>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Percentile {
    /// The median.
    P50,
    /// The 90th percentile.
    P90,
    /// The 95th percentile.
    P95,
    /// The 99th percentile.
    P99,
}

impl Percentile {
    /// Every percentile, ascending.
    ///
    /// ```
    /// use recourse::hedge::Percentile;
    ///
    /// assert_eq!(Percentile::ALL.map(Percentile::as_str), ["p50", "p90", "p95", "p99"]);
    /// ```
    pub const ALL: [Self; 4] = [Self::P50, Self::P90, Self::P95, Self::P99];

    /// `p50`, `p90`, `p95` or `p99` (also the built-in trigger names).
    ///
    /// ```
    /// use recourse::hedge::Percentile;
    ///
    /// assert_eq!(Percentile::P50.as_str(), "p50");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::P50 => "p50",
            Self::P90 => "p90",
            Self::P95 => "p95",
            Self::P99 => "p99",
        }
    }

    /// This percentile of `snapshot`.
    ///
    /// ```
    /// use recourse::hedge::{LatencySnapshot, Percentile};
    /// use std::time::Duration;
    ///
    /// let snapshot = LatencySnapshot { p90: Duration::from_millis(50), ..LatencySnapshot::default() };
    /// assert_eq!(Percentile::P90.of(&snapshot), Duration::from_millis(50));
    /// ```
    pub const fn of(self, snapshot: &LatencySnapshot) -> Duration {
        match self {
            Self::P50 => snapshot.p50,
            Self::P90 => snapshot.p90,
            Self::P95 => snapshot.p95,
            Self::P99 => snapshot.p99,
        }
    }

    /// The 0-based rank of this percentile among `n ≥ 1` sorted samples:
    /// `⌊(n − 1)·q⌋`, in integers (no rounding surprises).
    pub(crate) const fn rank(self, n: u64) -> u64 {
        let (num, den) = match self {
            Self::P50 => (1, 2),
            Self::P90 => (9, 10),
            Self::P95 => (19, 20),
            Self::P99 => (99, 100),
        };
        let last = n.saturating_sub(1);
        // (last / den)·num + (last % den)·num / den = ⌊last·num / den⌋ without overflow.
        last / den * num + last % den * num / den
    }
}

impl fmt::Display for Percentile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Percentile {
    type Err = ParsePercentileError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| ParsePercentileError { input: text.to_owned() })
    }
}

/// A string that names no [`Percentile`].
///
/// ```
/// use recourse::hedge::Percentile;
///
/// let error = "p75".parse::<Percentile>().unwrap_err();
/// assert_eq!(error.input(), "p75");
/// assert_eq!(error.to_string(), r#"unknown percentile "p75" (expected p50, p90, p95 or p99)"#);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown percentile {input:?} (expected p50, p90, p95 or p99)")]
pub struct ParsePercentileError {
    input: String,
}

impl ParsePercentileError {
    /// The string that did not parse.
    ///
    /// ```
    /// use recourse::hedge::Percentile;
    ///
    /// assert_eq!("".parse::<Percentile>().unwrap_err().input(), "");
    /// ```
    pub fn input(&self) -> &str {
        &self.input
    }
}

/// Launches hedges once the attempt has run longer than a recent latency
/// percentile of its key.
///
/// Go's `LatencyTrigger`, answering [`TriggerDecision`]:
///
/// 1. once the primary and all `max_hedges` hedges are launched →
///    [`Stop`](TriggerDecision::Stop) (checked first: no wait can make
///    another hedge allowed);
/// 2. fewer than `min_samples` samples, or a zero percentile → no usable
///    threshold yet: [`CheckIn`](TriggerDecision::CheckIn) after
///    [`POLL_INTERVAL`] (Go's "(false, 0)", which its executor polls every
///    25 ms);
/// 3. elapsed **strictly** above the percentile →
///    [`Spawn`](TriggerDecision::Spawn);
/// 4. otherwise → `CheckIn(threshold − elapsed)`; at exact equality that
///    would be a zero wait, so it asks again after 1 ms instead.
///
/// Once the threshold is crossed it keeps answering `Spawn`; the executor
/// launches one hedge per answer, a hedge delay apart (DESIGN §6.12; Go
/// launches them back to back). Registered as `p50`, `p90`,
/// `p95` and `p99` by [`Registry::with_builtins`](super::Registry::with_builtins).
///
/// ```
/// use recourse::hedge::{HedgeState, HedgeTrigger, LatencySnapshot, LatencyTrigger, Percentile, TriggerDecision};
/// use std::time::Duration;
///
/// let ms = Duration::from_millis;
/// let latency = LatencySnapshot { p50: ms(10), p90: ms(50), p95: ms(70), p99: ms(100), samples: 500 };
/// let p99 = LatencyTrigger::new(Percentile::P99);
/// let ask = |elapsed| p99.should_spawn(&HedgeState::new(1, 1, elapsed, Duration::ZERO, &latency));
/// assert_eq!(ask(ms(90)), TriggerDecision::CheckIn(ms(10)));
/// assert_eq!(ask(ms(101)), TriggerDecision::Spawn);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LatencyTrigger {
    /// The percentile the attempt must exceed.
    pub percentile: Percentile,
    /// Samples the snapshot needs before the percentile is trusted.
    pub min_samples: u64,
}

impl LatencyTrigger {
    /// The default `min_samples`: 20.
    ///
    /// ```
    /// use recourse::hedge::{LatencyTrigger, Percentile};
    ///
    /// assert_eq!(LatencyTrigger::new(Percentile::P90).min_samples, LatencyTrigger::DEFAULT_MIN_SAMPLES);
    /// ```
    pub const DEFAULT_MIN_SAMPLES: u64 = 20;

    /// A trigger on `percentile` that waits for 20 samples.
    ///
    /// ```
    /// use recourse::hedge::{LatencyTrigger, Percentile};
    ///
    /// let trigger = LatencyTrigger::new(Percentile::P95);
    /// assert_eq!(trigger.percentile, Percentile::P95);
    /// assert_eq!(trigger.min_samples, 20);
    /// ```
    pub const fn new(percentile: Percentile) -> Self {
        Self { percentile, min_samples: Self::DEFAULT_MIN_SAMPLES }
    }

    /// The same trigger, waiting for `min_samples` samples instead.
    ///
    /// ```
    /// use recourse::hedge::{HedgeState, HedgeTrigger, LatencySnapshot, LatencyTrigger, Percentile, TriggerDecision};
    /// use std::time::Duration;
    ///
    /// let latency = LatencySnapshot { p50: Duration::from_millis(10), samples: 3, ..LatencySnapshot::default() };
    /// let state = HedgeState::new(1, 1, Duration::from_millis(50), Duration::ZERO, &latency);
    /// let eager = LatencyTrigger::new(Percentile::P50).with_min_samples(3);
    /// assert_eq!(eager.should_spawn(&state), TriggerDecision::Spawn);
    /// let cautious = LatencyTrigger::new(Percentile::P50);
    /// assert!(matches!(cautious.should_spawn(&state), TriggerDecision::CheckIn(_)), "3 < 20 samples");
    /// ```
    pub const fn with_min_samples(mut self, min_samples: u64) -> Self {
        self.min_samples = min_samples;
        self
    }
}

impl HedgeTrigger for LatencyTrigger {
    fn should_spawn(&self, state: &HedgeState<'_>) -> TriggerDecision {
        if state.limit_reached() {
            return TriggerDecision::Stop;
        }
        let threshold = self.percentile.of(state.latency);
        if state.latency.samples < self.min_samples || threshold.is_zero() {
            return TriggerDecision::CheckIn(POLL_INTERVAL);
        }
        if state.elapsed > threshold {
            return TriggerDecision::Spawn;
        }
        let wait = threshold.saturating_sub(state.elapsed);
        TriggerDecision::CheckIn(if wait.is_zero() { AT_THRESHOLD_CHECK_IN } else { wait })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// E22's snapshot: p50 10 ms, p90 50 ms, p99 100 ms, p95 unset.
    const SNAPSHOT: LatencySnapshot =
        LatencySnapshot { p50: ms_const(10), p90: ms_const(50), p95: Duration::ZERO, p99: ms_const(100), samples: 100 };

    const fn ms_const(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn ask(
        trigger: &impl HedgeTrigger,
        launched: u32,
        max: u32,
        elapsed: Duration,
        latency: &LatencySnapshot,
    ) -> TriggerDecision {
        trigger.should_spawn(&HedgeState::new(launched, max, elapsed, Duration::ZERO, latency))
    }

    // E22a–g, adapted: Go's (false, wait) is CheckIn(wait), (true, 0) is
    // Spawn, (false, 0) is Stop at the limit and a poll otherwise.
    #[test]
    fn latency_trigger_table() {
        let p50 = LatencyTrigger::new(Percentile::P50);
        let p99 = LatencyTrigger::new(Percentile::P99);
        let cases = [
            ("22a", p50, 1, ms(5), TriggerDecision::CheckIn(ms(5))),
            ("22b", p50, 1, ms(11), TriggerDecision::Spawn),
            ("22c", p99, 1, ms(90), TriggerDecision::CheckIn(ms(10))),
            ("22d", p99, 1, ms(101), TriggerDecision::Spawn),
            ("22e", p50, 2, ms(20), TriggerDecision::Stop),
        ];
        for (name, trigger, launched, elapsed, want) in cases {
            assert_eq!(ask(&trigger, launched, 1, elapsed, &SNAPSHOT), want, "{name}");
        }
        // 22f: an unknown percentile cannot be built; it fails to parse.
        assert!("pXX".parse::<Percentile>().is_err(), "22f");
        // 22g: an all-zero snapshot means no threshold yet: poll.
        assert_eq!(
            ask(&p50, 1, 1, ms(100), &LatencySnapshot::default()),
            TriggerDecision::CheckIn(POLL_INTERVAL),
            "22g"
        );
        // p95 is zero in the snapshot even with enough samples: poll.
        let p95 = LatencyTrigger::new(Percentile::P95);
        assert_eq!(ask(&p95, 1, 1, ms(1000), &SNAPSHOT), TriggerDecision::CheckIn(POLL_INTERVAL));
    }

    #[test]
    fn latency_trigger_needs_strictly_more_than_the_threshold() {
        let p50 = LatencyTrigger::new(Percentile::P50);
        assert_eq!(ask(&p50, 1, 1, ms(10), &SNAPSHOT), TriggerDecision::CheckIn(AT_THRESHOLD_CHECK_IN));
        assert_eq!(ask(&p50, 1, 1, ms(10) + Duration::from_nanos(1), &SNAPSHOT), TriggerDecision::Spawn);
    }

    #[test]
    fn latency_trigger_keeps_spawning_until_the_limit() {
        let p90 = LatencyTrigger::new(Percentile::P90);
        for launched in 1..=3 {
            assert_eq!(ask(&p90, launched, 3, ms(60), &SNAPSHOT), TriggerDecision::Spawn, "back to back");
        }
        assert_eq!(ask(&p90, 4, 3, ms(60), &SNAPSHOT), TriggerDecision::Stop);
        // At the limit it stops even before the threshold.
        assert_eq!(ask(&p90, 4, 3, ms(1), &SNAPSHOT), TriggerDecision::Stop);
        assert_eq!(ask(&p90, 1, 0, ms(60), &SNAPSHOT), TriggerDecision::Stop, "no hedges allowed");
    }

    #[test]
    fn min_samples_gates_the_latency_trigger() {
        let few = LatencySnapshot { samples: 19, ..SNAPSHOT };
        let enough = LatencySnapshot { samples: 20, ..SNAPSHOT };
        let p50 = LatencyTrigger::new(Percentile::P50);
        assert_eq!(ask(&p50, 1, 1, ms(500), &few), TriggerDecision::CheckIn(POLL_INTERVAL));
        assert_eq!(ask(&p50, 1, 1, ms(500), &enough), TriggerDecision::Spawn);
        let none_needed = p50.with_min_samples(0);
        assert_eq!(
            ask(&none_needed, 1, 1, ms(500), &LatencySnapshot { samples: 0, ..SNAPSHOT }),
            TriggerDecision::Spawn
        );
    }

    #[test]
    fn fixed_delay_spaces_hedges() {
        let fixed = FixedDelay::new(ms(20));
        let none = LatencySnapshot::default();
        assert_eq!(ask(&fixed, 1, 2, ms(0), &none), TriggerDecision::CheckIn(ms(20)));
        assert_eq!(ask(&fixed, 1, 2, ms(15), &none), TriggerDecision::CheckIn(ms(5)));
        assert_eq!(ask(&fixed, 1, 2, ms(20), &none), TriggerDecision::Spawn);
        assert_eq!(ask(&fixed, 2, 2, ms(20), &none), TriggerDecision::CheckIn(ms(20)));
        assert_eq!(ask(&fixed, 2, 2, ms(41), &none), TriggerDecision::Spawn);
        assert_eq!(ask(&fixed, 3, 2, ms(60), &none), TriggerDecision::Stop);
        assert_eq!(ask(&fixed, 3, 2, ms(0), &none), TriggerDecision::Stop);
    }

    #[test]
    fn fixed_delay_prefers_the_policy_delay() {
        let none = LatencySnapshot::default();
        let state = |elapsed, policy| HedgeState::new(1, 1, elapsed, policy, &none);
        let own = FixedDelay::new(ms(20));
        assert_eq!(own.should_spawn(&state(ms(0), ms(50))), TriggerDecision::CheckIn(ms(50)));
        assert_eq!(own.should_spawn(&state(ms(30), ms(50))), TriggerDecision::CheckIn(ms(20)));
        let follows_policy = FixedDelay::default();
        assert_eq!(follows_policy.should_spawn(&state(ms(10), ms(30))), TriggerDecision::CheckIn(ms(20)));
        assert_eq!(
            follows_policy.should_spawn(&state(ms(0), Duration::ZERO)),
            TriggerDecision::Spawn,
            "no delay at all"
        );
        // Huge delays saturate instead of overflowing.
        let state = HedgeState::new(u32::MAX - 1, u32::MAX, ms(1), Duration::MAX, &none);
        assert!(matches!(own.should_spawn(&state), TriggerDecision::CheckIn(_)));
    }

    #[test]
    fn percentiles_parse_case_insensitively() {
        for p in Percentile::ALL {
            assert_eq!(p.as_str().parse(), Ok(p));
            assert_eq!(p.as_str().to_uppercase().parse(), Ok(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        for bad in ["", "p", "pXX", "p75", " p50", "p50 ", "50", "p99.9"] {
            assert_eq!(bad.parse::<Percentile>().unwrap_err().input(), bad);
        }
    }

    #[test]
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "small n")]
    fn ranks_match_go_index_formula() {
        for n in 1..5000_u64 {
            for (p, q) in Percentile::ALL.into_iter().zip([0.5, 0.9, 0.95, 0.99]) {
                let float = ((n - 1) as f64 * q).floor() as u64;
                // The float form can land just below an integer; the
                // integer form is exact, so they differ by at most one.
                assert!(p.rank(n).abs_diff(float) <= 1, "{p} n={n}");
                assert!(p.rank(n) < n);
            }
        }
        assert_eq!(Percentile::P90.rank(100), 89, "Go: floor(99 × 0.9)");
        assert_eq!(Percentile::P99.rank(100), 98);
        assert_eq!(Percentile::P50.rank(1), 0);
        assert!(Percentile::P99.rank(u64::MAX) < u64::MAX, "no overflow");
    }
}

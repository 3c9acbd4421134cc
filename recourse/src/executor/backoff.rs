//! Backoff arithmetic: pure functions of the policy, the base backoff and a
//! uniform random number.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::policy::{Jitter, RetryPolicy, limits};

/// `trunc(current × multiplier)`, capped at `max_backoff`. A NaN or
/// non-positive multiplier (only possible on an unnormalized policy) is
/// treated as normalization would treat it.
#[inline]
pub(crate) fn next_backoff(current: Duration, retry: &RetryPolicy) -> Duration {
    let m = retry.backoff_multiplier;
    let m = if m.is_nan() || m == 0.0 {
        limits::DEFAULT_MULTIPLIER
    } else {
        m.clamp(limits::MIN_MULTIPLIER, limits::MAX_MULTIPLIER)
    };
    let next = scale(current, m);
    cap(next, retry.max_backoff)
}

/// The sleep after a failed retry group whose base backoff is `base`.
///
/// An override (a server's Retry-After) replaces the jittered backoff and
/// is honoured beyond `max_backoff`, up to the 30 s ceiling (DESIGN §6.7);
/// otherwise the jittered base is capped at `max_backoff`. `unit` is uniform
/// in `[0, 1)`.
#[inline]
pub(crate) fn compute_sleep(
    base: Duration,
    retry: &RetryPolicy,
    backoff_override: Option<Duration>,
    unit: f64,
) -> Duration {
    if let Some(d) = backoff_override.filter(|d| !d.is_zero()) {
        return d.min(limits::MAX_BACKOFF);
    }
    let jittered = match retry.jitter {
        Jitter::None => base,
        Jitter::Full => scale(base, unit),
        Jitter::Equal => base / 2 + scale(base / 2, unit),
    };
    cap(jittered, retry.max_backoff)
}

#[inline]
fn cap(d: Duration, max: Duration) -> Duration {
    if max.is_zero() { d } else { d.min(max) }
}

#[allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "backoffs are at most 30 s (3e10 ns), far inside f64's exact integer range; truncation toward zero is the specified rounding"
)]
#[inline]
fn scale(d: Duration, factor: f64) -> Duration {
    // Through u64: a u128 → f64 conversion is a library call, and a
    // backoff never comes near u64::MAX nanoseconds (584 years).
    let nanos = u64::try_from(d.as_nanos()).map_or(u64::MAX as f64, |n| n as f64) * factor;
    if nanos.is_nan() || nanos <= 0.0 {
        Duration::ZERO
    } else if nanos >= u64::MAX as f64 {
        Duration::from_nanos(u64::MAX)
    } else {
        Duration::from_nanos(nanos as u64)
    }
}

/// A lock-free splitmix64 stream for jitter: one atomic add per draw, so
/// concurrent calls never wait on each other; seedable for tests.
#[derive(Debug)]
pub(crate) struct Rng(AtomicU64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(AtomicU64::new(seed))
    }

    pub(crate) fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(0x5eed);
        Self::new(hasher.finish())
    }

    /// Uniform in `[0, 1)`.
    #[allow(clippy::cast_precision_loss, reason = "53 random bits are exactly representable")]
    pub(crate) fn next_unit(&self) -> f64 {
        let mut z = self.0.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use proptest::prelude::*;

    fn retry(initial_ms: u64, max_ms: u64, mult: f64, jitter: Jitter) -> RetryPolicy {
        Policy::builder("t.t")
            .backoff(Duration::from_millis(initial_ms), Duration::from_millis(max_ms), mult)
            .jitter(jitter)
            .build()
            .retry
    }

    fn sleeps(retry: &RetryPolicy, n: usize) -> Vec<Duration> {
        let mut base = retry.initial_backoff;
        let mut out = Vec::new();
        for _ in 0..n {
            out.push(compute_sleep(base, retry, None, 0.0));
            base = next_backoff(base, retry);
        }
        out
    }

    #[test]
    fn go_verified_sequences() {
        let r = retry(10, 250, 2.0, Jitter::None);
        assert_eq!(sleeps(&r, 2), [Duration::from_millis(10), Duration::from_millis(20)]);
        let r = retry(3, 50, 2.5, Jitter::None);
        let us = |n: u64| Duration::from_micros(n);
        assert_eq!(sleeps(&r, 5), [us(3000), us(7500), us(18750), us(46875), us(50000)]);
    }

    #[test]
    fn override_is_honoured_beyond_max_backoff_up_to_the_ceiling() {
        let r = retry(10, 100, 2.0, Jitter::Full);
        assert_eq!(
            compute_sleep(Duration::from_millis(10), &r, Some(Duration::from_secs(5)), 0.5),
            Duration::from_secs(5)
        );
        assert_eq!(
            compute_sleep(Duration::from_millis(10), &r, Some(Duration::from_secs(90)), 0.5),
            limits::MAX_BACKOFF
        );
    }

    #[test]
    fn rng_is_seedable_and_in_range() {
        let (a, b) = (super::Rng::new(7), super::Rng::new(7));
        for _ in 0..1000 {
            let (x, y) = (a.next_unit(), b.next_unit());
            assert_eq!(x.to_bits(), y.to_bits());
            assert!((0.0..1.0).contains(&x));
        }
    }

    fn any_jitter() -> impl Strategy<Value = Jitter> {
        prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
    }

    proptest! {
        #[test]
        fn sleeps_never_exceed_the_cap_and_jitter_stays_in_range(
            initial in 0u64..40_000, max in 0u64..40_000, mult in -5.0f64..20.0,
            jitter in any_jitter(), unit in 0.0f64..1.0, steps in 0usize..12,
        ) {
            let r = retry(initial, max, mult, jitter);
            let mut base = r.initial_backoff;
            for _ in 0..steps {
                base = next_backoff(base, &r);
                prop_assert!(base <= r.max_backoff);
            }
            let sleep = compute_sleep(base, &r, None, unit);
            prop_assert!(sleep <= r.max_backoff);
            match jitter {
                Jitter::None => prop_assert_eq!(sleep, base),
                Jitter::Full => prop_assert!(sleep <= base && (base.is_zero() || sleep < base)),
                Jitter::Equal => prop_assert!(sleep >= base / 2 && sleep <= base),
            }
        }

        #[test]
        fn overrides_never_exceed_the_ceiling(ms in 0u64..1_000_000, unit in 0.0f64..1.0) {
            let r = retry(10, 250, 2.0, Jitter::Full);
            let sleep = compute_sleep(Duration::from_millis(10), &r, Some(Duration::from_millis(ms)), unit);
            prop_assert!(sleep <= limits::MAX_BACKOFF);
        }
    }
}

//! The failure-rate breaker (resilience4j's and Polly's, over a time window).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::machine::{Clock, Counts, Machine};
use super::{Breaker, Decision, State, Transition};
use crate::policy::limits::{DEFAULT_CIRCUIT_COOLDOWN, DEFAULT_CIRCUIT_WINDOW, DEFAULT_MIN_THROUGHPUT};

/// Buckets in the sliding window.
const BUCKETS: usize = 10;
/// A bucket's counts: failures in the high half, successes in the low half.
const SUCCESS: u64 = 1;
const FAILURE: u64 = 1 << 32;
const HALF: u64 = u32::MAX as u64;

/// The settings of a [`FailureRate`] breaker.
///
/// [`FailureRate::new`] fills in and clamps hostile values (see
/// [`normalized`](Self::normalized)); the [`Default`] is a 50 % failure
/// ratio over 10 s, with at least 10 calls, and a 10 s cooldown.
///
/// ```
/// use recourse::circuit::FailureRateConfig;
/// use std::time::Duration;
///
/// let config = FailureRateConfig { failure_ratio: 0.25, min_throughput: 20, ..FailureRateConfig::default() };
/// assert_eq!(config.window, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailureRateConfig {
    /// Open when at least this share of the calls in the window failed
    /// (0 < ratio ≤ 1).
    pub failure_ratio: f64,
    /// How far back the window reaches.
    pub window: Duration,
    /// Calls the window must hold before the failure rate can open the
    /// circuit.
    pub min_throughput: u32,
    /// How long the circuit stays open before a probe.
    pub cooldown: Duration,
}

impl FailureRateConfig {
    /// The failure ratio used when the given one is NaN, zero or negative.
    ///
    /// ```
    /// use recourse::circuit::FailureRateConfig;
    ///
    /// let zero = FailureRateConfig { failure_ratio: 0.0, ..FailureRateConfig::default() };
    /// assert_eq!(zero.normalized().failure_ratio, FailureRateConfig::DEFAULT_FAILURE_RATIO);
    /// ```
    pub const DEFAULT_FAILURE_RATIO: f64 = 0.5;

    /// The settings a breaker actually uses, clamped as policy
    /// normalization clamps them:
    ///
    /// * `failure_ratio` above 1 (infinity included) becomes 1 ("every call
    ///   failed"); NaN, zero or negative, which a policy would read as "use
    ///   the consecutive-failures breaker", becomes
    ///   [`DEFAULT_FAILURE_RATIO`](Self::DEFAULT_FAILURE_RATIO), since this
    ///   breaker has no other mode;
    /// * a zero `window` becomes 10 s, a zero `min_throughput` 10, a zero
    ///   `cooldown` 10 s (normalization's fill-ins). Normalization's floors
    ///   (1 s window, 100 ms cooldown) are not applied: policies are
    ///   normalized before they reach a breaker, and one built by hand may
    ///   be finer.
    ///
    /// ```
    /// use recourse::circuit::FailureRateConfig;
    /// use std::time::Duration;
    ///
    /// let hostile = FailureRateConfig { failure_ratio: f64::NAN, window: Duration::ZERO, min_throughput: 0, cooldown: Duration::ZERO };
    /// assert_eq!(hostile.normalized(), FailureRateConfig::default());
    /// let over = FailureRateConfig { failure_ratio: 7.0, ..FailureRateConfig::default() };
    /// assert_eq!(over.normalized().failure_ratio, 1.0);
    /// ```
    pub fn normalized(self) -> Self {
        let failure_ratio = if self.failure_ratio > 1.0 {
            1.0
        } else if self.failure_ratio > 0.0 {
            self.failure_ratio
        } else {
            // NaN fails both comparisons and lands here too.
            Self::DEFAULT_FAILURE_RATIO
        };
        let or = |d: Duration, default: Duration| if d.is_zero() { default } else { d };
        Self {
            failure_ratio,
            window: or(self.window, DEFAULT_CIRCUIT_WINDOW),
            min_throughput: if self.min_throughput == 0 { DEFAULT_MIN_THROUGHPUT } else { self.min_throughput },
            cooldown: or(self.cooldown, DEFAULT_CIRCUIT_COOLDOWN),
        }
    }
}

impl Default for FailureRateConfig {
    fn default() -> Self {
        Self {
            failure_ratio: Self::DEFAULT_FAILURE_RATIO,
            window: DEFAULT_CIRCUIT_WINDOW,
            min_throughput: DEFAULT_MIN_THROUGHPUT,
            cooldown: DEFAULT_CIRCUIT_COOLDOWN,
        }
    }
}

/// What a [`FailureRate`] breaker's window holds now
/// ([`FailureRate::counts`]).
///
/// ```
/// use recourse::circuit::WindowCounts;
///
/// let counts = WindowCounts { successes: 7, failures: 3 };
/// assert_eq!(counts.calls(), 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCounts {
    /// Successful calls in the window.
    pub successes: u64,
    /// Failed calls in the window.
    pub failures: u64,
}

impl WindowCounts {
    /// Successes plus failures.
    ///
    /// ```
    /// use recourse::circuit::WindowCounts;
    ///
    /// assert_eq!(WindowCounts::default().calls(), 0);
    /// ```
    pub const fn calls(&self) -> u64 {
        self.successes + self.failures
    }
}

/// Opens when at least [`failure_ratio`](FailureRateConfig::failure_ratio)
/// of the calls in the last [`window`](FailureRateConfig::window) failed,
/// once the window holds [`min_throughput`](FailureRateConfig::min_throughput)
/// calls; then behaves like [`ConsecutiveFailures`](super::ConsecutiveFailures):
/// one probe after the cooldown, closed on its success (with an empty
/// window), open again on its failure.
///
/// The rate is checked when a failure is recorded, so the circuit opens on
/// the failing call that takes the window to the threshold, and never while
/// the window holds fewer than `min_throughput` calls (a quiet key cannot
/// trip on its first failure).
///
/// # The window
///
/// Ten buckets of `window / 10` each, indexed by time since the breaker's
/// creation; the window is the current bucket and the nine before it, so it
/// reaches back between 0.9 and 1 `window`. Each bucket holds an epoch (the
/// bucket index it counts) and one atomic word of counts (successes and
/// failures, 2³² each at most per bucket). Recording is one increment; the
/// first caller into a bucket whose epoch is stale claims it with a
/// compare-and-swap and subtracts what it held, so calls recorded into the
/// new epoch meanwhile are kept.
///
/// No lock is taken, and the races that remain are benign and bounded:
/// a verdict that reaches its bucket more than a whole window after its
/// clock reading (the thread was descheduled that long) may be dropped or
/// land in the bucket's next epoch; a rate evaluated at the very instant a
/// bucket changes epoch may still count that bucket's old contents (at most
/// one bucket, a window old); and a verdict racing the close may be counted
/// in the new, empty window. None of them outlives one window.
///
/// ```
/// use recourse::circuit::{Breaker, FailureRate, FailureRateConfig, State};
/// use std::time::Duration;
///
/// let breaker = FailureRate::new(FailureRateConfig {
///     failure_ratio: 0.5,
///     window: Duration::from_secs(10),
///     min_throughput: 4,
///     cooldown: Duration::from_secs(5),
/// });
/// breaker.record_success();
/// breaker.record_failure();
/// breaker.record_success();
/// assert_eq!(breaker.state(), State::Closed, "3 calls: below the minimum throughput");
/// breaker.record_failure(); // 2 of 4 failed
/// assert_eq!(breaker.state(), State::Open);
/// ```
pub struct FailureRate {
    machine: Machine,
    window: Window,
    config: FailureRateConfig,
}

/// One bucket, on a cache line of its own: every caller writes the current
/// one, and it should not share a line with the state word they all read.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Bucket {
    epoch: AtomicU64,
    counts: AtomicU64,
}

#[derive(Debug)]
struct Window {
    buckets: [Bucket; BUCKETS],
    bucket_nanos: u64,
    ratio: f64,
    min_throughput: u64,
}

/// `counts - old`, half by half, never below zero (a reset may have emptied
/// the bucket since `old` was read).
fn minus(counts: u64, old: u64) -> u64 {
    let successes = (counts & HALF).saturating_sub(old & HALF);
    let failures = (counts >> 32).saturating_sub(old >> 32);
    (failures << 32) | successes
}

impl Window {
    fn new(window: Duration, ratio: f64, min_throughput: u32) -> Self {
        let nanos = u64::try_from(window.as_nanos()).unwrap_or(u64::MAX);
        Self {
            buckets: Default::default(),
            bucket_nanos: (nanos / BUCKETS as u64).max(1),
            ratio,
            min_throughput: u64::from(min_throughput),
        }
    }

    fn index(&self, clock: &Clock) -> u64 {
        clock.now() / self.bucket_nanos
    }

    #[allow(clippy::cast_possible_truncation, reason = "the remainder is below BUCKETS")]
    fn add(&self, index: u64, count: u64) {
        let bucket = &self.buckets[(index % BUCKETS as u64) as usize];
        let mut epoch = bucket.epoch.load(Ordering::Acquire);
        loop {
            if epoch == index {
                bucket.counts.fetch_add(count, Ordering::AcqRel);
                return;
            }
            if epoch > index {
                // A later epoch owns the bucket: this verdict is a whole
                // window late (see the type's docs).
                return;
            }
            let old = bucket.counts.load(Ordering::Acquire);
            match bucket.epoch.compare_exchange(epoch, index, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    // Ours now: drop the old epoch's counts, keep whatever
                    // the new epoch has gathered since the swap.
                    let _ = bucket
                        .counts
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |now| Some(minus(now, old) + count));
                    return;
                }
                Err(actual) => epoch = actual,
            }
        }
    }

    fn counts(&self, index: u64) -> WindowCounts {
        let mut counts = WindowCounts::default();
        for bucket in &self.buckets {
            // Buckets of the last BUCKETS epochs, or claimed by a caller
            // whose clock reading is a little ahead of ours.
            if index.saturating_sub(bucket.epoch.load(Ordering::Acquire)) >= BUCKETS as u64 {
                continue;
            }
            let c = bucket.counts.load(Ordering::Acquire);
            counts.successes += c & HALF;
            counts.failures += c >> 32;
        }
        counts
    }

    #[allow(clippy::cast_precision_loss, reason = "a ratio; call counts far below 2^52")]
    fn tripped(&self, counts: WindowCounts) -> bool {
        let calls = counts.calls();
        calls > 0 && calls >= self.min_throughput && counts.failures as f64 / calls as f64 >= self.ratio
    }
}

impl Counts for Window {
    fn success(&self, clock: &Clock) {
        self.add(self.index(clock), SUCCESS);
    }

    fn failure(&self, clock: &Clock) -> bool {
        let index = self.index(clock);
        self.add(index, FAILURE);
        self.tripped(self.counts(index))
    }

    fn reset(&self) {
        for bucket in &self.buckets {
            bucket.counts.store(0, Ordering::Release);
        }
    }
}

impl FailureRate {
    /// A closed breaker with an empty window; `config` is
    /// [normalized](FailureRateConfig::normalized) first.
    ///
    /// ```
    /// use recourse::circuit::{FailureRate, FailureRateConfig};
    ///
    /// let breaker = FailureRate::new(FailureRateConfig { failure_ratio: -1.0, ..FailureRateConfig::default() });
    /// assert_eq!(breaker.config().failure_ratio, 0.5);
    /// ```
    pub fn new(config: FailureRateConfig) -> Self {
        let config = config.normalized();
        Self {
            machine: Machine::new(config.cooldown),
            window: Window::new(config.window, config.failure_ratio, config.min_throughput),
            config,
        }
    }

    /// The settings in use (after normalization).
    ///
    /// ```
    /// use recourse::circuit::{FailureRate, FailureRateConfig};
    /// use std::time::Duration;
    ///
    /// let breaker = FailureRate::new(FailureRateConfig { window: Duration::ZERO, ..FailureRateConfig::default() });
    /// assert_eq!(breaker.config().window, Duration::from_secs(10));
    /// ```
    pub fn config(&self) -> &FailureRateConfig {
        &self.config
    }

    /// The calls in the window now. Empty while the circuit is open or
    /// half-open (verdicts then drive the state machine, not the window).
    ///
    /// ```
    /// use recourse::circuit::{Breaker, FailureRate, FailureRateConfig};
    ///
    /// let breaker = FailureRate::new(FailureRateConfig::default());
    /// breaker.record_success();
    /// breaker.record_failure();
    /// let counts = breaker.counts();
    /// assert_eq!((counts.successes, counts.failures, counts.calls()), (1, 1, 2));
    /// ```
    pub fn counts(&self) -> WindowCounts {
        self.window.counts(self.window.index(self.machine.clock()))
    }
}

impl Breaker for FailureRate {
    fn allow(&self) -> Decision {
        self.machine.allow()
    }

    fn record_success(&self) -> Option<Transition> {
        self.machine.record_success(&self.window)
    }

    fn record_failure(&self) -> Option<Transition> {
        self.machine.record_failure(&self.window)
    }

    fn release_probe(&self) {
        self.machine.release_probe();
    }

    fn state(&self) -> State {
        self.machine.state()
    }
}

impl fmt::Debug for FailureRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureRate")
            .field("state", &self.state())
            .field("counts", &self.counts())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::machine::tests::{race_for_the_probe, transitions_form_a_chain};
    use crate::circuit::reason;
    use std::sync::Arc;
    use tokio::time::advance;

    const OPEN: Option<Transition> = Some(Transition::new(State::Closed, State::Open));

    fn breaker(ratio: f64, min_throughput: u32) -> FailureRate {
        FailureRate::new(FailureRateConfig {
            failure_ratio: ratio,
            window: Duration::from_secs(10),
            min_throughput,
            cooldown: Duration::from_secs(5),
        })
    }

    /// Records `successes` then `failures`; returns the transitions of the
    /// failures, in order.
    fn feed(b: &FailureRate, successes: u32, failures: u32) -> Vec<Option<Transition>> {
        for _ in 0..successes {
            assert_eq!(b.record_success(), None);
        }
        (0..failures).map(|_| b.record_failure()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn never_opens_before_the_minimum_throughput() {
        let b = breaker(0.5, 10);
        let transitions = feed(&b, 0, 9);
        assert!(transitions.iter().all(Option::is_none));
        assert_eq!(b.state(), State::Closed, "9 of 9 failed, but 9 < 10 calls");
        assert_eq!(b.counts(), WindowCounts { successes: 0, failures: 9 });
        assert_eq!(b.record_failure(), OPEN, "the 10th call fails: 10/10");
        assert_eq!(b.allow().reason, reason::CIRCUIT_OPEN);
    }

    #[tokio::test(start_paused = true)]
    async fn opens_exactly_at_the_ratio() {
        // 5 of 10: at the ratio, opens on the failure that gets there.
        let b = breaker(0.5, 10);
        assert_eq!(feed(&b, 5, 5), [None, None, None, None, OPEN]);

        // 4 of 10: below; further failures are judged on the whole window.
        let b = breaker(0.5, 10);
        assert_eq!(feed(&b, 6, 4), [None; 4]);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.record_failure(), None, "5 of 11 < 0.5");
        assert_eq!(b.record_failure(), OPEN, "6 of 12");

        // Ratios that are not binary fractions compare exactly too.
        let b = breaker(0.3, 10);
        assert_eq!(feed(&b, 7, 3), [None, None, OPEN], "3 of 10 = 0.3");
        let b = breaker(0.3, 10);
        assert_eq!(feed(&b, 8, 2), [None, None], "2 of 10 < 0.3");

        // Ratio 1: only when every call in the window failed.
        let b = breaker(1.0, 3);
        assert_eq!(feed(&b, 1, 5), [None; 5]);
        let b = breaker(1.0, 3);
        assert_eq!(feed(&b, 0, 3), [None, None, OPEN]);
    }

    #[tokio::test(start_paused = true)]
    async fn successes_never_open_it() {
        let b = breaker(0.5, 2);
        assert_eq!(b.record_failure(), None);
        assert_eq!(b.record_success(), None, "1 of 2 failed, but only a failure is judged");
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.record_failure(), OPEN, "2 of 3");
    }

    #[tokio::test(start_paused = true)]
    async fn old_buckets_age_out_of_the_window() {
        let b = breaker(0.5, 10);
        feed(&b, 0, 9);
        advance(Duration::from_secs(11)).await;
        assert_eq!(b.counts(), WindowCounts::default(), "a whole window later, empty");
        assert_eq!(b.record_failure(), None, "1 call in the window");
        assert_eq!(b.counts(), WindowCounts { successes: 0, failures: 1 });

        // Sliding: a failure and a success a second; the window keeps the
        // current bucket and the nine before it. (Ratio 1 with a success in
        // the window never opens.)
        let b = breaker(1.0, 10);
        for second in 0..25_u64 {
            assert_eq!(b.record_failure(), None);
            let expected = WindowCounts { successes: second.min(9), failures: (second + 1).min(10) };
            assert_eq!(b.counts(), expected, "second {second}");
            b.record_success();
            advance(Duration::from_secs(1)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_is_reused_in_its_next_epoch() {
        let b = breaker(0.5, 4);
        feed(&b, 3, 0);
        advance(Duration::from_secs(10)).await; // same bucket slot, ten epochs on
        assert_eq!(b.counts(), WindowCounts::default());
        assert_eq!(feed(&b, 0, 3), [None; 3], "3 calls: the old successes are gone, not counted");
        assert_eq!(b.counts(), WindowCounts { successes: 0, failures: 3 });
        assert_eq!(b.record_failure(), OPEN);
    }

    #[tokio::test(start_paused = true)]
    async fn probes_like_the_consecutive_breaker_and_closes_with_an_empty_window() {
        let b = breaker(0.5, 2);
        feed(&b, 0, 2);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.counts(), WindowCounts::default(), "opening empties the window");
        assert_eq!(b.record_failure(), None, "open: ignored");
        advance(Duration::from_secs(5)).await;
        let probe = b.allow();
        assert!(probe.allowed);
        assert_eq!(probe.transition, Some(Transition::new(State::Open, State::HalfOpen)));
        assert_eq!(b.allow().reason, reason::HALF_OPEN_PROBE_LIMIT);
        b.release_probe();
        assert!(b.allow().allowed, "a released probe lets the next call probe");
        assert_eq!(b.record_failure(), Some(Transition::new(State::HalfOpen, State::Open)));
        assert_eq!(b.allow().reason, reason::CIRCUIT_OPEN, "the cooldown restarted");
        advance(Duration::from_secs(5)).await;
        assert!(b.allow().allowed);
        assert_eq!(b.record_success(), Some(Transition::new(State::HalfOpen, State::Closed)));
        assert_eq!(b.counts(), WindowCounts::default());
        assert_eq!(b.record_failure(), None, "1 call: the window starts again");
        assert_eq!(b.record_failure(), OPEN);
    }

    #[tokio::test(start_paused = true)]
    #[allow(clippy::float_cmp, reason = "the fill-ins are exact")]
    async fn hostile_settings_are_clamped() {
        for ratio in [f64::NAN, -0.5, 0.0, f64::NEG_INFINITY] {
            assert_eq!(breaker(ratio, 10).config().failure_ratio, 0.5, "{ratio}");
        }
        for ratio in [1.5, f64::INFINITY] {
            assert_eq!(breaker(ratio, 10).config().failure_ratio, 1.0, "{ratio}");
        }
        let b = FailureRate::new(FailureRateConfig {
            failure_ratio: 0.5,
            window: Duration::ZERO,
            min_throughput: 0,
            cooldown: Duration::ZERO,
        });
        assert_eq!(b.config(), &FailureRateConfig::default());
        assert_eq!(feed(&b, 0, 10)[9], OPEN, "min throughput 0 means 10");
        advance(Duration::from_millis(9_999)).await;
        assert_eq!(b.state(), State::Open);
        advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::HalfOpen, "zero cooldown means 10 s");

        // A window too short to split still works (1 ns buckets), and the
        // longest one does not overflow.
        let tiny =
            FailureRate::new(FailureRateConfig { window: Duration::from_nanos(3), ..FailureRateConfig::default() });
        feed(&tiny, 0, 5);
        advance(Duration::from_nanos(20)).await;
        assert_eq!(tiny.counts(), WindowCounts::default());
        let huge =
            FailureRate::new(FailureRateConfig { window: Duration::MAX, min_throughput: 2, ..Default::default() });
        assert_eq!(feed(&huge, 0, 2), [None, OPEN]);
    }

    #[test]
    fn concurrent_verdicts_are_all_counted() {
        let b = breaker(0.5, u32::MAX);
        std::thread::scope(|scope| {
            for t in 0..4 {
                let b = &b;
                scope.spawn(move || {
                    for i in 0..10_000 {
                        let _ = if (i + t) % 4 == 0 { b.record_failure() } else { b.record_success() };
                    }
                });
            }
        });
        assert_eq!(b.counts(), WindowCounts { successes: 30_000, failures: 10_000 });
    }

    #[test]
    fn threads_race_for_the_half_open_probe() {
        let cooldown = Duration::from_millis(2);
        let b = FailureRate::new(FailureRateConfig { min_throughput: 1, cooldown, ..FailureRateConfig::default() });
        let open = |b: &dyn Breaker| {
            b.record_failure();
        };
        race_for_the_probe(&b, open, cooldown, 8, 20);
    }

    #[test]
    fn racing_verdicts_leave_one_consistent_history() {
        let b: Arc<dyn Breaker> = Arc::new(FailureRate::new(FailureRateConfig {
            failure_ratio: 0.6,
            window: Duration::from_millis(1),
            min_throughput: 5,
            cooldown: Duration::from_micros(20),
        }));
        transitions_form_a_chain(&b, 4, 20_000);
    }

    #[test]
    fn debug_shows_state_and_counts() {
        let b = breaker(0.5, 10);
        b.record_failure();
        let text = format!("{b:?}");
        assert!(text.contains("Closed") && text.contains("failures: 1"), "{text}");
    }

    #[test]
    fn minus_never_borrows_across_halves() {
        assert_eq!(minus(3 * FAILURE + 5, FAILURE + 2), 2 * FAILURE + 3);
        assert_eq!(minus(FAILURE, 4), FAILURE, "a reset bucket: saturates at zero");
        assert_eq!(minus(0, 7 * FAILURE + 7), 0);
    }
}

//! The latency tracker: a lock-free ring of recent samples plus a
//! log-linear histogram of the same samples.
//!
//! # Bucket layout
//!
//! Samples are nanoseconds. A value `v < 32` has a bucket of its own
//! (`v`). A value `v ≥ 32` with `k = ⌊log₂ v⌋` falls into one of 16 equal
//! sub-buckets of `[2^k, 2^(k+1))`, each `w = 2^(k−4)` wide, at index
//! `(k − 4)·16 + (v >> (k − 4))` (the shifted value is in `16..32`, so the
//! ranges of consecutive powers line up). Values are clamped to
//! `2^42 − 1` ns (≈ 73 min), the last power, which gives
//! `(42 − 4 + 1)·16 = 624` buckets.
//!
//! # Error bound
//!
//! A bucket reports its midpoint `lo + w/2`. Below 32 ns that is the value
//! itself. Otherwise the bucket holds integers in `[lo, lo + w − 1]`, so any
//! of them is at most `w/2 = 2^(k−5)` from the midpoint, and since
//! `v ≥ 2^k`, `|reported − v| ≤ 2^(k−5) ≤ v/32`. Buckets are disjoint,
//! ordered intervals, so the `r`-th smallest sample of the window lies in
//! the first bucket whose cumulative count exceeds `r`: the reported
//! percentile is that sample's bucket midpoint, within `1/32` (3.125 %)
//! relative error of the exact percentile `sorted[⌊(n − 1)·q⌋]` (up to the
//! clamp).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use super::{LatencySnapshot, Percentile};
use crate::policy::PolicyKey;
use crate::sync::{AtomicU64, Ordering};

/// log₂ of the sub-buckets per power of two.
const SUB_BITS: u32 = 4;
/// Sub-buckets per power of two.
const SUB: u64 = 1 << SUB_BITS;
/// Values below this have a bucket each.
const LINEAR: u64 = 2 * SUB;
/// Values are clamped below `2^TOP_POW` nanoseconds.
const TOP_POW: u32 = 42;
/// The largest value tracked exactly enough (≈ 73.3 minutes).
const MAX_NANOS: u64 = (1 << TOP_POW) - 1;
/// Number of buckets: the 32 linear ones, then 16 per power from 2^5 to 2^41.
const BUCKETS: usize = (TOP_POW - SUB_BITS + 1) as usize * (1 << SUB_BITS);
/// An empty ring slot (never a clamped sample).
const EMPTY: u64 = u64::MAX;
/// Candidate slot strides: the first that does not divide the window is
/// coprime with it (they are primes); a window they all divide uses 1.
/// 17 slots is 136 bytes, past a pair of 64-byte cache lines.
const STRIDES: [u64; 4] = [17, 19, 23, 29];
/// The window of [`LatencyTracker::default`] and of a zero window.
const DEFAULT_WINDOW: usize = 256;

/// The bucket of a clamped sample.
#[allow(clippy::cast_possible_truncation, reason = "a bucket index is below BUCKETS")]
const fn bucket_of(nanos: u64) -> usize {
    if nanos < LINEAR {
        return nanos as usize;
    }
    let shift = nanos.ilog2() - SUB_BITS;
    (shift as u64 * SUB + (nanos >> shift)) as usize
}

/// The value a bucket reports: its midpoint (the value itself below 32 ns).
const fn representative(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR {
        return bucket;
    }
    let shift = bucket / SUB - 1;
    let lo = (bucket % SUB + SUB) << shift;
    lo + ((1 << shift) >> 1)
}

/// A counter alone on its cache line(s), so writers bumping it do not evict
/// the read-only fields next to it.
#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicU64);

/// Recent attempt latencies of one key.
///
/// Keeps the last `window` samples (default 256) and answers their
/// p50/p90/p95/p99 in a [`LatencySnapshot`].
///
/// * **Recording is O(1) and lock-free**: one `fetch_add` claims a ring
///   slot, one `swap` stores the sample and hands back the one it evicts,
///   and two atomic counter updates move the sample into its histogram
///   bucket and the evicted one out (none when both share a bucket).
///   Consecutive samples land a prime stride (17 for most windows) of slots
///   apart, so threads recording at once do not fight over a cache line;
///   sample `i` still goes where sample `i − window` was and evicts it, in
///   the order the swaps land: a recorder descheduled between its claim
///   and its swap while a whole window of others record swaps last, so its
///   older sample stays in the ring in place of the newer one (still
///   counted in and out exactly once).
/// * **A snapshot never sorts or copies the window**: it walks the bucket
///   counters once, in order, up to the p99 bucket (at most 624 counters).
/// * **Error bound**: each percentile is the midpoint of the bucket that
///   holds the exact order statistic `sorted[⌊(n − 1)·q⌋]` of the window,
///   so it is within [`RELATIVE_ERROR`](Self::RELATIVE_ERROR) (1/32) of it:
///   the buckets split every power of two into 16 equal parts, so a bucket
///   starting at or above `2^k` is `2^(k−4)` wide and its midpoint is at
///   most `2^(k−5) ≤ v/32` away from any value `v` in it (values below
///   32 ns are exact). Latencies above [`MAX_LATENCY`](Self::MAX_LATENCY)
///   (≈ 73 min) are recorded as that.
///
/// Concurrent [`record`](Self::record) and [`snapshot`](Self::snapshot)
/// calls are safe and never panic. They race benignly: a snapshot taken
/// while samples are being recorded may see a new sample's bucket
/// increment before the evicted sample's decrement (or, briefly, the
/// reverse, when the evicted sample's own recorder has not finished), so it
/// describes a mix of nearby windows; counts that momentarily read below
/// zero are taken as zero, and ranks the buckets do not reach yet (a
/// sample counted but not yet in its bucket) take the highest bucket seen.
/// The error bound holds for a snapshot taken while no `record` is in
/// progress; once recording pauses, the histogram matches the ring exactly
/// again. Percentiles within one snapshot are always ordered, and each is
/// the midpoint of a bucket some recorded sample fell in, or all are zero
/// when the walk met no counted sample (every sample it could count was
/// still being recorded or evicted; [`LatencyTrigger`](super::LatencyTrigger)
/// reads a zero percentile as no threshold yet).
///
/// ```
/// use recourse::hedge::LatencyTracker;
/// use std::time::Duration;
///
/// let tracker = LatencyTracker::new(100);
/// for ms in 1..=100 {
///     tracker.record(Duration::from_millis(ms));
/// }
/// let snapshot = tracker.snapshot();
/// assert_eq!(snapshot.samples, 100);
/// // The exact p90 of 1..=100 ms is 90 ms; the tracker is within 1/32 of it.
/// let error = snapshot.p90.abs_diff(Duration::from_millis(90));
/// assert!(error <= Duration::from_millis(90).mul_f64(LatencyTracker::RELATIVE_ERROR));
/// ```
pub struct LatencyTracker {
    /// Samples ever recorded; sample `i` goes to slot `i·stride mod window`,
    /// where sample `i − window` was.
    next: Padded,
    /// The ring: nanoseconds, or [`EMPTY`].
    slots: Box<[AtomicU64]>,
    /// `slots.len()`.
    window: u64,
    /// `window − 1` when the window is a power of two (index by mask).
    mask: Option<u64>,
    /// Consecutive samples go `stride` slots apart (a stride coprime with
    /// the window, so every window of consecutive samples fills every slot
    /// once): threads recording at once write different cache lines.
    stride: u64,
    /// How many ring samples fall into each bucket. Updated with wrapping
    /// arithmetic: a value above `i64::MAX` is a transient negative count.
    buckets: Box<[AtomicU64; BUCKETS]>,
}

impl LatencyTracker {
    /// The bound on a percentile's relative error against the exact
    /// percentile of the window: 1/32.
    ///
    /// ```
    /// use recourse::hedge::LatencyTracker;
    ///
    /// assert_eq!(LatencyTracker::RELATIVE_ERROR, 0.031_25);
    /// ```
    pub const RELATIVE_ERROR: f64 = 1.0 / 32.0;

    /// The largest latency told apart (2^42 − 1 ns, about 73 minutes);
    /// longer ones are recorded as this.
    ///
    /// ```
    /// use recourse::hedge::LatencyTracker;
    /// use std::time::Duration;
    ///
    /// assert!(LatencyTracker::MAX_LATENCY > Duration::from_secs(60 * 60));
    /// ```
    pub const MAX_LATENCY: Duration = Duration::from_nanos(MAX_NANOS);

    /// The window of a tracker made with [`default`](Self::default) or a
    /// zero window: 256 samples.
    ///
    /// ```
    /// use recourse::hedge::LatencyTracker;
    ///
    /// assert_eq!(LatencyTracker::default().window(), LatencyTracker::DEFAULT_WINDOW);
    /// ```
    pub const DEFAULT_WINDOW: usize = DEFAULT_WINDOW;

    /// A tracker of the last `window` samples (0 means 256).
    ///
    /// ```
    /// use recourse::hedge::LatencyTracker;
    ///
    /// assert_eq!(LatencyTracker::new(1024).window(), 1024);
    /// assert_eq!(LatencyTracker::new(0).window(), 256);
    /// ```
    pub fn new(window: usize) -> Self {
        let window = if window == 0 { DEFAULT_WINDOW } else { window };
        let slots: Box<[AtomicU64]> = (0..window).map(|_| AtomicU64::new(EMPTY)).collect();
        let window = slots.len() as u64;
        Self {
            next: Padded::default(),
            slots,
            window,
            mask: window.is_power_of_two().then(|| window - 1),
            stride: STRIDES.into_iter().find(|&stride| window > stride && !window.is_multiple_of(stride)).unwrap_or(1),
            buckets: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }

    /// How many samples the tracker keeps.
    ///
    /// ```
    /// use recourse::hedge::LatencyTracker;
    ///
    /// assert_eq!(LatencyTracker::new(5).window(), 5);
    /// ```
    pub fn window(&self) -> usize {
        self.slots.len()
    }

    /// How many samples were ever recorded.
    ///
    /// ```
    /// use recourse::hedge::LatencyTracker;
    /// use std::time::Duration;
    ///
    /// let tracker = LatencyTracker::new(2);
    /// for _ in 0..3 {
    ///     tracker.record(Duration::from_millis(1));
    /// }
    /// assert_eq!(tracker.recorded(), 3);
    /// assert_eq!(tracker.snapshot().samples, 2, "the window keeps two");
    /// ```
    pub fn recorded(&self) -> u64 {
        self.next.0.load(Ordering::Relaxed)
    }

    /// Records one attempt's latency, evicting the oldest sample once the
    /// window is full. O(1), lock-free, allocation-free.
    ///
    /// ```
    /// use recourse::hedge::LatencyTracker;
    /// use std::time::Duration;
    ///
    /// let tracker = LatencyTracker::new(5);
    /// tracker.record(Duration::from_micros(20));
    /// assert_eq!(tracker.snapshot().p50, Duration::from_nanos(19_968), "20 µs, within 1/32");
    /// ```
    pub fn record(&self, latency: Duration) {
        let nanos = u64::try_from(latency.as_nanos()).map_or(MAX_NANOS, |nanos| nanos.min(MAX_NANOS));
        let index = self.next.0.fetch_add(1, Ordering::Relaxed);
        let evicted = self.slots[self.slot(index)].swap(nanos, Ordering::Relaxed);
        let bucket = bucket_of(nanos);
        if evicted == EMPTY {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
            return;
        }
        let old = bucket_of(evicted);
        if old != bucket {
            // Increment first, so a concurrent snapshot over-counts rather
            // than under-counts.
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
            self.buckets[old].fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Under `--cfg loom` only: the samples in the ring (nanoseconds,
    /// sorted) and whether the histogram counts exactly those, as it must
    /// once recording pauses.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn ring_at_rest(&self) -> (Vec<u64>, bool) {
        let mut ring: Vec<u64> =
            self.slots.iter().map(|slot| slot.load(Ordering::Relaxed)).filter(|&nanos| nanos != EMPTY).collect();
        ring.sort_unstable();
        let mut expected = vec![0_u64; BUCKETS];
        for &nanos in &ring {
            expected[bucket_of(nanos)] += 1;
        }
        let matches =
            self.buckets.iter().zip(expected).all(|(counter, count)| counter.load(Ordering::Relaxed) == count);
        (ring, matches)
    }

    #[allow(clippy::cast_possible_truncation, reason = "below the window, which is a usize")]
    fn slot(&self, index: u64) -> usize {
        (match self.mask {
            // (i·s mod 2^64) mod 2^k = i·s mod 2^k, wrapping or not.
            Some(mask) => index.wrapping_mul(self.stride) & mask,
            None => index % self.window * self.stride % self.window,
        }) as usize
    }

    /// The current percentiles (all zero when nothing was recorded).
    ///
    /// `samples` is `min(recorded, window)`. Each percentile is the
    /// midpoint of the bucket holding the exact percentile
    /// `sorted[⌊(n − 1)·q⌋]`, within [`RELATIVE_ERROR`](Self::RELATIVE_ERROR)
    /// of it. Costs one pass over the bucket counters up to the p99 bucket
    /// (at most 624; well under a microsecond), whatever the window.
    ///
    /// ```
    /// use recourse::hedge::LatencyTracker;
    /// use std::time::Duration;
    ///
    /// let tracker = LatencyTracker::new(5);
    /// assert_eq!(tracker.snapshot().p99, Duration::ZERO);
    /// for ms in [1, 1, 1, 1, 1, 100, 100] {
    ///     tracker.record(Duration::from_millis(ms)); // the two 100 ms evict two 1 ms
    /// }
    /// let snapshot = tracker.snapshot();
    /// assert_eq!(snapshot.samples, 5);
    /// assert!(snapshot.p50 < Duration::from_millis(2));
    /// assert!(snapshot.p90 > Duration::from_millis(96));
    /// ```
    pub fn snapshot(&self) -> LatencySnapshot {
        let samples = self.recorded().min(self.window);
        if samples == 0 {
            return LatencySnapshot::default();
        }
        // At rest the histogram holds exactly `samples` samples, so the
        // ranks come from the count and one walk over the counters, stopping
        // at the p99 bucket, finds all four (no copy, no second pass).
        let ranks = Percentile::ALL.map(|p| p.rank(samples));
        let mut values = [0_u64; 4];
        let mut found = 0;
        let mut cumulative = 0_u64;
        let mut last_seen = None;
        'walk: for (bucket, counter) in self.buckets.iter().enumerate() {
            let count = counter.load(Ordering::Relaxed);
            // Above i64::MAX is a transient negative (a decrement that beat
            // its increment): read it as empty.
            if count == 0 || count > i64::MAX as u64 {
                continue;
            }
            last_seen = Some(bucket);
            cumulative += count;
            while cumulative > ranks[found] {
                values[found] = representative(bucket);
                found += 1;
                if found == ranks.len() {
                    break 'walk;
                }
            }
        }
        // Mid-record, the buckets may briefly hold fewer samples than the
        // count: the ranks not reached take the highest sample seen.
        match last_seen {
            Some(bucket) => values[found..].fill(representative(bucket)),
            None => return LatencySnapshot { samples, ..LatencySnapshot::default() },
        }
        let [p50, p90, p95, p99] = values.map(Duration::from_nanos);
        LatencySnapshot { p50, p90, p95, p99, samples }
    }
}

impl Default for LatencyTracker {
    /// A tracker of the last 256 samples.
    fn default() -> Self {
        Self::new(DEFAULT_WINDOW)
    }
}

impl fmt::Debug for LatencyTracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyTracker")
            .field("window", &self.window)
            .field("recorded", &self.recorded())
            .finish_non_exhaustive()
    }
}

/// Per-key latency trackers of one executor.
///
/// Each key gets its own [`LatencyTracker`] (window 256 unless built with
/// [`with_window`](Self::with_window)), created on first use: a read lock
/// finds an existing tracker, and only a miss takes the write lock (and
/// checks again under it, so two racing callers share one tracker).
/// Trackers are never evicted: policy keys are low-cardinality by contract,
/// so the map is bounded by the number of call sites.
///
/// ```
/// use recourse::hedge::Trackers;
/// use recourse::PolicyKey;
/// use std::sync::Arc;
///
/// let trackers = Trackers::new();
/// let key = PolicyKey::parse("svc.Op");
/// let a = trackers.get_or_create(&key);
/// let b = trackers.get_or_create(&key);
/// assert!(Arc::ptr_eq(&a, &b));
/// assert!(!Arc::ptr_eq(&a, &trackers.get_or_create(&PolicyKey::parse("svc.Other"))));
/// ```
pub struct Trackers {
    window: usize,
    map: RwLock<HashMap<PolicyKey, Arc<LatencyTracker>>>,
}

impl Trackers {
    /// No trackers yet; each will keep 256 samples.
    ///
    /// ```
    /// use recourse::hedge::Trackers;
    ///
    /// assert!(Trackers::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_window(DEFAULT_WINDOW)
    }

    /// No trackers yet; each will keep `window` samples (0 means 256).
    ///
    /// ```
    /// use recourse::hedge::Trackers;
    /// use recourse::PolicyKey;
    ///
    /// let trackers = Trackers::with_window(1024);
    /// assert_eq!(trackers.get_or_create(&PolicyKey::parse("svc.Op")).window(), 1024);
    /// ```
    pub fn with_window(window: usize) -> Self {
        Self { window, map: RwLock::new(HashMap::new()) }
    }

    /// The tracker for `key`, created on first use.
    ///
    /// ```
    /// use recourse::hedge::Trackers;
    /// use recourse::PolicyKey;
    /// use std::time::Duration;
    ///
    /// let trackers = Trackers::new();
    /// let key = PolicyKey::parse("svc.Op");
    /// trackers.get_or_create(&key).record(Duration::from_millis(3));
    /// assert_eq!(trackers.get_or_create(&key).snapshot().samples, 1);
    /// ```
    pub fn get_or_create(&self, key: &PolicyKey) -> Arc<LatencyTracker> {
        if let Some(tracker) = self.get(key) {
            return tracker;
        }
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(map.entry(key.clone()).or_insert_with(|| Arc::new(LatencyTracker::new(self.window))))
    }

    /// The tracker for `key`, if one was created.
    ///
    /// ```
    /// use recourse::hedge::Trackers;
    /// use recourse::PolicyKey;
    ///
    /// let trackers = Trackers::new();
    /// let key = PolicyKey::parse("svc.Op");
    /// assert!(trackers.get(&key).is_none());
    /// trackers.get_or_create(&key);
    /// assert!(trackers.get(&key).is_some());
    /// ```
    pub fn get(&self, key: &PolicyKey) -> Option<Arc<LatencyTracker>> {
        self.map.read().unwrap_or_else(PoisonError::into_inner).get(key).cloned()
    }

    /// How many keys have a tracker.
    ///
    /// ```
    /// use recourse::hedge::Trackers;
    /// use recourse::PolicyKey;
    ///
    /// let trackers = Trackers::new();
    /// trackers.get_or_create(&PolicyKey::parse("svc.A"));
    /// trackers.get_or_create(&PolicyKey::parse("svc.A"));
    /// assert_eq!(trackers.len(), 1);
    /// ```
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no key has a tracker yet.
    ///
    /// ```
    /// use recourse::hedge::Trackers;
    ///
    /// assert!(Trackers::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for Trackers {
    /// The same as [`Trackers::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Trackers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trackers").field("window", &self.window).field("keys", &self.len()).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::sync::atomic::AtomicBool;

    use proptest::prelude::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// A small seeded generator (`SplitMix64`), so random tests replay.
    struct SplitMix(u64);

    impl SplitMix {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, bound: u64) -> u64 {
            self.next() % bound
        }
    }

    /// The Go original's percentiles: `sorted[⌊(n − 1)·q⌋]` of the window.
    #[allow(clippy::cast_possible_truncation, reason = "an index into the vector")]
    fn exact(window: &[u64]) -> [u64; 4] {
        let mut sorted = window.to_vec();
        sorted.sort_unstable();
        let n = sorted.len() as u64;
        Percentile::ALL.map(|p| sorted[p.rank(n) as usize])
    }

    /// `reported` is within 1/32 of `exact`.
    fn within_bound(reported: Duration, exact: u64) -> bool {
        let reported = u64::try_from(reported.as_nanos()).unwrap();
        32 * reported.abs_diff(exact) <= exact
    }

    fn assert_within_bound(snapshot: &LatencySnapshot, exact: [u64; 4]) {
        let reported = [snapshot.p50, snapshot.p90, snapshot.p95, snapshot.p99];
        for ((p, reported), exact) in Percentile::ALL.iter().zip(reported).zip(exact) {
            assert!(within_bound(reported, exact), "{p}: reported {reported:?}, exact {exact} ns");
        }
    }

    /// The samples currently in the ring.
    fn ring(tracker: &LatencyTracker) -> Vec<u64> {
        tracker.slots.iter().map(|slot| slot.load(Ordering::Relaxed)).filter(|&v| v != EMPTY).collect()
    }

    #[test]
    fn bucket_layout_is_contiguous_and_bounded() {
        assert_eq!(BUCKETS, 624);
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(31), 31);
        assert_eq!(bucket_of(32), 32);
        assert_eq!(bucket_of(MAX_NANOS), BUCKETS - 1);
        // Every bucket boundary: the index steps by one, and the midpoint
        // of each bucket is inside it and maps back to it.
        let mut previous = bucket_of(0);
        let mut value = 1_u64;
        while value <= MAX_NANOS {
            let bucket = bucket_of(value);
            assert!(bucket == previous || bucket == previous + 1, "gap at {value}");
            assert_eq!(bucket_of(representative(bucket)), bucket);
            previous = bucket;
            // Walk bucket starts (and the values just below them).
            value = if value < LINEAR { value + 1 } else { value + (1 << (value.ilog2() - SUB_BITS)) };
            if value <= MAX_NANOS {
                assert_eq!(bucket_of(value - 1), previous);
            }
        }
        assert_eq!(previous, BUCKETS - 1);
    }

    #[test]
    fn representative_is_within_bound_of_every_value_at_bucket_edges() {
        for k in 5..TOP_POW {
            for sub in 0..SUB {
                let lo = (SUB + sub) << (k - SUB_BITS);
                let hi = lo + (1 << (k - SUB_BITS)) - 1;
                for v in [lo, hi] {
                    let rep = representative(bucket_of(v));
                    assert!(32 * rep.abs_diff(v) <= v, "{v}: {rep}");
                }
            }
        }
        for v in 0..LINEAR {
            assert_eq!(representative(bucket_of(v)), v, "exact below 32 ns");
        }
    }

    #[test]
    fn every_window_of_samples_fills_every_slot_once() {
        for window in [1, 2, 5, 16, 17, 100, 256, 1000, 1024, 17 * 19 * 23 * 29] {
            let tracker = LatencyTracker::new(window);
            for start in [0, 3, 1 << 40] {
                let mut seen = vec![false; window];
                for i in start..start + window as u64 {
                    let slot = tracker.slot(i);
                    assert!(!seen[slot], "window {window}: slot {slot} twice");
                    seen[slot] = true;
                    assert_eq!(tracker.slot(i.wrapping_add(window as u64)), slot, "sample i + window evicts sample i");
                }
            }
            if (100..17 * 19 * 23 * 29).contains(&window) {
                assert_ne!(tracker.slot(1) / 8, tracker.slot(0) / 8, "consecutive samples, different cache lines");
            }
        }
    }

    // E18
    #[test]
    fn empty_tracker_is_all_zero() {
        let snapshot = LatencyTracker::new(10).snapshot();
        assert_eq!(snapshot, LatencySnapshot::default());
        assert_eq!(LatencyTracker::default().snapshot(), LatencySnapshot::default());
    }

    // E19. Go asserts p50 = 50 ms, p90 = 90 ms, p99 = 99 ms exactly; the
    // histogram reports bucket midpoints, so exact equality is replaced by
    // the stated 1/32 bound around the same exact values.
    #[test]
    fn window_of_100_fed_1_to_100_ms() {
        let tracker = LatencyTracker::new(100);
        for i in 1..=100 {
            tracker.record(ms(i));
        }
        let snapshot = tracker.snapshot();
        assert_eq!(snapshot.samples, 100);
        assert_within_bound(&snapshot, [50, 90, 95, 99].map(|m| m * 1_000_000));
        assert_within_bound(&snapshot, exact(&ring(&tracker)));
    }

    // E20 (bucketed: ≈ instead of =).
    #[test]
    fn wrap_around_evicts_the_oldest() {
        let tracker = LatencyTracker::new(5);
        for _ in 0..5 {
            tracker.record(ms(1));
        }
        tracker.record(ms(100));
        tracker.record(ms(100));
        let snapshot = tracker.snapshot();
        assert_eq!(snapshot.samples, 5);
        assert!(within_bound(snapshot.p50, 1_000_000), "{snapshot:?}");
        assert!(within_bound(snapshot.p90, 100_000_000), "{snapshot:?}");
        // Five more 100 ms evict every 1 ms sample, and their buckets empty.
        for _ in 0..5 {
            tracker.record(ms(100));
        }
        let snapshot = tracker.snapshot();
        assert!(within_bound(snapshot.p50, 100_000_000), "{snapshot:?}");
        assert_eq!(tracker.buckets[bucket_of(1_000_000)].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn zero_window_means_default_and_samples_are_capped() {
        let tracker = LatencyTracker::new(0);
        assert_eq!(tracker.window(), 256);
        for _ in 0..300 {
            tracker.record(ms(7));
        }
        assert_eq!(tracker.snapshot().samples, 256);
        assert_eq!(tracker.recorded(), 300);
    }

    #[test]
    fn extremes_are_clamped_not_lost() {
        let tracker = LatencyTracker::new(4);
        tracker.record(Duration::MAX);
        tracker.record(Duration::from_secs(10 * 3600));
        tracker.record(Duration::ZERO);
        tracker.record(Duration::from_nanos(7));
        let snapshot = tracker.snapshot();
        assert_eq!(snapshot.p50, Duration::from_nanos(7), "sorted [0, 7, max, max][1]");
        assert!(snapshot.p99 <= LatencyTracker::MAX_LATENCY);
        assert!(within_bound(snapshot.p99, MAX_NANOS));
    }

    // E21, with 10 000 samples: a recorder and a snapshotter at once.
    #[test]
    fn concurrent_record_and_snapshot() {
        let tracker = LatencyTracker::new(1000);
        let done = AtomicBool::new(false);
        let (lo, hi) = (1_000_000, 100_000_000);
        let snapshots = std::thread::scope(|scope| {
            scope.spawn(|| {
                let mut rng = SplitMix(21);
                for _ in 0..10_000 {
                    tracker.record(Duration::from_nanos(lo + rng.below(hi - lo + 1)));
                }
                done.store(true, Ordering::Release);
            });
            let reader = scope.spawn(|| {
                let mut taken = 0_u32;
                loop {
                    let finished = done.load(Ordering::Acquire);
                    let s = tracker.snapshot();
                    taken += 1;
                    assert!(s.p50 <= s.p90 && s.p90 <= s.p95 && s.p95 <= s.p99, "{s:?}");
                    if s.p50 != Duration::ZERO {
                        for p in [s.p50, s.p99] {
                            assert!(32 * Duration::from_nanos(lo).saturating_sub(p).as_nanos() <= u128::from(lo));
                            assert!(32 * p.saturating_sub(Duration::from_nanos(hi)).as_nanos() <= u128::from(hi));
                        }
                    }
                    assert!(s.samples <= 1000);
                    if finished {
                        return taken;
                    }
                }
            });
            reader.join().unwrap()
        });
        assert!(snapshots >= 1);
        assert_eq!(tracker.snapshot().samples, 1000);
        assert_within_bound(&tracker.snapshot(), exact(&ring(&tracker)));
    }

    /// Several recorders racing on the same slots: once they stop, the
    /// histogram matches the ring exactly (every sample counted in once and
    /// out once), whatever the interleaving.
    #[test]
    fn histogram_matches_the_ring_after_contention() {
        let tracker = LatencyTracker::new(100);
        let threads = 4;
        let barrier = Barrier::new(threads);
        std::thread::scope(|scope| {
            for seed in 0..threads as u64 {
                let (tracker, barrier) = (&tracker, &barrier);
                scope.spawn(move || {
                    let mut rng = SplitMix(seed);
                    barrier.wait();
                    for _ in 0..20_000 {
                        tracker.record(Duration::from_nanos(rng.below(1 << 30)));
                        if rng.below(64) == 0 {
                            let s = tracker.snapshot();
                            assert!(s.p50 <= s.p90 && s.p90 <= s.p95 && s.p95 <= s.p99);
                        }
                    }
                });
            }
        });
        let mut expected = [0_u64; BUCKETS];
        for v in ring(&tracker) {
            expected[bucket_of(v)] += 1;
        }
        let actual: Vec<u64> = tracker.buckets.iter().map(|b| b.load(Ordering::Relaxed)).collect();
        assert_eq!(actual, expected);
        assert_within_bound(&tracker.snapshot(), exact(&ring(&tracker)));
    }

    /// The stated bound against an exact sort, on seeded random data of
    /// several shapes and window sizes (including a window that wrapped).
    #[test]
    fn error_bound_holds_on_seeded_random_data() {
        let mut rng = SplitMix(0x5EED);
        for round in 0..200 {
            let window = 1 + usize::try_from(rng.below(1500)).unwrap();
            let count = 1 + rng.below(3000);
            let tracker = LatencyTracker::new(window);
            let mut fed = Vec::new();
            for _ in 0..count {
                let v = match round % 4 {
                    // Uniform over a wide range.
                    0 => rng.below(MAX_NANOS + 1),
                    // Log-uniform (latency-like): 1 ns .. 2^40 ns.
                    1 => 1 << rng.below(40) | rng.below(1 << 20),
                    // A tight cluster around 10 ms.
                    2 => 10_000_000 + rng.below(100_000),
                    // Bimodal: fast hits, slow misses.
                    _ => {
                        if rng.below(10) == 0 {
                            200_000_000 + rng.below(50_000_000)
                        } else {
                            500_000 + rng.below(200_000)
                        }
                    }
                };
                fed.push(v);
                tracker.record(Duration::from_nanos(v));
            }
            let kept = &fed[fed.len().saturating_sub(window)..];
            let snapshot = tracker.snapshot();
            assert_eq!(snapshot.samples, kept.len() as u64);
            assert_within_bound(&snapshot, exact(kept));
        }
    }

    proptest! {
        #[test]
        fn error_bound_holds_for_any_samples(
            window in 1_usize..300,
            samples in prop::collection::vec(0..=MAX_NANOS, 1..600),
        ) {
            let tracker = LatencyTracker::new(window);
            for &v in &samples {
                tracker.record(Duration::from_nanos(v));
            }
            let kept = &samples[samples.len().saturating_sub(window)..];
            let snapshot = tracker.snapshot();
            prop_assert_eq!(snapshot.samples, kept.len() as u64);
            let reported = [snapshot.p50, snapshot.p90, snapshot.p95, snapshot.p99];
            for (reported, exact) in reported.into_iter().zip(exact(kept)) {
                prop_assert!(within_bound(reported, exact), "reported {:?}, exact {} ns", reported, exact);
            }
        }
    }

    #[test]
    fn trackers_are_one_per_key_and_shared_across_threads() {
        let trackers = Trackers::with_window(16);
        let key = PolicyKey::parse("svc.Op");
        let first = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4).map(|_| scope.spawn(|| trackers.get_or_create(&key))).collect();
            let all: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            for tracker in &all {
                assert!(Arc::ptr_eq(tracker, &all[0]), "double-checked creation makes one tracker");
            }
            Arc::clone(&all[0])
        });
        assert_eq!(first.window(), 16);
        assert!(Arc::ptr_eq(&first, &trackers.get(&key).unwrap()));
        let other = trackers.get_or_create(&PolicyKey::parse("svc.Other"));
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(trackers.len(), 2);
        assert!(format!("{trackers:?}").contains("keys: 2, .."));
    }
}

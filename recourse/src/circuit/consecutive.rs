//! The consecutive-failures breaker (the Go original's).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::machine::{Clock, Counts, Machine};
use super::{Breaker, Decision, State, Transition};
use crate::policy::limits::{DEFAULT_CIRCUIT_COOLDOWN, DEFAULT_CIRCUIT_THRESHOLD};

/// Opens after `threshold` failed calls in a row; after `cooldown` admits
/// one probe, whose success closes it and whose failure opens it again.
///
/// A success while closed resets the count. Lock-free: the closed path of
/// [`allow`](Breaker::allow) is one atomic load, a success while closed
/// with no failures counted reads one more and writes nothing (so a healthy
/// breaker shared by many threads causes no cache-line traffic), and a
/// failure is one atomic increment. Each state change is one
/// compare-and-swap: under contention exactly one caller opens the circuit,
/// exactly one gets the half-open probe, and exactly one reports each
/// change.
///
/// Time is tokio's: `tokio::time::pause()` and `advance()` drive the
/// cooldown in tests.
///
/// ```
/// use recourse::circuit::{Breaker, ConsecutiveFailures, State, reason};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let breaker = ConsecutiveFailures::new(3, Duration::from_secs(10));
/// for _ in 0..3 {
///     assert!(breaker.allow().allowed);
///     breaker.record_failure();
/// }
/// assert_eq!(breaker.allow().reason, reason::CIRCUIT_OPEN);
///
/// tokio::time::advance(Duration::from_secs(10)).await;
/// let probe = breaker.allow();
/// assert!(probe.allowed);
/// assert_eq!(probe.state, State::HalfOpen);
/// assert_eq!(breaker.allow().reason, reason::HALF_OPEN_PROBE_LIMIT, "one probe at a time");
///
/// breaker.record_success();
/// assert_eq!(breaker.state(), State::Closed);
/// # }
/// ```
pub struct ConsecutiveFailures {
    machine: Machine,
    failures: Failures,
}

#[derive(Debug)]
struct Failures {
    count: AtomicU32,
    threshold: u32,
}

// The count is relaxed: the machine's word orders it (the count is reset
// before the closed word is published, and read after it is loaded).
impl Counts for Failures {
    fn success(&self, _: &Clock) {
        // Read first: the common case (no failures) stays a shared read.
        if self.count.load(Ordering::Relaxed) != 0 {
            self.count.store(0, Ordering::Relaxed);
        }
    }

    fn failure(&self, _: &Clock) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed).saturating_add(1) >= self.threshold
    }

    fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
    }
}

impl ConsecutiveFailures {
    /// A closed breaker. As in the Go original, a `threshold` of 0 means 5
    /// and a zero `cooldown` means 10 s (normalization's fill-ins,
    /// [`DEFAULT_CIRCUIT_THRESHOLD`] and [`DEFAULT_CIRCUIT_COOLDOWN`]).
    /// Normalization's 100 ms floor on the cooldown is not applied here:
    /// policies are normalized before they reach a breaker, and a breaker
    /// built by hand may use a shorter one.
    ///
    /// ```
    /// use recourse::circuit::ConsecutiveFailures;
    /// use std::time::Duration;
    ///
    /// let breaker = ConsecutiveFailures::new(0, Duration::ZERO);
    /// assert_eq!(breaker.threshold(), 5);
    /// assert_eq!(breaker.cooldown(), Duration::from_secs(10));
    /// ```
    pub fn new(threshold: u32, cooldown: Duration) -> Self {
        let threshold = if threshold == 0 { DEFAULT_CIRCUIT_THRESHOLD } else { threshold };
        let cooldown = if cooldown.is_zero() { DEFAULT_CIRCUIT_COOLDOWN } else { cooldown };
        Self { machine: Machine::new(cooldown), failures: Failures { count: AtomicU32::new(0), threshold } }
    }

    /// Failed calls in a row that open the circuit.
    ///
    /// ```
    /// use recourse::circuit::ConsecutiveFailures;
    /// use std::time::Duration;
    ///
    /// assert_eq!(ConsecutiveFailures::new(3, Duration::from_secs(1)).threshold(), 3);
    /// ```
    pub fn threshold(&self) -> u32 {
        self.failures.threshold
    }

    /// How long the circuit stays open before a probe.
    ///
    /// ```
    /// use recourse::circuit::ConsecutiveFailures;
    /// use std::time::Duration;
    ///
    /// let breaker = ConsecutiveFailures::new(3, Duration::from_millis(250));
    /// assert_eq!(breaker.cooldown(), Duration::from_millis(250));
    /// ```
    pub fn cooldown(&self) -> Duration {
        self.machine.cooldown()
    }

    /// Failed calls in a row so far while closed (0 once the circuit has
    /// opened).
    ///
    /// ```
    /// use recourse::circuit::{Breaker, ConsecutiveFailures};
    /// use std::time::Duration;
    ///
    /// let breaker = ConsecutiveFailures::new(3, Duration::from_secs(1));
    /// breaker.record_failure();
    /// breaker.record_failure();
    /// assert_eq!(breaker.failures(), 2);
    /// breaker.record_success();
    /// assert_eq!(breaker.failures(), 0);
    /// ```
    pub fn failures(&self) -> u32 {
        self.failures.count.load(Ordering::Relaxed)
    }
}

impl Breaker for ConsecutiveFailures {
    fn allow(&self) -> Decision {
        self.machine.allow()
    }

    fn record_success(&self) -> Option<Transition> {
        self.machine.record_success(&self.failures)
    }

    fn record_failure(&self) -> Option<Transition> {
        self.machine.record_failure(&self.failures)
    }

    fn release_probe(&self) {
        self.machine.release_probe();
    }

    fn state(&self) -> State {
        self.machine.state()
    }
}

impl fmt::Debug for ConsecutiveFailures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsecutiveFailures")
            .field("state", &self.state())
            .field("failures", &self.failures())
            .field("threshold", &self.threshold())
            .field("cooldown", &self.cooldown())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::circuit::machine::tests::{race_for_the_probe, transitions_form_a_chain};
    use crate::circuit::reason;
    use std::sync::Arc;
    use tokio::time::advance;

    const CLOSE: Option<Transition> = Some(Transition::new(State::HalfOpen, State::Closed));
    const OPEN: Option<Transition> = Some(Transition::new(State::Closed, State::Open));
    const REOPEN: Option<Transition> = Some(Transition::new(State::HalfOpen, State::Open));
    const PROBE: Option<Transition> = Some(Transition::new(State::Open, State::HalfOpen));

    /// Go test F23, step by step.
    #[tokio::test(start_paused = true)]
    async fn f23_scripted_sequence() {
        let cooldown = Duration::from_millis(50);
        let b = ConsecutiveFailures::new(3, cooldown);

        // Starts closed; allow → allowed.
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.allow(), Decision::allow(State::Closed));

        // Two failures: still closed; a success resets the count.
        assert_eq!(b.record_failure(), None);
        assert_eq!(b.record_failure(), None);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.record_success(), None);
        assert_eq!(b.failures(), 0);

        // Three in a row: open.
        assert_eq!(b.record_failure(), None);
        assert_eq!(b.record_failure(), None);
        assert_eq!(b.record_failure(), OPEN);
        assert_eq!(b.state(), State::Open);

        // Allow while open: denied, circuit_open.
        let d = b.allow();
        assert!(!d.allowed);
        assert_eq!((d.state, d.reason), (State::Open, reason::CIRCUIT_OPEN));

        // After cooldown + 10 ms: the probe, in half-open.
        advance(cooldown + Duration::from_millis(10)).await;
        let d = b.allow();
        assert!(d.allowed);
        assert_eq!(d.state, State::HalfOpen);
        assert_eq!(d.transition, PROBE);
        assert_eq!(b.state(), State::HalfOpen);

        // A second allow in half-open: denied (one probe).
        let d = b.allow();
        assert!(!d.allowed);
        assert_eq!((d.state, d.reason), (State::HalfOpen, reason::HALF_OPEN_PROBE_LIMIT));

        // The probe fails: open again.
        assert_eq!(b.record_failure(), REOPEN);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.allow().reason, reason::CIRCUIT_OPEN, "the cooldown restarted");

        // After another cooldown: probe, success → closed; allow → allowed.
        advance(cooldown + Duration::from_millis(10)).await;
        let d = b.allow();
        assert!(d.allowed);
        assert_eq!(d.state, State::HalfOpen);
        assert_eq!(b.record_success(), CLOSE);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.allow(), Decision::allow(State::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_released_probe_lets_the_next_call_probe() {
        let b = ConsecutiveFailures::new(1, Duration::from_secs(1));
        b.record_failure();
        advance(Duration::from_secs(1)).await;
        assert!(b.allow().allowed);
        assert!(!b.allow().allowed);
        // The probe's call was cancelled: no verdict, slot handed back.
        b.release_probe();
        assert_eq!(b.state(), State::HalfOpen);
        let d = b.allow();
        assert!(d.allowed);
        assert_eq!((d.state, d.transition), (State::HalfOpen, None));
        assert!(!b.allow().allowed, "and only one");
        assert_eq!(b.record_success(), CLOSE);
    }

    #[tokio::test(start_paused = true)]
    async fn release_does_nothing_unless_a_probe_is_out() {
        let b = ConsecutiveFailures::new(2, Duration::from_secs(1));
        b.record_failure();
        b.release_probe();
        assert_eq!((b.state(), b.failures()), (State::Closed, 1), "closed: untouched");
        b.record_failure();
        b.release_probe();
        assert_eq!(b.allow().reason, reason::CIRCUIT_OPEN, "open: untouched");
        advance(Duration::from_secs(1)).await;
        b.release_probe();
        assert_eq!(b.allow().transition, PROBE, "a cooled-down circuit still reports its probe");
    }

    #[tokio::test(start_paused = true)]
    async fn transitions_are_reported_once_by_the_call_that_caused_them() {
        let b = ConsecutiveFailures::new(2, Duration::from_millis(100));
        assert_eq!(b.record_success(), None, "closed, nothing counted");
        assert_eq!(b.record_failure(), None);
        assert_eq!(b.record_failure(), OPEN);
        assert_eq!(b.failures(), 0, "opening resets the count");
        assert_eq!(b.record_failure(), None, "open: verdicts of earlier calls are ignored");
        assert_eq!(b.record_success(), None);
        advance(Duration::from_millis(100)).await;
        assert_eq!(b.state(), State::HalfOpen, "reads half-open once cooled down");
        assert_eq!(b.record_success(), None, "still only a probe decides");
        assert_eq!(b.allow().transition, PROBE);
        assert_eq!(b.allow().transition, None);
        assert_eq!(b.record_failure(), REOPEN);
        advance(Duration::from_millis(100)).await;
        assert_eq!(b.allow().transition, PROBE);
        assert_eq!(b.record_success(), CLOSE);
        assert_eq!(b.record_success(), None);
        assert_eq!(b.record_failure(), None, "counting from zero again");
        assert_eq!(b.record_failure(), OPEN);
    }

    #[tokio::test(start_paused = true)]
    async fn the_cooldown_is_measured_from_the_opening() {
        let b = ConsecutiveFailures::new(1, Duration::from_millis(100));
        advance(Duration::from_secs(5)).await;
        b.record_failure();
        advance(Duration::from_millis(99)).await;
        assert_eq!(b.state(), State::Open);
        assert!(!b.allow().allowed);
        advance(Duration::from_millis(1)).await;
        assert!(b.allow().allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn hostile_settings_get_the_go_fill_ins() {
        let b = ConsecutiveFailures::new(0, Duration::ZERO);
        assert_eq!((b.threshold(), b.cooldown()), (5, Duration::from_secs(10)));
        for _ in 0..4 {
            assert_eq!(b.record_failure(), None);
        }
        assert_eq!(b.record_failure(), OPEN, "threshold 0 means 5");
        advance(Duration::from_millis(9_999)).await;
        assert_eq!(b.state(), State::Open);
        advance(Duration::from_millis(1)).await;
        assert_eq!(b.state(), State::HalfOpen, "zero cooldown means 10 s");

        // Extremes neither overflow nor panic.
        let b = ConsecutiveFailures::new(u32::MAX, Duration::MAX);
        for _ in 0..1000 {
            assert_eq!(b.record_failure(), None);
        }
        let b = ConsecutiveFailures::new(1, Duration::MAX);
        b.record_failure();
        advance(Duration::from_secs(86_400 * 365)).await;
        assert_eq!(b.allow().reason, reason::CIRCUIT_OPEN, "a cooldown of Duration::MAX never ends");
        let b = ConsecutiveFailures::new(1, Duration::from_nanos(1));
        b.record_failure();
        advance(Duration::from_nanos(1)).await;
        assert!(b.allow().allowed);
    }

    #[test]
    fn threads_race_for_the_half_open_probe() {
        let cooldown = Duration::from_millis(2);
        let b = ConsecutiveFailures::new(3, cooldown);
        let open = |b: &dyn Breaker| {
            for _ in 0..3 {
                b.record_failure();
            }
        };
        race_for_the_probe(&b, open, cooldown, 8, 20);
        assert_eq!(b.failures(), 0);
    }

    #[test]
    fn concurrent_failures_open_it_once() {
        let b = ConsecutiveFailures::new(100, Duration::from_secs(60));
        let opened: usize = std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..4).map(|_| scope.spawn(|| (0..100).filter(|_| b.record_failure().is_some()).count())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(opened, 1);
        assert_eq!(b.state(), State::Open);
    }

    #[test]
    fn racing_verdicts_leave_one_consistent_history() {
        let b: Arc<dyn Breaker> = Arc::new(ConsecutiveFailures::new(3, Duration::from_micros(20)));
        transitions_form_a_chain(&b, 4, 20_000);
    }

    #[test]
    fn debug_shows_the_state() {
        let b = ConsecutiveFailures::new(2, Duration::from_secs(1));
        b.record_failure();
        let text = format!("{b:?}");
        assert!(text.contains("Closed") && text.contains("failures: 1") && text.contains("threshold: 2"), "{text}");
    }
}

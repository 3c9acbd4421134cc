//! The state machine both breakers share: closed → open → half-open → closed
//! (or back to open), lock-free.
//!
//! The whole state lives in one atomic word, so every change is a single
//! compare-and-swap and no reader can ever see half of one:
//!
//! ```text
//!  63                                   3   2   1 0
//! +--------------------------------------+---+-----+
//! |  opened at (ns since the origin)     | P | S S |
//! +--------------------------------------+---+-----+
//! ```
//!
//! `S` is the state (0 closed, 1 open, 2 half-open) and `P` is set while the
//! half-open probe is out. The closed word is exactly 0, so the closed path of
//! `allow` is one load and one comparison. Packing the opening time with the
//! state (rather than keeping it in an atomic of its own) is what makes the
//! transitions race-free: a caller can never see "open" with the previous
//! opening time and skip the cooldown, and the caller that moves open →
//! half-open takes the probe in the same swap, so no second caller can slip in
//! between. 61 bits of nanoseconds last 73 years from a breaker's creation.
//!
//! What a breaker counts while closed (consecutive failures, a failure-rate
//! window) is the [`Counts`] it plugs in; the machine tells it about closed
//! verdicts and resets it when the circuit closes.

use std::time::Duration;

use super::{Decision, State, Transition, reason};
use crate::sync::{AtomicU64, Instant, Ordering};

const STATE: u64 = 0b11;
const CLOSED: u64 = 0;
const OPEN: u64 = 1;
const HALF_OPEN: u64 = 2;
/// Set while the half-open probe is out.
const PROBE: u64 = 0b100;
const AT_SHIFT: u32 = 3;
const MAX_AT: u64 = u64::MAX >> AT_SHIFT;

/// Nanoseconds since a breaker's creation, on tokio's clock.
#[derive(Debug)]
pub(super) struct Clock {
    origin: Instant,
}

impl Clock {
    fn new() -> Self {
        Self { origin: Instant::now() }
    }

    /// Nanoseconds since the origin (saturating; a u64 holds 584 years).
    pub(super) fn now(&self) -> u64 {
        u64::try_from(Instant::now().saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What a breaker counts while closed.
pub(super) trait Counts {
    /// A call admitted while closed succeeded.
    fn success(&self, clock: &Clock);
    /// A call admitted while closed failed; `true` when the circuit should
    /// open.
    fn failure(&self, clock: &Clock) -> bool;
    /// Forget everything (the circuit is closing, or has just opened).
    fn reset(&self);
}

/// The shared state machine: one word of state, the cooldown and the clock.
#[derive(Debug)]
pub(super) struct Machine {
    word: AtomicU64,
    cooldown: Duration,
    cooldown_nanos: u64,
    clock: Clock,
}

impl Machine {
    /// A closed machine; `cooldown` must already be non-zero.
    pub(super) fn new(cooldown: Duration) -> Self {
        Self {
            word: AtomicU64::new(CLOSED),
            cooldown,
            cooldown_nanos: u64::try_from(cooldown.as_nanos()).unwrap_or(u64::MAX),
            clock: Clock::new(),
        }
    }

    pub(super) fn cooldown(&self) -> Duration {
        self.cooldown
    }

    pub(super) fn clock(&self) -> &Clock {
        &self.clock
    }

    fn open_word(&self) -> u64 {
        (self.clock.now().min(MAX_AT) << AT_SHIFT) | OPEN
    }

    /// Whether the cooldown of a circuit opened at `word`'s time has passed.
    fn cooled(&self, word: u64) -> bool {
        self.clock.now().saturating_sub(word >> AT_SHIFT) >= self.cooldown_nanos
    }

    pub(super) fn allow(&self) -> Decision {
        let mut word = self.word.load(Ordering::Acquire);
        if word == CLOSED {
            return Decision::allow(State::Closed);
        }
        loop {
            let next = match word & STATE {
                CLOSED => return Decision::allow(State::Closed),
                OPEN if !self.cooled(word) => return Decision::deny(State::Open, reason::CIRCUIT_OPEN),
                // Cooled down: whoever moves the word to half-open holds the
                // probe (same opening time, probe bit set).
                OPEN => (word & !STATE) | HALF_OPEN | PROBE,
                _ if word & PROBE != 0 => return Decision::deny(State::HalfOpen, reason::HALF_OPEN_PROBE_LIMIT),
                _ => word | PROBE,
            };
            match self.word.compare_exchange_weak(word, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) if word & STATE == OPEN => {
                    return Decision::allow(State::HalfOpen)
                        .with_transition(Transition::new(State::Open, State::HalfOpen));
                }
                Ok(_) => return Decision::allow(State::HalfOpen),
                Err(actual) => word = actual,
            }
        }
    }

    /// The state as a caller would see it: an open circuit whose cooldown has
    /// passed reads half-open (the next `allow` makes that so and reports
    /// the change). Never writes.
    pub(super) fn state(&self) -> State {
        let word = self.word.load(Ordering::Acquire);
        match word & STATE {
            CLOSED => State::Closed,
            OPEN if self.cooled(word) => State::HalfOpen,
            OPEN => State::Open,
            _ => State::HalfOpen,
        }
    }

    pub(super) fn release_probe(&self) {
        let mut word = self.word.load(Ordering::Acquire);
        while word & STATE == HALF_OPEN && word & PROBE != 0 {
            match self.word.compare_exchange_weak(word, word & !PROBE, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return,
                Err(actual) => word = actual,
            }
        }
    }

    pub(super) fn record_success(&self, counts: &impl Counts) -> Option<Transition> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            match word & STATE {
                CLOSED => {
                    counts.success(&self.clock);
                    return None;
                }
                // A call admitted before the circuit opened: not a probe.
                OPEN => return None,
                _ => {
                    // Reset before publishing "closed", so whoever sees the
                    // closed word also sees empty counts.
                    counts.reset();
                    match self.word.compare_exchange_weak(word, CLOSED, Ordering::AcqRel, Ordering::Acquire) {
                        Ok(_) => return Some(Transition::new(State::HalfOpen, State::Closed)),
                        Err(actual) => word = actual,
                    }
                }
            }
        }
    }

    pub(super) fn record_failure(&self, counts: &impl Counts) -> Option<Transition> {
        let mut word = self.word.load(Ordering::Acquire);
        loop {
            match word & STATE {
                CLOSED => {
                    if !counts.failure(&self.clock) {
                        return None;
                    }
                    // Several failures may cross the threshold at once; the
                    // one that swaps the word reports the change. A swap that
                    // fails means the circuit already left "closed": the
                    // failure is counted and there is nothing more to do.
                    let open = self.open_word();
                    if self.word.compare_exchange(CLOSED, open, Ordering::AcqRel, Ordering::Acquire).is_err() {
                        return None;
                    }
                    counts.reset();
                    return Some(Transition::new(State::Closed, State::Open));
                }
                OPEN => return None,
                _ => match self.word.compare_exchange_weak(word, self.open_word(), Ordering::AcqRel, Ordering::Acquire)
                {
                    Ok(_) => return Some(Transition::new(State::HalfOpen, State::Open)),
                    Err(actual) => word = actual,
                },
            }
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::circuit::Breaker;
    use std::collections::HashMap;
    use std::sync::{Arc, Barrier};

    /// Counts nothing; opens on every closed failure.
    struct Trip;

    impl Counts for Trip {
        fn success(&self, _: &Clock) {}
        fn failure(&self, _: &Clock) -> bool {
            true
        }
        fn reset(&self) {}
    }

    #[tokio::test(start_paused = true)]
    async fn the_word_keeps_state_probe_and_opening_time_together() {
        let m = Machine::new(Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(7)).await;
        assert_eq!(m.record_failure(&Trip), Some(Transition::new(State::Closed, State::Open)));
        let word = m.word.load(Ordering::Relaxed);
        assert_eq!(word & STATE, OPEN);
        assert_eq!(word >> AT_SHIFT, 7_000_000, "opened 7 ms after the origin");
        tokio::time::advance(Duration::from_millis(100)).await;
        assert_eq!(m.state(), State::HalfOpen);
        assert_eq!(m.word.load(Ordering::Relaxed), word, "state() never writes");
        assert!(m.allow().allowed);
        assert_eq!(m.word.load(Ordering::Relaxed), (7_000_000 << AT_SHIFT) | HALF_OPEN | PROBE);
        m.release_probe();
        assert_eq!(m.word.load(Ordering::Relaxed), (7_000_000 << AT_SHIFT) | HALF_OPEN);
        m.release_probe();
        assert_eq!(m.word.load(Ordering::Relaxed), (7_000_000 << AT_SHIFT) | HALF_OPEN, "nothing to release");
    }

    /// Every thread of `threads` calls `allow` at once on a breaker that has
    /// just cooled down; returns how many were admitted.
    pub(in crate::circuit) fn probes_admitted(breaker: &dyn Breaker, threads: usize) -> usize {
        let barrier = Barrier::new(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        barrier.wait();
                        breaker.allow()
                    })
                })
                .collect();
            let decisions: Vec<Decision> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            let admitted: Vec<_> = decisions.iter().filter(|d| d.allowed).collect();
            for d in &decisions {
                assert_eq!(d.state, State::HalfOpen, "{d:?}");
                if !d.allowed {
                    assert_eq!(d.reason, reason::HALF_OPEN_PROBE_LIMIT);
                }
            }
            let transitions = decisions.iter().filter(|d| d.transition.is_some()).count();
            assert!(transitions <= 1, "open → half-open is reported once");
            admitted.len()
        })
    }

    /// Opens `breaker` (with `open` failures), waits out its (short, real
    /// time) `cooldown`, races `threads` threads for the probe and fails it;
    /// `rounds` times.
    pub(in crate::circuit) fn race_for_the_probe(
        breaker: &dyn Breaker,
        open: impl Fn(&dyn Breaker),
        cooldown: Duration,
        threads: usize,
        rounds: usize,
    ) {
        open(breaker);
        for round in 0..rounds {
            // (Read-only: a descheduled test thread may find it cooled down.)
            assert_ne!(breaker.state(), State::Closed, "round {round}");
            std::thread::sleep(cooldown + Duration::from_millis(1));
            assert_eq!(probes_admitted(breaker, threads), 1, "round {round}: exactly one probe");
            if round % 2 == 0 {
                // Hand the slot back: exactly one more caller gets it.
                breaker.release_probe();
                assert_eq!(probes_admitted(breaker, threads), 1, "round {round}: one probe after a release");
            }
            assert_eq!(breaker.record_failure(), Some(Transition::new(State::HalfOpen, State::Open)));
        }
        std::thread::sleep(cooldown + Duration::from_millis(1));
        assert!(breaker.allow().allowed);
        assert_eq!(breaker.record_success(), Some(Transition::new(State::HalfOpen, State::Closed)));
    }

    /// Hammers `breaker` from `threads` threads with a random mix of calls
    /// and verdicts, then checks that the reported transitions form one
    /// chain from closed to the final state: every change was reported
    /// exactly once and none was impossible.
    pub(in crate::circuit) fn transitions_form_a_chain(breaker: &Arc<dyn Breaker>, threads: usize, ops: usize) {
        let barrier = Arc::new(Barrier::new(threads));
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (breaker, barrier) = (Arc::clone(breaker), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    // xorshift: a different, reproducible mix per thread.
                    let mut x = 0x9E37_79B9_7F4A_7C15_u64 ^ (t as u64 + 1);
                    barrier.wait();
                    for _ in 0..ops {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let d = breaker.allow();
                        seen.extend(d.transition);
                        match d.state {
                            State::Closed => assert!(d.allowed && d.reason.is_empty()),
                            State::Open => assert!(!d.allowed && d.reason == reason::CIRCUIT_OPEN),
                            State::HalfOpen => {
                                assert!(d.allowed || d.reason == reason::HALF_OPEN_PROBE_LIMIT);
                            }
                        }
                        if !d.allowed {
                            continue;
                        }
                        match x % 8 {
                            0..=3 => seen.extend(breaker.record_failure()),
                            4..=6 => seen.extend(breaker.record_success()),
                            _ => breaker.release_probe(),
                        }
                    }
                    seen
                })
            })
            .collect();
        let transitions: Vec<Transition> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        assert!(!transitions.is_empty(), "the mix opens and closes the circuit");
        // Every change is between two different states, along an edge of the
        // machine.
        for t in &transitions {
            assert!(
                matches!(
                    (t.from, t.to),
                    (State::Closed, State::Open)
                        | (State::Open, State::HalfOpen)
                        | (State::HalfOpen, State::Closed | State::Open)
                ),
                "impossible transition {t}"
            );
        }
        // Out-degree minus in-degree is +1 at the start (closed), -1 at the
        // end and 0 elsewhere (all 0 when it ended closed): one unbroken
        // history, every change reported once.
        let mut balance: HashMap<State, i64> = HashMap::new();
        for t in &transitions {
            *balance.entry(t.from).or_default() += 1;
            *balance.entry(t.to).or_default() -= 1;
        }
        let ends: Vec<State> = balance.iter().filter(|&(_, &b)| b == -1).map(|(&s, _)| s).collect();
        let end = match ends.as_slice() {
            [] => State::Closed,
            [end] => *end,
            _ => panic!("a broken history: {balance:?}"),
        };
        for state in [State::Closed, State::Open, State::HalfOpen] {
            let expected = i64::from(state == State::Closed && end != State::Closed)
                - i64::from(state == end && end != State::Closed);
            assert_eq!(balance.get(&state).copied().unwrap_or(0), expected, "{state}: {balance:?}");
        }
        // The breaker is where its history ends (an open circuit may already
        // read half-open once it has cooled down).
        let now = breaker.state();
        assert!(now == end || (end == State::Open && now == State::HalfOpen), "ended {end}, reads {now}");
    }
}

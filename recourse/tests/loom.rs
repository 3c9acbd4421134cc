//! Model checks of the lock-free parts with loom: the sharded token bucket,
//! the latency tracker, the breaker's single-word state machine and the
//! budget release guard. Each model runs two or three threads of a few
//! operations, and loom runs it once for every interleaving of their atomic
//! accesses (and every value a relaxed load may read), up to
//! `LOOM_MAX_PREEMPTIONS` preemptions per execution (2 unless set). Loom's
//! memory model is its own: `SeqCst` accesses are taken as `AcqRel` (weaker:
//! it may raise a false alarm, never hide a `SeqCst` bug) and load
//! buffering is not explored. Most models also assert that the outcomes
//! only their races produce were reached, so a model that stopped exploring
//! them fails.
//!
//! Built only under `--cfg loom` (see `.ci/loom`, which bounds the time):
//!
//! ```text
//! RUSTFLAGS="--cfg loom" cargo test -p recourse --test loom --release -- --nocapture
//! ```
//!
//! Under loom the bucket has two shards, a thread starts on shard 0 until
//! it pins itself elsewhere, and the clock stands still unless the model's
//! own thread advances it between phases.
#![cfg(loom)]

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use loom::sync::atomic::Ordering::SeqCst;
use loom::sync::atomic::{AtomicBool, AtomicUsize};
use loom::sync::{Arc, Mutex};
use loom::thread;

use recourse::budget::{Decision, Release, TokenBucket};
use recourse::circuit::{Breaker, ConsecutiveFailures, State, Transition, reason};
use recourse::hedge::LatencyTracker;
use recourse::sync::advance_clock;

/// Runs `body` under loom and prints how many executions it explored and
/// how long that took.
fn model(name: &str, body: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = builder.preemption_bound.or(Some(2));
    // The tracker's snapshot walks up to 624 counters: more accesses in one
    // execution than loom's default allows.
    builder.max_branches = builder.max_branches.max(10_000);
    let executions = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&executions);
    let started = std::time::Instant::now();
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        body();
    });
    println!(
        "loom {name}: {} executions in {:.2?} (preemption bound {})",
        executions.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed(),
        builder.preemption_bound.map_or_else(|| "none".to_owned(), |bound| bound.to_string()),
    );
}

/// The distinct ends a model's executions reached, by label: a model
/// asserts that its interesting races were explored (the outcomes they
/// alone produce were seen), not only that nothing failed.
#[derive(Clone, Default)]
struct Seen(std::sync::Arc<std::sync::Mutex<BTreeSet<String>>>);

impl Seen {
    fn note(&self, label: impl Into<String>) {
        self.0.lock().unwrap().insert(label.into());
    }

    fn assert_saw(&self, expected: &[&str]) {
        let seen = self.0.lock().unwrap();
        for label in expected {
            assert!(seen.contains(*label), "no execution ended with {label:?}; seen: {seen:?}");
        }
    }
}

// ---------------------------------------------------------------- bucket

/// Units per token (the bucket's fixed point).
const TOKEN: u64 = 1 << 20;

/// A take of `cost` from shard `shard`.
fn take_on(bucket: &TokenBucket, shard: usize, cost: u64) -> bool {
    TokenBucket::pin_thread_to_shard(shard);
    bucket.try_take(cost)
}

/// An 8-token bucket (two shards, a batch of one token) after `takes` takes
/// of 1 on the given shards, made on the model's thread.
fn shaped(refill_per_sec: f64, takes: &[usize]) -> Arc<TokenBucket> {
    let bucket = TokenBucket::new(8, refill_per_sec);
    for &shard in takes {
        assert!(take_on(&bucket, shard, 1));
    }
    Arc::new(bucket)
}

/// Which of a model's two taking threads have begun.
type Begun = Arc<[AtomicBool; 2]>;

/// One take's result: its cost, whether it was admitted, and whether it ran
/// alone (the other thread had not begun when it returned).
type Outcome = (u64, bool, bool);

/// Thread `me` (0 or 1) of two, taking `costs` in turn on `shard`. It marks
/// itself begun before its first take and, after each, reads whether the
/// other has begun: if not, the take saw none of the other's writes (they
/// all come after its mark), so it ran on the state the model left.
fn taker(
    bucket: &Arc<TokenBucket>,
    begun: &Begun,
    me: usize,
    shard: usize,
    costs: &'static [u64],
) -> thread::JoinHandle<Vec<Outcome>> {
    let (bucket, begun) = (Arc::clone(bucket), Arc::clone(begun));
    thread::spawn(move || {
        begun[me].store(true, SeqCst);
        costs
            .iter()
            .map(|&cost| {
                let admitted = take_on(&bucket, shard, cost);
                (cost, admitted, !begun[1 - me].load(SeqCst))
            })
            .collect()
    })
}

/// Two takers, `a` on shard 0 and `b` on `b_shard`; their outcomes.
fn race(bucket: &Arc<TokenBucket>, a: &'static [u64], b_shard: usize, b: &'static [u64]) -> [Vec<Outcome>; 2] {
    let begun: Begun = Arc::new([AtomicBool::new(false), AtomicBool::new(false)]);
    let a = taker(bucket, &begun, 0, 0, a);
    let b = taker(bucket, &begun, 1, b_shard, b);
    [a.join().unwrap(), b.join().unwrap()]
}

/// With no refill the tokens only go down, so a refusal is exact when the
/// tokens left at the end are fewer than its cost (it linearises at a
/// moment with fewer than that); a take that ran alone is refused only if
/// the `held` tokens the model left, less the thread's own earlier takes,
/// are fewer than its cost; and none is lost or made: what was admitted
/// plus what is left is what there was.
fn check_exact(held: u64, bucket: &TokenBucket, threads: &[Vec<Outcome>]) {
    let left = bucket.available();
    assert_eq!(bucket.held_units(), left * TOKEN, "whole tokens only, none in flight");
    let mut admitted = 0;
    for outcomes in threads {
        let mut own = 0;
        for &(cost, ok, alone) in outcomes {
            assert!(ok || left < cost, "a take of {cost} refused while {left} were still left: {threads:?}");
            assert!(
                ok || !alone || held - own < cost,
                "a take of {cost} refused, alone, with {} held: {threads:?}",
                held - own
            );
            own += if ok { cost } else { 0 };
        }
        admitted += own;
    }
    assert_eq!(admitted + left, held, "admitted {admitted} + left {left}: {threads:?}");
}

/// Two tokens, one in each shard and none central: a take of 2 (must gather)
/// races a take of 1 on the other shard. One of them gets the tokens, and
/// the other is refused only once too few are left anywhere.
#[test]
fn bucket_refuses_only_when_every_shard_is_short() {
    let outcomes_seen = Seen::default();
    let seen = outcomes_seen.clone();
    model("bucket_refuses_only_when_every_shard_is_short", move || {
        // central 0, shard 0: 1, shard 1: 1.
        let bucket = shaped(0.0, &[0, 1, 0, 0, 0, 0]);
        assert_eq!(bucket.held_units(), 2 * TOKEN);
        let outcomes = race(&bucket, &[2], 1, &[1]);
        check_exact(2, &bucket, &outcomes);
        seen.note(if outcomes[0][0].1 { "the take of 2 won" } else { "the take of 1 won" });
    });
    outcomes_seen.assert_saw(&["the take of 2 won", "the take of 1 won"]);
}

/// Four tokens scattered over the central counter and both shards, and
/// exactly four asked for: a take of 3 (which must gather every shard)
/// races a take of 1. Both are admitted, whatever the interleaving.
#[test]
fn bucket_admits_every_take_its_tokens_cover() {
    model("bucket_admits_every_take_its_tokens_cover", || {
        // central 2, shard 0: 1, shard 1: 1.
        let bucket = shaped(0.0, &[0, 1, 0, 0]);
        assert_eq!(bucket.held_units(), 4 * TOKEN);
        let outcomes = race(&bucket, &[3], 1, &[1]);
        assert!(outcomes.iter().flatten().all(|(_, ok, _)| *ok), "{outcomes:?}");
        check_exact(4, &bucket, &outcomes);
    });
}

/// Two threads on one shard that holds one token, the other shard holding
/// the second: each take of 1 is admitted (one steals the other shard's).
#[test]
fn bucket_steals_from_an_idle_shard() {
    model("bucket_steals_from_an_idle_shard", || {
        let bucket = shaped(0.0, &[0, 1, 0, 0, 0, 0]);
        let outcomes = race(&bucket, &[1], 0, &[1]);
        assert!(outcomes.iter().flatten().all(|(_, ok, _)| *ok), "{outcomes:?}");
        check_exact(2, &bucket, &outcomes);
    });
}

/// Two takes of 2 with one token in each shard: both must gather the other
/// shard's token, and the gathers race. Exactly one is admitted.
#[test]
fn bucket_racing_gathers_admit_one() {
    let outcomes_seen = Seen::default();
    let seen = outcomes_seen.clone();
    model("bucket_racing_gathers_admit_one", move || {
        let bucket = shaped(0.0, &[0, 1, 0, 0, 0, 0]);
        let outcomes = race(&bucket, &[2], 1, &[2]);
        assert_eq!(outcomes.iter().flatten().filter(|(_, ok, _)| *ok).count(), 1, "{outcomes:?}");
        check_exact(2, &bucket, &outcomes);
        seen.note(if outcomes[0][0].1 { "shard 0's take won" } else { "shard 1's take won" });
    });
    outcomes_seen.assert_saw(&["shard 0's take won", "shard 1's take won"]);
}

/// Four tokens (two central, one per shard) and three takes of 1 on each
/// shard: batches move into the shards, shards are stolen from, and the
/// last takes are refused. Exactly four are admitted, and each refusal
/// comes once nothing is left.
#[test]
fn bucket_drains_exactly() {
    model("bucket_drains_exactly", || {
        let bucket = shaped(0.0, &[0, 1, 0, 0]);
        let outcomes = race(&bucket, &[1, 1, 1], 1, &[1, 1, 1]);
        check_exact(4, &bucket, &outcomes);
        assert_eq!(bucket.available(), 0);
    });
}

/// The cap under refill. Six tokens held (one cached in each shard), then
/// the clock jumps far enough to refill far past the capacity, and two
/// threads take (gathering, moving batches into shards) while one of them
/// applies the refill. The refill must count the cached tokens: at the end
/// the bucket holds at most its capacity, and what it holds plus what was
/// taken after the refill landed is at most the capacity too.
#[test]
fn bucket_refill_never_exceeds_capacity() {
    model("bucket_refill_never_exceeds_capacity", || {
        // 1e9 tokens/s: the 1 ms jump credits far more than 8.
        let bucket = shaped(1e9, &[0, 1]);
        assert_eq!(bucket.held_units(), 6 * TOKEN);
        advance_clock(Duration::from_millis(1));
        let spawn = |shard: usize, costs: &'static [u64]| {
            let bucket = Arc::clone(&bucket);
            thread::spawn(move || {
                // (admitted, of which after a refill had certainly landed)
                let (mut admitted, mut after) = (0, 0);
                for &cost in costs {
                    let refilled = bucket.refill_applied();
                    if take_on(&bucket, shard, cost) {
                        admitted += cost;
                        after += if refilled { cost } else { 0 };
                    }
                }
                (admitted, after)
            })
        };
        let a = spawn(0, &[2]);
        let b = spawn(1, &[1, 1]);
        let (admitted, after) =
            [a, b].into_iter().map(|t| t.join().unwrap()).fold((0, 0), |s, t| (s.0 + t.0, s.1 + t.1));
        let held = bucket.held_units();
        assert!(held <= 8 * TOKEN, "holds {held} units, above the capacity");
        assert!(held + after * TOKEN <= 8 * TOKEN, "holds {held} units after {after} tokens taken since the refill");
        assert!(admitted == 4, "the refill covers every take: admitted {admitted}");
        assert!(bucket.refill_applied(), "the jump was credited");
        assert_eq!(bucket.available() * TOKEN, held, "whole tokens, and no second refill on a still clock");
    });
}

/// A refill adds exactly its credit, however the takes and batch moves
/// interleave with it: six tokens held, a credit of one token (well under
/// the room left), and two threads taking four tokens between them, one of
/// them applying the refill. Afterwards what was taken plus what is left is
/// exactly six plus one: no token made or lost around the refill's swap.
#[test]
fn bucket_refill_adds_exactly_its_credit() {
    model("bucket_refill_adds_exactly_its_credit", || {
        // 2^-20 tokens per nanosecond, exactly: one token per 2^20 ns.
        let bucket = shaped(1e9 / f64::from(1_u32 << 20), &[0, 1]);
        advance_clock(Duration::from_nanos(TOKEN));
        let outcomes = race(&bucket, &[2], 1, &[1, 1]);
        assert!(outcomes.iter().flatten().all(|(_, ok, _)| *ok), "{outcomes:?}");
        let admitted: u64 = outcomes.iter().flatten().map(|(cost, _, _)| cost).sum();
        // (`available` applies the refill if no take did: the clock has not
        // moved since, so it is the same credit.)
        let left = bucket.available();
        assert_eq!(bucket.held_units(), left * TOKEN);
        assert_eq!(admitted + left, 6 + 1, "{outcomes:?}");
    });
}

// --------------------------------------------------------------- tracker

/// Nanosecond samples below 32 ns have a bucket each, so percentiles are
/// exact and every reported value is one of the samples.
fn ns(nanos: u64) -> Duration {
    Duration::from_nanos(nanos)
}

/// Two threads record into a full window of 2 (each evicting one of the
/// model's samples) while the model's thread takes a snapshot: the
/// snapshot never panics, is ordered and reports only recorded values (or
/// nothing, mid-replacement); once the threads are done the ring holds
/// exactly their two samples and the histogram counts exactly the ring.
#[test]
fn tracker_records_and_snapshots_concurrently() {
    let snapshots = Seen::default();
    let seen = snapshots.clone();
    model("tracker_records_and_snapshots_concurrently", move || {
        let tracker = Arc::new(LatencyTracker::new(2));
        tracker.record(ns(3));
        tracker.record(ns(4));
        let recorders: Vec<_> = [ns(9), ns(7)]
            .into_iter()
            .map(|sample| {
                let tracker = Arc::clone(&tracker);
                thread::spawn(move || tracker.record(sample))
            })
            .collect();
        let s = tracker.snapshot();
        assert!(s.samples <= 2);
        let values = [s.p50, s.p90, s.p95, s.p99];
        assert!(values.is_sorted(), "{s:?}");
        assert!(
            values.iter().all(|v| [ns(3), ns(4), ns(7), ns(9)].contains(v)) || values.iter().all(Duration::is_zero),
            "{s:?}"
        );
        seen.note(format!("{} samples: {:?}", s.samples, values.map(|v| v.as_nanos())));
        for recorder in recorders {
            recorder.join().unwrap();
        }
        let (ring, matches) = tracker.ring_at_rest();
        assert_eq!(ring, [7, 9], "the two newest samples, nothing lost");
        assert!(matches, "the histogram counts the ring");
        let s = tracker.snapshot();
        assert_eq!((s.samples, s.p50, s.p99), (2, ns(7), ns(7)), "{s:?}");
        assert_eq!(tracker.recorded(), 4);
    });
    // Mixes of the two windows, and (relaxed loads seeing the evictions but
    // not yet the new samples) a walk that met no counted sample at all.
    snapshots.assert_saw(&["2 samples: [9, 9, 9, 9]", "2 samples: [0, 0, 0, 0]"]);
}

/// Three samples into a window of one: every claim lands on the same slot,
/// so the swaps race (and one may evict a sample whose own recorder has
/// not counted it in yet). At rest the ring holds one of them and the
/// histogram counts exactly it: nothing is corrupted, no count is left
/// behind.
#[test]
fn tracker_same_slot_races_leave_the_histogram_exact() {
    let rings = Seen::default();
    let seen = rings.clone();
    model("tracker_same_slot_races_leave_the_histogram_exact", move || {
        let tracker = Arc::new(LatencyTracker::new(1));
        let recorders: Vec<_> = [ns(5), ns(6)]
            .into_iter()
            .map(|sample| {
                let tracker = Arc::clone(&tracker);
                thread::spawn(move || {
                    tracker.record(sample);
                    let s = tracker.snapshot();
                    assert!([ns(0), ns(5), ns(6), ns(8)].contains(&s.p50), "{s:?}");
                })
            })
            .collect();
        tracker.record(ns(8));
        for recorder in recorders {
            recorder.join().unwrap();
        }
        let (ring, matches) = tracker.ring_at_rest();
        assert!(matches!(ring.as_slice(), [5 | 6 | 8]), "{ring:?}");
        assert!(matches, "the histogram counts the ring: {ring:?}");
        let s = tracker.snapshot();
        assert_eq!((s.samples, s.p50), (1, ns(ring[0])));
        seen.note(format!("{ring:?}"));
    });
    rings.assert_saw(&["[5]", "[6]", "[8]"]);
}

/// The limit the tracker documents: the ring keeps the samples whose swaps
/// landed last, not always the newest claims. Two samples into a window of
/// one; a recorder that reads one sample already claimed before recording
/// knows it claims the second (the newer). In some interleaving the first
/// claimer swaps last and its older sample stays, and the histogram still
/// counts exactly the ring.
#[test]
fn tracker_a_late_swap_keeps_the_older_sample() {
    let ends = Seen::default();
    let seen = ends.clone();
    model("tracker_a_late_swap_keeps_the_older_sample", move || {
        let tracker = Arc::new(LatencyTracker::new(1));
        let recorders: Vec<_> = [5, 6]
            .into_iter()
            .map(|sample| {
                let tracker = Arc::clone(&tracker);
                thread::spawn(move || {
                    let newer = tracker.recorded() == 1;
                    tracker.record(ns(sample));
                    newer.then_some(sample)
                })
            })
            .collect();
        let newer: Vec<u64> = recorders.into_iter().filter_map(|r| r.join().unwrap()).collect();
        let (ring, matches) = tracker.ring_at_rest();
        assert!(matches, "the histogram counts the ring: {ring:?}");
        if let [newer] = newer[..] {
            seen.note(if ring == [newer] { "the newer sample kept" } else { "the older sample kept" });
        }
    });
    ends.assert_saw(&["the newer sample kept", "the older sample kept"]);
}

// --------------------------------------------------------------- breaker

/// Checks that `transitions` are edges of the machine forming one unbroken
/// history from closed to `now` (every change reported exactly once).
fn assert_one_history(transitions: &[Transition], now: State) {
    for t in transitions {
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
    let mut balance: HashMap<State, i64> = HashMap::new();
    for t in transitions {
        *balance.entry(t.from).or_default() += 1;
        *balance.entry(t.to).or_default() -= 1;
    }
    for state in [State::Closed, State::Open, State::HalfOpen] {
        let expected = i64::from(state == State::Closed) - i64::from(state == now);
        assert_eq!(balance.get(&state).copied().unwrap_or(0), expected, "{state}: {transitions:?}, now {now}");
    }
}

const COOLDOWN: Duration = Duration::from_secs(1);

/// A breaker that has opened (threshold 1) and whose cooldown has passed.
fn cooled_breaker() -> (Arc<ConsecutiveFailures>, Vec<Transition>) {
    let breaker = Arc::new(ConsecutiveFailures::new(1, COOLDOWN));
    let opened = breaker.record_failure().expect("opens");
    advance_clock(COOLDOWN);
    (breaker, vec![opened])
}

/// Three callers race for the probe of a cooled-down circuit: exactly one
/// is admitted, and the open → half-open change is reported exactly once.
#[test]
fn breaker_admits_one_probe() {
    model("breaker_admits_one_probe", || {
        let (breaker, _) = cooled_breaker();
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let breaker = Arc::clone(&breaker);
                thread::spawn(move || breaker.allow())
            })
            .collect();
        let decisions: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        assert_eq!(decisions.iter().filter(|d| d.allowed).count(), 1, "{decisions:?}");
        assert_eq!(decisions.iter().filter(|d| d.transition.is_some()).count(), 1, "{decisions:?}");
        for d in decisions.iter().filter(|d| !d.allowed) {
            assert_eq!((d.state, d.reason), (State::HalfOpen, reason::HALF_OPEN_PROBE_LIMIT));
        }
    });
}

/// Three failures against a threshold of two: the second and the third
/// both cross it, at once. The circuit opens once, and exactly one of them
/// reports it.
#[test]
fn breaker_opens_once() {
    model("breaker_opens_once", || {
        let breaker = Arc::new(ConsecutiveFailures::new(2, COOLDOWN));
        let failures: Vec<_> = (0..3)
            .map(|_| {
                let breaker = Arc::clone(&breaker);
                thread::spawn(move || breaker.record_failure())
            })
            .collect();
        let transitions: Vec<_> = failures.into_iter().filter_map(|f| f.join().unwrap()).collect();
        assert_eq!(transitions, [Transition::new(State::Closed, State::Open)]);
        assert_eq!(breaker.state(), State::Open);
    });
}

/// Calls racing on a cooled-down circuit, each reporting one verdict as the
/// contract says: a probe that succeeds, one that ends without a verdict
/// (hands the slot back), and a late verdict of a call admitted while the
/// circuit was closed (`late_success` picks which). At most one probe is
/// out at any time; the reported changes form one history; and the breaker
/// is never left half-open with the probe slot taken and no probe out (it
/// admits the next call, or is open and admits one after its cooldown).
fn breaker_never_wedges(late_success: bool, seen: &Seen) {
    let (breaker, opened) = cooled_breaker();
    let probes_out = Arc::new(AtomicUsize::new(0));
    let caller = |hand_back: bool| {
        let (breaker, probes_out) = (Arc::clone(&breaker), Arc::clone(&probes_out));
        thread::spawn(move || {
            let d = breaker.allow();
            let mut seen: Vec<Transition> = d.transition.into_iter().collect();
            if !d.allowed {
                return seen;
            }
            let probe = d.state == State::HalfOpen;
            if probe {
                assert_eq!(probes_out.fetch_add(1, SeqCst), 0, "two probes out at once");
                probes_out.fetch_sub(1, SeqCst);
            }
            if hand_back {
                breaker.release_probe();
            } else {
                seen.extend(breaker.record_success());
            }
            seen
        })
    };
    let late = {
        let breaker = Arc::clone(&breaker);
        thread::spawn(move || if late_success { breaker.record_success() } else { breaker.record_failure() })
    };
    let probe = caller(false);
    let abandoned = caller(true);
    let mut transitions = opened;
    transitions.extend(late.join().unwrap());
    transitions.extend(probe.join().unwrap());
    transitions.extend(abandoned.join().unwrap());
    let now = breaker.state();
    assert_one_history(&transitions, now);
    seen.note(format!("{now} after {} changes", transitions.len()));
    let next = breaker.allow();
    match now {
        State::Closed | State::HalfOpen => assert!(next.allowed, "wedged {now}: {next:?}, {transitions:?}"),
        State::Open => {
            assert_eq!(next.reason, reason::CIRCUIT_OPEN);
            advance_clock(COOLDOWN);
            assert!(breaker.allow().allowed, "open for good: {transitions:?}");
        }
    }
}

#[test]
fn breaker_never_wedges_with_a_late_failure() {
    let ends = Seen::default();
    let seen = ends.clone();
    model("breaker_never_wedges_with_a_late_failure", move || breaker_never_wedges(false, &seen));
    ends.assert_saw(&[
        // The late failure found the circuit open (ignored), the probe closed it.
        "closed after 3 changes",
        // The probe was handed back and the other caller had been refused.
        "half-open after 2 changes",
        // The late failure ended the half-open state, or reopened the closed one.
        "open after 3 changes",
        "open after 4 changes",
    ]);
}

#[test]
fn breaker_never_wedges_with_a_late_success() {
    let ends = Seen::default();
    let seen = ends.clone();
    model("breaker_never_wedges_with_a_late_success", move || breaker_never_wedges(true, &seen));
    ends.assert_saw(&["closed after 3 changes", "half-open after 2 changes"]);
}

// --------------------------------------------------------------- release

/// A release that counts its runs in `runs`.
fn counting_release(runs: &Arc<AtomicUsize>) -> Release {
    let runs = Arc::clone(runs);
    Decision::allow_with_release(move || {
        runs.fetch_add(1, SeqCst);
    })
    .into_release()
}

/// One grant's release, shared the way an attempt's plan is (it may be run
/// where the attempt ends, or dropped where the call is cancelled): one
/// thread runs it in place, twice; another takes it out and drops it; the
/// last owner drops whatever is left. The callback runs exactly once.
#[test]
fn release_runs_exactly_once() {
    model("release_runs_exactly_once", || {
        let runs = Arc::new(AtomicUsize::new(0));
        let plan = Arc::new(Mutex::new(Some(counting_release(&runs))));
        let finisher = {
            let plan = Arc::clone(&plan);
            thread::spawn(move || {
                if let Some(release) = plan.lock().unwrap().as_mut() {
                    release.run();
                    release.run();
                    assert!(!release.is_pending());
                }
            })
        };
        let canceller = {
            let plan = Arc::clone(&plan);
            thread::spawn(move || drop(plan.lock().unwrap().take()))
        };
        finisher.join().unwrap();
        canceller.join().unwrap();
        drop(plan);
        assert_eq!(runs.load(SeqCst), 1);
    });
}

/// A hedged group's two grants on one counting budget: the winner's
/// release runs when it finishes, the loser's when it is dropped on another
/// thread, racing. Each runs once: the budget ends balanced.
#[test]
fn releases_of_racing_attempts_balance() {
    model("releases_of_racing_attempts_balance", || {
        let outstanding = Arc::new(AtomicUsize::new(0));
        let grant = || {
            outstanding.fetch_add(1, SeqCst);
            let outstanding = Arc::clone(&outstanding);
            Decision::allow_with_release(move || {
                let before = outstanding.fetch_sub(1, SeqCst);
                assert!(before > 0, "released more than granted");
            })
            .into_release()
        };
        let (mut winner, loser) = (grant(), grant());
        let winner = thread::spawn(move || winner.run());
        let loser = thread::spawn(move || drop(loser));
        winner.join().unwrap();
        loser.join().unwrap();
        assert_eq!(outstanding.load(SeqCst), 0);
    });
}

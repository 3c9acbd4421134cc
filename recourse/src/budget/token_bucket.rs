//! A lock-free token bucket with per-thread token caches.
//!
//! # How the tokens are kept
//!
//! The bucket's tokens live in a central counter and in a few shards, each
//! on its own cache line. A thread takes from its shard (one uncontended
//! read-modify-write, no clock read); when the shard is short it takes
//! `need + batch` from the central counter in one compare-and-swap and keeps
//! the batch in its shard, so the central line and the clock (refill) are
//! touched once per batch rather than once per take.
//!
//! Two guarantees make this indistinguishable from one counter:
//!
//! * **No token is stranded.** A take that finds its shard and the central
//!   counter short takes from any other shard (a thread that cached a batch
//!   and went idle loses nothing), and when the tokens are there in total
//!   but scattered (cost above one shard's share), it gathers every shard
//!   into the central counter and tries again. It is refused only on a
//!   *still view*: a read of every shard and the central counter during
//!   which no move between them was in progress or began (the `moves`
//!   word), so the refused take linearises at the central read, when fewer
//!   than `need` units were held anywhere.
//! * **The cap holds.** A refill adds to the central counter at most
//!   `capacity - Σ shards`, with the shards read on a still view and the
//!   central counter swapped from the value read on that view, and refills
//!   are one at a time (the `REFILLING` bit of `last`). Whatever moves after
//!   the view moves tokens out of the central counter into a shard or back,
//!   so if the central counter still reads the same at the swap, the shards
//!   hold no more than on the view: central + Σ shards ≤ capacity.
//!
//! Every token operation is `SeqCst`: the still view is an argument about
//! one order of operations across the shards, the central counter and
//! `moves`. On x86 that costs nothing over `AcqRel` for read-modify-writes
//! and plain loads; the common path is one of each.

use std::cell::Cell;
use std::fmt;
#[cfg(not(loom))]
use std::num::NonZero;
#[cfg(not(loom))]
use std::sync::OnceLock;
use std::sync::atomic::AtomicUsize;

use super::{AttemptKind, Budget, Decision};
use crate::policy::{BudgetRef, PolicyKey};
use crate::sync::{AtomicU64, Instant, Ordering, spin_loop, yield_now};

/// Fixed-point scale: one token is 2^20 units, so fractional refills
/// accumulate exactly enough (a refill of 1 token/s adds a unit every
/// microsecond).
const SCALE: u64 = 1 << 20;

/// The shortest interval between two refills.
const MIN_REFILL_NANOS: u64 = 1_000;

/// At most this many shards: beyond it a steal or a still view reads more
/// lines than the central trips it saves.
const MAX_SHARDS: usize = 16;

/// At most this many tokens cached per central trip, so an idle thread sits
/// on little and a busy one visits the central line once per 64 takes.
const MAX_BATCH: u64 = 64;

/// Set in `last` while a refill is being applied: refills are one at a time,
/// which the cap argument needs (see the module docs).
const REFILLING: u64 = 1 << 63;

/// `moves` holds the number of moves in progress in its low half and the
/// number of moves ever begun in its high half (wrapping).
const MOVE_BEGUN: u64 = 1 << 32;
const MOVES_IN_PROGRESS: u64 = MOVE_BEGUN - 1;

/// How often a refill retries for a still view before handing its interval
/// back (the next central trip claims it again, so no credit is lost).
const REFILL_ATTEMPTS: u32 = 8;

/// `capacity` tokens, refilled continuously at `refill_per_sec`; each
/// attempt takes its budget reference's `cost` (at least 1).
///
/// Starts full. Scales across threads: each thread takes from its own shard
/// of cached tokens (one uncontended atomic update, no clock read) and goes
/// to the central counter, which the refill feeds, once per batch of up to
/// 64 tokens (smaller for small buckets; buckets under a few tokens per
/// shard cache nothing). It is still exact: a take is refused only when
/// fewer than `cost` tokens are held in the central counter and every shard
/// together (a thread's cached tokens are taken by others when it goes
/// idle), and the bucket never holds more than `capacity`, so under
/// contention it admits exactly what its tokens allow (with no refill,
/// exactly `capacity` attempts in all). Takes no lock; a refusal may wait
/// out a move of tokens between the central counter and a shard that is in
/// progress at that instant (a few instructions). Time is tokio's, so
/// `tokio::time::pause()` and `advance()` drive the refill in tests. A
/// bucket is shared by every key and kind that names it.
///
/// ```
/// use recourse::budget::{AttemptKind, Budget, TokenBucket};
/// use recourse::policy::BudgetRef;
///
/// let bucket = TokenBucket::new(2, 0.0);
/// let key = "svc.Op".into();
/// let one = BudgetRef::named("b");
/// assert!(bucket.allow_attempt(&key, 0, AttemptKind::Retry, &one).allowed());
/// assert!(bucket.allow_attempt(&key, 1, AttemptKind::Retry, &one).allowed());
/// assert!(!bucket.allow_attempt(&key, 2, AttemptKind::Retry, &one).allowed());
/// ```
pub struct TokenBucket {
    capacity: u64,
    /// Units added per nanosecond (0 when there is no refill).
    units_per_nano: f64,
    /// Units a central trip moves into the shard beyond what it takes.
    batch: u64,
    origin: Instant,
    central: Central,
    /// A power of two in number, so a thread's slot masks into it.
    shards: Box<[Shard]>,
}

/// The shared state, on its own line: written once per batch, not per take.
#[repr(align(128))]
struct Central {
    tokens: AtomicU64,
    /// Nanoseconds since `origin` at the last refill, plus `REFILLING`.
    last: AtomicU64,
    moves: AtomicU64,
}

/// One thread's (or a few threads') cached tokens, alone on a line (128
/// bytes: adjacent-line prefetch pairs 64-byte lines).
#[derive(Default)]
#[repr(align(128))]
struct Shard {
    tokens: AtomicU64,
}

impl Shard {
    #[inline]
    fn take(&self, need: u64) -> bool {
        self.tokens.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |tokens| tokens.checked_sub(need)).is_ok()
    }
}

#[cfg(not(loom))]
thread_local! {
    /// This thread's shard slot (`usize::MAX` until its first take).
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

// Under loom every thread starts on shard 0 and a model moves it with
// `TokenBucket::pin_thread_to_shard`: the round-robin below counts across
// executions, which would make them differ.
#[cfg(loom)]
loom::thread_local! {
    static SLOT: Cell<usize> = Cell::new(0);
}

/// Hands out slots round-robin, so threads that start together land on
/// different shards.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

#[inline]
fn thread_slot() -> usize {
    SLOT.with(|slot| {
        let mut index = slot.get();
        if index == usize::MAX {
            // Every shard count divides `MAX_SHARDS`, so the remainder keeps
            // the round-robin and stays clear of the sentinel.
            index = NEXT_SLOT.fetch_add(1, Ordering::Relaxed) % MAX_SHARDS;
            slot.set(index);
        }
        index
    })
}

/// One shard per core (a power of two, at most `MAX_SHARDS`), decided once
/// per process: `available_parallelism` may read cgroup files.
#[cfg(not(loom))]
fn shard_count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        std::thread::available_parallelism().map_or(1, NonZero::get).next_power_of_two().min(MAX_SHARDS)
    })
}

/// Two shards under loom whatever the machine, so every model has steals,
/// gathers and still views across shards, and replays the same anywhere.
#[cfg(loom)]
fn shard_count() -> usize {
    2
}

/// Spins briefly, then yields: what a refusal does while a move is in
/// progress, so a preempted mover gets the core back.
fn back_off(round: &mut u32) {
    if *round < 6 {
        for _ in 0..1_u32 << *round {
            spin_loop();
        }
    } else {
        yield_now();
    }
    *round = round.saturating_add(1);
}

impl TokenBucket {
    /// A full bucket. A NaN, infinite or negative refill means no refill.
    ///
    /// ```
    /// use recourse::budget::TokenBucket;
    ///
    /// let bucket = TokenBucket::new(100, 50.0); // 100 tokens, refilled at 50/s
    /// assert_eq!(bucket.available(), 100);
    /// ```
    #[allow(clippy::cast_precision_loss, reason = "the scale is a power of two")]
    pub fn new(capacity: u64, refill_per_sec: f64) -> Self {
        let refill = if refill_per_sec.is_finite() && refill_per_sec > 0.0 { refill_per_sec } else { 0.0 };
        let capacity = capacity.min(u64::MAX / SCALE);
        let shards = shard_count();
        // One batch per shard adds up to a quarter of the bucket at most, so
        // cached tokens stay a minor share and a small bucket caches nothing
        // (it is then one counter, exactly as before the shards).
        let batch = (capacity / (4 * shards as u64)).min(MAX_BATCH) * SCALE;
        Self {
            capacity,
            units_per_nano: refill * SCALE as f64 / 1e9,
            batch,
            origin: Instant::now(),
            central: Central {
                tokens: AtomicU64::new(capacity * SCALE),
                last: AtomicU64::new(0),
                moves: AtomicU64::new(0),
            },
            shards: (0..shards).map(|_| Shard::default()).collect(),
        }
    }

    /// Under `--cfg loom` only: puts the calling thread on shard `index`
    /// (modulo the shard count, which is 2 there), so a model decides which
    /// threads share a shard.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn pin_thread_to_shard(index: usize) {
        SLOT.with(|slot| slot.set(index % MAX_SHARDS));
    }

    /// Under `--cfg loom` only: what the central counter and the shards
    /// hold, in units of 2^-20 token, summed without a still view (exact
    /// when no take is running).
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn held_units(&self) -> u64 {
        self.held()
    }

    /// Under `--cfg loom` only: whether a refill has been applied since the
    /// bucket was made (and none is being applied). A take that starts
    /// after this reads `true` comes after that refill.
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn refill_applied(&self) -> bool {
        let last = self.central.last.load(Ordering::SeqCst);
        last != 0 && last & REFILLING == 0
    }

    /// The capacity in tokens.
    ///
    /// ```
    /// use recourse::budget::TokenBucket;
    ///
    /// assert_eq!(TokenBucket::new(10, 1.0).capacity(), 10);
    /// ```
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whole tokens available now (after refilling), cached ones included.
    ///
    /// ```
    /// use recourse::budget::TokenBucket;
    ///
    /// let bucket = TokenBucket::new(10, 0.0);
    /// assert!(bucket.try_take(3));
    /// assert_eq!(bucket.available(), 7);
    /// ```
    pub fn available(&self) -> u64 {
        self.refill();
        let mut round = 0;
        loop {
            if let Some((central, cached)) = self.still_view() {
                return central.saturating_add(cached) / SCALE;
            }
            if round >= 12 {
                // Moves keep coming: any sum is as good as the moment it
                // was read, and this one may miss a batch in flight or
                // count a shard being gathered twice (read before its swap,
                // then again in the central counter), so it is capped.
                return (self.held() / SCALE).min(self.capacity);
            }
            back_off(&mut round);
        }
    }

    /// Takes `cost` tokens if there are that many.
    ///
    /// ```
    /// use recourse::budget::TokenBucket;
    ///
    /// let bucket = TokenBucket::new(5, 0.0);
    /// assert!(bucket.try_take(3));
    /// assert!(!bucket.try_take(3), "two left");
    /// assert!(bucket.try_take(2));
    /// ```
    #[inline]
    pub fn try_take(&self, cost: u64) -> bool {
        let need = cost.max(1).saturating_mul(SCALE);
        let shard = &self.shards[thread_slot() & (self.shards.len() - 1)];
        shard.take(need) || self.take_slow(need, shard)
    }

    /// The central trip: refill, then the central counter, then the other
    /// shards, and a refusal only on a still view.
    #[inline(never)]
    fn take_slow(&self, need: u64, own: &Shard) -> bool {
        if need > self.capacity * SCALE {
            // The bucket never holds that much (a zero bucket denies here).
            return false;
        }
        self.refill();
        if self.batch == 0 {
            // Nothing is ever cached: the central counter is the whole
            // bucket, and its refusal is exact.
            return self.take_central(need, own);
        }
        let mut round = 0;
        loop {
            if self.take_central(need, own) {
                return true;
            }
            let view = self.still_view();
            if let Some((central, cached)) = view
                && central.saturating_add(cached) < need
            {
                return false;
            }
            if self.shards.iter().any(|shard| shard.take(need)) {
                return true;
            }
            match view {
                // Enough in total, but no one place holds `need`.
                Some(_) => self.gather(),
                None => back_off(&mut round),
            }
        }
    }

    /// Takes `need` from the central counter and moves up to a batch of
    /// whole tokens beyond it into `own`.
    fn take_central(&self, need: u64, own: &Shard) -> bool {
        if self.batch == 0 {
            return self
                .central
                .tokens
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| t.checked_sub(need))
                .is_ok();
        }
        if self.central.tokens.load(Ordering::SeqCst) < need {
            // Nothing to move: no move mark either, so an empty bucket
            // hammered by several threads does not keep every refusal from
            // finding a still view.
            return false;
        }
        let mut moved = 0;
        // The batch is in flight between the two counters; the move mark
        // keeps a refusal or a refill from reading that as a loss.
        self.begin_move();
        let taken = self
            .central
            .tokens
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |tokens| {
                let spare = tokens.checked_sub(need)?;
                // Whole tokens only: the fraction a refill left stays central,
                // so a shard never holds part of a token.
                moved = need + self.batch.min(spare - spare % SCALE);
                Some(tokens - moved)
            })
            .is_ok();
        if taken && moved > need {
            own.tokens.fetch_add(moved - need, Ordering::SeqCst);
        }
        self.end_move();
        taken
    }

    /// Moves every shard's tokens into the central counter, where one take
    /// can use them all.
    fn gather(&self) {
        self.begin_move();
        for shard in &self.shards {
            let held = shard.tokens.swap(0, Ordering::SeqCst);
            if held > 0 {
                self.central.tokens.fetch_add(held, Ordering::SeqCst);
            }
        }
        self.end_move();
    }

    fn begin_move(&self) {
        self.central.moves.fetch_add(MOVE_BEGUN + 1, Ordering::SeqCst);
    }

    fn end_move(&self) {
        self.central.moves.fetch_sub(1, Ordering::SeqCst);
    }

    /// `(central, Σ shards)` in units, read with no move in progress or
    /// begun meanwhile, or `None`.
    ///
    /// Between the two reads of `moves` only takes (which lower a counter)
    /// and refills (which raise the central counter) change anything, so
    /// with the central counter read last the sum is at least what the
    /// bucket held at that read: less than `need` there means less than
    /// `need` anywhere at that instant.
    fn still_view(&self) -> Option<(u64, u64)> {
        let before = self.central.moves.load(Ordering::SeqCst);
        if before & MOVES_IN_PROGRESS != 0 {
            return None;
        }
        let cached = self.cached();
        let central = self.central.tokens.load(Ordering::SeqCst);
        (self.central.moves.load(Ordering::SeqCst) == before).then_some((central, cached))
    }

    fn cached(&self) -> u64 {
        self.shards.iter().fold(0, |sum: u64, shard| sum.saturating_add(shard.tokens.load(Ordering::SeqCst)))
    }

    /// Units held, summed without a still view.
    fn held(&self) -> u64 {
        self.cached().saturating_add(self.central.tokens.load(Ordering::SeqCst))
    }

    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "elapsed nanoseconds fit f64 well beyond a bucket's lifetime; the product is clamped before the cast"
    )]
    fn refill(&self) {
        if self.units_per_nano == 0.0 {
            return;
        }
        let last = self.central.last.load(Ordering::Acquire);
        if last & REFILLING != 0 {
            // Someone is applying a refill; its successor picks up the time.
            return;
        }
        let now = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX).min(REFILLING - 1);
        // Refill at most once per microsecond: the credit accumulates in
        // `now - last` meanwhile, so nothing is lost, and contended callers
        // rarely race on `last`.
        if now < last.saturating_add(MIN_REFILL_NANOS) {
            return;
        }
        let full = self.capacity * SCALE;
        let units = ((now - last) as f64 * self.units_per_nano).min(full as f64) as u64;
        if units == 0 {
            // Too little time for a unit: leave `last` so time accumulates.
            return;
        }
        // Whoever moves `last` owns the interval, and holds the refill
        // until it stores `now` back without the bit.
        if self.central.last.compare_exchange(last, now | REFILLING, Ordering::AcqRel, Ordering::Relaxed).is_err() {
            return;
        }
        for _ in 0..REFILL_ATTEMPTS {
            if let Some((central, cached)) = self.still_view() {
                let topped = central.saturating_add(units).min(full.saturating_sub(cached));
                // Swapping from the value of the still view is what bounds
                // the shards at the swap (module docs); a full bucket keeps
                // its tokens and forfeits the credit, as one counter would.
                if topped <= central
                    || self.central.tokens.compare_exchange(central, topped, Ordering::SeqCst, Ordering::SeqCst).is_ok()
                {
                    self.central.last.store(now, Ordering::Release);
                    return;
                }
            }
            spin_loop();
        }
        // No still moment (tokens keep moving, so takes are being served):
        // hand the interval back whole to the next central trip.
        self.central.last.store(last, Ordering::Release);
    }
}

impl fmt::Debug for TokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenBucket")
            .field("capacity", &self.capacity)
            .field("units_per_nano", &self.units_per_nano)
            .field("held_units", &self.held())
            .field("batch_units", &self.batch)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl Budget for TokenBucket {
    fn allow_attempt(&self, _: &PolicyKey, _: u32, _: AttemptKind, budget: &BudgetRef) -> Decision {
        // Copied from a constant, a decision is written with full-width
        // stores; built field by field, with narrow ones, which stall the
        // caller's wider reads of it right after the call.
        #[allow(clippy::declare_interior_mutable_const, reason = "copied out whole, never borrowed")]
        const ALLOW: Decision = Decision::allow();
        #[allow(clippy::declare_interior_mutable_const, reason = "copied out whole, never borrowed")]
        const DENY: Decision = Decision::deny();
        if self.try_take(u64::from(budget.cost)) { ALLOW } else { DENY }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    /// Puts the calling thread on shard `index` (modulo the shard count).
    fn pin_to_shard(index: usize) {
        SLOT.with(|slot| slot.set(index % MAX_SHARDS));
    }

    fn own_shard(bucket: &TokenBucket) -> u64 {
        bucket.shards[thread_slot() & (bucket.shards.len() - 1)].tokens.load(Ordering::SeqCst) / SCALE
    }

    /// Runs `threads` threads that each try `takes` takes of `cost`; returns
    /// how many were admitted.
    fn hammer(bucket: &Arc<TokenBucket>, threads: usize, takes: usize, cost: u64) -> usize {
        let barrier = Arc::new(Barrier::new(threads));
        let admitted = AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (bucket, barrier, admitted) = (Arc::clone(bucket), Arc::clone(&barrier), &admitted);
                scope.spawn(move || {
                    barrier.wait();
                    let mine = (0..takes).filter(|_| bucket.try_take(cost)).count();
                    admitted.fetch_add(mine, Ordering::SeqCst);
                });
            }
        });
        admitted.into_inner()
    }

    #[tokio::test(start_paused = true)]
    async fn refills_at_its_rate_up_to_capacity() {
        let bucket = TokenBucket::new(10, 100.0);
        for _ in 0..10 {
            assert!(bucket.try_take(1));
        }
        assert!(!bucket.try_take(1));
        tokio::time::advance(Duration::from_millis(25)).await;
        assert_eq!(bucket.available(), 2, "100/s for 25 ms");
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(bucket.available(), 10, "capped at capacity");
    }

    #[test]
    fn hostile_settings_mean_no_refill() {
        for refill in [f64::NAN, f64::INFINITY, -5.0] {
            let bucket = TokenBucket::new(1, refill);
            assert!(bucket.try_take(1));
            assert!(!bucket.try_take(1));
        }
        assert!(!TokenBucket::new(0, 1.0).try_take(1), "a zero bucket denies at once");
        assert!(!TokenBucket::new(3, 0.0).try_take(4), "cost above the balance leaves it untouched");
        assert_eq!(TokenBucket::new(3, 0.0).available(), 3);
        let huge = TokenBucket::new(u64::MAX, 0.0);
        assert!(huge.try_take(u64::MAX / SCALE));
        assert!(!huge.try_take(1), "capacity is clamped to what the units can hold");
    }

    #[test]
    fn an_idle_threads_cached_tokens_are_taken_by_others() {
        const CAPACITY: u64 = 1_000;
        let bucket = Arc::new(TokenBucket::new(CAPACITY, 0.0));
        assert!(bucket.batch > 0, "a bucket this size caches");
        let cached = {
            let bucket = Arc::clone(&bucket);
            std::thread::spawn(move || {
                pin_to_shard(0);
                assert!(bucket.try_take(1));
                own_shard(&bucket)
            })
            .join()
            .expect("the caching thread")
        };
        assert_eq!(cached, bucket.batch / SCALE, "the first take cached a batch, then the thread went idle");
        // Another thread (another shard, when there are two) takes the rest:
        // the idle thread's batch among it, to the last token.
        std::thread::spawn(move || {
            pin_to_shard(1);
            for taken in 1..CAPACITY {
                assert!(bucket.try_take(1), "take {taken} of {} while tokens remain", CAPACITY - 1);
            }
            assert!(!bucket.try_take(1));
            assert_eq!(bucket.available(), 0);
            assert_eq!(bucket.held(), 0, "nothing left in any shard");
        })
        .join()
        .expect("the draining thread");
    }

    #[test]
    fn scattered_tokens_are_gathered_for_a_large_cost() {
        let bucket = TokenBucket::new(1_000, 0.0);
        // Three tokens, one in each place (the central counter and the
        // shards in turn), none holding the three a take of 3 needs.
        bucket.central.tokens.store(0, Ordering::SeqCst);
        let places = bucket.shards.len() + 1;
        for token in 0..3 {
            let place = token % places;
            let counter = if place == 0 { &bucket.central.tokens } else { &bucket.shards[place - 1].tokens };
            counter.fetch_add(SCALE, Ordering::SeqCst);
        }
        assert!(!bucket.try_take(4), "three tokens are not four");
        assert_eq!(bucket.available(), 3, "a refusal loses nothing");
        assert!(bucket.try_take(3), "three tokens, wherever they are, admit a cost of 3");
        assert_eq!(bucket.available(), 0);
    }

    #[test]
    fn available_counts_every_shard_across_threads() {
        const CAPACITY: u64 = 5_000;
        let bucket = Arc::new(TokenBucket::new(CAPACITY, 0.0));
        let taken: u64 = (0..4_u64)
            .map(|worker| {
                let bucket = Arc::clone(&bucket);
                std::thread::spawn(move || {
                    let cost = worker + 1;
                    let takes = 50 + worker * 7;
                    for _ in 0..takes {
                        assert!(bucket.try_take(cost));
                    }
                    cost * takes
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|worker| worker.join().expect("worker"))
            .sum();
        assert_eq!(bucket.available(), CAPACITY - taken);
        assert!(bucket.try_take(1));
        assert_eq!(bucket.available(), CAPACITY - taken - 1);
    }

    #[test]
    fn many_threads_admit_exactly_the_capacity() {
        const CAPACITY: u64 = 10_000;
        for (cost, admitted, left) in [(1, 10_000, 0), (3, 3_333, 1)] {
            let bucket = Arc::new(TokenBucket::new(CAPACITY, 0.0));
            assert_eq!(hammer(&bucket, 4, 4_000, cost), admitted, "cost {cost}");
            assert_eq!(bucket.available(), left, "cost {cost}");
            assert!(!bucket.try_take(cost));
        }
    }

    // Tokens in flight between the central counter and a shard are held by
    // no counter: a take that sees only them waits for the move to land
    // instead of refusing, then takes them.
    #[test]
    fn a_take_waits_out_a_move_in_progress() {
        let bucket = TokenBucket::new(100, 0.0);
        // A fill stopped halfway: the last 5 tokens left the central counter
        // and have not reached the shard yet.
        bucket.begin_move();
        bucket.central.tokens.store(0, Ordering::SeqCst);
        let returned = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let taker = scope.spawn(|| {
                let taken = bucket.try_take(1);
                returned.store(true, Ordering::SeqCst);
                taken
            });
            std::thread::sleep(Duration::from_millis(50));
            assert!(!returned.load(Ordering::SeqCst), "the take did not decide while the move was open");
            bucket.shards[0].tokens.fetch_add(5 * SCALE, Ordering::SeqCst);
            bucket.end_move();
            assert!(taker.join().expect("taker"), "the landed tokens admit it");
        });
        assert_eq!(bucket.available(), 4);
    }

    // With no refill the tokens only ever go down, so a refusal (fewer than
    // `cost` tokens anywhere) is final: a take that starts after one and is
    // admitted means the refusal missed tokens, say a batch in flight
    // between the central counter and a shard. The race is at a bucket's
    // last tokens, so many small buckets are run dry.
    #[test]
    fn a_refusal_is_final_when_nothing_refills() {
        const CAPACITY: u64 = 256;
        for round in 0..400_u64 {
            let cost = 1 + round % 3;
            let bucket = TokenBucket::new(CAPACITY, 0.0);
            assert!(bucket.batch > 0, "a bucket this size caches");
            let refused = AtomicBool::new(false);
            let admitted = AtomicU64::new(0);
            let barrier = Barrier::new(4);
            std::thread::scope(|scope| {
                for _ in 0..4 {
                    scope.spawn(|| {
                        barrier.wait();
                        let mut refusals = 0;
                        while refusals < 20 {
                            let after_a_refusal = refused.load(Ordering::SeqCst);
                            if bucket.try_take(cost) {
                                assert!(!after_a_refusal, "round {round}, cost {cost}: admitted after a refusal");
                                admitted.fetch_add(cost, Ordering::SeqCst);
                            } else {
                                refused.store(true, Ordering::SeqCst);
                                refusals += 1;
                            }
                        }
                    });
                }
            });
            assert_eq!(admitted.into_inner(), CAPACITY - CAPACITY % cost, "round {round}, cost {cost}");
            assert_eq!(bucket.available(), CAPACITY % cost, "round {round}, cost {cost}");
        }
    }

    // The paused clock drives the refill while four threads (inside the
    // runtime's context, so they read its clock) take concurrently, in
    // rounds that drain the bucket, refill it and top it up around cached
    // batches. No take ever brings the total admitted above capacity +
    // rate × elapsed, and between rounds the bucket holds at most its
    // capacity.
    #[test]
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, reason = "a small rate; an index below 4")]
    fn concurrent_takes_under_refill_never_exceed_capacity_plus_credit() {
        const CAPACITY: u64 = 400;
        const PER_MS: u64 = 7;
        const ROUNDS: u64 = 120;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("runtime");
        let _runtime = runtime.enter();
        let bucket = TokenBucket::new(CAPACITY, PER_MS as f64 * 1_000.0);
        assert!(bucket.batch > 0, "a bucket this size caches");
        let admitted = AtomicU64::new(0);
        // Trails the clock by at most 1 ms: advanced after it.
        let elapsed_ms = AtomicU64::new(0);
        let mut cached_at_a_check = false;
        for round in 0..ROUNDS {
            // Drain; refill to full (a long jump credits more than the
            // capacity); take a little from the full bucket, so shards cache
            // batches, and jump again, so the refill tops up around them and
            // the cap binds; take a little.
            let (takes, jump_ms) = [(300, 1), (3, 100), (3, 100), (3, 1)][(round % 4) as usize];
            std::thread::scope(|scope| {
                for worker in 0..4_u64 {
                    let (bucket, admitted, elapsed_ms, handle) = (&bucket, &admitted, &elapsed_ms, runtime.handle());
                    scope.spawn(move || {
                        let _runtime = handle.enter();
                        let cost = 1 + worker % 2;
                        for _ in 0..takes {
                            if bucket.try_take(cost) {
                                let total = admitted.fetch_add(cost, Ordering::SeqCst) + cost;
                                // Every take counted in `total` happened
                                // before now, so with no more credit than
                                // the clock shows now.
                                let allowance = CAPACITY + PER_MS * (elapsed_ms.load(Ordering::SeqCst) + 1);
                                assert!(total <= allowance, "admitted {total} > {allowance}");
                            }
                        }
                    });
                }
                for _ in 0..jump_ms {
                    runtime.block_on(tokio::time::advance(Duration::from_millis(1)));
                    elapsed_ms.fetch_add(1, Ordering::SeqCst);
                }
            });
            let available = bucket.available();
            let held = bucket.held();
            assert!(held <= CAPACITY * SCALE, "round {round}: holds {held} units, above the capacity");
            cached_at_a_check |= bucket.cached() > 0 && available == CAPACITY;
        }
        let (admitted, elapsed_ms) = (admitted.into_inner(), elapsed_ms.into_inner());
        assert!(admitted <= CAPACITY + PER_MS * elapsed_ms, "admitted {admitted} in {elapsed_ms} ms");
        assert!(admitted > CAPACITY, "the refill admitted more than the first fill ({admitted})");
        assert!(cached_at_a_check, "some refill met cached tokens near the cap");
        assert!(bucket.available() + admitted <= CAPACITY + PER_MS * elapsed_ms);
        runtime.block_on(tokio::time::advance(Duration::from_secs(60)));
        assert_eq!(bucket.available(), CAPACITY, "refilled to the capacity, not beyond");
        assert_eq!(bucket.held(), CAPACITY * SCALE);
    }
}

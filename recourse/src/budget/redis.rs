//! [`RedisTokenBucket`]: one token bucket shared by every process of a
//! fleet, kept in Redis (feature `redis`). The user-facing documentation
//! (leasing, the fleet bound, the failure mode, why and when) is on the
//! type; this is how it works.
//!
//! Three parties share one [`Shared`]:
//!
//! * **The gate** ([`Budget::allow_attempt`]) spends from `lease`, a signed
//!   balance, with one compare-and-swap. When the take crosses the
//!   low-water mark it wakes the task (a tokio `Notify`: once per half
//!   lease, not per attempt). When the balance cannot pay,
//!   [`RedisTokenBucket::dry`] reads the one-byte `state` and the age of the
//!   round trip in flight (`flight_since`) or of the unanswered demand
//!   (`demand_since`), and decides: credit (the balance goes below zero, at
//!   most a lease, and the task is asked to fetch), a plain denial, or the
//!   failure mode. Only this cold path reads the clock; once the task
//!   runs, it too takes no lock and allocates nothing.
//! * **The background task** ([`run`]) is the only writer of grants. A
//!   grant is added to the balance, so it pays a debt before it refills the
//!   lease. Its loop takes an expired lease back (only a positive balance:
//!   a debt stays until a grant pays it), decides whether to ask (first
//!   lease, low water while the lease is being spent, a debt, a dry
//!   attempt's demand, a renewal of a busy lease at expiry) and whether it
//!   may (not while Redis answered short and the quiet period runs, not
//!   before the backoff is over while Redis is away), runs one script call
//!   bounded by the timeout (asking for the lease size minus the balance,
//!   so a lease plus the debt), and otherwise sleeps until the next
//!   deadline or a wake-up. Tokens taken back are sent at most once, and
//!   only over a connection that has just answered: a failed round trip may
//!   have run, and sending them again could count them twice.
//! * **`try_acquire`** runs the same script with "all or nothing" and
//!   leaves the lease alone.
//!
//! The connection is a redis-rs `MultiplexedConnection` kept in a mutex
//! that no await holds; any failure or timeout drops it and the next round
//! trip connects afresh. That is the whole reconnection logic, on purpose:
//! redis-rs's `ConnectionManager` keeps a failed connection future until a
//! command sees an I/O error, so an error of another kind while connecting
//! (a server still loading its data, a refused password) would wedge it,
//! and the first command after an outage always fails on the stale error.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, RedisError, Script};
use tokio::runtime::Handle;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{AttemptKind, Budget, Decision, TokenBucket, reason};
use crate::executor::Rng;
use crate::policy::{BudgetRef, PolicyKey};

/// Refill and take in one step, on the server's clock.
///
/// `KEYS[1]` is a hash of `tokens` (a float) and `ts` (microseconds of the
/// last refill); an absent key is a full bucket. `ARGV`: capacity, refill
/// per second, tokens wanted, tokens given back, smallest grant worth
/// making (a smaller one grants nothing). Answers the grant and the tokens
/// left. The key expires when the bucket would be full again; without a
/// refill it never does, since it is the only memory of what was spent.
const SCRIPT: &str = r"
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local give = tonumber(ARGV[4])
local least = tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
if now > ts then
  tokens = tokens + (now - ts) * rate / 1000000
  ts = now
end
tokens = math.max(0, math.min(capacity, tokens + give))
local granted = math.min(want, math.floor(tokens))
if granted < least then
  granted = 0
end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'ts', string.format('%.17g', ts))
local ttl = 0
if rate > 0 then
  -- a second past the moment it is full, so rounding never drops it early
  ttl = math.ceil((capacity - tokens) / rate * 1000) + 1000
end
if ttl > 0 and ttl < 1e15 then
  redis.call('PEXPIRE', KEYS[1], ttl)
else
  redis.call('PERSIST', KEYS[1])
end
return {granted, string.format('%.17g', tokens)}
";

/// Capacities above this are clamped: the script counts in doubles, which
/// hold every integer up to it exactly.
const MAX_CAPACITY: u64 = 1 << 53;

/// The first retry after a failed round trip, and the cap it doubles to.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The shortest timeout and lease lifetime: zero would make every round
/// trip fail or every lease die on arrival.
const MIN_DURATION: Duration = Duration::from_millis(1);

/// What the gate knows of Redis, in one byte it reads without a lock: no
/// round trip answered yet (a dry lease may take credit).
const CONNECTING: u8 = 0;
/// The last round trip was answered (a dry lease may take credit).
const AVAILABLE: u8 = 1;
/// The last round trip that asked for tokens was answered short: a dry
/// lease is a plain denial, with no credit, until the task asks again.
const EMPTY: u8 = 2;
/// The last round trip failed or timed out.
const UNAVAILABLE: u8 = 3;
/// No background task: no tokio runtime to run one on.
const NO_TASK: u8 = 4;

const NO_RUNTIME: &str = "no tokio runtime to reach Redis from";

/// What a [`RedisTokenBucket`] does when its lease is dry and Redis cannot
/// answer in time (unreachable, erroring, or slower than the bucket's
/// `timeout`).
///
/// ```
/// use recourse::budget::{OnUnavailable, RedisTokenBucket};
///
/// let bucket = RedisTokenBucket::builder("redis://127.0.0.1:6379", "budget:inventory")
///     .on_unavailable(OnUnavailable::Deny)
///     .build()?;
/// # let _ = bucket;
/// # Ok::<(), recourse::budget::RedisBudgetError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OnUnavailable {
    /// Deny the attempt, reason `budget_unavailable`: protects the
    /// dependency at the cost of the calls.
    Deny,
    /// Allow the attempt, reason `budget_unavailable`: the calls go on
    /// unbudgeted while Redis is away.
    Allow,
    /// A local [`TokenBucket`] decides, reason `budget_fallback`: each
    /// process keeps a budget of its own while the shared one is away.
    #[default]
    Fallback,
}

impl OnUnavailable {
    /// `deny`, `allow` or `fallback`.
    ///
    /// ```
    /// use recourse::budget::OnUnavailable;
    ///
    /// assert_eq!(OnUnavailable::default().as_str(), "fallback");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Deny => "deny",
            Self::Allow => "allow",
            Self::Fallback => "fallback",
        }
    }
}

impl fmt::Display for OnUnavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a [`RedisTokenBucket`] could not be built or could not answer
/// [`try_acquire`](RedisTokenBucket::try_acquire).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisBudgetError {
    /// The URL is not a Redis URL this build can connect to.
    #[error("invalid Redis URL: {0}")]
    InvalidUrl(#[source] RedisError),
    /// The key is empty (after trimming).
    #[error("the Redis key of a budget cannot be empty")]
    EmptyKey,
    /// Called outside a tokio runtime.
    #[error("{NO_RUNTIME}")]
    NoRuntime,
    /// Redis did not answer within the bucket's timeout.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis could not be reached or answered with an error.
    #[error("Redis: {0}")]
    Redis(#[source] RedisError),
}

/// Where a [`RedisTokenBucket`] stands with Redis, as its background task
/// last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisStatus {
    /// No round trip answered yet.
    Connecting,
    /// The last round trip was answered (the shared bucket may be empty).
    Available,
    /// Redis is away: the failure mode decides once the lease is dry.
    Unavailable {
        /// What the last round trip met.
        error: String,
        /// When this outage began (the first failed round trip).
        since: std::time::Instant,
    },
}

/// A token bucket shared by every process of a fleet through Redis.
///
/// # Why and when
///
/// A retry budget protects a dependency only if it sees all the retries
/// sent to it. Fifty replicas with a local [`TokenBucket`] each can still
/// send fifty times the retries the dependency can take, and more every
/// time the fleet is scaled out. A `RedisTokenBucket` is one bucket for the
/// whole fleet: every process that builds one with the same Redis key (and
/// the same capacity and refill) draws from the same tokens. Use it when
/// the retries of many processes land on one dependency and the fleet's
/// size changes; keep the local [`TokenBucket`] when one process is the
/// whole client (it is exact and needs nothing else to run).
///
/// # Leasing
///
/// The budget gate runs before every attempt and must not wait for the
/// network. So a process takes tokens from Redis in small batches,
/// *leases* of [`lease`](RedisTokenBucketBuilder::lease) tokens, and spends
/// them locally: an attempt costs one compare-and-swap, with no lock, no
/// allocation and no clock read. A background task on the tokio runtime
/// tops the lease up with one round trip when it falls below half its size
/// while being spent, or at once when an attempt finds it dry. One
/// server-side script does the refill and the take atomically, on the Redis
/// server's clock: it refills the shared bucket (fractional tokens are
/// kept), adds back the tokens the process returns, grants what it can (a
/// partial grant is fine) and sets the key to expire when the bucket would
/// be full again, since an absent key reads as a full bucket. Without a
/// refill the key never expires: it is the only record of what was spent.
///
/// A lease may be spent for [`lease_ttl`](RedisTokenBucketBuilder::lease_ttl)
/// after the round trip that last filled it. Then the task takes the
/// unspent tokens back and returns them to Redis: a process that spent from
/// its lease meanwhile takes a fresh one in the same round trip, an idle
/// one keeps nothing, so idle processes do not sit on the fleet's tokens.
///
/// # Credit
///
/// A process that sat idle for longer than `lease_ttl` has given its lease
/// back, and the round trip that fetches a new one cannot finish before its
/// next attempt is decided. So when the lease cannot pay an attempt and the
/// bucket is in good standing (Redis's last answer was a success that did
/// not find the shared bucket empty, or the first connection is still being
/// made), the attempt is admitted *on credit*, reason `allowed` like any
/// other: the process's balance goes below zero, by at most a lease (or
/// the largest cost asked for, when that is more), and the task fetches at
/// once. The next grant pays the debt first: the task asks Redis for a
/// lease plus the debt. A lease taken back at expiry returns only the
/// tokens in hand, never a debt; a debt Redis has no tokens for is kept,
/// and the task asks again once the refill can have made a lease.
/// [`owed`](Self::owed) tells a process's debt. Credit is the same
/// compare-and-swap as a spend: the gate stays free of locks and
/// allocations.
///
/// No credit is given when Redis last said the shared bucket is empty (the
/// attempt is denied), nor when Redis is unreachable, erroring or has not
/// answered within [`timeout`](RedisTokenBucketBuilder::timeout) (the
/// failure mode decides): credit never hides an outage for longer than the
/// timeout.
///
/// # The bound
///
/// Leased tokens have left Redis, so the bucket in Redis refills up to its
/// capacity while processes still hold them, and a process may owe up to a
/// lease it admitted on credit. From the moment the processes start, over
/// any time `t`, the fleet admits at most
///
/// ```text
/// capacity + refill_per_sec × t + processes × lease
/// ```
///
/// in cost units (a lease grows to the largest cost asked for, when that is
/// more than the lease size). A window that opens while processes hold full
/// leases can see one more lease per process: the lease in hand at its
/// start, spent, then a debt at its end. With no refill the fleet admits at
/// most `capacity + processes × lease` in all; the excess is the debts not
/// yet repaid, and each is repaid as soon as Redis has tokens for it, so in
/// the long run the fleet admits what Redis granted. Tokens given back
/// never raise the bucket above its capacity. All processes sharing a key
/// should use the same capacity and refill: each round trip applies its
/// own.
///
/// # When Redis is slow or away
///
/// Tokens already leased are spent as usual. When the lease cannot pay:
///
/// * If Redis answered that the shared bucket is empty, the attempt is
///   denied (reason `budget_denied`), as a local bucket would deny it; the
///   task asks again once the refill can have made a lease (at most
///   `lease_ttl` later, when other processes' leases come back).
/// * If the bucket is in good standing and no round trip has been waited
///   on for longer than `timeout`, the attempt is admitted on credit (see
///   above); once the process owes a full lease, later attempts are denied
///   (reason `budget_denied`) until the grant on its way arrives.
/// * If Redis is unreachable, answered with an error, or has not answered
///   within `timeout`, the [`OnUnavailable`] mode decides: deny (reason
///   `budget_unavailable`), allow (reason `budget_unavailable`), or a local
///   fallback [`TokenBucket`] per process (reason `budget_fallback`,
///   allowed or denied as it says). The reasons are on timelines and in
///   observers' budget events like any other. A debt run up before the
///   outage showed is kept and repaid when Redis answers again.
///
/// While Redis is away the task retries with a new connection after 50 ms,
/// doubling up to 1 s, and the bucket recovers by itself when Redis answers
/// again; [`status`](Self::status) tells where it stands. A round trip that
/// fails or times out may still have run on the server: the tokens it took
/// are then lost, and tokens it carried back are not sent again. Both err
/// on the side of fewer admissions, never more.
///
/// # Runtime
///
/// The background task starts when the bucket is built inside a tokio
/// runtime, and takes the first lease at once; a bucket built outside one
/// starts it on its first use inside one. With no runtime the bucket is
/// unavailable and the failure mode decides. Dropping the bucket stops the
/// task, which returns the unspent lease on its way out, or repays its debt
/// if Redis has the tokens.
///
/// ```no_run
/// use std::time::Duration;
///
/// use recourse::budget::{OnUnavailable, RedisTokenBucket, Registry};
/// use recourse::policy::Policy;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let fleet = RedisTokenBucket::builder("redis://127.0.0.1:6379", "budgets:inventory")
///     .capacity(500)
///     .refill_per_sec(50.0)
///     .lease(10)
///     .timeout(Duration::from_millis(100))
///     .on_unavailable(OnUnavailable::Fallback)
///     .fallback(50, 5.0) // each process alone while Redis is away
///     .build()?;
/// let budgets = Registry::with_builtins();
/// budgets.register("inventory", fleet);
/// let executor = recourse::Executor::builder()
///     .budgets(budgets.into())
///     .policy(Policy::builder("inventory.Reserve").budget("inventory").build())
///     .build();
/// # let _ = executor;
/// # Ok(())
/// # }
/// ```
pub struct RedisTokenBucket {
    shared: Arc<Shared>,
}

/// Settings of a [`RedisTokenBucket`]; made by
/// [`RedisTokenBucket::builder`].
#[derive(Debug, Clone)]
pub struct RedisTokenBucketBuilder {
    url: String,
    key: String,
    capacity: u64,
    refill_per_sec: f64,
    lease: u32,
    lease_ttl: Duration,
    timeout: Duration,
    on_unavailable: OnUnavailable,
    fallback: Option<(u64, f64)>,
}

impl RedisTokenBucket {
    /// Settings for a bucket at `url` (`redis://[user:password@]host[:port][/db]`)
    /// under `key`: capacity 100, refill 10 per second, leases of 10 tokens
    /// living 1 s, a 100 ms timeout and [`OnUnavailable::Fallback`] to a
    /// local bucket of the same capacity and refill.
    ///
    /// ```
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1:6379", "budgets:search").capacity(200).build()?;
    /// assert_eq!(bucket.capacity(), 200);
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn builder(url: impl Into<String>, key: impl Into<String>) -> RedisTokenBucketBuilder {
        RedisTokenBucketBuilder {
            url: url.into(),
            key: key.into(),
            capacity: 100,
            refill_per_sec: 10.0,
            lease: 10,
            lease_ttl: Duration::from_secs(1),
            timeout: Duration::from_millis(100),
            on_unavailable: OnUnavailable::Fallback,
            fallback: None,
        }
    }

    /// The shared bucket's capacity in tokens.
    ///
    /// ```
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").capacity(7).build()?;
    /// assert_eq!(bucket.capacity(), 7);
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// The Redis key the bucket lives under.
    ///
    /// ```
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", " budgets:a ").build()?;
    /// assert_eq!(bucket.key(), "budgets:a");
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn key(&self) -> &str {
        &self.shared.key
    }

    /// Tokens this process holds in its lease now.
    ///
    /// ```
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").build()?;
    /// assert_eq!(bucket.leased(), 0, "nothing leased before a round trip");
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn leased(&self) -> u64 {
        u64::try_from(self.shared.lease.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// Tokens this process admitted on credit and has not repaid yet: the
    /// next grant pays them first.
    ///
    /// ```
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").build()?;
    /// assert_eq!(bucket.owed(), 0, "no credit taken");
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn owed(&self) -> u64 {
        self.shared.lease.load(Ordering::Acquire).min(0).unsigned_abs()
    }

    /// Where the bucket stands with Redis.
    ///
    /// ```
    /// use recourse::budget::{RedisStatus, RedisTokenBucket};
    ///
    /// // Built outside a tokio runtime: nothing can reach Redis yet.
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").build()?;
    /// assert!(matches!(bucket.status(), RedisStatus::Unavailable { .. }));
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn status(&self) -> RedisStatus {
        lock(&self.shared.status).clone()
    }

    /// Takes `cost` tokens (at least 1) straight from the shared bucket,
    /// all or none, in one round trip and with no lease: `Ok(true)` when
    /// they were taken, `Ok(false)` when the bucket holds fewer.
    ///
    /// For admission outside the executor (a job scheduler, a rate limit
    /// on a batch); the [`Budget`] gate spends leased tokens instead, and
    /// this leaves the lease alone (a bucket built inside a runtime still
    /// takes a first lease for the gate, which it returns after
    /// `lease_ttl` if the gate never spends it). Bounded by the bucket's
    /// `timeout`; must run inside a tokio runtime.
    ///
    /// ```no_run
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), recourse::budget::RedisBudgetError> {
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1:6379", "budgets:reindex").build()?;
    /// if bucket.try_acquire(5).await? {
    ///     // run the expensive job
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub async fn try_acquire(&self, cost: u32) -> Result<bool, RedisBudgetError> {
        if Handle::try_current().is_err() {
            return Err(RedisBudgetError::NoRuntime);
        }
        let cost = u64::from(cost.max(1));
        let shared = &self.shared;
        match shared.bounded(shared.eval(cost, 0, cost)).await {
            Ok(answer) => Ok(answer.granted >= cost),
            Err(Failure::Redis(error)) => Err(RedisBudgetError::Redis(error)),
            Err(Failure::Timeout) => Err(RedisBudgetError::Timeout(shared.timeout)),
        }
    }

    /// What the failure mode says when the lease is dry and Redis cannot
    /// answer in time.
    fn unavailable(&self, cost: i64) -> Decision {
        match (&self.shared.fallback, self.shared.on_unavailable) {
            (Some(fallback), _) => {
                let decision =
                    if fallback.try_take(cost.unsigned_abs()) { Decision::allow() } else { Decision::deny() };
                decision.with_reason(reason::BUDGET_FALLBACK)
            }
            (None, OnUnavailable::Allow) => Decision::allow().with_reason(reason::BUDGET_UNAVAILABLE),
            (None, _) => Decision::deny().with_reason(reason::BUDGET_UNAVAILABLE),
        }
    }

    /// The gate's path when the lease cannot pay: kept out of line so the
    /// common path stays a compare-and-swap.
    #[cold]
    #[inline(never)]
    fn dry(&self, cost: i64) -> Decision {
        let shared = &self.shared;
        if cost > i64::from(shared.lease_size) {
            // Leases grow to fit the largest cost asked for, or an attempt
            // of that cost could never be paid from one; the credit limit
            // grows with them.
            shared.max_cost.fetch_max(cost, Ordering::AcqRel);
        }
        let verdict = if shared.ensure_task() { shared.verdict_when_dry() } else { Dry::Unavailable };
        // Otherwise a grant may have landed while the state was read.
        let paid = if verdict == Dry::Credit { shared.spend_on_credit(cost) } else { shared.spend(cost).is_some() };
        match verdict {
            _ if paid => Decision::allow(),
            Dry::Unavailable => self.unavailable(cost),
            Dry::Credit | Dry::Deny => Decision::deny(),
        }
    }
}

impl Budget for RedisTokenBucket {
    fn allow_attempt(&self, _: &PolicyKey, _: u32, _: AttemptKind, budget: &BudgetRef) -> Decision {
        let cost = i64::from(budget.cost.max(1));
        match self.shared.spend(cost) {
            Some(left) => {
                let low = self.shared.low_water();
                if left < low && left + cost >= low {
                    // Crossed the low-water mark: top up before it runs dry.
                    self.shared.wake.notify_one();
                }
                Decision::allow()
            }
            None => self.dry(cost),
        }
    }
}

impl Drop for RedisTokenBucket {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

impl fmt::Debug for RedisTokenBucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = &self.shared;
        f.debug_struct("RedisTokenBucket")
            // The address only: the URL may carry a password.
            .field("addr", &shared.client.get_connection_info().addr().to_string())
            .field("key", &shared.key)
            .field("capacity", &shared.capacity)
            .field("refill_per_sec", &shared.refill_per_sec)
            .field("lease", &shared.lease_size)
            .field("lease_ttl", &shared.lease_ttl)
            .field("timeout", &shared.timeout)
            .field("on_unavailable", &shared.on_unavailable)
            .field("leased", &self.leased())
            .field("owed", &self.owed())
            .field("status", &self.status())
            .finish_non_exhaustive()
    }
}

impl RedisTokenBucketBuilder {
    /// Tokens the shared bucket holds when full (default 100). An absent
    /// key is a full bucket.
    ///
    /// ```
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").capacity(1_000).build()?;
    /// assert_eq!(bucket.capacity(), 1_000);
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Tokens added per second, on the Redis server's clock (default 10).
    /// A NaN, infinite or negative rate means no refill, as for
    /// [`TokenBucket::new`].
    ///
    /// ```
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").refill_per_sec(f64::NAN).build()?;
    /// # let _ = bucket;
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn refill_per_sec(mut self, refill_per_sec: f64) -> Self {
        self.refill_per_sec = refill_per_sec;
        self
    }

    /// Tokens taken per round trip (default 10, at least 1), and the most a
    /// process may owe on credit: larger leases mean fewer round trips and
    /// a looser fleet bound (`processes × lease`).
    ///
    /// ```
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").lease(32).build()?;
    /// # let _ = bucket;
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn lease(mut self, tokens: u32) -> Self {
        self.lease = tokens;
        self
    }

    /// How long a lease may be spent after the round trip that filled it
    /// (default 1 s, at least 1 ms); then its unspent tokens go back to
    /// Redis.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").lease_ttl(Duration::from_secs(5)).build()?;
    /// # let _ = bucket;
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn lease_ttl(mut self, lease_ttl: Duration) -> Self {
        self.lease_ttl = lease_ttl;
        self
    }

    /// The bound on one round trip, connecting included (default 100 ms,
    /// at least 1 ms). A dry lease waiting longer than this on Redis is
    /// decided by the failure mode.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").timeout(Duration::from_millis(50)).build()?;
    /// # let _ = bucket;
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// What decides when the lease is dry and Redis cannot answer in time
    /// (default [`OnUnavailable::Fallback`]).
    ///
    /// ```
    /// use recourse::budget::{OnUnavailable, RedisTokenBucket};
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").on_unavailable(OnUnavailable::Allow).build()?;
    /// # let _ = bucket;
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn on_unavailable(mut self, mode: OnUnavailable) -> Self {
        self.on_unavailable = mode;
        self
    }

    /// The local bucket of [`OnUnavailable::Fallback`] (default: the shared
    /// bucket's own capacity and refill). Each process has its own, so a
    /// fleet of `n` admits up to `n` times this while Redis is away: size
    /// it for one process. Hostile refills mean no refill.
    ///
    /// ```
    /// use recourse::budget::RedisTokenBucket;
    ///
    /// let bucket = RedisTokenBucket::builder("redis://127.0.0.1", "b").capacity(500).fallback(20, 2.0).build()?;
    /// # let _ = bucket;
    /// # Ok::<(), recourse::budget::RedisBudgetError>(())
    /// ```
    pub fn fallback(mut self, capacity: u64, refill_per_sec: f64) -> Self {
        self.fallback = Some((capacity, refill_per_sec));
        self
    }

    /// The bucket. Parses the URL and does no I/O: inside a tokio runtime
    /// the background task starts and takes the first lease, else it starts
    /// on the bucket's first use inside one.
    ///
    /// ```
    /// use recourse::budget::{RedisBudgetError, RedisTokenBucket};
    ///
    /// let error = RedisTokenBucket::builder("not a url", "b").build().unwrap_err();
    /// assert!(matches!(error, RedisBudgetError::InvalidUrl(_)), "{error}");
    /// let error = RedisTokenBucket::builder("redis://127.0.0.1", "  ").build().unwrap_err();
    /// assert!(matches!(error, RedisBudgetError::EmptyKey));
    /// ```
    pub fn build(self) -> Result<RedisTokenBucket, RedisBudgetError> {
        let client = Client::open(self.url.as_str()).map_err(RedisBudgetError::InvalidUrl)?;
        let key = self.key.trim();
        if key.is_empty() {
            return Err(RedisBudgetError::EmptyKey);
        }
        let refill_per_sec = sane_rate(self.refill_per_sec);
        let capacity = self.capacity.min(MAX_CAPACITY);
        let fallback = (self.on_unavailable == OnUnavailable::Fallback).then(|| {
            let (capacity, refill) = self.fallback.unwrap_or((capacity, refill_per_sec));
            TokenBucket::new(capacity, refill)
        });
        let lease_size = self.lease.max(1);
        let shared = Arc::new(Shared {
            client,
            script: Script::new(SCRIPT),
            key: key.to_owned(),
            capacity,
            refill_per_sec,
            lease_size,
            lease_ttl: self.lease_ttl.max(MIN_DURATION),
            timeout: self.timeout.max(MIN_DURATION),
            on_unavailable: self.on_unavailable,
            fallback,
            origin: Instant::now(),
            lease: AtomicI64::new(0),
            max_cost: AtomicI64::new(i64::from(lease_size)),
            state: AtomicU8::new(NO_TASK),
            flight_since: AtomicU64::new(0),
            demand_since: AtomicU64::new(0),
            demand: AtomicBool::new(false),
            task: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
            status: Mutex::new(RedisStatus::Unavailable {
                error: NO_RUNTIME.to_owned(),
                since: std::time::Instant::now(),
            }),
            connection: Mutex::new(None),
        });
        shared.ensure_task();
        Ok(RedisTokenBucket { shared })
    }
}

/// A rate the script can use: hostile values mean no refill.
fn sane_rate(rate: f64) -> f64 {
    if rate.is_finite() && rate > 0.0 { rate } else { 0.0 }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a dry lease meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dry {
    /// The bucket is in good standing: the balance may go below zero, down
    /// to minus a lease, while the task fetches.
    Credit,
    /// Redis answered that the shared bucket is empty: a plain denial.
    Deny,
    /// Redis cannot answer in time: the failure mode decides.
    Unavailable,
}

/// Why a round trip brought no answer.
#[derive(Debug)]
enum Failure {
    Redis(RedisError),
    Timeout,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Redis(error) => write!(f, "{error}"),
            Self::Timeout => f.write_str("no answer within the timeout"),
        }
    }
}

/// The script's answer.
#[derive(Debug, Clone, Copy)]
struct Answer {
    granted: u64,
}

/// What the gate, the background task and `try_acquire` share.
struct Shared {
    client: Client,
    script: Script,
    key: String,
    capacity: u64,
    refill_per_sec: f64,
    lease_size: u32,
    lease_ttl: Duration,
    timeout: Duration,
    on_unavailable: OnUnavailable,
    /// Built only for [`OnUnavailable::Fallback`].
    fallback: Option<TokenBucket>,
    /// What the gate's clock readings count from.
    origin: Instant,
    /// Tokens in hand, below zero when attempts were admitted on credit:
    /// the gate spends them, the task adds grants (which pay a debt first)
    /// and takes expired leases back. Never above the lease size nor below
    /// minus it, far inside an `i64`, whose sign is what a debt needs.
    lease: AtomicI64,
    /// The size a lease is topped up to and the most a process may owe:
    /// the lease size, or the largest cost a dry attempt asked for if that
    /// is more. A `u32` at most.
    max_cost: AtomicI64,
    /// One of `CONNECTING` .. `NO_TASK`.
    state: AtomicU8,
    /// When the round trip in flight began (`stamp`), 0 when none is.
    flight_since: AtomicU64,
    /// When a dry attempt first asked the task for tokens, 0 when none is
    /// waiting.
    demand_since: AtomicU64,
    /// A dry attempt asked the task for tokens.
    demand: AtomicBool,
    /// A background task is running.
    task: AtomicBool,
    /// The bucket was dropped: the task returns the lease and ends.
    closed: AtomicBool,
    wake: Notify,
    status: Mutex<RedisStatus>,
    /// `None` until the first round trip and after one failed (the next
    /// connects afresh). Never held across an await.
    connection: Mutex<Option<MultiplexedConnection>>,
}

impl Shared {
    /// Takes `cost` from the lease: the tokens left, or `None` if it holds
    /// fewer.
    #[inline]
    fn spend(&self, cost: i64) -> Option<i64> {
        self.lease
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| (held >= cost).then(|| held - cost))
            .ok()
            .map(|held| held - cost)
    }

    /// Takes `cost` from the lease, going below zero down to minus the
    /// lease size (the credit limit); whether it was taken.
    fn spend_on_credit(&self, cost: i64) -> bool {
        let limit = -self.target();
        self.lease
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| (held - cost >= limit).then(|| held - cost))
            .is_ok()
    }

    /// The size a lease is topped up to, and the most a process may owe.
    fn target(&self) -> i64 {
        self.max_cost.load(Ordering::Acquire)
    }

    /// Below this the lease is topped up: half its size, rounded up.
    #[inline]
    fn low_water(&self) -> i64 {
        let target = self.target();
        target / 2 + target % 2
    }

    /// Nanoseconds since `origin`, plus one so that 0 can mean "none".
    fn stamp(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1) + 1
    }

    fn timeout_nanos(&self) -> u64 {
        u64::try_from(self.timeout.as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts the background task if none runs and a runtime is at hand;
    /// whether one runs.
    fn ensure_task(self: &Arc<Self>) -> bool {
        if self.task.load(Ordering::Acquire) {
            return true;
        }
        let Ok(runtime) = Handle::try_current() else {
            return false;
        };
        if self.task.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return true;
        }
        self.state.store(CONNECTING, Ordering::Release);
        *lock(&self.status) = RedisStatus::Connecting;
        runtime.spawn(run(Arc::clone(self)));
        true
    }

    /// How a dry lease is decided, asking the task for tokens when that
    /// helps.
    fn verdict_when_dry(&self) -> Dry {
        let state = self.state.load(Ordering::Acquire);
        if state == UNAVAILABLE || state == NO_TASK {
            return Dry::Unavailable;
        }
        // Redis said the shared bucket is empty: no credit against it.
        let standing = if state == EMPTY { Dry::Deny } else { Dry::Credit };
        let now = self.stamp();
        let flight = self.flight_since.load(Ordering::Acquire);
        if flight != 0 {
            if now.saturating_sub(flight) >= self.timeout_nanos() {
                return Dry::Unavailable;
            }
            if standing == Dry::Credit {
                // The flight may not ask for enough to pay the debt about
                // to be made: the task looks again when it lands.
                self.demand.store(true, Ordering::Release);
            }
            return standing;
        }
        let first_ask = !self.demand.swap(true, Ordering::AcqRel);
        if first_ask {
            self.wake.notify_one();
        }
        if state == EMPTY {
            // The task asks again when the bucket may have refilled; until
            // then the answer stands.
            return Dry::Deny;
        }
        let since = match self.demand_since.compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => now,
            Err(since) => since,
        };
        // The task should have started a round trip at once; one that has
        // not within the timeout (a starved runtime) counts as no answer,
        // and no credit hides it.
        if now.saturating_sub(since) >= self.timeout_nanos() { Dry::Unavailable } else { Dry::Credit }
    }

    /// Runs `round_trip` within the timeout; on any failure the connection
    /// is dropped, so the next round trip connects afresh.
    async fn bounded<T>(&self, round_trip: impl Future<Output = Result<T, RedisError>>) -> Result<T, Failure> {
        let result = match tokio::time::timeout(self.timeout, round_trip).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => Failure::Redis(error),
            Err(_) => Failure::Timeout,
        };
        *lock(&self.connection) = None;
        Err(result)
    }

    /// The connection, connecting when there is none.
    async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let cached = lock(&self.connection).clone();
        if let Some(connection) = cached {
            return Ok(connection);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connection = self.client.get_multiplexed_async_connection_with_config(&config).await?;
        let mut slot = lock(&self.connection);
        // Another round trip may have connected meanwhile: share its
        // connection.
        Ok(slot.get_or_insert(connection).clone())
    }

    /// One run of the script: asks for `want` tokens (granting none below
    /// `least`) and gives `give` back.
    async fn eval(&self, want: u64, give: u64, least: u64) -> Result<Answer, RedisError> {
        let mut connection = self.connection().await?;
        let (granted, _left): (u64, f64) = self
            .script
            .key(&self.key)
            .arg(self.capacity)
            .arg(self.refill_per_sec)
            .arg(want)
            .arg(give)
            .arg(least)
            .invoke_async(&mut connection)
            .await?;
        // The script never grants more than asked for; the clamp keeps a
        // stray answer from minting tokens.
        Ok(Answer { granted: granted.min(want) })
    }

    fn set_available(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        let mut status = lock(&self.status);
        if *status != RedisStatus::Available {
            *status = RedisStatus::Available;
        }
    }

    fn set_unavailable(&self, failure: &Failure) {
        let mut status = lock(&self.status);
        let since = match &*status {
            RedisStatus::Unavailable { since, .. } if self.state.load(Ordering::Acquire) == UNAVAILABLE => *since,
            _ => std::time::Instant::now(),
        };
        *status = RedisStatus::Unavailable { error: failure.to_string(), since };
        self.state.store(UNAVAILABLE, Ordering::Release);
    }

    /// How long to leave the bucket alone after it answered short: long
    /// enough for the refill to make a lease, at most a lease's lifetime
    /// (with no refill, tokens only come back as leases expire). A fleet
    /// polling an empty bucket then costs Redis a round trip per process
    /// per lease's worth of refill, not one per attempt.
    #[allow(clippy::cast_precision_loss, reason = "a lease size, far below 2^53")]
    fn quiet_period(&self) -> Duration {
        let ttl = self.lease_ttl.as_secs_f64();
        let seconds =
            if self.refill_per_sec > 0.0 { (self.target() as f64 / self.refill_per_sec).min(ttl) } else { ttl };
        Duration::from_secs_f64(seconds).clamp(MIN_DURATION, self.lease_ttl)
    }
}

/// Marks the task gone however it ends (its runtime may drop it), so the
/// gate reports Redis unavailable and a later use in a runtime starts
/// another. The lease in hand goes too: with no task to take it back when
/// its lifetime ends, it could otherwise be spent past it. A debt stays,
/// for the next task's first grant to pay.
struct TaskExit(Arc<Shared>);

impl Drop for TaskExit {
    fn drop(&mut self) {
        let shared = &self.0;
        shared.lease.fetch_min(0, Ordering::AcqRel);
        shared.flight_since.store(0, Ordering::Release);
        shared.state.store(NO_TASK, Ordering::Release);
        *lock(&shared.status) =
            RedisStatus::Unavailable { error: NO_RUNTIME.to_owned(), since: std::time::Instant::now() };
        *lock(&shared.connection) = None;
        shared.task.store(false, Ordering::Release);
    }
}

/// A delay around `backoff`, between half and all of it: processes that
/// lost Redis together do not all come back in step.
fn jittered(backoff: Duration, rng: &Rng) -> Duration {
    backoff / 2 + backoff.mul_f64(rng.next_unit() / 2.0)
}

/// The background task: tops the lease up, takes expired leases back and
/// returns them, and retries while Redis is away.
async fn run(shared: Arc<Shared>) {
    let _exit = TaskExit(Arc::clone(&shared));
    let mut task = Task {
        lease_deadline: None,
        after_grant: 0,
        pending_return: 0,
        quiet_until: None,
        retry_at: None,
        backoff: MIN_BACKOFF,
        first_lease: true,
        rng: Rng::from_entropy(),
    };
    loop {
        let closing = shared.closed.load(Ordering::Acquire);
        let now = Instant::now();
        let mut renew = false;
        if closing || task.lease_deadline.is_some_and(|deadline| now >= deadline) {
            // Only tokens in hand go back; a debt stays until a grant pays it.
            let held = shared.lease.fetch_min(0, Ordering::AcqRel);
            // Spent from since it was filled: the process is busy and takes
            // a fresh lease in the same round trip.
            renew = held < task.after_grant;
            task.pending_return += held.max(0).unsigned_abs();
            task.lease_deadline = None;
            task.after_grant = 0;
        }
        let state = shared.state.load(Ordering::Acquire);
        let reachable = state == AVAILABLE || state == EMPTY;
        if closing {
            // The last chance to repay a debt: what Redis grants now only
            // pays it, and is never spent.
            let owed = shared.lease.load(Ordering::Acquire).min(0).unsigned_abs();
            if reachable && (task.pending_return > 0 || owed > 0) {
                let _ = shared.bounded(shared.eval(owed, task.pending_return, 1)).await;
            }
            return;
        }
        let held = shared.lease.load(Ordering::Acquire);
        let target = shared.target();
        // Below the low-water mark only counts if the lease is being spent:
        // an idle process that took its lease back must not take another.
        // A debt always does: it was spent.
        let low = held < 0 || (held < shared.low_water() && held < task.after_grant);
        let wants_tokens = renew || low || task.first_lease || shared.demand.load(Ordering::Acquire);
        let quiet = task.quiet_until.is_some_and(|until| now < until);
        let give = if reachable { task.pending_return } else { 0 };
        let go = if reachable {
            (wants_tokens && !quiet) || give > 0
        } else {
            // Connecting, or retrying after a failure once its backoff is
            // over, with or without demand: the status should come back by
            // itself when Redis does.
            task.retry_at.is_none_or(|at| now >= at)
        };
        if go {
            // A lease plus the debt: the grant pays the debt first.
            let want = if wants_tokens && !quiet { u64::try_from(target - held).unwrap_or(0) } else { 0 };
            if reachable && want == 0 && give == 0 {
                // A demand the last grant already met: nothing to ask.
                task.first_lease = false;
                shared.demand.store(false, Ordering::Release);
                shared.demand_since.store(0, Ordering::Release);
                continue;
            }
            task.round_trip(&shared, now, want, give).await;
            continue;
        }
        let mut next = task.lease_deadline;
        if !reachable {
            next = earliest(next, task.retry_at);
        } else if wants_tokens {
            next = earliest(next, task.quiet_until);
        }
        match next {
            Some(at) => {
                let _ = tokio::time::timeout_at(at, shared.wake.notified()).await;
            }
            None => shared.wake.notified().await,
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The background task's own bookkeeping.
struct Task {
    /// When the lease in hand stops being spendable.
    lease_deadline: Option<Instant>,
    /// What the lease held right after its last grant: less now means it
    /// was spent from since.
    after_grant: i64,
    /// Tokens taken back from expired leases, not yet given to Redis.
    pending_return: u64,
    /// Redis answered short: no asking for tokens before this.
    quiet_until: Option<Instant>,
    /// Redis is away: the next try.
    retry_at: Option<Instant>,
    backoff: Duration,
    /// No lease taken yet: the first is taken at once, so the first
    /// attempts need not wait for one.
    first_lease: bool,
    /// Draws the jitter of the retry backoff.
    rng: Rng,
}

impl Task {
    async fn round_trip(&mut self, shared: &Shared, started: Instant, want: u64, give: u64) {
        shared.flight_since.store(shared.stamp(), Ordering::Release);
        // The flight answers every demand made so far (cleared after the
        // flight is visible, so a dry attempt always sees one of them).
        shared.demand.store(false, Ordering::Release);
        shared.demand_since.store(0, Ordering::Release);
        let result = shared.bounded(shared.eval(want, give, 1)).await;
        // Returns are sent at most once: a failed round trip may have run.
        self.pending_return -= give;
        match result {
            Ok(answer) => {
                if answer.granted > 0 {
                    // At most what was asked for, itself from an `i64`.
                    let granted = i64::try_from(answer.granted).unwrap_or(i64::MAX);
                    let before = shared.lease.fetch_add(granted, Ordering::AcqRel);
                    self.after_grant = before + granted;
                    // From the start of the round trip: Redis may have
                    // granted the tokens at any moment of it.
                    self.lease_deadline = Some(started + shared.lease_ttl);
                }
                self.retry_at = None;
                self.backoff = MIN_BACKOFF;
                self.first_lease &= want == 0;
                let state = if want > answer.granted {
                    self.quiet_until = Some(Instant::now() + shared.quiet_period());
                    EMPTY
                } else if want > 0 || shared.state.load(Ordering::Acquire) != EMPTY {
                    self.quiet_until = None;
                    AVAILABLE
                } else {
                    EMPTY
                };
                shared.flight_since.store(0, Ordering::Release);
                shared.set_available(state);
            }
            Err(failure) => {
                shared.set_unavailable(&failure);
                shared.flight_since.store(0, Ordering::Release);
                self.retry_at = Some(Instant::now() + jittered(self.backoff, &self.rng));
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(refill_per_sec: f64, lease: u32, lease_ttl: Duration) -> Arc<Shared> {
        let bucket = RedisTokenBucket::builder("redis://127.0.0.1:1", "k")
            .refill_per_sec(refill_per_sec)
            .lease(lease)
            .lease_ttl(lease_ttl)
            .build()
            .expect("a valid bucket");
        Arc::clone(&bucket.shared)
    }

    #[test]
    fn an_empty_bucket_is_asked_again_once_the_refill_can_make_a_lease() {
        let second = Duration::from_secs(1);
        assert_eq!(shared(10.0, 10, second).quiet_period(), second, "10 tokens at 10/s");
        assert_eq!(shared(100.0, 10, second).quiet_period(), Duration::from_millis(100));
        assert_eq!(shared(1.0, 10, second).quiet_period(), second, "at most a lease's lifetime");
        assert_eq!(shared(0.0, 10, second).quiet_period(), second, "no refill: when leases come back");
        assert_eq!(shared(1e12, 10, second).quiet_period(), MIN_DURATION);
    }

    #[test]
    fn settings_are_clamped_to_usable_values() {
        let shared = shared(f64::NAN, 0, Duration::ZERO);
        assert_eq!(shared.refill_per_sec.to_bits(), 0_f64.to_bits(), "a NaN rate is no refill");
        assert_eq!((shared.lease_size, shared.target(), shared.low_water()), (1, 1, 1));
        assert_eq!(shared.lease_ttl, MIN_DURATION);
        let huge = RedisTokenBucket::builder("redis://127.0.0.1:1", "k").capacity(u64::MAX).build().unwrap();
        assert_eq!(huge.capacity(), MAX_CAPACITY);
    }

    #[test]
    fn backoff_is_jittered_between_half_and_all_of_it() {
        let rng = Rng::new(7);
        for _ in 0..1_000 {
            let delay = jittered(MAX_BACKOFF, &rng);
            assert!(delay >= MAX_BACKOFF / 2 && delay < MAX_BACKOFF, "{delay:?}");
        }
    }

    #[test]
    fn a_short_lease_takes_credit_down_to_minus_a_lease() {
        let bucket = RedisTokenBucket::builder("redis://127.0.0.1:1", "k").lease(4).build().unwrap();
        let shared = &bucket.shared;
        shared.lease.store(1, Ordering::SeqCst);
        assert_eq!(shared.spend(2), None, "a plain spend never goes below zero");
        assert!(shared.spend_on_credit(2));
        assert_eq!((bucket.leased(), bucket.owed()), (0, 1));
        assert!(shared.spend_on_credit(3));
        assert!(!shared.spend_on_credit(1), "a whole lease owed: no more credit");
        assert_eq!(bucket.owed(), 4, "a refused take takes nothing");
        // A larger cost raises the lease, and the credit limit with it.
        shared.max_cost.fetch_max(6, Ordering::SeqCst);
        assert!(shared.spend_on_credit(2));
        assert!(!shared.spend_on_credit(1));
        assert_eq!(bucket.owed(), 6);
    }

    #[test]
    fn credit_needs_good_standing_and_an_answer_within_the_timeout() {
        let bucket = RedisTokenBucket::builder("redis://127.0.0.1:1", "k").timeout(MIN_DURATION).build().unwrap();
        let shared = &bucket.shared;
        for (state, verdict) in [
            (CONNECTING, Dry::Credit),
            (AVAILABLE, Dry::Credit),
            (EMPTY, Dry::Deny),
            (UNAVAILABLE, Dry::Unavailable),
            (NO_TASK, Dry::Unavailable),
        ] {
            shared.state.store(state, Ordering::SeqCst);
            shared.demand_since.store(0, Ordering::SeqCst);
            assert_eq!(shared.verdict_when_dry(), verdict, "state {state}");
        }
        // A demand, then a round trip, each left unanswered past the
        // timeout: an outage no credit may hide.
        shared.state.store(AVAILABLE, Ordering::SeqCst);
        shared.demand_since.store(shared.stamp(), Ordering::SeqCst);
        std::thread::sleep(MIN_DURATION * 5);
        assert_eq!(shared.verdict_when_dry(), Dry::Unavailable, "an old demand");
        shared.demand_since.store(0, Ordering::SeqCst);
        shared.flight_since.store(shared.stamp(), Ordering::SeqCst);
        std::thread::sleep(MIN_DURATION * 5);
        assert_eq!(shared.verdict_when_dry(), Dry::Unavailable, "an old round trip");
    }

    #[test]
    fn a_task_gone_drops_the_lease_in_hand_but_keeps_a_debt() {
        let shared = shared(0.0, 10, Duration::from_secs(1));
        shared.lease.store(5, Ordering::SeqCst);
        drop(TaskExit(Arc::clone(&shared)));
        assert_eq!(shared.lease.load(Ordering::SeqCst), 0);
        shared.lease.store(-3, Ordering::SeqCst);
        drop(TaskExit(Arc::clone(&shared)));
        assert_eq!(shared.lease.load(Ordering::SeqCst), -3, "repaid by the next task's first grant");
    }

    #[test]
    fn the_lease_pays_whole_costs_only() {
        let shared = shared(0.0, 10, Duration::from_secs(1));
        shared.lease.store(5, Ordering::SeqCst);
        assert_eq!(shared.spend(3), Some(2));
        assert_eq!(shared.spend(3), None, "two left: nothing taken");
        assert_eq!(shared.spend(2), Some(0));
        assert_eq!(shared.low_water(), 5, "half of 10");
    }
}

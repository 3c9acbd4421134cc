//! `RedisTokenBucket` (feature `redis`) against real `redis-server`
//! processes on 127.0.0.1.
//!
//! * A fleet: K executors, each with its own bucket on its own connection,
//!   share one key and admit no more than the capacity plus a lease each
//!   (plus the refill); once the leases expire and the debts are repaid,
//!   every token is accounted for.
//! * Redis killed or paused mid-run: the failure mode decides (deny, allow,
//!   fallback) within the timeout, on timelines and in observers' budget
//!   events, and the bucket recovers when Redis answers again.
//! * An expired lease gives its tokens back.
//! * Credit: an idle process's first attempt after its lease went back is
//!   admitted, and the next grant repays it; a bucket Redis says is empty
//!   gives no credit; a debt Redis cannot repay is kept until it can.
//! * The script's arithmetic, `try_acquire`, and bad settings.
//!
//! Real servers run on real time, so every wait is a poll with a generous
//! bound, and nothing asserts that something happened slowly.
#![cfg(feature = "redis")]
#![allow(missing_docs)]

mod support;

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use recourse::Executor;
use recourse::budget::{
    AttemptKind, Budget, OnUnavailable, RedisBudgetError, RedisStatus, RedisTokenBucket, RedisTokenBucketBuilder,
    Registry, reason,
};
use recourse::policy::{BudgetRef, Policy, PolicyKey};
use support::redis::{RedisServer, unique_key};
use support::{KEY, RecordingObserver, TestError};

/// The bound on anything a test waits for.
const WAIT: Duration = Duration::from_secs(10);
/// The slack on top of a bucket's timeout before a failure must show.
const SLACK: Duration = Duration::from_secs(5);
/// The registry name of the bucket.
const BUDGET: &str = "fleet";

/// One decision: whether the attempt ran and the reason on its record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Verdict {
    admitted: bool,
    reason: String,
}

/// An executor whose only policy (`KEY`, one attempt) is gated by `bucket`.
fn executor(bucket: &Arc<RedisTokenBucket>, observer: Option<RecordingObserver>) -> Executor {
    let budgets = Registry::new();
    budgets.register(BUDGET, Arc::clone(bucket));
    let builder =
        Executor::builder().budgets(budgets.into()).policy(Policy::builder(KEY).max_attempts(1).budget(BUDGET).build());
    match observer {
        Some(observer) => builder.observer(observer).build(),
        None => builder.build(),
    }
}

/// One call through `executor`, its verdict read off the captured timeline.
async fn call(executor: &Executor) -> Verdict {
    let (result, timeline) = recourse::capture(executor.call(KEY, || async { Ok::<_, TestError>(()) })).await;
    let record = &timeline.attempts[0];
    let verdict = Verdict { admitted: record.budget_allowed, reason: record.budget_reason.to_string() };
    match result {
        Ok(()) => assert!(verdict.admitted, "ran although denied: {verdict:?}"),
        Err(error) => {
            assert!(!verdict.admitted, "failed although admitted: {error:?}");
            assert!(
                matches!(error.recourse(), Some(recourse::Error::BudgetDenied { reason }) if *reason == verdict.reason),
                "{error:?} for {verdict:?}"
            );
        }
    }
    verdict
}

/// Calls until one is admitted with the standard reason, i.e. by a token
/// Redis leased or on credit: while Redis is known to be away, neither.
async fn until_admitted_by_redis(executor: &Executor) -> Duration {
    let start = Instant::now();
    loop {
        if call(executor).await == (Verdict { admitted: true, reason: reason::ALLOWED.to_owned() }) {
            return start.elapsed();
        }
        assert!(start.elapsed() < WAIT, "no admission through Redis within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Polls `check` every few milliseconds until it holds; fails after [`WAIT`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < WAIT, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The settings every test starts from: no refill, a generous timeout.
fn bucket(server: &RedisServer, key: &str) -> RedisTokenBucketBuilder {
    RedisTokenBucket::builder(server.url(), key).refill_per_sec(0.0).timeout(Duration::from_secs(2))
}

/// A bucket for `try_acquire` alone: built outside any runtime, so no
/// background task takes a lease before the test looks (a bucket built
/// inside one takes its first lease at once).
fn direct(builder: RedisTokenBucketBuilder) -> RedisTokenBucket {
    std::thread::spawn(move || builder.build().expect("a valid bucket")).join().expect("the building thread")
}

fn hget_tokens(server: &RedisServer, key: &str) -> Option<f64> {
    redis::cmd("HGET").arg(key).arg("tokens").query(&mut server.connection()).expect("HGET")
}

/// The server's clock in microseconds.
fn server_micros(server: &RedisServer) -> u64 {
    let (seconds, micros): (u64, u64) = redis::cmd("TIME").query(&mut server.connection()).expect("TIME");
    seconds * 1_000_000 + micros
}

/// Sets the bucket's stored state: `tokens`, last refilled `ago` before the
/// server's now.
fn set_state(server: &RedisServer, key: &str, tokens: f64, ago: Duration) {
    let ts = server_micros(server) - u64::try_from(ago.as_micros()).expect("a short interval");
    let () = redis::cmd("HSET")
        .arg(key)
        .arg("tokens")
        .arg(tokens)
        .arg("ts")
        .arg(ts)
        .query(&mut server.connection())
        .expect("HSET");
}

fn pttl(server: &RedisServer, key: &str) -> i64 {
    redis::cmd("PTTL").arg(key).query(&mut server.connection()).expect("PTTL")
}

/// Takes one token at a time with `try_acquire` until refused.
async fn drain(bucket: &RedisTokenBucket) -> u64 {
    let mut taken = 0;
    while bucket.try_acquire(1).await.expect("Redis answers") {
        taken += 1;
    }
    taken
}

// ---------------------------------------------------------------------------
// A fleet sharing one bucket.

/// When a caller of the fleet stops, given the time since the start, its
/// denials in a row and the fleet's admissions so far.
type Stop = fn(Duration, u32, u64) -> bool;

/// K executors, each with its own bucket on its own connection, hammer one
/// key from `TASKS` tasks each until `stop` says so; returns the total
/// admitted and the buckets.
async fn run_fleet(
    server: &RedisServer,
    key: &str,
    settings: impl Fn(RedisTokenBucketBuilder) -> RedisTokenBucketBuilder,
    stop: Stop,
) -> (u64, Vec<Arc<RedisTokenBucket>>) {
    const K: usize = 4;
    const TASKS: usize = 8;
    let buckets: Vec<_> =
        (0..K).map(|_| Arc::new(settings(bucket(server, key)).build().expect("a valid bucket"))).collect();
    let admitted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for bucket in &buckets {
        let executor = executor(bucket, None);
        for _ in 0..TASKS {
            let (executor, admitted) = (executor.clone(), Arc::clone(&admitted));
            tasks.push(tokio::spawn(async move {
                let mut denied_in_a_row = 0;
                while !stop(start.elapsed(), denied_in_a_row, admitted.load(Ordering::SeqCst)) {
                    if call(&executor).await.admitted {
                        admitted.fetch_add(1, Ordering::SeqCst);
                        denied_in_a_row = 0;
                    } else {
                        denied_in_a_row += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("a caller task");
    }
    (admitted.load(Ordering::SeqCst), buckets)
}

const FLEET_CAPACITY: u64 = 100;
const FLEET_LEASE: u32 = 8;
const FLEET_SIZE: u64 = 4;

fn fleet_settings(builder: RedisTokenBucketBuilder) -> RedisTokenBucketBuilder {
    builder.capacity(FLEET_CAPACITY).lease(FLEET_LEASE).lease_ttl(Duration::from_millis(300))
}

/// Once the fleet is idle its leases expire and go back to Redis on their
/// own, and its debts are repaid from whatever Redis has: a drain (one
/// token per round trip, no lease) then finds exactly what the fleet did
/// not admit, less the debts Redis had no tokens left to repay. No token
/// is lost, none is made up.
async fn drain_the_rest(server: &RedisServer, key: &str, admitted: u64, buckets: &[Arc<RedisTokenBucket>]) {
    let direct = direct(fleet_settings(bucket(server, key)));
    let mut drained = 0;
    let start = Instant::now();
    loop {
        drained += drain(&direct).await;
        // Read after the drain: a debt repaid since took a token the drain
        // would otherwise have found.
        let owed: u64 = buckets.iter().map(|bucket| bucket.owed()).sum();
        let held: u64 = buckets.iter().map(|bucket| bucket.leased()).sum();
        assert!(
            admitted + drained <= FLEET_CAPACITY + owed,
            "tokens made up: admitted {admitted} + drained {drained} > {FLEET_CAPACITY} + owed {owed}"
        );
        // Short of it, tokens are still on their way: a lease being given
        // back, a grant being made.
        if held == 0 && admitted + drained == FLEET_CAPACITY + owed {
            assert!(owed <= FLEET_SIZE * u64::from(FLEET_LEASE), "owed {owed}: more than a lease per process");
            break;
        }
        assert!(
            start.elapsed() < WAIT,
            "admitted {admitted} + drained {drained} != {FLEET_CAPACITY} + owed {owed} with {held} leased after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!direct.try_acquire(1).await.unwrap(), "nothing beyond the capacity");
}

// K = 4 executors, capacity 100, no refill, leases of 8, run until the
// bucket is dry: never more than the capacity plus a lease of credit per
// process, never less than the capacity minus the leases still held; what
// is left comes back, and every token is accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_admits_at_most_the_capacity_and_loses_nothing_beyond_its_leases() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("fleet");
    // Past the first second, a caller stops after 100 denials in a row.
    let (admitted, buckets) = run_fleet(&server, &key, fleet_settings, |elapsed, denied, _| {
        elapsed > WAIT || (elapsed > Duration::from_secs(1) && denied >= 100)
    })
    .await;
    let slack = FLEET_SIZE * u64::from(FLEET_LEASE);
    assert!(admitted <= FLEET_CAPACITY + slack, "the fleet admitted {admitted} > {FLEET_CAPACITY} + {slack}");
    assert!(admitted >= FLEET_CAPACITY - slack, "admitted {admitted}: more lost than the leases hold");
    drain_the_rest(&server, &key, admitted, &buckets).await;
}

// The same fleet stopped halfway, its leases still full: once they expire
// and come back, a drain finds exactly the tokens the fleet did not admit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_stopped_halfway_gives_back_every_token_it_did_not_admit() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("fleet-halfway");
    let (admitted, buckets) =
        run_fleet(&server, &key, fleet_settings, |elapsed, _, admitted| elapsed > WAIT || admitted >= 50).await;
    assert!(admitted <= FLEET_CAPACITY, "the fleet admitted {admitted} > capacity {FLEET_CAPACITY}");
    drain_the_rest(&server, &key, admitted, &buckets).await;
}

// With a refill the fleet stays within capacity + refill × elapsed + K ×
// lease from its start (credit included), and the refill is really used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_with_a_refill_stays_within_the_documented_bound() {
    const CAPACITY: u64 = 50;
    const REFILL: f64 = 100.0;
    const LEASE: u32 = 8;
    const K: f64 = 4.0;
    let server = RedisServer::shared_or_start();
    let key = unique_key("fleet-refill");
    let start = Instant::now();
    let (admitted, _buckets) = run_fleet(
        &server,
        &key,
        |b| b.capacity(CAPACITY).refill_per_sec(REFILL).lease(LEASE).lease_ttl(Duration::from_millis(300)),
        |elapsed, _, _| elapsed > Duration::from_millis(1_500),
    )
    .await;
    let elapsed = start.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let (admitted_f, capacity_f) = (admitted as f64, CAPACITY as f64);
    let bound = capacity_f + REFILL * elapsed + K * f64::from(LEASE);
    assert!(admitted_f <= bound, "admitted {admitted} in {elapsed:.3} s > bound {bound:.1}");
    assert!(admitted > CAPACITY, "the refill admitted more than the first fill ({admitted})");
}

// ---------------------------------------------------------------------------
// Redis away: the failure mode, then recovery.

/// Builds a bucket with `mode` on `server`, warms it up, runs `outage`
/// (which makes Redis unreachable or slow), and calls until the failure
/// mode shows (within the timeout plus [`SLACK`]); returns the executor,
/// the bucket, the observer and the calls decided by the failure mode.
async fn until_the_failure_mode_decides(
    server: &mut RedisServer,
    mode: OnUnavailable,
    outage: impl FnOnce(&mut RedisServer),
) -> (Executor, Arc<RedisTokenBucket>, RecordingObserver, Vec<Verdict>) {
    let timeout = Duration::from_millis(250);
    let key = unique_key(mode.as_str());
    let bucket = Arc::new(
        bucket(server, &key)
            .capacity(1_000)
            .lease(4)
            .lease_ttl(Duration::from_secs(60))
            .timeout(timeout)
            .on_unavailable(mode)
            .fallback(3, 0.0)
            .build()
            .expect("a valid bucket"),
    );
    let observer = RecordingObserver::new();
    let executor = executor(&bucket, Some(observer.clone()));
    until_admitted_by_redis(&executor).await;
    // The first admission may be on credit, before Redis first answered.
    eventually("status Available", || bucket.status() == RedisStatus::Available).await;

    outage(server);
    let outage_began = Instant::now();
    let expected = if mode == OnUnavailable::Fallback { reason::BUDGET_FALLBACK } else { reason::BUDGET_UNAVAILABLE };
    let mut decided = Vec::new();
    loop {
        let verdict = call(&executor).await;
        if verdict.reason == expected {
            decided.push(verdict);
            break;
        }
        // Until then: the lease's last tokens and a lease of credit, then
        // plain denials while the round trip that finds Redis away is young.
        assert!(
            verdict.reason == reason::ALLOWED || verdict.reason == reason::BUDGET_DENIED,
            "unexpected verdict before the failure mode: {verdict:?}"
        );
        assert!(
            outage_began.elapsed() < timeout + SLACK,
            "the failure mode did not decide within {:?}",
            timeout + SLACK
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for _ in 0..4 {
        decided.push(call(&executor).await);
    }
    (executor, bucket, observer, decided)
}

/// What each mode decides, five times in a row.
fn expected_decisions(mode: OnUnavailable) -> Vec<Verdict> {
    let verdict = |admitted, reason: &str| Verdict { admitted, reason: reason.to_owned() };
    match mode {
        OnUnavailable::Deny => vec![verdict(false, reason::BUDGET_UNAVAILABLE); 5],
        OnUnavailable::Allow => vec![verdict(true, reason::BUDGET_UNAVAILABLE); 5],
        // The fallback bucket holds 3 and does not refill.
        OnUnavailable::Fallback => {
            let mut decisions = vec![verdict(true, reason::BUDGET_FALLBACK); 3];
            decisions.extend(vec![verdict(false, reason::BUDGET_FALLBACK); 2]);
            decisions
        }
    }
}

/// After `until_the_failure_mode_decides`: the decisions, the observer's
/// events and the status match the mode. (A round trip older than the
/// timeout already counts as no answer at the gate, a moment before the
/// background task's own timer marks the status.)
async fn assert_decided(
    mode: OnUnavailable,
    bucket: &RedisTokenBucket,
    observer: &RecordingObserver,
    decided: &[Verdict],
) {
    assert_eq!(decided, expected_decisions(mode), "{mode}");
    let events = observer.budget_events();
    let last = events.last().expect("budget events");
    let expected = decided.last().expect("decisions");
    assert_eq!((last.allowed, last.reason.as_ref()), (expected.admitted, expected.reason.as_str()), "{mode}");
    assert_eq!(last.budget, BUDGET);
    assert_eq!(last.mode, "standard", "the budget answered; its own mode is in the reason");
    assert!(!unavailable_error(bucket).await.is_empty(), "{mode}");
}

/// Waits for the status to say Redis is away; its error text.
async fn unavailable_error(bucket: &RedisTokenBucket) -> String {
    let start = Instant::now();
    loop {
        if let RedisStatus::Unavailable { error, .. } = bucket.status() {
            return error;
        }
        assert!(start.elapsed() < WAIT, "status {:?} while Redis is away", bucket.status());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Redis killed mid-run: the mode decides, the observer hears it and the
/// status says why; Redis started again: admissions come from Redis again.
async fn redis_killed_then_back(mode: OnUnavailable) {
    let mut server = RedisServer::start();
    let (executor, bucket, observer, decided) =
        until_the_failure_mode_decides(&mut server, mode, RedisServer::stop).await;
    assert_decided(mode, &bucket, &observer, &decided).await;

    server.restart();
    until_admitted_by_redis(&executor).await;
    eventually("status Available", || bucket.status() == RedisStatus::Available).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_deny_mode_denies_as_budget_unavailable_and_recovers() {
    redis_killed_then_back(OnUnavailable::Deny).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_allow_mode_allows_as_budget_unavailable_and_recovers() {
    redis_killed_then_back(OnUnavailable::Allow).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_fallback_mode_uses_the_local_bucket_and_recovers() {
    redis_killed_then_back(OnUnavailable::Fallback).await;
}

// A paused Redis (every client's commands held, as a server stuck in a
// long command or a failover would) answers nothing within the timeout:
// the failure mode decides as for a dead one, and the bucket recovers when
// the pause ends. The pause outlasts the timeout plus the slack, so the
// failure mode cannot be missed by a slow machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_trips_the_timeout_and_the_bucket_recovers() {
    let pause = Duration::from_millis(250) + SLACK + Duration::from_secs(1);
    let mut server = RedisServer::start();
    let (executor, bucket, observer, decided) =
        until_the_failure_mode_decides(&mut server, OnUnavailable::Deny, |server| {
            let pause_ms = u64::try_from(pause.as_millis()).expect("a short pause");
            let () = redis::cmd("CLIENT")
                .arg("PAUSE")
                .arg(pause_ms)
                .arg("ALL")
                .query(&mut server.connection())
                .expect("CLIENT PAUSE");
        })
        .await;
    assert_decided(OnUnavailable::Deny, &bucket, &observer, &decided).await;
    let error = unavailable_error(&bucket).await;
    assert!(error.contains("timeout") || error.contains("timed out"), "{error}");

    until_admitted_by_redis(&executor).await;
    eventually("status Available", || bucket.status() == RedisStatus::Available).await;
}

// ---------------------------------------------------------------------------
// Leases.

// A takes a lease of 8 (Redis keeps 12 of 20), spends 3 and goes idle:
// after its lifetime the 5 unspent tokens are back in Redis without any
// demand (a busy lease is renewed once, then returned), and another client
// can take all 17.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_gives_its_tokens_back() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("lease-return");
    let a = bucket(&server, &key).capacity(20).lease(8).lease_ttl(Duration::from_secs(1)).build().unwrap();
    eventually("the first lease", || a.leased() == 8).await;
    assert_eq!(hget_tokens(&server, &key), Some(12.0), "8 of 20 leased");
    let (key_, one) = (PolicyKey::from("svc.Op"), BudgetRef::named(BUDGET));
    for attempt in 0..3 {
        assert!(a.allow_attempt(&key_, attempt, AttemptKind::Retry, &one).allowed());
    }
    assert_eq!(a.leased(), 5, "still above the low-water mark: no top-up");

    eventually("the unspent lease back in Redis", || a.leased() == 0 && hget_tokens(&server, &key) == Some(17.0)).await;
    assert!(a.try_acquire(17).await.unwrap(), "the returned tokens are anyone's");
    assert!(!a.try_acquire(1).await.unwrap());
}

// A cost larger than the lease size grows the lease, and the credit limit,
// to fit it: with a lease of 2 in hand (98 left in Redis), a cost of 5 is
// admitted, on credit (3 owed, repaid with a lease of 5 by the next round
// trip) or by a grant its own demand brought in time; a second such
// attempt is admitted too, and every token stays accounted for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cost_above_the_lease_size_is_served_by_a_larger_lease() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("large-cost");
    let bucket = bucket(&server, &key).capacity(100).lease(2).lease_ttl(Duration::from_secs(60)).build().unwrap();
    let (policy_key, five) = (PolicyKey::from("svc.Op"), BudgetRef { cost: 5, ..BudgetRef::named(BUDGET) });
    eventually("the first lease", || bucket.leased() == 2 && bucket.status() == RedisStatus::Available).await;
    let decision = bucket.allow_attempt(&policy_key, 0, AttemptKind::Retry, &five);
    assert_eq!((decision.allowed(), decision.reason()), (true, reason::ALLOWED), "admitted on credit");
    // Either the credit was taken and the next grant paid it and filled a
    // lease of 5 (8 taken), or the gate's demand reached the task first and
    // its grant of 3 paid the attempt outright (nothing owed, nothing left).
    let state = || (bucket.owed(), bucket.leased(), hget_tokens(&server, &key));
    let start = Instant::now();
    while !matches!(state(), (0, 5, Some(90.0)) | (0, 0, Some(95.0))) {
        let now = state();
        assert!(start.elapsed() < WAIT, "the debt repaid: (owed, leased, in Redis) = {now:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(bucket.allow_attempt(&policy_key, 1, AttemptKind::Retry, &five).allowed());
    // Every token Redis gave is admitted, in hand, or owed back to it.
    let accounted = || {
        let in_redis = hget_tokens(&server, &key).expect("the bucket's hash");
        let small = |n: u64| f64::from(u32::try_from(n).expect("a few tokens"));
        let (leased, owed) = (bucket.leased(), bucket.owed());
        ((100.0 - in_redis) - (10.0 + small(leased) - small(owed))).abs() < 1e-9 && owed <= 5
    };
    eventually("every token accounted for", accounted).await;
}

// Credit: a process idle for longer than its lease's lifetime has given its
// lease back (Redis holds all 20 again). Its next attempt must not wait for
// the round trip that fetches a new lease: it is admitted on credit, with
// the standard reason, and the grant that follows pays the token owed
// first (9 taken: a lease of 8 and the debt of 1). Once the new lease goes
// back too, Redis holds 19: one token per admission, none lost. (Each
// state is checked either way of the lease's return: a slow machine may
// look only after it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_process_is_admitted_on_credit_and_the_next_grant_repays_it() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("idle-credit");
    let bucket =
        Arc::new(bucket(&server, &key).capacity(20).lease(8).lease_ttl(Duration::from_secs(1)).build().unwrap());
    let executor = executor(&bucket, None);
    // The key is absent until the first lease is taken.
    eventually("the idle lease back in Redis", || bucket.leased() == 0 && hget_tokens(&server, &key) == Some(20.0))
        .await;

    let verdict = call(&executor).await;
    assert_eq!(
        verdict,
        Verdict { admitted: true, reason: reason::ALLOWED.to_owned() },
        "the first attempt after idling"
    );
    assert!(bucket.owed() <= 1, "owed {}", bucket.owed());
    eventually("the debt repaid from the next grant", || {
        let leased = bucket.leased();
        #[allow(clippy::cast_precision_loss, reason = "a lease of 8")]
        let expected = 19.0 - leased as f64;
        bucket.owed() == 0 && (leased == 8 || leased == 0) && hget_tokens(&server, &key) == Some(expected)
    })
    .await;
    eventually("the new lease back in Redis", || bucket.leased() == 0 && hget_tokens(&server, &key) == Some(19.0))
        .await;
}

// When Redis last answered that the shared bucket is empty, a dry lease is
// denied and no credit is taken: Redis holds 3 of 20, the first lease gets
// those 3 (a short answer), and once they are spent every attempt is
// denied with the standard reason while nothing is owed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bucket_redis_says_is_empty_gives_no_credit() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("empty-no-credit");
    set_state(&server, &key, 3.0, Duration::ZERO);
    let bucket =
        Arc::new(bucket(&server, &key).capacity(20).lease(8).lease_ttl(Duration::from_secs(60)).build().unwrap());
    let executor = executor(&bucket, None);
    // The status is set after the state the gate reads.
    eventually("the short first lease", || bucket.leased() == 3 && bucket.status() == RedisStatus::Available).await;
    let allowed = Verdict { admitted: true, reason: reason::ALLOWED.to_owned() };
    let denied = Verdict { admitted: false, reason: reason::BUDGET_DENIED.to_owned() };
    for _ in 0..3 {
        assert_eq!(call(&executor).await, allowed);
    }
    for _ in 0..5 {
        assert_eq!(call(&executor).await, denied, "no credit against an empty bucket");
    }
    assert_eq!((bucket.leased(), bucket.owed()), (0, 0));
    assert_eq!(hget_tokens(&server, &key), Some(0.0));
}

// A debt Redis cannot repay is kept and repaid from a later grant. Redis is
// emptied behind the process's back (20 of 20 gone), then paused so the
// top-up the spending triggers is in flight, young, when the lease runs
// dry: the bucket is in good standing, so a lease of credit (8) is taken,
// and the attempt after it is denied. The top-up answers empty: the debt
// stays and the bucket gives no more credit. When tokens come back (others
// return 20), the next round trip asks for a lease plus the debt: 16
// (4 left in Redis, or 12 once the new lease goes back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_debt_redis_cannot_repay_is_kept_until_a_later_grant() {
    let server = RedisServer::start();
    let key = unique_key("kept-debt");
    // Longer than the pause: the round trip in flight stays young.
    // No refill: after the short answer the task asks again a lease's
    // lifetime later.
    let bucket = bucket(&server, &key)
        .capacity(20)
        .lease(8)
        .lease_ttl(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (policy_key, one) = (PolicyKey::from("svc.Op"), BudgetRef::named(BUDGET));
    let mut attempt = 0;
    let mut take = || {
        attempt += 1;
        let decision = bucket.allow_attempt(&policy_key, attempt, AttemptKind::Retry, &one);
        (decision.allowed(), decision.reason().to_owned())
    };
    eventually("the first lease", || bucket.leased() == 8 && bucket.status() == RedisStatus::Available).await;
    set_state(&server, &key, 0.0, Duration::ZERO);
    let () = redis::cmd("CLIENT").arg("PAUSE").arg(2_000).arg("ALL").query(&mut server.connection()).expect("PAUSE");
    for _ in 0..16 {
        assert_eq!(take(), (true, reason::ALLOWED.to_owned()), "the lease, then credit");
    }
    assert_eq!(take(), (false, reason::BUDGET_DENIED.to_owned()), "a whole lease owed");
    assert_eq!(bucket.owed(), 8);

    // Answered once the pause is over (this command waits for it too).
    assert_eq!(hget_tokens(&server, &key), Some(0.0));
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(500) {
        assert_eq!(take(), (false, reason::BUDGET_DENIED.to_owned()));
        assert_eq!(bucket.owed(), 8, "the debt is kept");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    set_state(&server, &key, 20.0, Duration::ZERO);
    eventually("the debt repaid from a later grant", || {
        let leased = bucket.leased();
        #[allow(clippy::cast_precision_loss, reason = "a lease of 8")]
        let expected = 12.0 - leased as f64;
        bucket.owed() == 0 && (leased == 8 || leased == 0) && hget_tokens(&server, &key) == Some(expected)
    })
    .await;
    assert_eq!(take(), (true, reason::ALLOWED.to_owned()));
}

// Dropping the bucket returns its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_bucket_returns_its_lease() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("drop");
    let bucket = bucket(&server, &key).capacity(10).lease(6).lease_ttl(Duration::from_secs(60)).build().unwrap();
    eventually("the first lease", || bucket.leased() == 6).await;
    assert_eq!(hget_tokens(&server, &key), Some(4.0));
    drop(bucket);
    eventually("the lease returned", || hget_tokens(&server, &key) == Some(10.0)).await;
}

// ---------------------------------------------------------------------------
// The script, `try_acquire`, settings.

// `try_acquire` takes all or nothing, straight from Redis; a cost of 0
// counts as 1; an absent key is a full bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn try_acquire_takes_all_or_nothing() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("try-acquire");
    let bucket = direct(bucket(&server, &key).capacity(5));
    assert!(bucket.try_acquire(3).await.unwrap(), "an absent key is a full bucket");
    assert!(!bucket.try_acquire(3).await.unwrap(), "two left: all or nothing");
    assert_eq!(hget_tokens(&server, &key), Some(2.0), "a refusal takes nothing");
    assert!(bucket.try_acquire(2).await.unwrap());
    assert!(!bucket.try_acquire(0).await.unwrap(), "a cost of 0 counts as 1");
    assert!(!bucket.try_acquire(u32::MAX).await.unwrap());
}

// The refill runs on the server's clock, keeps fractions, stops at the
// capacity; a refused take still stores the refilled state. The rate is
// tiny so the time between setting the state and running the script
// cannot move the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_refills_over_time_keeps_fractions_and_caps_at_capacity() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("refill");
    // One token per 100 s.
    let bucket = direct(bucket(&server, &key).capacity(10).refill_per_sec(0.01));
    set_state(&server, &key, 0.0, Duration::from_secs(250));
    assert!(!bucket.try_acquire(3).await.unwrap(), "250 s at 0.01/s is 2.5 tokens");
    assert!(bucket.try_acquire(2).await.unwrap());
    let left = hget_tokens(&server, &key).expect("state");
    assert!((0.5..0.6).contains(&left), "the half token is kept: {left}");
    set_state(&server, &key, 0.5, Duration::from_secs(50));
    assert!(bucket.try_acquire(1).await.unwrap(), "half a token and 50 s of refill make one");

    set_state(&server, &key, 0.0, Duration::from_secs(1_000_000));
    assert!(!bucket.try_acquire(11).await.unwrap(), "capped at the capacity");
    assert_eq!(hget_tokens(&server, &key), Some(10.0), "the refused take stored the refilled state");
    assert!(bucket.try_acquire(10).await.unwrap());

    // The key expires when the bucket would be full again: 10 tokens at
    // 0.01/s is 1000 s, plus a second of margin.
    let ttl = pttl(&server, &key);
    assert!((990_000..=1_001_000).contains(&ttl), "PTTL {ttl}");
}

// Without a refill the key never expires: it is the only memory of what
// was spent. Hostile refills (NaN, infinite, negative) mean no refill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_refill_the_key_persists_and_hostile_rates_mean_none() {
    let server = RedisServer::shared_or_start();
    for rate in [0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -5.0] {
        let key = unique_key("no-refill");
        let bucket = direct(bucket(&server, &key).capacity(2).refill_per_sec(rate));
        assert!(bucket.try_acquire(2).await.unwrap());
        set_state(&server, &key, 0.0, Duration::from_secs(3_600));
        assert!(!bucket.try_acquire(1).await.unwrap(), "rate {rate}: an hour refilled nothing");
        assert_eq!(pttl(&server, &key), -1, "rate {rate}: no expiry");
    }
}

// Tokens given back never raise the bucket above its capacity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returned_tokens_are_capped_at_the_capacity() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("return-cap");
    let bucket = bucket(&server, &key).capacity(10).lease(8).lease_ttl(Duration::from_secs(1)).build().unwrap();
    eventually("the first lease", || bucket.leased() == 8).await;
    // Meanwhile others gave back 7 of their own: 9 in Redis.
    set_state(&server, &key, 9.0, Duration::ZERO);
    eventually("the lease returned", || bucket.leased() == 0 && hget_tokens(&server, &key) == Some(10.0)).await;
}

// Leases are at least one token; a refill of 0 is no refill.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_of_zero_is_one_token() {
    let server = RedisServer::shared_or_start();
    let key = unique_key("lease-zero");
    let bucket = bucket(&server, &key).capacity(5).lease(0).build().unwrap();
    eventually("the first lease", || bucket.leased() == 1).await;
    assert_eq!(hget_tokens(&server, &key), Some(4.0));
}

#[test]
fn a_bad_url_or_key_is_a_clear_error() {
    for url in ["not a url", "http://127.0.0.1:6379", "redis://127.0.0.1:notaport", ""] {
        let error = RedisTokenBucket::builder(url, "k").build().unwrap_err();
        assert!(matches!(error, RedisBudgetError::InvalidUrl(_)), "{url}: {error:?}");
        assert!(error.to_string().starts_with("invalid Redis URL: "), "{error}");
    }
    let error = RedisTokenBucket::builder("redis://127.0.0.1", " ").build().unwrap_err();
    assert!(matches!(error, RedisBudgetError::EmptyKey));
    assert_eq!(error.to_string(), "the Redis key of a budget cannot be empty");
}

/// Polls `future` once with no runtime around.
fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
    let mut future = pin!(future);
    future.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

// Built and used outside any tokio runtime, the bucket cannot reach Redis:
// it says so, the failure mode decides, and `try_acquire` is an error.
#[test]
fn with_no_runtime_the_bucket_is_unavailable() {
    let (policy_key, one) = (PolicyKey::from("svc.Op"), BudgetRef::named(BUDGET));
    for (mode, admitted, why) in [
        (OnUnavailable::Deny, false, reason::BUDGET_UNAVAILABLE),
        (OnUnavailable::Allow, true, reason::BUDGET_UNAVAILABLE),
        (OnUnavailable::Fallback, true, reason::BUDGET_FALLBACK),
    ] {
        let bucket = RedisTokenBucket::builder("redis://127.0.0.1:1", "k").on_unavailable(mode).build().unwrap();
        assert!(matches!(bucket.status(), RedisStatus::Unavailable { .. }), "{mode}");
        let decision = bucket.allow_attempt(&policy_key, 0, AttemptKind::Retry, &one);
        assert_eq!((decision.allowed(), decision.reason()), (admitted, why), "{mode}");
        assert!(matches!(poll_once(bucket.try_acquire(1)), Poll::Ready(Err(RedisBudgetError::NoRuntime))));
    }
}

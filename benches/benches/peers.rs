//! recourse against its peers, side by side in one run, on the same trivial
//! operation: the direct call, a hand-written retry loop, backon, tower's
//! retry (with and without `TpsBudget`), tokio-retry2 and tower's hedge.
//!
//! `cargo bench -p recourse-benches --bench peers`
//! (`RECOURSE_BENCH_QUICK=1` for a fast, noisier pass)
//!
//! Scenarios:
//! * S1: one attempt succeeds, no retry.
//! * S2: two failures, then success; every system's sleep is bypassed by its
//!   own hook (tokio's timer rounds every sleep up to 1 ms, so real sleeps
//!   would measure the timer, not the library).
//! * S3: 64 tasks on a 2-worker runtime through one shared wrapper, with and
//!   without a budget; the figure is wall time per call overall.
//! * S4: hedging armed (the hedge would fire after 100 ms), the primary wins.
//! * S5: a call with its timeline captured.
//! * S6: the `#[recourse]` macro form against the `Executor::call` forms.
//! * S7: S1's call with the `tracing` observer installed: no subscriber, a
//!   subscriber interested in nothing, and one that takes every span and
//!   event and drops them.
//!
//! Each batch of calls is one `block_on` on a current-thread runtime (S3: a
//! 2-worker multi-thread runtime), so the runtime's cost is amortized.
//!
//! Arguments: `-- S4` runs one scenario (`S3B`: the budgets alone), `-- sizes`
//! prints the call futures' sizes; `PEERS_ROW=<text>` measures only the rows
//! whose name contains the text, `PEERS_ROW='<name>$'` only the row with
//! exactly that name (to profile one system under callgrind or perf). The
//! results and the profiles are in `BENCHMARKS.md`.

#![allow(missing_docs, reason = "a bench binary")]
#![allow(clippy::cast_precision_loss, reason = "iteration counts and ratios")]

use std::fmt;
use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use recourse::budget::TokenBucket;
use recourse::{Classifier, Executor, Policy, recourse};
use recourse_benches::{Config, Measurement, NoSleep, measure};
use tokio::runtime::Runtime;
use tokio_retry2::strategy::{ExponentialBackoff, FixedInterval};
use tokio_retry2::{Retry as TokioRetry, RetryError};
use tower::hedge::Hedge;
use tower::retry::Retry as TowerRetry;
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::{Service, ServiceExt, service_fn};
use tracing_subscriber::layer::SubscriberExt as _;

#[global_allocator]
static GLOBAL: &recourse_benches::Allocator = &recourse_benches::ALLOCATOR;

/// Tasks sharing one wrapper in S3.
const TASKS: u64 = 64;

// ---------------------------------------------------------------------------
// The operation
// ---------------------------------------------------------------------------

/// The operation's error: one retryable failure, plus recourse's own errors.
#[derive(Debug, Classifier)]
enum BenchError {
    #[classify(retryable)]
    Transient,
    Recourse(recourse::Error),
}

impl BenchError {
    fn is_transient(&self) -> bool {
        matches!(self, Self::Transient)
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Transient => f.write_str("transient"),
            Self::Recourse(e) => write!(f, "recourse: {e}"),
        }
    }
}

impl std::error::Error for BenchError {}

impl From<recourse::Error> for BenchError {
    fn from(error: recourse::Error) -> Self {
        Self::Recourse(error)
    }
}

/// The operation every system wraps: succeeds at once.
async fn op(x: u64) -> Result<u64, BenchError> {
    Ok(black_box(x))
}

/// Attempts made by [`flaky`], across calls.
static FLAKY: AtomicU64 = AtomicU64::new(0);

/// S2's operation: every call fails twice, then succeeds, as long as each
/// call retries until it succeeds (which [`ok`] checks: a call that gives up
/// early returns an error and the benchmark panics).
async fn flaky(x: u64) -> Result<u64, BenchError> {
    let n = FLAKY.load(Ordering::Relaxed);
    FLAKY.store(n + 1, Ordering::Relaxed);
    if n % 3 == 2 { Ok(black_box(x)) } else { Err(BenchError::Transient) }
}

/// Unwraps a call's result without formatting code on the hot path.
#[inline]
fn ok<T, E>(result: Result<T, E>) -> T {
    match result {
        Ok(value) => black_box(value),
        Err(_) => failed(),
    }
}

#[cold]
#[inline(never)]
fn failed() -> ! {
    panic!("a benchmarked call failed: the scenario is set up wrong")
}

// ---------------------------------------------------------------------------
// Sleep bypasses and peer policies
// ---------------------------------------------------------------------------

/// A hand-written retry loop: up to `max` attempts, retrying transient
/// errors, sleep bypassed.
async fn hand_retry<F, Fut>(max: u32, mut attempt: F) -> Result<u64, BenchError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, BenchError>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if e.is_transient() && n < max => n += 1,
            Err(e) => return Err(e),
        }
    }
}

/// tower's retry policy: up to `retries` retries of transient errors; the
/// backoff is a ready future (tower's own hook: the policy returns the
/// future to wait on).
#[derive(Clone, Copy)]
struct TowerAttempts {
    retries: u32,
}

impl tower::retry::Policy<u64, u64, BenchError> for TowerAttempts {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, BenchError>) -> Option<Self::Future> {
        match result {
            Err(e) if e.is_transient() && self.retries > 0 => {
                self.retries -= 1;
                Some(std::future::ready(()))
            }
            _ => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower's retry policy with a `TpsBudget`, as tower documents it: every
/// success deposits, every retry withdraws.
#[derive(Clone)]
struct TowerBudgeted {
    retries: u32,
    budget: Arc<TpsBudget>,
}

impl tower::retry::Policy<u64, u64, BenchError> for TowerBudgeted {
    type Future = std::future::Ready<()>;

    fn retry(&mut self, _: &mut u64, result: &mut Result<u64, BenchError>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(e) if e.is_transient() && self.retries > 0 && self.budget.withdraw() => {
                self.retries -= 1;
                Some(std::future::ready(()))
            }
            Err(_) => None,
        }
    }

    fn clone_request(&mut self, req: &u64) -> Option<u64> {
        Some(*req)
    }
}

/// tower's hedge policy: every request may be hedged.
#[derive(Clone, Copy)]
struct TowerHedgeAll;

impl tower::hedge::Policy<u64> for TowerHedgeAll {
    fn clone_request(&self, req: &u64) -> Option<u64> {
        Some(*req)
    }

    fn can_retry(&self, _: &u64) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------
// recourse set-up
// ---------------------------------------------------------------------------

/// The S1/S3/S5/S6 envelope: three attempts, the default 10 ms → 250 ms ×2
/// backoff without jitter, no deadlines (the peers have none either).
fn plain(key: &'static str) -> Policy {
    Policy::builder(key).max_attempts(3).build()
}

fn executor(sleeper: bool) -> Executor {
    let mut builder = Executor::builder()
        .policy(plain("bench.Plain"))
        .policy(plain("bench.Flaky"))
        .policy(plain("bench.Shared"))
        .policy(Policy::builder("bench.Budgeted").max_attempts(3).budget("bench").build())
        .policy(
            Policy::builder("bench.Hedged")
                .max_attempts(3)
                .max_hedges(1)
                .hedge_delay(Duration::from_millis(100))
                .build(),
        )
        .policy(plain("bench.Timeline"))
        .policy(plain("bench.Macro"))
        // Never runs dry: the refill outpaces any benchmark (as in `budget.rs`).
        .budget("bench", TokenBucket::new(1 << 40, 1e15));
    if sleeper {
        builder = builder.sleeper(NoSleep);
    }
    builder.build()
}

/// S1's macro form; the body is the same operation.
#[recourse(policy = "bench.Macro", executor = exec)]
async fn macro_form(exec: &Executor, x: u64) -> Result<u64, BenchError> {
    op(x).await
}

/// S6's macro form: the same function as [`macro_form`], with a call site
/// of its own, like every function it is compared with (the compiler
/// inlines a function called from one place more readily than one called
/// from two, which alone moved this row by 25 %).
#[recourse(policy = "bench.Macro", executor = exec)]
async fn macro_form_s6(exec: &Executor, x: u64) -> Result<u64, BenchError> {
    op(x).await
}

/// S6's function form wrapped in an `async fn` of the same shape as
/// [`macro_form`], to tell the cost of the function layer from the macro's.
async fn function_form(exec: &Executor, x: u64) -> Result<u64, BenchError> {
    exec.call(recourse::key!("bench.Macro"), || op(x)).await
}

/// What `#[recourse]` expands [`macro_form`] to, written by hand: the
/// function's body becomes each attempt's `async` block.
async fn by_hand(exec: &Executor, x: u64) -> Result<u64, BenchError> {
    exec.call(recourse::key!("bench.Macro"), move || async move { op(x).await }).await
}

/// S2 through the macro form (flaky operation, no-op sleeper).
#[recourse(policy = "bench.Flaky", executor = exec)]
async fn macro_flaky(exec: &Executor, x: u64) -> Result<u64, BenchError> {
    flaky(x).await
}

// ---------------------------------------------------------------------------
// Harness glue
// ---------------------------------------------------------------------------

fn current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime")
}

fn paused_current_thread() -> Runtime {
    tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().expect("a runtime")
}

fn two_workers() -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().expect("a runtime")
}

/// A batch of `n` sequential calls in one `block_on`.
macro_rules! batch {
    ($rt:expr, |$i:ident| $call:expr) => {
        |n: u64| {
            $rt.block_on(async {
                for $i in 0..n {
                    ok($call);
                }
            })
        }
    };
}

/// A batch of `n` calls spread over `TASKS` tasks, each with its own clone
/// of the shared wrapper.
macro_rules! contended {
    ($rt:expr, $wrapper:expr, |$w:ident, $i:ident| $call:expr) => {
        |n: u64| {
            $rt.block_on(async {
                let handles: Vec<_> = (0..TASKS)
                    .map(|t| {
                        #[allow(
                            unused_mut,
                            clippy::redundant_clone,
                            clippy::clone_on_copy,
                            clippy::let_unit_value,
                            reason = "wrappers are `()`, `Copy` builders or services called through `&mut`"
                        )]
                        let mut $w = $wrapper.clone();
                        let calls = n / TASKS + u64::from(t < n % TASKS);
                        tokio::spawn(async move {
                            for $i in 0..calls {
                                ok($call);
                            }
                        })
                    })
                    .collect();
                for handle in handles {
                    handle.await.expect("a benchmark task");
                }
            })
        }
    };
}

/// One call through a tower service, readiness first (as the contract asks).
async fn tower_call<S: Service<u64>>(svc: &mut S, i: u64) -> Result<S::Response, S::Error> {
    svc.ready().await?.call(i).await
}

/// One scenario's rows, with the rows the ratios are taken against.
struct Table {
    title: &'static str,
    rows: Vec<Measurement>,
    direct: &'static str,
    recourse: &'static str,
}

impl Table {
    fn new(title: &'static str, direct: &'static str, recourse: &'static str) -> Self {
        Self { title, rows: Vec::new(), direct, recourse }
    }

    fn add(&mut self, name: &str, config: Config, op: impl FnMut(u64)) {
        // `PEERS_ROW=<text>`: measure only the rows whose name contains it,
        // `<name>$`: only the row with that name (to profile one system,
        // e.g. under callgrind).
        if std::env::var("PEERS_ROW").is_ok_and(|only| {
            if let Some(exact) = only.strip_suffix('$') { name != exact } else { !name.contains(&only) }
        }) {
            return;
        }
        let row = measure(name, config, op);
        eprintln!("  {:<58} {:>10.1} ns/op {:>6.2} allocs/op", row.name, row.median_ns, row.allocs_per_op);
        self.rows.push(row);
    }

    fn get(&self, name: &str) -> &Measurement {
        self.rows.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no row {name}"))
    }

    fn print(&self) {
        let median = |name| self.rows.iter().find(|r| r.name == name).map_or(f64::NAN, |r| r.median_ns);
        let (direct, recourse) = (median(self.direct), median(self.recourse));
        println!("\n### {}\n", self.title);
        println!("| system | median ns/op | p10 – p90 | allocs/op | overhead ns | × direct | × recourse |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for r in &self.rows {
            println!(
                "| {} | {:.1} | {:.1} – {:.1} | {:.2} | {:.1} | {:.2} | {:.2} |",
                r.name,
                r.median_ns,
                r.p10_ns,
                r.p90_ns,
                r.allocs_per_op,
                r.median_ns - direct,
                r.median_ns / direct,
                r.median_ns / recourse
            );
        }
        println!("\n(× recourse: against `{}`.)", self.recourse);
    }
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

fn s1(config: Config) -> Table {
    let rt = current_thread();
    let exec = executor(false);
    let mut t = Table::new("S1: success, no retry", "direct call", "recourse, key!");
    eprintln!("S1");
    t.add("direct call", config, batch!(rt, |i| op(i).await));
    t.add("hand-written retry loop", config, batch!(rt, |i| hand_retry(3, || op(i)).await));
    t.add("recourse, key!", config, batch!(rt, |i| exec.call(recourse::key!("bench.Plain"), || op(i)).await));
    t.add("recourse, \"str\" key", config, batch!(rt, |i| exec.call("bench.Plain", || op(i)).await));
    t.add("recourse, #[recourse]", config, batch!(rt, |i| macro_form(&exec, i).await));
    let backoff = ExponentialBuilder::default().with_max_times(2);
    t.add("backon", config, batch!(rt, |i| (|| op(i)).retry(backoff).when(BenchError::is_transient).await));
    t.add(
        "tokio-retry2",
        config,
        batch!(rt, |i| TokioRetry::spawn(ExponentialBackoff::from_millis(10).take(2), || async move {
            op(i).await.map_err(RetryError::transient)
        })
        .await),
    );
    let mut tower = TowerRetry::new(TowerAttempts { retries: 2 }, service_fn(op));
    t.add("tower retry", config, batch!(rt, |i| tower_call(&mut tower, i).await));
    let budget = Arc::new(TpsBudget::default());
    let mut tower = TowerRetry::new(TowerBudgeted { retries: 2, budget }, service_fn(op));
    t.add("tower retry + TpsBudget", config, batch!(rt, |i| tower_call(&mut tower, i).await));
    t
}

fn s2(config: Config) -> Table {
    let rt = current_thread();
    let exec = executor(true);
    let mut t = Table::new("S2: two failures, then success (sleeps bypassed)", "direct call ×3", "recourse, key!");
    eprintln!("S2");
    t.add(
        "direct call ×3",
        config,
        batch!(rt, |i| {
            let _ = black_box(flaky(i).await);
            let _ = black_box(flaky(i).await);
            flaky(i).await
        }),
    );
    t.add("hand-written retry loop", config, batch!(rt, |i| hand_retry(3, || flaky(i)).await));
    t.add("recourse, key!", config, batch!(rt, |i| exec.call(recourse::key!("bench.Flaky"), || flaky(i)).await));
    t.add("recourse, \"str\" key", config, batch!(rt, |i| exec.call("bench.Flaky", || flaky(i)).await));
    t.add("recourse, #[recourse]", config, batch!(rt, |i| macro_flaky(&exec, i).await));
    let backoff = ExponentialBuilder::default().with_max_times(2);
    t.add(
        "backon",
        config,
        batch!(rt, |i| (|| flaky(i))
            .retry(backoff)
            .sleep(|_| std::future::ready(()))
            .when(BenchError::is_transient)
            .await),
    );
    let mut tower = TowerRetry::new(TowerAttempts { retries: 2 }, service_fn(flaky));
    t.add("tower retry", config, batch!(rt, |i| tower_call(&mut tower, i).await));
    let budget = Arc::new(TpsBudget::new(Duration::from_secs(10), 1_000_000, 10.0));
    let mut tower = TowerRetry::new(TowerBudgeted { retries: 2, budget }, service_fn(flaky));
    t.add("tower retry + TpsBudget", config, batch!(rt, |i| tower_call(&mut tower, i).await));
    // tokio-retry2 has no sleeper hook: its zero sleeps still go through
    // tokio's timer. A paused clock auto-advances instead of waiting.
    let paused = paused_current_thread();
    t.add(
        "tokio-retry2 (0 ms sleeps, paused clock)",
        config,
        batch!(paused, |i| TokioRetry::spawn(FixedInterval::from_millis(0).take(2), || async move {
            flaky(i).await.map_err(RetryError::transient)
        })
        .await),
    );
    t.add(
        "tokio-retry2 (0 ms sleeps, real timer)",
        config,
        batch!(rt, |i| TokioRetry::spawn(FixedInterval::from_millis(0).take(2), || async move {
            flaky(i).await.map_err(RetryError::transient)
        })
        .await),
    );
    t
}

fn s3(config: Config) -> Table {
    let rt = two_workers();
    let exec = executor(false);
    let mut t = Table::new(
        "S3: 64 tasks, 2 workers, one shared wrapper (wall ns per call)",
        "direct call",
        "recourse, key!, token bucket",
    );
    eprintln!("S3");
    t.add("direct call", config, contended!(rt, (), |_w, i| op(i).await));
    t.add(
        "recourse, key!",
        config,
        contended!(rt, exec, |w, i| w.call(recourse::key!("bench.Shared"), || op(i)).await),
    );
    t.add(
        "recourse, key!, token bucket",
        config,
        contended!(rt, exec, |w, i| w.call(recourse::key!("bench.Budgeted"), || op(i)).await),
    );
    t.add(
        "recourse, \"str\" key, token bucket",
        config,
        contended!(rt, exec, |w, i| w.call("bench.Budgeted", || op(i)).await),
    );
    let backoff = ExponentialBuilder::default().with_max_times(2);
    t.add("backon", config, contended!(rt, backoff, |w, i| (|| op(i)).retry(w).when(BenchError::is_transient).await));
    t.add(
        "tokio-retry2",
        config,
        contended!(rt, (), |_w, i| TokioRetry::spawn(ExponentialBackoff::from_millis(10).take(2), || async move {
            op(i).await.map_err(RetryError::transient)
        })
        .await),
    );
    let tower = TowerRetry::new(TowerAttempts { retries: 2 }, service_fn(op));
    t.add("tower retry", config, contended!(rt, tower, |w, i| tower_call(&mut w, i).await));
    let budget = Arc::new(TpsBudget::default());
    let tower = TowerRetry::new(TowerBudgeted { retries: 2, budget }, service_fn(op));
    t.add("tower retry + TpsBudget", config, contended!(rt, tower, |w, i| tower_call(&mut w, i).await));
    t
}

/// The two budgets alone, without any retry machinery: one decision per
/// operation from 1 thread, then from 2 threads at once (wall time per
/// decision per thread, as in `budget.rs`).
fn s3_budgets(config: Config) -> Table {
    use recourse::budget::{AttemptKind, Budget as _};
    use recourse::policy::{BudgetRef, PolicyKey};

    fn threads(n: u64, threads: usize, decide: &(impl Fn(u64) + Sync)) {
        let barrier = std::sync::Barrier::new(threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    barrier.wait();
                    for i in 0..n {
                        decide(i);
                    }
                });
            }
        });
    }

    let mut t = Table::new(
        "S3, the budgets alone: one decision per operation (ns per decision per thread)",
        "token bucket allow_attempt, 1 thread",
        "token bucket allow_attempt, 1 thread",
    );
    eprintln!("S3 budgets");
    let key = PolicyKey::parse("bench.Budgeted");
    let cost = BudgetRef::named("bench");
    let bucket = TokenBucket::new(1 << 40, 1e15);
    let take = |_: u64| {
        black_box(bucket.allow_attempt(&key, black_box(0), AttemptKind::Retry, &cost).allowed());
    };
    let tps = TpsBudget::default();
    let deposit = |_: u64| tps.deposit();
    let generous = TpsBudget::new(Duration::from_secs(10), 1_000_000, 1000.0);
    let withdraw = |_: u64| {
        black_box(generous.withdraw());
    };
    t.add("token bucket allow_attempt, 1 thread", config, |n| threads(n, 1, &take));
    t.add("token bucket allow_attempt, 2 threads", config, |n| threads(n, 2, &take));
    t.add("TpsBudget deposit, 1 thread", config, |n| threads(n, 1, &deposit));
    t.add("TpsBudget deposit, 2 threads", config, |n| threads(n, 2, &deposit));
    t.add("TpsBudget withdraw, 1 thread", config, |n| threads(n, 1, &withdraw));
    t.add("TpsBudget withdraw, 2 threads", config, |n| threads(n, 2, &withdraw));
    t
}

fn s4(config: Config) -> Table {
    let rt = current_thread();
    let exec = executor(false);
    let mut t = Table::new("S4: hedging armed, primary wins", "direct call", "recourse, key!, hedged");
    eprintln!("S4");
    t.add("direct call", config, batch!(rt, |i| op(i).await));
    t.add(
        "recourse, key!, no hedging",
        config,
        batch!(rt, |i| exec.call(recourse::key!("bench.Plain"), || op(i)).await),
    );
    t.add("recourse, key!, hedged", config, batch!(rt, |i| exec.call(recourse::key!("bench.Hedged"), || op(i)).await));
    t.add("recourse, \"str\" key, hedged", config, batch!(rt, |i| exec.call("bench.Hedged", || op(i)).await));
    // Armed: the latency histogram already holds enough samples (100 ms
    // each), so every request gets a hedge delayed by their p90 = 100 ms.
    let mut hedge =
        Hedge::new_with_mock_latencies(service_fn(op), TowerHedgeAll, 10, 0.9, Duration::from_secs(3600), &[100; 100]);
    t.add("tower hedge", config, batch!(rt, |i| tower_call(&mut hedge, i).await));
    t
}

fn s5(config: Config) -> Table {
    let rt = current_thread();
    let exec = executor(false);
    let flaky_exec = executor(true);
    let mut t = Table::new("S5: a call with its timeline captured", "direct call", "recourse, key!, captured");
    eprintln!("S5");
    t.add("direct call", config, batch!(rt, |i| op(i).await));
    t.add(
        "recourse, key!, not captured",
        config,
        batch!(rt, |i| exec.call(recourse::key!("bench.Timeline"), || op(i)).await),
    );
    t.add(
        "recourse, key!, captured",
        config,
        batch!(rt, |i| {
            let (result, timeline) = recourse::capture(exec.call(recourse::key!("bench.Timeline"), || op(i))).await;
            black_box(timeline);
            result
        }),
    );
    t.add(
        "recourse, \"str\" key, captured",
        config,
        batch!(rt, |i| {
            let (result, timeline) = recourse::capture(exec.call("bench.Timeline", || op(i))).await;
            black_box(timeline);
            result
        }),
    );
    t.add(
        "recourse, key!, captured, S2 (3 attempts)",
        config,
        batch!(rt, |i| {
            let (result, timeline) =
                recourse::capture(flaky_exec.call(recourse::key!("bench.Flaky"), || flaky(i))).await;
            black_box(timeline);
            result
        }),
    );
    t
}

fn s6(config: Config) -> Table {
    let rt = current_thread();
    let exec = executor(false);
    let mut t = Table::new("S6: macro form against function forms", "direct call", "Executor::call, key!");
    eprintln!("S6");
    t.add("direct call", config, batch!(rt, |i| op(i).await));
    t.add("#[recourse] fn", config, batch!(rt, |i| macro_form_s6(&exec, i).await));
    t.add("Executor::call, key!", config, batch!(rt, |i| exec.call(recourse::key!("bench.Macro"), || op(i)).await));
    t.add("Executor::call, \"str\" key", config, batch!(rt, |i| exec.call("bench.Macro", || op(i)).await));
    t.add("Executor::call, key!, in an async fn", config, batch!(rt, |i| function_form(&exec, i).await));
    t.add(
        "Executor::call, key!, body in an async block",
        config,
        batch!(rt, |i| exec.call(recourse::key!("bench.Macro"), || async move { op(i).await }).await),
    );
    t.add("Executor::call, key!, as the macro expands", config, batch!(rt, |i| by_hand(&exec, i).await));
    t
}

// ---------------------------------------------------------------------------
// Bars
// ---------------------------------------------------------------------------

fn verdict(met: bool) -> &'static str {
    if met { "**met**" } else { "**not met**" }
}

fn overhead(t: &Table, name: &str) -> f64 {
    t.get(name).median_ns - t.get(t.direct).median_ns
}

fn bars(s1: &Table, s2: &Table, s3: &Table, s4: &Table, s5: &Table, s6: &Table) {
    println!("\n### Bars\n");
    println!("| bar | figures | verdict |");
    println!("|---|---|---|");
    for (scenario, t) in [("S1", s1), ("S2", s2)] {
        let tower = overhead(t, "tower retry");
        for form in ["recourse, key!", "recourse, #[recourse]", "recourse, \"str\" key"] {
            let ours = overhead(t, form);
            let allocs = t.get(form).allocs_per_op;
            println!(
                "| {scenario}: overhead ≤ tower retry's, 0 allocs ({form}) | {ours:.1} ns vs {tower:.1} ns; {allocs:.2} allocs/op | {} |",
                verdict(ours <= tower && allocs < 0.005)
            );
        }
    }
    let ours = s3.get("recourse, key!, token bucket").median_ns;
    let tower = s3.get("tower retry + TpsBudget").median_ns;
    println!(
        "| S3: token bucket ≥ 10× the throughput of tower + TpsBudget | {ours:.1} vs {tower:.1} ns/call: {:.1}× | {} |",
        tower / ours,
        verdict(tower / ours >= 10.0)
    );
    let ours = s4.get("recourse, key!, hedged").median_ns;
    let tower = s4.get("tower hedge").median_ns;
    println!("| S4: hedged call below tower hedge | {ours:.1} vs {tower:.1} ns | {} |", verdict(ours < tower));
    let row = s5.get("recourse, key!, captured");
    println!(
        "| S5: captured call < 1 µs, ≤ 3 allocs | {:.1} ns, {:.2} allocs/op | {} |",
        row.median_ns,
        row.allocs_per_op,
        verdict(row.median_ns < 1000.0 && row.allocs_per_op <= 3.005)
    );
    let ours = s6.get("#[recourse] fn").median_ns;
    for form in ["Executor::call, key!", "Executor::call, key!, as the macro expands", "Executor::call, \"str\" key"] {
        let theirs = s6.get(form).median_ns;
        println!(
            "| S6: macro within 5 % of the function form ({form}) | {ours:.1} vs {theirs:.1} ns: {:+.1} % | {} |",
            (ours / theirs - 1.0) * 100.0,
            verdict(ours <= theirs * 1.05)
        );
    }
}

/// The size of each system's call future, for the record: every byte of a
/// future is moved at least once when the call starts.
fn future_sizes() {
    let rt = current_thread();
    let _guard = rt.enter();
    let exec = executor(false);
    let backoff = ExponentialBuilder::default().with_max_times(2);
    let mut tower = TowerRetry::new(TowerAttempts { retries: 2 }, service_fn(op));
    let mut hedge =
        Hedge::new_with_mock_latencies(service_fn(op), TowerHedgeAll, 10, 0.9, Duration::from_secs(3600), &[100; 100]);
    let sizes = [
        ("direct call", size_of_val(&op(1))),
        ("recourse, key!", size_of_val(&exec.call(recourse::key!("bench.Plain"), || op(1)))),
        ("recourse, \"str\" key", size_of_val(&exec.call("bench.Plain", || op(1)))),
        ("recourse, #[recourse]", size_of_val(&macro_form(&exec, 1))),
        ("recourse, captured", size_of_val(&recourse::capture(exec.call(recourse::key!("bench.Timeline"), || op(1))))),
        ("backon", size_of_val(&(|| op(1)).retry(backoff))),
        (
            "tokio-retry2",
            size_of_val(&TokioRetry::spawn(FixedInterval::from_millis(0).take(2), || async {
                Ok::<_, RetryError<()>>(1)
            })),
        ),
        ("tower retry", size_of_val(&tower.call(1))),
        ("tower hedge", size_of_val(&hedge.call(1))),
    ];
    println!("\n### Future sizes (bytes)\n");
    println!("| system | call future |");
    println!("|---|---:|");
    for (name, size) in sizes {
        println!("| {name} | {size} |");
    }
}

/// A subscriber that takes every span and event and keeps nothing.
struct DropsEverything;

impl tracing::Subscriber for DropsEverything {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {}
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn s7(config: Config) -> Table {
    let rt = current_thread();
    let exec =
        Executor::builder().policy(plain("bench.Plain")).observer(recourse::tracing::TracingObserver::new()).build();
    let bare = executor(false);
    let mut t = Table::new("S7: the tracing observer on S1's call", "recourse, key!", "no subscriber");
    eprintln!("S7");
    t.add("recourse, key!", config, batch!(rt, |i| bare.call(recourse::key!("bench.Plain"), || op(i)).await));
    t.add("no subscriber", config, batch!(rt, |i| exec.call(recourse::key!("bench.Plain"), || op(i)).await));
    let off = tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::OFF);
    let guard = tracing::subscriber::set_default(off);
    t.add(
        "a subscriber interested in nothing",
        config,
        batch!(rt, |i| exec.call(recourse::key!("bench.Plain"), || op(i)).await),
    );
    drop(guard);
    let guard = tracing::subscriber::set_default(DropsEverything);
    t.add(
        "a subscriber that drops everything",
        config,
        batch!(rt, |i| exec.call(recourse::key!("bench.Plain"), || op(i)).await),
    );
    drop(guard);
    t
}

fn main() {
    let config = Config::default();
    if std::env::args().any(|a| a == "sizes") {
        future_sizes();
        return;
    }
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a.starts_with('S') || a.starts_with('s'))
        .map(|a| a.to_uppercase())
        .collect();
    if !only.is_empty() {
        // Some scenarios, in the order given (for profiling, or to see one
        // scenario's effect on the next): `cargo bench --bench peers -- S4`.
        for scenario in only {
            let t = match scenario.as_str() {
                "S1" => s1(config),
                "S2" => s2(config),
                "S3" => s3(config),
                "S3B" => s3_budgets(config),
                "S4" => s4(config),
                "S5" => s5(config),
                "S6" => s6(config),
                "S7" => s7(config),
                other => panic!("unknown scenario {other}"),
            };
            t.print();
        }
        return;
    }
    let tables =
        [s1(config), s2(config), s3(config), s3_budgets(config), s4(config), s5(config), s6(config), s7(config)];
    println!("machine: {}", recourse_benches::machine());
    for t in &tables {
        t.print();
    }
    if std::env::var_os("PEERS_ROW").is_none() {
        let [t1, t2, t3, _, t4, t5, t6, _] = &tables;
        bars(t1, t2, t3, t4, t5, t6);
        future_sizes();
    }
}

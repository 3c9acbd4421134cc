//! Admission through the Redis token bucket, with and without leasing,
//! against the local token bucket, in one run.
//!
//! `cargo bench -p recourse-benches --features redis --bench redis`
//!
//! Uses the server of `RECOURSE_REDIS_URL` when it is set, else starts its
//! own `redis-server` (the Debian package) on a free loopback port and
//! stops it at the end.
//!
//! * **Leased**: the `Budget` gate, what the executor asks before every
//!   attempt. It spends a local lease and never waits for Redis; a
//!   background task on a one-worker tokio runtime tops the lease up. The
//!   figure is wall time per decision; the share admitted says how often
//!   the lease, or its credit, was there to pay, which depends on the
//!   lease size against the decision rate times the round trip.
//! * **Not leased**: `try_acquire`, one script round trip per admission,
//!   on a one-worker runtime (what a bucket without leasing costs).
//! * The local `TokenBucket`, for scale.
//!
//! The shared bucket never runs dry: a huge capacity and refill.

#![allow(missing_docs, clippy::cast_possible_truncation, reason = "a bench binary; the attempt index wraps on purpose")]

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use recourse::budget::{AttemptKind, Budget, RedisTokenBucket, TokenBucket};
use recourse::policy::{BudgetRef, PolicyKey};
use recourse_benches::{Config, Measurement, measure, print_table};

#[global_allocator]
static GLOBAL: &recourse_benches::Allocator = &recourse_benches::ALLOCATOR;

/// The shared bucket's size and refill: far beyond what a run can take.
const CAPACITY: u64 = 1 << 50;
const REFILL: f64 = 1e12;

/// A `redis-server` of the bench's own, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The URL to bench against, and the server started for it if any.
fn redis() -> (String, Option<Server>) {
    if let Ok(url) = std::env::var("RECOURSE_REDIS_URL")
        && !url.trim().is_empty()
    {
        return (url, None);
    }
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("could not start redis-server ({error}): install the Debian package or set RECOURSE_REDIS_URL")
        });
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pong = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok_and(|mut stream| {
            let mut reply = [0; 7];
            stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_ok()
                && stream.read_exact(&mut reply).is_ok()
                && &reply == b"+PONG\r\n"
        });
        if pong {
            return (format!("redis://127.0.0.1:{port}"), Some(server));
        }
        assert!(Instant::now() < deadline, "redis-server did not answer PING");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Decisions taken and admitted by one row.
#[derive(Default)]
struct Tally {
    decided: AtomicU64,
    admitted: AtomicU64,
}

impl Tally {
    /// `name (x % admitted)`.
    #[allow(clippy::cast_precision_loss, reason = "a share for display")]
    fn label(&self, mut row: Measurement) -> Measurement {
        let (decided, admitted) = (self.decided.load(Ordering::Relaxed), self.admitted.load(Ordering::Relaxed));
        row.name = format!("{} — {:.1} % admitted", row.name, 100.0 * admitted as f64 / decided.max(1) as f64);
        row
    }
}

/// `n` decisions of `budget` on each of `threads` threads started together.
fn decide(budget: &Arc<dyn Budget>, threads: usize, n: u64, tally: &Tally) {
    let key = PolicyKey::parse("bench.Redis");
    let cost = BudgetRef::named("bench");
    let run = || {
        let mut admitted = 0;
        for i in 0..n {
            admitted += u64::from(
                black_box(budget.allow_attempt(&key, black_box(i as u32 & 7), AttemptKind::Retry, &cost)).allowed(),
            );
        }
        tally.decided.fetch_add(n, Ordering::Relaxed);
        tally.admitted.fetch_add(admitted, Ordering::Relaxed);
    };
    if threads == 1 {
        // On the calling thread, as the local bucket's B9.
        return run();
    }
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                barrier.wait();
                run();
            });
        }
    });
}

fn main() {
    let config = Config::default();
    let (url, server) = redis();
    // The background tasks' runtime: one worker, as a service would give
    // them a share of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let key = |name: &str| format!("recourse-bench:{name}:{}", std::process::id());
    let mut rows = Vec::new();

    let local: Arc<dyn Budget> = Arc::new(TokenBucket::new(CAPACITY, REFILL));
    for threads in [1, 2] {
        let tally = Tally::default();
        let row = measure(&format!("local token bucket, {threads} thread(s)"), config, |n| {
            decide(&local, threads, n, &tally);
        });
        rows.push(tally.label(row));
    }

    for lease in [10, 1_000, 100_000] {
        let bucket: Arc<dyn Budget> = {
            let _runtime = runtime.enter();
            Arc::new(
                RedisTokenBucket::builder(url.as_str(), key(&format!("leased-{lease}")))
                    .capacity(CAPACITY)
                    .refill_per_sec(REFILL)
                    .lease(lease)
                    .build()
                    .expect("a valid bucket"),
            )
        };
        for threads in [1, 2] {
            let tally = Tally::default();
            let row =
                measure(&format!("Redis bucket, leased ({lease} per round trip), {threads} thread(s)"), config, |n| {
                    decide(&bucket, threads, n, &tally);
                });
            rows.push(tally.label(row));
        }
    }

    let direct = {
        let _runtime = runtime.enter();
        RedisTokenBucket::builder(url.as_str(), key("direct"))
            .capacity(CAPACITY)
            .refill_per_sec(REFILL)
            .build()
            .expect("a valid bucket")
    };
    let tally = Tally::default();
    let row = measure("Redis bucket, not leased (`try_acquire`, a round trip each), 1 thread", config, |n| {
        let admitted = runtime.block_on(async {
            let mut admitted = 0;
            for _ in 0..n {
                admitted += u64::from(direct.try_acquire(1).await.expect("Redis answers"));
            }
            admitted
        });
        tally.decided.fetch_add(n, Ordering::Relaxed);
        tally.admitted.fetch_add(admitted, Ordering::Relaxed);
    });
    rows.push(tally.label(row));

    println!("machine: {}", recourse_benches::machine());
    println!(
        "redis: {}",
        if server.is_some() { "a redis-server of the bench's own, on loopback" } else { "RECOURSE_REDIS_URL" }
    );
    print_table("Redis token bucket", &rows);
}

//! The token bucket's cost per decision, alone and contended.
//!
//! `cargo bench -p recourse-benches --bench budget`
//!
//! Yardstick: the Go original's mutex bucket, B9 ≈ 89 ns sequential and
//! B10 ≈ 90 ns from parallel goroutines.

#![allow(missing_docs, clippy::cast_possible_truncation, reason = "a bench binary; the attempt index wraps on purpose")]

use std::hint::black_box;
use std::sync::{Arc, Barrier};

use recourse::budget::{AttemptKind, Budget, TokenBucket};
use recourse::policy::{BudgetRef, PolicyKey};
use recourse_benches::{Config, measure, print_table};

#[global_allocator]
static GLOBAL: &recourse_benches::Allocator = &recourse_benches::ALLOCATOR;

fn main() {
    let config = Config::default();
    let key = PolicyKey::parse("bench.Budget");
    let cost = BudgetRef::named("bench");
    let mut rows = Vec::new();

    // B9: capacity never runs out (refill far above the rate we can take).
    let bucket = TokenBucket::new(1 << 40, 1e15);
    rows.push(measure("token bucket, 1 thread (B9)", config, |n| {
        for i in 0..n {
            black_box(bucket.allow_attempt(&key, black_box(i as u32 & 7), AttemptKind::Retry, &cost).allowed());
        }
    }));

    // B10: the same bucket hammered by every core at once; the figure is
    // wall time per decision per thread.
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2);
    let shared = Arc::new(TokenBucket::new(1 << 40, 1e15));
    rows.push(measure(&format!("token bucket, {threads} threads contended (B10)"), config, |n| {
        let barrier = Arc::new(Barrier::new(threads));
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (bucket, barrier, key, cost) = (Arc::clone(&shared), Arc::clone(&barrier), &key, &cost);
                scope.spawn(move || {
                    barrier.wait();
                    for i in 0..n {
                        black_box(
                            bucket.allow_attempt(key, black_box(i as u32 & 7), AttemptKind::Retry, cost).allowed(),
                        );
                    }
                });
            }
        });
    }));

    // Denials cost the same path without the take.
    let empty = TokenBucket::new(0, 0.0);
    rows.push(measure("token bucket, denied, 1 thread", config, |n| {
        for i in 0..n {
            black_box(empty.allow_attempt(&key, black_box(i as u32 & 7), AttemptKind::Retry, &cost).allowed());
        }
    }));

    // A bucket that ran dry: unlike the zero bucket above (refused before
    // looking at any tokens), this denial has to establish that no tokens
    // are left anywhere, its shards included (1000 tokens: large enough to
    // cache).
    let drained = TokenBucket::new(1000, 0.0);
    while drained.try_take(1) {}
    rows.push(measure("token bucket, drained, 1 thread", config, |n| {
        for i in 0..n {
            black_box(drained.allow_attempt(&key, black_box(i as u32 & 7), AttemptKind::Retry, &cost).allowed());
        }
    }));

    println!("machine: {}", recourse_benches::machine());
    print_table("Budgets", &rows);
}

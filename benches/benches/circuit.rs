//! The circuit breakers' cost per call on the closed path (`allow` then
//! `record_success`), alone and contended.
//!
//! `cargo bench -p recourse-benches --bench circuit`
//!
//! Yardsticks: Polly v8's circuit breaker 137.7 ns/0 B for a whole pipeline
//! call, tower-resilience's closed breaker ~298 ns, and recloser's lesson
//! that a breaker behind a mutex collapses under contention (~17×).

#![allow(missing_docs, reason = "a bench binary")]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use recourse::circuit::{Breaker, ConsecutiveFailures, FailureRate, FailureRateConfig};
use recourse_benches::{Config, Measurement, measure, print_table};

#[global_allocator]
static GLOBAL: &recourse_benches::Allocator = &recourse_benches::ALLOCATOR;

/// One call's worth of breaker work on the success path.
fn call(breaker: &dyn Breaker) {
    let decision = breaker.allow();
    if black_box(decision.allowed) {
        black_box(breaker.record_success());
    }
}

fn single(name: &str, config: Config, breaker: &dyn Breaker) -> Measurement {
    measure(name, config, |n| {
        for _ in 0..n {
            call(black_box(breaker));
        }
    })
}

/// `threads` threads calling the same breaker at once; the figure is wall
/// time per call per thread.
fn contended(name: &str, config: Config, breaker: &Arc<dyn Breaker>, threads: usize) -> Measurement {
    measure(name, config, |n| {
        let barrier = Barrier::new(threads);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                let (breaker, barrier) = (&**breaker, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    for _ in 0..n {
                        call(black_box(breaker));
                    }
                });
            }
        });
    })
}

fn main() {
    let config = Config::default();
    let cooldown = Duration::from_secs(10);
    let consecutive: Arc<dyn Breaker> = Arc::new(ConsecutiveFailures::new(5, cooldown));
    // Never opens: only successes are recorded, but the window counts each.
    let failure_rate: Arc<dyn Breaker> = Arc::new(FailureRate::new(FailureRateConfig::default()));
    let mut rows = vec![
        single("consecutive failures, closed, 1 thread", config, &*consecutive),
        contended("consecutive failures, closed, 2 threads contended", config, &consecutive, 2),
        single("failure rate, closed, 1 thread", config, &*failure_rate),
        contended("failure rate, closed, 2 threads contended", config, &failure_rate, 2),
    ];

    // A refused call: open, cooldown not over (one load and a clock read).
    let open = ConsecutiveFailures::new(1, Duration::from_secs(3600));
    open.record_failure();
    rows.push(measure("consecutive failures, open (refused), 1 thread", config, |n| {
        for _ in 0..n {
            black_box(black_box(&open).allow().allowed);
        }
    }));

    println!("machine: {}", recourse_benches::machine());
    print_table("Circuit breakers (allow + record_success)", &rows);
}

//! The latency tracker's cost per sample and per snapshot.
//!
//! `cargo bench -p recourse-benches --bench hedge`
//!
//! Yardstick: the Go original's mutex ring, B6 ≈ 17 ns per observation,
//! B7 ≈ 8 µs per snapshot of a full 1024-slot ring (copy + sort) and
//! B8 ≈ 30 ns per observation from parallel goroutines.

#![allow(missing_docs, clippy::cast_possible_truncation, reason = "a bench binary; indices wrap on purpose")]

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use recourse::PolicyKey;
use recourse::hedge::{HedgeState, HedgeTrigger, LatencyTracker, Registry, Trackers};
use recourse_benches::{Config, measure, print_table};

#[global_allocator]
static GLOBAL: &recourse_benches::Allocator = &recourse_benches::ALLOCATOR;

const WINDOW: usize = 1024;

/// Latencies fed in a cycle. Prime, so the cycle does not line up with the
/// ring: a slot's new sample differs from the one it evicts.
const SAMPLES: usize = 1021;

/// Latencies spread over 1–100 ms (`SplitMix64`, fixed seed), so most
/// samples land in a different bucket from the one they evict (the
/// expensive case: two bucket updates per record).
fn latencies() -> Vec<Duration> {
    let mut state = 0x5EED_u64;
    (0..SAMPLES)
        .map(|_| {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            Duration::from_nanos(1_000_000 + (z ^ (z >> 31)) % 99_000_000)
        })
        .collect()
}

fn main() {
    let config = Config::default();
    let samples = latencies();
    let mut rows = Vec::new();

    // B6: one thread recording into a 1024-sample window.
    let tracker = LatencyTracker::new(WINDOW);
    rows.push(measure("tracker record, 1 thread (B6)", config, |n| {
        for i in 0..n {
            tracker.record(black_box(samples[i as usize % SAMPLES]));
        }
    }));

    // B7: percentiles of a full 1024-sample window.
    let full = LatencyTracker::new(WINDOW);
    for &sample in &samples {
        full.record(sample);
    }
    rows.push(measure("tracker snapshot, full 1024 window (B7)", config, |n| {
        for _ in 0..n {
            black_box(full.snapshot());
        }
    }));

    // B8: two threads recording into one tracker; wall time per sample per
    // thread. A third row uses every core when there are more than two.
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get).max(2);
    let mut contended = vec![2];
    if threads > 2 {
        contended.push(threads);
    }
    for threads in contended {
        let shared = Arc::new(LatencyTracker::new(WINDOW));
        let name = format!("tracker record, {threads} threads contended (B8)");
        rows.push(measure(&name, config, |n| {
            let barrier = Arc::new(Barrier::new(threads));
            std::thread::scope(|scope| {
                for t in 0..threads {
                    let (tracker, barrier, samples) = (Arc::clone(&shared), Arc::clone(&barrier), &samples);
                    scope.spawn(move || {
                        barrier.wait();
                        for i in 0..n {
                            tracker.record(black_box(samples[(i as usize + t * 337) % SAMPLES]));
                        }
                    });
                }
            });
        }));
    }

    // What the executor pays per hedged call on top: finding the key's
    // tracker, and one trigger decision.
    let trackers = Trackers::new();
    let key = PolicyKey::parse("bench.Hedge");
    trackers.get_or_create(&key);
    rows.push(measure("trackers get_or_create, existing key", config, |n| {
        for _ in 0..n {
            black_box(trackers.get_or_create(black_box(&key)));
        }
    }));
    let latency = full.snapshot();
    let p90 = Registry::with_builtins().get("p90").expect("a built-in trigger");
    rows.push(measure("p90 trigger decision", config, |n| {
        for i in 0..n {
            let elapsed = Duration::from_millis(i & 127);
            black_box(p90.should_spawn(&HedgeState::new(1, 2, black_box(elapsed), Duration::ZERO, &latency)));
        }
    }));

    println!("machine: {}", recourse_benches::machine());
    print_table("Hedging", &rows);
}

//! A small, dependency-light benchmark harness: median of repeated timed
//! batches, spread (p10–p90), and heap allocations per operation counted by
//! a global allocator wrapper.
//!
//! Benchmarks are binaries under `benches/` with `harness = false`; each
//! installs [`ALLOCATOR`] as its global allocator:
//!
//! ```ignore
//! #[global_allocator]
//! static GLOBAL: &recourse_benches::Allocator = &recourse_benches::ALLOCATOR;
//! ```

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use stats_alloc::{INSTRUMENTED_SYSTEM as ALLOCATOR, StatsAlloc};

/// The allocator type benchmarks install.
pub type Allocator = StatsAlloc<std::alloc::System>;

/// One measured benchmark.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// What was measured.
    pub name: String,
    /// Median nanoseconds per operation over the samples.
    pub median_ns: f64,
    /// 10th percentile of the samples.
    pub p10_ns: f64,
    /// 90th percentile of the samples.
    pub p90_ns: f64,
    /// Heap allocations per operation (measured on a separate run).
    pub allocs_per_op: f64,
}

impl Measurement {
    /// `name  median ns/op  [p10 – p90]  allocs/op`.
    pub fn row(&self) -> String {
        format!(
            "| {} | {:.1} | {:.1} – {:.1} | {:.2} |",
            self.name, self.median_ns, self.p10_ns, self.p90_ns, self.allocs_per_op
        )
    }
}

/// How long each sample runs and how many samples are taken.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Target duration of one sample.
    pub sample: Duration,
    /// Number of samples.
    pub samples: usize,
}

impl Default for Config {
    fn default() -> Self {
        let quick = std::env::var_os("RECOURSE_BENCH_QUICK").is_some();
        Self { sample: Duration::from_millis(if quick { 5 } else { 40 }), samples: if quick { 5 } else { 31 } }
    }
}

/// Times `op` (which runs `iters` operations and returns nothing useful)
/// and counts its allocations.
pub fn measure(name: &str, config: Config, mut op: impl FnMut(u64)) -> Measurement {
    // Calibrate: how many operations fill one sample.
    op(100);
    let mut iters = 1_u64;
    loop {
        let start = Instant::now();
        op(iters);
        if start.elapsed() >= config.sample / 4 || iters >= 1 << 30 {
            break;
        }
        iters *= 2;
    }
    let start = Instant::now();
    op(iters);
    let per_iter = start.elapsed().as_secs_f64() / iters_f64(iters);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "a positive count below 2^40")]
    let iters = ((config.sample.as_secs_f64() / per_iter.max(1e-10)) as u64).clamp(1, 1 << 32);

    let mut samples: Vec<f64> = (0..config.samples)
        .map(|_| {
            let start = Instant::now();
            op(iters);
            start.elapsed().as_secs_f64() * 1e9 / iters_f64(iters)
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a short vector"
        )]
        let i = ((samples.len() - 1) as f64 * q).round() as usize;
        samples[i]
    };

    let counted = iters.min(10_000);
    let before = ALLOCATOR.stats();
    op(counted);
    let after = ALLOCATOR.stats();
    #[allow(clippy::cast_precision_loss, reason = "allocation counts are small")]
    let allocs = (after.allocations - before.allocations + after.reallocations - before.reallocations) as f64
        / iters_f64(counted);
    black_box(&samples);
    Measurement {
        name: name.to_owned(),
        median_ns: pick(0.5),
        p10_ns: pick(0.1),
        p90_ns: pick(0.9),
        allocs_per_op: allocs,
    }
}

#[allow(clippy::cast_precision_loss, reason = "iteration counts stay below 2^53")]
fn iters_f64(iters: u64) -> f64 {
    iters as f64
}

/// A description of the machine, for the results file.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    format!("{cpu}, {cores} cores available, {} {}", std::env::consts::OS, std::env::consts::ARCH)
}

/// Prints a markdown table of measurements.
pub fn print_table(title: &str, rows: &[Measurement]) {
    println!("\n### {title}\n");
    println!("| benchmark | median ns/op | p10 – p90 | allocs/op |");
    println!("|---|---:|---:|---:|");
    for row in rows {
        println!("{}", row.row());
    }
}

/// recourse's sleep hook for benchmarks: every sleep is over at once. The
/// future is zero-sized, so its box does not allocate (a
/// `Box::pin(async {})` would: one allocation per sleep, which is the hook's
/// cost, not the library's).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSleep;

/// The future [`NoSleep`] returns: ready at its first poll.
struct Done;

impl Future for Done {
    type Output = ();

    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        Poll::Ready(())
    }
}

impl recourse::executor::Sleeper for NoSleep {
    fn sleep(&self, _: Duration) -> recourse::executor::SleepFuture {
        Box::pin(Done)
    }
}

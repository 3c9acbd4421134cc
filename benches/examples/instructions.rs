//! Instruction counts per call, for profiling the call path: run N calls of
//! the S1 scenario (a `key!` call that succeeds at once) or, with `s2` as the
//! second argument, the S2 scenario (two failures, then a success, sleeps
//! bypassed), with `s3` a call whose policy has a token-bucket budget, or
//! with `s4` a hedged call whose primary wins (the engine's path), under
//! callgrind twice and divide the difference by the
//! difference in N:
//!
//! ```sh
//! cargo build --release -p recourse-benches --example instructions
//! valgrind --tool=callgrind target/release/examples/instructions 10000 [s2]
//! valgrind --tool=callgrind target/release/examples/instructions 20000 [s2]
//! ```
#![allow(missing_docs)]
use std::time::Duration;

use recourse::policy::Policy;
use recourse_benches::NoSleep;

#[derive(Debug, recourse::Classifier)]
enum Failure {
    #[classify(retryable)]
    Transient,
    Recourse(recourse::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("failure")
    }
}

impl std::error::Error for Failure {}

impl From<recourse::Error> for Failure {
    fn from(error: recourse::Error) -> Self {
        Self::Recourse(error)
    }
}

fn main() {
    let exec = recourse::Executor::builder()
        .policy(Policy::builder("bench.Plain").build())
        .policy(Policy::builder("bench.Flaky").max_attempts(3).build())
        .policy(Policy::builder("bench.Budgeted").max_attempts(3).budget("bench").build())
        .budget("bench", recourse::budget::TokenBucket::new(1 << 40, 1e15))
        .policy(
            Policy::builder("bench.Hedged")
                .max_attempts(3)
                .max_hedges(1)
                .hedge_delay(Duration::from_millis(100))
                .build(),
        )
        .sleeper(NoSleep)
        .build();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let n: u64 = std::env::args().nth(1).map_or(100_000, |s| s.parse().unwrap());
    let mode = std::env::args().nth(2).unwrap_or_default();
    rt.block_on(async {
        let mut sum = 0u64;
        if mode == "s4" {
            let key = recourse::key!("bench.Hedged");
            for i in 0..n {
                sum += exec.call(key, || async move { Ok::<u64, Failure>(std::hint::black_box(i)) }).await.unwrap();
            }
        } else if mode == "s3" {
            let key = recourse::key!("bench.Budgeted");
            for i in 0..n {
                sum += exec.call(key, || async move { Ok::<u64, Failure>(std::hint::black_box(i)) }).await.unwrap();
            }
        } else if mode == "s2" {
            let key = recourse::key!("bench.Flaky");
            let mut attempts = 0u64;
            for i in 0..n {
                sum += exec
                    .call(key, || {
                        attempts += 1;
                        let fail = !attempts.is_multiple_of(3);
                        async move { if fail { Err(Failure::Transient) } else { Ok(std::hint::black_box(i)) } }
                    })
                    .await
                    .unwrap();
            }
        } else {
            let key = recourse::key!("bench.Plain");
            for i in 0..n {
                sum += exec.call(key, || async move { Ok::<u64, Failure>(std::hint::black_box(i)) }).await.unwrap();
            }
        }
        std::hint::black_box(sum);
    });
}

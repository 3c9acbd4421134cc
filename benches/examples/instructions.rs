//! Instruction counts per call, for profiling the call path: run N calls of
//! the S1 scenario (a `key!` call that succeeds at once) under callgrind
//! twice and divide the difference by the difference in N:
//!
//! ```sh
//! cargo build --release -p recourse-benches --example instructions
//! valgrind --tool=callgrind target/release/examples/instructions 10000
//! valgrind --tool=callgrind target/release/examples/instructions 20000
//! ```
#![allow(missing_docs)]
use recourse::policy::Policy;
fn main() {
    let exec = recourse::Executor::builder().policy(Policy::builder("bench.Plain").build()).build();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let n: u64 = std::env::args().nth(1).map_or(100_000, |s| s.parse().unwrap());
    rt.block_on(async {
        let key = recourse::key!("bench.Plain");
        let mut sum = 0u64;
        for i in 0..n {
            sum += exec.call(key, || async move { Ok::<u64, std::io::Error>(std::hint::black_box(i)) }).await.unwrap();
        }
        std::hint::black_box(sum);
    });
}

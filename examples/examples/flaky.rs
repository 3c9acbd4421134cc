//! A flaky operation retried under a named policy.
//!
//! Run with `cargo run -p recourse-examples --example flaky`.
//!
//! The "inventory" service below fails its first two requests with a
//! connection reset, then succeeds. The policy `inventory.Reserve` allows
//! four attempts with exponential backoff; the operation prints each attempt
//! as it runs, and the captured timeline shows the whole call afterwards.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use recourse::policy::{Jitter, Policy};
use recourse::{Classify, Outcome};

/// What the inventory service can answer.
#[derive(Debug, thiserror::Error)]
enum InventoryError {
    #[error("connection reset by peer")]
    Reset,
    #[error("item {0} is out of stock")]
    OutOfStock(u64),
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

/// Which errors are worth another attempt. (`#[derive(recourse::Classifier)]`
/// writes this for you once the macros land; here it is by hand.)
impl Classify for InventoryError {
    fn classify(&self) -> Option<Outcome> {
        Some(match self {
            Self::Reset => Outcome::retryable().with_reason("connection_reset"),
            Self::OutOfStock(_) => Outcome::non_retryable().with_reason("out_of_stock"),
            Self::Recourse(e) => e.outcome(),
        })
    }

    fn as_error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self)
    }
}

/// A stand-in for a remote service that is flaky for its first two calls.
struct Inventory {
    calls: AtomicU32,
}

impl Inventory {
    async fn reserve(&self, item: u64) -> Result<u32, InventoryError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(3)).await;
        if item == 0 {
            Err(InventoryError::OutOfStock(item))
        } else if call < 2 {
            Err(InventoryError::Reset)
        } else {
            Ok(1000 + call)
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let executor = recourse::Executor::builder()
        .policy(
            Policy::builder("inventory.Reserve")
                .max_attempts(4)
                .backoff(Duration::from_millis(20), Duration::from_millis(500), 2.0)
                .jitter(Jitter::Equal)
                .overall_timeout(Duration::from_secs(2))
                .build(),
        )
        .build();
    let inventory = Inventory { calls: AtomicU32::new(0) };
    let started = Instant::now();

    println!("reserving item 42 under policy \"inventory.Reserve\" (4 attempts, 20ms backoff x2, equal jitter)");
    let (result, timeline) = recourse::capture(executor.call("inventory.Reserve", || {
        let attempt = recourse::attempt().map_or(0, |a| a.retry_index());
        println!("  attempt {attempt} starts at {:>4}ms", started.elapsed().as_millis());
        inventory.reserve(42)
    }))
    .await;
    match &result {
        Ok(reservation) => println!("reserved: reservation #{reservation}"),
        Err(e) => println!("failed: {e}"),
    }
    println!("\n{timeline}");

    println!("reserving item 0 (out of stock: not retryable)");
    let (result, timeline) = recourse::capture(executor.call("inventory.Reserve", || inventory.reserve(0))).await;
    println!("result: {result:?}\n\n{timeline}");
}

//! A flaky operation retried under a named policy.
//!
//! Run with `cargo run -p recourse-examples --example flaky`.
//!
//! The inventory service below resets the connection on its first two
//! requests, then answers. `reserve` is annotated with the policy key
//! `inventory.Reserve`; `recourse.toml` (next to this crate's Cargo.toml)
//! gives that key four attempts with exponential backoff, and the compiler
//! checked the key against it. The error type says which failures are
//! worth another attempt, and the captured timeline shows the whole call.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use recourse::{Classifier, recourse};

/// What the inventory service can answer.
#[derive(Debug, thiserror::Error, Classifier)]
enum InventoryError {
    #[error("connection reset by peer")]
    #[classify(retryable)]
    Reset,
    #[error("rate limited, retry in {retry_after:?}")]
    #[classify(retryable, reason = "throttled", backoff = retry_after)]
    Throttled { retry_after: Duration },
    #[error("item {0} is out of stock")]
    #[classify(non_retryable)]
    OutOfStock(u64),
    /// Budget denied, circuit open, deadline passed...: classified as abort.
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

/// A stand-in for a remote service that is flaky for its first calls.
struct Inventory {
    calls: AtomicU32,
    started: Instant,
}

impl Inventory {
    #[recourse(policy = "inventory.Reserve")]
    async fn reserve(&self, item: u64) -> Result<u32, InventoryError> {
        let attempt = recourse::attempt().map_or(0, |a| a.retry_index());
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        println!("  attempt {attempt} of reserve({item}) at {:>4}ms", self.started.elapsed().as_millis());
        tokio::time::sleep(Duration::from_millis(3)).await;
        match (item, call) {
            (0, _) => Err(InventoryError::OutOfStock(item)),
            (_, 0) => Err(InventoryError::Reset),
            (_, 1) => Err(InventoryError::Throttled { retry_after: Duration::from_millis(50) }),
            _ => Ok(1000 + call),
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let inventory = Inventory { calls: AtomicU32::new(0), started: Instant::now() };

    println!("reserve(42) under \"inventory.Reserve\" (4 attempts, 20ms backoff x2, equal jitter):");
    let (result, timeline) = recourse::capture(inventory.reserve(42)).await;
    match &result {
        Ok(reservation) => println!("reserved: reservation #{reservation}"),
        Err(e) => println!("failed: {e}"),
    }
    println!("\n{timeline}");

    println!("reserve(0): out of stock is not retryable:");
    let (result, timeline) = recourse::capture(inventory.reserve(0)).await;
    println!("result: {result:?}\n\n{timeline}");
}

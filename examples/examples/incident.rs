//! What an incident looks like through recourse's eyes.
//!
//! Run with `cargo run -p recourse-examples --example incident`.
//!
//! A payments service starts to fail: first it resets connections, then it
//! hangs. `charge` runs under the catalog policy `payments.Charge`: four
//! attempts, a 40 ms per-attempt timeout, a 400 ms overall deadline, and a
//! shared retry budget (`[budgets.payments]`, 6 tokens refilled at 2/s)
//! that every attempt must pass. The program prints each call's timeline,
//! and an observer counts what happened, the way a metrics exporter would.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use recourse::observe::{AttemptRecord, Observer, Timeline};
use recourse::{Classifier, Executor, PolicyKey, recourse};

#[derive(Debug, thiserror::Error, Classifier)]
enum PaymentError {
    #[error("connection reset by payments")]
    #[classify(retryable)]
    Reset,
    #[error("card declined")]
    #[classify(non_retryable)]
    Declined,
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

/// Counts attempts and denials, as a Prometheus exporter would.
#[derive(Default)]
struct Counters {
    attempts: AtomicUsize,
    denied: AtomicUsize,
    failed_calls: AtomicUsize,
}

impl Observer for Counters {
    fn on_attempt(&self, _key: &PolicyKey, record: &AttemptRecord) {
        if record.budget_allowed {
            self.attempts.fetch_add(1, Ordering::Relaxed);
        } else {
            self.denied.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_failure(&self, _key: &PolicyKey, _timeline: &Timeline) {
        self.failed_calls.fetch_add(1, Ordering::Relaxed);
    }
}

/// The misbehaving dependency.
struct Payments {
    calls: AtomicU32,
}

impl Payments {
    #[recourse(policy = "payments.Charge", executor = executor)]
    async fn charge(&self, executor: &Executor, cents: u64) -> Result<String, PaymentError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(4)).await;
        match call {
            // Healthy.
            0 => Ok(format!("charged {cents}")),
            // Resets, then recovers.
            1 | 2 => Err(PaymentError::Reset),
            3 => Ok(format!("charged {cents} after a reset")),
            // A declined card is not worth retrying.
            4 => Err(PaymentError::Declined),
            // Then it hangs for a while: those attempts time out after 40 ms.
            5 | 6 => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                Ok(String::new())
            }
            _ => Ok(format!("charged {cents}, payments recovered")),
        }
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let counters = std::sync::Arc::new(Counters::default());
    let executor = Executor::builder().observer(std::sync::Arc::clone(&counters)).jitter_seed(7).build();
    let payments = Payments { calls: AtomicU32::new(0) };

    for (n, cents) in [500, 1200, 300, 4200, 999, 150].into_iter().enumerate() {
        if n == 5 {
            println!("... 1.5 s later: the budget has refilled 3 tokens ...\n");
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        let (result, timeline) = recourse::capture(payments.charge(&executor, cents)).await;
        println!("call {n}: {}", result.unwrap_or_else(|e| format!("error: {e}")));
        println!("{timeline}");
    }
    println!(
        "observer: {} attempts ran, {} refused by the budget, {} calls failed",
        counters.attempts.load(Ordering::Relaxed),
        counters.denied.load(Ordering::Relaxed),
        counters.failed_calls.load(Ordering::Relaxed),
    );
}

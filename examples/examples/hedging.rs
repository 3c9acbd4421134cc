//! Hedged requests and a circuit breaker.
//!
//! Run with `cargo run -p recourse-examples --example hedging`.
//!
//! The search backend answers in 5 ms, except that one replica in three
//! stalls for 300 ms. `search.Query` hedges: if the primary has not answered
//! after 20 ms a second attempt starts, and a third after 40 ms; the first
//! answer wins and the others are dropped. Later the backend goes down and
//! the breaker opens after three failed calls, so the following calls fail
//! fast without touching it.
#![allow(missing_docs)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use recourse::{Classifier, recourse};

#[derive(Debug, thiserror::Error, Classifier)]
enum SearchError {
    #[error("backend unavailable")]
    #[classify(non_retryable)]
    Unavailable,
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

struct Backend {
    requests: AtomicU32,
    down: AtomicBool,
}

impl Backend {
    #[recourse(policy = "search.Query")]
    async fn query(&self, term: &str) -> Result<String, SearchError> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst);
        let attempt = recourse::attempt().expect("inside an attempt");
        if self.down.load(Ordering::SeqCst) {
            return Err(SearchError::Unavailable);
        }
        let latency = if n.is_multiple_of(3) { 300 } else { 5 };
        tokio::time::sleep(Duration::from_millis(latency)).await;
        Ok(format!("{term}: 10 results (replica {n}, hedge {})", attempt.hedge_index()))
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let backend = Backend { requests: AtomicU32::new(0), down: AtomicBool::new(false) };

    println!("-- a slow replica is hedged around");
    let (result, timeline) = recourse::capture(backend.query("rust")).await;
    println!("{}\n{timeline}", result.unwrap());

    println!("-- the backend goes down: three failures open the circuit");
    backend.down.store(true, Ordering::SeqCst);
    for _ in 0..4 {
        let (result, timeline) = recourse::capture(backend.query("tokio")).await;
        println!("{}\n{timeline}", result.unwrap_err());
    }

    println!("-- a second later the breaker lets one probe through; the backend is back");
    backend.down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (result, timeline) = recourse::capture(backend.query("serde")).await;
    println!("{}\n{timeline}", result.unwrap());
}

//! The function form: `Executor::call` with a policy built in code and a
//! compile-time checked key.
//!
//! Run with `cargo run -p recourse-examples --example function_form`.
#![allow(missing_docs)]

use std::time::Duration;

use recourse::Executor;
use recourse::policy::{Jitter, Policy};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Policies from code override the catalog for their key.
    let executor = Executor::builder()
        .policy(
            Policy::builder("inventory.Audit")
                .max_attempts(3)
                .backoff(Duration::from_millis(5), Duration::from_millis(50), 2.0)
                .jitter(Jitter::Full)
                .build(),
        )
        .build();

    let mut tries = 0;
    let key = recourse::key!("inventory.Audit");
    let (result, timeline) = recourse::capture(executor.call(key, || {
        tries += 1;
        let attempt = tries;
        async move {
            if attempt < 3 {
                Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
            } else {
                Ok(format!("audited after {attempt} attempts"))
            }
        }
    }))
    .await;
    println!("{}\n\n{timeline}", result.unwrap());
}

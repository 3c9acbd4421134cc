//! Extending recourse: a classifier, a budget, a hedge trigger and an
//! observer written in code, each registered on the executor under a name,
//! the names declared in `recourse.toml` and checked twice: the compiler
//! checks every name a policy references, and `try_build` checks that every
//! declared name is registered.
//!
//! Run with `cargo run -p recourse-examples --example extending`.
//!
//! ```toml
//! [policies."ledger.Post"]
//! classifier = "ledger_codes"      # built in or in [classifiers] names
//! budget = "ledger_quota"          # built in or a [budgets.<name>] table
//! [policies."ledger.Post".hedge]
//! trigger = "after_p50"            # built in or in [triggers] names
//!
//! [budgets.ledger_quota]
//! kind = "custom"                  # registered in code
//! [classifiers]
//! names = ["ledger_codes"]
//! [triggers]
//! names = ["after_p50"]
//! ```
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use recourse::budget::{AttemptKind, Budget, Decision};
use recourse::classify::{ErrorView, Outcome};
use recourse::hedge::{HedgeState, HedgeTrigger, TriggerDecision};
use recourse::observe::{AttemptRecord, Observer};
use recourse::policy::{BudgetRef, PolicyKey};
use recourse::{Classify, Executor, recourse};

/// The ledger's error: a status code. It has no opinion of its own
/// (`impl Classify {}`): the policy names the classifier that reads it.
#[derive(Debug, thiserror::Error)]
enum LedgerError {
    #[error("ledger answered {0}")]
    Status(u16),
    #[error(transparent)]
    Recourse(#[from] recourse::Error),
}

impl Classify for LedgerError {
    fn as_error(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self)
    }
}

/// A classifier: 409 (a write conflict) is worth another attempt, 4xx is
/// not, anything it does not understand is a configuration error.
fn ledger_codes(error: &dyn ErrorView) -> Outcome {
    match error.find::<LedgerError>() {
        Some(LedgerError::Status(409)) => Outcome::retryable().with_reason("ledger_conflict"),
        Some(LedgerError::Status(code)) if *code >= 500 => Outcome::retryable().with_reason("ledger_unavailable"),
        Some(LedgerError::Status(_)) => Outcome::non_retryable().with_reason("ledger_rejected"),
        Some(LedgerError::Recourse(_)) => Outcome::abort(),
        None => Outcome::type_mismatch("LedgerError", error.type_name()),
    }
}

/// A budget: at most `limit` retries in flight for the whole process; the
/// first attempt always goes. Each allowed retry hands its slot back when
/// it ends (the release runs exactly once, however the attempt ends).
struct RetriesInFlight {
    in_flight: Arc<AtomicU32>,
    limit: u32,
}

impl Budget for RetriesInFlight {
    fn allow_attempt(&self, _: &PolicyKey, attempt: u32, kind: AttemptKind, _: &BudgetRef) -> Decision {
        if attempt == 0 && kind == AttemptKind::Retry {
            return Decision::allow();
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= self.limit {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Decision::deny().with_reason("ledger_retries_in_flight");
        }
        let in_flight = Arc::clone(&self.in_flight);
        Decision::allow_with_release(move || {
            in_flight.fetch_sub(1, Ordering::AcqRel);
        })
    }
}

/// A hedge trigger: hedge once the attempt has run past the key's median
/// latency, and not before the policy's delay; one hedge per evaluation.
struct AfterMedian;

impl HedgeTrigger for AfterMedian {
    fn should_spawn(&self, state: &HedgeState<'_>) -> TriggerDecision {
        if state.limit_reached() {
            return TriggerDecision::Stop;
        }
        let due = state.latency.p50.max(state.hedge_delay);
        match due.checked_sub(state.elapsed) {
            Some(wait) if !wait.is_zero() => TriggerDecision::CheckIn(wait),
            _ => TriggerDecision::Spawn,
        }
    }
}

/// An observer: one line per attempt (keep it cheap; it runs on the call's
/// task).
struct PrintAttempts;

impl Observer for PrintAttempts {
    fn on_attempt(&self, key: &PolicyKey, record: &AttemptRecord) {
        println!(
            "  {key} attempt {} (hedge {}): {} {}",
            record.attempt, record.hedge_index, record.outcome.kind, record.outcome.reason
        );
    }
}

#[recourse(policy = "ledger.Post")]
async fn post(calls: &AtomicU32, amount: u64) -> Result<u64, LedgerError> {
    match calls.fetch_add(1, Ordering::SeqCst) {
        0 => Err(LedgerError::Status(409)),
        _ => Ok(amount),
    }
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    // Forgetting a registration is found here, at start-up.
    let forgot = Executor::builder().catalog(recourse::catalog!()).try_build().expect_err("nothing registered yet");
    println!("without registrations: {forgot}\n");

    let executor = Executor::builder()
        .catalog(recourse::catalog!())
        .classifier("ledger_codes", ledger_codes)
        .budget("ledger_quota", RetriesInFlight { in_flight: Arc::new(AtomicU32::new(0)), limit: 8 })
        .trigger("after_p50", AfterMedian)
        .observer(PrintAttempts)
        .try_build()
        .expect("every name the catalog declares is registered");
    let _ = recourse::install(executor);

    let calls = AtomicU32::new(0);
    println!("post(120): a write conflict, then success:");
    let (result, timeline) = recourse::capture(post(&calls, 120)).await;
    println!("  -> {result:?}\n\n{timeline}");
    tokio::time::sleep(Duration::from_millis(1)).await;
}

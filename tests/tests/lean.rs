//! The lean path (a plain policy's call with nobody watching) decides
//! exactly as the engine does: for any policy without budget, breaker,
//! hedging or deadline and any sequence of attempt results, a call run
//! plainly and the same call run under `capture` (which always takes the
//! engine) make the same attempts, sleep the same durations, see the same
//! `recourse::attempt()` scopes and return the same result.
#![allow(missing_docs)]

mod support;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use proptest::prelude::*;
use recourse::classify::Outcome;
use recourse::policy::{Jitter, Policy};
use recourse::{Classify, Executor};
use support::{RecordingSleeper, SEED};

/// What an attempt returns.
#[derive(Debug, Clone, Copy)]
enum Step {
    Ok(u32),
    Retryable,
    RetryAfter(u64),
    Permanent,
}

#[derive(Debug, PartialEq)]
enum Failure {
    Retryable(usize),
    RetryAfter(usize, u64),
    Permanent(usize),
    Recourse(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for Failure {}

impl From<recourse::Error> for Failure {
    fn from(error: recourse::Error) -> Self {
        Self::Recourse(error.to_string())
    }
}

impl Classify for Failure {
    fn classify(&self) -> Option<Outcome> {
        Some(match self {
            Self::Retryable(_) => Outcome::retryable(),
            Self::RetryAfter(_, ms) => Outcome::retryable().with_backoff(Duration::from_millis(*ms)),
            Self::Permanent(_) | Self::Recourse(_) => Outcome::non_retryable(),
        })
    }
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => any::<u32>().prop_map(Step::Ok),
        6 => Just(Step::Retryable),
        2 => (0u64..3_000).prop_map(Step::RetryAfter),
        1 => Just(Step::Permanent),
    ]
}

fn any_jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
}

/// Everything a call did that someone could observe.
#[derive(Debug, PartialEq)]
struct Trace {
    result: Result<u32, Failure>,
    /// (retry index, policy id) as `recourse::attempt()` saw them.
    scopes: Vec<(u32, Option<String>)>,
    sleeps: Vec<Duration>,
}

fn executor(policy: Policy, sleeper: RecordingSleeper) -> Executor {
    Executor::builder().policy(policy).sleeper(sleeper).jitter_seed(SEED).build()
}

async fn run(executor: &Executor, steps: &[Step]) -> (Result<u32, Failure>, Vec<(u32, Option<String>)>) {
    let scopes = Arc::new(Mutex::new(Vec::new()));
    let mut attempts = 0;
    let result = executor
        .call("lean.Op", || {
            let n = attempts;
            attempts += 1;
            let step = steps.get(n).copied().unwrap_or(Step::Retryable);
            let scopes = Arc::clone(&scopes);
            async move {
                let attempt = recourse::attempt().expect("inside an attempt");
                scopes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((attempt.retry_index(), attempt.policy_id().map(str::to_owned)));
                match step {
                    Step::Ok(value) => Ok(value),
                    Step::Retryable => Err(Failure::Retryable(n)),
                    Step::RetryAfter(ms) => Err(Failure::RetryAfter(n, ms)),
                    Step::Permanent => Err(Failure::Permanent(n)),
                }
            }
        })
        .await;
    let scopes = scopes.lock().unwrap_or_else(PoisonError::into_inner).clone();
    (result, scopes)
}

async fn trace(policy: Policy, steps: &[Step], captured: bool) -> Trace {
    let sleeper = RecordingSleeper::new();
    let executor = executor(policy, sleeper.clone());
    // Warm the resolution cache (the lean path only starts from a cached,
    // plain resolution); a first attempt that succeeds draws no jitter.
    let warm: Result<u32, Failure> = executor.call("lean.Op", || async { Ok(0) }).await;
    assert_eq!(warm, Ok(0));
    let (result, scopes) = if captured {
        let ((result, scopes), timeline) = recourse::capture(run(&executor, steps)).await;
        assert!(!timeline.attempts.is_empty(), "the engine recorded the call");
        (result, scopes)
    } else {
        run(&executor, steps).await
    };
    Trace { result, scopes, sleeps: sleeper.sleeps() }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn lean_path_decides_as_the_engine_does(
        steps in prop::collection::vec(any_step(), 0..8),
        max_attempts in 0u32..7,
        initial_ms in 0u64..500,
        max_ms in 0u64..2_000,
        multiplier in prop_oneof![Just(0.0), Just(1.0), Just(2.0), 0.5f64..4.0],
        jitter in any_jitter(),
        id in prop::option::of("[a-z]{1,6}"),
    ) {
        let mut builder = Policy::builder("lean.Op")
            .max_attempts(max_attempts)
            .backoff(Duration::from_millis(initial_ms), Duration::from_millis(max_ms), multiplier)
            .jitter(jitter);
        if let Some(id) = &id {
            builder = builder.id(id.as_str());
        }
        let policy = builder.build();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let lean = rt.block_on(trace(policy.clone(), &steps, false));
        let engine = rt.block_on(trace(policy, &steps, true));
        prop_assert_eq!(lean, engine);
    }
}

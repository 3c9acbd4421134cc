//! One engine (DESIGN §6.1): recording changes no decision. For random
//! policies (retries, backoff, jitter, policy ids, retry budgets of every
//! kind, per-attempt and overall deadlines, circuit breakers, hedging) and
//! any sequence of attempt results and latencies, a call run with nobody
//! watching (the quiet engine, which starts lean calls straight from the
//! cache), the same call under `capture`, and the same call with an
//! observer installed (both recording) make the same attempts at the same
//! times, sleep the same durations, see the same `recourse::attempt()`
//! scopes, ask and release the budget the same way and return the same
//! result.
#![allow(missing_docs)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use proptest::prelude::*;
use recourse::budget::{AttemptKind, Budget, Decision, TokenBucket};
use recourse::classify::Outcome;
use recourse::policy::{BudgetRef, Jitter, Policy, PolicyKey};
use recourse::{Classify, Executor, FailureMode};
use support::{RecordingSleeper, SEED};

/// What an attempt returns, after how many milliseconds.
#[derive(Debug, Clone, Copy)]
enum Step {
    Ok(u32),
    Retryable,
    RetryAfter(u64),
    Permanent,
}

/// Who watches the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    Nobody,
    Capture,
    Observer,
}

/// An observer that listens to everything and keeps nothing.
struct Listening;

impl recourse::observe::Observer for Listening {}

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

fn any_step() -> impl Strategy<Value = (Step, u64)> {
    let step = prop_oneof![
        4 => any::<u32>().prop_map(Step::Ok),
        6 => Just(Step::Retryable),
        2 => (0u64..3_000).prop_map(Step::RetryAfter),
        1 => Just(Step::Permanent),
    ];
    let latency = prop_oneof![3 => Just(0u64), 2 => 0u64..200];
    (step, latency)
}

/// The parts of a policy beyond retries and budgets.
#[derive(Debug, Clone, Copy)]
struct Envelope {
    per_attempt_ms: Option<u64>,
    overall_ms: Option<u64>,
    breaker_threshold: Option<u32>,
    hedges: Option<(u32, u64)>,
}

fn any_envelope() -> impl Strategy<Value = Envelope> {
    (
        prop::option::weighted(0.3, 1u64..150),
        prop::option::weighted(0.3, 1u64..600),
        prop::option::weighted(0.3, 1u32..4),
        prop::option::weighted(0.3, (1u32..4, 10u64..60)),
    )
        .prop_map(|(per_attempt_ms, overall_ms, breaker_threshold, hedges)| Envelope {
            per_attempt_ms,
            overall_ms,
            breaker_threshold,
            hedges,
        })
}

fn any_jitter() -> impl Strategy<Value = Jitter> {
    prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Equal)]
}

/// The policy's retry budget.
#[derive(Debug, Clone, Copy)]
enum BudgetCase {
    None,
    /// A token bucket without refill: `capacity` tokens, `cost` each.
    Bucket {
        capacity: u64,
        cost: u32,
    },
    /// Allows `allowed` attempts, each with a release that is counted.
    Releasing {
        allowed: usize,
    },
    /// Named by the policy, registered nowhere, under this mode.
    Missing(FailureMode),
    /// Panics on its `n`-th question.
    Panicking(usize),
}

fn any_budget() -> impl Strategy<Value = BudgetCase> {
    prop_oneof![
        3 => Just(BudgetCase::None),
        3 => (0u64..8, 1u32..3).prop_map(|(capacity, cost)| BudgetCase::Bucket { capacity, cost }),
        2 => (0usize..6).prop_map(|allowed| BudgetCase::Releasing { allowed }),
        1 => prop_oneof![Just(FailureMode::Deny), Just(FailureMode::Allow), Just(FailureMode::Fallback)]
            .prop_map(BudgetCase::Missing),
        1 => (0usize..4).prop_map(BudgetCase::Panicking),
    ]
}

/// Answers from a script and records every question and release.
#[derive(Debug, Default)]
struct Scripted {
    allowed: usize,
    panic_at: Option<usize>,
    /// (attempt index, kind) of every question.
    asked: Mutex<Vec<(u32, AttemptKind)>>,
    released: Arc<AtomicUsize>,
}

impl Budget for Scripted {
    fn allow_attempt(&self, _: &PolicyKey, attempt: u32, kind: AttemptKind, _: &BudgetRef) -> Decision {
        let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
        asked.push((attempt, kind));
        let n = asked.len();
        drop(asked);
        assert!(self.panic_at != Some(n), "scripted budget panic");
        if n > self.allowed {
            return Decision::deny();
        }
        let released = Arc::clone(&self.released);
        Decision::allow_with_release(move || {
            released.fetch_add(1, Ordering::SeqCst);
        })
    }
}

/// What `recourse::attempt()` saw: retry index, hedge index, policy id,
/// and when (since the call started).
type Scope = (u32, u32, Option<String>, Duration);

/// Everything a call did that someone could observe.
#[derive(Debug, PartialEq)]
struct Trace {
    result: Result<u32, Failure>,
    scopes: Vec<Scope>,
    sleeps: Vec<Duration>,
    /// The scripted budget's questions and releases, or the bucket's
    /// tokens left.
    budget: (Vec<(u32, AttemptKind)>, usize, u64),
    released_at_result: usize,
}

fn executor(
    policy: Policy,
    sleeper: RecordingSleeper,
    budget: BudgetCase,
    watch: Watch,
) -> (Executor, Option<Arc<Scripted>>) {
    let mut builder = Executor::builder().policy(policy).sleeper(sleeper).jitter_seed(SEED).recover_panics(true);
    if watch == Watch::Observer {
        builder = builder.observer(Listening);
    }
    let mut scripted = None;
    match budget {
        BudgetCase::None => {}
        BudgetCase::Bucket { capacity, .. } => builder = builder.budget("lean", TokenBucket::new(capacity, 0.0)),
        BudgetCase::Releasing { allowed } => {
            let budget = Arc::new(Scripted { allowed, ..Scripted::default() });
            scripted = Some(Arc::clone(&budget));
            builder = builder.budget("lean", budget);
        }
        BudgetCase::Panicking(n) => {
            let budget = Arc::new(Scripted { allowed: usize::MAX, panic_at: Some(n + 1), ..Scripted::default() });
            scripted = Some(Arc::clone(&budget));
            builder = builder.budget("lean", budget);
        }
        BudgetCase::Missing(mode) => builder = builder.missing_budget(mode),
    }
    (builder.build(), scripted)
}

/// Runs the call and returns its result, the scopes its attempts saw, and
/// the releases that had run when the result came out (polled by hand, so
/// the call's future is still alive then: a release must not wait for it
/// to be dropped).
async fn run(
    executor: &Executor,
    steps: &[(Step, u64)],
    released: Option<&AtomicUsize>,
) -> (Result<u32, Failure>, Vec<Scope>, usize) {
    let scopes = Arc::new(Mutex::new(Vec::new()));
    let mut attempts = 0;
    let start = tokio::time::Instant::now();
    let call = executor.call("lean.Op", || {
        let n = attempts;
        attempts += 1;
        let (step, latency) = steps.get(n).copied().unwrap_or((Step::Retryable, 0));
        let scopes = Arc::clone(&scopes);
        async move {
            let attempt = recourse::attempt().expect("inside an attempt");
            scopes.lock().unwrap_or_else(PoisonError::into_inner).push((
                attempt.retry_index(),
                attempt.hedge_index(),
                attempt.policy_id().map(str::to_owned),
                start.elapsed(),
            ));
            if latency > 0 {
                tokio::time::sleep(Duration::from_millis(latency)).await;
            }
            match step {
                Step::Ok(value) => Ok(value),
                Step::Retryable => Err(Failure::Retryable(n)),
                Step::RetryAfter(ms) => Err(Failure::RetryAfter(n, ms)),
                Step::Permanent => Err(Failure::Permanent(n)),
            }
        }
    });
    let mut call = std::pin::pin!(call);
    let result = std::future::poll_fn(|cx| call.as_mut().poll(cx)).await;
    let released = released.map_or(0, |r| r.load(Ordering::SeqCst));
    let scopes = scopes.lock().unwrap_or_else(PoisonError::into_inner).clone();
    (result, scopes, released)
}

async fn trace(policy: Policy, steps: &[(Step, u64)], budget: BudgetCase, watch: Watch) -> Trace {
    let sleeper = RecordingSleeper::new();
    let (executor, scripted) = executor(policy, sleeper.clone(), budget, watch);
    // Warm the resolution cache (a lean call only starts from a cached
    // resolution); a first attempt that succeeds draws no jitter. It may
    // be denied by the budget (the same way for every watcher).
    let _: Result<u32, Failure> = executor.call("lean.Op", || async { Ok(0) }).await;
    let (result, scopes, released_at_result) = if watch == Watch::Capture {
        let ((result, scopes, released), timeline) =
            recourse::capture(run(&executor, steps, scripted.as_ref().map(|s| &*s.released))).await;
        assert!(!timeline.is_empty(), "the call was recorded");
        (result, scopes, released)
    } else {
        run(&executor, steps, scripted.as_ref().map(|s| &*s.released)).await
    };
    let budget = match (&scripted, budget) {
        (Some(scripted), _) => (
            scripted.asked.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            scripted.released.load(Ordering::SeqCst),
            0,
        ),
        (None, BudgetCase::Bucket { .. }) => {
            let bucket = executor.budgets().get("lean").expect("registered");
            // Tokens left, measured by how many unit takes still succeed.
            let left = (0..64)
                .take_while(|_| {
                    bucket
                        .allow_attempt(&PolicyKey::parse("lean.Op"), 0, AttemptKind::Retry, &BudgetRef::named("lean"))
                        .allowed()
                })
                .count();
            (Vec::new(), 0, left as u64)
        }
        (None, _) => (Vec::new(), 0, 0),
    };
    Trace { result, scopes, sleeps: sleeper.sleeps(), budget, released_at_result }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn recording_changes_no_decision(
        steps in prop::collection::vec(any_step(), 0..8),
        max_attempts in 0u32..7,
        initial_ms in 0u64..500,
        max_ms in 0u64..2_000,
        multiplier in prop_oneof![Just(0.0), Just(1.0), Just(2.0), 0.5f64..4.0],
        jitter in any_jitter(),
        id in prop::option::of("[a-z]{1,6}"),
        budget in any_budget(),
        envelope in any_envelope(),
    ) {
        let mut builder = Policy::builder("lean.Op")
            .max_attempts(max_attempts)
            .backoff(Duration::from_millis(initial_ms), Duration::from_millis(max_ms), multiplier)
            .jitter(jitter);
        if let Some(id) = &id {
            builder = builder.id(id.as_str());
        }
        match budget {
            BudgetCase::None => {}
            BudgetCase::Bucket { cost, .. } => builder = builder.budget_with_cost("lean", cost),
            _ => builder = builder.budget("lean"),
        }
        if let Some(ms) = envelope.per_attempt_ms {
            builder = builder.timeout_per_attempt(Duration::from_millis(ms));
        }
        if let Some(ms) = envelope.overall_ms {
            builder = builder.overall_timeout(Duration::from_millis(ms));
        }
        if let Some(threshold) = envelope.breaker_threshold {
            builder = builder.circuit(threshold, Duration::from_millis(100));
        }
        if let Some((max_hedges, delay_ms)) = envelope.hedges {
            builder = builder.max_hedges(max_hedges).hedge_delay(Duration::from_millis(delay_ms));
        }
        let policy = builder.build();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        let quiet = rt.block_on(trace(policy.clone(), &steps, budget, Watch::Nobody));
        let captured = rt.block_on(trace(policy.clone(), &steps, budget, Watch::Capture));
        let observed = rt.block_on(trace(policy, &steps, budget, Watch::Observer));
        prop_assert_eq!(&quiet, &captured);
        prop_assert_eq!(&quiet, &observed);
    }
}

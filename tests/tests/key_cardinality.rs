//! The key-cardinality guard (`ExecutorBuilder::max_keys`,
//! `ExecutorBuilder::key_overflow`): keys called without a call site get
//! per-key state (a cached resolution, the provider's answer, a breaker)
//! up to the cap; past it a call folds into the fold key or is rejected,
//! is counted, and says so on its timeline. Call-site keys (`#[recourse]`,
//! `key!`) are exempt.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use recourse::circuit::State;
use recourse::executor::KeyOverflow;
use recourse::observe::{Observer, Timeline};
use recourse::policy::Policy;
use recourse::provider::{DynamicProvider, PolicyProvider, ProviderError, ProviderErrorKind};
use recourse::{Error, Executor, FailureMode, PolicyKey, capture, recourse};

const CAP: usize = 100;
const KEYS: usize = 1_000;

/// A provider that records every key it is asked about. Keys in the
/// `users` namespace get a policy with a breaker, so each one that is
/// resolved gets a breaker in `executor.circuits()`; other keys (the fold
/// key) are not configured here. `failing` answers every key with an
/// error instead.
#[derive(Default)]
struct Recorder {
    asked: Mutex<HashSet<String>>,
    failing: bool,
}

impl Recorder {
    fn failing() -> Self {
        Self { failing: true, ..Self::default() }
    }

    fn asked(&self) -> HashSet<String> {
        self.asked.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The `users.*` keys asked about.
    fn users_asked(&self) -> usize {
        self.asked().iter().filter(|key| key.starts_with("users.")).count()
    }
}

impl PolicyProvider for Recorder {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        self.asked.lock().unwrap_or_else(PoisonError::into_inner).insert(key.to_string());
        if self.failing {
            return Err(ProviderError::new(ProviderErrorKind::Unavailable));
        }
        Ok((key.namespace() == "users")
            .then(|| Arc::new(Policy::builder(key).circuit(5, Duration::from_secs(60)).build())))
    }
}

fn overflow_attribute(timeline: &Timeline) -> Option<&str> {
    timeline.attributes.get("key_overflow")
}

async fn succeed(executor: &Executor, key: String) -> (Result<(), Error>, Timeline) {
    capture(executor.call(key, || async { Ok(()) })).await
}

async fn fail(executor: &Executor, key: String) -> (Result<(), std::io::Error>, Timeline) {
    capture(executor.call(key, || async { Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)) })).await
}

#[tokio::test(start_paused = true)]
async fn the_defaults_fold_past_1024_keys_into_recourse_overflow() {
    let executor = Executor::builder().build();
    assert_eq!(executor.max_keys(), 1024);
    assert_eq!(executor.max_keys(), recourse::ExecutorBuilder::DEFAULT_MAX_KEYS);
    assert_eq!(executor.key_overflow_mode(), &KeyOverflow::Fold(PolicyKey::parse("recourse.overflow")));
    assert_eq!(KeyOverflow::default().fold_key(), Some(&KeyOverflow::DEFAULT_FOLD_KEY));
    for i in 0..1025 {
        succeed(&executor, format!("users.{i}")).await.0.unwrap();
    }
    assert_eq!((executor.key_count(), executor.key_overflows()), (1024, 1));
}

/// 1 000 distinct keys against a cap of 100: the first 100 get state (a
/// resolution, a provider answer, a breaker) and run under their own key;
/// the other 900 calls run under the fold key, are counted, and name their
/// key on their timeline. The provider is never asked about them.
#[tokio::test(start_paused = true)]
async fn past_the_cap_calls_fold_and_no_state_is_made_for_their_keys() {
    let provider = Arc::new(Recorder::default());
    let executor = Executor::builder().provider(Arc::clone(&provider)).max_keys(CAP).build();
    for i in 0..KEYS {
        let key = format!("users.{i}");
        let (result, timeline) = succeed(&executor, key.clone()).await;
        result.unwrap();
        if i < CAP {
            assert_eq!(timeline.key.to_string(), key);
            assert_eq!(overflow_attribute(&timeline), None, "{key}");
        } else {
            assert_eq!(timeline.key, KeyOverflow::DEFAULT_FOLD_KEY, "{key}");
            assert_eq!(overflow_attribute(&timeline), Some(key.as_str()));
        }
    }
    assert_eq!(executor.key_count(), CAP);
    assert_eq!(executor.key_overflows(), (KEYS - CAP) as u64);
    assert_eq!(executor.circuits().len(), CAP, "one breaker per admitted key, none for the folded ones");
    assert_eq!(provider.users_asked(), CAP, "the provider hears of admitted keys only");
    assert!(provider.asked().contains("recourse.overflow"));
    for i in 0..CAP {
        assert!(executor.circuits().get(&PolicyKey::parse_owned(&format!("users.{i}"))).is_some());
    }

    // An admitted key keeps its state; a refused key stays refused, and
    // every refused call counts.
    let (_, timeline) = succeed(&executor, "users.0".to_owned()).await;
    assert_eq!((timeline.key.to_string(), overflow_attribute(&timeline)), ("users.0".to_owned(), None));
    let (_, timeline) = succeed(&executor, "users.500".to_owned()).await;
    assert_eq!(overflow_attribute(&timeline), Some("users.500"));
    assert_eq!(executor.key_overflows(), (KEYS - CAP + 1) as u64);
    assert_eq!(executor.key_count(), CAP);
}

/// `Reject`: past the cap, a call fails at once with `Error::KeyOverflow`
/// naming its key and the cap; the operation never runs, the provider is
/// not asked, no breaker is made, and the timeline says why.
#[tokio::test(start_paused = true)]
async fn reject_fails_the_call_with_the_key_and_the_cap() {
    let provider = Arc::new(Recorder::default());
    let executor =
        Executor::builder().provider(Arc::clone(&provider)).max_keys(CAP).key_overflow(KeyOverflow::Reject).build();
    let ran = Arc::new(AtomicU64::new(0));
    for i in 0..KEYS {
        let key = format!("users.{i}");
        let ran = Arc::clone(&ran);
        let (result, timeline): (Result<(), Error>, _) = capture(executor.call(key.clone(), move || {
            ran.fetch_add(1, Ordering::Relaxed);
            async { Ok(()) }
        }))
        .await;
        assert_eq!(timeline.key.to_string(), key);
        if i < CAP {
            result.unwrap();
            assert_eq!(overflow_attribute(&timeline), None);
            continue;
        }
        let error = result.unwrap_err();
        let Error::KeyOverflow { key: refused, max_keys } = &error else { panic!("{error:?}") };
        assert_eq!((refused.to_string(), *max_keys), (key.clone(), CAP));
        let message = error.to_string();
        assert!(message.contains(&key) && message.contains("100"), "{message}");
        assert_eq!(error.outcome().reason, "key_overflow");
        assert_eq!(overflow_attribute(&timeline), Some(key.as_str()));
        assert!(timeline.attempts.is_empty());
        assert_eq!(timeline.final_error.as_ref().map(|e| &*e.reason), Some("key_overflow"));
    }
    assert_eq!(ran.load(Ordering::Relaxed), CAP as u64, "rejected calls never run");
    assert_eq!(executor.key_overflows(), (KEYS - CAP) as u64);
    assert_eq!(executor.key_count(), CAP);
    assert_eq!(executor.circuits().len(), CAP);
    assert_eq!(provider.users_asked(), CAP);
    assert_eq!(provider.asked().len(), CAP, "no fold key to resolve");
    assert_eq!(std::io::Error::from(Error::KeyOverflow { key: "a.b".into(), max_keys: 1 }).kind(), {
        std::io::ErrorKind::InvalidInput
    });
}

/// Every key an observer is told about, by callback.
#[derive(Default)]
struct KeysHeard(Mutex<Vec<(&'static str, String, Option<String>)>>);

impl KeysHeard {
    fn push(&self, event: &'static str, key: &PolicyKey, timeline: Option<&Timeline>) {
        let overflow = timeline.and_then(|t| overflow_attribute(t).map(str::to_owned));
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push((event, key.to_string(), overflow));
    }

    fn take(&self) -> Vec<(&'static str, String, Option<String>)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Observer for KeysHeard {
    fn on_start(&self, key: &PolicyKey, _: Option<&Policy>) {
        self.push("start", key, None);
    }

    fn on_attempt(&self, key: &PolicyKey, _: &recourse::AttemptRecord) {
        self.push("attempt", key, None);
    }

    fn on_success(&self, key: &PolicyKey, timeline: &Timeline) {
        self.push("success", key, Some(timeline));
    }

    fn on_failure(&self, key: &PolicyKey, timeline: &Timeline) {
        self.push("failure", key, Some(timeline));
    }
}

/// A folded call runs under the fold key's policy (its attempts) and state
/// (its breaker, which then refuses the next folded call); the observer is
/// told the fold key, and the timeline it gets names the original key.
#[tokio::test(start_paused = true)]
async fn a_folded_call_runs_under_the_fold_keys_policy_and_state() {
    let fold = PolicyKey::parse("overflow.Shared");
    let heard = Arc::new(KeysHeard::default());
    let executor = Executor::builder()
        .policy(Policy::builder(&fold).max_attempts(2).circuit(1, Duration::from_secs(60)).build())
        .policy(Policy::builder("users.Admitted").max_attempts(4).build())
        .policy(Policy::builder("users.Other").max_attempts(5).circuit(9, Duration::from_secs(60)).build())
        .max_keys(1)
        .key_overflow(KeyOverflow::Fold(fold.clone()))
        .observer(Arc::clone(&heard))
        .build();

    let (result, timeline) = fail(&executor, "users.Admitted".to_owned()).await;
    assert!(result.is_err());
    assert_eq!((timeline.key.to_string(), timeline.attempts.len()), ("users.Admitted".to_owned(), 4));
    heard.take();

    // `users.Other` has a policy of its own (5 attempts, a breaker), but it
    // is one key too many: it runs under the fold key's 2 attempts.
    let (result, timeline) = fail(&executor, "users.Other".to_owned()).await;
    assert!(result.is_err());
    assert_eq!(timeline.key, fold);
    assert_eq!(timeline.attempts.len(), 2);
    assert_eq!(overflow_attribute(&timeline), Some("users.Other"));
    let users_other = PolicyKey::parse("users.Other");
    assert!(executor.circuits().get(&users_other).is_none(), "no breaker for the folded key");
    let shared = executor.circuits().get(&fold).expect("the fold key's breaker");
    assert_eq!(shared.state(), State::Open, "the folded call's failure went to the fold key's breaker");
    let expected = |event| (event, "overflow.Shared".to_owned(), None);
    assert_eq!(
        heard.take(),
        vec![
            expected("start"),
            expected("attempt"),
            expected("attempt"),
            ("failure", "overflow.Shared".to_owned(), Some("users.Other".to_owned())),
        ]
    );

    // The fold key's state is shared: its open breaker refuses the next
    // folded call, whatever its key.
    let (result, timeline) = fail(&executor, "users.Third".to_owned()).await;
    let error = result.unwrap_err();
    assert!(matches!(error.get_ref().and_then(|e| e.downcast_ref::<Error>()), Some(Error::CircuitOpen { .. })));
    assert_eq!(overflow_attribute(&timeline), Some("users.Third"));
    assert_eq!(executor.key_overflows(), 2);
    assert_eq!(executor.key_count(), 1, "the fold key does not count against the cap");
}

#[recourse(policy = "users.Get", executor = executor)]
async fn get_user(executor: &Executor) -> Result<u32, Error> {
    Ok(7)
}

/// `#[recourse]` and `key!` keys are written in the code and cached by
/// their call site: neither counted nor refused, even with the cap full.
/// The same key passed as a string is a string key like any other.
#[tokio::test(start_paused = true)]
async fn call_site_keys_are_exempt() {
    let breaker = |key: &'static str| Policy::builder(key).circuit(5, Duration::from_secs(60)).build();
    let executor = Executor::builder().policy(breaker("users.Get")).policy(breaker("users.Update")).max_keys(1).build();
    succeed(&executor, "a.One".to_owned()).await.0.unwrap();
    let (_, timeline) = succeed(&executor, "a.Two".to_owned()).await;
    assert_eq!(overflow_attribute(&timeline), Some("a.Two"));
    assert_eq!(executor.key_overflows(), 1);

    let (result, timeline): (Result<(), Error>, _) =
        capture(executor.call(recourse::key!("users.Update"), || async { Ok(()) })).await;
    result.unwrap();
    assert_eq!((timeline.key.to_string(), overflow_attribute(&timeline)), ("users.Update".to_owned(), None));
    let (result, timeline) = capture(get_user(&executor)).await;
    assert_eq!(result.unwrap(), 7);
    assert_eq!((timeline.key.to_string(), overflow_attribute(&timeline)), ("users.Get".to_owned(), None));
    assert!(executor.circuits().get(&PolicyKey::parse("users.Update")).is_some());
    assert!(executor.circuits().get(&PolicyKey::parse("users.Get")).is_some());
    assert_eq!((executor.key_count(), executor.key_overflows()), (1, 1));

    let (_, timeline) = succeed(&executor, "users.Get".to_owned()).await;
    assert_eq!(overflow_attribute(&timeline), Some("users.Get"));
    assert_eq!(executor.key_overflows(), 2);
}

/// Many tasks on a multi-thread runtime race to make new keys, each key
/// twice: exactly `CAP` keys are admitted, every call of a key gets the
/// same answer, and every refused call is counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cap_holds_under_concurrency() {
    const TASKS: usize = 2 * KEYS;
    let provider = Arc::new(Recorder::default());
    let executor = Executor::builder().provider(Arc::clone(&provider)).max_keys(CAP).build();
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (executor, start) = (executor.clone(), Arc::clone(&start));
            tokio::spawn(async move {
                let key = format!("users.{}", i % KEYS);
                start.wait().await;
                let (result, timeline) = succeed(&executor, key.clone()).await;
                result.unwrap();
                let folded = match overflow_attribute(&timeline) {
                    None => {
                        assert_eq!(timeline.key.to_string(), key);
                        false
                    }
                    Some(called) => {
                        assert_eq!((called, &timeline.key), (key.as_str(), &KeyOverflow::DEFAULT_FOLD_KEY));
                        true
                    }
                };
                (key, folded)
            })
        })
        .collect();
    let mut answers: HashMap<String, HashSet<bool>> = HashMap::new();
    for task in tasks {
        let (key, folded) = task.await.unwrap();
        answers.entry(key).or_default().insert(folded);
    }
    assert!(answers.values().all(|seen| seen.len() == 1), "both calls of a key got the same answer");
    let admitted = answers.values().filter(|seen| seen.contains(&false)).count();
    assert_eq!(admitted, CAP);
    assert_eq!(executor.key_count(), CAP);
    assert_eq!(executor.key_overflows(), (TASKS - 2 * CAP) as u64);
    assert_eq!(executor.circuits().len(), CAP);
    assert_eq!(provider.users_asked(), CAP);
}

/// A key whose resolution is not cached (the provider fails) is admitted
/// all the same: it counts against the cap, and keys past the cap never
/// reach the failing provider either.
#[tokio::test(start_paused = true)]
async fn keys_with_failing_resolutions_are_counted() {
    for mode in [FailureMode::Fallback, FailureMode::Deny] {
        let provider = Arc::new(Recorder::failing());
        let executor = Executor::builder().provider(Arc::clone(&provider)).missing_policy(mode).max_keys(CAP).build();
        for round in 0..2 {
            for i in 0..KEYS {
                let (result, timeline) = succeed(&executor, format!("users.{i}")).await;
                assert_eq!(overflow_attribute(&timeline).is_some(), i >= CAP, "{mode}, users.{i}");
                if mode == FailureMode::Deny && i < CAP {
                    assert!(matches!(result, Err(Error::NoPolicy { .. })), "{result:?}");
                }
            }
            assert_eq!(executor.key_count(), CAP, "{mode}");
            assert_eq!(executor.key_overflows(), ((round + 1) * (KEYS - CAP)) as u64, "{mode}");
        }
        assert_eq!(provider.users_asked(), CAP, "{mode}");
    }
}

/// A policy change re-resolves admitted keys; they stay admitted (nothing
/// is counted again) and pick up the new policy.
#[tokio::test(start_paused = true)]
async fn admitted_keys_stay_admitted_across_policy_changes() {
    let provider = Arc::new(DynamicProvider::new());
    let executor = Executor::builder().provider(Arc::clone(&provider)).max_keys(CAP).build();
    for i in 0..CAP {
        succeed(&executor, format!("users.{i}")).await.0.unwrap();
    }
    provider.set(Policy::builder("users.7").max_attempts(5).build());
    for i in 0..CAP {
        let (_, timeline) = fail(&executor, format!("users.{i}")).await;
        assert_eq!(overflow_attribute(&timeline), None);
        assert_eq!(timeline.attempts.len(), if i == 7 { 5 } else { 3 });
    }
    assert_eq!((executor.key_count(), executor.key_overflows()), (CAP, 0));
}

/// Declines every call.
struct Declines;

impl Observer for Declines {
    fn enabled(&self) -> bool {
        false
    }
}

/// A folded call that nobody records leaves nothing behind: the next
/// recorded call on the thread, of the fold key itself, carries no
/// `key_overflow` note.
#[tokio::test(start_paused = true)]
async fn an_unrecorded_fold_leaves_no_note_behind() {
    for executor in
        [Executor::builder().max_keys(0).build(), Executor::builder().max_keys(0).observer(Declines).build()]
    {
        executor.call("users.Quiet".to_owned(), || async { Ok::<_, Error>(()) }).await.unwrap();
        assert_eq!(executor.key_overflows(), 1);
        let (result, timeline) = succeed(&executor, "recourse.overflow".to_owned()).await;
        result.unwrap();
        assert_eq!(timeline.key, KeyOverflow::DEFAULT_FOLD_KEY);
        assert_eq!(overflow_attribute(&timeline), None);
        assert_eq!((executor.key_count(), executor.key_overflows()), (0, 1), "the fold key is always admitted");
    }
}

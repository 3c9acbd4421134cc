//! Timelines and their capture: section G (`observe/*_test.go`, items
//! 25–27) and section K (`retry/capture_test.go`, items 55–57) of the
//! conformance checklist, spec §11.3, §11.6 and §12.14, and the Rust
//! additions of DESIGN §3.4 (call-level attributes, `Display`).
//!
//! Rust adaptations: Go's `RecordTimeline(ctx)` + `capture.Timeline()` is
//! `recourse::capture(future)` returning `(output, Timeline)`; "no capture
//! on this ctx" is an empty timeline; Go's `WithoutTimelineCapture` on the
//! operation's ctx is built in: calls nested inside an operation are not
//! captured by the outer `capture`.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;

use recourse::budget::reason;
use recourse::policy::{Policy, PolicyKey, PolicySource};
use recourse::provider::StaticProvider;
use recourse::{Executor, OutcomeKind, Timeline};
use support::{Counter, CountingBudget, KEY, RawProvider, RecordingSleeper, SEED, TestError, ms, test_executor};

fn failing(calls: &Counter) -> impl FnMut() -> std::future::Ready<Result<u32, TestError>> + '_ {
    move || std::future::ready(Err(TestError::Failed(calls.hit())))
}

// ---------------------------------------------------------------------------
// G25–G27, K55–K57: what `capture` captures.

// K55 / G25: a bare executor, key `test.capture`, op returns 42 → the captured
// timeline has that key and one record.
#[tokio::test(start_paused = true)]
async fn k55_capture_returns_the_calls_timeline() {
    let executor = Executor::builder().build();
    let (result, timeline) =
        recourse::capture(executor.call("test.capture", || async { Ok::<_, TestError>(42) })).await;
    assert_eq!(result.unwrap(), 42);
    assert!(!timeline.is_empty());
    assert!(timeline.succeeded());
    assert_eq!(timeline.key, PolicyKey::from("test.capture"));
    assert_eq!(timeline.attempts.len(), 1);
    assert_eq!(timeline.attempts[0].outcome.kind, OutcomeKind::Success);
    assert_eq!(timeline.attempts[0].error, None);
    assert_eq!(timeline.final_error, None);
    assert_eq!(timeline.policy_source, PolicySource::Default);
    assert!(timeline.end.is_some());
}

// G26: a capture around a future that makes no recourse call → an empty
// timeline (Go: no capture on the ctx).
#[tokio::test(start_paused = true)]
async fn g26_capture_without_a_call_is_empty() {
    let (value, timeline) = recourse::capture(async { 7 }).await;
    assert_eq!(value, 7);
    assert!(timeline.is_empty());
    assert!(!timeline.succeeded());
    assert!(timeline.attempts.is_empty());
    assert_eq!(timeline.end, None);
    assert_eq!(timeline.duration(), std::time::Duration::ZERO);
    assert_eq!(timeline.to_string(), "(no recourse call captured)\n");
}

// G26: a call made outside any capture is not captured by a later capture.
#[tokio::test(start_paused = true)]
async fn g26_a_call_outside_the_capture_is_not_seen() {
    let executor = Executor::builder().build();
    let _ = executor.call("before", || async { Ok::<_, TestError>(1) }).await;
    let ((), timeline) = recourse::capture(async {}).await;
    assert!(timeline.is_empty());
}

// K56 / G27: a call nested inside the operation is not captured by the outer
// capture; the outer capture gets the outer call.
#[tokio::test(start_paused = true)]
async fn k56_nested_call_inside_the_operation_is_not_captured() {
    let executor = Executor::builder().build();
    let child_ran = Counter::new();
    let (result, timeline) = recourse::capture(executor.call("parent", || {
        let (executor, child_ran) = (&executor, &child_ran);
        async move {
            // Boxed: a call future nested in another is large (clippy::large_futures).
            let child: Result<u32, TestError> = Box::pin(executor.call("child", move || {
                child_ran.hit();
                async { Ok(1) }
            }))
            .await;
            child
        }
    }))
    .await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(child_ran.get(), 1);
    assert_eq!(timeline.key, PolicyKey::from("parent"));
    assert_eq!(timeline.attempts.len(), 1);
}

// K57: a capture started inside the operation for a nested call gets the child
// timeline; the outer capture still gets the parent timeline.
#[tokio::test(start_paused = true)]
async fn k57_nested_capture_inside_the_operation_gets_the_child() {
    let executor = Executor::builder().sleeper(RecordingSleeper::new()).build();
    let children = Arc::new(std::sync::Mutex::new(Vec::<Timeline>::new()));
    let calls = Counter::new();
    let (result, parent) = recourse::capture(executor.call("parent", || {
        let (executor, children, calls) = (&executor, Arc::clone(&children), &calls);
        async move {
            let (child, timeline) = Box::pin(recourse::capture(executor.call("child", move || {
                let n = calls.hit();
                async move { if n == 1 { Err(TestError::Failed(n)) } else { Ok(n) } }
            })))
            .await;
            children.lock().unwrap().push(timeline);
            child
        }
    }))
    .await;
    assert_eq!(result.unwrap(), 2);
    let children = children.lock().unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].key, PolicyKey::from("child"));
    assert_eq!(children[0].attempts.len(), 2, "the child retried once");
    assert_eq!(parent.key, PolicyKey::from("parent"));
    assert_eq!(parent.attempts.len(), 1);
    assert!(parent.succeeded());
}

// §11.6 (Rust form): several calls one after another inside one capture →
// the last call's timeline.
#[tokio::test(start_paused = true)]
async fn g25_sequential_calls_capture_the_last_one() {
    let executor = Executor::builder().build();
    let (sum, timeline) = recourse::capture(async {
        let a: u32 = executor.call("first", || async { Ok::<_, TestError>(1) }).await.unwrap();
        let b: u32 = executor.call("second", || async { Ok::<_, TestError>(2) }).await.unwrap();
        a + b
    })
    .await;
    assert_eq!(sum, 3);
    assert_eq!(timeline.key, PolicyKey::from("second"));
}

// §11.6: the timeline is published for pre-attempt failures too.
#[tokio::test(start_paused = true)]
async fn g25_capture_publishes_pre_attempt_failures() {
    let executor = Executor::builder().provider(support::FailingProvider::default()).build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, failing(&calls))).await;
    assert!(result.is_err());
    assert!(!timeline.is_empty());
    assert!(!timeline.succeeded());
    assert!(timeline.attempts.is_empty());
    assert_eq!(timeline.key, PolicyKey::from(KEY));
    assert!(timeline.final_error.is_some());
}

// ---------------------------------------------------------------------------
// Call-level attributes (§12.14 and the Rust additions).

// `policy_source` names where the policy came from; nothing is normalized for a
// valid policy, and an unbudgeted policy has no `budget` attribute.
#[tokio::test(start_paused = true)]
async fn timeline_attribute_policy_source() {
    let (executor, _) = test_executor(Policy::builder(KEY).max_attempts(2).id("p-1").build());
    let (_, timeline) = recourse::capture(executor.call(KEY, || async { Ok::<_, TestError>(1) })).await;
    assert_eq!(timeline.attributes.get("policy_source"), Some("static"));
    assert_eq!(timeline.policy_source, PolicySource::Static);
    assert_eq!(timeline.policy_id.as_deref(), Some("p-1"));
    assert_eq!(timeline.attributes.get("policy_normalized"), None);
    assert_eq!(timeline.attributes.get("budget"), None);
    assert_eq!(timeline.attributes.get("budget_denied"), None);
    assert_eq!(timeline.attributes.get("classifier_fallback"), None);

    let bare = Executor::builder().build();
    let (_, timeline) = recourse::capture(bare.call(KEY, || async { Ok::<_, TestError>(1) })).await;
    assert_eq!(timeline.attributes.get("policy_source"), Some("default"));
}

// `policy_normalized` lists the fields the executor clamped in a provider's
// out-of-range policy, and the clamped policy is the one that runs.
#[tokio::test(start_paused = true)]
async fn timeline_attribute_policy_normalized() {
    let mut raw = Policy::default_for(PolicyKey::from(KEY));
    raw.retry.max_attempts = 50;
    raw.retry.backoff_multiplier = f64::NAN;
    assert!(!raw.is_normalized());
    let executor = Executor::builder()
        .provider(RawProvider(Arc::new(raw)))
        .sleeper(RecordingSleeper::new())
        .jitter_seed(SEED)
        .build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, failing(&calls))).await;
    assert!(matches!(result, Err(TestError::Failed(10))), "clamped to 10 attempts: {result:?}");
    let normalized = timeline.attributes.get("policy_normalized").expect("normalization noted");
    assert!(normalized.contains("retry.max_attempts"), "{normalized}");
    assert!(normalized.contains("retry.backoff_multiplier"), "{normalized}");
}

// `classifier_fallback` is noted when the policy names a missing classifier
// and the default (fallback) mode substitutes the default classifier; each
// attempt's outcome says so too.
#[tokio::test(start_paused = true)]
async fn timeline_attribute_classifier_fallback() {
    let (executor, _) = test_executor(Policy::builder(KEY).max_attempts(2).classifier("nope").build());
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, failing(&calls))).await;
    assert!(matches!(result, Err(TestError::Failed(2))), "the default classifier retried: {result:?}");
    let note = timeline.attributes.get("classifier_fallback").expect("fallback noted");
    assert!(note.contains("nope"), "{note}");
    assert_eq!(timeline.attributes.get("classifier_error"), None, "not a denial");
    for record in &timeline.attempts {
        assert_eq!(record.outcome.attributes.get("classifier_not_found"), Some("true"));
        assert_eq!(record.outcome.attributes.get("classifier_name"), Some("nope"));
        assert_eq!(record.outcome.attributes.get("classifier_fallback"), Some("default"));
    }
}

// `budget` names the policy's budget; `budget_denied` gives the reason a
// budget ended the call.
#[tokio::test(start_paused = true)]
async fn timeline_attributes_budget_and_budget_denied() {
    let policy = Policy::builder(KEY).max_attempts(3).budget("b").build();
    let allowing = Executor::builder()
        .provider(StaticProvider::new().with(policy.clone()))
        .budget("b", CountingBudget::new())
        .sleeper(RecordingSleeper::new())
        .build();
    let (_, timeline) = recourse::capture(allowing.call(KEY, || async { Ok::<_, TestError>(1) })).await;
    assert_eq!(timeline.attributes.get("budget"), Some("b"));
    assert_eq!(timeline.attributes.get("budget_denied"), None);

    let denying = Executor::builder()
        .provider(StaticProvider::new().with(policy))
        .budget("b", CountingBudget::denying(|attempt| attempt == 1))
        .sleeper(RecordingSleeper::new())
        .build();
    let calls = Counter::new();
    let (_, timeline) = recourse::capture(denying.call(KEY, failing(&calls))).await;
    assert_eq!(timeline.attributes.get("budget"), Some("b"));
    assert_eq!(timeline.attributes.get("budget_denied"), Some(reason::BUDGET_DENIED));
}

// The `budget` attribute names the budget that was consulted: the trimmed name
// (the gate, the registry and `BudgetDecisionEvent::budget` all trim it,
// spec §8.4 / §11.4).
#[tokio::test(start_paused = true)]
async fn timeline_attribute_budget_is_the_trimmed_name() {
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(1).budget("  b  ").build())
        .budget("b", CountingBudget::new())
        .build();
    let (result, timeline) = recourse::capture(executor.call(KEY, || async { Ok::<_, TestError>(1) })).await;
    assert_eq!(result.unwrap(), 1);
    assert_eq!(timeline.attempts[0].budget_reason, reason::ALLOWED, "the gate found `b`");
    assert_eq!(timeline.attributes.get("budget"), Some("b"));
}

// ---------------------------------------------------------------------------
// `Display`: a readable per-attempt chart (DESIGN §3.4).

fn attempt_lines(rendered: &str) -> Vec<&str> {
    rendered.lines().filter(|line| line.trim_start().starts_with('#')).collect()
}

// A failed, budgeted call: the header says FAILED with the reason and error,
// one line per attempt with outcome, reason, backoff and budget, and the
// denied attempt shows `budget=DENIED:budget_denied`.
#[tokio::test(start_paused = true)]
async fn timeline_display_failed_call_with_a_denied_attempt() {
    // Default tokio sleeper: the 10 ms backoff passes in paused time.
    let executor = Executor::builder()
        .policy(Policy::builder(KEY).max_attempts(3).budget("b").id("pid-7").build())
        .budget("b", CountingBudget::denying(|attempt| attempt == 2))
        .jitter_seed(SEED)
        .build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, failing(&calls))).await;
    assert!(matches!(result, Err(TestError::Failed(2))));
    let rendered = timeline.to_string();
    let header = rendered.lines().next().expect("a header line");
    assert!(header.contains("FAILED"), "{rendered}");
    assert!(!header.contains("OK"), "{rendered}");
    assert!(header.contains("budget_denied"), "{rendered}");
    assert!(header.contains("call 2 failed"), "{rendered}");
    assert!(header.contains("3 attempts"), "{rendered}");
    assert!(header.contains("policy=static"), "{rendered}");
    assert!(header.contains("id=pid-7"), "{rendered}");
    assert!(header.starts_with(&PolicyKey::from(KEY).to_string()), "{rendered}");
    assert!(rendered.contains("@budget=b"), "attributes are listed: {rendered}");

    let lines = attempt_lines(&rendered);
    assert_eq!(lines.len(), 3, "one line per attempt: {rendered}");
    for (line, record) in lines.iter().zip(&timeline.attempts) {
        assert!(line.contains(&format!("#{}", record.attempt)), "{line}");
        assert!(line.contains(record.outcome.kind.as_str()), "{line}");
        assert!(line.contains(record.outcome.reason.as_ref()), "{line}");
    }
    assert!(lines[0].contains("budget=allowed"), "{}", lines[0]);
    assert!(lines[0].contains("error=call 1 failed"), "{}", lines[0]);
    assert!(!lines[0].contains("backoff="), "no backoff before the first attempt: {}", lines[0]);
    assert!(lines[1].contains("backoff=10ms"), "{}", lines[1]);
    assert!(lines[2].contains("budget=DENIED:budget_denied"), "{}", lines[2]);
    assert!(lines[2].contains("backoff=20ms"), "{}", lines[2]);
    assert!(lines[2].contains("abort"), "{}", lines[2]);
    assert!(!lines[2].contains("error="), "a denied attempt has no error: {}", lines[2]);
}

// A successful unbudgeted call: OK in the header, no budget column.
#[tokio::test(start_paused = true)]
async fn timeline_display_successful_call() {
    let executor = Executor::builder().policy(Policy::builder(KEY).max_attempts(3).build()).build();
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(executor.call(KEY, || {
        let n = calls.hit();
        async move {
            tokio::time::sleep(ms(5)).await;
            if n == 1 { Err(TestError::Failed(n)) } else { Ok(n) }
        }
    }))
    .await;
    assert_eq!(result.unwrap(), 2);
    let rendered = timeline.to_string();
    let header = rendered.lines().next().expect("a header line");
    assert!(header.ends_with("OK"), "{rendered}");
    assert!(!header.contains("FAILED"), "{rendered}");
    assert!(header.contains("2 attempts"), "{rendered}");
    assert!(header.contains("20ms"), "5 ms + 10 ms backoff + 5 ms: {rendered}");
    let lines = attempt_lines(&rendered);
    assert_eq!(lines.len(), 2, "{rendered}");
    assert!(lines[0].contains("retryable"), "{}", lines[0]);
    assert!(lines[0].contains(timeline.attempts[0].outcome.reason.as_ref()), "{}", lines[0]);
    assert!(lines[1].contains("success"), "{}", lines[1]);
    assert!(lines[1].contains("backoff=10ms"), "{}", lines[1]);
    assert!(lines.iter().all(|line| !line.contains("budget=")), "{rendered}");
    assert_eq!(timeline.attempts[0].duration(), ms(5));
    assert_eq!(timeline.duration(), ms(20));
}

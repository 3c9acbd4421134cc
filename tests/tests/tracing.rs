//! The `tracing` observer's spans and events, captured by a real
//! `tracing-subscriber` layer: the span tree of a call with two retries and
//! a hedge, its fields, parents and events in order.
#![cfg(feature = "tracing")]
#![allow(missing_docs)]

mod support;

use std::future::Future;
use std::io;

use recourse::Executor;
use recourse::policy::Policy;
use recourse::tracing::TracingObserver;
use support::trace::{Capture, captured};
use support::{Counter, RecordingSleeper, ms};
use tracing_subscriber::layer::SubscriberExt as _;

/// Fails the first two attempts, hangs the third primary, answers its hedge.
fn scripted(calls: &Counter) -> impl Future<Output = Result<&'static str, io::Error>> + use<> {
    let call = calls.hit();
    async move {
        tracing::info!(call, "inside the operation");
        match call {
            1 | 2 => Err(io::Error::from(io::ErrorKind::ConnectionReset)),
            3 => std::future::pending().await,
            _ => Ok("ada"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_span_tree_of_a_call_with_two_retries_and_a_hedge() {
    let policy = Policy::builder("users.Get")
        .max_attempts(3)
        .backoff(ms(10), ms(100), 2.0)
        .max_hedges(1)
        .hedge_delay(ms(20))
        .build();
    let sleeper = RecordingSleeper::new();
    let executor = Executor::builder().policy(policy).sleeper(sleeper).observer(TracingObserver::new()).build();
    let capture = Capture::default();
    let calls = Counter::new();
    let outer = async {
        let span = tracing::info_span!("handler");
        tracing::Instrument::instrument(executor.call("users.Get", || scripted(&calls)), span).await
    };
    assert_eq!(captured(&capture, outer).await.unwrap(), "ada");
    let expected = "\
handler{}
  recourse.call{recourse.attempts=4 recourse.key=users.Get recourse.outcome=success recourse.policy.source=static recourse.reason=success}
    recourse.attempt{recourse.attempt=0 recourse.backoff_ms=0 recourse.budget=no_budget recourse.hedge=0 recourse.outcome=retryable recourse.reason=io_connection_reset}
      event:inside the operation call=1
    recourse.attempt{recourse.attempt=1 recourse.backoff_ms=10 recourse.budget=no_budget recourse.hedge=0 recourse.outcome=retryable recourse.reason=io_connection_reset}
      event:inside the operation call=2
    recourse.attempt{recourse.attempt=2 recourse.backoff_ms=20 recourse.budget=no_budget recourse.hedge=0 recourse.outcome=abort recourse.reason=hedge_cancelled}
      event:inside the operation call=3
      event:attempt cancelled recourse.reason=another attempt succeeded
    event:hedge spawned recourse.hedge=1
    recourse.attempt{recourse.attempt=2 recourse.backoff_ms=0 recourse.budget=no_budget recourse.hedge=1 recourse.outcome=success recourse.reason=success}
      event:inside the operation call=4
";
    assert_eq!(capture.tree(), expected, "\n{}", capture.tree());
}

#[tokio::test(start_paused = true)]
async fn without_a_subscriber_nothing_is_made() {
    let executor = Executor::builder().observer(TracingObserver::new()).build();
    let calls = Counter::new();
    let result = executor
        .call("users.Get", || {
            let call = calls.hit();
            async move { if call < 2 { Err(io::Error::from(io::ErrorKind::ConnectionReset)) } else { Ok(call) } }
        })
        .await;
    assert_eq!(result.unwrap(), 2);
}

// `#[tracing::instrument]` and `#[recourse]` in each order.

#[tracing::instrument(skip(executor, calls))]
#[recourse::recourse(policy = "users.Get", executor = executor)]
async fn instrument_above(executor: &Executor, calls: &Counter, id: u64) -> Result<u64, io::Error> {
    let call = calls.hit();
    tracing::info!(call, "inside");
    if call < 2 { Err(io::Error::from(io::ErrorKind::ConnectionReset)) } else { Ok(id) }
}

#[recourse::recourse(policy = "users.Get", executor = executor)]
#[tracing::instrument(skip(executor, calls))]
async fn instrument_below(executor: &Executor, calls: &Counter, id: u64) -> Result<u64, io::Error> {
    let call = calls.hit();
    tracing::info!(call, "inside");
    if call < 2 { Err(io::Error::from(io::ErrorKind::ConnectionReset)) } else { Ok(id) }
}

/// The body's own function, instrumented: one span per attempt.
#[tracing::instrument(skip(calls))]
async fn load(calls: &Counter, id: u64) -> Result<u64, io::Error> {
    let call = calls.hit();
    tracing::info!(call, "inside");
    if call < 2 { Err(io::Error::from(io::ErrorKind::ConnectionReset)) } else { Ok(id) }
}

#[recourse::recourse(policy = "users.Get", executor = executor)]
async fn calls_an_instrumented_fn(executor: &Executor, calls: &Counter, id: u64) -> Result<u64, io::Error> {
    load(calls, id).await
}

fn traced_executor() -> Executor {
    Executor::builder().sleeper(RecordingSleeper::new()).observer(TracingObserver::new()).build()
}

fn compact(tree: &str) -> String {
    tree.lines()
        .map(|line| line.split_once('{').map_or(line, |(name, _)| name).to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(start_paused = true)]
async fn instrument_above_recourse_gives_a_span_per_attempt() {
    // `instrument` expands first and turns the body into an instrumented
    // block, which `#[recourse]` then runs once per attempt.
    let executor = traced_executor();
    let capture = Capture::default();
    let calls = Counter::new();
    assert_eq!(captured(&capture, instrument_above(&executor, &calls, 7)).await.unwrap(), 7);
    let expected = "recourse.call\n  recourse.attempt\n    instrument_above\n      event:inside call=1\n  recourse.attempt\n    instrument_above\n      event:inside call=2";
    assert_eq!(compact(&capture.tree()), expected, "\n{}", capture.tree());
}

#[tokio::test(start_paused = true)]
async fn instrument_below_recourse_gives_one_span_around_the_call() {
    // `#[recourse]` expands first and keeps `instrument` on the function it
    // writes, whose body is the whole call.
    let executor = traced_executor();
    let capture = Capture::default();
    let calls = Counter::new();
    assert_eq!(captured(&capture, instrument_below(&executor, &calls, 7)).await.unwrap(), 7);
    let expected = "instrument_below\n  recourse.call\n    recourse.attempt\n      event:inside call=1\n    recourse.attempt\n      event:inside call=2";
    assert_eq!(compact(&capture.tree()), expected, "\n{}", capture.tree());
}

#[tokio::test(start_paused = true)]
async fn an_instrumented_function_called_in_the_body_gives_a_span_per_attempt() {
    let executor = traced_executor();
    let capture = Capture::default();
    let calls = Counter::new();
    assert_eq!(captured(&capture, calls_an_instrumented_fn(&executor, &calls, 7)).await.unwrap(), 7);
    let expected = "recourse.call\n  recourse.attempt\n    load\n      event:inside call=1\n  recourse.attempt\n    load\n      event:inside call=2";
    assert_eq!(compact(&capture.tree()), expected, "\n{}", capture.tree());
}

#[tokio::test(start_paused = true)]
async fn the_spans_export_unchanged_through_opentelemetry() {
    use opentelemetry::Value;
    use opentelemetry::trace::TracerProvider as _;

    let exporter = opentelemetry_sdk::trace::InMemorySpanExporterBuilder::new().build();
    let provider =
        opentelemetry_sdk::trace::SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("recourse-tests")));
    let executor = traced_executor();
    let calls = Counter::new();
    {
        let _default = tracing::subscriber::set_default(subscriber);
        assert_eq!(calls_an_instrumented_fn(&executor, &calls, 7).await.unwrap(), 7);
    }
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let named = |name: &str| spans.iter().filter(|s| s.name == name).collect::<Vec<_>>();
    let attribute = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes.iter().find(|kv| kv.key.as_str() == key).map(|kv| kv.value.clone())
    };
    let [call] = named("recourse.call")[..] else { panic!("one call span: {spans:#?}") };
    assert_eq!(attribute(call, "recourse.key"), Some(Value::from("users.Get")));
    assert_eq!(attribute(call, "recourse.outcome"), Some(Value::from("success")));
    assert_eq!(attribute(call, "recourse.attempts"), Some(Value::I64(2)));
    let attempts = named("recourse.attempt");
    assert_eq!(attempts.len(), 2);
    for (index, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt.parent_span_id, call.span_context.span_id(), "an attempt is a child of its call");
        assert_eq!(attempt.span_context.trace_id(), call.span_context.trace_id());
        assert_eq!(attribute(attempt, "recourse.attempt"), Some(Value::I64(i64::try_from(index).unwrap())));
    }
    let reasons: Vec<_> = attempts.iter().map(|a| attribute(a, "recourse.reason")).collect();
    assert_eq!(reasons, [Some(Value::from("io_connection_reset")), Some(Value::from("success"))]);
    // The operation's own span sits under its attempt.
    let loads = named("load");
    assert_eq!(loads.len(), 2);
    assert_eq!(loads[0].parent_span_id, attempts[0].span_context.span_id());
}

#[tokio::test(start_paused = true)]
async fn a_recovered_panic_is_an_event_of_the_call() {
    let policy = Policy::builder("users.Get").max_attempts(3).classifier("boom").build();
    let executor = Executor::builder()
        .policy(policy)
        .classifier("boom", |_: &dyn recourse::classify::ErrorView| -> recourse::Outcome { panic!("classifier bug") })
        .recover_panics(true)
        .observer(TracingObserver::new())
        .build();
    let capture = Capture::default();
    let result =
        captured(&capture, executor.call("users.Get", || async { Err::<(), _>(io::Error::other("down")) })).await;
    assert!(result.is_err());
    let tree = capture.tree();
    let call = tree.lines().next().unwrap();
    assert!(call.contains("recourse.reason=panic_in_classifier"), "{tree}");
    assert!(
        tree.lines()
            .any(|line| line.starts_with("  event:recovered panic recourse.panic=") && line.contains("classifier bug")),
        "{tree}"
    );
}

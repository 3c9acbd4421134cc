//! `recourse::metrics::MetricsObserver` (feature `metrics`): exact counter
//! values and histogram samples for scripted calls, and the Prometheus
//! exposition scraped over HTTP. The Go original's Prometheus observer
//! (spec §15, checklist W94) is the model; the Rust metrics add hedges,
//! breakers and per-reason attempt series.
//!
//! Each test installs its own recorder as the thread's local recorder
//! (`metrics::set_default_local_recorder`) and runs on tokio's
//! current-thread test runtime, so every callback of its calls lands in its
//! recorder and tests never see each other's metrics. Durations are exact:
//! the in-memory tests run on paused time and their operations sleep on it.
#![cfg(feature = "metrics")]
#![allow(missing_docs)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use recourse::Executor;
use recourse::circuit::{self, State};
use recourse::metrics::MetricsObserver;
use recourse::policy::Policy;
use support::{Counter, CountingBudget, OpError, RecordingSleeper, ms};

const RESERVE: &str = "inventory.Reserve";
const CHARGE: &str = "payments.Charge";

/// What a recorder holds: every series as `name{label=value,...}` (labels
/// in the order they were recorded) with its counter value or histogram
/// samples.
#[derive(Debug, Default, PartialEq)]
struct Recorded {
    counters: BTreeMap<String, u64>,
    histograms: BTreeMap<String, Vec<f64>>,
}

fn series(key: &metrics::Key) -> String {
    let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
    format!("{}{{{}}}", key.name(), labels.join(","))
}

/// Runs `body` with a fresh in-memory recorder as this thread's recorder
/// and returns its output with everything recorded meanwhile.
async fn recorded<F: Future>(body: impl FnOnce() -> F) -> (F::Output, Recorded) {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let output = {
        let _local = metrics::set_default_local_recorder(&recorder);
        body().await
    };
    let mut seen = Recorded::default();
    for (key, _unit, _description, value) in snapshotter.snapshot().into_vec() {
        let name = series(key.key());
        match (key.kind(), value) {
            (MetricKind::Counter, DebugValue::Counter(n)) => {
                seen.counters.insert(name, n);
            }
            (MetricKind::Histogram, DebugValue::Histogram(samples)) => {
                seen.histograms.insert(name, samples.into_iter().map(|s| s.0).collect());
            }
            (kind, value) => panic!("unexpected {kind:?} {name} = {value:?}"),
        }
    }
    (output, seen)
}

fn counters(expected: &[(&str, u64)]) -> BTreeMap<String, u64> {
    expected.iter().map(|(name, n)| ((*name).to_owned(), *n)).collect()
}

/// Expected histogram samples, durations given in milliseconds.
fn histograms(expected: &[(&str, &[u64])]) -> BTreeMap<String, Vec<f64>> {
    expected.iter().map(|(name, samples)| ((*name).to_owned(), samples.iter().map(|&n| secs(n)).collect())).collect()
}

fn secs(millis: u64) -> f64 {
    ms(millis).as_secs_f64()
}

/// An executor with `policy`, the metrics observer and a sleeper that
/// returns at once (backoff takes no time).
fn metered(policy: Policy) -> Executor {
    Executor::builder().policy(policy).observer(MetricsObserver::new()).sleeper(RecordingSleeper::new()).build()
}

/// One call of `key` whose `n`-th attempt (1-based) takes `latency` and
/// then returns `script(n)`.
async fn call(
    executor: &Executor,
    key: &'static str,
    latency: Duration,
    script: impl Fn(usize) -> Result<u32, OpError>,
) -> Result<u32, OpError> {
    let calls = Counter::new();
    executor
        .call(key, || {
            let outcome = script(calls.hit());
            async move {
                tokio::time::sleep(latency).await;
                outcome
            }
        })
        .await
}

// ---------------------------------------------------------------------------
// Calls and attempts.

// Three attempts allowed; the operation fails twice (retryable) and then
// succeeds: one successful call, two retryable attempts and one successful
// one, each attempt's duration and the whole call's (backoff included,
// here instant) in seconds.
#[tokio::test(start_paused = true)]
async fn a_call_that_succeeds_on_its_third_attempt() {
    let (result, m) = recorded(|| async {
        let executor = metered(Policy::builder(RESERVE).max_attempts(3).build());
        call(&executor, RESERVE, ms(5), |n| if n <= 2 { Err(OpError::Retryable("flaky")) } else { Ok(7) }).await
    })
    .await;
    assert_eq!(result.unwrap(), 7);
    assert_eq!(
        m.counters,
        counters(&[
            ("recourse_attempts{key=inventory.Reserve,outcome=retryable,reason=op_retryable,hedge=false}", 2),
            ("recourse_attempts{key=inventory.Reserve,outcome=success,reason=success,hedge=false}", 1),
            ("recourse_calls{key=inventory.Reserve,outcome=success,reason=success}", 1),
        ])
    );
    assert_eq!(
        m.histograms,
        histograms(&[
            ("recourse_attempt_duration_seconds{key=inventory.Reserve,outcome=retryable}", &[5, 5]),
            ("recourse_attempt_duration_seconds{key=inventory.Reserve,outcome=success}", &[5]),
            ("recourse_call_duration_seconds{key=inventory.Reserve,outcome=success}", &[15]),
        ])
    );
}

// A non-retryable failure ends the call with that reason; attempts that run
// out end it with the last attempt's reason. Each key has its own series.
#[tokio::test(start_paused = true)]
async fn failed_calls_are_counted_with_the_reason_that_ended_them() {
    let (results, m) = recorded(|| async {
        let executor = Executor::builder()
            .policy(Policy::builder(RESERVE).max_attempts(3).build())
            .policy(Policy::builder(CHARGE).max_attempts(2).build())
            .observer(MetricsObserver::new())
            .sleeper(RecordingSleeper::new())
            .build();
        let fatal = call(&executor, RESERVE, ms(2), |_| Err(OpError::Fatal("sold out"))).await;
        let exhausted = call(&executor, CHARGE, ms(3), |_| Err(OpError::Retryable("gateway"))).await;
        (fatal, exhausted)
    })
    .await;
    assert!(matches!(results, (Err(OpError::Fatal(_)), Err(OpError::Retryable(_)))), "{results:?}");
    assert_eq!(
        m.counters,
        counters(&[
            ("recourse_attempts{key=inventory.Reserve,outcome=non_retryable,reason=op_fatal,hedge=false}", 1),
            ("recourse_attempts{key=payments.Charge,outcome=retryable,reason=op_retryable,hedge=false}", 2),
            ("recourse_calls{key=inventory.Reserve,outcome=failure,reason=op_fatal}", 1),
            ("recourse_calls{key=payments.Charge,outcome=failure,reason=op_retryable}", 1),
        ])
    );
    assert_eq!(
        m.histograms,
        histograms(&[
            ("recourse_attempt_duration_seconds{key=inventory.Reserve,outcome=non_retryable}", &[2]),
            ("recourse_attempt_duration_seconds{key=payments.Charge,outcome=retryable}", &[3, 3]),
            ("recourse_call_duration_seconds{key=inventory.Reserve,outcome=failure}", &[2]),
            ("recourse_call_duration_seconds{key=payments.Charge,outcome=failure}", &[6]),
        ])
    );
}

// Labels never carry error messages or policy ids, whatever the errors
// say: only the fixed label names, with values from the key, reason codes
// and the fixed vocabularies.
#[tokio::test(start_paused = true)]
async fn labels_carry_no_error_message_or_policy_id() {
    let (_, m) = recorded(|| async {
        let executor = metered(Policy::builder(RESERVE).max_attempts(2).id("policy-4711").build());
        call(&executor, RESERVE, ms(1), |_| Err(OpError::Retryable("order 4711 for customer 99"))).await
    })
    .await;
    let all: Vec<&String> = m.counters.keys().chain(m.histograms.keys()).collect();
    assert_eq!(all.len(), 4, "{all:?}");
    for name in all {
        assert!(!name.contains("4711") && !name.contains("customer"), "{name}");
        let labels = name.split_once('{').unwrap().1.trim_end_matches('}');
        for label in labels.split(',') {
            let (label, value) = label.split_once('=').unwrap();
            assert!(["key", "outcome", "reason", "hedge"].contains(&label), "{name}");
            assert!([RESERVE, "failure", "retryable", "op_retryable", "false"].contains(&value), "{name}");
        }
    }
}

// A custom prefix renames every metric.
#[tokio::test(start_paused = true)]
async fn a_prefix_renames_every_metric() {
    let (_, m) = recorded(|| async {
        let executor = Executor::builder()
            .policy(Policy::builder(RESERVE).max_attempts(1).build())
            .observer(MetricsObserver::with_prefix("shop"))
            .build();
        call(&executor, RESERVE, ms(1), |_| Ok(1)).await
    })
    .await;
    assert_eq!(
        m.counters,
        counters(&[
            ("shop_attempts{key=inventory.Reserve,outcome=success,reason=success,hedge=false}", 1),
            ("shop_calls{key=inventory.Reserve,outcome=success,reason=success}", 1),
        ])
    );
    assert_eq!(
        m.histograms.keys().collect::<Vec<_>>(),
        [
            "shop_attempt_duration_seconds{key=inventory.Reserve,outcome=success}",
            "shop_call_duration_seconds{key=inventory.Reserve,outcome=success}",
        ]
    );
}

// ---------------------------------------------------------------------------
// Budgets.

// The budget allows the first attempt and denies the retry: one decision
// of each kind, the denied attempt counted (abort, `budget_denied`) but
// given no duration sample (it never ran), and the call ends on the
// denial. A second key whose budget denies its first attempt fails with
// no attempt that ran.
#[tokio::test(start_paused = true)]
async fn budget_decisions_and_a_denied_retry() {
    let (results, m) = recorded(|| async {
        let executor = Executor::builder()
            .policy(Policy::builder(RESERVE).max_attempts(3).budget("retries").build())
            .policy(Policy::builder(CHARGE).max_attempts(3).budget("closed").build())
            .budget("retries", CountingBudget::denying(|attempt| attempt >= 1))
            .budget("closed", CountingBudget::denying(|_| true))
            .observer(MetricsObserver::new())
            .sleeper(RecordingSleeper::new())
            .build();
        let retry_denied = call(&executor, RESERVE, ms(4), |_| Err(OpError::Retryable("busy"))).await;
        let first_denied = call(&executor, CHARGE, ms(4), |_| Ok(1)).await;
        (retry_denied, first_denied)
    })
    .await;
    assert!(matches!(results.0, Err(OpError::Retryable("busy"))), "DESIGN §6.2: {:?}", results.0);
    assert!(
        matches!(results.1.as_ref().map_err(OpError::recourse), Err(Some(recourse::Error::BudgetDenied { .. }))),
        "{:?}",
        results.1
    );
    assert_eq!(
        m.counters,
        counters(&[
            ("recourse_attempts{key=inventory.Reserve,outcome=abort,reason=budget_denied,hedge=false}", 1),
            ("recourse_attempts{key=inventory.Reserve,outcome=retryable,reason=op_retryable,hedge=false}", 1),
            ("recourse_attempts{key=payments.Charge,outcome=abort,reason=budget_denied,hedge=false}", 1),
            ("recourse_budget_decisions{key=inventory.Reserve,budget=retries,outcome=allowed,reason=allowed}", 1),
            ("recourse_budget_decisions{key=inventory.Reserve,budget=retries,outcome=denied,reason=budget_denied}", 1),
            ("recourse_budget_decisions{key=payments.Charge,budget=closed,outcome=denied,reason=budget_denied}", 1),
            ("recourse_calls{key=inventory.Reserve,outcome=failure,reason=budget_denied}", 1),
            ("recourse_calls{key=payments.Charge,outcome=failure,reason=budget_denied}", 1),
        ])
    );
    assert_eq!(
        m.histograms,
        histograms(&[
            ("recourse_attempt_duration_seconds{key=inventory.Reserve,outcome=retryable}", &[4]),
            ("recourse_call_duration_seconds{key=inventory.Reserve,outcome=failure}", &[4]),
            ("recourse_call_duration_seconds{key=payments.Charge,outcome=failure}", &[0]),
        ])
    );
}

// ---------------------------------------------------------------------------
// Hedging.

// {1 attempt, 1 hedge after 10 ms}. First call: every attempt takes 50 ms,
// so the primary wins at 50 ms and the hedge (launched at 10 ms) is
// cancelled after 40 ms. Second call: the hedge answers at once and the
// primary is cancelled at 10 ms. Each cancelled attempt is counted as an
// attempt (abort, `hedge_cancelled`) and as a cancel.
#[tokio::test(start_paused = true)]
async fn hedges_spawned_and_losers_cancelled() {
    let (results, m) = recorded(|| async {
        let executor = metered(Policy::builder(RESERVE).max_attempts(1).max_hedges(1).hedge_delay(ms(10)).build());
        let primary_wins = call(&executor, RESERVE, ms(50), |_| Ok(1)).await;
        let hedge_wins = executor
            .call(RESERVE, || {
                let is_hedge = recourse::attempt().is_some_and(|a| a.is_hedge());
                async move {
                    if !is_hedge {
                        tokio::time::sleep(ms(200)).await;
                    }
                    Ok::<_, OpError>(u32::from(is_hedge) + 1)
                }
            })
            .await;
        (primary_wins, hedge_wins)
    })
    .await;
    assert_eq!((results.0.unwrap(), results.1.unwrap()), (1, 2));
    assert_eq!(
        m.counters,
        counters(&[
            ("recourse_attempts{key=inventory.Reserve,outcome=abort,reason=hedge_cancelled,hedge=false}", 1),
            ("recourse_attempts{key=inventory.Reserve,outcome=abort,reason=hedge_cancelled,hedge=true}", 1),
            ("recourse_attempts{key=inventory.Reserve,outcome=success,reason=success,hedge=false}", 1),
            ("recourse_attempts{key=inventory.Reserve,outcome=success,reason=success,hedge=true}", 1),
            ("recourse_calls{key=inventory.Reserve,outcome=success,reason=success}", 2),
            ("recourse_hedge_cancels{key=inventory.Reserve}", 2),
            ("recourse_hedge_spawns{key=inventory.Reserve}", 2),
        ])
    );
    assert_eq!(
        m.histograms,
        histograms(&[
            ("recourse_attempt_duration_seconds{key=inventory.Reserve,outcome=abort}", &[40, 10]),
            ("recourse_attempt_duration_seconds{key=inventory.Reserve,outcome=success}", &[50, 0]),
            ("recourse_call_duration_seconds{key=inventory.Reserve,outcome=success}", &[50, 10]),
        ])
    );
}

// ---------------------------------------------------------------------------
// Circuit breaking.

// {1 attempt, threshold 2, cooldown 100 ms}: two failures open the
// breaker, the next call is refused (`circuit_open`, no attempt), and after
// the cooldown a probe succeeds and closes it: three transitions.
#[tokio::test(start_paused = true)]
async fn a_breaker_opens_refuses_and_closes() {
    let registry = Arc::new(circuit::Registry::new());
    let (states, m) = recorded(|| async {
        let executor = Executor::builder()
            .policy(Policy::builder(RESERVE).max_attempts(1).circuit(2, ms(100)).build())
            .circuits(Arc::clone(&registry))
            .observer(MetricsObserver::new())
            .build();
        let breaker = || registry.get(&RESERVE.into()).map(|b| b.state());
        let mut states = Vec::new();
        for _ in 0..2 {
            call(&executor, RESERVE, ms(5), |_| Err(OpError::Retryable("down"))).await.unwrap_err();
        }
        states.push(breaker());
        let refused = call(&executor, RESERVE, ms(5), |_| Ok(1)).await;
        assert!(matches!(refused.as_ref().map_err(OpError::recourse), Err(Some(recourse::Error::CircuitOpen { .. }))));
        tokio::time::sleep(ms(100)).await;
        assert_eq!(call(&executor, RESERVE, ms(5), |_| Ok(1)).await.unwrap(), 1);
        states.push(breaker());
        states
    })
    .await;
    assert_eq!(states, [Some(State::Open), Some(State::Closed)]);
    assert_eq!(
        m.counters,
        counters(&[
            ("recourse_attempts{key=inventory.Reserve,outcome=retryable,reason=op_retryable,hedge=false}", 2),
            ("recourse_attempts{key=inventory.Reserve,outcome=success,reason=success,hedge=false}", 1),
            ("recourse_calls{key=inventory.Reserve,outcome=failure,reason=circuit_open}", 1),
            ("recourse_calls{key=inventory.Reserve,outcome=failure,reason=op_retryable}", 2),
            ("recourse_calls{key=inventory.Reserve,outcome=success,reason=success}", 1),
            ("recourse_circuit_transitions{key=inventory.Reserve,from=closed,to=open}", 1),
            ("recourse_circuit_transitions{key=inventory.Reserve,from=half-open,to=closed}", 1),
            ("recourse_circuit_transitions{key=inventory.Reserve,from=open,to=half-open}", 1),
        ])
    );
    assert_eq!(
        m.histograms,
        histograms(&[
            ("recourse_attempt_duration_seconds{key=inventory.Reserve,outcome=retryable}", &[5, 5]),
            ("recourse_attempt_duration_seconds{key=inventory.Reserve,outcome=success}", &[5]),
            ("recourse_call_duration_seconds{key=inventory.Reserve,outcome=failure}", &[5, 5, 0]),
            ("recourse_call_duration_seconds{key=inventory.Reserve,outcome=success}", &[5]),
        ])
    );
}

// ---------------------------------------------------------------------------
// Prometheus.

/// The exposition's samples, `series -> value`, and its `# TYPE` lines.
fn parse_exposition(text: &str) -> (HashMap<&str, &str>, Vec<&str>) {
    let samples = text
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample line: {line}")))
        .collect();
    let types = text.lines().filter(|line| line.starts_with("# TYPE ")).collect();
    (samples, types)
}

// The Prometheus recorder's exposition, served on 127.0.0.1 and fetched
// over a real TCP connection: the calls of the first test and a denied
// budget, with the exporter's recommended naming (`_total` on counters).
#[tokio::test]
async fn prometheus_exposition_scraped_over_http() {
    let recorder = PrometheusBuilder::new()
        .with_recommended_naming(true)
        .set_buckets(&[0.005, 0.05, 0.5, 5.0])
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    {
        let _local = metrics::set_default_local_recorder(&recorder);
        let executor = Executor::builder()
            .policy(Policy::builder(RESERVE).max_attempts(3).build())
            .policy(Policy::builder(CHARGE).max_attempts(1).budget("closed").build())
            .budget("closed", CountingBudget::denying(|_| true))
            .observer(MetricsObserver::new())
            .sleeper(RecordingSleeper::new())
            .build();
        let flaky = Counter::new();
        let reserved = executor
            .call(RESERVE, || {
                let n = flaky.hit();
                async move { if n <= 2 { Err(OpError::Retryable("flaky")) } else { Ok(7) } }
            })
            .await;
        assert_eq!(reserved.unwrap(), 7);
        executor.call(CHARGE, || async { Ok::<_, OpError>(1) }).await.unwrap_err();
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/metrics", axum::routing::get(move || std::future::ready(handle.render())));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let response = reqwest::get(format!("http://{address}/metrics")).await.unwrap();
    assert!(response.status().is_success());
    let text = response.text().await.unwrap();
    server.abort();

    let (samples, types) = parse_exposition(&text);
    let expected = [
        (r#"recourse_calls_total{key="inventory.Reserve",outcome="success",reason="success"}"#, "1"),
        (r#"recourse_calls_total{key="payments.Charge",outcome="failure",reason="budget_denied"}"#, "1"),
        (
            r#"recourse_attempts_total{key="inventory.Reserve",outcome="retryable",reason="op_retryable",hedge="false"}"#,
            "2",
        ),
        (r#"recourse_attempts_total{key="inventory.Reserve",outcome="success",reason="success",hedge="false"}"#, "1"),
        (r#"recourse_attempts_total{key="payments.Charge",outcome="abort",reason="budget_denied",hedge="false"}"#, "1"),
        (
            r#"recourse_budget_decisions_total{key="payments.Charge",budget="closed",outcome="denied",reason="budget_denied"}"#,
            "1",
        ),
        (r#"recourse_call_duration_seconds_count{key="inventory.Reserve",outcome="success"}"#, "1"),
        (r#"recourse_call_duration_seconds_count{key="payments.Charge",outcome="failure"}"#, "1"),
        (r#"recourse_attempt_duration_seconds_count{key="inventory.Reserve",outcome="retryable"}"#, "2"),
        (r#"recourse_attempt_duration_seconds_count{key="inventory.Reserve",outcome="success"}"#, "1"),
    ];
    for (series, value) in expected {
        assert_eq!(samples.get(series), Some(&value), "{series} in\n{text}");
    }
    assert!(
        !samples.keys().any(|s| s.starts_with("recourse_attempt_duration_seconds") && s.contains("payments.Charge")),
        "a denied attempt has no duration:\n{text}"
    );
    for line in [
        "# TYPE recourse_calls_total counter",
        "# TYPE recourse_attempts_total counter",
        "# TYPE recourse_budget_decisions_total counter",
        "# TYPE recourse_call_duration_seconds histogram",
        "# TYPE recourse_attempt_duration_seconds histogram",
    ] {
        assert!(types.contains(&line), "{line} in\n{text}");
    }
    assert!(text.contains("# HELP recourse_calls_total "), "the observer described its metrics:\n{text}");
}

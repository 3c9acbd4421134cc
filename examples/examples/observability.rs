//! Spans and metrics of a short scripted workload.
//!
//! Run with `cargo run -p recourse-examples --features observability --example observability`.
//!
//! The executor has two observers: `TracingObserver` (a `recourse.call`
//! span per call, a `recourse.attempt` span per attempt, current while the
//! attempt runs) and `MetricsObserver` (counters and histograms through the
//! `metrics` facade). Spans are printed as they close, each after the path
//! of its parents; then the metrics, in Prometheus's text format.
#![allow(missing_docs)]

use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusBuilder;
use recourse::metrics::MetricsObserver;
use recourse::recourse;
use recourse::tracing::TracingObserver;
use tracing_subscriber::fmt::format::FmtSpan;

static CALLS: AtomicU32 = AtomicU32::new(0);

/// Resets the first two connections; the third search hangs until its hedge
/// answers.
#[recourse(policy = "catalog.Search")]
async fn search(query: &str) -> io::Result<String> {
    let call = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::info!(call, query, "querying the index");
    match call {
        1 | 2 => Err(io::Error::from(io::ErrorKind::ConnectionReset)),
        3 => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(format!("slow results for {query}"))
        }
        _ => Ok(format!("results for {query}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    tracing_subscriber::fmt().with_span_events(FmtSpan::CLOSE).without_time().with_target(false).init();
    let prometheus = PrometheusBuilder::new().install_recorder().expect("a recorder");
    let executor =
        recourse::Executor::builder().observer(TracingObserver::new()).observer(MetricsObserver::new()).build();
    let _ = recourse::install(executor);

    println!("-- spans, as they close --");
    let answer = search("rust retries").await;
    println!("\nsearch -> {answer:?}\n");

    println!("-- metrics --");
    for line in prometheus.render().lines().filter(|line| line.starts_with("recourse_") && !line.contains("quantile="))
    {
        println!("{line}");
    }
}

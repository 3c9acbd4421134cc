//! Prometheus metrics of every call, from one observer.
//!
//! Run with `cargo run -p recourse-examples --features metrics --example prometheus`
//! (add `-- <port>` to listen on a fixed port rather than a free one).
//!
//! `metrics-exporter-prometheus` is installed as the `metrics` recorder,
//! with its own HTTP listener on 127.0.0.1, and the executor reports to it
//! through `recourse::metrics::MetricsObserver`. A short scripted workload
//! runs: an inventory call that succeeds on its third attempt, a payment
//! whose retries run out of budget, a search that hedges around a slow
//! replica, and a catalog lookup whose failures open its circuit breaker.
//! Then the example scrapes its own `/metrics` endpoint, as Prometheus
//! would, and prints the `recourse_*` series.
#![allow(missing_docs)]

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use recourse::Executor;
use recourse::budget::TokenBucket;
use recourse::metrics::MetricsObserver;
use recourse::policy::Policy;

type IoResult<T> = Result<T, std::io::Error>;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The port from the command line, else one the system has free now.
fn port() -> u16 {
    if let Some(port) = std::env::args().nth(1) {
        return port.parse().expect("usage: prometheus [PORT]");
    }
    let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free local port");
    probe.local_addr().expect("the probe's address").port()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port()));
    let scrape = run(address).await;
    println!("\n-- scraped from http://{address}/metrics (recourse series, buckets left out):");
    for line in scrape.lines().filter(|l| l.contains("recourse_") && !l.contains("_bucket{")) {
        println!("{line}");
    }
}

/// Installs the exporter on `address`, runs the workload and returns what
/// a scrape of `/metrics` answers.
async fn run(address: SocketAddr) -> String {
    PrometheusBuilder::new()
        .with_http_listener(address)
        // `_total` on counters, as Prometheus expects.
        .with_recommended_naming(true)
        // Real histograms (buckets) for the durations, rather than the
        // exporter's default summaries, so they aggregate across instances.
        .set_buckets_for_metric(
            Matcher::Suffix("_duration_seconds".into()),
            &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0],
        )
        .expect("buckets")
        .install()
        .expect("the Prometheus exporter");
    println!("serving metrics on http://{address}/metrics");

    // Built after the recorder is installed, so that the exporter receives
    // the metrics' descriptions (its `# HELP` lines).
    let executor = Executor::builder()
        .policy(Policy::builder("inventory.Reserve").max_attempts(3).backoff(ms(5), ms(50), 2.0).build())
        .policy(Policy::builder("payments.Charge").max_attempts(4).initial_backoff(ms(5)).budget("payments").build())
        .policy(Policy::builder("search.Query").max_attempts(1).max_hedges(1).hedge_delay(ms(10)).build())
        .policy(Policy::builder("catalog.Lookup").max_attempts(1).circuit(2, Duration::from_secs(30)).build())
        // Room for two attempts of payments, and no refill while the
        // example runs: the third attempt is denied.
        .budget("payments", TokenBucket::new(2, 0.0))
        .observer(MetricsObserver::new())
        .build();

    let attempts = AtomicU32::new(0);
    let reserved: IoResult<&str> = executor
        .call("inventory.Reserve", || {
            let n = attempts.fetch_add(1, Ordering::SeqCst);
            async move { if n < 2 { Err(std::io::ErrorKind::ConnectionReset.into()) } else { Ok("reserved") } }
        })
        .await;
    println!("inventory.Reserve: {reserved:?} after {} attempts", attempts.load(Ordering::SeqCst));

    let charged: IoResult<()> =
        executor.call("payments.Charge", || async { Err(std::io::ErrorKind::TimedOut.into()) }).await;
    println!("payments.Charge: {charged:?}");

    let found: IoResult<&str> = executor
        .call("search.Query", || {
            let hedge = recourse::attempt().is_some_and(|a| a.is_hedge());
            async move {
                // The primary hits the slow replica; the hedge, sent once
                // the hedge delay has passed, answers first and the primary
                // is dropped.
                tokio::time::sleep(if hedge { ms(1) } else { ms(200) }).await;
                Ok(if hedge { "from the hedge" } else { "from the primary" })
            }
        })
        .await;
    println!("search.Query: {found:?}");

    for _ in 0..3 {
        let looked_up: IoResult<()> =
            executor.call("catalog.Lookup", || async { Err(std::io::ErrorKind::ConnectionRefused.into()) }).await;
        println!("catalog.Lookup: {}", looked_up.map_or_else(|e| e.to_string(), |()| "ok".to_owned()));
    }

    reqwest::get(format!("http://{address}/metrics")).await.expect("a scrape").text().await.expect("text")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example's endpoint, scraped over HTTP as Prometheus would.
    #[tokio::test(flavor = "current_thread")]
    async fn the_endpoint_serves_every_series_of_the_workload() {
        let probe = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("a free local port");
        let address = probe.local_addr().expect("the probe's address");
        drop(probe);
        let scrape = run(address).await;
        for series in [
            r#"recourse_calls_total{key="inventory.Reserve",outcome="success",reason="success"} 1"#,
            r#"recourse_attempts_total{key="inventory.Reserve",outcome="retryable",reason="io_connection_reset",hedge="false"} 2"#,
            r#"recourse_hedge_spawns_total{key="search.Query"} 1"#,
            r#"recourse_hedge_cancels_total{key="search.Query"} 1"#,
            r#"recourse_call_duration_seconds_count{key="inventory.Reserve",outcome="success"} 1"#,
            "# TYPE recourse_calls_total counter",
        ] {
            assert!(scrape.lines().any(|line| line == series), "missing {series}:\n{scrape}");
        }
        assert!(
            scrape.contains(r#"recourse_circuit_transitions_total{key="catalog.Lookup",from="closed",to="open"} 1"#),
            "{scrape}"
        );
    }
}

//! The live metrics (`--metrics-addr`, `--otlp-endpoint`) as a live
//! output: one set of them ([`LiveMetrics`]), fed each snapshot and, at
//! the end, the report's totals; scraped at `/metrics`, pushed over OTLP,
//! or both. Once the reports are written the final push goes (a second
//! Ctrl-C gives up on it), then `/metrics` keeps the final totals until a
//! scrape has read them (at most `--metrics-linger`; not after an
//! interrupted run).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use tokio_util::sync::CancellationToken;

use super::output::{Ended, LiveOutput};
use super::reach::check_reach;
use crate::cli::error::CliError;
use crate::engine::Live;
use crate::fleet::Online;
use crate::live_metrics::LiveMetrics;
use crate::live_metrics::otlp::{self, OtlpSettings};
use crate::pages::Pages;
use crate::scenario::Scenario;
use crate::shard::Shard;

/// The live metrics, and the ways they leave.
pub(super) struct Metrics {
    metrics: Arc<LiveMetrics>,
    scraped: Option<Scraped>,
    /// Pushing over OTLP: the endpoint (as said on stderr) and the
    /// exporter, until its final push.
    pushed: Option<(String, otlp::Exporter)>,
}

/// `/metrics` being served, and how long it waits for its last scrape.
struct Scraped {
    pages: Pages,
    linger: Duration,
}

/// The live metrics of a run of `scenario` (of `shard`'s devices; `online`:
/// each fleet's devices as this process runs them), if they are scraped
/// (`--metrics-addr`, and `--metrics-linger`) or pushed (`--otlp-*`):
/// `/metrics` served, then the exporter started, each said on stderr.
pub(super) async fn start(
    scenario: &Scenario,
    shard: Option<Shard>,
    online: &[Online],
    scrape: Option<(SocketAddr, Duration)>,
    push: Option<OtlpSettings>,
    allow_remote: bool,
) -> Result<Option<Metrics>, CliError> {
    if scrape.is_none() && push.is_none() {
        return Ok(None);
    }
    let metrics = LiveMetrics::new(scenario, shard, online.to_vec());
    let scraped = match scrape {
        Some((addr, linger)) => Some(serve(addr, linger, allow_remote, &metrics).await?),
        None => None,
    };
    let pushed = match push {
        Some(settings) => {
            let (endpoint, every) = (settings.endpoint.to_string(), settings.interval);
            let source = otlp::Source { scenario: scenario.name.clone() };
            let exporter =
                otlp::Exporter::start(settings, source, metrics.clone()).map_err(|e| CliError::Usage(e.to_string()))?;
            eprintln!("otlp: pushing to {endpoint} every {}", humantime::format_duration(every));
            Some((endpoint, exporter))
        }
        None => None,
    };
    Ok(Some(Metrics { metrics, scraped, pushed }))
}

/// Serves `metrics` at `/metrics` on `addr`, to wait `linger` for its
/// last scrape; says where on stderr.
async fn serve(
    addr: SocketAddr,
    linger: Duration,
    allow_remote: bool,
    metrics: &Arc<LiveMetrics>,
) -> Result<Scraped, CliError> {
    check_reach("--metrics-addr", addr, allow_remote)?;
    match crate::live_metrics::serve(addr, metrics.clone()).await {
        Ok(pages) => {
            eprintln!("metrics: http://{}/metrics", pages.addr());
            Ok(Scraped { pages, linger })
        }
        Err(e) => Err(CliError::Usage(format!("cannot serve metrics on {addr}: {e}"))),
    }
}

impl LiveOutput for Metrics {
    fn observe(&mut self, live: &Live<'_>) {
        self.metrics.update(live);
    }

    fn ended(&mut self, end: &Ended<'_>) {
        if let Some((fleets, elapsed)) = end.totals {
            self.metrics.settle(fleets, elapsed);
        }
    }

    fn deliver<'a>(&'a mut self, abandon: &'a CancellationToken) -> LocalBoxFuture<'a, ()> {
        Box::pin(async move {
            let Some((endpoint, exporter)) = self.pushed.take() else { return };
            // A second Ctrl-C while the final push waits for a receiver: out now.
            tokio::select! {
                log = exporter.finish(abandon.is_cancelled()) => say_pushes(&endpoint, &log),
                _ = abandon.cancelled() => eprintln!("warning: the final OTLP push to {endpoint} was given up on"),
            }
        })
    }

    fn linger(&self, interrupted: bool) -> LocalBoxFuture<'_, ()> {
        Box::pin(async move {
            let Some(scraped) = &self.scraped else { return };
            if scraped.linger.is_zero() || interrupted {
                return;
            }
            let linger = humantime::format_duration(scraped.linger);
            eprintln!(
                "metrics: the final totals stay at http://{}/metrics until scraped (at most {linger}; --metrics-linger)",
                scraped.pages.addr(),
            );
            if tokio::time::timeout(scraped.linger, self.metrics.final_scrape()).await.is_err() {
                eprintln!("metrics: nothing scraped the final totals in {linger}");
            }
        })
    }

    fn close(self: Box<Self>) -> LocalBoxFuture<'static, ()> {
        Box::pin(async move {
            if let Some(scraped) = self.scraped {
                scraped.pages.close().await;
            }
        })
    }
}

/// How a run's OTLP pushes went, on stderr: a line when all landed, a
/// warning naming the last failure otherwise (a collector that was away
/// does not change the run's verdict).
fn say_pushes(endpoint: &str, log: &otlp::PushLog) {
    let pushes = |n: u64| if n == 1 { "1 push".to_string() } else { format!("{n} pushes") };
    match (&log.last_error, log.final_pushed) {
        (None, true) => eprintln!("otlp: {} to {endpoint}, the last with the report's totals", pushes(log.pushed)),
        (Some(e), true) => eprintln!(
            "otlp: {} to {endpoint}, the last with the report's totals; {} failed, the last: {e}",
            pushes(log.pushed),
            log.failed
        ),
        (error, false) => eprintln!(
            "warning: the final OTLP push to {endpoint} did not land{}: {} landed, {} failed",
            error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default(),
            log.pushed,
            log.failed
        ),
    }
}

//! fleetstorm's own listeners during a run or a capacity search: the live
//! dashboard (`--dashboard`) and Prometheus `/metrics` (`--metrics-addr`).
//!
//! They are safe on a developer's laptop by default: an address other than
//! loopback is refused unless the user says `--allow-remote-pages` (anyone
//! who reaches such a port reads the run and its report), and said on
//! stderr when allowed. They end after every output is written, so a job
//! killed while they linger has its reports already:
//! - the dashboard lingers until a page that was following the run has its
//!   final report written whole ([`Dashboard::linger`]);
//! - `/metrics` keeps serving the final totals until a scrape has read them
//!   (at most `--metrics-linger`): a scraper that last came before the
//!   run's final seconds would otherwise never see them. Not after an
//!   interrupted run: whoever pressed Ctrl-C (or sent SIGTERM) wants the
//!   process gone, not waiting on a scraper that may never come.
//!
//! A second Ctrl-C ends both lingers at once; the pages then finish only
//! the answers already begun ([`Pages::close`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::error::CliError;
use crate::dashboard::Dashboard;
use crate::live_metrics::LiveMetrics;
use crate::pages::Pages;

/// The flag that lets the listeners bind beyond loopback.
pub(super) const ALLOW_REMOTE: &str = "--allow-remote-pages";

/// Refuses `addr` for `flag` unless it is loopback or `allow_remote`;
/// warns when a listener beyond loopback is allowed.
pub(super) fn check_reach(flag: &str, addr: SocketAddr, allow_remote: bool) -> Result<(), CliError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !allow_remote {
        return Err(CliError::Usage(format!(
            "{flag} {addr} is not loopback: anyone who reaches it would read the run and its report; \
             bind 127.0.0.1, or pass {ALLOW_REMOTE} to serve it on {addr} all the same"
        )));
    }
    eprintln!("warning: {flag} {addr} answers anyone who can reach it ({ALLOW_REMOTE})");
    Ok(())
}

/// A dashboard being served.
pub(super) struct Shown {
    pub(super) dashboard: Arc<Dashboard>,
    pages: Pages,
}

/// Serves the dashboard `make` makes on `addr`, if given; says where on
/// stderr.
pub(super) async fn start_dashboard(
    addr: Option<SocketAddr>,
    allow_remote: bool,
    make: impl FnOnce() -> Dashboard,
) -> Result<Option<Shown>, CliError> {
    let Some(addr) = addr else { return Ok(None) };
    check_reach("--dashboard", addr, allow_remote)?;
    let dashboard = Arc::new(make());
    match crate::dashboard::serve(addr, dashboard.clone()).await {
        Ok(pages) => {
            eprintln!("dashboard: http://{}/", pages.addr());
            Ok(Some(Shown { dashboard, pages }))
        }
        Err(e) => Err(CliError::Usage(format!("cannot serve the dashboard on {addr}: {e}"))),
    }
}

/// `/metrics` being served, and how long it waits for its last scrape.
pub(super) struct Scraped {
    metrics: Arc<LiveMetrics>,
    pages: Pages,
    linger: Duration,
}

/// Serves `metrics` at `/metrics` on `addr`; says where on stderr.
pub(super) async fn start_metrics(
    addr: SocketAddr,
    allow_remote: bool,
    metrics: &Arc<LiveMetrics>,
    linger: Duration,
) -> Result<Scraped, CliError> {
    check_reach("--metrics-addr", addr, allow_remote)?;
    match crate::live_metrics::serve(addr, metrics.clone()).await {
        Ok(pages) => {
            eprintln!("metrics: http://{}/metrics", pages.addr());
            Ok(Scraped { metrics: metrics.clone(), pages, linger })
        }
        Err(e) => Err(CliError::Usage(format!("cannot serve metrics on {addr}: {e}"))),
    }
}

/// The run or search ended (`interrupted` by a first signal or not) and
/// its outputs are written: lingers as the module doc says (not at all if
/// `abandon` is cancelled already), then closes both listeners.
pub(super) async fn end(
    dashboard: Option<Shown>,
    metrics: Option<Scraped>,
    interrupted: bool,
    abandon: &CancellationToken,
) {
    let dashboard_linger = async {
        if let Some(shown) = &dashboard {
            shown.dashboard.linger().await;
        }
    };
    let metrics_linger = async {
        let Some(scraped) = &metrics else { return };
        if scraped.linger.is_zero() || interrupted {
            return;
        }
        eprintln!(
            "metrics: the final totals stay at http://{}/metrics until scraped (at most {}; --metrics-linger)",
            scraped.pages.addr(),
            humantime::format_duration(scraped.linger)
        );
        if tokio::time::timeout(scraped.linger, scraped.metrics.final_scrape()).await.is_err() {
            eprintln!("metrics: nothing scraped the final totals in {}", humantime::format_duration(scraped.linger));
        }
    };
    if !abandon.is_cancelled() {
        tokio::select! {
            ((), ()) = async { tokio::join!(dashboard_linger, metrics_linger) } => {}
            () = abandon.cancelled() => {}
        }
    } else {
        drop((dashboard_linger, metrics_linger));
    }
    let closing = dashboard.map(|s| s.pages).into_iter().chain(metrics.map(|s| s.pages));
    futures_util::future::join_all(closing.map(Pages::close)).await;
}

//! The live dashboard (`--dashboard ADDR`) as a live output: served from
//! the start, fed each snapshot (and each capacity step), given the final
//! report when the run or search ended, lingering until a page that was
//! following has loaded that report, then closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;

use super::output::{Ended, LiveOutput, Step};
use super::reach::check_reach;
use crate::capacity::StepResult;
use crate::cli::error::CliError;
use crate::dashboard::{Dashboard, StepPoint};
use crate::engine::Live;
use crate::fleet::Online;
use crate::pages::Pages;
use crate::scenario::Scenario;

/// A dashboard being served.
pub(super) struct Shown {
    dashboard: Arc<Dashboard>,
    pages: Pages,
    /// How long each capacity step runs (a run's dashboard has none).
    step_duration: Duration,
}

/// The dashboard of a run of `scenario` on `addr` (`--dashboard`), if
/// given; `online`: each fleet's devices as this process runs them.
pub(super) async fn start_for_run(
    scenario: &Scenario,
    online: Vec<Online>,
    addr: Option<SocketAddr>,
    allow_remote: bool,
) -> Result<Option<Shown>, CliError> {
    start(addr, allow_remote, Duration::ZERO, || Dashboard::for_run(scenario, online)).await
}

/// The dashboard of a capacity search of `scenario` on `addr`
/// (`--dashboard`), if given.
pub(super) async fn start_for_capacity(
    scenario: &Scenario,
    addr: Option<SocketAddr>,
    allow_remote: bool,
) -> Result<Option<Shown>, CliError> {
    let step_duration = scenario.capacity.as_ref().map_or(Duration::ZERO, |c| c.step_duration);
    start(addr, allow_remote, step_duration, || Dashboard::for_capacity(scenario)).await
}

/// Serves the dashboard `make` makes on `addr`, if given; says where on
/// stderr.
async fn start(
    addr: Option<SocketAddr>,
    allow_remote: bool,
    step_duration: Duration,
    make: impl FnOnce() -> Dashboard,
) -> Result<Option<Shown>, CliError> {
    let Some(addr) = addr else { return Ok(None) };
    check_reach("--dashboard", addr, allow_remote)?;
    let dashboard = Arc::new(make());
    match crate::dashboard::serve(addr, dashboard.clone()).await {
        Ok(pages) => {
            eprintln!("dashboard: http://{}/", pages.addr());
            Ok(Some(Shown { dashboard, pages, step_duration }))
        }
        Err(e) => Err(CliError::Usage(format!("cannot serve the dashboard on {addr}: {e}"))),
    }
}

impl LiveOutput for Shown {
    fn observe(&mut self, live: &Live<'_>) {
        self.dashboard.update(live);
    }

    fn shows_freshness(&self) -> bool {
        true
    }

    fn step(&mut self, step: &Step<'_>) {
        match step {
            Step::Starting { step, rate, devices } => {
                self.dashboard.begin_step(*step, *rate, *devices, self.step_duration)
            }
            Step::Finished(result) => self.dashboard.end_step(step_point(result)),
        }
    }

    fn ended(&mut self, end: &Ended<'_>) {
        self.dashboard.finish((end.html)().into_bytes(), end.verdict.clone());
    }

    fn linger(&self, _interrupted: bool) -> LocalBoxFuture<'_, ()> {
        Box::pin(self.dashboard.linger())
    }

    fn close(self: Box<Self>) -> LocalBoxFuture<'static, ()> {
        Box::pin(self.pages.close())
    }
}

/// A finished step as the dashboard draws it.
fn step_point(s: &StepResult) -> StepPoint {
    StepPoint {
        step: s.step,
        target_rate: s.target_rate,
        offered_rate: s.offered_rate,
        achieved_rate: s.achieved_rate,
        p50_ms: s.p50_ms,
        p99_ms: s.p99_ms,
        error_rate: s.error_rate,
        verdict: s.verdict.to_string(),
        reason: s.reason.clone(),
    }
}

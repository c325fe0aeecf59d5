//! What a run or a capacity search shows while it goes, and how each of
//! those live outputs ends: one trait, [`LiveOutput`], that every output
//! implements in its own file here ([`output`]), and [`LiveOutputs`], the list the
//! commands build once ([`start`]) and hand everything to. Adding an
//! output is one file implementing the trait and one line in [`start`].
//!
//! The outputs: the progress line ([`progress`]) or a capacity search's
//! step lines ([`steps`]) on stderr; the live metrics, scraped at
//! `/metrics` or pushed over OTLP ([`metrics`]); the live dashboard
//! ([`dashboard`]). The components themselves (`run::Progress`,
//! `live_metrics`, `dashboard`) know nothing of a command's flags or of
//! how it ends; the files here wire them to it. This lives in `cli`
//! because that wiring is the command line's: which flags enable what, the
//! loopback guard, the lingers, and a capacity search's steps, which no
//! lower layer knows of.
//!
//! An output's life, in the order the commands call it:
//! 1. [`LiveOutput::observe`] the run's snapshot a few times a second (a
//!    capacity step's run's), and [`LiveOutput::step`] each capacity step's
//!    start and end;
//! 2. [`LiveOutput::stopped`] once the engine returned, with a report or an
//!    error;
//! 3. [`LiveOutput::ended`] with the final figures, before any report is
//!    written;
//! 4. once every report is written, [`LiveOutputs::finish`]: each output's
//!    [`LiveOutput::deliver`] in turn (the final OTLP push), then every
//!    [`LiveOutput::linger`] at once, then every [`LiveOutput::close`].
//!
//! fleetstorm's own listeners (the dashboard, `/metrics`) bind beyond
//! loopback only when the user says so ([`reach`]). They end after every
//! output is written, so a job killed while they linger has its reports
//! already:
//! - the dashboard lingers until a page that was following the run has its
//!   final report written whole (`Dashboard::linger`);
//! - `/metrics` keeps serving the final totals until a scrape has read them
//!   (at most `--metrics-linger`): a scraper that last came before the
//!   run's final seconds would otherwise never see them. Not after an
//!   interrupted run: whoever pressed Ctrl-C (or sent SIGTERM) wants the
//!   process gone, not waiting on a scraper that may never come.
//!
//! A second Ctrl-C ends the final push and the lingers at once; the pages
//! then finish only the answers already begun (`Pages::close`).

mod dashboard;
mod metrics;
mod output;
mod progress;
mod reach;
mod steps;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::join_all;
use tokio_util::sync::CancellationToken;

pub(super) use self::output::Ended;
use self::output::{LiveOutput, Step};
use super::error::CliError;
use crate::capacity;
use crate::engine::Live;
use crate::live_metrics::otlp::OtlpSettings;
use crate::scenario::Scenario;
use crate::shard::Shard;

/// What the live outputs follow.
pub(super) enum Followed<'a> {
    /// A run of `scenario` under `seed`, of `shard`'s devices if given.
    Run { scenario: &'a Scenario, seed: u64, shard: Option<Shard> },
    /// A capacity search of `scenario`.
    Capacity { scenario: &'a Scenario },
}

/// The flags that enable and set the live outputs (a capacity search has
/// neither `/metrics` nor OTLP).
pub(super) struct LiveFlags {
    pub(super) quiet: bool,
    pub(super) dashboard: Option<SocketAddr>,
    pub(super) metrics_addr: Option<SocketAddr>,
    pub(super) metrics_linger: Duration,
    pub(super) otlp: Option<OtlpSettings>,
    pub(super) allow_remote_pages: bool,
}

/// Starts the live outputs `flags` enable for what is `followed` (the
/// listeners bound, each said on stderr), in the order they are fed.
pub(super) async fn start(followed: Followed<'_>, flags: LiveFlags) -> Result<LiveOutputs, CliError> {
    let mut outputs = LiveOutputs::default();
    let remote = flags.allow_remote_pages;
    match followed {
        Followed::Run { scenario, seed, shard } => {
            // One count of the devices online, for the progress line, the
            // metrics and the dashboard.
            let counted =
                !flags.quiet || flags.metrics_addr.is_some() || flags.dashboard.is_some() || flags.otlp.is_some();
            let online = if counted { crate::run::online_devices(scenario, seed, shard) } else { Vec::new() };
            outputs.add(Some(crate::run::Progress::new(scenario, flags.quiet, online.clone())));
            let scrape = flags.metrics_addr.map(|addr| (addr, flags.metrics_linger));
            outputs.add(metrics::start(scenario, shard, &online, scrape, flags.otlp, remote).await?);
            outputs.add(dashboard::start_for_run(scenario, online, flags.dashboard, remote).await?);
        }
        Followed::Capacity { scenario } => {
            outputs.add(dashboard::start_for_capacity(scenario, flags.dashboard, remote).await?);
            outputs.add((!flags.quiet).then_some(steps::StepLines));
        }
    }
    Ok(outputs)
}

/// The live outputs of one run or search, fed in the order they were
/// added.
#[derive(Default)]
pub(super) struct LiveOutputs {
    outputs: Vec<Box<dyn LiveOutput>>,
}

impl LiveOutputs {
    /// Adds `output`, if enabled.
    fn add(&mut self, output: Option<impl LiveOutput + 'static>) {
        if let Some(output) = output {
            self.outputs.push(Box::new(output));
        }
    }

    /// See [`LiveOutput::observe`].
    pub(super) fn observe(&mut self, live: &Live<'_>) {
        self.outputs.iter_mut().for_each(|o| o.observe(live));
    }

    /// What a capacity search reports as it goes, to each output.
    pub(super) fn search_progress(&mut self, progress: capacity::Progress<'_>) {
        let step = match progress {
            capacity::Progress::Live(live) => return self.observe(live),
            capacity::Progress::Starting { step, rate, devices } => Step::Starting { step, rate, devices },
            capacity::Progress::Finished(result) => Step::Finished(result),
        };
        self.outputs.iter_mut().for_each(|o| o.step(&step));
    }

    /// See [`LiveOutput::stopped`].
    pub(super) fn stopped(&mut self) {
        self.outputs.iter_mut().for_each(|o| o.stopped());
    }

    /// See [`LiveOutput::ended`].
    pub(super) fn ended(&mut self, end: &Ended<'_>) {
        self.outputs.iter_mut().for_each(|o| o.ended(end));
    }

    /// Once every report is written: each output delivers in turn, then
    /// all linger at once (not at all if `abandon` is cancelled already,
    /// cut short when it is), then all close.
    pub(super) async fn finish(self, interrupted: bool, abandon: &CancellationToken) {
        let mut outputs = self.outputs;
        for output in &mut outputs {
            output.deliver(abandon).await;
        }
        let lingers = join_all(outputs.iter().map(|o| o.linger(interrupted)));
        if !abandon.is_cancelled() {
            tokio::select! {
                _ = lingers => {}
                () = abandon.cancelled() => {}
            }
        } else {
            drop(lingers);
        }
        join_all(outputs.into_iter().map(|o| o.close())).await;
    }
}

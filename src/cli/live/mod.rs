//! What a run or a capacity search shows while it goes, and how each of
//! those live outputs ends: one trait, [`LiveOutput`] ([`output`]), that
//! every output implements in its own file here, and [`LiveOutputs`], the
//! list the commands build once ([`start`]) and hand everything to.
//! Adding an output is one file implementing the trait and one line in
//! [`start`] (in the arm of each command that shows it).
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

/// What the live outputs follow.
pub(super) enum Followed<'a> {
    /// A run of a plan (a scenario under a seed, of a shard's devices if
    /// it has one).
    Run { plan: &'a crate::run::Plan<'a> },
    /// A capacity search of `scenario`.
    Capacity { scenario: &'a Scenario },
}

/// The flags that enable and set the live outputs (a capacity search has
/// neither `/metrics` nor OTLP).
#[derive(Default)]
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
        Followed::Run { plan } => {
            let (scenario, shard) = (plan.scenario, plan.shard);
            // One count of the devices online, for the progress line, the
            // metrics and the dashboard.
            let counted =
                !flags.quiet || flags.metrics_addr.is_some() || flags.dashboard.is_some() || flags.otlp.is_some();
            let online = if counted { plan.online() } else { Vec::new() };
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

    /// Whether any output shows the devices' freshness as the run goes
    /// (see [`LiveOutput::shows_freshness`]).
    pub(super) fn show_freshness(&self) -> bool {
        self.outputs.iter().any(|o| o.shows_freshness())
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

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use futures_util::future::LocalBoxFuture;

    use super::*;

    /// What the outputs were told, in order.
    type Log = Rc<RefCell<Vec<String>>>;

    /// An output that writes down what it is told; its final delivery
    /// takes a second, its linger `linger`.
    struct Told {
        name: &'static str,
        linger: Duration,
        log: Log,
    }

    impl Told {
        fn add(outputs: &mut LiveOutputs, name: &'static str, linger_s: u64, log: &Log) {
            outputs.add(Some(Told { name, linger: Duration::from_secs(linger_s), log: log.clone() }));
        }

        fn say(&self, what: &str) {
            self.log.borrow_mut().push(format!("{} {what}", self.name));
        }
    }

    impl LiveOutput for Told {
        fn observe(&mut self, live: &Live<'_>) {
            self.say(&format!("observe {}s", live.elapsed.as_secs()));
        }

        fn step(&mut self, step: &Step<'_>) {
            if let Step::Starting { step, .. } = step {
                self.say(&format!("step {step}"));
            }
        }

        fn stopped(&mut self) {
            self.say("stopped");
        }

        fn ended(&mut self, end: &Ended<'_>) {
            self.say(&format!("ended {}", end.verdict));
        }

        fn deliver<'a>(&'a mut self, _abandon: &'a CancellationToken) -> LocalBoxFuture<'a, ()> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                self.say("delivered");
            })
        }

        fn linger(&self, _interrupted: bool) -> LocalBoxFuture<'_, ()> {
            Box::pin(async move {
                self.say("lingers");
                tokio::time::sleep(self.linger).await;
                self.say("lingered");
            })
        }

        fn close(self: Box<Self>) -> LocalBoxFuture<'static, ()> {
            Box::pin(async move { self.say("closed") })
        }
    }

    fn live(elapsed_s: u64) -> Live<'static> {
        Live {
            elapsed: Duration::from_secs(elapsed_s),
            duration: Duration::from_secs(10),
            fleets: &[],
            timeline: &[],
            in_flight: 0,
            freshness: None,
        }
    }

    /// Each output is told everything in the order it was added; the
    /// final deliveries go one after another, then every output lingers
    /// at once, and they close only once all have lingered.
    #[tokio::test(start_paused = true)]
    async fn outputs_deliver_in_turn_then_linger_together_then_close() {
        let log = Log::default();
        let mut outputs = LiveOutputs::default();
        Told::add(&mut outputs, "a", 3, &log);
        Told::add(&mut outputs, "b", 1, &log);
        outputs.observe(&live(1));
        outputs.search_progress(capacity::Progress::Starting { step: 2, rate: 500.0, devices: 500 });
        outputs.search_progress(capacity::Progress::Live(&live(4)));
        outputs.stopped();
        outputs.ended(&Ended { totals: None, verdict: "passed".into(), html: &String::new });
        let start = tokio::time::Instant::now();
        outputs.finish(false, &CancellationToken::new()).await;
        assert_eq!(
            *log.borrow(),
            [
                "a observe 1s",
                "b observe 1s",
                "a step 2",
                "b step 2",
                "a observe 4s",
                "b observe 4s",
                "a stopped",
                "b stopped",
                "a ended passed",
                "b ended passed",
                "a delivered",
                "b delivered",
                "a lingers",
                "b lingers",
                "b lingered",
                "a lingered",
                "a closed",
                "b closed",
            ]
        );
        assert_eq!(start.elapsed(), Duration::from_secs(2 + 3), "two deliveries in turn, the longest linger");
    }

    /// A second Ctrl-C cuts the lingers short; after it, nothing lingers.
    #[tokio::test(start_paused = true)]
    async fn a_second_interrupt_ends_the_lingers() {
        let log = Log::default();
        let mut outputs = LiveOutputs::default();
        Told::add(&mut outputs, "a", 3600, &log);
        let abandon = CancellationToken::new();
        let later = abandon.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            later.cancel();
        });
        let start = tokio::time::Instant::now();
        outputs.finish(false, &abandon).await;
        assert_eq!(start.elapsed(), Duration::from_secs(5));
        assert_eq!(*log.borrow(), ["a delivered", "a lingers", "a closed"]);

        let log = Log::default();
        let mut outputs = LiveOutputs::default();
        Told::add(&mut outputs, "a", 3600, &log);
        outputs.finish(false, &abandon).await;
        assert_eq!(*log.borrow(), ["a delivered", "a closed"]);
    }
}

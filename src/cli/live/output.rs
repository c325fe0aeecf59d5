//! What a live output is: the trait every output here implements, and
//! what it is handed (a capacity step, the final figures).

use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use tokio_util::sync::CancellationToken;

use crate::capacity::StepResult;
use crate::engine::Live;
use crate::stats::Recorder;

/// One live output of a run or a capacity search. Every method but
/// [`LiveOutput::observe`] does nothing unless the output needs it.
pub(super) trait LiveOutput {
    /// Takes in the run's latest snapshot (a capacity step's run's): called
    /// from the engine's progress callback, a few times a second.
    fn observe(&mut self, live: &Live<'_>);

    /// Whether the output shows the devices' freshness as the run goes:
    /// then the engine walks its devices for it about once a second
    /// ([`Live::freshness`]).
    fn shows_freshness(&self) -> bool {
        false
    }

    /// A capacity search's step started or ended.
    fn step(&mut self, _step: &Step<'_>) {}

    /// The engine returned, with a report or an error: stop drawing before
    /// anything else is said on stderr.
    fn stopped(&mut self) {}

    /// The run (or search) made its report: take in the final figures.
    /// Called before any report is written.
    fn ended(&mut self, _end: &Ended<'_>) {}

    /// Every report is written: deliver what is still owed (the final
    /// push), giving up once `abandon` (a second Ctrl-C) is cancelled. The
    /// outputs deliver one after another, before any lingers.
    fn deliver<'a>(&'a mut self, _abandon: &'a CancellationToken) -> LocalBoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Wait for whoever follows the output to have its end (`interrupted`:
    /// the run or search was stopped by a first Ctrl-C or SIGTERM). Every
    /// output lingers at once; a second Ctrl-C cuts them all short.
    fn linger(&self, _interrupted: bool) -> LocalBoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Close, once every output has lingered: stop listening, finishing
    /// the answers begun.
    fn close(self: Box<Self>) -> LocalBoxFuture<'static, ()> {
        Box::pin(async {})
    }
}

/// A capacity search's step, as it starts and as it ends.
pub(super) enum Step<'a> {
    Starting { step: usize, rate: f64, devices: u64 },
    Finished(&'a StepResult),
}

/// The final figures of a run or a search, as the live outputs take them.
pub(in crate::cli) struct Ended<'a> {
    /// Each fleet's final totals and the run's length, which its report is
    /// made of: a run's (a capacity search's steps add up to none).
    pub(in crate::cli) totals: Option<(&'a [Recorder], Duration)>,
    /// The outcome in one line: "passed", why not, or the search's answer.
    pub(in crate::cli) verdict: String,
    /// The final report as HTML, the same as `--html`: made only if an
    /// output asks for it.
    pub(in crate::cli) html: &'a dyn Fn() -> String,
}

//! Live progress on stderr, and the count of devices online it and the
//! live metrics show.

use std::io::IsTerminal;
use std::time::Duration;

use super::plan::{Plan, first_indices};
use crate::engine::Live;
use crate::fleet::Online;
use crate::scenario::Scenario;
use crate::shard::Shard;
use crate::stats::{Percentiles, Recorder};

/// Each fleet's devices online over a run of `scenario` under `seed` (of
/// one shard's devices, if given): the one count the progress line and
/// `/metrics` show.
pub fn online_devices(scenario: &Scenario, seed: u64, shard: Option<Shard>) -> Vec<Online> {
    Plan::new(scenario, seed, shard).online()
}

impl Plan<'_> {
    /// Each fleet's devices online over this plan's run ([`online_devices`]).
    pub fn online(&self) -> Vec<Online> {
        let firsts = first_indices(self.scenario);
        let shard = self.shard;
        self.fleets()
            .iter()
            .zip(firsts)
            .map(|(f, first)| Online::new(&f.schedule, f.devices, &f.events, shard.map(|sh| (sh, first))))
            .collect()
    }
}

/// Live progress on stderr: an indicatif line on a terminal, a plain status
/// line every 5 s otherwise, nothing when quiet.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_plain: Option<std::time::Instant>,
    /// Each fleet's devices online ([`online_devices`]).
    online: Vec<Online>,
}

impl Progress {
    /// `online`: each fleet's devices as this process runs them ([`online_devices`]).
    pub fn new(scenario: &Scenario, quiet: bool, online: Vec<Online>) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (!quiet && terminal).then(|| {
            let bar = indicatif::ProgressBar::new(scenario.duration.as_millis() as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:24} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Progress { bar, plain: !quiet && !terminal, last_plain: None, online }
    }

    /// Draws one update.
    pub fn update(&mut self, live: &Live<'_>) {
        if self.bar.is_none() && !self.plain {
            return;
        }
        if self.plain && self.last_plain.is_some_and(|t| t.elapsed() < Duration::from_secs(5)) {
            return;
        }
        let elapsed = live.elapsed.min(live.duration);
        let online: u64 = self.online.iter().map(|o| o.at(elapsed)).sum();
        let total: u64 = self.online.iter().map(Online::devices).sum();
        let mut all = Recorder::default();
        for f in live.fleets {
            all.add(f);
        }
        // The last whole second of the timeline, for the rates.
        let last = live.timeline.len().checked_sub(2).and_then(|i| live.timeline.get(i));
        let (offered, achieved) = last.map_or((0, 0), |s| (s.scheduled, s.sent));
        let c = &all.counters;
        let line = format!(
            "{:.0}/{:.0}s | online {online}/{total} | offered {offered}/s achieved {achieved}/s | ok {} failed {} missed {} | p99 {:.1} ms | in flight {}",
            elapsed.as_secs_f64(),
            live.duration.as_secs_f64(),
            c.ok(),
            c.failed(),
            c.missed,
            Percentiles::of(&all.latency).p99,
            live.in_flight
        );
        match &self.bar {
            Some(bar) => {
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(line);
            }
            None => {
                eprintln!("{line}");
                self.last_plain = Some(std::time::Instant::now());
            }
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

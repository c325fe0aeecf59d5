//! The aggregator: what the workers' flushes add up to. It owns the run's
//! totals per fleet (the measured ones: a warm-up's flushes go to the
//! timeline only), the per-second timeline, the cohorts, each worker's
//! CPU demand, the live freshness walks and what is in flight, and gives
//! the live view ([`Live`]) after each round of flushes and the run's
//! figures at its end. It never waits on anything: `engine::run` feeds it.

use std::time::Duration;

use super::worker::{Demand, Flush};
use super::{Live, Second};
use crate::stats::timeline::Timeline;
use crate::stats::{Freshness, Recorder};

/// The run's figures so far, from the workers' flushes.
pub(super) struct Aggregator {
    /// Measured totals per fleet.
    pub totals: Vec<Recorder>,
    /// Each device's largest gap without a success, per fleet (from the
    /// workers' last flushes).
    pub freshness: Vec<Freshness>,
    /// Each worker's latest live freshness walk, and their sum.
    live_freshness: Vec<Option<Vec<Freshness>>>,
    live_freshness_total: Option<Vec<Freshness>>,
    /// Per fleet, per agent version: what each cohort recorded.
    pub cohorts: Vec<Vec<Option<Recorder>>>,
    timeline: Timeline,
    /// Exchanges in flight, per worker.
    in_flight: Vec<usize>,
    /// The latest a heartbeat went (ns since the start).
    pub last_sent_ns: u64,
    /// Each worker's CPU demand over the measured time, if measured.
    demand: Vec<Option<Demand>>,
    /// Workers that have not sent their last flush.
    pub running: usize,
    /// The schedule's length, in whole seconds (the timeline's extent).
    seconds: u64,
}

impl Aggregator {
    pub fn new(fleets: usize, workers: usize, duration: Duration, keep_second_histograms: bool) -> Aggregator {
        Aggregator {
            totals: vec![Recorder::default(); fleets],
            freshness: vec![Freshness::default(); fleets],
            live_freshness: vec![None; workers],
            live_freshness_total: None,
            cohorts: Vec::new(),
            timeline: Timeline::new(keep_second_histograms),
            in_flight: vec![0; workers],
            last_sent_ns: 0,
            demand: vec![None; workers],
            running: workers,
            seconds: duration.as_nanos().div_ceil(1_000_000_000) as u64,
        }
    }

    /// Adds one worker's flush.
    pub fn absorb(&mut self, flush: Flush) {
        // Workers flush as the warm-up ends, so no flush mixes the two.
        let measured = !flush.warmup;
        if measured {
            for (total, part) in self.totals.iter_mut().zip(&flush.fleets) {
                total.add(part);
            }
            if let Some(d) = flush.demand {
                self.demand[flush.worker].get_or_insert_with(Demand::default).add(d);
            }
        }
        // Each event counts in the second it happened in.
        for part in &flush.seconds {
            self.timeline.absorb(part);
        }
        let second = flush.at_ns / 1_000_000_000;
        // Every second of the schedule up to now has an entry, even one in
        // which nothing happened (a whole fleet silent).
        self.timeline.extend_to(second.min(self.seconds));
        // Workers flush every 250 ms, so no flush for a second more than one
        // behind the newest can still arrive: close those.
        self.timeline.close_before(second.saturating_sub(1));
        self.in_flight[flush.worker] = flush.in_flight;
        self.last_sent_ns = self.last_sent_ns.max(flush.last_sent_ns);
        if flush.last {
            self.running -= 1;
        }
        for (total, part) in self.freshness.iter_mut().zip(flush.freshness.iter().flatten()) {
            total.add(part);
        }
        if let Some(now) = flush.live_freshness {
            self.live_freshness[flush.worker] = Some(now);
            let mut sum = vec![Freshness::default(); self.totals.len()];
            for worker in self.live_freshness.iter().flatten() {
                for (total, part) in sum.iter_mut().zip(worker) {
                    total.add(part);
                }
            }
            self.live_freshness_total = Some(sum);
        }
        self.cohorts.resize_with(flush.cohorts.len(), Vec::new);
        for (fleet, parts) in self.cohorts.iter_mut().zip(&flush.cohorts) {
            fleet.resize_with(parts.len().max(fleet.len()), || None);
            for (total, part) in fleet.iter_mut().zip(parts) {
                if let Some(part) = part.as_ref().filter(|_| measured) {
                    total.get_or_insert_with(Recorder::default).add(part);
                }
            }
        }
    }

    /// The live view, `elapsed` into a run of `duration`.
    pub fn live(&mut self, elapsed: Duration, duration: Duration) -> Live<'_> {
        Live {
            elapsed,
            duration,
            fleets: &self.totals,
            timeline: self.timeline.recent(),
            in_flight: self.in_flight.iter().sum(),
            freshness: self.live_freshness_total.as_deref(),
        }
    }

    /// The timeline, closed, and each measured worker's demand.
    pub fn finish_timeline(&mut self) -> (Vec<Second>, Vec<Demand>) {
        let timeline = std::mem::replace(&mut self.timeline, Timeline::new(false)).finish();
        (timeline, self.demand.drain(..).flatten().collect())
    }
}
